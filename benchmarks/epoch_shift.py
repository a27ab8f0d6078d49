"""What one AD-DROP epoch does to the model it leaves: a branch experiment.

The GLUE comparison found that on MRPC every AD-DROP epoch of cross-tuning
raises the dev loss and the plain epoch after it lowers it again. This
script trains a classifier plainly for `--epochs-before` epochs (the
primary's recipe and data), saves it with its optimizer, and continues it
for one epoch twice from that same state: once plain, once with AD-DROP
(for odd N, the AD-DROP epoch cross-tuning runs next). Every state is then measured on
dev and on the training sample, both as evaluated (no masks) and under the
masks AD-DROP trains with (GA from the model's own pseudo labels, dropout
off, the same mask randomness for every state): metrics, cross-entropy,
the share of each predicted class, the confidence and the logit margin.

    python benchmarks/epoch_shift.py --epochs-before 1
    python benchmarks/epoch_shift.py --epochs-before 3

Results: `benchmarks/results/epoch_shift/<task>-after<N>.json`, and a
markdown table on stdout (`--table` reprints it from the JSON).
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import scipy.special  # noqa: E402

from keras_addrop import glue  # noqa: E402
from keras_addrop import run_options  # noqa: E402
from keras_addrop import runs  # noqa: E402
from keras_addrop.attribution import compute_attribution  # noqa: E402
from keras_addrop.layers import addrop_scope  # noqa: E402
from keras_addrop.ops import addrop_mask  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "epoch_shift")


def output_statistics(task, labels, logits):
    """Metrics and the shape of a classifier's predictions.

    Args:
        task: a GLUE classification task name or `GlueTask`.
        labels: int array `(n,)` of gold labels.
        logits: float array `(n, classes)`.

    Returns:
        A dict: the task's metrics, `loss` (mean cross-entropy),
        `predicted_share` (the share of each predicted class),
        `confidence` (mean top probability), `confidence_when_wrong`,
        and for two classes `margin` (mean logit of class 1 minus class 0).
    """
    labels = np.asarray(labels)
    logits = np.asarray(logits, dtype="float64")
    probabilities = scipy.special.softmax(logits, axis=-1)
    predictions = probabilities.argmax(axis=-1)
    wrong = predictions != labels
    stats = glue.glue_metrics(task, labels, predictions)
    stats["loss"] = float(
        -np.mean(np.log(probabilities[np.arange(len(labels)), labels]))
    )
    stats["predicted_share"] = [
        float(np.mean(predictions == c)) for c in range(logits.shape[-1])
    ]
    stats["confidence"] = float(probabilities.max(axis=-1).mean())
    stats["confidence_when_wrong"] = (
        float(probabilities.max(axis=-1)[wrong].mean()) if wrong.any() else None
    )
    if logits.shape[-1] == 2:
        stats["margin"] = float(np.mean(logits[:, 1] - logits[:, 0]))
    return stats


def logits_of(model, batches, masked, candidate_ratio, drop_rate, seed=0):
    """Labels and logits over `batches`, optionally under AD-DROP masks.

    The masks come from the model's own pseudo labels with dropout off,
    drawn with a fresh `SeedGenerator(seed)`, so every model sees the same
    mask randomness.
    """
    generator = keras.random.SeedGenerator(seed)
    layers = model.addrop_attention_layers
    labels, logits = [], []
    for x, y in batches:
        if masked:
            padding_mask = keras.ops.cast(x["padding_mask"], "bool")
            attributions = compute_attribution(model, x, layers=layers)
            keep = [
                addrop_mask(a, padding_mask, candidate_ratio, drop_rate,
                            seed=generator)
                for a in attributions
            ]  # fmt: skip
            with addrop_scope(keep_masks=dict(zip(layers, keep))):
                out = model(x, training=False)
        else:
            out = model(x, training=False)
        labels.append(np.asarray(y))
        logits.append(keras.ops.convert_to_numpy(out))
    return np.concatenate(labels), np.concatenate(logits)


def measure(model, task, splits, args):
    return {
        f"{name}{'_masked' if masked else ''}": output_statistics(
            task,
            *logits_of(
                model, batches, masked, args.candidate_ratio, args.drop_rate
            ),
        )
        for name, batches in splits.items()
        for masked in (False, True)
    }


def run(args):
    task = glue.get_task(args.task)
    if task.is_regression:
        raise SystemExit(
            f"--task must be a classification task. Received: --task={args.task}"
        )
    preset = runs.resolve_preset(args.preset)
    keras.utils.set_random_seed(args.seed)
    texts, labels = runs.load_arrays(task, "train", args.glue_dir)
    dev_texts, dev_labels = runs.load_arrays(task, "validation", args.glue_dir)
    indices = glue.sample_indices(
        labels, args.train_limit, seed=args.sample_seed
    )
    cls = runs.classifier_class(preset)
    preprocessor = cls._stock_cls.preprocessor_cls.from_preset(
        preset, sequence_length=args.max_length
    )
    model = runs.build_classifier(
        cls, preset, args.pooling, task, run_options.model_arguments(args)
    )
    model.addrop_enabled = False
    model.compile(
        optimizer=keras.optimizers.AdamW(
            args.learning_rate, weight_decay=args.weight_decay
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    def train_batches(initial_epoch):
        # The finetune command's batches: the same order epoch by epoch.
        return glue.preprocessed_batches(
            runs.to_dataset(texts, labels, indices), preprocessor,
            args.batch_size, shuffle=True, seed=args.seed,
            initial_epoch=initial_epoch,
        )  # fmt: skip

    splits = {
        "dev": glue.preprocessed_batches(
            runs.to_dataset(dev_texts, dev_labels), preprocessor,
            args.batch_size,
        ),
        "train": glue.preprocessed_batches(
            runs.to_dataset(texts, labels, indices), preprocessor,
            args.batch_size,
        ),
    }  # fmt: skip
    start = time.time()
    model.fit(
        train_batches(0), epochs=args.epochs_before, shuffle=False, verbose=2
    )
    states = {"start": measure(model, task, splits, args)}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "start.keras")
        model.save(path)
        for branch in ("plain", "addrop"):
            model = keras.saving.load_model(path)
            model.addrop_enabled = branch == "addrop"
            history = model.fit(
                train_batches(args.epochs_before),
                initial_epoch=args.epochs_before,
                epochs=args.epochs_before + 1,
                shuffle=False,
                verbose=2,
            )
            states[branch] = measure(model, task, splits, args)
            states[branch]["train_loss_logged"] = history.history["loss"][-1]
    return {
        "config": {
            key: value
            for key, value in vars(args).items()
            if key not in ("table", "output")
        },
        "task": task.name,
        "seconds": time.time() - start,
        "states": states,
    }


def table(result):
    """Markdown: one row per state and split, unmasked then masked."""
    metric = glue.get_task(result["task"]).metrics[0]
    before = result["config"]["epochs_before"]
    rows = [
        ("start", f"{before} plain epoch{'s' if before > 1 else ''}"),
        ("plain", "+ 1 plain epoch"),
        ("addrop", "+ 1 AD-DROP epoch"),
    ]
    lines = [
        f"| state | split | {metric} | loss | predicted class 1 | confidence "
        "| confidence when wrong | margin | under masks: "
        f"{metric} | loss | predicted class 1 | margin |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for state, label in rows:
        for split in ("dev", "train"):
            a = result["states"][state][split]
            m = result["states"][state][split + "_masked"]
            lines.append(
                f"| {label} | {split} | {100 * a[metric]:.1f} | "
                f"{a['loss']:.3f} | {a['predicted_share'][1]:.3f} | "
                f"{a['confidence']:.3f} | {a['confidence_when_wrong']:.3f} | "
                f"{a['margin']:+.2f} | {100 * m[metric]:.1f} | "
                f"{m['loss']:.3f} | {m['predicted_share'][1]:.3f} | "
                f"{m['margin']:+.2f} |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="mrpc")
    parser.add_argument(
        "--glue-dir",
        default=os.path.join(HERE, "..", "..", "shared", "data", "glue"),
    )
    parser.add_argument("--preset", default=None)
    parser.add_argument("--pooling", default="mean")
    parser.add_argument("--train-limit", type=int, default=1000)
    parser.add_argument("--sample-seed", type=int, default=1234)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--candidate-ratio", type=float, default=0.3)
    parser.add_argument("--drop-rate", type=float, default=0.3)
    parser.add_argument("--addrop-layers", default="all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs-before", type=int, default=1)
    parser.add_argument("--output", default=None, help="Results JSON.")
    parser.add_argument(
        "--table", action="store_true", help="Print the table of --output."
    )
    # GA with pseudo labels, dropping high: the comparisons' AD-DROP.
    parser.set_defaults(
        attribution="gradient", labels="pseudo", drop_region="high",
        ig_steps=20,
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.epochs_before < 1:
        parser.error(
            "--epochs-before must be at least 1 (the primary's epoch 1 is "
            f"plain). Received: --epochs-before={args.epochs_before}"
        )
    output = args.output or os.path.join(
        RESULTS, f"{args.task}-after{args.epochs_before}.json"
    )
    if args.table:
        with open(output) as f:
            print(table(json.load(f)))
        return
    result = run(args)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as f:
        json.dump(result, f, indent=1)
    print(table(result))


if __name__ == "__main__":
    main()
