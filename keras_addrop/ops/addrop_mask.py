import fractions

import keras
from keras import ops

from keras_addrop import backend
from keras_addrop.ops.visibility import as_visibility
from keras_addrop.validation import validate_ratio

# Ratios are read as fractions with at most this denominator (0.3 is 3/10),
# which keeps `num_real * numerator` within int32 for lengths up to 200,000.
_RATIO_DENOMINATOR = 10_000


def _ratio_fraction(candidate_ratio):
    fraction = fractions.Fraction(candidate_ratio).limit_denominator(
        _RATIO_DENOMINATOR
    )
    return fraction.numerator, fraction.denominator


def candidate_count(num_real, candidate_ratio):
    """`ceil(candidate_ratio * num_real)` as int32, in exact arithmetic.

    The ratio is taken as the fraction it was written as (0.3 is 3/10, the
    nearest fraction with a denominator up to 10,000) and the count is
    computed in int32, so that products that are whole numbers (0.7 * 10)
    are not rounded up and every backend gives the same count: float64 is
    float32 on JAX by default, and PyTorch would round the ratio to float32.
    """
    numerator, denominator = _ratio_fraction(candidate_ratio)
    product = ops.multiply(ops.cast(num_real, "int32"), numerator)
    return ops.floor_divide(ops.add(product, denominator - 1), denominator)


def _static_candidate_count(num_real, candidate_ratio):
    numerator, denominator = _ratio_fraction(candidate_ratio)
    return -(-num_real * numerator // denominator)


def _check_shapes(attribution, visibility):
    shape = tuple(ops.shape(attribution))
    query_shape = tuple(ops.shape(visibility.query_mask))
    key_shape = tuple(ops.shape(visibility.key_mask))
    static = [
        d if isinstance(d, int) else None
        for d in shape + query_shape + key_shape
    ]
    if len(shape) != 4 or len(query_shape) != 2 or len(key_shape) != 2:
        static = [None] * 8
    batch, _, query, key, query_batch, mask_query, key_batch, mask_key = (
        static + [None] * 8
    )[:8]

    def differ(a, b):
        return a is not None and b is not None and a != b

    if (
        len(shape) != 4
        or len(query_shape) != 2
        or len(key_shape) != 2
        or differ(query, mask_query)
        or differ(key, mask_key)
        or differ(batch, query_batch)
        or differ(batch, key_batch)
    ):
        masks = (
            f"padding_mask.shape={query_shape}"
            if visibility.self_attention
            else f"query_mask.shape={query_shape}, key_mask.shape={key_shape}"
        )
        raise ValueError(
            "`addrop_mask` expects an `attribution` of shape (batch, heads, "
            "query, key) and masks of shape (batch, query) and (batch, key) "
            "(one padding mask of shape (batch, length) for self-attention). "
            f"Received: attribution.shape={shape}, {masks}"
        )


def top_candidates(attribution, visibility, candidate_ratio):
    """The candidate discard region of AD-DROP.

    For every query row, the `ceil(candidate_ratio * n)` visible keys with
    the highest attribution, `n` being the number of keys the row sees (the
    example's real keys in self-attention over padding).
    Ties are broken by position (the earlier key wins), so the selection is
    deterministic and holds exactly that many keys. The region agrees with
    a full sort of each row; it is found with a top-k over the largest
    region any row can have.

    Args:
        attribution: float tensor `(batch, heads, query, key)`.
        visibility: a `keras_addrop.ops.Visibility`, or a padding mask
            `(batch, key)` (true or 1 for real tokens) for self-attention.
        candidate_ratio: float in [0, 1], `p` in the paper.

    Returns:
        A tuple `(candidates, last_candidate)` of boolean tensors shaped like
        `attribution`: the region, and the lowest-ranked key in it (the one
        kept when a row would otherwise lose every visible key).
    """
    real_key = as_visibility(visibility).keys()
    num_real = ops.sum(ops.cast(real_key, "int32"), axis=-1, keepdims=True)
    # [B, 1, 1, 1], or [B, 1, T, 1] where rows see different keys.
    k = candidate_count(num_real, candidate_ratio)

    # Non-finite attributions (an overflowed float16 gradient) are clipped
    # to the finite range, and unseen keys rank below every visible one.
    scores = ops.nan_to_num(ops.cast(attribution, "float32"))
    scores = ops.where(real_key, scores, float("-inf"))

    # Keys above the row's k-th largest value are candidates; among the keys
    # equal to it (GA has many exact ties: in the last layer every row but
    # [CLS] is all zeros) the earliest ones fill the rest.
    length = ops.shape(scores)[-1]
    if isinstance(length, int):
        k_max = max(1, _static_candidate_count(length, candidate_ratio))
    else:
        k_max = ops.maximum(candidate_count(length, candidate_ratio), 1)
    kth, kth_position = backend.kth_largest(scores, k, k_max)
    in_region = ops.logical_and(real_key, k > 0)
    above = ops.greater(scores, kth)
    tied = ops.equal(scores, kth)
    if kth_position is None:
        # Count the tied keys along the row: the earliest `needed` of them
        # (at least 1, the k-th key itself).
        needed = k - ops.sum(ops.cast(above, "int32"), axis=-1, keepdims=True)
        tie_rank = ops.cumsum(ops.cast(tied, "int32"), axis=-1)
        in_ties = ops.less_equal(tie_rank, needed)
        is_last = ops.equal(tie_rank, needed)
    else:
        # The k-th entry of a top-k that puts the earlier of equal values
        # first settles the ties: the tied keys up to it are candidates, and
        # it is the lowest-ranked one.
        key_position = ops.arange(length, dtype=kth_position.dtype)
        in_ties = ops.less_equal(key_position, kth_position)
        is_last = ops.equal(key_position, kth_position)
    candidates = ops.logical_and(
        ops.logical_or(above, ops.logical_and(tied, in_ties)), in_region
    )
    last_candidate = ops.logical_and(ops.logical_and(tied, is_last), in_region)
    return candidates, last_candidate


def random_candidates(visibility, shape, candidate_ratio, seed=None):
    """The candidate region of AD-DROP's random ablation (RD).

    Every visible key of every row is a candidate independently with
    probability `candidate_ratio`; no ranking. The key kept when a row would
    lose all of its visible keys is the first visible one.

    Args:
        visibility: a `keras_addrop.ops.Visibility`, or a padding mask
            `(batch, key)` for self-attention.
        shape: the mask shape `(batch, heads, query, key)`.
        candidate_ratio: float in [0, 1], `p`.
        seed: as for `keras.random.uniform`.

    Returns:
        A tuple `(candidates, last_candidate)` of boolean tensors of `shape`.
    """
    real_key = as_visibility(visibility).keys()
    uniform = keras.random.uniform(shape, seed=seed)
    candidates = ops.logical_and(ops.less(uniform, candidate_ratio), real_key)
    first_real = ops.equal(ops.cumsum(ops.cast(real_key, "int32"), axis=-1), 1)
    last_candidate = ops.broadcast_to(
        ops.logical_and(first_real, real_key), shape
    )
    return candidates, last_candidate


def keep_mask_from_candidates(
    candidates, last_candidate, visibility, drop_rate, seed=None
):
    """Drops each candidate with probability `drop_rate` (`q`).

    Keys a row does not see are never kept, query rows that are padding
    lose nothing, and a row whose visible keys would all be dropped keeps
    `last_candidate`.
    """
    visibility = as_visibility(visibility)
    real_key, real_query = visibility.keys(), visibility.queries()
    uniform = keras.random.uniform(ops.shape(candidates), seed=seed)
    drop = ops.logical_and(candidates, ops.less(uniform, drop_rate))
    drop = ops.logical_and(drop, real_query)
    keep = ops.logical_and(real_key, ops.logical_not(drop))
    emptied = ops.logical_not(ops.any(keep, axis=-1, keepdims=True))
    return ops.logical_or(keep, ops.logical_and(emptied, last_candidate))


def addrop_mask(attribution, visibility, candidate_ratio, drop_rate, seed=None):
    """The AD-DROP keep mask of one attention call, from its attribution.

    For every real query row `(b, h, t)` of `attribution`, the top
    `ceil(p * n)` of the `n` keys the row sees, by attribution, form the
    candidate discard region (rank-based; ties go to the earlier key). In
    self-attention over padding (`visibility` a padding mask) a row sees the
    example's real keys; `keras_addrop.ops.Visibility` also describes causal
    rows (only the keys up to the query's position) and cross-attention
    (target queries, source keys). Each candidate is dropped independently
    with probability `q`, so a row loses about `p * q` of its keys. Keys a
    row does not see are never kept, padding query rows lose nothing, and a
    row never loses all of its visible keys: if every one was dropped
    (possible only when all are candidates), the lowest-ranked candidate is
    kept.

    Pure `keras.ops`, static shapes: it runs eagerly, in `tf.function` and
    under XLA.

    The same candidates on the TensorFlow, JAX and PyTorch backends (ties
    included).

    Args:
        attribution: float tensor of shape `(batch, heads, query, key)`.
            Larger means more important: those keys are dropped first.
        visibility: a `keras_addrop.ops.Visibility`, or a padding mask of
            shape `(batch, length)` (true or 1 for real tokens), which is
            self-attention over it: `Visibility(padding_mask)`.
        candidate_ratio: float in [0, 1]. `p` in the paper: the share of each
            row's real keys that are candidates for dropping.
        drop_rate: float in [0, 1]. `q` in the paper: the probability of
            dropping each candidate.
        seed: `None`, an int or a `keras.random.SeedGenerator`. Pass a
            `SeedGenerator` inside a compiled training step so that every step
            draws fresh randomness.

    Returns:
        A boolean tensor of shape `(batch, heads, query, key)`: `True` where
        the query may attend to the key.

    Raises:
        ValueError: if `candidate_ratio` or `drop_rate` is not a float in
            [0, 1], or the masks' shapes do not fit the attribution's.

    Example:

    ```python
    attribution = keras.random.normal((2, 4, 6, 6))
    padding_mask = keras.ops.array([[1, 1, 1, 1, 0, 0], [1] * 6], "bool")
    keep = keras_addrop.ops.addrop_mask(
        attribution, padding_mask, candidate_ratio=0.3, drop_rate=0.3, seed=1
    )
    ```
    """
    candidate_ratio = validate_ratio("candidate_ratio", candidate_ratio)
    drop_rate = validate_ratio("drop_rate", drop_rate)
    visibility = as_visibility(visibility)
    _check_shapes(attribution, visibility)
    candidates, last_candidate = top_candidates(
        attribution, visibility, candidate_ratio
    )
    return keep_mask_from_candidates(
        candidates, last_candidate, visibility, drop_rate, seed=seed
    )
