"""`--parts steps`: every step kind against the stock plain step."""

import gc
import statistics

import keras
import tensorflow as tf

import keras_addrop
from speed_parts.common import addrop_classifier
from speed_parts.common import compiled
from speed_parts.common import measure
from speed_parts.common import stock_classifier


def build_configs(preset, x, y):
    """name -> a function running one timed unit of work."""
    stock = stock_classifier(preset)

    def addrop(**kwargs):
        return addrop_classifier(preset, **kwargs)

    plain_addrop = addrop(addrop_layers="all")
    plain_addrop.addrop_enabled = False
    ga_first = addrop(addrop_layers=(0,))
    ga_all = addrop(addrop_layers="all")
    layers = ga_all.addrop_attention_layers

    forward = tf.function(lambda x: ga_all(x, training=True))
    attribution = tf.function(
        lambda x: keras_addrop.attribution.compute_attribution(
            ga_all, x, layers=layers, training=True
        )
    )
    x_tensors = {k: tf.constant(v) for k, v in x.items()}

    def step(model):
        return lambda: model.train_on_batch(x, y)

    return {
        "plain_stock": step(stock),
        "plain_addrop_classifier": step(plain_addrop),
        "addrop_ga_first_layer": step(ga_first),
        "addrop_ga_all_layers": step(ga_all),
        "forward_training_mode": lambda: forward(x_tensors),
        "forward_and_attribution_backward_all_layers": lambda: attribution(
            x_tensors
        ),
    }


def iga_configs(preset, x, y):
    stock = stock_classifier(preset)
    iga = compiled(
        keras_addrop.models.ADDropBertTextClassifier.from_preset(
            preset,
            num_classes=2,
            preprocessor=None,
            seed=0,
            addrop_layers=(0,),
            attribution="integrated_gradients",
        )
    )
    return {
        "plain_stock": lambda: stock.train_on_batch(x, y),
        "iga": lambda: iga.train_on_batch(x, y),
    }


def summarize(times):
    medians = {name: statistics.median(t) for name, t in times.items() if t}
    plain = medians["plain_stock"]
    ratios = {name: m / plain for name, m in medians.items()}
    floor = (
        medians["forward_and_attribution_backward_all_layers"] + plain
    ) / plain
    return medians, ratios, floor


def step_ratios(preset, x, y, rounds, iga_rounds):

    times = measure(build_configs(preset, x, y), rounds)
    # Seven models and their traced steps at once were killed for memory
    # (21.7 GiB resident) at length 128: IGA gets a state of its own.
    keras.backend.clear_session()
    gc.collect()
    # IGA is 10x slower: fewer rounds, interleaved with plain steps.
    iga_times = measure(iga_configs(preset, x, y), iga_rounds)
    medians, ratios, floor = summarize(times)
    iga_ratio = statistics.median(iga_times["iga"]) / statistics.median(
        iga_times["plain_stock"]
    )
    return {
        "seconds": times,
        "median_seconds": medians,
        "ratio_to_plain_stock_step": ratios,
        "addrop_step_floor_ratio": floor,
        "iga_first_layer_step_ratio": iga_ratio,
        "iga_seconds": iga_times,
    }
