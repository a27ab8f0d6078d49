import ast

from tests.test_case import REPO_ROOT
from tests.test_case import TestCase


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
