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
from geosample.retrieval.design import Estimates

MR_CUTOFFS = (1, 5, 10)


def label_bits(lists: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Bitsets (n, words) of the codes in each row's list, and each row's number of distinct codes."""
    exploded = lists.reset_index(drop=True).explode()  # one row per code, indexed by its list's position
    present = (exploded.notna() & (exploded.astype(str) != "")).to_numpy()
    rows = exploded.index.to_numpy()[present]
    codes, _ = pd.factorize(exploded[present].astype(str))
    words = max(1, -(-(int(codes.max()) + 1 if codes.size else 0) // 64))
    bits = np.zeros((len(lists), words), dtype=np.uint64)
    np.bitwise_or.at(bits, (rows, codes // 64), np.left_shift(np.uint64(1), (codes % 64).astype(np.uint64)))
    return bits, metrics.popcount(bits).sum(axis=1, dtype=np.int64)


def retrieval_scores(
    first: np.ndarray,
    ranking: np.ndarray,
    query_bits: Mapping[str, np.ndarray],
    item_bits: Mapping[str, np.ndarray],
    label_counts: Mapping[str, np.ndarray],
    cutoffs: Sequence[int],
    recall: Mapping[int, np.ndarray] | None = None,
) -> pd.DataFrame:
    """One direction's per-query scores: first-hit rank (NA beyond the ranking), R@K, mAP@K, WMAP@K(_norm) per level.

    ``recall`` replaces R@K (rank of the first hit < K) by tie-aware values per K where given.
    """
    ranked = first != metrics.NOT_RANKED
    columns: dict[str, Any] = {"first_hit": pd.Series(first).astype("Int64").where(ranked, pd.NA)}
    for k in sorted({*cutoffs, *MR_CUTOFFS}):
        columns[f"R@{k}"] = recall[k] if recall is not None and k in recall else metrics.recall_at(first, k)
    for level in query_bits:
        shared = metrics.shared_labels(query_bits[level], item_bits[level], ranking[:, : max(cutoffs)])
        for k, (ap, wap, wap_norm) in metrics.precision_at_cutoffs(shared, cutoffs, label_counts[level]).items():
            columns[f"mAP@{k}/{level}"] = ap
            columns[f"WMAP@{k}/{level}"] = wap
            columns[f"WMAP@{k}_norm/{level}"] = wap_norm
    return pd.DataFrame(columns)


def summarise(
    estimates: Estimates, cutoffs: Sequence[int], levels: Sequence[str], zero_shot: Sequence[str]
) -> dict[str, Any]:
    """One set of queries as metrics.json shows it: the means, ``weighted`` and (with a bootstrap) ``ci95``."""
    values = estimates.as_dicts()
    out: dict[str, Any] = {
        "n_images": estimates.n_images,
        "n_texts": estimates.n_texts,
        **nest(values["unweighted"], cutoffs, levels, zero_shot),
        "weighted": nest(values["weighted"], cutoffs, levels, zero_shot),
        "ci95": None,
    }
    if "ci_unweighted" in values:
        out["ci95"] = {
            "unweighted": nest(values["ci_unweighted"], cutoffs, levels, zero_shot),
            "weighted": nest(values["ci_weighted"], cutoffs, levels, zero_shot),
        }
    return out


def nest(
    values: Mapping[str, Any], cutoffs: Sequence[int], levels: Sequence[str], zero_shot: Sequence[str]
) -> dict[str, Any]:
    """Flat ``direction/metric`` values (numbers or [low, high] pairs) in metrics.json's nesting."""
    out: dict[str, Any] = {
        direction: _direction(values, direction, cutoffs, levels) for direction in ("image_to_text", "text_to_image")
    }
    out["mR"] = _value(values.get("mR"))
    out["zero_shot"] = {
        level: {top: _value(values.get(f"image_to_text/zero_shot/{level}/{top}")) for top in ("top1", "top5")}
        for level in zero_shot
    }
    return out


def _direction(values: Mapping[str, Any], direction: str, cutoffs: Sequence[int], levels: Sequence[str]) -> dict:
    out: dict[str, Any] = {f"R@{k}": _value(values.get(f"{direction}/R@{k}")) for k in cutoffs}
    for k in cutoffs if levels else ():
        for name in (f"mAP@{k}", f"WMAP@{k}", f"WMAP@{k}_norm"):
            out[name] = {level: _value(values.get(f"{direction}/{name}/{level}")) for level in levels}
    return out


def _value(value: object) -> Any:
    """A plain float (or a [low, high] pair), None where no query defines it (JSON has no NaN)."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        pair = [_value(v) for v in value]
        return None if any(v is None for v in pair) else pair
    number = float(value)  # type: ignore[arg-type]
    return None if np.isnan(number) else number


def domains(image_strata: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """(dimension, value, mask over the image queries) of every value of every stratum dimension."""
    out = []
    for dimension in image_strata.columns:
        values = image_strata[dimension].fillna("(missing)").astype(str).to_numpy()
        out += [(dimension, value, values == value) for value in sorted(set(values))]
    return out


def per_stratum(
    parts: Sequence[tuple[str, str, Estimates]], cutoffs: Sequence[int], levels: Sequence[str], zero_shot: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The summary of each stratum value's queries (its images, and their captions) against all items."""
    out: dict[str, dict[str, Any]] = {}
    for dimension, value, estimates in parts:
        out.setdefault(dimension, {})[value] = summarise(estimates, cutoffs, levels, zero_shot)
    return out
