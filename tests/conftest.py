import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
