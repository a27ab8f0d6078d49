from keras import ops
from keras_hub.src.models.deberta_v3.disentangled_self_attention import (
    DisentangledSelfAttention,
)

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.layers.addrop_attention import scope_for
from keras_addrop.layers.addrop_attention import with_keep_mask


@keras_addrop_export("keras_addrop.layers.ADDropDisentangledSelfAttention")
class ADDropDisentangledSelfAttention(DisentangledSelfAttention):
    """DeBERTa-v3's disentangled self-attention that AD-DROP can mask and
    attribute.

    keras-hub's `DisentangledSelfAttention` (content-to-content scores plus
    the relative-position terms, an explicit softmax, attention dropout)
    with the same weights and, outside an AD-DROP training step, exactly
    the stock computation. Inside `keras_addrop.layers.addrop_scope` it
    does what `keras_addrop.layers.ADDropAttention` does for
    `MultiHeadAttention`: the keep mask joins the padding mask before the
    softmax (a dropped key is treated exactly like padding), and the
    attention weights that multiply the values (after the softmax and the
    attention dropout) are handed to the scope's capture function.

    `keras_addrop.swap_attention` turns the attention of a built
    `keras_hub.models.DebertaV3Backbone` into this class in place.

    Runs on the TensorFlow, JAX and PyTorch backends.

    Args:
        num_heads: int. Number of attention heads.
        hidden_dim: int. The hidden size.
        **kwargs: any other `DisentangledSelfAttention` argument
            (`max_position_embeddings`, `bucket_size`, `dropout`, ...).

    Call arguments:
        The same as `DisentangledSelfAttention`: `inputs`,
        `rel_embeddings`, `attention_mask`, `return_attention_scores`,
        `training`.

    Returns:
        The same as `DisentangledSelfAttention`.

    Example:

    ```python
    backbone = keras_hub.models.DebertaV3Backbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=16,
    )
    layers = keras_addrop.swap_attention(backbone)
    ```
    """

    def _compute_attention(
        self,
        query,
        key,
        value,
        rel_embeddings,
        attention_mask=None,
        training=None,
    ):
        keep_mask, capture = scope_for(self)
        if keep_mask is None and capture is None:
            return super()._compute_attention(
                query,
                key,
                value,
                rel_embeddings,
                attention_mask=attention_mask,
                training=training,
            )
        if keep_mask is not None:
            attention_mask = with_keep_mask(attention_mask, keep_mask)
        # keras-hub's computation, with the keep mask in the softmax's mask
        # and the weights that multiply V handed to the capture.
        scores = ops.einsum("aecd,abcd->acbe", key, query)
        scores = ops.multiply(scores, self.scale_factor)
        rel_embeddings = self._position_dropout_layer(
            rel_embeddings, training=training
        )
        relative = self._compute_disentangled_attention(
            query=query, key=key, rel_embeddings=rel_embeddings
        )
        if relative is not None:
            scores += relative
        weights = self._masked_softmax(scores, attention_mask)
        weights = self._attn_dropout_layer(weights, training=training)
        if capture is not None:
            weights = capture(weights)
        attention_output = ops.einsum("acbe,aecd->abcd", weights, value)
        return attention_output, weights
