"""The unit of work that runs on a thread or a Dask worker: read a few nearby chips, encode them.

A task is a handful of nearby chips that share their source items, read in
order through the worker thread's :class:`~geosample.stac.reader.DatasetCache`,
which keeps sources open across tasks: each source is opened once per thread
and its decoded tiles serve every chip that needs them. Workers return bytes
(COG, PNG) and their sha256; only the main process writes into ``DS``, so a
Dask cluster needs no shared file system.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from rasterio.enums import Resampling

from geosample.stac.grid import ChipGrid
from geosample.stac.presets import S2_OFFSET
from geosample.stac.reader import DatasetCache, ReadError, gdal_env, preview_png, read_with_nodata, write_cog

Signer = Callable[[str], str]

THREAD_OPEN_SOURCES = 16
"""Sources each worker thread keeps open between tasks (their decoded tiles stay in GDAL's bounded cache)."""


@dataclasses.dataclass(frozen=True)
class AssetSpec:
    """One asset of the chip: where its bands go and how they are treated."""

    key: str
    """Asset key in the items."""
    names: tuple[str, ...]
    """Output band names (one per band of the asset's file)."""
    categorical: bool = False
    """Read with nearest resampling whatever ``--resampling`` says."""
    s2_offset: bool = False
    """Sentinel-2 reflectance that carries the baseline-04.00 offset on some items."""
    scale: float | None = None
    """Scale to apply with ``--scale``."""
    offset: float | None = None
    """Offset to apply with ``--scale``."""


@dataclasses.dataclass(frozen=True)
class SourceRef:
    """One source item of a chip."""

    item_id: str
    """STAC item id."""
    hrefs: Mapping[str, str]
    """Asset key → href (unsigned)."""
    harmonize: bool = False
    """Remove the +1000 offset from this item's ``s2_offset`` assets."""


@dataclasses.dataclass(frozen=True)
class ChipJob:
    """One chip: its grid, file names and source items (best first; several make a mosaic)."""

    sample_id: str
    """The sample."""
    collection: str
    """The collection searched."""
    grid: ChipGrid
    """The chip's pixel grid."""
    sources: tuple[SourceRef, ...]
    """Source items, best first."""


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """Settings shared by every chip of a collection."""

    assets: tuple[AssetSpec, ...]
    """Assets in band order."""
    resampling: str = "nearest"
    """Resampling of continuous assets."""
    apply_scale: bool = False
    """Apply scale/offset and write float32."""
    preview: bool = False
    """Also encode a PNG preview."""
    retries: int = 3
    """Read retries per source."""

    @property
    def band_names(self) -> tuple[str, ...]:
        """All output band names, in file order."""
        return tuple(n for a in self.assets for n in a.names)


@dataclasses.dataclass(frozen=True)
class ChipResult:
    """What a worker made of one chip."""

    sample_id: str
    """The sample."""
    collection: str
    """The collection."""
    error: str | None = None
    """One line, when the chip failed."""
    cog: bytes | None = None
    """The chip file."""
    sha256: str | None = None
    """Of :attr:`cog`."""
    png: bytes | None = None
    """The preview."""
    valid_fraction: float = 0.0
    """Share of pixels with data in every band."""


_local = threading.local()
_caches: weakref.WeakSet[DatasetCache] = weakref.WeakSet()
_caches_lock = threading.Lock()


def _thread_cache(signer: Signer | None) -> DatasetCache:
    """This thread's open sources, kept across tasks: the next task on a nearby chip finds its tiles decoded."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = DatasetCache(signer, max_open=THREAD_OPEN_SOURCES)
        with _caches_lock:
            _caches.add(cache)
    cache.signer = signer
    return cache


def close_thread_caches() -> None:
    """Close the sources every thread keeps open (call once the threads are idle)."""
    with _caches_lock:
        caches = list(_caches)
    for cache in caches:
        cache.close()


def run_task(jobs: Sequence[ChipJob], options: ReadOptions, signer: Signer | None = None) -> list[ChipResult]:
    """Read, encode and hash each chip of one task; a chip's failure is its result, not an exception."""
    hrefs = sorted({h for job in jobs for src in job.sources for h in src.hrefs.values()})
    cache = _thread_cache(signer)
    results = []
    with gdal_env(hrefs):
        for job in jobs:
            try:
                results.append(_chip(job, options, cache))
            except (ReadError, ChipError) as exc:
                results.append(ChipResult(job.sample_id, job.collection, error=str(exc)))
    return results


class ChipError(ValueError):
    """A chip cannot be made from its items (an asset missing, band counts that disagree)."""


def _chip(job: ChipJob, options: ReadOptions, cache: DatasetCache) -> ChipResult:
    parts = []
    nodata: float | None = None
    for spec in options.assets:
        data, fill = _read_asset(job, spec, options, cache)
        if data.shape[0] != len(spec.names):
            raise ChipError(f"asset {spec.key!r} has {data.shape[0]} band(s), expected {len(spec.names)}")
        if options.apply_scale and (spec.scale is not None or spec.offset is not None):
            scaled = data.data.astype(np.float32) * np.float32(spec.scale if spec.scale is not None else 1.0)
            scaled += np.float32(spec.offset or 0.0)
            data = np.ma.MaskedArray(scaled, mask=data.mask)
        if nodata is None and fill is not None:
            nodata = fill
        parts.append(data)
    stacked = np.ma.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    if options.apply_scale and np.issubdtype(stacked.dtype, np.integer):
        stacked = stacked.astype(np.float32)
    if np.issubdtype(stacked.dtype, np.floating) and options.apply_scale:
        nodata = float("nan")
    mask = np.ma.getmaskarray(stacked)
    categorical = all(a.categorical for a in options.assets)
    cog = write_cog(stacked, job.grid, options.band_names, nodata=nodata, categorical=categorical)
    png = preview_png(stacked, _rgb_indexes(options.band_names)) if options.preview else None
    valid = float((~mask.any(axis=0)).mean())
    return ChipResult(job.sample_id, job.collection, None, cog, hashlib.sha256(cog).hexdigest(), png, valid)


def _read_asset(
    job: ChipJob, spec: AssetSpec, options: ReadOptions, cache: DatasetCache
) -> tuple[np.ma.MaskedArray, float | None]:
    """One asset onto the grid from the job's sources, harmonised per item, first valid pixel winning."""
    method = Resampling.nearest if spec.categorical else Resampling[options.resampling]
    out: np.ma.MaskedArray | None = None
    fill: float | None = None
    for src in job.sources:
        href = src.hrefs.get(spec.key)
        if href is None:
            raise ChipError(f"item {src.item_id!r} has no asset {spec.key!r}")
        part, src_nodata = read_with_nodata([href], job.grid, resampling=method, cache=cache, retries=options.retries)
        fill = fill if fill is not None else src_nodata
        if src.harmonize and spec.s2_offset:
            part = _remove_s2_offset(part)
        if out is None:
            out = part
        else:
            take = out.mask & ~part.mask
            out.data[take] = part.data[take]
            out.mask &= ~take
        if not out.mask.any():
            break
    if out is None:
        raise ChipError("no source item")
    return out, fill


def _remove_s2_offset(data: np.ma.MaskedArray) -> np.ma.MaskedArray:
    """Baseline 04.00+ digital numbers to the old scale: DN − 1000, valid pixels kept ≥ 1 (0 is nodata)."""
    values = data.data.astype(np.int32)
    shifted = np.maximum(values, S2_OFFSET + 1) - S2_OFFSET
    out = np.where(np.ma.getmaskarray(data), data.data, shifted.astype(data.dtype))
    return np.ma.MaskedArray(out, mask=np.ma.getmaskarray(data))


def _rgb_indexes(names: Sequence[str]) -> tuple[int, int, int]:
    """Positions of the red, green and blue bands among ``names`` (the first three otherwise)."""
    lowered = [n.lower() for n in names]
    for triple in (("red", "green", "blue"), ("b04", "b03", "b02"), ("sr_b4", "sr_b3", "sr_b2")):
        found = []
        for colour in triple:
            hits = [i for i, n in enumerate(lowered) if n == colour or n.endswith(f"_{colour}")]
            if not hits:
                break
            found.append(hits[0])
        if len(found) == 3:
            return found[0], found[1], found[2]
    return 0, min(1, len(names) - 1), min(2, len(names) - 1)
