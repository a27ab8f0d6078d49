"""Entity-level scores of word tags, with `seqeval`'s default semantics."""

import collections

from keras_addrop.api_export import keras_addrop_export

# Tag prefixes that end the chunk before them, given the next tag's
# prefix (IOB1, IOB2 and IOBES read alike, as `seqeval`'s default mode
# and conlleval read them).
_ENDS_AFTER = {
    "E": {"B", "I", "E", "S", "O"},
    "S": {"B", "I", "E", "S", "O"},
    "B": {"B", "S", "O"},
    "I": {"B", "S", "O"},
}
_STARTS_AFTER = {
    "E": {"E", "I"},
    "S": {"E", "I"},
    "O": {"E", "I"},
}


def split_tag(tag):
    # "B-PER" -> ("B", "PER"); "O" -> ("O", "_"), as seqeval splits them.
    return tag[:1], tag[1:].split("-", 1)[-1] or "_"


def chunk_ends(previous, current):
    """Whether a chunk ends at the word before `current`: both are
    `(prefix, type)` pairs from `split_tag` (the word before the first is
    `("O", "")`, the one after the last `("O", "_")`)."""
    (previous_prefix, previous_kind), (prefix, kind) = previous, current
    if previous_prefix == "O":
        return False
    return (
        prefix in _ENDS_AFTER.get(previous_prefix, ()) or previous_kind != kind
    )


def chunk_starts(previous, current):
    """Whether a chunk starts at `current` (pairs as in `chunk_ends`)."""
    (previous_prefix, previous_kind), (prefix, kind) = previous, current
    return (
        prefix in ("B", "S")
        or prefix in _STARTS_AFTER.get(previous_prefix, ())
        or (prefix != "O" and previous_kind != kind)
    )


@keras_addrop_export("keras_addrop.ner.entities")
def entities(tags):
    """The entities of one sentence's tags as `(type, first, last)` word
    indices.

    A chunk starts at a `B-` or `S-` tag, at an `I-` or `E-` tag after `O`
    or after the end of a chunk, and wherever the type changes; it ends
    before such a start and after `E-` or `S-`. This is the reading of
    `seqeval`'s default mode (and of conlleval), so IOB1, IOB2 and IOBES
    tags give the same entities as there.

    Args:
        tags: a list of tag strings such as `"B-PER"`, `"I-PER"`, `"O"`.

    Returns:
        A list of `(type, first, last)` tuples, in order.
    """
    found = []
    previous, begin = ("O", ""), 0
    for index, tag in enumerate(list(tags) + ["O"]):
        current = split_tag(tag)
        if chunk_ends(previous, current):
            found.append((previous[1], begin, index - 1))
        if chunk_starts(previous, current):
            begin = index
        previous = current
    return found


@keras_addrop_export("keras_addrop.ner.entity_scores")
def entity_scores(true_tags, predicted_tags):
    """Entity-level micro precision, recall and F1 over sentences of word
    tags, and the same per entity type.

    An entity counts as found when a predicted entity has exactly its type,
    first and last word (`seqeval`'s default mode; equal to
    `seqeval.metrics.f1_score` and `classification_report` on the same
    tags).

    Args:
        true_tags: a list of sentences, each a list of tag strings.
        predicted_tags: the predicted tags, shaped alike.

    Returns:
        A dict with `"precision"`, `"recall"`, `"f1"` (floats in [0, 1];
        0 where undefined), `"support"` (true entities) and `"types"`: per
        entity type, a dict of the same four keys.

    Raises:
        ValueError: if the two differ in sentences or in words.
    """
    if len(true_tags) != len(predicted_tags):
        raise ValueError(
            "`true_tags` and `predicted_tags` need the same sentences. "
            f"Received: {len(true_tags)} and {len(predicted_tags)} sentences"
        )
    counts = collections.defaultdict(lambda: [0, 0, 0])  # true, found, hit
    for index, (true, predicted) in enumerate(zip(true_tags, predicted_tags)):
        if len(true) != len(predicted):
            raise ValueError(
                "Every sentence needs one predicted tag per word. Received: "
                f"sentence {index} with {len(true)} words and "
                f"{len(predicted)} predicted tags"
            )
        gold = set(entities(true))
        guess = set(entities(predicted))
        for kind, *_ in gold:
            counts[kind][0] += 1
        for kind, *_ in guess:
            counts[kind][1] += 1
        for kind, *_ in gold & guess:
            counts[kind][2] += 1
    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    scores = scores_from_counts(*total)
    scores["types"] = {
        kind: scores_from_counts(*counts[kind]) for kind in sorted(counts)
    }
    return scores


def scores_from_counts(true, found, hit):
    precision = hit / found if found else 0.0
    recall = hit / true if true else 0.0
    total = precision + recall
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / total if total else 0.0,
        "support": true,
    }
