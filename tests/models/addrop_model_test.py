import keras
import pytest

import keras_addrop
from keras_addrop.callbacks import CrossTuning
from keras_addrop.layers import ADDropAttention
from keras_addrop.models import ADDropModel
from tests.test_case import TestCase
from tests.test_case import compile_for_test
from tests.test_case import tiny_batch

pytestmark = pytest.mark.all_backends


@keras.saving.register_keras_serializable(package="keras_addrop_tests")
class Block(keras.layers.Layer):
    """A user-written encoder block with AD-DROP attention inside."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attention = ADDropAttention(2, 8, dropout=0.0, name="attention")
        self.norm = keras.layers.LayerNormalization()

    def build(self, x_shape, mask_shape=None):
        self.attention.build(x_shape, x_shape)
        self.norm.build(x_shape)

    def call(self, x, mask):
        return self.norm(x + self.attention(x, x, attention_mask=mask))

    def compute_output_shape(self, x_shape, mask_shape=None):
        return x_shape


def build_graph(num_blocks=2, list_inputs=False):
    keras.utils.set_random_seed(0)
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((None,), dtype="bool", name="padding_mask")
    x = keras.layers.Embedding(30, 16)(token_ids)
    mask = keras.ops.expand_dims(padding_mask, 1)
    x = x + ADDropAttention(2, 8, name="direct")(x, x, attention_mask=mask)
    for i in range(num_blocks):
        x = Block(name=f"block_{i}")(x, mask)
    logits = keras.layers.Dense(2)(x[:, 0])
    inputs = (
        [token_ids, padding_mask]
        if list_inputs
        else {"token_ids": token_ids, "padding_mask": padding_mask}
    )
    return inputs, logits


class ADDropModelTest(TestCase):
    def setUp(self):
        super().setUp()
        x, self.y = tiny_batch(batch_size=16)
        self.x = {k: x[k] for k in ("token_ids", "padding_mask")}

    def test_attention_layers_are_found_in_layer_order(self):
        model = ADDropModel(*build_graph(), addrop_layers="all")
        names = [layer.name for layer in model.addrop_attention_layers]
        self.assertEqual(names, ["direct", "attention", "attention"])
        paths = [layer.path for layer in model.addrop_attention_layers]
        self.assertEqual(
            paths,
            ["direct", "block_0/attention", "block_1/attention"],
        )

    def test_plain_step_matches_a_keras_model(self):
        inputs, outputs = build_graph()
        model = ADDropModel(inputs, outputs)
        model.addrop_enabled = False
        reference = keras.Model(*build_graph())
        reference.set_weights(model.get_weights())
        compile_for_test(model)
        compile_for_test(reference)
        # The AD-DROP model merges repeated embedding rows by default.
        keras_addrop.optimizers.merge_repeated_rows(reference.optimizer)
        model.fit(self.x, self.y, batch_size=4, shuffle=False, verbose=0)
        reference.fit(self.x, self.y, batch_size=4, shuffle=False, verbose=0)
        self.assertWeightsClose(model, reference, atol=1e-6)

    def test_cross_tuning_and_saving(self):
        model = ADDropModel(
            *build_graph(),
            addrop_layers="all",
            candidate_ratio=0.5,
            drop_rate=0.5,
            seed=2,
        )
        compile_for_test(model)
        history = model.fit(
            self.x,
            self.y,
            batch_size=8,
            epochs=2,
            callbacks=[CrossTuning()],
            verbose=0,
        )
        fractions = history.history["addrop_drop_fraction"]
        self.assertEqual(fractions[0], 0.0)
        self.assertAllClose(fractions[1], 0.25, atol=0.06)
        restored = self.run_model_saving_test(model, self.x, safe_mode=True)
        self.assertEqual(restored.addrop_layers, "all")
        self.assertEqual(restored.seed, 2)
        self.assertLen(restored.addrop_attention_layers, 3)

    def test_list_inputs_find_the_padding_mask_by_name(self):
        inputs, outputs = build_graph(num_blocks=1, list_inputs=True)
        model = ADDropModel(inputs, outputs, addrop_layers=(1,))
        compile_for_test(model)
        x = [self.x["token_ids"], self.x["padding_mask"]]
        history = model.fit(x, self.y, batch_size=8, verbose=0)
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.0)

    def test_missing_padding_mask_or_attention_is_rejected(self):
        with self.assertRaisesRegex(
            ValueError, "Received: padding_mask='mask'"
        ):
            ADDropModel(*build_graph(), padding_mask="mask")
        inputs = keras.Input((4,), name="padding_mask")
        with self.assertRaisesRegex(ValueError, "ADDropAttention"):
            ADDropModel(inputs, keras.layers.Dense(2)(inputs))
        with self.assertRaisesRegex(
            ValueError, r"Received: addrop_layers=\(3,\)"
        ):
            ADDropModel(*build_graph(), addrop_layers=(3,))
