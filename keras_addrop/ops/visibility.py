from keras import ops


# A value handed to the mask op, never part of a saved model: not
# registered for serialization.
class Visibility:
    """Which (query, key) pairs of one attention call exist.

    AD-DROP ranks, drops and counts only the pairs a call can see: its
    candidates in a query row are `ceil(p * n)` of the row's `n` visible
    keys, a row is never emptied of its visible keys, and the drop fraction
    counts visible pairs. Three patterns cover the attention of keras-hub's
    tasks:

    - self-attention over padding (encoders; the default):
      `Visibility(padding_mask)`, every real query sees every real key;
    - causal self-attention (decoders):
      `Visibility(padding_mask, causal=True)`, a real query sees the real
      keys at its own position and before;
    - cross-attention: `Visibility(target_mask, key_mask=source_mask)`,
      every real target position sees every real source position (query
      length and key length may differ).

    A query row that is padding has no visible pairs: it is never ranked,
    nothing in it is dropped, and its keep mask is the keys the row's
    pattern shows (the real keys, or the real keys up to the row's position
    when causal), so the layer treats it exactly as without AD-DROP.

    Pure `keras.ops`; the masks are built where they are used.

    Args:
        query_mask: tensor `(batch, query)`, true (or nonzero) for real
            query positions. Also the keys' mask when `key_mask` is `None`
            (self-attention).
        key_mask: `None` or a tensor `(batch, key)`, true for real keys.
        causal: bool. Whether query `t` sees only keys up to position `t`
            (counted from the end when the key axis is longer, as with a
            key/value cache). Defaults to `False`.

    Example:

    ```python
    padding_mask = keras.ops.array([[1, 1, 1, 0]], "bool")
    causal = keras_addrop.ops.Visibility(padding_mask, causal=True)
    keep = keras_addrop.ops.addrop_mask(
        keras.random.normal((1, 2, 4, 4)), causal, 0.5, 0.5, seed=0
    )
    ```
    """

    def __init__(self, query_mask, key_mask=None, causal=False):
        self.query_mask = ops.cast(query_mask, "bool")
        self.key_mask = (
            self.query_mask if key_mask is None else ops.cast(key_mask, "bool")
        )
        self.self_attention = key_mask is None
        self.causal = bool(causal)

    def keys(self):
        """The keys each query row's pattern shows: boolean
        `(batch, 1, 1, key)` without a causal pattern, else
        `(batch, 1, query, key)`."""
        keys = self.key_mask[:, None, None, :]
        if not self.causal:
            return keys
        num_queries = ops.shape(self.query_mask)[1]
        num_keys = ops.shape(self.key_mask)[1]
        query = ops.arange(num_queries)[:, None] + (num_keys - num_queries)
        pattern = ops.less_equal(ops.arange(num_keys)[None, :], query)
        return ops.logical_and(keys, pattern[None, None])

    def queries(self):
        """The real query rows: boolean `(batch, 1, query, 1)`."""
        return self.query_mask[:, None, :, None]

    def pairs(self):
        """The visible pairs: boolean `(batch, 1, query, key)`."""
        return ops.logical_and(self.queries(), self.keys())

    def count(self):
        """The number of visible pairs of one head, float32."""
        if not self.causal and self.self_attention:
            # n_b real tokens give n_b^2 pairs; no (query, key) tensor.
            real = ops.cast(self.query_mask, "float32")
            return ops.sum(ops.square(ops.sum(real, axis=-1)))
        if not self.causal:
            queries = ops.sum(ops.cast(self.query_mask, "float32"), axis=-1)
            keys = ops.sum(ops.cast(self.key_mask, "float32"), axis=-1)
            return ops.sum(queries * keys)
        return ops.sum(ops.cast(self.pairs(), "float32"))

    def __repr__(self):
        kind = "causal" if self.causal else "full"
        cross = "" if self.self_attention else ", cross-attention"
        return f"Visibility({kind}{cross})"


def as_visibility(visibility):
    """A `Visibility`, or a padding mask read as self-attention over it."""
    if isinstance(visibility, Visibility):
        return visibility
    return Visibility(visibility)
