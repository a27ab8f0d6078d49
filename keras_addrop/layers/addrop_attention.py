import contextlib
import functools
import threading

import keras
from keras import ops
from keras_hub.src.layers.modeling.cached_multi_head_attention import (
    CachedMultiHeadAttention,
)

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.layers.attention_call import AttentionCall
from keras_addrop.layers.attention_call import layer_of
from keras_addrop.layers.attention_call import scope_key
from keras_addrop.validation import invalid_argument

# MirroredStrategy runs each replica's step in its own thread, so a
# thread-local scope gives every replica its own masks and captures.
_local = threading.local()


class _ADDropScope:
    def __init__(self, keep_masks, capture):
        self.keep_masks = {
            scope_key(k): v for k, v in (keep_masks or {}).items()
        }
        self.capture = {scope_key(k): v for k, v in (capture or {}).items()}
        # Calls of each layer so far: a shared layer (ALBERT's) is called
        # several times in one forward pass, each call with its own entry.
        self.calls = {}

    def lookup(self, layer):
        index = self.calls.get(id(layer), 0)
        self.calls[id(layer)] = index + 1
        return tuple(
            _call_or_layer(table, id(layer), index)
            for table in (self.keep_masks, self.capture)
        )


def _call_or_layer(table, layer_id, index):
    value = table.get((layer_id, index))
    return table.get((layer_id, None)) if value is None else value


@contextlib.contextmanager
def addrop_scope(keep_masks=None, capture=None):
    """Hands keep masks and capture functions to `ADDropAttention` layers.

    Inside the scope, every `keras_addrop.layers.ADDropAttention` layer named
    in `keep_masks` or `capture` computes attention explicitly instead of
    taking the stock (possibly fused) path. The functional graph, presets and
    preprocessors stay untouched: layers read the scope when they are called.
    Scopes do not nest; an inner scope replaces the outer one until it exits.

    Keys are AD-DROP attention layers (every call of the layer inside the
    scope) or `keras_addrop.layers.AttentionCall`s (one call of a layer
    that the forward pass calls several times, as ALBERT's shared encoders;
    calls are counted from the scope's start).

    Args:
        keep_masks: dict mapping an `ADDropAttention` layer or an
            `AttentionCall` to a boolean keep mask of shape
            `(batch, num_heads, query, key)`; `False` positions are dropped
            before the softmax, exactly like padding.
        capture: dict mapping an `ADDropAttention` layer or an
            `AttentionCall` to a function that receives the attention
            weights that multiply the values (after softmax and attention
            dropout, shape `(batch, num_heads, query, key)`) and returns the
            tensor to use in their place. The train step uses it to put
            those weights on a gradient tape.

    Example:

    ```python
    layer = keras_addrop.layers.ADDropAttention(num_heads=2, key_dim=4)
    x = keras.random.normal((1, 3, 8))
    keep = keras.ops.ones((1, 2, 3, 3), dtype="bool")
    with keras_addrop.layers.addrop_scope(keep_masks={layer: keep}):
        y = layer(x, x)
    ```
    """
    previous = getattr(_local, "scope", None)
    _local.scope = _ADDropScope(keep_masks, capture)
    try:
        yield _local.scope
    finally:
        _local.scope = previous


def scope_for(layer):
    """`(keep_mask, capture)` that the active `addrop_scope` holds for this
    call of `layer` (each None when it holds none). Every AD-DROP attention
    kind reads the scope through this function, once per call: the scope
    counts the calls of each layer."""
    scope = getattr(_local, "scope", None)
    if scope is None:
        return None, None
    return scope.lookup(layer)


def with_keep_mask(attention_mask, keep_mask):
    """The attention mask with AD-DROP's keep mask merged in (logical AND),
    so that a dropped position gets exactly the padding treatment of the
    layer's softmax.

    Args:
        attention_mask: None, or the layer's boolean mask of shape
            `(batch, query, key)`.
        keep_mask: the keep mask, `(batch, num_heads, query, key)`.

    Returns:
        A boolean mask of shape `(batch, num_heads, query, key)`.
    """
    keep_mask = ops.cast(keep_mask, "bool")
    if attention_mask is None:
        return keep_mask
    # [B, T, S] -> [B, 1, T, S], one mask for every head.
    return ops.logical_and(
        ops.expand_dims(ops.cast(attention_mask, "bool"), -3), keep_mask
    )


class CapturedAttention:
    """The attention weights that `layers` see in one forward pass.

    `layers` holds AD-DROP attention layers or
    `keras_addrop.layers.AttentionCall`s. Its `functions` are the `capture`
    argument of `addrop_scope`: each entry's function records the weights it
    is given and hands `transform(index, weights)` on in their place (the
    weights themselves by default), `index` being the entry's position in
    `layers`. Every gradient of a prediction with respect to attention
    weights is taken through it, on every backend, and so is attention as
    attribution.
    """

    def __init__(self, layers, transform=None):
        self.layers = list(layers)
        self._transform = transform
        self._weights = {}

    @property
    def functions(self):
        return {
            entry: functools.partial(self._capture, index)
            for index, entry in enumerate(self.layers)
        }

    def _capture(self, index, weights):
        if index in self._weights:
            # Only a layer named without its call index gets here twice.
            raise ValueError(
                "This attention layer is called more than once in one "
                "forward pass (it is shared, as ALBERT's encoders are), so "
                "the layer alone does not say which call is meant: name "
                "each call with `keras_addrop.layers.AttentionCall(layer, "
                "index)`, or use the model's `addrop_attention_calls`. "
                f"Received: layer={layer_of(self.layers[index]).name!r}"
            )
        self._weights[index] = weights
        if self._transform is None:
            return weights
        return self._transform(index, weights)

    def weights(self):
        """The recorded weights, in the order of `layers`.

        Raises:
            ValueError: if the forward pass did not call one of `layers`.
        """
        missing = [
            entry if isinstance(entry, AttentionCall) else entry.name
            for index, entry in enumerate(self.layers)
            if index not in self._weights
        ]
        if missing:
            raise ValueError(
                "These attention layers were not called by the model's "
                "forward pass, so they have no attribution. Received: "
                f"layers={missing}"
            )
        return [self._weights[index] for index in range(len(self.layers))]


@keras_addrop_export("keras_addrop.layers.ADDropAttention")
class ADDropAttention(keras.layers.MultiHeadAttention):
    """Multi-head attention that AD-DROP can mask and attribute.

    A drop-in `keras.layers.MultiHeadAttention`: it takes the same arguments,
    has the same weights (names, shapes, order) and, outside an AD-DROP
    training step, runs exactly the stock computation, fused attention
    included. Inside `keras_addrop.layers.addrop_scope` it:

    1. adds a per-head drop mask before the softmax (Eq. 1 of the paper,
       `softmax(Q K^T / sqrt(d) + M_h) V`). A dropped position is treated
       like padding: its logit is replaced with the softmax's dtype-aware
       large negative value (finite in float16) and its weight set to 0;
    2. exposes the attention weights that multiply `V` (after the softmax
       and the attention dropout) to a gradient tape, so that the gradient of
       a prediction with respect to them, the AD-DROP attribution, can be
       taken for every selected layer in a single gradient call.

    The layer adds no state to `MultiHeadAttention`, which is why
    `keras_addrop.swap_attention` can turn the attention layers of a built
    keras-hub backbone into this class in place, keeping their variables.

    Masking: padding and attention masks work as in `MultiHeadAttention`.
    The AD-DROP keep mask is combined with them by a logical AND.

    Runs on the TensorFlow, JAX and PyTorch backends; a `.keras` file saved
    on one loads on the others with the same outputs.

    Args:
        num_heads: int. Number of attention heads.
        key_dim: int. Size of each attention head for query and key.
        **kwargs: Any other `keras.layers.MultiHeadAttention` argument
            (`value_dim`, `dropout`, `use_bias`, initializers, `name`,
            `dtype`, ...).

    Call arguments:
        The same as `keras.layers.MultiHeadAttention`: `query`, `value`,
        `key`, `query_mask`, `value_mask`, `key_mask`, `attention_mask`,
        `return_attention_scores`, `training`, `use_causal_mask`.

    Returns:
        The same as `keras.layers.MultiHeadAttention`: the attention output
        of shape `(batch, query, output_dim)`, and with
        `return_attention_scores=True` also the attention probabilities of
        shape `(batch, num_heads, query, key)` (before attention dropout, as
        in the stock layer).

    Raises:
        ValueError: inside an AD-DROP scope, if the layer uses custom
            `attention_axes` (AD-DROP masks are defined per head over one key
            axis).

    Example:

    ```python
    layer = keras_addrop.layers.ADDropAttention(num_heads=2, key_dim=4)
    query = keras.random.normal((2, 5, 8))
    output = layer(query, query)  # Exactly MultiHeadAttention.
    ```

    References:
        - [Yang et al., 2022](https://arxiv.org/abs/2210.05883)
    """

    def _compute_attention(
        self,
        query,
        key,
        value,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
        **kwargs,
    ):
        keep_mask, capture = scope_for(self)
        if keep_mask is None and capture is None:
            return super()._compute_attention(
                query,
                key,
                value,
                attention_mask,
                training,
                return_attention_scores,
                **kwargs,
            )
        if len(query.shape) != 4:
            raise invalid_argument(
                "attention_axes",
                "None, the default (AD-DROP masks one key axis per head)",
                self._attention_axes,
            )

        # The explicit path of MultiHeadAttention, with the keep mask merged
        # into the boolean mask so that dropped positions get exactly the
        # padding treatment of `keras.layers.Softmax`.
        if keep_mask is not None:
            attention_mask = with_keep_mask(attention_mask, keep_mask)
        query = ops.multiply(
            query, ops.cast(self._inverse_sqrt_key_dim, query.dtype)
        )
        # `scores` = [B, N, T, S]
        scores = ops.einsum(self._dot_product_equation, key, query)
        probabilities = self._masked_softmax(scores, attention_mask)
        if self._dropout > 0.0:
            weights = self._dropout_layer(probabilities, training=training)
        else:
            weights = probabilities
        if capture is not None:
            weights = capture(weights)
        # `attention_output` = [B, T, N, H]
        attention_output = ops.einsum(self._combine_equation, weights, value)
        return attention_output, probabilities


@keras_addrop_export("keras_addrop.layers.ADDropCachedMultiHeadAttention")
class ADDropCachedMultiHeadAttention(CachedMultiHeadAttention, ADDropAttention):
    """keras-hub's `CachedMultiHeadAttention` that AD-DROP can mask and
    attribute.

    The self-attention of keras-hub's `TransformerDecoder` (GPT-2, OPT): a
    `keras.layers.MultiHeadAttention` with a key/value cache for
    generation, whose `call` computes attention through
    `_compute_attention`, which `keras_addrop.layers.ADDropAttention`
    masks and captures as it does for encoders. Outside an AD-DROP scope,
    generation with the cache included, the stock computation; the same
    weights, no new state, converted in place by
    `keras_addrop.swap_attention`.

    Args:
        num_heads: int. Number of attention heads.
        key_dim: int. Size of each attention head for query and key.
        **kwargs: any other `CachedMultiHeadAttention` argument.

    Example:

    ```python
    layer = keras_addrop.layers.ADDropCachedMultiHeadAttention(
        num_heads=2, key_dim=4
    )
    query = keras.random.normal((2, 5, 8))
    output = layer(query, query)  # Exactly CachedMultiHeadAttention.
    ```
    """
