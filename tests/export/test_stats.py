"""``geosample stats``: figures checked against independent computations (pandas counts, h3-py, brute force)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest
from export.builders import invoke, run_main
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from geosample.export.stats import nearest_neighbour_km, stats


def _brute_force_km(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Nearest-neighbour haversine distances, every pair compared (R = 6371.0088 km)."""
    lam, phi = np.radians(lon), np.radians(lat)
    a = (
        np.sin((phi[:, None] - phi[None, :]) / 2) ** 2
        + np.cos(phi[:, None]) * np.cos(phi[None, :]) * np.sin((lam[:, None] - lam[None, :]) / 2) ** 2
    )
    d = 2 * 6371.0088 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


POINTS = st.lists(
    st.tuples(st.floats(-180, 180), st.floats(-89.99, 89.99)),
    min_size=2,
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(points=POINTS, cluster=st.integers(0, 60), seed=st.integers(0, 100))
def test_nearest_neighbour_matches_brute_force(points: list[tuple[float, float]], cluster: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lon = np.array([p[0] for p in points] + list(12 + rng.normal(0, 1e-3, cluster)))
    lat = np.array([p[1] for p in points] + list(48 + rng.normal(0, 1e-3, cluster)))
    ours = nearest_neighbour_km(lon, lat)
    expected = _brute_force_km(lon, lat)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6)


def test_nearest_neighbour_edge_cases() -> None:
    assert np.isnan(nearest_neighbour_km(np.array([5.0]), np.array([5.0]))).all()
    assert nearest_neighbour_km(np.array([5.0, 5.0]), np.array([5.0, 5.0])).tolist() == [0.0, 0.0]
    antipodes = nearest_neighbour_km(np.array([0.0, 180.0]), np.array([0.0, 0.0]))
    np.testing.assert_allclose(antipodes, np.pi * 6371.0088)


def test_stats_of_a_complete_dataset(full_ds: Path) -> None:
    result = invoke("stats", full_ds)
    assert result.exit_code == 0, result.output
    report = json.loads((full_ds / "report" / "stats.json").read_text())
    plan = gpd.read_parquet(full_ds / "plan.parquet")
    labels = pd.read_parquet(full_ds / "labels.parquet")
    captions = pd.read_parquet(full_ds / "captions.parquet")
    assert report["samples"] == len(plan) and report["missing"] == []
    per_stratum = plan.drop_duplicates("site_id")["stratum"].value_counts()
    assert {r["stratum"]: r["sites"] for r in report["strata"]["per_stratum"]} == per_stratum.to_dict()
    assert report["time_bins"] == plan["time_bin"].value_counts().sort_index().to_dict()
    assert report["dimensions"]["climate"] == plan["climate"].value_counts().to_dict()
    for level in ("l1", "l2", "l3"):
        expected = Counter(code for codes in labels[level] for code in codes)
        got = {code: c["samples"] for code, c in report["labels"]["levels"][level]["classes"].items()}
        assert got == dict(expected)
        dominant = labels[f"{level}_dominant"].value_counts()
        assert {k: c["dominant"] for k, c in report["labels"]["levels"][level]["classes"].items() if c["dominant"]} == (
            dominant.to_dict()
        )
    words = captions["caption"].map(lambda t: len(re.findall(r"[^\W\d_]+", t)))
    assert report["captions"]["words_per_caption"]["mean"] == pytest.approx(words.mean())
    assert report["captions"]["total"] == len(captions)
    assert report["captions"]["words_histogram"] == {str(k): v for k, v in words.value_counts().sort_index().items()}
    assert report["captions"]["samples_with_captions"] == captions["sample_id"].nunique()
    cells = plan.drop_duplicates("site_id")["h3"].map(lambda c: h3.cell_to_parent(c, 2)).value_counts()
    assert report["spatial"]["cells"] == len(cells)
    assert report["spatial"]["cells_by_sites"] == {str(k): v for k, v in cells.value_counts().sort_index().items()}
    sites = plan.drop_duplicates("site_id")
    nn = _brute_force_km(sites["lon"].to_numpy(), sites["lat"].to_numpy())
    assert report["spatial"]["nearest_neighbour_km"]["median"] == pytest.approx(np.median(nn), rel=1e-9)
    histogram = report["spatial"]["nearest_neighbour_histogram_km"]
    assert histogram["counts"] == np.histogram(nn, bins=30)[0].tolist()
    assert report["spatial"]["clark_evans_ratio"] > 0
    for plot in report["plots"]:
        with Image.open(full_ds / plot) as image:
            assert image.format == "PNG" and image.size[0] > 500
    assert {"report/stats_balance.png", "report/stats_labels.png", "report/stats_captions.png"} <= set(report["plots"])
    assert "24 samples at 24 sites" in result.output and "captions: 46" in result.output


def test_stats_of_a_plan_only_dataset(planned_ds: Path) -> None:
    report = stats(planned_ds, gallery=6)
    assert report["parts"] == {"plan": True, "chips": False, "labels": False, "captions": False}
    assert len(report["missing"]) == 3 and report["labels"] is None and report["captions"] is None
    assert report["plots"] == ["report/stats_balance.png", "report/stats_spatial.png"]
    page = (planned_ds / "report" / "index.html").read_text()
    assert page.count("<polygon") == 6 and "Not in the dataset yet" in page


def test_stats_without_a_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "DS").mkdir()
    code, _, err = run_main(["stats", tmp_path / "DS"], capsys)
    assert code == 2 and err.count("\n") == 1 and "geosample plan" in err and "Traceback" not in err
    assert not (tmp_path / "DS" / "report").exists()
