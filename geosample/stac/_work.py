"""The unit of work that runs on a thread or a Dask worker: read a few nearby chips, encode them.

A task is a run of nearby chips that share their source items (see
:func:`task_chunks`), read in order through the worker thread's
:class:`~geosample.stac.reader.DatasetCache`, which keeps sources open across
tasks: each source is opened once per thread and its decoded tiles serve
every chip that needs them. While a thread reads the next chip, the previous
one is encoded (COG, PNG, sha256) on the process's encoder threads (one per two cores): GDAL,
ISA-L (the chips' DEFLATE, :mod:`geosample.stac._cog`) and hashlib release the
GIL, so reading and encoding overlap on two cores even with one worker.
Workers return bytes and their sha256; only the main process writes into
``DS``, so a Dask cluster needs no shared file system.

Two bounds keep a worker's memory flat however many sources it meets:

* ``GEOSAMPLE_OPEN_SOURCES`` (default :data:`THREAD_OPEN_SOURCES`): sources each read thread keeps open,
  least recently used closed first (an overview level counts as a source);
* ``GDAL_CACHEMAX`` (default :data:`~geosample.stac.reader.BLOCK_CACHE_BYTES`, 256 MiB): GDAL's cache of
  decoded tiles, shared by every open source of the process.

Both are read where the work runs (each Dask worker's own environment).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from rasterio.enums import Resampling

from geosample.errors import ConfigError
from geosample.stac.grid import ChipGrid
from geosample.stac.observe import CODE_COLOURS, CODE_NAMES, Observation, ObservationPlan, observe
from geosample.stac.presets import S2_OFFSET
from geosample.stac.reader import (
    DatasetCache,
    ReadError,
    gdal_env,
    preview_png,
    read_with_nodata,
    write_class_cog,
    write_cog,
)

Signer = Callable[[str], str]

THREAD_OPEN_SOURCES = 16
"""Sources each worker thread keeps open between tasks, unless ``GEOSAMPLE_OPEN_SOURCES`` says otherwise."""
OPEN_SOURCES_ENV = "GEOSAMPLE_OPEN_SOURCES"
ENCODES_IN_FLIGHT = 4
"""Chips a read thread may have waiting for (or in) the encoder before it reads on: bounds the arrays held
(with 2, a read thread waited on busy encoders for 2 % of a one-worker fetch)."""
TASK_CHIPS = 32
"""Most chips per read task when an item's chips are spread over the workers."""
TASK_MIN_CHIPS = 16
"""Fewest chips per task (when there are enough): small tasks spread one item's tiles over many threads."""


def open_sources_budget() -> int:
    """Sources one read thread may keep open: ``GEOSAMPLE_OPEN_SOURCES``, else :data:`THREAD_OPEN_SOURCES`.

    Raises:
        ConfigError: If the variable is not a whole number from 1 to 4096.
    """
    text = os.environ.get(OPEN_SOURCES_ENV)
    if text is None or not text.strip():
        return THREAD_OPEN_SOURCES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 4096:
        raise ConfigError(f"{OPEN_SOURCES_ENV}={text!r} must be a whole number of open sources from 1 to 4096")
    return value


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
    common_names: tuple[str | None, ...] = ()
    """STAC common names of the bands (``eo:bands``/``bands``), where the item gives them."""


@dataclasses.dataclass(frozen=True)
class SourceRef:
    """One source item of a chip."""

    item_id: str
    """STAC item id."""
    hrefs: Mapping[str, str]
    """Asset key → href (unsigned)."""
    harmonize: bool = False
    """Remove the +1000 offset from this item's ``s2_offset`` assets."""
    offset_in_data: bool = False
    """This item's ``s2_offset`` assets carry the +1000 offset (whether or not it is removed)."""


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
    alternates: tuple[tuple[SourceRef, ...], ...] = ()
    """Other items to try, in order, when the chip from ``sources`` fails ``--max-chip-cloud``/``--min-valid``."""
    with_map: bool = False
    """Also encode the per-pixel observation map (chips of pairs and series, for the change stage)."""


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
    mask: AssetSpec | None = None
    """The collection's cloud-mask asset, read beside the chip for the observations but not written."""
    observe: ObservationPlan | None = None
    """What the chips can show (None: no observations)."""
    max_chip_cloud: float | None = None
    """Reject a chip whose measured cloud fraction is above this."""
    min_valid: float | None = None
    """Reject a chip whose share of valid pixels is below this."""
    open_sources: int = dataclasses.field(default_factory=open_sources_budget)
    """Sources each read thread keeps open: ``GEOSAMPLE_OPEN_SOURCES`` where fetch runs (checked there, before
    anything is written; Dask workers get it with the task)."""

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
    status: str = "ok"
    """``ok``, or ``cloudy``/``nodata`` when no candidate passed the limits (``error`` says why)."""
    observation: dict[str, Any] | None = None
    """The observation columns of ``chips.parquet`` (of the chip kept, or of the best rejected one)."""
    source_index: int = 0
    """Which candidate made the chip: 0 the job's ``sources``, i its ``alternates[i - 1]``."""
    map_cog: bytes | None = None
    """The observation map (uint8 COG with a colour table), when the job asked for it."""


_local = threading.local()
_caches: weakref.WeakSet[DatasetCache] = weakref.WeakSet()
_caches_lock = threading.Lock()
_encoder: concurrent.futures.ThreadPoolExecutor | None = None
_encoder_pid = 0


def _thread_cache(signer: Signer | None, max_open: int | None = None) -> DatasetCache:
    """This thread's open sources, kept across tasks: the next task on a nearby chip finds its tiles decoded.

    ``max_open``: the most kept open (default: :func:`open_sources_budget`).
    """
    budget = max_open if max_open is not None else open_sources_budget()
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = DatasetCache(signer, max_open=budget)
        with _caches_lock:
            _caches.add(cache)
    cache.signer = signer
    cache.max_open = budget
    return cache


def close_thread_caches() -> None:
    """Close the sources every thread keeps open (call once the threads are idle)."""
    with _caches_lock:
        caches = list(_caches)
    for cache in caches:
        cache.close()


def encoder_threads() -> int:
    """The process's encoder threads: one per two cores (at least one).

    Encoding a chip costs a quarter of reading it or less (:mod:`geosample.stac._cog`), so half the cores
    keep up with every read thread, and the other half stay free for the reads, whose thread is the one
    each chip waits on: with one worker on two cores, two encoder threads made fetch 3-9 % slower than one.
    """
    return max(1, (os.cpu_count() or 1) // 2)


def _encoder_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The process's encoder threads (:func:`encoder_threads`), started on first use (again after a fork)."""
    global _encoder, _encoder_pid
    with _caches_lock:
        if _encoder is None or _encoder_pid != os.getpid():
            _encoder = concurrent.futures.ThreadPoolExecutor(encoder_threads(), thread_name_prefix="geosample-encode")
            _encoder_pid = os.getpid()
        return _encoder


def run_task(
    jobs: Sequence[ChipJob], options: ReadOptions, signer: Signer | None = None, *, wait: bool = True
) -> list[ChipResult] | list[ChipResult | concurrent.futures.Future[ChipResult]]:
    """Read, encode and hash each chip of one task; a chip's failure is its result, not an exception.

    Chips are read in order on the calling thread; each chip that passes is encoded on the encoder threads
    while the next is read (at most :data:`ENCODES_IN_FLIGHT` waiting per task). ``wait=False`` (a thread
    of this process ran the task) returns once the chips are read, the last encodes as futures: the
    thread goes on to its next task while they finish.
    """
    hrefs = sorted({h for job in jobs for src in job.sources for h in src.hrefs.values()})
    cache = _thread_cache(signer, options.open_sources)
    encoder = _encoder_pool()
    results: list[ChipResult | concurrent.futures.Future[ChipResult]] = []
    waiting: deque[concurrent.futures.Future[ChipResult]] = deque()
    with gdal_env(hrefs):
        for job in jobs:
            try:
                made = _chip(job, options, cache)
            except (ReadError, ChipError) as exc:
                made = ChipResult(job.sample_id, job.collection, error=str(exc))
            if isinstance(made, _Passed):
                while len(waiting) >= ENCODES_IN_FLIGHT:
                    waiting.popleft().result()
                future = encoder.submit(_encode, *made)
                waiting.append(future)
                results.append(future)
            else:
                results.append(made)
    if not wait:
        return results
    return [r.result() if isinstance(r, concurrent.futures.Future) else r for r in results]


class ChipError(ValueError):
    """A chip cannot be made from its items (an asset missing, band counts that disagree)."""


class _Passed(tuple):
    """A chip that passed the limits, as the arguments of :func:`_encode`."""

    __slots__ = ()


def _chip(job: ChipJob, options: ReadOptions, cache: DatasetCache) -> ChipResult | _Passed:
    """The chip from the job's sources (or the first alternate that passes the limits), to encode; else why not."""
    tried: list[tuple[str, str]] = []
    first: Observation | None = None
    for index, sources in enumerate((job.sources, *job.alternates)):
        try:
            stacked, nodata, mask = _read_sources(job, sources, options, cache)
        except (ReadError, ChipError) as exc:
            if index == 0:
                raise
            tried.append(("failed", f"{sources[0].item_id}: {exc}"))
            continue
        scale = _reflectance_scale(options, sources[0])
        obs = _observe(stacked, mask, options, job.with_map, scale)
        valid = obs.valid_fraction if obs is not None else float((~np.ma.getmaskarray(stacked).any(axis=0)).mean())
        first = first or obs
        rejected = _rejection(obs, valid, options)
        if rejected is None:
            return _Passed((job, options, stacked, nodata, obs, valid, index, scale))
        tried.append((rejected[0], f"{sources[0].item_id}: {rejected[1]}"))
    status = next((s for s, _ in tried if s != "failed"), "nodata")
    error = f"no candidate item passes ({len(tried)} tried): " + "; ".join(text for _, text in tried)
    return ChipResult(
        job.sample_id, job.collection, error=error if len(error) <= 300 else error[:297] + "...", status=status,
        observation=first.columns() if first is not None else None,
    )  # fmt: skip


def _read_sources(
    job: ChipJob, sources: tuple[SourceRef, ...], options: ReadOptions, cache: DatasetCache
) -> tuple[np.ma.MaskedArray, float | None, np.ma.MaskedArray | None]:
    """The chip's bands (and the cloud-mask band, when it is read beside them) from one candidate."""
    parts = []
    nodata: float | None = None
    for spec in options.assets:
        data, fill = _read_asset(job.grid, sources, spec, options, cache)
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
    mask = None
    spec = options.mask
    if spec is not None and options.observe is not None and all(spec.key in s.hrefs for s in sources):
        mask = _read_asset(job.grid, sources, spec, options, cache)[0][0]
    return stacked, nodata, mask


def _observe(
    stacked: np.ma.MaskedArray,
    mask: np.ma.MaskedArray | None,
    options: ReadOptions,
    with_map: bool,
    scale: tuple[list[float], list[float], list[bool]],
) -> Observation | None:
    plan = options.observe
    if plan is None:
        return None
    if plan.mask is not None and plan.mask_index is None and mask is None:
        # The mask asset is missing from this item: screen clouds spectrally if the bands allow, else not at all.
        plan = _without_mask(options)
    gains, offsets, _ = scale
    return observe(stacked, options.band_names, gains=gains, offsets=offsets, mask=mask, plan=plan, with_map=with_map)


def _without_mask(options: ReadOptions) -> ObservationPlan:
    from geosample.stac.observe import observation_plan

    assert options.observe is not None
    names = options.band_names
    commons = [c for a in options.assets for c in (a.common_names or (None,) * len(a.names))]
    return observation_plan(names, common_names=commons, calibrated=options.observe.calibrated)


def _reflectance_scale(options: ReadOptions, source: SourceRef) -> tuple[list[float], list[float], list[bool]]:
    """Per band: reflectance = value × gain + offset for the chip as read from ``source``, and whether it is known."""
    gains: list[float] = []
    offsets: list[float] = []
    known: list[bool] = []
    for spec in options.assets:
        scaled = options.apply_scale and (spec.scale is not None or spec.offset is not None)
        if scaled:
            gain, offset = 1.0, 0.0
        elif spec.s2_offset:
            gain = spec.scale if spec.scale is not None else 1e-4
            offset = -S2_OFFSET * gain if source.offset_in_data and not source.harmonize else 0.0
        else:
            gain = spec.scale if spec.scale is not None else 1.0
            offset = spec.offset or 0.0
        gains += [gain] * len(spec.names)
        offsets += [offset] * len(spec.names)
        known += [not scaled and (spec.scale is not None or spec.s2_offset)] * len(spec.names)
    return gains, offsets, known


def _rejection(obs: Observation | None, valid: float, options: ReadOptions) -> tuple[str, str] | None:
    """(status, the measured figure) when the chip fails ``--min-valid`` or ``--max-chip-cloud``; else None."""
    if options.min_valid is not None and valid < options.min_valid:
        return "nodata", f"{valid:.1%} of pixels valid < --min-valid {options.min_valid:g}"
    if options.max_chip_cloud is not None:
        if obs is None or obs.cloud_fraction is None:
            return "nodata", "no valid pixel to measure cloud on"
        if obs.cloud_fraction > options.max_chip_cloud:
            return "cloudy", (
                f"cloud {obs.cloud_fraction:.1%} of valid pixels ({obs.cloud_method}) "
                f"> --max-chip-cloud {options.max_chip_cloud:g}"
            )
    return None


def _encode(
    job: ChipJob,
    options: ReadOptions,
    stacked: np.ma.MaskedArray,
    nodata: float | None,
    obs: Observation | None,
    valid: float,
    index: int,
    scale: tuple[list[float], list[float], list[bool]],
) -> ChipResult:
    categorical = all(a.categorical for a in options.assets)
    gains, offsets, known = scale
    # Known reflectance scales travel with the chip (GDAL band scale/offset), so later stages can use them.
    scales = [g if k else 1.0 for g, k in zip(gains, known, strict=True)] if any(known) else None
    shifts = [o if k else 0.0 for o, k in zip(offsets, known, strict=True)] if any(known) else None
    cog = write_cog(
        stacked, job.grid, options.band_names, nodata=nodata, categorical=categorical, scales=scales, offsets=shifts
    )
    png = preview_png(stacked, _rgb_indexes(options.band_names)) if options.preview else None
    map_cog = None
    if obs is not None and obs.classes is not None:
        map_cog = write_class_cog(obs.classes, job.grid, "observed", CODE_NAMES, CODE_COLOURS)
    return ChipResult(
        job.sample_id, job.collection, None, cog, hashlib.sha256(cog).hexdigest(), png, valid,
        observation=obs.columns() if obs is not None else None, source_index=index, map_cog=map_cog,
    )  # fmt: skip


def _read_asset(
    grid: ChipGrid, sources: Sequence[SourceRef], spec: AssetSpec, options: ReadOptions, cache: DatasetCache
) -> tuple[np.ma.MaskedArray, float | None]:
    """One asset onto the grid from the sources, harmonised per item, first valid pixel winning."""
    method = Resampling.nearest if spec.categorical else Resampling[options.resampling]
    out: np.ma.MaskedArray | None = None
    fill: float | None = None
    for src in sources:
        href = src.hrefs.get(spec.key)
        if href is None:
            raise ChipError(f"item {src.item_id!r} has no asset {spec.key!r}")
        part, src_nodata = read_with_nodata([href], grid, resampling=method, cache=cache, retries=options.retries)
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


def task_key(args: Sequence[Any]) -> Hashable | None:
    """The best item of a :func:`run_task` call's chips (what its chips share), from the call's arguments.

    The thread pool sends the tasks of one item to the same worker thread, whose open sources hold
    that item's decoded tiles (see :mod:`geosample.stac._dask`); None for any other call.
    """
    jobs = args[0] if args else None
    if isinstance(jobs, Sequence) and jobs and isinstance(jobs[0], ChipJob) and jobs[0].sources:
        return jobs[0].sources[0].item_id
    return None


def _morton(x: int, y: int) -> int:
    """Interleave the bits of two non-negative ints (Z-order): near in space, near in the order."""
    z = 0
    for bit in range(24):
        z |= ((x >> bit) & 1) << (2 * bit) | ((y >> bit) & 1) << (2 * bit + 1)
    return z


def task_chunks(jobs: Sequence[ChipJob], workers: int) -> list[list[ChipJob]]:
    """Read tasks: chips with the same best item, in Z-order, a few per task.

    Nearby chips in one task decode each source tile once; the tasks of one item go to the same
    worker thread (:func:`task_key`), whose open sources keep those tiles decoded. Tasks hold 16 to
    32 chips, so an item with many chips still spreads over idle workers.
    """

    def key(job: ChipJob) -> tuple[str, int]:
        size = job.grid.width * job.grid.resolution
        return job.sources[0].item_id, _morton(int(job.grid.transform.c // size) & 0xFFFFFF,
                                               int(-job.grid.transform.f // size) & 0xFFFFFF)  # fmt: skip

    ordered = sorted(jobs, key=key)
    chunks = []
    for _, same in _runs_by(ordered, lambda j: j.sources[0].item_id):
        size = min(TASK_CHIPS, max(TASK_MIN_CHIPS, -(-len(same) // max(1, workers))))
        chunks += [same[i : i + size] for i in range(0, len(same), size)]
    return chunks


def _runs_by(items: Sequence[Any], key: Callable[[Any], Any]) -> Iterator[tuple[Any, list[Any]]]:
    """Consecutive runs of ``items`` with equal ``key``."""
    current: list[Any] = []
    current_key: Any = None
    for item in items:
        k = key(item)
        if current and k != current_key:
            yield current_key, current
            current = []
        current_key = k
        current.append(item)
    if current:
        yield current_key, current
