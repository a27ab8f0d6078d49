"""Attribution of predictions to attention weights (AD-DROP's step 1-3)."""

import keras
from keras import ops

from keras_addrop import backend
from keras_addrop.layers import ADDROP_ATTENTION
from keras_addrop.layers.addrop_attention import CapturedAttention
from keras_addrop.layers.addrop_attention import addrop_scope
from keras_addrop.layers.attention_call import layer_of
from keras_addrop.validation import validate_choice
from keras_addrop.validation import validate_positive_int

LABELS = ("pseudo", "gold")
SCORES = ("logit", "log_probability")
METHODS = ("gradient", "integrated_gradients", "attention", "random")

# Under float16 the gradients w.r.t. attention weights underflow (most of
# the first layer's become exactly 0). Only their ranking matters, so the
# float32 target is scaled up before differentiating and the result scaled
# back. With 2**10, the top-30% candidates agree with float32's on more
# than 95% of positions (tests/distribute_test.py).
FLOAT16_TARGET_SCALE = 1024.0


def attribution_target(
    y_pred, y=None, labels="pseudo", sample_weight=None, score="logit"
):
    """The scalar AD-DROP differentiates, in float32.

    Classification (`y_pred` of shape `(batch, classes)` with more than one
    class): the sum over the batch of each example's logit for its pseudo
    label (`labels="pseudo"`, the argmax of `y_pred`) or its gold label
    (`labels="gold"`). Examples do not interact, so one gradient of the sum
    gives every example its own attribution.

    Token classification (`y_pred` of shape `(batch, sequence, classes)`):
    the same per token, summed over the tokens that count: those with
    `sample_weight > 0` (never padding, special tokens or the non-first
    pieces of a word), every token when `sample_weight` is `None`. Tokens
    that do not count do not reach the target at all.

    With `score="log_probability"` the picked value is the label's
    log-probability (log-softmax) instead of its logit: the authors' choice
    for NER, whose negative mean cross-entropy against the pseudo labels is
    this sum up to a positive factor, so it ranks keys the same way.

    Regression (one output unit): there is no pseudo label; the target is
    minus the batch mean squared error against the gold score `y`, so the
    highest attribution marks the keys where more attention lowers the loss
    most.

    Args:
        y_pred: the model's logits.
        y: gold labels (or scores), needed for `labels="gold"` and for
            regression.
        labels: `"pseudo"` or `"gold"`.
        sample_weight: `None`, or per-token weights `(batch, sequence)` for
            token-level outputs. Sentence-level targets do not read it.
        score: `"logit"` (the paper's) or `"log_probability"`.

    Returns:
        A float32 scalar.
    """
    if y_pred.shape[-1] == 1 and len(y_pred.shape) == 2:
        y_pred = ops.cast(y_pred, "float32")
        if y is None:
            raise ValueError(
                "A regression model (one output unit) has no pseudo label: "
                "its attribution differentiates the squared error against "
                "the gold score, so `y` is required. Received: y=None"
            )
        error = ops.subtract(ops.squeeze(y_pred, -1), ops.cast(y, "float32"))
        return ops.negative(ops.mean(ops.square(error)))
    token_level = len(y_pred.shape) == 3
    if labels == "pseudo":
        classes = ops.argmax(y_pred, axis=-1)
    else:
        if y is None:
            raise ValueError(
                "`labels='gold'` differentiates the true class's logit, so "
                "`y` is required. Received: y=None"
            )
        shape = ops.shape(y_pred)[:-1] if token_level else (-1,)
        classes = ops.reshape(ops.cast(y, "int32"), shape)
    counts = None
    if token_level and sample_weight is not None:
        counts = ops.greater(ops.cast(sample_weight, "float32"), 0.0)
        # Tokens that do not count may carry any label (-100, ...).
        classes = ops.where(counts, ops.cast(classes, "int32"), 0)
    if score == "log_probability":
        y_pred = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
    # Picked first, then cast: a language model's float16 logits are never
    # copied to float32 over the whole vocabulary for the logit score.
    picked = ops.take_along_axis(
        y_pred, ops.expand_dims(ops.cast(classes, "int32"), -1), axis=-1
    )
    picked = ops.cast(picked, "float32")
    if counts is not None:
        picked = ops.where(ops.expand_dims(counts, -1), picked, 0.0)
    return ops.sum(picked)


def model_attribution_target(
    model, x, y, y_pred, sample_weight=None, labels="pseudo"
):
    """The model's own target (`compute_attribution_target`, as the AD-DROP
    models define it) or, for another model, `attribution_target`."""
    compute = getattr(model, "compute_attribution_target", None)
    if compute is None:
        return attribution_target(y_pred, y, labels, sample_weight)
    return compute(
        x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, labels=labels
    )


def _target_scale(model):
    if model.dtype_policy.compute_dtype == "float16":
        return FLOAT16_TARGET_SCALE
    return 1.0


def _default_layers(model):
    calls = getattr(model, "addrop_attention_calls", None)
    if calls is None:
        raise ValueError(
            "`layers` is required for a model that is not an AD-DROP model "
            "(one without `addrop_attention_calls`). Received: "
            f"model={type(model).__name__}, layers=None"
        )
    return calls


def _check_layers(layers):
    for layer in layers:
        if not isinstance(layer_of(layer), ADDROP_ATTENTION):
            raise ValueError(
                "Attribution needs AD-DROP attention layers "
                "(`keras_addrop.layers.ADDropAttention`, ...; see "
                "`keras_addrop.swap_attention`). Received: "
                f"layer={layer!r}"
            )


def compute_attribution(
    model,
    x,
    y=None,
    layers=None,
    labels="pseudo",
    training=False,
    method="gradient",
    ig_steps=20,
    ig_steps_per_pass=2,
    seed=None,
    sample_weight=None,
):
    """Attribution of a model's predictions to its attention weights.

    `A_l` is layer `l`'s attention weights that multiply `V` (after the
    softmax and the attention dropout), shape `(batch, heads, query, key)`;
    `s` is the model's attribution target (`compute_attribution_target`
    of an AD-DROP model, else `keras_addrop.attribution.attribution_target`):
    the sum of the logits of the pseudo (or gold) labels, per example or,
    for token-level outputs, per token that counts; minus the batch mean
    squared error for regression. Methods (the paper's Table 2):

    - `"gradient"` (GA, the paper's default): `B_l = ds / dA_l`. Not
      multiplied by `A`, no absolute value: a large positive value marks a
      position the prediction relies on. All layers come from one forward
      pass and one gradient call, and no weight gradient is computed.
    - `"integrated_gradients"` (IGA, Hao et al. 2021):
      `B_l = A_l * mean_k ds / d(alpha_k A_l)` evaluated at `alpha_k A_l`,
      `alpha_k = k / m` for `k = 1..m` (`m = ig_steps`), zero baseline.
      Always with dropout off (the model's mode is a call argument, so
      nothing needs restoring). The `m` steps are batched: the inputs are
      stacked `ig_steps_per_pass` times along the batch axis, each copy with
      its own `alpha`, so a layer costs `ceil(m / ig_steps_per_pass)`
      passes. Pseudo labels come from one extra prediction with dropout off.
    - `"attention"` (AA): `B_l = A_l`, from one forward pass, no gradient.
    - `"random"` (RD): uniform random scores in [0, 1) of the same shape;
      the AD-DROP train step turns them into candidates by comparing them
      with `p` (each real position a candidate with probability `p`).

    Under `mixed_float16` the float32 target is scaled so the float16
    gradients do not underflow; results are scaled back and in float32.

    On every backend the gradients come from one gradient call over all
    layers: a `tf.GradientTape` on TensorFlow, `jax.grad` with respect to zero
    "probes" added to the attention weights on JAX, `torch.autograd.grad` on
    PyTorch; the three agree to about 1e-7.

    Args:
        model: a Keras model whose attention layers include `layers` (for
            example a `keras_addrop.models.ADDropBertTextClassifier`), called
            on preprocessed inputs.
        x: the model's inputs (for keras-hub classifiers, the preprocessed
            dict with `"token_ids"`, `"segment_ids"`, `"padding_mask"`).
        y: gold labels, needed for `labels="gold"` and for regression.
        layers: list of AD-DROP attention layers
            (`keras_addrop.layers.ADDropAttention`, ...) or of
            `keras_addrop.layers.AttentionCall`s, which name one call of a
            layer the forward pass calls several times (ALBERT's shared
            encoders). Defaults to the model's selected calls
            (`addrop_attention_calls`).
        labels: `"pseudo"` (the argmax of the model's own prediction, the
            paper's choice) or `"gold"`.
        training: bool. Whether the forward pass of GA, AA and RD runs in
            training mode (dropout on), as in the AD-DROP train step.
            Defaults to `False`, deterministic, for visualisation.
        method: `"gradient"`, `"integrated_gradients"`, `"attention"` or
            `"random"`. Defaults to `"gradient"`.
        ig_steps: int, `m` for integrated gradients. Defaults to 20.
        ig_steps_per_pass: int, how many `alpha` steps share one batched
            pass. Memory grows with it: a pass holds the activations of
            `ig_steps_per_pass` copies of the batch (at MiniLM-L6, batch 32,
            length 128, ten copies exhausted 24 GiB). Defaults to 2.
        seed: seed of the `"random"` method (`None`, an int or a
            `keras.random.SeedGenerator`).
        sample_weight: `None`, or the per-token weights of token-level
            outputs: only tokens with weight above 0 reach the target.

    Returns:
        A list of float32 tensors of shape `(batch, heads, query, key)`, one
        per entry of `layers` (one per call), in their order.

    Raises:
        ValueError: for an unknown `method` or `labels`, bad `ig_steps`, a
            missing `y`, layers that are not AD-DROP attention, that the
            forward pass does not call, or that it calls several times when
            given without the call (`AttentionCall`).

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
    ig_first, ig_second = keras_addrop.attribution.compute_attribution(
        model, x, method="integrated_gradients"
    )
    ```
    """
    validate_choice("method", method, METHODS)
    validate_choice("labels", labels, LABELS)
    ig_steps = validate_positive_int("ig_steps", ig_steps)
    ig_steps_per_pass = validate_positive_int(
        "ig_steps_per_pass", ig_steps_per_pass
    )
    layers = list(_default_layers(model) if layers is None else layers)
    _check_layers(layers)
    if method in ("attention", "random"):
        weights = _attention_weights(model, x, layers, training)
        if method == "attention":
            return [ops.stop_gradient(ops.cast(w, "float32")) for w in weights]
        return [keras.random.uniform(ops.shape(w), seed=seed) for w in weights]
    if method == "integrated_gradients":
        return _integrated_gradients(
            model,
            x,
            y,
            sample_weight,
            layers,
            labels,
            ig_steps,
            ig_steps_per_pass,
        )
    scale = _target_scale(model)

    def forward(capture, shapes_only=False):
        with addrop_scope(capture=capture):
            y_pred = model(x, training=training and not shapes_only)
        target = model_attribution_target(
            model, x, y, y_pred, sample_weight, labels
        )
        return ops.multiply(target, scale), y_pred

    gradients, _ = backend.gradients_of_captured(forward, layers)
    return [ops.cast(g, "float32") / scale for g in gradients]


def _attention_weights(model, x, layers, training):
    captured = CapturedAttention(layers)
    with addrop_scope(capture=captured.functions):
        model(x, training=training)
    return captured.weights()


def _integrated_gradients(
    model, x, y, sample_weight, layers, labels, steps, per_pass
):
    scale = _target_scale(model)
    batch_size = ops.shape(keras.tree.flatten(x)[0])[0]
    y_pred = model(x, training=False)
    regression = y_pred.shape[-1] == 1 and len(y_pred.shape) == 2
    if regression:
        # Validated here so that the error names `y`, not a tiled copy.
        attribution_target(y_pred, y)
        classes = ops.cast(y, "float32")
    elif labels == "pseudo":
        classes = ops.argmax(ops.cast(y_pred, "float32"), axis=-1)
    else:
        attribution_target(y_pred, y, labels)
        shape = ops.shape(y_pred)[:-1] if len(y_pred.shape) == 3 else (-1,)
        classes = ops.reshape(ops.cast(y, "int32"), shape)
    alphas = [k / steps for k in range(1, steps + 1)]
    results = []
    previous = None
    for layer in layers:
        total = None
        weights = None
        for start in range(0, steps, per_pass):
            chunk = alphas[start : start + per_pass]
            copies = len(chunk)
            # One pass at a time: concurrent passes multiply peak memory.
            stacked = keras.tree.map_structure(
                lambda t: ops.concatenate([t] * copies, axis=0),
                backend.after(previous, x),
            )
            alpha = ops.repeat(ops.convert_to_tensor(chunk), batch_size)
            alpha = ops.reshape(alpha, (-1, 1, 1, 1))
            stacked_classes = ops.concatenate([classes] * copies, axis=0)
            stacked_weight = (
                None
                if sample_weight is None
                else ops.concatenate([sample_weight] * copies, axis=0)
            )

            def forward(
                capture,
                shapes_only=False,
                stacked=stacked,
                alpha=alpha,
                copies=copies,
                stacked_classes=stacked_classes,
                stacked_weight=stacked_weight,
            ):
                watch = capture[layer]
                # The weights at alpha = 1 are kept; the scaled ones are
                # what the gradient is taken with respect to.
                unscaled = CapturedAttention(
                    [layer],
                    transform=lambda _, w: watch(w * ops.cast(alpha, w.dtype)),
                )
                with addrop_scope(capture=unscaled.functions):
                    outputs = model(stacked, training=False)
                # Pseudo labels were fixed above: every copy's target is
                # its "gold" one.
                target = model_attribution_target(
                    model,
                    stacked,
                    stacked_classes,
                    outputs,
                    stacked_weight,
                    "gold",
                )
                if regression:
                    # The mean over all copies, times their number: the sum
                    # of every copy's own batch-mean target.
                    target = target * copies
                return ops.multiply(target, scale), unscaled.weights()[0]

            (gradient,), stacked_weights = backend.gradients_of_captured(
                forward, [layer]
            )
            gradient = ops.cast(gradient, "float32")
            # [copies * B, H, T, S] -> [copies, B, H, T, S], summed over alphas.
            # `ops.shape`, not `.shape`: length-aware batches trace with
            # unknown lengths.
            shape = (copies, -1) + tuple(ops.shape(gradient)[1:])
            gradient = ops.sum(ops.reshape(gradient, shape), axis=0)
            total = gradient if total is None else total + gradient
            previous = total
            if weights is None:
                weights = ops.cast(stacked_weights[:batch_size], "float32")
        results.append(ops.stop_gradient(weights * total / (steps * scale)))
    return results
