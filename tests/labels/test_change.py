"""``geosample label`` measures real change between a site's chips: a planted flood, burn scar and clearing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from export.builders import invoke
from export.builders import run_main as run
from hypothesis import given, settings
from hypothesis import strategies as st
from scenes import Scene, code, pair_plan, serve_scenes, static_catalog, synthetic

from geosample.labels.change import CHANGE_CODES, change_pairs
from geosample.stac.grid import chip_grid

SIZE, RES, PX = 1280.0, 20.0, 64
POINT = (14.50, 46.05)
REFL = "blue,green,red,nir,swir16,swir22"
pytestmark = pytest.mark.filterwarnings("ignore::geosample.errors.DataQualityWarning")


def layouts() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Before and after scenes of one site (and the before chip's nodata), every change planted in its place."""
    before = np.full((PX, PX), code("trees"), dtype=np.uint8)
    before[44:60, 44:60] = code("water")  # a pond
    before[0:6, 0:30] = code("bare")  # a field
    before[0:4, 36:64] = code("snow")  # a late snow patch
    after = before.copy()
    after[8:56, 0:20] = code("flood")  # flood in the west
    after[4:28, 36:60] = code("burned")  # burn scar in the north-east
    after[40:60, 22:40] = code("bare")  # clearing in the south
    after[44:60, 44:60] = code("bare")  # the pond dried out
    after[0:6, 0:30] = code("grass")  # the field grew grass
    after[0:4, 36:64] = code("trees")  # the snow melted
    yy, xx = np.mgrid[:PX, :PX]
    after[(yy - 32) ** 2 + (xx - 30) ** 2 <= 25] = code("cloud")
    nodata = np.zeros((PX, PX), bool)
    nodata[:, 62:] = True
    return before, after, nodata


def truth(before: np.ndarray, after: np.ndarray, nodata: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Shares and per-pixel codes from the planted surfaces alone (what each surface is, not index thresholds)."""
    syn = synthetic()
    names_b = np.array(syn.SURFACES, dtype=object)[before]
    names_a = np.array(syn.SURFACES, dtype=object)[after]
    obs_b = np.vectorize(syn.OBSERVED.get)(names_b)
    obs_a = np.vectorize(syn.OBSERVED.get)(names_a)
    joint = ~nodata & (obs_b != "cloud") & (obs_a != "cloud")
    wet = (obs_b == "water") | (obs_a == "water") | (obs_b == "snow_ice") | (obs_a == "snow_ice")
    # Burned: vegetation (NBR 0.4-0.6) turned char-dark (burn scar or fresh lava, NBR < 0), or built-up land
    # (NBR about 0) turned to char (-0.36): both a dNBR well above 0.27 and a red below 0.10.
    charred = np.isin(names_a, ["burned", "lava"]) & np.isin(names_b, ["trees", "grass", "crops"])
    charred |= (names_a == "burned") & (names_b == "built")
    tests = {
        "water_gain": (obs_b != "water") & (obs_a == "water"),
        "water_loss": (obs_b == "water") & (obs_a != "water"),
        "vegetation_loss": (obs_b == "vegetation") & (obs_a != "vegetation"),
        "vegetation_gain": (obs_b != "vegetation") & (obs_a == "vegetation"),
        "burned": charred & ~wet,
        "snow_ice_change": (obs_b == "snow_ice") != (obs_a == "snow_ice"),
    }
    shares = {k: float((v & joint).sum() / joint.sum()) for k, v in tests.items()}
    shares["valid_fraction"] = float(joint.mean())
    names = {v: k for k, v in CHANGE_CODES.items()}
    mask = np.where(joint, names["no_change"], names["not_compared"])
    priority = [("vegetation_gain", tests["vegetation_gain"]), ("vegetation_loss", tests["vegetation_loss"]),
                ("snow_ice_loss", (obs_b == "snow_ice") & (obs_a != "snow_ice")),
                ("snow_ice_gain", (obs_b != "snow_ice") & (obs_a == "snow_ice")),
                ("water_loss", tests["water_loss"]), ("water_gain", tests["water_gain"]),
                ("burned", tests["burned"])]  # fmt: skip
    for name, hit in priority:
        mask[hit & joint] = names[name]
    return shares, mask


@pytest.fixture(scope="module")
def pair_ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One event pair fetched from a static catalog of the two scenes, ready for ``label``."""
    root = tmp_path_factory.mktemp("change")
    ds = root / "DS"
    plan = pair_plan(ds, [POINT], SIZE)
    rows = {r.phase: r for r in plan.itertuples()}
    grid = chip_grid(POINT[0], POINT[1], int(rows["before"].epsg), SIZE, RES)
    before, after, nodata = layouts()
    mid = {p: (r.start_datetime + (r.end_datetime - r.start_datetime) / 2).to_pydatetime() for p, r in rows.items()}
    files = root / "catalog" / "files"
    items = serve_scenes(files, str(files), grid, [Scene("before", before, mid["before"], nodata=nodata, seed=1),
                                                   Scene("after", after, mid["after"], seed=2)])  # fmt: skip
    catalog = static_catalog(root / "catalog", items)
    result = invoke("fetch", ds, "--stac", catalog, "--collection", "scenes", "--assets", REFL, "--resolution", "20",
                    "-q", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    return ds


def test_change_shares_and_mask_match_the_planted_changes(pair_ds: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    ds = tmp_path / "DS"
    shutil.copytree(pair_ds, ds)
    status, out, err = run(["label", ds, "--no-progress"], capsys)
    assert status == 0, err
    assert "change: 1 pair(s), 1 measured" in out
    table = pd.read_parquet(ds / "change.parquet")
    plan = pd.read_parquet(ds / "plan.parquet").set_index("phase")
    assert len(table) == 1
    row = table.iloc[0]
    assert row.site_id == plan.loc["before", "site_id"] and row.sample_id_before == plan.loc["before", "sample_id"]
    assert row.sample_id_after == plan.loc["after", "sample_id"]
    assert (row.kind, row.collection) == ("event", "scenes")
    before, after, nodata = layouts()
    shares, codes = truth(before, after, nodata)
    for name, value in shares.items():
        assert row[name] == pytest.approx(value, abs=1e-12), name
    assert row.burned > 0.1 and row.water_gain > 0.2 and row.vegetation_loss > row.burned + row.water_gain
    assert row["mask"] == f"change/{row.site_id}/{row.sample_id_before}__{row.sample_id_after}.tif"
    with rasterio.open(ds / row["mask"]) as src, rasterio.open(ds / "chips" / f"{row.sample_id_after}.tif") as chip:
        mask = src.read(1)
        assert (src.crs, src.transform, src.shape) == (chip.crs, chip.transform, chip.shape)
        assert src.nodata == 0 and src.dtypes[0] == "uint8"
        assert src.tags(1)["code_6"] == "burned" and src.colormap(1)[6][:3] == (64, 0, 0)
    assert (mask == codes).all()  # pixel by pixel
    # Quadrants: the flood is in the west, the burn scar in the north-east.
    quadrants = json.loads(row.quadrants)
    assert quadrants["nw"]["water_gain"] > 0.2 and quadrants["ne"]["water_gain"] == 0
    assert quadrants["ne"]["burned"] > 0.4 and quadrants["sw"]["burned"] == 0


def test_misaligned_pair_is_refused_and_nothing_written(pair_ds: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    ds = tmp_path / "DS"
    shutil.copytree(pair_ds, ds)
    chips = pd.read_parquet(ds / "chips.parquet")
    path = ds / chips["path"].iloc[0]
    with rasterio.open(path) as src:
        profile, data = src.profile, src.read()
    profile["transform"] = profile["transform"] * rasterio.Affine.translation(0.5, 0)  # half a pixel east
    profile.pop("driver")
    with rasterio.open(path, "w", driver="GTiff", **profile) as dst:
        dst.write(data)
    before = sorted(p.relative_to(ds) for p in ds.rglob("*"))
    status, _, err = run(["label", ds], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "are not on one pixel grid" in err and "--overwrite" in err and "Traceback" not in err
    assert sorted(p.relative_to(ds) for p in ds.rglob("*")) == before  # nothing written


def test_pairs_are_consecutive_within_a_chip_size() -> None:
    plan = pd.DataFrame({
        "sample_id": ["a0", "a1", "a2", "b0", "b1", "c1"], "site_id": ["a", "a", "a", "b", "b", "c"],
        "chip_size_m": [100.0, 100.0, 100.0, 100.0, 200.0, 100.0], "revisit_index": [0, 2, 1, 0, 1, 1],
    })  # fmt: skip
    got = [(p.before, p.after, p.kind) for p in change_pairs(plan)]
    assert got == [("a0", "a2", "revisit"), ("a2", "a1", "revisit")]
    events = plan.drop(columns="revisit_index").assign(phase=["before", "after", "x", "before", "after", "after"])
    assert [(p.before, p.after) for p in change_pairs(events)] == [("a0", "a1")]


def test_events_demo_measures_the_planted_burn_and_flood(events_demo_ds: Path) -> None:
    """The README's offline events demo: synthetic Sentinel-2-like imagery with a burn scar and a flood."""
    ds = events_demo_ds
    kinds = pd.read_parquet(ds / "plan.parquet").set_index("sample_id")["event_type"]
    table = pd.read_parquet(ds / "change.parquet")
    chips = pd.read_parquet(ds / "chips.parquet")
    assert len(table) == 4 and set(kinds) == {"wildfire", "flood"}
    # Every third scene has a cloud its eo:cloud_cover understates: those chips came from the clear item instead.
    assert (chips["cloud_fraction"] <= 0.05).all() and chips["item_id"].str.endswith("-clear").any()
    assert (table["valid_fraction"] == 1.0).all()
    disc = synthetic().disc(80)[8:72, 8:72]  # the planted scar on the chip's 64 x 64 pixels
    for row in table.itertuples():
        with rasterio.open(ds / row.mask) as src:
            mask = src.read(1)
        if kinds[row.sample_id_after] == "wildfire":
            # Burned inside the disc (except where the scene had water), never outside it.
            assert row.burned > 0.3 and not (mask[~disc] == 6).any() and row.water_gain == 0
        else:
            assert row.water_gain > 0.3 and not (mask[~disc] == 2).any() and row.burned == 0


LAND = ("water", "flood", "trees", "grass", "crops", "bare", "built", "burned", "lava", "snow", "cloud", "shadow")
AMBIGUOUS = {("bare", "burned"), ("lava", "burned")}
"""Changes whose dNBR (0.23-0.38 with the ±3 % texture) straddles the 0.27 threshold: what they are is not planted."""
BLOCK_PAIRS = st.tuples(st.sampled_from(LAND), st.sampled_from(LAND)).filter(lambda pair: pair not in AMBIGUOUS)


def _evidence(scene: np.ndarray, nodata: np.ndarray, seed: int):
    """What the change stage knows of one chip, observed on its synthetic reflectance (scene classification mask)."""
    from geosample.labels.change import ChipEvidence
    from geosample.stac.observe import observe

    syn = synthetic()
    refl = syn.reflectance(scene, seed)
    data = np.ma.MaskedArray(syn.digital_numbers(refl), mask=np.broadcast_to(nodata, (6, *scene.shape)))
    bands = ("blue", "green", "red", "nir", "swir16", "swir22")
    obs = observe(data, bands, gains=[1e-4] * 6, mask=syn.scene_classification(scene), mask_band="scl", with_map=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        nbr = (refl[3] - refl[5]) / (refl[3] + refl[5])
    return ChipEvidence("x", (None,), obs.classes, frozenset(obs.observed or ()), nbr, refl[2])


@settings(max_examples=40, deadline=None)
@given(blocks=st.lists(BLOCK_PAIRS, min_size=16, max_size=16), holes=st.integers(0, 16), seed=st.integers(0, 2**16))
def test_change_of_any_two_patchworks_follows_the_surfaces(blocks: list, holes: int, seed: int) -> None:
    """Any 4 x 4 patchwork of surfaces before and after: shares and mask follow the surfaces that were planted."""
    from geosample.labels.change import measure

    before, after = [b for b, _ in blocks], [a for _, a in blocks]

    def patchwork(names: list[str]) -> np.ndarray:
        return np.kron(np.array([code(n) for n in names], dtype=np.uint8).reshape(4, 4), np.ones((8, 8), np.uint8))

    a, b = patchwork(before), patchwork(after)
    nodata = np.zeros(a.shape, bool)
    nodata[:, 32 - holes :] = True
    row, mask = measure(_evidence(a, nodata, seed), _evidence(b, np.zeros(a.shape, bool), seed + 1))
    shares, codes = truth(a, b, nodata)
    assert row["valid_fraction"] == pytest.approx(shares.pop("valid_fraction"))
    for name, value in shares.items():
        assert row[name] == pytest.approx(value, abs=1e-12), name
    assert (mask == codes).all()
    quadrants = json.loads(row["quadrants"])
    assert all(v is None or 0 <= v <= 1 for q in quadrants.values() for v in q.values())
