import keras
import keras_hub
import numpy as np
import pytest
from absl.testing import parameterized

import keras_addrop
from keras_addrop.layers import AttentionCall
from keras_addrop.layers import addrop_scope
from keras_addrop.layers.addrop_attention import CapturedAttention
from tests.test_case import TestCase
from tests.test_case import compile_for_test
from tests.test_case import family_inputs
from tests.test_case import scaled_up_weights
from tests.test_case import tiny_family_task
from tests.test_case import to_numpy

pytestmark = pytest.mark.all_backends


def albert_classifier(**addrop_kwargs):
    """A tiny ALBERT classifier whose two transformer layers share one
    encoder, with large random weights and no dropout."""
    keras.utils.set_random_seed(0)
    stock = tiny_family_task("albert", dropout=0.0)
    addrop_kwargs.setdefault("addrop_layers", "all")
    model = keras_addrop.models.ADDropAlbertTextClassifier(
        stock.backbone,
        num_classes=3,
        preprocessor=None,
        dropout=0.0,
        **addrop_kwargs,
    )
    return scaled_up_weights(model)


def captured_weights(model, calls, keep_masks=None):
    captured = CapturedAttention(calls)
    with addrop_scope(keep_masks=keep_masks, capture=captured.functions):
        model(family_inputs(model.backbone))
    return [to_numpy(w) for w in captured.weights()]


class AttentionCallTest(TestCase):
    def test_calls_are_equal_when_they_name_one_layer_and_one_index(self):
        layer = keras_addrop.layers.ADDropAttention(num_heads=2, key_dim=4)
        other = keras_addrop.layers.ADDropAttention(num_heads=2, key_dim=4)
        self.assertEqual(AttentionCall(layer, 1), AttentionCall(layer, 1))
        self.assertEqual(AttentionCall(layer), AttentionCall(layer, 0))
        self.assertNotEqual(AttentionCall(layer, 0), AttentionCall(layer, 1))
        self.assertNotEqual(AttentionCall(layer, 0), AttentionCall(other, 0))
        self.assertNotEqual(AttentionCall(layer, 0), layer)
        self.assertLen({AttentionCall(layer, 1), AttentionCall(layer, 1)}, 1)
        self.assertEqual(AttentionCall(layer, 1).num_heads, 2)
        self.assertEqual(
            repr(AttentionCall(layer, 1)), f"AttentionCall({layer.name!r}, 1)"
        )

    def test_a_bad_call_index_is_refused(self):
        layer = keras_addrop.layers.ADDropAttention(num_heads=2, key_dim=4)
        for index in (-1, 1.0, True, "0"):
            with self.assertRaisesRegex(
                ValueError, rf"Received: index={index!r}$"
            ):
                AttentionCall(layer, index)


class SharedAttentionTest(TestCase):
    def test_each_transformer_layer_is_one_call_of_the_shared_layer(self):
        model = albert_classifier()
        calls = model.addrop_attention_calls
        self.assertEqual([call.index for call in calls], [0, 1])
        self.assertIs(calls[0].layer, calls[1].layer)
        self.assertIsInstance(
            calls[0].layer, keras_addrop.layers.ADDropAttention
        )
        self.assertEqual(model.addrop_attention_layers, [calls[0].layer] * 2)
        # `addrop_layers` counts calls: (1,) is the second transformer layer.
        second = albert_classifier(addrop_layers=(1,))
        self.assertEqual(
            [call.index for call in second.addrop_attention_calls], [1]
        )
        with self.assertRaisesRegex(ValueError, "addrop_layers"):
            albert_classifier(addrop_layers=(2,))

    def test_groups_give_their_calls_in_the_order_of_the_forward_pass(self):
        keras.utils.set_random_seed(0)
        backbone = keras_hub.models.AlbertBackbone(
            vocabulary_size=20,
            num_layers=4,
            num_heads=2,
            num_groups=2,
            embedding_dim=8,
            hidden_dim=8,
            intermediate_dim=16,
            max_sequence_length=12,
        )
        model = keras_addrop.models.ADDropAlbertTextClassifier(
            backbone, num_classes=2, preprocessor=None, addrop_layers="all"
        )
        calls = model.addrop_attention_calls
        first, second = {id(call.layer): call.layer for call in calls}.values()
        self.assertEqual(
            [(call.layer, call.index) for call in calls],
            [(first, 0), (first, 1), (second, 0), (second, 1)],
        )
        # The forward pass makes each of these calls (a missing one fails).
        attribution = keras_addrop.attribution.compute_attribution(
            model, family_inputs(backbone)
        )
        self.assertLen(attribution, 4)

    def test_attribution_gives_each_call_its_own_finite_difference(self):
        model = albert_classifier()
        calls = model.addrop_attention_calls
        x = family_inputs(model.backbone)
        y = np.array([2, 0])
        attribution = keras_addrop.attribution.compute_attribution(
            model, x, y=y, labels="gold"
        )
        self.assertLen(attribution, 2)
        first, second = (to_numpy(a) for a in attribution)
        self.assertGreater(np.abs(first - second).max(), 1e-3)
        # The [CLS] query: the only one of the last call that the head reads.
        position = (0, 1, 0, 4)
        self.assertAttributionIsAFiniteDifference(
            model, x, y, calls, ((0, position), (1, position)), attribution
        )

    def test_the_shared_layer_alone_is_refused_as_ambiguous(self):
        model = albert_classifier()
        layer = model.addrop_attention_layers[0]
        with self.assertRaisesRegex(
            ValueError,
            r"called more than once in one forward pass.*AttentionCall.*"
            rf"Received: layer='{layer.name}'",
        ):
            keras_addrop.attribution.compute_attribution(
                model, family_inputs(model.backbone), layers=[layer]
            )

    def test_a_keep_mask_applies_to_its_call_only(self):
        model = albert_classifier()
        calls = model.addrop_attention_calls
        keep = np.ones((2, 2, 10, 10), bool)
        keep[:, :, :, 1] = False
        first, second = captured_weights(model, calls, {calls[1]: keep})
        self.assertGreater(first[:, :, :, 1].min(), 0.0)
        # Real queries only: padded query rows are masked by the layer.
        self.assertAllEqual(second[0, :, :, 1], np.zeros((2, 10)))
        self.assertAllEqual(second[1, :, :6, 1], np.zeros((2, 6)))
        # The layer itself (every call) still works as a key.
        first, second = captured_weights(model, calls, {calls[0].layer: keep})
        self.assertAllEqual(first[0, :, :, 1], np.zeros((2, 10)))
        self.assertAllEqual(second[0, :, :, 1], np.zeros((2, 10)))

    def test_the_calls_keep_masks_are_drawn_independently(self):
        # Every real key a candidate, each dropped with probability 1/2: the
        # two calls' masks differ only by their own random draws.
        model = albert_classifier(
            attribution="random", candidate_ratio=1.0, drop_rate=0.5
        )
        x = family_inputs(model.backbone)
        calls = model.addrop_attention_calls
        first, second = (
            to_numpy(mask)
            for mask in model._addrop_keep_masks(
                x, None, None, calls, model._addrop_visibilities(x, calls)
            )
        )
        padding = x["padding_mask"]
        real = np.broadcast_to(
            padding[:, None, :, None] & padding[:, None, None, :], first.shape
        )
        self.assertAllClose(1 - first[real].mean(), 0.5, atol=0.15)
        self.assertAllClose(1 - second[real].mean(), 0.5, atol=0.15)
        self.assertAllClose(
            (first[real] != second[real]).mean(), 0.5, atol=0.15
        )

    def test_training_drops_about_p_q_of_every_calls_pairs(self):
        model = albert_classifier(candidate_ratio=0.5, drop_rate=0.5)
        compile_for_test(model)
        x = family_inputs(model.backbone)
        history = model.fit(x, np.array([2, 0]), epochs=3, verbose=0)
        for fraction in history.history["addrop_drop_fraction"]:
            self.assertAllClose(fraction, 0.25, atol=0.06)

    @parameterized.named_parameters(
        ("integrated_gradients", "integrated_gradients"),
        ("attention", "attention"),
        ("random", "random"),
    )
    def test_every_attribution_method_masks_every_call(self, method):
        model = albert_classifier(
            attribution=method, ig_steps=3, candidate_ratio=0.5, drop_rate=1.0
        )
        x = family_inputs(model.backbone)
        calls = model.addrop_attention_calls
        masks = model._addrop_keep_masks(
            x,
            np.array([2, 0]),
            None,
            calls,
            model._addrop_visibilities(x, calls),
        )
        self.assertLen(masks, 2)
        for mask in masks:
            # q = 1: every candidate is dropped; half of each real row (RD:
            # each real key with probability one half).
            dropped = ~to_numpy(mask)[0]
            if method == "random":
                self.assertAllClose(dropped.mean(), 0.5, atol=0.15)
            else:
                self.assertAllEqual(dropped.sum(-1), np.full((2, 10), 5))
        compile_for_test(model)
        history = model.fit(x, np.array([2, 0]), verbose=0)
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.3)

    def test_a_mean_pooling_model_counts_the_calls_too(self):
        backbone = tiny_family_task("albert").backbone
        model = keras_addrop.models.mean_pooling_classifier(
            backbone, num_classes=2, addrop_layers=(1,)
        )
        calls = model.addrop_attention_calls
        self.assertEqual([call.index for call in calls], [1])
        self.assertLen(model._addrop_all_attention_calls(), 2)
