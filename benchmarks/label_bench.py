"""Benchmark geosample's per-chip class fractions against exactextract and rasterstats (not a timed test).

Generates a 10 m land-cover COG (8192 x 8192 px, EPSG:32633, ESA WorldCover
values, 512-px DEFLATE tiles) and N chip footprints of 2.56 km (256 x 256 px)
aligned to its grid, then times, each case in its own subprocess:

* ``floor``: a bare rasterio window read per polygon plus ``numpy.bincount``;
* ``geosample``: ``geosample.labels.label.count_classes`` (whole chip + five
  layout regions), on 1 thread and on 2 threads;
* ``exactextract``: ``exact_extract(raster, polygons, "frac")``;
* ``rasterstats``: ``zonal_stats(..., categorical=True)`` (on a subset; rate
  extrapolated).

Every case's fractions are checked against the floor's (max abs difference
printed). Wall time excludes imports and opening files; peak memory is the
child's own ``ru_maxrss``.

Usage::

    python benchmarks/label_bench.py                 # 10,000 chips
    python benchmarks/label_bench.py --n 2000 --rasterstats-n 500
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = 8192
RES = 10.0
X0, Y0 = 300_000.0, 5_200_000.0
CHIP = 256
EPSG = 32633
VALUES = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100], dtype=np.uint8)


def make_raster(path: Path, seed: int = 0) -> None:
    """Patchy land cover: coarse random classes upsampled, with fine-grained noise at the edges."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, len(VALUES), size=(SIZE // 32, SIZE // 32))
    index = np.repeat(np.repeat(coarse, 32, axis=0), 32, axis=1)
    speckle = rng.random((SIZE, SIZE)) < 0.05
    index[speckle] = rng.integers(0, len(VALUES), size=int(speckle.sum()))
    profile = dict(
        driver="GTiff",
        width=SIZE,
        height=SIZE,
        count=1,
        dtype="uint8",
        crs=f"EPSG:{EPSG}",
        transform=from_origin(X0, Y0, RES, RES),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        nodata=0,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(VALUES[index], 1)


def chip_offsets(n: int, seed: int = 1) -> np.ndarray:
    """(n, 2) pixel offsets (col, row) of aligned 256-px chips inside the raster."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, SIZE - CHIP, size=(n, 2))


def polygons(offsets: np.ndarray):
    import shapely

    x0 = X0 + offsets[:, 0] * RES
    y1 = Y0 - offsets[:, 1] * RES
    return shapely.box(x0, y1 - CHIP * RES, x0 + CHIP * RES, y1)


def run_case(case: str, raster: str, n: int) -> dict:
    offsets = chip_offsets(n)
    import rasterio

    result: dict = {"case": case, "n": n}
    fractions = np.zeros((n, len(VALUES)))
    if case == "floor":
        from rasterio.windows import Window

        with rasterio.open(raster) as src:
            start = time.perf_counter()
            for i, (col, row) in enumerate(offsets):
                data = src.read(1, window=Window(int(col), int(row), CHIP, CHIP))
                counts = np.bincount(data.ravel(), minlength=256)[VALUES]
                fractions[i] = counts / counts.sum()
            result["wall"] = time.perf_counter() - start
    elif case.startswith("geosample"):
        import pandas as pd
        import pyproj

        from geosample.labels.grids import chip_label_grids
        from geosample.labels.label import count_classes
        from geosample.labels.sources import RasterSource

        workers = int(case.split("-")[1]) if "-" in case else 1
        cx = X0 + (offsets[:, 0] + CHIP / 2) * RES
        cy = Y0 - (offsets[:, 1] + CHIP / 2) * RES
        lon, lat = pyproj.Transformer.from_crs(EPSG, 4326, always_xy=True).transform(cx, cy)
        samples = pd.DataFrame({"lon": lon, "lat": lat, "epsg": EPSG, "chip_size_m": CHIP * RES})
        source = RasterSource(raster, name="bench", scheme="identity")
        mapping = {str(v): str(v) for v in VALUES}
        start = time.perf_counter()
        grids = chip_label_grids(samples, source.res_m)
        counted = count_classes(source, grids, mapping, workers=workers)
        result["wall"] = time.perf_counter() - start
        whole = counted.whole.astype(float)
        order = [counted.codes.index(str(v)) for v in VALUES]
        fractions = whole[:, order] / whole.sum(axis=1, keepdims=True)
    elif case == "exactextract":
        import geopandas as gpd
        from exactextract import exact_extract

        gdf = gpd.GeoDataFrame({"id": np.arange(n)}, geometry=polygons(offsets), crs=EPSG)
        start = time.perf_counter()
        out = exact_extract(raster, gdf, ["unique", "frac"], output="pandas")
        result["wall"] = time.perf_counter() - start
        for i, (vals, fracs) in enumerate(zip(out["unique"], out["frac"], strict=True)):
            for v, f in zip(vals, fracs, strict=True):
                fractions[i, np.searchsorted(VALUES, v)] = f
    elif case == "rasterstats":
        from rasterstats import zonal_stats

        geoms = polygons(offsets)
        start = time.perf_counter()
        stats = zonal_stats(list(geoms), raster, categorical=True, nodata=0)
        result["wall"] = time.perf_counter() - start
        for i, counts in enumerate(stats):
            total = sum(counts.values())
            for v, c in counts.items():
                fractions[i, np.searchsorted(VALUES, v)] = c / total
    else:
        raise SystemExit(f"unknown case {case}")
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["fractions_file"] = _save(fractions)
    return result


def _save(fractions: np.ndarray) -> str:
    fd, path = tempfile.mkstemp(suffix=".npy")
    os.close(fd)
    np.save(path, fractions)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rasterstats-n", type=int, default=2_000)
    parser.add_argument("--cases", default="floor,geosample,geosample-2,exactextract,rasterstats")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "RASTER", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--make-raster", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_raster:
        make_raster(Path(args.make_raster))
        return
    if args.child:
        case, raster, n = args.child
        print(json.dumps(run_case(case, raster, int(n))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        raster = Path(tmp) / "landcover_10m.tif"
        # In a child too: Linux keeps a process's peak RSS across fork + exec, so the parent stays small.
        subprocess.run([sys.executable, __file__, "--make-raster", str(raster)], check=True)
        machine = platform.processor() or platform.machine()
        print(f"machine: {machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
        print(f"raster: {SIZE}x{SIZE} px at {RES:g} m, chips {CHIP}x{CHIP} px, {args.n} chips\n")
        results = {}
        for case in args.cases.split(","):
            n = args.rasterstats_n if case == "rasterstats" else args.n
            out = subprocess.run(
                [sys.executable, __file__, "--child", case, str(raster), str(n)],
                check=True,
                capture_output=True,
                text=True,
            )
            results[case] = json.loads(out.stdout.strip().splitlines()[-1])
        floor = np.load(results["floor"]["fractions_file"]) if "floor" in results else None
        print(
            f"{'case':14} {'chips':>6} {'wall s':>8} {'chips/s':>9} {'vs floor':>9} {'peak MB':>8} {'max |Δfrac|':>12}"
        )
        for case, r in results.items():
            rate = r["n"] / r["wall"]
            ratio = ""
            if "floor" in results:
                floor_rate = results["floor"]["n"] / results["floor"]["wall"]
                ratio = f"{floor_rate / rate:8.2f}x"
            frac = np.load(r["fractions_file"])
            diff = np.abs(frac - floor[: len(frac)]).max() if floor is not None else float("nan")
            print(f"{case:14} {r['n']:6d} {r['wall']:8.2f} {rate:9.0f} {ratio:>9} {r['peak_mb']:8.0f} {diff:12.2e}")
        if {"geosample", "exactextract"} <= results.keys():
            g = results["geosample"]["n"] / results["geosample"]["wall"]
            e = results["exactextract"]["n"] / results["exactextract"]["wall"]
            print(f"\ngeosample vs exactextract: {g / e:.1f}x faster (target >= 5x)")
        if {"geosample", "floor"} <= results.keys():
            f = results["floor"]["n"] / results["floor"]["wall"]
            g = results["geosample"]["n"] / results["geosample"]["wall"]
            print(f"geosample vs floor: {f / g:.2f}x the floor's time (target <= 1.5x)")


if __name__ == "__main__":
    main()
