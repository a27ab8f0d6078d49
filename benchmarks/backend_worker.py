"""One backend's side of `speed.py --parts backends`.

Started by `speed.py` with `KERAS_BACKEND` set, one process per backend:
builds the three models once, then times one training step of each for
every `round` line it reads on standard input, and answers with one JSON
line. The parent sends rounds to the backends in turn, so each times its
steps while the others wait, and the machine's drift falls on all of them.

    KERAS_BACKEND=jax python benchmarks/backend_worker.py --length 64
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from speed_parts.common import addrop_classifier  # noqa: E402
from speed_parts.common import batch  # noqa: E402
from speed_parts.common import stock_classifier  # noqa: E402

import keras_addrop  # noqa: E402


def build_steps(preset, x, y):
    """name -> one `train_on_batch` of that model (Keras' compiled step on
    TensorFlow and JAX, its eager step on PyTorch)."""
    stock = stock_classifier(preset)

    def addrop(enabled):
        model = addrop_classifier(preset, addrop_layers="all")
        model.addrop_enabled = enabled
        return model

    models = {
        "plain_stock": stock,
        "plain_addrop_classifier": addrop(False),
        "addrop_ga_all_layers": addrop(True),
    }
    return {
        name: (lambda model=model: model.train_on_batch(x, y))
        for name, model in models.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    preset = keras_addrop.models.minilm_l6_preset()
    x, y = batch(preset, args.batch_size, args.length)
    steps = build_steps(preset, x, y)
    # Compile (or trace) and warm up: JAX's stock step took 1.4 to 1.6
    # times its settled time for its first three timed steps after two
    # warm-up steps (length 128, two runs).
    for step in steps.values():
        for _ in range(5):
            step()
    print(json.dumps({"ready": keras.config.backend()}), flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            break
        times = {}
        for name, step in steps.items():
            start = time.perf_counter()
            step()  # Returns the logs as Python floats: the step is done.
            times[name] = time.perf_counter() - start
        print(json.dumps(times), flush=True)


if __name__ == "__main__":
    main()
