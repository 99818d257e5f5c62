"""The chunked exact search against a full-matrix stable sort, with planted ties, on the numpy path."""

from __future__ import annotations

import importlib.util
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from retrieval.reference import topk_both

from geosample.errors import ConfigError
from geosample.retrieval import _numpy_search
from geosample.retrieval.search import resolve_device, search


def small_int_vectors(rng: np.random.Generator, n: int, d: int, high: int) -> np.ndarray:
    """Integer entries: every dot product is exact in float32, so ties are real ties whatever the BLAS order."""
    return rng.integers(-high, high + 1, size=(n, d)).astype(np.float32)


@settings(max_examples=120, deadline=None)
@given(
    n=st.integers(1, 70),
    m=st.integers(1, 90),
    d=st.integers(1, 4),
    k=st.integers(1, 14),
    high=st.sampled_from([1, 2, 6]),
    slack=st.sampled_from([1.0, 1.05, 1.5, 4.0, 1e6]),
    seed=st.integers(0, 2**31),
)
def test_equals_full_stable_sort_with_ties(n: int, m: int, d: int, k: int, high: int, slack: float, seed: int) -> None:
    """Memory caps from the smallest that works (blocks of a few rows, fewer than k) to unlimited."""
    rng = np.random.default_rng(seed)
    images, texts = small_int_vectors(rng, n, d, high), small_int_vectors(rng, m, d, high)
    big, small = max(n, m), min(n, m)
    cap = int(_numpy_search.minimum_cap(big, small, min(k, big), d, 2) * slack)
    result = search(images, texts, k, device="cpu", memory_cap=cap)
    i2t, t2i = topk_both(images, texts, k)
    np.testing.assert_array_equal(result.image_to_text, i2t)
    np.testing.assert_array_equal(result.text_to_image, t2i)
    scores = images @ texts.T
    np.testing.assert_array_equal(result.image_to_text_scores, np.take_along_axis(scores, i2t, 1))
    np.testing.assert_array_equal(result.text_to_image_scores, np.take_along_axis(scores.T, t2i, 1))
    assert result.device == "cpu"


@pytest.mark.parametrize(("n", "m"), [(500, 6000), (6000, 500)])
def test_many_blocks_tiles_and_groups(n: int, m: int) -> None:
    """Sizes where tiles, row groups, the first block and several chunks per worker are in play (both orientations)."""
    rng = np.random.default_rng(7)
    images, texts = small_int_vectors(rng, n, 12, 5), small_int_vectors(rng, m, 12, 5)
    texts[100:140] = texts[3]  # planted duplicates: many exact ties at the top of some rankings
    images[50:60] = images[7]
    cap = 20 * 1024**2
    big, small = max(n, m), min(n, m)
    layout = _numpy_search.Layout.for_items(small, 10)
    plan = _numpy_search.Plan.fit(big, layout, 10, 12, cap, 2)
    assert plan is not None and layout.w > 1 and plan.group > 1
    assert big - plan.first_rows(big, plan.chunk_rows(2)) > 4 * plan.chunk_rows(2)
    result = search(images, texts, 10, device="cpu", memory_cap=cap)
    i2t, t2i = topk_both(images, texts, 10)
    np.testing.assert_array_equal(result.image_to_text, i2t)
    np.testing.assert_array_equal(result.text_to_image, t2i)


@pytest.mark.parametrize("threads", [1, 3])
def test_chunks_on_any_number_of_workers(threads: int) -> None:
    """Chunks run in turn on one worker, or side by side on three (finishing out of order): the same rankings."""
    rng = np.random.default_rng(11)
    a, b = small_int_vectors(rng, 3000, 12, 5), small_int_vectors(rng, 400, 12, 5)
    a[1500:1600] = a[5]  # duplicates of an early row in later chunks: its columns' ties go to row 5 first
    plan = _numpy_search.Plan.fit(3000, _numpy_search.Layout.for_items(400, 10), 10, 12, 16 * 2**20, threads)
    assert plan is not None and 3000 - plan.first_rows(3000, plan.chunk_rows(threads)) > 10 * plan.chunk_rows(threads)
    row_idx, row_val, col_idx, col_val = _numpy_search.search_both(a, b, 10, memory_cap=16 * 2**20, threads=threads)
    rows_want, cols_want = topk_both(a, b, 10)
    np.testing.assert_array_equal(row_idx, rows_want)
    np.testing.assert_array_equal(col_idx, cols_want)
    scores = a @ b.T
    np.testing.assert_array_equal(row_val, np.take_along_axis(scores, rows_want, 1))
    np.testing.assert_array_equal(col_val, np.take_along_axis(scores.T, cols_want, 1))


def test_all_scores_equal_ranks_by_index() -> None:
    images = np.ones((30, 3), dtype=np.float32)
    texts = np.ones((50, 3), dtype=np.float32)
    result = search(images, texts, 5, device="cpu")
    np.testing.assert_array_equal(result.image_to_text, np.tile(np.arange(5), (30, 1)))
    np.testing.assert_array_equal(result.text_to_image, np.tile(np.arange(5), (50, 1)))


def test_k_larger_than_either_side_is_clipped() -> None:
    rng = np.random.default_rng(1)
    images, texts = small_int_vectors(rng, 3, 2, 3), small_int_vectors(rng, 4, 2, 3)
    result = search(images, texts, 10, device="cpu")
    assert result.image_to_text.shape == (3, 4) and result.text_to_image.shape == (4, 3)
    i2t, t2i = topk_both(images, texts, 10)
    np.testing.assert_array_equal(result.image_to_text, i2t)
    np.testing.assert_array_equal(result.text_to_image, t2i)


def test_select_topk_keeps_leftmost_ties() -> None:
    values = np.array([[1, 3, 3, 2, 3], [5, 5, 5, 5, 5], [0, 9, 1, 9, 9]], dtype=np.float32)
    np.testing.assert_array_equal(_numpy_search.select_topk(values, 2), [[1, 2], [0, 1], [1, 3]])


def test_memory_cap_too_small_is_a_clear_error() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match=r"--memory-cap is too small for 100×5000 \(one block needs"):
        search(rng.normal(size=(100, 64)), rng.normal(size=(5000, 64)), 10, device="cpu", memory_cap=100_000)


def test_mismatched_or_empty_inputs() -> None:
    with pytest.raises(ConfigError, match="one width"):
        search(np.ones((2, 3)), np.ones((2, 4)), 1, device="cpu")
    with pytest.raises(ConfigError, match="nothing to search"):
        search(np.ones((0, 3)), np.ones((2, 3)), 1, device="cpu")


def test_cpu_device_needs_nothing_and_cuda_is_checked() -> None:
    assert resolve_device("cpu") == "cpu"
    if importlib.util.find_spec("torch") is None:
        assert resolve_device("auto") == "cpu"
        with pytest.raises(ConfigError, match="needs torch"):
            resolve_device("cuda")
        return
    import torch

    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        with pytest.raises(ConfigError, match="sees no CUDA GPU"):
            resolve_device("cuda:0")


def test_fp16_is_refused_on_cpu() -> None:
    with pytest.raises(ConfigError, match="CPU path computes in fp32"):
        search(np.ones((2, 3)), np.ones((2, 3)), 1, device="cpu", precision="fp16")


@pytest.mark.parametrize("cap_mb", [24, 64])
def test_working_memory_stays_under_the_cap(cap_mb: int) -> None:
    """The 4000 × 20000 matrix (320 MB) is never held: numpy's allocations during the search peak under the cap."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((4000, 48), dtype=np.float32)
    texts = rng.standard_normal((20000, 48), dtype=np.float32)
    tracemalloc.start()
    try:
        search(images, texts, 10, device="cpu", memory_cap=cap_mb * 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 0.3 * cap_mb * 2**20 < peak <= cap_mb * 2**20


@settings(max_examples=60, deadline=None)
@given(
    columns=st.integers(1, 6),
    k=st.integers(1, 5),
    new=st.integers(0, 30),
    high=st.sampled_from([1, 3, 50]),
    seed=st.integers(0, 2**31),
)
def test_merge_keeps_the_best_k_ties_to_earlier_rows(columns: int, k: int, new: int, high: int, seed: int) -> None:
    """One chunk's entries merged into the running top k equal a stable sort of both (score descending, row)."""
    rng = np.random.default_rng(seed)
    # Running top k: distinct earlier rows per column, equal scores in row order (as the search keeps them).
    run_idx = np.sort(np.stack([rng.choice(100, size=k, replace=False) for _ in range(columns)]), axis=1)
    run_val = rng.integers(0, high + 1, size=(columns, k)).astype(np.float32)
    out = _numpy_search._Results(None, None, run_idx.copy(), run_val.copy())  # type: ignore[arg-type]
    rows = np.sort(rng.choice(np.arange(100, 400), size=new, replace=False))  # the chunk's later rows, ascending
    cols = rng.integers(0, columns, size=new)
    vals = rng.integers(0, high + 1, size=new).astype(np.float32)
    _numpy_search._merge_columns(out, *_numpy_search._best_per_column(rows, cols, vals, k))
    for c in range(columns):
        pairs = [
            *zip(run_val[c].tolist(), run_idx[c].tolist(), strict=True),
            *zip(vals[cols == c].tolist(), rows[cols == c].tolist(), strict=True),
        ]
        want = sorted(pairs, key=lambda p: (-p[0], p[1]))[:k]
        got = list(zip(out.col_val[c].tolist(), out.col_idx[c].tolist(), strict=True))
        assert sorted(got, key=lambda p: (-p[0], p[1])) == want
        for value in set(out.col_val[c].tolist()):  # equal scores stay in row order for the next merge
            tied = out.col_idx[c][out.col_val[c] == value]
            assert np.all(np.diff(tied) > 0)


def test_every_gemm_runs_on_one_blas_thread_beside_two_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first block's GEMMs too: none leaves BLAS threads spinning beside the workers' ranking."""
    from threadpoolctl import threadpool_info, threadpool_limits

    seen: list[int] = []
    compute = _numpy_search._Search.compute

    def spy(self: _numpy_search._Search, start: int, stop: int, out: np.ndarray) -> None:
        seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        compute(self, start, stop, out)

    monkeypatch.setattr(_numpy_search._Search, "compute", spy)
    rng = np.random.default_rng(3)
    a, b = small_int_vectors(rng, 3000, 12, 5), small_int_vectors(rng, 400, 12, 5)
    with threadpool_limits(limits=2, user_api="blas"):
        row_idx, _, col_idx, _ = _numpy_search.search_both(a, b, 10, memory_cap=16 * 2**20, threads=2)
    assert seen and set(seen) == {1}
    rows_want, cols_want = topk_both(a, b, 10)
    np.testing.assert_array_equal(row_idx, rows_want)
    np.testing.assert_array_equal(col_idx, cols_want)
