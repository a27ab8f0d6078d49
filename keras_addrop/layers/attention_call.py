# Public (`keras_addrop.layers.AttentionCall`) but not registered for
# serialization: it names a live layer object, never saved.
class AttentionCall:
    """One call of an AD-DROP attention layer in a model's forward pass.

    Most models call each attention layer once per forward pass, but a
    layer can be shared: ALBERT calls each group's encoder once per
    transformer layer. AD-DROP's masks and attributions belong to calls, not
    to layer objects: `AttentionCall(layer, index)` names the `index`-th
    call (0 the first) of `layer` in one forward pass, counted from the
    start of the pass (the start of `keras_addrop.layers.addrop_scope`).
    Two `AttentionCall`s are equal when they name the same layer object and
    the same call.

    Args:
        layer: an AD-DROP attention layer, e.g.
            `keras_addrop.layers.ADDropAttention`.
        index: int. Which call of `layer`. Defaults to `0`.

    Example:

    ```python
    layer = keras_addrop.layers.ADDropAttention(num_heads=2, key_dim=4)
    second = keras_addrop.layers.AttentionCall(layer, 1)
    second.num_heads  # 2
    ```
    """

    __slots__ = ("layer", "index")

    def __init__(self, layer, index=0):
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(
                "Invalid value for argument `index`: expected a call index "
                f">= 0. Received: index={index!r}"
            )
        self.layer = layer
        self.index = index

    @property
    def num_heads(self):
        """The layer's number of heads."""
        return self.layer.num_heads

    @property
    def key(self):
        """`(id(layer), index)`: how an `addrop_scope` finds the call."""
        return id(self.layer), self.index

    def __eq__(self, other):
        if not isinstance(other, AttentionCall):
            return NotImplemented
        return self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __repr__(self):
        name = getattr(self.layer, "path", None) or self.layer.name
        return f"AttentionCall({name!r}, {self.index})"


def scope_key(entry):
    """The `addrop_scope` key of a layer (every call of it) or of an
    `AttentionCall` (that call only)."""
    if isinstance(entry, AttentionCall):
        return entry.key
    return id(entry), None


def layer_of(entry):
    """The attention layer of a layer or an `AttentionCall`."""
    return entry.layer if isinstance(entry, AttentionCall) else entry
