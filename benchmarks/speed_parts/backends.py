"""`--parts backends` and `versions`: the steps on each backend, one
worker process per backend (`backend_worker.py`), rounds in turn."""

import json
import os
import statistics
import subprocess
import sys

from speed_parts.common import HERE

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
