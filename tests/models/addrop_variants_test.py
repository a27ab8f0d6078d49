import keras
import numpy as np
import pytest
from absl.testing import parameterized

from keras_addrop.attribution import compute_attribution
from keras_addrop.models import ADDropBertTextClassifier
from tests.test_case import TestCase
from tests.test_case import tiny_backbone
from tests.test_case import tiny_batch

pytestmark = pytest.mark.all_backends


class ADDropVariantsTest(TestCase):
    def setUp(self):
        super().setUp()
        self.x, self.y = tiny_batch(batch_size=8, seq_len=10)

    def keep_masks(self, model):
        calls = model.addrop_attention_calls
        return model._addrop_keep_masks(
            self.x,
            self.y,
            None,
            calls,
            model._addrop_visibilities(self.x, calls),
        )

    def test_drop_low_drops_the_lowest_attribution_keys(self):
        model = ADDropBertTextClassifier(
            tiny_backbone(),
            num_classes=2,
            dropout=0.0,
            addrop_layers="all",
            candidate_ratio=0.3,
            drop_rate=1.0,
            drop_region="low",
        )
        attributions = compute_attribution(model, self.x)
        padding = self.x["padding_mask"]
        for keep, attribution in zip(self.keep_masks(model), attributions):
            keep, attribution = np.asarray(keep), np.asarray(attribution)
            for b in range(8):
                real = np.flatnonzero(padding[b])
                k = int(np.ceil(0.3 * len(real) - 1e-9))
                for h in range(2):
                    for t in real:
                        row = attribution[b, h, t, real]
                        dropped = real[~keep[b, h, t, real]]
                        # Ties broken by position, as in the mask op.
                        lowest = real[np.lexsort((real, row))[:k]]
                        self.assertEqual(sorted(dropped), sorted(lowest))

    def test_random_drops_about_p_times_q_of_real_positions(self):
        model = ADDropBertTextClassifier(
            tiny_backbone(),
            num_classes=2,
            addrop_layers="all",
            candidate_ratio=0.5,
            drop_rate=0.5,
            attribution="random",
            seed=1,
        )
        padding = self.x["padding_mask"]
        real = padding[:, None, :, None] & padding[:, None, None, :]
        shares = []
        for _ in range(5):
            for keep in self.keep_masks(model):
                keep = np.asarray(keep)
                self.assertFalse(np.any(keep & ~padding[:, None, None, :]))
                real_positions = np.broadcast_to(real, keep.shape)
                shares.append(
                    (real_positions & ~keep).sum() / real_positions.sum()
                )
        self.assertAllClose(np.mean(shares), 0.25, atol=0.03)

    @parameterized.named_parameters(
        (
            "integrated_gradients",
            {"attribution": "integrated_gradients", "ig_steps": 4},
        ),
        ("attention", {"attribution": "attention"}),
        ("random", {"attribution": "random"}),
        (
            "gold_labels_drop_low",
            {"attribution_labels": "gold", "drop_region": "low"},
        ),
    )
    def test_variant_trains(self, options):
        model = ADDropBertTextClassifier(
            tiny_backbone(dropout=0.1),
            num_classes=2,
            addrop_layers="all",
            candidate_ratio=0.5,
            drop_rate=0.5,
            **options,
        )
        model.compile(
            optimizer="adam",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        history = model.fit(self.x, self.y, batch_size=4, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        self.assertAllClose(
            history.history["addrop_drop_fraction"][0], 0.25, atol=0.08
        )

    def test_regression_head_trains_with_gold_scores(self):
        scores = np.linspace(0.0, 5.0, 8).astype("float32")
        model = ADDropBertTextClassifier(
            tiny_backbone(), num_classes=1, addrop_layers=(0,)
        )
        model.compile(optimizer="adam", loss="mse")
        history = model.fit(self.x, scores, batch_size=4, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.0)

    def test_every_option_survives_keras_saving(self):
        options = {
            "candidate_ratio": 0.4,
            "drop_rate": 0.6,
            "addrop_layers": [1],
            "attribution": "integrated_gradients",
            "attribution_labels": "gold",
            "drop_region": "low",
            "ig_steps": 7,
            "seed": 11,
        }
        model = ADDropBertTextClassifier(
            tiny_backbone(), num_classes=2, **options
        )
        restored = self.run_model_saving_test(model, self.x)
        config = restored.get_config()
        for key, value in options.items():
            self.assertEqual(config[key], value, msg=key)

    def test_bad_option_values_are_rejected(self):
        cases = [
            ({"attribution": "ga"}, "Received: attribution='ga'"),
            ({"drop_region": "middle"}, "Received: drop_region='middle'"),
            ({"ig_steps": 0}, "Received: ig_steps=0"),
            ({"ig_steps": 2.5}, "Received: ig_steps=2.5"),
        ]
        for kwargs, message in cases:
            with self.assertRaisesRegex(ValueError, message):
                ADDropBertTextClassifier(
                    tiny_backbone(), num_classes=2, **kwargs
                )
