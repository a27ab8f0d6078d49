import json
import os

import keras
import keras_hub
import numpy as np
import pytest

import keras_addrop
from keras_addrop.models import ADDropBertTextClassifier
from tests.test_case import TestCase
from tests.test_case import tiny_backbone
from tests.test_case import tiny_batch
from tests.test_case import to_numpy

pytestmark = pytest.mark.all_backends


def compiled(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def values(model):
    return {w.path: to_numpy(w).copy() for w in model.weights}


class LoraTest(TestCase):
    def setUp(self):
        super().setUp()
        self.x, self.y = tiny_batch(batch_size=16)

    def addrop_model(self, **kwargs):
        keras.utils.set_random_seed(0)
        return ADDropBertTextClassifier(
            tiny_backbone(),
            num_classes=2,
            addrop_layers="all",
            candidate_ratio=0.5,
            drop_rate=0.5,
            **kwargs,
        )

    def assertTrainsOnlyWhatLoraLeavesTrainable(self, model):
        trainable = {w.path for w in model.trainable_weights}
        self.assertTrue(any("lora_kernel" in p for p in trainable))
        # Every kernel LoRA adapts and every embedding is frozen.
        self.assertFalse(
            [
                p
                for p in trainable
                if p.endswith("/kernel") and "logits" not in p
            ]
        )
        before = values(model)
        history = compiled(model).fit(
            self.x, self.y, batch_size=8, epochs=2, verbose=0
        )
        after = values(model)
        changed = {p for p in after if not np.array_equal(before[p], after[p])}
        self.assertTrue(changed)
        self.assertLessEqual(changed, trainable)
        # About p * q of the real positions are dropped.
        for fraction in history.history["addrop_drop_fraction"]:
            self.assertAllClose(fraction, 0.25, atol=0.06)

    def test_lora_after_the_swap_trains_only_the_lora_weights_with_addrop(
        self,
    ):
        model = self.addrop_model()
        model.backbone.enable_lora(2)
        self.assertTrainsOnlyWhatLoraLeavesTrainable(model)

    def test_lora_before_the_swap_works_the_same(self):
        keras.utils.set_random_seed(0)
        backbone = tiny_backbone()
        backbone.enable_lora(2)
        model = ADDropBertTextClassifier(
            backbone,
            num_classes=2,
            addrop_layers="all",
            candidate_ratio=0.5,
            drop_rate=0.5,
        )
        self.assertTrainsOnlyWhatLoraLeavesTrainable(model)

    def test_lora_weights_round_trip(self):
        model = self.addrop_model()
        model.backbone.enable_lora(2)
        compiled(model).fit(self.x, self.y, batch_size=8, verbose=0)
        path = os.path.join(self.get_temp_dir(), "adapter.lora.h5")
        model.backbone.save_lora_weights(path)
        other = self.addrop_model()
        other.backbone.enable_lora(2)
        other.backbone.load_lora_weights(path)
        lora = {w.path: to_numpy(w) for w in model.weights if "lora" in w.path}
        for w in other.weights:
            if "lora" in w.path:
                self.assertAllEqual(to_numpy(w), lora[w.path])


class PresetTest(TestCase):
    def test_a_saved_addrop_preset_loads_as_stock_and_as_addrop(self):
        x, y = tiny_batch(batch_size=8)
        keras.utils.set_random_seed(0)
        model = ADDropBertTextClassifier(
            tiny_backbone(),
            num_classes=2,
            addrop_layers=(1,),
            candidate_ratio=0.2,
            attribution_labels="gold",
            seed=5,
        )
        model.backbone.enable_lora(2)
        compiled(model).fit(x, y, batch_size=4, verbose=0)
        expected = model.predict(x, verbose=0)
        folder = self.get_temp_dir()
        model.save_to_preset(folder)
        with open(os.path.join(folder, "task.json")) as f:
            self.assertEqual(
                json.load(f)["registered_name"],
                "keras_hub>BertTextClassifier",
            )

        stock = keras_hub.models.BertTextClassifier.from_preset(folder)
        self.assertIs(type(stock), keras_hub.models.BertTextClassifier)
        # LoRA merged into the kernels, as keras-hub saves it.
        self.assertAllClose(stock.predict(x, verbose=0), expected, atol=1e-5)
        generic = keras_hub.models.TextClassifier.from_preset(folder)
        self.assertIs(type(generic), keras_hub.models.BertTextClassifier)

        restored = keras_addrop.models.ADDropTextClassifier.from_preset(folder)
        self.assertIs(type(restored), ADDropBertTextClassifier)
        self.assertEqual(restored.addrop_layers, (1,))
        self.assertEqual(restored.candidate_ratio, 0.2)
        self.assertEqual(restored.attribution_labels, "gold")
        self.assertEqual(restored.seed, 5)
        self.assertAllClose(restored.predict(x, verbose=0), expected, atol=1e-5)
        # Arguments passed again win over the saved ones.
        again = ADDropBertTextClassifier.from_preset(folder, drop_rate=0.1)
        self.assertEqual(again.drop_rate, 0.1)
        self.assertEqual(again.candidate_ratio, 0.2)
