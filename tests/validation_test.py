import ast

import numpy as np

from keras_addrop import validation
from tests.test_case import REPO_ROOT
from tests.test_case import TestCase


class ValidationTest(TestCase):
    def test_every_check_names_the_argument_and_the_value_in_keras_wording(
        self,
    ):
        cases = [
            (validation.validate_positive_int, ("ig_steps", 0), "a positive"),
            (validation.validate_positive_int, ("n", True), "a positive"),
            (validation.validate_positive_int, ("n", 1.0), "a positive"),
            (validation.validate_non_negative_int, ("epoch", -1), ">= 0"),
            (validation.validate_optional_int, ("seed", "1"), "an int or"),
            (validation.validate_ratio, ("drop_rate", 1.5), "between 0"),
            (validation.validate_ratio, ("drop_rate", float("nan")), "0"),
            (validation.validate_ratio, ("drop_rate", True), "between 0"),
            (validation.validate_choice, ("labels", "x", ("a", "b")), "one"),
            (validation.validate_bool, ("merge", 1), "True or False"),
        ]
        for check, (name, value, *choices), expected in cases:
            with self.subTest(check=check.__name__, value=value):
                with self.assertRaises(ValueError) as raised:
                    check(name, value, *choices)
                message = str(raised.exception)
                self.assertTrue(
                    message.startswith(
                        f"Invalid value for argument `{name}`: expected "
                    ),
                    message,
                )
                self.assertIn(expected, message)
                self.assertTrue(
                    message.endswith(f"Received: {name}={value!r}"), message
                )

    def test_valid_values_come_back_in_their_plain_python_type(self):
        self.assertIs(
            type(validation.validate_positive_int("n", np.int64(3))), int
        )
        self.assertIsNone(
            validation.validate_positive_int("n", None, allow_none=True)
        )
        self.assertEqual(validation.validate_non_negative_int("n", 0), 0)
        self.assertIsNone(validation.validate_optional_int("seed", None))
        self.assertEqual(validation.validate_ratio("p", 1), 1.0)
        self.assertIs(
            type(validation.validate_ratio("p", np.float32(0.5))), float
        )
        self.assertEqual(validation.validate_choice("m", "a", ("a",)), "a")
        self.assertIs(validation.validate_bool("b", False), False)

    def test_a_ratio_that_excludes_one_says_so(self):
        self.assertEqual(
            validation.validate_ratio("dropout", 0.5, include_one=False), 0.5
        )
        with self.assertRaisesRegex(ValueError, r"1 \(excluded\)"):
            validation.validate_ratio("dropout", 1.0, include_one=False)

    def test_the_data_package_imports_nothing_of_the_addrop_core(self):
        # glue/ may use the checks, the backend's prediction and the shared
        # dev-evaluation callback base, nothing of the layer, the masks,
        # attribution or the step; callbacks.py is held to the same rule.
        allowed = {"keras_addrop.glue", "keras_addrop.validation"}
        allowed |= {"keras_addrop.backend", "keras_addrop.callbacks"}
        allowed.add("keras_addrop.api_export")
        package = REPO_ROOT / "keras_addrop"
        paths = [
            *sorted((package / "glue").glob("*.py")),
            package / "callbacks.py",
        ]
        for path in paths:
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                    if node.module == "keras_addrop":
                        names = [f"keras_addrop.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] != "keras_addrop":
                        continue
                    with self.subTest(path=path.name, name=name):
                        self.assertIn(".".join(name.split(".")[:2]), allowed)
