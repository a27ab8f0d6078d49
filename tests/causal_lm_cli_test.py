"""`keras-addrop finetune --task causal-lm` on JSON-lines files."""

import json
import math
import os
import shutil
import tempfile

import keras
import numpy as np
import pytest

import keras_addrop
from keras_addrop import runs
from keras_addrop_cli import build_parser
from tests.cli_test import interrupted_and_resumed
from tests.cli_test import run
from tests.models.addrop_causal_lm_test import tiny_gpt2_lm
from tests.test_case import TestCase

WORDS = [" air", " airplane", " at", " airport"]


def write_lines(path, records):
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def random_text(rng):
    return "".join(rng.choice(WORDS, size=rng.integers(1, 4)))


# In-process, so under each backend the suite runs with.
@pytest.mark.all_backends
class CausalLMCommandLineTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = tempfile.mkdtemp()
        cls.preset = os.path.join(cls.root, "preset")
        tiny_gpt2_lm().save_to_preset(cls.preset)
        rng = np.random.default_rng(0)
        cls.files = {}
        for kind in ("text", "pairs"):
            for split, count in (("train", 12), ("dev", 6)):
                if kind == "text":
                    records = [{"text": random_text(rng)} for _ in range(count)]
                else:
                    records = [
                        {
                            "prompt": random_text(rng),
                            "response": random_text(rng),
                        }
                        for _ in range(count)
                    ]
                path = os.path.join(cls.root, f"{kind}_{split}.jsonl")
                write_lines(path, records)
                cls.files[kind, split] = path

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)
        super().tearDownClass()

    def options(self, kind):
        return [
            "--task", "causal-lm", "--train-file", self.files[kind, "train"],
            "--validation-file", self.files[kind, "dev"], "--preset",
            self.preset, "--epochs", "2", "--batch-size", "4",
            "--max-length", "8", "--learning-rate", "1e-2", "--verbose", "0",
            "--addrop-layers", "all", "--candidate-ratio", "0.5",
            "--drop-rate", "0.5",
        ]  # fmt: skip

    def test_pairs_with_lora_score_perplexity_and_save_the_model(self):
        output = os.path.join(self.get_temp_dir(), "run")
        code, out, err = run(
            "finetune", *self.options("pairs"), "--lora-rank", "2",
            "--no-cross-tuning", "--output", output,
        )  # fmt: skip
        self.assertEqual(code, 0, msg=err)
        self.assertIn("best perplexity", out)
        with open(os.path.join(output, "results.json")) as f:
            result = json.load(f)
        self.assertEqual(result["main_metric"], "perplexity")
        self.assertEqual(result["examples"], "prompt/response")
        self.assertEqual(result["train_examples"], 12)
        self.assertEqual(result["family"], "GPT2Backbone")
        self.assertEqual(result["config"]["lora_rank"], 2)
        for epoch in result["epochs"]:
            self.assertBetween(epoch["addrop_drop_fraction"], 0.1, 0.4)
            dev = epoch["dev"]
            self.assertAllClose(math.log(dev["perplexity"]), dev["loss"])
        best = min(e["dev"]["perplexity"] for e in result["epochs"])
        self.assertEqual(result["best"]["perplexity"], best)
        baseline = result["majority_baseline"]
        self.assertGreater(baseline["perplexity"], 1.0)

        # The saved model scores the dev file as the last epoch did.
        model = keras.saving.load_model(os.path.join(output, "model.keras"))
        self.assertIsInstance(model, keras_addrop.models.ADDropGPT2CausalLM)
        # Keras merges LoRA into the kernels when it saves.
        args = build_parser().parse_args(
            ["finetune", *self.options("pairs"), "--output", output]
        )
        data = runs.causal_lm.resolve_data(args)
        _, dev = runs.causal_lm.batches(args, data, model.preprocessor, 0)
        model.preprocessor = None  # The batches are preprocessed.
        model.compile(
            weighted_metrics=[
                keras_addrop.runs.causal_lm.keras_hub.metrics.Perplexity(
                    from_logits=True
                )
            ]
        )
        scores = model.evaluate(dev, return_dict=True, verbose=0)
        self.assertAllClose(
            scores["perplexity"], result["last"]["perplexity"], rtol=1e-4
        )

    def test_an_interrupted_text_run_resumes_to_the_same_scores(self):
        expected, resumed = interrupted_and_resumed(
            self, self.options("text"), self.get_temp_dir()
        )
        self.assertEqual(resumed["examples"], "text")
        self.assertLen(resumed["epochs"], 2)
        for epoch, reference in zip(resumed["epochs"], expected["epochs"]):
            self.assertAllClose(
                epoch["dev"]["perplexity"],
                reference["dev"]["perplexity"],
                rtol=1e-5,
            )

    def test_bad_files_and_options_are_named(self):
        folder = self.get_temp_dir()
        mixed = os.path.join(folder, "mixed.jsonl")
        write_lines(
            mixed, [{"text": " air"}, {"prompt": " a", "response": " b"}]
        )
        code, _, err = run(
            "finetune", *self.options("text"), "--train-file", mixed,
            "--output", os.path.join(folder, "a"),
        )  # fmt: skip
        self.assertEqual(code, 2)
        self.assertIn("mixed.jsonl:2: the file mixes texts", err)
        code, _, err = run(
            "finetune", *self.options("text"), "--validation-file",
            self.files["pairs", "dev"], "--output", os.path.join(folder, "b"),
        )  # fmt: skip
        self.assertEqual(code, 2)
        self.assertIn("has ['prompt', 'response'] where", err)
        code, _, err = run(
            "finetune", *self.options("text"), "--metric", "f1",
            "--output", os.path.join(folder, "c"),
        )  # fmt: skip
        self.assertEqual(code, 2)
        self.assertIn("--metric is not for --task causal-lm", err)
