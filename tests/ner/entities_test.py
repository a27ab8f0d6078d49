import random

import pytest

from keras_addrop.ner import entities
from keras_addrop.ner import entity_scores
from tests.test_case import TestCase

TAGS = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "I-ORG"]


class EntitiesTest(TestCase):
    def test_iob2_and_iobes_chunks(self):
        self.assertEqual(
            entities(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG"]),
            [("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 4), ("ORG", 5, 5)],
        )
        self.assertEqual(
            entities(["S-PER", "B-LOC", "I-LOC", "E-LOC", "O"]),
            [("PER", 0, 0), ("LOC", 1, 3)],
        )

    def test_scores_per_type_and_micro(self):
        scores = entity_scores(
            [["B-PER", "I-PER", "O", "B-LOC"]],
            [["B-PER", "I-PER", "O", "O"]],
        )
        self.assertEqual(scores["precision"], 1.0)
        self.assertEqual(scores["recall"], 0.5)
        self.assertAllClose(scores["f1"], 2 / 3)
        self.assertEqual(scores["types"]["LOC"]["recall"], 0.0)
        self.assertEqual(scores["types"]["PER"]["support"], 1)

    def test_equals_seqeval_on_random_tags(self):
        metrics = pytest.importorskip("seqeval.metrics")
        rng = random.Random(0)
        for _ in range(500):
            true = [
                [rng.choice(TAGS) for _ in range(rng.randint(0, 7))]
                for _ in range(rng.randint(1, 4))
            ]
            predicted = [[rng.choice(TAGS) for _ in s] for s in true]
            ours = entity_scores(true, predicted)
            for key, reference in (
                ("f1", metrics.f1_score),
                ("precision", metrics.precision_score),
                ("recall", metrics.recall_score),
            ):
                self.assertAllClose(
                    ours[key], reference(true, predicted, zero_division=0)
                )

    def test_mismatched_sentences_are_refused(self):
        with self.assertRaisesRegex(ValueError, "sentence 0 with 2 words"):
            entity_scores([["O", "O"]], [["O"]])
