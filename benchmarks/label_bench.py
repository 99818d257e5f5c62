"""Benchmark geosample's per-chip class fractions against a bare floor, exactextract and rasterstats.

Generates two land-cover rasters (ESA WorldCover values, 512-px DEFLATE
tiles, 8192 x 8192 px, patchy classes with speckle) and N chips of 2.56 km:

* ``aligned``: the raster in EPSG:32633 at 10 m and chips aligned to its grid
  (a window read is the whole job);
* ``reprojected``: the raster in EPSG:4326 at 1/12,000° (as ESA WorldCover's
  tiles are) and the chips squares in UTM zone 33: every chip needs a warp, and
  its edges cut the source pixels at an angle, where exactextract's exact
  coverage and a nearest-neighbour warp differ.

Each case runs in its own subprocess, the cases interleaved round by round
(so load drifts hit all of them), best of ``--repeat``:

* ``floor``: the plain loop a competent user writes, keeping the raster open: a
  window read per chip plus ``numpy.bincount`` (reprojected: the window under the
  chip read and ``rasterio.warp.reproject``-ed, nearest, onto the chip's grid,
  then ``bincount``);
* ``geosample-1`` and ``geosample-default``: ``geosample.labels.label.count_classes``
  (whole chip plus five layout regions) with 1 worker and with ``geosample label``'s
  default worker count;
* ``exactextract``: ``exact_extract(raster, polygons, ["unique", "frac"])`` (exact
  coverage fractions of each chip polygon, in the raster's CRS);
* ``rasterstats``: ``zonal_stats(..., categorical=True)`` (on a subset; rate extrapolated).

Every case's fractions are compared with exactextract's (mean and max absolute
difference over chips and classes). Wall time excludes imports and opening
files; CPU time is the child's over all threads; peak memory its own VmHWM.

Usage::

    python benchmarks/label_bench.py                 # 10,000 chips, both layouts, 3 rounds
    python benchmarks/label_bench.py --n 2000 --cases floor,geosample-1,geosample-default --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import describe, peak_rss_mb

SIZE = 8192
RES = 10.0
X0, Y0 = 300_000.0, 5_200_000.0
CHIP = 256
EPSG = 32633
GEO_RES = 1 / 12_000
"""Pixel size of the reprojected case's EPSG:4326 raster (ESA WorldCover's)."""
GEO_WEST, GEO_NORTH = 12.0, 47.0
VALUES = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100], dtype=np.uint8)
CASES = ("floor", "geosample-1", "geosample-default", "exactextract", "rasterstats")
LAYOUTS = ("aligned", "reprojected")


def make_raster(path: Path, layout: str, seed: int = 0) -> None:
    """Patchy land cover: coarse random classes upsampled, with fine-grained noise at the edges."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, len(VALUES), size=(SIZE // 32, SIZE // 32))
    index = np.repeat(np.repeat(coarse, 32, axis=0), 32, axis=1)
    speckle = rng.random((SIZE, SIZE)) < 0.05
    index[speckle] = rng.integers(0, len(VALUES), size=int(speckle.sum()))
    if layout == "aligned":
        crs, transform = f"EPSG:{EPSG}", from_origin(X0, Y0, RES, RES)
    else:
        crs, transform = "EPSG:4326", from_origin(GEO_WEST, GEO_NORTH, GEO_RES, GEO_RES)
    profile = dict(
        driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="uint8", crs=crs, transform=transform,
        tiled=True, blockxsize=512, blockysize=512, compress="deflate", nodata=0,
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(VALUES[index], 1)


def chip_centres(n: int, layout: str, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the chip centres in EPSG:32633: aligned to the raster's pixels, or anywhere inside it."""
    rng = np.random.default_rng(seed)
    if layout == "aligned":
        offsets = rng.integers(0, SIZE - CHIP, size=(n, 2))
        return X0 + (offsets[:, 0] + CHIP / 2) * RES, Y0 - (offsets[:, 1] + CHIP / 2) * RES
    import pyproj

    to_utm = pyproj.Transformer.from_crs(4326, EPSG, always_xy=True)
    margin = 0.03  # degrees: a chip (2.56 km) never leaves the raster
    span = SIZE * GEO_RES
    lon = rng.uniform(GEO_WEST + margin, GEO_WEST + span - margin, n)
    lat = rng.uniform(GEO_NORTH - span + margin, GEO_NORTH - margin, n)
    x, y = to_utm.transform(lon, lat)
    return np.round(x), np.round(y)


def footprints(x: np.ndarray, y: np.ndarray, crs: str):
    """The chip squares, in ``crs`` (densified along their edges before a reprojection)."""
    import geopandas as gpd
    import shapely

    half = CHIP * RES / 2
    boxes = shapely.box(x - half, y - half, x + half, y + half)
    gdf = gpd.GeoDataFrame({"id": np.arange(len(x))}, geometry=boxes, crs=EPSG)
    if crs != f"EPSG:{EPSG}":
        gdf = gdf.set_geometry(shapely.segmentize(gdf.geometry.values, 40.0)).to_crs(crs)
    return gdf


def run_case(case: str, layout: str, raster: str, n: int) -> dict:
    import rasterio

    x, y = chip_centres(n, layout)
    result: dict = {"case": case, "layout": layout, "n": n}
    fractions = np.zeros((n, len(VALUES)))
    cpu = time.process_time()
    if case == "floor":
        fractions, start = _floor(raster, layout, x, y)
        result["wall"] = time.perf_counter() - start
    elif case.startswith("geosample"):
        import pandas as pd
        import pyproj

        from geosample.labels.config import LabelConfig
        from geosample.labels.grids import chip_label_grids
        from geosample.labels.label import count_classes, resolve_workers
        from geosample.labels.sources import RasterSource

        lon, lat = pyproj.Transformer.from_crs(EPSG, 4326, always_xy=True).transform(x, y)
        samples = pd.DataFrame({"lon": lon, "lat": lat, "epsg": EPSG, "chip_size_m": CHIP * RES})
        source = RasterSource(raster, name="bench", scheme="identity")
        workers = resolve_workers(LabelConfig().workers, source) if case.endswith("default") else int(case[10:])
        result["workers"] = workers
        mapping = {str(v): str(v) for v in VALUES}
        start = time.perf_counter()
        cpu = time.process_time()
        grids = chip_label_grids(samples, source.res_m)
        counted = count_classes(source, grids, mapping, workers=workers)
        result["wall"] = time.perf_counter() - start
        whole = counted.whole.astype(float)
        order = [counted.codes.index(str(v)) for v in VALUES]
        fractions = whole[:, order] / whole.sum(axis=1, keepdims=True)
    elif case == "exactextract":
        from exactextract import exact_extract

        with rasterio.open(raster) as src:
            crs = src.crs.to_string()
        gdf = footprints(x, y, crs)
        start = time.perf_counter()
        cpu = time.process_time()
        out = exact_extract(raster, gdf, ["unique", "frac"], output="pandas")
        result["wall"] = time.perf_counter() - start
        for i, (vals, fracs) in enumerate(zip(out["unique"], out["frac"], strict=True)):
            for v, f in zip(vals, fracs, strict=True):
                fractions[i, np.searchsorted(VALUES, v)] = f
    elif case == "rasterstats":
        from rasterstats import zonal_stats

        with rasterio.open(raster) as src:
            crs = src.crs.to_string()
        geoms = list(footprints(x, y, crs).geometry)
        start = time.perf_counter()
        cpu = time.process_time()
        stats = zonal_stats(geoms, raster, categorical=True, nodata=0)
        result["wall"] = time.perf_counter() - start
        for i, counts in enumerate(stats):
            total = sum(counts.values())
            for v, c in counts.items():
                fractions[i, np.searchsorted(VALUES, v)] = c / total
    else:
        raise SystemExit(f"unknown case {case}")
    result["cpu"] = time.process_time() - cpu
    result["peak_mb"] = peak_rss_mb()
    result["fractions_file"] = _save(fractions)
    return result


def _floor(raster: str, layout: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Window read (+ nearest warp onto the chip grid when reprojected) and bincount, the raster kept open."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
    from rasterio.warp import reproject, transform_bounds
    from rasterio.windows import Window, from_bounds

    n = len(x)
    fractions = np.zeros((n, len(VALUES)))
    half = CHIP * RES / 2
    with rasterio.open(raster) as src:
        side = round(CHIP * RES / (abs(src.transform.a) * 111_320)) if src.crs.is_geographic else CHIP
        start = time.perf_counter()
        for i in range(n):
            if layout == "aligned":
                col = round((x[i] - half - X0) / RES)
                row = round((Y0 - (y[i] + half)) / RES)
                data = src.read(1, window=Window(col, row, CHIP, CHIP))
            else:
                bounds = (x[i] - half, y[i] - half, x[i] + half, y[i] + half)
                window = from_bounds(*transform_bounds(f"EPSG:{EPSG}", src.crs, *bounds), transform=src.transform)
                window = window.round_offsets().round_lengths()
                part = src.read(1, window=Window(window.col_off - 1, window.row_off - 1, window.width + 2,
                                                 window.height + 2))  # fmt: skip
                data = np.zeros((side, side), dtype=np.uint8)
                reproject(
                    part, data, src_transform=src.window_transform(Window(window.col_off - 1, window.row_off - 1,
                                                                          window.width + 2, window.height + 2)),
                    src_crs=src.crs, src_nodata=0, dst_transform=from_origin(bounds[0], bounds[3], 2 * half / side,
                                                                              2 * half / side),
                    dst_crs=f"EPSG:{EPSG}", dst_nodata=0, resampling=Resampling.nearest,
                )  # fmt: skip
            counts = np.bincount(data.ravel(), minlength=256)[VALUES]
            fractions[i] = counts / counts.sum()
    return fractions, start


def _save(fractions: np.ndarray) -> str:
    fd, path = tempfile.mkstemp(suffix=".npy")
    os.close(fd)
    np.save(path, fractions)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rasterstats-n", type=int, default=1_000)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; each case's best is kept")
    parser.add_argument("--json", help="also write every run here")
    parser.add_argument("--child", nargs=4, metavar=("CASE", "LAYOUT", "RASTER", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--make-raster", nargs=2, metavar=("PATH", "LAYOUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_raster:
        make_raster(Path(args.make_raster[0]), args.make_raster[1])
        return
    if args.child:
        case, layout, raster, n = args.child
        print(json.dumps(run_case(case, layout, raster, int(n))))
        return
    layouts = args.layouts.split(",")
    cases = args.cases.split(",")
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        rasters = {}
        for layout in layouts:
            rasters[layout] = Path(tmp) / f"landcover_{layout}.tif"
            # In a child too: Linux keeps a process's peak RSS across fork + exec, so the parent stays small.
            subprocess.run([sys.executable, __file__, "--make-raster", str(rasters[layout]), layout], check=True)
        print(describe())
        print(f"rasters: {SIZE}x{SIZE} px (aligned: 10 m, EPSG:{EPSG}; reprojected: 1/12000 deg, EPSG:4326), "
              f"chips {CHIP}x{CHIP} px of 10 m in EPSG:{EPSG}, {args.n} chips\n")  # fmt: skip
        for round_ in range(max(1, args.repeat)):
            for layout in layouts:
                for case in cases:
                    n = args.rasterstats_n if case == "rasterstats" else args.n
                    load = os.getloadavg()[0]
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", case, layout, str(rasters[layout]), str(n)],
                        check=True, capture_output=True, text=True,
                    )  # fmt: skip
                    r = {**json.loads(out.stdout.strip().splitlines()[-1]), "load": load, "round": round_}
                    runs.append(r)
                    print(f"round {round_ + 1} {layout:11s} {case:17s} {r['n'] / r['wall']:8.0f} chips/s "
                          f"(CPU {r['cpu']:.2f} s, load {load:.1f})", file=sys.stderr)  # fmt: skip
        loads = [r["load"] for r in runs]
        print(f"1-min load average during the runs: {min(loads):.1f}-{max(loads):.1f}\n")
        report(runs, layouts, cases, args.repeat)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))


def report(runs: list[dict], layouts: list[str], cases: list[str], rounds: int) -> None:
    """One table per layout: best wall time of each case, its CPU time, and its fractions against exactextract's."""
    for layout in layouts:
        best = {}
        for r in runs:
            if r["layout"] == layout and (r["case"] not in best or r["wall"] < best[r["case"]]["wall"]):
                best[r["case"]] = r
        exact = np.load(best["exactextract"]["fractions_file"]) if "exactextract" in best else None
        floor_rate = best["floor"]["n"] / best["floor"]["wall"] if "floor" in best else None
        print(f"{layout}, best of {rounds} interleaved round(s):\n")
        print("| case | chips | wall s | CPU s | chips/s | floor time / case time | peak RSS MB "
              "| vs exactextract: mean / max abs. difference |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for case in cases:
            r = best.get(case)
            if r is None:
                continue
            rate = r["n"] / r["wall"]
            ratio = f"{rate / floor_rate:.2f}x" if floor_rate else "-"
            diff = "-"
            if exact is not None:
                frac = np.load(r["fractions_file"])
                delta = np.abs(frac - exact[: len(frac)])
                diff = f"{delta.sum(axis=1).mean() / 2:.2e} / {delta.max():.2e}"
            name = case + (f" ({r['workers']} workers)" if case == "geosample-default" else "")
            print(f"| {name} | {r['n']} | {r['wall']:.2f} | {r['cpu']:.2f} | {rate:,.0f} | {ratio} "
                  f"| {r['peak_mb']:.0f} | {diff} |")  # fmt: skip
        rate = {c: best[c]["n"] / best[c]["wall"] for c in best}
        if {"geosample-1", "geosample-default"} <= rate.keys():
            ok = rate["geosample-default"] >= rate["geosample-1"]
            print(f"\ndefault workers vs 1 worker: {rate['geosample-default'] / rate['geosample-1']:.2f}x "
                  f"({'PASS' if ok else 'MISS'}: the default must never be slower)")  # fmt: skip
        if {"geosample-default", "exactextract"} <= rate.keys():
            print(f"geosample (default) vs exactextract: {rate['geosample-default'] / rate['exactextract']:.1f}x")
        if {"geosample-default", "floor"} <= rate.keys():
            print(f"geosample (default) vs floor: {rate['floor'] / rate['geosample-default']:.2f}x the floor's time")
        print()


if __name__ == "__main__":
    main()
