"""The "Splits and leakage" section of index.html states the dataset's own figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

from export.builders import invoke

from geosample.export.stats import stats


def _section(ds: Path) -> str:
    text = (ds / "report" / "index.html").read_text(encoding="utf-8")
    match = re.search(r"<h2>Splits and leakage</h2>(.*?)</section>", text, re.S)
    assert match, "no Splits and leakage section"
    return match.group(1)


def test_section_before_and_after_an_export(planned_ds: Path) -> None:
    stats(planned_ds, gallery=2)
    before = _section(planned_ds)
    assert "the default splits (no export yet)" in before
    spacing = json.loads((planned_ds / "report" / "balance.json").read_text())["spacing"]
    assert f"<td>{spacing['min_distance_m']:,.1f}</td>" in before
    assert f"<td>{spacing['overlapping_chip_pairs']}</td>" in before
    assert invoke("export", planned_ds, "-f", "gpkg", "--split-buffer-m", "5000", "--seed", "2").exit_code == 0
    stats(planned_ds, gallery=2)
    after = _section(planned_ds)
    report = json.loads((planned_ds / "report" / "splits.json").read_text())
    assert "the last export (report/splits.json)" in after and "buffer 5000 m" in after
    for name, figures in report["splits"].items():
        row = f"<tr><td>{name}</td><td>{figures['sites']}</td><td>{figures['samples']}</td>"
        assert row in after
