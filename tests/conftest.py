import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The tests compile hundreds of tiny models: XLA's backend optimizations
# cost more compile time than they save at run time (about a third of the
# JAX tests' time). Subprocesses inherit it.
_FAST_COMPILE = "--xla_backend_optimization_level=0"
if _FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " " + _FAST_COMPILE
    ).strip()

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    keras.config.disable_traceback_filtering()


def pytest_collection_modifyitems(config, items):
    # `tf_only` tests check TensorFlow's own machinery (tapes, tf.function,
    # XLA, tf.distribute); on the other backends the same features are
    # checked against TensorFlow's results in tests/backends_test.py.
    if keras.config.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason="TensorFlow only")
    for item in items:
        if "tf_only" in item.keywords:
            item.add_marker(skip)
