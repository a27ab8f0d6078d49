"""AD-DROP for the self-attention layers of keras-hub's decoder LLMs."""

import threading
import types

import keras
from keras import ops

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.layers.addrop_attention import scope_for

# Per thread (MirroredStrategy runs each replica in its own): softmax layer
# id -> the `(keep_mask, capture)` its attention layer hands it for one
# call. An entry exists only while an AD-DROP call of that layer runs.
_local = threading.local()


def _pending():
    if not hasattr(_local, "table"):
        _local.table = {}
    return _local.table


@keras_addrop_export("keras_addrop.layers.ADDropSoftmax")
class ADDropSoftmax(keras.layers.Softmax):
    """The masked softmax of a decoder attention layer, for AD-DROP.

    Every explicit attention path of keras-hub's decoder LLMs ends in a
    masked `keras.layers.Softmax` over the attention logits, whatever the
    family's head layout (`(batch, heads, query, key)`, or Gemma's
    `(batch, key_value_heads, groups, query, key)`). During an AD-DROP call
    of its attention layer (`keras_addrop.layers.ADDropDecoderAttention`)
    this softmax ANDs the keep mask into the layer's own mask, so that a
    dropped key gets exactly the treatment of a masked one, and hands the
    probabilities to the capture function as `(batch, heads, query, key)`.
    Any other call is the stock softmax. It adds no state: the attention
    layer converts its built softmax in place.
    """

    def call(self, inputs, mask=None):
        entry = _pending().pop(id(self), None)
        if entry is None:
            return super().call(inputs, mask)
        keep_mask, capture = entry
        if keep_mask is not None:
            # `(batch, heads, query, key)` -> the family's layout; query
            # heads are numbered key/value head first, as the families
            # group them.
            keep = ops.reshape(ops.cast(keep_mask, "bool"), ops.shape(inputs))
            if mask is not None:
                keep = ops.logical_and(ops.cast(mask, "bool"), keep)
            mask = keep
        probabilities = super().call(inputs, mask)
        if capture is None:
            return probabilities
        shape = ops.shape(probabilities)
        heads = (shape[0], -1, shape[-2], shape[-1])
        return ops.reshape(capture(ops.reshape(probabilities, heads)), shape)


def _never():
    return False


class ADDropDecoderAttention:
    """What AD-DROP adds to a keras-hub decoder attention layer.

    The AD-DROP class of each supported decoder attention (Llama's
    `LlamaAttention`, Gemma's `CachedGemmaAttention`, ...) is the stock
    class with this mixin first; `keras_addrop.swap_attention` converts a
    built layer in place (no new state, the same weights). Outside
    `keras_addrop.layers.addrop_scope` every call is the stock one, fused
    `ops.dot_product_attention` included: unselected layers, plain steps,
    evaluation and generation with a key/value cache. Inside a scope that
    names the layer, its `_compute_attention` takes the family's own
    explicit path even where the stock layer would take the fused one (JAX
    and PyTorch, and GPUs), and its softmax (`ADDropSoftmax`) drops the
    keep mask's keys and captures the probabilities. A path that would
    compute no probabilities is refused, never silently left unmasked.

    The captured weights are the softmax's (float32 where the family
    computes its softmax in float32), before any attention dropout;
    decoder LLMs train with attention dropout 0.
    """

    # The stock `_compute_attention`, with keras-hub's
    # `fused_attention_op_available()` answering False: the family's own
    # explicit path. Set per class by `decoder_attention_kind`.
    _addrop_explicit = None

    def _compute_attention(self, *args, **kwargs):
        keep_mask, capture = scope_for(self)
        if keep_mask is None and capture is None:
            return super()._compute_attention(*args, **kwargs)
        softmax = self._addrop_softmax()
        pending = _pending()
        pending[id(softmax)] = (keep_mask, capture)
        try:
            output = self._addrop_explicit(*args, **kwargs)
        finally:
            missed = pending.pop(id(softmax), None) is not None
        if missed:
            raise RuntimeError(
                f"The attention layer {self.name!r} "
                f"({type(self).__bases__[-1].__name__}) computed its output "
                "without its softmax, so AD-DROP could neither mask nor "
                "attribute it. This keras-hub version's attention path is "
                "not one AD-DROP supports."
            )
        return output

    def _use_fused_attention_op(self):
        # Gemma's and Mixtral's switch: explicit while an AD-DROP call runs.
        # Checked for an empty table first: every stock call (generation
        # included) passes here.
        pending = _pending()
        if pending and id(self._addrop_softmax()) in pending:
            return False
        return super()._use_fused_attention_op()

    def _addrop_softmax(self):
        found = [
            layer
            for layer in self._layers
            if isinstance(layer, keras.layers.Softmax)
        ]
        if len(found) != 1:
            raise ValueError(
                "AD-DROP needs the one `keras.layers.Softmax` of a decoder "
                f"attention layer. Received: layer {self.name!r} with "
                f"{len(found)} softmax layers"
            )
        softmax = found[0]
        if type(softmax) is keras.layers.Softmax:
            softmax.__class__ = ADDropSoftmax
        return softmax


def decoder_attention_kind(stock_cls, heads_attribute="num_query_heads"):
    """The AD-DROP class of a keras-hub decoder attention class: the stock
    class with `ADDropDecoderAttention` first, registered for
    serialization as `"keras_addrop>ADDrop<stock name>"`."""
    function = stock_cls._compute_attention
    explicit = types.FunctionType(
        function.__code__,
        {**function.__globals__, "fused_attention_op_available": _never},
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    explicit.__kwdefaults__ = function.__kwdefaults__
    name = f"ADDrop{stock_cls.__name__}"
    namespace = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": (
            f"keras-hub's `{stock_cls.__name__}` that AD-DROP can mask and "
            "attribute: see `keras_addrop.layers.ADDropDecoderAttention`."
        ),
        "_addrop_explicit": explicit,
    }
    if heads_attribute != "num_heads":
        # The name every AD-DROP attention kind answers to.
        namespace["num_heads"] = property(
            lambda self: getattr(self, heads_attribute),
            doc="The number of query heads (the heads AD-DROP masks).",
        )
    cls = type(name, (ADDropDecoderAttention, stock_cls), namespace)
    globals()[name] = cls
    return keras_addrop_export(f"keras_addrop.layers.{name}")(cls)
