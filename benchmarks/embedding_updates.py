"""Plain fine-tuning with and without the repeated-row merge, on MRPC.

Keras 3.15's TensorFlow optimizers over-count an embedding row that occurs
more than once in a batch (see `keras_addrop.optimizers.merge_repeated_rows`);
the AD-DROP models merge such rows by default. This runs the GLUE
benchmark's plain MRPC recipe (1,000 training examples, its head, rate and
epochs) for each seed twice, merged and with `--stock-embedding-updates`,
and measures how far the rows of [CLS], [SEP] and the two segments travel
from their pretrained values. Runs resume; finished ones are skipped.

    python benchmarks/embedding_updates.py --seeds 1 2 3 --jobs 2

Writes `benchmarks/results/embedding_updates/` (a folder per run, with
`results.json` and `distances.json`, and `summary.md`).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent import futures

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from glue_reproduction import GLUE_DIR  # noqa: E402
from glue_reproduction import LOW_RESOURCE  # noqa: E402
from glue_reproduction import SAMPLE_SEED  # noqa: E402
from glue_reproduction import load_recipes  # noqa: E402
from glue_reproduction import recipe_flags  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "results", "embedding_updates")
LOGS = os.path.join(HERE, "logs")
VARIANTS = {"merged": [], "stock": ["--stock-embedding-updates"]}
# Rows of the uncased BERT vocabulary (MiniLM-L6's).
TOKEN_ROWS = {"[CLS]": 101, "[SEP]": 102}
FREQUENT = 20


def read_json(path):
    with open(path) as f:
        return json.load(f)


def folder_of(variant, seed):
    return os.path.join(ROOT, f"mrpc-{LOW_RESOURCE}", variant, f"seed{seed}")


def run(variant, seed, threads):
    """One finetune process, then the distances its rows travelled."""
    folder = folder_of(variant, seed)
    if not os.path.isfile(os.path.join(folder, "results.json")):
        recipe = load_recipes()["mrpc"]
        command = [
            sys.executable, "-m", "keras_addrop_cli", "finetune",
            "--glue-dir", GLUE_DIR, "--max-length", "128",
            "--batch-size", "32", "--verbose", "2", "--output", folder,
            *recipe_flags("mrpc", recipe, seed, LOW_RESOURCE),
            "--no-addrop", *VARIANTS[variant],
        ]  # fmt: skip
        env = dict(os.environ)
        env["TF_NUM_INTRAOP_THREADS"] = env["TF_NUM_INTEROP_THREADS"] = str(
            threads
        )
        os.makedirs(LOGS, exist_ok=True)
        log_path = os.path.join(LOGS, f"embedding_updates_{variant}_{seed}.log")
        print(" ".join(command), flush=True)
        with open(log_path, "a") as log:
            code = subprocess.call(
                command, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        if code != 0:
            print(f"FAILED ({code}): see {log_path}", flush=True)
            return None
    distances_path = os.path.join(folder, "distances.json")
    if not os.path.isfile(distances_path):
        subprocess.check_call(
            [sys.executable, os.path.abspath(__file__), "--distances", folder]
        )
    return read_json(distances_path)


def token_counts(preset, vocabulary_size):
    """How often each token id occurs in the runs' training sample."""
    import keras_hub

    from keras_addrop import glue
    from keras_addrop import runs

    texts, labels = runs.load_arrays(glue.get_task("mrpc"), "train", GLUE_DIR)
    indices = glue.sample_indices(labels, LOW_RESOURCE, None, seed=SAMPLE_SEED)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        preset, sequence_length=128
    )
    x = preprocessor(x=tuple([t[i] for i in indices] for t in texts))
    ids = np.asarray(x["token_ids"])[np.asarray(x["padding_mask"])]
    return np.bincount(ids, minlength=vocabulary_size)


def row_distances(folder):
    """How far the embedding rows moved from the pretrained weights."""
    import keras
    import keras_hub

    import keras_addrop

    preset = keras_addrop.models.minilm_l6_preset()
    start = keras_hub.models.BertBackbone.from_preset(preset)
    model = keras.saving.load_model(os.path.join(folder, "model.keras"))

    def table(backbone_or_model, name):
        for weight in backbone_or_model.weights:
            if weight.path.endswith(f"{name}/embeddings"):
                return weight.numpy()
        raise KeyError(name)

    result = {}
    for name in ("token_embedding", "segment_embedding"):
        before, after = table(start, name), table(model, name)
        result[name] = np.linalg.norm(after - before, axis=-1)
    tokens, segments = result["token_embedding"], result["segment_embedding"]
    counts = token_counts(preset, len(tokens))
    counts[list(TOKEN_ROWS.values())] = 0
    frequent = np.argsort(counts)[::-1][:FREQUENT]
    once = np.flatnonzero(counts == 1)
    unseen = np.flatnonzero(counts == 0)
    distances = {
        **{name: float(tokens[row]) for name, row in TOKEN_ROWS.items()},
        "segment 0": float(segments[0]),
        "segment 1": float(segments[1]),
        f"median, the {FREQUENT} most frequent other tokens": float(
            np.median(tokens[frequent])
        ),
        "median, tokens seen once": float(np.median(tokens[once])),
        "median, tokens not in the sample (weight decay only)": float(
            np.median(tokens[unseen])
        ),
        "tokens seen once": int(once.size),
        "distinct tokens in the sample": int((counts > 0).sum() + 2),
    }
    with open(os.path.join(folder, "distances.json"), "w") as f:
        json.dump(distances, f, indent=1)


def summary(seeds):
    """`summary.md`: dev accuracy and row distances, per seed and mean."""
    rows = {}
    for variant in VARIANTS:
        for seed in seeds:
            folder = folder_of(variant, seed)
            paths = [
                os.path.join(folder, name)
                for name in ("results.json", "distances.json")
            ]
            if not all(os.path.isfile(path) for path in paths):
                continue
            result, distances = (read_json(path) for path in paths)
            rows.setdefault(variant, []).append(
                {
                    "seed": seed,
                    "best": result["best"]["accuracy"],
                    "best_epoch": result["best_epoch"],
                    "last": result["last"]["accuracy"],
                    "dev_loss_last": result["last"]["loss"],
                    **distances,
                }
            )
    columns = [
        "best", "last", "dev_loss_last", "[CLS]", "[SEP]", "segment 0",
        "segment 1", f"median, the {FREQUENT} most frequent other tokens",
        "median, tokens seen once",
    ]  # fmt: skip
    lines = [
        "| update | seed | best dev accuracy (epoch) | last | last dev loss "
        f"| [CLS] | [SEP] | segment 0 | segment 1 | {FREQUENT} most frequent "
        "other tokens (median) | tokens seen once (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, runs in rows.items():
        for r in runs:
            lines.append(
                f"| {variant} | {r['seed']} | {100 * r['best']:.1f} "
                f"({r['best_epoch']}) | {100 * r['last']:.1f} | "
                f"{r['dev_loss_last']:.3f} | "
                + " | ".join(f"{r[c]:.4f}" for c in columns[3:])
                + " |"
            )
        if len(runs) > 1:
            mean = {c: statistics.mean(r[c] for r in runs) for c in columns}
            lines.append(
                f"| {variant} | mean | {100 * mean['best']:.1f} | "
                f"{100 * mean['last']:.1f} | {mean['dev_loss_last']:.3f} | "
                + " | ".join(f"{mean[c]:.4f}" for c in columns[3:])
                + " |"
            )
    text = "\n".join(lines) + "\n"
    os.makedirs(ROOT, exist_ok=True)
    with open(os.path.join(ROOT, "summary.md"), "w") as f:
        f.write(text)
    print(text)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument(
        "--jobs", type=int, default=2, help="Runs at a time (one thread each "
        "when more than one)."
    )  # fmt: skip
    parser.add_argument("--distances", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1. Received: --jobs={args.jobs}")
    if args.distances:
        return row_distances(args.distances)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with futures.ThreadPoolExecutor(args.jobs) as pool:
        jobs = [
            pool.submit(run, variant, seed, threads)
            for seed in args.seeds
            for variant in VARIANTS
        ]
        for job in jobs:
            job.result()
    summary(args.seeds)


if __name__ == "__main__":
    main()
