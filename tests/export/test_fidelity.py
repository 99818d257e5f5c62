"""The report's evidence section: measured cloud and nodata, observed cover, change, caption evidence."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from export.builders import run_main


def _captions(ds: Path) -> pd.DataFrame:
    """A captions.parquet per the caption stage's contract, with its ``evidence`` column (made here)."""
    plan = pd.read_parquet(ds / "plan.parquet")
    evidence = ["observed", "map", "observed+map", "none"]
    rows = [{"sample_id": sid, "caption_index": i, "caption": f"caption {i} of {sid}", "backend": "template",
             "model": None, "prompt_sha256": None, "kind": "scene", "evidence": evidence[(k + i) % 4]}
            for k, sid in enumerate(plan["sample_id"]) for i in range(2)]  # fmt: skip
    change = pd.read_parquet(ds / "change.parquet")
    rows += [{"sample_id": r.sample_id_after, "caption_index": 0, "caption": "change", "backend": "template",
              "model": None, "prompt_sha256": None, "kind": "change", "site_id": r.site_id,
              "sample_id_before": r.sample_id_before, "sample_id_after": r.sample_id_after,
              "evidence": "change" if k else "unobservable"} for k, r in enumerate(change.itertuples())]  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_parquet(ds / "captions.parquet", index=False)
    return table


def test_stats_report_the_evidence(events_demo_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = events_demo_ds
    captions = _captions(ds)
    code, out, err = run_main(["stats", str(ds)], capsys)
    assert code == 0, err
    report = json.loads((ds / "report" / "stats.json").read_text())["fidelity"]
    chips = pd.read_parquet(ds / "chips.parquet")
    plan = pd.read_parquet(ds / "plan.parquet")
    change = pd.read_parquet(ds / "change.parquet")
    # Measured cloud and nodata, beside the items' own eo:cloud_cover (independent pandas/numpy figures).
    c = report["chips"]
    assert c["statuses"] == chips["status"].value_counts().to_dict()
    assert c["cloud_methods"] == {"mask:scl": len(chips)}
    assert c["cloud_fraction"]["median"] == pytest.approx(float(np.median(chips["cloud_fraction"])))
    assert sum(c["cloud_histogram"]["counts"]) == len(chips) == sum(c["nodata_histogram"]["counts"])
    assert c["eo_cloud_cover"]["chips"] == len(chips)
    assert c["eo_cloud_cover"]["understated"] == int((chips["cloud_fraction"] * 100 - chips["cloud_cover"] > 10).sum())
    # Observed cover per stratum: the mean share of each class over the stratum's chips.
    shares = pd.DataFrame([json.loads(t) for t in chips["observed"]], index=chips["sample_id"])
    means = shares.groupby(plan.set_index("sample_id")["stratum"].reindex(shares.index).to_numpy()).mean()
    for stratum, row in means.iterrows():
        got = report["observed"]["per_stratum"][stratum]
        assert all(got[k] == pytest.approx(v, abs=1e-4) for k, v in row.items()), stratum
    # Change: pairs showing each type, and the largest change per event type with its mask.
    ch = report["change"]
    assert ch["pairs"] == len(change) == 4
    for name in ("water_gain", "burned", "vegetation_loss", "snow_ice_change"):
        assert ch["pairs_showing"][name] == int((change[name] >= 0.01).sum()), name
    largest = ch["largest_by_event_type"]
    assert set(largest) == {"wildfire", "flood"}
    assert largest["wildfire"]["change"] == "burned" and largest["flood"]["change"] == "water_gain"
    fire = change[change["sample_id_after"].map(plan.set_index("sample_id")["event_type"]) == "wildfire"]
    assert largest["wildfire"]["share"] == pytest.approx(fire["burned"].max())
    # Captions by evidence.
    scene = captions[captions["kind"] == "scene"]["evidence"].value_counts().to_dict()
    assert report["caption_evidence"]["scene"] == scene
    assert report["caption_evidence"]["change"] == {"change": 3, "unobservable": 1}
    # The terminal summary and the page say the same.
    assert "change: 4 pairs, 4 measured" in out and "scene captions by evidence: map" in out
    page = (ds / "report" / "index.html").read_text()
    section = page[page.index("Evidence: what the chips show") : page.index("Gallery")]
    assert len(re.findall(r"<img ", section)) == 1 + len(largest)  # the distributions and one mask per event type
    assert "wildfire: burned" in section and "flood: water gain" in section
    assert ">observed+map<" in section and ">unobservable<" in section


def test_stats_without_observations_leave_the_section_out(planned_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["stats", str(planned_ds)], capsys)
    assert code == 0, err
    report = json.loads((planned_ds / "report" / "stats.json").read_text())["fidelity"]
    assert report == {"chips": None, "observed": None, "change": None, "caption_evidence": None}
    assert "Evidence: what the chips show" not in (planned_ds / "report" / "index.html").read_text()
