"""What every AD-DROP task shares, whatever its outputs."""

import functools
import json
import os
import sys

import keras
import keras_hub
from keras_hub.src.utils import preset_utils

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.models.attention_calls import find_attention_calls
from keras_addrop.models.swap_attention import swap_attention
from keras_addrop.train_step import ADDropTrainStep
from keras_addrop.train_step import with_addrop_arguments

ADDROP_ARGUMENTS = (
    "candidate_ratio",
    "drop_rate",
    "addrop_layers",
    "attribution",
    "attribution_labels",
    "attribution_score",
    "drop_region",
    "ig_steps",
    "seed",
    "merge_repeated_rows",
)

# In a preset written by an AD-DROP task: its AD-DROP settings, beside the
# files that keras-hub writes for the task.
ADDROP_CONFIG_FILE = "addrop.json"
# The compile config's record of the optimizer's variable order.
_OPTIMIZER_ORDER = "optimizer_variable_paths"

# Per task type (a direct subclass of `ADDropTask`): the keras-hub class a
# preset resolves to (a stock task, or a backbone where keras-hub has no
# task) -> the AD-DROP task class for it.
_FAMILIES = {}


def task_families(task_type):
    """The family table of one task type: a dict from the keras-hub class a
    preset resolves to (the stock task class, or the backbone class where
    keras-hub has no task) to the AD-DROP class."""
    return _FAMILIES.setdefault(task_type, {})


def family_class(cls):
    """Registers an AD-DROP task class as its stock class's family member,
    in its task type's table."""
    task_families(cls.task_type())[cls._stock_cls] = cls
    return cls


def make_family_class(task_type, stock_cls, family, lora_layer_names=None):
    """The AD-DROP class of one family's stock keras-hub task, e.g.
    `ADDropLlamaCausalLM` of `keras_hub.models.LlamaCausalLM` under the
    task type `ADDropCausalLM`: a subclass of both, in the task type's
    module, registered for serialization, exported, and entered in the
    task type's family table."""
    name = f"ADDrop{stock_cls.__name__}"
    cls = type(
        name,
        (task_type, stock_cls),
        {
            "__module__": task_type.__module__,
            "__qualname__": name,
            "__doc__": (
                f"keras-hub's `{stock_cls.__name__}` fine-tuned with "
                "AD-DROP: see "
                f"`keras_addrop.models.{task_type.__name__}`.\n\n"
                "    Args:\n        {addrop_arguments}\n"
            ),
            "_stock_cls": stock_cls,
            "_family": family,
            "_lora_layer_names": lora_layer_names,
        },
    )
    # Where pickling and `keras.saving` look the class up.
    setattr(sys.modules[task_type.__module__], name, cls)
    export = keras_addrop_export(f"keras_addrop.models.{name}")
    return family_class(export(with_addrop_arguments(cls)))


def family_names(task_type, names=None):
    """The names of the families a task type supports, e.g. "BERT, ...":
    the classes' `_family`, or `names` (key class -> name) where one class
    serves several families."""
    table = task_families(task_type)
    found = (
        names[key] if names is not None else cls._family
        for key, cls in table.items()
    )
    return ", ".join(sorted(found, key=str.lower))


def stock_task_class(preset, task_base):
    """The stock keras-hub task class a preset loads as.

    A keras-hub folder with a `task.json` names its class (an AD-DROP class
    stands for its stock class); otherwise the preset's backbone class
    picks the subclass of `task_base` (`keras_hub.models.TextClassifier`,
    `keras_hub.models.CausalLM`, ...), as `task_base.from_preset` picks it.
    Where keras-hub has no such task for the backbone, the backbone class.
    """
    if preset_utils.check_file_exists(preset, preset_utils.TASK_CONFIG_FILE):
        config = preset_utils.load_json(preset, preset_utils.TASK_CONFIG_FILE)
        task_cls = preset_utils.check_config_class(config)
        return getattr(task_cls, "_stock_cls", None) or task_cls
    loader = preset_utils.get_preset_loader(preset)
    backbone_cls = loader.check_backbone_class()
    try:
        return preset_utils.find_subclass(preset, task_base, backbone_cls)
    except ValueError:
        return backbone_cls  # No such task: refused by the caller.


def split_addrop_arguments(preset, kwargs, names=ADDROP_ARGUMENTS):
    """`(AD-DROP arguments, other arguments)` of a `from_preset` call (the
    arguments in `names`); the preset's `addrop.json`, if any, fills the
    AD-DROP arguments not passed."""
    addrop_kwargs = {key: kwargs.pop(key) for key in names if key in kwargs}
    if preset_utils.check_file_exists(preset, ADDROP_CONFIG_FILE):
        saved = preset_utils.load_json(preset, ADDROP_CONFIG_FILE)
        addrop_kwargs = {**saved, **addrop_kwargs}
    return addrop_kwargs, kwargs


class ADDropTask(ADDropTrainStep):
    """The AD-DROP level of a keras-hub task: what every task type shares.

    As keras-hub's `Task` sits under `TextClassifier`, `CausalLM` and
    `Seq2SeqLM`, this class sits under the AD-DROP task types (the text
    classifiers, the token classifier, the causal LMs, the seq2seq LMs): a
    subclass is also a keras-hub task (its other base class). It swaps the
    backbone's attention for AD-DROP's in place (same weights; before
    keras-hub's `__init__` builds the task graph), finds the
    attention calls, restores the optimizer of a loaded model, refuses a
    LoRA setup that adapts nothing, writes `addrop.json` beside the preset
    keras-hub writes, and keeps the AD-DROP classes out of stock keras-hub's
    subclass searches. Each task type adds its outputs, its
    `compute_attribution_target`, its `from_preset` and its family table
    (`task_families`).
    """

    # The stock keras-hub task this class stands for in presets, if any.
    _stock_cls = None
    # The family's name in messages.
    _family = None
    # The names `backbone.enable_lora` needs, where keras-hub's default
    # names match none of the family's layers.
    _lora_layer_names = None
    # Of a task type with one AD-DROP class per stock task: the stock tasks'
    # keras-hub base class, and the task type's name in messages.
    _stock_base = None
    _noun = None
    # The task type's own AD-DROP arguments, beside `ADDROP_ARGUMENTS`
    # (saved in `addrop.json`, never in the stock task's config).
    _task_addrop_arguments = ()

    def __init__(self, *args, **kwargs):
        # The stock tasks take the backbone first; a task type that builds
        # its own graph swaps before building and passes `inputs`.
        backbone = kwargs.get("backbone", args[0] if args else None)
        if isinstance(backbone, keras_hub.models.Backbone):
            swap_attention(backbone)
        super().__init__(*args, **kwargs)

    @classmethod
    def task_type(cls):
        """The task type `cls` belongs to: the direct subclass of
        `ADDropTask` among its bases."""
        for klass in cls.__mro__:
            if ADDropTask in klass.__bases__:
                return klass
        raise TypeError(f"{cls.__name__} is not an AD-DROP task type")

    @classmethod
    def _preset_family(cls, preset):
        """The AD-DROP class of a preset's family, in the family table of
        the task type `cls` (which has one AD-DROP class per stock task);
        a family without one is refused by name."""
        stock = stock_task_class(preset, cls._stock_base)
        table = task_families(cls.task_type())
        for task_type, other in _FAMILIES.items():
            # keras-hub's `Seq2SeqLM` is a `CausalLM`: a BART preset asked
            # for as a causal LM is another task type's family. (A backbone
            # class stands for no task: it only says what keras-hub lacks.)
            is_task = issubclass(stock, keras_hub.models.Task)
            if is_task and task_type is not cls.task_type() and stock in other:
                raise ValueError(
                    f"The preset is a keras-hub {stock.__name__}, not a "
                    f"{cls._noun}: use keras_addrop.models."
                    f"{task_type.__name__}.from_preset. Received: "
                    f"preset={preset!r}"
                )
        if stock not in table:
            name = stock.__name__.removesuffix(cls._stock_base.__name__)
            raise ValueError(
                f"AD-DROP has no {cls._noun} for the "
                f"{name.removesuffix('Backbone')} family; it supports "
                f"{family_names(cls.task_type())}. Received: "
                f"preset={preset!r}"
            )
        return table[stock]

    @classmethod
    def _from_family_preset(
        cls, preset, load_weights=True, sequence_length=None, **kwargs
    ):
        """`from_preset` of a task type with one AD-DROP class per stock
        task (`_stock_base` and a family table): called on the task type,
        the preset's family class; on a family class, the stock task built
        from the preset, rebuilt as the AD-DROP class around its backbone
        and preprocessor with all its weights."""
        if cls._stock_cls is None:
            return cls._preset_family(preset).from_preset(
                preset,
                load_weights=load_weights,
                sequence_length=sequence_length,
                **kwargs,
            )
        names = cls._addrop_argument_names()
        addrop_kwargs, kwargs = split_addrop_arguments(preset, kwargs, names)
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
            and key not in names
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

    @classmethod
    def _addrop_argument_names(cls):
        return ADDROP_ARGUMENTS + cls._task_addrop_arguments

    def get_compile_config(self):
        config = super().get_compile_config()
        optimizer = getattr(self, "optimizer", None)
        if config is not None and optimizer is not None and optimizer.built:
            # The optimizer saves its moments by position, in the order of
            # the variables it was built on, and Keras lists a model's
            # variables in another order on some backends (BART's on
            # PyTorch): the order goes into the file by variable path.
            config[_OPTIMIZER_ORDER] = [
                variable.path for variable in optimizer._trainable_variables
            ]
        return config

    def compile_from_config(self, config):
        # keras-hub's tasks override `compile`, so Keras' own loading
        # skips it, and with it the optimizer's saved state. Their `compile`
        # takes the saved arguments as they are: a reloaded task resumes
        # training with its optimizer, step count and moments, also on
        # another backend than the one that saved it.
        config = dict(config)
        order = config.pop(_OPTIMIZER_ORDER, None)
        config["optimizer"] = _public_optimizer_modules(config.get("optimizer"))
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(
                _in_saved_order(self.trainable_variables, order)
            )

    def save_to_preset(self, preset_dir, max_shard_size=10):
        """Saves the task as a keras-hub preset, plus `addrop.json`.

        The preset's files are those keras-hub writes for the task (LoRA
        weights merged into the kernels as keras-hub merges them). Where the
        AD-DROP class stands for a stock keras-hub task, `task.json` names
        the stock class, so stock keras-hub loads the preset as the stock
        task with the same weights and predictions. The AD-DROP settings go
        into `addrop.json` beside them, which the AD-DROP class's
        `from_preset` restores.

        Args:
            preset_dir: the local preset folder.
            max_shard_size: as in `keras_hub.models.Task.save_to_preset`.
        """
        super().save_to_preset(preset_dir, max_shard_size=max_shard_size)
        _complete_backbone_config(preset_dir, self.backbone)
        path = os.path.join(preset_dir, preset_utils.TASK_CONFIG_FILE)
        with open(path) as f:
            task = json.load(f)
        stock = self._stock_cls
        if stock is not None:
            task.update(
                module=stock.__module__,
                class_name=stock.__name__,
                registered_name=keras.saving.get_registered_name(stock),
            )
            for key in self._addrop_argument_names():
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


def _public_optimizer_modules(config):
    """The optimizer's config, its classes named by `keras.optimizers`.

    Keras 3.15 on PyTorch saves its optimizers under their PyTorch modules
    (`keras.src.backend.torch.optimizers.torch_adam`), which another
    backend would import as they are, and fail to train with; the public
    name gives each backend its own class.
    """
    if isinstance(config, list):
        return [_public_optimizer_modules(value) for value in config]
    if not isinstance(config, dict):
        return config
    config = {
        key: _public_optimizer_modules(value) for key, value in config.items()
    }
    module = config.get("module")
    name = config.get("class_name")
    if (
        isinstance(module, str)
        and module.startswith("keras.src.backend.")
        and isinstance(name, str)
        and hasattr(keras.optimizers, name)
    ):
        config.update(module="keras.optimizers", registered_name=None)
    return config


def _in_saved_order(variables, paths):
    """`variables` in the order of the saved `paths`; as they are where
    the file has no order or saved other variables (a LoRA model's adapters,
    merged into the kernels when it was saved: Keras then skips the
    optimizer's state, with a warning, as the counts differ)."""
    by_path = {variable.path: variable for variable in variables}
    if (
        paths is None
        or len(by_path) != len(variables)
        or sorted(by_path) != sorted(paths)
    ):
        return variables
    return [by_path[path] for path in paths]


def _complete_backbone_config(preset_dir, backbone):
    """Adds to a saved preset's backbone config what keras-hub 0.32 leaves
    out of it: `tie_word_embeddings` of the Llama backbones, without which
    a preset of a model with tied embeddings (SmolLM2, Llama 3.2) builds
    an untied backbone that its own weights do not fit."""
    tied = getattr(backbone, "tie_word_embeddings", None)
    if tied is None:
        return
    path = os.path.join(preset_dir, preset_utils.CONFIG_FILE)
    with open(path) as f:
        config = json.load(f)
    if "tie_word_embeddings" in config["config"]:
        return
    config["config"]["tie_word_embeddings"] = tied
    with open(path, "w") as f:
        f.write(json.dumps(config, indent=4))


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
