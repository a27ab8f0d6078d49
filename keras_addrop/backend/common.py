"""What several backends share: the Python switch and the step's parts
where JAX and PyTorch run Keras' own step whole (PyTorch and TensorFlow
take Keras' `(data)` arguments), no-op TensorFlow workarounds, PyTorch's
prediction, a top-k for the k-th largest score, and TensorFlow's and JAX's
(absent) global random state."""

import keras
import numpy as np


def kth_largest_by_top_k(scores, k, k_max, positional_ties):
    """The k-th largest value of each row from a top-k over the largest k
    any row can have (`k_max`), and, where the backend's top-k puts the
    earlier of equal values first, its position (else None).

    Cheaper than sorting whole rows (measured in the speed benchmark's
    page, `benchmarks/speed.md`: the mask's alternatives).
    """
    values, positions = keras.ops.top_k(scores, k_max)
    at = keras.ops.broadcast_to(
        keras.ops.maximum(k - 1, 0), keras.ops.shape(scores)[:-1] + (1,)
    )
    kth = keras.ops.take_along_axis(values, at, axis=-1)
    if not positional_ties:
        return kth, None
    return kth, keras.ops.take_along_axis(positions, at, axis=-1)


class PythonSwitch:
    """The AD-DROP switch as a Python bool, read by the step at each call."""

    def __init__(self, value):
        self.value = bool(value)

    def set(self, value):
        self.value = bool(value)

    @property
    def condition(self):
        """What the step branches on: the bool itself."""
        return self.value


def phase_cond(enabled, addrop_phase, plain_phase, state):
    # A Python bool: only the phase that runs is traced or executed.
    return (addrop_phase if enabled else plain_phase)(state)


def finish_step(model, state, data, outputs):
    # Keras' own step ran whole in the training pass: its logs.
    return outputs, state


def step_arguments(args):
    # Keras' `train_step(data)`: no state outside the variables.
    (data,) = args
    return None, data


def split_step_results(results):
    return results, None


def step_results(logs, state):
    return logs


def with_state(model, state, function):
    # The variables hold the state: nothing to map.
    return function(), state


def check_distribution(model):
    pass


def make_train_function(model, step, addrop_enabled, force, keras_default):
    # One step reads the switch itself: Keras' own train function.
    return keras_default(force=force)


class KerasTrainerFixes:
    """Nothing to mend in this backend's Keras trainer."""


def predict_function(model):
    # Keras' own predict step (compiled on JAX) on this process's batches,
    # which may come from a `tf.data` pipeline.
    def predict(x):
        return model.predict_on_batch(keras.tree.map_structure(np.asarray, x))

    return predict


def batch_multiple():
    return 1


def after(dependency, structure):
    # XLA (JAX) and eager execution (PyTorch) need no ordering of the
    # integrated-gradient passes.
    return structure


def merge_repeated_rows(optimizer):
    # The gradient of an embedding lookup is dense on JAX and PyTorch: Keras'
    # update of it is already the dense one.
    return optimizer


def merges_repeated_rows(optimizer):
    return True


def global_random_state():
    # Every draw comes from a seed generator's state.
    return None


def set_global_random_state(state):
    pass
