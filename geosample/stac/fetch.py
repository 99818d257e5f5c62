"""``geosample.fetch``: one image chip per sample (and collection) from STAC, resumable at any point.

The run checks everything that can be wrong with the input before it writes
anything: the plan, the source, the collections, the asset keys (on the
first matching item). Then searches (grouped, see :mod:`.search`) and reads
(grouped by source item, see :mod:`._work`) overlap: chips are read on a
thread pool or a Dask cluster while later groups are still being searched.
Only this process writes into ``DS``: each chip to a temporary name renamed
into place, then its catalog item, then its manifest row (:mod:`.journal`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from geosample import __version__
from geosample._dataset import (
    SAMPLES_FILE,
    read_config,
    read_plan,
    read_reserve,
    write_atomic,
    write_section,
    writing,
)
from geosample._paths import check_name, folder_paths, folder_test, in_folder
from geosample._plan_checks import check_pixel_budget
from geosample.errors import (
    ConfigError,
    DataQualityWarning,
    DatasetError,
    ObservationWarning,
    ShortfallWarning,
    StacError,
)
from geosample.stac import catalog
from geosample.stac._assets import check_assets, data_assets, describe_assets, item_hrefs, mask_asset
from geosample.stac._dask import AffinityPool, open_executor
from geosample.stac._hrefs import HrefPolicy
from geosample.stac._work import (
    AssetSpec,
    ChipJob,
    ChipResult,
    ReadOptions,
    SourceRef,
    close_thread_caches,
    run_task,
    task_chunks,
)
from geosample.stac.client import ApiSource, StacSource, check_collections, open_source
from geosample.stac.config import FetchConfig, local_assets_consent, local_assets_record
from geosample.stac.grid import chip_grid, nice_resolution
from geosample.stac.journal import COLUMNS, Manifest
from geosample.stac.observe import ObservationPlan, mask_kind, observation_plan
from geosample.stac.presets import apply_preset, needs_harmonize
from geosample.stac.search import Candidate, SearchGroup, group_samples, mosaic_items, search_group
from geosample.stac.substitute import Substitutes, write_achieved

__all__ = ["fetch", "make_signer"]

Signer = Callable[[str], str]

CHIPS_DIR = "chips"
SEARCH_THREADS = 4
MAX_ALTERNATES = 4
"""Further candidate items tried for a chip that fails ``--max-chip-cloud`` or ``--min-valid``."""
PLAN_COLUMNS = ("sample_id", "lon", "lat", "epsg", "chip_size_m", "start_datetime", "end_datetime")


def make_signer(name: str | None) -> Signer | None:
    """The URL signer for ``--sign``: ``planetary-computer`` (needs that package) or none."""
    if name in (None, "none"):
        return None
    if name == "planetary-computer":
        try:
            import planetary_computer
        except ImportError:
            raise ConfigError(
                "--sign planetary-computer needs the planetary-computer package: "
                "pip install 'geosample[planetary-computer]'"
            ) from None
        return planetary_computer.sign_url
    raise ConfigError(f"--sign {name!r} is not one of planetary-computer, none")


@dataclasses.dataclass
class _Collection:
    """The work for one collection."""

    name: str
    samples: gpd.GeoDataFrame
    """The samples to fetch now."""
    groups: list[SearchGroup]
    prefetched: list[tuple[SearchGroup, dict[str, list[Candidate]]]]
    options: ReadOptions
    resolution: float | None
    nested: bool
    harmonize: bool
    mosaic: bool
    old_paths: Mapping[str, tuple[str | None, str | None]]
    """sample_id → (path, preview) of its existing row, kept when a chip is fetched again."""

    @property
    def folder(self) -> str:
        """Where new chips go, relative to ``DS``."""
        return f"{CHIPS_DIR}/{self.name}" if self.nested else CHIPS_DIR

    def paths(self, sample_id: str) -> tuple[str, str]:
        old = self.old_paths.get(sample_id)
        if old and old[0]:
            return old[0], old[0][:-4] + ".png"
        return f"{self.folder}/{sample_id}.tif", f"{self.folder}/{sample_id}.png"

    @staticmethod
    def map_path(chip_path: str) -> str:
        """Where a chip's observation map goes: beside it, ``<sample_id>.observed.tif``."""
        return chip_path[:-4] + ".observed.tif"


def fetch(
    ds: str | Path,
    *,
    config: FetchConfig | None = None,
    progress: bool | None = None,
    signer: Signer | None = None,
    overwrite: bool = False,
    allow_local_assets: bool = False,
    **settings: Any,
) -> pd.DataFrame:
    """Fetch one image chip per sample (and collection) into ``DS/chips/`` and ``DS/chips.parquet``.

    Args:
        ds: Dataset folder with a plan.
        config: A ready :class:`FetchConfig`; otherwise ``settings`` build one
            (``stac=..., collection="sentinel-2-l2a", assets="red,green,blue"``, ...).
            Settings left out are taken from the dataset's previous fetch, so
            ``fetch(ds)`` resumes it.
        progress: Show a progress bar (default: when stderr is a terminal).
        signer: Turns an asset href into a readable URL just before each read;
            overrides ``--sign`` (e.g. a custom token service).
        overwrite: Fetch every selected chip again, also with settings that differ
            from the chips already there.
        allow_local_assets: Read local asset paths wherever they are (``--allow-local-assets``);
            by default only remote hrefs, and local ones under a local catalog's folder
            (see :mod:`geosample.stac._hrefs`). Never taken from a config file.
        **settings: :class:`FetchConfig` fields, when ``config`` is not given.

    A sample that fails (``no_item``, ``failed``, ``cloudy``, ``nodata``) is replaced, with its whole
    site, by the next unused reserve site of its stratum and time bin when the plan has reserves
    (``substitute``; see :mod:`geosample.stac.substitute`). At the end ``DS/samples.parquet`` lists the
    achieved samples and ``report/balance.json`` gains ``achieved``.

    Returns:
        The whole manifest (every row of ``chips.parquet``); ``.attrs["summary"]``
        counts this run's ``ok``, ``no_item``, ``failed`` and ``skipped`` chips, and the
        sites ``substituted`` and ``short`` (failed, with no reserve left) in the dataset.
    """
    ds = Path(ds)
    cfg = config if config is not None else FetchConfig.from_mapping(settings)
    plan = read_plan(ds)
    missing = [c for c in PLAN_COLUMNS if c not in plan.columns]
    if missing:
        raise DatasetError(f"{ds}/plan.parquet lacks columns {missing}; re-run 'geosample plan'")
    reserve = read_reserve(ds)
    if cfg.substitute and reserve is None:
        raise ConfigError(
            f"--substitute needs reserve sites, and {ds} has no reserve.parquet; make the plan with "
            "'geosample plan --reserve 0.5' (or more), or drop --substitute"
        )
    substitute = reserve is not None and cfg.substitute is not False
    recorded = read_config(ds).get("fetch") or {}
    allow_local_assets = local_assets_consent(cfg, recorded, allow_local_assets)  # a resumed fetch keeps it
    cfg = _resolve_config(cfg, recorded)
    for name in cfg.collection:  # collection ids become folder names
        check_name(name, "--collection")
    everyone = plan if reserve is None else pd.concat([plan, reserve.drop(columns="reserve_rank")], ignore_index=True)
    if cfg.resolution is not None:
        check_pixel_budget(everyone if substitute else plan, cfg.resolution)
    policy = HrefPolicy.for_source(str(cfg.stac), allow_local=allow_local_assets)
    samples = plan.sort_values("sample_id", kind="stable").reset_index(drop=True)
    if cfg.limit is not None:
        samples = samples.iloc[: cfg.limit].reset_index(drop=True)
    sign = signer if signer is not None else make_signer(cfg.sign)
    started = time.perf_counter()
    with writing(ds, "fetch"):
        source = open_source(str(cfg.stac), retries=cfg.retries, timeout=cfg.timeout)
        check_collections(source, cfg.collection)
        manifest = Manifest(ds)
        existing = manifest.table()
        known = set(existing["collection"].dropna()) | set(recorded.get("collections") or {})
        nested = len(set(cfg.collection) | known) > 1
        subs = Substitutes(plan, reserve, [*cfg.collection, *sorted(known - set(cfg.collection))], samples["sample_id"])
        if subs.has_reserve and cfg.retry_failed:  # a site replaced by a reserve stays replaced
            samples = samples[~samples["sample_id"].isin(subs.replaced(existing))].reset_index(drop=True)
        runs, skipped = [], 0
        for name in cfg.collection:
            run, n_skipped = _prepare(
                ds, cfg, recorded, existing, samples, source, name, nested, sign, overwrite, policy
            )
            runs.append(run)
            skipped += n_skipped
        chip_folder = folder_paths(ds, CHIPS_DIR, what="chip folder")
        item_folder = folder_paths(ds, catalog.CATALOG_DIR, what="STAC item folder")
        for run in runs:  # a chip or item folder that is a link out of DS: refused before anything is written
            chip_folder(run.folder)
            item_folder(f"{catalog.CATALOG_DIR}/{run.name}")
        # Everything is checked: from here on the dataset is written.
        write_section(ds, "fetch", _section(cfg, recorded, runs, policy.allow_local))
        chips_dir = ds / CHIPS_DIR
        chips_dir.mkdir(exist_ok=True)
        for stale in chips_dir.rglob(".*.tmp"):
            stale.unlink(missing_ok=True)
        manifest.compact()
        (ds / SAMPLES_FILE).unlink(missing_ok=True)  # rewritten at the end; until then the plan stands
        runner = _Runner(ds, cfg, manifest, source, sign, everyone, policy)
        try:
            counts = runner.run(runs, progress)
            if subs.has_reserve:
                runs += _substitute(runner, subs, runs, progress, assign=substitute, overwrite=overwrite)
        finally:
            close_thread_caches()
            table = manifest.compact()
            manifest.close()
        runner.complete_catalog(runs, table)
        catalog.write_catalog(ds, table, {name: source.collection_info(name) for name in cfg.collection})
        achieved = write_achieved(ds, subs, table, substitute=substitute)
        write_section(ds, "fetch", _section(cfg, read_config(ds).get("fetch") or recorded, runs, policy.allow_local))
    elapsed = time.perf_counter() - started
    done = sum(counts.values())
    summary = {**counts, "skipped": skipped, "seconds": round(elapsed, 3), "chips_per_s": done / max(elapsed, 1e-9),
               "substituted": achieved["summary"]["substituted"], "short": achieved["summary"]["shortfall"],
               "achieved": achieved["summary"]["achieved"], "target": achieved["summary"]["target"]}  # fmt: skip
    _warn_quality(runner.low_valid)
    _warn_unobservable(runs, counts)
    _warn_shortfall(achieved, substitute)
    table.attrs["summary"] = summary
    return table


MAX_ROUNDS = 1000
"""Most substitution rounds in one run (each fetches the substitutes of one generation; a bound for safety)."""


def _substitute(
    runner: _Runner, subs: Substitutes, runs: list[_Collection], progress: bool | None, *, assign: bool,
    overwrite: bool,
) -> list[_Collection]:  # fmt: skip
    """Fetch reserve sites for failed ones, round after round, until none is needed or none is left.

    Each round's assignment comes from the manifest alone (:meth:`Substitutes.step`), and the reserve's
    rows carry ``replaces``, so a killed run resumes on the same path. Returns the rounds' runs.
    """
    added: list[_Collection] = []
    fetched: set[str] = set()
    for round_ in range(MAX_ROUNDS):
        table = runner.manifest.table()
        step = subs.step(table, assign=assign, refetch=overwrite and round_ == 0)
        todo = [site for site in step.fetch if site not in fetched or not overwrite]
        if not todo:
            break
        runner.replaces.update(step.replaces)
        rows = subs.samples_of(todo)
        follow = [_follow_up(runner, run, rows, table, redo=overwrite and round_ == 0) for run in runs]
        before = len(table)
        runner.run([f for f in follow if len(f.samples)], progress)
        added += follow
        fetched.update(todo)
        if not any(len(f.samples) for f in follow) and len(runner.manifest.table()) == before:
            break  # nothing left to fetch for these sites: do not spin
    return added


def _follow_up(
    runner: _Runner, run: _Collection, rows: gpd.GeoDataFrame, table: pd.DataFrame, redo: bool
) -> _Collection:
    """The work of a substitution round for one collection: the reserve samples without an ``ok`` chip there."""
    mine = table[(table["collection"] == run.name) & table["sample_id"].isin(rows["sample_id"])]
    ok = mine[mine["status"] == "ok"]
    done = set() if redo or not len(ok) else set(ok.loc[_verify(runner.ds, ok), "sample_id"])
    todo = rows[~rows["sample_id"].isin(done)].reset_index(drop=True)
    in_chips = folder_test(runner.ds, CHIPS_DIR)
    old_paths = {
        str(r.sample_id): (r.path, r.preview if in_chips(r.preview) else None)
        for r in mine.itertuples()
        if in_chips(r.path)
    }
    if run.options.assets or len(todo) == 0:
        return dataclasses.replace(
            run, samples=todo, groups=group_samples(todo) if len(todo) else [], prefetched=[], old_paths=old_paths
        )
    # The plan's own round found no item to learn the assets from: learn them from the reserves' first match.
    recorded = read_config(runner.ds).get("fetch") or {}
    follow, _ = _prepare(
        runner.ds, runner.cfg, recorded, table, todo, runner.source, run.name, run.nested, runner.signer, False,
        runner.policy,
    )  # fmt: skip
    return follow


def _resolve_config(cfg: FetchConfig, recorded: Mapping[str, Any]) -> FetchConfig:
    """The settings of this run: a preset fills what the user left out; nothing given resumes the last run."""
    values = cfg.to_dict()
    defaults = FetchConfig().to_dict()
    if cfg.stac is None and not cfg.collection and cfg.preset is None and recorded:
        base = {k: v for k, v in recorded.items() if k in defaults}
        for key, value in values.items():
            if value != defaults[key]:
                base[key] = value
        for key in ("retry_failed", "limit"):
            base[key] = values[key]
        values = base
    values = apply_preset(values)
    if not values.get("stac"):
        raise ConfigError(
            "no --stac given; give a STAC API URL, a catalog.json or a stac-geoparquet file, or a --preset"
        )
    if not values.get("collection"):
        raise ConfigError("no --collection given; name the STAC collection to fetch from, or give a --preset")
    return FetchConfig.from_mapping(values)


def _verify(ds: Path, rows: pd.DataFrame) -> np.ndarray:
    """Which ``ok`` rows still match their file's sha256 (hashed on a few threads)."""
    in_chips = folder_test(ds, CHIPS_DIR)

    def check(path: str | None, digest: str | None) -> bool:
        if not path or not digest or not in_chips(path):
            return False
        try:
            with open(ds / path, "rb") as fh:
                return hashlib.file_digest(fh, "sha256").hexdigest() == digest
        except OSError:
            return False

    with ThreadPoolExecutor(4) as pool:
        return np.array(list(pool.map(check, rows["path"], rows["sha256"])), dtype=bool)


def _prepare(
    ds: Path,
    cfg: FetchConfig,
    recorded: Mapping[str, Any],
    existing: pd.DataFrame,
    samples: gpd.GeoDataFrame,
    source: StacSource,
    name: str,
    nested: bool,
    signer: Signer | None,
    overwrite: bool,
    policy: HrefPolicy,
) -> tuple[_Collection, int]:
    """Decide which samples need a chip from ``name`` and check the assets, reading nothing into DS."""
    rows = existing[(existing["collection"] == name) & existing["sample_id"].isin(samples["sample_id"])]
    before = (recorded.get("collections") or {}).get(name) or {}
    if not overwrite:
        has_ok = bool((existing.loc[existing["collection"] == name, "status"] == "ok").any())
        _check_consistent(ds, name, cfg, before, has_ok)
    done: set[str] = set()
    if not overwrite:
        ok = rows[rows["status"] == "ok"]
        done = set(ok.loc[_verify(ds, ok), "sample_id"]) if len(ok) else set()
        if not cfg.retry_failed:
            done |= set(rows.loc[rows["status"].isin(["failed", "no_item", "cloudy", "nodata"]), "sample_id"])
    todo = samples[~samples["sample_id"].isin(done)].reset_index(drop=True)
    in_chips = folder_test(ds, CHIPS_DIR)
    old_paths = {
        str(r.sample_id): (r.path, r.preview if in_chips(r.preview) else None)
        for r in rows.itertuples()
        if in_chips(r.path)  # a manifest naming files elsewhere is ignored, never written or removed
    }
    groups = group_samples(todo)
    prefetched = []
    first = None
    for group in groups:
        matches = search_group(source, name, todo, group, max_cloud=cfg.max_cloud, sort=cfg.sort)
        prefetched.append((group, matches))
        first = next((c for sid in matches for c in matches[sid][:1]), None)
        if first is not None:
            break
    info = source.collection_info(name)
    item_assets = info.get("item_assets") or {}
    keys = cfg.assets or tuple(before.get("assets") or ()) or None
    specs: tuple = ()
    native = None
    if first is not None:
        if keys is None:
            keys = tuple(data_assets(first.item))
            if not keys:
                raise ConfigError(f"items of {name!r} have no raster data assets; name them with --assets")
        check_assets(keys, [*first.item.assets, *item_assets], name, f"item {first.item.id}")
        ranked = [c.item for sid in matches for c in matches[sid][:1]]
        for item in ranked:  # the header probe below may read these: refuse local or virtual paths first
            policy.check_item(item, keys)
        specs, native = describe_assets(
            ranked, keys, collection=name, item_assets=item_assets, preset=cfg.preset, signer=signer
        )
    elif keys is not None and item_assets:
        check_assets(keys, list(item_assets), name, "its item_assets")
    resolution = cfg.resolution or before.get("resolution") or (nice_resolution(native) if native else None)
    if resolution is not None:
        check_pixel_budget(todo, resolution)
    harmonize = bool(cfg.harmonize)
    mask, plan = _observation(cfg, name, specs, [*first.item.assets, *item_assets] if first is not None else [])
    options = ReadOptions(
        specs, cfg.resampling, cfg.scale, cfg.preview, min(cfg.retries, 4), mask, plan, cfg.max_chip_cloud,
        cfg.min_valid,
    )  # fmt: skip
    run = _Collection(
        name, todo, groups[len(prefetched) :], prefetched, options, resolution, nested, harmonize, cfg.mosaic,
        old_paths,
    )  # fmt: skip
    return run, len(samples) - len(todo)


def _observation(
    cfg: FetchConfig, name: str, specs: Sequence[AssetSpec], available: Sequence[str]
) -> tuple[AssetSpec | None, ObservationPlan | None]:
    """The cloud-mask asset to read beside the chip (if the items have one and it is not a chip band) and the plan.

    Raises:
        ConfigError: If ``--max-chip-cloud`` is given but cloud cannot be measured on these chips.
    """
    if not cfg.observe or not specs:
        return None, None
    keys = [a.key for a in specs]
    found = mask_asset(available)
    mask = AssetSpec(found, (found,), categorical=True) if found is not None and found not in keys else None
    names = [n for a in specs for n in a.names]
    commons = [c for a in specs for c in (a.common_names or (None,) * len(a.names))]
    calibrated = [
        a.scale is not None or a.s2_offset or (cfg.scale and a.offset is not None) for a in specs for _ in a.names
    ]
    plan = observation_plan(
        names, common_names=commons, calibrated=calibrated, mask=mask_kind(mask.key) if mask is not None else None
    )
    if cfg.max_chip_cloud is not None and plan.cloud_method is None:
        raise ConfigError(
            f"--max-chip-cloud needs cloud measured on the chips, but the chips of {name!r} (bands "
            f"{', '.join(names)}) have no cloud-mask band (scl, qa_pixel) and lack "
            f"{', '.join(_missing_for_spectral(plan))} for the spectral test; add those assets with --assets "
            "(with a reflectance scale) or drop --max-chip-cloud"
        )
    return mask, plan


def _missing_for_spectral(plan: ObservationPlan) -> list[str]:
    need = ["blue", "green", "red", "nir", "swir16", "swir22"]
    missing = [n for n in need if n not in plan.role]
    return missing or ["a known reflectance scale (raster:bands scale, or --preset)"]


def _settings(run: _Collection) -> dict[str, Any]:
    plan = run.options.observe
    return {
        "assets": [a.key for a in run.options.assets],
        "bands": list(run.options.band_names),
        "resolution": run.resolution,
        "resampling": run.options.resampling,
        "harmonize": run.harmonize,
        "scale": run.options.apply_scale,
        "mosaic": run.mosaic,
        "cloud_mask": run.options.mask.key if run.options.mask is not None else None,
        "observations": plan.describe() if plan is not None else None,
    }


def _check_consistent(ds: Path, name: str, cfg: FetchConfig, before: Mapping[str, Any], has_ok: bool) -> None:
    """Refuse to mix chips made with other band, resolution or value settings into one collection's chips."""
    if not before or not has_ok:
        return
    now = {
        "assets": list(cfg.assets) if cfg.assets else before.get("assets"),
        "resolution": cfg.resolution or before.get("resolution"),
        "resampling": cfg.resampling,
        "harmonize": bool(cfg.harmonize),
        "scale": cfg.scale,
    }
    diff = [k for k, v in now.items() if before.get(k) != v]
    if diff:
        was = ", ".join(f"{k.replace('_', '-')} {before.get(k)!r}" for k in diff)
        raise DatasetError(
            f"{ds} already holds {name!r} chips made with {was}; repeat those settings to resume, "
            "or add --overwrite to fetch every chip again with the new ones"
        )


def _section(
    cfg: FetchConfig, recorded: Mapping[str, Any], runs: Sequence[_Collection], allow_local: bool = False
) -> dict[str, Any]:
    collections = dict(recorded.get("collections") or {})
    for run in runs:
        if run.options.assets:
            collections[run.name] = _settings(run)
    values = cfg.to_dict()
    values.pop("retry_failed")
    return {**values, "collections": collections, **local_assets_record(allow_local), "geosample_version": __version__}


def _warn_unobservable(runs: Sequence[_Collection], counts: Mapping[str, int]) -> None:
    """Say once per collection what its chips cannot show and which bands that needs."""
    if not counts.get("ok"):
        return
    for run in runs:
        plan = run.options.observe
        if plan is None:
            continue
        missing = plan.missing()
        missing.pop("built", None)
        if missing:
            what = "; ".join(f"{k} needs {v}" for k, v in missing.items())
            warnings.warn(
                f"chips of {run.name!r} (bands {', '.join(run.options.band_names)}) cannot show everything: {what}; "
                + ("their observed cover is null" if not plan.classes else "those stay out of observed"),
                ObservationWarning,
                stacklevel=3,
            )


def _warn_shortfall(achieved: Mapping[str, Any], substitute: bool) -> None:
    """Say how many failed sites stay unreplaced, and in how many strata."""
    summary = achieved["summary"]
    if not summary["shortfall"]:
        return
    why = (
        "no reserve site of their stratum (or event) was left"
        if substitute
        else "substitution is off (no reserve.parquet, or --no-substitute)"
    )
    warnings.warn(
        f"{summary['shortfall']} failed site(s) in {summary['strata_short']} strata were not replaced: {why}; "
        "the dataset falls short of the plan there (see 'achieved' in report/balance.json)",
        ShortfallWarning,
        stacklevel=3,
    )


def _warn_quality(low: list[str]) -> None:
    if low:
        warnings.warn(
            f"{len(low)} chip(s) have data in less than half their pixels (e.g. {low[0]}); "
            "--mosaic fills chips from several items",
            DataQualityWarning,
            stacklevel=3,
        )


_Task = tuple[_Collection, list[ChipJob]]


class _Runner:
    """The fetch loop: searches and reads in flight at once, results written as they come."""

    def __init__(
        self, ds: Path, cfg: FetchConfig, manifest: Manifest, source: StacSource, signer: Signer | None,
        plan: gpd.GeoDataFrame, policy: HrefPolicy,
    ) -> None:  # fmt: skip
        self.ds = ds
        self.policy = policy
        self.cfg = cfg
        self.manifest = manifest
        self.source = source
        self.signer = signer
        self.footprints = dict(zip(plan["sample_id"].astype(str), plan.geometry.values, strict=True))
        self.sites = dict(zip(plan["sample_id"].astype(str), plan.get("site_id", plan["sample_id"]), strict=True))
        self.paired = paired_samples(plan)
        self.counts = {"ok": 0, "no_item": 0, "failed": 0, "cloudy": 0, "nodata": 0}
        self.replaces: dict[str, str] = {}
        """Reserve sample id → the plan sample it replaces (its rows carry it in ``replaces``)."""
        self.rows = plan
        self.low_valid: list[str] = []
        self._chosen: dict[tuple[str, str], tuple[list[Candidate], list[Candidate]]] = {}
        self._bar: Any = None
        self._chip_path = folder_paths(ds, CHIPS_DIR, what="chip path")
        self._item_path = catalog.ItemPaths(ds)
        self._items_written: set[tuple[str, str]] = set()
        """(collection, sample id) of the items this run wrote: :meth:`complete_catalog` need not look for them."""

    def run(self, runs: Sequence[_Collection], progress: bool | None) -> dict[str, int]:
        """Search, read and record every chip of ``runs``; returns the counts by status."""
        from tqdm.auto import tqdm

        total = sum(len(r.samples) for r in runs)
        disable = None if progress is None else not progress
        with tqdm(total=total, desc="fetch", unit="chip", disable=disable, leave=False, smoothing=0.05) as bar:
            self._bar = bar
            self._loop(runs)
        return self.counts

    def _loop(self, runs: Sequence[_Collection]) -> None:
        searches: deque[tuple[_Collection, SearchGroup]] = deque((r, g) for r in runs for g in r.groups)
        tasks: deque[_Task] = deque()
        for run in runs:
            for group, matches in run.prefetched:
                tasks.extend(self._matched(run, group, matches))
        in_search: dict[Future, tuple[_Collection, SearchGroup]] = {}
        in_read: dict[Future, tuple[_Collection, list[ChipJob]]] = {}
        with (
            open_executor(self.cfg.dask_scheduler, self.cfg.workers) as (executor, max_reads),
            ThreadPoolExecutor(SEARCH_THREADS, thread_name_prefix="geosample-search") as searcher,
        ):
            local = isinstance(executor, AffinityPool)
            try:
                while searches or tasks or in_search or in_read:
                    while searches and len(in_search) < SEARCH_THREADS and len(tasks) < 4 * max_reads:
                        run, group = searches.popleft()
                        future = searcher.submit(
                            search_group, self.source, run.name, run.samples, group,
                            max_cloud=self.cfg.max_cloud, sort=self.cfg.sort,
                        )  # fmt: skip
                        in_search[future] = (run, group)
                    while tasks and len(in_read) < max_reads:
                        run, jobs = tasks.popleft()
                        # A local thread hands back its last chips still encoding and reads on; a Dask task
                        # returns its chips whole.
                        future = executor.submit(run_task, jobs, run.options, self.signer, wait=not local)
                        in_read[future] = (run, jobs)
                    done, _ = wait([*in_search, *in_read], return_when=FIRST_COMPLETED)
                    for future in done:
                        if future in in_search:
                            run, group = in_search.pop(future)
                            tasks.extend(self._searched(run, group, future))
                        else:
                            run, jobs = in_read.pop(future)
                            self._read(run, jobs, future)
                    self.manifest.maybe_compact()
            finally:
                for future in [*in_search, *in_read]:
                    future.cancel()

    def _searched(self, run: _Collection, group: SearchGroup, future: Future) -> list[_Task]:
        try:
            matches = future.result()
        except StacError as exc:
            ids = [str(s) for s in run.samples["sample_id"].iloc[group.rows]]
            self._record(run, [self._row(run, sid, "failed", error=str(exc)) for sid in ids])
            return []
        return self._matched(run, group, matches)

    def _matched(self, run: _Collection, group: SearchGroup, matches: Mapping[str, list[Candidate]]) -> list[_Task]:
        """Rows for samples without items; read tasks (nearby chips sharing items) for the others."""
        rows, jobs = [], []
        sub = run.samples.iloc[group.rows]
        for rec in sub.itertuples(index=False):
            sid = str(rec.sample_id)
            candidates = matches.get(sid, [])
            if not candidates or run.resolution is None:
                rows.append(self._row(run, sid, "no_item"))
                continue
            chosen = mosaic_items(rec.geometry, candidates) if run.mosaic else candidates[:1]
            limits = run.options.max_chip_cloud is not None or run.options.min_valid is not None
            alternates = [] if run.mosaic or not limits else _alternates(candidates[1:], rec)[:MAX_ALTERNATES]
            self._chosen[(run.name, sid)] = (chosen, alternates)
            grid = chip_grid(rec.lon, rec.lat, int(rec.epsg), float(rec.chip_size_m), float(run.resolution))
            keys = [a.key for a in run.options.assets]
            if run.options.mask is not None:
                keys.append(run.options.mask.key)

            def ref(c: Candidate, keys: list[str] = keys) -> SourceRef:
                in_data = _is_s2(run.name, c) and needs_harmonize(c.item.properties, c.item.datetime)
                hrefs = self.policy.check_hrefs(item_hrefs(c.item, keys), c.item.id)
                return SourceRef(c.item.id, hrefs, run.harmonize and in_data, in_data)

            jobs.append(
                ChipJob(
                    sid, run.name, grid, tuple(ref(c) for c in chosen), tuple((ref(c),) for c in alternates),
                    with_map=run.options.observe is not None and sid in self.paired,
                )
            )  # fmt: skip
        self._record(run, rows)
        return [(run, chunk) for chunk in task_chunks(jobs, self.cfg.workers)]

    def _read(self, run: _Collection, jobs: list[ChipJob], future: Future) -> None:
        try:
            results = [_chip_result(r, j) for r, j in zip(future.result(), jobs, strict=True)]
        except Exception as exc:  # noqa: BLE001 - a crashed worker fails its chips, not the run
            results = [ChipResult(j.sample_id, j.collection, error=_crash(exc)) for j in jobs]
        by_id = {j.sample_id: j for j in jobs}
        rows = []
        for result in results:
            job = by_id[result.sample_id]
            if result.status in ("cloudy", "nodata"):
                rows.append(
                    self._row(run, job.sample_id, result.status, error=result.error, observation=result.observation)
                )
                continue
            if result.error is not None or result.cog is None:
                rows.append(self._row(run, job.sample_id, "failed", error=result.error or "no data"))
                continue
            rows.append(self._write_chip(run, job, result))
        self._record(run, rows)

    def _write_chip(self, run: _Collection, job: ChipJob, result: ChipResult) -> dict[str, Any]:
        path, preview = run.paths(job.sample_id)
        write_atomic(self._chip_path(path), result.cog or b"")
        if result.png is not None:
            write_atomic(self.ds / preview, result.png)
        observed_map = None
        if result.map_cog is not None:
            observed_map = run.map_path(path)
            write_atomic(self.ds / observed_map, result.map_cog)
        else:
            (self.ds / run.map_path(path)).unlink(missing_ok=True)
        chosen, alternates = self._chosen.pop((run.name, job.sample_id))
        if result.source_index:
            chosen = [alternates[result.source_index - 1]]
        row = self._row(
            run, job.sample_id, "ok", chosen=chosen, path=path, grid=job.grid, sha256=result.sha256,
            preview=preview if result.png is not None else None, observation=result.observation,
            observed_map=observed_map,
        )  # fmt: skip
        if result.valid_fraction < 0.5:
            self.low_valid.append(job.sample_id)
        sources = [(c.item.id, self.source.item_href(c.item)) for c in chosen]
        item = catalog.chip_item(
            row,
            self.footprints[job.sample_id],
            job.grid,
            sources,
            {"geosample:site_id": str(self.sites[job.sample_id])},
        )
        catalog.write_item(self.ds, run.name, job.sample_id, item, self._item_path)
        self._items_written.add((run.name, job.sample_id))
        return row

    def _row(
        self,
        run: _Collection,
        sample_id: str,
        status: str,
        *,
        error: str | None = None,
        chosen: Sequence[Candidate] = (),
        path: str | None = None,
        grid: Any = None,
        sha256: str | None = None,
        preview: str | None = None,
        observation: Mapping[str, Any] | None = None,
        observed_map: str | None = None,
    ) -> dict[str, Any]:
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(sample_id=sample_id, status=status, error=error, collection=run.name, resolution=run.resolution,
                   replaces=self.replaces.get(sample_id))  # fmt: skip
        if observation:
            row.update(observation)
        if status == "ok":
            first = chosen[0]
            row.update(
                item_id=",".join(c.item.id for c in chosen), cloud_cover=first.cloud, path=path, width=grid.width,
                height=grid.height, bands=list(run.options.band_names), sha256=sha256, preview=preview,
                observed_map=observed_map, **item_dates([c.item for c in chosen]),
            )  # fmt: skip
        return row

    def _record(self, run: _Collection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        for row in rows:
            if row["status"] != "ok":
                self._forget(run, row["sample_id"])
            self.counts[row["status"]] += 1
        self.manifest.append(rows)
        if self._bar is not None:
            self._bar.update(len(rows))

    def _forget(self, run: _Collection, sample_id: str) -> None:
        """A chip that is no longer ``ok`` loses its old file, preview and item."""
        self._chosen.pop((run.name, sample_id), None)
        self._items_written.discard((run.name, sample_id))
        for rel in run.old_paths.get(sample_id, ()):
            if rel and in_folder(self.ds, rel, CHIPS_DIR):
                (self.ds / rel).unlink(missing_ok=True)
                if rel.endswith(".tif"):
                    (self.ds / run.map_path(rel)).unlink(missing_ok=True)
        catalog.remove_item(self.ds, run.name, sample_id)

    def complete_catalog(self, runs: Sequence[_Collection], table: pd.DataFrame) -> None:
        """Write items missing for ``ok`` chips (their run was killed between the chip and its item)."""
        plan_rows = None
        for run in runs:
            if run.resolution is None:
                continue
            ok = table[(table["collection"] == run.name) & (table["status"] == "ok")]
            missing = [
                i for i, sid in enumerate(ok["sample_id"])
                if (run.name, sid) not in self._items_written and not self._item_path(run.name, sid).exists()
            ]  # fmt: skip
            for row in ok.iloc[missing].to_dict("records"):
                if plan_rows is None:
                    plan_rows = self.rows.set_index("sample_id")
                if row["sample_id"] not in plan_rows.index:
                    continue
                rec = plan_rows.loc[row["sample_id"]]
                grid = chip_grid(rec.lon, rec.lat, int(rec.epsg), float(rec.chip_size_m), float(row["resolution"]))
                ids = str(row["item_id"]).split(",")
                base = self.source.url.rstrip("/") if isinstance(self.source, ApiSource) else None
                sources = [(i, f"{base}/collections/{run.name}/items/{i}" if base else None) for i in ids]
                item = catalog.chip_item(
                    row, rec.geometry, grid, sources, {"geosample:site_id": str(rec.get("site_id"))}
                )
                catalog.write_item(self.ds, run.name, row["sample_id"], item, self._item_path)


def _chip_result(result: ChipResult | Future[ChipResult], job: ChipJob) -> ChipResult:
    """A chip's result, once its encode (still running when its task came back) is done."""
    if not isinstance(result, Future):
        return result
    try:
        return result.result()
    except Exception as exc:  # noqa: BLE001 - a failed encode fails its chip, not the run
        return ChipResult(job.sample_id, job.collection, error=_crash(exc))


def _crash(exc: BaseException) -> str:
    """One line for a chip whose worker or encoder raised."""
    return " ".join(f"{exc.__class__.__name__}: {exc}".split())[:300]


def item_dates(items: Sequence[Any]) -> dict[str, pd.Timestamp | None]:
    """``item_datetime`` (the item's own datetime; none for a mosaic of several) and the items' time span.

    The span is the item's ``start_datetime``/``end_datetime``, or for a mosaic the span of its items' times;
    a single item without a range has none.
    """

    def utc(value: Any) -> pd.Timestamp | None:
        return None if value is None else pd.Timestamp(value).tz_convert("UTC")

    when = utc(items[0].datetime) if len(items) == 1 else None
    starts = [i.common_metadata.start_datetime or i.datetime for i in items]
    ends = [i.common_metadata.end_datetime or i.datetime for i in items]
    ranged = len(items) > 1 or items[0].common_metadata.start_datetime is not None
    start = min((s for s in starts if s is not None), default=None) if ranged else None
    end = max((e for e in ends if e is not None), default=None) if ranged else None
    return {"item_datetime": when, "item_start_datetime": utc(start), "item_end_datetime": utc(end)}


def paired_samples(plan: pd.DataFrame) -> set[str]:
    """Samples of event pairs or revisit series (a site with several windows at one chip size)."""
    if "site_id" not in plan.columns or not ({"phase", "revisit_index"} & set(plan.columns)):
        return set()
    keys = [plan["site_id"].astype(str), plan["chip_size_m"].astype(float)] if "chip_size_m" in plan else [
        plan["site_id"].astype(str)
    ]  # fmt: skip
    sizes = plan.groupby(keys)["sample_id"].transform("size")
    return set(plan.loc[sizes.to_numpy() > 1, "sample_id"].astype(str))


def _alternates(candidates: Sequence[Candidate], sample: Any) -> list[Candidate]:
    """The other candidates in the order they are tried: covering the chip, nearest in time, least cloud."""
    start = pd.Timestamp(sample.start_datetime)
    middle = start + (pd.Timestamp(sample.end_datetime) - start) / 2

    def key(c: Candidate) -> tuple[Any, ...]:
        cloud = c.cloud if c.cloud is not None and np.isfinite(c.cloud) else np.inf
        return (not c.covers, abs((pd.Timestamp(c.when) - middle).total_seconds()), cloud, c.item.id)

    return sorted(candidates, key=key)


def _is_s2(collection: str, candidate: Candidate) -> bool:
    props = candidate.item.properties
    platform = str(props.get("platform", "")).lower()
    return (
        "sentinel-2" in collection.lower()
        or platform.startswith("sentinel-2")
        or "s2:processing_baseline" in props
        or "sentinel:processing_baseline" in props
    )
