"""Your own labelled text: CSV, TSV and JSON-lines files with named columns.

The files become a task (a `keras_addrop.glue.GlueTask` built from the
training file's labels) and the same `(texts, labels)` arrays that the GLUE
readers give, so the batching, metrics, evaluation callback and results of
GLUE runs serve them unchanged.
"""

import csv
import json
import math
import os

import numpy as np

from keras_addrop.glue.tasks import GlueTask

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
CLASSIFICATION_METRICS = ("accuracy", "f1", "matthews_corrcoef")
REGRESSION_METRICS = ("pearson", "spearman")


def _file_format(path):
    kind = FORMATS.get(os.path.splitext(os.fspath(path))[1].lower())
    if kind is None:
        raise ValueError(
            "Expected a .csv, .tsv, .jsonl or .json (JSON lines) file. "
            f"Received: {os.fspath(path)!r}"
        )
    return kind


def json_lines(path):
    """`(line number, object)` for every non-blank line of a JSON-lines
    file; a line that is not a JSON object is an error naming
    `file:line`."""
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{path}:{number}: not valid JSON ({error.msg})"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}:{number}: expected a JSON object with one "
                    f"field per column, got {type(record).__name__}"
                )
            yield number, record


def _records(path):
    """`(line number, {column: value})` for every example of a file."""
    path = os.fspath(path)
    kind = _file_format(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path!r}")
    if kind == "jsonl":
        yield from json_lines(path)
        return
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="," if kind == "csv" else "\t")
        header = next(reader, None)
        if header is None:
            return
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}:{reader.line_num}: expected {len(header)} "
                    f"fields (the header's: {header}), found {len(row)}"
                )
            yield reader.line_num, dict(zip(header, row))


def _looks_like_text(value):
    """Whether a cell holds text rather than a number or nothing."""
    if not isinstance(value, str) or not value.strip():
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False


def infer_text_columns(path, label_column="label", rows=100):
    """The text columns of a file, found as Hugging Face's `run_glue.py`
    finds them when none are named.

    Among the columns other than `label_column`: `sentence1` and
    `sentence2` if the file has both (a pair); else `sentence`, else
    `text`; else the file's one or two text columns (those holding text,
    not numbers, in its first `rows` rows). Anything else is ambiguous.

    Args:
        path: a CSV, TSV or JSON-lines file (see `read_text_file`).
        label_column: the label column, never a text column.
        rows: how many rows are read to tell text from numbers.

    Returns:
        A tuple of one or two column names.

    Raises:
        ValueError: if the columns are ambiguous (the message lists them),
            or for a bad or empty file.

    Example:

    ```python
    # A file with the columns text,label gives ("text",).
    columns = keras_addrop.glue.infer_text_columns("reviews.csv")
    ```
    """
    path = os.fspath(path)
    columns, text = None, set()
    for count, (_, record) in enumerate(_records(path)):
        if columns is None:
            columns = [c for c in record if c != label_column]
        text.update(c for c in columns if _looks_like_text(record.get(c)))
        if count + 1 >= rows:
            break
    if columns is None:
        raise ValueError(f"{path} holds no examples")
    if "sentence1" in columns and "sentence2" in columns:
        return ("sentence1", "sentence2")
    for name in ("sentence", "text"):
        if name in columns:
            return (name,)
    found = tuple(c for c in columns if c in text)
    if 1 <= len(found) <= 2:
        return found
    raise ValueError(
        f"{path}: cannot tell which columns are the text; its columns are "
        f"{columns + ([label_column] if label_column else [])}. Name one or "
        "two with text_columns= (--text-columns)."
    )


def read_text_file(path, text_columns, label_column="label"):
    """Reads the texts and raw labels of a CSV, TSV or JSON-lines file.

    CSV and TSV files start with a header row naming the columns (fields
    may be quoted as the `csv` module writes them); a JSON-lines file holds
    one object per line, its keys being the columns. The format follows the
    file's extension (`.csv`, `.tsv`, `.jsonl` or `.json`).

    Args:
        path: the file.
        text_columns: the name of the text column, a sequence of one or
            two names (a sentence pair), or `None` to find them with
            `keras_addrop.glue.infer_text_columns`.
        label_column: the name of the label column, or `None` to read texts
            only.

    Returns:
        `(texts, labels, lines)`: `texts` a tuple of one list of strings per
        text column, `labels` a list of the label cells as they are in the
        file (strings, or JSON values), or `None`, and `lines` the line
        number of each example.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: for an unknown extension, an empty file, a missing
            column or a malformed row (the message names the file and line).

    Example:

    ```python
    texts, labels, _ = keras_addrop.glue.read_text_file(
        "reviews.csv", text_columns="review", label_column="stars"
    )
    ```
    """
    path = os.fspath(path)
    if text_columns is None:
        text_columns = infer_text_columns(path, label_column)
    if isinstance(text_columns, str):
        text_columns = (text_columns,)
    text_columns = tuple(text_columns)
    if not 1 <= len(text_columns) <= 2:
        raise ValueError(
            "Expected one or two text columns. Received: "
            f"text_columns={text_columns!r}"
        )
    columns = text_columns + (() if label_column is None else (label_column,))
    texts = tuple([] for _ in text_columns)
    labels = None if label_column is None else []
    lines = []
    for number, record in _records(path):
        missing = [c for c in columns if c not in record]
        if missing:
            raise ValueError(
                f"{path}:{number}: no column {missing[0]!r}; the row has "
                f"{sorted(record)}. Name the columns with text_columns= "
                "and label_column= (--text-columns, --label-column)."
            )
        for column, values in zip(text_columns, texts):
            value = record[column]
            if not isinstance(value, str):
                raise ValueError(
                    f"{path}:{number}: the text column {column!r} holds "
                    f"{value!r}, not a string"
                )
            values.append(value)
        if labels is not None:
            value = record[label_column]
            if value is None or (isinstance(value, str) and not value.strip()):
                raise ValueError(
                    f"{path}:{number}: the label column {label_column!r} "
                    "is empty"
                )
            labels.append(value)
        lines.append(number)
    if not lines:
        raise ValueError(f"{path} holds no examples")
    return texts, labels, lines


def _as_number(value, kind):
    """A label cell as an int or float, or `None` if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = value
    else:
        try:
            number = int(value) if kind is int else float(value)
        except ValueError:
            return None
    if kind is int and float(number) != int(number):
        return None
    if kind is float and not math.isfinite(float(number)):
        return None
    return kind(number)


def text_file_task(
    train_file,
    validation_file,
    text_columns=None,
    label_column="label",
    metric=None,
    name=None,
):
    """A task and its data from a training and a validation file.

    The labels of the training file decide the task: numbers with a
    fraction (or any float in a JSON file) make a regression task (one
    output, Pearson and Spearman correlation); whole numbers or names make a
    classification task whose classes are the training labels in sorted
    order (numbers numerically). Binary tasks report accuracy and F1 of the
    second class, others accuracy, unless `metric` names the main metric.

    Args:
        train_file: a CSV, TSV or JSON-lines file (see
            `keras_addrop.glue.read_text_file`).
        validation_file: the same for validation.
        text_columns: one or two text column names, or `None` (the
            default) to find them in the training file as Hugging Face's
            `run_glue.py` does (see `keras_addrop.glue.infer_text_columns`).
        label_column: the label column's name. Defaults to `"label"`.
        metric: `None`, or the main metric: `"accuracy"`, `"f1"` or
            `"matthews_corrcoef"` for classification, `"pearson"` or
            `"spearman"` for regression.
        name: the task's name in results. Defaults to the training file's
            name without its extension.

    Returns:
        `(task, (train_texts, train_labels), (dev_texts, dev_labels))`, the
        texts as in `read_text_file` and the labels an int32 (classes) or
        float32 (regression) numpy array, as `keras_addrop.glue.read_glue_tsv`
        gives them.

    Raises:
        ValueError: for a bad file or row (file and line named), text
            columns that cannot be inferred, a single class, a validation
            label the training file does not have, or a metric that does not
            fit the labels.

    Example:

    ```python
    task, train, dev = keras_addrop.glue.text_file_task(
        "train.csv", "dev.csv", text_columns=("question", "answer")
    )
    ```
    """
    if text_columns is None:
        text_columns = infer_text_columns(train_file, label_column)
    texts, raw, _ = read_text_file(train_file, text_columns, label_column)
    dev_texts, dev_raw, dev_lines = read_text_file(
        validation_file, text_columns, label_column
    )
    integers = [_as_number(v, int) for v in raw]
    floats = [_as_number(v, float) for v in raw]
    if all(v is not None for v in floats) and (
        any(v is None for v in integers)
        or any(isinstance(v, float) for v in raw)
    ):
        regression, names = True, ()
    else:
        regression = False
        if all(v is not None for v in integers):
            names = tuple(str(v) for v in sorted(set(integers)))
            keys = [str(v) for v in integers]
        else:
            names = tuple(sorted({str(v) for v in raw}))
            keys = [str(v) for v in raw]
        if len(names) < 2:
            raise ValueError(
                f"{os.fspath(train_file)}: every example has the label "
                f"{names[0]!r}; classification needs at least two classes"
            )
    if regression:
        labels = np.asarray(floats, "float32")
        dev_labels = []
        for value, line in zip(dev_raw, dev_lines):
            number = _as_number(value, float)
            if number is None:
                raise ValueError(
                    f"{os.fspath(validation_file)}:{line}: the label "
                    f"{value!r} is not a number, as the training labels are"
                )
            dev_labels.append(number)
        dev_labels = np.asarray(dev_labels, "float32")
    else:
        index = {name: i for i, name in enumerate(names)}
        labels = np.asarray([index[k] for k in keys], "int32")
        dev_labels = []
        for value, line in zip(dev_raw, dev_lines):
            number = _as_number(value, int)
            key = str(value if number is None else number)
            if key not in index:
                raise ValueError(
                    f"{os.fspath(validation_file)}:{line}: the label "
                    f"{value!r} is not among the training labels {names}"
                )
            dev_labels.append(index[key])
        dev_labels = np.asarray(dev_labels, "int32")
    metrics = _metrics(regression, len(names), metric)
    columns = (text_columns,) if isinstance(text_columns, str) else text_columns
    task = GlueTask(
        name=name or os.path.splitext(os.path.basename(train_file))[0],
        tfds_name=None,
        text_features=tuple(columns),
        num_classes=1 if regression else len(names),
        label_names=names,
        metrics=metrics,
    )
    return task, (texts, labels), (dev_texts, dev_labels)


def _metrics(regression, num_classes, metric):
    allowed = REGRESSION_METRICS if regression else CLASSIFICATION_METRICS
    default = (
        REGRESSION_METRICS
        if regression
        else ("accuracy", "f1")
        if num_classes == 2
        else ("accuracy",)
    )
    if metric is None:
        return default
    if metric not in allowed or (metric == "f1" and num_classes != 2):
        kind = "regression" if regression else f"{num_classes} classes"
        raise ValueError(
            f"The metric does not fit these labels ({kind}): expected one of "
            f"{[m for m in allowed if m != 'f1' or num_classes == 2]}. "
            f"Received: metric={metric!r}"
        )
    return (metric,) + tuple(m for m in default if m != metric)
