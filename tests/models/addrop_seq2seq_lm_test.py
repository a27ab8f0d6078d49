import os

import keras
import keras_hub
import numpy as np
import pytest

import keras_addrop
from keras_addrop.attribution import compute_attribution
from keras_addrop.layers import addrop_scope
from keras_addrop.layers.addrop_attention import CapturedAttention
from keras_addrop.models import ADDropSeq2SeqLM
from tests.test_case import TestCase
from tests.test_case import bfloat16_run
from tests.test_case import output_difference
from tests.test_case import scaled_up_weights
from tests.test_case import seq2seq_batch
from tests.test_case import tiny_bart_backbone
from tests.test_case import tiny_seq2seq_lms
from tests.test_case import to_numpy

pytestmark = pytest.mark.all_backends

KINDS = ("encoder", "decoder", "cross")


def greedy(model, x, prompt_length=2):
    """Greedy generation from preprocessed inputs, the target's first
    `prompt_length` tokens as the decoder prompt."""
    model.compile(sampler="greedy")
    prompt = dict(x)
    prompt["decoder_padding_mask"] = np.zeros_like(x["decoder_padding_mask"])
    prompt["decoder_padding_mask"][:, :prompt_length] = True
    prompt = {k: keras.ops.convert_to_tensor(v) for k, v in prompt.items()}
    generate = model.make_generate_function()
    return to_numpy(generate(prompt, stop_token_ids=None)["decoder_token_ids"])


def visible_pairs(x, kind):
    """The visible (query, key) pairs of one kind: `(batch, query, key)`."""
    source = np.asarray(x["encoder_padding_mask"], bool)
    target = np.asarray(x["decoder_padding_mask"], bool)
    if kind == "encoder":
        return source[:, :, None] & source[:, None, :]
    if kind == "cross":
        return target[:, :, None] & source[:, None, :]
    length = target.shape[1]
    causal = np.tril(np.ones((length, length), bool))
    return target[:, :, None] & target[:, None, :] & causal


class ADDropSeq2SeqLMTest(TestCase):
    def test_inactive_outputs_and_greedy_generations_are_the_stock_models(
        self,
    ):
        keras.utils.set_random_seed(0)
        ours, stock = tiny_seq2seq_lms(
            addrop_attention="all",
            addrop_layers="all",
            candidate_ratio=0.5,
            drop_rate=0.5,
        )
        self.assertIsInstance(ours, keras_hub.models.BartSeq2SeqLM)
        x, y, weights = seq2seq_batch()
        self.assertAllClose(ours(x), stock(x), atol=0, rtol=0)
        self.assertAllEqual(greedy(ours, x), greedy(stock, x))

        # An AD-DROP step over all three kinds moves the weights; greedy
        # generation from them is the stock model's with the same weights.
        ours.compile(optimizer=keras.optimizers.SGD(0.1))
        history = ours.fit(x, y, sample_weight=weights, epochs=1, verbose=0)
        self.assertBetween(
            history.history["addrop_drop_fraction"][0], 0.15, 0.4
        )
        self.assertFalse(np.allclose(to_numpy(ours(x)), to_numpy(stock(x))))
        stock.set_weights(ours.get_weights())
        self.assertAllEqual(greedy(ours, x), greedy(stock, x))

    def test_addrop_attention_chooses_the_kinds_and_layers_index_each(self):
        ours, _ = tiny_seq2seq_lms(
            addrop_attention=("cross", "encoder"), addrop_layers=(1,)
        )
        self.assertEqual(ours.addrop_attention, ("encoder", "cross"))
        paths = [call.layer.path for call in ours.addrop_attention_calls]
        self.assertEqual(
            paths,
            [
                "transformer_encoder_layer_1/self_attention_layer",
                "transformer_decoder_layer_1/cross_attention",
            ],
        )
        default, _ = tiny_seq2seq_lms()
        self.assertEqual(default.addrop_attention, "encoder")
        self.assertEqual(
            [call.layer.path for call in default.addrop_attention_calls],
            ["transformer_encoder_layer_0/self_attention_layer"],
        )
        for bad in ("self", ("encoder", "encoder"), (), 3):
            with self.assertRaisesRegex(
                ValueError, "Received: addrop_attention="
            ):
                tiny_seq2seq_lms(addrop_attention=bad)
        with self.assertRaisesRegex(ValueError, r"Received: addrop_layers"):
            tiny_seq2seq_lms(addrop_attention="cross", addrop_layers=(2,))

    def test_gradient_attribution_is_a_finite_difference_per_kind(self):
        keras.utils.set_random_seed(0)
        model, _ = tiny_seq2seq_lms(addrop_attention="all", addrop_layers=(1,))
        scaled_up_weights(model, seed=3)
        x, y, weights = seq2seq_batch()
        calls = model.addrop_attention_calls
        attribution = compute_attribution(
            model, x, y=y, labels="gold", sample_weight=weights
        )
        counted = weights > 0

        def counted_logits(logits):
            picked = np.take_along_axis(logits, y[..., None], -1)[..., 0]
            return float(np.sum(picked[counted]))

        # (batch, head, query, key): a real pair of each kind; the cross
        # pair's query is a target position, its key a source position.
        positions = ((1, 1, 5, 2), (3, 0, 3, 1), (1, 1, 2, 5))
        for index, position in enumerate(positions):
            self.assertTrue(
                visible_pairs(x, KINDS[index])[position[0]][position[2:]]
            )
            difference = output_difference(
                model, x, calls, index, position, counted_logits
            )
            self.assertIsFiniteDifference(
                to_numpy(attribution[index])[position], difference
            )

    def test_masks_have_each_kinds_shape_and_drop_only_visible_keys(self):
        keras.utils.set_random_seed(0)
        model, _ = tiny_seq2seq_lms(
            addrop_attention="all",
            addrop_layers="all",
            candidate_ratio=1.0,
            drop_rate=1.0,
        )
        x, y, weights = seq2seq_batch()
        calls = model.addrop_attention_calls
        visibilities = model._addrop_visibilities(x, calls)
        masks = model._addrop_keep_masks(x, y, weights, calls, visibilities)
        shapes = {"encoder": (4, 2, 7, 7), "decoder": (4, 2, 6, 6)}
        shapes["cross"] = (4, 2, 6, 7)  # (target, source).
        for index, mask in enumerate(masks):
            kind = KINDS[index // 2]
            mask = to_numpy(mask)
            self.assertEqual(mask.shape, shapes[kind])
            visible = visible_pairs(x, kind)[:, None]
            rows = visible.any(-1, keepdims=True)
            # p = q = 1: every real row keeps exactly one visible key and
            # no key it cannot see.
            self.assertFalse(np.any(mask & ~visible & rows))
            kept = (mask & visible).sum(-1)
            self.assertAllEqual(kept[rows[..., 0].repeat(2, 1)], 1)

    def test_padding_and_weight_zero_positions_change_nothing(self):
        keras.utils.set_random_seed(0)
        model, _ = tiny_seq2seq_lms(addrop_attention="all")
        scaled_up_weights(model, seed=4)
        x, y, weights = seq2seq_batch()
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

        # Other gold labels where the weight is 0 change nothing.
        other = np.where(counted, y, (y + 1) % 30)
        for a, b in zip(
            attribution("gold", targets=y), attribution("gold", targets=other)
        ):
            self.assertAllClose(a, b, atol=0, rtol=0)
        # Pseudo labels: the gold target of the argmax where it counts.
        argmax = np.argmax(to_numpy(model(x)), -1)
        other = np.where(counted, argmax, (argmax + 1) % 30)
        for a, b in zip(
            attribution("pseudo"), attribution("gold", targets=other)
        ):
            self.assertAllClose(a, b, atol=1e-6)
        # Other tokens in the source's and the target's padding: the same
        # attribution on every visible pair.
        padded = dict(x)
        for side in ("encoder", "decoder"):
            mask = x[f"{side}_padding_mask"]
            padded[f"{side}_token_ids"] = np.where(
                mask, x[f"{side}_token_ids"], 7
            )
        for kind, a, b in zip(
            KINDS, attribution("pseudo"), attribution("pseudo", padded)
        ):
            visible = visible_pairs(x, kind)[:, None]
            self.assertAllClose(a * visible, b * visible, atol=1e-6)

    def test_the_cross_attention_weights_of_a_dropped_key_are_zero(self):
        keras.utils.set_random_seed(0)
        model, _ = tiny_seq2seq_lms(addrop_attention="cross")
        x, _, _ = seq2seq_batch()
        (layer,) = model.addrop_attention_layers
        keep = np.ones((4, 2, 6, 7), bool)
        keep[:, 1, 2, 0] = False
        captured = CapturedAttention([layer])
        with addrop_scope(keep_masks={layer: keep}, capture=captured.functions):
            model(x)
        (weights,) = [to_numpy(w) for w in captured.weights()]
        self.assertAllEqual(weights[:, 1, 2, 0], np.zeros(4))
        self.assertTrue(np.all(weights[:, 0, 2, 0] > 0))
        # Padded source keys get nothing; each row sums to 1.
        source = np.asarray(x["encoder_padding_mask"])
        self.assertAllEqual(weights * ~source[:, None, None, :], 0 * weights)
        self.assertAllClose(weights.sum(-1), np.ones((4, 2, 6)))

    def test_mixed_bfloat16_trains_and_attributes_as_float32(self):
        x, y, weights = seq2seq_batch()
        model, full, half, history = bfloat16_run(
            lambda: tiny_seq2seq_lms(
                addrop_attention="all", addrop_layers="all"
            )[0],
            x, y, weights,
        )  # fmt: skip
        self.assertEqual(model.compute_dtype, "bfloat16")
        self.assertTrue(np.all(np.isfinite(history.history["loss"])))
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.0)
        # Two layers of each kind, in the order encoder, decoder, cross.
        # Within a few percent of float32 over the visible pairs (bfloat16
        # keeps 8 bits; a cross-attention row's attributions are often
        # closer to each other than that, so its top key may differ).
        for index, (a, b) in enumerate(zip(half, full, strict=True)):
            a, b = to_numpy(a, "float32"), to_numpy(b)
            self.assertTrue(np.all(np.isfinite(a)))
            visible = visible_pairs(x, KINDS[index // 2])[:, None]
            visible = np.broadcast_to(visible, a.shape)
            error = np.abs(a - b)[visible].max() / np.abs(b[visible]).max()
            self.assertLess(error, 0.15, msg=KINDS[index // 2])

    def test_lora_trains_only_the_adapters(self):
        keras.utils.set_random_seed(0)
        backbone = tiny_bart_backbone()
        backbone.enable_lora(2)
        model = keras_addrop.models.ADDropBartSeq2SeqLM(
            backbone=backbone,
            preprocessor=None,
            addrop_layers="all",
            candidate_ratio=0.5,
            drop_rate=0.5,
        )
        x, y, weights = seq2seq_batch()
        frozen = {w.path: to_numpy(w) for w in model.non_trainable_weights}
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = model.fit(x, y, sample_weight=weights, epochs=2, verbose=0)
        trainable = [w.path for w in model.trainable_weights]
        # Encoder, decoder and cross-attention, 2 layers each: the query's
        # and the value's adapters (2 matrices) and their biases, which
        # Keras' LoRA leaves trainable.
        self.assertLen([p for p in trainable if "lora" in p], 2 * 3 * 2 * 2)
        self.assertEqual(
            {p.split("/")[-1] for p in trainable if "lora" not in p}, {"bias"}
        )
        self.assertLen(trainable, 2 * 3 * 2 * 3)
        for weight in model.non_trainable_weights:
            self.assertAllEqual(to_numpy(weight), frozen[weight.path])
        self.assertBetween(
            history.history["addrop_drop_fraction"][1], 0.15, 0.4
        )

    def test_an_unsupported_family_is_refused_by_name(self):
        backbone = keras_hub.models.T5Backbone(
            vocabulary_size=30,
            num_layers=1,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
        )
        preset = os.path.join(self.get_temp_dir(), "t5")
        keras_hub.models.T5Seq2SeqLM(backbone, None).save_to_preset(preset)
        with self.assertRaisesRegex(
            ValueError, r"no seq2seq LM for the T5 family; it supports BART"
        ):
            ADDropSeq2SeqLM.from_preset(preset)


# A made-up "translation" vocabulary: byte-level BPE as BART's.
MERGES = ["Ġ a", "Ġa i", "Ġai r", "Ġ p", "Ġp l", "Ġpl a", "Ġpla n", "Ġplan e"]
MERGES += ["Ġ t", "Ġt o", "Ġ r", "Ġr e", "Ġre d"]
TOKENS = ["<s>", "<pad>", "</s>", "<mask>", "Ġ", *"airplnetod"]
TOKENS += ["".join(merge.split()) for merge in MERGES]
VOCABULARY = {token: i for i, token in enumerate(dict.fromkeys(TOKENS))}
PAIRS = {
    "encoder_text": [" air to plane", " red air", " plane to red", " air"],
    "decoder_text": [" plane to air", " air red", " red to plane", " plane"],
}


def tiny_bart_lm(**addrop_kwargs):
    """A tiny random AD-DROP BART seq2seq LM with a BPE preprocessor."""
    keras.utils.set_random_seed(0)
    tokenizer = keras_hub.models.BartTokenizer(
        vocabulary=VOCABULARY, merges=MERGES
    )
    preprocessor = keras_hub.models.BartSeq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=8, decoder_sequence_length=8
    )
    return keras_addrop.models.ADDropBartSeq2SeqLM(
        backbone=tiny_bart_backbone(vocabulary_size=len(VOCABULARY)),
        preprocessor=preprocessor,
        **addrop_kwargs,
    )


class Seq2SeqLMPresetsTest(TestCase):
    def test_a_preset_loads_in_stock_keras_hub_with_the_same_generations(
        self,
    ):
        model = tiny_bart_lm(
            addrop_attention=("encoder", "cross"),
            addrop_layers=(1,),
            candidate_ratio=0.5,
            seed=3,
        )
        model.backbone.enable_lora(2)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), sampler="greedy")
        history = model.fit(PAIRS, batch_size=2, epochs=1, verbose=0)
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.0)
        sources = [" air to", " red plane"]
        expected = model.generate(sources, max_length=8)
        folder = self.get_temp_dir()
        model.save_to_preset(folder)

        stock = keras_hub.models.Seq2SeqLM.from_preset(folder)
        self.assertIs(type(stock), keras_hub.models.BartSeq2SeqLM)
        stock.compile(sampler="greedy")
        self.assertEqual(stock.generate(sources, max_length=8), expected)
        restored = ADDropSeq2SeqLM.from_preset(folder)
        self.assertIs(type(restored), keras_addrop.models.ADDropBartSeq2SeqLM)
        self.assertEqual(restored.addrop_attention, ("encoder", "cross"))
        self.assertEqual(restored.addrop_layers, (1,))
        self.assertEqual(restored.candidate_ratio, 0.5)
        restored.compile(sampler="greedy")
        self.assertEqual(restored.generate(sources, max_length=8), expected)
        shorter = ADDropSeq2SeqLM.from_preset(
            folder, encoder_sequence_length=4, addrop_attention="decoder"
        )
        self.assertEqual(shorter.preprocessor.encoder_sequence_length, 4)
        self.assertEqual(shorter.preprocessor.decoder_sequence_length, 8)
        self.assertEqual(shorter.addrop_attention, "decoder")
        # keras-hub's Seq2SeqLM is a CausalLM: the causal LMs point here.
        with self.assertRaisesRegex(
            ValueError, r"BartSeq2SeqLM, not a causal LM: use .*ADDropSeq2SeqLM"
        ):
            keras_addrop.models.ADDropCausalLM.from_preset(folder)

    def test_a_keras_file_restores_the_class_and_outputs(self):
        model = tiny_bart_lm(addrop_attention=["decoder", "cross"])
        restored = self.run_model_saving_test(model, PAIRS)
        self.assertEqual(restored.addrop_attention, ("decoder", "cross"))
