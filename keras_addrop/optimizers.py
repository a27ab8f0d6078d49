"""Optimizer fixes that AD-DROP models apply, for any Keras model to use."""

from keras_addrop import backend


def merge_repeated_rows(optimizer):
    """Makes an optimizer update repeated embedding rows as a dense gradient.

    On the TensorFlow backend the gradient of an embedding lookup is a
    `tf.IndexedSlices` with one slice per occurrence of a token in the
    batch. Keras 3.15's optimizers square (or otherwise transform) such a
    gradient slice by slice before the slices are summed into the variable,
    so the row of a token that occurs n times in a batch gets the sum of n
    squared slices as Adam's second moment, instead of the square of the
    row's gradient. Its update is then not the one the same model's dense
    gradient gives: with Adam, up to several times the learning rate where
    Adam's first step moves a weight by at most the learning rate. Every
    optimizer with a non-linear update (Adam, AdamW, RMSprop, Adagrad, ...)
    and every model with an embedding table is affected; SGD is not.

    This function changes `optimizer` in place so that the slices of each
    repeated row are summed first: where the optimizer receives gradients
    (gradient clipping then sees the dense gradient's norm) and where it
    updates each variable (after `tf.distribute` has gathered the replicas'
    slices, which repeats tokens that several replicas looked up). The
    update then equals the dense gradient's; the cost is a `tf.unique` over
    the batch's token ids, not the vocabulary. Applying it twice changes
    nothing. The change is not part of the optimizer's config: apply it
    again to an optimizer rebuilt from a saved file.

    On JAX and PyTorch the gradient of an embedding lookup is dense and
    Keras' update of it is already the dense one: the optimizer is returned
    unchanged.

    The AD-DROP models apply it to their optimizer when `fit` starts (their
    `merge_repeated_rows` argument, `True` by default); this function gives
    stock keras-hub models the same update.

    Args:
        optimizer: a `keras.optimizers.Optimizer`, or a
            `keras.optimizers.LossScaleOptimizer` (its inner optimizer is
            changed).

    Returns:
        `optimizer` itself.

    Example:

    ```python
    classifier = keras_hub.models.BertTextClassifier.from_preset(
        "bert_base_en_uncased", num_classes=2
    )
    optimizer = keras_addrop.optimizers.merge_repeated_rows(
        keras.optimizers.AdamW(2e-5)
    )
    classifier.compile(optimizer=optimizer)
    ```
    """
    return backend.merge_repeated_rows(optimizer)
