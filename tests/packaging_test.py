"""The package builds as a wheel that installs and imports on its own."""

import glob
import os
import subprocess
import sys
import zipfile

from tests.test_case import REPO_ROOT
from tests.test_case import TestCase


class WheelTest(TestCase):
    def test_wheel_builds_installs_and_imports_outside_the_checkout(self):
        dist = self.get_temp_dir()
        build = subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--outdir", dist],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.assertEqual(build.returncode, 0, msg=build.stderr[-3000:])
        self.assertNotIn("deprecated", build.stdout + build.stderr)
        (wheel,) = glob.glob(os.path.join(dist, "keras_addrop-*.whl"))
        names = zipfile.ZipFile(wheel).namelist()
        self.assertIn("keras_addrop/optimizers.py", names)
        self.assertIn("keras_addrop/glue/loading.py", names)
        self.assertIn("keras_addrop_cli.py", names)
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        self.assertIn(
            "keras-addrop = keras_addrop_cli:entry_point",
            zipfile.ZipFile(wheel).read(entry_points).decode(),
        )
        self.assertFalse([n for n in names if n.startswith("tests/")])

        # Dependencies come from this environment; the package from the
        # wheel alone, imported from a folder outside the checkout.
        target = self.get_temp_dir()
        install = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "-q",
             "--target", target, wheel],
            capture_output=True,
            text=True,
            timeout=300,
        )  # fmt: skip
        self.assertEqual(install.returncode, 0, msg=install.stderr[-3000:])
        code = (
            "import keras_addrop, sys; print(keras_addrop.__file__); "
            "print(keras_addrop.__version__); "
            "print(keras_addrop.optimizers.merge_repeated_rows.__name__)"
        )
        env = dict(os.environ, PYTHONPATH=target, TF_CPP_MIN_LOG_LEVEL="3")
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=target,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
        path, version, name = result.stdout.split()
        self.assertTrue(path.startswith(target), msg=path)
        self.assertEqual(version, "0.1.0")
        self.assertEqual(name, "merge_repeated_rows")
        help = subprocess.run(
            [sys.executable, "-m", "keras_addrop_cli", "finetune", "--help"],
            cwd=target,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(help.returncode, 0, msg=help.stderr[-3000:])
        self.assertIn("--candidate-ratio", help.stdout)
