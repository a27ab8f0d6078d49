import collections

import keras_hub
import numpy as np
import tensorflow as tf

from keras_addrop.glue import preprocessed_batches
from keras_addrop.glue import sample_indices
from keras_addrop.models import ADDropBertTextClassifier
from tests.test_case import TestCase
from tests.test_case import tiny_backbone

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away"]
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS


def sentences(count, seed=0):
    rng = np.random.default_rng(seed)
    return [
        " ".join(rng.choice(WORDS, size=rng.integers(1, 12)))
        for _ in range(count)
    ]


def preprocessor(sequence_length=32):
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY)
    return keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length
    )


class BatchingTest(TestCase):
    def setUp(self):
        super().setUp()
        self.first, self.second = sentences(37, 1), sentences(37, 2)
        self.labels = np.arange(37, dtype="int32")  # Labels identify examples.
        self.dataset = tf.data.Dataset.from_tensor_slices(
            ((self.first, self.second), self.labels)
        )

    def collect(self, batches):
        rows = {}
        for x, y in batches:
            ids = x["token_ids"].numpy()
            mask = x["padding_mask"].numpy().astype(bool)
            for row, m, label in zip(ids, mask, y.numpy()):
                self.assertNotIn(int(label), rows)
                rows[int(label)] = tuple(row[m])
        return rows

    def test_length_aware_batching_keeps_every_example_exactly_once(self):
        padded = self.collect(
            preprocessed_batches(
                self.dataset, preprocessor(), 8, length_aware=False
            )
        )
        batches = preprocessed_batches(
            self.dataset, preprocessor(), 8, shuffle=True, seed=3
        )
        self.assertEqual(batches.cardinality().numpy(), 5)
        for _ in range(2):  # Two epochs, each reshuffled.
            self.assertEqual(self.collect(batches), padded)
        widths = [x["token_ids"].shape[1] for x, _ in batches]
        self.assertLess(max(widths), 32)

    def test_widths_and_sizes_follow_the_requested_multiples(self):
        batches = preprocessed_batches(
            self.dataset,
            preprocessor(sequence_length=30),
            8,
            shuffle=True,
            seed=3,
            pad_to_multiple_of=16,
            batch_multiple=4,
        )
        # 37 examples: four batches of 8 and one of 4 (one sits out).
        self.assertEqual(batches.cardinality().numpy(), 5)
        for _ in range(2):
            sizes, widths, seen = [], set(), set()
            for x, y in batches:
                sizes.append(len(y))
                widths.add(x["token_ids"].shape[1])
                seen.update(int(label) for label in y.numpy())
                mask = x["padding_mask"].numpy()
                # Rounded up to 16, never past sequence_length.
                self.assertEqual(
                    x["token_ids"].shape[1],
                    min(-(-mask.sum(-1).max() // 16) * 16, 30),
                )
            self.assertEqual(sorted(sizes), [4, 8, 8, 8, 8])
            self.assertLen(seen, 36)
            self.assertLessEqual(widths, {16, 30})
        for kwargs, message in (
            ({"batch_multiple": 3}, "batch_size=8, batch_multiple=3"),
            ({"batch_multiple": 0}, "Received: batch_multiple=0"),
            ({"pad_to_multiple_of": 1.5}, "Received: pad_to_multiple_of=1.5"),
        ):
            with self.assertRaisesRegex(ValueError, message):
                preprocessed_batches(self.dataset, preprocessor(), 8, **kwargs)

    def test_batches_group_similar_lengths_and_reshuffle(self):
        batches = preprocessed_batches(
            self.dataset, preprocessor(), 4, shuffle=True, seed=0
        )
        first = [tuple(y.numpy()) for _, y in batches]
        second = [tuple(y.numpy()) for _, y in batches]
        self.assertNotEqual(first, second)
        padding = [(x["padding_mask"].numpy() == 0).sum() for x, _ in batches]
        unsorted = preprocessed_batches(
            self.dataset, preprocessor(), 4, length_aware=False
        )
        wasted = [(x["padding_mask"].numpy() == 0).sum() for x, _ in unsorted]
        self.assertLess(sum(padding), sum(wasted) / 4)

    def test_initial_epoch_continues_the_order_of_an_uninterrupted_run(self):
        def orders(initial_epoch, passes):
            batches = preprocessed_batches(
                self.dataset, preprocessor(), 4, shuffle=True, seed=5,
                initial_epoch=initial_epoch,
            )  # fmt: skip
            return [
                [tuple(y.numpy()) for _, y in batches] for _ in range(passes)
            ]

        self.assertEqual(orders(2, 2), orders(0, 4)[2:])
        for bad in (-1, 1.5, True, "2"):
            with self.assertRaisesRegex(
                ValueError, f"Received: initial_epoch={bad!r}"
            ):
                preprocessed_batches(
                    self.dataset, preprocessor(), 4, initial_epoch=bad
                )

    def test_predictions_are_the_same_either_way(self):
        model = ADDropBertTextClassifier(
            tiny_backbone(vocabulary_size=len(VOCABULARY)), num_classes=2
        )
        outputs = {}
        for length_aware in (True, False):
            batches = preprocessed_batches(
                self.dataset, preprocessor(16), 8, length_aware=length_aware
            )
            for x, y in batches:
                for label, logits in zip(y.numpy(), model.predict_on_batch(x)):
                    outputs.setdefault(int(label), []).append(logits)
        for label, (a, b) in outputs.items():
            self.assertAllClose(a, b, atol=1e-5)

    def test_a_preprocessor_without_a_padding_mask_is_cut_at_token_id_0(
        self,
    ):
        # RoFormer-v2's preprocessor gives no mask: its padding is id 0.
        roformer = keras_hub.models.RoformerV2TextClassifierPreprocessor(
            keras_hub.models.RoformerV2Tokenizer(vocabulary=VOCABULARY),
            sequence_length=32,
        )
        bert_widths = sorted(
            x["token_ids"].shape[1]
            for x, _ in preprocessed_batches(self.dataset, preprocessor(), 8)
        )
        batches = preprocessed_batches(self.dataset, roformer, 8)
        self.assertNotIn("padding_mask", next(iter(batches))[0])
        widths = []
        for x, _ in batches:
            ids = x["token_ids"].numpy()
            widths.append(ids.shape[1])
            # Cut at the longest example: its last token is real.
            self.assertTrue((ids[:, -1] != 0).any())
        self.assertEqual(sorted(widths), bert_widths)

    def test_unlabelled_single_texts(self):
        dataset = tf.data.Dataset.from_tensor_slices(self.first)
        batches = preprocessed_batches(
            dataset, preprocessor(), 10, labelled=False
        )
        self.assertEqual(sum(x["token_ids"].shape[0] for x in batches), 37)


class SampleIndicesTest(TestCase):
    def test_few_shot_draws_k_per_class_reproducibly(self):
        labels = np.array([0] * 30 + [1] * 10 + [2] * 5)
        indices = sample_indices(labels, few_shot=4, seed=7)
        self.assertEqual(
            collections.Counter(labels[indices]), {0: 4, 1: 4, 2: 4}
        )
        self.assertAllEqual(indices, sample_indices(labels, few_shot=4, seed=7))
        self.assertNotEqual(
            list(indices), list(sample_indices(labels, few_shot=4, seed=8))
        )

    def test_limit_and_errors(self):
        labels = np.arange(100) % 2
        self.assertLen(sample_indices(labels, limit=10, seed=0), 10)
        self.assertLen(sample_indices(labels, limit=1000, seed=0), 100)
        with self.assertRaisesRegex(ValueError, "Received: few_shot=60"):
            sample_indices(labels, few_shot=60)
        with self.assertRaisesRegex(ValueError, "regression"):
            sample_indices(np.linspace(0, 5, 10), few_shot=1)
        with self.assertRaisesRegex(ValueError, "Received: limit=0"):
            sample_indices(labels, limit=0)
