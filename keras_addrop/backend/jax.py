"""The JAX backend: probes and `jax.grad`, the step's state threaded through
stateless scopes, Keras' functional step as the training pass, and one
compiled step per phase.

One implementation of the interface in `keras_addrop.backend`.
"""

import contextlib
import functools

import jax
import keras
import numpy as np
from keras.src.distribution import distribution_lib

from keras_addrop.backend.common import KerasTrainerFixes  # noqa: F401
from keras_addrop.backend.common import PythonSwitch as Switch  # noqa: F401
from keras_addrop.backend.common import after  # noqa: F401
from keras_addrop.backend.common import finish_step  # noqa: F401
from keras_addrop.backend.common import global_random_state  # noqa: F401
from keras_addrop.backend.common import merge_repeated_rows  # noqa: F401
from keras_addrop.backend.common import merges_repeated_rows  # noqa: F401
from keras_addrop.backend.common import phase_cond  # noqa: F401
from keras_addrop.backend.common import set_global_random_state  # noqa: F401
from keras_addrop.layers.addrop_attention import CapturedAttention


def kth_largest(scores, k, k_max):
    """The k-th largest value of each float32 row, exactly, by bisection.

    float32 values map to uint32 keys in the same order; 32 halvings of the
    key range, each a count of the row's keys at or above the middle, find
    the k-th largest key. On CPU, XLA runs it faster than its top-k (the
    per-backend section of `benchmarks/speed.md`). The position is not
    known: ties are counted instead.
    """
    del k_max  # A top-k's width; the bisection needs none.
    bits = jax.lax.bitcast_convert_type(scores, jax.numpy.uint32)
    sign = jax.numpy.uint32(0x80000000)
    keys = jax.numpy.where(bits >= sign, ~bits, bits | sign)
    k = jax.numpy.maximum(k, 1).astype("uint32")
    rows = jax.numpy.broadcast_shapes(keys.shape[:-1] + (1,), k.shape)
    low = jax.numpy.zeros(rows, "uint32")  # At least k keys are >= low.
    high = jax.numpy.full(rows, 0xFFFFFFFF, "uint32")

    def halve(_, bounds):
        low, high = bounds
        middle = low + (high - low) // 2 + (high - low) % 2
        enough = (
            jax.numpy.sum(keys >= middle, -1, keepdims=True, dtype="uint32")
            >= k
        )
        return (
            jax.numpy.where(enough, middle, low),
            jax.numpy.where(enough, high, middle - 1),
        )

    low, _ = jax.lax.fori_loop(0, 32, halve, (low, high))
    bits = jax.numpy.where(low >= sign, low & ~sign, ~low)
    return jax.lax.bitcast_convert_type(bits, jax.numpy.float32), None


# Each new input shape compiles the step again: batches padded to a multiple
# of 16 positions keep a GLUE run to a few shapes.
WIDTH_MULTIPLE = 16


def batch_multiple():
    """How many parts the active distribution splits every batch into."""
    distribution = distribution_lib.distribution()
    if distribution is None:
        return 1
    mesh = distribution.device_mesh
    return mesh.shape[mesh.axis_names.index(distribution.batch_dim_name)]


def distribution_scope(strategy):
    """`keras.distribution.DataParallel` over the local devices for
    "mirrored"; "multi-worker" is TensorFlow's alone."""
    if strategy == "multi-worker":
        raise ValueError(
            "A multi-worker strategy is TensorFlow's "
            "MultiWorkerMirroredStrategy; on JAX, data parallelism over the "
            "local devices is strategy='mirrored' (keras.distribution."
            f"DataParallel). Received: strategy={strategy!r}"
        )
    if strategy == "none":
        return contextlib.nullcontext()
    devices = keras.distribution.list_devices()
    return keras.distribution.DataParallel(devices=devices).scope()


def predict_function(model):
    # Keras' compiled predict step on this process's batches, which may come
    # from a `tf.data` pipeline. A data-parallel step splits a batch evenly
    # over the devices: an uneven last batch is padded by repeating its last
    # row, whose predictions are dropped.
    def predict(x):
        x = keras.tree.map_structure(np.asarray, x)
        count = len(keras.tree.flatten(x)[0])
        extra = -count % batch_multiple()
        if extra:
            x = keras.tree.map_structure(
                lambda a: np.concatenate([a, np.repeat(a[-1:], extra, 0)]), x
            )
        outputs = model.predict_on_batch(x)
        return keras.tree.map_structure(lambda a: a[:count], outputs)

    return predict


def gradients_of_captured(forward, layers):
    """Gradients of a scalar w.r.t. tensors captured inside `layers`.

    JAX differentiates functions, not tapes: a zero "probe" tensor per layer
    is added to the captured weights and `jax.grad` (one call, all layers)
    differentiates `forward` with respect to the probes, which is the
    gradient with respect to the weights. The probes' shapes come from an
    abstract pass (`jax.eval_shape` of `forward(..., shapes_only=True)`,
    which draws no randomness, so no seed state is advanced from inside
    it). What `forward` returns besides the target leaves the trace as
    `jax.grad`'s auxiliary output, so no traced value escapes.

    `forward(capture, shapes_only=False)` runs the model with `capture`, a
    dict mapping each layer to a function applied to the tensor it is
    given, and returns `(target, aux)`.

    Returns:
        `(gradients, aux)`, `gradients` in the order of `layers`.

    Raises:
        ValueError: if a layer was not called by `forward`.
    """
    captured = CapturedAttention(layers)

    def abstract_pass():
        target, _ = forward(captured.functions, shapes_only=True)
        return target, captured.weights()

    _, shapes = jax.eval_shape(abstract_pass)
    probes = [jax.numpy.zeros(shape.shape, shape.dtype) for shape in shapes]

    def probed(probes):
        added = CapturedAttention(
            layers, lambda i, weights: weights + probes[i]
        )
        return forward(added.functions)

    gradients, aux = jax.grad(probed, has_aux=True)(probes)
    return gradients, aux


def step_arguments(args):
    # Keras' functional step: `train_step(state, data)`.
    state, data = args
    return state, data


def split_step_results(results):
    logs, state = results
    return logs, state


def step_results(logs, state):
    return logs, state


def _state_variables(model):
    # The variables behind each part of Keras' JAX step state, in its order
    # (`JAXTrainer._get_jax_state`).
    optimizer = [] if model.optimizer is None else model.optimizer.variables
    return (
        model.trainable_variables,
        model.non_trainable_variables,
        optimizer,
        model.metrics_variables,
    )


def with_state(model, state, function):
    """Runs `function()` on the step's state instead of the variables.

    Inside a compiled step the variables hold no values: a `StatelessScope`
    maps each to its value in `state`, and what `function` assigns (the seed
    generators' states of dropout and the masks, a metric's totals) comes
    back in the new state, so no traced value escapes. Returns
    `(function(), new state)`.
    """
    groups = _state_variables(model)
    mapping = [
        pair
        for variables, values in zip(groups, state)
        for pair in zip(variables, values)
    ]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        result = function()
    new_state = tuple(
        [_current(scope, v, value) for v, value in zip(variables, values)]
        for variables, values in zip(groups, state)
    )
    return result, new_state


def _current(scope, variable, value):
    current = scope.get_current_value(variable)
    return value if current is None else current


def training_pass(model, state, data, keras_train_step):
    """Keras' own functional step (`JAXTrainer.train_step`), whole."""
    return keras_train_step(state, data)


def check_distribution(model):
    """The step runs on one device, under `DataParallel` or under
    `ModelParallel` (tested)."""
    distribution = distribution_lib.distribution()
    tested = (
        keras.distribution.DataParallel,
        keras.distribution.ModelParallel,
    )
    if distribution is not None and not isinstance(distribution, tested):
        raise ValueError(
            "AD-DROP's JAX step runs on one device or under "
            "keras.distribution.DataParallel or ModelParallel. Received: "
            f"distribution={type(distribution).__name__}"
        )


def make_train_function(model, step, addrop_enabled, force, keras_default):
    """One compiled step per phase, chosen at every call.

    A Python flag read inside a compiled step would be frozen when it is
    traced. So `step(enabled, state, data)` is compiled once for each value
    of `enabled`, with Keras' own settings (`JAXTrainer.make_train_function`:
    donated state, the distribution's state sharding), and the train
    function picks one from `addrop_enabled()` at every call: cross-tuning
    flips phases without recompiling and without a switch among the
    model's weights, so `.weights.h5` files stay the stock model's.
    """
    del keras_default  # Keras compiles one step; AD-DROP needs two.
    if model.train_function is not None and not force:
        return
    distribution = distribution_lib.distribution()
    steps = {}
    for enabled in (False, True):
        phase_step = functools.partial(step, enabled)
        if not model.run_eagerly and model.jit_compile:
            out_shardings = None
            if distribution is not None:
                out_shardings = (None, model._get_state_sharding_spec())
            phase_step = jax.jit(
                phase_step, donate_argnums=0, out_shardings=out_shardings
            )
        steps[enabled] = model._make_function(phase_step)

    def train_function(state, iterator):
        return steps[addrop_enabled()](state, iterator)

    model.train_function = train_function
