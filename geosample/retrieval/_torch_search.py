"""Exact top-k in both directions with torch (CUDA, or CPU for tests): blocked matmul plus ``topk``.

``torch.topk`` picks arbitrarily among equal values, so each selection is
checked: where more values than ``k`` reach the k-th value, those rows are
re-ranked with a stable sort, which keeps equal values in index order.

Rows (the larger side, in blocks) are complete in their block: ``topk`` along
the block's rows. Columns (the smaller side) keep a running top ``k`` across
blocks. ``topk`` down a column reads the block with a stride, which on the
CPU costs more than the matmul, so a block instead adds to each column only
its elements above the column's running k-th best score θ (ties go to the
earlier rows, already kept): the maxima of groups of ``g`` consecutive rows
(one contiguous reduction) show the few groups that can hold one, only their
elements are compared with θ, and the survivors are merged with the running
top ``k`` by one stable sort. The first block (θ = −∞) is small and blocks
double in size, so each adds about ``k`` elements per column; a block where
far more than that pass θ (scores rising along the rows) takes ``topk`` down
its columns instead, so memory stays bounded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FLOAT_BYTES = 4
FIRST_BLOCK = 64  # rows of the first block, whose every element is a column candidate
GROUP = 16  # rows per group g of the column direction
ENTRY_BYTES = 64  # a column candidate (row, column, score) and its share of the merge's sort


def search_both(
    a: np.ndarray, b: np.ndarray, k: int, *, device: str, precision: str, memory_cap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` of ``a·bᵀ`` per row and per column (indices, scores), best first, ties by index."""
    import torch

    from geosample.retrieval._numpy_search import Layout

    dtype = _dtype(precision, device)
    n, d = a.shape
    m = b.shape[0]
    k_row, k_col = min(k, m), min(k, n)
    layout = Layout.for_items(m, k_row)
    width = layout.width
    with torch.no_grad():
        a_dev = torch.from_numpy(a).to(device=device, dtype=dtype)
        # B permuted as the numpy search lays it out: each tile of w consecutive items is a strided slice.
        b_dev = torch.zeros((width, d), dtype=dtype, device=device)
        b_dev[torch.from_numpy(layout.column(np.arange(m))).to(device)] = torch.from_numpy(b).to(device, dtype)
        padding = torch.from_numpy(layout.padding).to(device)
        # Scores in float32; the block, its comparison mask and topk's outputs.
        rows = int(max(1, min(n, memory_cap // (width * FLOAT_BYTES * 3))))
        most_entries = max(4 * k_col * width, memory_cap // ENTRY_BYTES)
        row_idx = torch.empty((n, k_row), dtype=torch.int64, device=device)
        row_val = torch.empty((n, k_row), dtype=torch.float32, device=device)
        col_val = torch.full((width, k_col), -torch.inf, dtype=torch.float32, device=device)
        col_idx = torch.full((width, k_col), -1, dtype=torch.int64, device=device)
        # fp32 scores go into one buffer, reused: a fresh block per matmul would be page-faulted in anew.
        buffer = torch.empty((rows, width), dtype=torch.float32, device=device) if dtype == torch.float32 else None
        start, size = 0, min(rows, max(FIRST_BLOCK, k_col))
        while start < n:
            stop = min(start + size, n)
            if buffer is not None:
                block = torch.mm(a_dev[start:stop], b_dev.T, out=buffer[: stop - start])
            else:
                block = _matmul(a_dev[start:stop], b_dev)
            if padding.numel():
                block.index_fill_(1, padding, -torch.inf)
            row_val[start:stop], row_idx[start:stop] = _row_topk(block, layout, k_row)
            entries = _above(block, col_val[:, -1], most_entries)  # θ: each column's running k-th best
            if entries is None:  # far too many: the k best of each column of this block instead
                val, idx = exact_topk(block, min(k_col, stop - start), dim=0)
                entries = (idx.flatten(), torch.arange(width, device=device).repeat(val.shape[0]), val.flatten())
            col_val, col_idx = _merge_columns(col_val, col_idx, entries[0] + start, entries[1], entries[2])
            start, size = stop, min(2 * size, rows)
        items = torch.from_numpy(layout.column(np.arange(m))).to(device)
        col_val, col_idx = col_val[items], col_idx[items]
        return row_idx.cpu().numpy(), row_val.cpu().numpy(), col_idx.cpu().numpy(), col_val.cpu().numpy()


def _row_topk(block: Any, layout: Any, k: int) -> tuple[Any, Any]:
    """The top ``k`` of each row of a block laid out by ``layout`` (scores, item indices), ties by index.

    The k best tiles (ties to the lower tile) hold a row's top k: each chosen tile's best element ranks
    before anything in an unchosen tile. Their k·w elements, in item order, are then ranked exactly.
    """
    import torch

    r = block.shape[0]
    t, w = layout.tiles, layout.w
    tile_max = block.view(r, w, t).amax(dim=1)
    best = torch.sort(exact_topk(tile_max, min(k, t), dim=1)[1], dim=1).values
    offsets = torch.arange(w, device=block.device)
    items = (best[:, :, None] * w + offsets).reshape(r, -1)
    values = block.gather(1, (offsets * t + best[:, :, None]).reshape(r, -1))
    val, pick = exact_topk(values, k, dim=1)
    return val, items.gather(1, pick)


def _above(block: Any, theta: Any, most: int) -> tuple[Any, Any, Any] | None:
    """(row, column, score) of the block's elements above their column's θ, in row order; None if over ``most``.

    Whole groups of :data:`GROUP` rows are ruled out by their maximum; the rows past the last whole group
    are compared directly.
    """
    import torch

    r, m = block.shape
    whole = r // GROUP * GROUP
    parts = []
    if whole:
        group_max = block[:whole].view(-1, GROUP, m).amax(dim=1)
        open_ = group_max > theta
        if int(torch.count_nonzero(open_)) * GROUP > most:
            return None
        pairs = open_.nonzero()
        rows = pairs[:, :1] * GROUP + torch.arange(GROUP, device=block.device)
        cols = pairs[:, 1:].expand(-1, GROUP)
        values = block.view(-1).take(rows * m + cols)
        keep = values > theta.take(cols)
        parts.append((rows[keep], cols[keep], values[keep]))
    if whole < r:
        tail = block[whole:] > theta
        if int(torch.count_nonzero(tail)) > most:
            return None
        where = tail.nonzero()
        parts.append((where[:, 0] + whole, where[:, 1], block[whole:][tail]))
    return tuple(torch.cat(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def _merge_columns(col_val: Any, col_idx: Any, rows: Any, cols: Any, vals: Any) -> tuple[Any, Any]:
    """The running top k of each column (m, k), best first, merged with new elements of later rows.

    The new elements come in row order within each column, all on rows after the running ones: a
    stable sort by (column, score descending) of the running entries followed by the new ones breaks
    every tie by row. Each column then starts at the sum of the sizes of the columns before it.
    """
    import torch

    if not cols.numel():
        return col_val, col_idx
    m, k = col_val.shape
    all_cols = torch.cat([torch.arange(m, device=cols.device).repeat_interleave(k), cols])
    all_vals = torch.cat([col_val.flatten(), vals.float()])
    all_rows = torch.cat([col_idx.flatten(), rows])
    order = torch.sort((all_cols << 32) | descending_key(all_vals), stable=True).indices
    sizes = torch.bincount(cols, minlength=m) + k
    keep = order[(torch.cumsum(sizes, 0) - sizes)[:, None] + torch.arange(k, device=cols.device)]
    return all_vals[keep], all_rows[keep]


def descending_key(values: Any) -> Any:
    """int64 keys in [0, 2³²) that sort float32 ``values`` in descending order (-inf last)."""
    import torch

    bits = (values.float() + 0.0).view(torch.int32).to(torch.int64) & 0xFFFFFFFF  # -0.0 → 0.0; the raw bits
    ascending = torch.where(bits >= 1 << 31, (~bits) & 0xFFFFFFFF, bits | (1 << 31))
    return 0xFFFFFFFF - ascending


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
    lines = val.shape[1 - dim]
    boundary = torch.zeros(lines, dtype=torch.bool, device=scores.device)
    if extra > k:
        boundary = val.narrow(dim, k, 1).squeeze(dim) == val.narrow(dim, k - 1, 1).squeeze(dim)
        val, idx = val.narrow(dim, 0, k), idx.narrow(dim, 0, k)
    # topk's order of equal values is arbitrary: order the chosen k of the lines that hold some by
    # (score desc, index asc) — sort by index, then stably by score. Other lines are already in order.
    inner = torch.zeros_like(boundary)
    if k > 1:
        inner = (val.narrow(dim, 1, k - 1) == val.narrow(dim, 0, k - 1)).any(dim) & ~boundary
    reorder = inner.nonzero().flatten()
    if reorder.numel():
        sub_idx, by_index = torch.sort(idx.index_select(1 - dim, reorder), dim=dim)
        sub_val = val.index_select(1 - dim, reorder).gather(dim, by_index)
        by_score = torch.sort(sub_val, dim=dim, descending=True, stable=True).indices
        val = val.index_copy(1 - dim, reorder, sub_val.gather(dim, by_score))
        idx = idx.index_copy(1 - dim, reorder, sub_idx.gather(dim, by_score))
    tied = boundary.nonzero().flatten()  # the k-th value continues past the k chosen: re-rank the whole line
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
