import ast
import warnings

import keras
import numpy as np
import pytest
from absl.testing import parameterized

import keras_addrop
from keras_addrop.models import ADDropBertTextClassifier
from tests.test_case import REPO_ROOT
from tests.test_case import TestCase
from tests.test_case import compile_for_test
from tests.test_case import dense_gradient_step
from tests.test_case import differences_from_keras_step
from tests.test_case import tiny_backbone
from tests.test_case import tiny_batch
from tests.test_case import to_numpy
from tests.test_case import twin_models


@pytest.mark.all_backends
class ADDropTrainStepTest(TestCase):
    """The two-pass step, through the BERT classifier (any AD-DROP model
    runs this step)."""

    def setUp(self):
        super().setUp()
        self.x, self.y = tiny_batch(batch_size=16)

    def test_plain_step_matches_stock_fit(self):
        # The stock classifier's optimizer gets the same repeated-row merge
        # that the AD-DROP model applies by default; everything else is
        # Keras' stock step.
        model, stock = twin_models()
        model.addrop_enabled = False
        compile_for_test(model)
        compile_for_test(stock)
        keras_addrop.optimizers.merge_repeated_rows(stock.optimizer)
        ours = model.fit(self.x, self.y, batch_size=4, shuffle=False, verbose=0)
        ref = stock.fit(self.x, self.y, batch_size=4, shuffle=False, verbose=0)
        self.assertWeightsClose(model, stock, atol=1e-6)
        self.assertAllClose(ours.history["loss"], ref.history["loss"])
        self.assertEqual(ours.history["addrop_drop_fraction"], [0.0])

    def test_plain_step_is_keras_own_step_with_and_without_loss_scaling(self):
        # Logs, weights and optimizer state after 4 weighted steps, against
        # Keras' `train_step` on the stock classifier: on TensorFlow the
        # step re-implements its checklist around a `tf.cond`, elsewhere it
        # calls it. A Keras upgrade that changes the checklist fails here.
        configurations = [("float32", False), ("float32", True)]
        if keras.config.backend() != "jax":
            # JAX on CPU has no float16 attention with float32 accumulation,
            # the stock layer's fused path at dropout 0.
            configurations.append(("mixed_float16", True))
        for policy, loss_scale in configurations:
            with self.subTest(policy=policy, loss_scale=loss_scale):
                report = differences_from_keras_step(
                    self.x, self.y, policy=policy, loss_scale=loss_scale
                )
                self.assertIsKerasStep(report, loss_scaled=loss_scale)

    def test_plain_step_without_merging_matches_untouched_stock_fit(self):
        model, stock = twin_models(merge_repeated_rows=False)
        model.addrop_enabled = False
        compile_for_test(model)
        compile_for_test(stock)
        model.fit(self.x, self.y, batch_size=4, shuffle=False, verbose=0)
        stock.fit(self.x, self.y, batch_size=4, shuffle=False, verbose=0)
        if keras.config.backend() == "tensorflow":
            # Only TensorFlow's embedding gradients are sparse (merged by
            # default); the other backends' are dense either way.
            self.assertFalse(
                keras_addrop.backend.merges_repeated_rows(model.optimizer)
            )
        self.assertWeightsClose(model, stock, atol=1e-6)

    @parameterized.named_parameters(("plain", False), ("addrop", True))
    @pytest.mark.tf_only
    def test_step_with_repeated_tokens_equals_dense_gradient_step(self, addrop):
        # One batch of 16 rows of 10 ids from a vocabulary of 30: most ids
        # repeat. q = 0 runs the AD-DROP branch without dropping anything.
        model, stock = twin_models(drop_rate=0.0, addrop_layers="all")
        unmerged, _ = twin_models(
            drop_rate=0.0, addrop_layers="all", merge_repeated_rows=False
        )
        for m in (model, unmerged):
            m.addrop_enabled = addrop
            compile_for_test(m)
            m.fit(self.x, self.y, batch_size=16, shuffle=False, verbose=0)
        compile_for_test(stock)
        dense_gradient_step(stock, self.x, self.y, keras.optimizers.Adam(1e-2))
        self.assertWeightsClose(model, stock, atol=1e-6)
        embedding = model.backbone.token_embedding.embeddings.path
        differences = {
            a.path: np.abs(a.numpy() - b.numpy()).max()
            for a, b in zip(unmerged.weights, stock.weights)
        }
        self.assertGreater(differences[embedding], 1e-3)

    def test_addrop_step_without_drops_matches_stock_fit(self):
        # q = 0: pass 1 runs and masks are built, but nothing is dropped. The
        # weights then follow the stock step, which shows that pass 1 leaves
        # weights, optimizer, losses and metrics alone (the stock optimizer
        # merges repeated rows as the AD-DROP model's does).
        model, stock = twin_models(drop_rate=0.0, addrop_layers="all")
        compile_for_test(model)
        compile_for_test(stock)
        keras_addrop.optimizers.merge_repeated_rows(stock.optimizer)
        sample_weight = np.linspace(0.5, 2.0, 16).astype("float32")
        ours = model.fit(
            self.x,
            self.y,
            sample_weight=sample_weight,
            batch_size=4,
            shuffle=False,
            verbose=0,
        )
        ref = stock.fit(
            self.x,
            self.y,
            sample_weight=sample_weight,
            batch_size=4,
            shuffle=False,
            verbose=0,
        )
        self.assertWeightsClose(model, stock, atol=1e-5)
        self.assertAllClose(
            ours.history["loss"], ref.history["loss"], atol=1e-5
        )
        self.assertEqual(
            ours.history["sparse_categorical_accuracy"],
            ref.history["sparse_categorical_accuracy"],
        )
        self.assertEqual(model.optimizer.iterations.numpy(), 4)

    def test_addrop_changes_training_and_logs_drop_fraction(self):
        model, stock = twin_models(
            candidate_ratio=0.5, drop_rate=0.5, addrop_layers="all"
        )
        compile_for_test(model)
        compile_for_test(stock)
        history = model.fit(self.x, self.y, batch_size=4, verbose=0)
        stock.fit(self.x, self.y, batch_size=4, verbose=0)
        fraction = history.history["addrop_drop_fraction"][0]
        self.assertAllClose(fraction, 0.25, atol=0.06)
        self.assertFalse(
            np.allclose(model.get_weights()[0], stock.get_weights()[0])
        )

    def test_drop_fraction_counts_only_real_positions(self):
        # p = q = 1 drops all but one real key of every real query row.
        model, _ = twin_models(
            candidate_ratio=1.0, drop_rate=1.0, addrop_layers="all"
        )
        compile_for_test(model)
        history = model.fit(self.x, self.y, batch_size=16, verbose=0)
        lengths = self.x["padding_mask"].sum(-1)
        expected = (lengths * (lengths - 1)).sum() / (lengths**2).sum()
        self.assertAllClose(
            history.history["addrop_drop_fraction"][0], expected, atol=1e-6
        )

    def test_regularisation_losses_are_part_of_the_loss(self):
        model = ADDropBertTextClassifier(
            tiny_backbone(), num_classes=2, dropout=0.0, addrop_layers="all"
        )
        model.output_dense.kernel.regularizer = keras.regularizers.L2(10.0)
        compile_for_test(model, learning_rate=0.0)
        history = model.fit(self.x, self.y, batch_size=16, verbose=0)
        penalty = 10.0 * np.sum(np.square(model.output_dense.kernel))
        # With masks, the training pass differs from predict; without
        # drops it equals it.
        model.drop_rate = 0.0
        keras.utils.clear_session()
        cross_entropy = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True
        )(self.y, model.predict(self.x, verbose=0))
        self.assertGreater(history.history["loss"][0], penalty)
        self.assertAllClose(
            history.history["loss"][0] - penalty,
            float(cross_entropy),
            atol=0.1,
        )

    def test_evaluation_and_prediction_never_apply_addrop(self):
        model, stock = twin_models(
            candidate_ratio=1.0, drop_rate=1.0, addrop_layers="all"
        )
        compile_for_test(model)
        compile_for_test(stock)
        self.assertAllClose(
            model.predict(self.x, verbose=0), stock.predict(self.x, verbose=0)
        )
        ours = model.evaluate(self.x, self.y, verbose=0, return_dict=True)
        ref = stock.evaluate(self.x, self.y, verbose=0, return_dict=True)
        self.assertEqual(ours, ref)
        history = model.fit(
            self.x, self.y, validation_data=(self.x, self.y), verbose=0
        )
        self.assertNotIn("val_addrop_drop_fraction", history.history)

    @pytest.mark.tf_only
    def test_step_is_traced_once_and_the_switch_flips_without_retracing(self):
        traces = []

        class Counting(ADDropBertTextClassifier):
            def train_step(self, data):
                traces.append(1)
                return super().train_step(data)

        model = Counting(tiny_backbone(), num_classes=2)
        compile_for_test(model)
        model.fit(self.x, self.y, batch_size=8, verbose=0)
        # Optimizer and metrics are built before the trace: a function that
        # creates variables would be traced twice.
        self.assertLen(traces, 1)
        model.addrop_enabled = False
        history = model.fit(self.x, self.y, batch_size=8, verbose=0)
        self.assertLen(traces, 1)
        self.assertEqual(history.history["addrop_drop_fraction"], [0.0])

    def test_training_runs_eagerly_and_with_xla(self):
        for kwargs in ({"run_eagerly": True}, {"jit_compile": True}):
            model, _ = twin_models(addrop_layers="all", dropout=0.1)
            compile_for_test(model, **kwargs)
            history = model.fit(self.x, self.y, batch_size=8, verbose=0)
            self.assertGreater(history.history["addrop_drop_fraction"][0], 0)
            self.assertTrue(np.isfinite(history.history["loss"][0]))

    def test_mixed_precision_training_stays_finite(self):
        for policy in ("mixed_float16", "mixed_bfloat16"):
            keras.mixed_precision.set_global_policy(policy)
            model = ADDropBertTextClassifier(
                tiny_backbone(dropout=0.1), num_classes=2, addrop_layers="all"
            )
            compile_for_test(model, learning_rate=1e-3)
            # Keras scales the loss under float16 on every backend.
            self.assertEqual(
                isinstance(
                    model.optimizer, keras.optimizers.LossScaleOptimizer
                ),
                policy == "mixed_float16",
            )
            history = model.fit(self.x, self.y, batch_size=8, verbose=0)
            self.assertTrue(np.isfinite(history.history["loss"][0]))
            self.assertGreater(history.history["addrop_drop_fraction"][0], 0)
            for weight in model.weights:
                self.assertTrue(np.all(np.isfinite(to_numpy(weight))))
        keras.mixed_precision.set_global_policy("float32")

    def test_fit_on_a_dataset_does_not_warn_about_shuffle(self):
        import tensorflow as tf

        model, _ = twin_models()
        compile_for_test(model)
        dataset = tf.data.Dataset.from_tensor_slices((self.x, self.y))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(dataset.batch(8), verbose=0)
        messages = [str(w.message) for w in caught]
        self.assertFalse([m for m in messages if "shuffle" in m], messages)


class StepCompositionTest(TestCase):
    def test_backend_modules_read_nothing_of_addrop_on_the_model(self):
        # The step is written once in train_step.py; a backend's functions
        # get what they need as arguments and never reach back into the
        # model's AD-DROP attributes or hooks.
        folder = REPO_ROOT / "keras_addrop" / "backend"
        for path in sorted(folder.glob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute):
                    with self.subTest(path=path.name, line=node.lineno):
                        self.assertNotIn("addrop", node.attr)

    def test_the_step_module_imports_no_backend_directly(self):
        path = REPO_ROOT / "keras_addrop" / "train_step.py"
        tree = ast.parse(path.read_text())
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                modules.add(node.module or "")
        for backend in ("tensorflow", "jax", "torch"):
            self.assertFalse(
                any(m.split(".")[0] == backend for m in modules), modules
            )


class AddropArgumentsDocTest(TestCase):
    def test_every_addrop_model_documents_the_arguments_from_one_block(self):
        import keras_addrop
        from keras_addrop.train_step import ADDROP_ARGUMENTS_DOC

        for cls in (
            keras_addrop.ADDropTrainStep,
            keras_addrop.models.ADDropModel,
            keras_addrop.models.ADDropBertTextClassifier,
            keras_addrop.models.ADDropRobertaTextClassifier,
        ):
            doc = cls.__doc__
            self.assertNotIn("{addrop_arguments}", doc)
            self.assertIn("\n        candidate_ratio: float in [0, 1]", doc)
            # Every line of the block, at the Args section's indentation.
            for line in ADDROP_ARGUMENTS_DOC.splitlines():
                self.assertIn("\n        " + line + "\n", doc + "\n")

    def test_a_docstring_without_the_marker_is_refused(self):
        from keras_addrop.train_step import with_addrop_arguments

        class Undocumented:
            """Args:
            x: nothing."""

        with self.assertRaisesRegex(ValueError, "no {addrop_arguments} line"):
            with_addrop_arguments(Undocumented)
