"""Train / validation / test splits by spatial blocks, stratified, with a buffer between splits.

What is guaranteed (and checked on the footprints, not assumed):

* **A site is never split**: all its chips (dates, sizes, before/after phases) share one split.
* **A buffer**: no chip of one split lies within ``buffer_m`` (default: one chip size, the largest)
  of a chip of another split, measured between the footprints.
* **Spatial blocks**: sites are dealt to splits by H3 cells (blocks), whole blocks at a time, so
  test sites are not scattered among training sites.
* **Stratified**: within every stratum the blocks are dealt so that each split's share of its
  samples comes as close to its fraction as whole blocks allow, and every stratum with at least
  3 sites has a site in every split with a positive fraction (unless its sites all crowd within
  the buffer of one another, which the report says).

How, in order:

1. **Units.** Sites whose footprints are closer than the buffer are joined (transitively) into one
   unit, which goes to one split whole, so the buffer holds by construction -- unless the chain
   grows past 3 sites and 2 % of all sites (chips packed across a region), when its sites go their
   own ways and step 5 keeps the buffer.
2. **Blocks.** Each unit belongs to the block (H3 cell) of its first site. The block size is
   ``block_km`` (the H3 resolution whose cells are closest to it across, √ of the mean cell area)
   or ``res``; by default the coarsest resolution that gives at least 10 occupied blocks per the
   smallest split's share (100 for a 10 % split) and 20 sites or fewer per occupied block on
   average, but no finer than the buffer zone (buffer plus chip diagonal): blocks as large as the
   data allow while every split still gets many of them.
3. **Dealing.** Blocks are dealt to the splits stratum by stratum (:func:`split_cells`).
4. **Coverage.** A stratum of at least 3 sites missing from a split gets one of its units (or
   sites) moved there, from a split that keeps one: the move that brings the fewest sites of other
   splits within the buffer, whole units first. A stratum that cannot be spread (fewer than three
   of its sites farther than the buffer from one another) is named in the report's
   ``strata_missing_from_a_split``.
5. **Buffer.** Of any two sites of different splits still within the buffer, the one of the smaller
   split is dropped (a site moved for coverage, or its stratum's only one in its split, stays) and
   counted.

When chips of different sites come within the buffer of each other at all, steps 2–5 are run for
16 deals (random streams of the seed) and the best is kept: fewest strata left uncovered, then
fewest samples dropped, then shares closest to the fractions.

One vocabulary everywhere: ``train``, ``validation``, ``test`` (Hugging Face, Croissant,
TrainingDML-AI); only the STAC ``ml-aoi`` extension, whose schema allows ``validate`` alone, gets
:data:`ML_AOI_SPLITS`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h3
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from geosample.errors import ConfigError, DatasetError
from geosample.sampling import _h3
from geosample.sampling.spacing import PROJECTION_MARGIN, chord, distance_m, footprint_distances_m, unit_vectors

__all__ = [
    "ML_AOI_SPLITS",
    "check_settings",
    "dataset_splits",
    "SPLITS",
    "Splits",
    "h3_parents",
    "make_splits",
    "parse_fractions",
    "split_cells",
    "split_samples",
]

SPLITS = ("train", "validation", "test")
"""Split names, everywhere but STAC ``ml-aoi``."""
ML_AOI_SPLITS = {"train": "train", "validation": "validate", "test": "test"}
"""The STAC ``ml-aoi:split`` values (its schema allows ``validate``, not ``validation``)."""
BLOCKS_PER_SHARE = 10
"""Default block size: at least this many occupied blocks per the smallest split's share ..."""
SITES_PER_BLOCK = 20
"""... and on average at most this many sites per block."""
ATTEMPTS = 16
"""Deals tried when chips of different sites come within the buffer of each other (the best is kept)."""
MAX_UNIT_SITES = 3
MAX_UNIT_SHARE = 0.02
"""Sites closer than the buffer stay together, unless they chain up more than 3 sites and 2 % of all."""

_RES_SHIFT = np.uint64(52)
_RES_MASK = np.uint64(0xF) << _RES_SHIFT


def parse_fractions(value: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (or three numbers) as the train, validation and test fractions; they must sum to 1."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        numbers = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"--split {value!r} must be three numbers, train,validation,test, e.g. 0.8,0.1,0.1") from None
    if len(numbers) != 3:
        raise ConfigError(f"--split {value!r} must be three numbers, train,validation,test, e.g. 0.8,0.1,0.1")
    if any(not np.isfinite(n) or n < 0 for n in numbers) or abs(sum(numbers) - 1.0) > 1e-6:
        raise ConfigError(f"--split {value!r} must be three fractions of at least 0 that sum to 1, e.g. 0.8,0.1,0.1")
    return numbers  # type: ignore[return-value]


def h3_parents(cells: Sequence[str] | np.ndarray, res: int) -> np.ndarray:
    """The parent cell at ``res`` of every H3 cell (hex strings), as uint64 indexes.

    A parent index is the cell's index with the resolution field set to
    ``res`` and the digits below it set to 7 (the H3 index layout).
    """
    index = np.fromiter((int(c, 16) for c in cells), dtype=np.uint64, count=len(cells))
    own = (index & _RES_MASK) >> _RES_SHIFT
    if (own < res).any():
        raise DatasetError(
            f"the plan's H3 cells are as coarse as resolution {int(own.min())}; "
            f"choose a split resolution of at most {int(own.min())}"
        )
    unused = np.uint64((1 << (3 * (15 - res))) - 1)
    return (index & ~_RES_MASK) | (np.uint64(res) << _RES_SHIFT) | unused


def split_cells(
    cell_stratum: np.ndarray, cell_size: np.ndarray, fractions: Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """Deal cells (blocks) to splits: the index in ``SPLITS`` of every cell.

    Args:
        cell_stratum: The stratum (any label) of every cell.
        cell_size: The number of samples in every cell.
        fractions: The wanted share of samples per split.
        rng: Orders the strata and the cells of each stratum (ties in size).

    Each cell goes to the split furthest below its share, measured in samples
    within the cell's stratum plus the same over every cell dealt so far.
    Strata come in random order, their cells largest first.
    """
    share = np.asarray(fractions, dtype=np.float64)
    open_ = share > 0
    out = np.empty(len(cell_stratum), dtype=np.int64)
    strata, inverse = np.unique(cell_stratum, return_inverse=True)
    total_count = np.zeros(share.size)
    total_n = 0.0
    for s in rng.permutation(strata.size):
        members = np.flatnonzero(inverse == s)
        members = members[rng.permutation(members.size)]
        members = members[np.argsort(-cell_size[members], kind="stable")]
        count = np.zeros(share.size)
        n = 0.0
        for cell in members:
            size = float(cell_size[cell])
            need = share * (n + size) - count + share * (total_n + size) - total_count
            choice = int(np.argmax(np.where(open_, need, -np.inf)))
            out[cell] = choice
            count[choice] += size
            total_count[choice] += size
            n += size
            total_n += size
    return out


@dataclasses.dataclass(frozen=True)
class Splits:
    """The split of every sample, and what was done and measured to get it."""

    split: pd.Series
    """``train``, ``validation`` or ``test`` per sample, indexed like the plan; ``None`` for a sample
    whose site was dropped for the buffer."""
    report: dict[str, Any]
    """Settings, block size, per split: sites, samples, strata covered, the smallest distance from its
    chips to another split's, sites moved and dropped for the buffer (see :func:`make_splits`)."""


def make_splits(
    samples: pd.DataFrame,
    fractions: Sequence[float] | str = (0.8, 0.1, 0.1),
    *,
    block_km: float | None = None,
    res: int | None = None,
    buffer_m: float | None = None,
    seed: int = 0,
) -> Splits:
    """Split a plan's sites into train, validation and test (see the module docstring).

    Args:
        samples: Plan rows: ``site_id``, ``stratum``, ``lon``, ``lat``, ``chip_size_m`` and the
            footprint ``geometry`` (EPSG:4326).
        fractions: Shares of train, validation and test samples; they sum to 1.
        block_km: Block size in km (H3 cells about this wide).
        res: The blocks' H3 resolution instead (0–15); give ``block_km`` or ``res``, not both.
        buffer_m: No chip of one split within this distance of another split's; default the
            largest chip size.
        seed: Same plan, settings and seed give the same splits.
    """
    fractions = parse_fractions(fractions)
    check_settings(block_km, res, buffer_m)
    missing = [c for c in ("site_id", "stratum", "lon", "lat", "chip_size_m", "geometry") if c not in samples]
    if missing:
        raise DatasetError(f"the plan has no {', '.join(missing)} column(s); re-run 'geosample plan'")
    if samples.empty:
        return Splits(pd.Series([], index=samples.index, dtype=object, name="split"), {})
    sites = _site_table(samples)
    chip = float(sites["chip_size_m"].max())
    buffer = float(buffer_m) if buffer_m is not None else chip
    pairs = _conflicts(sites, buffer)
    n = len(sites)
    _, unit = connected_components(
        coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)), directed=False
    )
    # A unit that spreads over much of the data (chips chained across a region) would make its split
    # alone: its sites go back to their own blocks, and the buffer is kept by dropping sites instead.
    sizes = np.bincount(unit)
    big = sizes[unit] > max(MAX_UNIT_SITES, MAX_UNIT_SHARE * n)
    unit = np.where(big, unit.max() + 1 + np.arange(n), unit)
    n_units, unit = np.unique(unit, return_inverse=True)
    n_units = n_units.size
    block_res = _block_res(sites, fractions, buffer, block_km, res)
    block = _h3.cells_from_points(sites["lon"].to_numpy(), sites["lat"].to_numpy(), block_res)
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for i, j in pairs.tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)
    # With chips within the buffer of one another, how the blocks fall decides what must be dropped:
    # a few deals (their own random streams of the seed) are tried, and the best one kept.
    tries = [
        _attempt(sites, unit, block, fractions, pairs, neighbours, np.random.default_rng(stream))
        for stream in np.random.SeedSequence(seed).spawn(ATTEMPTS if len(pairs) else 1)
    ]
    best = min(tries, key=lambda t: t.score)
    site_split, dropped = best.site_split, best.dropped
    moved_for_buffer, moved_for_coverage = best.moved_for_buffer, best.moved_for_coverage
    site_name = np.asarray(SPLITS, dtype=object)[site_split]
    site_name[dropped] = None
    split = pd.Series(
        pd.Series(site_name, index=sites["site_id"]).reindex(samples["site_id"].to_numpy()).to_numpy(),
        index=samples.index,
        name="split",
        dtype=object,
    )
    report = _report(sites, site_split, dropped, moved_for_buffer, moved_for_coverage, fractions, buffer, block_res,
                     block_km, seed, n_units)  # fmt: skip
    report["deals_tried"] = len(tries)
    return Splits(split, report)


@dataclasses.dataclass
class _Attempt:
    site_split: np.ndarray
    dropped: np.ndarray
    moved_for_buffer: np.ndarray
    moved_for_coverage: np.ndarray
    score: tuple


def _attempt(
    sites: pd.DataFrame,
    unit: np.ndarray,
    block: np.ndarray,
    fractions: Sequence[float],
    pairs: np.ndarray,
    neighbours: list[set[int]],
    rng: np.random.Generator,
) -> _Attempt:
    """One deal of the blocks, coverage and buffer (steps 2–5), scored.

    The score: strata left uncovered, then samples dropped, then the distance of the splits' shares
    from the fractions (lower is better).
    """
    n = len(sites)
    samples_of = sites["samples"].to_numpy()
    strata = sites["stratum"].to_numpy()
    first_site = pd.Series(np.arange(n)).groupby(unit).first().to_numpy()
    unit_block = block[first_site]
    # Deal blocks (each counts for the stratum most of its samples belong to).
    blocks, unit_in_block = np.unique(unit_block, return_inverse=True)
    site_block = unit_in_block[unit]
    size = np.bincount(site_block, weights=samples_of, minlength=blocks.size)
    votes = pd.DataFrame({"block": site_block, "stratum": strata, "n": samples_of})
    ranked = votes.groupby(["block", "stratum"])["n"].sum().reset_index()
    ranked = ranked.sort_values(["block", "n", "stratum"], ascending=[True, False, True], kind="stable")
    block_stratum = ranked.drop_duplicates("block").set_index("block")["stratum"].reindex(range(blocks.size))
    block_split = split_cells(block_stratum.to_numpy(), size, fractions, rng)
    site_split = block_split[unit_in_block][unit].copy()
    # A site whose unit was dealt with another block than its own went where the buffer sent it.
    own = np.minimum(np.searchsorted(blocks, block), blocks.size - 1)
    moved_for_buffer = (blocks[own] != block) | (block_split[own] != site_split)
    # Coverage: every stratum of at least 3 sites in every split with a positive share.
    book = _Book(site_split, strata, unit, neighbours)
    moved_for_coverage = np.zeros(n, dtype=bool)
    open_splits = np.flatnonzero(np.asarray(fractions) > 0)
    for g in sorted(np.flatnonzero(book.covered), key=lambda g: (book.size[g], book.names[g])):
        for target in open_splits:
            if book.count[g, target] == 0:
                moved = book.cover(g, target, samples_of, rng)
                moved_for_coverage[moved] = True
    pinned = book.pinned | book.sole(np.arange(n))
    dropped = _enforce_buffer(pairs, book.site_split, pinned, samples_of)
    site_split = book.site_split
    live = ~dropped
    code = book.code
    uncovered = 0
    for k in open_splits:
        present = np.zeros(book.size.size, dtype=bool)
        present[code[live & (site_split == k)]] = True
        uncovered += int((book.covered & ~present).sum())
    share = np.bincount(site_split[live], weights=samples_of[live], minlength=len(SPLITS))
    error = float(np.abs(share / max(share.sum(), 1) - np.asarray(fractions)).sum())
    score = (uncovered, int(samples_of[dropped].sum()), round(error, 9))
    return _Attempt(site_split, dropped, moved_for_buffer, moved_for_coverage, score)


class _Book:
    """The sites' splits with per-stratum counts kept up to date, for the coverage moves."""

    def __init__(self, site_split: np.ndarray, strata: np.ndarray, unit: np.ndarray, neighbours: list[set[int]]):
        self.site_split = site_split
        self.names, self.code = np.unique(strata, return_inverse=True)
        self.size = np.bincount(self.code)
        self.covered = self.size >= 3
        self.count = np.zeros((self.names.size, len(SPLITS)), dtype=np.int64)
        np.add.at(self.count, (self.code, site_split), 1)
        self.unit = unit
        self.members = pd.Series(np.arange(unit.size)).groupby(unit).indices
        self.by_stratum = pd.Series(np.arange(unit.size)).groupby(self.code).indices
        self.neighbours = neighbours
        self.pinned = np.zeros(unit.size, dtype=bool)

    def sole(self, sites: np.ndarray) -> np.ndarray:
        """Whether each site is the only one of its stratum (of 3+ sites) in its split."""
        return self.covered[self.code[sites]] & (self.count[self.code[sites], self.site_split[sites]] == 1)

    def protected(self, i: int) -> bool:
        return bool(self.pinned[i] or self.sole(np.array([i]))[0])

    def cover(self, g: int, target: int, samples_of: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Move sites of stratum ``g`` into split ``target``; returns the sites moved.

        The candidates are its units, whole, and its sites, alone, from splits that keep a site of
        every stratum of 3+ sites they give up, holding no protected site (moved for coverage, or
        its stratum's only one in its split) and coming within the buffer of no protected site of
        another split; the one chosen brings the fewest sites of other splits within the buffer of
        ``target`` (dropped later), then is a whole unit, then is smallest.
        """
        members = self.by_stratum[g]
        groups = [self.members[u] for u in np.unique(self.unit[members])]
        groups += [np.array([i]) for i in members if self.members[self.unit[i]].size > 1]
        best = None
        for group in groups:
            source = self.site_split[group[0]]
            if source == target or (self.site_split[group] != source).any():
                continue
            if any(self.protected(i) for i in group):
                continue
            codes, taken = np.unique(self.code[group], return_counts=True)
            if (self.covered[codes] & (self.count[codes, source] <= taken)).any():
                continue
            inside = set(group.tolist())
            clash = {j for i in group for j in self.neighbours[i] if j not in inside and self.site_split[j] != target}
            if any(self.protected(j) for j in clash):
                continue
            whole = group.size == self.members[self.unit[group[0]]].size
            key = (len(clash), not whole, int(samples_of[group].sum()), rng.random())
            if best is None or key < best[0]:
                best = (key, group)
        if best is None:
            return np.empty(0, dtype=np.int64)
        moved = best[1]
        source = self.site_split[moved[0]]
        np.add.at(self.count, (self.code[moved], source), -1)
        np.add.at(self.count, (self.code[moved], target), 1)
        self.site_split[moved] = target
        self.pinned[moved] = True
        return moved


def split_samples(
    samples: pd.DataFrame,
    fractions: Sequence[float] | str = (0.8, 0.1, 0.1),
    *,
    block_km: float | None = None,
    res: int | None = None,
    buffer_m: float | None = None,
    seed: int = 0,
) -> pd.Series:
    """The split of every sample (``None`` where dropped for the buffer); :func:`make_splits` without the report."""
    return make_splits(samples, fractions, block_km=block_km, res=res, buffer_m=buffer_m, seed=seed).split


def dataset_splits(ds: str | Path) -> pd.Series:
    """The split of every sample of dataset ``ds`` as ``geosample export`` deals it, indexed by ``sample_id``.

    With the split settings (fractions, block size or resolution, buffer, seed) of the last export
    recorded in the dataset's ``geosample.yaml``, or export's defaults when none is; values are
    :data:`SPLITS`, ``None`` for a sample whose site an export drops for the buffer. For evaluate and
    finetune, so that they see the very samples an export puts in each split: the one place outside
    :func:`geosample.export.export` that computes a dataset's splits.
    """
    from geosample._dataset import read_config, read_samples
    from geosample.export._export import ExportConfig, splits_of

    config = read_config(ds)
    known = {f.name for f in dataclasses.fields(ExportConfig)} - {"format"}
    recorded = [v for v in (config.get("export") or {}).values() if isinstance(v, dict) and "split" in v]
    cfg = ExportConfig.from_mapping({k: v for k, v in (recorded[-1] if recorded else {}).items() if k in known})
    plan = read_samples(ds).sort_values("sample_id", kind="stable").reset_index(drop=True)  # as export reads it
    split = splits_of(plan, cfg).split
    return pd.Series(split.to_numpy(), index=pd.Index(plan["sample_id"], name="sample_id"), name="split")


def check_settings(block_km: float | None, res: int | None, buffer_m: float | None) -> None:
    """Refuse split settings that make no sense, naming the fix."""
    if block_km is not None and res is not None:
        raise ConfigError("give --split-block-km or --split-res, not both")
    if res is not None and (isinstance(res, bool) or not isinstance(res, int) or not 0 <= res <= 15):
        raise ConfigError(f"--split-res {res!r} is out of range; H3 resolutions run from 0 to 15")
    if block_km is not None and not (isinstance(block_km, int | float) and 0 < block_km <= 20_000):
        raise ConfigError(f"--split-block-km {block_km!r} must be a positive size in km, e.g. 100")
    if buffer_m is not None and not (
        isinstance(buffer_m, int | float) and math.isfinite(buffer_m) and 0 <= buffer_m <= 1_000_000
    ):
        raise ConfigError(
            f"--split-buffer-m {buffer_m!r} must be a distance in metres of at least 0 (0: chips of different "
            "splits may touch but not overlap)"
        )


def _site_table(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per site: its centre, stratum, largest chip's size and footprint, and number of samples."""
    order = samples.sort_values(["site_id", "chip_size_m"], kind="stable")
    sites = order.drop_duplicates("site_id", keep="last")[["site_id", "stratum", "lon", "lat", "chip_size_m"]]
    sites = sites.assign(geometry=order.drop_duplicates("site_id", keep="last").geometry.to_numpy())
    counts = samples.groupby("site_id").size()
    sites["samples"] = counts.reindex(sites["site_id"]).to_numpy()
    sites["stratum"] = sites["stratum"].astype(str)
    return sites.reset_index(drop=True)


def _conflicts(sites: pd.DataFrame, buffer_m: float) -> np.ndarray:
    """Site pairs ``(i, j)`` whose footprints are closer than ``buffer_m`` (or overlap)."""
    reach = buffer_m + float(sites["chip_size_m"].max()) * math.sqrt(2) * PROJECTION_MARGIN
    xyz = unit_vectors(sites["lon"].to_numpy(), sites["lat"].to_numpy())
    pairs = cKDTree(xyz).query_pairs(chord(reach), output_type="ndarray")
    if pairs.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    import shapely

    geoms = sites["geometry"].to_numpy()
    first, second = geoms[pairs[:, 0]], geoms[pairs[:, 1]]
    close = footprint_distances_m(first, second) < buffer_m
    apart = np.flatnonzero(~close)  # with buffer 0, footprints that touch are 0 m apart yet may not overlap
    close[apart] = shapely.area(shapely.intersection(first[apart], second[apart])) > 0
    return pairs[close]


def _block_res(
    sites: pd.DataFrame, fractions: Sequence[float], buffer_m: float, block_km: float | None, res: int | None
) -> int:
    """The blocks' H3 resolution: given, from ``block_km``, or chosen from the data (module docstring)."""
    if res is not None:
        return res
    widths = np.array([math.sqrt(h3.average_hexagon_area(r, "km^2")) for r in range(16)])
    if block_km is not None:
        return int(np.argmin(np.abs(np.log(widths / block_km))))
    zone_km = (buffer_m + float(sites["chip_size_m"].max()) * math.sqrt(2)) / 1000.0
    wanted = max(
        math.ceil(BLOCKS_PER_SHARE / min(f for f in fractions if f > 0)), math.ceil(len(sites) / SITES_PER_BLOCK)
    )
    lon, lat = sites["lon"].to_numpy(), sites["lat"].to_numpy()
    finest = int(np.flatnonzero(widths >= zone_km).max()) if (widths >= zone_km).any() else 0
    for r in range(finest + 1):
        if np.unique(_h3.cells_from_points(lon, lat, r)).size >= wanted:
            return r
    return finest


def _enforce_buffer(
    pairs: np.ndarray, site_split: np.ndarray, pinned: np.ndarray, samples_of: np.ndarray
) -> np.ndarray:
    """Drop sites until no two sites of different splits are within the buffer; the dropped mask.

    Of a violating pair the pinned site (moved to cover a stratum, or its stratum's only one in its
    split) stays; otherwise the site of the smaller split (by samples) goes.
    """
    dropped = np.zeros(site_split.size, dtype=bool)
    size = np.bincount(site_split, weights=samples_of, minlength=len(SPLITS))
    for i, j in pairs[site_split[pairs[:, 0]] != site_split[pairs[:, 1]]].tolist():
        if dropped[i] or dropped[j]:
            continue
        if pinned[i] != pinned[j]:
            loser = j if pinned[i] else i
        else:
            loser = i if size[site_split[i]] <= size[site_split[j]] else j
        dropped[loser] = True
        size[site_split[loser]] -= samples_of[loser]
    return dropped


def _report(
    sites: pd.DataFrame,
    site_split: np.ndarray,
    dropped: np.ndarray,
    moved_for_buffer: np.ndarray,
    moved_for_coverage: np.ndarray,
    fractions: Sequence[float],
    buffer_m: float,
    block_res: int,
    block_km: float | None,
    seed: int,
    n_units: int,
) -> dict[str, Any]:
    """The split report: settings, block size, and per split what it holds and how far it is from the others."""
    live = ~dropped
    strata = sites["stratum"].to_numpy()
    samples = sites["samples"].to_numpy()
    per_split = {}
    for k, name in enumerate(SPLITS):
        mine = live & (site_split == k)
        others = live & (site_split != k)
        per_split[name] = {
            "sites": int(mine.sum()),
            "samples": int(samples[mine].sum()),
            "strata": int(np.unique(strata[mine]).size),
            "min_distance_to_other_splits_m": _min_distance(sites, mine, others),
            "sites_moved_for_buffer": int((mine & moved_for_buffer).sum()),
            "sites_moved_for_coverage": int((mine & moved_for_coverage).sum()),
            "sites_dropped_for_buffer": int((dropped & (site_split == k)).sum()),
        }
    counts = pd.Series(strata).value_counts()
    big = counts[counts >= 3].index
    open_splits = [k for k, f in enumerate(fractions) if f > 0]
    uncovered = sorted(
        str(s) for s in big if any(not (live & (strata == s) & (site_split == k)).any() for k in open_splits)
    )
    return {
        "fractions": {name: float(f) for name, f in zip(SPLITS, fractions, strict=True)},
        "seed": seed,
        "buffer_m": float(buffer_m),
        "block": {
            "h3_res": int(block_res),
            "km": round(math.sqrt(h3.average_hexagon_area(block_res, "km^2")), 3),
            "rule": "--split-block-km" if block_km is not None else "chosen from the data",
            "requested_km": block_km,
        },
        "units": int(n_units),
        "strata_with_3_or_more_sites": int(len(big)),
        "strata_missing_from_a_split": uncovered,
        "splits": per_split,
    }


def _min_distance(sites: pd.DataFrame, mine: np.ndarray, others: np.ndarray) -> float | None:
    """The smallest distance (metres) between a footprint of ``mine`` and one of ``others``.

    Centre distances on the smaller sphere (a lower bound) pick the candidate pairs: any pair whose
    centres are farther than the nearest centres plus two chip diagonals cannot be closer.
    """
    if not mine.any() or not others.any():
        return None
    xyz = unit_vectors(sites["lon"].to_numpy(), sites["lat"].to_numpy())
    a, b = np.flatnonzero(mine), np.flatnonzero(others)
    tree = cKDTree(xyz[b])
    _, nearest = tree.query(xyz[a])
    centre = distance_m(xyz[a], xyz[b[nearest]])
    slack = 2 * float(sites["chip_size_m"].max()) * math.sqrt(2) * PROJECTION_MARGIN
    reach = float(centre.min()) + slack
    geoms = sites["geometry"].to_numpy()
    near = a[centre <= reach]
    found = tree.query_ball_point(xyz[near], chord(reach))
    first = np.repeat(near, [len(f) for f in found])
    second = b[np.concatenate([np.asarray(f, dtype=np.int64) for f in found])]
    if second.size == 0:
        return None
    return round(float(footprint_distances_m(geoms[first], geoms[second]).min()), 1)
