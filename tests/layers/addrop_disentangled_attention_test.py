import keras
import numpy as np
import pytest

import keras_addrop
from keras_addrop.layers import ADDropDisentangledSelfAttention
from keras_addrop.layers import addrop_scope
from keras_addrop.layers.addrop_attention import CapturedAttention
from tests.test_case import TestCase
from tests.test_case import compile_for_test
from tests.test_case import family_inputs
from tests.test_case import scaled_up_weights
from tests.test_case import tiny_family_task
from tests.test_case import to_numpy

pytestmark = pytest.mark.all_backends


def deberta_classifier():
    keras.utils.set_random_seed(0)
    return scaled_up_weights(tiny_family_task("deberta_v3", dropout=0.0))


class ADDropDisentangledSelfAttentionTest(TestCase):
    def test_the_swap_keeps_the_stock_outputs_and_weights(self):
        stock = deberta_classifier()
        x = family_inputs(stock.backbone)
        before = to_numpy(stock.predict(x, verbose=0))
        paths = [w.path for w in stock.weights]
        layers = keras_addrop.swap_attention(stock.backbone)
        self.assertLen(layers, 2)
        for layer in layers:
            self.assertIsInstance(layer, ADDropDisentangledSelfAttention)
        self.assertEqual([w.path for w in stock.weights], paths)
        self.assertAllClose(stock.predict(x, verbose=0), before, atol=1e-6)
        # In a scope but without a keep mask: still the stock computation.
        captured = CapturedAttention(layers)
        with addrop_scope(capture=captured.functions):
            inside = to_numpy(stock(x))
        self.assertAllClose(inside, before, atol=1e-6)

    def test_a_dropped_key_gets_zero_weight_as_padding_does(self):
        model = deberta_classifier()
        layers = keras_addrop.swap_attention(model.backbone)
        keep = np.ones((2, 2, 10, 10), bool)
        keep[:, :, :, 1] = False
        captured = CapturedAttention(layers)
        with addrop_scope(
            keep_masks={layers[0]: keep}, capture=captured.functions
        ):
            model(family_inputs(model.backbone))
        first, second = (to_numpy(w) for w in captured.weights())
        self.assertAllEqual(first[:, :, :, 1], np.zeros((2, 2, 10)))
        self.assertAllEqual(first[1, :, :, 6:], np.zeros((2, 10, 4)))
        self.assertAllClose(first.sum(-1), np.ones((2, 2, 10)), atol=1e-6)
        # The other layer's mask was not given: it keeps the key.
        self.assertGreater(second[:, :, :, 1].min(), 0.0)

    def test_gradient_attribution_matches_a_finite_difference(self):
        model = deberta_classifier()
        layers = keras_addrop.swap_attention(model.backbone)
        x = family_inputs(model.backbone)
        y = np.array([2, 0])
        # The last layer matters only through its first query (the head
        # reads the first token), so that layer's position is in row 0.
        self.assertAttributionIsAFiniteDifference(
            model, x, y, layers, ((0, (0, 1, 3, 4)), (1, (1, 0, 0, 5)))
        )

    def test_the_addrop_classifier_trains_with_drops(self):
        stock = deberta_classifier()
        model = keras_addrop.models.ADDropDebertaV3TextClassifier(
            stock.backbone,
            num_classes=3,
            preprocessor=None,
            dropout=0.0,
            addrop_layers="all",
            candidate_ratio=0.5,
            drop_rate=0.5,
        )
        compile_for_test(model)
        x = family_inputs(model.backbone)
        history = model.fit(x, np.array([2, 0]), epochs=2, verbose=0)
        for fraction in history.history["addrop_drop_fraction"]:
            self.assertGreater(fraction, 0.1)
