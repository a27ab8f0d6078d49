import keras

from keras_addrop.layers import ADDROP_ATTENTION
from keras_addrop.layers import AttentionCall


def find_attention_calls(model):
    """Every call of an AD-DROP attention layer in one forward pass of
    `model`, in the order the forward pass makes them.

    A functional model (a keras-hub backbone or task, an `ADDropModel`) is
    walked node by node in the order Keras runs its graph, so a layer that
    the graph calls several times (ALBERT's shared encoders) gives one
    `keras_addrop.layers.AttentionCall` per call, numbered as
    `addrop_scope` numbers them. Inside a layer that is not functional, each
    AD-DROP attention sub-layer is taken to be called once per call of that
    layer, in the order its sub-layers were assigned.

    Returns:
        A list of `keras_addrop.layers.AttentionCall`.
    """
    calls, counts = [], {}

    def visit(layer):
        if isinstance(layer, ADDROP_ATTENTION):
            index = counts.get(id(layer), 0)
            counts[id(layer)] = index + 1
            calls.append(AttentionCall(layer, index))
        elif hasattr(layer, "_nodes_by_depth"):
            # Keras' own execution order (`Function._run_through_graph`).
            for depth in sorted(layer._nodes_by_depth, reverse=True):
                for node in layer._nodes_by_depth[depth]:
                    if node.operation is not None and not node.is_input:
                        visit(node.operation)
        else:
            # `_layers` keeps assignment order; `_flatten_layers` would
            # reverse siblings.
            children = (
                layer.layers
                if isinstance(layer, keras.Model)
                else getattr(layer, "_layers", [])
            )
            for child in children:
                visit(child)

    visit(model)
    return calls
