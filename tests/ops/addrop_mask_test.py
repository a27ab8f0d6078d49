import math
from fractions import Fraction

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_addrop.ops import Visibility
from keras_addrop.ops import addrop_mask
from keras_addrop.ops.addrop_mask import candidate_count
from keras_addrop.ops.addrop_mask import top_candidates
from tests.test_case import TestCase
from tests.test_case import to_numpy

# Runs under every backend (README).
pytestmark = pytest.mark.all_backends

# Ratios with at most two decimals, as users write them, plus the ends.
ratios = st.integers(0, 100).map(lambda i: i / 100)


@st.composite
def attribution_cases(draw):
    batch = draw(st.integers(1, 3))
    heads = draw(st.integers(1, 3))
    length = draw(st.integers(1, 9))
    lengths = draw(
        st.lists(st.integers(0, length), min_size=batch, max_size=batch)
    )
    padding = np.arange(length)[None, :] < np.array(lengths)[:, None]
    # Few distinct values, so ties are common.
    values = draw(st.sampled_from([3, 1000]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    attribution = rng.integers(0, values, (batch, heads, length, length))
    return attribution.astype("float32"), padding


def expected_count(p, n):
    return math.ceil(Fraction(str(p)) * n)


def reference_candidates(attribution, padding, p):
    """Top-k real keys per row: by value, then by position (numpy)."""
    batch, heads, length, _ = attribution.shape
    out = np.zeros(attribution.shape, bool)
    for b in range(batch):
        real = np.flatnonzero(padding[b])
        k = expected_count(p, len(real))
        for h in range(heads):
            for t in range(length):
                row = attribution[b, h, t, real]
                order = np.lexsort((real, -row))  # Value desc, index asc.
                out[b, h, t, real[order[:k]]] = True
    return out


class AddropMaskTest(TestCase):
    @settings(max_examples=60, deadline=None)
    @given(attribution_cases(), ratios)
    def test_candidates_are_the_top_ceil_p_n_real_keys(self, case, p):
        attribution, padding = case
        candidates, _ = top_candidates(attribution, padding, p)
        candidates = to_numpy(candidates)
        reference = reference_candidates(attribution, padding, p)
        self.assertAllEqual(candidates, reference)
        counts = candidates.sum(-1)
        for b, n in enumerate(padding.sum(-1)):
            self.assertTrue(np.all(counts[b] == expected_count(p, n)))

    @settings(max_examples=60, deadline=None)
    @given(attribution_cases(), ratios, ratios, st.integers(0, 1000))
    def test_mask_invariants(self, case, p, q, seed):
        attribution, padding = case
        keep = to_numpy(addrop_mask(attribution, padding, p, q, seed=seed))
        real_key = padding[:, None, None, :]
        real_query = padding[:, None, :, None]
        # Padding keys are never kept.
        self.assertFalse(np.any(keep & ~real_key))
        # Drops are a subset of the candidates.
        dropped = real_key & ~keep
        candidates = reference_candidates(attribution, padding, p)
        self.assertFalse(np.any(dropped & ~candidates))
        # Padding query rows lose nothing.
        self.assertFalse(np.any(dropped & ~real_query))
        # No row with real keys loses all of them.
        has_real = np.broadcast_to(
            padding.any(-1)[:, None, None], keep.shape[:3]
        )
        self.assertTrue(np.all(keep.any(-1)[has_real]))
        if q == 0:
            self.assertFalse(np.any(dropped))

    def test_mask_never_drops_padding_or_keeps_it(self):
        attribution = np.full((1, 1, 4, 4), 5.0, "float32")
        padding = np.array([[1, 1, 0, 0]], bool)
        keep = to_numpy(addrop_mask(attribution, padding, 1.0, 1.0, seed=0))
        self.assertAllEqual(keep[..., 2:], False)

    def test_q_one_drops_every_candidate(self):
        rng = np.random.default_rng(0)
        attribution = rng.normal(size=(2, 3, 10, 10)).astype("float32")
        padding = np.ones((2, 10), bool)
        keep = to_numpy(addrop_mask(attribution, padding, 0.3, 1.0, seed=0))
        self.assertAllEqual((~keep).sum(-1), 3)
        # The dropped keys are the three highest of each row.
        threshold = np.sort(attribution, -1)[..., -3:-2]
        self.assertAllEqual(~keep, attribution >= threshold)

    def test_p_q_one_keeps_exactly_the_lowest_key_per_row(self):
        rng = np.random.default_rng(1)
        attribution = rng.normal(size=(2, 2, 6, 6)).astype("float32")
        padding = np.array([[1] * 6, [1, 1, 1, 1, 0, 0]], bool)
        keep = to_numpy(addrop_mask(attribution, padding, 1.0, 1.0, seed=0))
        masked = np.where(padding[:, None, None, :], attribution, np.inf)
        real_rows = np.broadcast_to(padding[:, None, :], keep.shape[:3])
        self.assertAllEqual(keep.sum(-1)[real_rows], 1)
        self.assertAllEqual(
            np.argmax(keep, -1)[real_rows], np.argmin(masked, -1)[real_rows]
        )
        # Padding query rows keep all real keys.
        self.assertAllEqual(keep[1, :, 4:].sum(-1), 4)

    def test_ties_are_broken_by_position(self):
        attribution = np.zeros((1, 1, 6, 6), "float32")
        padding = np.ones((1, 6), bool)
        keep = to_numpy(addrop_mask(attribution, padding, 0.5, 1.0, seed=0))
        self.assertAllEqual(keep[0, 0], [[0, 0, 0, 1, 1, 1]] * 6)

    def test_many_ties_give_exactly_k_candidates_earliest_first(self):
        # `torch.topk` returns equal values in any order; a row of 64 keys
        # with a few distinct values has long runs of ties.
        rng = np.random.default_rng(7)
        attribution = rng.integers(0, 3, (4, 2, 64, 64)).astype("float32")
        attribution[:, :, 1:, :] = 0.0  # All-zero rows, as GA's last layer.
        padding = np.arange(64)[None, :] < np.array([[64], [50], [13], [1]])
        for p in (0.1, 0.3, 0.5):
            candidates, last = top_candidates(attribution, padding, p)
            self.assertAllEqual(
                candidates, reference_candidates(attribution, padding, p)
            )
            self.assertAllEqual(to_numpy(last).sum(-1), 1)

    def test_candidate_count_is_exact_on_every_backend(self):
        # float64 is float32 on JAX by default and PyTorch rounds a Python
        # ratio to float32: both put k one too high for some n and p.
        n = np.arange(0, 513, dtype="int32")
        for i in range(101):
            p = i / 100
            got = to_numpy(candidate_count(n, p))
            want = [expected_count(p, m) for m in n]
            self.assertAllEqual(got, want, msg=f"p={p}")

    def test_candidate_count_is_not_rounded_up_by_floating_point(self):
        # 0.7 * 10 is 7.000000000000001 in binary floating point.
        row = np.arange(10, dtype="float32")
        attribution = np.broadcast_to(row, (1, 1, 10, 10))
        padding = np.ones((1, 10), bool)
        candidates, _ = top_candidates(attribution, padding, 0.7)
        self.assertAllEqual(to_numpy(candidates).sum(-1), 7)

    def test_drop_share_of_candidates_is_close_to_q(self):
        rng = np.random.default_rng(2)
        attribution = rng.normal(size=(8, 4, 32, 32)).astype("float32")
        padding = np.arange(32)[None, :] < rng.integers(8, 33, (8, 1))
        for q in (0.1, 0.3, 0.7):
            keep = to_numpy(addrop_mask(attribution, padding, 0.5, q, seed=3))
            candidates = reference_candidates(attribution, padding, 0.5)
            candidates &= padding[:, None, :, None]
            share = (candidates & ~keep).sum() / candidates.sum()
            self.assertAllClose(share, q, atol=0.02)

    def test_seed_generator_draws_fresh_masks(self):
        attribution = np.zeros((1, 1, 16, 16), "float32")
        padding = np.ones((1, 16), bool)
        generator = keras.random.SeedGenerator(0)
        first = to_numpy(addrop_mask(attribution, padding, 1.0, 0.5, generator))
        second = to_numpy(
            addrop_mask(attribution, padding, 1.0, 0.5, generator)
        )
        self.assertFalse(np.array_equal(first, second))

    @pytest.mark.tf_only
    def test_mask_compiles_with_xla(self):
        rng = np.random.default_rng(3)
        attribution = rng.normal(size=(2, 2, 7, 7)).astype("float32")
        padding = np.array([[1] * 7, [1, 1, 1, 0, 0, 0, 0]], bool)

        @tf.function(jit_compile=True)
        def compiled(a, m):
            return addrop_mask(a, m, 0.4, 1.0, seed=5)

        self.assertAllEqual(
            compiled(attribution, padding),
            addrop_mask(attribution, padding, 0.4, 1.0, seed=5),
        )

    @pytest.mark.tf_only
    def test_candidates_agree_in_graphs_with_unknown_length_and_xla(self):
        # The top-k size comes from the static length when there is one
        # (XLA needs it) and from the traced length otherwise.
        rng = np.random.default_rng(4)
        attribution = rng.integers(0, 3, (3, 2, 9, 9)).astype("float32")
        padding = np.arange(9)[None, :] < np.array([[9], [4], [1]])
        reference = reference_candidates(attribution, padding, 0.45)
        spec = (
            tf.TensorSpec((None, 2, None, None), tf.float32),
            tf.TensorSpec((None, None), tf.bool),
        )
        unknown = tf.function(
            lambda a, m: top_candidates(a, m, 0.45)[0], input_signature=spec
        )
        xla = tf.function(
            lambda a, m: top_candidates(a, m, 0.45)[0], jit_compile=True
        )
        self.assertAllEqual(unknown(attribution, padding), reference)
        self.assertAllEqual(xla(attribution, padding), reference)

    def test_non_finite_attribution_still_gives_a_valid_mask(self):
        row = np.array([np.nan, np.inf, -np.inf, 1.0], "float32")
        attribution = np.broadcast_to(row, (1, 1, 4, 4))
        padding = np.ones((1, 4), bool)
        keep = to_numpy(addrop_mask(attribution, padding, 0.25, 1.0, seed=0))
        self.assertAllEqual(keep[0, 0], [[1, 0, 1, 1]] * 4)

    def test_mismatched_shapes_are_rejected(self):
        with self.assertRaisesRegex(ValueError, "Received: attribution.shape"):
            addrop_mask(np.zeros((1, 1, 3, 4)), np.ones((1, 4), bool), 0.3, 0.3)
        with self.assertRaisesRegex(ValueError, "padding_mask.shape"):
            addrop_mask(np.zeros((1, 1, 4, 4)), np.ones((1, 5), bool), 0.3, 0.3)

    @given(st.sampled_from([-0.1, 1.5, float("nan"), "0.3", None, True]))
    def test_bad_ratios_are_rejected(self, value):
        attribution = np.zeros((1, 1, 2, 2), "float32")
        padding = np.ones((1, 2), bool)
        with self.assertRaisesRegex(
            ValueError, f"Received: candidate_ratio={value!r}"
        ):
            addrop_mask(attribution, padding, value, 0.3)
        with self.assertRaisesRegex(ValueError, "Received: drop_rate="):
            addrop_mask(attribution, padding, 0.3, value)


class VisibilityTest(TestCase):
    def test_a_padding_mask_is_self_attention_visibility_bit_for_bit(self):
        rng = np.random.default_rng(5)
        attribution = rng.integers(0, 3, (3, 2, 8, 8)).astype("float32")
        padding = np.arange(8)[None, :] < np.array([[8], [5], [1]])
        for p, q in ((0.3, 1.0), (0.5, 0.5), (1.0, 1.0)):
            self.assertAllEqual(
                addrop_mask(attribution, padding, p, q, seed=3),
                addrop_mask(attribution, Visibility(padding), p, q, seed=3),
            )

    def test_causal_row_zero_keeps_its_only_key(self):
        attribution = np.ones((2, 2, 5, 5), "float32")
        padding = np.array([[1] * 5, [1, 1, 1, 0, 0]], bool)
        causal = Visibility(padding, causal=True)
        keep = to_numpy(addrop_mask(attribution, causal, 1.0, 1.0, seed=0))
        self.assertAllEqual(keep[:, :, 0], [[[1, 0, 0, 0, 0]] * 2] * 2)
        # Every real row keeps exactly one of its visible keys.
        self.assertAllEqual(keep[0].sum(-1), 1)
        self.assertAllEqual(keep[1, :, :3].sum(-1), 1)

    def test_causal_future_keys_are_never_candidates(self):
        rng = np.random.default_rng(6)
        attribution = rng.normal(size=(2, 3, 7, 7)).astype("float32")
        # The future gets the highest attribution: a rule that looked at
        # it would pick it first.
        attribution += 100.0 * np.triu(np.ones((7, 7)), 1)
        padding = np.array([[1] * 7, [1] * 4 + [0] * 3], bool)
        causal = Visibility(padding, causal=True)
        for p in (0.3, 0.5, 1.0):
            candidates, _ = top_candidates(attribution, causal, p)
            candidates = to_numpy(candidates)
            future = np.triu(np.ones((7, 7), bool), 1)
            self.assertFalse(np.any(candidates & future))
            # Row t of a real query sees min(t + 1, n) keys.
            for b, n in enumerate(padding.sum(-1)):
                for t in range(n):
                    seen = min(t + 1, n)
                    self.assertAllEqual(
                        candidates[b, :, t].sum(-1), expected_count(p, seen)
                    )
            keep = to_numpy(addrop_mask(attribution, causal, p, 1.0, seed=1))
            self.assertFalse(np.any(keep & future))

    def test_cross_attention_ranks_source_keys_for_target_queries(self):
        rng = np.random.default_rng(7)
        attribution = rng.normal(size=(2, 2, 3, 6)).astype("float32")
        target = np.array([[1, 1, 1], [1, 1, 0]], bool)
        source = np.array([[1] * 6, [1, 1, 1, 1, 0, 0]], bool)
        cross = Visibility(target, key_mask=source)
        candidates, _ = top_candidates(attribution, cross, 0.5)
        candidates = to_numpy(candidates)
        self.assertAllEqual(candidates[0].sum(-1), 3)
        self.assertAllEqual(candidates[1].sum(-1), 2)
        self.assertFalse(np.any(candidates[1, ..., 4:]))
        keep = to_numpy(addrop_mask(attribution, cross, 0.5, 1.0, seed=0))
        self.assertEqual(keep.shape, (2, 2, 3, 6))
        # The padded target row loses nothing: it keeps the real sources.
        self.assertAllEqual(keep[1, :, 2], [[1, 1, 1, 1, 0, 0]] * 2)
        self.assertAllEqual((~keep[0]).sum(-1), 3)

    def test_pair_counts_count_visible_pairs_only(self):
        padding = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
        self.assertEqual(float(to_numpy(Visibility(padding).count())), 20.0)
        causal = Visibility(padding, causal=True)
        self.assertEqual(float(to_numpy(causal.count())), 10.0 + 3.0)
        source = np.array([[1, 1, 1], [1, 0, 0]], bool)
        cross = Visibility(padding, key_mask=source)
        self.assertEqual(float(to_numpy(cross.count())), 4 * 3 + 2 * 1)

    def test_cross_attention_shapes_are_checked(self):
        target = np.ones((1, 3), bool)
        source = np.ones((1, 5), bool)
        with self.assertRaisesRegex(ValueError, "key_mask.shape=\\(1, 5\\)"):
            addrop_mask(
                np.zeros((1, 1, 3, 4)),
                Visibility(target, key_mask=source),
                0.3,
                0.3,
            )
