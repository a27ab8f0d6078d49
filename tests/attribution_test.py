import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_addrop.attribution import attribution_target
from keras_addrop.attribution import compute_attribution
from keras_addrop.layers import ADDropAttention
from keras_addrop.layers import addrop_scope
from keras_addrop.models import ADDropBertTextClassifier
from tests.test_case import TestCase
from tests.test_case import tiny_backbone
from tests.test_case import tiny_batch
from tests.test_case import to_numpy

# Runs under every backend (README).
pytestmark = pytest.mark.all_backends


def stock_forward_with_scores(model, x):
    """The classifier's forward pass from the stock layers, returning the
    attention probabilities each encoder exposes through keras-hub's own
    `return_attention_scores` (dropout 0: the tensor that multiplies V)."""
    backbone = model.backbone
    tokens = backbone.token_embedding(x["token_ids"])
    hidden = backbone.embeddings_add(
        (
            tokens,
            backbone.position_embedding(tokens),
            backbone.segment_embedding(x["segment_ids"]),
        )
    )
    hidden = backbone.embeddings_layer_norm(hidden)
    scores = []
    for encoder in backbone.transformer_layers:
        hidden, layer_scores = encoder(
            hidden,
            padding_mask=x["padding_mask"],
            return_attention_scores=True,
        )
        scores.append(layer_scores)
    pooled = backbone.pooled_dense(hidden[:, 0, :])
    return model.output_dense(pooled), scores


class ComputeAttributionTest(TestCase):
    def setUp(self):
        super().setUp()
        keras.utils.set_random_seed(0)
        self.model = ADDropBertTextClassifier(
            tiny_backbone(num_layers=3),
            num_classes=3,
            dropout=0.0,
            addrop_layers="all",
        )
        self.x, self.y = tiny_batch(batch_size=4)

    @pytest.mark.tf_only
    def test_gradient_attribution_matches_a_tape_on_stock_scores(self):
        with tf.GradientTape(persistent=True) as tape:
            logits, scores = stock_forward_with_scores(self.model, self.x)
            target = attribution_target(logits, labels="pseudo")
        self.assertAllClose(logits, self.model(self.x), atol=1e-5)
        expected = [tape.gradient(target, s) for s in scores]
        result = compute_attribution(self.model, self.x)
        self.assertLen(result, 3)
        for got, want in zip(result, expected):
            self.assertEqual(tuple(got.shape), (4, 2, 10, 10))
            self.assertAllClose(got, want, atol=1e-6, rtol=1e-5)

    def test_gradient_attribution_matches_finite_differences(self):
        layers = self.model.addrop_attention_layers
        result = compute_attribution(self.model, self.x, layers=layers[:2])
        eps = 1e-2
        for layer_index, entry in [(0, (1, 0, 2, 3)), (1, (0, 1, 0, 5))]:
            onehot = np.zeros((4, 2, 10, 10), "float32")
            onehot[entry] = eps

            def target(sign):
                def perturb(weights):
                    return weights + keras.ops.convert_to_tensor(sign * onehot)

                with addrop_scope(capture={layers[layer_index]: perturb}):
                    logits = self.model(self.x)
                # Keep the classes fixed: the pseudo labels of the unperturbed
                # model.
                classes = np.argmax(to_numpy(self.model(self.x)), -1)
                return float(
                    np.take_along_axis(
                        to_numpy(logits), classes[:, None], -1
                    ).sum()
                )

            numeric = (target(1.0) - target(-1.0)) / (2 * eps)
            analytic = float(to_numpy(result[layer_index])[entry])
            self.assertAllClose(analytic, numeric, atol=1e-4, rtol=2e-2)

    def test_padding_queries_get_zero_attribution(self):
        result = compute_attribution(self.model, self.x)
        padding = self.x["padding_mask"]
        for attribution in result:
            attribution = to_numpy(attribution)
            for b in range(4):
                self.assertAllEqual(attribution[b, :, ~padding[b], :], 0.0)

    def test_gold_labels_differ_from_pseudo_labels_only_where_wrong(self):
        predicted = np.argmax(to_numpy(self.model(self.x)), -1)
        gold = predicted.copy()
        gold[1] = (gold[1] + 1) % 3
        pseudo = compute_attribution(self.model, self.x, labels="pseudo")
        with_gold = compute_attribution(
            self.model, self.x, y=gold, labels="gold"
        )
        for p, g in zip(pseudo, with_gold):
            p, g = to_numpy(p), to_numpy(g)
            self.assertAllClose(np.delete(p, 1, 0), np.delete(g, 1, 0))
            self.assertFalse(np.allclose(p[1], g[1]))

    def test_regression_target_is_minus_the_mean_squared_error(self):
        y_pred = np.array([[1.0], [3.0]], "float32")
        y = np.array([2.0, 1.0], "float32")
        self.assertAllClose(attribution_target(y_pred, y), -(1 + 4) / 2)
        with self.assertRaisesRegex(ValueError, "Received: y=None"):
            attribution_target(y_pred)

    def test_default_layers_are_the_selected_layers(self):
        model = ADDropBertTextClassifier(
            tiny_backbone(num_layers=3), num_classes=2, addrop_layers=(2, 0)
        )
        result = compute_attribution(model, self.x)
        everything = compute_attribution(
            model,
            self.x,
            layers=[
                model.backbone.transformer_layers[i]._self_attention_layer
                for i in (0, 2)
            ],
        )
        self.assertLen(result, 2)
        for a, b in zip(result, everything):
            self.assertAllClose(a, b)

    def test_training_mode_attribution_is_stochastic(self):
        model = ADDropBertTextClassifier(
            tiny_backbone(dropout=0.3), num_classes=2
        )
        first = compute_attribution(model, self.x, training=True)[0]
        second = compute_attribution(model, self.x, training=True)[0]
        self.assertFalse(np.allclose(first, second))
        inference = compute_attribution(model, self.x)[0]
        self.assertAllClose(inference, compute_attribution(model, self.x)[0])

    def test_float16_attribution_ranks_like_float32(self):
        x, _ = tiny_batch(batch_size=8, seq_len=12)
        reference = compute_attribution(self.model, x)
        keras.mixed_precision.set_global_policy("mixed_float16")
        half = ADDropBertTextClassifier(
            tiny_backbone(num_layers=3),
            num_classes=3,
            dropout=0.0,
            addrop_layers="all",
        )
        half.set_weights(self.model.get_weights())
        result = compute_attribution(half, x)
        for got, want in zip(result, reference):
            got, want = to_numpy(got), to_numpy(want)
            self.assertEqual(got.dtype, np.float32)
            self.assertTrue(np.all(np.isfinite(got)))
            agree = np.mean(np.sign(got) == np.sign(want))
            self.assertGreater(agree, 0.9)

    def test_bad_arguments_are_rejected(self):
        with self.assertRaisesRegex(ValueError, "Received: labels='silver'"):
            compute_attribution(self.model, self.x, labels="silver")
        with self.assertRaisesRegex(ValueError, "Received: y=None"):
            compute_attribution(self.model, self.x, labels="gold")
        with self.assertRaisesRegex(ValueError, "Received: layer="):
            compute_attribution(
                self.model, self.x, layers=[keras.layers.Dense(2)]
            )
        plain = keras.Sequential([keras.layers.Dense(2)])
        with self.assertRaisesRegex(ValueError, "layers=None"):
            compute_attribution(plain, np.ones((1, 2)))


class AttributionVariantsTest(TestCase):
    def setUp(self):
        super().setUp()
        keras.utils.set_random_seed(1)
        self.model = ADDropBertTextClassifier(
            tiny_backbone(num_layers=2),
            num_classes=3,
            dropout=0.0,
            addrop_layers="all",
        )
        self.x, self.y = tiny_batch(batch_size=3, seq_len=8)

    def riemann_sum(self, layer, steps, classes):
        """IG by an explicit loop over alphas, one tape per step."""
        total = 0.0
        for k in range(1, steps + 1):
            alpha = k / steps
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                seen = {}

                def scale(weights):
                    seen["a"] = weights
                    scaled = weights * alpha
                    tape.watch(scaled)
                    seen["scaled"] = scaled
                    return scaled

                with addrop_scope(capture={layer: scale}):
                    logits = self.model(self.x, training=False)
                target = keras.ops.sum(
                    keras.ops.take_along_axis(logits, classes[:, None], -1)
                )
            total = total + tape.gradient(target, seen["scaled"])
        return seen["a"] * total / steps

    @pytest.mark.tf_only
    def test_integrated_gradients_match_an_explicit_riemann_sum(self):
        classes = np.argmax(to_numpy(self.model(self.x)), -1)
        layers = self.model.addrop_attention_layers
        result = compute_attribution(
            self.model,
            self.x,
            method="integrated_gradients",
            ig_steps=5,
            ig_steps_per_pass=2,  # Chunks of 2, 2 and 1 steps.
            training=True,  # Ignored: IG runs with dropout off.
        )
        for layer, got in zip(layers, result):
            want = self.riemann_sum(layer, 5, classes)
            self.assertAllClose(got, want, atol=1e-6, rtol=1e-4)
        single_pass = compute_attribution(
            self.model,
            self.x,
            method="integrated_gradients",
            ig_steps=5,
            ig_steps_per_pass=5,
        )
        for a, b in zip(result, single_pass):
            self.assertAllClose(a, b, atol=1e-6, rtol=1e-4)

    @pytest.mark.tf_only
    def test_integrated_gradients_trace_with_unknown_lengths(self):
        # Length-aware batches make `fit` trace with (None, None) inputs.
        spec = {
            key: tf.TensorSpec((None, None), tf.as_dtype(value.dtype))
            for key, value in self.x.items()
        }
        traced = tf.function(
            lambda x: compute_attribution(
                self.model, x, method="integrated_gradients", ig_steps=3
            ),
            input_signature=[spec],
        )
        eager = compute_attribution(
            self.model, self.x, method="integrated_gradients", ig_steps=3
        )
        for a, b in zip(traced(self.x), eager):
            self.assertAllClose(a, b, atol=1e-6, rtol=1e-4)

    def test_attention_attribution_is_the_attention_probabilities(self):
        _, scores = stock_forward_with_scores(self.model, self.x)
        result = compute_attribution(self.model, self.x, method="attention")
        for got, want in zip(result, scores):
            self.assertAllClose(got, want, atol=1e-6)

    def test_random_attribution_is_uniform_noise(self):
        result = compute_attribution(
            self.model, self.x, method="random", seed=3
        )
        values = to_numpy(result[0])
        self.assertEqual(values.shape, (3, 2, 8, 8))
        self.assertTrue(np.all((values >= 0) & (values < 1)))
        again = compute_attribution(self.model, self.x, method="random", seed=3)
        self.assertAllClose(values, again[0])

    @pytest.mark.tf_only
    def test_regression_attribution_is_the_negated_loss_gradient(self):
        keras.utils.set_random_seed(2)
        model = ADDropBertTextClassifier(
            tiny_backbone(), num_classes=1, dropout=0.0, addrop_layers="all"
        )
        scores_y = np.array([0.5, 4.0, 2.5], "float32")
        with tf.GradientTape(persistent=True) as tape:
            prediction, scores = stock_forward_with_scores(model, self.x)
            loss = keras.ops.mean(
                keras.ops.square(keras.ops.squeeze(prediction, -1) - scores_y)
            )
        result = compute_attribution(model, self.x, y=scores_y)
        for got, s in zip(result, scores):
            self.assertAllClose(got, -tape.gradient(loss, s), atol=1e-6)
        # Integrated gradients use the same target.
        ig = compute_attribution(
            model, self.x, y=scores_y, method="integrated_gradients"
        )
        self.assertEqual(tuple(ig[0].shape), (3, 2, 8, 8))
        # Attention attribution is not negated.
        aa = compute_attribution(model, self.x, method="attention")
        self.assertTrue(np.all(to_numpy(aa[0]) >= 0))

    def test_layers_the_model_does_not_call_are_rejected(self):
        stranger = ADDropAttention(num_heads=2, key_dim=4, name="stranger")
        layers = [self.model.addrop_attention_layers[0], stranger]
        for method in ("gradient", "attention", "integrated_gradients"):
            with self.assertRaisesRegex(
                ValueError, r"not called .* Received: layers=\['stranger'\]"
            ):
                compute_attribution(
                    self.model, self.x, layers=layers, method=method
                )

    def test_bad_method_and_steps_are_rejected(self):
        with self.assertRaisesRegex(ValueError, "Received: method='ig'"):
            compute_attribution(self.model, self.x, method="ig")
        with self.assertRaisesRegex(ValueError, "Received: ig_steps=0"):
            compute_attribution(
                self.model, self.x, method="integrated_gradients", ig_steps=0
            )
