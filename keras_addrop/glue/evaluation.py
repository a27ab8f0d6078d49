"""Scoring GLUE dev sets during `fit`."""

import weakref

import numpy as np

from keras_addrop import backend
from keras_addrop.callbacks import DevEvaluation
from keras_addrop.glue.metrics import glue_metrics
from keras_addrop.glue.metrics import predictions_from_outputs
from keras_addrop.glue.tasks import get_task


def evaluate_glue(model, task, dataset):
    """Scores `model` on a batched, labelled dataset with the task's metrics.

    Returns:
        A dict from metric name to float: the task's metrics, then `"loss"`
        (cross-entropy of the logits, or mean squared error for regression).
    """
    _check_labelled(dataset)
    predict = _predict_function(model)
    labels, outputs = [], []
    for x, y in dataset:
        outputs.append(np.asarray(predict(x), "float64"))
        labels.append(np.asarray(y))
    task = get_task(task)
    outputs, labels = np.concatenate(outputs), np.concatenate(labels)
    predictions = predictions_from_outputs(task, outputs)
    metrics = glue_metrics(task, labels, predictions)
    metrics["loss"] = dev_loss(task, labels, outputs)
    return metrics


def _check_labelled(dataset):
    spec = getattr(dataset, "element_spec", None)
    if spec is not None and not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError(
            "Evaluation needs labels, and this dataset has none: GLUE test "
            "splits are unlabelled (their labels are hidden by the "
            "benchmark). Evaluate on the validation split; predict on test. "
            f"Received: element_spec={spec}"
        )


_PREDICT_FUNCTIONS = weakref.WeakKeyDictionary()


def _predict_function(model):
    # Cached, so that later epochs reuse the traces.
    if model not in _PREDICT_FUNCTIONS:
        _PREDICT_FUNCTIONS[model] = backend.predict_function(model)
    return _PREDICT_FUNCTIONS[model]


def dev_loss(task, labels, outputs):
    if get_task(task).is_regression:
        return float(np.mean((outputs.reshape(-1) - labels) ** 2))
    # Log-softmax in float64, then the gold class's negative log-likelihood.
    shifted = outputs - outputs.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    picked = log_probs[np.arange(len(labels)), labels.astype(int)]
    return float(-picked.mean())


class GlueEvaluation(DevEvaluation):
    """Scores the dev set with the task's GLUE metrics after every epoch.

    The metrics join the epoch's logs as `val_<metric>` (`val_accuracy`,
    `val_f1`, `val_matthews_corrcoef`, `val_pearson`, `val_spearman`, and
    `val_loss`), so
    the progress bar and `History` show them; list this callback before a
    `keras.callbacks.TensorBoard` for TensorBoard to record them too. It
    tracks the best epoch by the task's main metric and, with `patience`,
    stops training when that has not improved for `patience` epochs (the
    reference's early stopping). Predictions use the model in inference
    mode, so AD-DROP is never applied.

    Works on the TensorFlow, JAX and PyTorch backends (and under
    `keras.distribution.DataParallel` on JAX).

    Args:
        task: a task name or `keras_addrop.glue.GlueTask`.
        dataset: a batched dataset of `(x, label)` the model can predict on
            (e.g. from `keras_addrop.glue.preprocessed_batches`).
        patience: int or `None`. Epochs without improvement before stopping;
            `None` never stops.
        history: list of metric dicts of epochs already run (a resumed
            run), replayed so that the best epoch and the patience count
            carry over.

    Attributes:
        history: list of per-epoch metric dicts.
        best_epoch: 1-based epoch with the best main metric.
        best: that epoch's metrics.

    Example:

    ```python
    evaluation = keras_addrop.glue.GlueEvaluation("mrpc", dev_batches)
    model.fit(train_batches, epochs=4, callbacks=[evaluation])
    print(evaluation.best_epoch, evaluation.best)
    ```
    """

    def __init__(self, task, dataset, patience=None, history=None):
        self.task = get_task(task)
        _check_labelled(dataset)
        self.dataset = dataset
        super().__init__(self.task.metrics[0], patience, history)

    def evaluate(self):
        return evaluate_glue(self.model, self.task, self.dataset)
