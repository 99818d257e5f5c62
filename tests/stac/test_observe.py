"""Per-chip observations on physically plausible synthetic chips, against the layout that was planted."""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from export.builders import invoke
from export.builders import run_main as run
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scenes import Scene, api_files, expected, quadrant_scene, serve_scenes, synthetic
from scenes import pair_plan as scenes_pair_plan
from stac.servers import rustac_serve

from geosample.stac.grid import chip_grid
from geosample.stac.observe import CODE_NAMES, observation_plan, observe

BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
GAINS = [1e-4] * 6
SURFACES = ("water", "flood", "trees", "grass", "crops", "bare", "built", "burned", "lava", "snow", "cloud", "shadow")


def chip(scene: np.ndarray, nodata: np.ndarray | None = None, seed: int = 0) -> tuple[np.ma.MaskedArray, np.ndarray]:
    """Digital numbers (6, h, w) masked where ``nodata``, and the scene classification."""
    syn = synthetic()
    dn = syn.digital_numbers(syn.reflectance(scene, seed))
    mask = np.zeros(dn.shape, bool) if nodata is None else np.broadcast_to(nodata, dn.shape).copy()
    return np.ma.MaskedArray(dn, mask=mask), syn.scene_classification(scene)


def assert_matches(obs, want: dict) -> None:
    assert obs.nodata_fraction == pytest.approx(want["nodata_fraction"], abs=1e-12)
    assert obs.cloud_fraction == pytest.approx(want["cloud_fraction"], abs=1e-12)
    if not want["observed"]:
        assert obs.observed is None
        return
    assert obs.observed.keys() == want["observed"].keys()
    for key, value in want["observed"].items():
        assert obs.observed[key] == pytest.approx(value, abs=1e-6), key
    for quadrant, shares in want["observed_quadrants"].items():
        got = obs.observed_quadrants[quadrant]
        assert got.keys() == shares.keys(), quadrant
        for key, value in shares.items():
            assert got[key] == pytest.approx(value, abs=1e-6), (quadrant, key)


@pytest.mark.parametrize("method", ["mask:scl", "spectral"])
def test_quadrant_layout_with_cloud_shadow_and_nodata(method: str) -> None:
    scene = quadrant_scene(64, cloud=(0.3, 0.7, 0.12), shadow=(0.45, 0.85, 0.1))
    nodata = np.zeros(scene.shape, bool)
    nodata[:, -5:] = True
    data, scl = chip(scene, nodata)
    kwargs = {"mask": scl, "mask_band": "scl"} if method == "mask:scl" else {}
    obs = observe(data, BANDS, gains=GAINS, **kwargs)
    assert obs.cloud_method == method
    assert_matches(obs, expected(scene, nodata, spectral=method == "spectral"))
    # Each quadrant shows its planted class (clouds and nodata aside).
    assert obs.observed_quadrants["nw"]["water"] == 1.0 and obs.observed_quadrants["ne"]["vegetation"] == 1.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    blocks=st.lists(st.sampled_from(SURFACES), min_size=16, max_size=16),
    nodata_cols=st.integers(0, 40),
    seed=st.integers(0, 2**16),
    spectral=st.booleans(),
)
@example(  # shares of 0.4, 0.2, 0.3 and 0.1, whose float sum is 1 + 2e-16
    blocks=["bare", "trees", "water", "water", "cloud", "trees", "water", "water", "water", "snow", "water", "water",
            "water", "bare", "water", "water"],
    nodata_cols=25, seed=0, spectral=False,
)  # fmt: skip
def test_observed_shares_equal_the_planted_surfaces(
    blocks: list[str], nodata_cols: int, seed: int, spectral: bool
) -> None:
    """Any 4 x 4 patchwork of surfaces, any texture: shares, cloud and nodata follow the layout exactly."""
    size = 40
    codes = np.array([synthetic().surface(b) for b in blocks], dtype=np.uint8).reshape(4, 4)
    scene = np.kron(codes, np.ones((10, 10), dtype=np.uint8))
    nodata = np.zeros(scene.shape, bool)
    nodata[:, size - nodata_cols :] = True
    data, scl = chip(scene, nodata, seed)
    obs = observe(data, BANDS, gains=GAINS, **({} if spectral else {"mask": scl, "mask_band": "SCL"}))
    want = expected(scene, nodata, spectral=spectral)
    assert_matches(obs, want)
    if obs.observed is not None:
        assert math.fsum(obs.observed.values()) <= 1  # the exact sum: 0.4 + 0.2 + 0.3 + 0.1 is 1 + 2e-16 in floats
        assert all(0 <= v <= 1 for v in obs.observed.values())


def test_per_pixel_map_codes_follow_the_layout() -> None:
    scene = quadrant_scene(32, cloud=(0.75, 0.25, 0.1))
    data, scl = chip(scene)
    obs = observe(data, BANDS, gains=GAINS, mask=scl, mask_band="scl", with_map=True)
    names = np.array(synthetic().SURFACES, dtype=object)[scene]
    want = np.vectorize(synthetic().OBSERVED.get)(names)
    got = np.vectorize(CODE_NAMES.get)(obs.classes)
    assert (got == want).all()


def test_bands_decide_what_is_observable() -> None:
    scene = quadrant_scene(16)
    data, scl = chip(scene)
    rgb = data[[2, 1, 0]]
    obs = observe(rgb, ["red", "green", "blue"])
    assert obs.cloud_fraction is None and obs.cloud_method is None and obs.observed is None
    plan = observation_plan(["red", "green", "blue"])
    assert "nir" in plan.missing()["vegetation"] and "scl" in plan.missing()["cloud"]
    # Red, green, blue and nir with the scene classification: NDWI water, no snow test (snow counts as water).
    four = data[[2, 1, 0, 3]]
    obs = observe(four, ["B04", "visual_green", "b", "image_nir"], common_names=[None, None, "blue", None],
                  mask=scl, mask_band="scl")  # fmt: skip
    assert set(obs.observed) == {"water", "vegetation", "bare"}
    assert obs.observed_quadrants["se"]["water"] == 1.0  # the snow quadrant: documented confusion without swir16
    assert obs.observed_quadrants["ne"]["vegetation"] == 1.0
    # Uncalibrated digital numbers: no absolute thresholds, so no spectral cloud test and no snow test.
    plan = observation_plan(BANDS, calibrated=False)
    assert plan.cloud_method is None and plan.classes == ()
    assert observation_plan(BANDS, calibrated=False, mask="scl").classes == ("water", "vegetation", "bare")


def test_landsat_qa_pixel_bits() -> None:
    scene = quadrant_scene(16, {"nw": "trees", "ne": "trees", "sw": "bare", "se": "water"})
    data, _ = chip(scene)
    qa = np.full(scene.shape, 0b1000000, dtype=np.uint16)  # bit 6: clear
    qa[0, :4] = 0b1000  # bit 3: cloud
    qa[1, :4] = 0b10000  # bit 4: cloud shadow
    qa[2, :4] = 0b10  # bit 1: dilated cloud
    qa[3, :4] = 0b1  # bit 0: fill
    obs = observe(data, BANDS, gains=GAINS, mask=qa, mask_band="qa_pixel")
    assert obs.cloud_method == "mask:qa_pixel"
    assert obs.nodata_fraction == pytest.approx(4 / 256)
    assert obs.cloud_fraction == pytest.approx(12 / 252)
    assert obs.observed["water"] == pytest.approx(64 / 240, abs=1e-6)
    assert obs.observed["vegetation"] == pytest.approx(112 / 240, abs=1e-6)


# --- fetch end to end: scenes served as COGs over loopback HTTP from a rustac STAC API ----------------------------

RES, SIZE = 20.0, 1280.0
POINTS = [(14.50, 46.05), (14.62, 46.10)]
REFL = "blue,green,red,nir,swir16,swir22"


def pair_plan(ds: Path) -> gpd.GeoDataFrame:
    return scenes_pair_plan(ds, POINTS, SIZE)


def _grid(row) -> object:
    return chip_grid(row.lon, row.lat, int(row.epsg), SIZE, RES)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, files_root: Path, file_server) -> dict:
    """The plan and, per sample, candidate items with known layouts, behind a rustac STAC API."""
    root = tmp_path_factory.mktemp("observe")
    plan = pair_plan(root / "PLAN")
    rows = {r.sample_id: r for r in plan.itertuples()}
    (s0b, s0a), (s1b, s1a) = [(f"{c}-before", f"{c}-after") for c in plan["site_id"].unique()]
    mid = {sid: (r.start_datetime + (r.end_datetime - r.start_datetime) / 2).to_pydatetime() for sid, r in rows.items()}
    strip = np.zeros((64, 64), bool)
    strip[:, -10:] = True
    mostly = np.zeros((64, 64), bool)
    mostly[:, 20:] = True
    big_cloud = quadrant_scene(64, cloud=(0.5, 0.5, 0.3))
    truth = {
        s0b: [Scene("s0b-cloudy", big_cloud, mid[s0b], cloud_cover=1.0),
              Scene("s0b-clear", quadrant_scene(64, shadow=(0.2, 0.2, 0.1)), mid[s0b] + dt.timedelta(days=10),
                    cloud_cover=5.0, seed=1)],
        s0a: [Scene("s0a-strip", quadrant_scene(64, {"nw": "flood", "ne": "burned", "sw": "bare", "se": "trees"}),
                    mid[s0a], cloud_cover=0.0, nodata=strip, seed=2)],
        s1b: [Scene("s1b-cloudy1", big_cloud, mid[s1b], cloud_cover=2.0, seed=3),
              Scene("s1b-cloudy2", quadrant_scene(64, cloud=(0.3, 0.3, 0.35)), mid[s1b] + dt.timedelta(days=5),
                    cloud_cover=3.0, seed=4)],
        s1a: [Scene("s1a-empty", quadrant_scene(64), mid[s1a], cloud_cover=0.0, nodata=mostly, seed=5)],
    }  # fmt: skip
    items = []
    for sid, scenes in truth.items():
        items += serve_scenes(files_root / "scenes", f"{file_server.url}/scenes", _grid(rows[sid]), scenes)
    with rustac_serve(*api_files(root / "api", items)) as api:
        yield {"plan": root / "PLAN", "api": api, "truth": truth, "ids": (s0b, s0a, s1b, s1a), "items": items}


@pytest.fixture(scope="module")
def observed_ds(served: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = tmp_path_factory.mktemp("obs") / "DS"
    shutil.copytree(served["plan"], ds)
    result = invoke("fetch", ds, "--stac", served["api"], "--collection", "scenes", "--assets", REFL, "--resolution",
                    "20", "--max-chip-cloud", "0.2", "--min-valid", "0.5", "-q", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    return ds


def test_fetch_measures_cloud_nodata_and_cover_and_skips_cloudy_items(observed_ds: Path, served: dict) -> None:
    s0b, s0a, s1b, s1a = served["ids"]
    truth = served["truth"]
    table = pd.read_parquet(observed_ds / "chips.parquet").set_index("sample_id")
    # The first candidate claims 1 % cloud but shows 28 %: it is rejected, the clear one ten days later kept.
    row = table.loc[s0b]
    assert row.status == "ok" and row.item_id == "s0b-clear" and row.cloud_cover == 5.0
    assert row.item_datetime == pd.Timestamp(truth[s0b][1].when).floor("s")  # the item says it to the second
    assert pd.isna(row.item_start_datetime) and pd.isna(row.item_end_datetime)
    assert list(row.bands) == REFL.split(",")  # scl was read for the cloud mask, not kept
    for sid, scene in ((s0b, truth[s0b][1]), (s0a, truth[s0a][0])):
        row = table.loc[sid]
        want = expected(scene.scene, scene.nodata)
        assert row.cloud_method == "mask:scl"
        assert row.nodata_fraction == pytest.approx(want["nodata_fraction"])
        assert row.cloud_fraction == pytest.approx(want["cloud_fraction"])
        got = json.loads(row.observed)
        assert got.keys() == want["observed"].keys()
        assert all(got[k] == pytest.approx(v, abs=1e-6) for k, v in want["observed"].items())
        quads = json.loads(row.observed_quadrants)
        for q, shares in want["observed_quadrants"].items():
            assert all(quads[q][k] == pytest.approx(v, abs=1e-6) for k, v in shares.items()), q
    # No candidate passes: the measured figures are in the error, the status says which limit.
    row = table.loc[s1b]
    assert row.status == "cloudy" and pd.isna(row.path) and pd.isna(row.item_id)
    assert "s1b-cloudy1: cloud 28" in row.error and "s1b-cloudy2: cloud" in row.error and "mask:scl" in row.error
    assert row.cloud_fraction == pytest.approx(expected(truth[s1b][0].scene)["cloud_fraction"])
    row = table.loc[s1a]
    assert row.status == "nodata" and "31.2% of pixels valid < --min-valid 0.5" in row.error
    assert not (observed_ds / "chips" / f"{s1b}.tif").exists()


def test_pairs_get_an_observation_map_on_the_chip_grid(observed_ds: Path, served: dict) -> None:
    s0b, s0a, *_ = served["ids"]
    table = pd.read_parquet(observed_ds / "chips.parquet").set_index("sample_id")
    syn = synthetic()
    for sid, scene in ((s0b, served["truth"][s0b][1]), (s0a, served["truth"][s0a][0])):
        path = observed_ds / table.loc[sid, "observed_map"]
        with rasterio.open(path) as src, rasterio.open(observed_ds / table.loc[sid, "path"]) as chip_file:
            codes = src.read(1)
            assert src.transform == chip_file.transform and src.crs == chip_file.crs
            assert src.colormap(1)[2][:3] == (31, 120, 180) and src.tags(1)["code_2"] == "water"
        names = np.array(syn.SURFACES, dtype=object)[scene.scene]
        want = np.vectorize(syn.OBSERVED.get)(names)
        if scene.nodata is not None:
            want[scene.nodata] = "nodata"
        assert (np.vectorize(CODE_NAMES.get)(codes) == want).all()


def test_max_chip_cloud_out_of_range_or_unmeasurable(served: dict, tmp_path: Path, stac_api: str, andros_ds: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    ds = tmp_path / "DS"
    shutil.copytree(served["plan"], ds)
    for flag in ("--max-chip-cloud", "--min-valid"):
        code, _, err = run(["fetch", ds, "--stac", served["api"], "--collection", "scenes", flag, "1.5"], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"{flag} 1.5 is out of range; give a fraction from 0 to 1" in err
        assert not (ds / "chips.parquet").exists() and not (ds / "chips").exists()
    # The real Landsat 7 scene has red, green and blue only and no mask band: cloud cannot be measured.
    code, _, err = run(["fetch", andros_ds, "--stac", stac_api, "--collection", "landsat-7-rgb",
                        "--max-chip-cloud", "0.2"], capsys)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "lack nir, swir16, swir22 for the spectral test" in err and "Traceback" not in err
    assert not (andros_ds / "chips.parquet").exists() and not (andros_ds / "chips").exists()


def test_offline_demo_keeps_the_items_real_dates_and_observes_nothing_it_cannot(andros_ds: Path) -> None:
    """The demo's Landsat 7 item has only a range (the mission): no invented date, no cover without nir."""
    catalog = Path(__file__).parents[2] / "data" / "examples" / "offline-stac" / "catalog.json"
    from geosample import fetch
    from geosample.errors import ObservationWarning

    # One warning says what the chips cannot show and which bands that needs.
    with pytest.warns(ObservationWarning, match="vegetation needs red and nir") as caught:
        fetch(andros_ds, stac=str(catalog), collection="landsat7-demo", resolution=300, progress=False)
    assert "cloud needs a cloud-mask band (scl, qa_pixel)" in str(caught[0].message)
    table = pd.read_parquet(andros_ds / "chips.parquet")
    assert (table["status"] == "ok").all()
    assert table["item_datetime"].isna().all()
    assert (table["item_start_datetime"] == pd.Timestamp("1999-04-15", tz="UTC")).all()
    assert (table["item_end_datetime"] == pd.Timestamp("2025-06-04", tz="UTC")).all()
    assert table["observed"].isna().all() and table["cloud_fraction"].isna().all()
    assert table["cloud_method"].isna().all()
    assert (table["nodata_fraction"] >= 0).all()
    item = json.loads((andros_ds / "stac" / "landsat7-demo" / f"{table['sample_id'].iloc[0]}.json").read_text())
    assert item["properties"]["datetime"] is None and item["properties"]["start_datetime"].startswith("1999-04-15")
