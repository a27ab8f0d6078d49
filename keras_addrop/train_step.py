"""The two-pass AD-DROP training step, shared by every AD-DROP model."""

import contextlib
import numbers
import textwrap
import warnings

import keras
from keras import ops
from keras.src.trainers.data_adapters import is_tf_dataset

from keras_addrop import backend
from keras_addrop.attribution import LABELS
from keras_addrop.attribution import METHODS
from keras_addrop.attribution import SCORES
from keras_addrop.attribution import attribution_target
from keras_addrop.attribution import compute_attribution
from keras_addrop.layers.addrop_attention import addrop_scope
from keras_addrop.ops.addrop_mask import addrop_mask
from keras_addrop.ops.addrop_mask import keep_mask_from_candidates
from keras_addrop.ops.addrop_mask import random_candidates
from keras_addrop.ops.visibility import Visibility
from keras_addrop.optimizers import merge_repeated_rows
from keras_addrop.validation import invalid_argument
from keras_addrop.validation import validate_bool
from keras_addrop.validation import validate_choice
from keras_addrop.validation import validate_optional_int
from keras_addrop.validation import validate_positive_int
from keras_addrop.validation import validate_ratio

DROP_REGIONS = ("high", "low")

DROP_FRACTION = "addrop_drop_fraction"

_UNUSED_POOLER = (
    r"Gradients do not exist for variables "
    r"\['pooled_dense/kernel', 'pooled_dense/bias'\]"
)


# The AD-DROP arguments of every AD-DROP model, documented once: each
# model's docstring holds `{addrop_arguments}` in its Args section.
ADDROP_ARGUMENTS_DOC = """\
candidate_ratio: float in [0, 1], `p` in the paper: the share of each
    attention row's real keys, highest attribution first, that are
    candidates for dropping. Defaults to `0.3`.
drop_rate: float in [0, 1], `q` in the paper: the probability of
    dropping each candidate. Defaults to `0.3`.
addrop_layers: `"all"` or a sequence of attention layer indices (0 is
    the first; in the keras-hub classifiers, the transformer layers, also
    where several share one encoder, as in ALBERT) whose attention AD-DROP
    masks. Defaults to `(0,)`, the reference code's default.
attribution: how positions are ranked (the paper's Table 2):
    `"gradient"` (GA, default), `"integrated_gradients"` (IGA),
    `"attention"` (AA: the attention weights themselves) or `"random"`
    (RD: each real position a candidate with probability
    `candidate_ratio`). See
    `keras_addrop.attribution.compute_attribution`.
attribution_labels: `"pseudo"` (the paper's choice: the argmax of the
    attribution pass) or `"gold"` (the true label's logit). Regression
    heads always use the gold score. Defaults to `"pseudo"`.
attribution_score: what is differentiated for each label: `"logit"`
    (the paper's, default) or `"log_probability"` (the log-softmax: the
    authors' choice for NER). See
    `keras_addrop.attribution.attribution_target`.
drop_region: `"high"` (default) drops among the highest-attribution
    keys; `"low"` among the lowest (the paper's prior experiment,
    Fig. 2).
ig_steps: int, the number of integrated-gradient steps `m` for
    `attribution="integrated_gradients"`. Defaults to 20.
seed: int or `None`. Seed of the random drops.
merge_repeated_rows: bool. Whether `fit` makes the optimizer sum the
    gradient slices of an embedding row looked up more than once in a
    batch before updating it, so that the row moves as the dense
    gradient moves it (see `keras_addrop.optimizers.merge_repeated_rows`).
    `False` keeps Keras' stock update, which over-counts such rows in
    Adam's second moment. Defaults to `True`."""


def with_addrop_arguments(cls):
    """Puts `ADDROP_ARGUMENTS_DOC` where `cls`'s docstring says
    `{addrop_arguments}`, indented as that line is."""
    marker = "{addrop_arguments}"
    if marker not in cls.__doc__:
        raise ValueError(f"{cls.__name__}'s docstring has no {marker} line")
    lines = []
    for line in cls.__doc__.splitlines():
        if line.strip() == marker:
            indent = line[: line.index(marker)]
            line = textwrap.indent(ADDROP_ARGUMENTS_DOC, indent)
        lines.append(line)
    cls.__doc__ = "\n".join(lines)
    return cls


def resolve_layer_indices(addrop_layers, num_layers):
    """Validates `addrop_layers` and returns it as a sorted tuple of ints."""
    if isinstance(addrop_layers, str):
        if addrop_layers != "all":
            raise invalid_argument(
                "addrop_layers",
                "'all' or a sequence of layer indices (0 is the first layer)",
                addrop_layers,
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
        raise invalid_argument(
            "addrop_layers",
            f"'all' or distinct layer indices in [0, {num_layers})",
            addrop_layers,
        )
    return tuple(sorted(int(i) for i in indices))


@with_addrop_arguments
class ADDropTrainStep(backend.KerasTrainerFixes):
    """Mixin adding AD-DROP's two-pass `train_step` to a Keras model.

    A model class lists it before its Keras base class and implements
    `_addrop_all_attention_calls()` (every call of an AD-DROP attention
    layer in one forward pass, as `keras_addrop.layers.AttentionCall`s in
    call order) and, if its inputs are not keras-hub's preprocessed dicts,
    `_addrop_padding_mask(x)`. The mixin takes the AD-DROP arguments as
    keyword-only constructor arguments (validated, and serialized by
    `get_config`) and passes everything else on to the base class.

    Two hooks make a task type: `compute_attribution_target(...)`, the
    scalar the attribution differentiates (by default
    `keras_addrop.attribution.attribution_target`: per example for
    sentence outputs, per token that counts for token-level outputs), and
    `_addrop_visibilities(x, calls)`, which (query, key) pairs each
    selected call has (a `keras_addrop.ops.Visibility` per call; by default
    self-attention over the padding mask).

    One step, when AD-DROP is on:
    1. pass 1 (attribution): forward in training mode and one gradient call
       for the attribution of every selected layer
       (`keras_addrop.attribution.compute_attribution`); no weight gradient,
       no metric or loss-tracker update;
    2. masks: `keras_addrop.ops.addrop_mask` per layer;
    3. pass 2 (training): Keras' own step with the masks in the selected
       layers: forward in training mode, loss with `sample_weight` and
       regularisation losses, loss tracker, loss scaling, gradients,
       `optimizer.apply`, compiled metrics;
    4. the share of real attention positions the masks dropped, logged as
       `addrop_drop_fraction`.
    When AD-DROP is off (a plain cross-tuning epoch) the step is Keras'
    stock `train_step`. Flipping `addrop_enabled` never retraces: on
    TensorFlow the switch is a variable read by the traced graph; on JAX
    each phase has its own compiled step, chosen at every call; PyTorch
    runs eagerly and reads it at every step.

    The step runs on the TensorFlow, JAX and PyTorch backends
    (`keras_addrop.backend`), with the same masks on each.

    With `merge_repeated_rows=True` (the default) `fit` first applies
    `keras_addrop.optimizers.merge_repeated_rows` to the model's optimizer,
    so that an embedding row looked up several times in a batch is updated
    as the dense gradient updates it; `False` keeps Keras' stock update of
    such rows bit for bit.

    Args:
        {addrop_arguments}
        *args, **kwargs: passed to the model's Keras base class.

    Raises:
        ValueError: for an AD-DROP argument out of range, an unknown string
            or a layer index the model does not have.
    """

    def __init__(
        self,
        *args,
        candidate_ratio=0.3,
        drop_rate=0.3,
        addrop_layers=(0,),
        attribution="gradient",
        attribution_labels="pseudo",
        attribution_score="logit",
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
        self.attribution_score = validate_choice(
            "attribution_score", attribution_score, SCORES
        )
        self.drop_region = validate_choice(
            "drop_region", drop_region, DROP_REGIONS
        )
        self.ig_steps = validate_positive_int("ig_steps", ig_steps)
        num_layers = min(len(g) for g in self._addrop_attention_groups())
        self._addrop_layer_indices = resolve_layer_indices(
            addrop_layers, num_layers
        )
        self.addrop_layers = (
            "all" if addrop_layers == "all" else self._addrop_layer_indices
        )
        self.seed = validate_optional_int("seed", seed)
        self.merge_repeated_rows = validate_bool(
            "merge_repeated_rows", merge_repeated_rows
        )
        self._addrop_seed_generator = keras.random.SeedGenerator(seed)
        self._addrop_drop_fraction = keras.metrics.Mean(name=DROP_FRACTION)
        self._addrop_switch = backend.Switch(True)

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
            "attribution_score": self.attribution_score,
            "drop_region": self.drop_region,
            "ig_steps": self.ig_steps,
            "seed": self.seed,
            "merge_repeated_rows": self.merge_repeated_rows,
        }

    @property
    def addrop_attention_calls(self):
        """The selected attention calls (`keras_addrop.layers.AttentionCall`),
        in the order of the forward pass (a seq2seq LM's kind by kind): one
        per transformer layer, also where layers share one attention layer
        (ALBERT)."""
        return [
            group[i]
            for group in self._addrop_attention_groups()
            for i in self._addrop_layer_indices
        ]

    def _addrop_attention_groups(self):
        """The lists of attention calls that `addrop_layers` indexes: one,
        every call in forward order, unless a task type has several kinds
        of attention (a seq2seq LM's encoder self-attention, decoder
        self-attention and cross-attention), where an index selects that
        layer in each chosen kind."""
        return [self._addrop_all_attention_calls()]

    @property
    def addrop_attention_layers(self):
        """The attention layer of each selected call, in the same order (a
        shared layer appears once per call)."""
        return [call.layer for call in self.addrop_attention_calls]

    def fit(self, *args, **kwargs):
        x = args[0] if args else kwargs.get("x")
        if "shuffle" not in kwargs and is_tf_dataset(x):
            # Keras 3.15 warns on every `fit` of a dataset that its default
            # `shuffle=True` is ignored; a dataset is shuffled by its own
            # pipeline either way.
            kwargs["shuffle"] = False
        return super().fit(*args, **kwargs)

    @property
    def addrop_enabled(self):
        """Whether `fit` applies AD-DROP (read at every step, no retrace).

        `True` by default: AD-DROP on every epoch, the paper's "w/o
        cross-tuning". `keras_addrop.callbacks.CrossTuning` flips it per
        epoch. Evaluation and prediction never apply AD-DROP.
        """
        return self._addrop_switch.value

    @addrop_enabled.setter
    def addrop_enabled(self, value):
        self._addrop_switch.set(value)

    def make_train_function(self, force=False):
        if self.merge_repeated_rows and self.optimizer is not None:
            # Before tracing: the traced step calls the optimizer's methods.
            merge_repeated_rows(self.optimizer)
        backend.check_distribution(self)
        return backend.make_train_function(
            self,
            self._addrop_train_step,
            lambda: self.addrop_enabled,
            force,
            super().make_train_function,
        )

    def train_step(self, *args):
        # Keras' arguments: `(data)`, or `(state, data)` on JAX.
        return self._addrop_train_step(self._addrop_switch.condition, *args)

    def _addrop_train_step(self, enabled, *args):
        """One training step, AD-DROP's where `enabled` holds.

        `enabled` is a Python bool, or on TensorFlow the switch variable
        that the traced step reads; `args` are Keras' `train_step`
        arguments. Each backend supplies the parts that differ: how pass 1
        sees the step's state (JAX's is functional), how both phases sit in
        one traced step (TensorFlow's `tf.cond`), and Keras' own step as
        pass 2.
        """
        state, data = backend.step_arguments(args)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        layers = self.addrop_attention_calls
        visibilities = self._addrop_visibilities(x, layers)

        def training_pass(state):
            return backend.training_pass(
                self, state, data, super(ADDropTrainStep, self).train_step
            )

        def addrop_phase(state):
            # 1-2. Attribution pass and masks: no weight gradient, and no
            # metric, loss tracker or optimizer update.
            keep_masks, state = backend.with_state(
                self,
                state,
                lambda: self._addrop_keep_masks(
                    x, y, sample_weight, layers, visibilities
                ),
            )
            # 3. Training pass, the masks in the selected layers.
            with addrop_scope(keep_masks=dict(zip(layers, keep_masks))):
                outputs, state = training_pass(state)
            return outputs, state, dropped_pairs(visibilities, keep_masks)

        def plain_phase(state):
            # 3 alone: Keras' stock step.
            outputs, state = training_pass(state)
            return outputs, state, ops.zeros((), "float32")

        with self._addrop_unused_pooler_ignored():
            outputs, state, dropped = backend.phase_cond(
                enabled, addrop_phase, plain_phase, state
            )
            logs, state = backend.finish_step(self, state, data, outputs)

        # 4. The drop fraction, weighted by the step's visible pairs.
        def update_drop_fraction():
            real = real_pairs(visibilities, layers)
            self._addrop_drop_fraction.update_state(
                dropped / ops.maximum(real, 1.0), sample_weight=real
            )
            return self._addrop_drop_fraction.result()

        logs = dict(logs)
        logs[DROP_FRACTION], state = backend.with_state(
            self, state, update_drop_fraction
        )
        return backend.step_results(logs, state)

    def test_step(self, *args):
        logs, state = backend.split_step_results(super().test_step(*args))
        # Evaluation never drops anything; a constant 0 would only clutter
        # the validation logs.
        logs = dict(logs)
        logs.pop(DROP_FRACTION, None)
        return backend.step_results(logs, state)

    def _addrop_padding_mask(self, x):
        return x["padding_mask"]

    def _addrop_bool_padding_mask(self, x):
        return ops.cast(self._addrop_padding_mask(x), "bool")

    def _addrop_visibilities(self, x, calls):
        """The (query, key) pairs of each of `calls` that exist, as
        `keras_addrop.ops.Visibility`s: self-attention over the padding
        mask for every call, unless a task type says otherwise."""
        visibility = Visibility(self._addrop_bool_padding_mask(x))
        return [visibility] * len(calls)

    def compute_attribution_target(
        self, x=None, y=None, y_pred=None, sample_weight=None, labels="pseudo"
    ):
        """The float32 scalar whose gradient is the attribution.

        Called by the attribution pass (and by
        `keras_addrop.attribution.compute_attribution`) with the batch and
        the pass's outputs, as Keras calls `compute_loss`. The default is
        `keras_addrop.attribution.attribution_target` with the model's
        `attribution_score`, over the tokens with `sample_weight > 0` for
        token-level outputs (every real token where the batch has no
        `sample_weight`); a task type overrides it to differentiate
        something else.

        Args:
            x: the inputs.
            y: the gold labels, or the pseudo labels fixed beforehand (IGA).
            y_pred: the outputs of the attribution pass.
            sample_weight: the batch's sample weights (per token for
                token-level tasks), or `None`.
            labels: `"pseudo"` or `"gold"`.

        Returns:
            A float32 scalar tensor.
        """
        if sample_weight is None and x is not None and len(y_pred.shape) == 3:
            # Token-level outputs attributed without weights (a batch shown
            # for inspection): every real token counts.
            sample_weight = self._addrop_bool_padding_mask(x)
        return attribution_target(
            y_pred, y, labels, sample_weight, score=self.attribution_score
        )

    def _addrop_keep_masks(self, x, y, sample_weight, layers, visibilities):
        seed = self._addrop_seed_generator
        if self.attribution == "random":
            # RD needs no attribution pass: candidates are drawn directly.
            masks = []
            for layer, visibility in zip(layers, visibilities):
                batch, queries = ops.shape(visibility.query_mask)[:2]
                keys = ops.shape(visibility.key_mask)[1]
                shape = (batch, layer.num_heads, queries, keys)
                candidates, last = random_candidates(
                    visibility, shape, self.candidate_ratio, seed=seed
                )
                masks.append(
                    keep_mask_from_candidates(
                        candidates, last, visibility, self.drop_rate, seed
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
            sample_weight=sample_weight,
        )
        if self.drop_region == "low":
            # The lowest-attribution keys become the candidates.
            attributions = [ops.negative(a) for a in attributions]
        return [
            addrop_mask(
                attribution,
                visibility,
                self.candidate_ratio,
                self.drop_rate,
                seed=seed,
            )
            for attribution, visibility in zip(attributions, visibilities)
        ]

    @contextlib.contextmanager
    def _addrop_unused_pooler_ignored(self):
        # A head on the sequence output (`mean_pooling_classifier`) leaves a
        # keras-hub backbone's [CLS] pooler unused by design; Keras would
        # warn about it at every trace.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_UNUSED_POOLER)
            yield


def dropped_pairs(visibilities, keep_masks):
    """How many visible (query, key) pairs `keep_masks` drop, all heads."""
    return sum(
        ops.sum(
            ops.cast(
                ops.logical_and(visibility.pairs(), ops.logical_not(keep)),
                "float32",
            )
        )
        for visibility, keep in zip(visibilities, keep_masks)
    )


def real_pairs(visibilities, layers):
    """Visible (query, key) pairs of `layers`, over all their heads."""
    # Calls that share a visibility (every encoder layer) count it once.
    heads = {}
    for visibility, layer in zip(visibilities, layers):
        _, count = heads.get(id(visibility), (visibility, 0))
        heads[id(visibility)] = (visibility, count + layer.num_heads)
    return sum(
        visibility.count() * count for visibility, count in heads.values()
    )
