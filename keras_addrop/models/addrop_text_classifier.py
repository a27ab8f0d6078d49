import functools
import json
import os

import keras
import keras_hub
from keras_hub.src.utils import preset_utils

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.models.attention_calls import find_attention_calls
from keras_addrop.models.swap_attention import swap_attention
from keras_addrop.train_step import ADDropTrainStep

ADDROP_ARGUMENTS = (
    "candidate_ratio",
    "drop_rate",
    "addrop_layers",
    "attribution",
    "attribution_labels",
    "drop_region",
    "ig_steps",
    "seed",
    "merge_repeated_rows",
)


# The stock keras-hub classifier of each family -> its AD-DROP classifier.
FAMILIES = {}

# In a preset written by an AD-DROP classifier: its AD-DROP settings (the
# task's own files describe the stock classifier).
ADDROP_CONFIG_FILE = "addrop.json"


def family_class(cls):
    """Registers an AD-DROP classifier as its stock class's family member."""
    FAMILIES[cls._stock_cls] = cls
    return cls


def supported_families():
    """The supported families' names, e.g. "BERT, DistilBERT, ..."."""
    names = sorted(
        (addrop._family for addrop in FAMILIES.values()), key=str.lower
    )
    return ", ".join(names)


def stock_task_class(preset):
    """The stock keras-hub text classifier class a preset loads as.

    A keras-hub folder with a `task.json` names its class (an AD-DROP class
    stands for its stock class); otherwise the preset's backbone class
    picks the classifier, as `keras_hub.models.TextClassifier.from_preset`
    picks it.
    """
    if preset_utils.check_file_exists(preset, preset_utils.TASK_CONFIG_FILE):
        config = preset_utils.load_json(preset, preset_utils.TASK_CONFIG_FILE)
        task_cls = preset_utils.check_config_class(config)
        return getattr(task_cls, "_stock_cls", None) or task_cls
    loader = preset_utils.get_preset_loader(preset)
    backbone_cls = loader.check_backbone_class()
    try:
        return preset_utils.find_subclass(
            preset, keras_hub.models.TextClassifier, backbone_cls
        )
    except ValueError:
        return backbone_cls  # No text classifier: refused by the caller.


@keras_addrop_export("keras_addrop.models.ADDropTextClassifier")
class ADDropTextClassifier(ADDropTrainStep):
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

    _stock_cls = None
    # The family's name in messages.
    _family = None
    # The names `backbone.enable_lora` needs, where keras-hub's default
    # names match none of the family's layers.
    _lora_layer_names = None

    def __init__(self, *args, **kwargs):
        swap_attention(kwargs["backbone"] if "backbone" in kwargs else args[0])
        super().__init__(*args, **kwargs)

    def compile_from_config(self, config):
        # keras-hub's classifiers override `compile`, so Keras' own loading
        # skips it, and with it the optimizer's saved state. Their `compile`
        # takes the saved arguments as they are: a reloaded classifier
        # resumes training with its optimizer, step count and moments.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def save_to_preset(self, preset_dir, max_shard_size=10):
        """Saves the classifier as a preset of its stock keras-hub class.

        The preset's files are those the stock classifier writes (its
        `task.json` names the stock class), so stock keras-hub loads it as
        the stock classifier with the same weights and predictions, LoRA
        weights merged into the kernels as keras-hub merges them. The AD-DROP
        settings go into `addrop.json` beside them, which
        `keras_addrop.models.ADDropTextClassifier.from_preset` (or this
        class's) restores.

        Args:
            preset_dir: the local preset folder.
            max_shard_size: as in `keras_hub.models.Task.save_to_preset`.
        """
        super().save_to_preset(preset_dir, max_shard_size=max_shard_size)
        path = os.path.join(preset_dir, preset_utils.TASK_CONFIG_FILE)
        with open(path) as f:
            task = json.load(f)
        stock = self._stock_cls
        task.update(
            module=stock.__module__,
            class_name=stock.__name__,
            registered_name=keras.saving.get_registered_name(stock),
        )
        for key in ADDROP_ARGUMENTS:
            task["config"].pop(key, None)
        with open(path, "w") as f:
            f.write(json.dumps(task, indent=4))
        with open(os.path.join(preset_dir, ADDROP_CONFIG_FILE), "w") as f:
            f.write(json.dumps(self._addrop_config(), indent=4))

    def make_train_function(self, force=False):
        _check_lora(self.backbone, self._lora_layer_names)
        return super().make_train_function(force)

    def _addrop_all_attention_calls(self):
        # Computed on demand: a list of sub-layers stored on the model would
        # be tracked and reorder `model.weights`.
        swap_attention(self.backbone)
        return find_attention_calls(self.backbone)

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
        if cls._stock_cls is None:
            stock = stock_task_class(preset)
            if stock not in FAMILIES:
                name = stock.__name__.removesuffix("TextClassifier")
                raise ValueError(
                    f"AD-DROP has no classifier for the {name} family; it "
                    f"supports {supported_families()}. Received: "
                    f"preset={preset!r}"
                )
            return FAMILIES[stock].from_preset(
                preset,
                load_weights=load_weights,
                sequence_length=sequence_length,
                **kwargs,
            )
        addrop_kwargs = {
            key: kwargs.pop(key) for key in ADDROP_ARGUMENTS if key in kwargs
        }
        if preset_utils.check_file_exists(preset, ADDROP_CONFIG_FILE):
            saved = preset_utils.load_json(preset, ADDROP_CONFIG_FILE)
            addrop_kwargs = {**saved, **addrop_kwargs}
        if sequence_length is not None and "preprocessor" not in kwargs:
            preprocessor_cls = cls._stock_cls.preprocessor_cls
            kwargs["preprocessor"] = preprocessor_cls.from_preset(
                preset, sequence_length=sequence_length
            )
        # The stock class loads every preset kind, stock or AD-DROP task
        # files included; the AD-DROP model is then built around its
        # backbone and preprocessor, which keeps all their weights.
        task = cls._stock_cls.from_preset(
            preset, load_weights=load_weights, **kwargs
        )
        if isinstance(task, cls):
            if not addrop_kwargs:
                return task
            addrop_kwargs = {**task._addrop_config(), **addrop_kwargs}
        # The head's hyperparameters (num_classes, activation, dropout,
        # hidden_dim, ...) come from the loaded task's own config.
        head = {
            key: value
            for key, value in task.get_config().items()
            if key not in ("backbone", "preprocessor", "name", "trainable")
            and key not in ADDROP_ARGUMENTS
        }
        model = cls(
            backbone=task.backbone,
            preprocessor=task.preprocessor,
            **head,
            **addrop_kwargs,
        )
        # Same layers in the same order: this copies the task head, and the
        # shared backbone onto itself.
        model.set_weights(task.get_weights())
        return model


def _check_lora(backbone, names):
    """Refuses to train a backbone where `enable_lora` adapted nothing.

    `enable_lora` freezes every backbone weight and then adapts the layers
    it finds by name; when no name matches (keras-hub's defaults on
    RoFormer-v2), only the head would train, silently.
    """
    if getattr(backbone, "_lora_rank", None) is None:
        return
    if getattr(backbone, "_lora_enabled_layers", None):
        return
    hint = f" (for this family: {list(names)})" if names is not None else ""
    raise ValueError(
        f"`enable_lora` adapted no layer of this {type(backbone).__name__}: "
        "its `target_layer_names` matched none of the backbone's layers, so "
        "every backbone weight is frozen and only the head would train. "
        "Pass the names of the attention's query and value projections"
        f"{hint}. Received: target_layer_names that match no layer"
    )


def _stock_searches_skip_addrop_classes(list_subclasses):
    """keras-hub's subclass search, with the AD-DROP classes left out of
    every search for a class that is not AD-DROP's.

    `keras_hub.models.TextClassifier.from_preset(preset)` picks the task
    class through `find_subclass`: among the registered subclasses with the
    preset's backbone class it keeps only the direct subclasses when there
    are several of those, else takes the first of an unordered set. An
    AD-DROP classifier (registered, and a subclass of the stock one, with
    the same backbone class) would then be returned instead of the stock
    class in some processes and not in others. Left out, stock keras-hub
    finds what it finds without keras_addrop; a search from an AD-DROP class
    is unchanged.
    """
    if getattr(list_subclasses, "_skips_addrop_classes", False):
        return list_subclasses

    @functools.wraps(list_subclasses)
    def search(cls):
        found = list_subclasses(cls)
        if isinstance(cls, type) and issubclass(cls, ADDropTrainStep):
            return found
        return [c for c in found if not issubclass(c, ADDropTrainStep)]

    search._skips_addrop_classes = True
    return search


# See docs/concepts/keras-workarounds.md.
preset_utils.list_subclasses = _stock_searches_skip_addrop_classes(
    preset_utils.list_subclasses
)
