import numpy as np
import tensorflow as tf

from keras_addrop.backend import tensorflow as tf_backend
from tests.test_case import TestCase


class CondTest(TestCase):
    def embedding_gradients(self, use_first):
        """Sparse gradients of an embedding lookup out of `tf_backend.cond`:
        the dense shape seen by the caller, and the densified gradient."""
        table = tf.Variable(np.arange(12.0).reshape(6, 2), dtype="float32")
        ids = tf.constant([1, 4, 1])

        def gradients(scale):
            def branch():
                with tf.GradientTape() as tape:
                    loss = scale * tf.reduce_sum(tf.gather(table, ids))
                return loss, tape.gradient(loss, table)

            return branch

        seen = {}

        @tf.function(jit_compile=True)
        def step(pred):
            loss, gradient = tf_backend.cond(
                pred, gradients(2.0), gradients(3.0)
            )
            seen["dense_shape"] = tf.get_static_value(gradient.dense_shape)
            # The optimizers' sparse update: XLA needs num_segments constant.
            dense = tf.math.unsorted_segment_sum(
                gradient.values, gradient.indices, gradient.dense_shape[0]
            )
            return loss, dense

        loss, dense = step(tf.constant(use_first))
        return seen["dense_shape"], loss, dense

    def test_cond_keeps_the_dense_shape_of_sparse_gradients_constant(self):
        for use_first, scale in ((True, 2.0), (False, 3.0)):
            dense_shape, loss, dense = self.embedding_gradients(use_first)
            self.assertAllEqual(dense_shape, [6, 2])
            expected = np.zeros((6, 2), "float32")
            expected[1], expected[4] = 2 * scale, scale
            self.assertAllClose(dense, expected)
            self.assertAllClose(loss, scale * (2 * (2 + 3) + 8 + 9))
