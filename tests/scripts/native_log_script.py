"""Run by `cli_test.py` in a fresh process: the command line, with one C++
log line written from inside every training step on the backend that
`KERAS_BACKEND` names, as TensorFlow's `tf.data` and oneDNN notices are
written from inside `fit` on some CPUs.

Usage: python native_log_script.py COMMAND [FLAGS...], the arguments of
`keras-addrop`. With FAIL_AFTER_FIT=1 in the environment the run raises an
unexpected error once training is over.
"""

import os
import pathlib
import sys

# The repository root, for `tests.test_case` and the package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import keras_addrop_cli  # noqa: E402

LINE = "keras-addrop test: a C++ log line from inside a training step"


def log_from_cpp():
    import tensorflow as tf

    # Printing at a log level goes through TensorFlow's C++ logging
    # (LOG(ERROR) in the PrintV2 kernel), straight to file descriptor 2.
    tf.print(LINE, output_stream=tf.compat.v1.logging.error)


def start_then_patch(start=keras_addrop_cli._start):
    # After the command line's own start, which must import the package
    # itself for its start-up lines to be hidden.
    start()
    import keras

    from keras_addrop import runs
    from keras_addrop.train_step import ADDropTrainStep

    train_step = ADDropTrainStep._addrop_train_step

    def noisy_train_step(self, *args, **kwargs):
        if keras.backend.backend() == "jax":
            import jax

            # A compiled step runs Python only through a host callback.
            jax.debug.callback(log_from_cpp)
        else:
            log_from_cpp()  # An op of the traced (TF) or eager (PyTorch) step.
        return train_step(self, *args, **kwargs)

    # The one step every backend runs (traced, compiled or eager).
    ADDropTrainStep._addrop_train_step = noisy_train_step
    if os.environ.get("FAIL_AFTER_FIT"):

        def describe(result):
            raise RuntimeError("a bug after training")

        runs.describe = describe


keras_addrop_cli._start = start_then_patch
sys.exit(keras_addrop_cli.main(sys.argv[1:]))
