import keras_hub
import tensorflow as tf
from keras_hub.src.models.gemma3.gemma3_causal_lm_preprocessor import (
    Gemma3CausalLMPreprocessor,
)

# keras-hub preprocessors that take `{"prompts", "responses"}` themselves.
_TAKE_PAIRS = (Gemma3CausalLMPreprocessor,)


def is_prompt_response(x):
    """Whether `x` is a batch of prompt/response pairs, as keras-hub's
    causal LMs that support them take it: `{"prompts": ..., "responses":
    ...}`."""
    return isinstance(x, dict) and set(x) == {"prompts", "responses"}


def takes_pairs(preprocessor):
    """Whether a keras-hub preprocessor handles prompt/response pairs."""
    return isinstance(preprocessor, _TAKE_PAIRS)


def _ragged(tokens):
    # Outside `tf.data`, keras-hub's tokenizers return Python lists.
    if isinstance(tokens, (tf.Tensor, tf.RaggedTensor)):
        return tokens
    return tf.ragged.constant(tokens)


def prompt_response_samples(preprocessor, prompts, responses):
    """Training samples of prompt/response pairs, loss on the response only.

    What keras-hub's Gemma 3 preprocessor does for its pairs, for any
    family's `keras_hub.models.CausalLMPreprocessor`: each prompt's and
    response's tokens are joined and packed by the preprocessor (its start
    and end tokens, its length, its padding side), `y` is the next token,
    and `sample_weight` is 1 exactly where the next token belongs to the
    response (its end token included), 0 on the prompt and the padding.
    A pair longer than the preprocessor's `sequence_length` loses the end
    of its response, as the packer truncates.

    Args:
        preprocessor: a `keras_hub.models.CausalLMPreprocessor`.
        prompts: a string, or a batch (list or tensor) of strings.
        responses: the same number of strings.

    Returns:
        `(x, y, sample_weight)`: `x` the dict of `token_ids` and
        `padding_mask`, each `(batch, sequence_length)`.
    """
    if not preprocessor.built:
        preprocessor.build(None)  # Makes its packer.
    tokenizer = preprocessor.tokenizer
    prompts, responses = (
        _ragged(tokenizer(prompts)),
        _ragged(tokenizer(responses)),
    )
    tokens = tf.concat([prompts, responses], axis=-1)
    in_response = tf.concat(
        [tf.zeros_like(prompts), tf.ones_like(responses)], axis=-1
    )
    length = preprocessor.sequence_length + 1
    add = {
        "add_start_value": preprocessor.add_start_token,
        "add_end_value": preprocessor.add_end_token,
    }
    packer = preprocessor.packer
    token_ids, padding_mask = packer(tokens, sequence_length=length, **add)
    # The same packing of a 0/1 mask: the start token is not the response,
    # the end token is.
    mask_packer = keras_hub.layers.StartEndPacker(
        sequence_length=length,
        start_value=0,
        end_value=1,
        pad_value=0,
        padding_side=packer.padding_side,
    )
    in_response = mask_packer(in_response, **add)
    token_ids = tf.convert_to_tensor(token_ids)
    padding_mask = tf.convert_to_tensor(padding_mask)
    in_response = tf.convert_to_tensor(in_response)
    x = {
        "token_ids": token_ids[..., :-1],
        "padding_mask": padding_mask[..., :-1],
    }
    weight = tf.logical_and(padding_mask[..., 1:], in_response[..., 1:] > 0)
    return x, token_ids[..., 1:], tf.cast(weight, "float32")
