"""Sampling and length-aware batching of GLUE examples."""

import numpy as np
import tensorflow as tf

from keras_addrop.validation import validate_non_negative_int
from keras_addrop.validation import validate_positive_int


def sample_indices(labels, limit=None, few_shot=None, seed=0):
    """Indices of a seeded subset of a training set.

    Args:
        labels: the training labels (int classes, or float scores).
        limit: int or `None`. Keep this many examples, drawn uniformly
            without replacement.
        few_shot: int or `None`. Keep this many examples of every class (the
            paper's few-shot setting, Table 5); classification only.
        seed: int. The same seed gives the same subset.

    Returns:
        A sorted int numpy array of indices.

    Raises:
        ValueError: for a non-positive `limit` or `few_shot`, `few_shot` on
            regression labels, or a class with fewer than `few_shot`
            examples.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    indices = np.arange(len(labels))
    limit = validate_positive_int("limit", limit, allow_none=True)
    few_shot = validate_positive_int("few_shot", few_shot, allow_none=True)
    if few_shot is not None:
        if labels.dtype.kind == "f":
            raise ValueError(
                "Few-shot sampling draws examples per class, so it needs "
                f"class labels. Received: few_shot={few_shot} with "
                "regression scores"
            )
        chosen = []
        for value in np.unique(labels):
            members = indices[labels == value]
            if len(members) < few_shot:
                raise ValueError(
                    f"Class {value} has {len(members)} examples, fewer than "
                    f"requested. Received: few_shot={few_shot}"
                )
            chosen.append(rng.choice(members, size=few_shot, replace=False))
        indices = np.concatenate(chosen)
    if limit is not None and limit < len(indices):
        indices = rng.choice(indices, size=limit, replace=False)
    return np.sort(indices)


def _preprocess_all(dataset, preprocessor, labelled):
    """Runs the preprocessor once over the dataset, into numpy arrays."""

    def preprocess(features, label=None):
        # By keyword: a positional pair would be read as (x, y).
        x = preprocessor(x=features)
        return x if label is None else (x, label)

    if labelled:
        mapped = dataset.batch(1024).map(preprocess)
    else:
        # A pair arrives as two arguments, a single text as one.
        mapped = dataset.batch(1024).map(
            lambda *texts: preprocess(texts if len(texts) > 1 else texts[0])
        )
    xs, labels = [], []
    for element in mapped.as_numpy_iterator():
        x, label = element if labelled else (element, None)
        xs.append(x)
        labels.append(label)
    if not xs:
        raise ValueError("The dataset to batch is empty.")
    x = {key: np.concatenate([part[key] for part in xs]) for key in xs[0]}
    if "padding_mask" in x:
        # int32 rather than bool: the backbones take int32 masks, and Keras'
        # first-batch build under tf.distribute cannot average booleans.
        x["padding_mask"] = x["padding_mask"].astype("int32")
    y = np.concatenate(labels) if labelled else None
    return x, y


def _check_batching(initial_epoch, pad_to_multiple_of, batch_multiple):
    return (
        validate_non_negative_int("initial_epoch", initial_epoch),
        validate_positive_int("pad_to_multiple_of", pad_to_multiple_of),
        validate_positive_int("batch_multiple", batch_multiple),
    )


def _check_multiple(batch_size, batch_multiple):
    if batch_size % batch_multiple:
        raise ValueError(
            "`batch_size` must be a multiple of `batch_multiple` (a "
            "data-parallel step splits every batch evenly over the "
            f"devices). Received: batch_size={batch_size}, "
            f"batch_multiple={batch_multiple}"
        )


def _lengths(x, prefix=""):
    """Each example's length: up to its last real token, by the padding
    mask or, for a preprocessor without one (RoFormer-v2's), by the rule of
    its backbone that token id 0 is padding. `prefix` picks one sequence
    of a pair (`"encoder_"` or `"decoder_"` of a seq2seq model)."""
    mask = prefix + "padding_mask"
    real = x[mask] if mask in x else x[prefix + "token_ids"] != 0
    real = np.asarray(real, bool)
    last = real.shape[1] - np.argmax(real[:, ::-1], axis=1)
    return np.where(real.any(axis=1), last, 0)


def _sequences(x):
    """The prefixes of the sequences `x` holds: `("",)`, or a seq2seq
    model's `("encoder_", "decoder_")`. Per-position labels belong to the
    last, the sequence the model's outputs are on."""
    if "encoder_token_ids" in x and "decoder_token_ids" in x:
        return ("encoder_", "decoder_")
    return ("",)


def _prefix_of(key, prefixes):
    return next(p for p in reversed(prefixes) if key.startswith(p))


def _usable_count(count, batch_size, batch_multiple):
    """Examples an epoch uses when its last batch is cut to a multiple of
    `batch_multiple`."""
    return count - count % batch_size % batch_multiple


def _batch_order(lengths, batch_size, length_aware, rng, batch_multiple=1):
    """Lists of example indices, one per batch.

    Length-aware: shuffled (when `rng` is given), then sorted by length
    within windows of 50 batches, cut into batches, and the batches
    shuffled, so batches hold similar lengths yet vary from epoch to epoch.
    The last batch is cut to a multiple of `batch_multiple`.
    """
    count = len(lengths)
    order = rng.permutation(count) if rng is not None else np.arange(count)
    # The examples that sit this epoch out are the shuffle's last ones.
    count = _usable_count(count, batch_size, batch_multiple)
    order = order[:count]
    if length_aware:
        window = 50 * batch_size
        chunks = [order[i : i + window] for i in range(0, count, window)]
        # A stable sort keeps the (shuffled) order among equal lengths.
        order = np.concatenate(
            [c[np.argsort(lengths[c], kind="stable")] for c in chunks]
        )
    batches = [order[i : i + batch_size] for i in range(0, count, batch_size)]
    if rng is not None and length_aware:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def preprocessed_batches(
    dataset,
    preprocessor,
    batch_size,
    labelled=True,
    length_aware=True,
    shuffle=False,
    seed=None,
    initial_epoch=0,
    pad_to_multiple_of=1,
    batch_multiple=1,
):
    """Preprocesses and batches a GLUE dataset, padding per batch.

    keras-hub preprocessors pad every example to `sequence_length`. With
    `length_aware=True` examples of similar length are batched together and
    each batch is cut to its longest example, so short tasks do not pay for
    `sequence_length`: the examples are shuffled (with `shuffle`), sorted by
    length within windows of 50 batches, cut into batches, and the batches
    shuffled, anew every epoch. Padding changes nothing in a BERT-style
    model's outputs, so every example gets the same prediction either way;
    only the composition and order of batches differ. Every example appears
    exactly once per epoch, and the number of batches is known
    (`ceil(examples / batch_size)`). The preprocessor runs once, up front.
    Feed the result to a model built with `preprocessor=None`.

    On JAX every new batch shape compiles the step again:
    `pad_to_multiple_of=16` keeps a run to a few widths. A data-parallel
    step over `n` devices needs batches that split evenly: with
    `batch_multiple=n` the last batch of an epoch is cut to a multiple of
    `n` (its other examples, fewer than `n`, sit that epoch out).

    Args:
        dataset: unbatched `tf.data.Dataset` of `(features, label)` (as from
            `keras_addrop.glue.load_glue`) or of features alone.
        preprocessor: a keras-hub text-classifier preprocessor, e.g.
            `keras_hub.models.BertTextClassifierPreprocessor`.
        batch_size: int.
        labelled: bool. Whether elements carry a label.
        length_aware: bool. Group by length and pad per batch (default), or
            keep the order and pad to the preprocessor's `sequence_length`.
        shuffle: bool. Shuffle every epoch.
        seed: int or `None`, the shuffle seed.
        initial_epoch: int. The epoch the first pass over the dataset
            belongs to. A run resumed after `k` epochs (as `fit` does with
            `keras_addrop.callbacks.BackupAndRestore`) passes `k`, so that
            its batches come in the order an uninterrupted run would see
            them. Defaults to `0`.
        pad_to_multiple_of: int. Each batch's width (with `length_aware`)
            is its longest example rounded up to a multiple of it, at most
            the preprocessor's `sequence_length`. Defaults to `1`.
        batch_multiple: int. Every batch's size is a multiple of it;
            `batch_size` must be one. Defaults to `1`.

    Returns:
        A batched `tf.data.Dataset` of `(x, label)` (or `x`), `x` the dict
        the preprocessor's outputs (`"token_ids"`, `"padding_mask"`, and
        `"segment_ids"` for BERT).

    Raises:
        ValueError: if `initial_epoch` is not an int >= 0, if
            `pad_to_multiple_of` or `batch_multiple` is not a positive int,
            or if `batch_size` is not a multiple of `batch_multiple`.

    Example:

    ```python
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        preset, sequence_length=128
    )
    train = keras_addrop.glue.preprocessed_batches(
        keras_addrop.glue.load_glue("rte", "train", glue_dir=glue_dir),
        preprocessor, batch_size=32, shuffle=True, seed=1,
    )
    ```
    """
    _check_batching(initial_epoch, pad_to_multiple_of, batch_multiple)
    _check_multiple(batch_size, batch_multiple)
    x, y = _preprocess_all(dataset, preprocessor, labelled)
    return array_batches(
        x,
        y,
        batch_size=batch_size,
        length_aware=length_aware,
        shuffle=shuffle,
        seed=seed,
        initial_epoch=initial_epoch,
        pad_to_multiple_of=pad_to_multiple_of,
        batch_multiple=batch_multiple,
    )


def array_batches(
    x,
    y=None,
    sample_weight=None,
    batch_size=32,
    length_aware=True,
    shuffle=False,
    seed=None,
    initial_epoch=0,
    pad_to_multiple_of=1,
    batch_multiple=1,
):
    """Batches preprocessed arrays as `preprocessed_batches` does.

    `x` is a dict of `(examples, sequence_length)` arrays (a preprocessor's
    outputs); `y` and `sample_weight` are `None`, one value per example, or
    one per position (a token classifier's), cut to each batch's width with
    `x`. A seq2seq model's `x` (`encoder_...` and `decoder_...` arrays) has
    two widths, each cut to its own longest example, the per-position
    labels with the decoder's; length-aware batching then groups examples
    by the sum of their two lengths. The other arguments are
    `preprocessed_batches`'.

    Returns:
        A batched `tf.data.Dataset` of `x`, `(x, y)` or
        `(x, y, sample_weight)`.
    """
    initial_epoch, pad_to_multiple_of, batch_multiple = _check_batching(
        initial_epoch, pad_to_multiple_of, batch_multiple
    )
    _check_multiple(batch_size, batch_multiple)
    prefixes = _sequences(x)
    side_lengths = {prefix: _lengths(x, prefix) for prefix in prefixes}
    lengths = sum(side_lengths.values())
    labels = [v for v in (y, sample_weight) if v is not None]
    rng = np.random.default_rng(seed) if shuffle else None

    def order():
        return _batch_order(
            lengths, batch_size, length_aware, rng, batch_multiple
        )

    # Every pass draws its order from one generator: skip the draws of the
    # epochs already trained.
    for _ in range(initial_epoch if shuffle else 0):
        order()
    count = _usable_count(len(lengths), batch_size, batch_multiple)
    if count == 0:
        raise ValueError(
            f"The dataset has {len(lengths)} example(s), fewer than "
            f"`batch_multiple`. Received: batch_multiple={batch_multiple}"
        )
    num_batches = -(-count // batch_size)

    def batches():
        for indices in order():
            widths = dict.fromkeys(prefixes)
            if length_aware:
                for prefix in prefixes:
                    longest = side_lengths[prefix][indices].max()
                    widths[prefix] = min(
                        -(-longest // pad_to_multiple_of) * pad_to_multiple_of,
                        x[prefix + "token_ids"].shape[1],
                    )
            batch_x = {
                key: value[indices, : widths[_prefix_of(key, prefixes)]]
                for key, value in x.items()
            }
            width = widths[prefixes[-1]]
            rest = tuple(
                v[indices, :width] if v.ndim == 2 else v[indices]
                for v in labels
            )
            yield (batch_x, *rest) if rest else batch_x

    x_signature = {
        key: tf.TensorSpec((None, None), tf.as_dtype(value.dtype))
        for key, value in x.items()
    }
    signature = x_signature
    if labels:
        signature = (x_signature,) + tuple(
            tf.TensorSpec((None,) * v.ndim, tf.as_dtype(v.dtype))
            for v in labels
        )
    result = tf.data.Dataset.from_generator(batches, output_signature=signature)
    result = result.apply(tf.data.experimental.assert_cardinality(num_batches))
    return result.prefetch(2)
