"""Summaries of fine-tuning runs: tables over seeds and p/q heat maps."""

import collections
import glob
import json
import os

import numpy as np

RESULTS_FILE = "results.json"


def load_results(folders):
    """Every `results.json` under `folders` (searched recursively)."""
    results = []
    for folder in folders:
        if os.path.isfile(folder):
            paths = [folder]
        elif os.path.isdir(folder):
            pattern = os.path.join(folder, "**", RESULTS_FILE)
            paths = sorted(glob.glob(pattern, recursive=True))
        else:
            raise FileNotFoundError(f"no such file or folder: {folder}")
        for path in paths:
            with open(path) as f:
                result = json.load(f)
            result["path"] = path
            results.append(result)
    if not results:
        raise FileNotFoundError(
            f"no {RESULTS_FILE} under {', '.join(map(str, folders))}"
        )
    return results


def _mean_std(values, sign=""):
    values = np.asarray(values, "float64") * 100
    if len(values) == 1:
        return f"{values[0]:{sign}.1f}"  # One run has no spread to report.
    return f"{values.mean():{sign}.1f} ± {values.std(ddof=1):.1f}"


def majority_cell(value, metric):
    """The majority-class baseline as a table cell, in points.

    A constant prediction has no correlation with the scores: correlation
    metrics get `"-"`.
    """
    return "-" if metric in ("pearson", "spearman") else f"{100 * value:.1f}"


def _recipe(config):
    """The training budget of a run: runs that differ in it never share a
    row (a mean over learning rates would describe no run)."""
    parts = []
    if config.get("learning_rate") is not None:
        parts.append(f"lr {config['learning_rate']:g}")
    if config.get("epochs") is not None:
        parts.append(f"{config['epochs']} ep")
    if config.get("patience"):
        parts.append(f"patience {config['patience']}")
    return ", ".join(parts) or "-"


def _method(result):
    config = result["config"]
    if result["method"] == "plain":
        return "plain"
    details = [f"p={config['candidate_ratio']:g}", f"q={config['drop_rate']:g}"]
    layers = config.get("addrop_layers")
    if layers is not None:
        if isinstance(layers, (list, tuple)):
            layers = ",".join(str(i) for i in layers)
        details.append(f"layers {layers}")
    return f"{result['method']} ({', '.join(details)})"


def summary_rows(results):
    """Per (task, train size, head, recipe, method): seeds and metric
    statistics.

    Each row holds, per seed, the main metric at the best and at the last
    epoch, and the other dev metrics (MRPC's F1, STS-B's Spearman) at the
    best epoch.
    """
    groups = collections.defaultdict(list)
    for r in results:
        config = r["config"]
        head = config.get("pooling", "cls")
        key = (r["task"], r["train_examples"], head, _recipe(config))
        groups[(*key, _method(r))].append(r)
    rows = []
    for (task, size, head, recipe, method), runs in sorted(groups.items()):
        runs = sorted(runs, key=lambda r: r["config"]["seed"])
        main = runs[0]["main_metric"]
        others = [m for m in runs[0]["best"] if m not in (main, "loss")]
        rows.append(
            {
                "task": task,
                "train_examples": size,
                "head": head,
                "recipe": recipe,
                "method": method,
                "metric": main,
                "seeds": [r["config"]["seed"] for r in runs],
                "best": [r["best"][main] for r in runs],
                "last": [r["last"][main] for r in runs],
                "others": {m: [r["best"][m] for r in runs] for m in others},
                "majority": runs[0]["majority_baseline"][main],
            }
        )
    return rows


def _paired(plain, other, key):
    """Per-seed differences `other - plain` over the seeds both ran.

    Runs with the same seed share the head's initialization and the order of
    the batches, so the paired difference isolates the method.
    """
    plain_by_seed = dict(zip(plain["seeds"], plain[key]))
    other_by_seed = dict(zip(other["seeds"], other[key]))
    seeds = sorted(set(plain_by_seed) & set(other_by_seed))
    return [other_by_seed[s] - plain_by_seed[s] for s in seeds]


def markdown_table(rows):
    """Markdown for `summary_rows`: one table of runs, one of paired gains."""
    lines = [
        "| task | train examples | head | recipe | method | metric | seeds | "
        "best epoch (mean ± std) | last epoch (mean ± std) | other metrics, "
        "best epoch | majority |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        others = ", ".join(
            f"{m} {_mean_std(v)}" for m, v in row["others"].items()
        )
        lines.append(
            f"| {row['task']} | {row['train_examples']} | {row['head']} | "
            f"{row['recipe']} | {row['method']} | "
            f"{row['metric']} | {len(row['seeds'])} | {_mean_std(row['best'])}"
            f" | {_mean_std(row['last'])} | {others or '-'} | "
            f"{majority_cell(row['majority'], row['metric'])} |"
        )
    gains = []
    for plain in rows:
        if plain["method"] != "plain":
            continue
        for other in rows:
            keys = ("task", "train_examples", "head", "recipe")
            same = all(other[key] == plain[key] for key in keys)
            if not same or other["method"] == "plain":
                continue
            prefix = (
                f"| {plain['task']} | {plain['train_examples']} | "
                f"{plain['head']} | {plain['recipe']} | {other['method']} |"
            )
            best = _paired(plain, other, "best")
            if best:
                last = _paired(plain, other, "last")
                wins = sum(d > 0 for d in best)
                gains.append(
                    f"{prefix} {len(best)} | {_mean_std(best, '+')} | "
                    f"{_mean_std(last, '+')} | {wins} of {len(best)} |"
                )
            else:
                # No seed in common: only the difference of the means.
                best = np.mean(other["best"]) - np.mean(plain["best"])
                last = np.mean(other["last"]) - np.mean(plain["last"])
                gains.append(
                    f"{prefix} 0 | {100 * best:+.1f} (unpaired) | "
                    f"{100 * last:+.1f} (unpaired) | - |"
                )
    if gains:
        lines += [
            "",
            "| task | train examples | head | recipe | method | paired seeds "
            "| gain over plain, best epoch (mean ± std) | gain over plain, "
            "last epoch (mean ± std) | seeds where it helps (best epoch) |",
            "|---|---|---|---|---|---|---|---|---|",
            *gains,
        ]
    return "\n".join(lines)


def heatmap(results, path):
    """The p/q sensitivity map (the paper's Fig. 6) of one task's sweep.

    Cells are the mean best-epoch main metric over seeds. Returns the path,
    or `None` when the results hold no grid or matplotlib is missing.
    """
    sweep = [r for r in results if r["method"] != "plain"]
    ps = sorted({r["config"]["candidate_ratio"] for r in sweep})
    qs = sorted({r["config"]["drop_rate"] for r in sweep})
    if len(ps) * len(qs) < 2:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    main = sweep[0]["main_metric"]
    grid = np.full((len(ps), len(qs)), np.nan)
    for i, p in enumerate(ps):
        for j, q in enumerate(qs):
            values = [
                r["best"][main]
                for r in sweep
                if r["config"]["candidate_ratio"] == p
                and r["config"]["drop_rate"] == q
            ]
            if values:
                grid[i, j] = 100 * np.mean(values)
    figure, axis = plt.subplots(
        figsize=(1.1 * len(qs) + 2, 0.9 * len(ps) + 1.5)
    )
    image = axis.imshow(grid, cmap="viridis", origin="lower")
    axis.set_xticks(range(len(qs)), [f"{q:g}" for q in qs])
    axis.set_yticks(range(len(ps)), [f"{p:g}" for p in ps])
    axis.set_xlabel("q (drop rate)")
    axis.set_ylabel("p (candidate ratio)")
    for i in range(len(ps)):
        for j in range(len(qs)):
            if not np.isnan(grid[i, j]):
                axis.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center",
                          color="white", fontsize=8)  # fmt: skip
    axis.set_title(f"{sweep[0]['task']}: dev {main} (best epoch)")
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def summarize(folders, output=None, heatmap_path=None):
    """Markdown summary of the runs under `folders`; optionally written to
    `output`, with a p/q heat map PNG at `heatmap_path`."""
    results = load_results(folders)
    text = markdown_table(summary_rows(results))
    if output:
        with open(output, "w") as f:
            f.write(text + "\n")
    if heatmap_path:
        if heatmap(results, heatmap_path) is None:
            text += "\n\n(no p/q grid in these runs: no heat map written)"
    return text
