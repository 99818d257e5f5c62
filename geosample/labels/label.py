"""``geosample label``: multi-level taxonomy labels for every sample, from a land-cover source.

For each chip footprint, the source is read onto the chip's own grid (only
the window under the chip), pixels are counted per source value over the
whole chip and over five layout regions, the counts are mapped to the
taxonomy's classes through the chosen crosswalk, and the finest-level
fractions are rolled up to every level of the taxonomy.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import threading
import warnings
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, as_completed, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geosample import __version__
from geosample._dataset import LABELS_FILE, atomic_path, read_config, read_samples, write_section, writes_dataset
from geosample.errors import CoarseSourceWarning, DataQualityWarning, DatasetError, SourceError
from geosample.labels.config import LabelConfig
from geosample.labels.fractions import REGIONS
from geosample.labels.grids import LabelGrid, chip_label_grids
from geosample.labels.sources import LabelSource, SourcePart, open_source

if TYPE_CHECKING:
    from geosample.labels.taxonomy import Taxonomy

UNMAPPED_ERROR_SHARE = 0.01
"""Above this share of valid pixels with values the crosswalk does not know, the scheme is wrong: stop."""
_TASK_CHIPS = 64
NOT_RESULT_SETTINGS = frozenset({"workers", "dask_scheduler"})
"""Label settings that change how labels are computed, not what they are."""
LOCAL_WORKERS = 1
"""Default workers for a local raster or vector: counting holds the GIL, so more threads only add overhead."""
REMOTE_WORKERS = 8
"""Default workers for a ``stac:`` source: reads wait on the network, so threads overlap them."""


@dataclasses.dataclass
class ClassCounts:
    """Pixel counts of every class, per chip and layout region.

    ``counts[i, r, c]``: chip ``i``, region ``r`` (``fractions.REGIONS``),
    class ``codes[c]``. Pixels that are no data, or whose value the crosswalk
    does not map, are not counted; ``unmapped`` holds the latter per source value.
    """

    codes: list[str]
    counts: np.ndarray
    unmapped: dict[str, int]
    nodata: np.ndarray

    @property
    def whole(self) -> np.ndarray:
        """(n_chips, n_classes) counts over the whole chip (the four quadrants tile it)."""
        return self.counts[:, :4].sum(axis=1)


def count_classes(
    source: LabelSource,
    grids: list[LabelGrid],
    mapping: dict[str, str],
    *,
    workers: int = 1,
    progress: bool = False,
    nodata_values: frozenset[str] | set[str] = frozenset(),
    dask_scheduler: str | None = None,
) -> ClassCounts:
    """Count the taxonomy classes of ``source`` on every grid, reading windows on ``workers`` threads.

    Chips are read in tasks of nearby chips (:func:`count_task`), each task's source values counted
    where it runs; the counts are mapped to classes here. Tasks run on a thread pool that sends the
    tasks of one area to the same thread (whose open source holds that area's decoded tiles), or on a
    Dask cluster (``dask_scheduler``: ``local`` or an address) that receives only what each task needs.
    Source values in ``nodata_values`` (a scheme's no-data values, e.g. clouds in a land-cover map)
    count as no data.
    """
    slot_values = source.slots.values
    nodata_slot = len(slot_values) - 1
    codes = sorted({code for value, code in mapping.items()}, key=_code_key)
    index = {code: i for i, code in enumerate(codes)}
    n_classes = len(codes)
    # Slot -> class column; n_classes: unmapped, n_classes + 1: no data.
    slot_class = np.array(
        [index.get(mapping.get(value, ""), n_classes) for value in slot_values[:-1]] + [n_classes + 1],
        dtype=np.int64,
    )
    slot_class[nodata_slot] = n_classes + 1
    for i, value in enumerate(slot_values[:-1]):
        if value in nodata_values:
            slot_class[i] = n_classes + 1
    onehot = np.zeros((len(slot_values), n_classes + 2))
    onehot[np.arange(len(slot_values)), slot_class] = 1.0
    counts = np.zeros((len(grids), 5, n_classes), dtype=np.int32)
    nodata = np.zeros(len(grids), dtype=np.int64)
    unmapped_slots = np.zeros(len(slot_values), dtype=np.int64)

    def fold(rows: np.ndarray, chips: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for i, (present, slot_counts) in zip(rows, chips, strict=True):
            cls = slot_class[present]
            per_class = slot_counts @ onehot[present]
            counts[i] = per_class[:, :n_classes]
            nodata[i] = per_class[:4, n_classes + 1].sum()
            odd = cls == n_classes
            unmapped_slots[present[odd]] += slot_counts[:4, odd].sum(axis=0)

    tasks = [(rows, [grids[i] for i in rows]) for rows in _tasks(grids)]
    bar = _progress_bar(len(grids), progress)
    try:
        if dask_scheduler is None:
            _count_on_threads(source, tasks, fold, workers, bar)
        else:
            _count_on_dask(source, tasks, fold, workers, bar, dask_scheduler)
    finally:
        bar.close()
    unmapped = {slot_values[s]: int(unmapped_slots[s]) for s in np.flatnonzero(unmapped_slots)}
    return ClassCounts(codes, counts, unmapped, nodata)


Fold = Callable[[np.ndarray, list[tuple[np.ndarray, np.ndarray]]], None]
Task = tuple[np.ndarray, list[LabelGrid]]


def _count_on_threads(source: LabelSource, tasks: list[Task], fold: Fold, workers: int, bar: Any) -> None:
    """Count and fold each task on ``workers`` threads (in this thread for one): tasks of one area on one thread.

    The fold runs on the worker thread too: a main thread busy with Python would hold the GIL that the
    readers need back after each read.
    """
    from geosample.stac._dask import AffinityPool
    from geosample.stac._work import close_thread_caches

    lock = threading.Lock()

    def run(rows: np.ndarray, task: list[LabelGrid]) -> int:
        chips = count_task(source.part(task), task)
        with lock:
            fold(rows, chips)
        return len(rows)

    try:
        if workers <= 1:
            for rows, task in tasks:
                bar.update(run(rows, task))
            return
        # Tasks in space order, cut into one run per worker: a run's tasks go to one thread.
        run_of = {id(task): k * workers // len(tasks) for k, (_, task) in enumerate(tasks)}
        pool = AffinityPool(workers, lambda args: run_of.get(id(args[1])), name="geosample-label")
        try:
            for done in as_completed([pool.submit(run, rows, task) for rows, task in tasks]):
                bar.update(done.result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        _close_thread_readers()
        close_thread_caches()


def _count_on_dask(source: LabelSource, tasks: list[Task], fold: Fold, workers: int, bar: Any, scheduler: str) -> None:
    """Count each task on a Dask cluster (only the task's part of the source travels) and fold the results here."""
    from geosample.stac._dask import open_executor

    run_of = {id(task): k * max(1, workers) // len(tasks) for k, (_, task) in enumerate(tasks)}
    with open_executor(scheduler, workers, key=lambda args: run_of.get(id(args[1]))) as (pool, depth):
        pending = collections.deque(tasks)
        running: dict[Future, np.ndarray] = {}
        while pending or running:
            while pending and len(running) < depth:
                rows, task = pending.popleft()
                running[pool.submit(count_task, source.part(task), task)] = rows
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                rows = running.pop(future)
                fold(rows, future.result())
                bar.update(len(rows))


def resolve_workers(workers: int | None, source: LabelSource, dask_scheduler: str | None = None) -> int:
    """The worker count of a run: ``workers`` if given, else the default for the source (and scheduler).

    Threads on one machine: :data:`LOCAL_WORKERS` for local files, whose count holds the GIL (measured in
    ``benchmarks/label_bench.py``: more threads are not faster on 2 cores), and :data:`REMOTE_WORKERS` for
    ``stac:`` sources, whose reads wait on the network. A Dask cluster: its cores (``local``: this machine's).
    """
    if workers is not None:
        return workers
    if dask_scheduler is not None:
        return os.cpu_count() or 1
    from geosample.labels.stac_source import StacSource

    return REMOTE_WORKERS if isinstance(source, StacSource) else LOCAL_WORKERS


def count_task(part: SourcePart, grids: Sequence[LabelGrid]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The source values on each of a few chips: (values present, their (5, k) counts per region).

    Runs on a worker thread or a Dask worker; ``part`` holds only what these chips need. A raster stays
    open in the thread between tasks (see :func:`_thread_reader`).
    """
    reader = _thread_reader(part)
    out = []
    with part.env():
        for grid in grids:
            slot_counts = reader.counts(grid)
            present = np.flatnonzero(slot_counts[:4].sum(axis=0))
            out.append((present, slot_counts[:, present]))
    return out


_readers = threading.local()
_THREAD_READERS = 4
"""Rasters a worker thread keeps open between tasks (a run labels from one or a few)."""


def _thread_reader(part: SourcePart) -> Any:
    """The calling thread's reader of ``part``'s files, opened once per thread (or a new one for ``key`` None)."""
    if part.key is None:
        return part.reader()
    readers: collections.OrderedDict[Hashable, Any] = _readers.__dict__.setdefault("open", collections.OrderedDict())
    reader = readers.get(part.key)
    if reader is None:
        while len(readers) >= _THREAD_READERS:
            old = readers.popitem(last=False)[1]
            if hasattr(old, "close"):
                old.close()
        reader = readers[part.key] = part.reader()
    readers.move_to_end(part.key)
    return reader


def _close_thread_readers() -> None:
    """Close the rasters the calling thread keeps open."""
    readers = _readers.__dict__.pop("open", {})
    for reader in readers.values():
        if hasattr(reader, "close"):
            reader.close()


def _tasks(grids: list[LabelGrid]) -> list[np.ndarray]:
    """Positions of the grids in tasks of :data:`_TASK_CHIPS` nearby chips: by CRS, then Z-order of their corners."""
    if not grids:
        return []
    epsg = np.array([g.epsg for g in grids], dtype=np.int64)
    side = np.array([g.res * g.size for g in grids])
    x = np.floor(np.array([g.x0 for g in grids]) / side).astype(np.int64) & 0xFFFF
    y = np.floor(-np.array([g.y0 for g in grids]) / side).astype(np.int64) & 0xFFFF
    z = np.zeros(len(grids), dtype=np.int64)
    for bit in range(16):
        z |= ((x >> bit) & 1) << (2 * bit) | ((y >> bit) & 1) << (2 * bit + 1)
    order = np.lexsort((z, epsg))
    return [order[i : i + _TASK_CHIPS] for i in range(0, len(order), _TASK_CHIPS)]


@writes_dataset("label")
def label(
    ds: str | Path,
    config: LabelConfig | None = None,
    *,
    progress: bool | None = None,
    overwrite: bool = False,
    allow_local_assets: bool = False,
) -> pd.DataFrame:
    """Label every sample of ``DS`` and write ``DS/labels.parquet`` (plus STAC label items and a TrainingDML-AI file).

    Args:
        ds: The dataset folder (it must hold a plan).
        config: The label settings; the defaults label offline from the embedded MODIS layer.
        progress: Show a progress bar; ``None`` shows one on a terminal.
        overwrite: Replace labels made with other settings.
        allow_local_assets: Let a ``stac:`` source read local asset paths its catalogue names
            (command line only; see :mod:`geosample.stac._hrefs`).

    Returns:
        The labels table, one row per sample, as written.
    """
    from geosample.labels.exports import write_label_outputs
    from geosample.labels.taxonomy import load_taxonomy

    cfg = config or LabelConfig()
    from geosample.labels._schemes import NODATA
    from geosample.labels.change import prepare_change

    ds = Path(ds)
    samples = read_samples(ds)  # the achieved samples after fetch, else the plan
    _check_rerun(ds, cfg, overwrite)
    taxonomy = load_taxonomy(cfg.taxonomy)
    if cfg.preset is not None:
        from geosample.labels.presets import get_label_preset

        check_years_in_reach(samples, get_label_preset(cfg.preset).years, cfg.max_year_gap, cfg.preset)
    change = prepare_change(ds, samples)  # refuses misaligned pairs before anything is read or written
    source = open_source(
        cfg.source,
        scheme=cfg.scheme,
        schemes=list(taxonomy.mappings),
        resolution_m=cfg.resolution,
        stac=cfg.stac,
        asset=cfg.asset,
        samples=samples,
        sign=cfg.sign,
        allow_local_assets=allow_local_assets,
        max_year_gap=cfg.max_year_gap,
    )
    scheme = source.scheme
    mapping = taxonomy.mapping(scheme)
    if scheme == "osm":  # key=value tags resolve through the taxonomy's matcher (bare keys, most specific first)
        tags = (value.split("=", 1) for value in source.slots.values[:-1] if "=" in value)
        mapping = {f"{k}={v}": code for k, v in tags if (code := taxonomy.osm_code({k: v})) is not None}
    grids = chip_label_grids(samples, cfg.resolution or source.res_m)
    show = _is_terminal() if progress is None else progress
    counted = count_classes(
        source, grids, mapping, workers=resolve_workers(cfg.workers, source, cfg.dask_scheduler), progress=show,
        nodata_values=NODATA.get(str(scheme), set()), dask_scheduler=cfg.dask_scheduler,
    )  # fmt: skip
    _check_coverage(counted, source, scheme, list(taxonomy.mappings), len(samples))
    table = labels_table(samples["sample_id"].to_numpy(), counted, taxonomy, cfg.min_fraction, source.name)
    table["label_year"] = pd.array(label_years(source, len(samples)), dtype="Int64")
    table["source_resolution_m"] = float(source.res_m) if source.res_m else np.nan
    _warn_coarse(source, samples)
    try:
        changed = change.compute() if change is not None else None
        write_label_outputs(ds, samples, table, taxonomy, cfg, source.name)
        if change is not None:
            change.commit()
    finally:
        if change is not None:
            change.discard()
    write_section(
        ds,
        "label",
        {**cfg.to_dict(), "scheme_used": scheme, "taxonomy_key": taxonomy.key, "geosample_version": __version__},
    )
    table.attrs["class_names"] = {code: c.name for code, c in taxonomy.classes.items()}  # for summaries
    table.attrs["change"] = changed
    return table


def sample_years(samples: pd.DataFrame) -> np.ndarray:
    """The year of each sample's window (of its middle)."""
    start = pd.to_datetime(samples["start_datetime"], utc=True)
    end = pd.to_datetime(samples["end_datetime"], utc=True)
    return (start + (end - start) / 2).dt.year.to_numpy()


def check_years_in_reach(samples: pd.DataFrame, years: Sequence[int], gap: int, product: str) -> None:
    """Refuse samples further than ``gap`` years from every year of an annual product.

    Raises:
        SourceError: Naming how many samples, one of them, and the product's years.
    """
    wanted = sample_years(samples)
    have = np.array(sorted(years))
    nearest = have[np.abs(wanted[:, None] - have[None, :]).argmin(axis=1)]
    far = np.flatnonzero(np.abs(wanted - nearest) > gap)
    if far.size:
        i = int(far[0])
        raise SourceError(
            f"{far.size} sample(s) lie more than {gap} year(s) from every {product} map (e.g. "
            f"{samples['sample_id'].iloc[i]}: {wanted[i]}, nearest map {nearest[i]}; maps: {_span(have)}); plan "
            "within reach of those years or allow a larger --max-year-gap"
        )


def _span(years: np.ndarray) -> str:
    if len(years) > 2 and (np.diff(years) == 1).all():
        return f"{years[0]}-{years[-1]}"
    return ", ".join(str(y) for y in years)


def label_years(source: LabelSource, n: int) -> list[int | None]:
    """The map year each sample's labels come from (None when the source does not say)."""
    years = getattr(source, "years", None)
    if years is not None:
        return [None if y is None else int(y) for y in years]
    year = getattr(source, "year", None)
    return [year] * n


COARSE_SHARE = 1 / 8
"""A source whose pixels are wider than this share of the chip describes the neighbourhood, not the chip."""


def _warn_coarse(source: LabelSource, samples: pd.DataFrame) -> None:
    res = source.res_m
    if not res:
        return
    sizes = samples["chip_size_m"].to_numpy(dtype=np.float64)
    coarse = res > COARSE_SHARE * sizes
    if coarse.any():
        warnings.warn(
            f"{int(coarse.sum())} of {len(samples)} samples are labelled from {source.name} at about {res:,.0f} m per "
            f"pixel, coarser than 1/8 of their chip ({sizes[coarse].min():,.0f} m): their labels come from a few "
            f"pixels {res / 1000:,.1f} km wide and describe the chip's surroundings, not the chip; use a 10 m source "
            "(--preset esa-worldcover or io-lulc-annual-v02) for labels of the chip itself",
            CoarseSourceWarning,
            stacklevel=3,
        )


def labels_table(
    sample_ids: np.ndarray, counted: ClassCounts, taxonomy: Taxonomy, min_fraction: float, source_name: str
) -> pd.DataFrame:
    """The ``labels.parquet`` rows: multi-labels, dominant class and fractions at every level."""
    whole = counted.whole.astype(np.float64)
    valid = whole.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fine = np.where(valid[:, None] > 0, whole / valid[:, None], 0.0)
    out: dict[str, Any] = {"sample_id": sample_ids}
    for depth, level in enumerate(taxonomy.levels, start=1):
        level_codes = taxonomy.codes_at(level)
        level_codes += [code for code in counted.codes if taxonomy[code].depth < depth]
        column = {code: j for j, code in enumerate(level_codes)}
        roll = np.zeros((len(counted.codes), len(level_codes)))
        for i, code in enumerate(counted.codes):
            roll[i, column[level_code(taxonomy, code, level)]] = 1.0
        fractions = fine @ roll
        present = fractions >= min_fraction - 1e-12
        labels_at, dominant_at = [], []
        for i in range(len(sample_ids)):
            hits = np.flatnonzero(present[i])
            order = hits[np.argsort(-fractions[i, hits], kind="stable")]
            labels_at.append([level_codes[j] for j in order])
            dominant_at.append(level_codes[int(np.argmax(fractions[i]))] if fractions[i].max() > 0 else None)
        out[f"l{depth}"] = labels_at
        out[f"l{depth}_dominant"] = dominant_at
    out["fractions"] = [_fraction_json(counted.codes, fine[i]) for i in range(len(sample_ids))]
    out["quadrant_fractions"] = [_regions_json(counted.codes, counted.counts[i]) for i in range(len(sample_ids))]
    out["label_source"] = source_name
    out["taxonomy"] = taxonomy.key
    out["valid_fraction"] = np.divide(
        valid, valid + counted.nodata, out=np.zeros_like(valid), where=(valid + counted.nodata) > 0
    )
    return pd.DataFrame(out)


def level_code(taxonomy: Taxonomy, code: str, level: str) -> str:
    """The class standing for ``code`` at ``level``: its ancestor there, or ``code`` itself if it is coarser.

    A source that cannot tell classes apart below some level (ESA WorldCover's
    "tree cover" maps to a level-1 class) keeps that class at the finer
    levels, so every level's labels describe all of the chip's valid area.
    """
    ancestor = taxonomy.ancestor(code, level)
    return code if ancestor is None else ancestor


def write_labels_parquet(table: pd.DataFrame, path: Path) -> None:
    """Write the labels table with explicit Arrow types (lists of strings, nullable dominants)."""
    fields = [pa.field("sample_id", pa.string())]
    depths = sorted(int(c[1:]) for c in table.columns if c[0] == "l" and c[1:].isdigit())
    for depth in depths:
        fields.append(pa.field(f"l{depth}", pa.list_(pa.string())))
    for depth in depths:
        fields.append(pa.field(f"l{depth}_dominant", pa.string()))
    fields += [
        pa.field("fractions", pa.string()),
        pa.field("quadrant_fractions", pa.string()),
        pa.field("label_source", pa.string()),
        pa.field("taxonomy", pa.string()),
        pa.field("valid_fraction", pa.float64()),
    ]
    fields += [f for f in (pa.field("label_year", pa.int64()), pa.field("source_resolution_m", pa.float64()))
               if f.name in table.columns]  # fmt: skip
    schema = pa.schema(fields)
    arrow = pa.Table.from_pandas(table[[f.name for f in fields]], schema=schema, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp, compression="zstd")


def _fraction_json(codes: list[str], fractions: np.ndarray) -> str:
    nz = np.flatnonzero(fractions > 0)
    order = nz[np.argsort(-fractions[nz], kind="stable")]
    return json.dumps({codes[j]: round(float(fractions[j]), 6) for j in order})


def _regions_json(codes: list[str], counts: np.ndarray) -> str:
    regions = {}
    for r, name in enumerate(REGIONS):
        total = counts[r].sum()
        regions[name] = json.loads(_fraction_json(codes, counts[r] / total)) if total > 0 else {}
    return json.dumps(regions)


def _check_rerun(ds: Path, cfg: LabelConfig, overwrite: bool) -> None:
    recorded = read_config(ds).get("label")
    if recorded and not overwrite and (ds / LABELS_FILE).exists():
        defaults = LabelConfig().to_dict()
        wanted = {k: v for k, v in cfg.to_dict().items() if k not in NOT_RESULT_SETTINGS}
        # A setting added since the labels were made counts as its default.
        previous = {k: recorded.get(k, defaults.get(k)) for k in wanted}
        if previous != wanted:
            raise DatasetError(
                f"{ds} already holds labels made with other settings; use --overwrite to replace them "
                "(captions made from them then no longer match)"
            )


def _check_coverage(counted: ClassCounts, source: LabelSource, scheme: str, schemes: list[str], n: int) -> None:
    whole = counted.whole.sum(axis=1)
    unmapped_total = sum(counted.unmapped.values())
    seen = int(whole.sum()) + unmapped_total
    if seen == 0:
        raise SourceError(
            f"label source {source.name} has no data under any of the {n} chips; "
            "check that it covers the plan's area (and that its CRS is right)"
        )
    if unmapped_total:
        share = unmapped_total / seen
        top = sorted(counted.unmapped.items(), key=lambda kv: -kv[1])[:8]
        listed = ", ".join(f"{value} ({count / seen:.1%})" for value, count in top)
        if share > UNMAPPED_ERROR_SHARE:
            others = [s for s in schemes if s != scheme]
            raise SourceError(
                f"{share:.1%} of the pixels of {source.name} have values that scheme {scheme!r} does not map: "
                f"{listed}; choose the --scheme that matches the source" + (f" ({', '.join(others)})" if others else "")
            )
        warnings.warn(
            f"{share:.2%} of the pixels of {source.name} have values that scheme {scheme!r} does not map "
            f"({listed}); they are treated as no data",
            DataQualityWarning,
            stacklevel=3,
        )
    empty = int((whole == 0).sum())
    if empty:
        warnings.warn(
            f"{empty} of {n} chips have no labelled pixels in {source.name} (outside it, or all no data); "
            "their label lists are empty",
            DataQualityWarning,
            stacklevel=3,
        )


def _code_key(code: str) -> tuple:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in code.split("."))


def _progress_bar(total: int, show: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="chip", desc="label", disable=not show, leave=False)


def _is_terminal() -> bool:
    import sys

    return sys.stderr.isatty()
