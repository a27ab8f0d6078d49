"""Attribution of predictions to attention weights (AD-DROP's step 1-3)."""

from keras import ops

from keras_addrop import tf_backend
from keras_addrop.layers.addrop_attention import ADDropAttention
from keras_addrop.layers.addrop_attention import addrop_scope

LABELS = ("pseudo", "gold")

# Under float16 the gradients w.r.t. attention weights underflow (most of
# the first layer's become exactly 0). Only their ranking matters, so the
# float32 target is scaled up before differentiating and the result scaled
# back; 2**10 keeps agreement with float32 above 99% on BERT.
FLOAT16_TARGET_SCALE = 1024.0


def validate_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected one of "
            f"{list(choices)}. Received: {name}={value!r}"
        )
    return value


def attribution_target(y_pred, y=None, labels="pseudo"):
    """The scalar AD-DROP differentiates, in float32.

    Classification (`y_pred` of shape `(batch, classes)` with more than one
    class): the sum over the batch of each example's logit for its pseudo
    label (`labels="pseudo"`, the argmax of `y_pred`) or its gold label
    (`labels="gold"`). Examples do not interact, so one gradient of the sum
    gives every example its own attribution.

    Regression (one output unit): there is no pseudo label; the target is
    minus the batch mean squared error against the gold score `y`, so the
    highest attribution marks the keys where more attention lowers the loss
    most.
    """
    y_pred = ops.cast(y_pred, "float32")
    if y_pred.shape[-1] == 1:
        if y is None:
            raise ValueError(
                "A regression model (one output unit) has no pseudo label: "
                "its attribution differentiates the squared error against "
                "the gold score, so `y` is required. Received: y=None"
            )
        error = ops.subtract(ops.squeeze(y_pred, -1), ops.cast(y, "float32"))
        return ops.negative(ops.mean(ops.square(error)))
    if labels == "pseudo":
        classes = ops.argmax(y_pred, axis=-1)
    else:
        if y is None:
            raise ValueError(
                "`labels='gold'` differentiates the true class's logit, so "
                "`y` is required. Received: y=None"
            )
        classes = ops.reshape(ops.cast(y, "int32"), (-1,))
    picked = ops.take_along_axis(
        y_pred, ops.expand_dims(ops.cast(classes, "int32"), -1), axis=-1
    )
    return ops.sum(picked)


def _target_scale(model):
    if model.dtype_policy.compute_dtype == "float16":
        return FLOAT16_TARGET_SCALE
    return 1.0


def _default_layers(model):
    layers = getattr(model, "addrop_attention_layers", None)
    if layers is None:
        raise ValueError(
            "`layers` is required for a model that is not an AD-DROP model "
            "(one without `addrop_attention_layers`). Received: "
            f"model={type(model).__name__}, layers=None"
        )
    return layers


def compute_attribution(
    model, x, y=None, layers=None, labels="pseudo", training=False
):
    """Gradient attribution (GA) of every selected attention layer.

    For each layer `l`, `B_l = ds / dA_l`, where `A_l` is the layer's
    attention weights that multiply `V` (after the softmax and the attention
    dropout) and `s` is `keras_addrop.attribution.attribution_target`: the
    sum of the logits of the pseudo (or gold) labels, or minus the mean
    squared error for regression. Not multiplied by `A`, no absolute value:
    a large positive value marks a position the prediction relies on. All
    layers come from one forward pass and one gradient call, and no weight
    gradient is computed. Under `mixed_float16` the float32 target is scaled
    so the float16 gradients do not underflow; the result is scaled back.

    Args:
        model: a Keras model whose attention layers include `layers` (for
            example a `keras_addrop.models.ADDropBertTextClassifier`), called
            on preprocessed inputs.
        x: the model's inputs (for keras-hub classifiers, the preprocessed
            dict with `"token_ids"`, `"segment_ids"`, `"padding_mask"`).
        y: gold labels, needed for `labels="gold"` and for regression.
        layers: list of `keras_addrop.layers.ADDropAttention` layers. Defaults
            to the model's selected AD-DROP layers.
        labels: `"pseudo"` (the argmax of the model's own prediction, the
            paper's choice) or `"gold"`.
        training: bool. Whether the forward pass runs in training mode
            (dropout on), as in the AD-DROP train step. Defaults to `False`,
            deterministic, for visualisation.

    Returns:
        A list of float32 tensors of shape `(batch, heads, query, key)`, one
        per layer, in the order of `layers`.

    Raises:
        ValueError: for an unknown `labels`, a missing `y`, layers that are
            not `ADDropAttention` or that the forward pass does not call.

    Example:

    ```python
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=16,
    )
    model = keras_addrop.models.ADDropBertTextClassifier(
        backbone, num_classes=2, addrop_layers="all"
    )
    x = {
        "token_ids": keras.ops.array([[2, 5, 7, 3, 0, 0]]),
        "segment_ids": keras.ops.zeros((1, 6), "int32"),
        "padding_mask": keras.ops.array([[1, 1, 1, 1, 0, 0]], "bool"),
    }
    first, second = keras_addrop.attribution.compute_attribution(model, x)
    ```
    """
    validate_choice("labels", labels, LABELS)
    layers = list(_default_layers(model) if layers is None else layers)
    for layer in layers:
        if not isinstance(layer, ADDropAttention):
            raise ValueError(
                "Attribution needs `keras_addrop.layers.ADDropAttention` "
                "layers (see `keras_addrop.swap_attention`). Received: "
                f"layer={layer!r}"
            )
    scale = _target_scale(model)

    def forward(capture):
        with addrop_scope(capture=capture):
            y_pred = model(x, training=training)
        target = attribution_target(y_pred, y, labels)
        return ops.multiply(target, scale), y_pred

    gradients, _ = tf_backend.gradients_of_captured(forward, layers)
    return [ops.cast(g, "float32") / scale for g in gradients]
