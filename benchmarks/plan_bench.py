"""Benchmark ``geosample.plan`` against a naive H3 polyfill baseline (not a timed test).

Measures, each case in its own fresh Python subprocess:

* ``geosample-100k``: ``geosample.plan(samples=100_000, res=9)`` with the
  defaults (world AOI, strata continent/climate/landcover, equal allocation,
  ``--min-distance-m`` the chip diagonal).
* ``geosample-100k-d0``: the same with ``min_distance_m=0`` (the parent-cell
  rule alone): what the distance spacing costs.
* ``baseline-100k``: the naive approach: polyfill every country except
  Antarctica at H3 res 5 with h3-py, label each cell's centre with the same
  embedded layers (country lookup -> continent, Köppen climate, MODIS IGBP
  land cover), group cells by stratum, draw 100,000 cells with equal
  allocation (capped by each stratum's cell count, remainder redistributed)
  and descend each drawn cell to a random res-9 child.
* with ``--with-1m``: ``geosample-10k`` and ``geosample-1m`` too, for the cost
  per sample from 10k to 100k to 1M (and ``geosample-1m-d0`` with ``--cases``).
* The distance spacing alone, with ``--spacing``: ``geosample-{1k,10k,100k}``
  beside ``geosample-{1k,10k,100k}-d0``, with the overlapping chip pairs and the
  nearest-neighbour distances from ``balance.json``.

The cases run interleaved (A, B, C, A, B, C, ... for ``--repeat`` rounds), so
load drifts on a shared machine hit all of them; each reports its best wall
and CPU time (``time.process_time()``, all threads) over the rounds, and the
1-minute load average when it started. Wall time is ``time.perf_counter()``
around the work only; importing the packages and loading the embedded layers
(shared by both approaches) is timed separately as "load". Peak memory is the
child's own peak RSS (``VmHWM``; imports included), reported back to the
parent as JSON. The parent prints a table, the machine, the BLAS, the load
and the targets marked PASS or MISS: geosample-100k < 20 s and >= 5x faster
than the baseline (wall and CPU), peak < 2 GB, the spacing within 1.5x of
``-d0`` at 100k, the cost per sample flat from 100k to 1M (the marginal cost
from 100k to 1M within 1.1x of the marginal cost from 10k to 100k, CPU time),
and 1M < 30 s.

Usage::

    python benchmarks/plan_bench.py --repeat 3                 # 100k: geosample, -d0, baseline
    python benchmarks/plan_bench.py --with-1m --repeat 2 --json /tmp/plan_bench.json
    python benchmarks/plan_bench.py --cases geosample-100k --repeat 3
    python benchmarks/plan_bench.py --spacing --repeat 3        # default vs --min-distance-m 0 at 1k/10k/100k
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
    "geosample-1k": 1_000, "geosample-10k": 10_000, "geosample-1m-d0": 1_000_000,
    "geosample-1k-d0": 1_000, "geosample-10k-d0": 10_000, "geosample-100k-d0": 100_000,
}  # fmt: skip
DEFAULT_CASES = ("geosample-100k", "baseline-100k", "geosample-100k-d0")
WITH_1M = ("geosample-10k", "geosample-1m")
SPACING_CASES = ("geosample-1k", "geosample-1k-d0", "geosample-10k", "geosample-10k-d0", "geosample-100k",
                 "geosample-100k-d0")  # fmt: skip
TARGET_SPACING_RATIO = 1.5
SAMPLE_RES = 9
BASELINE_RES = 5
SEED = 0
TARGET_100K_S = 20.0
TARGET_SPEEDUP = 5.0
TARGET_PEAK_MB = 2048.0
TARGET_1M_S = 30.0
TARGET_FLAT = 1.1


# --------------------------------------------------------------------------- child side


def _peak_rss_mb() -> dict[str, float]:
    """Peak RSS of this process, in MiB: ``VmHWM`` (``ru_maxrss`` would carry the parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return {"peak_rss_mb": round(int(line.split()[1]) / 1024, 1)}
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)}


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

    t0, c0 = time.perf_counter(), time.process_time()
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
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    extra = {
        "res5_cells": int(cell_arr.size),
        "labelled_cells": int(ok.sum()),
        "strata": len(uniques),
        "polyfill_s": round(t_fill - t0, 2),
        "label_s": round(t_label - t_fill, 2),
        "draw_s": round(wall - (t_label - t0), 2),
    }
    return {"wall_s": wall, "cpu_s": cpu, "rows": len(out), "extra": extra}


def run_case(case: str) -> dict[str, Any]:
    """Run one case in this process and return its measurements."""
    started_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    import geosample  # noqa: F401

    _load_layers()
    load_s = time.perf_counter() - t0
    if case.startswith("baseline"):
        result = _run_baseline(SAMPLES[case])
    else:
        result = _run_geosample(SAMPLES[case], **({"min_distance_m": 0} if case.endswith("-d0") else {}))
    result["load_s"] = load_s
    result["load_average"] = started_load
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
    """Best and median wall and CPU time, and the largest peak RSS, over the successful repeats."""
    good = [r for r in runs if "error" not in r]
    summary: dict[str, Any] = {"case": case, "runs": runs}
    if not good:
        summary["error"] = runs[-1].get("error", "failed")
        return summary
    walls = [r["wall_s"] for r in good]
    cpus = [r["cpu_s"] for r in good]
    summary.update(
        best_s=min(walls),
        median_s=statistics.median(walls),
        best_cpu_s=min(cpus),
        load_s=statistics.median(r["load_s"] for r in good),
        load_average=[r.get("load_average") for r in good],
        peak_rss_mb=max(r["peak_rss_mb"] for r in good),
        rows=good[-1]["rows"],
        extra=good[-1].get("extra"),
        failed_runs=len(runs) - len(good),
    )
    return summary


def _mark(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "MISS")


def _ratio(results: dict[str, dict[str, Any]], num: str, den: str, key: str) -> float | None:
    a, b = results.get(num, {}), results.get(den, {})
    return a[key] / b[key] if key in a and key in b and b[key] > 0 else None


def per_sample_us(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Average and marginal cost per sample (µs, best wall and CPU) of the plain geosample cases."""
    sizes = sorted((SAMPLES[c], c) for c in results if c.startswith("geosample") and not c.endswith("-d0")
                   and "best_s" in results[c])  # fmt: skip
    out: dict[str, dict[str, float]] = {}
    previous = None
    for n, case in sizes:
        s = results[case]
        row = {"wall_us": 1e6 * s["best_s"] / n, "cpu_us": 1e6 * s["best_cpu_s"] / n}
        if previous is not None:
            m, p = previous
            row["marginal_wall_us"] = 1e6 * (s["best_s"] - p["best_s"]) / (n - m)
            row["marginal_cpu_us"] = 1e6 * (s["best_cpu_s"] - p["best_cpu_s"]) / (n - m)
        out[case] = row
        previous = (n, s)
    return out


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
        f"repeats: {repeat}, interleaved (best wall and CPU of the repeats, median wall in brackets; "
        "load = import + embedded layers, not in wall; 1-min load average at each run's start)"
    )
    print()
    head = (f"{'case':<18} {'wall s':>8} {'(median)':>9} {'CPU s':>7} {'µs/sample wall/CPU':>19} {'load s':>7} "
            f"{'peak RSS MB':>12} {'rows':>10}  load average")  # fmt: skip
    print(head)
    print("-" * len(head))
    for case, s in results.items():
        if "error" in s:
            print(f"{case:<18} {'ERROR':>8}")
            continue
        median = f"({s['median_s']:.2f})"
        n = SAMPLES[case]
        us = f"{1e6 * s['best_s'] / n:.1f} / {1e6 * s['best_cpu_s'] / n:.1f}"
        loads = ", ".join(f"{x:.1f}" for x in s["load_average"] if x is not None)
        print(
            f"{case:<18} {s['best_s']:>8.2f} {median:>9} {s['best_cpu_s']:>7.2f} {us:>19} {s['load_s']:>7.2f} "
            f"{s['peak_rss_mb']:>12.0f} {s['rows']:>10,}  {loads}"
        )
    wall_ratio = _ratio(results, "baseline-100k", "geosample-100k", "best_s")
    cpu_ratio = _ratio(results, "baseline-100k", "geosample-100k", "best_cpu_s")
    if wall_ratio is not None:
        print(f"\nbaseline-100k / geosample-100k: wall {wall_ratio:.2f}x, CPU {cpu_ratio:.2f}x")
    spacing_ratio = _ratio(results, "geosample-100k", "geosample-100k-d0", "best_s")
    spacing_cpu = _ratio(results, "geosample-100k", "geosample-100k-d0", "best_cpu_s")
    if spacing_ratio is not None:
        print(f"geosample-100k / geosample-100k-d0: wall {spacing_ratio:.2f}x, CPU {spacing_cpu:.2f}x")
    costs = per_sample_us(results)
    if len(costs) > 1:
        print("\ncost per sample (µs; marginal = extra time / extra samples from the size before):")
        for case, row in costs.items():
            marginal = (f", marginal {row['marginal_wall_us']:.1f} wall / {row['marginal_cpu_us']:.1f} CPU"
                        if "marginal_cpu_us" in row else "")  # fmt: skip
            print(f"  {case:<16} {row['wall_us']:.1f} wall / {row['cpu_us']:.1f} CPU{marginal}")
    flat = None
    if "marginal_cpu_us" in costs.get("geosample-1m", {}) and "marginal_cpu_us" in costs.get("geosample-100k", {}):
        flat = costs["geosample-1m"]["marginal_cpu_us"] / costs["geosample-100k"]["marginal_cpu_us"]
        print(f"marginal CPU cost per sample, 100k->1M over 10k->100k: {flat:.2f}x")
    for case, s in results.items():
        if s.get("extra"):
            print(f"  {case}: {json.dumps(s['extra'], default=str)}")
    overlaps = {
        case: s["extra"].get("overlapping_chip_pairs")
        for case, s in results.items()
        if case.startswith("geosample") and not case.endswith("-d0") and s.get("extra")
    }
    g100, g1m = results.get("geosample-100k", {}), results.get("geosample-1m", {})
    checks = {
        "geosample-100k < 20 s": g100["best_s"] < TARGET_100K_S if "best_s" in g100 else None,
        ">= 5x faster than the baseline, wall": wall_ratio >= TARGET_SPEEDUP if wall_ratio is not None else None,
        ">= 5x faster than the baseline, CPU": cpu_ratio >= TARGET_SPEEDUP if cpu_ratio is not None else None,
        "geosample-100k peak < 2 GB": g100["peak_rss_mb"] < TARGET_PEAK_MB if "peak_rss_mb" in g100 else None,
        "geosample-100k within 1.5x of --min-distance-m 0 (wall)": spacing_ratio <= TARGET_SPACING_RATIO
        if spacing_ratio is not None
        else None,
        "no overlapping chips by default (" + ", ".join(overlaps) + ")": all(v == 0 for v in overlaps.values())
        if overlaps
        else None,
        f"cost per sample flat from 100k to 1M (marginal CPU within {TARGET_FLAT}x)": flat <= TARGET_FLAT
        if flat is not None
        else None,
        "geosample-1m < 30 s": g1m["best_s"] < TARGET_1M_S if "best_s" in g1m else None,
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
        "ratio": wall_ratio,
        "cpu_ratio": cpu_ratio,
        "spacing_ratio": spacing_ratio,
        "spacing_cpu_ratio": spacing_cpu,
        "per_sample_us": costs,
        "flat": flat,
        "checks": {k: _mark(v).strip() for k, v in checks.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments; run one case (child) or all requested cases (parent)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(SAMPLES), help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help="comma-separated cases to run")
    parser.add_argument("--with-1m", action="store_true", help="also run geosample-10k and geosample-1m")
    parser.add_argument("--json", type=Path, help="also save the results to this JSON file")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (reports best and median)")
    parser.add_argument("--spacing", action="store_true", help="the default spacing beside --min-distance-m 0")
    args = parser.parse_args(argv)
    if args.case:
        return child_main(args.case)

    cases = list(SPACING_CASES) if args.spacing else [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.with_1m:
        cases += [c for c in WITH_1M if c not in cases]
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
