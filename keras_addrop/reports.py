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


def _mean_std(values):
    values = np.asarray(values, "float64") * 100
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.1f} ± {std:.1f}"


def summary_rows(results):
    """Per (task, train size, method): seeds and main-metric statistics."""
    groups = collections.defaultdict(list)
    for r in results:
        config = r["config"]
        method = r["method"]
        if method != "plain":
            method += (
                f" (p={config['candidate_ratio']:g}, q={config['drop_rate']:g})"
            )
        head = config.get("pooling", "cls")
        groups[(r["task"], r["train_examples"], head, method)].append(r)
    rows = []
    for (task, size, head, method), runs in sorted(groups.items()):
        main = runs[0]["main_metric"]
        rows.append(
            {
                "task": task,
                "train_examples": size,
                "head": head,
                "method": method,
                "metric": main,
                "seeds": sorted(r["config"]["seed"] for r in runs),
                "best": [r["best"][main] for r in runs],
                "last": [r["last"][main] for r in runs],
                "majority": runs[0]["majority_baseline"][main],
            }
        )
    return rows


def markdown_table(rows):
    lines = [
        "| task | train examples | head | method | metric | seeds | best "
        "epoch (mean ± std) | last epoch (mean ± std) | majority |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['task']} | {row['train_examples']} | {row['head']} | "
            f"{row['method']} | "
            f"{row['metric']} | {len(row['seeds'])} | {_mean_std(row['best'])}"
            f" | {_mean_std(row['last'])} | {100 * row['majority']:.1f} |"
        )
    gains = []
    for plain in rows:
        if plain["method"] != "plain":
            continue
        for other in rows:
            keys = ("task", "train_examples", "head")
            same = all(other[key] == plain[key] for key in keys)
            if same and other["method"] != "plain":
                best = np.mean(other["best"]) - np.mean(plain["best"])
                last = np.mean(other["last"]) - np.mean(plain["last"])
                gains.append(
                    f"| {plain['task']} | {plain['train_examples']} | "
                    f"{plain['head']} | {other['method']} | "
                    f"{100 * best:+.1f} | {100 * last:+.1f} |"
                )
    if gains:
        lines += [
            "",
            "| task | train examples | head | method | gain over plain, best "
            "epoch | gain over plain, last epoch |",
            "|---|---|---|---|---|---|",
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
