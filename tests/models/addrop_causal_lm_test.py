import os

import keras
import keras_hub
import numpy as np
import pytest
from absl.testing import parameterized

import keras_addrop
from keras_addrop.attribution import compute_attribution
from keras_addrop.layers import addrop_scope
from keras_addrop.layers.addrop_attention import CapturedAttention
from keras_addrop.models import ADDropCausalLM
from keras_addrop.models.prompt_response import prompt_response_samples
from tests.test_case import DECODER_FAMILIES
from tests.test_case import TestCase
from tests.test_case import bfloat16_run
from tests.test_case import causal_batch
from tests.test_case import output_difference
from tests.test_case import scaled_up_weights
from tests.test_case import tiny_causal_lms
from tests.test_case import tiny_decoder_backbone
from tests.test_case import to_numpy

pytestmark = pytest.mark.all_backends

# One family per attention path: keras-hub's `CachedMultiHeadAttention`
# (GPT-2), an own layer that is fused on JAX and PyTorch (Llama), an own
# layer with Gemma's grouped head layout.
PATHS = ("gpt2", "llama", "gemma")


def greedy(model, x, prompt_length=3):
    """Greedy `generate` from the first `prompt_length` tokens of `x`."""
    model.compile(sampler="greedy")
    prompt = {
        "token_ids": np.array(x["token_ids"]),
        "padding_mask": np.zeros_like(x["padding_mask"]),
    }
    prompt["padding_mask"][:, :prompt_length] = True
    prompt = {k: keras.ops.convert_to_tensor(v) for k, v in prompt.items()}
    # keras-hub's own generation step: `generate` would then concatenate
    # the batches' outputs, which Gemma 3 cannot on PyTorch in keras-hub
    # 0.32 (an object array among them).
    generate = model.make_generate_function()
    return to_numpy(generate(prompt, stop_token_ids=None)["token_ids"])


def causal_keep_masks(model, x, y, weights):
    calls = model.addrop_attention_calls
    visibilities = model._addrop_visibilities(x, calls)
    masks = model._addrop_keep_masks(x, y, weights, calls, visibilities)
    return calls, [to_numpy(m) for m in masks]


class ADDropCausalLMTest(TestCase):
    @parameterized.named_parameters(*[(f, f) for f in DECODER_FAMILIES])
    def test_the_family_trains_with_addrop_and_generates_as_stock(self, family):
        keras.utils.set_random_seed(0)
        ours, stock = tiny_causal_lms(
            family, addrop_layers="all", candidate_ratio=0.5, drop_rate=0.5
        )
        self.assertIsInstance(ours, ours._stock_cls)
        x, y, weights = causal_batch(batch_size=4)
        # Inactive: the stock logits.
        self.assertAllClose(ours(x), stock(x), atol=0, rtol=0)

        # The selected layers compute explicit probabilities inside a scope
        # (also where the stock layer is fused): a dropped key gets
        # probability 0, a future key always has it.
        layers = ours.addrop_attention_layers
        keep = np.ones((4, layers[0].num_heads, 8, 8), bool)
        keep[:, 1, 5, 2] = False
        captured = CapturedAttention(layers)
        with addrop_scope(
            keep_masks={layers[0]: keep}, capture=captured.functions
        ):
            ours(x)
        first, second = [to_numpy(w) for w in captured.weights()]
        self.assertEqual(first.shape, (4, layers[0].num_heads, 8, 8))
        self.assertAllEqual(first[:, 1, 5, 2], np.zeros(4))
        self.assertTrue(np.all(first[:, 0, 5, 2] > 0))
        self.assertAllEqual(np.triu(second[0, 0], 1), np.zeros((8, 8)))
        self.assertAllClose(first[0].sum(-1), np.ones(first.shape[1:3]))

        # An AD-DROP step moves the weights; generation from the trained
        # weights is the stock model's with the same weights.
        ours.compile(optimizer=keras.optimizers.SGD(0.1))
        history = ours.fit(x, y, sample_weight=weights, epochs=1, verbose=0)
        fraction = history.history["addrop_drop_fraction"][0]
        self.assertBetween(fraction, 0.15, 0.35)  # About p * q = 0.25.
        stock.set_weights(ours.get_weights())
        self.assertAllEqual(greedy(ours, x), greedy(stock, x))

    def test_sampled_generations_equal_the_stock_models_after_training(self):
        keras.utils.set_random_seed(0)
        ours, stock = tiny_causal_lms("llama", addrop_layers="all")
        x, y, weights = causal_batch(batch_size=4)
        ours.compile(optimizer=keras.optimizers.SGD(0.1))
        ours.fit(x, y, sample_weight=weights, epochs=1, verbose=0)
        stock.set_weights(ours.get_weights())
        prompt = {
            "token_ids": keras.ops.convert_to_tensor(x["token_ids"]),
            "padding_mask": keras.ops.convert_to_tensor(
                np.arange(8)[None, :].repeat(4, 0) < 3
            ),
        }
        generated = []
        for model in (ours, stock):
            model.compile(sampler=keras_hub.samplers.TopKSampler(k=5, seed=3))
            generate = model.make_generate_function()
            tokens = generate(prompt, stop_token_ids=None)["token_ids"]
            generated.append(to_numpy(tokens))
        self.assertAllEqual(*generated)
        # Sampling drew tokens other than the greedy ones somewhere.
        self.assertFalse(np.array_equal(generated[0], greedy(ours, x)))

    @parameterized.named_parameters(*[(f, f) for f in PATHS])
    def test_gradient_attribution_is_a_finite_difference_of_counted_logits(
        self, family
    ):
        keras.utils.set_random_seed(0)
        model, _ = tiny_causal_lms(family, addrop_layers="all")
        scaled_up_weights(model, seed=3)
        x, y, weights = causal_batch()
        layers = model.addrop_attention_layers
        attribution = compute_attribution(
            model, x, y=y, labels="gold", sample_weight=weights
        )
        counted = weights > 0

        def counted_logits(logits):
            picked = np.take_along_axis(logits, y[..., None], -1)[..., 0]
            return float(np.sum(picked[counted]))

        for index, position in ((0, (0, 1, 6, 2)), (1, (1, 0, 3, 1))):
            difference = output_difference(
                model, x, layers, index, position, counted_logits
            )
            self.assertIsFiniteDifference(
                to_numpy(attribution[index])[position], difference
            )

    def test_prompt_and_padding_positions_do_not_change_the_attribution(self):
        keras.utils.set_random_seed(0)
        model, _ = tiny_causal_lms("llama", addrop_layers="all")
        scaled_up_weights(model, seed=4)
        x, y, weights = causal_batch()
        counted = weights > 0

        def attribution(labels, inputs=x, targets=None):
            return [
                to_numpy(a)
                for a in compute_attribution(
                    model,
                    inputs,
                    y=targets,
                    labels=labels,
                    sample_weight=weights,
                )
            ]

        # Gold labels: other labels where the weight is 0 (the prompt, the
        # padding, the last position) change nothing.
        other = np.where(counted, y, (y + 1) % 30)
        for a, b in zip(
            attribution("gold", targets=y), attribution("gold", targets=other)
        ):
            self.assertAllClose(a, b, atol=0, rtol=0)
        # Pseudo labels: the gold target of the argmax at the counted
        # positions, whatever the others are.
        argmax = np.argmax(to_numpy(model(x)), -1)
        other = np.where(counted, argmax, (argmax + 1) % 30)
        for a, b in zip(
            attribution("pseudo"), attribution("gold", targets=other)
        ):
            self.assertAllClose(a, b, atol=1e-6)
        # Other tokens in the padding: the real rows' attribution is the same.
        padded = dict(
            x, token_ids=np.where(x["padding_mask"], x["token_ids"], 7)
        )
        self.assertFalse(np.array_equal(padded["token_ids"], x["token_ids"]))
        mask = np.asarray(x["padding_mask"])
        real = mask[:, None, :, None] & mask[:, None, None, :]
        for a, b in zip(
            attribution("pseudo"), attribution("pseudo", inputs=padded)
        ):
            self.assertAllClose(a * real, b * real, atol=1e-6)

    @parameterized.named_parameters(*[(f, f) for f in PATHS])
    def test_masks_drop_only_visible_keys_and_never_empty_a_row(self, family):
        keras.utils.set_random_seed(0)
        model, _ = tiny_causal_lms(
            family, addrop_layers="all", candidate_ratio=1.0, drop_rate=1.0
        )
        x, y, weights = causal_batch(batch_size=4)
        calls, masks = causal_keep_masks(model, x, y, weights)
        real = np.asarray(x["padding_mask"])
        visible = np.tril(np.ones((8, 8), bool))[None] & real[:, None, :]
        visible &= real[:, :, None]
        rows = np.broadcast_to(real[:, None, :, None], (4, 1, 8, 1))
        for mask in masks:
            # p = q = 1: every real row keeps exactly one visible key (the
            # first token its only one), and never a future or padding key.
            self.assertFalse(np.any(mask & ~visible[:, None] & rows))
            kept = (mask & visible[:, None]).sum(-1)
            self.assertAllEqual(
                kept[np.broadcast_to(real[:, None], kept.shape)], 1
            )
            self.assertTrue(np.all(mask[:, :, 0, 0]))

    def test_drop_fraction_counts_visible_pairs(self):
        keras.utils.set_random_seed(0)
        model, _ = tiny_causal_lms("llama", addrop_layers="all", seed=3)
        x, y, weights = causal_batch(batch_size=4)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        calls, masks = causal_keep_masks(model, x, y, weights)
        real = np.asarray(x["padding_mask"])
        visible = np.tril(np.ones((8, 8), bool))[None] & real[:, None, :]
        visible &= real[:, :, None]
        dropped = sum(np.sum(~m & visible[:, None]) for m in masks)
        pairs = visible.sum() * sum(c.num_heads for c in calls)
        # p = q = 0.3: about 0.09 of the visible pairs, measured on them.
        self.assertBetween(dropped / pairs, 0.03, 0.2)

    @parameterized.named_parameters(("before", True), ("after", False))
    def test_lora_trains_only_the_adapters(self, before):
        keras.utils.set_random_seed(0)
        backbone = tiny_decoder_backbone("llama")
        if before:
            backbone.enable_lora(2)
        model = keras_addrop.models.ADDropLlamaCausalLM(
            backbone=backbone,
            preprocessor=None,
            addrop_layers="all",
            candidate_ratio=0.5,
            drop_rate=0.5,
        )
        if not before:
            model.backbone.enable_lora(2)
        x, y, weights = causal_batch(batch_size=4)
        frozen = {w.path: to_numpy(w) for w in model.non_trainable_weights}
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = model.fit(x, y, sample_weight=weights, epochs=2, verbose=0)
        self.assertTrue(
            all(["lora" in w.path for w in model.trainable_weights])
        )
        for weight in model.non_trainable_weights:
            self.assertAllEqual(to_numpy(weight), frozen[weight.path])
        self.assertBetween(
            history.history["addrop_drop_fraction"][1], 0.15, 0.35
        )

    def test_an_unsupported_family_is_refused_by_name(self):
        backbone = keras_hub.models.BloomBackbone(
            vocabulary_size=30,
            num_layers=1,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
        )
        preset = os.path.join(self.get_temp_dir(), "bloom")
        keras_hub.models.BloomCausalLM(backbone, None).save_to_preset(preset)
        with self.assertRaisesRegex(
            ValueError, r"no causal LM for the Bloom family.*GPT-2"
        ):
            ADDropCausalLM.from_preset(preset)


GPT2_MERGES = ["a i", "ai r", "Ġ air", "p l", "pl a", "n e", "pla ne"]
GPT2_MERGES += ["Ġ a", "Ġa t", "p o", "r t", "po rt"]
GPT2_TOKENS = ["<|endoftext|>", "Ġ", *"airplneto"]
GPT2_TOKENS += ["".join(merge.split()) for merge in GPT2_MERGES]
GPT2_VOCABULARY = {token: i for i, token in enumerate(GPT2_TOKENS)}


def tiny_gpt2_lm(**addrop_kwargs):
    """A tiny random AD-DROP GPT-2 causal LM with a BPE preprocessor."""
    keras.utils.set_random_seed(0)
    tokenizer = keras_hub.models.GPT2Tokenizer(
        vocabulary=GPT2_VOCABULARY, merges=GPT2_MERGES
    )
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer, sequence_length=8
    )
    backbone = tiny_decoder_backbone("gpt2", vocabulary_size=len(GPT2_TOKENS))
    return keras_addrop.models.ADDropGPT2CausalLM(
        backbone=backbone, preprocessor=preprocessor, **addrop_kwargs
    )


class CausalLMPresetsTest(TestCase):
    def test_a_preset_loads_in_stock_keras_hub_with_the_same_generations(
        self,
    ):
        model = tiny_gpt2_lm(addrop_layers=(1,), candidate_ratio=0.5, seed=3)
        model.backbone.enable_lora(2)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), sampler="greedy")
        text = [" airplane at airport", " air at airplane"] * 2
        history = model.fit(text, batch_size=2, epochs=1, verbose=0)
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.0)
        expected = model.generate([" air", " airplane"], max_length=8)
        folder = self.get_temp_dir()
        model.save_to_preset(folder)

        # Stock keras-hub: the stock class, LoRA merged, same generations.
        stock = keras_hub.models.CausalLM.from_preset(folder)
        self.assertIs(type(stock), keras_hub.models.GPT2CausalLM)
        stock.compile(sampler="greedy")
        self.assertEqual(
            stock.generate([" air", " airplane"], max_length=8), expected
        )
        restored = ADDropCausalLM.from_preset(folder)
        self.assertIs(type(restored), keras_addrop.models.ADDropGPT2CausalLM)
        self.assertEqual(restored.addrop_layers, (1,))
        self.assertEqual(restored.candidate_ratio, 0.5)
        self.assertEqual(restored.seed, 3)
        restored.compile(sampler="greedy")
        self.assertEqual(
            restored.generate([" air", " airplane"], max_length=8), expected
        )
        shorter = ADDropCausalLM.from_preset(folder, sequence_length=4)
        self.assertEqual(shorter.preprocessor.sequence_length, 4)

    def test_prompt_response_pairs_weigh_only_the_response(self):
        model = tiny_gpt2_lm(addrop_layers="all")
        x, y, weights = prompt_response_samples(
            model.preprocessor, [" air at", " airplane"], [" airport", " at"]
        )
        # <|endoftext|> starts and ends each pair; " air at" is 2 tokens,
        # " airport" 2 and " at" 1: the weights mark the positions whose
        # next token is the response's (its end token included).
        air, at, port, plane = (
            GPT2_VOCABULARY[t] for t in ("Ġair", "Ġat", "port", "plane")
        )
        self.assertAllEqual(
            to_numpy(x["token_ids"]),
            [[0, air, at, air, port, 0, 0, 0], [0, air, plane, at, 0, 0, 0, 0]],
        )
        self.assertAllEqual(
            to_numpy(weights),
            [[0, 0, 1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0]],
        )
        self.assertAllEqual(
            to_numpy(y)[:, :-1], to_numpy(x["token_ids"])[:, 1:]
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        pairs = {
            "prompts": [" air at", " airplane"],
            "responses": [" airport", " at"],
        }
        history = model.fit(pairs, batch_size=2, epochs=2, verbose=0)
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.0)
        with self.assertRaisesRegex(ValueError, "carry their own labels"):
            model.fit(pairs, y=[1, 2], batch_size=2, verbose=0)

    def test_a_keras_file_restores_the_class_and_outputs(self):
        model = tiny_gpt2_lm(addrop_layers="all", drop_rate=0.2)
        restored = self.run_model_saving_test(model, [" airplane at"])
        self.assertEqual(restored.drop_rate, 0.2)
        self.assertEqual(restored.addrop_layers, "all")

    def test_mixed_bfloat16_trains_and_ranks_as_float32(self):
        x, y, weights = causal_batch(batch_size=4)
        model, full, half, history = bfloat16_run(
            lambda: tiny_causal_lms("llama", addrop_layers="all")[0],
            x, y, weights,
        )  # fmt: skip
        self.assertEqual(model.compute_dtype, "bfloat16")
        self.assertTrue(np.all(np.isfinite(history.history["loss"])))
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.0)
        real = np.asarray(x["padding_mask"])[:, None, :]
        for a, b in zip(half, full):
            a, b = to_numpy(a, "float32"), to_numpy(b)
            self.assertTrue(np.all(np.isfinite(a)))
            rows = np.broadcast_to(real, a.shape[:-1])
            agreement = np.mean((a.argmax(-1) == b.argmax(-1))[rows])
            self.assertGreater(agreement, 0.8)
