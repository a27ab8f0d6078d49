"""Run by `distribute_test.py` in a fresh process: TensorFlow's logical
devices can only be configured before it initialises."""

import json
import os
import pathlib
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

# The repository root, for `tests.test_case` and the package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import keras_addrop  # noqa: E402
from tests.test_case import causal_batch  # noqa: E402
from tests.test_case import deterministic_tagger  # noqa: E402
from tests.test_case import differences_from_keras_step  # noqa: E402
from tests.test_case import fit_tagger_cross_tuned  # noqa: E402
from tests.test_case import tiny_backbone  # noqa: E402
from tests.test_case import tiny_batch  # noqa: E402
from tests.test_case import tiny_causal_lms  # noqa: E402
from tests.test_case import tiny_token_batch  # noqa: E402


def build(strategy, **kwargs):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras_addrop.models.ADDropBertTextClassifier(
            tiny_backbone(dropout=0.0), num_classes=2, dropout=0.0, **kwargs
        )
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    return model


def token_classifier_runs(single, mirrored):
    """The token classifier with cross-tuning, on one device and mirrored:
    the histories (entity F1 of the validation data among them) and the
    largest weight difference."""
    x, tags, weights = tiny_token_batch()
    x["padding_mask"] = x["padding_mask"].astype("int32")
    report, trained = {}, []
    for name, strategy in (("single", single), ("mirrored", mirrored)):
        with strategy.scope():
            model = deterministic_tagger()
        report[name] = fit_tagger_cross_tuned(model, x, tags, weights)
        trained.append([w.numpy() for w in model.weights])
    report["max_weight_difference"] = float(
        max(np.abs(a - b).max() for a, b in zip(*trained))
    )
    return report


def causal_lm_runs(single, mirrored):
    """A tiny Llama causal LM, two AD-DROP epochs, on one device and
    mirrored: the histories and the largest weight difference."""
    x, y, weights = causal_batch(batch_size=8)
    x["padding_mask"] = x["padding_mask"].astype("int32")
    keras.utils.set_random_seed(0)
    initial = [w.numpy() for w in tiny_causal_lms("llama")[0].weights]
    report, trained = {}, []
    for name, strategy in (("single", single), ("mirrored", mirrored)):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model, _ = tiny_causal_lms(
                "llama",
                addrop_layers="all",
                # q = 1: no random draw, which a replica makes its own.
                candidate_ratio=0.3,
                drop_rate=1.0,
                seed=1,
            )
            model.set_weights(initial)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
        report[name] = model.fit(
            x, y, sample_weight=weights, batch_size=4, epochs=2, verbose=0
        ).history
        trained.append([w.numpy() for w in model.weights])
    report["max_weight_difference"] = float(
        max(np.abs(a - b).max() for a, b in zip(*trained))
    )
    return report


def main():
    x, y = tiny_batch(batch_size=16)
    # Keras' symbolic build under a strategy averages a first batch across
    # replicas, which fails for boolean tensors: masks go in as int32.
    x["padding_mask"] = x["padding_mask"].astype("int32")
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single = tf.distribute.get_strategy()
    report = {"replicas": mirrored.num_replicas_in_sync}

    # AD-DROP off: the mirrored run equals the single-device one.
    weights = []
    for strategy in (single, mirrored):
        model = build(strategy, addrop_layers="all")
        model.addrop_enabled = False
        history = model.fit(
            x, y, batch_size=8, epochs=2, shuffle=False, verbose=0
        )
        weights.append([w.numpy() for w in model.weights])
        report.setdefault("plain_loss", []).append(history.history["loss"])
    report["plain_max_weight_difference"] = float(
        max(np.abs(a - b).max() for a, b in zip(*weights))
    )

    # AD-DROP off: Keras' own step, mirrored, with and without loss scaling.
    report["keras_step"] = {
        policy: differences_from_keras_step(
            x, y, mirrored, policy, loss_scale=policy == "mixed_float16"
        )
        for policy in ("float32", "mixed_float16")
    }

    # AD-DROP on, with cross-tuning.
    model = build(
        mirrored, addrop_layers="all", candidate_ratio=1.0, drop_rate=1.0
    )
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[keras_addrop.callbacks.CrossTuning()],
    )
    report["addrop_fractions"] = history.history["addrop_drop_fraction"]
    report["addrop_loss"] = history.history["loss"]
    lengths = x["padding_mask"].sum(-1)
    report["expected_fraction"] = float(
        (lengths * (lengths - 1)).sum() / (lengths**2).sum()
    )

    report["token"] = token_classifier_runs(single, mirrored)
    report["causal_lm"] = causal_lm_runs(single, mirrored)

    # Keras' own limits under MirroredStrategy are named by our model.
    errors = {}
    for name, compile_kwargs, optimizer_kwargs in (
        ("jit_compile", {"jit_compile": True}, {}),
        ("steps_per_execution", {"steps_per_execution": 2}, {}),
        ("gradient_accumulation_steps", {}, {"gradient_accumulation_steps": 2}),
    ):
        with mirrored.scope():
            model = keras_addrop.models.ADDropBertTextClassifier(
                tiny_backbone(), num_classes=2
            )
            model.compile(
                optimizer=keras.optimizers.Adam(**optimizer_kwargs),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True
                ),
                **compile_kwargs,
            )
        try:
            model.fit(x, y, batch_size=8, verbose=0)
            errors[name] = None
        except ValueError as error:
            errors[name] = str(error)
    report["errors"] = errors
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main()
