"""Retrieval metrics, per query, from top-k rankings: R@K, mR, mAP@k, WMAP@k, zero-shot accuracy.

Every function returns one value per query so that the overall figure and
each stratum's figure are plain means over different sets of queries
(:func:`group_means`). Rankings are (queries, depth) arrays of item indices,
best first. Labels are bitsets: row ``i`` of a (n, words) uint64 array has bit
``c`` set when item ``i`` carries label ``c``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


NOT_RANKED = np.iinfo(np.int64).max


def first_hit(ranking: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Rank (0-based) of the first relevant item of each query, or :data:`NOT_RANKED` when none is ranked.

    ``relevant[q, j]`` says whether ``ranking[q, j]`` is relevant to query ``q``.
    """
    hit = relevant.any(axis=1)
    return np.where(hit, relevant.argmax(axis=1), NOT_RANKED)


def image_first_hit(image_to_text: np.ndarray, text_image: np.ndarray) -> np.ndarray:
    """First rank at which an image query meets one of its own captions (``text_image``: caption → image)."""
    own = text_image[image_to_text] == np.arange(len(image_to_text))[:, None]
    return first_hit(image_to_text, own)


def text_first_hit(text_to_image: np.ndarray, text_image: np.ndarray) -> np.ndarray:
    """First rank at which a caption query meets its own image."""
    return first_hit(text_to_image, text_to_image == text_image[:, None])


def recall_at(first: np.ndarray, k: int) -> np.ndarray:
    """R@K per query: 1 when a relevant item ranks in the top K (``first`` < K), else 0.

    R@K = (1/|Q|) Σ_q [rank_q < K], rank_q the 0-based rank of q's first
    ground-truth item (for an image, any of its captions; for a caption, its image).
    """
    return (first < k).astype(np.float64)


def mean_recall(image_first: np.ndarray, text_first: np.ndarray) -> float:
    """Mean recall, mR = (1/6) Σ_{dir ∈ {i→t, t→i}} Σ_{K ∈ {1, 5, 10}} R@K(dir)."""
    parts = [recall_at(first, k).mean() for first in (image_first, text_first) for k in (1, 5, 10)]
    return float(np.mean(parts))


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per uint64 element."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return _BYTE_POPCOUNT[words.view(np.uint8)].reshape(*words.shape, 8).sum(axis=-1, dtype=np.uint8)


def shared_labels(query_bits: np.ndarray, item_bits: np.ndarray, ranking: np.ndarray) -> np.ndarray:
    """r[q, j]: the number of labels query ``q`` shares with its item at rank ``j``."""
    words = query_bits.shape[1]
    shared = np.zeros(ranking.shape, dtype=np.uint16 if words < 1024 else np.int64)  # at most 64 per word
    for word in range(words):  # a few words: one pass each, no reduction over a short axis
        gathered = np.ascontiguousarray(item_bits[:, word])[ranking]
        np.bitwise_and(gathered, query_bits[:, word, None], out=gathered)
        shared += popcount(gathered)
    return shared.astype(np.int64)


def average_precision(shared: np.ndarray, k: int) -> np.ndarray:
    """AP@k per query, relevance rel_i = [r_i > 0] (at least one shared label).

    AP@k = Σ_{i≤k} P@i·rel_i / Σ_{i≤k} rel_i, P@i = (1/i) Σ_{j≤i} rel_j; 0 when
    no item in the top k is relevant. mAP@k is its mean over queries.
    """
    rel = (shared[:, :k] > 0).astype(np.float64)
    ranks = np.arange(1, rel.shape[1] + 1)
    precision = np.cumsum(rel, axis=1) / ranks
    n_rel = rel.sum(axis=1)
    return np.divide((precision * rel).sum(axis=1), n_rel, out=np.zeros(len(rel)), where=n_rel > 0)


def weighted_average_precision(shared: np.ndarray, k: int, label_counts: np.ndarray | None = None) -> np.ndarray:
    """WAP@k per query (Zhao et al. 2015, "Deep Semantic Ranking Based Hashing"), as LuoJiaHOG reports it.

    With r_j the labels the query shares with the item at rank j,
    ACG@i = (1/i) Σ_{j≤i} r_j and WAP@k = Σ_{i≤k} ACG@i·[r_i > 0] / Σ_{i≤k} [r_i > 0]
    (0 when nothing in the top k is relevant); WMAP@k is its mean over queries.
    With ``label_counts`` each r_j is divided by the query's own label count
    (the normalised WMAP@k_norm, in [0, 1]; 0 for a query without labels).
    """
    r = shared[:, :k].astype(np.float64)
    if label_counts is not None:
        counts = label_counts.astype(np.float64)[:, None]
        r = np.divide(r, counts, out=np.zeros_like(r), where=counts > 0)
    ranks = np.arange(1, r.shape[1] + 1)
    acg = np.cumsum(r, axis=1) / ranks
    rel = r > 0
    n_rel = rel.sum(axis=1)
    return np.divide((acg * rel).sum(axis=1), n_rel, out=np.zeros(len(r)), where=n_rel > 0)


def precision_at_cutoffs(
    shared: np.ndarray, cutoffs: Sequence[int], label_counts: np.ndarray
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """AP@k, WAP@k and normalised WAP@k per query for every k in ``cutoffs``, from one pass over the ranks.

    The same values as :func:`average_precision` and
    :func:`weighted_average_precision` (up to rounding): both are ratios of
    prefix sums over ranks, so one cumulative sum serves every cut-off, and
    dividing each r_j by the query's label count divides WAP@k by it.
    """
    depth = min(max(cutoffs), shared.shape[1])
    by_rank = np.ascontiguousarray(shared[:, :depth].T)  # rank-major: each prefix sum is one pass per rank
    n = by_rank.shape[1]
    hits, gain = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    ap_sum, wap_sum = np.zeros(n), np.zeros(n)
    at_rank = {}
    wanted = {min(k, depth) - 1 for k in cutoffs}
    for j in range(depth):
        rel = by_rank[j] > 0
        hits += rel
        gain += by_rank[j]
        ap_sum += np.where(rel, hits / (j + 1), 0.0)
        wap_sum += np.where(rel, gain / (j + 1), 0.0)
        if j in wanted:
            at_rank[j] = (hits.copy(), ap_sum.copy(), wap_sum.copy())
    counts = label_counts.astype(np.float64)
    out = {}
    for k in cutoffs:
        n_rel, ap_k, wap_k = at_rank[min(k, depth) - 1]
        ap = np.divide(ap_k, n_rel, out=np.zeros(n), where=n_rel > 0)
        wap = np.divide(wap_k, n_rel, out=np.zeros(n), where=n_rel > 0)
        out[k] = (ap, wap, np.divide(wap, counts, out=np.zeros(n), where=counts > 0))
    return out


def zero_shot_hits(ranking: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """1 when the true class (index into the ranked classes) is among the top ``k`` predictions, else 0.

    Top-k accuracy = (1/|I|) Σ_i [y_i ∈ top-k classes of image i], y_i the
    image's dominant label; images without one (``truth`` < 0) get NaN and are
    left out of the means.
    """
    hit = (ranking[:, :k] == truth[:, None]).any(axis=1).astype(np.float64)
    return np.where(truth >= 0, hit, np.nan)


def group_means(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean of ``values`` per group code (0..n_groups-1), ignoring NaN; NaN for an empty group."""
    valid = ~np.isnan(values)
    sums = np.bincount(groups[valid], weights=values[valid], minlength=n_groups)
    counts = np.bincount(groups[valid], minlength=n_groups)
    return np.divide(sums, counts, out=np.full(n_groups, np.nan), where=counts > 0)
