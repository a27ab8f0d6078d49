import keras_hub

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.models import addrop_task
from keras_addrop.models.addrop_task import ADDropTask
from keras_addrop.models.addrop_task import family_class  # noqa: F401
from keras_addrop.models.addrop_task import family_names
from keras_addrop.models.addrop_task import task_families


def supported_families():
    """The supported families' names, e.g. "BERT, DistilBERT, ..."."""
    return family_names(ADDropTextClassifier)


def stock_task_class(preset):
    """The stock keras-hub text classifier class a preset loads as (the
    backbone class where keras-hub has no classifier for it)."""
    return addrop_task.stock_task_class(preset, keras_hub.models.TextClassifier)


@keras_addrop_export("keras_addrop.models.ADDropTextClassifier")
class ADDropTextClassifier(ADDropTask):
    """The AD-DROP classifiers of keras-hub's text-classifier families.

    Every AD-DROP classifier is a subclass of this class and of its
    family's stock keras-hub classifier (its `_stock_cls`), e.g.
    `keras_addrop.models.ADDropBertTextClassifier` of
    `keras_hub.models.BertTextClassifier`: the stock task with the
    backbone's self-attention swapped for
    `keras_addrop.layers.ADDropAttention` (same weights; before keras-hub's
    `__init__` builds the task graph) and the two-pass AD-DROP
    `train_step` (`keras_addrop.ADDropTrainStep`).

    `ADDropTextClassifier.from_preset(preset, ...)` works as
    `keras_hub.models.TextClassifier.from_preset` does: it reads the
    preset's task or backbone class and returns that family's AD-DROP
    classifier, an instance of the stock classifier class.

    Families: ALBERT, BERT, DeBERTa-v3, DistilBERT, RoBERTa, RoFormer-v2 and
    XLM-RoBERTa (each with its own class, e.g.
    `keras_addrop.models.ADDropAlbertTextClassifier`).

    Example:

    ```python
    classifier = keras_addrop.models.ADDropTextClassifier.from_preset(
        "distil_bert_base_en_uncased", num_classes=2, addrop_layers="all"
    )
    isinstance(classifier, keras_hub.models.DistilBertTextClassifier)  # True
    ```
    """

    _stock_base = keras_hub.models.TextClassifier
    _noun = "classifier"

    @classmethod
    def from_preset(
        cls, preset, load_weights=True, sequence_length=None, **kwargs
    ):
        """Builds the classifier from a keras-hub or Hugging Face preset.

        Accepts whatever the keras-hub classifier's `from_preset` accepts: a
        preset name, a local keras-hub preset folder or a local Hugging Face
        folder (pass `num_classes` for those without a task head), plus the
        AD-DROP arguments. A folder saved from the stock classifier loads
        with its fine-tuned head; one saved from this class keeps its
        AD-DROP settings unless they are passed again. `sequence_length`
        builds the preset's preprocessor with that length (Hugging Face
        folders otherwise default to 512). Called on
        `ADDropTextClassifier` itself, it returns the AD-DROP classifier of
        the preset's family.

        Args:
            preset: a preset name or a local folder.
            load_weights: whether to load the preset's weights.
            sequence_length: the preprocessor's sequence length, or None.
            **kwargs: the stock classifier's arguments (`num_classes`,
                `preprocessor`, ...) and the AD-DROP arguments.

        Returns:
            The AD-DROP classifier, an instance of the family's stock
            keras-hub classifier class.

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


# The stock keras-hub classifier of each family -> its AD-DROP classifier.
FAMILIES = task_families(ADDropTextClassifier)
