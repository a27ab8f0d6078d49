"""`--parts epoch_pair`: a cross-tuned epoch pair against two plain
epochs."""

import statistics
import time

import keras
import tensorflow as tf

import keras_addrop
from speed_parts.common import addrop_classifier


class EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds, self.fractions = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)
        self.fractions.append(float(logs.get("addrop_drop_fraction", 0.0)))


def epoch_pair_ratio(preset, x, y, steps, repeats):
    """Wall time of a cross-tuned epoch pair over two plain epochs.

    Also the AD-DROP epoch over the plain epoch of the same pair, and the
    drop fractions, which show that the second epoch of a pair did drop.
    """
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = dataset.repeat(steps).batch(len(y)).cache()
    model = addrop_classifier(preset, addrop_layers="all")
    model.fit(dataset.take(2), epochs=2, verbose=0)  # Trace both branches.
    pairs, plains, epoch_ratios, fractions = [], [], [], []

    def cross_tuned():
        model.addrop_enabled = True
        timer = EpochTimes()
        model.fit(
            dataset,
            epochs=2,
            callbacks=[keras_addrop.callbacks.CrossTuning(), timer],
            verbose=0,
        )
        pairs.append(sum(timer.seconds))
        epoch_ratios.append(timer.seconds[1] / timer.seconds[0])
        fractions.append(timer.fractions)

    def plain():
        model.addrop_enabled = False
        timer = EpochTimes()
        model.fit(dataset, epochs=2, callbacks=[timer], verbose=0)
        plains.append(sum(timer.seconds))

    # The order alternates (ABBA): a machine slowing down steadily over the
    # run then weighs on both kinds alike.
    for repeat in range(repeats):
        for run in (cross_tuned, plain)[:: 1 if repeat % 2 == 0 else -1]:
            run()
    return {
        "cross_tuned_pair_seconds": pairs,
        "two_plain_epochs_seconds": plains,
        "addrop_epoch_over_plain_epoch": epoch_ratios,
        "drop_fractions": fractions,
        "ratio": statistics.median(pairs) / statistics.median(plains),
        "steps_per_epoch": steps,
    }
