import keras
import keras_hub
import numpy as np
import pytest
from absl.testing import parameterized

from keras_addrop import swap_attention
from keras_addrop.layers import ADDropAttention
from keras_addrop.layers import addrop_scope
from keras_addrop.models import ADDropRobertaTextClassifier
from keras_addrop.models import mean_pooling_classifier
from tests.test_case import TestCase
from tests.test_case import compile_for_test
from tests.test_case import scaled_up_weights
from tests.test_case import to_numpy

pytestmark = pytest.mark.all_backends

COMMON = dict(num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16)
FAMILIES = {
    "bert": lambda: keras_hub.models.BertBackbone(
        vocabulary_size=20, max_sequence_length=12, **COMMON
    ),
    "roberta": lambda: keras_hub.models.RobertaBackbone(
        vocabulary_size=20, max_sequence_length=12, **COMMON
    ),
    "distil_bert": lambda: keras_hub.models.DistilBertBackbone(
        vocabulary_size=20, max_sequence_length=12, **COMMON
    ),
    "electra": lambda: keras_hub.models.ElectraBackbone(
        vocab_size=20, embedding_dim=8, max_sequence_length=12, **COMMON
    ),
    "xlm_roberta": lambda: keras_hub.models.XLMRobertaBackbone(
        vocabulary_size=20, max_sequence_length=12, **COMMON
    ),
}
ROBERTA_MERGES = ["Ġ a", "Ġ t", "a i", "p l", "n e", "Ġa t", "p o", "r t"]
ROBERTA_MERGES += ["ai r", "pl a", "po rt", "Ġa i", "Ġai r", "pla ne"]
ROBERTA_VOCABULARY = {"<s>": 0, "<pad>": 1, "</s>": 2, "<mask>": 3}
for merge in ROBERTA_MERGES:
    for token in merge.split() + [merge.replace(" ", "")]:
        ROBERTA_VOCABULARY.setdefault(token, len(ROBERTA_VOCABULARY))


def inputs_for(backbone):
    padding = np.array([[1] * 10, [1] * 6 + [0] * 4], bool)
    x = {
        "token_ids": np.arange(20).reshape(2, 10) % 19 + 1,
        "segment_ids": np.zeros((2, 10), "int32"),
        "padding_mask": padding,
    }
    return {k: v for k, v in x.items() if k in backbone.input}


def first_output(outputs):
    if isinstance(outputs, dict):
        return outputs["sequence_output"]
    return outputs


class BackboneFamiliesTest(TestCase):
    @parameterized.named_parameters(*[(name, name) for name in FAMILIES])
    def test_swap_keeps_outputs_and_masks_take_effect(self, family):
        backbone = FAMILIES[family]()
        x = inputs_for(backbone)
        before = first_output(backbone(x))
        layers = swap_attention(backbone)
        self.assertLen(layers, 2)
        self.assertTrue(all(isinstance(a, ADDropAttention) for a in layers))
        self.assertAllEqual(first_output(backbone(x)), before)
        keep = np.ones((2, 2, 10, 10), bool)
        keep[:, :, :, 1] = False
        with addrop_scope(keep_masks={layers[0]: keep}):
            masked = first_output(backbone(x))
        self.assertFalse(np.allclose(to_numpy(masked), to_numpy(before)))

    def test_an_unsupported_decoder_backbone_is_rejected_by_name(self):
        backbone = keras_hub.models.BloomBackbone(
            vocabulary_size=20,
            num_layers=1,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
        )
        with self.assertRaisesRegex(ValueError, "backbone=BloomBackbone"):
            swap_attention(backbone)

    def test_backbone_without_attention_is_rejected_by_name(self):
        backbone = keras_hub.models.FNetBackbone(
            vocabulary_size=20,
            num_layers=2,
            hidden_dim=8,
            intermediate_dim=16,
            max_sequence_length=12,
        )
        with self.assertRaisesRegex(ValueError, "backbone=FNetBackbone"):
            swap_attention(backbone)


class ElectraTest(TestCase):
    # ELECTRA stands for any backbone of `TransformerEncoder`s that has no
    # AD-DROP classifier of its own: `swap_attention` under a head.
    def test_an_electra_backbone_trains_with_addrop_end_to_end(self):
        keras.utils.set_random_seed(0)
        backbone = FAMILIES["electra"]()
        x = inputs_for(backbone)
        before = to_numpy(backbone(x)["sequence_output"])
        model = mean_pooling_classifier(
            backbone,
            num_classes=3,
            dropout=0.0,
            addrop_layers="all",
            candidate_ratio=0.5,
            drop_rate=0.5,
        )
        self.assertLen(model.addrop_attention_layers, 2)
        self.assertAllClose(backbone(x)["sequence_output"], before, atol=1e-6)
        # Gradient attribution against a finite difference.
        scaled_up_weights(model)
        y = np.array([2, 0])
        self.assertAttributionIsAFiniteDifference(
            model,
            x,
            y,
            model.addrop_attention_calls,
            ((0, (0, 1, 3, 4)), (1, (1, 0, 2, 5))),
        )
        compile_for_test(model)
        history = model.fit(x, y, epochs=2, verbose=0)
        for fraction in history.history["addrop_drop_fraction"]:
            self.assertAllClose(fraction, 0.25, atol=0.08)
        restored = self.run_model_saving_test(model, x)
        self.assertEqual(restored.addrop_layers, "all")


class ADDropRobertaTextClassifierTest(TestCase):
    def test_trains_saves_and_loads_from_a_local_preset(self):
        tokenizer = keras_hub.models.RobertaTokenizer(
            vocabulary=ROBERTA_VOCABULARY, merges=ROBERTA_MERGES
        )
        preprocessor = keras_hub.models.RobertaTextClassifierPreprocessor(
            tokenizer, sequence_length=8
        )
        stock = keras_hub.models.RobertaTextClassifier(
            keras_hub.models.RobertaBackbone(
                vocabulary_size=len(ROBERTA_VOCABULARY),
                max_sequence_length=12,
                **COMMON,
            ),
            num_classes=2,
            preprocessor=preprocessor,
            hidden_dim=6,
        )
        folder = self.get_temp_dir()
        stock.save_to_preset(folder)
        sentences = [" airplane at airport", " air plane"]
        expected = stock.predict(sentences, verbose=0)
        model = ADDropRobertaTextClassifier.from_preset(
            folder, addrop_layers="all", candidate_ratio=0.5, drop_rate=0.5
        )
        self.assertIsInstance(model, ADDropRobertaTextClassifier)
        self.assertEqual(model.get_config()["hidden_dim"], 6)
        self.assertAllClose(model.predict(sentences, verbose=0), expected)
        # Train on preprocessed inputs: keras-hub's BPE tokenizer does not map
        # over tf.data with this toy vocabulary.
        x = {k: np.asarray(v) for k, v in preprocessor(sentences * 4).items()}
        model = ADDropRobertaTextClassifier(
            backbone=model.backbone,
            num_classes=2,
            hidden_dim=6,
            addrop_layers="all",
            candidate_ratio=0.5,
            drop_rate=0.5,
        )
        model.compile(
            optimizer="adam",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        history = model.fit(x, np.array([0, 1] * 4), batch_size=4, verbose=0)
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.1)
        restored = self.run_model_saving_test(model, x)
        self.assertEqual(restored.addrop_layers, "all")
