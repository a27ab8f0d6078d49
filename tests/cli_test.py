import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from unittest import mock

import keras_hub
import numpy as np

from keras_addrop import glue
from keras_addrop import run_options
from keras_addrop import runs
from keras_addrop_cli import build_parser
from keras_addrop_cli import main
from tests.test_case import SCRIPTS
from tests.test_case import TestCase
from tests.test_case import tiny_backbone

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away"]
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS


def write_rte(folder, rng):
    os.makedirs(os.path.join(folder, "RTE"))

    def sentence():
        return " ".join(rng.choice(WORDS, size=rng.integers(2, 7)))

    for split, count, labelled in (
        ("train", 24, True),
        ("dev", 12, True),
        ("test", 7, False),
    ):
        header = "index\tsentence1\tsentence2" + ("\tlabel" if labelled else "")
        rows = [header]
        for i in range(count):
            row = f"{i}\t{sentence()}\t{sentence()}"
            if labelled:
                row += "\t" + ("entailment" if i % 2 else "not_entailment")
            rows.append(row)
        with open(os.path.join(folder, "RTE", f"{split}.tsv"), "w") as f:
            f.write("\n".join(rows) + "\n")


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as error:  # argparse's errors
            code = error.code
    return code, out.getvalue(), err.getvalue()


def interrupted_and_resumed(test, options, folder):
    """`finetune` with `options` run whole, and run again after an
    interruption in its second epoch: `(whole results, resumed results)`."""
    whole = os.path.join(folder, "whole")
    test.assertEqual(run("finetune", *options, "--output", whole)[0], 0)
    args = build_parser().parse_args(
        ["finetune", *options, "--output", os.path.join(folder, "cut")]
    )
    original = runs.EpochLog.on_epoch_end

    def stop_in_epoch_2(log, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(log, epoch, logs)

    with (
        mock.patch.object(runs.EpochLog, "on_epoch_end", stop_in_epoch_2),
        test.assertRaises(KeyboardInterrupt),
    ):
        runs.finetune(args)
    resumed = runs.finetune(args)
    test.assertEqual(resumed["resumed_after_epoch"], 1)
    with open(os.path.join(whole, "results.json")) as f:
        return json.load(f), resumed


class _Fixtures(TestCase):
    """A tiny keras-hub preset folder and a tiny RTE folder, once a class."""

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)
        super().tearDownClass()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = tempfile.mkdtemp()
        cls.glue_dir = os.path.join(cls.root, "glue")
        write_rte(cls.glue_dir, np.random.default_rng(0))
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY)
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=16
        )
        classifier = keras_hub.models.BertTextClassifier(
            tiny_backbone(vocabulary_size=len(VOCABULARY)),
            num_classes=2,
            preprocessor=preprocessor,
        )
        cls.preset = os.path.join(cls.root, "preset")
        classifier.save_to_preset(cls.preset)
        cls.common = [
            "--task", "rte", "--preset", cls.preset, "--glue-dir",
            cls.glue_dir, "--epochs", "2", "--batch-size", "8",
            "--max-length", "16", "--learning-rate", "1e-3", "--verbose", "0",
        ]  # fmt: skip


class CommandLineTest(_Fixtures):
    def test_finetune_on_own_csv_files_writes_the_same_results(self):
        folder = self.get_temp_dir()
        rng = np.random.default_rng(1)
        paths = {}
        for split, count in (("train", 24), ("dev", 8)):
            paths[split] = os.path.join(folder, f"{split}.csv")
            with open(paths[split], "w") as f:
                f.write("first,second,label\n")
                for i in range(count):
                    words = rng.choice(WORDS, size=6)
                    f.write(
                        f"{' '.join(words[:3])},{' '.join(words[3:])},"
                        f"{'same' if i % 2 else 'different'}\n"
                    )
        output = os.path.join(folder, "run")
        # No --text-columns: the file's two text columns are found.
        own = [
            "--train-file", paths["train"], "--validation-file",
            paths["dev"], "--preset", self.preset, "--epochs", "2",
            "--batch-size", "8", "--max-length", "16", "--verbose", "0",
            "--no-save-model",
        ]  # fmt: skip
        code, out, err = run("finetune", *own, "--output", output)
        self.assertEqual(code, 0, msg=err)
        self.assertIn("train addrop-gradient: best accuracy", out)
        with open(os.path.join(output, "results.json")) as f:
            result = json.load(f)
        self.assertEqual(result["task"], "train")
        self.assertEqual(result["main_metric"], "accuracy")
        self.assertEqual(result["train_examples"], 24)
        self.assertEqual(result["dev_examples"], 8)
        self.assertEqual(set(result["best"]), {"accuracy", "f1", "loss"})
        self.assertEqual(result["config"]["train_file"], paths["train"])
        self.assertEqual(result["config"]["text_columns"], ["first", "second"])
        self.assertEqual(result["family"], "BertTextClassifier")

        code, _, err = run("finetune", *own, "--task", "rte", "--output", "x")
        self.assertEqual(code, 2)
        self.assertIn("give either --task (a GLUE task) or --train-file", err)
        code, _, err = run(
            "finetune", *own, "--text-columns", "first", "second",
            "--label-column", "gold", "--output", "x",
        )  # fmt: skip
        self.assertEqual(code, 2)
        self.assertIn("train.csv:2: no column 'gold'", err)
        self.assertFalse(os.path.exists("x"))

    def test_a_roformer_v2_preset_fine_tunes_with_either_head(self):
        # A family with neither BERT's attention nor a padding-mask input.
        tokenizer = keras_hub.models.RoformerV2Tokenizer(vocabulary=VOCABULARY)
        classifier = keras_hub.models.RoformerV2TextClassifier(
            keras_hub.models.RoformerV2Backbone(
                vocabulary_size=len(VOCABULARY),
                num_layers=2,
                num_heads=2,
                hidden_dim=8,
                intermediate_dim=16,
                head_size=4,
            ),
            num_classes=2,
            preprocessor=keras_hub.models.RoformerV2TextClassifierPreprocessor(
                tokenizer, sequence_length=16
            ),
        )
        preset = os.path.join(self.get_temp_dir(), "roformer")
        classifier.save_to_preset(preset)
        options = [
            option if option != self.preset else preset
            for option in self.common
        ]
        for pooling in ("cls", "mean"):
            output = os.path.join(self.get_temp_dir(), pooling)
            code, _, err = run(
                "finetune", *options, "--pooling", pooling,
                "--candidate-ratio", "0.5", "--drop-rate", "0.5",
                "--no-save-model", "--output", output,
            )  # fmt: skip
            self.assertEqual(code, 0, msg=err)
            with open(os.path.join(output, "results.json")) as f:
                result = json.load(f)
            self.assertEqual(result["family"], "RoformerV2TextClassifier")
            fractions = [e["addrop_drop_fraction"] for e in result["epochs"]]
            self.assertGreater(fractions[1], 0.1)

    def test_stock_embedding_updates_flag_turns_the_row_merge_off(self):
        parser = build_parser()
        stock = ["--stock-embedding-updates"]
        for flags, merge in (([], True), (stock, False)):
            args = parser.parse_args(
                ["finetune", *self.common, "--output", "x", *flags]
            )
            options = run_options.model_arguments(args)
            self.assertIs(options["merge_repeated_rows"], merge)
            self.assertIs(
                run_options.recorded_config(args)["stock_embedding_updates"],
                not merge,
            )

    def test_finetune_writes_results_logs_plot_and_model(self):
        output = os.path.join(self.get_temp_dir(), "run")
        code, out, _ = run(
            "finetune", *self.common, "--candidate-ratio", "0.5",
            "--drop-rate", "0.5", "--pooling", "mean", "--output", output,
        )  # fmt: skip
        self.assertEqual(code, 0)
        self.assertIn("RTE addrop-gradient", out)
        self.assertIn(
            f"results in {output}: epochs.jsonl, logs, losses.png, "
            "model.keras, results.json",
            out,
        )
        with open(os.path.join(output, "results.json")) as f:
            result = json.load(f)
        self.assertEqual(result["config"]["candidate_ratio"], 0.5)
        self.assertEqual(result["config"]["pooling"], "mean")
        self.assertEqual(result["train_examples"], 24)
        self.assertLen(result["epochs"], 2)
        fractions = [e["addrop_drop_fraction"] for e in result["epochs"]]
        self.assertEqual(fractions[0], 0.0)
        self.assertGreater(fractions[1], 0.1)
        self.assertIn("accuracy", result["best"])
        self.assertIn(result["best_epoch"], (1, 2))
        self.assertGreater(result["train_examples_per_second"], 0)
        for name in ("losses.png", "model.keras"):
            self.assertTrue(os.path.isfile(os.path.join(output, name)), name)
        events = [
            name
            for _, _, files in os.walk(os.path.join(output, "logs"))
            for name in files
            if "tfevents" in name
        ]
        self.assertNotEmpty(events)

        # Test-set predictions in the leaderboard format.
        tsv = os.path.join(output, "RTE.tsv")
        code, _, _ = run(
            "predict", "--task", "rte", "--model",
            os.path.join(output, "model.keras"), "--preset", self.preset,
            "--glue-dir", self.glue_dir, "--max-length", "16",
            "--output", tsv,
        )  # fmt: skip
        self.assertEqual(code, 0)
        with open(tsv) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[0], "index\tprediction")
        self.assertLen(lines, 8)
        for i, line in enumerate(lines[1:]):
            index, label = line.split("\t")
            self.assertEqual(int(index), i)
            self.assertIn(label, ("entailment", "not_entailment"))

    def test_sweep_resumes_and_summarize_makes_tables_and_heat_map(self):
        folder = os.path.join(self.get_temp_dir(), "sweep")
        sweep = [
            "sweep", *self.common, "--epochs", "1", "--no-save-model",
            "--candidate-ratios", "0.3", "0.6", "--drop-rates", "0.5",
            "--seeds", "1", "--output", folder,
        ]  # fmt: skip
        self.assertEqual(run(*sweep)[0], 0)
        runs = sorted(os.listdir(folder))
        self.assertEqual(runs, ["p0.3_q0.5_seed1", "p0.6_q0.5_seed1"])
        stamps = [
            os.path.getmtime(os.path.join(folder, r, "results.json"))
            for r in runs
        ]
        code, out, _ = run(*sweep)
        self.assertEqual(code, 0)
        self.assertEqual(out.count("skip"), 2)
        self.assertEqual(
            stamps,
            [
                os.path.getmtime(os.path.join(folder, r, "results.json"))
                for r in runs
            ],
        )
        plain = os.path.join(self.get_temp_dir(), "plain")
        self.assertEqual(
            run("finetune", *self.common, "--epochs", "1", "--no-addrop",
                "--no-save-model", "--output", plain)[0],
            0,
        )  # fmt: skip
        table = os.path.join(self.get_temp_dir(), "summary.md")
        heatmap = os.path.join(self.get_temp_dir(), "heatmap.png")
        curves = os.path.join(self.get_temp_dir(), "curves.png")
        code, out, _ = run(
            "summarize", folder, plain, "--output", table, "--heatmap",
            heatmap, "--curves", curves,
        )  # fmt: skip
        self.assertEqual(code, 0)
        self.assertIn("| RTE | 24 | cls | lr 0.001, 1 ep | plain |", out)
        self.assertIn("addrop-gradient (p=0.6, q=0.5, layers 0)", out)
        self.assertIn("gain over plain", out)
        self.assertTrue(os.path.getsize(heatmap) > 1000)
        self.assertTrue(os.path.getsize(curves) > 1000)
        with open(table) as f:
            self.assertEqual(f.read().strip(), out.strip())

    def test_errors_give_messages_and_exit_codes(self):
        output = os.path.join(self.get_temp_dir(), "run")
        code, _, err = run(
            "finetune", "--task", "glue", "--preset", self.preset,
            "--glue-dir", self.glue_dir, "--output", output,
        )  # fmt: skip
        self.assertEqual(code, 2)
        self.assertIn("Received: task='glue'", err)
        code, _, err = run(
            "finetune", "--task", "rte", "--preset", self.preset,
            "--glue-dir", "/nonexistent", "--output", output,
        )  # fmt: skip
        self.assertEqual(code, 2)
        self.assertIn(
            "argument --glue-dir: Invalid value for argument `glue_dir`: "
            "expected an existing folder. Received: glue_dir='/nonexistent'",
            err,
        )
        empty = self.get_temp_dir()
        for preset, message in (
            ("/nonexistent", "no such folder. Received: --preset=/nonexistent"),
            (empty, "the --preset folder has no config.json, so it is "
             "neither a keras-hub nor a Hugging Face preset. Received: "
             f"--preset={empty}"),
        ):  # fmt: skip
            code, _, err = run(
                "finetune", "--task", "rte", "--preset", preset,
                "--glue-dir", self.glue_dir, "--output", output,
            )  # fmt: skip
            self.assertEqual(code, 2)
            self.assertEqual(err.strip(), f"keras-addrop: error: {message}")
        # No run started, so no run folder was left behind.
        self.assertFalse(os.path.exists(output))
        code, _, err = run("summarize", "/nonexistent")
        self.assertEqual(code, 2)
        # Bad flags: argparse's own message and exit code 2.
        result = subprocess.run(
            [sys.executable, "-m", "keras_addrop_cli", "finetune", "--task",
             "rte", "--candidate-ratio", "1.5", "--output", "x"],
            capture_output=True,
            text=True,
        )  # fmt: skip
        self.assertEqual(result.returncode, 2)
        # Nothing else: no usage block, and no TensorFlow log lines.
        self.assertEqual(
            result.stderr,
            "keras-addrop finetune: error: argument --candidate-ratio: "
            "Invalid value for argument `candidate_ratio`: expected a float "
            "between 0 and 1. Received: candidate_ratio=1.5\n"
            "(`keras-addrop finetune --help` lists the options)\n",
        )

    def test_only_the_users_errors_exit_with_2_and_bugs_keep_their_traceback(
        self,
    ):
        output = os.path.join(self.get_temp_dir(), "run")
        # The model's own check of the user's flag: one line, exit 2.
        code, _, err = run(
            "finetune", *self.common, "--addrop-layers", "7", "--output",
            output,
        )  # fmt: skip
        self.assertEqual(code, 2)
        self.assertTrue(err.startswith("keras-addrop: error: "), err)
        self.assertIn("Received: addrop_layers=(7,)", err)
        # A ValueError from inside training is a bug, not the user's error.
        with mock.patch.object(
            runs.EpochLog, "on_epoch_end", side_effect=ValueError("a bug")
        ):
            with self.assertRaisesRegex(ValueError, "a bug") as raised:
                run("finetune", *self.common, "--output", output)
        self.assertNotIsInstance(raised.exception, runs.RunError)

    def test_help_gives_every_flag_a_line_and_its_default(self):
        parser = build_parser()
        subparsers = parser._subparsers._group_actions[0].choices
        for name, subparser in subparsers.items():
            text = " ".join(subparser.format_help().split())
            for action in subparser._actions:
                if action.dest == "help":
                    continue
                self.assertTrue(action.help, msg=f"{name} {action.dest}")
                if action.default not in (None, False) and not (
                    action.required
                ):
                    default = action.default
                    if isinstance(default, (list, tuple)):  # As typed.
                        separator = " " if action.nargs else ","
                        default = separator.join(map(str, default))
                    self.assertIn(
                        f"(default: {default})".replace("'", ""),
                        text.replace("'", ""),
                        msg=f"{name} {action.dest}",
                    )
        finetune = " ".join(subparsers["finetune"].format_help().split())
        self.assertIn("cola, mnli, mrpc, qnli, qqp, rte, sst2,", finetune)
        self.assertIn("p in the paper", finetune)
        self.assertIn("q in the paper", finetune)

    def test_a_run_that_fails_midway_says_so_and_writes_no_results(self):
        output = os.path.join(self.get_temp_dir(), "run")
        args = build_parser().parse_args(
            ["finetune", *self.common, "--no-addrop", "--output", output]
        )
        failure = RuntimeError("disk full")
        with (
            mock.patch.object(
                runs.EpochLog, "on_epoch_end", side_effect=failure
            ),
            self.assertRaises(RuntimeError),
        ):
            runs.finetune(args)
        with open(os.path.join(output, runs.FAILED_FILE)) as f:
            text = f.read()
        self.assertIn(
            "stopped after 0 finished epoch(s) of 2: RuntimeError: disk full",
            text,
        )
        self.assertFalse(
            os.path.exists(os.path.join(output, runs.RESULTS_FILE))
        )
        # Run again, it finishes and the folder no longer says it failed.
        runs.finetune(args)
        self.assertTrue(os.path.isfile(os.path.join(output, runs.RESULTS_FILE)))
        self.assertFalse(os.path.exists(os.path.join(output, runs.FAILED_FILE)))


# Drops absl's prefix (severity, date, time, thread) from a C++ log line.
ABSL_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ ")


def log_lines(text):
    return [ABSL_PREFIX.sub("", line) for line in text.splitlines()]


class QuietStartTest(TestCase):
    def test_help_and_argument_errors_answer_without_importing_tensorflow(self):
        code = textwrap.dedent(
            """
            import sys
            import keras_addrop_cli
            for argv in (
                ["--help"],
                ["finetune", "--help"],
                ["finetune", "--epochs", "0", "--output", "x"],
                ["finetune", "--glue-dir", "/nonexistent", "--output", "x"],
                ["predict", "--task", "rte", "--model", "/no.keras",
                 "--output", "x"],
                ["summarize", "/nonexistent"],
            ):
                try:
                    keras_addrop_cli.main(argv)
                except SystemExit as error:
                    print("exit", error.code, file=sys.stderr)
            print(sorted({"tensorflow", "keras", "keras_addrop"}
                         & set(sys.modules)))
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True
        )
        self.assertEqual(result.stdout.splitlines()[-1], "[]")
        self.assertEqual(
            [line for line in result.stderr.splitlines() if "exit" in line],
            ["exit 0", "exit 0", "exit 2", "exit 2", "exit 2", "exit 2"],
        )
        for message in (
            "argument --epochs: Invalid value for argument `epochs`: expected "
            "a positive integer. Received: epochs=0",
            "argument --glue-dir: Invalid value for argument `glue_dir`: "
            "expected an existing folder. Received: glue_dir='/nonexistent'",
            "argument --model: Invalid value for argument `model`: expected "
            "an existing file. Received: model='/no.keras'",
            "argument folders: Invalid value for argument `folders`: expected "
            "an existing folder. Received: folders='/nonexistent'",
        ):
            self.assertIn(message, result.stderr)

    def test_commands_hide_tensorflow_start_up_logs_unless_asked(self):
        # What TensorFlow itself writes while it starts on this machine.
        started = subprocess.run(
            [sys.executable, "-c",
             "import tensorflow as tf; tf.config.list_physical_devices()"],
            capture_output=True,
            text=True,
        )  # fmt: skip
        # The task is checked after the package is imported: TensorFlow has
        # started by the time the error is printed.
        argv = ["finetune", "--task", "glue", "--output", "x"]
        error = "keras-addrop: error: Unknown GLUE task"
        quiet = subprocess.run(
            [sys.executable, "-m", "keras_addrop_cli", *argv],
            capture_output=True,
            text=True,
        )
        self.assertEqual(quiet.returncode, 2)
        self.assertEqual(len(quiet.stderr.splitlines()), 1, quiet.stderr)
        self.assertTrue(quiet.stderr.startswith(error), quiet.stderr)
        if not started.stderr:
            self.skipTest("TensorFlow writes no start-up logs here.")
        loud = subprocess.run(
            [sys.executable, "-m", "keras_addrop_cli", *argv, "--backend-logs"],
            capture_output=True,
            text=True,
        )
        self.assertEqual(loud.returncode, 2)
        for line in log_lines(started.stderr):
            self.assertIn(line, log_lines(loud.stderr))

    def test_hidden_native_lines_are_shown_when_the_block_fails(self):
        code = textwrap.dedent(
            """
            import os
            import sys
            import keras_addrop_cli
            with keras_addrop_cli._native_logs_hidden():
                os.write(2, b"hidden\\n")
                print("python's own", file=sys.stderr)
            os.write(2, b"after\\n")
            with keras_addrop_cli._native_logs_hidden():
                os.write(2, b"the reason it failed\\n")
                raise ImportError("no module")
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True
        )
        self.assertNotIn("hidden", result.stderr)
        self.assertTrue(
            result.stderr.startswith(
                "python's own\nafter\nthe reason it failed\n"
            ),
            result.stderr,
        )
        self.assertIn("ImportError: no module", result.stderr)

    def test_glue_task_names_are_the_task_table(self):
        self.assertEqual(run_options.GLUE_TASKS, tuple(sorted(glue.TASKS)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(*argv):
    return [sys.executable, "-m", "keras_addrop_cli", *argv]


def noisy_command(*argv):
    """The command line, writing `native_log_script.LINE` through
    TensorFlow's C++ logging inside every training step."""
    return [sys.executable, str(SCRIPTS / "native_log_script.py"), *argv]


# What the test script logs from C++; any level shows the line.
NATIVE_LINE = "keras-addrop test: a C++ log line from inside a training step"
NATIVE_LOGS = {"TF_CPP_MIN_LOG_LEVEL": "0"}


class NativeLogsTest(_Fixtures):
    """TensorFlow's C++ lines from inside `fit` are hidden for the whole
    run, whichever lines this machine's CPU makes TensorFlow write."""

    def finetune(self, *extra, env=None):
        output = os.path.join(self.get_temp_dir(), "run")
        return subprocess.run(
            noisy_command(
                "finetune", *self.common, "--no-save-model", "--output",
                output, *extra,
            ),
            capture_output=True,
            text=True,
            env=dict(os.environ, **NATIVE_LOGS, **(env or {})),
        )  # fmt: skip

    def test_lines_logged_inside_training_steps_are_hidden_unless_asked(self):
        quiet = self.finetune()
        self.assertEqual(quiet.returncode, 0, msg=quiet.stderr[-3000:])
        self.assertIn("best accuracy", quiet.stdout)
        self.assertEqual(quiet.stderr, "")
        loud = self.finetune("--backend-logs")
        self.assertEqual(loud.returncode, 0, msg=loud.stderr[-3000:])
        # One line a step at least: 3 training batches an epoch, 2 epochs.
        self.assertGreaterEqual(loud.stderr.count(NATIVE_LINE), 6)

    def test_an_unexpected_error_shows_the_hidden_lines_and_its_traceback(
        self,
    ):
        failed = self.finetune(env={"FAIL_AFTER_FIT": "1"})
        self.assertEqual(failed.returncode, 1)
        self.assertIn(NATIVE_LINE, failed.stderr)
        self.assertIn("RuntimeError: a bug after training", failed.stderr)
        # The hidden lines come first, then Python's traceback.
        self.assertLess(
            failed.stderr.rindex(NATIVE_LINE),
            failed.stderr.index("Traceback"),
        )


class OtherBackendsTest(_Fixtures):
    """The command line on JAX and PyTorch, each in a fresh process, with a
    C++ log line from inside every training step (hidden)."""

    def finetune(self, backend, *extra, env=None):
        if importlib.util.find_spec(backend) is None:
            self.skipTest(f"{backend} is not installed")
        output = os.path.join(self.get_temp_dir(), backend)
        result = subprocess.run(
            noisy_command("finetune", *self.common, "--output", output, *extra),
            capture_output=True,
            text=True,
            env=dict(
                os.environ, KERAS_BACKEND=backend, **NATIVE_LOGS, **(env or {})
            ),
        )
        results = None
        if result.returncode == 0:
            with open(os.path.join(output, "results.json")) as f:
                results = json.load(f)
        return result, results

    def assertCrossTuned(self, result, process):
        self.assertIsNotNone(result, msg=process.stderr[-3000:])
        fractions = [e["addrop_drop_fraction"] for e in result["epochs"]]
        self.assertEqual([f > 0 for f in fractions], [False, True])
        self.assertEqual(set(result["best"]), {"accuracy", "loss"})

    def test_jax_runs_data_parallel_over_two_devices(self):
        devices = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
        process, result = self.finetune(
            "jax", "--strategy", "mirrored", env=devices
        )
        self.assertCrossTuned(result, process)
        self.assertEqual(result["backend"], "jax")
        self.assertEqual(result["config"]["strategy"], "mirrored")
        # A quiet run: nothing on standard error.
        self.assertEqual(process.stderr, "")
        process, _ = self.finetune("jax", "--strategy", "multi-worker")
        self.assertEqual(process.returncode, 2)
        self.assertIn("Received: strategy='multi-worker'", process.stderr)
        process, _ = self.finetune(
            "jax", "--strategy", "mirrored", "--batch-size", "7", env=devices
        )
        self.assertEqual(process.returncode, 2)
        self.assertIn(
            "--batch-size 7 does not split evenly over the 2 devices",
            process.stderr,
        )

    def test_torch_runs_and_refuses_a_strategy(self):
        process, result = self.finetune("torch")
        self.assertCrossTuned(result, process)
        self.assertEqual(result["backend"], "torch")
        self.assertEqual(process.stderr, "")
        process, _ = self.finetune("torch", "--strategy", "mirrored")
        self.assertEqual(process.returncode, 2)
        self.assertIn("no distributed training on PyTorch", process.stderr)
        self.assertIn("Received: strategy='mirrored'", process.stderr)


class FaultToleranceTest(_Fixtures):
    def start_workers(self, output, *extra):
        workers = self.workers
        processes = []
        for index in range(2):
            cluster = {
                "cluster": {"worker": workers},
                "task": {"type": "worker", "index": index},
            }
            env = dict(os.environ, TF_CONFIG=json.dumps(cluster))
            processes.append(
                subprocess.Popen(
                    command("finetune", *self.common, "--strategy",
                            "multi-worker", "--no-save-model", "--output",
                            output, *extra),
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )  # fmt: skip
        return processes

    def test_two_workers_train_and_resume_after_being_stopped(self):
        output = os.path.join(self.get_temp_dir(), "multi")
        self.workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        processes = self.start_workers(output, "--epochs", "4")
        backups = [
            os.path.join(output, "backup", "training_metadata.json"),
            os.path.join(
                output, "worker_1", "backup", "training_metadata.json"
            ),
        ]
        deadline = time.time() + 300
        while time.time() < deadline and all(
            p.poll() is None for p in processes
        ):
            if all(os.path.isfile(b) for b in backups):
                break
            time.sleep(0.05)
        for process in processes:  # Both stopped after epoch 1's backup.
            process.kill()
            process.wait()
        self.assertFalse(os.path.isfile(os.path.join(output, "results.json")))
        self.workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        for process in self.start_workers(output, "--epochs", "4"):
            _, err = process.communicate(timeout=600)
            self.assertEqual(process.returncode, 0, msg=err[-3000:])
        with open(os.path.join(output, "results.json")) as f:
            result = json.load(f)
        self.assertEqual(result["config"]["strategy"], "multi-worker")
        self.assertGreaterEqual(result["resumed_after_epoch"], 1)
        self.assertEqual([e["epoch"] for e in result["epochs"]], [1, 2, 3, 4])
        fractions = [e["addrop_drop_fraction"] for e in result["epochs"]]
        self.assertEqual([f > 0 for f in fractions], [False, True, False, True])
        self.assertTrue(
            os.path.isfile(os.path.join(output, "worker_1", "results.json"))
        )

    def test_killed_run_resumes_without_losing_epochs(self):
        output = os.path.join(self.get_temp_dir(), "resume")
        argv = command(
            "finetune", *self.common, "--epochs", "4", "--no-save-model",
            "--output", output,
        )  # fmt: skip
        metadata = os.path.join(output, "backup", "training_metadata.json")
        process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            if os.path.isfile(metadata):  # Epoch 1 is backed up.
                break
            time.sleep(0.05)
        process.kill()
        process.wait()
        self.assertFalse(
            os.path.isfile(os.path.join(output, "results.json")),
            msg="the run finished before it could be interrupted",
        )
        result = subprocess.run(argv, capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
        with open(os.path.join(output, "results.json")) as f:
            resumed = json.load(f)
        self.assertGreaterEqual(resumed["resumed_after_epoch"], 1)
        self.assertEqual([e["epoch"] for e in resumed["epochs"]], [1, 2, 3, 4])
        # Same batches, dropout and masks as a run that was never stopped.
        uninterrupted = os.path.join(self.get_temp_dir(), "uninterrupted")
        argv[argv.index(output)] = uninterrupted
        finished = subprocess.run(argv, capture_output=True, text=True)
        self.assertEqual(finished.returncode, 0, msg=finished.stderr[-3000:])
        with open(os.path.join(uninterrupted, "results.json")) as f:
            reference = json.load(f)
        for a, b in zip(resumed["epochs"], reference["epochs"]):
            self.assertAllClose(a["train_loss"], b["train_loss"], atol=1e-5)
            for metric in b["dev"]:
                self.assertAllClose(
                    a["dev"][metric], b["dev"][metric], atol=1e-5
                )
        # The cost counts the epochs of both processes.
        seconds = [e["seconds"] for e in resumed["epochs"]]
        self.assertTrue(all(s > 0 for s in seconds), seconds)
        self.assertAlmostEqual(resumed["epoch_seconds"], sum(seconds))
        self.assertLess(
            sum(seconds[resumed["resumed_after_epoch"] :]),
            resumed["wall_seconds"],
        )
        fractions = [e["addrop_drop_fraction"] for e in resumed["epochs"]]
        self.assertEqual(fractions[0], 0.0)
        self.assertEqual(fractions[2], 0.0)
        self.assertGreater(fractions[1], 0.05)
        self.assertGreater(fractions[3], 0.05)
