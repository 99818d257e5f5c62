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
   unit; a unit always goes to one split, so the buffer holds by construction.
2. **Blocks.** Each unit belongs to the block (H3 cell) of its first site. The block size is
   ``block_km`` (the H3 resolution whose cells are closest to it across, √ of the mean cell area)
   or ``res``; by default the coarsest resolution that still gives at least 20 occupied blocks per
   the smallest split's share (200 for a 10 % split), and no finer than the buffer zone (buffer plus
   chip diagonal) -- large blocks where the data allow, small ones for small datasets.
3. **Dealing.** Blocks are dealt to the splits stratum by stratum (:func:`split_cells`).
4. **Coverage.** A stratum of at least 3 sites missing from a split gets one of its units moved
   there, from the split that has the most of its sites (and keeps one). Only when all its sites
   form one unit is a single site moved, and the sites of other splits within the buffer of it are
   dropped (the moved site stays; otherwise from the smaller split) and counted. A stratum whose
   sites cannot be spread (fewer than three of them farther than the buffer from one another) is
   named in the report's ``strata_missing_from_a_split``.

One vocabulary everywhere: ``train``, ``validation``, ``test`` (Hugging Face, Croissant,
TrainingDML-AI); only the STAC ``ml-aoi`` extension, whose schema allows ``validate`` alone, gets
:data:`ML_AOI_SPLITS`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import h3
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from geosample.errors import ConfigError, DatasetError
from geosample.sampling import _h3
from geosample.sampling.spacing import PROJECTION_MARGIN, chord, distance_m, footprint_distance_m, unit_vectors

__all__ = [
    "ML_AOI_SPLITS",
    "check_settings",
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
BLOCKS_PER_SHARE = 20
"""Default block size: at least this many occupied blocks per the smallest split's share."""

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
    rng = np.random.default_rng(seed)
    sites = _site_table(samples)
    chip = float(sites["chip_size_m"].max())
    buffer = float(buffer_m) if buffer_m is not None else chip
    pairs = _conflicts(sites, buffer)
    n = len(sites)
    n_units, unit = connected_components(
        coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)), directed=False
    )
    block_res = _block_res(sites, fractions, buffer, block_km, res)
    block = _h3.cells_from_points(sites["lon"].to_numpy(), sites["lat"].to_numpy(), block_res)
    first_site = pd.Series(np.arange(n)).groupby(unit).first().to_numpy()
    unit_block = block[first_site]
    # Deal blocks (each counts for the stratum most of its samples belong to).
    blocks, unit_in_block = np.unique(unit_block, return_inverse=True)
    site_block = unit_in_block[unit]
    size = np.bincount(site_block, weights=sites["samples"].to_numpy(), minlength=blocks.size)
    votes = pd.DataFrame({"block": site_block, "stratum": sites["stratum"].to_numpy(), "n": sites["samples"]})
    ranked = votes.groupby(["block", "stratum"])["n"].sum().reset_index()
    ranked = ranked.sort_values(["block", "n", "stratum"], ascending=[True, False, True], kind="stable")
    block_stratum = ranked.drop_duplicates("block").set_index("block")["stratum"].reindex(range(blocks.size))
    block_split = split_cells(block_stratum.to_numpy(), size, fractions, rng)
    unit_split = block_split[unit_in_block]
    site_split = unit_split[unit].copy()
    # A site whose unit was dealt with another block than its own went where the buffer sent it.
    own = np.minimum(np.searchsorted(blocks, block), blocks.size - 1)
    moved_for_buffer = (blocks[own] != block) | (block_split[own] != site_split)
    # Coverage: every stratum of at least 3 sites in every split with a positive share.
    pinned = np.zeros(n, dtype=bool)
    moved_for_coverage = np.zeros(n, dtype=bool)
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for i, j in pairs.tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)
    strata = sites["stratum"].to_numpy()
    for stratum in sorted(set(strata)):
        members = np.flatnonzero(strata == stratum)
        if members.size < 3:
            continue
        for target in np.flatnonzero(np.asarray(fractions) > 0):
            if (site_split[members] == target).any():
                continue
            moved = _cover(members, target, unit, site_split, strata, samples_of=sites["samples"].to_numpy(),
                           neighbours=neighbours, rng=rng)  # fmt: skip
            moved_for_coverage[moved] = True
            if moved.size == 1 and (unit == unit[moved[0]]).sum() > 1:
                pinned[moved] = True
    dropped = _enforce_buffer(pairs, site_split, pinned, sites["samples"].to_numpy())
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
    return Splits(split, report)


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
    geoms = sites["geometry"].to_numpy()
    close = [footprint_distance_m(geoms[i], geoms[j]) < buffer_m or _overlap(geoms[i], geoms[j]) for i, j in pairs]
    return pairs[np.asarray(close, dtype=bool)]


def _overlap(a: object, b: object) -> bool:
    import shapely

    return bool(shapely.area(shapely.intersection(a, b)) > 0)


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
    wanted = math.ceil(BLOCKS_PER_SHARE / min(f for f in fractions if f > 0))
    lon, lat = sites["lon"].to_numpy(), sites["lat"].to_numpy()
    finest = int(np.flatnonzero(widths >= zone_km).max()) if (widths >= zone_km).any() else 0
    for r in range(finest + 1):
        if np.unique(_h3.cells_from_points(lon, lat, r)).size >= wanted:
            return r
    return finest


def _cover(
    members: np.ndarray,
    target: int,
    unit: np.ndarray,
    site_split: np.ndarray,
    strata: np.ndarray,
    *,
    samples_of: np.ndarray,
    neighbours: list[set[int]],
    rng: np.random.Generator,
) -> np.ndarray:
    """Move sites of one stratum into split ``target``: a whole unit if one can go, else one site.

    A unit can go if its split keeps a site of every stratum of 3+ sites it takes sites of. Failing
    that, one site goes alone, from the split holding most of the stratum: the one with the fewest
    sites of its own stratum, then of any stratum, within the buffer (those are dropped later).
    Returns the sites moved.
    """
    counts = np.bincount(site_split[members], minlength=len(SPLITS))
    candidates = []
    for u in np.unique(unit[members]):
        sites_u = np.flatnonzero(unit == u)
        source = site_split[sites_u[0]]
        if source == target or (site_split[sites_u] != source).any():
            continue
        ok = True
        for stratum in set(strata[sites_u]):
            same = np.flatnonzero(strata == stratum)
            if same.size >= 3 and (site_split[same] == source).sum() <= (strata[sites_u] == stratum).sum():
                ok = False
                break
        if ok:
            candidates.append((int(samples_of[sites_u].sum()), rng.random(), sites_u))
    if candidates:
        moved = min(candidates, key=lambda c: (c[0], c[1]))[2]
    else:  # every site of the stratum is in one unit: move one site from the split that has the most
        source = int(np.argmax(counts))
        options = members[site_split[members] == source]
        own = strata[options[0]]
        cost = [(sum(strata[j] == own for j in neighbours[i]), len(neighbours[i]), rng.random(), i) for i in options]
        moved = np.array([min(cost)[3]])
    site_split[moved] = target
    return moved


def _enforce_buffer(
    pairs: np.ndarray, site_split: np.ndarray, pinned: np.ndarray, samples_of: np.ndarray
) -> np.ndarray:
    """Drop sites until no two sites of different splits are within the buffer; the dropped mask.

    Of a violating pair the pinned site (moved to cover a stratum) stays; otherwise the site of the
    smaller split (by samples) goes.
    """
    dropped = np.zeros(site_split.size, dtype=bool)
    for i, j in pairs:
        if dropped[i] or dropped[j] or site_split[i] == site_split[j]:
            continue
        size = np.bincount(site_split[~dropped], weights=samples_of[~dropped], minlength=len(SPLITS))
        if pinned[i] != pinned[j]:
            dropped[j if pinned[i] else i] = True
        else:
            dropped[i if size[site_split[i]] <= size[site_split[j]] else j] = True
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
    best = math.inf
    for i in a[centre <= reach]:
        for j in tree.query_ball_point(xyz[i], chord(reach)):
            best = min(best, footprint_distance_m(geoms[i], geoms[b[j]]))
    return round(best, 1)
