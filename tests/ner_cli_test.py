"""`keras-addrop finetune --task ner`, `predict --data` and `summarize` on
tagged files."""

import json
import os

import keras
import numpy as np

import keras_addrop
from keras_addrop.ner import entity_scores
from keras_addrop.ner import read_tagged_file
from tests.cli_test import WORDS
from tests.cli_test import _Fixtures
from tests.cli_test import interrupted_and_resumed
from tests.cli_test import run

ENTITIES = {"cat": "ANI", "dog": "ANI", "mat": "OBJ"}


def write_conll(path, count, rng, tagged=True):
    """CoNLL-2003's four columns (words that follow one another inside an
    entity: B- then I-), or words alone."""
    with open(path, "w") as f:
        f.write("-DOCSTART- -X- -X- O\n\n")
        for _ in range(count):
            previous = None
            for word in rng.choice(WORDS, size=rng.integers(1, 9)):
                kind = ENTITIES.get(word)
                tag = "O"
                if kind is not None:
                    tag = ("I-" if previous == kind else "B-") + kind
                previous = kind
                f.write(f"{word} NN I-NP {tag}\n" if tagged else f"{word}\n")
            f.write("\n")


class NerCommandLineTest(_Fixtures):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rng = np.random.default_rng(0)
        cls.train = os.path.join(cls.root, "train.conll")
        cls.dev = os.path.join(cls.root, "dev.conll")
        write_conll(cls.train, 40, rng)
        write_conll(cls.dev, 12, rng)
        cls.ner = [
            "--task", "ner", "--train-file", cls.train, "--validation-file",
            cls.dev, "--preset", cls.preset, "--epochs", "2",
            "--batch-size", "8", "--max-length", "16", "--learning-rate",
            "1e-2", "--verbose", "0",
        ]  # fmt: skip

    def test_finetune_scores_entities_and_predict_writes_tags_back(self):
        output = os.path.join(self.get_temp_dir(), "run")
        code, out, err = run(
            "finetune", *self.ner, "--candidate-ratio", "0.5", "--drop-rate",
            "0.5", "--epochs", "4", "--output", output,
        )  # fmt: skip
        self.assertEqual(code, 0, msg=err)
        self.assertIn("train addrop-gradient: best f1", out)
        with open(os.path.join(output, "results.json")) as f:
            result = json.load(f)
        self.assertEqual(result["main_metric"], "f1")
        self.assertEqual(result["train_examples"], 40)
        self.assertEqual(result["dev_examples"], 12)
        self.assertEqual(result["family"], "BertBackbone")
        self.assertEqual(
            result["config"]["tag_names"],
            ["O", "B-ANI", "B-OBJ", "I-ANI", "I-OBJ"],
        )
        fractions = [e["addrop_drop_fraction"] for e in result["epochs"]]
        self.assertEqual(fractions[::2], [0.0, 0.0])  # Cross-tuning.
        self.assertGreater(min(fractions[1::2]), 0.1)

        # The last epoch's scores are the saved model's, over the dev file.
        model = keras.saving.load_model(os.path.join(output, "model.keras"))
        self.assertIsInstance(model, keras_addrop.models.ADDropTokenClassifier)
        dev = read_tagged_file(self.dev)
        expected = entity_scores(dev.tags, model.predict_tags(dev.words))
        self.assertGreater(expected["f1"], 0.0)
        for key in ("f1", "precision", "recall"):
            self.assertAllClose(result["last"][key], expected[key])
        self.assertEqual(result["last"]["types"], expected["types"])

        # The model file alone tags a CoNLL file, in its layout.
        tagged = os.path.join(self.get_temp_dir(), "dev.tags.conll")
        code, out, err = run(
            "predict", "--model", os.path.join(output, "model.keras"),
            "--data", self.dev, "--output", tagged,
        )  # fmt: skip
        self.assertEqual(code, 0, msg=err)
        self.assertIn("wrote 48 word tags", out)
        with open(self.dev) as f, open(tagged) as g:
            original, written = f.read().splitlines(), g.read().splitlines()
        self.assertLen(written, len(original))
        flat = iter(t for s in model.predict_tags(dev.words) for t in s)
        for before, after in zip(original, written):
            if not before or before.startswith("-DOCSTART-"):
                self.assertEqual(after, before)
            else:
                self.assertEqual(after.split()[:3], before.split()[:3])
                self.assertEqual(after.split()[3], next(flat))

        # Words alone get a tag column; JSON lines a predicted_tags list.
        words_only = os.path.join(self.get_temp_dir(), "words.txt")
        write_conll(words_only, 3, np.random.default_rng(5), tagged=False)
        code, _, err = run(
            "predict", "--model", os.path.join(output, "model.keras"),
            "--data", words_only, "--output", words_only + ".out",
        )  # fmt: skip
        self.assertEqual(code, 0, msg=err)
        with open(words_only + ".out") as f:
            lines = [line.split() for line in f if line.strip()][1:]
        self.assertTrue(all(len(columns) == 2 for columns in lines))
        jsonl = os.path.join(self.get_temp_dir(), "dev.jsonl")
        with open(jsonl, "w") as f:
            for sentence in dev.words[:3]:
                f.write(json.dumps({"id": 1, "tokens": sentence}) + "\n")
        code, _, err = run(
            "predict", "--model", os.path.join(output, "model.keras"),
            "--data", jsonl, "--output", jsonl + ".out",
        )  # fmt: skip
        self.assertEqual(code, 0, msg=err)
        with open(jsonl + ".out") as f:
            records = [json.loads(line) for line in f]
        self.assertEqual(
            [r["predicted_tags"] for r in records],
            model.predict_tags(dev.words[:3]),
        )
        self.assertEqual(records[0]["id"], 1)

        code, out, _ = run("summarize", output)
        self.assertEqual(code, 0)
        self.assertIn("| train | 40 | token |", out)
        self.assertIn("| f1 |", out)

    def test_an_interrupted_run_resumes_to_the_same_scores(self):
        expected, resumed = interrupted_and_resumed(
            self, self.ner, self.get_temp_dir()
        )
        self.assertLen(resumed["epochs"], 2)
        for epoch, reference in zip(resumed["epochs"], expected["epochs"]):
            self.assertAllClose(epoch["dev"]["f1"], reference["dev"]["f1"])
            self.assertAllClose(
                epoch["dev"]["loss"], reference["dev"]["loss"], atol=1e-5
            )

    def test_json_lines_files_and_the_plain_log_probability_method(self):
        folder = self.get_temp_dir()
        paths = {}
        for split in ("train", "dev"):
            sentences = read_tagged_file(getattr(self, split))
            paths[split] = os.path.join(folder, f"{split}.jsonl")
            with open(paths[split], "w") as f:
                for words, tags in zip(sentences.words, sentences.tags):
                    record = {"tokens": words, "ner_tags": tags}
                    f.write(json.dumps(record) + "\n")
        options = list(self.ner)
        options[options.index(self.train)] = paths["train"]
        options[options.index(self.dev)] = paths["dev"]
        code, out, err = run(
            "finetune", *options, "--attribution-score", "log_probability",
            "--no-cross-tuning", "--no-save-model", "--train-limit", "20",
            "--output", os.path.join(folder, "run"),
        )  # fmt: skip
        self.assertEqual(code, 0, msg=err)
        self.assertIn("addrop-gradient-log-probability-no-cross-tuning", out)
        with open(os.path.join(folder, "run", "results.json")) as f:
            result = json.load(f)
        self.assertEqual(result["train_examples"], 20)
        self.assertGreater(result["epochs"][0]["addrop_drop_fraction"], 0.1)

    def test_errors_name_the_problem(self):
        folder = self.get_temp_dir()
        unseen = os.path.join(folder, "unseen.conll")
        with open(unseen, "w") as f:
            f.write("cat B-PER\n")
        for argv, message in (
            (["--task", "ner", "--train-file", self.train],
             "--task ner needs --train-file and --validation-file"),
            (["--task", "ner", "--train-file", self.train,
              "--validation-file", unseen],
             "The tag 'B-PER' of " + unseen),
            ([*self.ner, "--few-shot", "2"],
             "--few-shot is for sentence tasks, not --task ner"),
            ([*self.ner, "--pooling", "mean"], "--pooling is for sentence"),
        ):  # fmt: skip
            code, _, err = run(
                "finetune", "--preset", self.preset, *argv, "--output",
                os.path.join(folder, "x"),
            )  # fmt: skip
            self.assertEqual(code, 2, msg=err)
            self.assertIn(message, err)
        self.assertFalse(os.path.exists(os.path.join(folder, "x")))
        code, _, err = run(
            "predict", "--model", self.train, "--output", "x.tsv"
        )
        self.assertEqual(code, 2)
        self.assertIn("give either --task", err)


class OwnSentenceFilePredictTest(_Fixtures):
    def test_predict_writes_the_file_back_with_a_label_column(self):
        folder = self.get_temp_dir()
        rng = np.random.default_rng(1)
        paths = {}
        for split, count in (("train", 16), ("dev", 8), ("new", 5)):
            paths[split] = os.path.join(folder, f"{split}.tsv")
            with open(paths[split], "w") as f:
                f.write("id\treview" + ("" if split == "new" else "\tmood"))
                f.write("\n")
                for i in range(count):
                    label = (
                        "" if split == "new" else ("\thappy", "\tsad")[i % 2]
                    )
                    text = " ".join(rng.choice(WORDS, size=4))
                    f.write(f"{i}\t{text}{label}\n")
        output = os.path.join(folder, "run")
        code, _, err = run(
            "finetune", "--train-file", paths["train"], "--validation-file",
            paths["dev"], "--text-columns", "review", "--label-column",
            "mood", "--preset", self.preset, "--epochs", "1",
            "--max-length", "16", "--verbose", "0", "--output", output,
        )  # fmt: skip
        self.assertEqual(code, 0, msg=err)
        written = os.path.join(folder, "new.predicted.tsv")
        # The preset, columns and class names come from the run.
        code, out, err = run(
            "predict", "--model", os.path.join(output, "model.keras"),
            "--data", paths["new"], "--output", written,
        )  # fmt: skip
        self.assertEqual(code, 0, msg=err)
        self.assertIn("wrote 5 predictions", out)
        with open(written) as f:
            rows = [line.split("\t") for line in f.read().splitlines()]
        self.assertEqual(rows[0], ["id", "review", "prediction"])
        self.assertLen(rows, 6)
        self.assertEqual([r[0] for r in rows[1:]], ["0", "1", "2", "3", "4"])
        self.assertTrue(all(r[2] in ("happy", "sad") for r in rows[1:]))
