import json
import os

import numpy as np

from keras_addrop import reports
from tests.test_case import TestCase


def fake_result(method, seed, best, last, task="MRPC", f1=None, **config):
    """A results.json as `finetune` writes it, with only what tables read."""
    main = {"MRPC": "accuracy", "STS-B": "pearson"}[task]
    best_metrics = {main: best, "loss": 0.5}
    if f1 is not None:
        best_metrics["f1"] = f1
    majority = {"accuracy": 0.684, "f1": 0.812, "pearson": 0.0}
    return {
        "config": {
            "seed": seed,
            "pooling": "mean",
            "learning_rate": 2e-5,
            "epochs": 6,
            "patience": None,
            "candidate_ratio": 0.3,
            "drop_rate": 0.3,
            "addrop_layers": "all",
            **config,
        },
        "method": method,
        "task": task,
        "main_metric": main,
        "train_examples": 1000,
        "best": best_metrics,
        "last": {main: last, "loss": 0.6},
        "majority_baseline": {main: majority[main]},
    }


class ReportsTest(TestCase):
    def write(self, results):
        folder = self.get_temp_dir()
        for i, result in enumerate(results):
            run = os.path.join(folder, f"run{i}")
            os.makedirs(run)
            with open(os.path.join(run, reports.RESULTS_FILE), "w") as f:
                json.dump(result, f)
        return folder

    def test_gain_is_the_mean_and_std_of_per_seed_differences(self):
        folder = self.write(
            [
                fake_result("plain", 1, 0.70, 0.68, f1=0.80),
                fake_result("plain", 2, 0.74, 0.70, f1=0.82),
                fake_result("plain", 3, 0.72, 0.72, f1=0.81),
                fake_result("addrop-gradient", 1, 0.71, 0.70, f1=0.83),
                fake_result("addrop-gradient", 2, 0.77, 0.70, f1=0.84),
                fake_result("addrop-gradient", 3, 0.71, 0.75, f1=0.82),
            ]
        )
        text = reports.summarize([folder])
        # Best-epoch differences +1, +3, -1: mean +1.0, sample std 2.0.
        self.assertIn(
            "| MRPC | 1000 | mean | lr 2e-05, 6 ep | addrop-gradient (p=0.3, "
            "q=0.3, layers all) | 3 | +1.0 ± 2.0 | +1.7 ± 1.5 | 2 of 3 |",
            text,
        )
        self.assertIn(
            "| MRPC | 1000 | mean | lr 2e-05, 6 ep | plain | accuracy | 3 | "
            "72.0 ± 2.0 | 70.0 ± 2.0 | f1 81.0 ± 1.0 | 68.4 |",
            text,
        )

    def test_gain_uses_only_seeds_both_methods_ran(self):
        folder = self.write(
            [
                fake_result("plain", 1, 0.70, 0.70),
                fake_result("plain", 2, 0.90, 0.90),
                fake_result("addrop-gradient", 1, 0.72, 0.71),
            ]
        )
        text = reports.summarize([folder])
        # Seed 2 has no AD-DROP run yet: comparing means would say -8.0.
        self.assertIn("| 1 | +2.0 | +1.0 | 1 of 1 |", text)

    def test_gain_without_common_seeds_is_marked_unpaired(self):
        folder = self.write(
            [
                fake_result("plain", 42, 0.70, 0.70),
                fake_result("addrop-gradient", 1, 0.72, 0.69),
            ]
        )
        text = reports.summarize([folder])
        self.assertIn("| 0 | +2.0 (unpaired) | -1.0 (unpaired) | - |", text)

    def test_runs_with_other_budgets_are_rows_of_their_own(self):
        long = dict(epochs=20, patience=5)
        folder = self.write(
            [
                fake_result("plain", 1, 0.70, 0.70),
                fake_result("addrop-gradient", 1, 0.72, 0.71),
                fake_result("plain", 1, 0.74, 0.73, **long),
                fake_result("addrop-gradient", 1, 0.73, 0.73, **long),
                fake_result(
                    "addrop-gradient", 1, 0.75, 0.75, addrop_layers=[0]
                ),
            ]
        )
        text = reports.summarize([folder])
        # Each budget is compared with its own plain runs.
        self.assertIn(
            "| lr 2e-05, 6 ep | addrop-gradient (p=0.3, q=0.3, layers all) "
            "| 1 | +2.0 | +1.0 | 1 of 1 |",
            text,
        )
        self.assertIn(
            "| lr 2e-05, 20 ep, patience 5 | addrop-gradient (p=0.3, q=0.3, "
            "layers all) | 1 | -1.0 | +0.0 | 0 of 1 |",
            text,
        )
        self.assertIn("(p=0.3, q=0.3, layers 0) | 1 | +5.0 | +5.0 |", text)

    def test_correlation_tasks_have_no_majority_baseline(self):
        folder = self.write([fake_result("plain", 1, 0.80, 0.79, task="STS-B")])
        text = reports.summarize([folder])
        self.assertIn("| pearson | 1 | 80.0 | 79.0 | - | - |", text)
        self.assertNotIn("gain over plain", text)

    def test_curves_average_seeds_per_epoch_and_mark_addrop_epochs(self):
        def with_epochs(result, accuracy, loss, dropped):
            result["epochs"] = [
                {"epoch": i + 1, "addrop_drop_fraction": drop,
                 "dev": {"accuracy": acc, "loss": dev_loss}}
                for i, (acc, dev_loss, drop) in enumerate(
                    zip(accuracy, loss, dropped)
                )
            ]  # fmt: skip
            return result

        results = [
            with_epochs(fake_result("plain", 1, 0.8, 0.8),
                        [0.6, 0.7, 0.8], [0.5, 0.4, 0.3], [0, 0, 0]),
            # Stopped early: the mean at epoch 3 is over seed 1 alone.
            with_epochs(fake_result("plain", 2, 0.8, 0.8),
                        [0.7, 0.8], [0.6, 0.5], [0, 0]),
            with_epochs(fake_result("addrop-gradient", 1, 0.7, 0.7),
                        [0.6, 0.65, 0.7], [0.5, 0.45, 0.4], [0, 0.09, 0]),
            # Another budget without an AD-DROP run: no comparison.
            with_epochs(fake_result("plain", 1, 0.8, 0.8, epochs=1),
                        [0.8], [0.4], [0]),
        ]  # fmt: skip
        (comparison,) = reports.comparison_curves(results)
        self.assertEqual(
            comparison["key"], ("MRPC", 1000, "mean", "lr 2e-05, 6 ep")
        )
        self.assertEqual(comparison["addrop_epochs"], [2])
        plain = comparison["methods"]["plain"]
        self.assertEqual(plain["seeds"], [1, 2])
        self.assertEqual(plain["mean"]["accuracy"][0], [1, 2, 3])
        self.assertAllClose(plain["mean"]["accuracy"][1], [0.65, 0.75, 0.8])
        self.assertAllClose(plain["mean"]["loss"][1], [0.55, 0.45, 0.3])
        self.assertEqual(plain["runs"][1]["loss"], ([1, 2], [0.6, 0.5]))

        path = os.path.join(self.get_temp_dir(), "curves.png")
        self.assertEqual(reports.curves(results, path), path)
        self.assertGreater(os.path.getsize(path), 1000)
        self.assertIsNone(reports.curves(results[:2], path + ".none.png"))
        self.assertFalse(os.path.exists(path + ".none.png"))

    def test_pq_grid_averages_seeds_per_cell_and_keeps_plain_apart(self):
        results = [
            fake_result("addrop-gradient", 1, 0.70, 0.7, drop_rate=0.1),
            fake_result("addrop-gradient", 2, 0.74, 0.7, drop_rate=0.1),
            fake_result("addrop-gradient", 1, 0.60, 0.6, candidate_ratio=0.5),
            fake_result("plain", 1, 0.80, 0.8),
        ]
        grid = reports.pq_grid(results)
        self.assertEqual((grid["ps"], grid["qs"]), ([0.3, 0.5], [0.1, 0.3]))
        # Rows are p, columns q; (0.5, 0.1) and (0.3, 0.3) have no run.
        self.assertAllClose(grid["scores"], [[72.0, np.nan], [np.nan, 60.0]])
        self.assertAllClose(grid["plain"], 80.0)
        self.assertEqual(grid["metric"], "accuracy")
        path = os.path.join(self.get_temp_dir(), "grid.png")
        self.assertEqual(reports.heatmap(results, path), path)
        self.assertGreater(os.path.getsize(path), 1000)
        # Without plain runs the colour is the score, not a gain.
        alone = os.path.join(self.get_temp_dir(), "grid_alone.png")
        self.assertEqual(reports.heatmap(results[:3], alone), alone)
        self.assertGreater(os.path.getsize(alone), 1000)
        # One cell is no grid.
        self.assertIsNone(reports.pq_grid(results[:2] + results[3:]))

    def test_drop_share_table_orders_runs_by_the_share_dropped(self):
        def with_epochs(result, accuracy, dropped):
            result["epochs"] = [
                {"addrop_drop_fraction": drop, "dev": {"accuracy": acc}}
                for acc, drop in zip(accuracy, dropped)
            ]
            return result

        results = [
            with_epochs(
                fake_result("addrop-gradient", 1, 0.7, 0.6, drop_rate=0.5),
                [0.5, 0.7, 0.6], [0, 0.15, 0],
            ),
            with_epochs(
                fake_result("addrop-gradient", 1, 0.8, 0.7, drop_rate=0.1),
                [0.6, 0.8, 0.7], [0, 0.03, 0],
            ),
            with_epochs(fake_result("plain", 1, 0.9, 0.9), [0.6, 0.9], [0, 0]),
        ]  # fmt: skip
        lines = reports.drop_share_table(results).splitlines()
        self.assertIn("dev accuracy, mean over epochs", lines[0])
        # Plain first; the share is over AD-DROP epochs only; the mean over
        # every epoch.
        self.assertEqual(lines[2], "| plain | 1 | 0.000 | 75.0 | 90.0 | 90.0 |")
        self.assertEqual(
            lines[3],
            "| addrop-gradient (p=0.3, q=0.1, layers all) | 1 | 0.030 | 70.0 "
            "| 80.0 | 70.0 |",
        )
        self.assertIn(
            "(p=0.3, q=0.5, layers all) | 1 | 0.150 | 60.0 |", lines[4]
        )

    def test_drop_fraction_key_is_the_train_steps_log_name(self):
        from keras_addrop import train_step

        self.assertEqual(reports.DROP_FRACTION, train_step.DROP_FRACTION)

    def test_missing_folder_is_an_error_naming_it(self):
        with self.assertRaisesRegex(FileNotFoundError, "/nonexistent"):
            reports.summarize(["/nonexistent"])
