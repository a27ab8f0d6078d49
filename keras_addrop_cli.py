"""The `keras-addrop` command line: finetune, sweep, summarize, predict.

This module sits beside the `keras_addrop` package, not in it, because
importing the package loads Keras, keras-hub and TensorFlow: seconds, and a
dozen lines of TensorFlow's C++ logs. Here the arguments are parsed with the
standard library alone, so `--help` and argument errors answer at once, and
the package is imported only for a command that runs, with TensorFlow's and
XLA's C++ log lines hidden for the whole command unless `--backend-logs`
asks for them.
"""

import argparse
import contextlib
import os
import sys
import tempfile

# `keras_addrop.glue.TASKS`, which cannot be imported before the arguments are
# parsed; a test keeps the two equal.
GLUE_TASKS = (
    "cola",
    "mnli",
    "mrpc",
    "qnli",
    "qqp",
    "rte",
    "sst2",
    "stsb",
    "wnli",
)


def _layers(value):
    if value == "all":
        return "all"
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'all' or comma-separated layer indices, got {value!r}"
        ) from None


def _ratio(value):
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is None or not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a float in [0, 1], got {value}"
        )
    return number


def _positive(value):
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {value}"
        )
    return number


def _folder(value):
    if not os.path.isdir(value):
        raise argparse.ArgumentTypeError(f"no such folder: {value}")
    return value


def _file(value):
    if not os.path.isfile(value):
        raise argparse.ArgumentTypeError(f"no such file: {value}")
    return value


def _add_backend_logs_argument(parser):
    parser.add_argument(
        "--backend-logs",
        action="store_true",
        help="Show the log lines TensorFlow and XLA write from C++ (CUDA "
        "probing, CPU features, tf.data and kernel notices, at start-up and "
        "during training); hidden by default, and shown before the traceback "
        "of an unexpected error.",
    )


def _add_training_arguments(parser):
    parser.add_argument(
        "--task",
        default=None,
        help="GLUE task: " + ", ".join(GLUE_TASKS) + ". Or your own "
        "data: --train-file and --validation-file.",
    )
    parser.add_argument(
        "--train-file",
        type=_file,
        default=None,
        help="Your own training data: a CSV, TSV or JSON-lines file with "
        "named columns (instead of --task).",
    )
    parser.add_argument(
        "--validation-file",
        type=_file,
        default=None,
        help="Your own validation data, in the training file's columns.",
    )
    parser.add_argument(
        "--text-columns",
        nargs="+",
        default=["sentence"],
        help="The one or two text columns of --train-file.",
    )
    parser.add_argument(
        "--label-column",
        default="label",
        help="The label column of --train-file: class names or ids, or "
        "scores (regression).",
    )
    parser.add_argument(
        "--metric",
        choices=(
            "accuracy", "f1", "matthews_corrcoef", "pearson", "spearman"
        ),
        default=None,
        help="The main metric for --train-file (default: accuracy for "
        "classes, pearson for scores).",
    )  # fmt: skip
    parser.add_argument(
        "--preset",
        default=None,
        help="keras-hub preset name or local folder (keras-hub or Hugging "
        "Face). Defaults to the installed MiniLM-L6 package's folder.",
    )
    parser.add_argument(
        "--glue-dir",
        type=_folder,
        default=None,
        help="Folder in the GLUE TSV layout. Without it, tensorflow-datasets.",
    )
    parser.add_argument("--data-dir", default=None, help="tfds data folder.")
    parser.add_argument(
        "--pooling",
        choices=("cls", "mean"),
        default="cls",
        help="Classification head: keras-hub's [CLS] pooler, or the mean of "
        "the token outputs (what sentence encoders such as MiniLM-L6 were "
        "trained with).",
    )
    parser.add_argument(
        "--epochs", type=_positive, default=3, help="Training epochs."
    )
    parser.add_argument(
        "--batch-size", type=_positive, default=32, help="Examples a batch."
    )
    parser.add_argument(
        "--learning-rate", type=float, default=2e-5, help="AdamW's rate."
    )
    parser.add_argument(
        "--weight-decay", type=float, default=0.01, help="AdamW's decay."
    )
    parser.add_argument(
        "--max-length",
        type=_positive,
        default=128,
        help="Tokens an example is cut to (batches are as long as their "
        "longest example unless --no-length-aware).",
    )
    parser.add_argument(
        "--candidate-ratio",
        type=_ratio,
        default=0.3,
        help="p in the paper: the share of each attention row's keys, "
        "highest attribution first, that are candidates for dropping.",
    )
    parser.add_argument(
        "--drop-rate",
        type=_ratio,
        default=0.3,
        help="q in the paper: the probability of dropping each candidate.",
    )
    parser.add_argument(
        "--addrop-layers",
        type=_layers,
        # The models' default too; argparse converts it with `_layers`.
        default="0",
        help="'all' or comma-separated encoder layer indices (0 is the "
        "first) whose attention AD-DROP masks.",
    )
    parser.add_argument(
        "--attribution",
        choices=("gradient", "integrated_gradients", "attention", "random"),
        default="gradient",
        help="How positions are ranked: GA, IGA, AA or RD (the paper's "
        "Table 2).",
    )
    parser.add_argument(
        "--labels",
        choices=("pseudo", "gold"),
        default="pseudo",
        help="Which class's logit is attributed: the predicted or the true "
        "one.",
    )
    parser.add_argument(
        "--drop-region",
        choices=("high", "low"),
        default="high",
        help="Drop among the highest- or the lowest-attribution keys.",
    )
    parser.add_argument(
        "--ig-steps",
        type=_positive,
        default=20,
        help="Integrated-gradient steps (--attribution integrated_gradients).",
    )
    parser.add_argument(
        "--no-addrop", action="store_true", help="Plain fine-tuning."
    )
    parser.add_argument(
        "--no-cross-tuning",
        action="store_true",
        help="AD-DROP on every epoch instead of alternating.",
    )
    parser.add_argument(
        "--stock-embedding-updates",
        action="store_true",
        help="Keep Keras' stock optimizer update of embedding rows that "
        "occur more than once in a batch (by default they are updated as "
        "the dense gradient updates them).",
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="Seed of training and drops."
    )
    parser.add_argument(
        "--train-limit",
        type=_positive,
        default=None,
        help="Train on this many examples, sampled with --sample-seed.",
    )
    parser.add_argument(
        "--few-shot",
        type=_positive,
        default=None,
        help="Train on this many examples of each class.",
    )
    parser.add_argument(
        "--sample-seed",
        type=int,
        default=1234,
        help="Seed of --train-limit / --few-shot sampling (fixed across "
        "training seeds, so every seed sees the same examples).",
    )
    parser.add_argument(
        "--patience",
        type=_positive,
        default=None,
        help="Stop after this many epochs without a better dev score.",
    )
    parser.add_argument(
        "--no-length-aware",
        action="store_true",
        help="Pad every batch to --max-length.",
    )
    parser.add_argument(
        "--no-save-model",
        action="store_true",
        help="Do not write model.keras at the end.",
    )
    parser.add_argument(
        "--strategy",
        choices=("none", "mirrored", "multi-worker"),
        default="none",
        help="Data parallelism over the local devices: MirroredStrategy on "
        "TensorFlow, keras.distribution.DataParallel on JAX; or "
        "MultiWorkerMirroredStrategy over the cluster in TF_CONFIG "
        "(TensorFlow only). PyTorch: none only.",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=None,
        help="Keras' fit verbosity (default: a progress bar on a terminal, "
        "a line per epoch otherwise).",
    )


class _HelpFormatter(argparse.HelpFormatter):
    """Shows each flag's default, except where there is none to show."""

    def _get_help_string(self, action):
        help = action.help or ""
        if (
            "%(default)" in help
            or "default:" in help
            or action.default in (None, False, argparse.SUPPRESS)
            or action.required
        ):
            return help
        return help + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Errors in two lines (the message and where help is), not after the
    whole usage block."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(
            2,
            f"{self.prog}: error: {message}\n"
            f"(`{self.prog} --help` lists the options)\n",
        )


def build_parser():
    parser = _Parser(
        prog="keras-addrop",
        description="AD-DROP fine-tuning of keras-hub models on GLUE.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    finetune = commands.add_parser("finetune", help="Fine-tune on one task.")
    _add_training_arguments(finetune)
    finetune.add_argument("--output", required=True, help="Run folder.")

    sweep = commands.add_parser(
        "sweep", help="A resumable grid over p, q and seeds."
    )
    _add_training_arguments(sweep)
    sweep.add_argument("--output", required=True, help="Sweep folder.")
    sweep.add_argument(
        "--candidate-ratios",
        type=_ratio,
        nargs="+",
        default=[0.3],
        help="The values of p (--candidate-ratio) to run.",
    )
    sweep.add_argument(
        "--drop-rates",
        type=_ratio,
        nargs="+",
        default=[0.3],
        help="The values of q (--drop-rate) to run.",
    )
    sweep.add_argument(
        "--seeds", type=int, nargs="+", default=[42], help="Training seeds."
    )

    summarize = commands.add_parser(
        "summarize", help="Mean +- std tables, dev curves and a p/q heat map."
    )
    summarize.add_argument(
        "folders",
        type=_folder,
        nargs="+",
        help="Run or sweep folders (searched below).",
    )
    summarize.add_argument("--output", default=None, help="Markdown file.")
    summarize.add_argument("--heatmap", default=None, help="PNG file.")
    summarize.add_argument(
        "--curves", default=None, help="PNG file: dev curves per epoch."
    )

    predict = commands.add_parser(
        "predict", help="GLUE test predictions in the leaderboard format."
    )
    predict.add_argument("--task", required=True, help="GLUE task.")
    predict.add_argument(
        "--model", type=_file, required=True, help="A .keras file."
    )
    predict.add_argument("--preset", default=None, help="For the tokenizer.")
    predict.add_argument(
        "--glue-dir",
        type=_folder,
        default=None,
        help="Folder in the GLUE TSV layout.",
    )
    predict.add_argument("--data-dir", default=None, help="tfds data folder.")
    predict.add_argument("--split", default="test", help="Split to predict.")
    predict.add_argument(
        "--max-length", type=_positive, default=128, help="Tokens an example."
    )
    predict.add_argument(
        "--batch-size", type=_positive, default=64, help="Examples a batch."
    )
    predict.add_argument("--output", required=True, help="TSV file.")
    for subparser in (finetune, sweep, summarize, predict):
        _add_backend_logs_argument(subparser)
    return parser


@contextlib.contextmanager
def _native_logs_hidden():
    """Hides what C++ code writes to standard error for the block.

    TensorFlow's and XLA's C++ logging writes to file descriptor 2 directly,
    below Python's `sys.stderr`, and not only while TensorFlow starts: the
    `tf.data` pipeline and some kernels log on first use, from inside `fit`,
    and which lines come depends on the CPU and the build. So the
    descriptor is sent to a temporary file for the whole block, while
    Python's `sys.stderr` (warnings, the command's own errors, tracebacks)
    moves to a copy of the real standard error and stays visible. When the
    block fails, the hidden lines are shown before the error.
    """
    sys.stderr.flush()
    try:
        real = os.dup(2)
    except OSError:  # No standard error at all: nothing to hide.
        yield
        return
    python_stderr = sys.stderr
    try:
        writes_to_descriptor_2 = python_stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # e.g. a StringIO
        writes_to_descriptor_2 = False
    if writes_to_descriptor_2:
        # A stream of its own (never closed here): a logging handler made
        # inside the block keeps writing to the real standard error after it.
        sys.stderr = os.fdopen(
            os.dup(real),
            "w",
            buffering=1,
            encoding=python_stderr.encoding,
            errors="backslashreplace",
        )
    with tempfile.TemporaryFile() as hidden:
        os.dup2(hidden.fileno(), 2)
        try:
            yield
        except BaseException:
            sys.stderr.flush()
            hidden.seek(0)
            os.write(real, hidden.read())
            raise
        finally:
            sys.stderr.flush()
            sys.stderr = python_stderr
            os.dup2(real, 2)
            os.close(real)


def _start():
    """Imports the package and lets TensorFlow find its devices."""
    import tensorflow as tf

    import keras_addrop  # noqa: F401 (registers the serializable classes)

    # keras-hub preprocesses with TensorFlow on every backend; TensorFlow
    # probes for CUDA when it first lists its devices.
    tf.config.list_physical_devices()


def _run(args):
    _start()
    from keras_addrop import reports
    from keras_addrop import runs

    try:
        if args.command == "summarize":
            with runs.user_errors():
                tables = reports.summarize(
                    args.folders, args.output, args.heatmap, args.curves
                )
            print(tables)
        elif args.command == "finetune":
            result = runs.finetune(args)
            print(runs.describe(result))
            output = runs.worker_output(args.output)
            print(
                f"results in {output}: " + ", ".join(sorted(os.listdir(output)))
            )
        elif args.command == "sweep":
            runs.sweep(args)
        else:
            runs.predict(args)
    except runs.RunError as error:
        # The user's error; any other exception is a bug, with its traceback.
        print(f"keras-addrop: error: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv=None):
    """Runs one command; returns the exit code (2 for a user's error).

    The backends' C++ log lines are hidden for the whole command (shown
    with `--backend-logs`, or when the command fails with an error that is
    not the user's).
    """
    args = build_parser().parse_args(argv)
    if args.backend_logs:
        return _run(args)
    with _native_logs_hidden():
        return _run(args)


def entry_point():
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
