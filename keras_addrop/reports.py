"""Summaries of fine-tuning runs: tables over seeds and p/q heat maps."""

import collections
import glob
import json
import os

import numpy as np

RESULTS_FILE = "results.json"

# `train_step.DROP_FRACTION`, the per-epoch log of the share of attention
# pairs AD-DROP dropped; spelt out so that reading results never imports
# TensorFlow.
DROP_FRACTION = "addrop_drop_fraction"


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


def _groups(results):
    """Runs by (task, train size, head, recipe, method), seeds in order."""
    groups = collections.defaultdict(list)
    for r in results:
        config = r["config"]
        head = config.get("pooling", "cls")
        key = (r["task"], r["train_examples"], head, _recipe(config))
        groups[(*key, _method(r))].append(r)
    for runs in groups.values():
        runs.sort(key=lambda r: r["config"]["seed"])
    return dict(sorted(groups.items()))


def summary_rows(results):
    """Per (task, train size, head, recipe, method): seeds and metric
    statistics.

    Each row holds, per seed, the main metric at the best and at the last
    epoch, and the other dev metrics (MRPC's F1, STS-B's Spearman) at the
    best epoch.
    """
    rows = []
    for (task, size, head, recipe, method), runs in _groups(results).items():
        main = runs[0]["main_metric"]
        # Per-type entity scores (a dict) stay in results.json.
        others = [
            m
            for m, v in runs[0]["best"].items()
            if m not in (main, "loss") and isinstance(v, (int, float))
        ]
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


def pq_grid(results):
    """The p/q sensitivity grid of one task's sweep, as numbers.

    Returns a dict with `ps` and `qs` (sorted candidate ratios and drop
    rates), `scores` (a `[len(ps), len(qs)]` array of the mean best-epoch
    main metric over seeds, in points, NaN where no run has that cell),
    `metric`, `task`, and `plain` (plain fine-tuning's mean, in points, or
    `None` without plain runs), or `None` when the AD-DROP runs span fewer
    than two cells.
    """
    sweep = [r for r in results if r["method"] != "plain"]
    ps = sorted({r["config"]["candidate_ratio"] for r in sweep})
    qs = sorted({r["config"]["drop_rate"] for r in sweep})
    if len(ps) * len(qs) < 2:
        return None
    main = sweep[0]["main_metric"]
    scores = np.full((len(ps), len(qs)), np.nan)
    for i, p in enumerate(ps):
        for j, q in enumerate(qs):
            values = [
                r["best"][main]
                for r in sweep
                if r["config"]["candidate_ratio"] == p
                and r["config"]["drop_rate"] == q
            ]
            if values:
                scores[i, j] = 100 * np.mean(values)
    plain = [r["best"][main] for r in results if r["method"] == "plain"]
    return {
        "ps": ps,
        "qs": qs,
        "scores": scores,
        "metric": main,
        "task": sweep[0]["task"],
        "plain": 100 * float(np.mean(plain)) if plain else None,
    }


def drop_share_table(results):
    """Markdown: one row per run, in order of how much AD-DROP drops.

    The share is the mean `addrop_drop_fraction` (real query-key pairs
    dropped, over the selected layers) of a run's AD-DROP epochs, 0 for
    plain runs. Beside it, the run's main dev metric averaged over all its
    epochs (less noisy than any one epoch), at its best epoch and at its
    last. Answers whether a sweep's score follows the amount dropped.
    """
    main = results[0]["main_metric"]
    rows = []
    for r in results:
        shares = [
            e.get(DROP_FRACTION, 0.0)
            for e in r["epochs"]
            if e.get(DROP_FRACTION, 0.0) > 0
        ]
        scores = [e["dev"][main] for e in r["epochs"]]
        rows.append(
            (
                float(np.mean(shares)) if shares else 0.0,
                _method(r),
                r["config"]["seed"],
                100 * float(np.mean(scores)),
                100 * r["best"][main],
                100 * r["last"][main],
            )
        )
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    lines = [
        "| method | seed | share of pairs dropped (AD-DROP epochs) | "
        f"dev {main}, mean over epochs | best epoch | last epoch |",
        "|---|---|---|---|---|---|",
    ]
    for share, method, seed, mean, best, last in rows:
        lines.append(
            f"| {method} | {seed} | {share:.3f} | {mean:.1f} | {best:.1f} | "
            f"{last:.1f} |"
        )
    return "\n".join(lines)


def heatmap(results, path):
    """The p/q sensitivity map (the paper's Fig. 6) of one task's sweep.

    Cells show the mean best-epoch main metric over seeds (`pq_grid`).
    With plain runs in `results` the colour is each cell's gain over plain
    fine-tuning, on a scale centred at zero (red below plain, blue above),
    and each cell also prints that gain; without them the colour is the
    score. Returns the path, or `None` when the results hold no grid or
    matplotlib is missing.
    """
    grid = pq_grid(results)
    plt = _pyplot()
    if grid is None or plt is None:
        return None
    ps, qs, scores = grid["ps"], grid["qs"], grid["scores"]
    plain = grid["plain"]
    figure, axis = plt.subplots(
        figsize=(1.3 * len(qs) + 2.2, 0.9 * len(ps) + 1.5)
    )
    if plain is None:
        colours = scores
        image = axis.imshow(colours, cmap="viridis", origin="lower")
        label = f"dev {grid['metric']} (best epoch)"
    else:
        colours = scores - plain
        # Symmetric limits keep zero (plain's score) at the neutral colour.
        limit = max(float(np.nanmax(np.abs(colours))), 0.5)
        image = axis.imshow(
            colours, cmap="RdBu", origin="lower", vmin=-limit, vmax=limit
        )
        label = "gain over plain (points)"
    axis.set_xticks(range(len(qs)), [f"{q:g}" for q in qs])
    axis.set_yticks(range(len(ps)), [f"{p:g}" for p in ps])
    axis.set_xlabel("q (drop rate)")
    axis.set_ylabel("p (candidate ratio)")
    for i in range(len(ps)):
        for j in range(len(qs)):
            if np.isnan(scores[i, j]):
                continue
            text = f"{scores[i, j]:.1f}"
            colour = "white"
            if plain is not None:
                text += f"\n({colours[i, j]:+.1f})"
                # The ends of the diverging scale are dark, its middle light.
                colour = (
                    "white" if abs(colours[i, j]) > 0.6 * limit else "black"
                )
            axis.text(j, i, text, ha="center", va="center", color=colour,
                      fontsize=8)  # fmt: skip
    title = f"{grid['task']}: dev {grid['metric']} (best epoch)"
    if plain is not None:
        title += f"\nplain fine-tuning: {plain:.1f}"
    axis.set_title(title)
    figure.colorbar(image, ax=axis, label=label)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _pyplot():
    """matplotlib's pyplot without a display, or `None` when missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def comparison_curves(results):
    """Per-epoch dev curves of every comparison of plain and AD-DROP runs.

    A comparison is a (task, train size, head, recipe) with plain runs and
    runs of another method.

    Returns:
        A list with one dict per comparison: `key` (task, train size, head,
        recipe), `metric` (the main dev metric), `addrop_epochs` (the epochs
        in which a run of another method dropped positions: the AD-DROP
        epochs of cross-tuning) and `methods`, mapping each method to
        `{"seeds": [...], "runs": [{metric: (epochs, values)}, ...],
        "mean": {metric: (epochs, values)}}` for the main metric and
        `"loss"`; the mean at an epoch is over the seeds that reached it
        (early stopping ends runs at different epochs).
    """
    comparisons = collections.defaultdict(dict)
    for (*key, method), runs in _groups(results).items():
        comparisons[tuple(key)][method] = runs
    curves = []
    for key, methods in comparisons.items():
        if "plain" not in methods or len(methods) < 2:
            continue
        main = methods["plain"][0]["main_metric"]
        addrop_epochs = set()
        data = {}
        for method, runs in methods.items():
            entry = {"seeds": [r["config"]["seed"] for r in runs], "runs": []}
            by_epoch = {
                main: collections.defaultdict(list),
                "loss": collections.defaultdict(list),
            }
            for run in runs:
                epochs = [e["epoch"] for e in run["epochs"]]
                curves_of_run = {}
                for metric in (main, "loss"):
                    values = [e["dev"][metric] for e in run["epochs"]]
                    curves_of_run[metric] = (epochs, values)
                    for epoch, value in zip(epochs, values):
                        by_epoch[metric][epoch].append(value)
                entry["runs"].append(curves_of_run)
                if method != "plain":
                    addrop_epochs.update(
                        e["epoch"]
                        for e in run["epochs"]
                        if e.get(DROP_FRACTION, 0) > 0
                    )
            entry["mean"] = {
                metric: (
                    sorted(values),
                    [float(np.mean(values[e])) for e in sorted(values)],
                )
                for metric, values in by_epoch.items()
            }
            data[method] = entry
        curves.append(
            {
                "key": key,
                "metric": main,
                "addrop_epochs": sorted(addrop_epochs),
                "methods": data,
            }
        )
    return curves


def curves(results, path, columns=4):
    """Plots `comparison_curves`: per comparison, the dev main metric per
    epoch above the dev loss; thin lines are seeds, thick lines their mean;
    shaded epochs are AD-DROP epochs.

    Args:
        results: runs as `load_results` returns them.
        path: the PNG file to write.
        columns: comparisons per row of the figure.

    Returns:
        `path`, or `None` when the results hold no comparison or matplotlib
        is missing.
    """
    comparisons = comparison_curves(results)
    plt = _pyplot()
    if not comparisons or plt is None:
        return None
    columns = min(columns, len(comparisons))
    rows = -(-len(comparisons) // columns)
    figure, axes = plt.subplots(
        2 * rows, columns, figsize=(4.2 * columns, 5.2 * rows), squeeze=False
    )
    for axis in axes.flat:
        axis.set_visible(False)
    # One color per method across comparisons, plain in black.
    palette = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10)
    colors = {"plain": "black"}
    for index, comparison in enumerate(comparisons):
        task, size, head, recipe = comparison["key"]
        row, column = divmod(index, columns)
        top, bottom = axes[2 * row, column], axes[2 * row + 1, column]
        for method, entry in comparison["methods"].items():
            color = colors.setdefault(method, next(palette))
            seeds = len(entry["seeds"])
            label = f"{method} ({seeds} seed{'s' * (seeds > 1)})"
            for axis, metric in ((top, comparison["metric"]), (bottom, "loss")):
                for run in entry["runs"]:
                    axis.plot(*run[metric], color=color, lw=0.6, alpha=0.4)
                axis.plot(
                    *entry["mean"][metric], color=color, lw=2, label=label
                )
        for axis in (top, bottom):
            axis.set_visible(True)
            axis.xaxis.get_major_locator().set_params(integer=True)
            for epoch in comparison["addrop_epochs"]:
                axis.axvspan(epoch - 0.5, epoch + 0.5, color="0.9", lw=0)
            axis.grid(alpha=0.3)
        top.set_title(f"{task}, {size} examples, {head}\n{recipe}", fontsize=9)
        top.set_ylabel(f"dev {comparison['metric']}")
        bottom.set_ylabel("dev loss")
        bottom.set_xlabel("epoch (shaded: AD-DROP)")
        top.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def summarize(folders, output=None, heatmap_path=None, curves_path=None):
    """Markdown summary of the runs under `folders`; optionally written to
    `output`, with a p/q heat map PNG at `heatmap_path` and the dev curves
    of plain against AD-DROP at `curves_path`."""
    results = load_results(folders)
    text = markdown_table(summary_rows(results))
    if output:
        with open(output, "w") as f:
            f.write(text + "\n")
    if heatmap_path:
        if heatmap(results, heatmap_path) is None:
            text += "\n\n(no p/q grid in these runs: no heat map written)"
    if curves_path:
        if curves(results, curves_path) is None:
            text += "\n\n(no plain and AD-DROP runs to compare: no curves)"
    return text
