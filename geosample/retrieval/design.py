"""Design-based estimates of the metrics: 1/π-weighted means and stratified bootstrap intervals.

A balanced plan over-represents small strata on purpose, so the mean over
samples describes the sample, not the land. Every sample carries its
inclusion probability π (``plan.parquet``'s ``inclusion_prob``); the
weighted estimate of a metric is the Hájek form of the Horvitz–Thompson
estimator of its mean over the population of cells:

    ŷ = Σ_i y_i / π_i  /  Σ_i 1 / π_i

(equal to the Horvitz–Thompson mean Σ y/π / N wherever Σ 1/π recovers the
population size N, and valid on any subset: a split, a stratum value). An
image query's y is its own score; a caption query carries its sample's
weight shared among the sample's captions, so every sample counts once in
both directions. Queries where a metric is undefined (zero-shot without a
dominant label) are left out of that metric.

Intervals are 95 % percentile intervals of a stratified bootstrap over the
plan's ``stratum`` column, the resampling unit being the site (its samples
and their captions move together): the Rao–Wu rescaled bootstrap, which
draws n_h − 1 of a stratum's n_h units with replacement and scales their
weights by n_h / (n_h − 1), so that the bootstrap variance matches the
stratified design's (Rao & Wu 1988; R survey's ``subbootstrap``). Strata
with a single evaluated unit are pooled into one (collapsed strata), so
that they still carry variance. The same replicates give the
unweighted (per-sample mean) and weighted intervals; they are drawn from
``seed`` in fixed chunks, so a run is reproducible. A domain (a stratum
value) with a single evaluated site gets no interval: every replicate would
give that site's own value, an interval of zero width.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from geosample.errors import DataQualityWarning, DatasetError

MR_PARTS = tuple(f"{d}/R@{k}" for d in ("image_to_text", "text_to_image") for k in (1, 5, 10))
CHUNK = 128  # bootstrap replicates drawn at a time (each chunk from its own seeded stream)
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Design:
    """How the evaluated samples were drawn: weights, bootstrap units and their strata."""

    weight: np.ndarray
    """1/π of every sample (image query)."""
    unit: np.ndarray
    """The bootstrap unit (site) code of every sample, 0..n_units-1."""
    unit_stratum: np.ndarray
    """The stratum code of every unit."""
    source: str
    """``inclusion_prob`` or ``equal`` (the plan has no inclusion probabilities)."""

    @property
    def n_units(self) -> int:
        """Number of bootstrap units."""
        return len(self.unit_stratum)

    @classmethod
    def of(cls, samples: pd.DataFrame) -> Design:
        """From plan columns ``inclusion_prob``, ``site_id`` and ``stratum`` (each optional)."""
        n = len(samples)
        source = "inclusion_prob"
        if "inclusion_prob" not in samples.columns:
            source = "equal"
            warnings.warn(
                "plan.parquet has no inclusion_prob column, so the weighted estimates equal the per-sample "
                "means; re-run 'geosample plan' with this version to get area-weighted estimates",
                DataQualityWarning,
                stacklevel=4,
            )
            prob = np.ones(n)
        else:
            prob = pd.to_numeric(samples["inclusion_prob"], errors="coerce").to_numpy(dtype=np.float64)
            bad = ~(np.isfinite(prob) & (prob > 0) & (prob <= 1))
            if bad.all():
                raise DatasetError(
                    f"none of the {n} samples has a valid inclusion_prob (a probability in (0, 1]); "
                    "re-run 'geosample plan' to write them"
                )
            if bad.any():
                strata = samples["stratum"].astype(str).to_numpy() if "stratum" in samples else np.zeros(n, str)
                fill = pd.Series(np.where(bad, np.nan, prob)).groupby(strata).transform("mean")
                prob = np.where(bad, fill.fillna(np.nanmean(np.where(bad, np.nan, prob))).to_numpy(), prob)
                warnings.warn(
                    f"{int(bad.sum())} sample(s) have no valid inclusion_prob (missing, ≤ 0 or > 1); they take "
                    "their stratum's mean; re-run 'geosample plan' to get exact weights",
                    DataQualityWarning,
                    stacklevel=4,
                )
        site = samples["site_id"] if "site_id" in samples.columns else samples["sample_id"]
        unit, _ = pd.factorize(site.astype(str), sort=False)
        stratum = samples["stratum"] if "stratum" in samples.columns else pd.Series(["all"] * n, index=samples.index)
        codes, _ = pd.factorize(stratum.astype(str))
        _, first = np.unique(unit, return_index=True)  # each unit's stratum: that of its first sample
        return cls(1.0 / prob, unit.astype(np.int64), collapse_strata(codes[first].astype(np.int64)), source)


def collapse_strata(unit_stratum: np.ndarray) -> np.ndarray:
    """Strata with a single unit pooled into one (a lone leftover joins the smallest other stratum).

    A stratum with one unit has no variance estimate of its own; pooling such
    strata ("collapsed strata") gives them one, a slightly conservative one.
    """
    codes, sizes = np.unique(unit_stratum, return_counts=True)
    single = np.isin(unit_stratum, codes[sizes < 2])
    if not single.any():
        return unit_stratum
    out = unit_stratum.copy()
    pooled = int(codes.max()) + 1
    out[single] = pooled
    if single.sum() == 1 and (~single).any():
        others, counts = np.unique(out[~single], return_counts=True)
        out[single] = others[np.argmin(counts)]
    return out


@dataclasses.dataclass(frozen=True)
class Estimates:
    """Point estimates and bootstrap replicates of named columns over one set of queries."""

    columns: list[str]
    """``image_to_text/<metric>``, ``text_to_image/<metric>`` and ``mR``."""
    n_images: int
    n_texts: int
    unweighted: np.ndarray
    """Per-query means (the figures metrics.json always had)."""
    weighted: np.ndarray
    """1/π-weighted (Hájek) estimates."""
    replicates_unweighted: np.ndarray | None
    """(B, columns) bootstrap replicates of the means; None without a bootstrap."""
    replicates_weighted: np.ndarray | None

    def interval(self, weighted: bool) -> np.ndarray | None:
        """(2, columns): the 2.5 and 97.5 percentiles of the replicates (NaN where undefined)."""
        reps = self.replicates_weighted if weighted else self.replicates_unweighted
        if reps is None:
            return None
        tail = (1 - LEVEL) / 2 * 100
        out = np.full((2, reps.shape[1]), np.nan)
        gaps = np.isnan(reps).any(axis=0)
        # Columns without NaN at once (nanpercentile works column by column and costs far more).
        out[:, ~gaps] = np.percentile(reps[:, ~gaps], [tail, 100 - tail], axis=0)
        if gaps.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: metrics no query defines
                out[:, gaps] = np.nanpercentile(reps[:, gaps], [tail, 100 - tail], axis=0)
        return out

    def as_dicts(self) -> dict[str, dict[str, object]]:
        """``{"unweighted": {column: value}, "weighted": ..., "ci_unweighted": {column: [lo, hi]}, ...}``."""
        out: dict[str, dict[str, object]] = {
            "unweighted": dict(zip(self.columns, self.unweighted.tolist(), strict=True)),
            "weighted": dict(zip(self.columns, self.weighted.tolist(), strict=True)),
        }
        for name, weighted in (("ci_unweighted", False), ("ci_weighted", True)):
            bounds = self.interval(weighted)
            if bounds is not None:
                out[name] = {c: [float(lo), float(hi)] for c, lo, hi in zip(self.columns, *bounds, strict=True)}
        return out


def estimate(
    design: Design,
    image_values: pd.DataFrame,
    text_values: pd.DataFrame,
    text_image: np.ndarray,
    domains: Sequence[np.ndarray],
    *,
    replicates: int,
    seed: int,
) -> list[Estimates]:
    """Estimates of every numeric column over each domain (a boolean mask over the image queries).

    Caption queries belong to their image's domain. ``replicates`` = 0 skips the bootstrap.
    """
    image_cols = [f"image_to_text/{c}" for c in image_values.columns]
    text_cols = [f"text_to_image/{c}" for c in text_values.columns]
    columns = image_cols + text_cols
    has_mr = all(p in columns for p in MR_PARTS)
    iv = image_values.to_numpy(dtype=np.float64, na_value=np.nan)
    tv = text_values.to_numpy(dtype=np.float64, na_value=np.nan)
    captions = np.bincount(text_image, minlength=len(iv)).astype(np.float64)
    w_image = design.weight
    w_text = design.weight[text_image] / captions[text_image]
    text_unit = design.unit[text_image]
    parts = []
    for mask in domains:
        t_mask = mask[text_image]
        n_img = int(mask.sum())
        queries = (iv[mask], w_image[mask], tv[t_mask], w_text[t_mask])
        per_unit = None
        if replicates > 0:  # sums per bootstrap unit, which the replicates reweight
            units, inverse = np.unique(np.concatenate([design.unit[mask], text_unit[t_mask]]), return_inverse=True)
            if len(units) > 1:  # one site alone gives a zero-width interval that claims a precision it lacks
                per_unit = (units, _sums(*queries, inverse[:n_img], inverse[n_img:], len(units)))
        # The point estimates from the totals, the same with or without a bootstrap.
        parts.append((per_unit, _sums(*queries, None, None, 1)[0], n_img, int(t_mask.sum())))
    n_i, n_t = iv.shape[1], tv.shape[1]

    def split(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(…, 4·(n_i + n_t)) sums → unweighted and weighted estimates (…, n_i + n_t [+ mR])."""
        img, txt = values[..., : 4 * n_i], values[..., 4 * n_i :]
        out = []
        for which in (0, 1):
            num = np.concatenate([img[..., which * 2 * n_i : which * 2 * n_i + n_i],
                                  txt[..., which * 2 * n_t : which * 2 * n_t + n_t]], axis=-1)  # fmt: skip
            den = np.concatenate([img[..., which * 2 * n_i + n_i : (which + 1) * 2 * n_i],
                                  txt[..., which * 2 * n_t + n_t : (which + 1) * 2 * n_t]], axis=-1)  # fmt: skip
            with np.errstate(invalid="ignore", divide="ignore"):
                est = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
            if has_mr:
                idx = [columns.index(p) for p in MR_PARTS]
                est = np.concatenate([est, est[..., idx].mean(axis=-1, keepdims=True)], axis=-1)
            out.append(est)
        return out[0], out[1]

    boot: list[list[np.ndarray]] = [[] for _ in parts]
    if replicates > 0:
        for factors in _replicate_factors(design, replicates, seed):
            for d, (per_unit, _, _, _) in enumerate(parts):
                if per_unit is not None:
                    units, stacked = per_unit
                    boot[d].append(factors[:, units] @ stacked)
    names = columns + (["mR"] if has_mr else [])
    results = []
    for d, (_, totals, n_img, n_txt) in enumerate(parts):
        unweighted, weighted = split(totals)
        reps_u = reps_w = None
        if boot[d]:
            reps_u, reps_w = split(np.concatenate(boot[d]))
        results.append(Estimates(names, n_img, n_txt, unweighted, weighted, reps_u, reps_w))
    return results


def _sums(
    i_values: np.ndarray,
    i_weight: np.ndarray,
    t_values: np.ndarray,
    t_weight: np.ndarray,
    i_unit: np.ndarray | None,
    t_unit: np.ndarray | None,
    n_units: int,
) -> np.ndarray:
    """(n_units, 4·(image + text columns)): unweighted then weighted sums of the image, then the text queries."""
    return np.hstack(
        [_per_unit(i_values, w, i_unit, n_units) for w in (None, i_weight)]
        + [_per_unit(t_values, w, t_unit, n_units) for w in (None, t_weight)]
    )


def _per_unit(values: np.ndarray, weight: np.ndarray | None, unit: np.ndarray | None, n_units: int) -> np.ndarray:
    """(n_units, 2·columns): Σ w·y and Σ w over each unit's queries, leaving out NaN values.

    ``weight`` None: every query weighs 1; ``unit`` None: one unit, the total.
    """
    ok = ~np.isnan(values)
    if weight is None:
        contributions = np.hstack([np.where(ok, values, 0.0), ok.astype(np.float64)])
    else:
        contributions = np.hstack([np.where(ok, values * weight[:, None], 0.0), ok * weight[:, None]])
    if unit is None:
        return contributions.sum(axis=0, keepdims=True)
    out = np.zeros((n_units, contributions.shape[1]))
    if len(unit):
        order = np.argsort(unit, kind="stable")
        present, starts = np.unique(unit[order], return_index=True)
        out[present] = np.add.reduceat(contributions[order], starts, axis=0)
    return out


def _replicate_factors(design: Design, replicates: int, seed: int):  # noqa: ANN202 - a generator of arrays
    """(b, n_units) Rao–Wu weight factors, in chunks of :data:`CHUNK` replicates, each from its own stream."""
    strata = np.unique(design.unit_stratum)
    members = [np.flatnonzero(design.unit_stratum == s) for s in strata]
    for first in range(0, replicates, CHUNK):
        b = min(CHUNK, replicates - first)
        rng = np.random.default_rng([seed, first // CHUNK])
        factors = np.ones((b, design.n_units))
        for units in members:
            n = len(units)
            if n < 2:
                continue  # a stratum of one unit: taken with certainty in every replicate
            counts = rng.multinomial(n - 1, np.full(n, 1.0 / n), size=b)
            factors[:, units] = counts * (n / (n - 1))
        yield factors
