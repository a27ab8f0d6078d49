"""Run by `distribute_test.py` in a fresh process: a causal LM under JAX's
`DataParallel` and `ModelParallel` over two host devices, against one
device."""

import json
import os
import pathlib
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tests.test_case import causal_batch  # noqa: E402
from tests.test_case import tiny_causal_lms  # noqa: E402


def trained(initial, x, y, weights):
    """A tiny Llama causal LM from `initial` weights after two AD-DROP
    epochs: its history and weights."""
    keras.utils.set_random_seed(0)
    model, _ = tiny_causal_lms(
        "llama", addrop_layers="all", candidate_ratio=0.5, drop_rate=0.5, seed=1
    )
    if initial is not None:
        model.set_weights(initial)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(
        x, y, sample_weight=weights, batch_size=4, epochs=2, verbose=0
    ).history
    return history, [np.asarray(w.numpy()) for w in model.weights], model


def main():
    x, y, weights = causal_batch(batch_size=8)
    devices = keras.distribution.list_devices()
    report = {"devices": len(devices)}
    keras.utils.set_random_seed(0)
    initial = [w.numpy() for w in tiny_causal_lms("llama")[0].weights]
    single, single_weights, _ = trained(initial, x, y, weights)
    report["single"] = single

    mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], devices)
    layout_map = keras_hub.models.LlamaBackbone.get_layout_map(mesh)
    distributions = {
        "data_parallel": keras.distribution.DataParallel(devices=devices),
        "model_parallel": keras.distribution.ModelParallel(
            layout_map=layout_map, batch_dim_name="batch"
        ),
    }
    for name, distribution in distributions.items():
        with distribution.scope():
            history, parallel_weights, model = trained(initial, x, y, weights)
        report[name] = history
        report[name + "_weight_difference"] = float(
            max(
                np.abs(a - b).max()
                for a, b in zip(single_weights, parallel_weights)
            )
        )
        query = model.backbone.transformer_layers[0]._self_attention_layer
        kernel = query._query_dense.kernel
        report[name + "_query_shards"] = len(
            {str(s.index) for s in kernel.value.addressable_shards}
        )
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main()
