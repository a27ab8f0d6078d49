import keras
from keras_hub.src.models.deberta_v3.disentangled_self_attention import (
    DisentangledSelfAttention,
)
from keras_hub.src.models.roformer_v2.roformer_v2_attention import (
    RoformerAttention,
)

from keras_addrop.layers.addrop_attention import ADDropAttention
from keras_addrop.layers.addrop_attention import addrop_scope
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
}
ADDROP_ATTENTION = tuple(ATTENTION_KINDS.values())
