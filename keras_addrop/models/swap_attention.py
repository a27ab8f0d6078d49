from keras_addrop.layers import ADDROP_ATTENTION
from keras_addrop.layers import ATTENTION_KINDS


def swap_attention(backbone):
    """Turns a keras-hub backbone's self-attention into AD-DROP attention.

    Works on every backbone whose `transformer_layers` are keras-hub
    `TransformerEncoder`s (BERT, RoBERTa, DistilBERT, ELECTRA, XLM-RoBERTa,
    ALBERT's groups of shared encoders, ...), on DeBERTa-v3's
    disentangled-attention encoders and on RoFormer-v2's rotary encoders.
    Each encoder's built `keras.layers.MultiHeadAttention` becomes a
    `keras_addrop.layers.ADDropAttention` (DeBERTa-v3's
    `DisentangledSelfAttention` a
    `keras_addrop.layers.ADDropDisentangledSelfAttention`, RoFormer-v2's
    `RoformerAttention` a `keras_addrop.layers.ADDropRoformerAttention`)
    in place. Decoder backbones work the same way: the
    `CachedMultiHeadAttention` of keras-hub's `TransformerDecoder` (GPT-2,
    OPT) becomes a `keras_addrop.layers.ADDropCachedMultiHeadAttention`,
    and the own attention layers of Llama, Mistral, Mixtral, Qwen2, Qwen3,
    Phi-3, SmolLM3, Gemma 1/2/3 and GPT-NeoX their AD-DROP class (see
    `keras_addrop.layers.ADDropDecoderAttention`). In an encoder-decoder
    backbone (BART: `encoder_transformer_layers` and
    `decoder_transformer_layers`) every attention is converted: the
    encoders' self-attention, and each decoder's self-attention and
    cross-attention. Always the
    very same variables (names, paths, values, distribution placement), no
    new state, and outputs unchanged until an AD-DROP step masks them. The
    encoder looks its attention layer up when it is called, so the
    backbone's functional graph needs no rebuild. Idempotent.

    Call it before `compile()` and the first `fit()`: a traced training
    function keeps the code it was traced with.

    Works on the TensorFlow, JAX and PyTorch backends.

    Args:
        backbone: a built keras-hub backbone, e.g.
            `keras_hub.models.BertBackbone`.

    Returns:
        The list of AD-DROP attention layers, each once, in the order of
        `transformer_layers` (index 0 is the layer closest to the
        embeddings; for BART the encoder layers, then each decoder layer's
        self-attention and cross-attention). A layer ALBERT shares between
        transformer layers appears once;
        `keras_addrop.models.ADDropTextClassifier` counts its calls.

    Raises:
        ValueError: if the backbone has no `transformer_layers` whose
            self-attention is a stock `keras.layers.MultiHeadAttention`,
            `DisentangledSelfAttention` or `RoformerAttention`.

    Example:

    ```python
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=16,
    )
    attention_layers = keras_addrop.swap_attention(backbone)
    ```
    """
    encoders = _transformer_layers(backbone)
    if not encoders:
        raise ValueError(
            "`swap_attention` needs a keras-hub backbone built from "
            "`TransformerEncoder` layers (listed in `transformer_layers`). "
            f"Received: backbone={type(backbone).__name__}"
        )
    found = []
    for encoder, attention in _attention_layers(encoders):
        kind = ATTENTION_KINDS.get(type(attention))
        if kind is None and not isinstance(attention, ADDROP_ATTENTION):
            if any(isinstance(attention, stock) for stock in ATTENTION_KINDS):
                raise ValueError(
                    "`swap_attention` can only convert the stock attention "
                    "layers, not a subclass with its own behaviour. "
                    f"Received: backbone={type(backbone).__name__} with "
                    f"attention {type(attention).__name__} ({attention.name})"
                )
            raise ValueError(
                "`swap_attention` supports encoders whose self-attention is "
                "a `keras.layers.MultiHeadAttention` (keras-hub "
                "`TransformerEncoder`), DeBERTa-v3's "
                "`DisentangledSelfAttention` or RoFormer-v2's "
                "`RoformerAttention`, and the decoders of keras-hub's "
                "`TransformerDecoder` (GPT-2, OPT), Llama, Mistral, Mixtral, "
                "Qwen2, Qwen3, Phi-3, SmolLM3, Gemma 1/2/3 and GPT-NeoX, "
                "and BART's encoders and decoders. "
                f"Received: backbone={type(backbone).__name__} with layer "
                f"{type(encoder).__name__} ({encoder.name})"
            )
        found.append((attention, kind))
    for attention, kind in found:
        # The AD-DROP layers add no attribute to the stock ones, so a class
        # swap keeps every variable and tracking structure as it is.
        if kind is not None:
            attention.__class__ = kind
    return [attention for attention, _ in found]


def _transformer_layers(backbone):
    # Encoder-decoder backbones (BART) list their two stacks apart.
    layers = getattr(backbone, "transformer_layers", None)
    if layers:
        return layers
    return [
        *getattr(backbone, "encoder_transformer_layers", []),
        *getattr(backbone, "decoder_transformer_layers", []),
    ]


def _attention_layers(encoders):
    """`(transformer layer, attention layer)` of every attention the
    layers hold: each one's self-attention, then its cross-attention (a
    `TransformerDecoder` of an encoder-decoder backbone), if any."""
    for encoder in _flat(encoders):
        yield encoder, _self_attention(encoder)
        cross = getattr(encoder, "_cross_attention_layer", None)
        if cross is not None:
            yield encoder, cross


def _flat(encoders):
    # ALBERT lists its encoders per group: a list of lists.
    for entry in encoders:
        if isinstance(entry, (list, tuple)):
            yield from _flat(entry)
        else:
            yield entry


def _self_attention(encoder):
    # keras-hub's `TransformerEncoder` / `TransformerDecoder`, DeBERTa-v3's
    # encoder and most decoder LLMs hold it as `_self_attention_layer`,
    # RoFormer-v2's as `attention_layer`, Gemma's and Phi-3's as
    # `attention`, SmolLM3's as `self_attn`.
    names = ("_self_attention_layer", "attention_layer", "attention")
    for name in (*names, "self_attn"):
        attention = getattr(encoder, name, None)
        if attention is not None:
            return attention
    return None
