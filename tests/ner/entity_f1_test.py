import random

import keras
import keras_hub
import numpy as np
import pytest

from keras_addrop.models import ADDropTokenClassifier
from keras_addrop.models import TokenClassifierPreprocessor
from keras_addrop.ner import EntityF1
from keras_addrop.ner import entity_scores
from tests.test_case import TestCase
from tests.test_case import tiny_family_backbone

pytestmark = pytest.mark.all_backends

TAGS = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "I-ORG"]


def random_batch(rng, batch=3, length=9):
    """Token tags, one-hot predictions and weights (about 60% of tokens
    stand for words), and the same as word tag lists."""
    y_true = np.zeros((batch, length), "int32")
    y_pred = np.zeros((batch, length, len(TAGS)), "float32")
    weights = np.zeros((batch, length), "float32")
    true, predicted = [], []
    for b in range(batch):
        true.append([])
        predicted.append([])
        for t in range(length):
            gold, guess = rng.randrange(len(TAGS)), rng.randrange(len(TAGS))
            y_true[b, t], y_pred[b, t, guess] = gold, 1.0
            if rng.random() < 0.6:
                weights[b, t] = 1.0
                true[-1].append(TAGS[gold])
                predicted[-1].append(TAGS[guess])
    return (y_true, y_pred, weights), (true, predicted)


class EntityF1Test(TestCase):
    def test_equals_entity_scores_and_seqeval_over_batches(self):
        metrics = pytest.importorskip("seqeval.metrics")
        rng = random.Random(0)
        metric = EntityF1(TAGS)
        for _ in range(30):
            metric.reset_state()
            true, predicted = [], []
            for _ in range(2):  # Two batches accumulate.
                batch, words = random_batch(rng)
                metric.update_state(*batch[:2], sample_weight=batch[2])
                true += words[0]
                predicted += words[1]
            reference = entity_scores(true, predicted)
            self.assertAllClose(float(metric.result()), reference["f1"])
            self.assertAllClose(
                float(metric.result()),
                metrics.f1_score(true, predicted, zero_division=0),
            )
            scores = metric.scores()
            for kind, expected in reference["types"].items():
                self.assertEqual(scores["types"][kind], expected)
            for key in ("precision", "recall", "support"):
                self.assertAllClose(scores[key], reference[key])

    def test_tokens_of_weight_zero_do_not_split_or_join_entities(self):
        metric = EntityF1(["O", "B-PER", "I-PER"])
        # Words B I I over tokens B x I I: the weight-0 token in between
        # (a later piece) neither ends the entity nor starts one.
        y_true = np.array([[1, 0, 2, 2]])
        y_pred = keras.ops.one_hot(np.array([[1, 1, 2, 2]]), 3)
        metric.update_state(y_true, y_pred, sample_weight=[[1, 0, 1, 1]])
        self.assertAllClose(float(metric.result()), 1.0)
        self.assertEqual(metric.scores()["types"]["PER"]["support"], 1)

    def test_is_entity_f1_in_fits_validation(self):
        keras.utils.set_random_seed(0)
        tag_names = ["O", "B-PER", "I-PER"]
        words = [["the", "quick", "fox"], ["dog", "jumps", "over", "the"]]
        tags = [[1, 2, 0], [1, 0, 0, 1]]
        vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the"]
        vocabulary += ["qu", "##ick", "fox", "jumps", "over", "dog"]
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
        model = ADDropTokenClassifier(
            tiny_family_backbone("bert", dropout=0.0),
            num_classes=3,
            preprocessor=TokenClassifierPreprocessor(
                tokenizer, sequence_length=8
            ),
            tag_names=tag_names,
            candidate_ratio=0.5,
            drop_rate=0.5,
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = model.fit(
            words,
            tags,
            batch_size=2,
            epochs=3,
            validation_data=(words, tags),
            verbose=0,
        )
        predicted = model.predict_tags(words)
        names = [[tag_names[t] for t in sentence] for sentence in tags]
        expected = entity_scores(names, predicted)["f1"]
        self.assertGreater(expected, 0.0)  # Something was found.
        self.assertAllClose(history.history["val_entity_f1"][-1], expected)

    def test_needs_sample_weights(self):
        with self.assertRaisesRegex(ValueError, "weighted_metrics"):
            EntityF1(TAGS).update_state([[0]], [[[1.0] + [0.0] * 7]])

    def test_bad_tag_names_are_refused(self):
        with self.assertRaisesRegex(ValueError, "repeated tag"):
            EntityF1(["O", "B-PER", "B-PER"])
        with self.assertRaisesRegex(ValueError, "no entity tag"):
            EntityF1(["O"])
        with self.assertRaisesRegex(ValueError, "tag_names=\\['O', ''\\]"):
            EntityF1(["O", ""])

    def test_serializes(self):
        self.run_serialization_test(EntityF1(TAGS, name="f1"))
