"""Fine-tuning runs: data + AD-DROP models + callbacks -> results.

The plumbing every run shares is in `common`; each task type has a module
(`text_classification`: GLUE and own sentence files; `token_classification`:
NER; `causal_lm`: language models on texts or prompt/response pairs;
`translation`: seq2seq models on parallel text), which `--task` picks.
"""

import keras

from keras_addrop.runs import causal_lm
from keras_addrop.runs import common
from keras_addrop.runs import text_classification
from keras_addrop.runs import token_classification
from keras_addrop.runs import translation
from keras_addrop.runs.common import EPOCH_LOG
from keras_addrop.runs.common import FAILED_FILE
from keras_addrop.runs.common import RESULTS_FILE
from keras_addrop.runs.common import EpochLog
from keras_addrop.runs.common import RunError
from keras_addrop.runs.common import argparse_copy
from keras_addrop.runs.common import describe
from keras_addrop.runs.common import from_preset
from keras_addrop.runs.common import plot_losses
from keras_addrop.runs.common import resolve_preset
from keras_addrop.runs.common import user_errors
from keras_addrop.runs.common import worker_output
from keras_addrop.runs.text_classification import build_classifier
from keras_addrop.runs.text_classification import classifier_class
from keras_addrop.runs.text_classification import load_arrays
from keras_addrop.runs.text_classification import to_dataset


def task_type(args):
    """The module of the run's task type."""
    task = getattr(args, "task", None)
    if task in token_classification.TASKS:
        return token_classification
    if task in causal_lm.TASKS:
        return causal_lm
    if task in translation.TASKS:
        return translation
    return text_classification


def finetune(args):
    """One fine-tuning run; writes `results.json` and returns its content
    (see `common.finetune`)."""
    return common.finetune(args, task_type(args))


def sweep(args):
    """A resumable grid of p, q and seeds."""
    return common.sweep(args, finetune)


def predict(args):
    """GLUE test predictions (`--task`), or a user's own file (`--data`):
    a sentence file gets a prediction column, a CoNLL or JSON-lines file
    of words its tags, a file of sources (for a seq2seq model) their
    translations."""
    if (args.task is None) == (args.data is None):
        raise RunError(
            "give either --task (a GLUE task's test split) or --data (your "
            "own file)"
        )
    if args.task is not None:
        return text_classification.predict(args)
    import keras_addrop  # noqa: F401 -- registers the classes for loading.
    from keras_addrop.models import ADDropSeq2SeqLM
    from keras_addrop.models import ADDropTokenClassifier

    with user_errors():
        model = keras.saving.load_model(args.model)
    if isinstance(model, ADDropSeq2SeqLM):
        count = translation.predict_file(
            model, args.data, args.output, args.batch_size, args.max_length
        )
        print(f"wrote {count} translations to {args.output}")
        return
    if isinstance(model, ADDropTokenClassifier):
        count = token_classification.predict_file(
            model, args.data, args.output, args.batch_size
        )
        print(f"wrote {count} word tags to {args.output}")
        return
    count = text_classification.predict_file(model, args)
    print(f"wrote {count} predictions to {args.output}")


__all__ = [
    "EPOCH_LOG",
    "FAILED_FILE",
    "RESULTS_FILE",
    "EpochLog",
    "RunError",
    "argparse_copy",
    "build_classifier",
    "classifier_class",
    "describe",
    "finetune",
    "from_preset",
    "load_arrays",
    "plot_losses",
    "predict",
    "resolve_preset",
    "sweep",
    "task_type",
    "to_dataset",
    "user_errors",
    "worker_output",
]
