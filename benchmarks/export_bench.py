"""Benchmark ``geosample export`` and ``geosample stats`` against the reference libraries' own writers.

Builds one synthetic dataset (a real global plan of ``--samples`` sites,
labelled offline by the label stage, with 64x64 4-band uint16 COG chips and
PNG previews, and three captions per sample), then runs each case in a fresh
Python subprocess:

* ``geosample-webdataset``: ``geosample.export(ds, format="webdataset")``
  (splits, shuffled shards, full JSON metadata);
* ``baseline-webdataset``: ``webdataset.ShardWriter`` writing the same
  members (chip, preview, a JSON of the plan and label row, captions) in
  ``sample_id`` order, without splits;
* ``geosample-parquet``: ``geosample.export(ds, format="parquet")``;
* ``baseline-parquet``: Hugging Face ``datasets.Dataset.from_generator`` with
  an ``Image`` feature, then ``to_parquet`` (the ``datasets`` way to make the
  same table);
* ``geosample-stac``, ``geosample-gpkg``, ``geosample-stats``: no baseline,
  time only;
* ``geosample-nn`` / ``baseline-nn``: nearest-neighbour great-circle
  distances of ``--nn-points`` random points (what ``geosample stats``
  reports): ``geosample.export.stats.nearest_neighbour_km`` against the fair
  baseline, scipy's ``cKDTree`` over unit vectors asked for two neighbours
  of every point (what a scipy user writes); the distances are checked equal.

The cases run interleaved (every case once per round, ``--repeat`` rounds)
and each reports its best wall time (``time.perf_counter()`` around the work
only) and CPU time (``time.process_time()``); the dataset's files are read
once beforehand so no case pays for a cold page cache; peak memory is the
child's own ``VmHWM``. The load average and BLAS are printed. Usage::

    python benchmarks/export_bench.py                       # 2,000 samples
    python benchmarks/export_bench.py --samples 5000 --nn-points 50000 --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from _machine import describe, peak_rss_mb

RESULT_TAG = "EXPORT_BENCH_RESULT "
CASES = (
    "geosample-webdataset", "baseline-webdataset", "geosample-parquet", "baseline-parquet",
    "geosample-stac", "geosample-gpkg", "geosample-stats", "geosample-nn", "baseline-nn",
)  # fmt: skip
CHIP_PX = 64
BANDS = ("blue", "green", "red", "nir")


# --------------------------------------------------------------------------- the dataset


def build_dataset(ds: Path, samples: int) -> None:
    """A real plan, labels from the label stage, synthetic chips and captions, as the stages would write them."""
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import rasterio
    from PIL import Image
    from pyproj import Transformer
    from rasterio.transform import from_origin

    import geosample
    from geosample.labels.label import label

    geosample.plan(ds, samples=samples, seed=3, progress=False)
    label(ds, progress=False)
    plan = gpd.read_parquet(ds / "plan.parquet")
    rng = np.random.default_rng(0)
    (ds / "chips").mkdir(exist_ok=True)
    rows, captions = [], []
    yy, xx = np.mgrid[0:CHIP_PX, 0:CHIP_PX]
    for i, s in enumerate(plan.itertuples()):
        x, y = Transformer.from_crs(4326, int(s.epsg), always_xy=True).transform(s.lon, s.lat)
        pixel = s.chip_size_m / CHIP_PX
        base = 1500 + 800 * np.sin(xx / (5 + i % 7)) * np.cos(yy / (4 + i % 5))
        data = np.stack([base + 300 * b + rng.normal(0, 60, base.shape) for b in range(4)]).astype(np.uint16)
        path = f"chips/{s.sample_id}.tif"
        with rasterio.open(
            ds / path, "w", driver="COG", width=CHIP_PX, height=CHIP_PX, count=4, dtype="uint16",
            crs=f"EPSG:{s.epsg}", transform=from_origin(x - s.chip_size_m / 2, y + s.chip_size_m / 2, pixel, pixel),
            nodata=0, compress="deflate",
        ) as dst:  # fmt: skip
            dst.write(data)
            dst.descriptions = BANDS
        Image.fromarray((data[[2, 1, 0]].transpose(1, 2, 0) // 12).clip(0, 255).astype(np.uint8)).save(
            ds / path.replace(".tif", ".png")
        )
        rows.append({
            "sample_id": s.sample_id, "status": "ok", "error": None, "collection": "sentinel-2-l2a",
            "item_id": f"S2_{i}", "item_datetime": s.start_datetime + pd.Timedelta(days=40), "cloud_cover": 3.0,
            "path": path, "width": CHIP_PX, "height": CHIP_PX, "bands": list(BANDS),
            "sha256": hashlib.sha256((ds / path).read_bytes()).hexdigest(),
            "preview": path.replace(".tif", ".png"), "resolution": pixel,
        })  # fmt: skip
        for k in range(3):
            text = f"Caption {k}: {s.landcover.replace('_', ' ')} in {s.continent}, climate {s.climate}, {s.time_bin}."
            captions.append({"sample_id": s.sample_id, "caption_index": k, "caption": text, "backend": "template",
                             "model": None, "prompt_sha256": "0" * 64})  # fmt: skip
    schema = pa.schema([
        ("sample_id", pa.string()), ("status", pa.string()), ("error", pa.string()), ("collection", pa.string()),
        ("item_id", pa.string()), ("item_datetime", pa.timestamp("us", tz="UTC")), ("cloud_cover", pa.float64()),
        ("path", pa.string()), ("width", pa.int64()), ("height", pa.int64()), ("bands", pa.list_(pa.string())),
        ("sha256", pa.string()), ("preview", pa.string()), ("resolution", pa.float64()),
    ])  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), ds / "chips.parquet")
    pd.DataFrame(captions).to_parquet(ds / "captions.parquet", index=False)


# --------------------------------------------------------------------------- child side


def _folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _baseline_rows(ds: Path) -> list[dict[str, Any]]:
    """The joined rows both baselines write: plan, chip, labels and captions of every sample."""
    import geopandas as gpd
    import pandas as pd

    plan = gpd.read_parquet(ds / "plan.parquet")
    chips = pd.read_parquet(ds / "chips.parquet")
    labels = pd.read_parquet(ds / "labels.parquet")
    captions = pd.read_parquet(ds / "captions.parquet").groupby("sample_id")["caption"].agg(list)
    table = plan.drop(columns="geometry").merge(chips, on="sample_id").merge(labels, on="sample_id")
    table["captions"] = table["sample_id"].map(captions)
    return table.to_dict("records")


def _baseline_webdataset(ds: Path, out: Path) -> int:
    import webdataset as wds

    rows = _baseline_rows(ds)
    out.mkdir(parents=True)
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxsize=100e6, verbose=0) as sink:
        for row in rows:
            meta = {k: (str(v) if not isinstance(v, int | float | str | list | type(None)) else v)
                    for k, v in row.items() if k not in ("captions",)}  # fmt: skip
            meta = {k: (list(v) if hasattr(v, "tolist") else v) for k, v in meta.items()}
            sink.write({
                "__key__": row["sample_id"],
                "tif": (ds / row["path"]).read_bytes(),
                "png": (ds / row["preview"]).read_bytes(),
                "json": json.dumps(meta, default=str).encode(),
                "txt": "\n".join(row["captions"]).encode(),
            })  # fmt: skip
    return len(rows)


def _baseline_parquet(ds: Path, out: Path) -> int:
    import datasets

    rows = _baseline_rows(ds)
    features = datasets.Features({
        "sample_id": datasets.Value("string"), "image": datasets.Image(), "geotiff": datasets.Value("binary"),
        "captions": datasets.Sequence(datasets.Value("string")), "l1": datasets.Sequence(datasets.Value("string")),
        "l2": datasets.Sequence(datasets.Value("string")), "l3": datasets.Sequence(datasets.Value("string")),
        "stratum": datasets.Value("string"), "lon": datasets.Value("float64"), "lat": datasets.Value("float64"),
        "time_bin": datasets.Value("string"),
    })  # fmt: skip

    def generate():  # noqa: ANN202
        for row in rows:
            yield {
                "sample_id": row["sample_id"],
                "image": {"bytes": (ds / row["preview"]).read_bytes(), "path": None},
                "geotiff": (ds / row["path"]).read_bytes(),
                "captions": list(row["captions"]),
                **{level: list(row[level]) for level in ("l1", "l2", "l3")},
                **{k: row[k] for k in ("stratum", "lon", "lat", "time_bin")},
            }

    dataset = datasets.Dataset.from_generator(generate, features=features, cache_dir=str(out / "cache"))
    dataset.to_parquet(str(out / "data.parquet"))
    return len(rows)


def _nn_points(n: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(1)
    return rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-0.9, 0.9, n)))


def _ckdtree_nn(lon: Any, lat: Any) -> Any:
    """The baseline: a cKDTree over unit vectors, two neighbours of every point, chords to great circles."""
    import numpy as np
    from scipy.spatial import cKDTree

    lam, phi = np.radians(lon), np.radians(lat)
    xyz = np.column_stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])
    chord, _ = cKDTree(xyz).query(xyz, k=2)
    return 2 * 6371.0088 * np.arcsin(np.minimum(chord[:, 1], 2.0) / 2)


def run_case(case: str, ds: Path, work: Path, nn_points: int) -> dict[str, Any]:
    """Run one case in this process and return its measurements."""
    import geosample.export  # noqa: F401  (imports outside the timed part, as for every case)
    import geosample.export.parquet  # noqa: F401
    import geosample.export.stac  # noqa: F401
    import geosample.export.webdataset  # noqa: F401

    out = work / case
    shutil.rmtree(out, ignore_errors=True)
    if case.endswith("-nn"):
        from geosample.export.stats import nearest_neighbour_km

        lon, lat = _nn_points(nn_points)
        t0, c0 = time.perf_counter(), time.process_time()
        distances = (nearest_neighbour_km if case.startswith("geosample") else _ckdtree_nn)(lon, lat)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {"wall_s": wall, "cpu_s": cpu, "records": nn_points, "checksum": round(float(distances.sum()), 6)}
    if case == "baseline-webdataset" or case == "baseline-parquet":
        import datasets  # noqa: F401
        import webdataset  # noqa: F401

        t0, c0 = time.perf_counter(), time.process_time()
        n = (_baseline_webdataset if case.endswith("webdataset") else _baseline_parquet)(ds, out)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        shutil.rmtree(out / "cache", ignore_errors=True)
        return {"wall_s": wall, "cpu_s": cpu, "records": n, "out_mb": round(_folder_mb(out), 1)}
    if case == "geosample-stats":
        from geosample.export.stats import stats

        t0, c0 = time.perf_counter(), time.process_time()
        report = stats(ds)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {"wall_s": wall, "cpu_s": cpu, "records": report["samples"]}
    from geosample.export import export

    fmt = case.split("-", 1)[1]
    t0, c0 = time.perf_counter(), time.process_time()
    result = export(ds, out, format=fmt, overwrite=True, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "records": result.records, "out_mb": round(_folder_mb(out), 1)}


def child_main(case: str, ds: Path, work: Path, nn_points: int) -> int:
    """Entry point of a child: run the case, print one tagged JSON line."""
    try:
        result = run_case(case, ds, work, nn_points)
    except Exception:  # the traceback is the result
        result = {"error": traceback.format_exc()}
    result["peak_rss_mb"] = peak_rss_mb()
    result["case"] = case
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 1 if "error" in result else 0


# --------------------------------------------------------------------------- parent side


def spawn(case: str, ds: Path, work: Path, nn_points: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", case, "--ds", str(ds), "--work", str(work),
           "--nn-points", str(nn_points)]  # fmt: skip
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    return {"case": case, "error": f"child exited {proc.returncode}:\n{proc.stdout[-3000:]}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--nn-points", type=int, default=20_000)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the fastest is reported")
    parser.add_argument("--work", type=Path, help="folder for the dataset and outputs (default: a temporary one)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--build", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ds", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.case:
        return child_main(args.case, args.ds, args.work, args.nn_points)
    if args.build:
        import warnings

        warnings.simplefilter("ignore")  # capacity and georeferencing notices of the synthetic build
        build_dataset(args.ds, args.build)
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="export-bench-"))
    ds = work / "DS"
    if not (ds / "captions.parquet").exists():
        # In a child of its own: Linux keeps a process's peak RSS across exec, so a parent that
        # built the dataset would pass its peak on to every case it starts.
        t0 = time.perf_counter()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--build", str(args.samples), "--ds", str(ds)]
        subprocess.run(cmd, check=True)
        print(f"built {ds} ({args.samples} samples) in {time.perf_counter() - t0:.1f} s", flush=True)
    for path in ds.rglob("*"):  # the first case should not pay for a cold page cache
        if path.is_file():
            path.read_bytes()
    cases = args.cases.split(",")
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    for _ in range(args.repeat):  # interleaved: every case once per round
        for case in cases:
            runs[case].append(spawn(case, ds, work, args.nn_points))
    results = []
    for case in cases:
        ok = [r for r in runs[case] if "error" not in r]
        if not ok:
            results.append(runs[case][0])
            continue
        best = dict(min(ok, key=lambda r: r["wall_s"]))
        best["cpu_s"] = min(r["cpu_s"] for r in ok)
        results.append(best)
    print(f"\n{describe()}")
    print(f"load average before: {', '.join(f'{x:.1f}' for x in load_before)}; "
          f"best of {args.repeat} interleaved rounds\n")  # fmt: skip
    print(f"{'case':<22} {'wall s':>8} {'CPU s':>7} {'records/s':>10} {'out MB':>8} {'peak RSS MB':>12}")
    by_case = {}
    for r in results:
        if "error" in r:
            print(f"{r['case']:<22} ERROR\n{r['error']}")
            continue
        by_case[r["case"]] = r
        rate = r["records"] / r["wall_s"] if r["wall_s"] > 0 else float("inf")
        print(f"{r['case']:<22} {r['wall_s']:>8.2f} {r['cpu_s']:>7.2f} {rate:>10.0f} {r.get('out_mb', ''):>8} "
              f"{r['peak_rss_mb']:>12.0f}")  # fmt: skip
    for what in ("webdataset", "parquet", "nn"):
        ours, base = by_case.get(f"geosample-{what}"), by_case.get(f"baseline-{what}")
        if ours and base:
            print(f"{what}: baseline / geosample wall = {base['wall_s'] / ours['wall_s']:.2f}x, "
                  f"peak RSS {ours['peak_rss_mb']:.0f} vs {base['peak_rss_mb']:.0f} MB")  # fmt: skip
    if "geosample-nn" in by_case and "baseline-nn" in by_case:
        ours, base = by_case["geosample-nn"], by_case["baseline-nn"]
        same = abs(ours["checksum"] - base["checksum"]) < 1e-6
        fast = base["wall_s"] >= ours["wall_s"] and base["cpu_s"] >= ours["cpu_s"]
        print(f"nn: same distances as the cKDTree baseline: {same}; cKDTree / geosample CPU "
              f"{base['cpu_s'] / ours['cpu_s']:.2f}x")  # fmt: skip
        print(
            f"  [{'PASS' if fast and same else 'MISS'}] nearest neighbours at least as fast as cKDTree (wall and CPU)"
        )
    if args.json:
        args.json.write_text(json.dumps({"machine": describe(), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
