"""Runs of sequence-to-sequence models on the user's parallel text
(`--task translation`), scored by the BLEU of greedy translations of the
dev sources and by dev loss."""

import csv
import dataclasses
import json
import math
import os

import keras
import keras_hub
import numpy as np

from keras_addrop import glue
from keras_addrop import run_options
from keras_addrop.callbacks import DevEvaluation
from keras_addrop.glue.text_files import json_lines
from keras_addrop.runs.causal_lm import unigram_baseline
from keras_addrop.runs.common import RunError
from keras_addrop.runs.common import adamw
from keras_addrop.runs.common import check_preset_path
from keras_addrop.runs.common import from_preset
from keras_addrop.runs.common import prepare_model
from keras_addrop.runs.common import refuse_options
from keras_addrop.runs.common import token_batches
from keras_addrop.runs.common import user_errors

TASKS = ("translation",)

# Options that mean nothing for a seq2seq model, refused when given.
_CLASSIFIER_OPTIONS = ("few_shot", "text_columns", "metric", "glue_dir")
_CLASSIFIER_OPTIONS += ("data_dir",)

FIELDS = ("source", "target")
# The dev BLEU generates after every epoch, and generation under a strategy
# is not tested here.
DISTRIBUTES = False

# Sentences translated at once for the dev BLEU.
_TRANSLATION_BATCH = 32


@dataclasses.dataclass
class ParallelData:
    """A run's sentence pairs, read and checked, and the training sample's
    indices."""

    name: str
    train: list
    dev: list
    indices: np.ndarray
    # Filled when the pairs are tokenized (`batches`).
    train_tokens: int = 0
    dev_tokens: int = 0
    truncated_train_examples: int = 0
    truncated_dev_examples: int = 0
    baseline: dict = None


def read_pairs(path):
    """The sentence pairs of a parallel-text file.

    A `.jsonl` or `.json` file holds a JSON object per line with `source`
    and `target` strings; any other file is tab-separated text, a
    `source<TAB>target` pair per line (a first line that reads exactly
    `source<TAB>target` is a header). Blank lines are skipped.

    Returns:
        A list of `(source, target)` string pairs.

    Raises:
        ValueError: naming `file:line` for a line without both sentences,
            or a file without pairs.
    """
    path = os.fspath(path)
    pairs = []
    if os.path.splitext(path)[1].lower() in (".jsonl", ".json"):
        for number, record in json_lines(path):
            missing = [f for f in FIELDS if not isinstance(record.get(f), str)]
            if missing:
                raise ValueError(
                    f"{path}:{number}: a line needs the strings 'source' and "
                    f"'target'. Received: keys {sorted(record)}"
                )
            pairs.append((record["source"], record["target"]))
    else:
        with open(path, encoding="utf-8-sig", newline="") as f:
            # Sentences keep their quotes: no CSV quoting in a TSV.
            rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            for number, row in enumerate(rows, start=1):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if number == 1 and tuple(row) == FIELDS:
                    continue
                if len(row) != 2:
                    raise ValueError(
                        f"{path}:{number}: expected 2 tab-separated fields "
                        f"(source and target), found {len(row)}"
                    )
                pairs.append((row[0], row[1]))
    empty = [i for i, pair in enumerate(pairs) if not all(pair)]
    if empty:
        raise ValueError(
            f"{path}: pair {empty[0] + 1} has an empty source or target"
        )
    if not pairs:
        raise ValueError(f"{path} holds no sentence pairs")
    return pairs


def resolve_data(args):
    """Reads the run's files and draws its training sample."""
    refuse_options(args, _CLASSIFIER_OPTIONS, "{flag} is not for --task {task}")
    if args.pooling != "cls":
        raise RunError(
            "--pooling is for sentence classifiers: a seq2seq LM predicts "
            f"every target token. Received: --pooling={args.pooling}"
        )
    if args.train_file is None or args.validation_file is None:
        raise RunError(
            "--task translation needs --train-file and --validation-file "
            "(TSV: source<TAB>target per line; or JSON lines with 'source' "
            "and 'target')"
        )
    with user_errors():
        train = read_pairs(args.train_file)
        dev = read_pairs(args.validation_file)
        indices = glue.sample_indices(
            np.zeros(len(train)), args.train_limit, seed=args.sample_seed
        )
    name = os.path.splitext(os.path.basename(args.train_file))[0]
    return ParallelData(name, train, dev, indices)


def preset(args):
    """`--preset`: there is no default encoder-decoder model offline."""
    if args.preset is None:
        raise RunError(
            "--task translation needs --preset: a keras-hub BART preset "
            "name (e.g. bart_base_en) or a local BART preset folder"
        )
    return args.preset


def build(args, data, preset):
    """The compiled AD-DROP seq2seq LM (without its preprocessor: it trains
    on preprocessed batches), the preprocessor and the backbone class."""
    from keras_addrop.models import ADDropSeq2SeqLM

    check_preset_path(preset)
    with user_errors():
        model = from_preset(
            ADDropSeq2SeqLM.from_preset,
            preset,
            encoder_sequence_length=args.max_length,
            decoder_sequence_length=args.max_length,
            addrop_attention=addrop_attention(args),
            **run_options.model_arguments(args),
        )
    preprocessor, model.preprocessor = model.preprocessor, None
    prepare_model(model, args)
    model.compile(
        optimizer=adamw(args),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras_hub.metrics.Perplexity(from_logits=True, name="perplexity"),
        ],
        sampler="greedy",
    )
    return model, preprocessor, type(model.backbone)


def addrop_attention(args):
    """`--addrop-attention`, or the seq2seq LMs' default."""
    return args.addrop_attention or "encoder"


def tokenize(preprocessor, pairs):
    """`(x, y, sample_weight, truncated)` of sentence pairs as NumPy arrays,
    as the preprocessor trains on them (every target token counts, the end
    token included). `truncated` counts pairs with a source or a target
    longer than the preprocessor's sequence lengths."""
    x, y, weight = preprocessor(
        {
            "encoder_text": [source for source, _ in pairs],
            "decoder_text": [target for _, target in pairs],
        }
    )
    x = {k: keras.ops.convert_to_numpy(v) for k, v in x.items()}
    y, weight = (
        keras.ops.convert_to_numpy(y),
        keras.ops.convert_to_numpy(weight),
    )
    # A full last position: the sentence reached the length (its end
    # token or more was cut).
    truncated = np.logical_or(
        x["encoder_padding_mask"][:, -1], weight[:, -1] > 0
    )
    return x, y, weight.astype("float32"), int(np.count_nonzero(truncated))


def batches(args, data, preprocessor, initial_epoch):
    """The training batches (seeded, length-aware, shuffled as from
    `initial_epoch`) and the dev batches (in order)."""
    train = [data.train[i] for i in data.indices]
    x, y, weight, data.truncated_train_examples = tokenize(preprocessor, train)
    dev_x, dev_y, dev_weight, data.truncated_dev_examples = tokenize(
        preprocessor, data.dev
    )
    data.train_tokens = int(np.count_nonzero(weight))
    data.dev_tokens = int(np.count_nonzero(dev_weight))
    data.baseline = {
        **unigram_baseline(y, weight, dev_y, dev_weight),
        "bleu": bleu(
            [source for source, _ in data.dev],
            [target for _, target in data.dev],
        ),
    }
    return token_batches(
        args, (x, y, weight), (dev_x, dev_y, dev_weight), initial_epoch
    )


def bleu(hypotheses, references):
    """sacreBLEU's corpus BLEU (its default 13a tokenization), 0-100."""
    try:
        import sacrebleu
    except ImportError:
        raise RunError(
            "--task translation scores BLEU with sacrebleu: pip install "
            "sacrebleu (or keras-addrop[translation])"
        ) from None
    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def translate(
    model, preprocessor, sources, max_length, batch_size=_TRANSLATION_BATCH
):
    """Translations of `sources` (with the model's compiled sampler) by a
    model without its preprocessor (as it trains), `max_length` target
    tokens at most."""
    end = [preprocessor.tokenizer.end_token_id]
    translations = []
    for start in range(0, len(sources), batch_size):
        x = preprocessor.generate_preprocess(
            sources[start : start + batch_size],
            decoder_sequence_length=max_length,
        )
        outputs = model.generate(x, stop_token_ids=end)
        texts = preprocessor.generate_postprocess(outputs)
        translations += [
            t.decode("utf-8") if isinstance(t, bytes) else str(t)
            for t in keras.ops.convert_to_numpy(texts).tolist()
        ]
    return [t.strip() for t in translations]


def predict_file(model, path, output, batch_size, max_length):
    """Translates the sources of a file greedily and writes them out: JSON
    lines (each needs a `source`) get a `"translation"` added to each line;
    a TSV's first field of each line is its source (a first line `source`
    or `source<TAB>target` is a header), written back as
    `source<TAB>translation` lines under that header. Returns the number of
    sentences translated."""
    with user_errors():
        if path.endswith((".jsonl", ".json")):
            records = [r for _, r in json_lines(path)]
            for number, record in enumerate(records, start=1):
                if not isinstance(record.get("source"), str):
                    raise ValueError(
                        f"{path}:{number}: a line needs a 'source' string. "
                        f"Received: keys {sorted(record)}"
                    )
            sources = [r["source"] for r in records]
        else:
            with open(path, encoding="utf-8-sig", newline="") as f:
                rows = list(
                    csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                )
            if rows and tuple(rows[0]) in (("source",), FIELDS):
                rows = rows[1:]
            sources = [row[0] for row in rows if row and row[0].strip()]
    if not sources:
        raise RunError(f"{path} holds no sentences to translate")
    model.compile(sampler="greedy")
    preprocessor, model.preprocessor = model.preprocessor, None
    try:
        translations = translate(
            model, preprocessor, sources, max_length, batch_size
        )
    finally:
        model.preprocessor = preprocessor
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        if path.endswith((".jsonl", ".json")):
            for record, translation in zip(records, translations):
                f.write(json.dumps({**record, "translation": translation}))
                f.write("\n")
        else:
            f.write("source\ttranslation\n")
            f.writelines(f"{s}\t{t}\n" for s, t in zip(sources, translations))
    return len(sources)


class TranslationEvaluation(DevEvaluation):
    """After every epoch: the BLEU of greedy translations of the dev
    sources (the best epoch has the highest), and dev loss, perplexity and
    next-token accuracy over the target tokens (teacher-forced)."""

    def __init__(
        self, dev, pairs, preprocessor, max_length, patience=None, history=None
    ):
        self.dev = dev
        self.pairs = pairs
        self.preprocessor = preprocessor
        self.max_length = max_length
        super().__init__("bleu", patience, history, higher_is_better=True)

    def evaluate(self):
        scores = self.model.evaluate(self.dev, return_dict=True, verbose=0)
        perplexity = float(scores["perplexity"])
        sources = [source for source, _ in self.pairs]
        translations = translate(
            self.model, self.preprocessor, sources, self.max_length
        )
        return {
            "bleu": bleu(translations, [target for _, target in self.pairs]),
            # Mean negative log-likelihood of a target token.
            "loss": math.log(perplexity),
            "perplexity": perplexity,
            "accuracy": float(scores["accuracy"]),
        }


def evaluation(args, data, dev, preprocessor, history):
    return TranslationEvaluation(
        dev,
        data.dev,
        preprocessor,
        args.max_length,
        patience=args.patience,
        history=history,
    )


def summary(args, data):
    return {
        "task": data.name,
        "main_metric": "bleu",
        "train_examples": int(len(data.indices)),
        "dev_examples": len(data.dev),
        # Target tokens the loss counts.
        "train_tokens": data.train_tokens,
        "dev_tokens": data.dev_tokens,
        "truncated_train_examples": data.truncated_train_examples,
        "truncated_dev_examples": data.truncated_dev_examples,
        # The dev BLEU of copying each source; the loss, perplexity and
        # accuracy of the training targets' unigram distribution.
        "majority_baseline": data.baseline,
        "config": {
            "pooling": "lm",
            "addrop_attention": _recorded(addrop_attention(args)),
        },
    }


def _recorded(kinds):
    return kinds if isinstance(kinds, str) else list(kinds)


def saved_preprocessor(preprocessor):
    # `model.keras` holds it: `generate` takes strings again.
    return preprocessor
