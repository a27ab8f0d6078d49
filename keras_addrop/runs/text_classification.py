"""Runs of sentence (and sentence-pair) classifiers and regressors: GLUE
tasks and the user's own CSV, TSV or JSON-lines files."""

import csv
import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf

from keras_addrop import backend
from keras_addrop import glue
from keras_addrop import run_options
from keras_addrop.runs.common import RunError
from keras_addrop.runs.common import adamw
from keras_addrop.runs.common import check_preset_path
from keras_addrop.runs.common import from_preset
from keras_addrop.runs.common import prepare_model
from keras_addrop.runs.common import refuse_seq2seq_options
from keras_addrop.runs.common import resolve_preset
from keras_addrop.runs.common import user_errors


def classifier_class(preset):
    """The AD-DROP classifier of the preset's keras-hub family."""
    from keras_addrop.models.addrop_text_classifier import FAMILIES
    from keras_addrop.models.addrop_text_classifier import stock_task_class
    from keras_addrop.models.addrop_text_classifier import supported_families

    check_preset_path(preset)
    with user_errors():
        stock = from_preset(stock_task_class, preset)
    if stock not in FAMILIES:
        family = stock.__name__.removesuffix("TextClassifier")
        raise RunError(
            f"AD-DROP has no classifier for the {family} family; it supports "
            f"{supported_families()}. Received: --preset={preset}"
        )
    return FAMILIES[stock]


def preprocessor_for(cls, preset, max_length):
    return from_preset(
        cls._stock_cls.preprocessor_cls.from_preset,
        preset,
        sequence_length=max_length,
    )


def build_classifier(cls, preset, pooling, task, addrop):
    """The AD-DROP classifier with a `"cls"` or `"mean"` pooling head."""
    from keras_addrop.models import mean_pooling_classifier

    if pooling == "mean":
        backbone = from_preset(cls.backbone_cls.from_preset, preset)
        return mean_pooling_classifier(backbone, task.num_classes, **addrop)
    return from_preset(
        cls.from_preset,
        preset,
        num_classes=task.num_classes,
        preprocessor=None,
        **addrop,
    )


def load_arrays(task, split, glue_dir=None, data_dir=None):
    """A split as `(texts, labels)` numpy-friendly lists, from either source."""
    if glue_dir is not None:
        return glue.read_glue_tsv(task, split, glue_dir)
    dataset = glue.load_glue(task, split, data_dir=data_dir, download=True)
    texts, labels = None, []
    for features, label in dataset.as_numpy_iterator():
        features = features if isinstance(features, tuple) else (features,)
        if texts is None:
            texts = tuple([] for _ in features)
        for column, value in zip(texts, features):
            column.append(value.decode("utf-8"))
        labels.append(label)
    return texts, np.asarray(labels)


def load_task_data(args):
    """`(task, (texts, labels), (dev_texts, dev_labels))` of a run: a GLUE
    task (`--task`) or the user's own files (`--train-file`)."""
    train_file = getattr(args, "train_file", None)
    validation_file = getattr(args, "validation_file", None)
    if (args.task is None) == (train_file is None):
        raise RunError(
            "give either --task (a GLUE task) or --train-file and "
            "--validation-file (your own data)"
        )
    if train_file is None:
        task = glue.get_task(args.task)
        return (
            task,
            load_arrays(task, "train", args.glue_dir, args.data_dir),
            load_arrays(task, "validation", args.glue_dir, args.data_dir),
        )
    if validation_file is None:
        raise RunError("--train-file needs a --validation-file too")
    return glue.text_file_task(
        train_file,
        validation_file,
        text_columns=args.text_columns,
        label_column=args.label_column,
        metric=args.metric,
    )


def to_dataset(texts, labels=None, indices=None):
    if indices is not None:
        texts = tuple([t[i] for i in indices] for t in texts)
        labels = None if labels is None else labels[indices]
    features = tuple(tf.constant(t, tf.string) for t in texts)
    features = features if len(features) == 2 else features[0]
    if labels is None:
        return tf.data.Dataset.from_tensor_slices(features)
    return tf.data.Dataset.from_tensor_slices((features, labels))


@dataclasses.dataclass
class RunData:
    """A run's data, read and checked: the task, the training examples
    (`indices` into `texts` and `labels`: the sample it trains on) and the
    dev examples."""

    task: object
    texts: tuple
    labels: np.ndarray
    indices: np.ndarray
    dev_texts: tuple
    dev_labels: np.ndarray


def resolve_data(args):
    """Reads the run's task and files and draws its training sample."""
    refuse_seq2seq_options(args)
    with user_errors():
        task, (texts, labels), (dev_texts, dev_labels) = load_task_data(args)
    if args.few_shot is not None and task.is_regression:
        raise RunError(
            f"--few-shot needs a classification task, not {task.name}"
        )
    with user_errors():
        indices = glue.sample_indices(
            labels, args.train_limit, args.few_shot, seed=args.sample_seed
        )
    return RunData(task, texts, labels, indices, dev_texts, dev_labels)


def build(args, data, preset):
    """The compiled AD-DROP classifier, its preprocessor and the preset's
    family (the stock keras-hub classifier class), from the run's model and
    optimizer options."""
    with user_errors():
        cls = classifier_class(preset)
        preprocessor = preprocessor_for(cls, preset, args.max_length)
        addrop = run_options.model_arguments(args)
        model = build_classifier(cls, preset, args.pooling, data.task, addrop)
    prepare_model(model, args)
    task = data.task
    loss = (
        keras.losses.MeanSquaredError()
        if task.is_regression
        else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.compile(
        optimizer=adamw(args),
        loss=loss,
        # keras-hub's default accuracy means nothing for regression.
        metrics=[] if task.is_regression else ["accuracy"],
    )
    return model, preprocessor, cls._stock_cls


def batches(args, data, preprocessor, initial_epoch):
    """The training and dev batches; the training batches shuffled
    (seeded, length-aware) as from `initial_epoch`."""
    length_aware = not args.no_length_aware
    train = glue.preprocessed_batches(
        to_dataset(data.texts, data.labels, data.indices),
        preprocessor,
        args.batch_size,
        length_aware=length_aware,
        shuffle=True,
        seed=args.seed,
        initial_epoch=initial_epoch,
        pad_to_multiple_of=backend.WIDTH_MULTIPLE,
        batch_multiple=backend.batch_multiple(),
    )
    dev = glue.preprocessed_batches(
        to_dataset(data.dev_texts, data.dev_labels),
        preprocessor,
        args.batch_size,
        length_aware=length_aware,
        pad_to_multiple_of=backend.WIDTH_MULTIPLE,
    )
    return train, dev


def evaluation(args, data, dev, preprocessor, history):
    return glue.GlueEvaluation(
        data.task, dev, patience=args.patience, history=history
    )


def summary(args, data):
    task = data.task
    result = {
        "task": task.name,
        "main_metric": task.metrics[0],
        "train_examples": int(len(data.indices)),
        "dev_examples": int(len(data.dev_labels)),
        "majority_baseline": glue.majority_baseline(
            task, data.labels[data.indices], data.dev_labels
        ),
        # Class ids' names, for `predict` on the user's files.
        "label_names": list(task.label_names),
    }
    if args.train_file is not None:  # The columns used, found or given.
        result["config"] = {"text_columns": list(task.text_features)}
    return result


def saved_preprocessor(preprocessor):
    # The classifier trains and is saved without one; `predict` rebuilds it
    # from the preset.
    return None


def predict(args):
    """Writes test-set predictions as `index<TAB>prediction` rows."""
    with user_errors():
        task = glue.get_task(args.task)
    if not os.path.isfile(args.model):
        raise RunError(f"no model file at {args.model}")
    import keras_addrop  # noqa: F401 -- registers the classes for loading.

    model = keras.saving.load_model(args.model)
    preset = resolve_preset(args.preset)
    cls = classifier_class(preset)
    preprocessor = preprocessor_for(cls, preset, args.max_length)
    split = args.split
    with user_errors():
        if args.glue_dir is not None:
            texts, _ = glue.read_glue_tsv(task, split, args.glue_dir)
            dataset = to_dataset(texts)
        else:
            dataset = glue.load_glue(task, split, data_dir=args.data_dir)
        labelled = glue.loading.is_labelled(task.resolve_split(split))
    if labelled:
        dataset = dataset.map(lambda x, y: x)
    outputs = _outputs(model, dataset, preprocessor, args.batch_size)
    predictions = glue.predictions_from_outputs(task, outputs)
    names_in_files = task.name in ("RTE", "QNLI", "MNLI")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        f.write("index\tprediction\n")
        for i, value in enumerate(predictions):
            if task.is_regression:
                value = f"{min(max(float(value), 0.0), 5.0):.3f}"
            elif names_in_files:
                value = task.label_names[int(value)]
            else:
                value = int(value)
            f.write(f"{i}\t{value}\n")
    print(f"wrote {len(predictions)} predictions to {args.output}")


def _outputs(model, texts, preprocessor, batch_size):
    """The model's outputs for a dataset of texts, in order."""
    batches = glue.preprocessed_batches(
        texts, preprocessor, batch_size, labelled=False, length_aware=False
    )
    return np.concatenate(
        [np.asarray(model.predict_on_batch(x)) for x in batches]
    )


def predict_file(model, args):
    """Predicts every row of a CSV, TSV or JSON-lines file (`--data`) and
    writes the rows back, in the file's format, with a `prediction` column:
    the class name (the training file's labels) or the score.

    The preset, text columns and length come from the flags or, where not
    given, from the `results.json` of the run that wrote the model.
    """
    from keras_addrop.glue.text_files import _file_format
    from keras_addrop.glue.text_files import _records

    run = _run_record(args.model)
    config = run.get("config", {})
    preset = resolve_preset(args.preset or config.get("preset"))
    columns = args.text_columns or config.get("text_columns")
    max_length = config.get("max_length", args.max_length)
    with user_errors():
        texts, _, _ = glue.read_text_file(args.data, columns, label_column=None)
        records = [record for _, record in _records(args.data)]
    cls = classifier_class(preset)
    preprocessor = preprocessor_for(cls, preset, max_length)
    outputs = _outputs(model, to_dataset(texts), preprocessor, args.batch_size)
    names = run.get("label_names") or []
    if outputs.shape[-1] == 1:  # A regressor: its score.
        predictions = [float(v) for v in outputs.reshape(-1)]
    else:
        ids = outputs.argmax(-1)
        predictions = [names[i] if names else int(i) for i in ids]
    _write_records(args.output, _file_format(args.data), records, predictions)
    return len(predictions)


def _run_record(model_path):
    """The `results.json` of the run that wrote `model_path`, or `{}`."""
    path = os.path.join(os.path.dirname(model_path), "results.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _write_records(path, kind, records, predictions):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    rows = [{**r, "prediction": p} for r, p in zip(records, predictions)]
    with open(path, "w", encoding="utf-8", newline="") as f:
        if kind == "jsonl":
            f.writelines(json.dumps(row) + "\n" for row in rows)
            return
        writer = csv.DictWriter(
            f, list(rows[0]), delimiter="," if kind == "csv" else "\t"
        )
        writer.writeheader()
        writer.writerows(rows)
