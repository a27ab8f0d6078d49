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
import dataclasses
import importlib.util
import os
import sys
import tempfile
import types


def _load_run_options():
    """`keras_addrop.run_options`, loaded without the package's `__init__`.

    The package's `__init__` imports Keras and TensorFlow. `run_options`
    and the `validation` it imports are plain Python, so they are loaded
    from the package's folder under a name of their own: the flags, their
    checks and their error wording are the package's, before any backend
    starts.
    """
    name = "_keras_addrop_plain"
    if name not in sys.modules:
        spec = importlib.util.find_spec("keras_addrop")  # Not imported.
        folder = types.ModuleType(name)
        folder.__path__ = list(spec.submodule_search_locations)
        sys.modules[name] = folder
    return importlib.import_module(f"{name}.run_options")


run_options = _load_run_options()


def _argument_type(parse):
    """An argparse `type` from a run option's parser: its `ValueError`
    becomes argparse's error, with the parser's message."""

    def convert(text):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _add_option(parser, option, **changes):
    """Adds a run option's flag; `changes` replace fields of the option."""
    option = dataclasses.replace(option, **changes)
    if option.switch:
        parser.add_argument(option.flag, action="store_true", help=option.help)
        return
    kwargs = {}
    if option.parse is not None:
        kwargs["type"] = _argument_type(option.parse)
    if option.nargs is not None:
        kwargs["nargs"] = option.nargs
    help = option.help
    if isinstance(option.default, (tuple, list)):
        # As it is typed, not as Python prints it.
        separator = " " if option.nargs else ","
        shown = separator.join(str(value) for value in option.default)
        help += f" (default: {shown})"
    parser.add_argument(
        option.flag,
        default=option.default,
        choices=option.choices,
        help=help,
        **kwargs,
    )


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
    for option in run_options.OPTIONS:
        _add_option(parser, option)


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
        description="AD-DROP fine-tuning of keras-hub models: sentence "
        "classification (GLUE, your own files) and named entities.",
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
    for option in run_options.SWEEP_OPTIONS:
        _add_option(sweep, option)

    summarize = commands.add_parser(
        "summarize", help="Mean +- std tables, dev curves and a p/q heat map."
    )
    summarize.add_argument(
        "folders",
        type=_argument_type(run_options.existing_folder("folders")),
        nargs="+",
        help="Run or sweep folders (searched below).",
    )
    summarize.add_argument("--output", default=None, help="Markdown file.")
    summarize.add_argument("--heatmap", default=None, help="PNG file.")
    summarize.add_argument(
        "--curves", default=None, help="PNG file: dev curves per epoch."
    )

    predict = commands.add_parser(
        "predict",
        help="GLUE test predictions in the leaderboard format, or "
        "predictions for your own file.",
    )
    predict.add_argument(
        "--task", help="GLUE task: its test split (or --split)."
    )
    predict.add_argument(
        "--data",
        type=_argument_type(run_options.existing_file("data")),
        help="Your own file instead of --task: a CSV, TSV or JSON-lines "
        "file of sentences (written back with a prediction column), or, "
        "for a token classifier, a CoNLL file or JSON lines of tokens "
        "(written back with the predicted tags), or, for a seq2seq model, "
        "sources to translate (TSV: the first field of each line; JSON "
        "lines: source), written back with their greedy translations.",
    )
    predict.add_argument(
        "--model",
        type=_argument_type(run_options.existing_file("model")),
        required=True,
        help="A .keras file.",
    )
    options = run_options.BY_NAME
    _add_option(
        predict,
        options["preset"],
        help="For the tokenizer of a sentence classifier (default: the "
        "preset of the run that wrote --model).",
    )
    _add_option(
        predict,
        options["text_columns"],
        help="The text columns of --data (default: the run's).",
    )
    _add_option(
        predict, options["glue_dir"], help="Folder in the GLUE TSV layout."
    )
    _add_option(predict, options["data_dir"])
    predict.add_argument("--split", default="test", help="Split to predict.")
    _add_option(predict, options["max_length"], help="Tokens an example.")
    _add_option(predict, options["batch_size"], default=64)
    predict.add_argument(
        "--output",
        required=True,
        help="File: a TSV for --task, --data's format for --data.",
    )
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
