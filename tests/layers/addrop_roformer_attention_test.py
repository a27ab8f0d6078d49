import keras
import numpy as np
import pytest

import keras_addrop
from keras_addrop.layers import ADDropRoformerAttention
from keras_addrop.layers import addrop_scope
from keras_addrop.layers.addrop_attention import CapturedAttention
from tests.test_case import TestCase
from tests.test_case import compile_for_test
from tests.test_case import family_inputs
from tests.test_case import scaled_up_weights
from tests.test_case import tiny_family_task
from tests.test_case import to_numpy

pytestmark = pytest.mark.all_backends


def roformer_classifier():
    keras.utils.set_random_seed(0)
    return scaled_up_weights(tiny_family_task("roformer_v2", dropout=0.0))


def all_kept(layers):
    return {layer: np.ones((2, 2, 10, 10), bool) for layer in layers}


class ADDropRoformerAttentionTest(TestCase):
    def test_the_swap_keeps_the_stock_outputs_and_weights(self):
        stock = roformer_classifier()
        x = family_inputs(stock.backbone)
        before = to_numpy(stock.predict(x, verbose=0))
        paths = [w.path for w in stock.weights]
        layers = keras_addrop.swap_attention(stock.backbone)
        self.assertLen(layers, 2)
        for layer in layers:
            self.assertIsInstance(layer, ADDropRoformerAttention)
            self.assertEqual(layer.num_heads, 2)
        self.assertEqual([w.path for w in stock.weights], paths)
        self.assertAllClose(stock.predict(x, verbose=0), before, atol=1e-6)

    def test_both_addrop_paths_equal_the_stock_layer_with_padding(self):
        # The second example is padded: whatever the stock layer does with
        # padding on this backend, the masked (fused) and the captured
        # (explicit) paths do too when nothing is dropped.
        stock = roformer_classifier()
        x = family_inputs(stock.backbone)
        before = to_numpy(stock(x))
        layers = keras_addrop.swap_attention(stock.backbone)
        with addrop_scope(keep_masks=all_kept(layers)):
            masked = to_numpy(stock(x))
        captured = CapturedAttention(layers)
        with addrop_scope(
            keep_masks=all_kept(layers), capture=captured.functions
        ):
            explicit = to_numpy(stock(x))
        self.assertAllClose(masked, before, atol=1e-6)
        self.assertAllClose(explicit, before, atol=1e-5)
        for weights in captured.weights():
            self.assertAllClose(
                to_numpy(weights).sum(-1), np.ones((2, 2, 10)), atol=1e-6
            )

    def test_a_dropped_key_gets_zero_weight(self):
        model = roformer_classifier()
        layers = keras_addrop.swap_attention(model.backbone)
        keep = np.ones((2, 2, 10, 10), bool)
        keep[:, :, :, 1] = False
        captured = CapturedAttention(layers)
        with addrop_scope(
            keep_masks={layers[0]: keep}, capture=captured.functions
        ):
            model(family_inputs(model.backbone))
        first, second = (to_numpy(w) for w in captured.weights())
        # Real queries only: on TensorFlow and JAX the stock layer masks a
        # padded query's whole row, which then spreads evenly over all keys.
        self.assertAllEqual(first[0, :, :, 1], np.zeros((2, 10)))
        self.assertAllEqual(first[1, :, :6, 1], np.zeros((2, 6)))
        self.assertAllClose(first.sum(-1), np.ones((2, 2, 10)), atol=1e-6)
        self.assertGreater(second[:, :, :, 1].min(), 0.0)

    def test_a_drop_changes_the_fused_path_as_the_explicit_one(self):
        model = roformer_classifier()
        layers = keras_addrop.swap_attention(model.backbone)
        x = family_inputs(model.backbone)
        keep = all_kept(layers)
        keep[layers[0]][0, :, :, 2] = False
        with addrop_scope(keep_masks=keep):
            fused = to_numpy(model(x))
        with addrop_scope(
            keep_masks=keep, capture=CapturedAttention(layers).functions
        ):
            explicit = to_numpy(model(x))
        self.assertGreater(np.abs(fused - to_numpy(model(x))).max(), 1e-4)
        self.assertAllClose(fused, explicit, atol=1e-5)

    def test_gradient_attribution_matches_a_finite_difference(self):
        model = roformer_classifier()
        layers = keras_addrop.swap_attention(model.backbone)
        x = family_inputs(model.backbone)
        y = np.array([2, 0])
        self.assertAttributionIsAFiniteDifference(
            model, x, y, layers, ((0, (0, 1, 3, 4)), (1, (1, 0, 0, 5)))
        )

    def test_the_addrop_classifier_counts_real_tokens_as_the_backbone(self):
        stock = roformer_classifier()
        model = keras_addrop.models.ADDropRoformerV2TextClassifier(
            stock.backbone,
            num_classes=3,
            preprocessor=None,
            dropout=0.0,
            addrop_layers="all",
            candidate_ratio=0.5,
            drop_rate=0.5,
        )
        x = family_inputs(model.backbone)
        self.assertNotIn("padding_mask", x)
        self.assertAllEqual(
            to_numpy(model._addrop_padding_mask(x)), x["token_ids"] != 0
        )
        compile_for_test(model)
        history = model.fit(x, np.array([2, 0]), epochs=2, verbose=0)
        for fraction in history.history["addrop_drop_fraction"]:
            self.assertGreater(fraction, 0.1)
