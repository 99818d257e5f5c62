"""Per-query scores of an evaluation and their means: overall, and per stratum value.

Each query gets one row with its first-hit rank and a column per metric
(``R@5``, ``mAP@5/l2``, ``WMAP@5_norm/l3``, ``zero_shot/l1/top1``); a
summary is the column means over a set of queries, nested the way
``metrics.json`` shows them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geosample.retrieval import metrics

MR_CUTOFFS = (1, 5, 10)


def label_bits(lists: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Bitsets (n, words) of the codes in each row's list, and each row's number of distinct codes."""
    exploded = lists.explode()
    present = exploded.notna() & (exploded.astype(str) != "")
    rows = np.repeat(np.arange(len(lists)), lists.map(_length).to_numpy())[present.to_numpy()]
    codes, _ = pd.factorize(exploded[present].astype(str))
    words = max(1, -(-(int(codes.max()) + 1 if codes.size else 0) // 64))
    bits = np.zeros((len(lists), words), dtype=np.uint64)
    np.bitwise_or.at(bits, (rows, codes // 64), np.left_shift(np.uint64(1), (codes % 64).astype(np.uint64)))
    return bits, metrics.popcount(bits).sum(axis=1, dtype=np.int64)


def _length(value: Any) -> int:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return 1  # explode() keeps one (NaN) row for a missing list
    return max(len(value), 1)


def retrieval_scores(
    first: np.ndarray,
    ranking: np.ndarray,
    query_bits: Mapping[str, np.ndarray],
    item_bits: Mapping[str, np.ndarray],
    label_counts: Mapping[str, np.ndarray],
    cutoffs: Sequence[int],
) -> pd.DataFrame:
    """One direction's per-query scores: first-hit rank (NA beyond the ranking), R@K, mAP@K, WMAP@K(_norm) per level."""
    ranked = first != metrics.NOT_RANKED
    columns: dict[str, Any] = {"first_hit": pd.Series(first).astype("Int64").where(ranked, pd.NA)}
    for k in sorted({*cutoffs, *MR_CUTOFFS}):
        columns[f"R@{k}"] = metrics.recall_at(first, k)
    for level in query_bits:
        shared = metrics.shared_labels(query_bits[level], item_bits[level], ranking)
        for k in cutoffs:
            columns[f"mAP@{k}/{level}"] = metrics.average_precision(shared, k)
            columns[f"WMAP@{k}/{level}"] = metrics.weighted_average_precision(shared, k)
            columns[f"WMAP@{k}_norm/{level}"] = metrics.weighted_average_precision(shared, k, label_counts[level])
    return pd.DataFrame(columns)


def summarise(
    images: pd.DataFrame, texts: pd.DataFrame, cutoffs: Sequence[int], levels: Sequence[str], zero_shot: Sequence[str]
) -> dict[str, Any]:
    """``image_to_text``, ``text_to_image``, ``mR`` and ``zero_shot`` of these queries, as in metrics.json."""
    i_means, t_means = images.mean(numeric_only=True), texts.mean(numeric_only=True)
    out: dict[str, Any] = {
        "n_images": len(images),
        "n_texts": len(texts),
        "image_to_text": _direction(i_means, cutoffs, levels),
        "text_to_image": _direction(t_means, cutoffs, levels),
        "mR": _mean_recall(i_means, t_means),
    }
    out["zero_shot"] = {
        level: {top: _value(i_means.get(f"zero_shot/{level}/{top}")) for top in ("top1", "top5")} for level in zero_shot
    }
    return out


def _direction(means: pd.Series, cutoffs: Sequence[int], levels: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {f"R@{k}": _value(means.get(f"R@{k}")) for k in cutoffs}
    for k in cutoffs if levels else ():
        for name in (f"mAP@{k}", f"WMAP@{k}", f"WMAP@{k}_norm"):
            out[name] = {level: _value(means.get(f"{name}/{level}")) for level in levels}
    return out


def _mean_recall(i_means: pd.Series, t_means: pd.Series) -> float | None:
    parts = [means.get(f"R@{k}") for means in (i_means, t_means) for k in MR_CUTOFFS]
    return None if any(_value(p) is None for p in parts) else float(np.mean(parts))


def _value(value: object) -> float | None:
    """A plain float, or None where no query defines it (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if np.isnan(number) else number


def per_stratum(
    images: pd.DataFrame,
    texts: pd.DataFrame,
    image_strata: pd.DataFrame,
    text_image: np.ndarray,
    cutoffs: Sequence[int],
    levels: Sequence[str],
    zero_shot: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """The summary of each stratum value's queries (its images, and their captions) against all items."""
    out: dict[str, dict[str, Any]] = {}
    for dimension in image_strata.columns:
        values = image_strata[dimension].fillna("(missing)").astype(str).to_numpy()
        out[dimension] = {}
        for value in sorted(set(values)):
            mine = values == value
            out[dimension][value] = summarise(images[mine], texts[mine[text_image]], cutoffs, levels, zero_shot)
    return out
