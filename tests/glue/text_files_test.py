import csv
import json
import os

import numpy as np

from keras_addrop.glue import glue_metrics
from keras_addrop.glue import infer_text_columns
from keras_addrop.glue import read_text_file
from keras_addrop.glue import text_file_task
from tests.test_case import TestCase


class TextFilesTest(TestCase):
    def write(self, name, rows, header=None):
        path = os.path.join(self.get_temp_dir(), name)
        with open(path, "w", newline="") as f:
            if name.endswith(".jsonl"):
                f.writelines(json.dumps(row) + "\n" for row in rows)
            else:
                writer = csv.writer(
                    f, delimiter="," if name.endswith(".csv") else "\t"
                )
                writer.writerow(header)
                writer.writerows(rows)
        return path

    def test_csv_pairs_with_class_names(self):
        header = ["question", "answer", "label"]
        train = self.write(
            "qa.csv",
            [["Why?", "Because, he said.", "yes"], ["Who?", "No one", "no"],
             ["When?", 'At "noon"', "yes"]],
            header,
        )  # fmt: skip
        dev = self.write("dev.csv", [["How?", "So", "no"]], header)
        task, (texts, labels), (dev_texts, dev_labels) = text_file_task(
            train, dev, text_columns=("question", "answer")
        )
        self.assertEqual(task.name, "qa")
        self.assertEqual(task.label_names, ("no", "yes"))
        self.assertEqual(task.num_classes, 2)
        self.assertEqual(task.metrics, ("accuracy", "f1"))
        self.assertEqual(texts[1], ["Because, he said.", "No one", 'At "noon"'])
        self.assertAllEqual(labels, [1, 0, 1])
        self.assertEqual(labels.dtype, np.int32)
        self.assertEqual(dev_texts, (["How?"], ["So"]))
        self.assertAllEqual(dev_labels, [0])
        self.assertEqual(
            list(glue_metrics(task, labels, [1, 1, 1])), ["accuracy", "f1"]
        )

    def test_tsv_class_ids_keep_their_order(self):
        header = ["text", "stars"]
        rows = [["bad", "10"], ["fine", "2"], ["good", "3"], ["ok", "2"]]
        train = self.write("reviews.tsv", rows, header)
        dev = self.write("dev.tsv", [["meh", "3"]], header)
        task, (_, labels), (_, dev_labels) = text_file_task(
            train, dev, text_columns="text", label_column="stars"
        )
        # Numerically sorted, not as strings ("10" < "2").
        self.assertEqual(task.label_names, ("2", "3", "10"))
        self.assertAllEqual(labels, [2, 0, 1, 0])
        self.assertAllEqual(dev_labels, [1])
        self.assertEqual(task.metrics, ("accuracy",))

    def test_jsonl_scores_are_regression_and_metric_is_chosen(self):
        rows = [{"a": "x", "b": "y", "score": s} for s in (0.5, 4.0, 2.5)]
        train = self.write("sts.jsonl", rows)
        dev = self.write("dev.jsonl", [{"a": "p", "b": "q", "score": 1}])
        task, (_, labels), (_, dev_labels) = text_file_task(
            train, dev, ("a", "b"), label_column="score", metric="spearman"
        )
        self.assertTrue(task.is_regression)
        self.assertEqual(task.metrics, ("spearman", "pearson"))
        self.assertEqual(labels.dtype, np.float32)
        self.assertAllClose(labels, [0.5, 4.0, 2.5])
        self.assertAllClose(dev_labels, [1.0])

    def test_bad_files_and_rows_name_the_file_and_line(self):
        header = ["sentence", "label"]
        good = self.write("good.csv", [["a", "x"], ["b", "y"]], header)
        empty = self.write("empty.csv", [], header)
        with self.assertRaisesRegex(ValueError, "empty.csv holds no examples"):
            text_file_task(empty, good, "sentence")
        with self.assertRaisesRegex(
            ValueError,
            r"good.csv:2: no column 'text'; the row has \['label', "
            r"'sentence'\]",
        ):
            text_file_task(good, good, "text")
        unseen = self.write("unseen.csv", [["c", "x"], ["d", "z"]], header)
        with self.assertRaisesRegex(
            ValueError,
            r"unseen.csv:3: the label 'z' is not among the training labels "
            r"\('x', 'y'\)",
        ):
            text_file_task(good, unseen, "sentence")
        ragged = os.path.join(self.get_temp_dir(), "ragged.csv")
        with open(ragged, "w") as f:
            f.write("sentence,label\na,x\nb,y,extra\n")
        with self.assertRaisesRegex(
            ValueError, r"ragged.csv:3: expected 2 fields .* found 3"
        ):
            read_text_file(ragged, "sentence")
        broken = os.path.join(self.get_temp_dir(), "broken.jsonl")
        with open(broken, "w") as f:
            f.write('{"sentence": "a", "label": 1}\n{"sentence": "b",\n')
        with self.assertRaisesRegex(ValueError, "broken.jsonl:2: not valid"):
            read_text_file(broken, "sentence")
        blank = self.write("blank.csv", [["a", "x"], ["b", " "]], header)
        with self.assertRaisesRegex(ValueError, "blank.csv:3: the label"):
            read_text_file(blank, "sentence")
        one_class = self.write("one.csv", [["a", "x"], ["b", "x"]], header)
        with self.assertRaisesRegex(ValueError, "at least two classes"):
            text_file_task(one_class, good, "sentence")
        with self.assertRaisesRegex(ValueError, "Received: metric='pearson'"):
            text_file_task(good, good, "sentence", metric="pearson")
        with self.assertRaisesRegex(ValueError, "Received: 'data.txt'"):
            read_text_file("data.txt", "sentence")
        with self.assertRaisesRegex(FileNotFoundError, "No such file"):
            read_text_file("missing.csv", "sentence")

    def test_text_columns_are_found_as_run_glue_finds_them(self):
        for header, rows, expected in (
            (["text", "label"], [["Good film.", "1"]], ("text",)),
            (["idx", "sentence", "label"], [["3", "Fine.", "0"]],
             ("sentence",)),
            (["sentence2", "label", "sentence1", "topic"],
             [["B", "0", "A", "x"]], ("sentence1", "sentence2")),
            # Neither name: the one or two columns that hold text.
            (["id", "review", "label"], [["7", "Dull.", "no"]], ("review",)),
            (["question", "score", "answer", "label"],
             [["Why?", "0.5", "Because.", "yes"]], ("question", "answer")),
        ):  # fmt: skip
            with self.subTest(header=header):
                path = self.write("own.csv", rows, header)
                self.assertEqual(infer_text_columns(path), expected)
        path = self.write(
            "own.jsonl", [{"id": 1, "review": "Fine", "label": 2.5}]
        )
        self.assertEqual(infer_text_columns(path), ("review",))

    def test_a_file_with_text_and_label_columns_trains_without_naming_them(
        self,
    ):
        header = ["text", "label"]
        train = self.write(
            "train.csv", [["Good.", "pos"], ["Bad.", "neg"]], header
        )
        dev = self.write("dev.csv", [["Fine.", "pos"]], header)
        task, (texts, labels), (dev_texts, _) = text_file_task(train, dev)
        self.assertEqual(task.text_features, ("text",))
        self.assertEqual(texts, (["Good.", "Bad."],))
        self.assertEqual(dev_texts, (["Fine."],))

    def test_ambiguous_text_columns_are_one_line_listing_the_columns(self):
        path = self.write(
            "many.csv", [["a", "b", "c", "0"]], ["x", "y", "z", "label"]
        )
        with self.assertRaisesRegex(
            ValueError,
            r"many.csv: cannot tell which columns are the text; its columns "
            r"are \['x', 'y', 'z', 'label'\]\. Name one or two with "
            r"text_columns= \(--text-columns\)\.$",
        ):
            infer_text_columns(path)
        numbers = self.write(
            "numbers.csv", [["1", "2", "0"]], ["a", "b", "label"]
        )
        with self.assertRaisesRegex(ValueError, "cannot tell which columns"):
            text_file_task(numbers, numbers)
