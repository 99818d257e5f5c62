"""The torch search kernel (run on the CPU here; CUDA uses the same code) against the full stable sort."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from retrieval.reference import topk_both

torch = pytest.importorskip("torch")

from geosample.retrieval import _torch_search  # noqa: E402


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 60),
    m=st.integers(1, 80),
    d=st.integers(1, 4),
    k=st.integers(1, 12),
    cap=st.sampled_from([2_000, 50_000, 10**9]),
    seed=st.integers(0, 2**31),
)
def test_equals_full_stable_sort_with_ties(n: int, m: int, d: int, k: int, cap: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
    b = rng.integers(-2, 3, size=(m, d)).astype(np.float32)
    row_idx, row_val, col_idx, col_val = _torch_search.search_both(
        a, b, k, device="cpu", precision="fp32", memory_cap=cap
    )
    i2t, t2i = topk_both(a, b, k)
    np.testing.assert_array_equal(row_idx, i2t)
    np.testing.assert_array_equal(col_idx, t2i)
    scores = a @ b.T
    np.testing.assert_array_equal(row_val, np.take_along_axis(scores, i2t, 1))
    np.testing.assert_array_equal(col_val, np.take_along_axis(scores.T, t2i, 1))


def test_exact_topk_fixes_ties_along_both_dims() -> None:
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0, 5.0]])
    val, idx = _torch_search.exact_topk(scores, 2, dim=1)
    assert idx.tolist() == [[1, 2], [0, 1]] and val.tolist() == [[3.0, 3.0], [5.0, 5.0]]
    val, idx = _torch_search.exact_topk(scores.T.contiguous(), 2, dim=0)
    assert idx.T.tolist() == [[1, 2], [0, 1]]


def test_half_precision_ranks_the_half_precision_scores_exactly() -> None:
    """fp16/bf16 inputs: identical to a stable sort of the same reduced-precision scores."""
    rng = np.random.default_rng(4)
    a = rng.integers(-3, 4, size=(40, 6)).astype(np.float32)
    b = rng.integers(-3, 4, size=(70, 6)).astype(np.float32)
    row_idx, _, col_idx, _ = _torch_search.search_both(a, b, 7, device="cpu", precision="bf16", memory_cap=10**8)
    i2t, t2i = topk_both(a, b, 7)  # small integers are exact in bf16 too
    np.testing.assert_array_equal(row_idx, i2t)
    np.testing.assert_array_equal(col_idx, t2i)
