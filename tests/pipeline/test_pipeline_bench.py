"""The whole-pipeline benchmark's quick mode, so that it cannot rot (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import io
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).parents[2] / "benchmarks" / "pipeline_bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("pipeline_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore")
def test_tiny_pipeline_runs_every_stage_and_reports_the_ratios(bench, tmp_path: Path) -> None:
    sizes = [40, 80]
    results = bench.run_pipeline(tmp_path, sizes, tiny=True, keep=True, in_process=True, log=io.StringIO())
    assert [r.get("error") for r in results] == [None] * len(results)
    assert [(r["stage"], r["samples"]) for r in results] == [(s, n) for n in sizes for s in bench.STAGES]
    for n in sizes:  # what each stage wrote, read back from the dataset itself
        ds = tmp_path / f"DS-{n}"
        plan = pd.read_parquet(ds / "plan.parquet")
        chips = pd.read_parquet(ds / "chips.parquet")
        ok = chips[chips["status"] == "ok"]
        assert len(plan) == n and len(ok) == n
        assert all((ds / p).is_file() and (ds / p.replace(".tif", ".png")).is_file() for p in ok["path"])
        assert len(pd.read_parquet(ds / "labels.parquet")) == n
        assert pd.read_parquet(ds / "captions.parquet")["sample_id"].nunique() == n
        shards = list((ds / "export" / "webdataset").rglob("*.tar"))
        assert shards and list((ds / "export" / "parquet").rglob("*.parquet"))
        assert (ds / "report" / "stats.json").is_file()
        by_stage = {r["stage"]: r for r in results if r["samples"] == n}
        assert by_stage["fetch"]["files"] >= 2 * n  # a chip and a preview per sample, at least
        assert by_stage["plan"]["files"] >= 2 and by_stage["stats"]["files"] >= 1
    # --stages without plan re-runs those stages on the kept datasets (nothing before them is redone or removed)
    stats_before = (tmp_path / "DS-40" / "report" / "stats.json").read_bytes()
    again = bench.run_pipeline(tmp_path, [40], tiny=True, stages=("export-parquet", "stats"), in_process=True,
                               log=io.StringIO())  # fmt: skip
    assert [(r["stage"], r.get("error")) for r in again] == [("export-parquet", None), ("stats", None)]
    assert len(pd.read_parquet(tmp_path / "DS-40" / "chips.parquet")) == 40
    assert (tmp_path / "DS-40" / "report" / "stats.json").read_bytes() == stats_before
    # label re-runs too, though the archive is now served at another address (another source setting)
    relabel = bench.run_pipeline(tmp_path, [40], tiny=True, stages=("label",), in_process=True, log=io.StringIO())
    assert [(r["stage"], r.get("error")) for r in relabel] == [("label", None)]
    out = io.StringIO()
    with redirect_stdout(out):
        verdict = bench.report(results)
    assert set(verdict["ratios"]) == {"80/40"} and set(verdict["ratios"]["80/40"]) == set(bench.STAGES)
    assert all(set(check) == {"time", "rss"} for check in verdict["checks"]["80/40"].values())
    assert "ratios 80 / 40" in out.getvalue() and "no stage over 4 GB" in out.getvalue()
