import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras import ops
from keras_hub.src.utils import preset_utils

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.models.addrop_task import ADDropTask
from keras_addrop.models.addrop_task import family_names
from keras_addrop.models.addrop_task import split_addrop_arguments
from keras_addrop.models.addrop_task import task_families
from keras_addrop.models.swap_attention import swap_attention
from keras_addrop.models.token_classifier_preprocessor import (
    TokenClassifierPreprocessor,
)
from keras_addrop.ner.entity_f1 import EntityF1
from keras_addrop.ner.entity_f1 import validate_tag_names
from keras_addrop.train_step import with_addrop_arguments
from keras_addrop.validation import validate_positive_int
from keras_addrop.validation import validate_ratio

# The encoder backbones a token classifier takes, by family name. keras-hub
# has no token-classification task, so the table is keyed by backbone.
_BACKBONE_FAMILIES = {
    keras_hub.models.AlbertBackbone: "ALBERT",
    keras_hub.models.BertBackbone: "BERT",
    keras_hub.models.DebertaV3Backbone: "DeBERTa-v3",
    keras_hub.models.DistilBertBackbone: "DistilBERT",
    keras_hub.models.ElectraBackbone: "ELECTRA",
    keras_hub.models.RobertaBackbone: "RoBERTa",
    keras_hub.models.RoformerV2Backbone: "RoFormer-v2",
    keras_hub.models.XLMRobertaBackbone: "XLM-RoBERTa",
}


def _backbone_family(backbone_cls):
    """The supported family `backbone_cls` belongs to, or None."""
    for klass in backbone_cls.__mro__:
        if klass in _BACKBONE_FAMILIES:
            return klass
    return None


def _refuse_family(backbone_cls, argument, value):
    name = backbone_cls.__name__.removesuffix("Backbone")
    supported = family_names(ADDropTokenClassifier, _BACKBONE_FAMILIES)
    raise ValueError(
        f"AD-DROP has no token classifier for the {name} family; it "
        f"supports {supported}. Received: {argument}={value!r}"
    )


@keras_addrop_export("keras_addrop.models.ADDropTokenClassifier")
@with_addrop_arguments
class ADDropTokenClassifier(ADDropTask, keras_hub.models.Task):
    """A token classifier (NER, ...) on a keras-hub encoder, with AD-DROP.

    Dropout and a dense layer on every position of the backbone's sequence
    output: logits of shape `(batch, sequence, num_classes)`, padding and
    pieces that carry no tag left out through `sample_weight` (the contract
    of keras-hub's proposed `TokenClassifier`, so that a model can move to
    it when it lands). The backbone's self-attention is swapped for
    AD-DROP's (same weights) and `fit` runs AD-DROP's two-pass step: the
    attribution pass differentiates, in one gradient call for every
    selected layer, the sum over the tokens that count (`sample_weight` >
    0: first pieces of words) of each token's pseudo-label logit (or
    log-probability, `attribution_score="log_probability"`, the authors'
    NER choice); the training pass drops a share of each attention row's
    highest-attribution keys. Every AD-DROP option works as for sentence
    classifiers. Evaluation and prediction never apply AD-DROP; with
    AD-DROP inactive the model computes what a plain Keras model of the
    same layers computes.

    Backbones: ALBERT, BERT, DeBERTa-v3, DistilBERT, ELECTRA, RoBERTa,
    RoFormer-v2 and XLM-RoBERTa (keras-hub has no token-classification task,
    so one class serves every family). Train it on the outputs of
    `keras_addrop.models.TokenClassifierPreprocessor` (words in, one tag per
    word), or pass raw words to `fit` when the model holds that
    preprocessor; `predict_tags` returns one tag per word.

    Trains on the TensorFlow, JAX and PyTorch backends.

    Args:
        backbone: a keras-hub encoder backbone of a supported family. Its
            attention layers are converted in place (see
            `keras_addrop.swap_attention`).
        num_classes: int. The number of tags.
        preprocessor: `None` or a
            `keras_addrop.models.TokenClassifierPreprocessor`.
        dropout: float. Dropout before the per-token dense layer. Defaults
            to `0.1`.
        tag_names: `None` or the tag of each class id (such as `["O",
            "B-PER", "I-PER"]`). With it, `predict_tags` returns tag strings
            and `compile` adds entity F1
            (`keras_addrop.ner.EntityF1`) to the default metrics; it is
            saved with the model.
        {addrop_arguments}
        **kwargs: passed to `keras_hub.models.Task`.

    Raises:
        ValueError: for a backbone of an unsupported family, bad
            `num_classes` or `dropout`, or a bad AD-DROP argument.

    Example:

    ```python
    tagger = keras_addrop.models.ADDropTokenClassifier.from_preset(
        "bert_base_en_uncased", num_classes=9, sequence_length=64,
        candidate_ratio=0.3, drop_rate=0.3, addrop_layers="all",
    )
    words = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    tags = [[3, 0, 7, 0], [1, 2]]
    tagger.fit(x=words, y=tags, batch_size=2, epochs=2)
    tagger.predict_tags([["Peter", "Blackburn"]])  # [[1, 2]] once trained
    ```

    References:
        - [Yang et al., 2022](https://arxiv.org/abs/2210.05883)
    """

    backbone_cls = keras_hub.models.Backbone
    preprocessor_cls = TokenClassifierPreprocessor

    def __init__(
        self,
        backbone,
        num_classes,
        preprocessor=None,
        dropout=0.1,
        tag_names=None,
        **kwargs,
    ):
        if _backbone_family(type(backbone)) is None:
            _refuse_family(type(backbone), "backbone", type(backbone).__name__)
        num_classes = validate_positive_int("num_classes", num_classes)
        dropout = validate_ratio("dropout", dropout, include_one=False)
        if tag_names is not None:
            tag_names = validate_tag_names(tag_names)
            if len(tag_names) != num_classes:
                raise ValueError(
                    "`tag_names` needs one tag per class. Received: "
                    f"tag_names={tag_names} for num_classes={num_classes}"
                )
        swap_attention(backbone)
        if preprocessor is not None:
            # The inputs this backbone takes, and no others.
            preprocessor.input_names = tuple(backbone.input)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.output_dropout = keras.layers.Dropout(
            dropout, dtype=backbone.dtype_policy, name="output_dropout"
        )
        self.output_dense = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=backbone.dtype_policy,
            name="logits",
        )
        # Read by `compile`, which keras-hub's `Task` calls in `__init__`.
        self.tag_names = tag_names
        # === Functional Model ===
        inputs = backbone.input
        sequence = backbone(inputs)
        if isinstance(sequence, dict):
            sequence = sequence["sequence_output"]
        outputs = self.output_dense(self.output_dropout(sequence))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # === Config ===
        self.num_classes = num_classes
        self.dropout = dropout

    def compile(
        self,
        optimizer="auto",
        loss="auto",
        *,
        weighted_metrics="auto",
        **kwargs,
    ):
        """keras-hub's defaults for a token classifier: Adam at 5e-5,
        sparse cross-entropy on logits, and accuracy weighted by
        `sample_weight` (tokens that carry a tag only), with entity F1
        (`keras_addrop.ner.EntityF1`) where the model has `tag_names`."""
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(5e-5)
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if weighted_metrics == "auto":
            weighted_metrics = [keras.metrics.SparseCategoricalAccuracy()]
            if self.tag_names is not None:
                weighted_metrics.append(EntityF1(self.tag_names))
        super().compile(
            optimizer=optimizer,
            loss=loss,
            weighted_metrics=weighted_metrics,
            **kwargs,
        )

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        if _are_words(x):
            x = _words_dataset(
                x,
                y,
                batch_size,
                shuffle=kwargs.pop("shuffle", True),
                seed=self.seed,
            )
            y = batch_size = None
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and _are_words(validation[0]):
            kwargs["validation_data"] = _words_dataset(
                validation[0],
                validation[1],
                kwargs.get("validation_batch_size"),
            )
        return super().fit(x, y, batch_size=batch_size, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        if _are_words(x):
            x, y, batch_size = _words_dataset(x, y, batch_size), None, None
        return super().evaluate(x, y, batch_size=batch_size, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        if _are_words(x):
            x, batch_size = _words_dataset(x, None, batch_size), None
        return super().predict(x, batch_size=batch_size, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "dropout": self.dropout,
                "tag_names": self.tag_names,
            }
        )
        return config

    def _addrop_padding_mask(self, x):
        if "padding_mask" in x:
            return x["padding_mask"]
        # Backbones without a padding-mask input (RoFormer-v2) pad with 0.
        return ops.not_equal(x["token_ids"], 0)

    def predict_tags(self, words, batch_size=32):
        """One tag per word: the argmax at each word's first piece.

        Args:
            words: a list of sentences, each a list of words.
            batch_size: int. Sentences per prediction batch.

        Returns:
            A list of lists of tags, one per word: tag strings where the
            model has `tag_names`, int class ids otherwise. Words that
            truncation cut off (see `TokenClassifierPreprocessor`) get class
            0.

        Raises:
            ValueError: if the model holds no preprocessor.
        """
        if self.preprocessor is None:
            raise ValueError(
                "`predict_tags` needs the model's preprocessor, to tokenize "
                "the words and find each word's first piece. Received: a "
                "model with preprocessor=None"
            )
        words = [list(sentence) for sentence in words]
        if not words:
            return []
        logits = self.predict(words, batch_size=batch_size, verbose=0)
        predicted = np.argmax(keras.ops.convert_to_numpy(logits), axis=-1)
        starts = self.preprocessor.first_pieces(words).to_list()
        tags = [
            [int(predicted[b, s]) if s >= 0 else 0 for s in sentence]
            for b, sentence in enumerate(starts)
        ]
        if self.tag_names is None:
            return tags
        return [[self.tag_names[t] for t in sentence] for sentence in tags]

    @classmethod
    def from_preset(
        cls,
        preset,
        num_classes=None,
        load_weights=True,
        sequence_length=None,
        label_all_tokens=False,
        **kwargs,
    ):
        """Builds the token classifier from a keras-hub or Hugging Face
        preset of a supported encoder family.

        A preset of the encoder alone (a keras-hub preset name or folder, a
        Hugging Face folder) gives the pretrained backbone, a new per-token
        head of `num_classes` tags and a
        `keras_addrop.models.TokenClassifierPreprocessor` with the preset's
        tokenizer. A folder written by `save_to_preset` holds the whole
        token classifier (`task.json` names this class, so stock keras-hub,
        which has no token classifier, cannot load it as a task; its
        backbone and tokenizer load with keras-hub as usual) and
        `addrop.json`; it loads with its head and AD-DROP settings, unless
        `num_classes` or AD-DROP arguments are passed again.

        Args:
            preset: a preset name or a local folder.
            num_classes: int, the number of tags. Required unless the preset
                holds a token classifier.
            load_weights: whether to load the preset's weights.
            sequence_length: the preprocessor's length; defaults to `128`
                (or the saved preprocessor's).
            label_all_tokens: as in `TokenClassifierPreprocessor`.
            **kwargs: `dropout` and the AD-DROP arguments.

        Returns:
            An `ADDropTokenClassifier`.

        Raises:
            ValueError: for a preset of an unsupported family (the message
                names it and the supported ones), or a missing
                `num_classes`.
        """
        addrop_kwargs, kwargs = split_addrop_arguments(preset, kwargs)
        loader = preset_utils.get_preset_loader(preset)
        backbone_cls = loader.check_backbone_class()
        if _backbone_family(backbone_cls) is None:
            _refuse_family(backbone_cls, "preset", preset)
        if _holds_token_classifier(preset, cls):
            if num_classes is not None:
                kwargs["num_classes"] = num_classes
                # A new head: the saved tags belong to the old one.
                kwargs.setdefault("tag_names", None)
            task = loader.load_task(
                cls,
                load_weights,
                num_classes is None,
                **addrop_kwargs,
                **kwargs,
            )
            if sequence_length is not None or label_all_tokens:
                task.preprocessor = TokenClassifierPreprocessor(
                    task.preprocessor.tokenizer,
                    sequence_length=(
                        sequence_length or task.preprocessor.sequence_length
                    ),
                    label_all_tokens=label_all_tokens,
                    input_names=task.preprocessor.input_names,
                )
            return task
        if num_classes is None:
            raise ValueError(
                "`num_classes` is required: this preset holds no token "
                "classifier, so the number of tags is not known. Received: "
                "num_classes=None"
            )
        backbone = loader.load_backbone(backbone_cls, load_weights)
        tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset)
        preprocessor = TokenClassifierPreprocessor(
            tokenizer,
            sequence_length=sequence_length or 128,
            label_all_tokens=label_all_tokens,
        )
        return cls(
            backbone,
            num_classes,
            preprocessor=preprocessor,
            **kwargs,
            **addrop_kwargs,
        )


def _are_words(x):
    """Whether `x` is sentences of words as Python lists (ragged), which
    Keras cannot batch: they go through a ragged `tf.data` pipeline."""
    return (
        isinstance(x, (list, tuple))
        and len(x) > 0
        and all(isinstance(sentence, (list, tuple)) for sentence in x)
    )


def _words_dataset(words, tags, batch_size, shuffle=False, seed=None):
    if not words:
        raise ValueError("No sentences to batch. Received: x=[]")
    x = tf.ragged.constant([list(s) for s in words], dtype=tf.string)
    if tags is None:
        data = tf.data.Dataset.from_tensor_slices(x)
    else:
        y = tf.ragged.constant([list(t) for t in tags], dtype=tf.int32)
        data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(words), seed=seed)
    return data.batch(batch_size or 32)


def _holds_token_classifier(preset, cls):
    if not preset_utils.check_file_exists(
        preset, preset_utils.TASK_CONFIG_FILE
    ):
        return False
    config = preset_utils.load_json(preset, preset_utils.TASK_CONFIG_FILE)
    return issubclass(preset_utils.check_config_class(config), cls)


# The backbone class of each supported family -> the token classifier.
FAMILIES = task_families(ADDropTokenClassifier)
FAMILIES.update(dict.fromkeys(_BACKBONE_FAMILIES, ADDropTokenClassifier))
