import os
from unittest import mock

import numpy as np
import pytest

from keras_addrop.glue import get_task
from keras_addrop.glue import load_glue
from keras_addrop.glue import read_glue_tsv
from tests.test_case import GLUE_DIR
from tests.test_case import TestCase

ROW_COUNTS = {
    "MRPC": (3668, 408),
    "RTE": (2490, 277),
    "CoLA": (8551, 1043),
    "STS-B": (5749, 1500),
    "SST-2": (67349, 872),
}


def write_tsv(folder, task, name, lines, bom=False):
    os.makedirs(os.path.join(folder, task), exist_ok=True)
    path = os.path.join(folder, task, name)
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


class ReadGlueTsvTest(TestCase):
    def test_mrpc_with_byte_order_mark_and_literal_quotes(self):
        folder = self.get_temp_dir()
        write_tsv(
            folder,
            "MRPC",
            "train.tsv",
            [
                "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
                '1\t1\t2\tHe said " hi .\tHe said hi .',
                "0\t3\t4\tA cat .\tA dog .",
            ],
            bom=True,
        )
        (first, second), labels = read_glue_tsv("mrpc", "train", folder)
        self.assertEqual(first, ['He said " hi .', "A cat ."])
        self.assertEqual(second, ["He said hi .", "A dog ."])
        self.assertAllEqual(labels, [1, 0])

    def test_cola_has_no_header_and_rte_has_string_labels(self):
        folder = self.get_temp_dir()
        write_tsv(
            folder,
            "CoLA",
            "dev.tsv",
            ["gj04\t1\t\tThe cat sat.", "gj04\t0\t*\tCat the."],
        )
        (sentences,), labels = read_glue_tsv("cola", "dev", folder)
        self.assertEqual(sentences, ["The cat sat.", "Cat the."])
        self.assertAllEqual(labels, [1, 0])
        write_tsv(
            folder,
            "RTE",
            "train.tsv",
            [
                "index\tsentence1\tsentence2\tlabel",
                "0\tA.\tB.\tnot_entailment",
                "1\tC.\tD.\tentailment",
            ],
        )
        _, labels = read_glue_tsv("rte", "train", folder)
        self.assertAllEqual(labels, [1, 0])  # tfds order: entailment = 0.

    def test_test_split_has_no_labels(self):
        folder = self.get_temp_dir()
        write_tsv(folder, "CoLA", "test.tsv", ["index\tsentence", "0\tHi ."])
        texts, labels = read_glue_tsv("cola", "test", folder)
        self.assertEqual(texts, (["Hi ."],))
        self.assertIsNone(labels)
        dataset = load_glue("cola", "test", glue_dir=folder)
        self.assertEqual(next(iter(dataset)).numpy(), b"Hi .")

    def test_malformed_row_names_file_and_line(self):
        folder = self.get_temp_dir()
        path = write_tsv(
            folder,
            "RTE",
            "dev.tsv",
            [
                "index\tsentence1\tsentence2\tlabel",
                "0\tA.\tB.\tentailment",
                "1\tC.",
            ],
        )
        with self.assertRaisesRegex(ValueError, f"{path}:3: expected"):
            read_glue_tsv("rte", "dev", folder)
        write_tsv(
            folder,
            "RTE",
            "dev.tsv",
            ["index\tsentence1\tsentence2\tlabel", "0\tA.\tB.\tmaybe"],
        )
        with self.assertRaisesRegex(
            ValueError, r"dev.tsv:2: invalid RTE label 'maybe'"
        ):
            read_glue_tsv("rte", "dev", folder)

    def test_bad_task_split_and_path_are_rejected(self):
        with self.assertRaisesRegex(ValueError, "Received: task='glue'"):
            get_task("glue")
        with self.assertRaisesRegex(ValueError, "Received: split='dev2'"):
            read_glue_tsv("mrpc", "dev2", "/nonexistent")
        with self.assertRaisesRegex(
            FileNotFoundError, "glue_dir='/nonexistent'"
        ):
            read_glue_tsv("mrpc", "train", "/nonexistent")

    def test_task_names_are_forgiving(self):
        for name in ("STS-B", "stsb", "sts_b", "STSB"):
            self.assertEqual(get_task(name).name, "STS-B")
        self.assertTrue(get_task("stsb").is_regression)
        self.assertEqual(get_task("mnli").dev_split, "validation_matched")


@pytest.mark.large
class RealGlueFilesTest(TestCase):
    def setUp(self):
        super().setUp()
        if not GLUE_DIR.is_dir():
            self.skipTest(f"no GLUE files at {GLUE_DIR}")

    def test_row_counts_of_the_real_files(self):
        for task, (train, dev) in ROW_COUNTS.items():
            texts, labels = read_glue_tsv(task, "train", GLUE_DIR)
            self.assertLen(labels, train, msg=task)
            self.assertTrue(all(len(t) == train for t in texts))
            _, labels = read_glue_tsv(task, "validation", GLUE_DIR)
            self.assertLen(labels, dev, msg=task)

    def test_real_label_balances(self):
        _, labels = read_glue_tsv("mrpc", "train", GLUE_DIR)
        self.assertEqual(int(labels.sum()), 2474)
        _, labels = read_glue_tsv("rte", "train", GLUE_DIR)
        self.assertEqual(int((labels == 0).sum()), 1249)
        _, scores = read_glue_tsv("stsb", "validation", GLUE_DIR)
        self.assertAllClose(np.mean(scores), 2.36, atol=0.01)

    def test_dataset_elements_fit_keras_hub_classifiers(self):
        dataset = load_glue("mrpc", "validation", glue_dir=GLUE_DIR)
        (first, second), label = next(iter(dataset))
        self.assertEqual(first.dtype.name, "string")
        self.assertEqual(second.dtype.name, "string")
        self.assertEqual(label.dtype.name, "int32")
        (sentence, label) = next(
            iter(load_glue("sst2", "dev", glue_dir=GLUE_DIR))
        )
        self.assertEqual(sentence.shape, ())


class TfdsLoadingTest(TestCase):
    def test_tfds_elements_match_the_tsv_layout(self):
        import tensorflow_datasets as tfds

        policy = tfds.testing.MockPolicy.USE_CODE
        with tfds.testing.mock_data(num_examples=4, policy=policy):
            (first, second), label = next(iter(load_glue("mrpc", "train")))
            self.assertEqual(first.dtype.name, "string")
            self.assertEqual(label.dtype.name, "int32")
            sentence, label = next(iter(load_glue("cola", "dev")))
            self.assertEqual(sentence.shape, ())
            _, score = next(iter(load_glue("stsb", "validation")))
            self.assertEqual(score.dtype.name, "float32")
            # Test splits have no labels: features only.
            pair = next(iter(load_glue("rte", "test")))
            self.assertLen(pair, 2)
            self.assertEqual(pair[0].dtype.name, "string")
            # Split expressions pass through (the mock ignores the slice).
            self.assertNotEmpty(list(load_glue("mrpc", "train[:2]")))
            with self.assertRaisesRegex(ValueError, "Received: split='tran'"):
                load_glue("mrpc", "tran[:2]")

    def test_failed_tfds_load_points_to_offline_options(self):
        folder = self.get_temp_dir()
        with self.assertRaisesRegex(RuntimeError, "glue_dir=") as raised:
            load_glue("rte", "train", data_dir=folder, download=False)
        self.assertNotIn("No module named", str(raised.exception))

    def test_tfds_download_path_imports_and_names_the_network(self):
        # Everything tensorflow-datasets imports on its way to a download
        # (e.g. importlib_resources) is installed: the first failure is the
        # download itself, here a stand-in for a machine without network.
        import tensorflow_datasets as tfds

        offline = ConnectionError("no route to host")
        manager = tfds.download.DownloadManager
        with (
            mock.patch.object(manager, "download", side_effect=offline),
            mock.patch.object(
                manager, "download_and_extract", side_effect=offline
            ),
            self.assertRaises(RuntimeError) as raised,
        ):
            load_glue("mrpc", "train", data_dir=self.get_temp_dir())
        message = str(raised.exception)
        self.assertIn("ConnectionError: no route to host", message)
        self.assertIn("glue_dir=", message)

    def test_a_missing_module_is_named_as_such(self):
        import tensorflow_datasets as tfds

        missing = ModuleNotFoundError(
            "No module named 'importlib_resources'",
            name="importlib_resources",
        )
        with (
            mock.patch.object(tfds, "load", side_effect=missing),
            self.assertRaisesRegex(
                RuntimeError,
                "needs the Python module 'importlib_resources', which is "
                "not installed",
            ),
        ):
            load_glue("mrpc", "train")
