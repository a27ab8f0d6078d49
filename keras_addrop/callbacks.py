import keras

from keras_addrop.api_export import keras_addrop_export


@keras_addrop_export("keras_addrop.callbacks.CrossTuning")
class CrossTuning(keras.callbacks.Callback):
    """Cross-tuning: alternate plain and AD-DROP epochs (Algorithm 1).

    Epochs are counted from 1: epoch 1 is plain fine-tuning, epoch 2 applies
    AD-DROP, epoch 3 is plain, and so on. The phase follows from the epoch
    number alone, so a run resumed by `keras.callbacks.BackupAndRestore` (or
    with `initial_epoch`) continues in the right phase. The callback flips
    the model's `addrop_enabled` switch, a variable that the traced training
    step reads, so no epoch retraces or recompiles. When training ends, the
    switch returns to the value it had before `fit`.

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
