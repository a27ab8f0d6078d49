"""Scoring a token classifier's dev set by entity F1 during `fit`."""

import keras
import numpy as np
import tensorflow as tf

from keras_addrop.backend import WIDTH_MULTIPLE
from keras_addrop.callbacks import DevEvaluation
from keras_addrop.glue.batching import _lengths
from keras_addrop.glue.evaluation import _predict_function
from keras_addrop.ner.entities import entity_scores


def preprocess_sentences(preprocessor, words, tags=None, chunk=512):
    """Runs a `TokenClassifierPreprocessor` over sentences, up front.

    Args:
        preprocessor: a `keras_addrop.models.TokenClassifierPreprocessor`.
        words: a list of sentences, each a list of words.
        tags: `None` or int tags shaped as `words`.
        chunk: sentences per preprocessor call.

    Returns:
        `(x, y, sample_weight)` NumPy arrays (`y` and `sample_weight`
        `None` without `tags`), `x` the model's input dict.
    """
    parts = []
    for start in range(0, len(words), chunk):
        x = tf.ragged.constant(words[start : start + chunk], dtype=tf.string)
        y = None
        if tags is not None:
            y = tf.ragged.constant(tags[start : start + chunk], dtype=tf.int32)
        out = keras.utils.unpack_x_y_sample_weight(preprocessor(x, y))
        parts.append(keras.tree.map_structure(np.asarray, out))
    x = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
    if "padding_mask" in x:  # As `preprocessed_batches` gives it.
        x["padding_mask"] = x["padding_mask"].astype("int32")
    if tags is None:
        return x, None, None
    y = np.concatenate([p[1] for p in parts])
    sample_weight = np.concatenate([p[2] for p in parts])
    return x, y, sample_weight


class EntityEvaluation(DevEvaluation):
    """Scores a dev set of tagged sentences by entity F1 after every epoch.

    Predicts every dev sentence in inference mode (AD-DROP never applies),
    takes each word's tag at its first piece (words cut off by truncation
    get tag 0, usually `"O"`, so they count against recall), and scores the
    word tags with `keras_addrop.ner.entity_scores` (`seqeval`'s default
    mode) over the whole dev set: micro `"precision"`, `"recall"` and
    `"f1"`, per-type scores under `"types"`, and `"loss"` (cross-entropy of
    the tokens that carry a tag). The numbers join the epoch's logs as
    `val_f1`, `val_precision`, `val_recall` and `val_loss`. With `patience`
    it stops training when entity F1 has not improved for `patience`
    epochs. Works on the TensorFlow, JAX and PyTorch backends.

    Args:
        words: a list of sentences, each a list of words.
        tags: their tag strings, shaped as `words`.
        tag_names: the tag of each class id.
        preprocessor: a `keras_addrop.models.TokenClassifierPreprocessor`,
            run once, up front.
        batch_size: int. Sentences per prediction batch. Defaults to `32`.
        patience: int or `None`. Epochs without improvement before stopping;
            `None` never stops.
        history: list of metric dicts of epochs already run (a resumed
            run).

    Attributes:
        history: list of per-epoch metric dicts.
        best_epoch: 1-based epoch with the best entity F1.
        best: that epoch's metrics.

    Example:

    ```python
    dev = keras_addrop.ner.read_tagged_file("dev.conll")
    evaluation = keras_addrop.ner.EntityEvaluation(
        dev.words, dev.tags, tagger.tag_names, tagger.preprocessor
    )
    tagger.fit(train_words, train_tags, epochs=3, callbacks=[evaluation])
    print(evaluation.best_epoch, evaluation.best["f1"])
    ```
    """

    def __init__(
        self,
        words,
        tags,
        tag_names,
        preprocessor,
        batch_size=32,
        patience=None,
        history=None,
    ):
        from keras_addrop.ner.tagged_files import TaggedSentences

        self.tags = [list(t) for t in tags]
        self.tag_names = list(tag_names)
        ids = TaggedSentences(words, self.tags).tag_ids(self.tag_names)
        x, y, sample_weight = preprocess_sentences(preprocessor, words, ids)
        self.batches = list(_ordered_batches(x, y, sample_weight, batch_size))
        self.first_pieces = preprocessor.first_pieces(words).to_list()
        super().__init__("f1", patience, history)

    def evaluate(self):
        predict = _predict_function(self.model)
        logits, labels, weights = [], [], []
        for x, y, sample_weight in self.batches:
            logits.append(np.asarray(predict(x), "float64"))
            labels.append(np.asarray(y))
            weights.append(np.asarray(sample_weight))
        # One row per sentence, as wide as its batch.
        predicted = [row for batch in logits for row in batch.argmax(-1)]
        tags = [
            [self.tag_names[predicted[b][s] if s >= 0 else 0] for s in starts]
            for b, starts in enumerate(self.first_pieces)
        ]
        scores = entity_scores(self.tags, tags)
        metrics = {k: scores[k] for k in ("f1", "precision", "recall")}
        metrics["loss"] = _token_loss(logits, labels, weights)
        metrics["types"] = scores["types"]
        return metrics


def _ordered_batches(x, y, sample_weight, batch_size):
    """Batches in sentence order, each cut to its longest sentence (a
    multiple of `backend.WIDTH_MULTIPLE`): a dev set of short sentences
    costs what they are, not `sequence_length`."""
    lengths = _lengths(x)
    full = x["token_ids"].shape[1]
    for start in range(0, len(lengths), batch_size):
        end = start + batch_size
        width = -(-max(lengths[start:end].max(), 1) // WIDTH_MULTIPLE)
        width = min(width * WIDTH_MULTIPLE, full)
        yield (
            {k: v[start:end, :width] for k, v in x.items()},
            y[start:end, :width],
            sample_weight[start:end, :width],
        )


def _token_loss(logits, labels, weights):
    """Mean cross-entropy of the tokens with weight > 0, in float64."""
    total, count = 0.0, 0.0
    for batch, label, weight in zip(logits, labels, weights):
        shifted = batch - batch.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        picked = np.take_along_axis(log_probs, label[..., None], -1)[..., 0]
        total += float(-(picked * weight).sum())
        count += float(weight.sum())
    return total / count if count else 0.0
