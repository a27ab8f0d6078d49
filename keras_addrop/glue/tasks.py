"""The GLUE task table: features, labels, metrics and file layouts."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class GlueTask:
    """What a GLUE task is, for loading and scoring.

    Attributes:
        name: the task's name as GLUE writes it (`"MRPC"`).
        tfds_name: the tensorflow-datasets config (`"glue/mrpc"`).
        text_features: the tfds feature names of the one or two texts.
        num_classes: number of classes; 1 for regression (STS-B).
        label_names: class names, in label order (tfds order); empty for
            regression.
        metrics: metric names, the first being the task's main metric.
        dev_split: the labelled evaluation split (`"validation"`, or
            `"validation_matched"` for MNLI).
        tsv_header: whether the local TSV files start with a header row.
        tsv_text_columns: header names (or column indices when there is no
            header) of the texts in train/dev files.
        tsv_label_column: header name (or index) of the label.
        tsv_files: split name to file name in the GLUE folder layout.
    """

    name: str
    tfds_name: str
    text_features: tuple
    num_classes: int
    label_names: tuple
    metrics: tuple
    dev_split: str = "validation"
    tsv_header: bool = True
    tsv_text_columns: tuple = ()
    tsv_label_column: object = "label"
    tsv_files: tuple = (
        ("train", "train.tsv"),
        ("validation", "dev.tsv"),
        ("test", "test.tsv"),
    )

    @property
    def is_regression(self):
        return self.num_classes == 1

    @property
    def is_pair(self):
        return len(self.text_features) == 2

    @property
    def splits(self):
        return tuple(name for name, _ in self.tsv_files)

    def tsv_file(self, split):
        return dict(self.tsv_files)[split]

    def resolve_split(self, split):
        """The split's name in this task's files and in tfds: `"dev"` and
        `"validation"` name the task's dev split (MNLI's matched one).

        Raises:
            ValueError: for a split the task does not have.
        """
        split = {"dev": "validation"}.get(split, split)
        if split == "validation" and self.dev_split != "validation":
            split = self.dev_split
        if split not in self.splits:
            raise ValueError(
                f"Unknown split for GLUE {self.name}. Expected one of "
                f"{list(self.splits)} (or 'dev'). Received: split={split!r}"
            )
        return split

    def parse_label(self, value):
        """A TSV label cell as the tfds label (int class or float score)."""
        if self.is_regression:
            return float(value)
        if value in self.label_names:
            return self.label_names.index(value)
        label = int(value)
        if not 0 <= label < self.num_classes:
            raise ValueError(f"label {label} out of range")
        return label


_MNLI_FILES = (
    ("train", "train.tsv"),
    ("validation_matched", "dev_matched.tsv"),
    ("validation_mismatched", "dev_mismatched.tsv"),
    ("test_matched", "test_matched.tsv"),
    ("test_mismatched", "test_mismatched.tsv"),
)

TASKS = {
    task.name.lower().replace("-", ""): task
    for task in [
        GlueTask(
            name="CoLA",
            tfds_name="glue/cola",
            text_features=("sentence",),
            num_classes=2,
            label_names=("unacceptable", "acceptable"),
            metrics=("matthews_corrcoef",),
            tsv_header=False,
            tsv_text_columns=(3,),
            tsv_label_column=1,
        ),
        GlueTask(
            name="SST-2",
            tfds_name="glue/sst2",
            text_features=("sentence",),
            num_classes=2,
            label_names=("negative", "positive"),
            metrics=("accuracy",),
            tsv_text_columns=("sentence",),
        ),
        GlueTask(
            name="MRPC",
            tfds_name="glue/mrpc",
            text_features=("sentence1", "sentence2"),
            num_classes=2,
            label_names=("not_equivalent", "equivalent"),
            metrics=("accuracy", "f1"),
            tsv_text_columns=("#1 String", "#2 String"),
            tsv_label_column="Quality",
        ),
        GlueTask(
            name="STS-B",
            tfds_name="glue/stsb",
            text_features=("sentence1", "sentence2"),
            num_classes=1,
            label_names=(),
            metrics=("pearson", "spearman"),
            tsv_text_columns=("sentence1", "sentence2"),
            tsv_label_column="score",
        ),
        GlueTask(
            name="QQP",
            tfds_name="glue/qqp",
            text_features=("question1", "question2"),
            num_classes=2,
            label_names=("not_duplicate", "duplicate"),
            metrics=("accuracy", "f1"),
            tsv_text_columns=("question1", "question2"),
            tsv_label_column="is_duplicate",
        ),
        GlueTask(
            name="MNLI",
            tfds_name="glue/mnli",
            text_features=("premise", "hypothesis"),
            num_classes=3,
            label_names=("entailment", "neutral", "contradiction"),
            metrics=("accuracy",),
            dev_split="validation_matched",
            tsv_text_columns=("sentence1", "sentence2"),
            tsv_label_column="gold_label",
            tsv_files=_MNLI_FILES,
        ),
        GlueTask(
            name="QNLI",
            tfds_name="glue/qnli",
            text_features=("question", "sentence"),
            num_classes=2,
            label_names=("entailment", "not_entailment"),
            metrics=("accuracy",),
            tsv_text_columns=("question", "sentence"),
        ),
        GlueTask(
            name="RTE",
            tfds_name="glue/rte",
            text_features=("sentence1", "sentence2"),
            num_classes=2,
            label_names=("entailment", "not_entailment"),
            metrics=("accuracy",),
            tsv_text_columns=("sentence1", "sentence2"),
        ),
        GlueTask(
            name="WNLI",
            tfds_name="glue/wnli",
            text_features=("sentence1", "sentence2"),
            num_classes=2,
            label_names=("not_entailment", "entailment"),
            metrics=("accuracy",),
            tsv_text_columns=("sentence1", "sentence2"),
        ),
    ]
}


def get_task(task):
    """The `GlueTask` for a name such as `"mrpc"`, `"STS-B"` or `"sst2"`."""
    if isinstance(task, GlueTask):
        return task
    key = str(task).lower().replace("-", "").replace("_", "")
    if key not in TASKS:
        raise ValueError(
            f"Unknown GLUE task. Expected one of {sorted(TASKS)}. "
            f"Received: task={task!r}"
        )
    return TASKS[key]
