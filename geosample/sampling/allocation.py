"""How many sites each stratum receives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from geosample.errors import ConfigError


def apportion(total: int, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integers summing to ``total`` in proportion to ``weights`` (largest remainder).

    Remainders are ranked with random tie-breaking, so with equal weights
    every share is ``total // n`` or one more, and which strata get the
    extra one depends on the seed, not on their names.
    """
    weights = np.asarray(weights, dtype=np.float64)
    out = np.zeros(weights.size, dtype=np.int64)
    if total <= 0 or weights.sum() <= 0:
        return out
    exact = total * weights / weights.sum()
    out = np.floor(exact).astype(np.int64)
    left = total - int(out.sum())
    if left > 0:
        remainder = exact - out
        order = np.lexsort((rng.permutation(weights.size), -np.round(remainder, 12)))
        order = order[weights[order] > 0]
        out[order[:left]] += 1
    return out


def stratum_weights(
    allocation: str,
    labels: list[tuple[str, ...]],
    dim_names: list[str],
    area_km2: np.ndarray,
    heterogeneity_area: np.ndarray | None = None,
) -> np.ndarray:
    """Weight of each stratum under an allocation rule.

    * ``equal``: 1 each (the balanced default);
    * ``proportional``: the stratum's area;
    * ``sqrt``: the square root of its area;
    * ``heterogeneity``: its area weighted by the landscape shape index of
      the atlas cells it lies in (more sites where land cover is fragmented);
    * a CSV file: a ``weight`` column and either a ``stratum`` column (full
      keys such as ``Asia/B/barren``) or any of the dimension columns; a
      stratum takes the weight of the row that matches it (strata no row
      matches get weight 0).
    """
    if allocation == "equal":
        return (area_km2 > 0).astype(np.float64)
    if allocation == "proportional":
        return area_km2.astype(np.float64)
    if allocation == "sqrt":
        return np.sqrt(area_km2)
    if allocation == "heterogeneity":
        assert heterogeneity_area is not None
        return heterogeneity_area
    return _csv_weights(Path(allocation), labels, dim_names)


def _csv_weights(path: Path, labels: list[tuple[str, ...]], dim_names: list[str]) -> np.ndarray:
    if not path.exists():
        raise ConfigError(
            f"--allocation file {path} does not exist; give equal, proportional, sqrt, heterogeneity or a CSV"
        )
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise ConfigError(f"cannot read --allocation file {path}: {exc}") from None
    if "weight" not in table.columns:
        raise ConfigError(f"--allocation file {path} has no 'weight' column; its columns: {', '.join(table.columns)}")
    keys = [c for c in table.columns if c != "weight"]
    unknown = [c for c in keys if c not in dim_names and c != "stratum"]
    if unknown or not keys:
        raise ConfigError(
            f"--allocation file {path}: columns {unknown or '(none)'} match no stratum dimension; "
            f"use 'stratum' or some of {', '.join(dim_names)}, plus 'weight'"
        )
    try:
        weight = table["weight"].astype(float).to_numpy()
    except ValueError:
        raise ConfigError(f"--allocation file {path}: the weight column must hold numbers") from None
    if (weight < 0).any() or not np.isfinite(weight).all():
        raise ConfigError(f"--allocation file {path}: weights must be finite and non-negative")
    lookup = {tuple(row[k] for k in keys): w for row, w in zip(table.to_dict("records"), weight, strict=True)}
    out = np.zeros(len(labels))
    for i, label in enumerate(labels):
        values = dict(zip(dim_names, label, strict=True))
        values["stratum"] = "/".join(label)
        out[i] = lookup.get(tuple(values[k] for k in keys), 0.0)
    if out.sum() <= 0:
        raise ConfigError(f"--allocation file {path}: no row matches a stratum of this AOI; check the values")
    return out
