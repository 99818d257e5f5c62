"""Benchmark ``geosample.plan`` against a naive H3 polyfill baseline (not a timed test).

Measures, each case in its own fresh Python subprocess:

* ``geosample-100k``: ``geosample.plan(samples=100_000, res=9)`` with the
  defaults (world AOI, strata continent/climate/landcover, equal allocation).
* ``baseline-100k``: the naive approach: polyfill every country except
  Antarctica at H3 res 5 with h3-py, label each cell's centre with the same
  embedded layers (country lookup -> continent, Köppen climate, MODIS IGBP
  land cover), group cells by stratum, draw 100,000 cells with equal
  allocation (capped by each stratum's cell count, remainder redistributed)
  and descend each drawn cell to a random res-9 child.
* ``geosample-1m``: ``samples=1_000_000`` (only with ``--with-1m``).
* The distance spacing (issue #19), with ``--spacing``: ``geosample-{1k,10k,100k}``
  (default ``--min-distance-m``: the chip diagonal) beside ``geosample-{1k,10k,100k}-d0``
  (``min_distance_m=0``, the previous behaviour: the parent-cell rule alone), runs
  interleaved, each reporting its wall and CPU time, the overlapping chip pairs and the
  nearest-neighbour distances from ``balance.json``; target: the 100k plan within 1.5x of
  ``-d0`` (best of the repeats), and 0 overlapping chip pairs by default.

Wall time is ``time.perf_counter()`` around the work only; importing the
packages and loading the embedded layers (shared by both approaches) is timed
separately as "load". Peak memory is the child's own peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``, whole process, imports included),
reported back to the parent as JSON. The parent prints a table, the machine,
and the issue's targets (100k < 20 s, >= 5x faster than the baseline, peak
< 2 GB, 1M < 180 s) marked PASS or MISS.

Usage::

    python benchmarks/plan_bench.py                       # 100k cases
    python benchmarks/plan_bench.py --with-1m --json /tmp/plan_bench.json
    python benchmarks/plan_bench.py --cases geosample-100k --repeat 3
    python benchmarks/plan_bench.py --spacing --repeat 3   # default vs --min-distance-m 0, interleaved
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

RESULT_TAG = "PLAN_BENCH_RESULT "
SAMPLES = {
    "geosample-100k": 100_000, "baseline-100k": 100_000, "geosample-1m": 1_000_000,
    "geosample-1k": 1_000, "geosample-10k": 10_000,
    "geosample-1k-d0": 1_000, "geosample-10k-d0": 10_000, "geosample-100k-d0": 100_000,
}  # fmt: skip
DEFAULT_CASES = ("geosample-100k", "baseline-100k")
SPACING_CASES = ("geosample-1k", "geosample-1k-d0", "geosample-10k", "geosample-10k-d0", "geosample-100k",
                 "geosample-100k-d0")  # fmt: skip
TARGET_SPACING_RATIO = 1.5
SAMPLE_RES = 9
BASELINE_RES = 5
SEED = 0
TARGET_100K_S = 20.0
TARGET_SPEEDUP = 5.0
TARGET_PEAK_MB = 2048.0
TARGET_1M_S = 180.0


# --------------------------------------------------------------------------- child side


def _peak_rss_mb() -> dict[str, float]:
    """Peak RSS of this process (and of any children it waited for), in MiB.

    ``ru_maxrss`` is KiB on Linux and bytes on macOS.
    """
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale / 2**20
    return {"peak_rss_mb": round(max(own, kids), 1), "self_rss_mb": round(own, 1)}


def _load_layers() -> None:
    """Load the embedded layers both approaches use (cached by geosample)."""
    from geosample import layers

    layers.countries()
    layers.country_index()
    layers.climate_sampler()
    layers.landcover_sampler()


def _run_geosample(samples: int, **settings: Any) -> dict[str, Any]:
    import geosample

    t0, c0 = time.perf_counter(), time.process_time()
    gdf = geosample.plan(samples=samples, res=SAMPLE_RES, progress=False, **settings)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    balance = gdf.attrs.get("balance", {})
    spacing = balance.get("spacing") or {}
    extra = {
        "resolutions": balance.get("resolutions"),
        "draw": balance.get("draw"),
        "strata": int(gdf["stratum"].nunique()) if "stratum" in gdf else None,
        "min_distance_m": spacing.get("min_distance_m"),
        "overlapping_chip_pairs": spacing.get("overlapping_chip_pairs"),
        "nearest_neighbour_m": spacing.get("nearest_neighbour_m"),
    }
    return {"wall_s": wall, "cpu_s": cpu, "rows": len(gdf), "extra": extra}


def _equal_allocation(total: int, counts: Any) -> Any:
    """Equal shares per stratum, capped by its size, remainder redistributed (water filling)."""
    import numpy as np

    counts = np.asarray(counts, dtype=np.int64)
    take = np.zeros_like(counts)
    left = min(int(total), int(counts.sum()))
    open_ = counts > 0
    while left > 0 and open_.any():
        share, extra = divmod(left, int(open_.sum()))
        give = np.zeros_like(counts)
        give[open_] = share
        if extra:  # the odd few go to the open strata with the most room
            room_order = np.flatnonzero(open_)[np.argsort(-(counts - take)[open_], kind="stable")]
            give[room_order[:extra]] += 1
        give = np.minimum(give, counts - take)
        take += give
        left -= int(give.sum())
        open_ = take < counts
    return take


def _run_baseline(samples: int) -> dict[str, Any]:
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    from h3.api import basic_int as h3i

    from geosample import layers

    countries = layers.countries()
    rng = np.random.default_rng(SEED)

    t0 = time.perf_counter()
    # 1. Polyfill the world's land (every country but Antarctica) at res 5; union of cells.
    land = countries[countries["continent"] != "Antarctica"]
    cells: set[int] = set()
    for geom in land.geometry.values:
        if geom is not None and not geom.is_empty:
            cells.update(h3i.geo_to_cells(geom, BASELINE_RES))
    cell_arr = np.fromiter(cells, dtype=np.uint64, count=len(cells))
    t_fill = time.perf_counter()

    # 2. Every cell's centre and its labels from the same embedded layers.
    latlng = np.array([h3i.cell_to_latlng(int(c)) for c in cell_arr], dtype=np.float64).reshape(-1, 2)
    lat, lon = latlng[:, 0], latlng[:, 1]
    row = layers.country_index().lookup(lon, lat)
    continent_of_row = countries["continent"].astype(str).to_numpy()
    continent = np.where(row >= 0, continent_of_row[np.maximum(row, 0)], "")
    climate, clim_ok = layers.climate_sampler().sample(lon, lat)
    cover, cover_ok = layers.landcover_sampler().sample(lon, lat)
    ok = (row >= 0) & clim_ok & cover_ok
    t_label = time.perf_counter()

    # 3. Group cells by stratum and draw with equal allocation.
    keys = pd.MultiIndex.from_arrays([continent[ok], np.asarray(climate)[ok], np.asarray(cover)[ok]])
    stratum, uniques = pd.factorize(keys)
    idx = np.flatnonzero(ok)
    counts = np.bincount(stratum, minlength=len(uniques))
    take = _equal_allocation(samples, counts)
    order = np.argsort(stratum, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    chosen = [idx[order[starts[s] + rng.choice(counts[s], size=take[s], replace=False)]] for s in np.flatnonzero(take)]
    pick = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
    pick_stratum = np.repeat(np.flatnonzero(take), take[take > 0])

    # 4. Descend each chosen res-5 cell to a uniformly random res-9 child (pentagon-safe).
    parents = cell_arr[pick]
    children = np.empty(parents.size, dtype=np.uint64)
    for i, parent in enumerate(parents.tolist()):
        n_children = h3i.cell_to_children_size(parent, SAMPLE_RES)
        children[i] = h3i.child_pos_to_cell(parent, SAMPLE_RES, int(rng.integers(n_children)))
    child_ll = np.array([h3i.cell_to_latlng(int(c)) for c in children], dtype=np.float64).reshape(-1, 2)
    labels = uniques[pick_stratum]
    out = gpd.GeoDataFrame(
        {
            "sample_id": np.arange(children.size),
            "h3": [h3i.int_to_str(int(c)) for c in children],
            "lon": child_ll[:, 1],
            "lat": child_ll[:, 0],
            "continent": labels.get_level_values(0),
            "climate": labels.get_level_values(1),
            "landcover": labels.get_level_values(2),
        },
        geometry=gpd.points_from_xy(child_ll[:, 1], child_ll[:, 0]),
        crs="EPSG:4326",
    )
    wall = time.perf_counter() - t0
    extra = {
        "res5_cells": int(cell_arr.size),
        "labelled_cells": int(ok.sum()),
        "strata": len(uniques),
        "polyfill_s": round(t_fill - t0, 2),
        "label_s": round(t_label - t_fill, 2),
        "draw_s": round(wall - (t_label - t0), 2),
    }
    return {"wall_s": wall, "rows": len(out), "extra": extra}


def run_case(case: str) -> dict[str, Any]:
    """Run one case in this process and return its measurements."""
    t0 = time.perf_counter()
    import geosample  # noqa: F401

    _load_layers()
    load_s = time.perf_counter() - t0
    if case.startswith("baseline"):
        result = _run_baseline(SAMPLES[case])
    else:
        result = _run_geosample(SAMPLES[case], **({"min_distance_m": 0} if case.endswith("-d0") else {}))
    result["load_s"] = load_s
    return result


def child_main(case: str) -> int:
    """Entry point of a child: run the case, print one tagged JSON line on stdout."""
    try:
        result = run_case(case)
    except Exception:  # the traceback is the result
        result = {"error": traceback.format_exc()}
    result.update(_peak_rss_mb())
    result["case"] = case
    print(RESULT_TAG + json.dumps(result, default=str), flush=True)
    return 1 if "error" in result else 0


# --------------------------------------------------------------------------- parent side


def spawn(case: str) -> dict[str, Any]:
    """Run ``case`` in a fresh interpreter and parse its result line."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", case]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)  # stderr passes through
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    return {"case": case, "error": f"child exited {proc.returncode} without a result:\n{proc.stdout[-4000:]}"}


def machine_facts() -> dict[str, Any]:
    """CPU, cores, RAM and package versions."""
    facts: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    facts["cpu"] = cpu
    facts["cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        facts["ram_gb"] = round(kb / 2**20, 1)
    except (OSError, StopIteration):
        facts["ram_gb"] = None
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("geosample", "h3", "numpy", "shapely", "geopandas"):
        try:
            facts[pkg] = version(pkg)
        except PackageNotFoundError:
            facts[pkg] = None
    try:
        import numpy as np

        facts["blas"] = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # noqa: BLE001  (informational only)
        facts["blas"] = None
    facts["load_average"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return facts


def summarise(case: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Best/median wall time and max peak RSS over the successful repeats."""
    good = [r for r in runs if "error" not in r]
    summary: dict[str, Any] = {"case": case, "runs": runs}
    if not good:
        summary["error"] = runs[-1].get("error", "failed")
        return summary
    walls = [r["wall_s"] for r in good]
    cpus = [r["cpu_s"] for r in good if "cpu_s" in r]
    summary.update(
        best_s=min(walls),
        median_s=statistics.median(walls),
        best_cpu_s=min(cpus) if cpus else None,
        load_s=statistics.median(r["load_s"] for r in good),
        peak_rss_mb=max(r["peak_rss_mb"] for r in good),
        rows=good[-1]["rows"],
        extra=good[-1].get("extra"),
        failed_runs=len(runs) - len(good),
    )
    return summary


def _mark(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "MISS")


def report(facts: dict[str, Any], results: dict[str, dict[str, Any]], repeat: int) -> dict[str, Any]:
    """Print the table, the machine and the targets; return the target checks."""
    print()
    print(
        f"machine: {facts['cpu']} | {facts['cores']} cores | {facts['ram_gb']} GB RAM | "
        f"Python {facts['python']} | geosample {facts['geosample']} | h3 {facts['h3']} | numpy {facts['numpy']}"
    )
    print(f"BLAS: {facts.get('blas')} | load average before: {facts.get('load_average')} | after: "
          f"{[round(x, 2) for x in os.getloadavg()]} (other engineers share this machine)")  # fmt: skip
    print(
        f"repeats: {repeat}, interleaved (wall = best, median in brackets; "
        "load = import + embedded layers, not in wall)"
    )
    print()
    head = f"{'case':<18} {'wall s':>8} {'(median)':>9} {'cpu s':>7} {'load s':>7} {'peak RSS MB':>12} {'rows':>10}"
    print(head)
    print("-" * len(head))
    for case, s in results.items():
        if "error" in s:
            print(f"{case:<18} {'ERROR':>8}")
            continue
        median = f"({s['median_s']:.2f})"
        cpu = f"{s['best_cpu_s']:.2f}" if s.get("best_cpu_s") is not None else "-"
        print(
            f"{case:<18} {s['best_s']:>8.2f} {median:>9} {cpu:>7} {s['load_s']:>7.2f} {s['peak_rss_mb']:>12.0f} "
            f"{s['rows']:>10,}"
        )
    g100, base, g1m = (results.get(c, {}) for c in ("geosample-100k", "baseline-100k", "geosample-1m"))
    ratio = base["best_s"] / g100["best_s"] if "best_s" in g100 and "best_s" in base else None
    if ratio is not None:
        print(f"\nratio baseline-100k / geosample-100k (best wall): {ratio:.1f}x")
    for case, s in results.items():
        if s.get("extra"):
            print(f"  {case}: {json.dumps(s['extra'], default=str)}")

    spaced, unspaced = results.get("geosample-100k", {}), results.get("geosample-100k-d0", {})
    spacing_ratio = cpu_ratio = None
    if "best_s" in spaced and "best_s" in unspaced:
        spacing_ratio = spaced["best_s"] / unspaced["best_s"]
        cpu_ratio = spaced["best_cpu_s"] / unspaced["best_cpu_s"]
        print(f"ratio geosample-100k / geosample-100k-d0: wall {spacing_ratio:.2f}x, CPU {cpu_ratio:.2f}x")
    overlaps = {
        case: s["extra"].get("overlapping_chip_pairs")
        for case, s in results.items()
        if case.startswith("geosample") and not case.endswith("-d0") and s.get("extra")
    }
    checks = {
        "geosample-100k within 1.5x of --min-distance-m 0 (wall)": spacing_ratio <= TARGET_SPACING_RATIO
        if spacing_ratio is not None
        else None,
        "no overlapping chips by default (" + ", ".join(overlaps) + ")": all(v == 0 for v in overlaps.values())
        if overlaps
        else None,
        "geosample-100k < 20 s": g100["best_s"] < TARGET_100K_S if "best_s" in g100 else None,
        ">= 5x faster than baseline": ratio >= TARGET_SPEEDUP if ratio is not None else None,
        "geosample-100k peak < 2 GB": g100["peak_rss_mb"] < TARGET_PEAK_MB if "peak_rss_mb" in g100 else None,
        "geosample-1m < 180 s": g1m["best_s"] < TARGET_1M_S if "best_s" in g1m else None,
    }
    print("\ntargets:")
    for name, ok in checks.items():
        print(f"  [{_mark(ok)}] {name}")
    if "peak_rss_mb" in g1m:
        print(f"  (info) geosample-1m peak RSS: {g1m['peak_rss_mb']:.0f} MB")
    for case, s in results.items():
        if "error" in s:
            print(f"\n{case} failed:\n{s['error']}")
    return {
        "ratio": ratio,
        "spacing_ratio": spacing_ratio,
        "spacing_cpu_ratio": cpu_ratio,
        "checks": {k: _mark(v).strip() for k, v in checks.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments; run one case (child) or all requested cases (parent)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(SAMPLES), help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help="comma-separated cases to run")
    parser.add_argument("--with-1m", action="store_true", help="also run geosample-1m (takes minutes)")
    parser.add_argument("--json", type=Path, help="also save the results to this JSON file")
    parser.add_argument("--repeat", type=int, default=1, help="fresh runs per case (reports best and median)")
    parser.add_argument("--spacing", action="store_true", help="the default spacing beside --min-distance-m 0")
    args = parser.parse_args(argv)
    if args.case:
        return child_main(args.case)

    cases = list(SPACING_CASES) if args.spacing else [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.with_1m and "geosample-1m" not in cases:
        cases.append("geosample-1m")
    unknown = [c for c in cases if c not in SAMPLES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(SAMPLES)}")
    facts = machine_facts()
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    for i in range(max(1, args.repeat)):  # interleaved: every case once per round, so load drifts hit all
        for case in cases:
            print(f"running {case} ({i + 1}/{args.repeat}) ...", file=sys.stderr, flush=True)
            runs[case].append(spawn(case))
    results = {case: summarise(case, runs[case]) for case in cases}
    verdict = report(facts, results, max(1, args.repeat))
    if args.json:
        args.json.write_text(json.dumps({"machine": facts, "results": results, **verdict}, indent=2, default=str))
        print(f"\nsaved {args.json}")
    return 1 if any("error" in s for s in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
