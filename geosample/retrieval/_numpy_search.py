"""Exact top-k in both directions on the CPU with numpy: one float32 GEMM pass, pruned by tile maxima.

The similarity matrix ``S = A·Bᵀ`` is computed in chunks of rows of ``A``
(the larger side); every chunk holds all of ``B``. Each chunk serves both
directions before its buffer is reused:

* rows (complete in the chunk): ``B`` is stored permuted so that a
  *contiguous* tile of ``w`` item indices lies at ``w`` columns ``T`` apart.
  A row viewed as (w, T) then gives the tile maxima as one reduction over
  its first axis (contiguous SIMD passes, not a reduction over a short
  axis). The ``k`` best tiles of a row, ties to the lower tile, hold the
  row's top ``k``: each chosen tile's best element ranks before anything in
  an unchosen tile. Only their ``k·w`` elements are then ranked exactly.
* columns (spread over chunks): in the first block, the same with groups of
  ``g`` consecutive rows (element-wise maxima of rows). Later chunks only add
  elements above a column's running k-th best score θ (ties go to the
  earlier, lower rows): a row can hold one only in a tile whose maximum —
  already known from the row direction — reaches the smallest θ of the
  tile's columns. Those few (row, tile) pairs are read, cut to the chunk's
  best k per column, and merged with the running top ``k`` in row order.

The GEMMs run in the worker threads side by side, each on one BLAS thread (a
GEMM on every BLAS thread would leave BLAS's own threads spinning, waiting for
more work, beside the ranking that follows it). After the first block (its
chunks' GEMMs, then its rows and column groups in tasks), each worker computes
its own chunk and ranks it at once, while the main thread merges finished
chunks into the columns: no core waits for a phase to end. Every GEMM call has
the same shape, so no score depends on where a chunk ends.

Every selection breaks ties by index, so the result equals a full stable sort
of the same scores by (score descending, index ascending). numpy and BLAS
release the GIL in these loops, so the work runs on all cores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import numpy as np

FLOAT_BYTES = 4
ROW_TASK = 256  # rows per row-direction task
COL_TASK = 512  # columns per column-direction task (first block)
MAX_TILE = 32  # tile width w of the row direction
MAX_GROUP = 16  # row group g of the column direction
BLOCK_ELEMENTS = 1 << 27  # a 512 MB block at most: large GEMM calls, few of them
FIRST_BLOCK_DIVISOR = 4  # the first block has about a quarter of the buffer's rows
SLACK_BYTES = 4 << 20  # allocator and thread-pool overhead
CANDIDATE_ELEMENTS = 1 << 16  # elements read at a time by a later block's column update
CHUNK_ROWS = 2048  # rows per worker GEMM after the first block: enough for one BLAS thread at full speed


def select_topk(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest values of each row, ties to the left, in left-to-right order.

    ``values`` holds candidates laid out so that, among equal values, left means
    a lower item index; the result then picks exactly what a stable sort by
    (value descending, index ascending) would, though not in that order.
    """
    rows, cols = values.shape
    if k >= cols:
        return np.broadcast_to(np.arange(cols), (rows, cols))
    theta = np.partition(values, cols - k, axis=1)[:, cols - k, None]
    take = values >= theta
    flat = np.flatnonzero(take)
    if flat.size > rows * k:  # ties at the k-th value (every row has k or more): keep the leftmost of them
        over = np.flatnonzero(np.count_nonzero(take, axis=1) > k)
        sub = values[over]
        greater = sub > theta[over]
        equal = sub == theta[over]
        room = k - np.count_nonzero(greater, axis=1)
        take[over] = greater | (equal & (np.cumsum(equal, axis=1) <= room[:, None]))
        flat = np.flatnonzero(take)
    return flat.reshape(rows, k) - (np.arange(rows) * cols)[:, None]


def descending_key(values: np.ndarray) -> np.ndarray:
    """Unsigned 32-bit keys that sort float32 ``values`` in descending order (-inf last)."""
    bits = (values.astype(np.float32) + np.float32(0.0)).view(np.uint32).astype(np.int64)  # -0.0 → 0.0
    ascending = np.where(bits >= 1 << 31, (~bits) & 0xFFFFFFFF, bits | (1 << 31))
    return 0xFFFFFFFF - ascending


def order_best_first(values: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row's (value, index) pairs by value descending, then index ascending."""
    order = np.lexsort((index, -values), axis=-1)
    return np.take_along_axis(values, order, 1), np.take_along_axis(index, order, 1)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each item of ``B`` sits in the padded, permuted block, so that its tiles are strided slices."""

    m: int
    """Number of items."""
    w: int
    """Tile width: item ``j`` is in tile ``j // w``."""
    tiles: int
    """Number of tiles T; a block row is ``T·w`` wide."""

    @classmethod
    def for_items(cls, m: int, k: int) -> Layout:
        """Tiles of width about √(m/4k): few candidate elements, and far more tiles than ``k``."""
        w = int(np.clip(math.isqrt(max(m // (4 * k), 1)), 1, MAX_TILE))
        return cls(m, w, -(-m // w))

    @property
    def width(self) -> int:
        """Padded width ``T·w`` of a block row."""
        return self.tiles * self.w

    def column(self, index: np.ndarray) -> np.ndarray:
        """Block column that holds item ``index``."""
        return (index % self.w) * self.tiles + index // self.w

    @property
    def padding(self) -> np.ndarray:
        """Block columns that hold no item (set to -inf)."""
        return self.column(np.arange(self.m, self.width))


@dataclasses.dataclass(frozen=True)
class Plan:
    """Block rows and row-group size for one search."""

    rows: int
    """Rows of the larger side per block at most (a multiple of ``group``)."""
    group: int
    """Rows per group g of the column direction."""

    def chunk_rows(self, workers: int) -> int:
        """Rows per GEMM call, and per chunk after the first block.

        Every worker's chunk fits the buffer; at most :data:`CHUNK_ROWS`; and at most half the first
        block, so that the θ a chunk starts from (merged up to a chunk or two before it) is nearly the
        latest one and lets few more elements through.
        """
        return max(1, min(CHUNK_ROWS, self.rows // workers, self.rows // FIRST_BLOCK_DIVISOR // 2))

    def first_rows(self, n: int, chunk: int) -> int:
        """Rows of the first block (a whole number of chunks, at most ``n``), ranked in both directions.

        Its columns are ranked by the group method, which seeds every column's running top k; each
        later chunk adds only its elements above the running k-th best θ. The group method costs more
        per row than that, so the first block is a small part of the buffer.
        """
        return min(n, max(chunk, self.rows // FIRST_BLOCK_DIVISOR // chunk * chunk))

    @classmethod
    def fit(cls, n: int, layout: Layout, k: int, d: int, memory_cap: int, threads: int) -> Plan | None:
        """The largest block (up to :data:`BLOCK_ELEMENTS`) that fits the cap, or None if none does."""
        width = layout.width
        # The permuted copy of B, the running and final top k of both sides (with their sort), and slack.
        fixed = width * d * FLOAT_BYTES + width * k * 48 + n * k * 12 + SLACK_BYTES
        # A chunk's rows, and the column candidates of two chunks (one running, one waiting to be merged).
        per_task = max(
            min(ROW_TASK, n) * (layout.tiles * 4 + k * layout.w * 40) + CANDIDATE_ELEMENTS * 40 + 2 * k * width * 20,
            min(COL_TASK, width) * k * min(MAX_GROUP, n) * 40,
        )
        # A block row: its scores, its tile maxima, and its share of the first block's group maxima.
        per_row = (width + layout.tiles) * FLOAT_BYTES + COL_TASK * 8
        budget = memory_cap - fixed - threads * per_task
        rows = min(int(budget // per_row), n, max(BLOCK_ELEMENTS // width, 64))
        # Only the first block (a fraction of the largest) is ranked by row groups; size them for it.
        group = int(np.clip(math.isqrt(max(rows // FIRST_BLOCK_DIVISOR // (2 * k), 1)), 1, MAX_GROUP))
        if rows < group:
            return None
        return cls(rows // group * group, group)


def minimum_cap(n: int, m: int, k: int, d: int, threads: int) -> int:
    """The smallest memory cap for which :meth:`Plan.fit` finds a block."""
    layout = Layout.for_items(m, k)
    low, high = 1, 1 << 60
    while low < high:
        mid = (low + high) // 2
        if Plan.fit(n, layout, k, d, mid, threads) is None:
            low = mid + 1
        else:
            high = mid
    return low


def search_both(
    a: np.ndarray, b: np.ndarray, k: int, *, memory_cap: int, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact top ``k`` of ``a·bᵀ`` per row and per column, best first, ties by index.

    Returns (row indices, row scores, column indices, column scores); ``k`` is
    clipped to the number of items on each side. Raises MemoryError when
    ``memory_cap`` cannot hold one block.
    """
    n, d = a.shape
    m = b.shape[0]
    k_row, k_col = min(k, m), min(k, n)
    workers = threads or len(os.sched_getaffinity(0))
    layout = Layout.for_items(m, k_row)
    plan = Plan.fit(n, layout, max(k_row, k_col), d, memory_cap, workers)
    if plan is None:
        need = minimum_cap(n, m, max(k_row, k_col), d, workers)
        raise MemoryError(f"one block needs {need / 1e6:.1f} MB, the cap is {memory_cap / 1e6:.1f} MB")
    permuted = np.zeros((layout.width, d), dtype=np.float32)
    permuted[layout.column(np.arange(m))] = b
    g = plan.group
    scores = np.empty((min(plan.rows, -(-n // g) * g), layout.width), dtype=np.float32)
    out = _Results(
        row_idx=np.empty((n, k_row), dtype=np.int64),
        row_val=np.empty((n, k_row), dtype=np.float32),
        col_idx=np.full((layout.width, k_col), -1, dtype=np.int64),
        col_val=np.full((layout.width, k_col), -np.inf, dtype=np.float32),
    )
    tile_max = np.empty((scores.shape[0], layout.tiles), dtype=np.float32)
    chunk = min(plan.chunk_rows(workers), n)
    first = plan.first_rows(n, chunk)
    search = _Search(a, permuted, layout, scores, tile_max, out, k_row, k_col, chunk)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        search.first_block(pool, first, g)
        if first < n:
            search.later_rows(pool, first, workers)
    del scores, tile_max
    col_val, col_idx = order_best_first(out.col_val, out.col_idx)
    columns = layout.column(np.arange(m))
    return out.row_idx, out.row_val, col_idx[columns], col_val[columns]


@dataclasses.dataclass
class _Search:
    """One search's inputs, buffers and outputs, and its two phases."""

    a: np.ndarray
    permuted: np.ndarray
    layout: Layout
    scores: np.ndarray
    """The block buffer: the first block, then one chunk per worker."""
    tile_max: np.ndarray
    out: _Results
    k_row: int
    k_col: int
    chunk: int
    """Rows of every GEMM call (the same shape each time: see :meth:`compute`) and of each later chunk."""
    bound: _ColumnBound | None = None
    """The columns' running θ after the latest merge (replaced whole by the main thread, read by the workers)."""

    def compute(self, start: int, stop: int, out: np.ndarray) -> None:
        """Scores of rows ``start…stop`` (at least :attr:`chunk` of them) into ``out``, in calls of ``chunk`` rows.

        BLAS may sum a dot product in another order for another shape of call (a small-matrix kernel,
        GEMV for one row), so scores, and the exact ties among them, would depend on where the chunks
        happen to end. Every call has the same shape: the last one reaches back over rows already computed.
        """
        size = self.chunk
        for first in range(start, stop, size):
            first = min(first, stop - size)
            np.matmul(self.a[first : first + size], self.permuted.T, out=out[first - start : first - start + size])

    def first_block(self, pool: ThreadPoolExecutor, rows: int, g: int) -> None:
        """Rows ``0…rows``: its chunks' GEMMs in the workers, then rows and columns (by row groups) in tasks.

        Each worker's GEMM runs on one BLAS thread, as later chunks do: one GEMM on every BLAS thread here
        would leave BLAS's own threads spinning (busy-waiting for more work) beside the tasks that follow.
        """
        block = self.scores[: -(-rows // g) * g]
        # Pieces of whole chunks (the last one takes the rest): every piece is at least one chunk long.
        starts = list(range(0, rows, self.chunk))[: max(1, rows // self.chunk)]
        spans = list(zip(starts, [*starts[1:], rows], strict=True))
        with _single_threaded_blas(len(spans) > 1):
            list(pool.map(lambda span: self.compute(span[0], span[1], block[span[0] : span[1]]), spans))
        block[:rows, self.layout.padding] = -np.inf
        block[rows:] = -np.inf
        tasks: list[Callable[[], object]] = [
            _row_task(block, q, min(q + ROW_TASK, rows), 0, self.layout, self.k_row, self.out, self.tile_max, None)
            for q in range(0, rows, ROW_TASK)
        ]
        tasks += [
            _column_task(block, p, min(p + COL_TASK, self.layout.width), 0, g, self.k_col, self.out)
            for p in range(0, self.layout.width, COL_TASK)
        ]
        list(pool.map(lambda task: task(), tasks))

    def later_rows(self, pool: ThreadPoolExecutor, start: int, workers: int) -> None:
        """Rows ``start…n`` in chunks, each worker's GEMM on one BLAS thread followed by its rows' work.

        Each worker owns a slice of the block buffer: it computes a chunk there, ranks its rows, and
        returns the elements above their column's running θ (the latest merged one as each of its row
        tasks starts: it holds only earlier rows, and an older, lower θ only lets more through), at most
        k per column. The main thread merges them into the columns' top k in row order, so ties still
        go to the earlier rows, while the workers go on.
        """
        n, chunk = self.a.shape[0], self.chunk
        slots = list(range(min(workers, self.scores.shape[0] // chunk)))
        ahead = 2 * len(slots) * chunk  # rows computed but not yet merged, at most
        running: dict[Future[_Entries], tuple[int, int, int]] = {}
        done_chunks: dict[int, tuple[int, _Entries]] = {}
        merged = submitted = start
        self.bound = _ColumnBound.of(self.out, self.layout)

        def submit() -> None:
            """Start chunks on the free workers, at most two per worker ahead of the merge (bounded memory)."""
            nonlocal submitted
            while slots and submitted < min(n, merged + ahead):
                stop = min(submitted + chunk, n)
                slot = slots.pop()
                running[pool.submit(self.rank_chunk, slot * chunk, submitted, stop)] = (slot, submitted, stop)
                submitted = stop

        with _single_threaded_blas(len(slots) > 1):
            while merged < n:
                submit()
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    slot, first_row, stop = running.pop(future)
                    slots.append(slot)
                    done_chunks[first_row] = (stop, future.result())
                ready = []
                while merged in done_chunks:
                    merged, entries = done_chunks.pop(merged)
                    ready.append(entries)
                if not ready:
                    continue
                submit()  # the free workers' next chunks first, so that they do not wait on the merge
                for entries in ready:  # in row order: the running top k holds only earlier rows
                    _merge_columns(self.out, *entries)
                self.bound = _ColumnBound.of(self.out, self.layout)

    def rank_chunk(self, at: int, start: int, stop: int) -> _Entries:
        """Scores of rows ``start…stop`` into the buffer from row ``at``; rank them; their column candidates."""
        low = min(start, stop - self.chunk)  # a short last chunk recomputes rows before it: one GEMM shape
        self.compute(low, stop, self.scores[at : at + stop - low])
        block = self.scores[at + start - low : at + stop - low]
        block[:, self.layout.padding] = -np.inf
        tiles = self.tile_max[at : at + stop - start]
        found = [
            _row_task(
                block, q, min(q + ROW_TASK, len(block)), start, self.layout, self.k_row, self.out, tiles, self.bound
            )()
            for q in range(0, len(block), ROW_TASK)
        ]
        rows, cols, vals = (np.concatenate(parts) for parts in zip(*found, strict=True))
        return _best_per_column(rows, cols, vals, self.k_col)


@contextlib.contextmanager
def _single_threaded_blas(active: bool) -> Iterator[None]:
    """BLAS calls on one thread each while ``active``: the workers run their GEMMs side by side instead."""
    if not active:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


_Entries = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(rows, columns, scores) of elements that may enter the columns' running top k."""


@dataclasses.dataclass(frozen=True)
class _ColumnBound:
    """The running k-th best score θ of each column, and its minimum over each tile's columns."""

    theta: np.ndarray
    tile: np.ndarray

    @classmethod
    def of(cls, out: _Results, layout: Layout) -> _ColumnBound:
        theta = out.col_val.min(axis=1)
        per_tile = theta.copy()
        per_tile[layout.padding] = np.inf  # padding columns never take part
        return cls(theta, per_tile.reshape(layout.w, layout.tiles).min(axis=0))


@dataclasses.dataclass
class _Results:
    """Output arrays the block tasks write into (disjoint slices per task)."""

    row_idx: np.ndarray
    row_val: np.ndarray
    col_idx: np.ndarray
    col_val: np.ndarray


def _row_task(
    block: np.ndarray,
    q0: int,
    q1: int,
    offset: int,
    layout: Layout,
    k: int,
    out: _Results,
    tiles: np.ndarray,
    bound: _ColumnBound | None,
) -> Callable[[], _Entries | None]:
    def run() -> _Entries | None:
        t, w = layout.tiles, layout.w
        rows = block[q0:q1].reshape(q1 - q0, w, t)  # rows[r, i, j]: item j·w + i, the i-th of tile j
        tile_max = tiles[q0:q1]
        np.max(rows, axis=1, out=tile_max)
        best_tiles = select_topk(tile_max, k)
        # Candidates in ascending item order: tile-major, then offset inside the tile.
        values = rows[np.arange(q1 - q0)[:, None], :, best_tiles].reshape(q1 - q0, -1)
        pick = select_topk(values, k)
        tile, inside = np.divmod(pick, w)
        items = np.take_along_axis(best_tiles, tile, 1) * w + inside
        val, idx = order_best_first(np.take_along_axis(values, pick, 1), items)
        out.row_idx[offset + q0 : offset + q1] = idx
        out.row_val[offset + q0 : offset + q1] = val
        return None if bound is None else _column_candidates(block, tile_max, q0, offset, layout, bound)

    return run


def _column_task(block: np.ndarray, p0: int, p1: int, offset: int, g: int, k: int, out: _Results) -> Callable[[], None]:
    def run() -> None:
        width = block.shape[1]
        group_max = block[0::g, p0:p1].copy()
        for i in range(1, g):
            np.maximum(group_max, block[i::g, p0:p1], out=group_max)
        best_groups = select_topk(np.ascontiguousarray(group_max.T), k)
        # Candidates in ascending row order: group-major, then row inside the group.
        rows = (best_groups[:, :, None] * g + np.arange(g)).reshape(p1 - p0, -1)
        values = block.ravel()[rows * width + np.arange(p0, p1)[:, None]]
        pick = select_topk(values, k)
        values = np.take_along_axis(values, pick, 1)
        rows = np.take_along_axis(rows, pick, 1) + offset
        # The running top k holds only earlier (lower) rows: put it first, keep k.
        merged_val = np.concatenate([out.col_val[p0:p1], values], axis=1)
        merged_idx = np.concatenate([out.col_idx[p0:p1], rows], axis=1)
        keep = select_topk(merged_val, k)
        out.col_val[p0:p1] = np.take_along_axis(merged_val, keep, 1)
        out.col_idx[p0:p1] = np.take_along_axis(merged_idx, keep, 1)

    return run


def _column_candidates(
    block: np.ndarray, tile_max: np.ndarray, q0: int, offset: int, layout: Layout, bound: _ColumnBound
) -> _Entries:
    """Elements of rows ``q0…`` above their column's θ, read only in tiles whose maximum reaches the tile's bound."""
    t, w = layout.tiles, layout.w
    pairs = np.flatnonzero(tile_max >= bound.tile)
    rows_by_tile = block.reshape(len(block), w, t)
    theta_by_tile = bound.theta.reshape(w, t)
    found: list[_Entries] = []
    step = max(1, CANDIDATE_ELEMENTS // w)
    for first in range(0, pairs.size, step):
        rows, tiles = np.divmod(pairs[first : first + step], t)
        rows += q0
        values = rows_by_tile[rows, :, tiles]  # (pairs, w): the tile's elements in item order
        better = values > theta_by_tile[:, tiles].T  # equal scores lose to the earlier rows already kept
        pair, inside = np.nonzero(better)
        found.append((rows[pair] + offset, inside * t + tiles[pair], values[better]))
    if not found:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))  # type: ignore[return-value]


def _best_per_column(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, k: int) -> _Entries:
    """The best ``k`` entries of each column, ties to the lower row (``rows`` ascend): at most k per column.

    They come sorted by column, then best first (ties by row), as :func:`_merge_columns` takes them.
    """
    order = np.argsort((cols.astype(np.int64) << 32) | descending_key(vals), kind="stable")
    ordered = cols[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
    keep = order[rank < k]
    return rows[keep], cols[keep], vals[keep]


def _merge_columns(out: _Results, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
    """Merge one chunk's :func:`_best_per_column` entries (on rows after every running one) into the top k.

    Each touched column's running k come first in a row, its new entries (best first, ties by row) after
    them: :func:`select_topk` keeps the leftmost of equal scores, so every tie goes to the earlier row.
    The running top k is kept in that left-to-right order (equal scores in row order), not sorted.
    """
    if not cols.size:
        return
    k = out.col_val.shape[1]
    starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
    counts = np.diff(np.r_[starts, cols.size])
    touched = cols[starts]
    line = np.repeat(np.arange(touched.size), counts)
    place = k + np.arange(cols.size) - np.repeat(starts, counts)
    width = k + int(counts.max())
    all_val = np.full((touched.size, width), -np.inf, dtype=np.float32)  # -inf fillers: right of k running ones
    all_idx = np.full((touched.size, width), -1, dtype=np.int64)
    all_val[:, :k] = out.col_val[touched]
    all_idx[:, :k] = out.col_idx[touched]
    all_val[line, place] = vals
    all_idx[line, place] = rows
    keep = select_topk(all_val, k)
    out.col_val[touched] = np.take_along_axis(all_val, keep, 1)
    out.col_idx[touched] = np.take_along_axis(all_idx, keep, 1)
