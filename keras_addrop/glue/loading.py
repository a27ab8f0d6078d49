"""Loading GLUE from tensorflow-datasets or from local GLUE TSV files."""

import csv
import os

import numpy as np
import tensorflow as tf

from keras_addrop.glue.tasks import get_task


def is_labelled(split):
    return not split.startswith("test")


def read_glue_tsv(task, split, glue_dir):
    """Reads one split of a task from a folder in the GLUE TSV layout.

    `glue_dir` holds one folder per task, named as GLUE names them
    (`MRPC/train.tsv`, `STS-B/dev.tsv`, `MNLI/dev_matched.tsv`, ...). Files
    are read with `csv.QUOTE_NONE` (quotes in GLUE are literal text) and a
    byte-order mark is ignored (MRPC has one). CoLA's train and dev files
    have no header; RTE and QNLI labels are strings, mapped to the
    tensorflow-datasets label order.

    Args:
        task: a task name (`"mrpc"`) or `keras_addrop.glue.GlueTask`.
        split: `"train"`, `"validation"` (or `"dev"`), `"test"`; MNLI has
            `"validation_matched"`, `"validation_mismatched"`,
            `"test_matched"`, `"test_mismatched"`.
        glue_dir: path of the GLUE folder.

    Returns:
        A tuple `(texts, labels)`: `texts` a tuple of one or two lists of
        strings, `labels` an int32 (or float32 for STS-B) numpy array, or
        `None` for the unlabelled test splits.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: for an unknown task or split, or a malformed row (the
            message names the file and line).
    """
    task = get_task(task)
    split = task.resolve_split(split)
    path = os.path.join(os.fspath(glue_dir), task.name, task.tsv_file(split))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No GLUE {task.name} {split} file at {path}. `glue_dir` must "
            "hold one folder per task in the GLUE layout (e.g. "
            f"{task.name}/{task.tsv_file(split)}). Received: "
            f"glue_dir={os.fspath(glue_dir)!r}"
        )
    labelled = is_labelled(split)
    # Test files always have a header; only CoLA's train/dev files lack it.
    has_header = task.tsv_header or not labelled
    text_columns = task.tsv_text_columns
    if not labelled and not task.tsv_header:
        text_columns = task.text_features
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows) if has_header else None
        columns = list(text_columns)
        if labelled:
            columns.append(task.tsv_label_column)
        if header is not None:
            missing = [c for c in columns if c not in header]
            if missing:
                raise ValueError(
                    f"{path}:1: the header lacks the columns {missing}. "
                    f"Received: header={header}"
                )
            columns = [header.index(c) for c in columns]
        texts = [[] for _ in text_columns]
        labels = []
        for row in rows:
            line = rows.line_num
            if not row:
                continue
            if len(row) <= max(columns):
                raise ValueError(
                    f"{path}:{line}: expected at least {max(columns) + 1} "
                    f"tab-separated columns, found {len(row)}."
                )
            for values, column in zip(texts, columns):
                values.append(row[column])
            if labelled:
                try:
                    labels.append(task.parse_label(row[columns[-1]]))
                except ValueError:
                    raise ValueError(
                        f"{path}:{line}: invalid {task.name} label "
                        f"{row[columns[-1]]!r}."
                    ) from None
    if not labelled:
        return tuple(texts), None
    dtype = "float32" if task.is_regression else "int32"
    return tuple(texts), np.asarray(labels, dtype=dtype)


def _features(texts):
    return texts if len(texts) == 2 else texts[0]


def load_glue(task, split, glue_dir=None, data_dir=None, download=True):
    """Loads a GLUE split as a `tf.data.Dataset` for keras-hub classifiers.

    By default from tensorflow-datasets (`glue/<task>`); with `glue_dir`,
    from local files in the GLUE TSV layout (see
    `keras_addrop.glue.read_glue_tsv`). Elements are
    `((text1, text2), label)` for sentence-pair tasks and `(text, label)`
    for single-sentence tasks, which keras-hub classifiers preprocess as is.
    Test splits carry no labels, so they yield the features alone: they can
    be predicted but never evaluated. (To preprocess a pair by hand, pass it
    by keyword, `preprocessor(x=(text1, text2))`: a positional 2-tuple is
    read as `(x, y)`.)

    Args:
        task: a task name (`"mrpc"`, `"STS-B"`, ...) or a `GlueTask`.
        split: `"train"`, `"validation"` (or `"dev"`), `"test"`, or a tfds
            split expression such as `"train[:10%]"` (tfds only).
        glue_dir: a folder in the GLUE TSV layout. Takes precedence over
            tensorflow-datasets when given.
        data_dir: the tensorflow-datasets data folder (defaults to tfds'
            own, `TFDS_DATA_DIR` or `~/tensorflow_datasets`).
        download: whether tfds may download and prepare the data; pass
            `False` to use data prepared earlier, offline.

    Returns:
        An unbatched `tf.data.Dataset`.

    Raises:
        ValueError: for an unknown task or split, or a malformed file.
        FileNotFoundError: if a local file is missing.
        RuntimeError: if tensorflow-datasets cannot provide the data.

    Example:

    ```python
    train = keras_addrop.glue.load_glue(
        "mrpc", "train", glue_dir="path/to/glue"
    )
    classifier.fit(train.batch(32), epochs=3)
    ```
    """
    task = get_task(task)
    if glue_dir is not None:
        texts, labels = read_glue_tsv(task, split, glue_dir)
        features = _features(tuple(tf.constant(t, tf.string) for t in texts))
        if labels is None:
            return tf.data.Dataset.from_tensor_slices(features)
        return tf.data.Dataset.from_tensor_slices((features, labels))
    return _load_tfds(task, split, data_dir, download)


def _tfds_failure(task, split, error):
    """What went wrong in `tfds.load`, and what the user can do about it."""
    cause = error
    while cause is not None and not isinstance(cause, ImportError):
        cause = cause.__cause__ or cause.__context__
    where = f"tensorflow-datasets could not provide {task.tfds_name} "
    where += f"(split {split!r})"
    if cause is not None:
        module = getattr(cause, "name", None) or str(cause)
        return (
            f"{where}: it needs the Python module {module!r}, which is not "
            f"installed ({cause}). Install it (pip install {module}), or "
            "read local GLUE TSV files with `glue_dir=`."
        )
    return (
        f"{where}: {type(error).__name__}: {error}. If this machine has no "
        "network, prepare the data elsewhere and pass its `data_dir` with "
        "`download=False`, or read local GLUE TSV files with `glue_dir=`."
    )


def _load_tfds(task, split, data_dir, download):
    import tensorflow_datasets as tfds

    base = split.split("[")[0]
    resolved = task.resolve_split(base)
    split = resolved + split[len(base) :]
    try:
        dataset = tfds.load(
            task.tfds_name,
            split=split,
            data_dir=data_dir,
            download=download,
            shuffle_files=False,
        )
    except Exception as error:
        raise RuntimeError(_tfds_failure(task, split, error)) from error
    features = task.text_features
    label_dtype = tf.float32 if task.is_regression else tf.int32

    def labelled(example):
        texts = _features(tuple(example[f] for f in features))
        return texts, tf.cast(example["label"], label_dtype)

    def unlabelled(example):
        return _features(tuple(example[f] for f in features))

    fn = labelled if is_labelled(resolved) else unlabelled
    return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
