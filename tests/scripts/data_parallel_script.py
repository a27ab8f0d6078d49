"""Run by `distribute_test.py` in a fresh process: JAX's host devices can
only be split (`XLA_FLAGS`) before JAX initialises."""

import json
import os
import pathlib
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import keras  # noqa: E402
import numpy as np  # noqa: E402

# The repository root, for `tests.test_case` and the package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import keras_addrop  # noqa: E402
from keras_addrop import backend  # noqa: E402
from tests.test_case import deterministic_model  # noqa: E402
from tests.test_case import deterministic_tagger  # noqa: E402
from tests.test_case import fit_tagger_cross_tuned  # noqa: E402
from tests.test_case import tiny_batch  # noqa: E402
from tests.test_case import tiny_token_batch  # noqa: E402


def fit(model, x, y):
    return model.fit(
        x,
        y,
        batch_size=8,
        epochs=4,
        shuffle=False,
        verbose=0,
        callbacks=[keras_addrop.callbacks.CrossTuning()],
    ).history


def fit_tagger(x, tags, weights):
    model = deterministic_tagger()
    return model, fit_tagger_cross_tuned(model, x, tags, weights)


def main():
    x, y = tiny_batch(batch_size=16)
    devices = keras.distribution.list_devices()
    data_parallel = keras.distribution.DataParallel(devices=devices)
    report = {"devices": len(devices)}

    single = deterministic_model()
    report["single_history"] = fit(single, x, y)
    with data_parallel.scope():
        report["batch_multiple"] = backend.batch_multiple()
        parallel = deterministic_model()
        report["parallel_history"] = fit(parallel, x, y)
        report["max_weight_difference"] = float(
            max(
                np.abs(a.numpy() - b.numpy()).max()
                for a, b in zip(single.weights, parallel.weights)
            )
        )
        # An uneven batch of 5 examples, as a dev set's last one.
        few = {key: value[:5] for key, value in x.items()}
        predicted = backend.predict_function(parallel)(few)
        report["uneven_prediction_difference"] = float(
            np.abs(predicted - single.predict_on_batch(few)).max()
        )
        # The token classifier, with entity F1 in the validation.
        token_batch = tiny_token_batch()
        tagger, report["token_parallel_history"] = fit_tagger(*token_batch)
        tagger_weights = [w.numpy() for w in tagger.weights]
        # Dropout draws from the seed generators in the step's state.
        noisy = deterministic_model(dropout=0.1)
        report["dropout_history"] = fit(noisy, x, y)
    tagger, report["token_single_history"] = fit_tagger(*token_batch)
    report["token_max_weight_difference"] = float(
        max(
            np.abs(a - w.numpy()).max()
            for a, w in zip(tagger_weights, tagger.weights)
        )
    )
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main()
