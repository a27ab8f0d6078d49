import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_addrop.glue import GlueEvaluation
from keras_addrop.glue import preprocessed_batches
from keras_addrop.models import ADDropBertTextClassifier
from tests.glue.batching_test import VOCABULARY
from tests.glue.batching_test import sentences
from tests.test_case import TestCase
from tests.test_case import tiny_backbone

pytestmark = pytest.mark.all_backends


class GlueEvaluationTest(TestCase):
    def setUp(self):
        super().setUp()
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY)
        self.preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=16
        )
        texts = sentences(16)
        labels = np.arange(16, dtype="int32") % 2
        self.batches = preprocessed_batches(
            tf.data.Dataset.from_tensor_slices((texts, labels)),
            self.preprocessor,
            8,
        )
        self.model = ADDropBertTextClassifier(
            tiny_backbone(vocabulary_size=len(VOCABULARY)), num_classes=2
        )
        self.model.compile(
            optimizer=keras.optimizers.SGD(0.0),  # Metrics never improve.
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )

    def test_metrics_reach_logs_and_tensorboard_and_stop_early(self):
        log_dir = self.get_temp_dir()
        evaluation = GlueEvaluation("rte", self.batches, patience=2)
        history = self.model.fit(
            self.batches,
            epochs=6,
            callbacks=[evaluation, keras.callbacks.TensorBoard(log_dir)],
            verbose=0,
        )
        # Epoch 1 is the best; two epochs without improvement stop the run.
        self.assertLen(history.epoch, 3)
        self.assertEqual(evaluation.best_epoch, 1)
        self.assertLen(history.history["val_accuracy"], 3)
        self.assertIn("val_loss", history.history)
        tags = set()
        for root, _, files in tf.io.gfile.walk(log_dir):
            for name in files:
                if "tfevents" in name:
                    path = f"{root}/{name}"
                    split = os.path.basename(root)
                    for event in tf.compat.v1.train.summary_iterator(path):
                        tags.update((split, v.tag) for v in event.summary.value)
        # TensorBoard files `val_*` logs under validation/ without the prefix.
        self.assertIn(("validation", "epoch_accuracy"), tags)
        self.assertIn(("validation", "epoch_loss"), tags)
        self.assertIn(("train", "epoch_addrop_drop_fraction"), tags)

    def test_resumed_history_carries_best_epoch_and_patience(self):
        earlier = [{"accuracy": 0.9, "loss": 0.1}, {"accuracy": 0.5, "loss": 1}]
        evaluation = GlueEvaluation(
            "rte", self.batches, patience=2, history=earlier
        )
        self.assertEqual(evaluation.best_epoch, 1)
        history = self.model.fit(
            self.batches, epochs=4, initial_epoch=2, callbacks=[evaluation],
            verbose=0,
        )  # fmt: skip
        self.assertLen(history.epoch, 1)  # Epoch 3 exhausts the patience.

    def test_unlabelled_data_is_refused(self):
        unlabelled = self.batches.map(lambda x, y: x)
        with self.assertRaisesRegex(ValueError, "test splits are unlabelled"):
            GlueEvaluation("rte", unlabelled)
