import json
import os
import subprocess
import sys
import textwrap

import keras_hub
import numpy as np
import pytest
from absl.testing import parameterized
from keras_hub.src.utils import preset_utils

import keras_addrop
from keras_addrop.models.addrop_text_classifier import FAMILIES
from keras_addrop.models.addrop_text_classifier import ADDropTextClassifier
from tests.test_case import FAMILY_BACKBONES
from tests.test_case import REPO_ROOT
from tests.test_case import TestCase
from tests.test_case import compile_for_test
from tests.test_case import family_inputs
from tests.test_case import minilm_path
from tests.test_case import tiny_family_task
from tests.test_case import to_numpy


@pytest.mark.all_backends
class StockSearchTest(TestCase):
    def test_stock_subclass_searches_find_the_stock_classes(self):
        for backbone, stock in (
            (
                keras_hub.models.BertBackbone,
                keras_hub.models.BertTextClassifier,
            ),
            (
                keras_hub.models.RobertaBackbone,
                keras_hub.models.RobertaTextClassifier,
            ),
        ):
            with self.subTest(backbone=backbone.__name__):
                found = preset_utils.find_subclass(
                    "preset", keras_hub.models.TextClassifier, backbone
                )
                self.assertIs(found, stock)

    def test_without_the_fix_the_search_would_see_the_addrop_classes(self):
        # keras-hub's own search: both classes, in a set's order.
        unfiltered = preset_utils.list_subclasses.__wrapped__(
            keras_hub.models.TextClassifier
        )
        self.assertIn(keras_addrop.models.ADDropBertTextClassifier, unfiltered)
        self.assertIn(keras_hub.models.BertTextClassifier, unfiltered)

    def test_a_search_from_an_addrop_class_still_finds_addrop_classes(self):
        self.assertIn(
            keras_addrop.models.ADDropBertTextClassifier,
            preset_utils.list_subclasses(ADDropTextClassifier),
        )


class StockPresetLoadingTest(TestCase):
    def test_stock_from_preset_returns_stock_classes_in_fresh_processes(self):
        preset = minilm_path()
        if preset is None:
            self.skipTest("the MiniLM-L6 package is not installed")
        code = textwrap.dedent(
            f"""
            import json
            import keras_hub
            import keras_addrop
            model = keras_hub.models.TextClassifier.from_preset(
                {preset!r}, num_classes=2
            )
            print(json.dumps(type(model).__name__))
            """
        )
        for seed in ("0", "1", "2"):
            with self.subTest(seed=seed):
                result = subprocess.run(
                    [sys.executable, "-c", code],
                    capture_output=True,
                    text=True,
                    cwd=REPO_ROOT,
                    env={**os.environ, "PYTHONHASHSEED": seed},
                )
                self.assertEqual(result.returncode, 0, result.stderr[-2000:])
                name = json.loads(result.stdout.strip().splitlines()[-1])
                self.assertEqual(name, "BertTextClassifier")


# The families with an AD-DROP classifier.
FAMILIES_TESTED = [f for f in FAMILY_BACKBONES if f != "f_net"]


@pytest.mark.all_backends
class FamiliesTest(TestCase):
    @parameterized.named_parameters(*[(name, name) for name in FAMILIES_TESTED])
    def test_from_preset_gives_the_familys_classifier_with_stock_outputs(
        self, family
    ):
        stock = tiny_family_task(family)
        folder = self.get_temp_dir()
        stock.save_to_preset(folder)
        x = family_inputs(stock.backbone)
        model = keras_addrop.models.ADDropTextClassifier.from_preset(
            folder, preprocessor=None, addrop_layers="all", drop_rate=0.5
        )
        self.assertIsInstance(model, type(stock))
        self.assertIsInstance(model, keras_addrop.models.ADDropTextClassifier)
        self.assertEqual(model.addrop_layers, "all")
        # The stock head's weights loaded: untrained, the same outputs.
        self.assertAllClose(
            model.predict(x, verbose=0), stock.predict(x, verbose=0), atol=1e-6
        )
        compile_for_test(model)
        history = model.fit(x, np.array([0, 2]), verbose=0)
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.0)
        # The trained AD-DROP classifier's preset: stock keras-hub loads the
        # stock class, AD-DROP its own with the settings.
        trained = model.predict(x, verbose=0)
        folder = self.get_temp_dir()
        model.save_to_preset(folder)
        stock = keras_hub.models.TextClassifier.from_preset(folder)
        self.assertIs(type(stock), type(model)._stock_cls)
        self.assertAllClose(stock.predict(x, verbose=0), trained, atol=1e-5)
        restored = ADDropTextClassifier.from_preset(folder)
        self.assertIs(type(restored), type(model))
        self.assertEqual(restored.addrop_layers, "all")
        self.assertEqual(restored.drop_rate, 0.5)
        self.assertAllClose(restored.predict(x, verbose=0), trained, atol=1e-5)

    def test_a_family_without_an_addrop_classifier_is_refused_in_one_line(
        self,
    ):
        stock = tiny_family_task("f_net", num_classes=2)
        folder = self.get_temp_dir()
        stock.save_to_preset(folder)
        with self.assertRaisesRegex(
            ValueError,
            r"^AD-DROP has no classifier for the FNet family; it supports "
            r"ALBERT, BERT, DeBERTa-v3, DistilBERT, RoBERTa, RoFormer-v2, "
            r"XLM-RoBERTa\. "
            r"Received: preset=",
        ):
            keras_addrop.models.ADDropTextClassifier.from_preset(folder)

    @parameterized.named_parameters(*[(name, name) for name in FAMILIES_TESTED])
    def test_the_mean_pooling_head_trains_on_every_family(self, family):
        backbone = tiny_family_task(family).backbone
        model = keras_addrop.models.mean_pooling_classifier(
            backbone, num_classes=2, addrop_layers="all", drop_rate=0.5
        )
        compile_for_test(model)
        history = model.fit(
            family_inputs(backbone), np.array([0, 1]), verbose=0
        )
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.0)

    @parameterized.named_parameters(*[(name, name) for name in FAMILIES_TESTED])
    def test_plain_step_is_stock_fit_and_the_keras_file_round_trips(
        self, family
    ):
        # No dropout: the two models' steps are then the same computation.
        stock = tiny_family_task(family, dropout=0.0)
        model = FAMILIES[type(stock)](
            tiny_family_task(family, dropout=0.0).backbone,
            num_classes=3,
            preprocessor=None,
            dropout=0.0,
            addrop_layers="all",
            merge_repeated_rows=False,
        )
        model.set_weights(stock.get_weights())
        model.addrop_enabled = False
        x = family_inputs(stock.backbone)
        y = np.array([0, 2])
        for m in (model, stock):
            compile_for_test(m)
            m.fit(x, y, epochs=2, shuffle=False, verbose=0)
        self.assertWeightsClose(model, stock, atol=1e-6)
        # Cross-tuning runs its AD-DROP epochs; then the .keras file.
        model.addrop_enabled = True
        history = model.fit(
            x,
            y,
            epochs=2,
            callbacks=[keras_addrop.callbacks.CrossTuning()],
            verbose=0,
        )
        fractions = history.history["addrop_drop_fraction"]
        self.assertEqual(fractions[0], 0.0)
        self.assertGreater(fractions[1], 0.0)
        restored = self.run_model_saving_test(model, x)
        self.assertEqual(restored.addrop_layers, "all")

    @parameterized.named_parameters(*[(name, name) for name in FAMILIES_TESTED])
    def test_lora_trains_only_what_it_leaves_trainable(self, family):
        stock = tiny_family_task(family, dropout=0.0)
        model = FAMILIES[type(stock)](
            stock.backbone,
            num_classes=3,
            preprocessor=None,
            addrop_layers="all",
            candidate_ratio=0.5,
            drop_rate=0.5,
        )
        # keras-hub's default names, or the family's own where those match
        # nothing (RoFormer-v2).
        names = type(model)._lora_layer_names
        model.backbone.enable_lora(2, target_layer_names=names)
        adapted = {
            w.path.split("/")[-2]
            for w in model.trainable_weights
            if "lora_kernel" in w.path
        }
        self.assertEqual(adapted, set(names or ("query", "value")))
        before = {w.path: to_numpy(w).copy() for w in model.weights}
        compile_for_test(model)
        x = family_inputs(model.backbone)
        history = model.fit(x, np.array([0, 2]), epochs=2, verbose=0)
        trainable = {w.path for w in model.trainable_weights}
        changed = {
            w.path
            for w in model.weights
            if not np.array_equal(before[w.path], to_numpy(w))
        }
        self.assertTrue(changed)
        self.assertLessEqual(changed, trainable)
        for fraction in history.history["addrop_drop_fraction"]:
            self.assertAllClose(fraction, 0.25, atol=0.06)
        # The adapter alone round-trips by keras-hub's own index scheme.
        path = os.path.join(self.get_temp_dir(), "adapter.lora.h5")
        model.backbone.save_lora_weights(path)
        other = FAMILIES[type(stock)](
            tiny_family_task(family, dropout=0.0).backbone,
            num_classes=3,
            preprocessor=None,
            addrop_layers="all",
        )
        other.backbone.enable_lora(2, target_layer_names=names)
        other.backbone.load_lora_weights(path)
        lora = {w.path: to_numpy(w) for w in model.weights if "lora" in w.path}
        for w in other.weights:
            if "lora" in w.path:
                self.assertAllEqual(to_numpy(w), lora[w.path])

    def test_lora_that_adapts_no_layer_is_refused_before_training(self):
        stock = tiny_family_task("roformer_v2")
        model = keras_addrop.models.ADDropRoformerV2TextClassifier(
            stock.backbone, num_classes=3, preprocessor=None
        )
        # keras-hub's default names: RoFormer-v2 has no `query` or `value`.
        model.backbone.enable_lora(2)
        compile_for_test(model)
        with self.assertRaisesRegex(
            ValueError,
            r"`enable_lora` adapted no layer of this RoformerV2Backbone.*"
            r"\['q_dense_layer', 'v_dense_layer'\]",
        ):
            model.fit(
                family_inputs(model.backbone), np.array([0, 2]), verbose=0
            )
