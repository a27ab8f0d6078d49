import keras
import numpy as np
import tensorflow as tf
from keras_hub.src.layers.preprocessing.start_end_packer import StartEndPacker
from keras_hub.src.models.preprocessor import Preprocessor
from keras_hub.src.tokenizers.byte_pair_tokenizer import BytePairTokenizer
from keras_hub.src.utils.tensor_utils import preprocessing_function

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.validation import invalid_argument
from keras_addrop.validation import validate_bool
from keras_addrop.validation import validate_positive_int

INPUT_NAMES = ("token_ids", "padding_mask", "segment_ids")


@keras_addrop_export("keras_addrop.models.TokenClassifierPreprocessor")
class TokenClassifierPreprocessor(Preprocessor):
    """Words in, token inputs and per-token tags out: token classification.

    Takes sentences already split into words (as CoNLL files and Hugging
    Face's NER datasets hold them) and, when training, one integer tag per
    word. Each word is tokenized on its own with the preset's tokenizer
    (WordPiece, SentencePiece or byte-pair: the byte-pair families see each
    word after a space, as Hugging Face's `add_prefix_space=True`), the
    pieces are packed between the tokenizer's start and end tokens and
    padded to `sequence_length`. The first piece of each word carries the
    word's tag with weight 1; the other pieces of the word, the special
    tokens and the padding have weight 0 (and tag 0), so they count neither
    in the loss nor in AD-DROP's attribution target. With
    `label_all_tokens=True` every piece of a word carries its tag with
    weight 1 (Hugging Face `run_ner.py`'s option).

    Rules, so that tags never shift:
    - a word that tokenizes to nothing (a zero-width character, ...) is read
      as the tokenizer's unknown token, so it keeps a first piece and its
      tag;
    - a sentence whose pieces do not fit is truncated in pieces: the words
      whose first piece is cut off get no position (their tags are left out
      of the loss; `truncated_words` counts them, and
      `keras_addrop.models.ADDropTokenClassifier.predict_tags` tags them
      with tag 0);
    - an empty sentence is packed as the special tokens alone, with no
      weight at all.

    Works as keras-hub's preprocessors do: on Python lists, on ragged
    tensors and mapped over a `tf.data.Dataset`, on every backend.

    Args:
        tokenizer: a keras-hub tokenizer with start, end and padding tokens
            (the tokenizer of any keras-hub encoder family).
        sequence_length: int. The packed length, special tokens included.
            Defaults to `128`.
        label_all_tokens: bool. Whether every piece of a word carries its
            tag (weight 1), not only the first. Defaults to `False`.
        input_names: the inputs the backbone takes, among `"token_ids"`,
            `"padding_mask"` and `"segment_ids"` (all zeros). Set by
            `keras_addrop.models.ADDropTokenClassifier` from its backbone.
        **kwargs: passed to `keras_hub.models.Preprocessor`.

    Call arguments:
        x: the words: a list of sentences, each a list of strings, or a
            ragged string tensor `(batch, words)`.
        y: `None`, or the word tags: integers shaped as `x`.
        sample_weight: not accepted; the weights are made here.

    Returns:
        `x`, the backbone's inputs (a dict of `(batch, sequence_length)`
        tensors), or, with `y`, `(x, y, sample_weight)` with `y` the tag of
        every position and `sample_weight` its weight, both
        `(batch, sequence_length)`.

    Example:

    ```python
    preprocessor = keras_addrop.models.TokenClassifierPreprocessor(
        keras_hub.models.BertTokenizer.from_preset("bert_base_en_uncased"),
        sequence_length=32,
    )
    x, y, sample_weight = preprocessor(
        [["EU", "rejects", "German", "call"]], [[3, 0, 7, 0]]
    )
    ```
    """

    def __init__(
        self,
        tokenizer,
        sequence_length=128,
        label_all_tokens=False,
        input_names=INPUT_NAMES,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.sequence_length = validate_positive_int(
            "sequence_length", sequence_length
        )
        if self.sequence_length < 3:
            raise invalid_argument(
                "sequence_length",
                "an int of at least 3 (the start and end tokens and one piece)",
                sequence_length,
            )
        self.label_all_tokens = validate_bool(
            "label_all_tokens", label_all_tokens
        )
        names = tuple(input_names)
        if "token_ids" not in names or not set(names) <= set(INPUT_NAMES):
            raise invalid_argument(
                "input_names",
                f"`'token_ids'` and any of {list(INPUT_NAMES[1:])}",
                input_names,
            )
        self.input_names = names
        self.__dict__["_packers"] = None

    def _packer(self, name):
        # Made at first use: a tokenizer loaded from a file gets its
        # vocabulary, and so its special tokens, after construction.
        if self._packers is None:
            tokenizer = self.tokenizer
            for attribute in ("start_token_id", "end_token_id", "pad_token_id"):
                if getattr(tokenizer, attribute, None) is None:
                    raise ValueError(
                        "`TokenClassifierPreprocessor` needs a tokenizer with "
                        "start, end and padding tokens; this one has no "
                        f"`{attribute}`. Received: "
                        f"tokenizer={type(tokenizer).__name__}"
                    )
            self.__dict__["_packers"] = {
                key: StartEndPacker(
                    start_value=start,
                    end_value=end,
                    pad_value=pad,
                    sequence_length=self.sequence_length,
                    return_padding_mask=key == "token_ids",
                )
                for key, start, end, pad in (
                    (
                        "token_ids",
                        tokenizer.start_token_id,
                        tokenizer.end_token_id,
                        tokenizer.pad_token_id,
                    ),
                    ("tags", 0, 0, 0),
                    ("weights", 0, 0, 0),
                )
            }
        return self._packers[name]

    def _word_pieces(self, words):
        """`(batch, words, pieces)` ragged token ids; no word is empty."""
        if isinstance(self.tokenizer, BytePairTokenizer):
            # Byte-pair vocabularies mark a word's start by a space.
            words = tf.strings.join([" ", words])
        # One word at a time (byte-pair tokenizers take rank 1 only).
        flat = self.tokenizer(words.values)
        if not isinstance(flat, tf.RaggedTensor):
            flat = tf.RaggedTensor.from_tensor(flat)
        pieces = words.with_values(flat)
        # A word without pieces gets the unknown token, so that it keeps a
        # first piece and its tag.
        empty = tf.equal(pieces.values.row_lengths(), 0)
        unknown = tf.RaggedTensor.from_row_lengths(
            tf.fill(
                [tf.reduce_sum(tf.cast(empty, "int32"))],
                tf.cast(self._unknown_id(), pieces.dtype),
            ),
            tf.cast(empty, pieces.values.row_splits.dtype),
        )
        return pieces.with_values(tf.concat([pieces.values, unknown], axis=1))

    def _unknown_id(self):
        for name in ("unk_token_id", "unknown_token_id"):
            value = getattr(self.tokenizer, name, None)
            if value is not None:
                return value
        vocabulary = self.tokenizer.get_vocabulary()
        for token in (
            "[UNK]",
            "<unk>",
            getattr(self.tokenizer, "oov_token", 0),
        ):
            if token in vocabulary:
                return self.tokenizer.token_to_id(token)
        # Byte-pair vocabularies without an unknown token never leave a
        # word without pieces (every byte has one).
        return self.tokenizer.pad_token_id

    @preprocessing_function
    def call(self, x, y=None, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                "`TokenClassifierPreprocessor` makes the sample weights "
                "itself (first piece of each word 1, the rest 0). Received: "
                "sample_weight"
            )
        words = _ragged(x, tf.string)
        tags = None if y is None else _ragged(y, tf.int32)
        return self._in_graph(self._pack)(words, tags)

    def _pack(self, words, tags):
        pieces = self._word_pieces(words)
        lengths = pieces.values.row_lengths()  # Pieces per word.
        sentence_pieces = pieces.merge_dims(1, 2)
        if self.label_all_tokens:
            weights = tf.ones_like(sentence_pieces.values, "float32")
        else:
            position = tf.ragged.range(lengths).values
            weights = tf.cast(tf.equal(position, 0), "float32")
        weights = sentence_pieces.with_values(weights)
        token_ids, padding_mask = self._packer("token_ids")(sentence_pieces)
        outputs = {
            "token_ids": token_ids,
            "padding_mask": padding_mask,
            "segment_ids": tf.zeros_like(token_ids),
        }
        x = {name: outputs[name] for name in self.input_names}
        if tags is None:
            return x
        tf.debugging.assert_equal(
            tags.row_lengths(),
            words.row_lengths(),
            message="Every word needs one tag: `y` must have the shape of "
            "`x`, sentence by sentence",
        )
        piece_tags = sentence_pieces.with_values(
            tf.repeat(tags.values, lengths)
        )
        y = self._packer("tags")(piece_tags)
        sample_weight = self._packer("weights")(weights)
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    def truncated_words(self, x):
        """How many words of each sentence of `x` lose their first piece to
        truncation (and so have no position), as a NumPy int array."""
        starts = self._in_graph(self._word_starts)(_ragged(x, tf.string))
        cut = tf.ragged.map_flat_values(
            lambda s: tf.cast(s >= self.sequence_length - 2, "int32"), starts
        )
        return np.asarray(tf.reduce_sum(cut, axis=1))

    def _word_starts(self, words):
        # Each word's first piece, counted among the sentence's pieces.
        pieces = self._word_pieces(words)
        lengths = pieces.values.row_lengths()
        before = tf.math.cumsum(lengths, exclusive=True)
        row_start = tf.gather(
            tf.concat([before, [tf.reduce_sum(lengths)]], 0),
            pieces.row_splits[:-1],
        )
        rows = pieces.value_rowids()
        return tf.RaggedTensor.from_row_splits(
            before - tf.gather(row_start, rows), pieces.row_splits
        )

    def first_pieces(self, x):
        """For each sentence, the position of each word's first piece in
        the packed sequence, or -1 where truncation cut it off: a ragged
        int tensor `(batch, words)`."""
        words = _ragged(x, tf.string)
        starts = self._in_graph(self._word_starts)(words) + 1  # After [CLS].
        limit = self.sequence_length - 1
        return tf.ragged.map_flat_values(
            lambda s: tf.where(s < limit, s, -tf.ones_like(s)), starts
        )

    def _in_graph(self, function):
        # keras-hub 0.32 tokenizes eagerly in Python; its TensorFlow path
        # (ragged batches of words) runs in graphs, traced once per method.
        if not tf.executing_eagerly():
            return function
        traced = self.__dict__.setdefault("_traced", {})
        name = function.__name__
        if name not in traced:
            traced[name] = tf.function(function, reduce_retracing=True)
        return traced[name]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "label_all_tokens": self.label_all_tokens,
                "input_names": list(self.input_names),
            }
        )
        return config


def _ragged(values, dtype):
    """`values` (lists of lists, a tensor or a ragged tensor) as a ragged
    tensor `(batch, words)`."""
    if isinstance(values, tf.RaggedTensor):
        return tf.cast(values, dtype) if dtype != tf.string else values
    if isinstance(values, tf.Tensor):
        values = tf.RaggedTensor.from_tensor(values)
        return tf.cast(values, dtype) if dtype != tf.string else values
    values = [list(sentence) for sentence in values]
    return tf.ragged.constant(values, dtype=dtype, ragged_rank=1)
