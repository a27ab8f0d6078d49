import keras
from keras import ops
from keras_hub.src.models.roformer_v2.roformer_v2_attention import (
    RoformerAttention,
)

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.layers.addrop_attention import scope_for

# Where a mask excludes a logit, as `ops.dot_product_attention` excludes it
# (a finite value, so that a row with nothing kept stays finite).
_LARGE_NEGATIVE = -0.7 * 3.4028235e38


@keras_addrop_export("keras_addrop.layers.ADDropRoformerAttention")
class ADDropRoformerAttention(RoformerAttention):
    """RoFormer-v2's rotary attention that AD-DROP can mask and attribute.

    keras-hub's `RoformerAttention` always computes attention with the
    fused `keras.ops.dot_product_attention`, which never exposes its
    probabilities. This layer has the same weights and, outside an AD-DROP
    training step, runs exactly the stock computation. Inside
    `keras_addrop.layers.addrop_scope` it:

    1. merges the keep mask into the mask the stock layer gives
       `dot_product_attention`, so that a dropped key is excluded exactly as
       the stock layer excludes what it masks, by the same fused op;
    2. when the scope captures the attention weights, computes the same
       attention explicitly after the rotary step
       (`softmax(Q K^T / sqrt(d))` in float32, masked as the fused op masks)
       and hands the probabilities that multiply `V` (the layer has no
       attention dropout) to the capture function.

    Padding keeps the stock layer's treatment on every backend. keras-hub
    0.32 reshapes the padding mask to `(batch, 1, query, 1)`: on TensorFlow
    and JAX it then excludes padded *queries* (real queries still attend to
    padded keys), on PyTorch it is transposed into a key mask. AD-DROP's
    keep mask only removes real keys, so with nothing dropped the layer
    equals the stock one on each backend.

    `keras_addrop.swap_attention` turns the attention of a built
    `keras_hub.models.RoformerV2Backbone` into this class in place. For
    LoRA, name its projections: `backbone.enable_lora(rank,
    target_layer_names=["q_dense_layer", "v_dense_layer"])` (keras-hub's
    default names match none of them).

    Runs on the TensorFlow, JAX and PyTorch backends.

    Args:
        heads: int. Number of attention heads.
        head_size: int. Size of each head.
        **kwargs: any other `RoformerAttention` argument (`out_dim`,
            `use_bias`, `max_wavelength`, `kernel_initializer`, ...).

    Call arguments:
        x: the input sequence, `(batch, length, hidden)`.
        attention_mask: boolean `(batch, length)`, true for real tokens.

    Returns:
        The attention output, `(batch, length, out_dim)`.

    Example:

    ```python
    backbone = keras_hub.models.RoformerV2Backbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, head_size=4,
    )
    layers = keras_addrop.swap_attention(backbone)
    ```
    """

    @property
    def num_heads(self):
        """The number of heads, by the name the other attention kinds use."""
        return self.heads

    def call(self, x, attention_mask=None):
        keep_mask, capture = scope_for(self)
        if keep_mask is None and capture is None:
            return super().call(x, attention_mask=attention_mask)
        batch, length = ops.shape(x)[:2]
        shape = (batch, length, self.heads, self.head_size)
        query = ops.reshape(self.q_dense(x), shape)
        key = ops.reshape(self.k_dense(x), shape)
        value = ops.reshape(self.v_dense(x), shape)
        query, key = self.rotary_embedding_layer([query, key])
        if attention_mask is None:
            attention_mask = ops.ones((batch, length), "bool")
        real = ops.cast(attention_mask, "bool")
        mask = _stock_mask(real, batch, length)
        if keep_mask is not None:
            # Drops remove real keys only; padding stays as stock treats it.
            padding_key = ops.logical_not(real[:, None, None, :])
            keep = ops.logical_or(ops.cast(keep_mask, "bool"), padding_key)
            mask = ops.logical_and(mask, keep)
        if capture is None:
            output = ops.dot_product_attention(
                query,
                key,
                value,
                mask=mask,
                flash_attention=keras.config.is_flash_attention_enabled(),
            )
        else:
            logits = ops.einsum(
                "btnh,bsnh->bnts",
                ops.cast(query, "float32"),
                ops.cast(key, "float32"),
            )
            logits = logits * (1.0 / self.head_size**0.5)
            logits = ops.where(mask, logits, _LARGE_NEGATIVE)
            weights = ops.cast(ops.softmax(logits, axis=-1), value.dtype)
            weights = capture(weights)
            output = ops.einsum("bnts,bsnh->btnh", weights, value)
        return self.o_dense(ops.reshape(output, (batch, length, -1)))


def _stock_mask(real, batch, length):
    # The mask `RoformerAttention.call` builds, broadcast to
    # `(batch, 1, query, key)`.
    mask = ops.reshape(real, (batch, 1, length, 1))
    if keras.config.backend() == "torch":
        mask = ops.transpose(ops.repeat(mask, length, -1), (0, 1, 3, 2))
    return ops.broadcast_to(mask, (batch, 1, length, length))
