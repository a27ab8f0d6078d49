"""`--parts xla`: steps compiled by XLA against the default ones."""

import statistics

import keras_addrop
from speed_parts.common import compiled
from speed_parts.common import measure


def xla_ratios(preset, x, y, rounds):
    """Steps compiled by XLA (`jit_compile=True`) over the default ones,
    plain and AD-DROP (GA, all layers), interleaved."""
    configs = {}
    for jit_compile in (False, True):
        for enabled in (False, True):
            model = compiled(
                keras_addrop.models.ADDropBertTextClassifier.from_preset(
                    preset, num_classes=2, preprocessor=None, seed=0
                ),
                jit_compile=jit_compile,
            )
            model.addrop_enabled = enabled
            name = ("addrop" if enabled else "plain") + (
                "_xla" if jit_compile else ""
            )
            configs[name] = lambda model=model: model.train_on_batch(x, y)
    times = measure(configs, rounds)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        "seconds": times,
        "xla_over_default": {
            kind: medians[f"{kind}_xla"] / medians[kind]
            for kind in ("plain", "addrop")
        },
    }
