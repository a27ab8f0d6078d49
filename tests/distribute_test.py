import importlib.util
import json
import subprocess
import sys

import keras
import numpy as np

from keras_addrop.attribution import compute_attribution
from keras_addrop.models import ADDropBertTextClassifier
from keras_addrop.ops.addrop_mask import top_candidates
from tests.test_case import SCRIPTS
from tests.test_case import TestCase
from tests.test_case import deterministic_model
from tests.test_case import tiny_backbone
from tests.test_case import tiny_batch


def script_report(name):
    """Runs a script of tests/scripts in a fresh process; its REPORT line."""
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / name)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("REPORT ")
    ]
    if not lines:
        raise AssertionError(result.stderr[-3000:])
    return json.loads(lines[0][len("REPORT ") :])


def assertTokenRunsMatch(test, single, parallel, validation_metrics=True):
    """Cross-tuned token classifier runs agree: drops in epoch 2 only, the
    same losses, and the same entity F1 of the training batches and (with
    `validation_metrics`) of the validation data."""
    fractions = parallel["addrop_drop_fraction"]
    test.assertEqual([f > 0 for f in fractions], [False, True])
    test.assertAllClose(fractions, single["addrop_drop_fraction"])
    test.assertAllClose(parallel["loss"], single["loss"], atol=1e-5)
    test.assertAllClose(parallel["entity_f1"], single["entity_f1"])
    test.assertAllClose(parallel["val_loss"], single["val_loss"], atol=1e-5)
    if validation_metrics:
        test.assertAllClose(parallel["val_entity_f1"], single["val_entity_f1"])


class MirroredStrategyTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.report = script_report("mirrored_script.py")

    def test_two_replicas_match_one_device_and_log_drops(self):
        report = self.report
        self.assertEqual(report["replicas"], 2)
        self.assertLess(report["plain_max_weight_difference"], 1e-5)
        single, mirrored = report["plain_loss"]
        self.assertAllClose(single, mirrored, atol=1e-5)
        self.assertEqual(report["addrop_fractions"][0], 0.0)
        self.assertAllClose(
            report["addrop_fractions"][1],
            report["expected_fraction"],
            atol=1e-6,
        )
        for name, message in report["errors"].items():
            self.assertIsNotNone(message, msg=name)
            self.assertIn(f"Received: {name}=", message)
            self.assertIn("MirroredStrategy", message)

    def test_token_classifier_matches_one_device_with_entity_f1(self):
        report = self.report["token"]
        # Keras' validation under MirroredStrategy weighs metrics otherwise
        # than on one device (its own weighted accuracy moves too, with
        # the loss equal): the validation metrics are not compared.
        assertTokenRunsMatch(
            self,
            report["single"],
            report["mirrored"],
            validation_metrics=False,
        )
        self.assertLess(report["max_weight_difference"], 1e-5)

    def test_a_causal_lm_matches_one_device(self):
        report = self.report["causal_lm"]
        single, mirrored = report["single"], report["mirrored"]
        self.assertGreater(min(single["addrop_drop_fraction"]), 0.15)
        self.assertAllClose(
            mirrored["addrop_drop_fraction"], single["addrop_drop_fraction"]
        )
        self.assertAllClose(mirrored["loss"], single["loss"], atol=1e-5)
        self.assertLess(report["max_weight_difference"], 1e-5)

    def test_plain_step_is_keras_own_step_over_two_replicas(self):
        # As on one device (tests/models): the loss divided per replica and
        # unscaled for the tracker, the gradients all-reduced, with and
        # without loss scaling.
        for policy, report in self.report["keras_step"].items():
            self.assertIsKerasStep(report, policy == "mixed_float16")


class JaxDataParallelTest(TestCase):
    def test_two_devices_match_one_with_cross_tuning(self):
        if importlib.util.find_spec("jax") is None:
            self.skipTest("JAX is not installed")
        report = script_report("data_parallel_script.py")
        self.assertEqual(report["devices"], 2)
        self.assertEqual(report["batch_multiple"], 2)
        single, parallel = report["single_history"], report["parallel_history"]
        # Cross-tuning over 4 epochs: plain, AD-DROP, plain, AD-DROP.
        fractions = parallel["addrop_drop_fraction"]
        self.assertEqual([f > 0 for f in fractions], [False, True] * 2)
        self.assertAllClose(fractions, single["addrop_drop_fraction"])
        self.assertAllClose(parallel["loss"], single["loss"], atol=1e-5)
        self.assertLess(report["max_weight_difference"], 1e-5)
        self.assertLess(report["uneven_prediction_difference"], 1e-5)
        assertTokenRunsMatch(
            self,
            report["token_single_history"],
            report["token_parallel_history"],
        )
        self.assertLess(report["token_max_weight_difference"], 1e-5)
        noisy = report["dropout_history"]
        self.assertTrue(np.all(np.isfinite(noisy["loss"])))
        self.assertNotEqual(noisy["loss"], single["loss"])

    def test_a_causal_lm_sharded_or_replicated_matches_one_device(self):
        if importlib.util.find_spec("jax") is None:
            self.skipTest("JAX is not installed")
        report = script_report("causal_lm_parallel_script.py")
        self.assertEqual(report["devices"], 2)
        single = report["single"]
        self.assertGreater(min(single["addrop_drop_fraction"]), 0.15)
        for name in ("data_parallel", "model_parallel"):
            history = report[name]
            self.assertAllClose(
                history["addrop_drop_fraction"], single["addrop_drop_fraction"]
            )
            self.assertAllClose(history["loss"], single["loss"], atol=1e-5)
            self.assertLess(report[name + "_weight_difference"], 1e-5)
        # keras-hub's Llama layout map splits the query heads over the two
        # devices; DataParallel replicates them.
        self.assertEqual(report["model_parallel_query_shards"], 2)
        self.assertEqual(report["data_parallel_query_shards"], 1)


class SingleDeviceTest(TestCase):
    def setUp(self):
        super().setUp()
        self.x, self.y = tiny_batch(batch_size=16)

    def test_xla_step_matches_the_graph_step(self):
        compiled = deterministic_model(jit_compile=True)
        graph = deterministic_model(jit_compile=False)
        for model in (compiled, graph):
            model.fit(self.x, self.y, batch_size=8, shuffle=False, verbose=0)
        self.assertWeightsClose(compiled, graph, atol=1e-5)

    def test_float16_candidates_agree_with_float32(self):
        keras.utils.set_random_seed(4)
        x, _ = tiny_batch(batch_size=16, seq_len=14)
        reference = ADDropBertTextClassifier(
            tiny_backbone(num_layers=3, dropout=0.0),
            num_classes=2,
            addrop_layers="all",
            dropout=0.0,
        )
        weights = reference.get_weights()
        full = compute_attribution(reference, x)
        for policy in ("mixed_float16", "mixed_bfloat16"):
            keras.mixed_precision.set_global_policy(policy)
            model = ADDropBertTextClassifier(
                tiny_backbone(num_layers=3, dropout=0.0),
                num_classes=2,
                addrop_layers="all",
                dropout=0.0,
            )
            model.set_weights(weights)
            for half, single in zip(compute_attribution(model, x), full):
                self.assertTrue(np.all(np.isfinite(np.asarray(half))))
                a, _ = top_candidates(half, x["padding_mask"], 0.3)
                b, _ = top_candidates(single, x["padding_mask"], 0.3)
                a, b = np.asarray(a), np.asarray(b)
                agreement = (a & b).sum() / b.sum()
                if policy == "mixed_float16":
                    self.assertGreater(agreement, 0.95, msg=policy)
                else:  # 8 mantissa bits: coarser, but still mostly agree.
                    self.assertGreater(agreement, 0.8, msg=policy)
        keras.mixed_precision.set_global_policy("float32")
