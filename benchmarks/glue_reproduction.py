"""The GLUE reproduction: plain recipe search, then plain vs AD-DROP.

Every run is one `keras-addrop finetune` process (a fresh TensorFlow per
run), in a folder under `benchmarks/results/glue/`; a folder holding a
`results.json` is finished and skipped, so the same command resumes after an
interruption (an interrupted run resumes from its last finished epoch). Each
finished run appends one line to `benchmarks/results/glue/runs.jsonl`.

Stages, in the order they should run:

- `recipe`: plain fine-tuning, seed 1, for every task x head x learning rate,
  `--recipe-epochs` epochs (constant rate: one run gives every epoch count).
- `choose`: per task, the (head, rate, epochs) with the best dev main metric
  over the recipe runs -> `recipes.json`. AD-DROP gets the same recipe.
- `primary`: low-resource (a fixed, seeded 1,000-example sample), plain and
  AD-DROP (GA, p = q = 0.3, cross-tuning; all layers, first layer for
  STS-B), `--seeds`.
- `secondary`: the same on the full training set (`--secondary-tasks`).
- `controls`: on the low-resource sample with the recipe, AD-DROP with
  random candidates (RD) and with the other choice of layers
  (`--control-tasks`, `--control-seeds`).
- `budget`: plain vs AD-DROP on the low-resource sample with the recipe's
  head and rate but the reference's kind of budget: up to
  `--budget-epochs`, early stopping with `--budget-patience`.
- `grid`: the p/q grid on one task's low-resource sample, one seed.
- `summary`: the tables (`summary.md`), the dev curves per epoch
  (`curves.png`) and the p/q heat map.

`--jobs 2` runs two processes at a time (one thread each on 2 cores); the
stages' runs start in the order listed, and `choose` and `summary` wait for
the runs before them. `--threads` sets the threads per process explicitly:
two commands with `--jobs 1 --threads 1` and different `--seeds` run one
seed's plain and AD-DROP runs back to back in each, side by side.

    python benchmarks/glue_reproduction.py --stages recipe choose \\
        --tasks stsb rte mrpc cola --heads mean --learning-rates 2e-5 5e-5 1e-4
    python benchmarks/glue_reproduction.py --stages primary summary --seeds 1 2 3
    python benchmarks/glue_reproduction.py --jobs 2 \\
        --stages controls primary grid secondary budget summary
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "results", "glue")
GLUE_DIR = os.environ.get(
    "KERAS_ADDROP_GLUE_DIR",
    os.path.join(HERE, "..", "..", "shared", "data", "glue"),
)
LOW_RESOURCE = 1000
SAMPLE_SEED = 1234
# The seed the recipe search runs on: plain's score on it is the maximum
# the recipe was chosen by, so comparisons also get a table without it.
RECIPE_SEED = 1
# The reference scripts: all layers for CoLA, MRPC and RTE, the first for
# STS-B.
ADDROP_LAYERS = {"cola": "all", "mrpc": "all", "rte": "all", "stsb": "0"}
# The comparisons' candidate ratio and drop rate, fixed in advance.
COMPARISON_P = COMPARISON_Q = "0.3"


def run(folder, flags, log_root, threads=None):
    """One finetune process; returns its results, or `None` if it failed.

    `threads` caps TensorFlow's intra- and inter-op thread pools of the
    process (`None`: TensorFlow's default, one thread per core).
    """
    results = os.path.join(folder, "results.json")
    if os.path.isfile(results):
        with open(results) as f:
            return record(folder, json.load(f))
    os.makedirs(log_root, exist_ok=True)
    name = os.path.relpath(folder, ROOT).replace(os.sep, "_")
    log = os.path.join(log_root, name + ".log")
    command = [
        sys.executable, "-m", "keras_addrop_cli", "finetune",
        "--glue-dir", GLUE_DIR, "--max-length", "128", "--batch-size", "32",
        "--no-save-model", "--verbose", "2", "--output", folder, *flags,
    ]  # fmt: skip
    env = dict(os.environ)
    if threads:
        env["TF_NUM_INTRAOP_THREADS"] = env["TF_NUM_INTEROP_THREADS"] = str(
            threads
        )
    print(" ".join(command), f"(threads: {threads or 'default'})", flush=True)
    start = time.time()
    with open(log, "a") as f:
        code = subprocess.call(
            command, stdout=f, stderr=subprocess.STDOUT, env=env
        )
    if code != 0:
        print(f"FAILED ({code}) after {time.time() - start:.0f} s: see {log}")
        return None
    with open(results) as f:
        return record(folder, json.load(f), threads)


def minutes(result):
    """A run's cost: its epochs' time across resumes (dev evaluation
    included), or for runs from before the per-epoch timing, the wall time
    of the process that finished it."""
    seconds = result.get("epoch_seconds") or result["wall_seconds"]
    return seconds / 60


_record_lock = threading.Lock()


def record(folder, result, threads=None):
    """Appends the run's line to `runs.jsonl` unless it is there already.

    `threads` is the thread cap of the process that finished the run, if
    any (see `run`).
    """
    with _record_lock:
        return _record(os.path.relpath(folder, ROOT), result, threads)


def _record(folder, result, threads):
    path = os.path.join(ROOT, "runs.jsonl")
    if os.path.isfile(path):
        with open(path) as f:
            if any(json.loads(line)["folder"] == folder for line in f):
                return result
    line = {
        "folder": folder,
        "task": result["task"],
        "method": result["method"],
        "head": result["config"].get("pooling", "cls"),
        "learning_rate": result["config"]["learning_rate"],
        "epochs": result["config"]["epochs"],
        "seed": result["config"]["seed"],
        "train_examples": result["train_examples"],
        "metric": result["main_metric"],
        "best": result["best"][result["main_metric"]],
        "best_epoch": result["best_epoch"],
        "last": result["last"][result["main_metric"]],
        "majority": result["majority_baseline"][result["main_metric"]],
        "minutes": round(minutes(result), 1),
    }
    if threads:
        line["threads"] = threads
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
    print(json.dumps(line), flush=True)
    return result


def size_name(task, limit):
    return f"{task}-{limit}" if limit else f"{task}-full"


def recipe_runs(args):
    """The recipe search's runs, as (folder, flags) pairs."""
    for task in args.tasks:
        for head in args.heads:
            for lr in args.learning_rates:
                folder = os.path.join(
                    ROOT, size_name(task, LOW_RESOURCE), "recipe",
                    f"{head}-lr{lr}", f"seed{RECIPE_SEED}",
                )  # fmt: skip
                flags = [
                    "--task", task, "--pooling", head, "--learning-rate", lr,
                    "--epochs", str(args.recipe_epochs), "--no-addrop",
                    "--seed", str(RECIPE_SEED),
                    "--train-limit", str(LOW_RESOURCE),
                    "--sample-seed", str(SAMPLE_SEED),
                ]  # fmt: skip
                yield folder, flags


def choose_stage(args):
    """Best (head, rate, epochs) per task from the recipe runs' curves."""
    recipes = {}
    for task in args.tasks:
        folder = os.path.join(ROOT, size_name(task, LOW_RESOURCE), "recipe")
        candidates = []
        for dirpath, _, files in os.walk(folder):
            if "results.json" not in files:
                continue
            with open(os.path.join(dirpath, "results.json")) as f:
                result = json.load(f)
            main = result["main_metric"]
            config = result["config"]
            for epoch in result["epochs"]:
                candidates.append(
                    (
                        epoch["dev"][main],
                        config.get("pooling", "cls"),
                        config["learning_rate"],
                        epoch["epoch"],
                    )
                )
        if not candidates:
            print(f"{task}: no finished recipe runs")
            continue
        # A tie goes to the shorter run: the same dev score for less compute
        # in every comparison run that follows.
        score, head, lr, epochs = max(candidates, key=lambda c: (c[0], -c[3]))
        recipes[task] = {
            "head": head,
            "learning_rate": lr,
            "epochs": epochs,
            "dev_score": score,
            "runs_compared": len({c[1:3] for c in candidates}),
        }
        print(f"{task}: {recipes[task]}")
    path = os.path.join(ROOT, "recipes.json")
    previous = {}
    if os.path.isfile(path):
        with open(path) as f:
            previous = json.load(f)
    with open(path, "w") as f:
        json.dump({**previous, **recipes}, f, indent=1, sort_keys=True)


def recipe_name(recipe, patience=None):
    """The folder of a recipe's runs: `mean-lr2e-05-e6`."""
    name = f"{recipe['head']}-lr{recipe['learning_rate']:g}-e{recipe['epochs']}"
    return f"{name}-patience{patience}" if patience else name


def recipe_flags(task, recipe, seed, limit):
    """The finetune flags of one seed of a recipe on `limit` examples
    (`None`: the full training set)."""
    flags = [
        "--task", task, "--pooling", recipe["head"],
        "--learning-rate", str(recipe["learning_rate"]),
        "--epochs", str(recipe["epochs"]), "--seed", str(seed),
    ]  # fmt: skip
    if limit:
        flags += [
            "--train-limit",
            str(limit),
            "--sample-seed",
            str(SAMPLE_SEED),
        ]
    return flags


def comparison_runs(
    task, limit, seeds, recipe, patience=None, methods=("plain", "addrop")
):
    name = recipe_name(recipe, patience)
    for seed in seeds:
        for method in methods:
            folder = os.path.join(
                ROOT, size_name(task, limit), name, method, f"seed{seed}"
            )
            flags = recipe_flags(task, recipe, seed, limit)
            if patience:
                flags += ["--patience", str(patience)]
            if method == "plain":
                flags.append("--no-addrop")
            else:
                flags += [
                    "--candidate-ratio", COMPARISON_P,
                    "--drop-rate", COMPARISON_Q,
                    "--addrop-layers", ADDROP_LAYERS[task],
                ]  # fmt: skip
            yield folder, flags


def load_recipes():
    path = os.path.join(ROOT, "recipes.json")
    if not os.path.isfile(path):
        raise SystemExit("run the recipe and choose stages first")
    with open(path) as f:
        return json.load(f)


def primary_runs(args):
    recipes = load_recipes()
    # Seed by seed over the tasks, so that an interrupted stage has already
    # compared every task once.
    for seed in args.seeds:
        for task in args.tasks:
            if task in recipes:
                yield from comparison_runs(
                    task, LOW_RESOURCE, [seed], recipes[task]
                )


def secondary_runs(args):
    recipes = load_recipes()
    for seed in args.seeds:
        for task in args.secondary_tasks:
            if task in recipes:
                yield from comparison_runs(task, None, [seed], recipes[task])


def control_runs(args):
    """Which part of AD-DROP costs accuracy: the same recipe and drop rate
    with random candidates (RD: is it dropping attention at all, or
    dropping the high-attribution keys?) and with the other choice of
    layers (first layer where the reference masks all, all where it masks
    the first)."""
    recipes = load_recipes()
    for seed in args.control_seeds:
        for task in args.control_tasks:
            if task not in recipes:
                continue
            recipe = recipes[task]
            layers = "0" if ADDROP_LAYERS[task] == "all" else "all"
            base = recipe_flags(task, recipe, seed, LOW_RESOURCE)
            base += [
                "--candidate-ratio", COMPARISON_P, "--drop-rate", COMPARISON_Q,
            ]  # fmt: skip
            variants = {
                "addrop-random": [
                    "--attribution", "random",
                    "--addrop-layers", ADDROP_LAYERS[task],
                ],
                f"addrop-layers-{layers}": ["--addrop-layers", layers],
            }  # fmt: skip
            for name, flags in variants.items():
                folder = os.path.join(
                    ROOT, size_name(task, LOW_RESOURCE), recipe_name(recipe),
                    name, f"seed{seed}",
                )  # fmt: skip
                yield folder, base + flags


def budget_runs(args):
    """The reference's budget: the recipe's head and rate, but up to
    `--budget-epochs` epochs with early stopping after `--budget-patience`
    epochs without a better dev score (the reference trains 50 epochs with
    patience 5 and reports the best dev epoch). A recipe chosen on plain
    fine-tuning's best epoch stops where plain peaks, possibly before a
    regularizer pays off; this budget lets each method run to its own
    peak."""
    recipes = load_recipes()
    for seed in args.budget_seeds:
        for task in args.budget_tasks:
            if task in recipes:
                recipe = {**recipes[task], "epochs": args.budget_epochs}
                yield from comparison_runs(
                    task, LOW_RESOURCE, [seed], recipe, args.budget_patience
                )


def grid_runs(args):
    """The p/q grid, seed 1. Its (0.3, 0.3) cell is the primary's seed-1
    AD-DROP run, the same flags: run once (runs are deterministic), in the
    primary's folder."""
    recipe = load_recipes()[args.grid_task]
    for p in args.grid_values:
        for q in args.grid_values:
            if (p, q) == (COMPARISON_P, COMPARISON_Q):
                yield primary_run(args.grid_task, recipe, "addrop")
                continue
            folder = os.path.join(
                ROOT, size_name(args.grid_task, LOW_RESOURCE), "grid",
                f"p{p}_q{q}", "seed1",
            )  # fmt: skip
            flags = recipe_flags(args.grid_task, recipe, 1, LOW_RESOURCE)
            flags += [
                "--candidate-ratio", p, "--drop-rate", q,
                "--addrop-layers", ADDROP_LAYERS[args.grid_task],
            ]  # fmt: skip
            yield folder, flags


def primary_run(task, recipe, method, seed=1):
    """The folder and flags of one of the primary's runs."""
    return next(
        comparison_runs(task, LOW_RESOURCE, [seed], recipe, methods=[method])
    )


def recipe_table(results):
    from keras_addrop import reports

    lines = [
        # The per-epoch list last: it is the wide column.
        "| task | train examples | head | learning rate | metric | best "
        "(epoch) | majority | minutes | dev per epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(
        results,
        key=lambda r: (r["task"], r["config"].get("pooling", "cls"),
                       r["config"]["learning_rate"]),
    ):  # fmt: skip
        main = r["main_metric"]
        majority = reports.majority_cell(r["majority_baseline"][main], main)
        curve = ", ".join(f"{100 * e['dev'][main]:.1f}" for e in r["epochs"])
        lines.append(
            f"| {r['task']} | {r['train_examples']} | "
            f"{r['config'].get('pooling', 'cls')} | "
            f"{r['config']['learning_rate']:g} | {main} | "
            f"{100 * r['best'][main]:.1f} ({r['best_epoch']}) | "
            f"{majority} | {minutes(r):.0f} | {curve} |"
        )
    return lines


def finished(folder):
    """Whether any run under `folder` has written its `results.json`."""
    for _, _, files in os.walk(folder):
        if "results.json" in files:
            return True
    return False


def summary_stage(args):
    from keras_addrop import reports

    folders = [
        os.path.join(ROOT, name)
        for name in sorted(os.listdir(ROOT))
        if os.path.isdir(os.path.join(ROOT, name))
    ]
    comparison = []
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            # A comparison whose first run is still training has no results.
            if name not in ("recipe", "grid") and finished(path):
                comparison.append(path)
    sections = []
    if comparison:
        curves = os.path.join(ROOT, "curves.png")
        sections += [
            "## Plain vs AD-DROP",
            "",
            reports.summarize(comparison, curves_path=curves),
            "",
            "Dev curves per epoch: `curves.png`, and one figure per task "
            "and training size (`curves-TASK-SIZE.png`).",
        ]
        # All comparisons in one figure are too small to read at page
        # width: one figure per task and training size as well.
        by_size = {}
        for path in comparison:
            size = os.path.basename(os.path.dirname(path))
            by_size.setdefault(size, []).append(path)
        for size, paths in sorted(by_size.items()):
            reports.curves(
                reports.load_results(paths),
                os.path.join(ROOT, f"curves-{size}.png"),
                columns=2,
            )
        unselected = [
            r["path"]
            for r in reports.load_results(comparison)
            if r["config"]["seed"] != RECIPE_SEED
        ]
        if unselected:
            sections += [
                "",
                f"## Plain vs AD-DROP without seed {RECIPE_SEED} "
                "(the recipe search's seed)",
                "",
                reports.summarize(unselected),
            ]
    recipe = [os.path.join(f, "recipe") for f in folders]
    recipe = [f for f in recipe if os.path.isdir(f)]
    if recipe:
        sections += ["", f"## Recipe search (plain, seed {RECIPE_SEED})", ""]
        sections += recipe_table(reports.load_results(recipe))
    grid = os.path.join(ROOT, size_name(args.grid_task, LOW_RESOURCE), "grid")
    if os.path.isdir(grid):
        # The (0.3, 0.3) cell and plain, for reference, are the primary's
        # seed-1 runs.
        recipe = load_recipes()[args.grid_task]
        center = primary_run(args.grid_task, recipe, "addrop")[0]
        plain = primary_run(args.grid_task, recipe, "plain")[0]
        cells = [grid] + [f for f in (center, plain) if finished(f)]
        heatmap = os.path.join(ROOT, f"{args.grid_task}-pq-grid.png")
        results = reports.load_results(cells)
        sections += ["", "## p/q grid (seed 1)", "", reports.summarize(cells)]
        sections += ["", reports.drop_share_table(results)]
        reports.heatmap(results, heatmap)
    text = "\n".join(sections).strip() + "\n"
    with open(os.path.join(ROOT, "summary.md"), "w") as f:
        f.write(text)
    print(text)


# Stages that are lists of runs, and stages that read finished runs (these
# wait for every run submitted before them).
RUN_STAGES = {
    "recipe": recipe_runs,
    "primary": primary_runs,
    "secondary": secondary_runs,
    "controls": control_runs,
    "budget": budget_runs,
    "grid": grid_runs,
}
READ_STAGES = {"choose": choose_stage, "summary": summary_stage}
STAGES = [*RUN_STAGES, *READ_STAGES]


def run_stages(args):
    """Runs the stages in order, `args.jobs` finetune processes at a time.

    Runs start in the order the stages list them; a reading stage waits for
    the runs before it. Each process gets `args.threads` threads if set,
    else with several jobs `cores // jobs`: on this 2-core machine two
    one-thread processes train 1.7 times as many examples per second as one
    two-thread process (which leaves a core partly idle in the small ops of
    a MiniLM step).
    """
    threads = args.threads
    if threads is None and args.jobs > 1:
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
    pending = []
    with futures.ThreadPoolExecutor(args.jobs) as pool:
        for stage in args.stages:
            if stage in RUN_STAGES:
                pending += [
                    pool.submit(run, folder, flags, args.log_dir, threads)
                    for folder, flags in RUN_STAGES[stage](args)
                ]
                continue
            for job in pending:
                job.result()
            pending = []
            READ_STAGES[stage](args)
        for job in pending:
            job.result()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", nargs="+", choices=STAGES, required=True)
    parser.add_argument(
        "--tasks", nargs="+", default=["stsb", "rte", "mrpc", "cola"]
    )
    parser.add_argument("--heads", nargs="+", default=["mean"])
    parser.add_argument(
        "--learning-rates", nargs="+", default=["2e-5", "5e-5", "1e-4"]
    )
    parser.add_argument("--recipe-epochs", type=int, default=10)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--secondary-tasks", nargs="+", default=["mrpc", "rte"])
    parser.add_argument("--control-tasks", nargs="+", default=["mrpc"])
    parser.add_argument("--control-seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--budget-tasks", nargs="+", default=["mrpc", "rte"])
    parser.add_argument("--budget-seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--budget-epochs", type=int, default=20)
    parser.add_argument("--budget-patience", type=int, default=5)
    parser.add_argument("--grid-task", default="rte")
    parser.add_argument(
        "--grid-values", nargs="+", default=["0.1", "0.3", "0.5"]
    )
    parser.add_argument(
        "--log-dir", default=os.path.join(HERE, "logs"), help="Run logs."
    )
    parser.add_argument(
        "--jobs", type=int, default=1,
        help="Finetune processes at a time (each gets cores // jobs threads).",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=None,
        help="Threads per finetune process (default: cores // jobs with "
        "several jobs, else TensorFlow's default). `--jobs 1 --threads 1` "
        "in two shells runs two chains of one-thread processes side by side.",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1. Received: --jobs={args.jobs}")
    if args.threads is not None and args.threads < 1:
        parser.error(
            f"--threads must be at least 1. Received: --threads={args.threads}"
        )
    if not os.path.isdir(GLUE_DIR):
        raise SystemExit(f"no GLUE data at {GLUE_DIR}")
    os.makedirs(ROOT, exist_ok=True)
    run_stages(args)


if __name__ == "__main__":
    main()
