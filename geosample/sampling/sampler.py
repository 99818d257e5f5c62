"""Hierarchical, stratified H3 sampling that never enumerates the fine grid.

Three resolutions are at work, coarse to fine:

* the **atlas** resolution ``A``: the only level whose cells are enumerated
  (those covering the AOI, at most ~20 000). Random probe points inside each
  atlas cell estimate how much of it every stratum covers;
* the **parent** resolution ``P``: the spacing rule, at most ``K`` sites per
  parent cell;
* the **sample** resolution ``R``: a site is the centre of one cell.

Each stratum receives a target from the allocation; candidates for it are
drawn by picking, among the atlas cells where the stratum was seen, one in
proportion to its area, descending to ``R`` by random child digits, and
keeping a candidate only if the layers at its centre say it is in the AOI,
on land (when asked) and in that stratum, its parent cell still has room,
and no site taken so far lies within the minimum distance
(:mod:`geosample.sampling.spacing`). Every cell of a stratum is so equally
likely per unit area (the atlas probes, taken first, are spread in
proportion to area too), which is what :func:`inclusion_probabilities`
states. The cost is proportional to the number of samples, not to the
number of fine cells.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import rasterio.features
from rasterio import Affine

from geosample import layers
from geosample.errors import AOIError, CapacityError
from geosample.layers._raster import apply_affine
from geosample.sampling import _h3
from geosample.sampling.aoi import AOI
from geosample.sampling.spacing import SpacingIndex
from geosample.sampling.strata import Dimension, Points

NONE_LABEL = "none"
_MAX_ATLAS_CELLS = 20_000
_PROBE_BUDGET = 400_000
_MAX_COVER_PIXELS = 6_000_000
_ROUND_CANDIDATES = 2_000_000
_MAX_ROUNDS = 200
_EXHAUSTED_FRESH_SHARE = 0.05


@dataclasses.dataclass
class Classifier:
    """Decides, at a batch of points, AOI membership, land and stratum."""

    aoi: AOI
    dims: list[Dimension]
    land_only: bool
    keys: dict[tuple[int, ...], int] = dataclasses.field(default_factory=dict)
    """Stratum code tuple -> stratum id, in order of discovery."""

    def classify(
        self, lon: np.ndarray, lat: np.ndarray, target: np.ndarray | None = None
    ) -> tuple[np.ndarray, dict[str, int]]:
        """Stratum id per point (-1 where rejected) and rejection counts.

        With ``target`` (a stratum id per point), a point is kept only in its
        target stratum; dimensions are tested cheapest first and each test
        runs only on the points still alive, so most misses cost one lookup.
        """
        points = Points(lon, lat)
        n = len(points)
        alive = np.arange(n)
        # With targets, a point's codes are its target's wherever it survives: no table of codes is kept.
        codes = np.full((n, len(self.dims)), -1, dtype=np.int64) if target is None else None
        key_codes = None if target is None else self._key_codes()
        reasons: dict[str, int] = {}
        for d in sorted(range(len(self.dims)), key=lambda i: self.dims[i].cost):
            part = points.subset(alive)
            got = self.dims[d].classify(part)
            points.learn(alive, part)  # the AOI test below reuses a country lookup made here
            if codes is not None:
                codes[alive, d] = got
            else:
                alive = alive[got == key_codes[target[alive], d]]
        sub = points.subset(alive)
        inside = self.aoi.contains(sub)
        reasons["outside_aoi"] = int((~inside).sum())
        valid = inside
        if self.land_only:
            land = sub.country >= 0
            reasons["sea"] = int((valid & ~land).sum())
            valid = valid & land
            if codes is not None:
                has_data = (codes[alive] >= 0).all(axis=1)
            else:
                has_data = (key_codes >= 0).all(axis=1)[target[alive]]
            reasons["no_layer_data"] = int((valid & ~has_data).sum())
            valid = valid & has_data
        alive = alive[valid]
        out = np.full(n, -1, dtype=np.int64)
        if alive.size:
            if target is not None:
                out[alive] = target[alive]
            else:
                assert codes is not None
                shifted = codes[alive] + 1
                radix = shifted.max(axis=0) + 1
                key = np.zeros(alive.size, dtype=np.int64)
                for d in range(shifted.shape[1]):
                    key = key * radix[d] + shifted[:, d]
                _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
                ids = np.array([self._id(tuple(int(v) for v in codes[alive[i]])) for i in first], dtype=np.int64)
                out[alive] = ids[inverse.ravel()]
        return out, reasons

    def _key_codes(self) -> np.ndarray:
        return np.array(list(self.keys), dtype=np.int64).reshape(len(self.keys), len(self.dims))

    def _id(self, key: tuple[int, ...]) -> int:
        if key not in self.keys:
            self.keys[key] = len(self.keys)
        return self.keys[key]

    def labels(self) -> list[tuple[str, ...]]:
        """Per stratum id, the value of each dimension."""
        out = []
        for key in self.keys:
            out.append(tuple(NONE_LABEL if c < 0 else d.categories[c] for d, c in zip(self.dims, key, strict=True)))
        return out


@dataclasses.dataclass
class Atlas:
    """The enumerated coarse cells and the strata estimated inside them."""

    res: int
    cells: np.ndarray
    """Atlas cells (uint64)."""
    area_km2: np.ndarray
    """Area of each atlas cell."""
    cell_of_entry: np.ndarray
    """Sparse (cell, stratum) table: atlas cell position of each entry."""
    stratum_of_entry: np.ndarray
    """Stratum id of each entry."""
    share_of_entry: np.ndarray
    """Share of the cell's probes that fell in the stratum."""
    probes_per_cell: int
    """Probes per atlas cell of average area (each cell gets a number in proportion to its area)."""
    n_probes: int
    rejected: dict[str, int]
    probe_cells: np.ndarray
    """Probes that landed in a stratum: uniform random site cells at the sample resolution."""
    probe_stratum: np.ndarray
    """Their stratum ids."""
    probe_lon: np.ndarray | None = None
    """Their centres' longitudes."""
    probe_lat: np.ndarray | None = None
    """Their centres' latitudes."""

    def stratum_area_km2(self, n_strata: int) -> np.ndarray:
        """Estimated area of each stratum inside the AOI."""
        area = self.area_km2[self.cell_of_entry] * self.share_of_entry
        return np.bincount(self.stratum_of_entry, weights=area, minlength=n_strata)

    @property
    def valid_area_km2(self) -> float:
        """Estimated area where a site may lie."""
        return float((self.area_km2[self.cell_of_entry] * self.share_of_entry).sum())


def choose_atlas_res(aoi: AOI, max_res: int) -> int:
    """The finest resolution (≤ ``max_res``) at which the AOI needs ≤ 20 000 cells."""
    area = estimate_area_km2(aoi)
    res = 0
    while res < max_res and area / _h3.mean_cell_area_km2(res + 1) <= _MAX_ATLAS_CELLS:
        res += 1
    return res


def estimate_area_km2(aoi: AOI) -> float:
    """Area of the AOI from a ~1-million-pixel rasterisation over its bounds."""
    west, south, east, north = aoi.bounds
    px = max(math.sqrt((east - west) * (north - south) / 1e6), 1e-6)
    mask, transform = _rasterise(aoi, px, all_touched=False)
    if not mask.any():  # smaller than one pixel: fall back to a planar estimate
        mask, transform = _rasterise(aoi, px / 20, all_touched=True)
    rows = np.flatnonzero(mask.any(axis=1))
    lat = transform.f + (rows + 0.5) * transform.e
    km_per_deg = 111.32
    pixel_km2 = (px * km_per_deg) ** 2 * np.cos(np.radians(lat))
    return float((mask[rows].sum(axis=1) * pixel_km2).sum())


def _rasterise(aoi: AOI, px: float, *, all_touched: bool) -> tuple[np.ndarray, object]:
    """The AOI as a boolean mask on a ``px``-degree grid over its bounds.

    Outlines simplified by less than a tenth of a pixel are used when the
    AOI has them (country-based AOIs): the mask is the same, found faster.
    """
    west, south, east, north = aoi.bounds
    width = max(1, math.ceil((east - west) / px))
    height = max(1, math.ceil((north - south) / px))
    transform = Affine(px, 0.0, west, 0.0, -px, north)
    mask = rasterio.features.rasterize(
        ((g, 1) for g in aoi.shapes(tolerance=px / 10)),
        out_shape=(height, width),
        transform=transform,
        all_touched=all_touched,
        dtype="uint8",
    ).astype(bool)
    return mask, transform


def cover_cells(aoi: AOI, res: int) -> np.ndarray:
    """Cells at ``res`` that overlap the AOI (those of every touched pixel's centre and corners)."""
    west, south, east, north = aoi.bounds
    px = _h3_edge_deg(res) / 2
    while (east - west) * (north - south) / px**2 > _MAX_COVER_PIXELS:
        px *= 1.5
    mask, transform = _rasterise(aoi, px, all_touched=True)
    rows, cols = np.nonzero(mask)
    corner = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=bool)
    for dr in (0, 1):
        for dc in (0, 1):
            corner[rows + dr, cols + dc] = True
    crow, ccol = np.nonzero(corner)
    x = np.concatenate([transform.c + (cols + 0.5) * px, transform.c + ccol * px])
    y = np.concatenate([transform.f - (rows + 0.5) * px, transform.f - crow * px])
    x = np.clip(x, -180.0, 180.0)
    y = np.clip(y, -90.0, 90.0)
    return np.unique(_h3.cells_from_points(x, y, res))


def _h3_edge_deg(res: int) -> float:
    import h3

    return float(h3.average_hexagon_edge_length(res, "km")) / 111.32


def build_atlas(
    classifier: Classifier,
    res: int,
    sample_res: int,
    rng: np.random.Generator,
    heterogeneity: bool = False,
) -> tuple[Atlas, np.ndarray | None]:
    """Enumerate the AOI's atlas cells and probe the strata inside them."""
    cells = cover_cells(classifier.aoi, res)
    if cells.size == 0:
        raise AOIError(f"the AOI {classifier.aoi.label!r} covers no area; give a polygon with an area")
    per_cell = int(np.clip(math.ceil(_PROBE_BUDGET / cells.size), 16, 256))
    # Probes in proportion to each cell's area (randomly rounded), so that they are uniform per km².
    areas = _h3.cell_areas_km2(cells)
    exact = per_cell * areas / areas.mean()
    per_cell_count = np.maximum(np.floor(exact + rng.random(cells.size)).astype(np.int64), 1)
    probe_cells = np.repeat(np.arange(cells.size), per_cell_count)
    probes = _h3.random_descendants(cells[probe_cells], sample_res, rng)
    lon, lat = _h3.centres(probes)
    sid, rejected = classifier.classify(lon, lat)
    ok = sid >= 0
    pairs = probe_cells[ok] * (len(classifier.keys) + 1) + sid[ok]
    uniq, counts = np.unique(pairs, return_counts=True)
    cell_of_entry = uniq // (len(classifier.keys) + 1)
    stratum_of_entry = uniq % (len(classifier.keys) + 1)
    keep = np.unique(cell_of_entry)
    remap = np.full(cells.size, -1, dtype=np.int64)
    remap[keep] = np.arange(keep.size)
    atlas = Atlas(
        res=res,
        cells=cells[keep],
        area_km2=areas[keep],
        cell_of_entry=remap[cell_of_entry],
        stratum_of_entry=stratum_of_entry.astype(np.int64),
        share_of_entry=counts / per_cell_count[cell_of_entry],
        probes_per_cell=per_cell,
        n_probes=int(probe_cells.size),
        rejected=rejected,
        probe_cells=probes[ok],
        probe_stratum=sid[ok],
        probe_lon=lon[ok],
        probe_lat=lat[ok],
    )
    lsi = landscape_shape_index(atlas.cells) if heterogeneity else None
    return atlas, lsi


def landscape_shape_index(cells: np.ndarray) -> np.ndarray:
    """Landscape shape index of MODIS land cover over each cell's bounding box.

    LSI = 0.25·E/√A (McGarigal's FRAGSTATS, landscape level), with E the
    number of pixel edges between different classes plus the window's
    perimeter, and A its number of pixels: 1 for a uniform square, growing
    with fragmentation. Edge counts come from summed-area tables, so each
    cell costs O(1).
    """
    import h3

    with rasterio.open(layers.layer_path("modis_igbp_2019_0p05deg.tif")) as src:
        grid = src.read(1)
        inverse = ~src.transform
    horizontal = np.zeros((grid.shape[0] + 1, grid.shape[1]), dtype=np.int32)
    horizontal[1:, 1:] = np.cumsum(np.cumsum(grid[:, 1:] != grid[:, :-1], axis=0, dtype=np.int32), axis=1)
    vertical = np.zeros((grid.shape[0], grid.shape[1] + 1), dtype=np.int32)
    vertical[1:, 1:] = np.cumsum(np.cumsum(grid[1:, :] != grid[:-1, :], axis=0, dtype=np.int32), axis=1)
    del grid

    def box_sum(sat: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> int:
        if r1 <= r0 or c1 <= c0:
            return 0
        return int(sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0])

    out = np.empty(cells.size)
    for i, cell in enumerate(cells.tolist()):
        ring = np.array(h3.api.basic_int.cell_to_boundary(cell))
        lats, lons = ring[:, 0], ring[:, 1]
        spans = [(lons.min(), lons.max())]
        if lons.max() - lons.min() > 180:  # crosses the antimeridian
            spans = [(lons[lons > 0].min(), 180.0), (-180.0, lons[lons < 0].max())]
        edges = pixels = perimeter = 0
        for west, east in spans:
            c0, r0 = (int(np.floor(v)) for v in apply_affine(inverse, west, lats.max()))
            c1, r1 = (int(np.ceil(v)) for v in apply_affine(inverse, east, lats.min()))
            r0, r1 = max(r0, 0), min(max(r1, r0 + 1), horizontal.shape[0] - 1)
            c0, c1 = max(c0, 0), min(max(c1, c0 + 1), vertical.shape[1] - 1)
            h, w = r1 - r0, c1 - c0
            edges += box_sum(horizontal, r0, r1, c0, c1 - 1) + box_sum(vertical, r0, r1 - 1, c0, c1)
            pixels += h * w
            perimeter += 2 * (h + w)
        out[i] = 0.25 * (edges + perimeter) / math.sqrt(max(pixels, 1))
    return out


def auto_parent_res(valid_area_km2: float, n: int, k: int, atlas_res: int, sample_res: int) -> int:
    """The coarsest resolution (≥ atlas, ≤ sample) with room for 4× the sites."""
    for res in range(atlas_res, sample_res + 1):
        if k * valid_area_km2 / _h3.mean_cell_area_km2(res) >= 4 * n:
            return res
    return sample_res


def capacity(valid_area_km2: float, parent_res: int, k: int) -> int:
    """Estimated number of sites the valid area holds under the spacing rule."""
    return int(k * valid_area_km2 / _h3.mean_cell_area_km2(parent_res))


@dataclasses.dataclass
class DrawResult:
    """Accepted sites and the bookkeeping the report needs."""

    cells: np.ndarray
    """Site cells at the sample resolution (uint64)."""
    stratum: np.ndarray
    """Stratum id of each site."""
    exhausted: np.ndarray
    """Per stratum: drawing stopped before its target was met."""
    rounds: int
    candidates: int
    rare: np.ndarray
    """Per stratum: it stopped because candidates rarely landed in it (the budget
    ran out), not because its parent cells were seen to be used up."""
    lon: np.ndarray | None = None
    """Centre longitude of each site (``None`` when the ``used`` sites' were not given)."""
    lat: np.ndarray | None = None
    """Centre latitude of each site."""


class _Sites:
    """Accepted sites with the spacing rules and per-stratum quotas enforced.

    Two spacing rules: at most ``max_per_parent`` sites per parent cell, and,
    with a ``spacing`` index, no two sites closer than its distance. The index
    is shared across calls (and with later samplers, e.g. reserves) and holds
    every site taken so far, ``used`` ones included. ``used`` is (cells, strata),
    with their centres (lon, lat) after them when known.
    """

    def __init__(
        self,
        parent_res: int,
        max_per_parent: int,
        need: np.ndarray,
        used: tuple[np.ndarray, ...] | None,
        spacing: SpacingIndex | None = None,
    ) -> None:
        self.parent_res = parent_res
        self.max_per_parent = max_per_parent
        self.need = need
        self.spacing = spacing
        self.cells = [] if used is None else [used[0]]
        self.strata = [] if used is None else [used[1]]
        # The sites' centres, known from their candidates (None: the used sites' were not given).
        self.lon: list[np.ndarray] | None = [] if used is None else list(used[2:3]) or None
        self.lat: list[np.ndarray] | None = [] if used is None else list(used[3:4]) or None
        # Sorted site cells, and sorted parent cells with their site counts; a round's
        # accepted sites are inserted in place (one pass over the arrays, no re-sort).
        empty = np.empty(0, dtype=np.uint64)
        self.taken = _sorted_unique(used[0]) if used is not None else empty
        self.parents, self.parent_counts = _add_counts(empty, np.empty(0, dtype=np.int64), empty)
        if used is not None:
            self.parents, self.parent_counts = _add_counts(
                self.parents, self.parent_counts, _h3.parent(used[0], parent_res)
            )

    def offer(
        self,
        cand: np.ndarray,
        stratum: np.ndarray,
        rng: np.random.Generator,
        lon: np.ndarray | None = None,
        lat: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Accept candidates (already known to be in ``stratum``) in random order.

        ``lon``/``lat`` are the candidates' centres, if known (else computed
        where the minimum distance needs them). Returns the per-candidate
        "fresh" mask (its site cell, a slot in its parent cell and, for those
        measured, room under the minimum distance were free) and the accepted
        mask.
        """
        order = rng.permutation(cand.size)
        cand, stratum = cand[order], stratum[order]
        if lon is not None and lat is not None:
            lon, lat = lon[order], lat[order]
        cand_parent = _h3.parent(cand, self.parent_res)
        # A site cell is taken once; a parent cell holds at most K sites. The lookups run on the
        # candidates sorted by cell (so are their parents), whose binary searches walk forwards.
        by_cell = np.argsort(cand, kind="stable")
        sorted_cand = cand[by_cell]
        first = np.ones(cand.size, dtype=bool)  # the sort is stable: a cell's first occurrence comes first
        first[1:] = sorted_cand[1:] != sorted_cand[:-1]
        fresh = np.empty(cand.size, dtype=bool)
        fresh[by_cell] = first & ~_in_sorted(self.taken, sorted_cand)
        used_slots = np.empty(cand.size, dtype=np.int64)
        used_slots[by_cell] = _lookup_counts(self.parents, self.parent_counts, cand_parent[by_cell])
        slot = _rank_within_group(cand_parent, fresh) + used_slots
        fresh &= slot < self.max_per_parent
        eligible = fresh
        if self.spacing is not None:
            # Distances are measured only for the first few fresh candidates of each stratum (twice its
            # need, and some); the others wait for a later round.
            room = _rank_within_group(stratum, fresh) < 2 * self.need[stratum] + 16
            idx = np.flatnonzero(fresh & room)
            if lon is None or lat is None:
                x, y = _h3.centres(cand[idx])
            else:
                x, y = lon[idx], lat[idx]
            ok = self.spacing.thin(x, y, cand[idx])
            fresh[idx[~ok]] = False
            eligible = np.zeros_like(fresh)
            eligible[idx[ok]] = True
            kept_lonlat = (idx[ok], x[ok], y[ok])
        keep = eligible & (_rank_within_group(stratum, eligible) < self.need[stratum])
        accepted, accepted_stratum = cand[keep], stratum[keep]
        if accepted.size:
            self.cells.append(accepted)
            self.strata.append(accepted_stratum)
            if self.lon is not None and self.lat is not None:
                x, y = (lon[keep], lat[keep]) if lon is not None and lat is not None else _h3.centres(accepted)
                self.lon.append(x)
                self.lat.append(y)
            self.taken = _insert_sorted(self.taken, accepted)  # accepted cells are fresh: new and distinct
            self.parents, self.parent_counts = _add_counts(
                self.parents, self.parent_counts, _h3.parent(accepted, self.parent_res)
            )
            self.need -= np.bincount(accepted_stratum, minlength=self.need.size)
            if self.spacing is not None:
                where, x, y = kept_lonlat
                taken = keep[where]
                self.spacing.add(x[taken], y[taken], cand[where[taken]])
        unshuffle = np.empty_like(order)
        unshuffle[order] = np.arange(order.size)
        return fresh[unshuffle], keep[unshuffle]


def draw(
    classifier: Classifier,
    atlas: Atlas,
    targets: np.ndarray,
    *,
    sample_res: int,
    parent_res: int,
    max_per_parent: int,
    rng: np.random.Generator,
    proposal_weight: np.ndarray | None = None,
    used: tuple[np.ndarray, ...] | None = None,
    progress: Callable[[int], None] | None = None,
    spacing: SpacingIndex | None = None,
) -> DrawResult:
    """Draw ``targets[s]`` sites for each stratum ``s``.

    The atlas probes come first: they are uniform random cells of the AOI
    whose strata are already known, so every stratum takes what it needs
    from its own probes before any new candidate is drawn.

    Args:
        classifier: Decides each candidate's stratum.
        atlas: Atlas cells, stratum shares and probes.
        targets: Sites wanted per stratum id.
        sample_res: Resolution of the sites.
        parent_res: Resolution of the spacing cells.
        max_per_parent: At most this many sites per spacing cell.
        rng: Random generator.
        proposal_weight: Extra weight per atlas cell (e.g. heterogeneity).
        used: Sites already accepted (cells, strata) from an earlier call,
            whose parent cells count against the spacing rule; their centres
            (lon, lat) may follow, and the result then carries every site's.
        progress: Called with the number of sites accepted in each round.
        spacing: The minimum-distance index, holding every site taken so far
            (``used`` ones included); accepted sites are added to it.
    """
    n_strata = targets.size
    # Atlas cells in proportion to their area (times the proposal weight), among those where the stratum
    # was seen; a candidate is kept only in its stratum, so a stratum's cells are equally likely per km².
    entry_weight = atlas.area_km2[atlas.cell_of_entry].copy()
    if proposal_weight is not None:
        entry_weight = entry_weight * proposal_weight[atlas.cell_of_entry]
    by_stratum = np.argsort(atlas.stratum_of_entry, kind="stable")
    bounds = np.searchsorted(atlas.stratum_of_entry[by_stratum], np.arange(n_strata + 1))
    cumulative = []
    acceptance = np.zeros(n_strata)
    for s in range(n_strata):
        entries = by_stratum[bounds[s] : bounds[s + 1]]
        w = entry_weight[entries]
        cumulative.append((entries, np.cumsum(w) / w.sum() if w.sum() > 0 else np.array([])))
        if w.sum() > 0:
            acceptance[s] = float((w / w.sum() * atlas.share_of_entry[entries]).sum())

    # Parent cells reachable from the atlas cells where a stratum was seen bound
    # what it can hold; a stratum rarer than its probes promised stops after a
    # candidate budget instead of drawing for ever.
    children = float(7 ** (parent_res - atlas.res))
    reachable = max_per_parent * np.bincount(atlas.stratum_of_entry, minlength=n_strata) * children
    if used is not None:
        reachable = reachable - np.bincount(used[1], minlength=n_strata)
    need = np.minimum(targets.astype(np.int64), np.maximum(reachable, 0).astype(np.int64))
    capped = need < targets
    sites = _Sites(parent_res, max_per_parent, need, used, spacing)
    exhausted = np.array([c[1].size == 0 for c in cumulative]) & (need > 0)
    if used is None and proposal_weight is None:
        _, kept = sites.offer(atlas.probe_cells, atlas.probe_stratum, rng, atlas.probe_lon, atlas.probe_lat)
        if progress is not None:
            progress(int(kept.sum()))
    budget = 2000 + 20 * sites.need
    tried_total = np.zeros(n_strata)
    recent_hits = np.zeros(n_strata)
    recent_fresh = np.zeros(n_strata)
    misses = np.zeros(n_strata, dtype=np.int64)
    rare_total = np.zeros(n_strata, dtype=bool)
    rounds = total_candidates = 0
    while rounds < _MAX_ROUNDS:
        active = np.flatnonzero((sites.need > 0) & ~exhausted)
        if active.size == 0:
            break
        rounds += 1
        need_active = sites.need[active]
        wanted = np.ceil(need_active * 1.25 / np.maximum(acceptance[active], 1e-3)).astype(np.int64) + 8
        wanted = np.minimum(wanted, need_active * 10 + 1000)
        if wanted.sum() > _ROUND_CANDIDATES:
            wanted = np.maximum(1, wanted * _ROUND_CANDIDATES // wanted.sum())
        target_of = np.repeat(active, wanted)
        cell_pos = np.empty(target_of.size, dtype=np.int64)
        offset = 0
        for s, count in zip(active.tolist(), wanted.tolist(), strict=True):
            entries, cdf = cumulative[s]
            pick = np.minimum(np.searchsorted(cdf, rng.random(count), side="right"), cdf.size - 1)
            cell_pos[offset : offset + count] = atlas.cell_of_entry[entries[pick]]
            offset += count
        candidates = _h3.random_descendants(atlas.cells[cell_pos], sample_res, rng)
        total_candidates += candidates.size
        lon, lat = _h3.centres(candidates)
        sid, _ = classifier.classify(lon, lat, target_of)
        matched = np.flatnonzero(sid == target_of)
        fresh, kept = sites.offer(candidates[matched], target_of[matched], rng, lon[matched], lat[matched])
        if progress is not None and kept.any():
            progress(int(kept.sum()))
        # Adapt acceptance and detect strata whose parent cells are used up.
        tried = np.bincount(target_of, minlength=n_strata)
        tried_total += tried
        hits = np.bincount(target_of[matched], minlength=n_strata)
        fresh_hits = np.bincount(target_of[matched][fresh], minlength=n_strata)
        got = np.bincount(target_of[matched][kept], minlength=n_strata)
        observed = (got + 0.5) / (tried + 1.0)
        acceptance[active] = np.maximum(observed[active], 0.25 * acceptance[active])
        # The share of hits landing in unused parent cells estimates the unused
        # share of the stratum; decayed sums pool the last few rounds.
        recent_hits = 0.5 * recent_hits + hits
        recent_fresh = 0.5 * recent_fresh + fresh_hits
        open_need = sites.need > 0
        full = open_need & (recent_hits >= 20) & (recent_fresh < _EXHAUSTED_FRESH_SHARE * recent_hits)
        misses = np.where(hits == 0, misses + (tried > 0), 0)
        rare = open_need & ~full & ~exhausted & ((misses >= 8) | (tried_total > budget))
        exhausted |= full | rare
        rare_total |= rare
    rare_total |= (sites.need > 0) & ~exhausted & ~capped
    exhausted |= (sites.need > 0) | capped
    all_cells = np.concatenate(sites.cells) if sites.cells else np.empty(0, dtype=np.uint64)
    all_strata = np.concatenate(sites.strata) if sites.strata else np.empty(0, dtype=np.int64)
    lon = lat = None
    if sites.lon is not None and sites.lat is not None:
        lon = np.concatenate(sites.lon) if sites.lon else np.empty(0)
        lat = np.concatenate(sites.lat) if sites.lat else np.empty(0)
    rare = rare_total & (sites.need > 0)
    return DrawResult(all_cells, all_strata, exhausted, rounds, total_candidates, rare, lon, lat)


def _rank_within_group(groups: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Rank of each masked item among masked items of its group, in order; huge where unmasked."""
    rank = np.full(groups.size, np.iinfo(np.int64).max // 2, dtype=np.int64)
    idx = np.flatnonzero(mask)
    if idx.size:
        order = idx[np.argsort(groups[idx], kind="stable")]
        g = groups[order]
        starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
        run = np.repeat(starts, np.diff(np.r_[starts, g.size]))
        rank[order] = np.arange(g.size) - run
    return rank


def _lookup_counts(keys: np.ndarray, counts: np.ndarray, query: np.ndarray) -> np.ndarray:
    if keys.size == 0:
        return np.zeros(query.size, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return np.where(keys[pos] == query, counts[pos], 0)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted.

    By sorting: ``np.unique``'s hash table (numpy ≥ 2.3) is many times slower
    than a sort on H3 indexes, which differ only in their low bits.
    """
    out = np.sort(values)
    if out.size > 1:
        out = out[np.r_[True, out[1:] != out[:-1]]]
    return out


def _in_sorted(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Whether each query value is among the sorted ``keys`` (a binary search each)."""
    if keys.size == 0:
        return np.zeros(query.size, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return keys[pos] == query


def _insert_sorted(keys: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The sorted ``keys`` with the ``new`` values (none of them already there) merged in."""
    new = np.sort(new)
    return np.insert(keys, np.searchsorted(keys, new), new)


def _add_counts(keys: np.ndarray, counts: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys and their counts, after counting each of ``new`` once more."""
    uniq, times = np.unique(new, return_counts=True)
    pos = np.searchsorted(keys, uniq)
    known = np.zeros(uniq.size, dtype=bool)
    inside = pos < keys.size
    known[inside] = keys[pos[inside]] == uniq[inside]
    counts = counts.copy()
    counts[pos[known]] += times[known]
    fresh = ~known
    return np.insert(keys, pos[fresh], uniq[fresh]), np.insert(counts, pos[fresh], times[fresh].astype(np.int64))


def check_capacity(n: int, valid_area_km2: float, parent_res: int, k: int, aoi_label: str) -> None:
    """Refuse a plan that cannot fit before drawing anything."""
    if valid_area_km2 <= 0:
        return
    cap = capacity(valid_area_km2, parent_res, k)
    if n > cap:
        raise CapacityError(
            f"the AOI {aoi_label!r} holds about {cap} sample(s) at parent resolution {parent_res} with "
            f"--max-per-parent {k}, fewer than --samples {n}; ask for at most {cap}, or {finer_hint(parent_res)}"
        )


def finer_hint(parent_res: int) -> str:
    """How to make room for more samples."""
    if parent_res >= 15:
        return "use a larger --max-per-parent"
    return f"use a finer --parent-res (and --res) than {parent_res}, or a larger --max-per-parent"


def inclusion_probabilities(
    cells: np.ndarray,
    strata: np.ndarray,
    atlas: Atlas,
    proposal_weight: np.ndarray | None = None,
    cell_area: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The probability that each site's cell was selected, and each stratum's estimated area.

    A stratum ``h`` with ``n_h`` sites and estimated area ``A_h`` (the atlas
    cells' areas times the share of their probes in ``h``) is drawn uniformly
    per km², so a cell of area ``a`` was selected with probability
    ``π = n_h · a / A_h`` — that is ``n_h / N_h``, with ``N_h = A_h / a`` the
    stratum's size in cells of this size. With a proposal weight ``g`` per
    atlas cell (heterogeneity allocation), ``π = n_h · g_c · a / Σ_c g_c · A_{h,c}``.
    Capped at 1 (a stratum smaller than its sites' cells). ``cell_area``: the
    cells' areas in km², when known.
    """
    n_strata = int(atlas.stratum_of_entry.max(initial=-1)) + 1
    n_strata = max(n_strata, int(strata.max(initial=-1)) + 1)
    area_entry = atlas.area_km2[atlas.cell_of_entry] * atlas.share_of_entry
    weight_entry = area_entry if proposal_weight is None else area_entry * proposal_weight[atlas.cell_of_entry]
    area = np.bincount(atlas.stratum_of_entry, weights=area_entry, minlength=n_strata)
    weighted = np.bincount(atlas.stratum_of_entry, weights=weight_entry, minlength=n_strata)
    count = np.bincount(strata, minlength=n_strata)
    if cell_area is None:
        cell_area = _h3.cell_areas_km2(cells)
    g = np.ones(cells.size)
    if proposal_weight is not None:
        pos = np.minimum(np.searchsorted(atlas.cells, _h3.parent(cells, atlas.res)), atlas.cells.size - 1)
        g = np.where(atlas.cells[pos] == _h3.parent(cells, atlas.res), proposal_weight[pos], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        prob = count[strata] * g * cell_area / weighted[strata]
    return np.clip(np.nan_to_num(prob, nan=1.0, posinf=1.0), 0.0, 1.0), area


def spacing_capacity(atlas: Atlas, min_distance_m: float, rng: np.random.Generator) -> int:
    """About how many sites the AOI holds at ``min_distance_m`` apart: a random greedy packing of the probes.

    The probes are uniform random valid points, so packing them in random
    order imitates the draw; with the distance large against their spacing,
    it comes close to the random-packing limit (~55 % of the area covered
    by disks of diameter ``D``). A lower bound when the probes are sparse.
    """
    points = atlas.probe_cells
    area_m2 = atlas.valid_area_km2 * 1e6
    if points.size == 0 or area_m2 <= 0:
        return 0
    # Enough probes for ~50 per disk of diameter D at saturation, and few enough pairs to enumerate.
    disk = math.pi * min_distance_m**2 / 4
    wanted = int(min(points.size, max(2000, 50 * 0.55 * area_m2 / disk), 4e5))
    pick = rng.permutation(points.size)[:wanted]
    lon, lat = _h3.centres(points[pick])
    return int(SpacingIndex(min_distance_m).thin(lon, lat, points[pick]).sum())


def spacing_fits(n: int, atlas: Atlas, min_distance_m: float) -> bool:
    """Whether ``n`` sites at ``min_distance_m`` clearly fit (half the random-packing limit of the valid area)."""
    disk_km2 = math.pi * (min_distance_m / 1000) ** 2 / 4
    return n * disk_km2 <= 0.5 * 0.547 * atlas.valid_area_km2
