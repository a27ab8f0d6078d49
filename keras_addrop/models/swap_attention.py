import keras

from keras_addrop.layers.addrop_attention import ADDropAttention


def swap_attention(backbone):
    """Turns a keras-hub backbone's self-attention into `ADDropAttention`.

    Works on every backbone whose `transformer_layers` are keras-hub
    `TransformerEncoder`s (BERT, RoBERTa, DistilBERT, ELECTRA, XLM-RoBERTa,
    ...). Each encoder's built `keras.layers.MultiHeadAttention` becomes a
    `keras_addrop.layers.ADDropAttention` in place: the very same variables
    (names, paths, values, distribution placement), no new state, and
    outputs unchanged until an AD-DROP step masks them. The encoder looks its
    attention layer up when it is called, so the backbone's functional graph
    needs no rebuild. Idempotent.

    Call it before `compile()` and the first `fit()`: a traced training
    function keeps the code it was traced with.

    Works on the TensorFlow, JAX and PyTorch backends.

    Args:
        backbone: a built keras-hub backbone, e.g.
            `keras_hub.models.BertBackbone`.

    Returns:
        The list of `ADDropAttention` layers, in layer order (index 0 is the
        layer closest to the embeddings).

    Raises:
        ValueError: if the backbone has no `transformer_layers` of
            `TransformerEncoder`s with `keras.layers.MultiHeadAttention`
            self-attention.

    Example:

    ```python
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=16,
    )
    attention_layers = keras_addrop.swap_attention(backbone)
    ```
    """
    encoders = getattr(backbone, "transformer_layers", None)
    if not encoders:
        raise ValueError(
            "`swap_attention` needs a keras-hub backbone built from "
            "`TransformerEncoder` layers (listed in `transformer_layers`). "
            f"Received: backbone={type(backbone).__name__}"
        )
    found = []
    for encoder in encoders:
        attention = getattr(encoder, "_self_attention_layer", None)
        if not isinstance(attention, keras.layers.MultiHeadAttention):
            raise ValueError(
                "`swap_attention` supports encoders whose self-attention is "
                "a `keras.layers.MultiHeadAttention` (keras-hub "
                f"`TransformerEncoder`). Received: backbone="
                f"{type(backbone).__name__} with encoder "
                f"{type(encoder).__name__} ({encoder.name})"
            )
        if not isinstance(attention, ADDropAttention):
            if type(attention) is not keras.layers.MultiHeadAttention:
                raise ValueError(
                    "`swap_attention` can only convert the stock "
                    "`keras.layers.MultiHeadAttention`, not a subclass with "
                    "its own behaviour. Received: backbone="
                    f"{type(backbone).__name__} with attention "
                    f"{type(attention).__name__} ({attention.name})"
                )
        found.append(attention)
    for attention in found:
        # ADDropAttention adds no attribute to MultiHeadAttention, so a class
        # swap keeps every variable and tracking structure as it is.
        if not isinstance(attention, ADDropAttention):
            attention.__class__ = ADDropAttention
    return found
