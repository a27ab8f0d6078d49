import keras
import keras_hub
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

import keras_addrop
from tests.test_case import TestCase
from tests.test_case import dense_gradient_step
from tests.test_case import tiny_backbone
from tests.test_case import tiny_batch


def repeated_row_gradient():
    """The gradient of looking up rows [0, 0, 0, 1] of a 3x2 table."""
    return tf.IndexedSlices(
        tf.constant([[1.0, 1.0], [2.0, -1.0], [3.0, 1.0], [1.0, 1.0]]),
        tf.constant([0, 0, 0, 1]),
        tf.constant([3, 2]),
    )


def moved(optimizer, gradient, steps=1):
    """How far each row of a zero 3x2 variable moves under `gradient`."""
    variable = keras.Variable(np.zeros((3, 2), "float32"))
    for _ in range(steps):
        optimizer.apply([gradient], [variable])
    return -variable.numpy()


class MergeRepeatedRowsTest(TestCase):
    def test_adam_moves_a_repeated_row_by_the_dense_gradient_update(self):
        # Adam's first step moves each weight by at most the learning rate.
        dense = moved(
            keras.optimizers.Adam(1.0, epsilon=1e-12),
            tf.convert_to_tensor(repeated_row_gradient()),
        )
        self.assertAllClose(dense, [[1, 1], [1, 1], [0, 0]], atol=1e-5)
        merged = moved(
            keras_addrop.optimizers.merge_repeated_rows(
                keras.optimizers.Adam(1.0, epsilon=1e-12)
            ),
            repeated_row_gradient(),
        )
        self.assertAllClose(merged, dense, atol=1e-6)
        # Keras' own update of the same gradient, which the fix replaces:
        # the second moment of row 0 is 1+4+9 and 1+1+1, not 36 and 1.
        stock = moved(
            keras.optimizers.Adam(1.0, epsilon=1e-12), repeated_row_gradient()
        )
        self.assertAllClose(stock[0], [1.6036, 0.5774], atol=1e-4)

    @parameterized.named_parameters(
        ("adamw", lambda: keras.optimizers.AdamW(0.1)),
        ("rmsprop", lambda: keras.optimizers.RMSprop(0.1)),
        ("adagrad", lambda: keras.optimizers.Adagrad(0.1)),
        ("clipped_sgd", lambda: keras.optimizers.SGD(0.1, clipnorm=1.0)),
    )
    def test_merged_updates_equal_dense_ones_over_steps(self, make):
        dense = moved(make(), tf.convert_to_tensor(repeated_row_gradient()), 3)
        merged = moved(
            keras_addrop.optimizers.merge_repeated_rows(make()),
            repeated_row_gradient(),
            3,
        )
        self.assertAllClose(merged, dense, atol=1e-6)
        stock = moved(make(), repeated_row_gradient(), 3)
        self.assertFalse(np.allclose(stock, dense, atol=1e-3))

    def test_merging_twice_or_through_loss_scaling_changes_nothing_more(self):
        optimizer = keras.optimizers.Adam(1.0, epsilon=1e-12)
        keras_addrop.optimizers.merge_repeated_rows(optimizer)
        update_step = optimizer.update_step
        self.assertIs(
            keras_addrop.optimizers.merge_repeated_rows(optimizer), optimizer
        )
        self.assertIs(optimizer.update_step, update_step)
        self.assertEqual(
            type(optimizer).get_config,
            keras.optimizers.Adam.get_config,
        )
        scaled = keras.optimizers.LossScaleOptimizer(
            keras.optimizers.Adam(1.0, epsilon=1e-12)
        )
        keras_addrop.optimizers.merge_repeated_rows(scaled)
        self.assertAllClose(
            moved(scaled, repeated_row_gradient())[0], [1, 1], atol=1e-5
        )

    def test_stock_classifier_step_equals_the_dense_gradient_step(self):
        # Tokens repeat: 16 rows of 10 ids from a vocabulary of 30.
        x, y = tiny_batch(batch_size=16)
        keras.utils.set_random_seed(0)
        model = keras_hub.models.BertTextClassifier(
            tiny_backbone(), num_classes=2, dropout=0.0
        )
        reference = keras_hub.models.BertTextClassifier(
            tiny_backbone(), num_classes=2, dropout=0.0
        )
        reference.set_weights(model.get_weights())
        model.compile(
            optimizer=keras_addrop.optimizers.merge_repeated_rows(
                keras.optimizers.AdamW(1e-2)
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        reference.compile(
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        model.fit(x, y, batch_size=16, shuffle=False, verbose=0)
        dense_gradient_step(reference, x, y, keras.optimizers.AdamW(1e-2))
        self.assertWeightsClose(model, reference, atol=1e-6)
