"""Runs of token classifiers (named-entity recognition): the user's CoNLL
or JSON-lines files (`--task ner`), or tensorflow-datasets' CoNLL-2003
(`--task conll2003`)."""

import dataclasses
import json
import os

import keras
import numpy as np

from keras_addrop import backend
from keras_addrop import glue
from keras_addrop import ner
from keras_addrop import run_options
from keras_addrop.glue.batching import array_batches
from keras_addrop.glue.text_files import json_lines
from keras_addrop.ner.evaluation import preprocess_sentences
from keras_addrop.runs.common import RunError
from keras_addrop.runs.common import adamw
from keras_addrop.runs.common import check_preset_path
from keras_addrop.runs.common import from_preset
from keras_addrop.runs.common import prepare_model
from keras_addrop.runs.common import refuse_options
from keras_addrop.runs.common import refuse_seq2seq_options
from keras_addrop.runs.common import user_errors

TASKS = ("ner", "conll2003")

# Sentence-classification options that mean nothing for tagging, refused
# when given rather than ignored.
_SENTENCE_OPTIONS = ("few_shot", "text_columns", "metric", "glue_dir")


@dataclasses.dataclass
class TaggedData:
    """A run's tagged sentences, read and checked: the training sentences
    (`indices`: the sample it trains on), the dev sentences and the tag set
    (the training file's)."""

    name: str
    train: ner.TaggedSentences
    dev: ner.TaggedSentences
    tag_names: list
    indices: np.ndarray
    # Words cut by --max-length, counted when the sentences are batched.
    truncated_train_words: int = 0
    truncated_dev_words: int = 0


def resolve_data(args):
    """Reads the run's tagged files (or tfds split) and draws its sample."""
    refuse_seq2seq_options(args)
    refuse_options(
        args,
        _SENTENCE_OPTIONS,
        "{flag} is for sentence tasks, not --task {task}",
    )
    if args.pooling != "cls":
        raise RunError(
            "--pooling is for sentence tasks: a token classifier tags every "
            f"token. Received: --pooling={args.pooling}"
        )
    if args.task == "conll2003":
        if args.train_file is not None or args.validation_file is not None:
            raise RunError(
                "--task conll2003 reads tensorflow-datasets; for your own "
                "files use --task ner --train-file ... --validation-file ..."
            )
        with user_errors():
            try:
                train = ner.load_conll2003("train", data_dir=args.data_dir)
                dev = ner.load_conll2003("validation", data_dir=args.data_dir)
            except RuntimeError as error:
                raise RunError(str(error)) from None
        name = "CoNLL-2003"
    else:
        if args.train_file is None or args.validation_file is None:
            raise RunError(
                "--task ner needs --train-file and --validation-file (CoNLL "
                "column files or JSON lines with tokens and tags)"
            )
        with user_errors():
            train = ner.read_tagged_file(args.train_file)
            dev = ner.read_tagged_file(args.validation_file)
        name = os.path.splitext(os.path.basename(args.train_file))[0]
    tag_names = train.tag_names()
    with user_errors():
        dev.tag_ids(tag_names)  # A dev tag the training file never had.
        indices = glue.sample_indices(
            np.zeros(len(train.words)), args.train_limit, seed=args.sample_seed
        )
    return TaggedData(name, train, dev, tag_names, indices)


def build(args, data, preset):
    """The compiled AD-DROP token classifier (without its preprocessor: it
    trains on preprocessed batches), the preprocessor and the backbone
    class."""
    from keras_addrop.models import ADDropTokenClassifier

    check_preset_path(preset)
    with user_errors():
        model = from_preset(
            ADDropTokenClassifier.from_preset,
            preset,
            num_classes=len(data.tag_names),
            tag_names=data.tag_names,
            sequence_length=args.max_length,
            **run_options.model_arguments(args),
        )
    preprocessor, model.preprocessor = model.preprocessor, None
    prepare_model(model, args)
    model.compile(
        optimizer=adamw(args),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # Entity F1 comes from the dev evaluation, over whole sentences.
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )
    return model, preprocessor, type(model.backbone)


def batches(args, data, preprocessor, initial_epoch):
    """The training batches (seeded, length-aware, shuffled as from
    `initial_epoch`); the dev set is scored by `evaluation`."""
    train = data.train
    words = [train.words[i] for i in data.indices]
    tags = train.tag_ids(data.tag_names)
    tags = [tags[i] for i in data.indices]
    x, y, sample_weight = preprocess_sentences(preprocessor, words, tags)
    # Every word that kept its first piece weighs 1 there.
    data.truncated_train_words = int(
        sum(map(len, words)) - np.count_nonzero(sample_weight)
    )
    data.truncated_dev_words = int(
        preprocessor.truncated_words(data.dev.words).sum()
    )
    batches = array_batches(
        x,
        y,
        sample_weight,
        batch_size=args.batch_size,
        length_aware=not args.no_length_aware,
        shuffle=True,
        seed=args.seed,
        initial_epoch=initial_epoch,
        pad_to_multiple_of=backend.WIDTH_MULTIPLE,
        batch_multiple=backend.batch_multiple(),
    )
    return batches, None


def evaluation(args, data, dev, preprocessor, history):
    return ner.EntityEvaluation(
        data.dev.words,
        data.dev.tags,
        data.tag_names,
        preprocessor,
        batch_size=args.batch_size,
        patience=args.patience,
        history=history,
    )


def summary(args, data):
    return {
        "task": data.name,
        "main_metric": "f1",
        "train_examples": int(len(data.indices)),
        "dev_examples": len(data.dev.words),
        "train_words": sum(len(data.train.words[i]) for i in data.indices),
        "dev_words": sum(len(s) for s in data.dev.words),
        # Words beyond --max-length pieces: never trained on, and tagged
        # O (so they count against dev recall).
        "truncated_train_words": data.truncated_train_words,
        "truncated_dev_words": data.truncated_dev_words,
        # Tagging every word O finds no entity.
        "majority_baseline": {"f1": 0.0, "precision": 0.0, "recall": 0.0},
        # `summarize`'s head column: a dense layer on every token.
        "config": {"tag_names": data.tag_names, "pooling": "token"},
    }


def saved_preprocessor(preprocessor):
    # `model.keras` holds it: `predict` needs the model file alone.
    return preprocessor


def predict_file(model, path, output, batch_size):
    """Tags the words of a CoNLL or JSON-lines file; writes the file back
    with the predicted tags (CoNLL: the tag column replaced, or added
    where the file has words only; JSON lines: a `"predicted_tags"` list
    added to each line)."""
    with user_errors():
        if path.endswith((".jsonl", ".json")):
            records = [r for _, r in json_lines(path)]
            for number, record in enumerate(records, start=1):
                if not isinstance(record.get("tokens"), list):
                    raise ValueError(
                        f"{path}:{number}: a line needs a 'tokens' list. "
                        f"Received: {sorted(record)}"
                    )
            words = [[str(w) for w in r["tokens"]] for r in records]
        else:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
            words = _conll_sentences(lines)
    if not any(words):
        raise RunError(f"{path} holds no words to tag")
    tags = model.predict_tags(words, batch_size=batch_size)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        if path.endswith((".jsonl", ".json")):
            for record, sentence in zip(records, tags):
                f.write(json.dumps({**record, "predicted_tags": sentence}))
                f.write("\n")
        else:
            f.writelines(line + "\n" for line in _tagged_lines(lines, tags))
    return sum(len(t) for t in tags)


def _is_word_line(line):
    columns = line.split()
    return bool(columns) and columns[0] != "-DOCSTART-"


def _conll_sentences(lines):
    sentences, sentence = [], []
    for line in lines:
        if _is_word_line(line):
            sentence.append(line.split()[0])
        elif sentence:
            sentences.append(sentence)
            sentence = []
    if sentence:
        sentences.append(sentence)
    return sentences


def _tagged_lines(lines, tags):
    """The file's lines, each word's line with its predicted tag as the
    last column (in the separator the line uses)."""
    tags = iter(tag for sentence in tags for tag in sentence)
    for line in lines:
        if not _is_word_line(line):
            yield line
            continue
        separator = "\t" if "\t" in line else " "
        columns = line.rstrip().split(separator)
        tag = next(tags)
        if len(line.split()) > 1:
            columns[-1] = tag
        else:
            columns.append(tag)
        yield separator.join(columns)
