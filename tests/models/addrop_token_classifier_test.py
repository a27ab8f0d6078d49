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
from keras_addrop.models import ADDropTokenClassifier
from keras_addrop.models import TokenClassifierPreprocessor
from tests.test_case import TestCase
from tests.test_case import family_inputs
from tests.test_case import output_difference
from tests.test_case import scaled_up_weights
from tests.test_case import tiny_family_backbone
from tests.test_case import to_numpy

pytestmark = pytest.mark.all_backends

TOKEN_FAMILIES = (
    "bert",
    "roberta",
    "distil_bert",
    "xlm_roberta",
    "deberta_v3",
    "albert",
    "roformer_v2",
    "electra",
)

WORDPIECE = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "qu"]
WORDPIECE += ["##ick", "fox", "jumps", "over", "dog"]


def token_inputs(backbone):
    """Two sentences (one padded), their tags and weights: the first piece
    of each word weighs 1, the rest (special tokens, padding) 0."""
    x = family_inputs(backbone)
    weights = np.zeros((2, 10), "float32")
    weights[0, 1:9] = 1.0
    weights[1, 1:5] = 1.0
    weights[0, 4] = 0.0  # A second piece of a word.
    tags = (np.arange(20).reshape(2, 10) % 3).astype("int32")
    return x, tags, weights


def tagger(family, dropout=0.0, **kwargs):
    keras.utils.set_random_seed(0)
    backbone = tiny_family_backbone(family, dropout=dropout)
    return ADDropTokenClassifier(
        backbone, num_classes=3, dropout=dropout, **kwargs
    )


class ADDropTokenClassifierTest(TestCase):
    @parameterized.named_parameters(*[(f, f) for f in TOKEN_FAMILIES])
    def test_inactive_equals_a_plain_keras_model_and_training_drops(
        self, family
    ):
        model = tagger(family, addrop_layers="all", drop_rate=0.5)
        x, tags, weights = token_inputs(model.backbone)
        # A plain Keras model of a stock backbone with the same weights.
        keras.utils.set_random_seed(1)
        stock = tiny_family_backbone(family, dropout=0.0)
        stock.set_weights(model.backbone.get_weights())
        sequence = stock(stock.input)
        if isinstance(sequence, dict):
            sequence = sequence["sequence_output"]
        dense = keras.layers.Dense(3)
        plain = keras.Model(stock.input, dense(sequence))
        dense.set_weights(model.output_dense.get_weights())
        logits = model.predict(x, verbose=0)
        self.assertEqual(logits.shape, (2, 10, 3))
        self.assertAllClose(logits, plain.predict(x, verbose=0), atol=1e-5)

        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = model.fit(x, tags, sample_weight=weights, epochs=2, verbose=0)
        fractions = history.history["addrop_drop_fraction"]
        self.assertTrue(all(0.0 < f < 0.5 for f in fractions))
        self.assertTrue(np.all(np.isfinite(history.history["loss"])))

    def test_gradient_attribution_is_a_finite_difference_of_counted_logits(
        self,
    ):
        model = scaled_up_weights(tagger("bert", addrop_layers="all"), seed=3)
        x, tags, weights = token_inputs(model.backbone)
        calls = model.addrop_attention_calls
        attribution = compute_attribution(
            model, x, y=tags, labels="gold", sample_weight=weights
        )
        counted = weights > 0

        def counted_logits(logits):
            picked = np.take_along_axis(logits, tags[..., None], -1)[..., 0]
            return float(np.sum(picked[counted]))

        for index, position in ((0, (0, 1, 3, 2)), (1, (1, 0, 2, 4))):
            difference = output_difference(
                model, x, calls, index, position, counted_logits
            )
            self.assertIsFiniteDifference(
                to_numpy(attribution[index])[position], difference
            )

    def test_tokens_with_weight_zero_do_not_change_the_attribution(self):
        model = scaled_up_weights(tagger("bert", addrop_layers="all"), seed=4)
        x, tags, weights = token_inputs(model.backbone)
        other = np.where(weights > 0, tags, (tags + 1) % 3)
        first = compute_attribution(
            model, x, y=tags, labels="gold", sample_weight=weights
        )
        second = compute_attribution(
            model, x, y=other, labels="gold", sample_weight=weights
        )
        self.assertFalse(np.array_equal(tags, other))
        for a, b in zip(first, second):
            self.assertAllClose(a, b, atol=0, rtol=0)
        # The log-probability target counts the same tokens.
        model.attribution_score = "log_probability"
        third = compute_attribution(
            model, x, y=other, labels="gold", sample_weight=weights
        )
        fourth = compute_attribution(
            model, x, y=tags, labels="gold", sample_weight=weights
        )
        for a, b in zip(third, fourth):
            self.assertAllClose(a, b, atol=0, rtol=0)

    @parameterized.named_parameters(
        ("integrated_gradients", {"attribution": "integrated_gradients"}),
        ("attention", {"attribution": "attention"}),
        ("random", {"attribution": "random"}),
        ("gold_labels", {"attribution_labels": "gold"}),
        ("drop_low", {"drop_region": "low"}),
        ("log_probability", {"attribution_score": "log_probability"}),
    )
    def test_every_addrop_variant_trains_with_cross_tuning(self, options):
        model = tagger("bert", addrop_layers="all", ig_steps=2, **options)
        x, tags, weights = token_inputs(model.backbone)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = model.fit(
            x,
            tags,
            sample_weight=weights,
            epochs=2,
            verbose=0,
            callbacks=[keras_addrop.callbacks.CrossTuning()],
        )
        fractions = history.history["addrop_drop_fraction"]
        self.assertEqual(fractions[0], 0.0)
        self.assertGreater(fractions[1], 0.0)
        self.assertTrue(np.all(np.isfinite(history.history["loss"])))

    @parameterized.named_parameters(
        ("float16", "mixed_float16"), ("bfloat16", "mixed_bfloat16")
    )
    def test_mixed_precision_trains_and_ranks_as_float32(self, policy):
        reference = scaled_up_weights(tagger("bert", addrop_layers="all"))
        x, tags, weights = token_inputs(reference.backbone)
        full = compute_attribution(reference, x, sample_weight=weights)
        try:
            keras.mixed_precision.set_global_policy(policy)
            model = tagger("bert", addrop_layers="all")
            model.set_weights(reference.get_weights())
            half = compute_attribution(model, x, sample_weight=weights)
            model.compile(optimizer=keras.optimizers.Adam(1e-3))
            history = model.fit(
                x, tags, sample_weight=weights, epochs=1, verbose=0
            )
        finally:
            keras.mixed_precision.set_global_policy("float32")
        self.assertEqual(model.compute_dtype, policy.split("_")[1])
        self.assertTrue(np.all(np.isfinite(history.history["loss"])))
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.0)
        for a, b in zip(half, full):
            a, b = to_numpy(a, "float32"), to_numpy(b)
            self.assertTrue(np.all(np.isfinite(a)))
            # The same keys lead each row (8 or 11 mantissa bits).
            rows = np.broadcast_to(
                np.asarray(x["padding_mask"])[:, None, :] > 0, a.shape[:-1]
            )
            agreement = np.mean((a.argmax(-1) == b.argmax(-1))[rows])
            self.assertGreater(agreement, 0.8)

    def test_padding_keys_get_zero_probability_under_the_masks(self):
        model = tagger("bert", addrop_layers="all", candidate_ratio=1.0)
        model.drop_rate = 1.0
        x, tags, weights = token_inputs(model.backbone)
        calls = model.addrop_attention_calls
        visibilities = model._addrop_visibilities(x, calls)
        masks = model._addrop_keep_masks(x, tags, weights, calls, visibilities)
        captured = CapturedAttention(calls)
        with addrop_scope(
            keep_masks=dict(zip(calls, masks)), capture=captured.functions
        ):
            model(x)
        for mask, weights_of_call in zip(masks, captured.weights()):
            mask, probabilities = to_numpy(mask), to_numpy(weights_of_call)
            # The padded example's last four keys: masked, weight 0.
            self.assertFalse(np.any(mask[1, :, :, 6:]))
            self.assertAllEqual(probabilities[1, :, :, 6:], 0.0)
            # Every real row kept one key and sums to one.
            self.assertAllClose(probabilities[1, :, :6].sum(-1), 1.0)

    def test_unsupported_backbones_are_refused_in_one_line(self):
        backbone = keras_hub.models.FNetBackbone(
            vocabulary_size=20,
            num_layers=1,
            hidden_dim=8,
            intermediate_dim=16,
            max_sequence_length=12,
        )
        with self.assertRaisesRegex(
            ValueError, "no token classifier for the FNet family; it supports"
        ):
            ADDropTokenClassifier(backbone, num_classes=3)

    def test_words_in_tags_out_with_fit_keras_file_and_preset(self):
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=WORDPIECE)
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=len(WORDPIECE),
            num_layers=1,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
            max_sequence_length=16,
        )
        model = ADDropTokenClassifier(
            backbone,
            num_classes=3,
            preprocessor=TokenClassifierPreprocessor(tokenizer, 8),
            candidate_ratio=0.5,
            drop_rate=0.5,
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        words = [["the", "quick", "fox"], ["fox", "jumps", "over", "dog"]] * 2
        tags = [[0, 1, 2], [2, 0, 0, 1]] * 2
        history = model.fit(words, tags, batch_size=2, epochs=2, verbose=0)
        self.assertLen(history.history["addrop_drop_fraction"], 2)
        predicted = model.predict_tags(words[:2])
        self.assertEqual([len(s) for s in predicted], [3, 4])

        restored = self.run_model_saving_test(model, words[:2])
        self.assertEqual(restored.predict_tags(words[:2]), predicted)

        preset = os.path.join(self.get_temp_dir(), "preset")
        model.save_to_preset(preset)
        self.assertTrue(os.path.isfile(os.path.join(preset, "addrop.json")))
        loaded = ADDropTokenClassifier.from_preset(preset)
        self.assertEqual(loaded.candidate_ratio, 0.5)
        self.assertEqual(loaded.predict_tags(words[:2]), predicted)
        # The backbone alone loads with stock keras-hub, a new head here.
        fresh = ADDropTokenClassifier.from_preset(
            preset, num_classes=5, drop_rate=0.1
        )
        self.assertEqual(fresh.output_dense.units, 5)
        self.assertEqual(fresh.drop_rate, 0.1)
        self.assertAllClose(
            fresh.backbone.get_weights()[0], model.backbone.get_weights()[0]
        )

    def test_lora_trains_only_the_adapters_and_the_head(self):
        model = tagger("bert", addrop_layers="all")
        model.backbone.enable_lora(2)
        x, tags, weights = token_inputs(model.backbone)
        frozen = [to_numpy(w) for w in model.non_trainable_weights]
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        model.fit(x, tags, sample_weight=weights, epochs=1, verbose=0)
        for before, after in zip(frozen, model.non_trainable_weights):
            self.assertAllClose(before, after, atol=0, rtol=0)
        names = {w.path for w in model.trainable_weights}
        self.assertTrue(any("lora" in name for name in names))
        self.assertTrue(any("logits" in name for name in names))


class TokenClassifierPreprocessorTest(TestCase):
    def check_alignment(self, tokenizer, words, tags):
        preprocessor = TokenClassifierPreprocessor(tokenizer, 16)
        x, y, weight = (
            to_numpy(t) if not isinstance(t, dict) else t
            for t in preprocessor(words, tags)
        )
        starts = preprocessor.first_pieces(words).to_list()
        for b, sentence in enumerate(tags):
            counted = np.flatnonzero(weight[b] > 0)
            # One weighted position per word, in order, at its first piece,
            # carrying its tag.
            self.assertEqual(list(counted), starts[b])
            self.assertEqual(list(y[b][counted]), list(sentence))
        return x

    def test_wordpiece_words_align_with_their_tags(self):
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=WORDPIECE)
        x = self.check_alignment(
            tokenizer,
            [["the", "quick", "fox"], ["quick", "\u200b", "dog"], []],
            [[1, 2, 0], [2, 1, 1], []],
        )
        # The empty word reads as [UNK]; the empty sentence is [CLS] [SEP].
        self.assertEqual(
            list(to_numpy(x["token_ids"])[1][:5]), [2, 6, 7, 1, 11]
        )
        self.assertEqual(list(to_numpy(x["padding_mask"])[2][:3]), [1, 1, 0])

    def test_byte_pair_words_align_with_their_tags(self):
        vocabulary = {"<s>": 0, "<pad>": 1, "</s>": 2, "<mask>": 3}
        letters = "Ġabcdefghijklmnopqrstuvwxyz"
        vocabulary.update({c: i + 4 for i, c in enumerate(letters)})
        vocabulary["Ġt"] = len(vocabulary)
        tokenizer = keras_hub.models.RobertaTokenizer(
            vocabulary=vocabulary, merges=["Ġ t"]
        )
        self.check_alignment(
            tokenizer,
            [["the", "fox"], ["a", "dog", "the"]],
            [[1, 0], [2, 2, 1]],
        )

    def test_sentencepiece_words_align_with_their_tags(self):
        sentencepiece = pytest.importorskip("sentencepiece")
        import io

        model = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(["the quick brown fox", "jumps over"] * 5),
            model_writer=model,
            vocab_size=12,
            model_type="WORD",
            pad_id=0,
            bos_id=1,
            eos_id=2,
            unk_id=3,
            pad_piece="<pad>",
            bos_piece="[CLS]",
            eos_piece="[SEP]",
            user_defined_symbols="[MASK]",
        )
        tokenizer = keras_hub.models.AlbertTokenizer(proto=model.getvalue())
        self.check_alignment(
            tokenizer,
            [["the", "fox"], ["jumps", "zzz", "the"]],
            [[1, 0], [2, 2, 1]],
        )

    def test_truncation_counts_the_words_cut(self):
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=WORDPIECE)
        preprocessor = TokenClassifierPreprocessor(tokenizer, 5)
        words = [["the", "quick", "fox", "dog"], ["fox"]]
        self.assertEqual(list(preprocessor.truncated_words(words)), [2, 0])
        self.assertEqual(
            preprocessor.first_pieces(words).to_list(), [[1, 2, -1, -1], [1]]
        )

    def test_bad_arguments_are_refused(self):
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=WORDPIECE)
        with self.assertRaisesRegex(ValueError, "Received: sequence_length=2"):
            TokenClassifierPreprocessor(tokenizer, 2)
        with self.assertRaisesRegex(ValueError, "Received: input_names"):
            TokenClassifierPreprocessor(tokenizer, input_names=["mask"])
