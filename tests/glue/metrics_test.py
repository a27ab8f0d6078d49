import numpy as np
import scipy.stats
import sklearn.metrics

from keras_addrop.glue import glue_metrics
from keras_addrop.glue import majority_baseline
from keras_addrop.glue import predictions_from_outputs
from keras_addrop.glue.evaluation import dev_loss
from tests.test_case import TestCase


class GlueMetricsTest(TestCase):
    def test_metrics_match_scikit_learn_and_scipy(self):
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 2, 50)
        predictions = rng.integers(0, 2, 50)
        mrpc = glue_metrics("mrpc", labels, predictions)
        self.assertEqual(list(mrpc), ["accuracy", "f1"])
        self.assertAllClose(
            mrpc["accuracy"],
            sklearn.metrics.accuracy_score(labels, predictions),
        )
        self.assertAllClose(
            mrpc["f1"], sklearn.metrics.f1_score(labels, predictions)
        )
        cola = glue_metrics("cola", labels, predictions)
        self.assertAllClose(
            cola["matthews_corrcoef"],
            sklearn.metrics.matthews_corrcoef(labels, predictions),
        )
        scores, predicted = rng.random(40) * 5, rng.random(40) * 5
        stsb = glue_metrics("stsb", scores, predicted)
        self.assertAllClose(
            stsb["pearson"], scipy.stats.pearsonr(scores, predicted)[0]
        )
        self.assertAllClose(
            stsb["spearman"], scipy.stats.spearmanr(scores, predicted)[0]
        )
        self.assertEqual(
            list(glue_metrics("rte", labels, labels)), ["accuracy"]
        )

    def test_predictions_and_dev_loss(self):
        logits = np.array([[2.0, 1.0], [0.0, 3.0]])
        self.assertAllEqual(predictions_from_outputs("rte", logits), [0, 1])
        self.assertAllEqual(
            predictions_from_outputs("stsb", np.array([[1.5], [2.0]])),
            [1.5, 2.0],
        )
        expected = -np.mean(
            [
                np.log(np.exp(2) / (np.exp(2) + np.exp(1))),
                np.log(np.exp(3) / (1 + np.exp(3))),
            ]
        )
        self.assertAllClose(dev_loss("rte", np.array([0, 1]), logits), expected)

    def test_majority_baseline(self):
        result = majority_baseline("mrpc", [1, 1, 0], [1, 0, 1, 1])
        self.assertAllClose(result["accuracy"], 0.75)

    def test_mismatched_lengths_are_rejected(self):
        with self.assertRaisesRegex(ValueError, "len\\(labels\\)=2"):
            glue_metrics("rte", [0, 1], [0])
