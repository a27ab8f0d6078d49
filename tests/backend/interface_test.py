"""The backend interface: every backend module provides all of it, and the
active backend's functions do what the interface says."""

import ast

import keras
import numpy as np
import pytest

from keras_addrop import backend
from tests.test_case import REPO_ROOT
from tests.test_case import TestCase

FOLDER = REPO_ROOT / "keras_addrop" / "backend"


def interface_names():
    """The names `keras_addrop.backend` takes from the active module."""
    tree = ast.parse((FOLDER / "__init__.py").read_text())
    return sorted(
        node.targets[0].id
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Attribute)
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "_backend"
    )


def module_names(name):
    """The top-level names a backend module defines or imports."""
    tree = ast.parse((FOLDER / f"{name}.py").read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
    return names


class InterfaceTest(TestCase):
    def test_every_backend_module_provides_the_whole_interface(self):
        names = interface_names()
        self.assertIn("kth_largest", names)
        for module in backend.BACKENDS:
            with self.subTest(module=module):
                self.assertEqual(sorted(set(names) - module_names(module)), [])

    def test_the_interface_is_documented_name_by_name(self):
        doc = backend.__doc__
        for name in interface_names():
            self.assertIn(f"`{name}", doc)


@pytest.mark.all_backends
class ActiveBackendTest(TestCase):
    def test_kth_largest_is_exact_with_ties_and_different_k_per_row(self):
        rng = np.random.default_rng(0)
        # Half exact zeros, as gradient attribution's ties.
        scores = rng.normal(size=(3, 4, 9)).astype("float32")
        scores[rng.random(scores.shape) < 0.5] = 0.0
        k = rng.integers(1, 5, size=(3, 4, 1)).astype("int32")
        kth, positions = backend.kth_largest(
            keras.ops.convert_to_tensor(scores),
            keras.ops.convert_to_tensor(k),
            4,
        )
        expected = np.take_along_axis(-np.sort(-scores, -1), k - 1, -1)
        self.assertAllClose(keras.ops.convert_to_numpy(kth), expected, atol=0)
        if positions is not None:
            # The position, where given, holds the k-th value.
            at = np.take_along_axis(
                scores, keras.ops.convert_to_numpy(positions), -1
            )
            self.assertAllClose(at, expected, atol=0)

    def test_the_switch_keeps_its_value(self):
        switch = backend.Switch(True)
        self.assertIs(bool(switch.value), True)
        switch.set(False)
        self.assertIs(bool(switch.value), False)

    def test_no_distribution_asks_nothing_of_the_batch(self):
        with backend.distribution_scope("none"):
            self.assertEqual(backend.batch_multiple(), 1)
        self.assertGreaterEqual(backend.WIDTH_MULTIPLE, 1)
