"""The PyTorch backend: `torch.autograd.grad`, and Keras' eager step as the
training pass.

One implementation of the interface in `keras_addrop.backend`.
"""

import contextlib

import torch

from keras_addrop.backend.common import KerasTrainerFixes  # noqa: F401
from keras_addrop.backend.common import PythonSwitch as Switch  # noqa: F401
from keras_addrop.backend.common import after  # noqa: F401
from keras_addrop.backend.common import batch_multiple  # noqa: F401
from keras_addrop.backend.common import check_distribution  # noqa: F401
from keras_addrop.backend.common import finish_step  # noqa: F401
from keras_addrop.backend.common import kth_largest_by_top_k
from keras_addrop.backend.common import make_train_function  # noqa: F401
from keras_addrop.backend.common import merge_repeated_rows  # noqa: F401
from keras_addrop.backend.common import merges_repeated_rows  # noqa: F401
from keras_addrop.backend.common import phase_cond  # noqa: F401
from keras_addrop.backend.common import predict_function  # noqa: F401
from keras_addrop.backend.common import split_step_results  # noqa: F401
from keras_addrop.backend.common import step_arguments  # noqa: F401
from keras_addrop.backend.common import step_results  # noqa: F401
from keras_addrop.backend.common import with_state  # noqa: F401
from keras_addrop.layers.addrop_attention import CapturedAttention


def gradients_of_captured(forward, layers):
    """Gradients of a scalar w.r.t. tensors captured inside `layers`.

    The captured attention weights are kept and one `torch.autograd.grad`
    call differentiates the target with respect to all of them; no weight's
    `.grad` is touched.

    `forward(capture, shapes_only=False)` runs the model with `capture`, a
    dict mapping each layer to a function applied to the tensor it is
    given, and returns `(target, aux)`.

    Returns:
        `(gradients, aux)`, `gradients` in the order of `layers`.

    Raises:
        ValueError: if a layer was not called by `forward`.
    """
    captured = CapturedAttention(layers)
    with torch.enable_grad():
        target, aux = forward(captured.functions)
    tensors = captured.weights()
    if not target.requires_grad:
        # Nothing depends on a trainable weight (a frozen model): the
        # captured weights are constants, whose gradients are zero.
        return [torch.zeros_like(t) for t in tensors], aux
    gradients = torch.autograd.grad(target, tensors, allow_unused=True)
    return [
        torch.zeros_like(t) if g is None else g
        for t, g in zip(tensors, gradients)
    ], aux


def kth_largest(scores, k, k_max):
    # `torch.topk` returns equal values in any order: no position, the ties
    # are counted instead.
    return kth_largest_by_top_k(scores, k, k_max, positional_ties=False)


# Eager: no compiled step to reuse across batch shapes.
WIDTH_MULTIPLE = 1


def distribution_scope(strategy):
    """Only "none": Keras 3.15 distributes training on TensorFlow
    (`tf.distribute`) and JAX (`keras.distribution`), not on PyTorch."""
    if strategy != "none":
        raise ValueError(
            "Keras 3.15 has no distributed training on PyTorch (its "
            "keras.distribution API runs on JAX; tf.distribute on "
            "TensorFlow): train on one device, or set KERAS_BACKEND to jax "
            f"or tensorflow. Received: strategy={strategy!r}"
        )
    return contextlib.nullcontext()


def global_random_state():
    """PyTorch's global generator, as a list of bytes.

    Keras' dropout on PyTorch draws from it when its seed generator was made
    without a seed (keras-hub's dropout layers), not from the seed state.
    """
    return torch.get_rng_state().tolist()


def set_global_random_state(state):
    torch.set_rng_state(torch.tensor(state, dtype=torch.uint8))


def training_pass(model, state, data, keras_train_step):
    """Keras' own eager step (`TorchTrainer.train_step`), whole."""
    return keras_train_step(data), state
