import warnings

import keras
import numpy as np
import pytest

from keras_addrop.callbacks import CrossTuning
from keras_addrop.layers import ADDropAttention
from keras_addrop.models import mean_pooling_classifier
from tests.test_case import TestCase
from tests.test_case import compile_for_test
from tests.test_case import family_inputs
from tests.test_case import tiny_backbone
from tests.test_case import tiny_batch
from tests.test_case import tiny_family_task
from tests.test_case import to_numpy

pytestmark = pytest.mark.all_backends


class MeanPoolingClassifierTest(TestCase):
    def setUp(self):
        super().setUp()
        self.x, self.y = tiny_batch()
        # Integer masks, as `keras_addrop.glue.preprocessed_batches` makes.
        self.x["padding_mask"] = self.x["padding_mask"].astype("int32")

    def test_head_reads_the_mean_of_real_tokens_only(self):
        backbone = tiny_backbone()
        model = mean_pooling_classifier(backbone, 3, dropout=0.0)
        sequence = to_numpy(backbone(self.x)["sequence_output"])
        mask = self.x["padding_mask"][..., None]
        mean = (sequence * mask).sum(1) / mask.sum(1)
        dense = model.get_layer("logits")
        expected = mean @ to_numpy(dense.kernel) + to_numpy(dense.bias)
        self.assertAllClose(model.predict_on_batch(self.x), expected, atol=1e-5)

        # Whatever sits in padded positions leaves the logits unchanged.
        noisy = dict(self.x)
        noisy["token_ids"] = np.where(
            self.x["padding_mask"] == 1, self.x["token_ids"], 7
        ).astype("int32")
        self.assertAllClose(
            model.predict_on_batch(noisy), model.predict_on_batch(self.x)
        )

    def test_a_backbone_without_a_mask_pools_its_nonzero_token_ids(self):
        # RoFormer-v2 takes no padding mask: token id 0 is padding.
        backbone = tiny_family_task("roformer_v2").backbone
        model = mean_pooling_classifier(backbone, 3, dropout=0.0)
        x = family_inputs(backbone)
        self.assertEqual(model.padding_mask, "token_ids")
        sequence = to_numpy(backbone(x))
        mask = (x["token_ids"] != 0)[..., None]
        mean = (sequence * mask).sum(1) / mask.sum(1)
        dense = model.get_layer("logits")
        expected = mean @ to_numpy(dense.kernel) + to_numpy(dense.bias)
        self.assertAllClose(model.predict_on_batch(x), expected, atol=1e-5)
        self.assertAllEqual(
            to_numpy(model._addrop_bool_padding_mask(x)), mask[..., 0]
        )

    def test_trains_with_cross_tuning_and_reloads_with_addrop(self):
        model = mean_pooling_classifier(
            tiny_backbone(),
            2,
            addrop_layers="all",
            candidate_ratio=0.5,
            drop_rate=0.5,
            seed=1,
        )
        compile_for_test(model)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = model.fit(
                self.x, self.y, epochs=2, callbacks=[CrossTuning()], verbose=0
            )
        # The unused [CLS] pooler gets no gradients, without a warning.
        messages = [str(w.message) for w in caught]
        self.assertFalse([m for m in messages if "Gradients do not" in m])
        fractions = history.history["addrop_drop_fraction"]
        self.assertEqual(fractions[0], 0.0)
        self.assertGreater(fractions[1], 0.1)
        # The backbone deserialises with stock attention: loading must
        # convert it again, or the restored model could not apply AD-DROP.
        restored = self.run_model_saving_test(model, self.x)
        self.assertLen(restored.addrop_attention_layers, 2)
        for layer in restored.addrop_attention_layers:
            self.assertIsInstance(layer, ADDropAttention)
        self.assertEqual(restored.candidate_ratio, 0.5)

    def test_bad_arguments_are_rejected(self):
        with self.assertRaisesRegex(ValueError, "Received: num_classes=0"):
            mean_pooling_classifier(tiny_backbone(), 0)
        with self.assertRaisesRegex(ValueError, "Received: dropout=1.0"):
            mean_pooling_classifier(tiny_backbone(), 2, dropout=1.0)
        inputs = keras.Input((4, 8))
        plain = keras.Model(inputs, keras.layers.Dense(8)(inputs))
        with self.assertRaisesRegex(ValueError, "padding_mask"):
            mean_pooling_classifier(plain, 2)
        with self.assertRaisesRegex(
            ValueError, "Received: candidate_ratio=1.5"
        ):
            mean_pooling_classifier(tiny_backbone(), 2, candidate_ratio=1.5)
