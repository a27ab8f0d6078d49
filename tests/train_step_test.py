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
