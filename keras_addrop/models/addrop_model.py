import keras
import keras_hub
from keras import ops

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.models.attention_calls import find_attention_calls
from keras_addrop.models.swap_attention import swap_attention
from keras_addrop.train_step import ADDropTrainStep
from keras_addrop.train_step import with_addrop_arguments


@keras_addrop_export("keras_addrop.models.ADDropModel")
@with_addrop_arguments
class ADDropModel(ADDropTrainStep, keras.Model):
    """AD-DROP for a functional model you build yourself.

    Build the model as a functional `keras.Model`, with
    `keras_addrop.layers.ADDropAttention` wherever AD-DROP should be able to
    mask attention (directly in the graph or inside your own layers), and a
    padding-mask input. A keras-hub encoder backbone called in the graph
    (e.g. `keras_hub.models.BertBackbone`, under a head of your own) has its
    attention converted by `keras_addrop.swap_attention`, also when the
    model is loaded. `ADDropModel(inputs, outputs, ...)` then trains with
    the same two-pass AD-DROP step, options, `CrossTuning` schedule,
    `addrop_drop_fraction` log and `.keras` saving as the keras-hub
    classifiers. The model's outputs must be class logits (or one unit for
    regression); evaluation and prediction never apply AD-DROP.

    Layer indices in `addrop_layers` count the calls of the model's
    `ADDropAttention` layers in the order the forward pass makes them (see
    `addrop_attention_calls`; a layer the graph calls twice counts twice).
    AD-DROP masks are defined for self-attention: each layer's queries and
    keys are the positions of the padding-mask input.

    Trains on the TensorFlow, JAX and PyTorch backends with the same AD-DROP
    (`keras_addrop.ADDropTrainStep`).

    Args:
        inputs: the functional inputs; one of them is the padding mask.
        outputs: the logits.
        padding_mask: str. The name of the input holding the padding mask
            (`True` or nonzero for real tokens), shape `(batch, length)`.
            Defaults to `"padding_mask"`. Pass an all-ones mask if nothing
            is padded. For a backbone that pads with token id 0 and takes no
            mask (RoFormer-v2), `"token_ids"`.
        {addrop_arguments}
        **kwargs: passed to `keras.Model` (`name`, ...).

    Raises:
        ValueError: if the model has no `ADDropAttention` layer, no input
            named `padding_mask`, or an AD-DROP argument is out of range.

    Example:

    ```python
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((None,), dtype="bool", name="padding_mask")
    x = keras.layers.Embedding(1000, 32)(token_ids)
    mask = keras.ops.expand_dims(padding_mask, 1)  # [B, 1, S]
    x = x + keras_addrop.layers.ADDropAttention(4, 8)(
        x, x, attention_mask=mask
    )
    logits = keras.layers.Dense(2)(x[:, 0])
    model = keras_addrop.models.ADDropModel(
        {"token_ids": token_ids, "padding_mask": padding_mask},
        logits,
        addrop_layers="all",
    )
    ```
    """

    def __init__(self, *args, padding_mask="padding_mask", **kwargs):
        self.padding_mask = padding_mask
        super().__init__(*args, **kwargs)
        names = [t.name for t in self.inputs]
        if padding_mask not in names:
            raise ValueError(
                "`ADDropModel` needs a padding-mask input, named by "
                f"`padding_mask`. The model's inputs are {names}. "
                f"Received: padding_mask={padding_mask!r}"
            )
        self._padding_mask_index = names.index(padding_mask)

    def _addrop_all_attention_calls(self):
        # A keras-hub backbone deserialises with stock attention, so the
        # swap (idempotent) happens wherever the layers are looked up,
        # construction and loading included, not once by the caller.
        for layer in self.layers:
            if isinstance(layer, keras_hub.models.Backbone):
                swap_attention(layer)
        calls = find_attention_calls(self)
        if not calls:
            raise ValueError(
                "`ADDropModel` needs at least one "
                "`keras_addrop.layers.ADDropAttention` layer. Received: "
                f"model with layers {[layer.name for layer in self.layers]}"
            )
        return calls

    def _addrop_padding_mask(self, x):
        if isinstance(x, dict):
            return x[self.padding_mask]
        if isinstance(x, (list, tuple)):
            return x[self._padding_mask_index]
        return ops.ones_like(x, dtype="bool")

    def get_config(self):
        config = super().get_config()
        config["padding_mask"] = self.padding_mask
        return config
