"""`keras-addrop finetune --task translation` on parallel-text files."""

import json
import math
import os
import shutil
import tempfile

import keras
import numpy as np
import pytest
import sacrebleu

import keras_addrop
from keras_addrop import runs
from keras_addrop.glue.batching import array_batches
from keras_addrop.runs.translation import read_pairs
from keras_addrop.runs.translation import translate
from keras_addrop_cli import build_parser
from tests.cli_test import run
from tests.models.addrop_seq2seq_lm_test import tiny_bart_lm
from tests.test_case import TestCase
from tests.test_case import seq2seq_batch

# A made-up language: each word has its own translation.
WORDS = {" air": " plane", " plane": " air", " to": " red", " red": " to"}


def made_up_pairs(rng, count):
    pairs = []
    for _ in range(count):
        words = rng.choice(list(WORDS), size=rng.integers(1, 4))
        pairs.append(
            (
                "".join(words).strip(),
                "".join(WORDS[w] for w in words).strip(),
            )
        )
    return pairs


class ParallelTextTest(TestCase):
    def test_tsv_and_json_lines_give_the_same_pairs(self):
        folder = self.get_temp_dir()
        pairs = [('She said "hi"', "Elle a dit « salut »"), ("a", "b")]
        tsv = os.path.join(folder, "pairs.tsv")
        with open(tsv, "w") as f:
            f.write("source\ttarget\n")
            f.writelines(f"{s}\t{t}\n\n" for s, t in pairs)
        jsonl = os.path.join(folder, "pairs.jsonl")
        with open(jsonl, "w") as f:
            f.writelines(
                json.dumps({"source": s, "target": t}) + "\n" for s, t in pairs
            )
        # Quotes are kept: no CSV quoting in a TSV.
        self.assertEqual(read_pairs(tsv), pairs)
        self.assertEqual(read_pairs(jsonl), pairs)

    def test_bad_lines_are_named(self):
        folder = self.get_temp_dir()
        cases = {
            "three.tsv": ("a\tb\nc\td\te\n", r"three.tsv:2: expected 2"),
            "empty.tsv": ("a\t\n", r"pair 1 has an empty source or target"),
            "none.tsv": ("\n\n", r"holds no sentence pairs"),
            "keys.jsonl": ('{"source": "a", "text": "b"}\n', r"keys.jsonl:1"),
        }
        for name, (text, message) in cases.items():
            path = os.path.join(folder, name)
            with open(path, "w") as f:
                f.write(text)
            with self.assertRaisesRegex(ValueError, message):
                read_pairs(path)

    def test_seq2seq_batches_cut_source_and_target_to_their_own_widths(self):
        x, y, weights = seq2seq_batch(batch_size=4)
        x = {k: np.asarray(v) for k, v in x.items()}
        # The first pair alone is full on both sides; the others are shorter
        # on the source side by 1 to 3 and on the target side by 2 to 4.
        (batch,) = array_batches(
            {k: v[1:] for k, v in x.items()},
            y[1:],
            weights[1:],
            batch_size=3,
        )
        batch_x, batch_y, batch_weights = batch
        self.assertEqual(batch_x["encoder_token_ids"].shape, (3, 6))
        self.assertEqual(batch_x["encoder_padding_mask"].shape, (3, 6))
        self.assertEqual(batch_x["decoder_token_ids"].shape, (3, 5))
        self.assertEqual(batch_y.shape, (3, 5))
        self.assertEqual(batch_weights.shape, (3, 5))


# In-process, so under each backend the suite runs with.
@pytest.mark.all_backends
class TranslationCommandLineTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = tempfile.mkdtemp()
        cls.preset = os.path.join(cls.root, "preset")
        tiny_bart_lm().save_to_preset(cls.preset)
        rng = np.random.default_rng(0)
        cls.train = os.path.join(cls.root, "train.tsv")
        with open(cls.train, "w") as f:
            f.writelines(f"{s}\t{t}\n" for s, t in made_up_pairs(rng, 12))
        cls.dev = os.path.join(cls.root, "dev.jsonl")
        with open(cls.dev, "w") as f:
            f.writelines(
                json.dumps({"source": s, "target": t}) + "\n"
                for s, t in made_up_pairs(rng, 6)
            )

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)
        super().tearDownClass()

    def options(self):
        return [
            "--task", "translation", "--train-file", self.train,
            "--validation-file", self.dev, "--preset", self.preset,
            "--epochs", "2", "--batch-size", "4", "--max-length", "8",
            "--learning-rate", "1e-2", "--verbose", "0",
            "--addrop-layers", "all", "--candidate-ratio", "0.5",
            "--drop-rate", "0.5",
        ]  # fmt: skip

    def test_a_run_scores_bleu_and_dev_loss_and_saves_the_model(self):
        output = os.path.join(self.get_temp_dir(), "run")
        code, out, err = run(
            "finetune", *self.options(), "--addrop-attention", "encoder,cross",
            "--lora-rank", "2", "--no-cross-tuning", "--output", output,
        )  # fmt: skip
        self.assertEqual(code, 0, msg=err)
        self.assertIn("best bleu", out)
        with open(os.path.join(output, "results.json")) as f:
            result = json.load(f)
        self.assertEqual(result["main_metric"], "bleu")
        self.assertEqual(result["family"], "BartBackbone")
        self.assertEqual(result["train_examples"], 12)
        self.assertEqual(
            result["config"]["addrop_attention"], ["encoder", "cross"]
        )
        for epoch in result["epochs"]:
            self.assertBetween(epoch["addrop_drop_fraction"], 0.1, 0.45)
            dev = epoch["dev"]
            self.assertAllClose(math.log(dev["perplexity"]), dev["loss"])
            self.assertBetween(dev["bleu"], 0.0, 100.0)
        best = max(e["dev"]["bleu"] for e in result["epochs"])
        self.assertEqual(result["best"]["bleu"], best)
        # The baseline copies the sources: every word differs.
        self.assertEqual(result["majority_baseline"]["bleu"], 0.0)

        # The saved model translates the dev file to the last epoch's BLEU.
        model = keras.saving.load_model(os.path.join(output, "model.keras"))
        self.assertIsInstance(model, keras_addrop.models.ADDropBartSeq2SeqLM)
        self.assertEqual(model.addrop_attention, ("encoder", "cross"))
        model.compile(sampler="greedy")
        preprocessor, model.preprocessor = model.preprocessor, None
        pairs = read_pairs(self.dev)
        translations = translate(
            model, preprocessor, [s for s, _ in pairs], max_length=8
        )
        score = sacrebleu.corpus_bleu(translations, [[t for _, t in pairs]])
        self.assertAllClose(score.score, result["last"]["bleu"])
        model.preprocessor = preprocessor
        model.compile(sampler="greedy")
        self.assertEqual(
            [t.strip() for t in model.generate([pairs[0][0]], max_length=8)],
            translations[:1],
        )

        # `predict` writes the same translations back into the file.
        predicted = os.path.join(output, "dev_translated.jsonl")
        code, out, err = run(
            "predict", "--model", os.path.join(output, "model.keras"),
            "--data", self.dev, "--output", predicted, "--max-length", "8",
        )  # fmt: skip
        self.assertEqual(code, 0, msg=err)
        self.assertIn("wrote 6 translations", out)
        with open(predicted) as f:
            records = [json.loads(line) for line in f]
        self.assertEqual([r["translation"] for r in records], translations)
        self.assertEqual([r["source"] for r in records], [s for s, _ in pairs])

    def test_bad_files_and_options_are_named(self):
        folder = self.get_temp_dir()
        code, _, err = run(
            "finetune", *self.options(), "--addrop-attention", "self",
            "--output", os.path.join(folder, "a"),
        )  # fmt: skip
        self.assertEqual(code, 2)
        self.assertIn("Received: addrop_attention='self'", err)
        options = self.options()
        options[options.index("--preset") : options.index("--preset") + 2] = []
        code, _, err = run(
            "finetune", *options, "--output", os.path.join(folder, "b")
        )
        self.assertEqual(code, 2)
        self.assertIn("--task translation needs --preset", err)
        code, _, err = run(
            "finetune", *self.options(), "--metric", "f1",
            "--output", os.path.join(folder, "c"),
        )  # fmt: skip
        self.assertEqual(code, 2)
        self.assertIn("--metric is not for --task translation", err)
        code, _, err = run(
            "finetune", *self.options(), "--strategy", "mirrored",
            "--output", os.path.join(folder, "e"),
        )  # fmt: skip
        self.assertEqual(code, 2)
        self.assertIn("trains on one device for now", err)
        code, _, err = run(
            "finetune", "--task", "rte", "--addrop-attention", "cross",
            "--output", os.path.join(folder, "d"),
        )  # fmt: skip
        self.assertEqual(code, 2)
        self.assertIn("--addrop-attention chooses among", err)
        args = build_parser().parse_args(
            ["finetune", *self.options(), "--output", folder]
        )
        self.assertIs(runs.task_type(args), runs.translation)
