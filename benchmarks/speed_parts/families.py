"""`--parts deberta`: AD-DROP on a MiniLM-L6-sized random DeBERTa-v3."""

import statistics

import keras
import keras_hub

import keras_addrop
from speed_parts.common import compiled
from speed_parts.common import measure


def deberta_backbone():
    """Random weights, MiniLM-L6's size: 6 layers, hidden 384, 12 heads."""
    return keras_hub.models.DebertaV3Backbone(
        vocabulary_size=30522,
        num_layers=6,
        num_heads=12,
        hidden_dim=384,
        intermediate_dim=1536,
        max_sequence_length=512,
        bucket_size=256,
    )


def deberta_ratios(x, y, rounds):
    """The stock DeBERTa-v3 classifier's plain step, the AD-DROP
    classifier's plain step and its AD-DROP step (GA, all layers),
    interleaved."""
    keras.utils.set_random_seed(0)
    x = {"token_ids": x["token_ids"], "padding_mask": x["padding_mask"]}
    stock = compiled(
        keras_hub.models.DebertaV3TextClassifier(
            deberta_backbone(), num_classes=2, preprocessor=None
        )
    )

    def addrop(enabled):
        model = keras_addrop.models.ADDropDebertaV3TextClassifier(
            deberta_backbone(),
            num_classes=2,
            preprocessor=None,
            addrop_layers="all",
            seed=0,
        )
        model.set_weights(stock.get_weights())
        model.addrop_enabled = enabled
        return compiled(model)

    models = {
        "plain_stock": stock,
        "plain_addrop_classifier": addrop(False),
        "addrop_ga_all_layers": addrop(True),
    }
    times = measure(
        {
            name: (lambda model=model: model.train_on_batch(x, y))
            for name, model in models.items()
        },
        rounds,
    )
    medians = {name: statistics.median(t) for name, t in times.items()}
    plain = medians["plain_stock"]
    return {
        "model": "random DeBERTa-v3 (6 layers, 12 heads, hidden 384)",
        "seconds": times,
        "median_seconds": medians,
        "ratios": {
            "addrop_over_plain_stock": medians["addrop_ga_all_layers"] / plain,
            "plain_addrop_classifier_over_plain_stock": medians[
                "plain_addrop_classifier"
            ]
            / plain,
            "addrop_over_plain_addrop_classifier": medians[
                "addrop_ga_all_layers"
            ]
            / medians["plain_addrop_classifier"],
        },
    }
