"""GLUE metrics, computed by scikit-learn and SciPy."""

import numpy as np
import scipy.stats
import sklearn.metrics

from keras_addrop.glue.tasks import get_task


def predictions_from_outputs(task, outputs):
    """Model outputs (logits or scores) -> predicted labels or scores."""
    outputs = np.asarray(outputs, dtype="float64")
    if get_task(task).is_regression:
        return outputs.reshape(-1)
    return np.argmax(outputs, axis=-1)


def glue_metrics(task, labels, predictions):
    """The task's GLUE metrics.

    Accuracy and F1 (of the positive class) for MRPC and QQP, Matthews
    correlation for CoLA, Pearson and Spearman correlation for STS-B, and
    accuracy elsewhere; the first value is the task's main metric.

    Args:
        task: a task name or `keras_addrop.glue.GlueTask`.
        labels: gold labels (or scores for STS-B).
        predictions: predicted labels (or scores), e.g. from
            `predictions_from_outputs`.

    Returns:
        A dict from metric name to float, in the task's metric order.

    Raises:
        ValueError: if `labels` and `predictions` differ in length or are
            empty.
    """
    task = get_task(task)
    labels = np.asarray(labels).reshape(-1)
    predictions = np.asarray(predictions).reshape(-1)
    if len(labels) != len(predictions) or len(labels) == 0:
        raise ValueError(
            "`labels` and `predictions` must be non-empty and of equal "
            f"length. Received: len(labels)={len(labels)}, "
            f"len(predictions)={len(predictions)}"
        )
    functions = {
        "accuracy": sklearn.metrics.accuracy_score,
        "f1": sklearn.metrics.f1_score,
        "matthews_corrcoef": sklearn.metrics.matthews_corrcoef,
        "pearson": lambda a, b: scipy.stats.pearsonr(a, b).statistic,
        "spearman": lambda a, b: scipy.stats.spearmanr(a, b).statistic,
    }
    return {
        name: float(functions[name](labels, predictions))
        for name in task.metrics
    }


def majority_baseline(task, train_labels, dev_labels):
    """Dev metrics of always predicting the most frequent training label
    (the mean training score for regression, whose correlations are
    undefined and reported as 0)."""
    task = get_task(task)
    dev_labels = np.asarray(dev_labels)
    if task.is_regression:
        return {name: 0.0 for name in task.metrics}
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    constant = np.full_like(dev_labels, values[np.argmax(counts)])
    return glue_metrics(task, dev_labels, constant)
