"""The whole pipeline at growing sizes: where does it stop scaling? (not a timed test)

Builds a synthetic archive on loopback once: four COG tiles (red, green,
blue as uint16, and an ESA WorldCover-coded land-cover band as uint8, 160 m
pixels, EPSG:32637) covering a regional AOI in northern Kenya and southern
Ethiopia (``bbox:36.5,0.5,41.5,5.5``), served over HTTP with Range requests
(``tests/stac/servers.py:FileServer``), and a STAC API (``rustac serve``)
with two collections of 400 items each, on a 20 × 20 grid over the AOI, every
item's assets pointing at the tile that holds its footprint. Chips are cheap:
320 m at 20 m (16 × 16 px).

Then, for each size (10,000 and 50,000 samples; 200,000 with ``--with-200k``),
in a fresh dataset, each stage in a fresh process, the stages as a user runs
them:

* ``plan``: ``geosample.plan`` of N samples over the AOI (chip size 320 m, 2021, defaults otherwise);
* ``fetch``: ``geosample.fetch`` of the three bands at 20 m with previews (4 workers, the default);
* ``label``: ``geosample.label`` from the land-cover collection (``stac:bench-landcover``, ``esa-worldcover``);
* ``caption``: ``geosample.caption`` with the offline template backend;
* ``export-webdataset``, ``export-parquet``: ``geosample.export`` in both formats (splits included);
* ``stats``: ``geosample.stats``.

Per stage it prints the wall time per 1,000 samples (``time.perf_counter()``
around the stage call only, imports outside), the CPU time (the process's,
all threads), the peak RSS of the stage's process (``VmHWM``, imports
included) and the files it wrote (new or changed under ``DS``), and then the
ratios of each size to the one before it: per-1,000-sample time (target
≤ 1.2× each time), peak RSS (target < 2× from the first size to the second,
10,000 to 50,000; shown, not judged, beyond), and whether any stage passed
4 GB. The
machine, the load average at each stage's start and the BLAS are printed:
other engineers share this machine.

Usage::

    python benchmarks/pipeline_bench.py                        # 10k and 50k (tens of minutes)
    python benchmarks/pipeline_bench.py --sizes 2000,10000 --json /tmp/pipeline.json
    python benchmarks/pipeline_bench.py --with-200k            # also 200k
    python benchmarks/pipeline_bench.py --tiny                 # 200 samples on a small AOI (the test's mode)
    python benchmarks/pipeline_bench.py --work W --keep        # keep the datasets in W/DS-<size> ...
    python benchmarks/pipeline_bench.py --work W --stages export-webdataset,export-parquet,stats  # ... re-run these
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _machine, also when a test loads this file
from _machine import describe, peak_rss_mb  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULT_TAG = "PIPELINE_BENCH_RESULT "
STAGES = ("plan", "fetch", "label", "caption", "export-webdataset", "export-parquet", "stats")
EPSG = 32637
AOI = (36.5, 0.5, 41.5, 5.5)
TINY_AOI = (37.0, 1.0, 37.6, 1.6)
PIXEL_M = 160.0
CHIP_M = 320.0
CHIP_RES_M = 20.0
ITEM_GRID = 20
TINY_ITEM_GRID = 4
BANDS = ("red", "green", "blue")
WORLDCOVER = (10, 20, 30, 40, 50, 60, 80, 90)
"""ESA WorldCover classes painted on the land-cover tiles (trees, shrubs, grass, crops, built, bare, water, wetland)."""
TARGET_TIME_RATIO = 1.2
TARGET_RSS_RATIO = 2.0
TARGET_RSS_MB = 4096.0


# --------------------------------------------------------------------------- the archive


def build_archive(folder: Path, aoi: tuple[float, float, float, float], grid: int) -> dict[str, Any]:
    """Four COG tiles per band covering ``aoi`` and the STAC items (``{base}`` for the file server's URL)."""
    import numpy as np
    import pyproj
    import rasterio
    import shapely
    from rasterio.transform import from_origin
    from rasterio.warp import transform_geom

    done = folder / "archive.json"
    if done.exists():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    to_xy = pyproj.Transformer.from_crs(4326, EPSG, always_xy=True)
    west, south, east, north = aoi
    xs, ys = to_xy.transform([west, west, east, east], [south, north, south, north])
    x0 = np.floor((min(xs) - 2000) / PIXEL_M) * PIXEL_M
    y1 = np.ceil((max(ys) + 2000) / PIXEL_M) * PIXEL_M
    width = int(np.ceil((max(xs) + 2000 - x0) / PIXEL_M))
    height = int(np.ceil((y1 - min(ys) + 2000) / PIXEL_M))
    half_w, half_h = -(-width // 2), -(-height // 2)
    tiles = []
    for ty in range(2):
        for tx in range(2):
            tw, th = min(half_w, width - tx * half_w), min(half_h, height - ty * half_h)
            tx0, ty1 = x0 + tx * half_w * PIXEL_M, y1 - ty * half_h * PIXEL_M
            transform = from_origin(tx0, ty1, PIXEL_M, PIXEL_M)
            yy, xx = np.mgrid[0:th, 0:tw].astype(np.float32)
            rng = np.random.default_rng([tx, ty])
            # Land cover in blocks of 8 x 8 pixels (1.3 km), so that chips see one class or a few.
            blocks = rng.integers(0, len(WORLDCOVER), (-(-th // 8), -(-tw // 8)))
            cover = np.asarray(WORLDCOVER, dtype=np.uint8)[np.kron(blocks, np.ones((8, 8), dtype=np.int64))[:th, :tw]]
            layers = {
                band: (1200 + 500 * b + 400 * np.sin(xx / (23 + 5 * b)) * np.cos(yy / 31) + cover * 3).astype(np.uint16)
                for b, band in enumerate(BANDS)
            }
            layers["map"] = cover
            for name, data in layers.items():
                path = folder / f"tile{ty}{tx}" / f"{name}.tif"
                path.parent.mkdir(parents=True, exist_ok=True)
                with rasterio.open(
                    path, "w", driver="COG", width=tw, height=th, count=1, dtype=data.dtype.name,
                    crs=f"EPSG:{EPSG}", transform=transform, nodata=0, blocksize=256, compress="deflate",
                ) as dst:  # fmt: skip
                    dst.write(data, 1)
            tiles.append({"name": f"tile{ty}{tx}", "bounds": (tx0, ty1 - th * PIXEL_M, tx0 + tw * PIXEL_M, ty1),
                          "shape": [th, tw], "transform": list(transform)[:6]})  # fmt: skip
    items: dict[str, list[dict[str, Any]]] = {"bench-rgb": [], "bench-landcover": []}
    step_x, step_y = (max(xs) - min(xs)) / grid, (max(ys) - min(ys)) / grid
    for i in range(grid):
        for j in range(grid):
            box = (min(xs) + i * step_x, min(ys) + j * step_y, min(xs) + (i + 1) * step_x, min(ys) + (j + 1) * step_y)
            centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            tile = next(t for t in tiles if t["bounds"][0] <= centre[0] < t["bounds"][2]
                        and t["bounds"][1] <= centre[1] < t["bounds"][3])  # fmt: skip
            # The item covers the part of its grid cell on its tile (a chip is read from one tile).
            clip = (max(box[0], tile["bounds"][0]), max(box[1], tile["bounds"][1]),
                    min(box[2], tile["bounds"][2]), min(box[3], tile["bounds"][3]))  # fmt: skip
            geom = transform_geom(f"EPSG:{EPSG}", "EPSG:4326", shapely.geometry.mapping(shapely.box(*clip)))
            for collection, assets in (("bench-rgb", BANDS), ("bench-landcover", ("map",))):
                items[collection].append({
                    "type": "Feature", "stac_version": "1.1.0", "id": f"{collection}-{i:02d}-{j:02d}",
                    "collection": collection,
                    "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
                    "geometry": geom, "bbox": list(shapely.geometry.shape(geom).bounds),
                    "properties": {"datetime": "2021-06-01T10:00:00Z", "proj:code": f"EPSG:{EPSG}",
                                   "eo:cloud_cover": 1.0},
                    "links": [],
                    "assets": {name: {
                        "href": f"{{base}}/{tile['name']}/{name}.tif",
                        "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"],
                        "proj:shape": tile["shape"], "proj:transform": tile["transform"],
                        "raster:bands": [{"nodata": 0, "data_type": "uint8" if name == "map" else "uint16",
                                          "spatial_resolution": PIXEL_M}],
                    } for name in assets},
                })  # fmt: skip
    meta = {"aoi": list(aoi), "items": items, "pixel_m": PIXEL_M, "tiles": [t["name"] for t in tiles]}
    done.write_text(json.dumps(meta))
    return meta


def write_api_files(meta: dict[str, Any], base: str, folder: Path) -> list[Path]:
    """The collections and items for ``rustac serve``, with asset hrefs on the file server at ``base``."""
    folder.mkdir(parents=True, exist_ok=True)
    hrefs = []
    for collection, items in meta["items"].items():
        items = json.loads(json.dumps(items).replace("{base}", base))
        coll = {
            "type": "Collection", "stac_version": "1.1.0", "id": collection, "description": "pipeline benchmark",
            "license": "CC0-1.0", "links": [],
            "extent": {"spatial": {"bbox": [list(meta["aoi"])]},
                       "temporal": {"interval": [["2021-01-01T00:00:00Z", "2021-12-31T23:59:59Z"]]}},
        }  # fmt: skip
        (folder / f"{collection}.collection.json").write_text(json.dumps(coll))
        (folder / f"{collection}.items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
        hrefs += [folder / f"{collection}.collection.json", folder / f"{collection}.items.json"]
    return hrefs


# --------------------------------------------------------------------------- one stage, in its own process


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            out[path] = (st.st_size, st.st_mtime_ns)
    return out


def run_stage(stage: str, ds: Path, samples: int, api: str, aoi: tuple[float, ...]) -> dict[str, Any]:
    """Run one stage on ``ds`` in this process; time only the stage call."""
    import warnings

    import geosample  # noqa: F401  (imports outside the timed region)
    from geosample.captions import caption
    from geosample.export import export
    from geosample.export.stats import stats
    from geosample.labels.config import LabelConfig
    from geosample.labels.label import label
    from geosample.stac import fetch

    warnings.simplefilter("ignore")  # capacity notes, coarse-source and observation warnings of the synthetic data
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    if stage == "plan":
        west, south, east, north = aoi
        geosample.plan(ds, samples=samples, aoi=f"bbox:{west},{south},{east},{north}", chip_size=[CHIP_M],
                       start="2021-01-01", end="2021-12-31", time_bins="year", seed=0, progress=False)  # fmt: skip
    elif stage == "fetch":
        table = fetch(ds, stac=api, collection="bench-rgb", assets=",".join(BANDS), resolution=CHIP_RES_M,
                      preview=True, progress=False)  # fmt: skip
        ok = int((table["status"] == "ok").sum())
        if ok < 0.95 * samples:
            raise RuntimeError(f"only {ok} of {samples} chips were fetched: {table['error'].dropna().head(3).tolist()}")
    elif stage == "label":
        # overwrite: a re-run on a kept dataset (--stages) serves the archive at another address
        label(ds, LabelConfig(source="stac:bench-landcover", stac=api, scheme="esa-worldcover"), progress=False,
              overwrite=True)  # fmt: skip
    elif stage == "caption":
        caption(ds, progress=False)
    elif stage.startswith("export-"):
        export(ds, format=stage.split("-", 1)[1], progress=False)
    elif stage == "stats":
        stats(ds)
    else:
        raise SystemExit(f"unknown stage {stage!r}")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"stage": stage, "samples": samples, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak_rss_mb(),
            "load_average": load}  # fmt: skip


def with_files_written(ds: Path, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s result with the files it wrote in ``ds`` (new, or changed in size or time) and their MB.

    Called in the parent of a stage's process: the listing of a dataset's files (a path per chip and preview)
    would otherwise count in the stage's peak RSS.
    """
    before = _snapshot(ds) if ds.exists() else {}
    result = run()
    after = _snapshot(ds)
    written = [p for p, v in after.items() if before.get(p) != v]
    return {**result, "files": len(written), "mb_written": sum(after[p][0] for p in written) / 1e6}


def child_main(args: argparse.Namespace) -> int:
    try:
        result = run_stage(args.stage, Path(args.ds), args.samples, args.api, tuple(args.aoi))
    except Exception:  # the traceback is the result
        result = {"stage": args.stage, "samples": args.samples, "error": traceback.format_exc()}
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 1 if "error" in result else 0


# --------------------------------------------------------------------------- orchestration


def spawn(stage: str, ds: Path, samples: int, api: str, aoi: tuple[float, ...]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--ds", str(ds), "--samples",
           str(samples), "--api", api, "--aoi", *map(str, aoi)]  # fmt: skip
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False, cwd=ROOT)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    return {"stage": stage, "samples": samples, "error": f"exited {proc.returncode}:\n{proc.stdout[-3000:]}"}


def run_pipeline(
    work: Path,
    sizes: list[int],
    *,
    tiny: bool = False,
    keep: bool = False,
    stages: tuple[str, ...] = STAGES,
    in_process: bool = False,
    log: Any = sys.stderr,
) -> list[dict[str, Any]]:
    """Build (or reuse) the archive under ``work``, serve it, and run ``stages`` at every size.

    A run that starts with ``plan`` builds each dataset afresh; one that does not re-runs its stages on the
    datasets a ``keep`` run left in ``work``. ``in_process`` runs the stages in this process (the tests' quick
    mode: peak RSS is then the whole run's).
    """
    sys.path.insert(0, str(ROOT / "tests"))
    from stac.servers import FileServer, rustac_serve

    aoi = TINY_AOI if tiny else AOI
    archive = work / ("archive-tiny" if tiny else "archive")
    t0 = time.perf_counter()
    meta = build_archive(archive, aoi, TINY_ITEM_GRID if tiny else ITEM_GRID)
    print(f"archive: {archive} ({time.perf_counter() - t0:.1f} s)", file=log, flush=True)
    files = FileServer(archive).start()
    results = []
    try:
        hrefs = write_api_files(meta, files.url, work / "api")
        with rustac_serve(*hrefs) as api:
            for n in sizes:
                ds = work / f"DS-{n}"
                if stages[0] == "plan":
                    shutil.rmtree(ds, ignore_errors=True)
                elif not ds.is_dir():
                    raise SystemExit(f"{ds} does not exist: run the stages before {stages[0]} with --keep first")
                for stage in stages:
                    print(f"{n:>7} samples: {stage} ...", file=log, flush=True)
                    result = with_files_written(
                        ds, functools.partial(run_stage if in_process else spawn, stage, ds, n, api, aoi)
                    )
                    results.append(result)
                    if "error" not in result:
                        r = result
                        print(f"{n:>7} samples: {stage}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, "
                              f"{r['peak_rss_mb']:.0f} MB, {r['files']} files", file=log, flush=True)  # fmt: skip
                    if "error" in result:
                        print(result["error"], file=log, flush=True)
                        break
                if not keep and stages[0] == "plan":  # a dataset this run did not build stays
                    shutil.rmtree(ds, ignore_errors=True)
    finally:
        files.stop()
    return results


def report(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Print the per-stage table and the ratios of each size to the one before it; return the verdicts."""
    good = [r for r in results if "error" not in r]
    sizes = sorted({r["samples"] for r in good})
    print(f"\n{describe()}\n")
    print("| stage | samples | wall s | s per 1,000 | CPU s | CPU s per 1,000 | peak RSS MB | files | MB written "
          "| load |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in good:
        k = r["samples"] / 1000
        print(f"| {r['stage']} | {r['samples']:,} | {r['wall_s']:.1f} | {r['wall_s'] / k:.2f} | {r['cpu_s']:.1f} "
              f"| {r['cpu_s'] / k:.2f} | {r['peak_rss_mb']:.0f} | {r['files']:,} | {r['mb_written']:.1f} "
              f"| {r['load_average']:.1f} |")  # fmt: skip
    verdict: dict[str, Any] = {"ratios": {}, "checks": {}}
    largest = max((r["peak_rss_mb"] for r in good), default=0.0)
    by = {(r["stage"], r["samples"]): r for r in good}
    for pair, (small, big) in enumerate(zip(sizes, sizes[1:], strict=False)):  # each size against the one before
        # The RSS target is the 50,000 / 10,000 (the first two sizes): under 2× for 5× the samples. At
        # larger sizes the tables each stage holds, which grow with the samples, outweigh the fixed part (the
        # imports, the caches), so the ratio tends to the samples' own: it is shown, not judged.
        judge_rss = pair == 0
        print(f"\nratios {big:,} / {small:,} (per-1,000-sample time; peak RSS):\n")
        print("| stage | wall per 1,000 | CPU per 1,000 | peak RSS | time ≤ 1.2× | RSS < 2× |")
        print("| --- | --- | --- | --- | --- | --- |")
        for stage in STAGES:
            a, b = by.get((stage, small)), by.get((stage, big))
            if a is None or b is None:
                continue
            wall = (b["wall_s"] / big) / (a["wall_s"] / small)
            cpu = (b["cpu_s"] / big) / (a["cpu_s"] / small)
            rss = b["peak_rss_mb"] / a["peak_rss_mb"]
            verdict["ratios"].setdefault(f"{big}/{small}", {})[stage] = {"wall": wall, "cpu": cpu, "rss": rss}
            time_ok, rss_ok = min(wall, cpu) <= TARGET_TIME_RATIO, rss < TARGET_RSS_RATIO
            check = {"time": time_ok, **({"rss": rss_ok} if judge_rss else {})}
            verdict["checks"].setdefault(f"{big}/{small}", {})[stage] = check
            rss_cell = ("PASS" if rss_ok else "MISS") if judge_rss else f"— ({big / small:.0f}× the samples)"
            print(f"| {stage} | {wall:.2f}× | {cpu:.2f}× | {rss:.2f}× | {'PASS' if time_ok else 'MISS'} "
                  f"| {rss_cell} |")  # fmt: skip
    if len(sizes) >= 2:
        print("\n(time passes when the wall or the CPU ratio is within 1.2×: wall time swings with the load)")
    verdict["max_peak_rss_mb"] = largest
    print(f"\n[{'PASS' if largest < TARGET_RSS_MB else 'MISS'}] no stage over 4 GB (largest peak {largest:.0f} MB)")
    for r in results:
        if "error" in r:
            print(f"\n{r['stage']} at {r['samples']} failed:\n{r['error']}")
    return verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000", help="comma-separated sample counts")
    parser.add_argument("--with-200k", action="store_true", help="also 200,000 samples")
    parser.add_argument("--tiny", action="store_true", help="200 samples on a small AOI (what the tests run)")
    parser.add_argument("--work", type=Path, help="folder for the archive and datasets (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the datasets (under --work, to re-run stages)")
    parser.add_argument(
        "--stages",
        default=",".join(STAGES),
        help="comma-separated stages to run, in pipeline order; without plan, re-run them on --work's kept datasets",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--ds", help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--api", help=argparse.SUPPRESS)
    parser.add_argument("--aoi", type=float, nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        return child_main(args)
    sizes = [200] if args.tiny else [int(s) for s in args.sizes.split(",")]
    stages = tuple(s.strip() for s in args.stages.split(","))
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        parser.error(f"unknown stage(s) {', '.join(unknown)}: choose from {', '.join(STAGES)}")
    if stages[0] != "plan" and not args.work:
        parser.error("--stages without plan re-runs kept datasets: name their folder with --work")
    if args.with_200k and 200_000 not in sizes:
        sizes.append(200_000)
    work = args.work or Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    try:
        results = run_pipeline(work, sizes, tiny=args.tiny, keep=args.keep, stages=stages)
        verdict = report(results)
        if args.json:
            args.json.write_text(json.dumps({"machine": describe(), "results": results, **verdict}, indent=1))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
