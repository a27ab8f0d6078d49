"""`--parts plain_overhead` and `merge_overhead`: two configurations
alone, alternating."""

import keras_addrop
from speed_parts.common import compiled
from speed_parts.common import paired_ratio
from speed_parts.common import stock_classifier


def plain_overhead(preset, x, y, rounds):
    """The switched-off AD-DROP classifier against the stock one, alone.

    The step part measures six configurations per round, and drift over a
    round (the shared machine) moves this ratio by a few percent; here two
    configurations alternate, and each round's ratio pairs neighbours.
    """
    stock = stock_classifier(preset)
    ours = compiled(
        keras_addrop.models.ADDropBertTextClassifier.from_preset(
            preset, num_classes=2, preprocessor=None, seed=0
        )
    )
    ours.addrop_enabled = False
    return paired_ratio(
        {
            "plain_addrop_classifier": lambda: ours.train_on_batch(x, y),
            "plain_stock": lambda: stock.train_on_batch(x, y),
        },
        rounds,
    )


def merge_overhead(preset, x, y, rounds):
    """The plain step with repeated embedding rows merged (the default)
    against Keras' stock update (`merge_repeated_rows=False`), alone."""
    models = [
        compiled(
            keras_addrop.models.ADDropBertTextClassifier.from_preset(
                preset,
                num_classes=2,
                preprocessor=None,
                seed=0,
                merge_repeated_rows=merge,
            )
        )
        for merge in (True, False)
    ]
    for model in models:
        model.addrop_enabled = False
    merged, stock = models
    return paired_ratio(
        {
            "merged_rows": lambda: merged.train_on_batch(x, y),
            "stock_update": lambda: stock.train_on_batch(x, y),
        },
        rounds,
    )
