"""The TensorFlow backend: tapes, `tf.cond`, the switch variable, Keras'
step split around the cond, `tf.distribute` workarounds and the
sparse-gradient merge.

One implementation of the interface in `keras_addrop.backend`.
"""

import os
import warnings

import keras
import tensorflow as tf
from keras.src.losses.loss import unscale_loss_for_distribution

from keras_addrop.backend.common import batch_multiple  # noqa: F401
from keras_addrop.backend.common import global_random_state  # noqa: F401
from keras_addrop.backend.common import kth_largest_by_top_k
from keras_addrop.backend.common import make_train_function  # noqa: F401
from keras_addrop.backend.common import set_global_random_state  # noqa: F401
from keras_addrop.backend.common import split_step_results  # noqa: F401
from keras_addrop.backend.common import step_arguments  # noqa: F401
from keras_addrop.backend.common import with_state  # noqa: F401
from keras_addrop.layers.addrop_attention import CapturedAttention


class Switch:
    """The AD-DROP switch: a boolean variable that graphs read at run time.

    A raw `tf.Variable`, not a `keras.Variable`: Keras does not count it as a
    model weight, so `.weights.h5` files stay interchangeable with the stock
    keras-hub models, and flipping it needs no retrace.
    """

    def __init__(self, value):
        self.variable = tf.Variable(
            bool(value),
            trainable=False,
            dtype=tf.bool,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            name="addrop_switch",
        )

    @property
    def value(self):
        return bool(self.variable.numpy())

    def set(self, value):
        self.variable.assign(bool(value))

    @property
    def condition(self):
        """What the step branches on: the variable, read by the graph."""
        return self.variable


def cond(pred, true_fn, false_fn):
    """`tf.cond` for the two phases' outputs, which hold Nones and
    `tf.IndexedSlices`.

    The stock step hands None gradients (weights the loss does not reach) on
    to the optimizer, which skips them, but a `tf.cond` branch cannot return
    None: Nones stay outside the cond, and both branches must have them in
    the same places (they run the same model).

    `tf.cond` passes an `IndexedSlices`' dense shape out as one more tensor,
    which XLA cannot read as a compile-time constant: the optimizer's sparse
    update of an embedding (`UnsortedSegmentSum`) then fails to compile
    (MiniLM-L6 from its preset, AdamW, `jit_compile=True`). The dense shape
    is the variable's, known while tracing, so only values and indices go
    through the cond and the shape is restored as a constant.
    """
    traced = {}

    def branch(fn):
        def run():
            outputs = fn()
            leaves = tf.nest.flatten(outputs)
            nones = [leaf is None for leaf in leaves]
            if traced.get("nones", nones) != nones:
                raise RuntimeError(
                    "The AD-DROP and plain passes reached different weights."
                )
            shapes = [
                tf.get_static_value(leaf.dense_shape)
                if isinstance(leaf, tf.IndexedSlices)
                else None
                for leaf in leaves
            ]
            traced.update(structure=outputs, nones=nones, shapes=shapes)
            return [
                leaf if shape is None else (leaf.values, leaf.indices)
                for leaf, shape in zip(leaves, shapes)
                if leaf is not None
            ]

        return run

    passed = iter(tf.cond(pred, branch(true_fn), branch(false_fn)))
    leaves = []
    for none, shape in zip(traced["nones"], traced["shapes"]):
        if none:
            leaves.append(None)
        elif shape is None:
            leaves.append(next(passed))
        else:
            leaves.append(tf.IndexedSlices(*next(passed), tf.constant(shape)))
    return tf.nest.pack_sequence_as(traced["structure"], leaves)


def phase_cond(enabled, addrop_phase, plain_phase, state):
    """Both phases in one graph, the switch variable choosing at run time."""
    return cond(
        enabled, lambda: addrop_phase(state), lambda: plain_phase(state)
    )


def sum_repeated_rows(gradient):
    """`gradient` with the slices of each repeated row summed into one.

    The gradient of an embedding lookup is a `tf.IndexedSlices` holding one
    slice per occurrence of a token in the batch. Keras 3.15's optimizers
    apply their element-wise functions to such a gradient slice by slice
    (`ops.square` keeps it sparse) and only then sum the slices into the
    variable: Adam's second moment of a row looked up n times becomes the
    sum of n squares instead of the square of the sum. Summing first gives
    the dense gradient's update. The cost grows with the batch's ids, not
    with the table's rows. Any other gradient is returned as it is.
    """
    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    rows, positions = tf.unique(gradient.indices)
    values = tf.math.unsorted_segment_sum(
        gradient.values, positions, tf.shape(rows)[0]
    )
    return tf.IndexedSlices(values, rows, gradient.dense_shape)


_MERGES_REPEATED_ROWS = "_keras_addrop_merges_repeated_rows"


def merge_repeated_rows(optimizer):
    """Makes `optimizer` sum repeated rows of its sparse gradients.

    Rows are summed where the optimizer receives the gradients, so that
    gradient clipping sees the dense gradient's norm, and, with more than
    one replica, again where it updates each variable: `tf.distribute`
    all-reduces a `tf.IndexedSlices` by concatenating the replicas' slices,
    which repeats a token that more than one replica looked up. A
    `LossScaleOptimizer`'s inner optimizer is the one changed. Applying it
    twice changes nothing.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if getattr(inner, _MERGES_REPEATED_ROWS, False):
        return optimizer
    apply, update_step = inner.apply, inner.update_step

    def merged_apply(grads, trainable_variables=None):
        grads = [sum_repeated_rows(gradient) for gradient in grads]
        return apply(grads, trainable_variables)

    def merged_update_step(gradient, variable, learning_rate):
        # Read while tracing: one device needs no second merge.
        if num_replicas_in_sync() > 1:
            gradient = sum_repeated_rows(gradient)
        return update_step(gradient, variable, learning_rate)

    inner.apply = merged_apply
    inner.update_step = merged_update_step
    setattr(inner, _MERGES_REPEATED_ROWS, True)
    return optimizer


def merges_repeated_rows(optimizer):
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return getattr(inner, _MERGES_REPEATED_ROWS, False)


def num_replicas_in_sync():
    return tf.distribute.get_strategy().num_replicas_in_sync


def after(dependency, structure):
    """`structure`'s tensors, made available only once `dependency` is.

    In a traced graph, independent passes (the integrated-gradient chunks)
    may otherwise run concurrently and keep several passes' activations
    alive at once (an IGA step of MiniLM-L6 on the first layer, batch 32,
    length 128: 6,700 MiB peak resident memory without the ordering,
    5,160 MiB with it). Eager execution is sequential already.
    """
    if dependency is None or tf.executing_eagerly():
        return structure
    with tf.control_dependencies([dependency]):
        return tf.nest.map_structure(tf.identity, structure)


def kth_largest(scores, k, k_max):
    # TensorFlow's top-k puts the earlier of equal values first.
    return kth_largest_by_top_k(scores, k, k_max, positional_ties=True)


# A traced step with relaxed shapes serves every batch width.
WIDTH_MULTIPLE = 1


def distribution_scope(strategy):
    """The `tf.distribute` strategy's scope: MirroredStrategy over the local
    devices ("mirrored"), MultiWorkerMirroredStrategy over the cluster in
    TF_CONFIG ("multi-worker"), or the default strategy ("none"). Call it
    first: MultiWorkerMirroredStrategy must be created before other
    TensorFlow operations run."""
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy().scope()
    if strategy == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "strategy='multi-worker' reads the cluster from the "
                "TF_CONFIG environment variable, which is not set. "
                f"Received: strategy={strategy!r}"
            )
        return tf.distribute.MultiWorkerMirroredStrategy().scope()
    return tf.distribute.get_strategy().scope()


def predict_function(model):
    # A plain call on this process's batches: `predict_on_batch` would
    # gather every worker's copy under a multi-worker strategy.
    # Without AutoGraph, which has nothing to convert here and once failed
    # to parse this function's source ("AST constructor recursion depth
    # mismatch"), warning on stderr.
    def predict(x):
        return model(x, training=False)

    return tf.function(predict, reduce_retracing=True, autograph=False)


def gradients_of_captured(forward, layers):
    """Gradients of a scalar w.r.t. tensors captured inside `layers`.

    `forward(capture)` runs the model with `capture`, a dict mapping each
    layer to a function that watches the tensor it is given, and returns
    `(target, aux)`. The tape records only what depends on the captured
    tensors (no weight gradients), and a single `tape.gradient` call returns
    one gradient per layer.

    Returns:
        `(gradients, aux)`, `gradients` in the order of `layers`.

    Raises:
        ValueError: if a layer was not called by `forward`.
    """

    def watch(_, tensor):
        tape.watch(tensor)
        return tensor

    captured = CapturedAttention(layers, transform=watch)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        target, aux = forward(captured.functions)
    gradients = tape.gradient(
        target,
        captured.weights(),
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return gradients, aux


def check_distribution(model):
    """Names the Keras limits under MirroredStrategy before TF hits them.

    Keras 3.15 fails under `MirroredStrategy` (and its multi-worker form)
    with XLA (keras-team/keras#19005), gradient accumulation (#20582) and
    `steps_per_execution > 1` (#19246), for any model, with obscure
    TensorFlow errors. AD-DROP models raise this clear one instead.
    """
    strategy = model.distribute_strategy
    mirrored = (
        tf.distribute.MirroredStrategy,
        tf.distribute.MultiWorkerMirroredStrategy,
    )
    if not isinstance(strategy, mirrored):
        return
    name = type(strategy).__name__
    optimizer = getattr(model, "optimizer", None)
    accumulation = getattr(optimizer, "gradient_accumulation_steps", None)
    limits = [
        (model.jit_compile, f"jit_compile={model.jit_compile}", "#19005"),
        (
            model.steps_per_execution > 1,
            f"steps_per_execution={model.steps_per_execution}",
            "#19246",
        ),
        (
            accumulation,
            f"gradient_accumulation_steps={accumulation}",
            "#20582",
        ),
    ]
    for broken, received, issue in limits:
        if broken:
            raise ValueError(
                f"Keras 3.15 cannot train under {name} with "
                f"`{received.split('=')[0]}` (keras-team/keras{issue}; it "
                "fails for any model). Use the default (jit_compile=False "
                "or 'auto', steps_per_execution=1, no gradient "
                f"accumulation) under {name}. Received: {received}"
            )


def first_replica_batch(iterator):
    """The first batch of a Keras epoch iterator, as one replica sees it.

    Keras' own first-batch build under `tf.distribute` averages the batch
    across replicas with `strategy.reduce`, which fails for boolean masks
    (Mirrored) and for dict inputs (MultiWorkerMirrored): keras-hub's
    inputs are both. One replica's values build the model just as well.
    """
    for _, _, it in iterator:
        batch = next(it)
        break
    return tf.nest.map_structure(
        lambda v: (
            tf.distribute.get_strategy().experimental_local_results(v)[0]
            if isinstance(v, tf.distribute.DistributedValues)
            else v
        ),
        batch,
    )


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def logs_for_strategy(logs):
    """Step logs in the shape Keras can reduce under the active strategy.

    Keras 3.15 reduces a step's logs across workers with
    `strategy.reduce("MEAN", value, axis=0)`, which fails for the scalar
    logs every step returns. Under MultiWorkerMirroredStrategy each value
    is given a leading axis of 1, which that reduction removes again.
    """
    if not is_multi_worker(tf.distribute.get_strategy()):
        return logs
    return {key: tf.reshape(value, (1,)) for key, value in logs.items()}


def step_results(logs, state):
    return logs_for_strategy(logs)


def training_pass(model, state, data, keras_train_step):
    """The forward and backward half of Keras' TensorFlow step.

    Keras' `TensorFlowTrainer.train_step` cannot be called whole: both phases
    run inside one `tf.cond`, and the optimizer's update under a
    `tf.distribute` strategy (`merge_call`) cannot run inside a cond branch.
    So its checklist is split at the update: this half (the tape, `y_pred`,
    the loss with `sample_weight` and regularisation losses, loss scaling,
    the gradients) runs in the branch, `finish_step` (the loss tracker,
    `apply_gradients`, the compiled metrics) after the cond. A test pins
    both halves to Keras' own step.

    Returns:
        `((loss, y_pred, gradients), state)`.
    """
    del keras_train_step  # Split in two here; see above.
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    with tf.GradientTape() as tape:
        if model._call_has_training_arg:
            y_pred = model(x, training=True)
        else:
            y_pred = model(x)
        loss = model._compute_loss(
            x=x,
            y=y,
            y_pred=y_pred,
            sample_weight=sample_weight,
            training=True,
        )
        scaled_loss = loss
        if model.optimizer is not None:
            scaled_loss = model.optimizer.scale_loss(loss)
    gradients = []
    if model.trainable_weights:
        gradients = tape.gradient(scaled_loss, model.trainable_weights)
    return (loss, y_pred, gradients), state


def finish_step(model, state, data, outputs):
    """The update half of Keras' TensorFlow step (see `training_pass`).

    Returns:
        `(logs, state)`.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    loss, y_pred, gradients = outputs
    model._loss_tracker.update_state(
        unscale_loss_for_distribution(loss),
        sample_weight=tf.shape(
            next(i for i in keras.tree.flatten(x) if i is not None)
        )[0],
    )
    if model.trainable_weights:
        model.optimizer.apply_gradients(zip(gradients, model.trainable_weights))
    else:
        warnings.warn("The model does not have any trainable weights.")
    return model.compute_metrics(
        x, y, y_pred, sample_weight=sample_weight
    ), state


class KerasTrainerFixes:
    """Mends in Keras 3.15's TensorFlow trainer for AD-DROP models.

    Listed, with the canaries that notice an upstream change, in
    docs/concepts/keras-workarounds.md.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 (TensorFlow trainer) builds a distributed model from a
        # cross-replica average of its first batch, which fails for
        # keras-hub inputs; see `first_replica_batch`.
        # Without a strategy it builds nothing here: the metrics and the
        # optimizer get their variables inside the first trace, and a
        # tf.function that creates variables is traced a second time. The
        # AD-DROP step's trace dominates a short fit (`benchmarks/speed.md`,
        # "Tracing"), so build first and trace once.
        with self.distribute_strategy.scope():
            if iterator is not None:
                data_batch = first_replica_batch(iterator)
            if data_batch is not None:
                self._symbolic_build(data_batch=data_batch)
