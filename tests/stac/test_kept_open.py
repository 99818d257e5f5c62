"""Sources kept open across chips and tasks: the same chips, byte for byte, within a bounded number of open files."""

from __future__ import annotations

import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.vrt import WarpedVRT
from rasterio.windows import from_bounds

from geosample.stac import fetch
from geosample.stac._dask import AffinityPool
from geosample.stac.grid import ChipGrid
from geosample.stac.reader import write_cog

COLL = "sentinel-2-l2a"
ASSETS = ("red", "green", "nir", "scl")


def todays_read(path: Path, grid: ChipGrid) -> np.ma.MaskedArray:
    """Today's read of one source, done plainly: the file opened for this chip alone and GDAL's own mask.

    As the reader documents: a window read when the chip lies inside the file in its CRS, else a warp
    (``WarpedVRT`` with the file's nodata, or an alpha band when it has none), read with ``masked=True``.
    """
    with rasterio.open(path) as src:
        left, bottom, right, top = grid.bounds
        inside = src.bounds.left <= left and src.bounds.bottom <= bottom and right <= src.bounds.right
        if src.crs == grid.crs and inside and top <= src.bounds.top:
            window = from_bounds(left, bottom, right, top, transform=src.transform)
            return src.read(window=window, out_shape=(src.count, grid.height, grid.width), masked=True)
        options: dict[str, Any] = {"crs": grid.crs, "transform": grid.transform, "width": grid.width,
                                   "height": grid.height}  # fmt: skip
        options.update(add_alpha=True) if src.nodata is None else options.update(src_nodata=src.nodata,
                                                                                    nodata=src.nodata)  # fmt: skip
        with WarpedVRT(src, **options) as vrt:
            return vrt.read(list(range(1, src.count + 1)), masked=True)


def todays_chip(chip: Path, sources: list[list[Path]]) -> bytes:
    """The chip file today's path makes: each asset a mosaic of its items (first valid pixel wins), encoded
    with the settings the chip file records (band names, nodata, scales and offsets)."""
    with rasterio.open(chip) as done:
        grid = ChipGrid(done.crs, done.transform, done.width, done.height)
        names, nodata, scales, offsets = done.descriptions, done.nodata, done.scales, done.offsets
    parts = []
    for paths in sources:
        out = todays_read(paths[0], grid)
        for path in paths[1:]:
            more = todays_read(path, grid)
            out = np.ma.where(np.ma.getmaskarray(out), more, out)
        parts.append(out)
    stacked = np.ma.concatenate(parts, axis=0)
    scaled = any(s != 1.0 for s in scales) or any(o != 0.0 for o in offsets)
    return write_cog(
        stacked, grid, names, nodata=nodata, scales=scales if scaled else None, offsets=offsets if scaled else None
    )


@pytest.fixture
def open_files(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the rasterio datasets each fetch read thread holds open, at every open (the most at once)."""
    real_open = rasterio.open
    live: dict[str, list[weakref.ref]] = {}
    most: dict[str, int] = {}
    lock = threading.Lock()

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        src = real_open(*args, **kwargs)
        name = threading.current_thread().name
        if name.startswith("geosample-fetch"):
            with lock:
                refs = [r for r in live.get(name, []) if r() is not None and not r().closed]
                refs.append(weakref.ref(src))
                live[name] = refs
                most[name] = max(most.get(name, 0), len(refs))
        return src

    monkeypatch.setattr(rasterio, "open", counting_open)
    return most


def test_kept_open_chips_are_todays_chips_byte_for_byte(
    planned_ds: Path, stac_api: str, files_root: Path, s2: dict
) -> None:
    table = fetch(planned_ds, stac=stac_api, collection=COLL, assets=",".join(ASSETS), progress=False, workers=3)
    ok = table[table["status"] == "ok"]
    roles = {s2["roles"][sid] for sid in ok["sample_id"]}
    assert {"plain", "other_zone", "geographic", "mosaic", "ranked"} <= roles  # aligned, warped, mosaics
    for row in ok.itertuples():
        sources = [[files_root / COLL / item / f"{asset}.tif" for item in row.item_id.split(",")] for asset in ASSETS]
        assert (planned_ds / row.path).read_bytes() == todays_chip(planned_ds / row.path, sources), row.sample_id


def test_warped_sources_without_nodata_are_todays_chips(pc_ds: Path, stac_api: str, files_root: Path) -> None:
    """NAIP has no nodata: GDAL's mask of a warp is its alpha band, now read in the same pass as the pixels."""
    table = fetch(pc_ds, preset="pc-naip", stac=stac_api, signer=str, progress=False)
    assert (table["status"] == "ok").all()
    for row in table.itertuples():
        chip = pc_ds / row.path
        assert chip.read_bytes() == todays_chip(chip, [[files_root / "naip" / row.item_id / "image.tif"]])


def test_real_landsat_scene_across_zones_is_todays_chip(andros_ds: Path, stac_api: str, files_root: Path) -> None:
    table = fetch(andros_ds, stac=stac_api, collection="landsat-7-rgb", progress=False)
    for row in table.itertuples():
        paths = sorted((files_root / "landsat-7-rgb" / row.item_id).glob("*.tif"))
        assert len(paths) == 1
        chip = andros_ds / row.path
        assert chip.read_bytes() == todays_chip(chip, [paths]), row.sample_id


def test_open_files_stay_within_the_budget(
    planned_ds: Path, tmp_path: Path, stac_api: str, open_files: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many items, two open sources per thread: never more at once, and the chips do not change."""
    import shutil

    reference = tmp_path / "REF"
    shutil.copytree(planned_ds, reference)
    wide = fetch(reference, stac=stac_api, collection=COLL, assets=",".join(ASSETS), progress=False, workers=4)
    open_files.clear()
    monkeypatch.setenv("GEOSAMPLE_OPEN_SOURCES", "2")
    table = fetch(planned_ds, stac=stac_api, collection=COLL, assets=",".join(ASSETS), progress=False, workers=2)
    items = {i for ids in table["item_id"].dropna() for i in ids.split(",")}
    assert len(items) * len(ASSETS) > 40  # many more sources than the budget
    assert len(open_files) == 2 and max(open_files.values()) == 2  # both threads, each at most 2 open at once
    pd.testing.assert_series_equal(table["sha256"], wide["sha256"])


def test_open_sources_budget_is_checked(planned_ds: Path, stac_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from geosample.errors import ConfigError

    monkeypatch.setenv("GEOSAMPLE_OPEN_SOURCES", "lots")
    with pytest.raises(ConfigError, match="GEOSAMPLE_OPEN_SOURCES='lots'.*1 to 4096"):
        fetch(planned_ds, stac=stac_api, collection=COLL, assets="red", progress=False, limit=3)
    assert not (planned_ds / "chips.parquet").exists() and not (planned_ds / "chips").exists()


def test_a_failed_encode_fails_its_chip_only(planned_ds: Path, stac_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task's last chips are still encoding when its thread reads on; an encode that raises fails its chip."""
    import geosample.stac._work as work

    real_encode = work._encode
    victims: list[str] = []

    def encode(job: Any, *args: Any) -> Any:
        if not victims:
            victims.append(job.sample_id)
            raise MemoryError("no room for the chip")
        return real_encode(job, *args)

    monkeypatch.setattr(work, "_encode", encode)
    table = fetch(planned_ds, stac=stac_api, collection=COLL, assets="red", progress=False, workers=2, limit=12)
    failed = table[table["status"] == "failed"]
    assert list(failed["sample_id"]) == victims
    assert failed["error"].iloc[0] == "MemoryError: no room for the chip"
    others = table.loc[table["sample_id"] != victims[0], "status"]
    assert "ok" in set(others) and "failed" not in set(others)
    assert not (planned_ds / "stac" / COLL / f"{victims[0]}.json").exists()


def test_local_tasks_hand_back_their_last_encodes(
    planned_ds: Path, stac_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the thread pool ``run_task(wait=False)`` returns futures for chips still encoding; on Dask, results."""
    import importlib
    from concurrent.futures import Future

    import geosample.stac._work as work

    jobs_seen: list[Any] = []
    real = work.run_task

    def spy(jobs: Any, options: Any, signer: Any = None, *, wait: bool = True) -> Any:
        out = real(jobs, options, signer, wait=wait)
        jobs_seen.append((wait, [type(r) for r in out]))
        return out

    monkeypatch.setattr(importlib.import_module("geosample.stac.fetch"), "run_task", spy)
    table = fetch(planned_ds, stac=stac_api, collection=COLL, assets="red", progress=False, workers=1, limit=8)
    assert (table["status"] != "failed").all()
    assert jobs_seen and all(not wait for wait, _ in jobs_seen)
    assert any(kind is Future for _, kinds in jobs_seen for kind in kinds)
    results = real([], work.ReadOptions(assets=()), wait=True)
    assert results == []


@settings(max_examples=25, deadline=None)
@given(
    keys=st.lists(st.sampled_from("abcdef"), min_size=1, max_size=40),
    workers=st.integers(1, 4),
)
def test_affinity_pool_runs_every_task_and_keeps_keys_together(keys: list[str], workers: int) -> None:
    """Every task runs once, with its result; a key's tasks share a thread unless it is busier than the rest."""
    pool = AffinityPool(workers, lambda args: args[0])
    ran: dict[int, str] = {}

    def task(key: str, i: int) -> tuple[int, str]:
        time.sleep(0.001)
        ran[i] = threading.current_thread().name
        return i, key

    futures = [pool.submit(task, key, i) for i, key in enumerate(keys)]
    assert [f.result() for f in futures] == list(enumerate(keys))
    pool.shutdown()
    assert sorted(ran) == list(range(len(keys)))
    assert len(set(ran.values())) <= workers
    if workers == 1 or len(set(keys)) == 1 and len(keys) == 1:
        return
    # Submitted all at once: the first task of each key lands on its home thread.
    homes: dict[str, str] = {}
    for i, key in enumerate(keys):
        homes.setdefault(key, ran[i])
    assert len(set(homes.values())) <= workers
