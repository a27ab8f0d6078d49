"""AD-DROP's cost on an encoder-decoder model: random BART seq2seq LMs.

The AD-DROP training step over the plain one, with the encoder's
self-attention masked (the authors' translation recipe) in its first
layer or in all its layers, and the peak resident memory over the plain
run's, on TensorFlow and JAX. Full fine-tuning (every weight trains), source
and target `--length` tokens long. Two sizes of random BART: `tiny` (2 + 2
layers, hidden 128, vocabulary 5,000) and `base` (BART-base's shape: 6 + 6
layers, hidden 768, 12 heads, vocabulary 50,265). No pretrained
encoder-decoder weights exist offline; the time of a step does not depend
on the weights' values. The configurations are timed interleaved, several
steps of `fit` per measurement, medians over the rounds; memory in a fresh
process per configuration (see `causal_lm_speed.py`, whose harness this
uses).

    python benchmarks/seq2seq_speed.py --size base --rounds 4 \
        --output benchmarks/results/seq2seq_speed_base.json

Never run it while other jobs share the cores.
"""

import argparse
import functools
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import causal_lm_speed  # noqa: E402

CONFIGS = ("plain", "addrop_encoder_first_layer", "addrop_encoder_all_layers")
SIZES = {
    "tiny": {
        "vocabulary_size": 5000,
        "num_layers": 2,
        "num_heads": 4,
        "hidden_dim": 128,
        "intermediate_dim": 512,
    },
    "base": {
        "vocabulary_size": 50265,
        "num_layers": 6,
        "num_heads": 12,
        "hidden_dim": 768,
        "intermediate_dim": 3072,
    },
}


def model_for(config, args):
    import keras
    import keras_hub

    import keras_addrop

    backbone = keras_hub.models.BartBackbone(
        **SIZES[args.size], max_sequence_length=max(args.length, 128)
    )
    layers = "all" if config == "addrop_encoder_all_layers" else (0,)
    model = keras_addrop.models.ADDropBartSeq2SeqLM(
        backbone=backbone,
        preprocessor=None,
        addrop_attention="encoder",
        addrop_layers=layers,
        seed=0,
    )
    model.addrop_enabled = config != "plain"
    model.compile(optimizer=keras.optimizers.AdamW(1e-5))
    return model


def batch(args, seed=0):
    """Random sources and targets, every one `--length` tokens long; every
    target position counts."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (args.batch_size, args.length)
    vocabulary = SIZES[args.size]["vocabulary_size"]
    x = {
        "encoder_token_ids": rng.integers(3, vocabulary, shape),
        "encoder_padding_mask": np.ones(shape, "int32"),
        "decoder_token_ids": rng.integers(3, vocabulary, shape),
        "decoder_padding_mask": np.ones(shape, "int32"),
    }
    x = {k: v.astype("int32") for k, v in x.items()}
    y = rng.integers(3, vocabulary, size=shape).astype("int32")
    return x, y, np.ones(shape, "float32")


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="tiny")
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--output")
    # Internal: a child process's role.
    parser.add_argument("--worker", choices=("time", "memory", "cost"))
    parser.add_argument("--config", choices=CONFIGS)
    parser.add_argument("--backend")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.worker is not None:
        result = causal_lm_speed.worker(args, model_for, batch, CONFIGS)
        print(json.dumps(result))
        return
    child = functools.partial(
        causal_lm_speed.child, script=__file__, options=("size",)
    )
    settings = {"size": args.size, "model": SIZES[args.size]}
    report = causal_lm_speed.measure(args, settings, CONFIGS, child=child)
    causal_lm_speed.write_report(args, report)


if __name__ == "__main__":
    main()
