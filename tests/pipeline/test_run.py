"""``geosample run``: the whole pipeline from one config, offline, resumable."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from click.testing import CliRunner
from scenes import synthetic

from geosample.cli import cli

EXAMPLES = Path(__file__).parents[2] / "data" / "examples"


@pytest.fixture
def offline_config(tmp_path, monkeypatch) -> Path:
    shutil.copy(EXAMPLES / "offline.yaml", tmp_path / "offline.yaml")
    shutil.copytree(EXAMPLES / "offline-stac", tmp_path / "offline-stac")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "offline.yaml"


def test_offline_example_builds_a_complete_dataset_and_resumes(offline_config) -> None:
    result = CliRunner().invoke(cli, ["run", str(offline_config), "--no-progress"])
    assert result.exit_code == 0, result.output
    ds = offline_config.parent / "offline-demo"
    for name in (
        "plan.parquet",
        "chips.parquet",
        "labels.parquet",
        "captions.parquet",
        "stac/catalog.json",
        "trainingdml.json",
        "report/balance.json",
    ):
        assert (ds / name).exists(), name
    plan = pd.read_parquet(ds / "plan.parquet")
    chips = pd.read_parquet(ds / "chips.parquet")
    captions = pd.read_parquet(ds / "captions.parquet")
    assert (chips["status"] == "ok").all() and len(chips) == len(plan) == 12
    assert captions.groupby("sample_id").size().eq(5).all()
    # The demo's captions are distinct (#13): no caption repeats another image's, near-duplicates <= 2 % of pairs.
    images_of = captions.groupby("caption")["sample_id"].nunique()
    assert not (captions["caption"].map(images_of) > 1).any()
    words = [set(re.findall(r"\w+", t.lower())) for t in captions["caption"]]
    ids = list(captions["sample_id"])
    cross = [(a, b) for a, b in itertools.combinations(range(len(words)), 2) if ids[a] != ids[b]]
    near = sum(len(words[a] & words[b]) / len(words[a] | words[b]) >= 0.8 for a, b in cross)
    assert near / len(cross) <= 0.02
    with rasterio.open(ds / chips["path"].iloc[0]) as src:
        assert (
            src.count == 3 and src.crs.to_epsg() == plan.set_index("sample_id").loc[chips["sample_id"].iloc[0], "epsg"]
        )
    # Again: nothing is redone.
    again = CliRunner().invoke(cli, ["run", str(offline_config), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert "plan      up to date" in again.output and "label     up to date" in again.output
    assert "12 skipped" in again.output
    pd.testing.assert_frame_equal(captions, pd.read_parquet(ds / "captions.parquet"))


def test_until_stops_after_the_stage(offline_config) -> None:
    result = CliRunner().invoke(cli, ["run", str(offline_config), "--until", "fetch", "--no-progress"])
    assert result.exit_code == 0, result.output
    ds = offline_config.parent / "offline-demo"
    assert (ds / "chips.parquet").exists() and not (ds / "labels.parquet").exists()
    assert "label" not in result.output


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda c: c.update(plot={"x": 1}), ["unknown section", "plot"]),
        (lambda c: c["caption"].update(backend_typo=1), ["backend_typo"]),
        (lambda c: c["plan"].update(samples=0), ["--samples"]),
        (lambda c: c.pop("out"), ["out"]),
    ],
)
def test_bad_configs_fail_before_anything_is_written(offline_config, edit, words) -> None:
    config = yaml.safe_load(offline_config.read_text())
    edit(config)
    offline_config.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(cli, ["run", str(offline_config)])
    assert result.exit_code != 0
    for word in words:
        assert word in str(result.exception), str(result.exception)
    assert not (offline_config.parent / "offline-demo").exists()


def test_event_pairs_are_pixel_aligned_and_labelled_per_phase(tmp_path) -> None:
    """The dynamic-process demo, offline: before/after chips share a grid, labels show the change."""
    from geosample import LabelConfig, PlanConfig, fetch, label, plan

    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,type,date,lon,lat\nfire,wildfire,2021-07-15,23.3,38.9\nflood,flood,2021-07-14,7.1,50.53\n"
    )
    ds = tmp_path / "DS"
    plan(ds, config=PlanConfig.from_mapping({"events": str(events), "samples": 4}), progress=False)
    catalog = synthetic().build(ds, tmp_path / "stac", collections=("synthetic-rgb", "synthetic-landcover"))
    fetch(ds, stac=str(catalog), collection="synthetic-rgb", resolution=20, progress=False)
    label(
        ds, LabelConfig(source="stac:synthetic-landcover", stac=str(catalog), scheme="esa-worldcover"), progress=False
    )
    samples = pd.read_parquet(ds / "plan.parquet")
    chips = pd.read_parquet(ds / "chips.parquet").merge(samples[["sample_id", "site_id", "phase", "event_type"]])
    assert (chips["status"] == "ok").all()
    for _, pair in chips.groupby("site_id"):
        assert sorted(pair["phase"]) == ["after", "before"]
        grids = []
        for path in pair["path"]:
            with rasterio.open(ds / path) as src:
                grids.append((src.crs, src.transform, src.width, src.height))
        assert grids[0] == grids[1]
    labels = pd.read_parquet(ds / "labels.parquet").merge(samples[["sample_id", "site_id", "phase", "event_type"]])
    for _, pair in labels.groupby("site_id"):
        before = pair[pair["phase"] == "before"]["fractions"].map(eval).iloc[0]
        after = pair[pair["phase"] == "after"]["fractions"].map(eval).iloc[0]
        scar = "6" if pair["event_type"].iloc[0] == "wildfire" else "8"  # bare ground, or water
        assert after.get(scar, 0) > before.get(scar, 0) + 0.2
        assert np.isclose(sum(after.values()), 1.0, atol=1e-5)


def test_synthetic_archive_writes_the_collections_asked_for_with_the_same_scenes(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from geosample import PlanConfig, plan

    ds = tmp_path / "DS"
    plan(ds, config=PlanConfig.from_mapping({"samples": 6, "aoi": "bbox:5,45,10,48", "seed": 3}), progress=False)
    whole = synthetic().build(ds, tmp_path / "all")
    part = synthetic().build(ds, tmp_path / "two", collections=("synthetic-rgb", "synthetic-landcover"))
    children = [link["href"] for link in json.loads(part.read_text())["links"] if link["rel"] == "child"]
    assert sorted(children) == ["./synthetic-landcover/collection.json", "./synthetic-rgb/collection.json"]
    written = sorted(p.name for p in (part.parent / "data").glob("*.tif"))
    assert written and all(name.endswith(("_rgb.tif", "_lc.tif")) for name in written)
    for name in written:  # the same scenes: byte for byte what the whole archive holds
        assert (part.parent / "data" / name).read_bytes() == (whole.parent / "data" / name).read_bytes()
    assert len(list((whole.parent / "data").glob("*_scl.tif"))) >= 6
    with pytest.raises(ValueError, match="synthetic-s2, synthetic-rgb, synthetic-landcover"):
        synthetic().build(ds, tmp_path / "bad", collections=("synthetic-s3",))
    script = EXAMPLES / "synthetic_stac.py"
    done = subprocess.run([sys.executable, str(script), str(ds), str(tmp_path / "cli"), "--collections", "rgb"],
                          capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "--collections must be some of" in done.stderr
    assert not (tmp_path / "cli").exists()


@pytest.mark.parametrize("name", ["offline.yaml", "earth-search-s2.yaml", "planetary-computer.yaml"])
def test_example_configs_validate(name: str) -> None:
    """The real-world examples cannot run offline, but every section must build its config."""
    from geosample.pipeline.run import _stage_config, load_run_config

    path = EXAMPLES / name
    _, sections = load_run_config(path)
    assert {"plan", "fetch", "label", "caption"} <= set(sections)
    for stage, section in sections.items():
        assert _stage_config(stage, dict(section), path.parent) is not None
