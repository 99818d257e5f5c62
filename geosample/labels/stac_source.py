"""``--source stac:COLLECTION``: land-cover COGs found through a STAC API, read through the fetch stage's code.

Each sample is labelled from the map of its own year: the year of its
window's middle, or where the collection has no map of that year, the
nearest year that has one (the earlier of two equally near), so ``before``
and ``after`` rows, or revisits, get the land cover of their own time, as
with Impact Observatory's annual maps (2017-2023) or ESA WorldCover 2020 and
2021. An item's year is that of the middle of its ``start_datetime`` to
``end_datetime`` (or its ``datetime``). An annual product (maps of several
years) with no map within ``max_year_gap`` years of a sample is refused; a
single map (one year) labels every sample, and ``label_year`` says which
year. Where several items of the chosen year meet a chip, they form a mosaic
(best first by nearness in time; first valid pixel wins).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import rasterio

from geosample.errors import SourceError
from geosample.labels.fractions import count_regions
from geosample.labels.grids import LabelGrid
from geosample.labels.sources import Slots, _resolution_m

_FALLBACK_YEARS = 50


class StacSource:
    """Land cover from the items of a STAC collection, one list of asset hrefs per sample."""

    def __init__(
        self,
        collection: str,
        *,
        stac: str | None,
        asset: str | None,
        samples: pd.DataFrame,
        scheme: str,
        sign: str | None = None,
        allow_local_assets: bool = False,
        max_year_gap: int = 2,
    ) -> None:
        from geosample.stac._hrefs import HrefPolicy
        from geosample.stac.fetch import make_signer
        from geosample.stac.search import find_items

        if not stac:
            raise SourceError(f"--source stac:{collection} needs --stac URL, the STAC API to search")
        self.name = f"{collection}@stac"
        self.scheme = scheme
        self.signer = make_signer(sign)
        ids = [str(sid) for sid in samples["sample_id"]]
        found = find_items(stac, collection, _widened(samples, ids, max_year_gap + 1), sort="time")
        missing = [sid for sid, items in found.items() if not items]
        if missing:
            found.update(find_items(stac, collection, _widened(samples, missing, _FALLBACK_YEARS), sort="time"))
        items, self.years = _of_nearest_year(samples, ids, found, max_year_gap, collection)
        if not any(items):
            raise SourceError(
                f"no item of collection {collection} in {stac} meets any of the {len(samples)} chips; "
                "check the collection and the plan's area"
            )
        self.asset = _pick_asset(collection, [i for group in items for i in group], asset)
        policy = HrefPolicy.for_source(stac, allow_local=allow_local_assets)  # no local or /vsi paths from a catalogue
        self.hrefs = [
            [policy.check(item.assets[self.asset].href, f"asset {self.asset!r} of item {item.id!r}") for item in group
             if self.asset in item.assets]
            for group in items
        ]  # fmt: skip
        first = next(h for group in self.hrefs for h in group)
        try:
            with rasterio.open(self.signer(first) if self.signer else first) as src:
                self.dtype = np.dtype(src.dtypes[0])
                self.nodata = src.nodata
                self.res_m = _resolution_m(src)
                if src.crs is None:
                    raise SourceError(f"asset {self.asset!r} of {collection} ({first}) has no CRS")
        except rasterio.RasterioIOError as exc:
            raise SourceError(f"cannot open asset {self.asset!r} of {collection} ({first}): {exc}") from None
        if self.dtype.kind not in "ui" or self.dtype.itemsize > 2:
            raise SourceError(f"asset {self.asset!r} of {collection} holds {self.dtype}; land cover needs integers")
        n = 1 << (8 * self.dtype.itemsize)
        self.offset = n // 2 if self.dtype.kind == "i" else 0
        self.slots = Slots((*(str(v - self.offset) for v in range(n)), "<nodata>"))

    def reader(self) -> StacReader:  # noqa: D102
        return StacReader(self.part(None))

    def part(self, grids: Sequence[LabelGrid] | None) -> StacPart:
        """The hrefs of ``grids``' samples only (all of them for None)."""
        hrefs = dict(enumerate(self.hrefs)) if grids is None else {g.index: list(self.hrefs[g.index]) for g in grids}
        return StacPart(self.name, hrefs, self.signer, self.nodata, self.offset, len(self.slots.values))


@dataclasses.dataclass(frozen=True)
class StacPart:
    """What a task needs of a STAC source: its chips' asset hrefs (by sample row), the signer, the value coding."""

    name: str
    hrefs: Mapping[int, list[str]]
    signer: Callable[[str], str] | None
    nodata: float | None
    offset: int
    n_slots: int

    @property
    def key(self) -> Hashable:
        """None: a reader per task (its hrefs); the files stay open in the thread's sources between tasks."""
        return None

    def reader(self) -> StacReader:  # noqa: D102
        return StacReader(self)

    def env(self) -> contextlib.AbstractContextManager[Any]:
        """GDAL's settings for remote COGs (see :func:`geosample.stac.reader.gdal_env`), for one task."""
        from geosample.stac.reader import gdal_env

        return gdal_env(sorted({h for hrefs in self.hrefs.values() for h in hrefs}))


class StacReader:
    """Reads each chip's hrefs (a mosaic, best first) onto its grid through ``geosample.stac.reader``.

    Sources stay open in the thread's :class:`~geosample.stac.reader.DatasetCache` (the one fetch's read
    threads use, bounded by ``GEOSAMPLE_OPEN_SOURCES``), so nearby chips decode each tile once.
    """

    def __init__(self, source: StacPart) -> None:
        from geosample.stac._work import _thread_cache

        self.source = source
        self.cache = _thread_cache(source.signer)
        self.n_slots = source.n_slots

    def counts(self, grid: LabelGrid) -> np.ndarray:  # noqa: D102
        from rasterio.crs import CRS

        from geosample.stac.grid import ChipGrid
        from geosample.stac.reader import read_with_nodata

        nodata_slot = self.n_slots - 1
        hrefs = self.source.hrefs[grid.index]
        if not hrefs:
            return count_regions(np.full((grid.size, grid.size), nodata_slot, dtype=np.int32), self.n_slots)
        chip = ChipGrid(CRS.from_epsg(grid.epsg), grid.transform, grid.size, grid.size)
        data, fill = read_with_nodata(hrefs, chip, bands=[1], resampling="nearest", cache=self.cache)
        slots = data.data[0].astype(np.int32) + self.source.offset
        invalid = data.mask[0] if np.ndim(data.mask) else np.zeros(slots.shape, dtype=bool)
        nodata = self.source.nodata if fill is None else fill
        if nodata is not None and math.isfinite(nodata):
            invalid = invalid | (data.data[0] == nodata)
        slots[invalid] = nodata_slot
        return count_regions(slots, self.n_slots)


def _widened(samples: pd.DataFrame, sample_ids: list[str], years: int) -> pd.DataFrame:
    """The samples again with windows of ± ``years`` about their middle, to find the maps of nearby years."""
    rows = samples[samples["sample_id"].astype(str).isin(sample_ids)].copy()
    middle = rows["start_datetime"] + (rows["end_datetime"] - rows["start_datetime"]) / 2
    rows["start_datetime"] = middle - pd.DateOffset(years=years)
    rows["end_datetime"] = middle + pd.DateOffset(years=years)
    return rows


def item_year(item: Any) -> int | None:
    """The year an item's map is of: the middle of its start/end range, else its datetime."""
    start, end = item.common_metadata.start_datetime, item.common_metadata.end_datetime
    if start is not None and end is not None:
        return (start + (end - start) / 2).year
    when = item.datetime or start or end
    return None if when is None else when.year


def _of_nearest_year(
    samples: pd.DataFrame, ids: list[str], found: dict[str, list[Any]], gap: int, collection: str
) -> tuple[list[list[Any]], list[int | None]]:
    """Per sample, the items of the map year nearest its own, and that year; refuses annual maps out of reach."""
    from geosample.labels.label import sample_years

    wanted = dict(zip(ids, sample_years(samples).tolist(), strict=True))
    chosen: list[list[Any]] = []
    years: list[int | None] = []
    seen: set[int] = set()
    far: list[tuple[str, int, int]] = []
    for sid in ids:
        by_year: dict[int | None, list[Any]] = {}
        for item in found.get(sid, []):
            by_year.setdefault(item_year(item), []).append(item)
        dated = [y for y in by_year if y is not None]
        if not dated:
            chosen.append(by_year.get(None, []))
            years.append(None)
            continue
        seen.update(dated)
        year = min(dated, key=lambda y: (abs(y - wanted[sid]), y))
        if abs(year - wanted[sid]) > gap:
            far.append((sid, wanted[sid], year))
        chosen.append(by_year[year])
        years.append(year)
    if far and len(seen) > 1:
        sid, want, year = far[0]
        have = ", ".join(str(y) for y in sorted(seen))
        raise SourceError(
            f"{len(far)} sample(s) have no {collection} map within {gap} year(s) of their window (e.g. {sid}: "
            f"{want}, nearest map {year}; maps found: {have}); plan within reach of those years or allow a larger "
            "--max-year-gap"
        )
    return chosen, years


def _pick_asset(collection: str, items: list[Any], asset: str | None) -> str:
    keys: dict[str, int] = {}
    for item in items:
        for key, value in item.assets.items():
            media = (value.media_type or "").lower()
            roles = value.roles or []
            if "tiff" in media or "data" in roles or key == asset:
                keys[key] = keys.get(key, 0) + 1
    if asset is not None:
        if asset not in keys:
            names = sorted({k for item in items for k in item.assets})
            raise SourceError(f"collection {collection} has no asset {asset!r}; its assets are: {', '.join(names)}")
        return asset
    if len(keys) != 1:
        names = ", ".join(sorted(keys)) or "none"
        raise SourceError(
            f"collection {collection} has {len(keys)} raster assets ({names}); name the land-cover one with --asset"
        )
    return next(iter(keys))
