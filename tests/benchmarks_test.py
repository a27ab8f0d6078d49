"""The GLUE reproduction driver resumes and chooses recipes from results."""

import argparse
import io
import json
import os
import sys
import time
from unittest import mock

import numpy as np

from tests.test_case import REPO_ROOT
from tests.test_case import TestCase

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
import glue_reproduction  # noqa: E402


def fake_result(task, head, lr, curve):
    epochs = [
        {"epoch": i + 1, "dev": {"accuracy": value, "loss": 1 - value}}
        for i, value in enumerate(curve)
    ]
    best = max(range(len(curve)), key=lambda i: curve[i])
    return {
        "task": task,
        "method": "plain",
        "main_metric": "accuracy",
        "config": {
            "pooling": head, "learning_rate": lr, "epochs": len(curve),
            "seed": 1,
        },
        "train_examples": 1000,
        "epochs": epochs,
        "best": {"accuracy": curve[best]},
        "best_epoch": best + 1,
        "last": {"accuracy": curve[-1]},
        "majority_baseline": {"accuracy": 0.5},
        "wall_seconds": 60.0,
    }  # fmt: skip


class GlueReproductionTest(TestCase):
    def setUp(self):
        super().setUp()
        self.root = self.get_temp_dir()
        self.enterContext(
            mock.patch.object(glue_reproduction, "ROOT", self.root)
        )

    def write(self, task, head, lr, curve):
        folder = os.path.join(
            self.root, f"{task}-1000", "recipe", f"{head}-lr{lr}", "seed1"
        )
        os.makedirs(folder)
        with open(os.path.join(folder, "results.json"), "w") as f:
            json.dump(fake_result(task.upper(), head, lr, curve), f)
        return folder

    def test_choose_takes_the_best_epoch_of_every_recipe_run(self):
        self.write("rte", "cls", 5e-5, [0.55, 0.60, 0.58])
        self.write("rte", "mean", 5e-5, [0.56, 0.61, 0.66, 0.62])
        self.write("rte", "mean", 1e-4, [0.64, 0.63])
        glue_reproduction.choose_stage(argparse.Namespace(tasks=["rte"]))
        with open(os.path.join(self.root, "recipes.json")) as f:
            recipes = json.load(f)
        self.assertEqual(
            recipes["rte"],
            {"head": "mean", "learning_rate": 5e-5, "epochs": 3,
             "dev_score": 0.66, "runs_compared": 3},
        )  # fmt: skip

    def test_choose_breaks_a_tie_with_the_shorter_run(self):
        self.write("mrpc", "mean", 5e-5, [0.70, 0.74, 0.72, 0.76])
        self.write("mrpc", "mean", 2e-5, [0.70, 0.76, 0.75])
        glue_reproduction.choose_stage(argparse.Namespace(tasks=["mrpc"]))
        with open(os.path.join(self.root, "recipes.json")) as f:
            recipe = json.load(f)["mrpc"]
        self.assertEqual((recipe["learning_rate"], recipe["epochs"]), (2e-5, 2))

    def test_finished_run_is_skipped_and_recorded_once(self):
        folder = self.write("rte", "mean", 5e-5, [0.5, 0.6])
        log_dir = os.path.join(self.root, "logs")
        for _ in range(2):
            # A finished run starts no process: nothing is logged.
            result = glue_reproduction.run(folder, ["--task", "rte"], log_dir)
            self.assertEqual(result["best_epoch"], 2)
        self.assertFalse(os.path.exists(log_dir))
        with open(os.path.join(self.root, "runs.jsonl")) as f:
            lines = [json.loads(line) for line in f]
        self.assertLen(lines, 1)
        self.assertEqual(
            lines[0]["folder"], "rte-1000/recipe/mean-lr5e-05/seed1"
        )
        self.assertEqual(lines[0]["best"], 0.6)

    def test_primary_compares_every_task_once_before_the_next_seed(self):
        recipe = {"head": "mean", "learning_rate": 5e-5, "epochs": 3}
        with open(os.path.join(self.root, "recipes.json"), "w") as f:
            json.dump({"rte": recipe, "mrpc": recipe}, f)
        planned = glue_reproduction.primary_runs(
            argparse.Namespace(tasks=["rte", "mrpc", "cola"], seeds=[1, 2])
        )
        runs = [os.path.relpath(f, self.root).split(os.sep) for f, _ in planned]
        self.assertEqual(
            [(r[0], r[2], r[3]) for r in runs],
            [
                ("rte-1000", "plain", "seed1"),
                ("rte-1000", "addrop", "seed1"),
                ("mrpc-1000", "plain", "seed1"),
                ("mrpc-1000", "addrop", "seed1"),
                ("rte-1000", "plain", "seed2"),
                ("rte-1000", "addrop", "seed2"),
                ("mrpc-1000", "plain", "seed2"),
                ("mrpc-1000", "addrop", "seed2"),
            ],
        )
        # The recipe's head, rate and epochs name the comparison's folder.
        self.assertEqual(runs[0][1], "mean-lr5e-05-e3")

    def test_summary_skips_a_comparison_still_training_its_first_run(self):
        self.write("rte", "mean", 5e-5, [0.5, 0.6])
        running = os.path.join(self.root, "rte-1000", "mean-lr5e-05-e2")
        os.makedirs(os.path.join(running, "plain", "seed1", "backup"))
        glue_reproduction.summary_stage(argparse.Namespace(grid_task="rte"))
        with open(os.path.join(self.root, "summary.md")) as f:
            summary = f.read()
        self.assertIn("## Recipe search", summary)
        self.assertNotIn("Plain vs AD-DROP", summary)

    def test_summary_has_a_table_without_the_recipe_search_seed(self):
        comparison = os.path.join(self.root, "rte-1000", "mean-lr5e-05-e2")
        scores = {("plain", 1): 0.70, ("plain", 2): 0.60,
                  ("addrop", 1): 0.62, ("addrop", 2): 0.64}  # fmt: skip
        for (method, seed), score in scores.items():
            result = fake_result("RTE", "mean", 5e-5, [0.5, score])
            result["config"].update(
                seed=seed, candidate_ratio=0.3, drop_rate=0.3,
                addrop_layers="all",
            )  # fmt: skip
            if method == "addrop":
                result["method"] = "addrop-gradient"
            folder = os.path.join(comparison, method, f"seed{seed}")
            os.makedirs(folder)
            with open(os.path.join(folder, "results.json"), "w") as f:
                json.dump(result, f)
        glue_reproduction.summary_stage(argparse.Namespace(grid_task="rte"))
        with open(os.path.join(self.root, "summary.md")) as f:
            summary = f.read()
        everything, unselected = summary.split("without seed 1")
        # Over both seeds the gain is (-8 + 4) / 2; without seed 1 it is +4.
        self.assertIn("| 2 | -2.0 ± 8.5 |", everything)
        self.assertIn("| 1 | +4.0 |", unselected)
        self.assertNotIn("70.0", unselected)

    def test_reading_stage_waits_for_the_runs_submitted_before_it(self):
        events = []

        def fake_run(folder, flags, log_root, threads):
            time.sleep(0.05)
            events.append(("run", os.path.basename(folder), threads))

        def fake_summary(args):
            events.append(("summary",))

        recipe = {"head": "mean", "learning_rate": 5e-5, "epochs": 3}
        with open(os.path.join(self.root, "recipes.json"), "w") as f:
            json.dump({"rte": recipe}, f)
        with (
            mock.patch.object(glue_reproduction, "run", fake_run),
            mock.patch.dict(
                glue_reproduction.READ_STAGES, {"summary": fake_summary}
            ),
            mock.patch.object(os, "cpu_count", lambda: 2),
        ):
            glue_reproduction.run_stages(
                argparse.Namespace(
                    stages=["primary", "summary"], tasks=["rte"], seeds=[1, 2],
                    jobs=2, threads=None, log_dir="",
                )
            )  # fmt: skip
        self.assertEqual(events[-1], ("summary",))
        runs = events[:-1]
        self.assertLen(runs, 4)
        # Two processes at a time on two cores: one thread each.
        self.assertEqual({r[2] for r in runs}, {1})

    def recipe_run_threads(self, **options):
        """The thread cap each of two recipe runs gets from `run_stages`."""
        calls = []
        with mock.patch.object(
            glue_reproduction, "run", lambda *a: calls.append(a[-1])
        ):
            glue_reproduction.run_stages(
                argparse.Namespace(
                    stages=["recipe"], tasks=["rte"], heads=["mean"],
                    learning_rates=["5e-5", "1e-4"], recipe_epochs=2,
                    log_dir="", **options,
                )
            )  # fmt: skip
        return calls

    def test_single_job_keeps_tensorflow_default_threads(self):
        self.assertEqual(
            self.recipe_run_threads(jobs=1, threads=None), [None, None]
        )

    def test_threads_option_caps_every_process_of_a_single_job(self):
        self.assertEqual(self.recipe_run_threads(jobs=1, threads=1), [1, 1])

    def test_jobs_or_threads_below_one_is_rejected_with_the_value(self):
        for flag in ("--jobs", "--threads"):
            with (
                self.subTest(flag=flag),
                mock.patch.object(sys, "stderr", io.StringIO()) as stderr,
                self.assertRaises(SystemExit),
            ):
                glue_reproduction.main(["--stages", "summary", flag, "0"])
            self.assertIn(f"Received: {flag}=0", stderr.getvalue())

    def test_budget_runs_keep_the_recipe_rate_with_more_epochs_and_patience(
        self,
    ):
        recipe = {"head": "mean", "learning_rate": 2e-5, "epochs": 6}
        with open(os.path.join(self.root, "recipes.json"), "w") as f:
            json.dump({"mrpc": recipe}, f)
        planned = list(
            glue_reproduction.budget_runs(
                argparse.Namespace(
                    budget_tasks=["mrpc"], budget_seeds=[1],
                    budget_epochs=20, budget_patience=5,
                )
            )
        )  # fmt: skip
        folders = [os.path.relpath(f, self.root) for f, _ in planned]
        self.assertEqual(
            folders,
            [
                "mrpc-1000/mean-lr2e-05-e20-patience5/plain/seed1",
                "mrpc-1000/mean-lr2e-05-e20-patience5/addrop/seed1",
            ],
        )
        flags = planned[1][1]
        for flag, value in [
            ("--epochs", "20"), ("--patience", "5"),
            ("--learning-rate", "2e-05"), ("--train-limit", "1000"),
            ("--addrop-layers", "all"),
        ]:  # fmt: skip
            self.assertEqual(flags[flags.index(flag) + 1], value)

    def test_controls_vary_one_thing_against_the_task_recipe(self):
        recipe = {"head": "mean", "learning_rate": 2e-5, "epochs": 6}
        with open(os.path.join(self.root, "recipes.json"), "w") as f:
            json.dump({"mrpc": recipe, "stsb": recipe}, f)
        planned = dict(
            glue_reproduction.control_runs(
                argparse.Namespace(
                    control_tasks=["mrpc", "stsb"], control_seeds=[1]
                )
            )
        )
        runs = {
            os.path.relpath(f, self.root): flags for f, flags in planned.items()
        }
        recipe_folder = "mrpc-1000/mean-lr2e-05-e6"
        random = runs[f"{recipe_folder}/addrop-random/seed1"]
        self.assertEqual(random[random.index("--attribution") + 1], "random")
        self.assertEqual(random[random.index("--addrop-layers") + 1], "all")
        first = runs[f"{recipe_folder}/addrop-layers-0/seed1"]
        self.assertNotIn("--attribution", first)
        self.assertEqual(first[first.index("--addrop-layers") + 1], "0")
        # STS-B masks the first layer in the reference: the control masks all.
        self.assertIn("stsb-1000/mean-lr2e-05-e6/addrop-layers-all/seed1", runs)

    def test_grid_center_is_the_primary_seed_one_addrop_run(self):
        recipe = {"head": "mean", "learning_rate": 1e-4, "epochs": 2}
        with open(os.path.join(self.root, "recipes.json"), "w") as f:
            json.dump({"rte": recipe}, f)
        args = argparse.Namespace(grid_task="rte", grid_values=["0.1", "0.3"])
        planned = dict(glue_reproduction.grid_runs(args))
        primary = dict(
            glue_reproduction.primary_runs(
                argparse.Namespace(tasks=["rte"], seeds=[1])
            )
        )
        center = os.path.join(
            self.root, "rte-1000", "mean-lr0.0001-e2", "addrop", "seed1"
        )
        self.assertLen(planned, 4)
        # Same folder and flags: a finished primary run is not run again.
        self.assertEqual(planned[center], primary[center])
        grid_folders = sorted(
            os.path.relpath(f, self.root) for f in planned if f != center
        )
        self.assertEqual(
            grid_folders,
            [f"rte-1000/grid/p{p}_q{q}/seed1"
             for p, q in [("0.1", "0.1"), ("0.1", "0.3"), ("0.3", "0.1")]],
        )  # fmt: skip

        # The summary's grid holds the grid's runs, the center and plain.
        runs = {
            center.replace("addrop", "plain"): ("plain", None, None, 0.57),
            center: ("addrop-gradient", 0.3, 0.3, 0.55),
        }
        for p, q, score in [(0.1, 0.1, 0.6), (0.1, 0.3, 0.5), (0.3, 0.1, 0.4)]:
            folder = os.path.join(self.root, f"rte-1000/grid/p{p}_q{q}/seed1")
            runs[folder] = ("addrop-gradient", p, q, score)
        for folder, (method, p, q, score) in runs.items():
            result = fake_result("RTE", "mean", 1e-4, [0.5, score])
            result["method"] = method
            if p is not None:
                result["config"].update(
                    candidate_ratio=p, drop_rate=q, addrop_layers="all"
                )
            os.makedirs(folder)
            with open(os.path.join(folder, "results.json"), "w") as f:
                json.dump(result, f)
        glue_reproduction.summary_stage(args)
        with open(os.path.join(self.root, "summary.md")) as f:
            grid_section = f.read().split("## p/q grid")[1]
        self.assertIn("p=0.3, q=0.3", grid_section)
        self.assertIn("p=0.1, q=0.1", grid_section)
        self.assertIn("| plain |", grid_section)
        # Each cell's gain over plain seed 1: 60.0 - 57.0 for (0.1, 0.1).
        self.assertIn("q=0.1, layers all) | 1 | +3.0 |", grid_section)
        self.assertTrue(
            os.path.isfile(os.path.join(self.root, "rte-pq-grid.png"))
        )


class EpochShiftTest(TestCase):
    def test_output_statistics_describe_predictions_and_their_shape(self):
        import epoch_shift

        labels = [1, 1, 0, 0]
        # Predicts 1, 1, 1, 0: one error, made with probability 1 / (1 + e^-1).
        logits = [[0.0, 2.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]
        stats = epoch_shift.output_statistics("mrpc", labels, logits)
        self.assertAllClose(stats["accuracy"], 0.75)
        self.assertAllClose(stats["f1"], 0.8)
        self.assertEqual(stats["predicted_share"], [0.25, 0.75])
        wrong = 1 / (1 + np.exp(-1.0))
        self.assertAllClose(stats["confidence_when_wrong"], wrong)
        self.assertAllClose(stats["margin"], (2 + 1 + 1 - 1) / 4)
        gold = [1 / (1 + np.exp(-2.0)), wrong, 1 - wrong, wrong]
        self.assertAllClose(stats["loss"], -np.mean(np.log(gold)))

    def test_epochs_before_below_one_is_rejected_with_the_value(self):
        import epoch_shift

        with (
            mock.patch.object(sys, "stderr", io.StringIO()) as stderr,
            self.assertRaises(SystemExit),
        ):
            epoch_shift.main(["--epochs-before", "0"])
        self.assertIn("Received: --epochs-before=0", stderr.getvalue())

    def test_regression_task_is_rejected_with_the_value(self):
        import epoch_shift

        output = os.path.join(self.get_temp_dir(), "shift.json")
        with self.assertRaisesRegex(SystemExit, "Received: --task=stsb"):
            epoch_shift.main(["--task", "stsb", "--output", output])
        self.assertFalse(os.path.exists(output))


class SpeedTableTest(TestCase):
    def test_backend_rows_are_ratios_of_the_medians(self):
        from speed_parts import tables

        medians = {
            "tensorflow": {"plain_stock": 2.0, "plain_addrop_classifier": 2.0,
                           "addrop_ga_all_layers": 3.6},
            "jax": {"plain_stock": 1.0, "plain_addrop_classifier": 1.25,
                    "addrop_ga_all_layers": 2.0},
        }  # fmt: skip
        results = {"lengths": {"64": {"backends": {"median_seconds": medians}}}}
        rows = tables.backend_table(results, ["64"])
        self.assertIn(
            "| tensorflow: AD-DROP step (GA, all layers) / stock plain step "
            "| 1.80 |",
            rows,
        )
        self.assertIn(
            "| jax: AD-DROP step / plain step of the AD-DROP classifier "
            "| 1.60 |",
            rows,
        )
        self.assertIn(
            "| stock plain step / TensorFlow's (tensorflow, jax) "
            "| 1.00 / 0.50 |",
            rows,
        )
        self.assertEqual(
            tables.backend_table({"lengths": {"64": {}}}, ["64"]), []
        )

    def test_version_rows_compare_each_ratio_with_the_baseline(self):
        from speed_parts import tables

        steps = lambda plain, addrop: {  # noqa: E731
            "plain_stock": 1.0,
            "plain_addrop_classifier": plain,
            "addrop_ga_all_layers": addrop,
        }
        medians = {
            "tensorflow": steps(1.0, 1.8),
            "tensorflow:baseline": steps(0.96, 1.76),
        }
        results = {
            "lengths": {
                "64": {
                    "versions": {
                        "median_seconds": medians,
                        "baseline": "v0",
                    }
                }
            }
        }
        rows = tables.versions_table(results, ["64"])
        self.assertIn(
            "| ratio of medians, this version and v0 | length 64 |", rows
        )
        self.assertIn(
            "| tensorflow: AD-DROP step (GA, all layers) / stock plain step "
            "| 1.80 / 1.76 (1.023) |",
            rows,
        )
        self.assertIn(
            "| jax: AD-DROP step (GA, all layers) / stock plain step | - |",
            rows,
        )
        self.assertEqual(
            tables.versions_table({"lengths": {"64": {}}}, ["64"]), []
        )
