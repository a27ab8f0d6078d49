import os

import keras
import numpy as np

from keras_addrop.callbacks import CrossTuning
from keras_addrop.models import ADDropBertTextClassifier
from tests.test_case import TestCase
from tests.test_case import tiny_backbone
from tests.test_case import tiny_batch


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("preempted")


class CrossTuningTest(TestCase):
    def setUp(self):
        super().setUp()
        self.x, self.y = tiny_batch(batch_size=16)
        self.traces = []
        traces = self.traces

        class Counting(ADDropBertTextClassifier):
            def train_step(self, data):
                traces.append(1)
                return super().train_step(data)

        self.model = Counting(
            tiny_backbone(dropout=0.1),
            num_classes=2,
            candidate_ratio=0.5,
            drop_rate=0.5,
            addrop_layers="all",
        )
        self.model.compile(
            optimizer="adam",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )

    def test_epochs_alternate_plain_and_addrop_without_retracing(self):
        traces_after_epoch = []
        record = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: traces_after_epoch.append(
                len(self.traces)
            )
        )
        history = self.model.fit(
            self.x,
            self.y,
            batch_size=8,
            epochs=4,
            callbacks=[CrossTuning(), record],
            verbose=0,
        )
        fractions = history.history["addrop_drop_fraction"]
        self.assertEqual(fractions[0], 0.0)
        self.assertEqual(fractions[2], 0.0)
        for fraction in (fractions[1], fractions[3]):
            self.assertAllClose(fraction, 0.25, atol=0.06)
        # The graph traced in epoch 1 (tf.cond traces both branches) serves
        # every later epoch.
        self.assertEqual(len(set(traces_after_epoch)), 1)

    def test_switch_is_restored_after_training(self):
        self.model.fit(
            self.x, self.y, epochs=1, callbacks=[CrossTuning()], verbose=0
        )
        self.assertTrue(self.model.addrop_enabled)
        self.model.addrop_enabled = False
        self.model.fit(
            self.x, self.y, epochs=2, callbacks=[CrossTuning()], verbose=0
        )
        self.assertFalse(self.model.addrop_enabled)

    def test_phase_follows_the_epoch_number_on_resume(self):
        history = self.model.fit(
            self.x,
            self.y,
            epochs=3,
            initial_epoch=1,
            callbacks=[CrossTuning()],
            verbose=0,
        )
        fractions = history.history["addrop_drop_fraction"]
        self.assertGreater(fractions[0], 0.0)  # Epoch 2.
        self.assertEqual(fractions[1], 0.0)  # Epoch 3.

    def test_backup_and_restore_resumes_in_the_right_phase(self):
        backup_dir = os.path.join(self.get_temp_dir(), "backup")
        callbacks = [
            CrossTuning(),
            keras.callbacks.BackupAndRestore(backup_dir),
        ]
        with self.assertRaisesRegex(RuntimeError, "preempted"):
            self.model.fit(
                self.x,
                self.y,
                epochs=4,
                callbacks=callbacks + [_Interrupt(epoch=2)],
                verbose=0,
            )
        history = self.model.fit(
            self.x, self.y, epochs=4, callbacks=callbacks, verbose=0
        )
        # Epochs 3 (plain) and 4 (AD-DROP) remain after two finished ones.
        self.assertEqual(history.epoch, [2, 3])
        fractions = history.history["addrop_drop_fraction"]
        self.assertEqual(fractions[0], 0.0)
        self.assertGreater(fractions[1], 0.0)

    def test_model_without_addrop_is_rejected(self):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(loss="mse")
        with self.assertRaisesRegex(ValueError, "Received: model=Sequential"):
            model.fit(
                np.ones((2, 2)),
                np.ones((2, 1)),
                callbacks=[CrossTuning()],
                verbose=0,
            )

    def test_callback_serializes(self):
        config = keras.saving.serialize_keras_object(CrossTuning())
        self.assertEqual(config["registered_name"], "keras_addrop>CrossTuning")
        self.assertIsInstance(
            keras.saving.deserialize_keras_object(config), CrossTuning
        )
