"""`--parts token`: the token classifier's AD-DROP step over its plain
step, against the sentence classifier's, in one interleaved run."""

import statistics

import numpy as np
import tensorflow as tf

import keras_addrop
from speed_parts.common import addrop_classifier
from speed_parts.common import compiled
from speed_parts.common import measure

# WNUT-16's 13 IOB2 tags.
NUM_TAGS = 13


def token_batch(x, seed=0):
    """Tags and weights for the batch `x`: about 70% of the real tokens
    start a word (weight 1), as sub-word pieces leave the rest weight 0."""
    rng = np.random.default_rng(seed)
    shape = x["token_ids"].shape
    tags = rng.integers(0, NUM_TAGS, size=shape).astype("int32")
    first = (rng.random(shape) < 0.7) & np.asarray(x["padding_mask"], bool)
    return tags, first.astype("float32")


def steps_of_fit(model, data, steps):
    """`steps` training steps through `fit`, as a run takes them (a
    keras-hub task's `train_on_batch` converts its arguments eagerly, a
    cost `fit`'s `tf.data` pipeline does not pay)."""
    data = tf.data.Dataset.from_tensors(data).repeat()
    return lambda: model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)


def token_ratios(preset, x, y, rounds, steps=3):
    """GA on all layers, p = q = 0.3: the sentence classifier's and the
    token classifier's AD-DROP and plain steps (`steps` steps of `fit` per
    measurement), interleaved."""
    tags, weights = token_batch(x)
    x = {**x, "padding_mask": x["padding_mask"].astype("int32")}

    def sentence(enabled):
        model = addrop_classifier(preset, addrop_layers="all")
        model.addrop_enabled = enabled
        return steps_of_fit(model, (x, y), steps)

    def token(enabled):
        model = keras_addrop.models.ADDropTokenClassifier.from_preset(
            preset, num_classes=NUM_TAGS, addrop_layers="all", seed=0
        )
        model.preprocessor = None
        model.addrop_enabled = enabled
        compiled(model)
        return steps_of_fit(model, (x, tags, weights), steps)

    times = measure(
        {
            "sentence_plain": sentence(False),
            "sentence_addrop": sentence(True),
            "token_plain": token(False),
            "token_addrop": token(True),
        },
        rounds,
    )
    medians = {name: statistics.median(t) for name, t in times.items()}
    sentence_ratio = medians["sentence_addrop"] / medians["sentence_plain"]
    token_ratio = medians["token_addrop"] / medians["token_plain"]
    return {
        "steps_per_measurement": steps,
        "seconds": times,
        "median_seconds": medians,
        "sentence_addrop_over_plain": sentence_ratio,
        "token_addrop_over_plain": token_ratio,
        "token_ratio_over_sentence_ratio": token_ratio / sentence_ratio,
    }
