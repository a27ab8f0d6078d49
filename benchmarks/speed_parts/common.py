"""What every measurement shares: the batch, the models, the timing."""

import os
import statistics
import time

import keras
import keras_hub
import numpy as np
import tensorflow as tf

import keras_addrop

# The benchmarks folder.
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def batch(preset, batch_size, length, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(length // 2, length + 1, size=(batch_size, 1))
    padding_mask = np.arange(length)[None, :] < lengths
    token_ids = rng.integers(1000, 30000, size=(batch_size, length))
    x = {
        "token_ids": (token_ids * padding_mask).astype("int32"),
        "segment_ids": np.zeros((batch_size, length), "int32"),
        "padding_mask": padding_mask,
    }
    y = rng.integers(0, 2, size=(batch_size,)).astype("int32")
    return x, y


def compiled(model, **kwargs):
    model.compile(
        optimizer=keras.optimizers.AdamW(2e-5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
        **kwargs,
    )
    return model


def addrop_classifier(preset, **kwargs):
    """A compiled AD-DROP classifier of the preset, seed 0."""
    return compiled(
        keras_addrop.models.ADDropBertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None, seed=0, **kwargs
        )
    )


def stock_classifier(preset, num_classes=2):
    """A compiled stock keras-hub BERT classifier of the preset."""
    return compiled(
        keras_hub.models.BertTextClassifier.from_preset(
            preset, num_classes=num_classes, preprocessor=None
        )
    )


def measure(configs, rounds, skip=()):
    for name, run in configs.items():  # Trace and warm up.
        run()
        run()
    times = {name: [] for name in configs}
    for _ in range(rounds):
        for name, run in configs.items():
            if name in skip:
                continue
            start = time.perf_counter()
            result = run()
            tf.nest.map_structure(
                lambda t: t.numpy() if hasattr(t, "numpy") else t, result
            )
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(configs, rounds):
    """Two steps (name -> function) alone, alternating: the first over the
    second, as the ratio of medians and the median of each round's ratio
    (neighbours paired)."""
    times = measure(configs, rounds)
    over, under = (times[name] for name in configs)
    return {
        "seconds": times,
        "ratio_of_medians": statistics.median(over) / statistics.median(under),
        "median_paired_ratio": statistics.median(
            [a / b for a, b in zip(over, under)]
        ),
    }
