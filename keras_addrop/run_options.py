"""The options of a fine-tuning run, each declared once.

`OPTIONS` is the one table: every option's name, type, default, help and
validation, and where its value goes (the model, `compile`, the data
pipeline or the run itself). The command line's flags (`--candidate-ratio`
for `candidate_ratio`), the AD-DROP classifier's arguments and the `config`
recorded in `results.json` all derive from it; where a flag and a model
argument differ in name or sense, the mapping is written here
(`--labels` is `attribution_labels`, `--stock-embedding-updates` is
`merge_repeated_rows=False`).

Standard library and `validation` only, imported relatively: the command
line loads this module before it imports Keras (see
`keras_addrop_cli.run_options`), and its errors have Keras' wording.
"""

import dataclasses
import math
import operator
import os

from . import validation

# Where an option's value goes.
MODEL = "model"
COMPILE = "compile"
DATA = "data"
RUN = "run"


@dataclasses.dataclass(frozen=True)
class Option:
    """One run option.

    Args:
        name: the option's name: the flag's `dest`, the key in `results.json`'s
            `config` and, unless `argument` says otherwise, the model's
            argument.
        help: the flag's help text.
        goes: where the value is used: `MODEL`, `COMPILE`, `DATA` or `RUN`.
        default: the value when the flag is not given.
        parse: a function from the flag's text to the value; raises
            `ValueError` in Keras' wording. None: the text as it is.
        choices: the values allowed, if a fixed list.
        nargs: argparse's `nargs`, for an option that takes several values.
        argument: the model's argument, where it differs from `name`.
        to_argument: turns the option's value into the argument's, where
            the two differ in sense.
        switch: whether the option is a flag without a value: False unless
            given.
        recorded: whether `results.json`'s config keeps the value.
    """

    name: str
    help: str
    goes: str
    default: object = None
    parse: object = None
    choices: tuple = None
    nargs: object = None
    argument: str = None
    to_argument: object = None
    switch: bool = False
    recorded: bool = True

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")


def _number(text, convert):
    try:
        return convert(text)
    except ValueError:
        return text  # Refused by the validator, in its wording.


def ratio(name):
    """A parser for a float in [0, 1] (`name` is the argument's name)."""
    return lambda text: validation.validate_ratio(name, _number(text, float))


def positive_int(name):
    """A parser for an integer >= 1."""
    return lambda text: validation.validate_positive_int(
        name, _number(text, int)
    )


def integer(name):
    """A parser for any integer (a seed)."""
    return lambda text: validation.validate_optional_int(
        name, _number(text, int)
    )


def real(name):
    """A parser for a finite float."""

    def parse(text):
        value = _number(text, float)
        if not isinstance(value, float) or not math.isfinite(value):
            raise validation.invalid_argument(name, "a finite float", value)
        return value

    return parse


def layer_indices(name):
    """A parser for `"all"` or comma-separated layer indices."""

    def parse(text):
        if text == "all":
            return "all"
        try:
            return tuple(int(v) for v in text.split(","))
        except ValueError:
            raise validation.invalid_argument(
                name, "'all' or comma-separated layer indices", text
            ) from None

    return parse


# A seq2seq model's attention kinds (`ADDropSeq2SeqLM`'s; its module
# imports Keras).
ATTENTION_KINDS = ("encoder", "decoder", "cross")


def attention_kinds(name):
    """A parser for `"all"` or comma-separated attention kinds."""

    def parse(text):
        if text == "all":
            return "all"
        kinds = tuple(text.split(","))
        if len(set(kinds)) != len(kinds) or any(
            kind not in ATTENTION_KINDS for kind in kinds
        ):
            raise validation.invalid_argument(
                name,
                "'all' or comma-separated distinct kinds among "
                + ", ".join(ATTENTION_KINDS),
                text,
            )
        return kinds[0] if len(kinds) == 1 else kinds

    return parse


def existing_file(name):
    """A parser for the path of a file that exists."""

    def parse(text):
        if not os.path.isfile(text):
            raise validation.invalid_argument(name, "an existing file", text)
        return text

    return parse


def existing_folder(name):
    """A parser for the path of a folder that exists."""

    def parse(text):
        if not os.path.isdir(text):
            raise validation.invalid_argument(name, "an existing folder", text)
        return text

    return parse


# `keras_addrop.glue.TASKS` (a test keeps the two equal): the package that
# holds it imports TensorFlow.
GLUE_TASKS = (
    "cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb", "wnli",
)  # fmt: skip


def _switch(name, help, goes, **kwargs):
    return Option(
        name=name, help=help, goes=goes, default=False, switch=True, **kwargs
    )


OPTIONS = (
    # The data.
    Option(
        "task",
        "GLUE task: " + ", ".join(GLUE_TASKS) + ". Or your own sentences: "
        "--train-file and --validation-file without --task. Or named "
        "entities: ner (with --train-file and --validation-file) or "
        "conll2003 (tensorflow-datasets). Or a causal language model: "
        "causal-lm (with --train-file and --validation-file). Or a "
        "sequence-to-sequence model: translation (with --train-file, "
        "--validation-file and a BART --preset).",
        DATA,
    ),
    Option(
        "train_file",
        "Your own training data: a CSV, TSV or JSON-lines file with named "
        "columns (instead of --task); with --task ner, a CoNLL column file "
        "or JSON lines with tokens and tags; with --task causal-lm, JSON "
        "lines with text, or prompt and response (loss on the response); "
        "with --task translation, TSV (source<TAB>target per line) or JSON "
        "lines with source and target.",
        DATA,
        parse=existing_file("train_file"),
    ),
    Option(
        "validation_file",
        "Your own validation data, in the training file's layout.",
        DATA,
        parse=existing_file("validation_file"),
    ),
    Option(
        "text_columns",
        "The one or two text columns of --train-file (default: as Hugging "
        "Face's run_glue.py finds them: sentence1 and sentence2, else "
        "sentence or text, else the file's one or two text columns).",
        DATA,
        nargs="+",
    ),
    Option(
        "label_column",
        "The label column of --train-file: class names or ids, or scores "
        "(regression).",
        DATA,
        default="label",
    ),
    Option(
        "metric",
        "The main metric for --train-file (default: accuracy for classes, "
        "pearson for scores).",
        DATA,
        choices=("accuracy", "f1", "matthews_corrcoef", "pearson", "spearman"),
    ),
    Option(
        "glue_dir",
        "Folder in the GLUE TSV layout. Without it, tensorflow-datasets.",
        DATA,
        parse=existing_folder("glue_dir"),
    ),
    Option("data_dir", "tfds data folder.", DATA),
    Option(
        "max_length",
        "Tokens an example is cut to (batches are as long as their longest "
        "example unless --no-length-aware).",
        DATA,
        default=128,
        parse=positive_int("max_length"),
    ),
    Option(
        "batch_size",
        "Examples a batch.",
        DATA,
        default=32,
        parse=positive_int("batch_size"),
    ),
    Option(
        "train_limit",
        "Train on this many examples, sampled with --sample-seed.",
        DATA,
        parse=positive_int("train_limit"),
    ),
    Option(
        "few_shot",
        "Train on this many examples of each class.",
        DATA,
        parse=positive_int("few_shot"),
    ),
    Option(
        "sample_seed",
        "Seed of --train-limit / --few-shot sampling (fixed across training "
        "seeds, so every seed sees the same examples).",
        DATA,
        default=1234,
        parse=integer("sample_seed"),
    ),
    _switch("no_length_aware", "Pad every batch to --max-length.", DATA),
    # The model.
    Option(
        "preset",
        "keras-hub preset name or local folder (keras-hub or Hugging Face). "
        "Defaults to the installed MiniLM-L6 package's folder.",
        RUN,
    ),
    Option(
        "pooling",
        "Classification head: keras-hub's [CLS] pooler, or the mean of the "
        "token outputs (what sentence encoders such as MiniLM-L6 were "
        "trained with).",
        RUN,
        default="cls",
        choices=("cls", "mean"),
    ),
    Option(
        "candidate_ratio",
        "p in the paper: the share of each attention row's keys, highest "
        "attribution first, that are candidates for dropping.",
        MODEL,
        default=0.3,
        parse=ratio("candidate_ratio"),
    ),
    Option(
        "drop_rate",
        "q in the paper: the probability of dropping each candidate.",
        MODEL,
        default=0.3,
        parse=ratio("drop_rate"),
    ),
    Option(
        "addrop_layers",
        "'all' or comma-separated encoder layer indices (0 is the first) "
        "whose attention AD-DROP masks.",
        MODEL,
        # The models' default too.
        default=(0,),
        parse=layer_indices("addrop_layers"),
    ),
    Option(
        "addrop_attention",
        "--task translation: which attention AD-DROP masks: encoder "
        "(self-attention; the default, the paper's), decoder "
        "(self-attention), cross, comma-separated kinds, or all. "
        "--addrop-layers then indexes the layers of each kind.",
        RUN,
        parse=attention_kinds("addrop_attention"),
    ),
    Option(
        "attribution",
        "How positions are ranked: GA, IGA, AA or RD (the paper's Table 2).",
        MODEL,
        default="gradient",
        choices=("gradient", "integrated_gradients", "attention", "random"),
    ),
    Option(
        "labels",
        "Which class's logit is attributed: the predicted or the true one.",
        MODEL,
        default="pseudo",
        choices=("pseudo", "gold"),
        argument="attribution_labels",
    ),
    Option(
        "attribution_score",
        "What is attributed for each label: its logit (the paper's) or its "
        "log-probability (the authors' NER code).",
        MODEL,
        default="logit",
        choices=("logit", "log_probability"),
    ),
    Option(
        "drop_region",
        "Drop among the highest- or the lowest-attribution keys.",
        MODEL,
        default="high",
        choices=("high", "low"),
    ),
    Option(
        "ig_steps",
        "Integrated-gradient steps (--attribution integrated_gradients).",
        MODEL,
        default=20,
        parse=positive_int("ig_steps"),
    ),
    Option(
        "seed",
        "Seed of training and drops.",
        MODEL,
        default=42,
        parse=integer("seed"),
    ),
    _switch(
        "stock_embedding_updates",
        "Keep Keras' stock optimizer update of embedding rows that occur "
        "more than once in a batch (by default they are updated as the "
        "dense gradient updates them).",
        MODEL,
        argument="merge_repeated_rows",
        to_argument=operator.not_,
    ),
    Option(
        "lora_rank",
        "LoRA: adapt the backbone's attention query and value projections "
        "with this rank and freeze the rest of the backbone (keras-hub's "
        "enable_lora).",
        RUN,
        parse=positive_int("lora_rank"),
    ),
    _switch("no_addrop", "Plain fine-tuning.", RUN),
    _switch(
        "no_cross_tuning",
        "AD-DROP on every epoch instead of alternating.",
        RUN,
    ),
    # The optimizer.
    Option(
        "learning_rate",
        "AdamW's rate.",
        COMPILE,
        default=2e-5,
        parse=real("learning_rate"),
    ),
    Option(
        "weight_decay",
        "AdamW's decay.",
        COMPILE,
        default=0.01,
        parse=real("weight_decay"),
    ),
    # The run.
    Option(
        "epochs",
        "Training epochs.",
        RUN,
        default=3,
        parse=positive_int("epochs"),
    ),
    Option(
        "patience",
        "Stop after this many epochs without a better dev score.",
        RUN,
        parse=positive_int("patience"),
    ),
    _switch(
        "no_save_model",
        "Do not write model.keras at the end.",
        RUN,
        recorded=False,
    ),
    Option(
        "strategy",
        "Data parallelism over the local devices: MirroredStrategy on "
        "TensorFlow, keras.distribution.DataParallel on JAX; or "
        "MultiWorkerMirroredStrategy over the cluster in TF_CONFIG "
        "(TensorFlow only). PyTorch: none only.",
        RUN,
        default="none",
        choices=("none", "mirrored", "multi-worker"),
    ),
    Option(
        "verbose",
        "Keras' fit verbosity (default: a progress bar on a terminal, a "
        "line per epoch otherwise).",
        RUN,
        choices=(0, 1, 2),
        parse=integer("verbose"),
        recorded=False,
    ),
)

BY_NAME = {option.name: option for option in OPTIONS}

# A sweep's grid: each run gets one value of each, as its `candidate_ratio`,
# `drop_rate` and `seed`.
SWEEP_OPTIONS = (
    Option(
        "candidate_ratios",
        "The values of p (--candidate-ratio) to run.",
        RUN,
        default=[0.3],
        parse=ratio("candidate_ratios"),
        nargs="+",
    ),
    Option(
        "drop_rates",
        "The values of q (--drop-rate) to run.",
        RUN,
        default=[0.3],
        parse=ratio("drop_rates"),
        nargs="+",
    ),
    Option(
        "seeds",
        "Training seeds.",
        RUN,
        default=[42],
        parse=integer("seeds"),
        nargs="+",
    ),
)


def model_arguments(values):
    """The AD-DROP classifier's arguments from a run's option values.

    Args:
        values: an object with an attribute per option (parsed flags).

    Returns:
        A dict of the model's keyword arguments.
    """
    arguments = {}
    for option in OPTIONS:
        if option.goes != MODEL:
            continue
        value = getattr(values, option.name, option.default)
        if option.to_argument is not None:
            value = option.to_argument(value)
        arguments[option.argument or option.name] = value
    return arguments


def recorded_config(values):
    """The run's config as `results.json` records it: every recorded
    option, by its name, in JSON's types."""
    config = {}
    for option in OPTIONS:
        if not option.recorded:
            continue
        value = getattr(values, option.name, option.default)
        if isinstance(value, tuple):
            value = list(value)
        config[option.name] = value
    return config
