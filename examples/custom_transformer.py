"""
Title: Bring your own transformer: AD-DROP in a model you build yourself
Author: keras-addrop developers
Date created: 2026/11/25
Last modified: 2026/11/25
Description: Use ADDropAttention inside a functional Keras model and train it with AD-DROP.
Accelerator: None
"""

"""
## Introduction

AD-DROP needs two things from a model: attention layers it can mask and
attribute, and a padding mask telling real tokens from padding.
`keras_addrop.layers.ADDropAttention` is a drop-in
`keras.layers.MultiHeadAttention` that provides the first; an input named
`padding_mask` provides the second. `keras_addrop.models.ADDropModel` then
turns any functional model built from them into an AD-DROP model: the same
two-pass training step, options and cross-tuning as the keras-hub
classifiers.

The task here is synthetic so that the script runs in seconds: a sequence is
positive when token 1 appears before token 2.
"""

"""
## Setup
"""

import argparse
import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np

import keras_addrop

parser = argparse.ArgumentParser()
parser.add_argument("--examples", type=int, default=2048)
parser.add_argument("--epochs", type=int, default=6)
parser.add_argument("--full", action="store_true", help="More data, epochs.")
args = parser.parse_args()
if args.full:
    args.examples, args.epochs = 16384, 10
keras.utils.set_random_seed(0)

"""
## Data
"""

VOCABULARY_SIZE, LENGTH = 20, 16


def make_data(count, rng):
    lengths = rng.integers(6, LENGTH + 1, size=count)
    padding_mask = np.arange(LENGTH)[None, :] < lengths[:, None]
    token_ids = rng.integers(3, VOCABULARY_SIZE, size=(count, LENGTH))
    labels = np.zeros(count, "int32")
    for i, n in enumerate(lengths):
        first, second = rng.choice(np.arange(1, n), size=2, replace=False)
        token_ids[i, first], token_ids[i, second] = 1, 2
        labels[i] = int(first < second)
    token_ids[:, 0] = 0  # A [CLS]-like first token.
    token_ids = np.where(padding_mask, token_ids, 0).astype("int32")
    return {"token_ids": token_ids, "padding_mask": padding_mask}, labels


rng = np.random.default_rng(0)
x_train, y_train = make_data(args.examples, rng)
x_dev, y_dev = make_data(512, rng)

"""
## The model

An ordinary functional transformer: embeddings, two encoder blocks whose
self-attention is `ADDropAttention`, and a classifier on the first token.
The attention mask `[B, 1, S]` comes from the padding mask, as in any Keras
transformer.
"""


def encoder_block(x, mask, name):
    attention = keras_addrop.layers.ADDropAttention(
        num_heads=4, key_dim=8, dropout=0.1, name=f"{name}_attention"
    )
    x = keras.layers.LayerNormalization()(
        x + attention(x, x, attention_mask=mask)
    )
    feedforward = keras.Sequential(
        [keras.layers.Dense(64, activation="gelu"), keras.layers.Dense(32)]
    )
    return keras.layers.LayerNormalization()(x + feedforward(x))


token_ids = keras.Input((None,), dtype="int32", name="token_ids")
padding_mask = keras.Input((None,), dtype="bool", name="padding_mask")
positions = keras.ops.arange(LENGTH)
x = keras.layers.Embedding(VOCABULARY_SIZE, 32)(token_ids)
x = x + keras.layers.Embedding(LENGTH, 32)(positions)
mask = keras.ops.expand_dims(padding_mask, 1)
for i in range(2):
    x = encoder_block(x, mask, name=f"block_{i}")
logits = keras.layers.Dense(2)(x[:, 0])

model = keras_addrop.models.ADDropModel(
    {"token_ids": token_ids, "padding_mask": padding_mask},
    logits,
    candidate_ratio=0.3,
    drop_rate=0.3,
    addrop_layers="all",
    seed=0,
)
print([layer.name for layer in model.addrop_attention_layers])

"""
## Training with cross-tuning
"""

model.compile(
    optimizer=keras.optimizers.Adam(1e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["sparse_categorical_accuracy"],
)
history = model.fit(
    x_train,
    y_train,
    validation_data=(x_dev, y_dev),
    batch_size=32,
    epochs=args.epochs,
    callbacks=[keras_addrop.callbacks.CrossTuning()],
    verbose=2,
)
print("drop fraction per epoch:", history.history["addrop_drop_fraction"])

"""
## Attribution and saving

`compute_attribution` works on this model too, and the model saves to
`.keras` like any other; `import keras_addrop` is all loading needs.
"""

attributions = keras_addrop.attribution.compute_attribution(
    model, {k: v[:2] for k, v in x_dev.items()}
)
print("attribution shapes:", [tuple(a.shape) for a in attributions])

path = os.path.join(tempfile.mkdtemp(), "custom.keras")
model.save(path)
restored = keras.saving.load_model(path)
difference = np.abs(
    restored.predict(x_dev, verbose=0) - model.predict(x_dev, verbose=0)
).max()
print(f"restored {type(restored).__name__}, max difference {difference:.1e}")
