import json
import math
import os
import shutil
import warnings

import keras

from keras_addrop import backend
from keras_addrop.api_export import keras_addrop_export
from keras_addrop.validation import validate_positive_int


@keras_addrop_export("keras_addrop.callbacks.CrossTuning")
class CrossTuning(keras.callbacks.Callback):
    """Cross-tuning: alternate plain and AD-DROP epochs (Algorithm 1).

    Epochs are counted from 1: epoch 1 is plain fine-tuning, epoch 2 applies
    AD-DROP, epoch 3 is plain, and so on. The phase follows from the epoch
    number alone, so a run resumed by `keras.callbacks.BackupAndRestore` (or
    with `initial_epoch`) continues in the right phase. The callback flips
    the model's `addrop_enabled` switch, which no epoch retraces or
    recompiles for: on TensorFlow a variable that the traced step reads; on
    JAX one compiled step per phase, each compiled on its first epoch; on
    PyTorch an attribute the eager step reads. When training ends, the
    switch returns to the value it had before `fit`. Works on the
    TensorFlow, JAX and PyTorch backends.

    Without this callback an AD-DROP model applies AD-DROP on every epoch,
    the paper's "w/o cross-tuning" ablation.

    Example:

    ```python
    classifier.fit(
        train_ds,
        validation_data=dev_ds,
        epochs=6,
        callbacks=[keras_addrop.callbacks.CrossTuning()],
    )
    ```
    """

    def on_train_begin(self, logs=None):
        if not hasattr(self.model, "addrop_enabled"):
            raise ValueError(
                "`CrossTuning` needs an AD-DROP model, e.g. "
                "`keras_addrop.models.ADDropBertTextClassifier`. Received: "
                f"model={type(self.model).__name__}"
            )
        self._enabled_before = self.model.addrop_enabled

    def on_epoch_begin(self, epoch, logs=None):
        # `epoch` counts from 0: AD-DROP on the 2nd, 4th, ... epoch.
        self.model.addrop_enabled = epoch % 2 == 1

    def on_train_end(self, logs=None):
        self.model.addrop_enabled = self._enabled_before

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _write_json_atomically(path, value):
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(value, f)
    os.replace(temporary, path)


@keras_addrop_export("keras_addrop.callbacks.BackupAndRestore")
class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` that also restores random state.

    Keras backs up the weights and the optimizer, not the random generators:
    a resumed run starts every `keras.random.SeedGenerator` (dropout, the
    AD-DROP masks) where it started at the beginning of training, so it
    draws other dropout and other masks than the run it continues. This
    drop-in replacement also backs up the state of every seed generator of
    the model, so that, with the data in the same order (see
    `keras_addrop.glue.preprocessed_batches`'s `initial_epoch`), a resumed
    run gives the same weights and metrics as an uninterrupted one.

    Every file of the backup is written to a temporary file and then
    renamed over the old one, so a run killed while a backup is written
    (272 MB for MiniLM-L6 with its AdamW state) resumes from the previous
    backup instead of finding a truncated weights file, which Keras's
    callback leaves behind.
    The random state is written first, and the last two are kept, so that
    a run killed between the writes still finds the state of the backup it
    resumes from. A backup without it (for example one made by
    `keras.callbacks.BackupAndRestore`) resumes with a warning.

    Works on the TensorFlow, JAX and PyTorch backends; on PyTorch it also
    stores the global generator that Keras' unseeded dropout draws from.

    Args:
        backup_dir: string, a local folder for the backup (as for
            `keras.callbacks.BackupAndRestore`).
        **kwargs: the other arguments of `keras.callbacks.BackupAndRestore`
            (`save_freq`, `double_checkpoint`, `delete_checkpoint`).

    Example:

    ```python
    classifier.fit(
        train_ds,
        epochs=6,
        callbacks=[
            keras_addrop.callbacks.CrossTuning(),
            keras_addrop.callbacks.BackupAndRestore("/tmp/backup"),
        ],
    )
    ```
    """

    def __init__(self, backup_dir, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self._random_state_path = os.path.join(backup_dir, "random_state.json")

    def _seed_states(self):
        # `variables` is `weights` plus the seed generators' states.
        weights = {id(w) for w in self.model.weights}
        return [v for v in self.model.variables if id(v) not in weights]

    # `_save_model` and `_load_model` are where Keras writes and reads the
    # backup (every epoch or every `save_freq` batches, and at the start):
    # the random state is kept in step with them.
    def _save_model(self):
        key = f"{self._current_epoch}:{self._last_batch_seen}"
        saved = self._read_random_states()
        latest = [k for k in saved if k != key][-1:]
        saved = {k: saved[k] for k in latest}
        saved[key] = {
            "seed_generators": [
                {
                    "path": v.path,
                    "value": keras.ops.convert_to_numpy(v).tolist(),
                }
                for v in self._seed_states()
            ],
            # Draws that no seed generator's state holds (PyTorch's global
            # generator, which Keras' unseeded dropout uses).
            "backend": backend.global_random_state(),
        }
        os.makedirs(self.backup_dir, exist_ok=True)
        _write_json_atomically(self._random_state_path, saved)
        if self.double_checkpoint:
            for path in (self._weights_path, self._training_metadata_path):
                if os.path.isfile(path):
                    shutil.copyfile(path, f"{path}.bkp")
        # `save_weights` wants the `.weights.h5` suffix.
        temporary = os.path.join(self.backup_dir, "writing.weights.h5")
        self.model.save_weights(temporary, overwrite=True)
        os.replace(temporary, self._weights_path)
        _write_json_atomically(
            self._training_metadata_path,
            {"epoch": self._current_epoch, "batch": self._last_batch_seen},
        )

    def _read_random_states(self):
        if not os.path.isfile(self._random_state_path):
            return {}
        with open(self._random_state_path) as f:
            return json.load(f)

    def _load_model(self):
        super()._load_model()
        if not os.path.isfile(self._training_metadata_path):
            return  # No backup: a fresh run.
        with open(self._training_metadata_path) as f:
            metadata = json.load(f)
        key = f"{metadata['epoch']}:{metadata.get('batch', 0)}"
        entry = self._read_random_states().get(key)
        if isinstance(entry, list):  # Written before the backend's state.
            entry = {"seed_generators": entry, "backend": None}
        states = None if entry is None else entry["seed_generators"]
        variables = self._seed_states()
        if states is None or len(states) != len(variables):
            warnings.warn(
                f"The backup in {self.backup_dir} holds no random state for "
                f"epoch {metadata['epoch']} of this model: the resumed run "
                "draws other dropout and AD-DROP masks than an "
                "uninterrupted one would.",
                stacklevel=2,
            )
            return
        # Matched by order, not path: paths carry per-process name suffixes.
        for variable, state in zip(variables, states):
            variable.assign(state["value"])
        if entry["backend"] is not None:
            backend.set_global_random_state(entry["backend"])

    def get_config(self):
        return {
            "backup_dir": self.backup_dir,
            "save_freq": self.save_freq,
            "double_checkpoint": self.double_checkpoint,
            "delete_checkpoint": self.delete_checkpoint,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class DevEvaluation(keras.callbacks.Callback):
    """Scores a dev set after every epoch, keeps the best epoch and stops
    after `patience` epochs without a better main metric.

    The base of `keras_addrop.glue.GlueEvaluation` and
    `keras_addrop.ner.EntityEvaluation`: a subclass computes an epoch's
    metrics in `evaluate()` (a dict of floats, `main_metric` among them);
    they join the epoch's logs as `val_<metric>`.

    Args:
        main_metric: str. The metric the best epoch is chosen by.
        patience: int or `None`. Epochs without improvement before stopping;
            `None` never stops.
        history: list of metric dicts of epochs already run (a resumed
            run), replayed so that the best epoch and the patience count
            carry over.
        higher_is_better: bool. Whether a higher main metric is better
            (accuracy, F1) or a lower one (perplexity). Defaults to `True`.

    Attributes:
        history: list of per-epoch metric dicts.
        best_epoch: 1-based epoch with the best main metric.
        best: that epoch's metrics.
    """

    def __init__(
        self, main_metric, patience=None, history=None, higher_is_better=True
    ):
        super().__init__()
        self.main_metric = main_metric
        self.higher_is_better = higher_is_better
        self.patience = validate_positive_int(
            "patience", patience, allow_none=True
        )
        self._initial_history = list(history or [])
        self.on_train_begin()

    def evaluate(self):
        raise NotImplementedError

    def on_train_begin(self, logs=None):
        self.history, self.best_epoch, self.best, self._wait = [], None, None, 0
        for epoch, metrics in enumerate(self._initial_history):
            self._track(epoch, metrics)

    def on_epoch_end(self, epoch, logs=None):
        metrics = self.evaluate()
        if logs is not None:
            logs.update(
                {
                    f"val_{k}": v
                    for k, v in metrics.items()
                    if isinstance(v, (int, float))
                }
            )
        self._track(epoch, metrics)

    def _track(self, epoch, metrics):
        self.history.append(metrics)
        key = self.main_metric
        # Compared as "higher is better".
        sign = 1.0 if self.higher_is_better else -1.0
        main = sign * metrics[key]
        best = -math.inf if self.best is None else sign * self.best[key]
        if main > best or math.isnan(best):
            self.best, self.best_epoch, self._wait = metrics, epoch + 1, 0
        else:
            self._wait += 1
            if self.patience is not None and self._wait >= self.patience:
                if self.model is not None:
                    self.model.stop_training = True
