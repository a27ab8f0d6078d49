"""The upstream behaviours keras-addrop works around, one canary each.

Each test asserts that the installed Keras (or TensorFlow) still behaves
as the workaround assumes. When one fails after an upgrade, upstream
changed: re-read the workaround named in the test (listed with its reason
in docs/concepts/keras-workarounds.md) and drop or adapt it.
"""

import inspect
import warnings

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from tests.test_case import TestCase
from tests.test_case import tiny_backbone
from tests.test_case import tiny_bart_backbone

tf_only = pytest.mark.skipif(
    keras.config.backend() != "tensorflow", reason="TensorFlow's trainer"
)


@pytest.mark.all_backends
class KerasCanariesTest(TestCase):
    def test_keras_hub_classifiers_skip_compile_when_loaded(self):
        # Worked around by ADDropTextClassifier.compile_from_config.
        import keras_hub

        model = keras_hub.models.BertTextClassifier(
            tiny_backbone(), num_classes=2, preprocessor=None
        )
        model.compile(optimizer="adam")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            keras.Model.compile_from_config(model, model.get_compile_config())
        self.assertTrue(
            any("was not called as part of" in str(w.message) for w in caught)
        )

    def test_keras_hub_picks_a_task_class_from_an_unordered_set(self):
        # Worked around in keras_addrop.models.addrop_text_classifier
        # (stock searches skip the AD-DROP classes).
        from keras_hub.src.utils import preset_utils

        listing = inspect.getsource(preset_utils.list_subclasses.__wrapped__)
        self.assertIn(
            "set(keras.saving.get_custom_objects().values())", listing
        )
        search = inspect.getsource(preset_utils.find_subclass)
        self.assertIn("if len(directs) > 1:", search)
        self.assertIn("return subclasses[0]", search)

    def test_fit_warns_that_shuffle_is_ignored_for_a_dataset(self):
        # Worked around by ADDropTrainStep.fit (shuffle=False).
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        data = tf.data.Dataset.from_tensor_slices(
            (np.ones((4, 2), "float32"), np.ones((4, 1), "float32"))
        ).batch(2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(data, epochs=1, verbose=0)
        self.assertTrue(
            any("will be ignored" in str(w.message) for w in caught)
        )

    def test_optimizers_warn_for_weights_without_gradients(self):
        # Filtered for the unused pooler in ADDropTrainStep (the mean
        # pooling head leaves keras-hub's pooler without a gradient).
        used = keras.Variable(np.ones(2, "float32"), name="used")
        unused = keras.Variable(np.ones(2, "float32"), name="pooled_dense")
        optimizer = keras.optimizers.Adam()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            optimizer.apply([keras.ops.ones(2), None], [used, unused])
        self.assertTrue(
            any(
                "Gradients do not exist for variables" in str(w.message)
                for w in caught
            )
        )

    def test_keras_hub_roformer_masks_padded_keys_on_pytorch_only(self):
        # Followed by ADDropRoformerAttention (`_stock_mask`), which must
        # equal the stock layer: elsewhere real tokens attend to padding.
        import keras_hub

        keras.utils.set_random_seed(0)
        backbone = keras_hub.models.RoformerV2Backbone(
            vocabulary_size=20,
            num_layers=1,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
            head_size=4,
        )
        token_ids = np.array([[5, 6, 7, 0, 0, 0]])

        def outputs(length):
            x = token_ids[:, :length]
            return keras.ops.convert_to_numpy(
                backbone({"token_ids": x, "segment_ids": np.zeros_like(x)})
            )[:, :3]

        padding_changes_real_tokens = not np.allclose(
            outputs(6), outputs(3), atol=1e-6
        )
        self.assertEqual(
            padding_changes_real_tokens, keras.config.backend() != "torch"
        )

    def test_keras_hub_llama_config_leaves_out_tied_embeddings(self):
        backbone = keras_hub.models.LlamaBackbone(
            vocabulary_size=10,
            num_layers=1,
            num_query_heads=2,
            num_key_value_heads=1,
            hidden_dim=8,
            intermediate_dim=16,
            tie_word_embeddings=True,
        )
        self.assertNotIn("tie_word_embeddings", backbone.get_config())

    def test_keras_hub_seq2seq_preprocessors_leave_out_their_lengths(self):
        tokenizer = keras_hub.models.BartTokenizer(
            vocabulary={
                "<s>": 0,
                "<pad>": 1,
                "</s>": 2,
                "<mask>": 3,
                "Ġ": 4,
                "a": 5,
                "Ġa": 6,
            },
            merges=["Ġ a"],
        )
        preprocessor = keras_hub.models.BartSeq2SeqLMPreprocessor(
            tokenizer, encoder_sequence_length=8, decoder_sequence_length=6
        )
        # keras_addrop wraps the stock method; the wrapped one is keras-hub's.
        stock = keras_hub.models.Seq2SeqLMPreprocessor.get_config.__wrapped__
        self.assertNotIn("encoder_sequence_length", stock(preprocessor))
        self.assertNotIn("decoder_sequence_length", stock(preprocessor))
        restored = preprocessor.from_config(preprocessor.get_config())
        self.assertEqual(restored.encoder_sequence_length, 8)
        self.assertEqual(restored.decoder_sequence_length, 6)

    def test_keras_on_pytorch_saves_optimizers_under_their_torch_modules(self):
        # Worked around by ADDropTask.compile_from_config.
        config = keras.saving.serialize_keras_object(keras.optimizers.Adam())
        on_torch = keras.config.backend() == "torch"
        self.assertEqual(
            config["module"].startswith("keras.src.backend.torch."), on_torch
        )

    def test_keras_lists_bart_variables_in_another_order_on_pytorch(self):
        # Worked around by ADDropTask.get_compile_config (the optimizer's
        # variable order by path).
        paths = [v.path for v in tiny_bart_backbone().trainable_variables]
        decoder_first = paths.index(
            "decoder_position_embedding/embeddings"
        ) < paths.index("encoder_embeddings_layer_norm/gamma")
        self.assertEqual(decoder_first, keras.config.backend() == "torch")


@tf_only
class TensorFlowCanariesTest(TestCase):
    def test_sparse_updates_count_repeated_rows_once_per_occurrence(self):
        # Worked around by keras_addrop.optimizers.merge_repeated_rows.
        def updated(gradient):
            variable = keras.Variable(np.zeros((3, 1), "float32"))
            keras.optimizers.Adam(0.1).apply([gradient], [variable])
            return keras.ops.convert_to_numpy(variable)

        sparse = tf.IndexedSlices(
            tf.constant([[1.0], [1.0]]), tf.constant([0, 0]), (3, 1)
        )
        dense = tf.constant([[2.0], [0.0], [0.0]])
        self.assertFalse(np.allclose(updated(sparse), updated(dense)))

    def test_cond_passes_an_indexed_slices_shape_out_as_a_tensor(self):
        # Worked around by keras_addrop.backend.tensorflow.cond.
        seen = {}

        @tf.function
        def step(pred):
            slices = tf.cond(
                pred,
                lambda: tf.IndexedSlices(
                    tf.ones((1, 2)), tf.constant([0]), tf.constant([4, 2])
                ),
                lambda: tf.IndexedSlices(
                    tf.zeros((1, 2)), tf.constant([1]), tf.constant([4, 2])
                ),
            )
            seen["shape"] = tf.get_static_value(slices.dense_shape)
            return slices.values

        step(tf.constant(True))
        self.assertIsNone(seen["shape"])

    def test_keras_defers_the_build_without_a_strategy(self):
        # Worked around by KerasTrainerFixes._maybe_symbolic_build (builds
        # first, so the step is traced once).
        from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

        source = inspect.getsource(TensorFlowTrainer._maybe_symbolic_build)
        self.assertIn("if self._distribute_strategy is None:", source)
        # ... and builds a distributed model from a cross-replica mean of
        # its first batch (keras_addrop.backend.tensorflow
        # .first_replica_batch).
        self.assertIn("self.distribute_strategy.reduce(\n", source)
        self.assertIn('"MEAN"', source)

    def test_multi_worker_logs_are_reduced_along_a_first_axis(self):
        # Worked around by keras_addrop.backend.tensorflow.logs_for_strategy.
        from keras.src.backend.tensorflow import trainer

        source = inspect.getsource(trainer.reduce_per_replica)
        self.assertIn('strategy.reduce("MEAN", v, axis=0)', source)
