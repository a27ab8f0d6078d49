import keras

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


class ADDropHubClassifier(ADDropTrainStep):
    """What the AD-DROP keras-hub classifiers share, beside the train step.

    A subclass lists this mixin before its keras-hub classifier (its
    `_stock_cls`). The backbone's attention is swapped before the keras-hub
    `__init__` builds the task graph.
    """

    _stock_cls = None

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

    def _addrop_all_attention_layers(self):
        # Computed on demand: a list of sub-layers stored on the model would
        # be tracked and reorder `model.weights`.
        return swap_attention(self.backbone)

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
        folders otherwise default to 512).
        """
        addrop_kwargs = {
            key: kwargs.pop(key) for key in ADDROP_ARGUMENTS if key in kwargs
        }
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
