"""The two-pass AD-DROP training step, shared by every AD-DROP model."""

import numbers
import warnings

import keras
from keras import ops

from keras_addrop import tf_backend
from keras_addrop.attribution import LABELS
from keras_addrop.attribution import METHODS
from keras_addrop.attribution import compute_attribution
from keras_addrop.attribution import validate_choice
from keras_addrop.attribution import validate_ig_steps
from keras_addrop.layers.addrop_attention import addrop_scope
from keras_addrop.ops.addrop_mask import addrop_mask
from keras_addrop.ops.addrop_mask import keep_mask_from_candidates
from keras_addrop.ops.addrop_mask import random_candidates
from keras_addrop.ops.addrop_mask import validate_ratio
from keras_addrop.optimizers import merge_repeated_rows

DROP_REGIONS = ("high", "low")

DROP_FRACTION = "addrop_drop_fraction"

_UNUSED_POOLER = (
    r"Gradients do not exist for variables "
    r"\['pooled_dense/kernel', 'pooled_dense/bias'\]"
)


def resolve_layer_indices(addrop_layers, num_layers):
    """Validates `addrop_layers` and returns it as a sorted tuple of ints."""
    if isinstance(addrop_layers, str):
        if addrop_layers != "all":
            raise ValueError(
                "Invalid value for argument `addrop_layers`: expected 'all' "
                "or a sequence of layer indices (0 is the first layer). "
                f"Received: addrop_layers={addrop_layers!r}"
            )
        return tuple(range(num_layers))
    if isinstance(addrop_layers, numbers.Integral):
        addrop_layers = (addrop_layers,)
    try:
        indices = tuple(addrop_layers)
    except TypeError:
        indices = None
    if (
        not indices
        or any(
            isinstance(i, bool) or not isinstance(i, numbers.Integral)
            for i in indices
        )
        or len(set(indices)) != len(indices)
        or any(not 0 <= i < num_layers for i in indices)
    ):
        raise ValueError(
            "Invalid value for argument `addrop_layers`: expected 'all' or "
            f"distinct layer indices in [0, {num_layers}). Received: "
            f"addrop_layers={addrop_layers!r}"
        )
    return tuple(sorted(int(i) for i in indices))


class ADDropTrainStep:
    """Mixin adding AD-DROP's two-pass `train_step` to a Keras model.

    A model class lists it before its Keras base class and implements
    `_addrop_all_attention_layers()` (every `ADDropAttention` layer, in
    layer order) and, if its inputs are not keras-hub's preprocessed dicts,
    `_addrop_padding_mask(x)`. The mixin takes the AD-DROP arguments as
    keyword-only constructor arguments (validated, and serialized by
    `get_config`) and passes everything else on to the base class.

    One step, when AD-DROP is on:
    1. pass 1 (attribution): forward in training mode and one gradient call
       for the attribution of every selected layer
       (`keras_addrop.attribution.compute_attribution`); no weight gradient,
       no metric or loss-tracker update;
    2. masks: `keras_addrop.ops.addrop_mask` per layer;
    3. pass 2 (training): forward in training mode with the masks, then
       Keras' own checklist: loss with `sample_weight` and regularisation
       losses, loss tracker, loss scaling, gradients, `optimizer.apply`,
       compiled metrics.
    When AD-DROP is off (a plain cross-tuning epoch) the step is Keras'
    stock `train_step`. The switch is a variable read by the traced graph,
    so flipping it never retraces.

    With `merge_repeated_rows=True` (the default) `fit` first applies
    `keras_addrop.optimizers.merge_repeated_rows` to the model's optimizer,
    so that an embedding row looked up several times in a batch is updated
    as the dense gradient updates it; `False` keeps Keras' stock update of
    such rows bit for bit.
    """

    def __init__(
        self,
        *args,
        candidate_ratio=0.3,
        drop_rate=0.3,
        addrop_layers=(0,),
        attribution="gradient",
        attribution_labels="pseudo",
        drop_region="high",
        ig_steps=20,
        seed=None,
        merge_repeated_rows=True,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        # After the base class: layer indices are checked against the built
        # model's attention layers.
        self.candidate_ratio = validate_ratio(
            "candidate_ratio", candidate_ratio
        )
        self.drop_rate = validate_ratio("drop_rate", drop_rate)
        self.attribution = validate_choice("attribution", attribution, METHODS)
        self.attribution_labels = validate_choice(
            "attribution_labels", attribution_labels, LABELS
        )
        self.drop_region = validate_choice(
            "drop_region", drop_region, DROP_REGIONS
        )
        self.ig_steps = validate_ig_steps("ig_steps", ig_steps)
        num_layers = len(self._addrop_all_attention_layers())
        self._addrop_layer_indices = resolve_layer_indices(
            addrop_layers, num_layers
        )
        self.addrop_layers = (
            "all" if addrop_layers == "all" else self._addrop_layer_indices
        )
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
        ):
            raise ValueError(
                "Invalid value for argument `seed`: expected an int or None. "
                f"Received: seed={seed!r}"
            )
        self.seed = seed
        if not isinstance(merge_repeated_rows, bool):
            raise ValueError(
                "Invalid value for argument `merge_repeated_rows`: expected "
                f"True or False. Received: merge_repeated_rows="
                f"{merge_repeated_rows!r}"
            )
        self.merge_repeated_rows = merge_repeated_rows
        self._addrop_seed_generator = keras.random.SeedGenerator(seed)
        self._addrop_switch = tf_backend.make_switch(True)
        self._addrop_drop_fraction = keras.metrics.Mean(name=DROP_FRACTION)

    def get_config(self):
        config = super().get_config()
        config.update(self._addrop_config())
        return config

    def _addrop_config(self):
        return {
            "candidate_ratio": self.candidate_ratio,
            "drop_rate": self.drop_rate,
            "addrop_layers": (
                "all"
                if self.addrop_layers == "all"
                else list(self.addrop_layers)
            ),
            "attribution": self.attribution,
            "attribution_labels": self.attribution_labels,
            "drop_region": self.drop_region,
            "ig_steps": self.ig_steps,
            "seed": self.seed,
            "merge_repeated_rows": self.merge_repeated_rows,
        }

    @property
    def addrop_attention_layers(self):
        """The selected `ADDropAttention` layers, in layer order."""
        layers = self._addrop_all_attention_layers()
        return [layers[i] for i in self._addrop_layer_indices]

    @property
    def addrop_enabled(self):
        """Whether `fit` applies AD-DROP (a variable: no retrace to flip).

        `True` by default: AD-DROP on every epoch, the paper's "w/o
        cross-tuning". `keras_addrop.callbacks.CrossTuning` flips it per
        epoch. Evaluation and prediction never apply AD-DROP.
        """
        return bool(self._addrop_switch.numpy())

    @addrop_enabled.setter
    def addrop_enabled(self, value):
        self._addrop_switch.assign(bool(value))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 (TensorFlow trainer) builds a distributed model from a
        # cross-replica average of its first batch, which fails for
        # keras-hub inputs; see `tf_backend.first_replica_batch`.
        # Without a strategy it builds nothing here: the metrics and the
        # optimizer get their variables inside the first trace, and a
        # tf.function that creates variables is traced a second time. The
        # AD-DROP step's trace dominates a short fit (three one-step
        # MiniLM-L6 runs: 195 s of 283 s were tracing), so build first and
        # trace once.
        with self.distribute_strategy.scope():
            if iterator is not None:
                data_batch = tf_backend.first_replica_batch(iterator)
            if data_batch is not None:
                self._symbolic_build(data_batch=data_batch)

    def fit(self, *args, **kwargs):
        x = args[0] if args else kwargs.get("x")
        if "shuffle" not in kwargs and tf_backend.is_dataset(x):
            # Keras 3.15 warns on every `fit` of a dataset that its default
            # `shuffle=True` is ignored; a dataset is shuffled by its own
            # pipeline either way.
            kwargs["shuffle"] = False
        return super().fit(*args, **kwargs)

    def make_train_function(self, force=False):
        tf_backend.check_distribution_limits(self)
        if self.merge_repeated_rows and self.optimizer is not None:
            # Before tracing: the traced step calls the optimizer's methods.
            merge_repeated_rows(self.optimizer)
        return super().make_train_function(force=force)

    def _addrop_padding_mask(self, x):
        return x["padding_mask"]

    def _addrop_keep_masks(self, x, y, layers, padding_mask):
        seed = self._addrop_seed_generator
        if self.attribution == "random":
            # RD needs no attribution pass: candidates are drawn directly.
            batch, length = ops.shape(padding_mask)[:2]
            masks = []
            for layer in layers:
                shape = (batch, layer.num_heads, length, length)
                candidates, last = random_candidates(
                    padding_mask, shape, self.candidate_ratio, seed=seed
                )
                masks.append(
                    keep_mask_from_candidates(
                        candidates, last, padding_mask, self.drop_rate, seed
                    )
                )
            return masks
        attributions = compute_attribution(
            self,
            x,
            y,
            layers=layers,
            labels=self.attribution_labels,
            training=True,
            method=self.attribution,
            ig_steps=self.ig_steps,
        )
        if self.drop_region == "low":
            # The lowest-attribution keys become the candidates.
            attributions = [ops.negative(a) for a in attributions]
        return [
            addrop_mask(
                attribution,
                padding_mask,
                self.candidate_ratio,
                self.drop_rate,
                seed=seed,
            )
            for attribution in attributions
        ]

    def _addrop_loss_and_gradients(self, x, y, sample_weight):
        def loss_fn():
            y_pred = self(x, training=True)
            loss = self.compute_loss(
                x=x,
                y=y,
                y_pred=y_pred,
                sample_weight=sample_weight,
                training=True,
            )
            scaled = loss
            if self.optimizer is not None:
                scaled = self.optimizer.scale_loss(loss)
            return scaled, (loss, y_pred)

        (loss, y_pred), gradients = tf_backend.loss_and_gradients(
            loss_fn, self.trainable_weights
        )
        return loss, y_pred, gradients

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        layers = self.addrop_attention_layers
        padding_mask = ops.cast(self._addrop_padding_mask(x), "bool")
        real = ops.cast(padding_mask, "float32")
        # Real (query, key) pairs of the selected layers, over all heads.
        real_pairs = ops.sum(ops.square(ops.sum(real, axis=-1))) * sum(
            layer.num_heads for layer in layers
        )
        # tf.cond branches cannot return None, yet the stock step passes
        # None gradients (unused weights) on to the optimizer, which skips
        # them. Both branches run the same model, so they share the set of
        # connected weights; it is recorded while tracing.
        connected = []

        def pack(loss, y_pred, gradients, dropped):
            indices = [i for i, g in enumerate(gradients) if g is not None]
            if connected and connected[0] != indices:
                raise RuntimeError(
                    "The AD-DROP and plain passes reached different weights."
                )
            connected[:] = [indices]
            return loss, y_pred, [gradients[i] for i in indices], dropped

        def plain_step():
            loss, y_pred, gradients = self._addrop_loss_and_gradients(
                x, y, sample_weight
            )
            return pack(loss, y_pred, gradients, ops.zeros((), "float32"))

        def addrop_step():
            keep_masks = self._addrop_keep_masks(x, y, layers, padding_mask)
            with addrop_scope(keep_masks=dict(zip(layers, keep_masks))):
                loss, y_pred, gradients = self._addrop_loss_and_gradients(
                    x, y, sample_weight
                )
            real_query = padding_mask[:, None, :, None]
            dropped = sum(
                ops.sum(
                    ops.cast(
                        ops.logical_and(
                            ops.logical_and(
                                real_query, padding_mask[:, None, None, :]
                            ),
                            ops.logical_not(keep),
                        ),
                        "float32",
                    )
                )
                for keep in keep_masks
            )
            return pack(loss, y_pred, gradients, dropped)

        loss, y_pred, gradients, dropped = tf_backend.cond(
            self._addrop_switch, addrop_step, plain_step
        )
        all_gradients = [None] * len(self.trainable_weights)
        for i, gradient in zip(connected[0], gradients):
            all_gradients[i] = gradient

        batch_size = ops.shape(keras.tree.flatten(x)[0])[0]
        # Keras divides the loss by the number of replicas for the gradient
        # all-reduce; the tracker shows the undivided loss.
        self._loss_tracker.update_state(
            loss * tf_backend.num_replicas_in_sync(), sample_weight=batch_size
        )
        if self.trainable_weights:
            with warnings.catch_warnings():
                # A head on the sequence output (`mean_pooling_classifier`)
                # leaves a keras-hub backbone's [CLS] pooler unused by
                # design; Keras would warn about it at every trace.
                warnings.filterwarnings("ignore", message=_UNUSED_POOLER)
                self.optimizer.apply_gradients(
                    zip(all_gradients, self.trainable_weights)
                )
        self._addrop_drop_fraction.update_state(
            dropped / ops.maximum(real_pairs, 1.0),
            sample_weight=real_pairs,
        )
        logs = self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return tf_backend.logs_for_strategy(logs)

    def test_step(self, data):
        logs = super().test_step(data)
        # Evaluation never drops anything; a constant 0 would only clutter
        # the validation logs.
        logs.pop(DROP_FRACTION, None)
        return tf_backend.logs_for_strategy(logs)
