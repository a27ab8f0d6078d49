import json
import os

import keras
import numpy as np
import pytest

import keras_addrop
from keras_addrop.callbacks import CrossTuning
from keras_addrop.models import ADDropBertTextClassifier
from tests.test_case import TestCase
from tests.test_case import tiny_backbone
from tests.test_case import tiny_batch

# Runs under every backend (README).
pytestmark = pytest.mark.all_backends


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
            # Called while a step is traced: TensorFlow's one `tf.function`,
            # or each of JAX's per-phase compiled steps.
            def train_step(self, *args):
                traces.append(1)
                return super().train_step(*args)

            def _addrop_train_step(self, *args):
                traces.append(1)
                return super()._addrop_train_step(*args)

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
        backend = keras.config.backend()
        if backend == "tensorflow":
            # The graph traced in epoch 1 (tf.cond traces both branches)
            # serves every later epoch.
            self.assertEqual(len(set(traces_after_epoch)), 1)
        elif backend == "jax":
            # Each phase compiles once, in its first epoch.
            self.assertEqual(traces_after_epoch, [1, 2, 2, 2])

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


def random_model():
    """Dropout and q < 1: every step draws from the seed generators."""
    keras.utils.set_random_seed(0)
    model = ADDropBertTextClassifier(
        tiny_backbone(dropout=0.1),
        num_classes=2,
        candidate_ratio=0.5,
        drop_rate=0.5,
        addrop_layers="all",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


class BackupAndRestoreTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.x, cls.y = tiny_batch(batch_size=16)
        cls.fit = dict(batch_size=8, epochs=4, shuffle=False, verbose=0)
        # The uninterrupted run the resumed ones are compared with.
        cls.reference = random_model()
        cls.reference.fit(cls.x, cls.y, callbacks=[CrossTuning()], **cls.fit)

    def interrupted_then_resumed(self, backup_cls):
        backup_dir = os.path.join(self.get_temp_dir(), "backup")
        callbacks = [CrossTuning(), backup_cls(backup_dir)]
        with self.assertRaisesRegex(RuntimeError, "preempted"):
            random_model().fit(
                self.x,
                self.y,
                callbacks=callbacks + [_Interrupt(epoch=2)],
                **self.fit,
            )
        # A fresh model, as in a new process.
        model = random_model()
        model.fit(self.x, self.y, callbacks=callbacks, **self.fit)
        return model

    def test_resumed_run_with_dropout_and_masks_matches_uninterrupted(self):
        model = self.interrupted_then_resumed(
            keras_addrop.callbacks.BackupAndRestore
        )
        self.assertWeightsClose(model, self.reference, atol=1e-6)

    def test_keras_backup_alone_resumes_with_other_random_draws(self):
        # Why the callback exists: without the seed states the resumed
        # epochs draw other dropout and masks.
        model = self.interrupted_then_resumed(keras.callbacks.BackupAndRestore)
        differences = [
            np.max(np.abs(a - b))
            for a, b in zip(model.get_weights(), self.reference.get_weights())
        ]
        self.assertGreater(max(differences), 1e-4)

    def test_backup_without_random_state_resumes_with_a_warning(self):
        backup_dir = os.path.join(self.get_temp_dir(), "backup")
        with self.assertRaisesRegex(RuntimeError, "preempted"):
            random_model().fit(
                self.x,
                self.y,
                epochs=2,
                callbacks=[
                    keras.callbacks.BackupAndRestore(backup_dir),
                    _Interrupt(epoch=1),
                ],
                verbose=0,
            )
        with self.assertWarnsRegex(UserWarning, "holds no random state"):
            history = random_model().fit(
                self.x,
                self.y,
                epochs=2,
                callbacks=[keras_addrop.callbacks.BackupAndRestore(backup_dir)],
                verbose=0,
            )
        self.assertEqual(history.epoch, [1])

    def test_run_killed_while_writing_weights_resumes_from_previous_backup(
        self,
    ):
        backup_dir = os.path.join(self.get_temp_dir(), "backup")
        callbacks = [
            CrossTuning(),
            keras_addrop.callbacks.BackupAndRestore(backup_dir),
        ]
        model = random_model()
        save_weights = model.save_weights
        saves = []

        def killed_on_second_save(filepath, **kwargs):
            saves.append(filepath)
            if len(saves) < 2:
                return save_weights(filepath, **kwargs)
            # Half a file, as a process killed mid-write leaves it.
            with open(filepath, "wb") as f:
                f.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
            raise RuntimeError("killed")

        model.save_weights = killed_on_second_save
        with self.assertRaisesRegex(RuntimeError, "killed"):
            model.fit(self.x, self.y, callbacks=callbacks, **self.fit)
        resumed = random_model()
        history = resumed.fit(self.x, self.y, callbacks=callbacks, **self.fit)
        # Epoch 1's backup is intact: epochs 2 to 4 run again.
        self.assertEqual(history.epoch, [1, 2, 3])
        self.assertWeightsClose(resumed, self.reference, atol=1e-6)

    def test_random_state_of_the_two_latest_backups_is_kept(self):
        backup_dir = os.path.join(self.get_temp_dir(), "backup")
        callback = keras_addrop.callbacks.BackupAndRestore(
            backup_dir, delete_checkpoint=False
        )
        model = random_model()
        model.fit(self.x, self.y, epochs=2, callbacks=[callback], verbose=0)
        with open(os.path.join(backup_dir, "random_state.json")) as f:
            saved = json.load(f)
        self.assertEqual(list(saved), ["1:0", "2:0"])
        self.assertTrue(all(saved[key] for key in saved))

    def test_callback_serializes(self):
        callback = keras_addrop.callbacks.BackupAndRestore(
            "/tmp/backup", save_freq=3
        )
        self.run_serialization_test(callback)
