"""Entity-level F1 as a Keras metric, in `keras.ops` on every backend."""

import keras
import numpy as np
from keras import ops

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.ner.entities import chunk_ends
from keras_addrop.ner.entities import chunk_starts
from keras_addrop.ner.entities import scores_from_counts
from keras_addrop.ner.entities import split_tag

# What stands before a sentence's first word and after its last one, as
# `entities` reads them.
_BEFORE = ("O", "")
_AFTER = ("O", "_")


def validate_tag_names(tag_names):
    """`tag_names` as a list, checked: a non-empty string per class, no
    tag twice, at least one entity tag."""
    tag_names = list(tag_names)
    if not tag_names or not all(isinstance(t, str) and t for t in tag_names):
        raise ValueError(
            "`tag_names` needs a non-empty string per class. "
            f"Received: tag_names={tag_names}"
        )
    if len(set(tag_names)) != len(tag_names):
        raise ValueError(
            f"`tag_names` has a repeated tag. Received: tag_names={tag_names}"
        )
    if all(split_tag(tag)[0] == "O" for tag in tag_names):
        raise ValueError(
            "`tag_names` has no entity tag, only `O`. Received: "
            f"tag_names={tag_names}"
        )
    return tag_names


@keras_addrop_export("keras_addrop.ner.EntityF1")
class EntityF1(keras.metrics.Metric):
    """Entity-level micro F1 over words, for token classifiers' `fit`.

    The tokens that stand for a word are those with `sample_weight > 0`
    (the first piece of each word, as
    `keras_addrop.models.TokenClassifierPreprocessor` weighs them); the
    others (later pieces, special tokens, padding) are skipped, so entities
    are read from word tags exactly as `keras_addrop.ner.entity_scores`
    (`seqeval`'s default mode) reads them: a predicted entity counts when
    its type, first and last word equal a true entity's. Pass it in
    `compile`'s `weighted_metrics`, which hand it the sample weights.

    The chunk rules are tables over pairs of tags, computed from
    `keras_addrop.ner.entities`' rules, and the entities are compared in
    `keras.ops` (no Python per sentence), so the metric runs compiled on
    TensorFlow, JAX and PyTorch, and sums over devices under a
    distribution. Words cut off by truncation are not scored.

    Args:
        tag_names: the tag of each class id, such as `["O", "B-PER",
            "I-PER"]` (IOB1, IOB2 or IOBES).
        name: the metric's name. Defaults to `"entity_f1"`.
        dtype: the dtype of the counts.

    Call arguments (`update_state`):
        y_true: int tags of shape `(batch, sequence)`.
        y_pred: logits or probabilities of shape
            `(batch, sequence, len(tag_names))`.
        sample_weight: `(batch, sequence)`; > 0 where a token stands for a
            word. Required.

    Raises:
        ValueError: for an empty or repeated tag, a tag set without entity
            types, or `update_state` without `sample_weight`.

    Example:

    ```python
    metric = keras_addrop.ner.EntityF1(["O", "B-PER", "I-PER"])
    metric.update_state(
        [[1, 2, 0, 0]], [[[0, 9, 0], [0, 0, 9], [0, 0, 9], [9, 0, 0]]],
        sample_weight=[[1, 1, 1, 0]],
    )
    metric.result()  # 0.0: "B I I" is one entity, "B I O" another
    metric.scores()["types"]["PER"]["support"]  # 1
    ```
    """

    def __init__(self, tag_names, name="entity_f1", dtype=None):
        super().__init__(name=name, dtype=dtype)
        tag_names = validate_tag_names(tag_names)
        self.tag_names = tag_names
        parts = [split_tag(tag) for tag in tag_names]
        self.types = sorted({kind for prefix, kind in parts if prefix != "O"})
        # Index len(tag_names) is the boundary: before the first word in a
        # start row, after the last word (and padding) elsewhere.
        before, after = parts + [_BEFORE], parts + [_AFTER]
        self._starts = np.array(
            [[chunk_starts(p, c) for c in after] for p in before], "int32"
        ).reshape(-1)
        self._ends = np.array(
            [[chunk_ends(c, n) for n in after] for c in after], "int32"
        ).reshape(-1)
        # The type index of a chunk starting at each tag; -1 for none.
        self._kinds = np.array(
            [
                self.types.index(kind) if prefix != "O" else -1
                for prefix, kind in parts + [_AFTER]
            ],
            "int32",
        )
        shape = (len(self.types),)
        self.true_entities = self.add_variable(
            shape, initializer="zeros", name="true_entities"
        )
        self.found_entities = self.add_variable(
            shape, initializer="zeros", name="found_entities"
        )
        self.hits = self.add_variable(shape, initializer="zeros", name="hits")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is None:
            raise ValueError(
                "`EntityF1` needs the sample weights that mark the token of "
                "each word: pass it in `compile(weighted_metrics=...)`, not "
                "`metrics`, and train on weighted tokens. Received: "
                "sample_weight=None"
            )
        y_pred = ops.convert_to_tensor(y_pred)
        counted = ops.convert_to_tensor(sample_weight) > 0
        counted = ops.reshape(counted, ops.shape(y_pred)[:2])
        true = self._chunks(ops.convert_to_tensor(y_true), counted)
        found = self._chunks(ops.argmax(y_pred, axis=-1), counted)
        # Both start a chunk at the word, of the same type, ending at the
        # same word.
        true_kinds, true_last = true
        found_kinds, found_last = found
        same = (
            ops.equal(true_kinds, found_kinds)
            & (true_kinds >= 0)
            & ops.equal(true_last, found_last)
        )
        for variable, kinds in (
            (self.true_entities, true_kinds),
            (self.found_entities, found_kinds),
            (self.hits, ops.where(same, true_kinds, -1)),
        ):
            variable.assign_add(self._count(kinds))

    def _chunks(self, tags, counted):
        """Per word position: the type index of the chunk starting there
        (-1 for none) and its last word."""
        boundary = len(self.tag_names)
        tags = ops.cast(ops.reshape(tags, ops.shape(counted)), "int32")
        counted = ops.cast(counted, "int32")
        # Word w of a sentence is its w-th counted token: gathered with a
        # one-hot (token, word) matrix, as keras.ops has no stable
        # compaction on every backend.
        word_of = ops.cumsum(counted, axis=1) - 1
        positions = ops.arange(ops.shape(tags)[1], dtype="int32")
        places = ops.cast(
            ops.equal(word_of[:, :, None], positions[None, None, :]), "int32"
        ) * ops.expand_dims(counted, -1)
        filled = ops.sum(places, axis=1)
        words = ops.sum(places * ops.expand_dims(tags, -1), axis=1)
        words = ops.where(filled > 0, words, boundary)

        edge = ops.full_like(words[:, :1], boundary)
        previous = ops.concatenate([edge, words[:, :-1]], axis=1)
        following = ops.concatenate([words[:, 1:], edge], axis=1)
        width = boundary + 1
        starts = ops.take(self._starts, previous * width + words) > 0
        ends = ops.cast(
            ops.take(self._ends, words * width + following), "int32"
        )
        # A chunk starting at s ends at the first end e >= s: the last e
        # with no end in [s, e).
        ends_before = ops.cumsum(ends, axis=1) - ends
        reaches = (
            (positions[None, None, :] >= positions[None, :, None])
            & ops.equal(ends_before[:, None, :], ends_before[:, :, None])
            & (ends[:, None, :] > 0)
        )
        last = ops.sum(
            ops.cast(reaches, "int32") * positions[None, None, :], axis=-1
        )
        kinds = ops.where(starts, ops.take(self._kinds, words), -1)
        return kinds, last

    def _count(self, kinds):
        one_hot = ops.one_hot(
            ops.reshape(kinds, (-1,)), len(self.types), dtype=self.dtype
        )
        return ops.sum(one_hot, axis=0)

    def result(self):
        hits = ops.sum(self.hits)
        total = ops.sum(self.true_entities) + ops.sum(self.found_entities)
        return ops.divide_no_nan(2 * hits, total)

    def scores(self):
        """Micro precision, recall and F1 and the same per type, as
        `keras_addrop.ner.entity_scores` returns them (every type of the
        tag set, support 0 included)."""
        true, found, hits = (
            np.asarray(ops.convert_to_numpy(v)).astype(int).tolist()
            for v in (self.true_entities, self.found_entities, self.hits)
        )
        result = scores_from_counts(sum(true), sum(found), sum(hits))
        result["types"] = {
            kind: scores_from_counts(true[i], found[i], hits[i])
            for i, kind in enumerate(self.types)
        }
        return result

    def get_config(self):
        return {
            "tag_names": self.tag_names,
            "name": self.name,
            "dtype": self.dtype,
        }
