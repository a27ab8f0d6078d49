import functools

import keras_hub

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.models.addrop_task import ADDropTask
from keras_addrop.models.addrop_task import make_family_class
from keras_addrop.models.addrop_task import task_families
from keras_addrop.ops.visibility import Visibility
from keras_addrop.train_step import with_addrop_arguments
from keras_addrop.validation import invalid_argument

# The attention kinds of an encoder-decoder model, in forward order.
ATTENTION_KINDS = ("encoder", "decoder", "cross")


def resolve_attention_kinds(addrop_attention):
    """Validates `addrop_attention` and returns the chosen kinds as a tuple
    in forward order (`"encoder"`, `"decoder"`, `"cross"`)."""
    expected = (
        "'encoder', 'decoder', 'cross', 'all', or a sequence of distinct "
        "kinds among 'encoder', 'decoder' and 'cross'"
    )
    if addrop_attention == "all":
        return ATTENTION_KINDS
    kinds = (
        (addrop_attention,)
        if isinstance(addrop_attention, str)
        else addrop_attention
    )
    try:
        kinds = tuple(kinds)
    except TypeError:
        kinds = ()
    if (
        not kinds
        or len(set(kinds)) != len(kinds)
        or any(kind not in ATTENTION_KINDS for kind in kinds)
    ):
        raise invalid_argument("addrop_attention", expected, addrop_attention)
    return tuple(kind for kind in ATTENTION_KINDS if kind in kinds)


@keras_addrop_export("keras_addrop.models.ADDropSeq2SeqLM")
@with_addrop_arguments
class ADDropSeq2SeqLM(ADDropTask):
    """The AD-DROP sequence-to-sequence language models of keras-hub.

    Every AD-DROP seq2seq LM is a subclass of this class and of its
    family's stock keras-hub `Seq2SeqLM` (its `_stock_cls`), e.g.
    `keras_addrop.models.ADDropBartSeq2SeqLM` of
    `keras_hub.models.BartSeq2SeqLM`: the stock task, `generate` and
    presets included, with every attention layer swapped for its AD-DROP
    kind (same weights) and AD-DROP's two-pass `train_step`.
    `ADDropSeq2SeqLM.from_preset(preset, ...)` works as
    `keras_hub.models.Seq2SeqLM.from_preset` does and returns the preset
    family's AD-DROP class.

    An encoder-decoder model has three kinds of attention, and
    `addrop_attention` chooses which AD-DROP masks: the encoder's
    self-attention (`"encoder"`, the default and the paper's recipe for
    translation), the decoder's causal self-attention (`"decoder"`), the
    decoder's attention to the encoder output (`"cross"`), several of them,
    or `"all"`. `addrop_layers` indexes the transformer layers within each
    chosen kind: `addrop_attention=("encoder", "cross")` with
    `addrop_layers=(0,)` masks the first encoder layer's self-attention
    and the first decoder layer's cross-attention.

    In an AD-DROP step:

    - the attribution pass differentiates, in one gradient call for every
      selected attention call, the sum over the target positions that
      count (`sample_weight > 0`: never padding) of each position's pseudo
      next token's logit (the argmax of that pass, teacher-forced; or its
      log-probability with `attribution_score="log_probability"`);
    - a query's candidates are only the keys it can see
      (`keras_addrop.ops.Visibility`): in the encoder, every real source
      token; in the decoder's self-attention, the real target tokens up to
      its own position; in the cross-attention, every real source token
      (the masks are `(target, source)`). A row is never emptied of its
      visible keys, and the drop fraction counts visible pairs.

    Every call outside an AD-DROP step keeps the stock path: unselected
    layers, plain steps, evaluation, and `generate` (with its key/value
    caches), which never applies AD-DROP.

    `fit` takes what the stock task takes: `x={"encoder_text": [...],
    "decoder_text": [...]}` through the preprocessor, or preprocessed
    `encoder_token_ids`, `encoder_padding_mask`, `decoder_token_ids` and
    `decoder_padding_mask` with next-token labels and weights.

    LoRA works as in keras-hub: `model.backbone.enable_lora(rank)` (the
    query and value projections of every attention). `save_to_preset`
    writes a preset that stock keras-hub loads as the stock class (with
    identical generations), plus `addrop.json`.

    Families: BART (`keras_addrop.models.ADDropBartSeq2SeqLM`). T5 and
    T5Gemma are refused: their attention layers are their own, outside
    the attention kinds AD-DROP converts.

    Trains on the TensorFlow, JAX and PyTorch backends.

    Args:
        backbone: the family's keras-hub backbone.
        preprocessor: `None` or the family's `Seq2SeqLMPreprocessor`.
        addrop_attention: which attention AD-DROP masks: `"encoder"`
            (default), `"decoder"`, `"cross"`, `"all"`, or a sequence of
            kinds, e.g. `("encoder", "cross")`.
        {addrop_arguments}

    Raises:
        ValueError: for an `addrop_attention` or an AD-DROP argument out of
            range, or a layer index the chosen kinds do not have.

    Example:

    ```python
    seq2seq_lm = keras_addrop.models.ADDropSeq2SeqLM.from_preset(
        "bart_base_en",
        encoder_sequence_length=128,
        decoder_sequence_length=128,
        addrop_layers="all",
        candidate_ratio=0.2,
        drop_rate=0.2,
    )
    seq2seq_lm.fit(
        x={"encoder_text": ["The fox was sleeping."],
           "decoder_text": ["Le renard dormait."]},
        batch_size=1,
    )
    seq2seq_lm.generate("The fox was awake.", max_length=30)
    ```

    References:
        - [Yang et al., 2022](https://arxiv.org/abs/2210.05883)
    """

    _stock_base = keras_hub.models.Seq2SeqLM
    _noun = "seq2seq LM"
    _task_addrop_arguments = ("addrop_attention",)

    def __init__(self, *args, addrop_attention="encoder", **kwargs):
        # Before the base classes: the AD-DROP step validates
        # `addrop_layers` against the chosen kinds' layers.
        self._addrop_attention_kinds = resolve_attention_kinds(addrop_attention)
        self.addrop_attention = (
            addrop_attention
            if isinstance(addrop_attention, str)
            else self._addrop_attention_kinds
        )
        super().__init__(*args, **kwargs)

    def _addrop_config(self):
        config = super()._addrop_config()
        config["addrop_attention"] = (
            self.addrop_attention
            if isinstance(self.addrop_attention, str)
            else list(self.addrop_attention)
        )
        return config

    def _addrop_attention_groups(self):
        kinds = _attention_kinds(self.backbone)
        calls = self._addrop_all_attention_calls()
        return [
            [call for call in calls if kinds[id(call.layer)] == kind]
            for kind in self._addrop_attention_kinds
        ]

    def _addrop_padding_mask(self, x):
        # The outputs' positions: the target tokens.
        return x["decoder_padding_mask"]

    def _addrop_visibilities(self, x, calls):
        source = x["encoder_padding_mask"]
        target = x["decoder_padding_mask"]
        patterns = {
            "encoder": lambda: Visibility(source),
            "decoder": lambda: Visibility(target, causal=True),
            "cross": lambda: Visibility(target, key_mask=source),
        }
        # One per chosen kind, shared by its calls (counted once).
        by_kind = {k: patterns[k]() for k in self._addrop_attention_kinds}
        kinds = _attention_kinds(self.backbone)
        return [by_kind[kinds[id(call.layer)]] for call in calls]

    @classmethod
    def from_preset(
        cls,
        preset,
        load_weights=True,
        encoder_sequence_length=None,
        decoder_sequence_length=None,
        **kwargs,
    ):
        """Builds the seq2seq LM from a keras-hub preset.

        Accepts what `keras_hub.models.Seq2SeqLM.from_preset` accepts plus
        the AD-DROP arguments. A folder written by `save_to_preset` keeps
        its AD-DROP settings unless they are passed again. Called on
        `ADDropSeq2SeqLM` itself, it returns the AD-DROP class of the
        preset's family.

        Args:
            preset: a preset name or a local folder.
            load_weights: whether to load the preset's weights.
            encoder_sequence_length: the preprocessor's source length, or
                None (the preset's).
            decoder_sequence_length: the preprocessor's target length, or
                None (the preset's).
            **kwargs: the stock task's arguments (`preprocessor`, ...) and
                the AD-DROP arguments, `addrop_attention` included.

        Returns:
            The AD-DROP seq2seq LM, an instance of the family's stock
            keras-hub `Seq2SeqLM` class.

        Raises:
            ValueError: for a preset whose family AD-DROP does not support
                (the message names the family and those supported).
        """
        lengths = {
            "encoder_sequence_length": encoder_sequence_length,
            "decoder_sequence_length": decoder_sequence_length,
        }
        if cls._stock_cls is None:
            family = cls._preset_family(preset)
            return family.from_preset(
                preset, load_weights=load_weights, **lengths, **kwargs
            )
        lengths = {k: v for k, v in lengths.items() if v is not None}
        if lengths and "preprocessor" not in kwargs:
            preprocessor_cls = cls._stock_cls.preprocessor_cls
            kwargs["preprocessor"] = preprocessor_cls.from_preset(
                preset, **lengths
            )
        return cls._from_family_preset(
            preset, load_weights=load_weights, **kwargs
        )


def _attention_kinds(backbone):
    """`id(attention layer)` -> its kind, for an encoder-decoder backbone
    with keras-hub's `encoder_transformer_layers` and
    `decoder_transformer_layers` (`TransformerEncoder`, `TransformerDecoder`
    with cross-attention)."""
    kinds = {}
    for layer in backbone.encoder_transformer_layers:
        kinds[id(layer._self_attention_layer)] = "encoder"
    for layer in backbone.decoder_transformer_layers:
        kinds[id(layer._self_attention_layer)] = "decoder"
        kinds[id(layer._cross_attention_layer)] = "cross"
    return kinds


FAMILY_CLASSES = [
    make_family_class(ADDropSeq2SeqLM, keras_hub.models.BartSeq2SeqLM, "BART")
]

# The stock keras-hub seq2seq LM of each family -> its AD-DROP class.
FAMILIES = task_families(ADDropSeq2SeqLM)


def _config_with_sequence_lengths(get_config):
    """keras-hub's `Seq2SeqLMPreprocessor.get_config`, with the two
    sequence lengths that keras-hub 0.32 leaves out of it.

    Without them a preprocessor saved in a preset or a `.keras` file
    reloads with the default lengths (1024 tokens), longer than the
    position embeddings of a model built for shorter sequences.
    """
    if getattr(get_config, "_adds_sequence_lengths", False):
        return get_config

    @functools.wraps(get_config)
    def with_lengths(self):
        config = get_config(self)
        for name in ("encoder_sequence_length", "decoder_sequence_length"):
            config.setdefault(name, getattr(self, name))
        return config

    with_lengths._adds_sequence_lengths = True
    return with_lengths


# See docs/concepts/keras-workarounds.md.
keras_hub.models.Seq2SeqLMPreprocessor.get_config = (
    _config_with_sequence_lengths(
        keras_hub.models.Seq2SeqLMPreprocessor.get_config
    )
)
