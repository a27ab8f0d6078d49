"""The backend interface: everything in keras_addrop that is not `keras.ops`.

One module per Keras backend (`tensorflow`, `jax`, `torch`), picked once, at
import, from `keras.backend.backend()`. The AD-DROP step itself is written
once, in `keras_addrop.train_step`; each backend provides the parts that
differ, as functions of what they are given:

The step (called by `keras_addrop.ADDropTrainStep`, in this order):
- `Switch(value)`: the cross-tuning switch; `.value`, `.set(value)` and
  `.condition`, what the step branches on (TensorFlow: a variable the traced
  graph reads; elsewhere the bool);
- `step_arguments(args)`: Keras' `train_step` arguments as `(state, data)`
  (`state` is JAX's functional step state, None elsewhere);
- `with_state(model, state, function)`: `(function(), new state)`, with
  the variables read and assigned through `state` where the step is
  functional (JAX), so pass 1's and the drop metric's updates stay in it;
- `training_pass(model, state, data, keras_train_step)`: pass 2, Keras' own
  step (`keras_train_step`) on JAX and PyTorch, its forward and backward half
  on TensorFlow; `(outputs, state)`;
- `phase_cond(enabled, addrop_phase, plain_phase, state)`: runs the phase
  `enabled` picks (a `tf.cond` of both on TensorFlow);
- `finish_step(model, state, data, outputs)`: `(logs, state)` (TensorFlow:
  the update half of Keras' step);
- `step_results(logs, state)` and `split_step_results(results)`: Keras'
  return value of a step, and back;
- `check_distribution(model)` and
  `make_train_function(model, step, addrop_enabled, force, keras_default)`:
  the limits the active distribution puts on the step, and the train
  function (on JAX, one compiled `step(enabled, state, data)` per phase);
- `KerasTrainerFixes`: a mixin of mends to the backend's Keras trainer.

Attribution, masks, data and runs:
- `gradients_of_captured(forward, layers)`: the gradients of a scalar with
  respect to the attention weights captured inside `layers`, all from one
  gradient call, no weight gradients (`forward(capture, shapes_only=False)`
  returns `(target, aux)`; with `shapes_only=True` only the shapes of what
  it captures are used, so it may run without randomness);
- `kth_largest(scores, k, k_max)`: each row's k-th largest value, exactly,
  and its position where the backend's method orders ties by position
  (else None: the caller counts the ties);
- `distribution_scope(strategy)`: the scope a run builds and trains its
  model in, for the command line's `--strategy` ("none", "mirrored",
  "multi-worker"); a clear ValueError where the backend has no such
  distribution;
- `batch_multiple()`: the number every training batch's size must be a
  multiple of under the active distribution, and `WIDTH_MULTIPLE`, the
  multiple of positions batches are padded to (a compiled step per input
  shape makes few shapes worth a little padding);
- `predict_function(model)`: a function from one batch of inputs to the
  model's outputs in inference mode, on this process's batch only;
- `after(dependency, structure)`: orders independent passes where the
  backend may run them at once;
- `merge_repeated_rows(optimizer)` and `merges_repeated_rows(optimizer)`:
  the fix of Keras' update of repeated embedding rows, where the backend's
  gradients need it;
- `global_random_state()` and `set_global_random_state(state)`: random
  state outside the seed generators (a JSON-able value, or None), for
  `keras_addrop.callbacks.BackupAndRestore`.
"""

import importlib

import keras

BACKENDS = ("tensorflow", "jax", "torch")

if keras.backend.backend() not in BACKENDS:
    raise ImportError(
        "keras_addrop runs on the TensorFlow, JAX and PyTorch backends of "
        "Keras. Set the KERAS_BACKEND environment variable to one of "
        f"{list(BACKENDS)}. Received: "
        f"KERAS_BACKEND={keras.backend.backend()!r}"
    )
_backend = importlib.import_module(
    f"keras_addrop.backend.{keras.backend.backend()}"
)

Switch = _backend.Switch
step_arguments = _backend.step_arguments
with_state = _backend.with_state
training_pass = _backend.training_pass
phase_cond = _backend.phase_cond
finish_step = _backend.finish_step
step_results = _backend.step_results
split_step_results = _backend.split_step_results
check_distribution = _backend.check_distribution
make_train_function = _backend.make_train_function
KerasTrainerFixes = _backend.KerasTrainerFixes

gradients_of_captured = _backend.gradients_of_captured
after = _backend.after
predict_function = _backend.predict_function
kth_largest = _backend.kth_largest
distribution_scope = _backend.distribution_scope
batch_multiple = _backend.batch_multiple
WIDTH_MULTIPLE = _backend.WIDTH_MULTIPLE
merge_repeated_rows = _backend.merge_repeated_rows
merges_repeated_rows = _backend.merges_repeated_rows
global_random_state = _backend.global_random_state
set_global_random_state = _backend.set_global_random_state
