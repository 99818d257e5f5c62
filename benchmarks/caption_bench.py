"""Benchmark ``geosample caption`` (not a timed test): template stage at scale, nearest places, openai client.

Cases, each in its own fresh Python subprocess (peak RSS is the child's own ``ru_maxrss``):

* ``template-N``: ``geosample.captions.caption(DS)`` with the template backend
  (5 captions per sample) on a dataset of N samples, with phase times:
  building contexts, captioning, the checks report, writing. The dataset is
  made once per N under the work folder: N sites near random GeoNames places
  (jittered by up to 0.3°, so on land and mostly inhabited), each given the
  label row of one of 200 samples of a real global plan labelled with
  ``geosample label`` (cycled), no chips.
* ``nearest-N``: the nearest place of >= 1000 people to the same N points:
  geosample's ``Gazetteer.nearest`` (a fresh gazetteer each time, so its tree
  is built in the timed call, plus the bearing to each place) beside the fair
  baseline, scipy's ``cKDTree`` over the places' unit vectors built and queried
  once, as a scipy user would write it; interleaved, best of 5 wall and CPU
  times; the answers are checked to be the same places and distances. Target
  (issue #17): at least as fast as the cKDTree.
* ``openai``: 64 samples against an OpenAI-protocol server on loopback that
  takes 100 ms per answer: ``--concurrency 1`` (the sequential baseline)
  beside ``--concurrency 8``, and a re-run served from the cache.
* ``quality``: the issue's check (#13): a default ``plan -n 1000``, ``label``,
  ``caption``; the report's quality figures, and the duplicate rate again with
  every wording choice fixed to its first option (facts alone).
* ``neardup-N``: the near-duplicate count over every pair of the 5 N
  captions of ``template-N``'s dataset: geosample's size-banded sparse
  products beside the baseline a scipy user would write (the same sparse
  word-set products over all pairs, in row blocks), interleaved, best of 3,
  answers checked equal.

Usage::

    python benchmarks/caption_bench.py                          # template-100000, nearest-100000, openai
    python benchmarks/caption_bench.py --samples 10000 --json /tmp/caption_bench.json
    python benchmarks/caption_bench.py --cases openai
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import describe, peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
RESULT_TAG = "CAPTION_BENCH_RESULT "
SEED_SAMPLES = 200
SERVER_DELAY_S = 0.1
OPENAI_SAMPLES = 64
REPEAT = 5


def make_dataset(work: Path, n: int) -> Path:
    """A dataset of ``n`` samples with a plan and labels (see the module docstring); made once."""
    import geopandas as gpd
    import numpy as np
    import pandas as pd

    from geosample import plan
    from geosample.captions.gazetteer import gazetteer_path
    from geosample.labels.label import label

    ds = work / f"ds-{n}"
    if (ds / "labels.parquet").exists():
        return ds
    seed_ds = work / "seed"
    if not (seed_ds / "labels.parquet").exists():
        plan(seed_ds, samples=SEED_SAMPLES, seed=3, progress=False)
        label(seed_ds, progress=False)
    labels = pd.read_parquet(seed_ds / "labels.parquet")
    places = pd.read_parquet(gazetteer_path())
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(places), n)
    lon = (places["lon"].to_numpy(float)[pick] + rng.uniform(-0.3, 0.3, n) + 180) % 360 - 180
    lat = np.clip(places["lat"].to_numpy(float)[pick] + rng.uniform(-0.3, 0.3, n), -89.0, 89.0)
    ids = [f"bench{i:07d}-2560m" for i in range(n)]
    zone = (np.floor((lon + 180) / 6) % 60 + 1).astype(int)
    table = gpd.GeoDataFrame(
        {
            "sample_id": ids, "lon": lon, "lat": lat, "chip_size_m": 2560.0,
            "epsg": np.where(lat >= 0, 32600, 32700) + zone,
            "start_datetime": pd.Timestamp("2021-01-01", tz="UTC"),
            "end_datetime": pd.Timestamp("2021-12-31 23:59:59", tz="UTC"),
        },
        geometry=gpd.points_from_xy(lon, lat), crs=4326,
    )  # fmt: skip
    shutil.rmtree(ds, ignore_errors=True)
    ds.mkdir(parents=True)
    table.to_parquet(ds / "plan.parquet")
    labels.iloc[np.arange(n) % len(labels)].assign(sample_id=ids).to_parquet(ds / "labels.parquet")
    (ds / "geosample.yaml").write_text((seed_ds / "geosample.yaml").read_text())
    return ds


def _template(work: Path, n: int) -> dict[str, Any]:
    import warnings

    import pandas as pd

    from geosample._dataset import read_plan
    from geosample.captions import caption
    from geosample.captions._sources import ContextBuilder
    from geosample.captions.caption import _run, _write
    from geosample.captions.config import CaptionConfig
    from geosample.captions.context import load_labels_taxonomy
    from geosample.captions.report import caption_report
    from geosample.captions.template import TemplateCaptioner

    warnings.simplefilter("ignore")
    ds = make_dataset(work, n)
    (ds / "captions.parquet").unlink(missing_ok=True)
    t0 = time.perf_counter()
    table = caption(ds, progress=False)
    wall = time.perf_counter() - t0
    n_captions = len(table)
    assert n_captions == 5 * n
    del table
    # The same work again, phase by phase, for the breakdown.
    phases = {}
    t = time.perf_counter()
    builder = ContextBuilder(ds, read_plan(ds))
    phases["load_and_locate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    rows, _, run = _run(TemplateCaptioner(), builder, CaptionConfig(), False, 0)
    phases["contexts_and_captions_s"] = time.perf_counter() - t
    t = time.perf_counter()
    labels = pd.read_parquet(ds / "labels.parquet")
    report = caption_report(
        rows, labels=labels, taxonomy=load_labels_taxonomy(ds, ["geosample-lulc@1.0.0"]), run=run, failed=[]
    )
    phases["report_s"] = time.perf_counter() - t
    t = time.perf_counter()
    _write(ds, rows, report)
    phases["write_s"] = time.perf_counter() - t
    return {
        "wall_s": wall,
        "samples": n,
        "captions": n_captions,
        "extra": {
            **{k: round(v, 2) for k, v in phases.items()},
            "near_duplicate_pairs": report["near_duplicates"]["near_duplicate_pairs"],
            "flagged_captions": report["hallucination"]["flagged_captions"],
        },
    }


def _nearest(work: Path, n: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    from scipy.spatial import cKDTree

    from geosample.captions.gazetteer import EARTH_RADIUS_KM, Gazetteer, gazetteer_path, unit_vectors

    ds = make_dataset(work, n)
    points = pd.read_parquet(ds / "plan.parquet", columns=["lon", "lat"])
    lon, lat = points["lon"].to_numpy(), points["lat"].to_numpy()
    places = pd.read_parquet(gazetteer_path())

    def ours() -> Any:  # a gazetteer without its tree yet: the tree is built inside the timed call
        return fresh.pop().nearest(lon, lat)

    def baseline() -> tuple[Any, Any]:  # what a scipy user writes: a tree over unit vectors, one query
        xyz = unit_vectors(places["lon"].to_numpy(float), places["lat"].to_numpy(float))
        chord, index = cKDTree(xyz).query(unit_vectors(lon, lat), k=1)
        return index, 2 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2, 0, 1))

    times: dict[str, list[tuple[float, float]]] = {"geosample": [], "ckdtree": []}
    fresh = [Gazetteer(places) for _ in range(REPEAT)]  # loading the names is not the lookup
    for _ in range(REPEAT):  # interleaved, best of REPEAT
        for name, fn in (("geosample", ours), ("ckdtree", baseline)):
            t0, c0 = time.perf_counter(), time.process_time()
            answer = fn()
            times[name].append((time.perf_counter() - t0, time.process_time() - c0))
            if name == "geosample":
                found = answer
            else:
                index, distance_km = answer
    assert np.array_equal(found.index, index)  # the same places (the gazetteer's rows are the tree's)
    worst = float(np.max(np.abs(distance_km - found.distance_km)))
    assert worst < 1e-6, worst
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in times.items()}
    return {
        "wall_s": best["geosample"][0],
        "cpu_s": best["geosample"][1],
        "samples": n,
        "extra": {"baseline_ckdtree_s": round(best["ckdtree"][0], 3),
                  "baseline_ckdtree_cpu_s": round(best["ckdtree"][1], 3),
                  "speedup_wall": round(best["ckdtree"][0] / best["geosample"][0], 2),
                  "speedup_cpu": round(best["ckdtree"][1] / best["geosample"][1], 2),
                  "max_distance_difference_km": worst, "places": len(places), "repeats": REPEAT,
                  "note": "geosample's time includes building its tree and the bearing to each place"},
    }  # fmt: skip


def _openai(work: Path) -> dict[str, Any]:
    import warnings

    sys.path.insert(0, str(ROOT / "tests"))
    from captions.openai_server import OpenAIServer  # the loopback server of the tests

    from geosample.captions import caption
    from geosample.captions.openai import OpenAICaptioner

    warnings.simplefilter("ignore")
    ds = make_dataset(work, OPENAI_SAMPLES)
    key = "sk-bench-not-a-real-key"
    os.environ["BENCH_KEY"] = key
    server = OpenAIServer(api_key=key, delay=SERVER_DELAY_S)
    server.start()
    out: dict[str, Any] = {"samples": OPENAI_SAMPLES, "extra": {"server_delay_s": SERVER_DELAY_S}}
    try:
        for concurrency in (1, 8):
            shutil.rmtree(ds / ".cache", ignore_errors=True)
            backend = OpenAICaptioner(
                "bench", server.endpoint, api_key_env="BENCH_KEY", concurrency=concurrency, cache_dir=ds / ".cache"
            )
            t0 = time.perf_counter()
            caption(ds, backend=backend, overwrite=True, progress=False)
            out["extra"][f"concurrency_{concurrency}_s"] = round(time.perf_counter() - t0, 2)
        before = len(server.requests)
        t0 = time.perf_counter()
        caption(ds, backend=backend, overwrite=True, progress=False)
        out["extra"]["cached_rerun_s"] = round(time.perf_counter() - t0, 2)
        out["extra"]["cached_rerun_requests"] = len(server.requests) - before
    finally:
        server.stop()
    out["wall_s"] = out["extra"]["concurrency_8_s"]
    out["extra"]["speedup"] = round(out["extra"]["concurrency_1_s"] / out["extra"]["concurrency_8_s"], 1)
    return out


def _quality(work: Path) -> dict[str, Any]:
    import random
    import warnings

    import geopandas as gpd
    import pandas as pd

    import geosample.captions.template as template
    from geosample import plan
    from geosample.captions import caption
    from geosample.captions.context import build_contexts
    from geosample.labels.label import label

    warnings.simplefilter("ignore")
    ds = work / "quality-1000"
    if not (ds / "labels.parquet").exists():
        shutil.rmtree(ds, ignore_errors=True)
        plan(ds, samples=1000, progress=False)
        label(ds, progress=False)
    (ds / "captions.parquet").unlink(missing_ok=True)
    t0 = time.perf_counter()
    table = caption(ds, progress=False)
    wall = time.perf_counter() - t0
    quality = table.attrs["report"]["quality"]

    class Fixed(random.Random):
        def randrange(self, *args: object, **kwargs: object) -> int:
            return 0

    contexts = build_contexts(ds, gpd.read_parquet(ds / "plan.parquet"))
    original, template.random.Random = template.random.Random, Fixed
    try:
        results = template.TemplateCaptioner().caption_results(contexts, 5)
    finally:
        template.random.Random = original
    frame = pd.DataFrame([(c.sample_id, t) for c, r in zip(contexts, results, strict=True) for t in r.captions],
                         columns=["sample_id", "caption"])  # fmt: skip
    images = frame.groupby("caption")["sample_id"].nunique()
    near = quality["near_duplicates"]
    return {
        "wall_s": wall,
        "samples": 1000,
        "extra": {
            "duplicate_rate": quality["duplicates"]["rate"],
            "near_duplicate_pair_rate": near["pair_rate"],
            "captions_with_near_duplicate": near["caption_rate"],
            "ngrams": quality["ngrams"],
            "ceiling": quality["text_to_image_ceiling"],
            "duplicate_rate_fixed_wording": round(float((frame["caption"].map(images) > 1).mean()), 6),
        },
    }


def _unbanded(ids: list[str], texts: list[str], threshold: float = 0.8) -> int:
    """The baseline: sparse word-set products over every pair, in row blocks (no size banding)."""
    import numpy as np
    import pandas as pd
    from scipy import sparse

    from geosample.captions.quality import tokens

    sets = [sorted(set(tokens(t))) for t in texts]
    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for words in sets:
        indices.extend(vocab.setdefault(w, len(vocab)) for w in words)
        indptr.append(len(indices))
    x = sparse.csr_matrix((np.ones(len(indices), dtype=np.int32), indices, indptr), shape=(len(texts), len(vocab)))
    size = np.diff(x.indptr)
    codes = pd.factorize(np.asarray(ids, dtype=object))[0]
    found = 0
    for start in range(0, len(texts), 512):
        inter = (x[start : start + 512] @ x.T).toarray()
        union = size[start : start + 512, None] + size[None, :] - inter
        hit = inter >= threshold * union
        hit &= np.arange(len(texts))[None, :] > np.arange(start, start + inter.shape[0])[:, None]
        hit &= codes[start : start + 512, None] != codes[None, :]
        found += int(hit.sum())
    return found


def _neardup(work: Path, n: int) -> dict[str, Any]:
    import warnings

    import pandas as pd

    from geosample.captions import caption
    from geosample.captions.quality import near_duplicates_across

    warnings.simplefilter("ignore")
    ds = make_dataset(work, n)
    if not (ds / "captions.parquet").exists():
        caption(ds, progress=False)
    table = pd.read_parquet(ds / "captions.parquet", columns=["sample_id", "caption"])
    ids, texts = table["sample_id"].tolist(), table["caption"].tolist()
    ours, base = [], []
    for _ in range(3):
        t = time.perf_counter()
        got = near_duplicates_across(ids, texts, limit=len(texts))["near_duplicate_pairs"]
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        expected = _unbanded(ids, texts)
        base.append(time.perf_counter() - t)
        assert got == expected, (got, expected)
    return {
        "wall_s": min(ours),
        "samples": n,
        "captions": len(texts),
        "extra": {"baseline_unbanded_s": round(min(base), 2), "speedup": round(min(base) / min(ours), 2),
                  "near_duplicate_pairs": got},
    }  # fmt: skip


def run_case(case: str, work: Path) -> dict[str, Any]:
    """Run one case in this process."""
    t0 = time.perf_counter()
    import geosample.captions  # noqa: F401

    load = time.perf_counter() - t0
    if case.startswith("template-"):
        result = _template(work, int(case.split("-")[1]))
    elif case.startswith("nearest-"):
        result = _nearest(work, int(case.split("-")[1]))
    elif case == "openai":
        result = _openai(work)
    elif case == "quality":
        result = _quality(work)
    elif case.startswith("neardup-"):
        result = _neardup(work, int(case.split("-")[1]))
    else:
        raise SystemExit(f"unknown case {case!r}")
    result.update(case=case, import_s=round(load, 2), peak_rss_mb=peak_rss_mb())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000, help="N of the template and nearest cases")
    parser.add_argument("--cases", help="comma list (default: template-N,nearest-N,openai)")
    parser.add_argument("--work", type=Path, help="folder for the generated datasets (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(RESULT_TAG + json.dumps(run_case(args.child, args.work)), flush=True)
        return
    cases = args.cases.split(",") if args.cases else [f"template-{args.samples}", f"nearest-{args.samples}", "openai"]
    work = args.work or Path(tempfile.mkdtemp(prefix="caption-bench-"))
    results = []
    for case in cases:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", case, "--work", str(work)],
            capture_output=True, text=True, check=False, cwd=ROOT,
        )  # fmt: skip
        lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_TAG)]
        if proc.returncode or not lines:
            print(f"{case}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
            continue
        results.append(json.loads(lines[-1][len(RESULT_TAG) :]))
    print(describe())
    print(f"{'case':<18} {'wall s':>8} {'CPU s':>7} {'peak RSS MB':>12}  details")
    for r in results:
        cpu = f"{r['cpu_s']:.2f}" if "cpu_s" in r else "-"
        details = json.dumps(r.get("extra", {}))
        print(f"{r['case']:<18} {r['wall_s']:>8.2f} {cpu:>7} {r['peak_rss_mb']:>12.1f}  {details}")
        if r["case"].startswith("nearest-"):
            ok = r["extra"]["speedup_wall"] >= 1.0 and r["extra"]["speedup_cpu"] >= 1.0
            print(
                f"  [{'PASS' if ok else 'MISS'}] nearest places at least as fast as cKDTree "
                f"(cKDTree / geosample: wall {r['extra']['speedup_wall']}x, CPU {r['extra']['speedup_cpu']}x)"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
