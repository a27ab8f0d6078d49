"""The same AD-DROP on TensorFlow, JAX and PyTorch: one set of weights and
inputs, each backend in its own process (`scripts/backend_script.py`)."""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

import keras
import numpy as np
import pytest

from tests.test_case import SCRIPTS
from tests.test_case import TestCase
from tests.test_case import backend_pair_model
from tests.test_case import seq2seq_batch
from tests.test_case import tiny_batch

BACKENDS = ("tensorflow", "jax", "torch")


def installed(backend):
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
    return importlib.util.find_spec(module[backend]) is not None


# Runs the three backends itself: once, from the TensorFlow run of the suite.
@pytest.mark.tf_only
class CrossBackendTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.folder = cls.run_backends()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.folder, ignore_errors=True)
        super().tearDownClass()

    @classmethod
    def run_backends(cls):
        folder = tempfile.mkdtemp()
        keras.utils.set_random_seed(0)
        model = backend_pair_model()
        x, _ = tiny_batch(batch_size=6, seq_len=10)
        model(x)
        model.save_weights(os.path.join(folder, "initial.weights.h5"))
        model.save(os.path.join(folder, "model.keras"))
        cls.tensorflow_predictions = model.predict(x, verbose=0)
        cls.failures = {}
        script = str(SCRIPTS / "backend_script.py")
        for backend in BACKENDS:
            if not installed(backend):
                continue
            env = dict(os.environ, KERAS_BACKEND=backend)
            result = subprocess.run(
                [
                    sys.executable,
                    script,
                    folder,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if result.returncode:
                cls.failures[backend] = result.stderr[-3000:]
        return folder

    def results(self, backend):
        if not installed(backend):
            self.skipTest(f"{backend} is not installed")
        self.assertNotIn(backend, self.failures, self.failures.get(backend))
        return dict(np.load(os.path.join(self.folder, f"{backend}.npz")))

    def assertRelativeClose(self, got, want, tolerance=1e-5, msg=None):
        got, want = np.asarray(got, "float64"), np.asarray(want, "float64")
        # Relative to the largest value; a weight that stays 0 in exact
        # arithmetic (a key bias: softmax ignores it) holds rounding noise.
        scale = max(np.abs(want).max(), 1e-6)
        self.assertLessEqual(
            np.abs(got - want).max() / scale, tolerance, msg=msg
        )

    @pytest.mark.large
    def test_attributions_masks_and_one_step_agree_across_backends(self):
        reference = self.results("tensorflow")
        for backend in ("jax", "torch"):
            if not installed(backend):
                continue
            got = self.results(backend)
            for key, want in reference.items():
                if key.startswith("bart_optimizer/"):
                    # Each backend's own random BART, checked below.
                    continue
                if key.startswith("keep_"):
                    self.assertAllEqual(got[key], want, msg=f"{backend} {key}")
                elif key != "reloaded_predictions":
                    self.assertRelativeClose(
                        got[key], want, msg=f"{backend} {key}"
                    )
        # q = 1: the step dropped every candidate, about p of each row.
        self.assertGreater(float(reference["drop_fraction"]), 0.2)

    @pytest.mark.large
    def test_a_keras_file_loads_with_the_same_predictions_everywhere(self):
        for backend in BACKENDS:
            if not installed(backend):
                continue
            got = self.results(backend)
            # Saved under TensorFlow, loaded under `backend`.
            self.assertAllClose(
                got["reloaded_predictions"],
                self.tensorflow_predictions,
                atol=1e-5,
            )
            # Saved under `backend` after its step, loaded here.
            model = keras.saving.load_model(
                os.path.join(self.folder, f"{backend}.keras")
            )
            x, _ = tiny_batch(batch_size=6, seq_len=10)
            self.assertAllClose(
                model.predict(x, verbose=0), got["predictions"], atol=1e-5
            )

    @pytest.mark.large
    def test_a_keras_file_resumes_with_its_optimizer_on_any_backend(self):
        for backend in BACKENDS:
            if not installed(backend):
                continue
            saved = {
                key.removeprefix("bart_optimizer/"): value
                for key, value in self.results(backend).items()
                if key.startswith("bart_optimizer/")
            }
            model = keras.saving.load_model(
                os.path.join(self.folder, f"{backend}_bart.keras")
            )
            restored = {v.path: v for v in model.optimizer.variables}
            self.assertEqual(sorted(restored), sorted(saved), msg=backend)
            self.assertEqual(int(model.optimizer.iterations), 1)
            for path, value in saved.items():
                self.assertAllClose(restored[path], value, msg=backend)
            # TensorFlow's own Adam: training goes on here.
            self.assertIs(type(model.optimizer), keras.optimizers.Adam)
            x, y, weights = seq2seq_batch()
            model.fit(x, y, sample_weight=weights, epochs=1, verbose=0)
            self.assertEqual(int(model.optimizer.iterations), 2)
