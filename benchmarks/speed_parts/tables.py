"""The markdown tables of the speed page, from the results file."""

from speed_parts.backends import BACKENDS


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
