import keras
from keras_hub.src.layers.modeling.cached_multi_head_attention import (
    CachedMultiHeadAttention,
)
from keras_hub.src.models.deberta_v3.disentangled_self_attention import (
    DisentangledSelfAttention,
)
from keras_hub.src.models.gemma.gemma_attention import CachedGemmaAttention
from keras_hub.src.models.gemma3.gemma3_attention import CachedGemma3Attention
from keras_hub.src.models.gpt_neo_x.gpt_neo_x_attention import GPTNeoXAttention
from keras_hub.src.models.llama.llama_attention import LlamaAttention
from keras_hub.src.models.mistral.mistral_attention import (
    CachedMistralAttention,
)
from keras_hub.src.models.mixtral.mixtral_attention import (
    CachedMixtralAttention,
)
from keras_hub.src.models.phi3.phi3_attention import Phi3Attention
from keras_hub.src.models.qwen.qwen_attention import QwenAttention
from keras_hub.src.models.qwen3.qwen3_attention import Qwen3Attention
from keras_hub.src.models.roformer_v2.roformer_v2_attention import (
    RoformerAttention,
)
from keras_hub.src.models.smollm3.smollm3_layers import SmolLM3Attention

from keras_addrop.layers.addrop_attention import ADDropAttention
from keras_addrop.layers.addrop_attention import ADDropCachedMultiHeadAttention
from keras_addrop.layers.addrop_attention import addrop_scope
from keras_addrop.layers.addrop_decoder_attention import ADDropDecoderAttention
from keras_addrop.layers.addrop_decoder_attention import ADDropSoftmax
from keras_addrop.layers.addrop_decoder_attention import decoder_attention_kind
from keras_addrop.layers.addrop_disentangled_attention import (
    ADDropDisentangledSelfAttention,
)
from keras_addrop.layers.addrop_roformer_attention import (
    ADDropRoformerAttention,
)
from keras_addrop.layers.attention_call import AttentionCall

# Each stock attention kind -> its AD-DROP layer, which adds no state: a
# built layer is converted in place (`keras_addrop.swap_attention`). A new
# kind plugs in here, reading the scope with `addrop_attention.scope_for`.
ATTENTION_KINDS = {
    keras.layers.MultiHeadAttention: ADDropAttention,
    DisentangledSelfAttention: ADDropDisentangledSelfAttention,
    RoformerAttention: ADDropRoformerAttention,
    CachedMultiHeadAttention: ADDropCachedMultiHeadAttention,
}
# The decoder LLMs' own attention layers: each one's explicit path ends in
# a masked `keras.layers.Softmax` (`ADDropDecoderAttention`).
ATTENTION_KINDS.update(
    {
        stock: decoder_attention_kind(stock, heads)
        for stock, heads in (
            (LlamaAttention, "num_query_heads"),
            (CachedMistralAttention, "_num_query_heads"),
            (QwenAttention, "num_query_heads"),
            (Qwen3Attention, "num_query_heads"),
            (Phi3Attention, "num_query_heads"),
            (SmolLM3Attention, "num_attention_heads"),
            (CachedMixtralAttention, "num_query_heads"),
            (CachedGemmaAttention, "num_query_heads"),
            (CachedGemma3Attention, "num_query_heads"),
            (GPTNeoXAttention, "num_heads"),
        )
    }
)
ADDROP_ATTENTION = tuple(ATTENTION_KINDS.values())
