"""Exact ties in the similarity scores: how many queries they touch, and R@K under a chosen tie order.

Rankings break ties by item index (``--ties index``), an arbitrary order: on
embeddings with many equal scores (identical captions, constant chips) it can
move R@1 a long way. For each query the ranking fixes three numbers about its
best-scoring relevant item, whose score is s*:

* ``above`` (a): items scoring strictly more than s* (none of them relevant);
* ``tied`` (t): items scoring exactly s*;
* ``relevant`` (g): relevant items among those t.

Under a uniformly random order of tied items the first relevant item sits
at 0-based rank a + J, J the position of the first of g marked items in a
random permutation of t, so P(J ≥ m) = C(t−g, m) / C(t, m). Hence, with
m = K − a slots left for the tie group in the top K:

* ``optimistic``: R@K = [a < K] (the relevant items first in their group);
* ``pessimistic``: R@K = [a + t − g < K] (last);
* ``expected``: R@K = 1 − C(t−g, m)/C(t, m) for 0 < m ≤ t − g, 1 beyond, 0 for m ≤ 0 —
  the mean over every order of the tied items, exact, not sampled.

mR follows from these R@K. mAP@k, WMAP@k and zero-shot accuracy always use
the index order (their mean over tie orders has no closed form computed
here); :attr:`TieReport.boundary` counts the queries whose top-k cut-off
falls inside a run of equal scores, i.e. whose mAP@k/WMAP@k could change.

a, t and g are read from the top-``depth`` ranking when the tie group ends
inside it; a query whose group starts before the ranking's last place and
reaches it, or whose relevant items are unranked but score within rounding
(:func:`rounding_bound`) of a run of equal scores at the ranking's end, has
its whole row of scores recomputed in one float32 product, so t and g are
exact counts over all items, not only the ranked ones. Every R@K with
K < depth is then exact (``evaluate`` ranks to one past the largest K).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from geosample.errors import ConfigError

FLOAT32_EPS = float(np.finfo(np.float32).eps)


def rounding_bound(dim: int, precision: str = "fp32") -> float:
    """How far a similarity computed by the search can be from the exact dot product of the same unit vectors.

    A float32 dot product of ``dim`` terms, summed in any order (FMA or not), is
    within γ_dim·Σ|a_i·b_i| ≤ dim·u (u = 2⁻²⁴) of the exact value for unit
    vectors; twice that, plus 1e-6 for the vectors' own rounding, is returned.
    fp16 and bf16 inputs (the CUDA matmul) first round each vector element to
    2⁻¹¹ or 2⁻⁸ relative, which adds twice that much.
    """
    extra = {"fp16": 2.0**-10, "bf16": 2.0**-7}.get(precision, 0.0)
    return dim * FLOAT32_EPS + 1e-6 + extra


@dataclasses.dataclass(frozen=True)
class FirstHitTies:
    """Per query of one direction: items above the best relevant score, items tied with it, relevant among those."""

    above: np.ndarray
    """a: items with a strictly higher score (``depth`` or more when the relevant items are not ranked)."""
    tied: np.ndarray
    """t: items (relevant or not) with exactly the best relevant score.

    Exact over all items wherever a < depth − 1; a query whose best relevant score is first reached at
    the ranking's last place (or later) has t and g counted among the ranked items only, since no
    R@K with K < depth depends on them (K − a ≤ 0 slots left for the tie group).
    """
    relevant: np.ndarray
    """g: relevant items with exactly that score (at least 1 where one is ranked)."""
    recomputed: int
    """Queries whose whole score row was recomputed to count their ties."""


@dataclasses.dataclass(frozen=True)
class TieReport:
    """Counts of queries touched by exact ties, one direction."""

    boundary: dict[int, int]
    """K → queries whose rank-K cut-off lies inside a run of equal scores (item K and item K+1 score the same)."""
    recall_depends: dict[int, int]
    """K → queries whose R@K differs between the optimistic and pessimistic tie orders."""
    recall_range: dict[int, tuple[float, float]]
    """K → (pessimistic, optimistic) mean R@K over the queries."""

    def to_dict(self) -> dict[str, dict[str, object]]:
        """The ``ties`` entry of one direction in metrics.json."""
        return {
            "boundary_ties": {str(k): v for k, v in self.boundary.items()},
            "recall_depends_on_order": {str(k): v for k, v in self.recall_depends.items()},
            "recall_range": {f"R@{k}": [lo, hi] for k, (lo, hi) in self.recall_range.items()},
        }


def first_hit_ties(
    ranking: np.ndarray,
    scores: np.ndarray,
    relevant: np.ndarray,
    queries: np.ndarray,
    items: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray],
    *,
    memory_cap: int,
    rounding: float | None = None,
) -> FirstHitTies:
    """a, t and g of every query of one direction.

    Args:
        ranking: (n, depth) item indices, best first (ties by index).
        scores: (n, depth) their scores.
        relevant: (n, depth) whether each ranked item is relevant to its query.
        queries: (n, d) the query vectors (unit length, float32).
        items: (m, d) the item vectors.
        pairs: (query index, item index) of every relevant pair.
        memory_cap: Bytes for recomputed rows, at a time.
        rounding: The largest difference between a score as the search computed it and the exact
            dot product of the same vectors (default :func:`rounding_bound` for float32).
    """
    n, depth = ranking.shape
    m = items.shape[0]
    has = relevant.any(axis=1)
    first = np.where(has, relevant.argmax(axis=1), 0)
    best = np.take_along_axis(scores, first[:, None], 1)
    above = np.where(has, (scores > best).sum(axis=1), depth).astype(np.int64)
    at_best = scores == best
    tied = np.where(has, at_best.sum(axis=1), 0).astype(np.int64)
    rel_tied = np.where(has, (at_best & relevant).sum(axis=1), 0).astype(np.int64)
    # The tie group may continue past the ranking: the last ranked item scores s* too. Only a group that
    # starts before the last place matters (a < depth - 1): else every R@K with K < depth is 0 whatever t is.
    redo = has & at_best[:, -1] & (above < depth - 1) & (depth < m)
    pair_query, pair_item = pairs
    if 1 < depth < m:
        # Unranked relevant items can tie only with the last ranked score, and matter only where that score
        # ties with the one before it: find those within rounding of it.
        tolerance = rounding_bound(queries.shape[1]) if rounding is None else rounding
        open_end = ~has & (scores[:, -2] == scores[:, -1])
        q, i = pair_query[open_end[pair_query]], pair_item[open_end[pair_query]]
        pair_score = np.einsum("ij,ij->i", queries[q].astype(np.float64), items[i].astype(np.float64))
        redo[q[pair_score >= scores[q, -1].astype(np.float64) - tolerance]] = True
    rows = np.flatnonzero(redo)
    if rows.size:
        order = np.argsort(pair_query, kind="stable")
        starts = np.searchsorted(pair_query[order], np.arange(n + 1))
        rows = rows[starts[rows + 1] > starts[rows]]  # (a query with a relevant score has a relevant pair)
        step = max(1, memory_cap // (4 * m * 4))
        for first_row in range(0, rows.size, step):
            chunk = rows[first_row : first_row + step]
            full = queries[chunk] @ items.T
            # Every relevant pair of the chunk's queries: its row in `full` and its item (each query has one).
            lengths = starts[chunk + 1] - starts[chunk]
            local = np.repeat(np.arange(chunk.size), lengths)
            segment = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            at = np.arange(local.size) - np.repeat(segment, lengths) + np.repeat(starts[chunk], lengths)
            pair_scores = full[local, pair_item[order[at]]]
            best_score = np.maximum.reduceat(pair_scores, segment)
            above[chunk] = np.count_nonzero(full > best_score[:, None], axis=1)
            tied[chunk] = np.count_nonzero(full == best_score[:, None], axis=1)
            rel_tied[chunk] = np.add.reduceat((pair_scores == best_score[local]).astype(np.int64), segment)
    return FirstHitTies(above, tied, rel_tied, int(rows.size))


def recall_at(ties: FirstHitTies, k: int, policy: str) -> np.ndarray:
    """R@K of every query under a tie ``policy`` other than ``index`` (see the module docstring)."""
    a, t, g = ties.above, ties.tied, ties.relevant
    found = g > 0
    if policy == "optimistic":
        return (found & (a < k)).astype(np.float64)
    if policy == "pessimistic":
        return (found & (a + t - g < k)).astype(np.float64)
    if policy != "expected":
        raise ConfigError(f"no closed form for --ties {policy!r}")
    slots = np.clip(k - a, 0, None)
    recall = np.where(found & (slots > 0), 1.0, 0.0)
    # P(no relevant item in the first `slots` places of the group) = Π_{i<slots} (t−g−i)/(t−i): 0 from the
    # first place on where the group is all relevant (t = g), so only groups with other items are computed.
    mixed = np.flatnonzero(found & (slots > 0) & (t > g))
    t, g, slots = t[mixed], g[mixed], slots[mixed]
    miss = np.ones(mixed.size)
    for i in range(int(slots.max(initial=0))):
        step = i < slots
        ratio = np.divide(np.clip(t - g - i, 0, None), t - i, out=np.zeros(mixed.size), where=step & (t - i > 0))
        miss = np.where(step, miss * ratio, miss)
    recall[mixed] = 1.0 - miss
    return recall


def report(scores: np.ndarray, ties: FirstHitTies, cutoffs: Sequence[int], n_items: int) -> TieReport:
    """Boundary ties and the R@K range between the pessimistic and optimistic orders, per K."""
    boundary, depends, ranges = {}, {}, {}
    for k in cutoffs:
        if k < scores.shape[1] and k < n_items:
            boundary[k] = int((scores[:, k - 1] == scores[:, k]).sum())
        else:
            boundary[k] = 0
        low, high = recall_at(ties, k, "pessimistic"), recall_at(ties, k, "optimistic")
        depends[k] = int((low != high).sum())
        ranges[k] = (float(low.mean()) if low.size else 0.0, float(high.mean()) if high.size else 0.0)
    return TieReport(boundary, depends, ranges)
