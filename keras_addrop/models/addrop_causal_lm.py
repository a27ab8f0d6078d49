import keras_hub

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.models.addrop_task import ADDropTask
from keras_addrop.models.addrop_task import family_names
from keras_addrop.models.addrop_task import make_family_class
from keras_addrop.models.addrop_task import task_families
from keras_addrop.models.prompt_response import is_prompt_response
from keras_addrop.models.prompt_response import prompt_response_samples
from keras_addrop.models.prompt_response import takes_pairs
from keras_addrop.ops.visibility import Visibility
from keras_addrop.train_step import with_addrop_arguments


def supported_families():
    """The supported families' names, e.g. "Gemma, GPT-2, ..."."""
    return family_names(ADDropCausalLM)


@keras_addrop_export("keras_addrop.models.ADDropCausalLM")
@with_addrop_arguments
class ADDropCausalLM(ADDropTask):
    """The AD-DROP causal language models of keras-hub's decoder families.

    Every AD-DROP causal LM is a subclass of this class and of its family's
    stock keras-hub `CausalLM` (its `_stock_cls`), e.g.
    `keras_addrop.models.ADDropLlama3CausalLM` of
    `keras_hub.models.Llama3CausalLM`: the stock task, `generate` and
    presets included, with each decoder layer's self-attention swapped for
    its AD-DROP kind (same weights) and AD-DROP's two-pass `train_step`.
    `ADDropCausalLM.from_preset(preset, ...)` works as
    `keras_hub.models.CausalLM.from_preset` does and returns the preset
    family's AD-DROP class.

    In an AD-DROP step:

    - the attribution pass differentiates, in one gradient call for every
      selected decoder layer, the sum over the positions that count
      (`sample_weight > 0`: never padding, never the prompt of a
      prompt/response pair) of each position's pseudo next token's logit
      (the argmax of that pass; or its log-probability with
      `attribution_score="log_probability"`);
    - a query's candidates are only the keys it can see: itself and the
      real tokens before it (`keras_addrop.ops.Visibility` with
      `causal=True`). A future key is never a candidate, the first token
      keeps its only key, and the drop fraction counts visible pairs;
    - the selected layers compute their attention explicitly, also where
      the stock layer takes the fused `ops.dot_product_attention` (JAX and
      PyTorch, GPUs), so that their probabilities can be attributed and
      masked. Every other call keeps the stock path: unselected layers,
      plain steps, evaluation, and `generate` (greedy or sampling, with the
      key/value cache), which never applies AD-DROP.

    `fit` takes what the stock task takes (strings, or preprocessed
    `token_ids` / `padding_mask` with labels and weights) and, for every
    family, prompt/response pairs, `x={"prompts": [...], "responses":
    [...]}`, with the loss (and the attribution target) on the response
    tokens only, as keras-hub's Gemma 3 preprocessor trains them.

    `addrop_layers` counts decoder layers. LoRA works as in keras-hub:
    `model.backbone.enable_lora(rank)` before or after building, before
    `fit`. `save_to_preset` writes a preset that stock keras-hub loads as
    the stock class (with identical generations), plus `addrop.json`.

    Families: GPT-2, OPT, Llama, Llama 3, Mistral, Mixtral, Qwen2, Qwen3,
    Phi-3, SmolLM3, Gemma (1 and 2), Gemma 3 and GPT-NeoX, each with its own
    class (`keras_addrop.models.ADDrop<stock name>`, e.g.
    `ADDropGemmaCausalLM`).

    Trains on the TensorFlow, JAX and PyTorch backends.

    Args:
        backbone: the family's keras-hub backbone.
        preprocessor: `None` or the family's `CausalLMPreprocessor`.
        {addrop_arguments}

    Example:

    ```python
    causal_lm = keras_addrop.models.ADDropCausalLM.from_preset(
        "gemma_2b_en", sequence_length=128, addrop_layers="all"
    )
    causal_lm.backbone.enable_lora(rank=4)
    causal_lm.fit(x=["The quick brown fox jumped."], batch_size=1)
    causal_lm.generate("The quick brown fox", max_length=30)
    ```

    References:
        - [Yang et al., 2022](https://arxiv.org/abs/2210.05883)
    """

    _stock_base = keras_hub.models.CausalLM
    _noun = "causal LM"

    def preprocess_samples(self, x, y=None, sample_weight=None):
        if is_prompt_response(x) and not takes_pairs(self.preprocessor):
            if y is not None or sample_weight is not None:
                raise ValueError(
                    "Prompt/response pairs carry their own labels: the "
                    "response. Received: y and sample_weight with "
                    "x={'prompts': ..., 'responses': ...}"
                )
            return prompt_response_samples(
                self.preprocessor, x["prompts"], x["responses"]
            )
        return super().preprocess_samples(x, y, sample_weight)

    def _addrop_visibilities(self, x, calls):
        visibility = Visibility(self._addrop_bool_padding_mask(x), causal=True)
        return [visibility] * len(calls)

    @classmethod
    def from_preset(
        cls, preset, load_weights=True, sequence_length=None, **kwargs
    ):
        """Builds the causal LM from a keras-hub or Hugging Face preset.

        Accepts what `keras_hub.models.CausalLM.from_preset` accepts (a
        preset name, a local keras-hub folder, a local Hugging Face folder)
        plus the AD-DROP arguments. A folder written by `save_to_preset`
        keeps its AD-DROP settings unless they are passed again. Called on
        `ADDropCausalLM` itself, it returns the AD-DROP class of the
        preset's family.

        Args:
            preset: a preset name or a local folder.
            load_weights: whether to load the preset's weights.
            sequence_length: the preprocessor's sequence length, or None
                (the preset's).
            **kwargs: the stock task's arguments (`preprocessor`, ...) and
                the AD-DROP arguments.

        Returns:
            The AD-DROP causal LM, an instance of the family's stock
            keras-hub `CausalLM` class.

        Raises:
            ValueError: for a preset whose family AD-DROP does not support
                (the message names the family and those supported).
        """
        return cls._from_family_preset(
            preset,
            load_weights=load_weights,
            sequence_length=sequence_length,
            **kwargs,
        )


_models = keras_hub.models
FAMILY_CLASSES = [
    make_family_class(ADDropCausalLM, stock, family, lora)
    for stock, family, lora in (
        (_models.GPT2CausalLM, "GPT-2", None),
        (_models.OPTCausalLM, "OPT", None),
        (_models.LlamaCausalLM, "Llama", None),
        (_models.Llama3CausalLM, "Llama 3", None),
        (_models.MistralCausalLM, "Mistral", None),
        (_models.MixtralCausalLM, "Mixtral", None),
        (_models.QwenCausalLM, "Qwen2", None),
        (_models.Qwen3CausalLM, "Qwen3", None),
        (_models.Phi3CausalLM, "Phi-3", None),
        (_models.SmolLM3CausalLM, "SmolLM3", ("q_proj", "v_proj")),
        (_models.GemmaCausalLM, "Gemma", None),
        (_models.Gemma3CausalLM, "Gemma 3", None),
        (_models.GPTNeoXCausalLM, "GPT-NeoX", ("query_key_value",)),
    )
]

# The stock keras-hub causal LM of each family -> its AD-DROP class.
FAMILIES = task_families(ADDropCausalLM)
