"""The tutorials run, in their small modes, so they cannot rot."""

import os
import subprocess
import sys

from tests.test_case import REPO_ROOT
from tests.test_case import TestCase


class ExamplesTest(TestCase):
    def test_custom_transformer_tutorial_runs(self):
        script = os.path.join(REPO_ROOT, "examples", "custom_transformer.py")
        result = subprocess.run(
            [sys.executable, script, "--examples", "256", "--epochs", "2"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
        self.assertIn(
            "restored ADDropModel, max difference 0.0e+00", result.stdout
        )
        self.assertIn(
            "attribution shapes: [(2, 4, 16, 16), (2, 4, 16, 16)]",
            result.stdout,
        )
