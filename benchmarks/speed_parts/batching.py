"""`--parts batching`: length-aware batches against padded ones."""

import time

import keras_hub
import tensorflow as tf

import keras_addrop
from speed_parts.common import compiled


def batching_ratio(preset, task, glue_dir, examples, repeats):
    """Training examples per second over epochs: length-aware batches
    against batches padded to 128, one model, steps interleaved."""
    task = keras_addrop.glue.get_task(task)
    texts, labels = keras_addrop.glue.read_glue_tsv(task, "train", glue_dir)
    indices = keras_addrop.glue.sample_indices(labels, examples, seed=1234)
    texts = tuple(tf.constant([t[i] for i in indices]) for t in texts)
    features = texts if len(texts) == 2 else texts[0]
    dataset = tf.data.Dataset.from_tensor_slices((features, labels[indices]))
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        preset, sequence_length=128
    )
    model = compiled(
        keras_hub.models.BertTextClassifier.from_preset(
            preset, num_classes=task.num_classes, preprocessor=None
        )
    )
    data = {
        kind: keras_addrop.glue.preprocessed_batches(
            dataset,
            preprocessor,
            32,
            length_aware=kind == "length_aware",
            shuffle=True,
            seed=0,
        )  # fmt: skip
        for kind in ("length_aware", "padded_to_128")
    }
    for batches in data.values():  # Trace every shape once.
        model.fit(batches, epochs=1, verbose=0)
    # Steps alternate between the two kinds, one batch each: the shared
    # machine's speed changes over minutes (padded epochs took 97 s and
    # 142 s in neighbouring repeats), and whole-epoch interleaving turned
    # that into the ratio.
    seconds = {kind: [] for kind in data}
    for _ in range(repeats):
        iterators = {kind: iter(batches) for kind, batches in data.items()}
        while iterators:
            for kind in list(iterators):
                try:
                    x, y = next(iterators[kind])
                except StopIteration:
                    del iterators[kind]
                    continue
                start = time.perf_counter()
                model.train_on_batch(x, y)
                seconds[kind].append(time.perf_counter() - start)
    rates = {
        kind: repeats * len(indices) / sum(times)
        for kind, times in seconds.items()
    }
    return {
        "examples": len(indices),
        "repeats": repeats,
        "examples_per_second": rates,
        "step_seconds": seconds,
        "ratio": rates["length_aware"] / rates["padded_to_128"],
    }
