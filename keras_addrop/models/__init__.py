from keras_addrop.models import addrop_causal_lm as _addrop_causal_lm
from keras_addrop.models import addrop_seq2seq_lm as _addrop_seq2seq_lm
from keras_addrop.models.addrop_albert_text_classifier import (
    ADDropAlbertTextClassifier,
)
from keras_addrop.models.addrop_bert_text_classifier import (
    ADDropBertTextClassifier,
)
from keras_addrop.models.addrop_causal_lm import ADDropCausalLM
from keras_addrop.models.addrop_deberta_v3_text_classifier import (
    ADDropDebertaV3TextClassifier,
)
from keras_addrop.models.addrop_distil_bert_text_classifier import (
    ADDropDistilBertTextClassifier,
)
from keras_addrop.models.addrop_model import ADDropModel
from keras_addrop.models.addrop_roberta_text_classifier import (
    ADDropRobertaTextClassifier,
)
from keras_addrop.models.addrop_roformer_v2_text_classifier import (
    ADDropRoformerV2TextClassifier,
)
from keras_addrop.models.addrop_seq2seq_lm import ADDropSeq2SeqLM
from keras_addrop.models.addrop_text_classifier import ADDropTextClassifier
from keras_addrop.models.addrop_token_classifier import ADDropTokenClassifier
from keras_addrop.models.addrop_xlm_roberta_text_classifier import (
    ADDropXLMRobertaTextClassifier,
)
from keras_addrop.models.mean_pooling_classifier import mean_pooling_classifier
from keras_addrop.models.presets import minilm_l6_preset
from keras_addrop.models.presets import smollm2_preset
from keras_addrop.models.swap_attention import swap_attention
from keras_addrop.models.token_classifier_preprocessor import (
    TokenClassifierPreprocessor,
)

# One AD-DROP class per stock causal LM, e.g. `ADDropLlama3CausalLM`.
globals().update(
    {cls.__name__: cls for cls in _addrop_causal_lm.FAMILY_CLASSES}
)
# And per stock seq2seq LM: `ADDropBartSeq2SeqLM`.
globals().update(
    {cls.__name__: cls for cls in _addrop_seq2seq_lm.FAMILY_CLASSES}
)
