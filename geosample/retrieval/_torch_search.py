"""Exact top-k in both directions with torch (CUDA, or CPU for tests): blocked matmul plus ``topk``.

``torch.topk`` picks arbitrarily among equal values, so each selection is
checked: where more values than ``k`` reach the k-th value, those rows are
re-ranked with a stable sort, which keeps equal values in index order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FLOAT_BYTES = 4


def search_both(
    a: np.ndarray, b: np.ndarray, k: int, *, device: str, precision: str, memory_cap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` of ``a·bᵀ`` per row and per column (indices, scores), best first, ties by index."""
    import torch

    dtype = _dtype(precision, device)
    n, d = a.shape
    m = b.shape[0]
    k_row, k_col = min(k, m), min(k, n)
    with torch.no_grad():
        a_dev = torch.from_numpy(a).to(device=device, dtype=dtype)
        b_dev = torch.from_numpy(b).to(device=device, dtype=dtype)
        # Scores in float32; the block, its comparison mask and topk's outputs.
        rows = int(max(1, min(n, memory_cap // (m * FLOAT_BYTES * 3))))
        row_idx = torch.empty((n, k_row), dtype=torch.int64, device=device)
        row_val = torch.empty((n, k_row), dtype=torch.float32, device=device)
        col_val = torch.full((k_col, m), -torch.inf, dtype=torch.float32, device=device)
        col_idx = torch.full((k_col, m), -1, dtype=torch.int64, device=device)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            block = _matmul(a_dev[start:stop], b_dev)
            row_val[start:stop], row_idx[start:stop] = exact_topk(block, k_row, dim=1)
            val, idx = exact_topk(block, min(k_col, stop - start), dim=0)
            merged_val = torch.cat([col_val, val])
            merged_idx = torch.cat([col_idx, idx + start])
            # Earlier rows first and each part in rank order: a stable sort keeps ties by index.
            order = torch.sort(merged_val, dim=0, descending=True, stable=True).indices[:k_col]
            col_val = merged_val.gather(0, order)
            col_idx = merged_idx.gather(0, order)
            del block
        return (
            row_idx.cpu().numpy(),
            row_val.cpu().numpy(),
            col_idx.T.contiguous().cpu().numpy(),
            col_val.T.contiguous().cpu().numpy(),
        )


def exact_topk(scores: Any, k: int, dim: int) -> tuple[Any, Any]:
    """``torch.topk`` along ``dim`` with ties broken by index (lower first), best first.

    topk picks arbitrarily among values equal to the k-th, so it is asked for
    one more: only where the (k+1)-th value equals the k-th can the choice be
    wrong, and only those lines are re-ranked by a stable sort. (Counting the
    values that reach the k-th, ``(scores >= kth).sum(dim)``, would read the
    whole block twice more and cost more than the matmul on the CPU.)
    """
    import torch

    size = scores.shape[dim]
    extra = min(k + 1, size)
    val, idx = torch.topk(scores, extra, dim=dim, largest=True, sorted=True)
    if extra > k:
        tied = torch.nonzero(val.narrow(dim, k, 1).squeeze(dim) == val.narrow(dim, k - 1, 1).squeeze(dim)).flatten()
        val, idx = val.narrow(dim, 0, k), idx.narrow(dim, 0, k)
    else:
        tied = torch.empty(0, dtype=torch.int64, device=scores.device)
    # Order the chosen k by (score desc, index asc): sort by index, then stably by score.
    idx, by_index = torch.sort(idx, dim=dim)
    val = val.gather(dim, by_index)
    by_score = torch.sort(val, dim=dim, descending=True, stable=True).indices
    val, idx = val.gather(dim, by_score), idx.gather(dim, by_score)
    if tied.numel():
        lines = scores.index_select(1 - dim, tied)
        fixed_val, fixed_idx = torch.sort(lines, dim=dim, descending=True, stable=True)
        val = val.index_copy(1 - dim, tied, fixed_val.narrow(dim, 0, k).contiguous())
        idx = idx.index_copy(1 - dim, tied, fixed_idx.narrow(dim, 0, k).contiguous())
    return val, idx


def _dtype(precision: str, device: str) -> Any:
    import torch

    on_gpu = device.startswith("cuda")
    if precision == "auto":
        return torch.float16 if on_gpu else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _matmul(a: Any, b: Any) -> Any:
    """Float32 scores of ``a·bᵀ``; half-precision inputs accumulate and return in float32 where torch can."""
    import torch

    if a.dtype == torch.float32:
        return a @ b.T
    try:
        return torch.mm(a, b.T, out_dtype=torch.float32)
    except (RuntimeError, TypeError, NotImplementedError):
        return (a @ b.T).float()
