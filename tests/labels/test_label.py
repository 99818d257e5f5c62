"""``geosample label`` through the CLI on real plans, checked against independent computations."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import rasterio
import shapely
import yaml
from click.testing import CliRunner
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject

from geosample.cli import cli
from geosample.labels.grids import chip_label_grids

TAXONOMY_FILE = Path(__file__).parents[2] / "taxonomy" / "geosample-lulc.yaml"
WORLDCOVER = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100], dtype=np.uint8)


def _run(*args: str):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
    return result


def _raw_taxonomy() -> dict:
    """The taxonomy file read with plain PyYAML: the independent side of the checks."""
    return yaml.safe_load(TAXONOMY_FILE.read_text(encoding="utf-8"))


def _tree(raw: dict) -> dict[str, str | None]:
    parents: dict[str, str | None] = {}

    def walk(nodes, parent):
        for node in nodes:
            parents[str(node["code"])] = parent
            walk(node.get("children", []), str(node["code"]))

    walk(raw["classes"], None)
    return parents


def _at_level(code: str, depth: int, parents: dict) -> str:
    chain = [code]
    while parents[chain[-1]] is not None:
        chain.append(parents[chain[-1]])
    chain.reverse()
    return chain[depth - 1] if len(chain) >= depth else code


@pytest.fixture(scope="module")
def embedded_labels(tmp_path_factory, _small_plan):
    import shutil

    ds = tmp_path_factory.mktemp("embedded") / "DS"
    shutil.copytree(_small_plan, ds)
    result = _run("label", ds, "--no-progress")
    assert result.exit_code == 0, result.output
    return ds, result.output


def test_embedded_labels_every_sample_at_three_levels(embedded_labels) -> None:
    ds, output = embedded_labels
    plan = gpd.read_parquet(ds / "plan.parquet")
    labels = pd.read_parquet(ds / "labels.parquet")
    assert list(labels["sample_id"]) == list(plan["sample_id"])
    assert {
        "l1",
        "l2",
        "l3",
        "l1_dominant",
        "l2_dominant",
        "l3_dominant",
        "fractions",
        "quadrant_fractions",
        "label_source",
        "taxonomy",
    } <= set(labels.columns)
    assert (labels["label_source"] == "modis-igbp@embedded").all()
    assert labels["taxonomy"].iloc[0].startswith("geosample-lulc@")
    for level in ("l1", "l2", "l3"):
        assert labels[level].map(len).gt(0).all(), f"a sample has no {level} label"
        assert all(d in labels_ for d, labels_ in zip(labels[f"{level}_dominant"], labels[level], strict=True))
    for text in labels["fractions"]:
        assert sum(json.loads(text).values()) == pytest.approx(1.0, abs=1e-5)
    for text in labels["quadrant_fractions"]:
        regions = json.loads(text)
        assert set(regions) == {"nw", "ne", "sw", "se", "centre"}
    assert "l1 (" in output and "Forest" in output and "labels.parquet" in output


def test_embedded_labels_agree_with_the_class_at_the_chip_centre(embedded_labels) -> None:
    """The plan's `landcover` is MODIS at the centre; mapped through the crosswalk it is among the chip's labels."""
    ds, _ = embedded_labels
    raw = _raw_taxonomy()
    parents = _tree(raw)
    igbp = {v: k for k, v in __import__("geosample.layers", fromlist=["IGBP_CLASSES"]).IGBP_CLASSES.items()}
    plan = gpd.read_parquet(ds / "plan.parquet").set_index("sample_id")
    labels = pd.read_parquet(ds / "labels.parquet").set_index("sample_id")
    hits = 0
    for sample_id, row in labels.iterrows():
        code = str(raw["mappings"]["modis-igbp"][igbp[plan.loc[sample_id, "landcover"]]])
        hits += _at_level(code, 1, parents) in row["l1"]
    assert hits >= 0.9 * len(labels)


def test_stac_label_items_validate_and_open_in_pystac(embedded_labels) -> None:
    import pystac
    from schemas import validate

    ds, _ = embedded_labels
    collection_path = ds / "stac" / "labels" / "collection.json"
    collection = json.loads(collection_path.read_text())
    validate(collection, "stac-label-extension.json")
    items = sorted((ds / "stac" / "labels" / "items").glob("*.json"))
    assert len(items) == len(pd.read_parquet(ds / "labels.parquet"))
    for path in items[:10]:
        validate(json.loads(path.read_text()), "stac-label-extension.json")
    opened = pystac.Collection.from_file(str(collection_path))
    first = next(iter(opened.get_items()))
    assert first.properties["label:type"] == "vector"
    assert [c["name"] for c in first.properties["label:classes"]] == ["l1", "l2", "l3"]
    asset = json.loads(Path(first.assets["labels"].get_absolute_href()).read_text())
    assert asset["features"][0]["properties"]["l1"]
    counts = {c["name"]: c["count"] for c in collection["label:overviews"][0]["counts"]}
    labels = pd.read_parquet(ds / "labels.parquet")
    assert sum(counts.values()) == labels["l1"].map(len).sum()


def test_trainingdml_document_validates(embedded_labels) -> None:
    from schemas import validate

    ds, _ = embedded_labels
    doc = json.loads((ds / "trainingdml.json").read_text())
    validate(doc, "trainingdml-ai-1.0/ai_eoTrainingDataset.json")
    for entry in doc["data"][:5]:
        validate(entry, "trainingdml-ai-1.1/ai_eoTrainingData.json")
    labels = pd.read_parquet(ds / "labels.parquet")
    assert doc["amountOfTrainingData"] == len(doc["data"]) == len(labels)
    assert doc["classificationScheme"].startswith("https://")
    # Each entry (written one at a time) against the plan and the labels, read independently.
    plan = gpd.read_parquet(ds / "plan.parquet").set_index("sample_id")
    by_id = labels.set_index("sample_id")
    for entry in doc["data"]:
        row = plan.loc[entry["id"]]
        west, south, east, north = row.geometry.bounds
        box = entry["extent"]["geographicElement"][0]
        assert (box["westBoundLongitude"], box["southBoundLatitude"]) == pytest.approx((west, south))
        assert (box["eastBoundLongitude"], box["northBoundLatitude"]) == pytest.approx((east, north))
        assert entry["dataTime"][0][:10] == row["start_datetime"].strftime("%Y-%m-%d")
        codes = {label["class"] for label in entry["labels"]}
        assert codes == {c for level in ("l1", "l2", "l3") for c in by_id.loc[entry["id"], level]}
    assert {task["id"] for task in doc["tasks"]} == {
        "scene-classification-l1",
        "scene-classification-l2",
        "scene-classification-l3",
    }


def test_rerun_is_a_no_op_and_other_settings_need_overwrite(embedded_labels, tmp_path) -> None:
    import shutil

    ds = tmp_path / "DS"
    shutil.copytree(embedded_labels[0], ds)
    before = pd.read_parquet(ds / "labels.parquet")
    assert _run("label", ds, "-q").exit_code == 0
    pd.testing.assert_frame_equal(before, pd.read_parquet(ds / "labels.parquet"))
    result = _run("label", ds, "--min-fraction", "0.3", "-q")
    assert result.exit_code != 0 and "--overwrite" in str(result.exception)
    assert _run("label", ds, "--min-fraction", "0.3", "--overwrite", "-q").exit_code == 0
    after = pd.read_parquet(ds / "labels.parquet")
    assert after["l3"].map(len).sum() <= before["l3"].map(len).sum()


# ------------------------------------------------------------------------- a 10 m raster source


@pytest.fixture(scope="module")
def worldcover_ds(tmp_path_factory):
    """A small real plan near Ljubljana and a 10 m WorldCover-valued raster (UTM 33N) under it."""
    from geosample import PlanConfig, plan

    root = tmp_path_factory.mktemp("wc")
    ds = root / "DS"
    plan(
        ds,
        config=PlanConfig.from_mapping(
            {"samples": 6, "aoi": "bbox:14.3,45.9,14.7,46.2", "seed": 3, "strata": "continent", "res": 10}
        ),
        progress=False,
    )
    samples = gpd.read_parquet(ds / "plan.parquet")
    left, bottom, right, top = samples.to_crs(32633).total_bounds
    x0, y0 = np.floor(left / 10) * 10 - 500, np.ceil(top / 10) * 10 + 500
    width, height = int((right - x0) / 10) + 100, int((y0 - bottom) / 10) + 100
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, len(WORLDCOVER), size=(height // 40 + 1, width // 40 + 1))
    values = WORLDCOVER[np.repeat(np.repeat(coarse, 40, axis=0), 40, axis=1)[:height, :width]]
    values[:50, :] = 0  # a strip of no data
    raster = root / "worldcover.tif"
    with rasterio.open(
        raster,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(x0, y0, 10, 10),
        nodata=0,
        tiled=True,
        compress="deflate",
    ) as dst:
        dst.write(values, 1)
    return ds, raster


def _independent_fractions(raster: Path, row, mapping: dict) -> dict[str, float]:
    """Warp the raster onto the chip grid with rasterio alone, count, map with the YAML crosswalk."""
    grid = chip_label_grids(pd.DataFrame([row]), 10.0)[0]
    out = np.zeros((grid.size, grid.size), dtype=np.uint8)
    with rasterio.open(raster) as src:
        reproject(
            rasterio.band(src, 1),
            out,
            dst_transform=grid.transform,
            dst_crs=f"EPSG:{grid.epsg}",
            resampling=Resampling.nearest,
            dst_nodata=0,
        )
    counts: dict[str, int] = {}
    for value, n in zip(*np.unique(out[out > 0], return_counts=True), strict=True):
        code = str(mapping[int(value)])
        counts[code] = counts.get(code, 0) + int(n)
    total = sum(counts.values())
    return {code: n / total for code, n in counts.items()}


def test_raster_source_fractions_match_an_independent_warp(worldcover_ds, tmp_path) -> None:
    import shutil

    src_ds, raster = worldcover_ds
    ds = tmp_path / "DS"
    shutil.copytree(src_ds, ds)
    result = _run("label", ds, "--source", raster, "--scheme", "esa-worldcover", "--no-progress")
    assert result.exit_code == 0, result.output
    mapping = _raw_taxonomy()["mappings"]["esa-worldcover"]
    labels = pd.read_parquet(ds / "labels.parquet").set_index("sample_id")
    plan = gpd.read_parquet(ds / "plan.parquet")
    assert (labels["label_source"] == "worldcover.tif@file").all()
    for _, row in plan.iterrows():
        expected = _independent_fractions(raster, row[["lon", "lat", "epsg", "chip_size_m"]], mapping)
        got = json.loads(labels.loc[row["sample_id"], "fractions"])
        assert got.keys() == expected.keys()
        for code in expected:
            assert got[code] == pytest.approx(expected[code], abs=1e-6)


def test_wrong_scheme_names_unmapped_values_and_writes_nothing(worldcover_ds, tmp_path) -> None:
    import shutil

    src_ds, raster = worldcover_ds
    ds = tmp_path / "DS"
    shutil.copytree(src_ds, ds)
    result = _run("label", ds, "--source", raster, "--scheme", "modis-igbp")
    assert result.exit_code != 0
    message = str(result.exception)
    assert "do" in message and "not map" in message and "%" in message and "--scheme" in message
    assert not (ds / "labels.parquet").exists() and not (ds / "stac").exists()


def _half_forest_vector(plan: gpd.GeoDataFrame, path: Path) -> Path:
    """West half of every chip forest, east half farmland (OSM landuse tags), in each chip's own UTM coordinates."""
    shapes, tags = [], []
    for _, row in plan.iterrows():
        x, y = pyproj.Transformer.from_crs(4326, row["epsg"], always_xy=True).transform(row["lon"], row["lat"])
        back = pyproj.Transformer.from_crs(row["epsg"], 4326, always_xy=True)
        half = row["chip_size_m"] / 2
        for (x0, x1), tag in (((x - half - 50, x), "forest"), ((x, x + half + 50), "farmland")):
            ring = np.array([[x0, y - half - 50], [x1, y - half - 50], [x1, y + half + 50], [x0, y + half + 50]])
            lon, lat = back.transform(ring[:, 0], ring[:, 1])
            shapes.append(shapely.Polygon(np.column_stack([lon, lat])))
            tags.append(tag)
    gpd.GeoDataFrame({"landuse": tags}, geometry=shapes, crs=4326).to_file(path)
    return path


def test_vector_source_with_osm_tags(worldcover_ds, tmp_path) -> None:
    import shutil

    src_ds, _ = worldcover_ds
    ds = tmp_path / "DS"
    shutil.copytree(src_ds, ds)
    _half_forest_vector(gpd.read_parquet(ds / "plan.parquet"), tmp_path / "osm.gpkg")
    result = _run("label", ds, "--source", f"{tmp_path / 'osm.gpkg'}:landuse", "--scheme", "osm", "--no-progress")
    assert result.exit_code == 0, result.output
    mapping = _raw_taxonomy()["mappings"]["osm"]
    forest, farmland = str(mapping["landuse=forest"]), str(mapping["landuse=farmland"])
    labels = pd.read_parquet(ds / "labels.parquet")
    for text, quads in zip(labels["fractions"], labels["quadrant_fractions"], strict=True):
        fractions = json.loads(text)
        assert fractions[forest] == pytest.approx(0.5, abs=0.02)
        assert fractions[farmland] == pytest.approx(0.5, abs=0.02)
        regions = json.loads(quads)
        assert regions["nw"][forest] > 0.95 and regions["ne"][farmland] > 0.95


# ------------------------------------------------------------------------------------ bad input


def _assert_clean_failure(ds: Path, result, *words: str) -> None:
    assert result.exit_code != 0
    message = str(result.exception)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    assert not (ds / "labels.parquet").exists()
    assert not (ds / "stac").exists()
    assert "label" not in yaml.safe_load((ds / "geosample.yaml").read_text())


def test_raster_without_crs(planned_ds, tmp_path) -> None:
    path = tmp_path / "nocrs.tif"
    with rasterio.open(path, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8") as dst:
        dst.write(np.full((10, 10), 10, dtype=np.uint8), 1)
    result = _run("label", planned_ds, "--source", path, "--scheme", "esa-worldcover")
    _assert_clean_failure(planned_ds, result, "no CRS")


def test_raster_outside_every_chip(planned_ds, tmp_path) -> None:
    path = tmp_path / "far.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=10,
        height=10,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=from_origin(-120, 10, 0.01, 0.01),
    ) as dst:
        dst.write(np.full((10, 10), 10, dtype=np.uint8), 1)
    result = _run("label", planned_ds, "--source", path, "--scheme", "esa-worldcover")
    _assert_clean_failure(planned_ds, result, "no data under any", "covers")


def test_vector_without_the_column(planned_ds, tmp_path) -> None:
    gpd.GeoDataFrame({"kind": ["forest"]}, geometry=[shapely.box(5, 40, 25, 55)], crs=4326).to_file(tmp_path / "v.gpkg")
    result = _run("label", planned_ds, "--source", f"{tmp_path / 'v.gpkg'}:landuse", "--scheme", "osm")
    _assert_clean_failure(planned_ds, result, "no column 'landuse'", "kind")


def test_unknown_scheme_lists_the_schemes(planned_ds, tmp_path) -> None:
    result = _run("label", planned_ds, "--source", "embedded", "--scheme", "glc2000")
    _assert_clean_failure(planned_ds, result, "esa-worldcover", "modis-igbp")


def test_broken_taxonomy_names_file_and_line(planned_ds, tmp_path) -> None:
    text = TAXONOMY_FILE.read_text(encoding="utf-8").replace('code: "1.1.2"', 'code: "1.1.1"', 1)
    broken = tmp_path / "broken.yaml"
    broken.write_text(text, encoding="utf-8")
    result = _run("label", planned_ds, "--taxonomy", broken)
    _assert_clean_failure(planned_ds, result, "broken.yaml", "1.1.1")


def test_dataset_without_plan(tmp_path) -> None:
    result = _run("label", tmp_path / "nothing")
    assert result.exit_code != 0 and "geosample plan" in str(result.exception)
    assert not (tmp_path / "nothing").exists()


def test_extension_taxonomy_labels_with_base_classes(planned_ds) -> None:
    result = _run("label", planned_ds, "--taxonomy", "geosample-events", "-q")
    assert result.exit_code == 0, result.output
    labels = pd.read_parquet(planned_ds / "labels.parquet")
    assert labels["taxonomy"].iloc[0].startswith("geosample-events@")
    assert labels["l1"].map(len).gt(0).all()


# ------------------------------------------------------------------------------ a stac: source


def _worldcover_catalog(root: Path, tiles: list[tuple[Path, str]]) -> Path:
    """A static STAC catalog of WorldCover-like items (asset `map`), one per (COG, year)."""
    import datetime as dt

    import pystac
    from pystac.extensions.projection import ProjectionExtension

    catalog = pystac.Catalog("wc", "WorldCover-like land cover")
    collection = pystac.Collection(
        "esa-worldcover",
        "test land cover",
        pystac.Extent(
            pystac.SpatialExtent([[-180, -90, 180, 90]]),
            pystac.TemporalExtent([[dt.datetime(2020, 1, 1, tzinfo=dt.UTC), None]]),
        ),
    )
    catalog.add_child(collection)
    for path, year in tiles:
        with rasterio.open(path) as src:
            bounds = rasterio.warp.transform_bounds(src.crs, 4326, *src.bounds)
            epsg = src.crs.to_epsg()
        item = pystac.Item(
            f"wc-{year}-{path.stem}",
            shapely.geometry.mapping(shapely.box(*bounds)),
            list(bounds),
            None,
            {},
            start_datetime=dt.datetime(int(year), 1, 1, tzinfo=dt.UTC),  # one year's map, like ESA WorldCover
            end_datetime=dt.datetime(int(year), 12, 31, 23, 59, 59, tzinfo=dt.UTC),
        )
        ProjectionExtension.ext(item, add_if_missing=True).epsg = epsg
        item.add_asset("map", pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"]))
        item.add_asset(
            "thumbnail", pystac.Asset(str(path.with_suffix(".png")), media_type="image/png", roles=["thumbnail"])
        )
        collection.add_item(item)
    catalog.normalize_hrefs(str(root / "catalog"))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog" / "catalog.json"


def test_stac_source_matches_the_local_raster(worldcover_ds, tmp_path) -> None:
    import shutil

    import rasterio.warp  # noqa: F401

    src_ds, raster = worldcover_ds
    catalog = _worldcover_catalog(tmp_path, [(raster, "2021")])
    local, remote = tmp_path / "local", tmp_path / "remote"
    shutil.copytree(src_ds, local)
    shutil.copytree(src_ds, remote)
    assert _run("label", local, "--source", raster, "--scheme", "esa-worldcover", "-q").exit_code == 0
    args = ["--source", "stac:esa-worldcover", "--stac", catalog, "--scheme", "esa-worldcover", "-q"]
    result = _run("label", remote, *args, "--allow-local-assets")  # the COG lies outside the catalogue's folder
    assert result.exit_code == 0, result.output
    a = pd.read_parquet(local / "labels.parquet")
    b = pd.read_parquet(remote / "labels.parquet")
    assert (b["label_source"] == "esa-worldcover@stac").all()
    for fa, fb in zip(a["fractions"], b["fractions"], strict=True):
        ja, jb = json.loads(fa), json.loads(fb)
        assert ja.keys() == jb.keys()
        assert all(abs(ja[k] - jb[k]) < 1e-6 for k in ja)


def test_stac_source_labels_each_phase_from_its_own_year(tmp_path) -> None:
    """Before/after rows of an event read the land cover item of their own year."""
    from geosample import PlanConfig, plan

    events = tmp_path / "events.csv"
    events.write_text("event_id,type,date,lon,lat\nfire,wildfire,2021-01-15,14.5,46.05\n")
    ds = tmp_path / "DS"
    plan(
        ds,
        config=PlanConfig.from_mapping(
            {"events": str(events), "samples": 2, "before_days": 200, "after_days": 200, "start": "2020-01-01"}
        ),
        progress=False,
    )
    samples = gpd.read_parquet(ds / "plan.parquet")
    left, bottom, right, top = samples.to_crs(32633).total_bounds
    tiles = []
    for year, value in (("2020", 10), ("2021", 60)):  # tree cover before, bare ground after
        path = tmp_path / f"wc{year}.tif"
        x0, y0 = np.floor(left / 10) * 10 - 500, np.ceil(top / 10) * 10 + 500
        w, h = int((right - x0) / 10) + 100, int((y0 - bottom) / 10) + 100
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=w,
            height=h,
            count=1,
            dtype="uint8",
            crs="EPSG:32633",
            transform=from_origin(x0, y0, 10, 10),
            nodata=0,
        ) as dst:
            dst.write(np.full((h, w), value, dtype=np.uint8), 1)
        tiles.append((path, year))
    catalog = _worldcover_catalog(tmp_path, tiles)
    result = _run(
        "label",
        ds,
        "--source",
        "stac:esa-worldcover",
        "--stac",
        catalog,
        "--scheme",
        "esa-worldcover",
        "--asset",
        "map",
        "-q",
        "--allow-local-assets",  # the COGs lie outside the catalogue's folder
    )
    assert result.exit_code == 0, result.output
    labels = pd.read_parquet(ds / "labels.parquet").merge(samples[["sample_id", "phase"]], on="sample_id")
    mapping = _raw_taxonomy()["mappings"]["esa-worldcover"]
    for row in labels.itertuples():
        expected = str(mapping[10 if row.phase == "before" else 60])
        assert json.loads(row.fractions) == {expected: 1.0}


def test_stac_source_with_two_raster_assets_asks_which(worldcover_ds, tmp_path) -> None:
    import shutil

    src_ds, raster = worldcover_ds
    catalog = _worldcover_catalog(tmp_path, [(raster, "2021")])
    text = catalog.parent.joinpath("esa-worldcover").glob("*/*.json")
    for path in text:  # make the thumbnail look like a second raster asset
        item = json.loads(path.read_text())
        item["assets"]["thumbnail"]["type"] = "image/tiff; application=geotiff"
        path.write_text(json.dumps(item))
    ds = tmp_path / "DS"
    shutil.copytree(src_ds, ds)
    result = _run("label", ds, "--source", "stac:esa-worldcover", "--stac", catalog, "--scheme", "esa-worldcover")
    _assert_clean_failure(ds, result, "--asset", "map", "thumbnail")


# ------------------------------------------------------------------------------ on a Dask cluster


@pytest.fixture
def two_chip_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two chips per label task: the six samples make three tasks for the cluster's two worker processes."""
    from geosample.labels import label as label_module

    monkeypatch.setattr(label_module, "_TASK_CHIPS", 2)


@pytest.mark.parametrize("kind", ["raster", "vector", "stac"])
def test_labels_on_a_dask_cluster_equal_local_labels(kind, worldcover_ds, dask_cluster, two_chip_tasks, tmp_path):
    import shutil

    src_ds, raster = worldcover_ds
    if kind == "raster":
        args = ["--source", raster, "--scheme", "esa-worldcover"]
    elif kind == "vector":
        vector = _half_forest_vector(gpd.read_parquet(src_ds / "plan.parquet"), tmp_path / "osm.gpkg")
        args = ["--source", f"{vector}:landuse", "--scheme", "osm"]
    else:
        catalog = _worldcover_catalog(tmp_path, [(raster, "2021")])
        args = ["--source", "stac:esa-worldcover", "--stac", catalog, "--scheme", "esa-worldcover"]
        args.append("--allow-local-assets")  # the COG lies outside the catalogue's folder
    local, remote = tmp_path / "local", tmp_path / "remote"
    shutil.copytree(src_ds, local)
    shutil.copytree(src_ds, remote)
    assert _run("label", local, *args, "-q").exit_code == 0
    result, tasks = dask_cluster.tasks_per_worker(
        lambda: _run("label", remote, *args, "-q", "--dask-scheduler", dask_cluster.address)
    )
    assert result.exit_code == 0, result.output
    assert len(tasks) == 2 and sum(tasks.values()) == 3  # the three tasks ran in both worker processes
    pd.testing.assert_frame_equal(pd.read_parquet(local / "labels.parquet"), pd.read_parquet(remote / "labels.parquet"))
    recorded = yaml.safe_load((remote / "geosample.yaml").read_text())["label"]
    assert recorded["dask_scheduler"] == dask_cluster.address
    # Where the labels were computed is not what they are: a local re-run is not refused as other settings.
    assert _run("label", remote, *args, "-q").exit_code == 0


def test_dask_scheduler_from_a_config_file(worldcover_ds, dask_cluster, tmp_path) -> None:
    import shutil

    src_ds, raster = worldcover_ds
    ds = tmp_path / "DS"
    shutil.copytree(src_ds, ds)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"label": {"source": str(raster), "scheme": "esa-worldcover",
                                                "dask_scheduler": dask_cluster.address}}))  # fmt: skip
    result = _run("label", ds, "--config", config, "-q")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((ds / "geosample.yaml").read_text())["label"]["dask_scheduler"] == dask_cluster.address


def test_bad_dask_scheduler_is_refused(planned_ds) -> None:
    result = _run("label", planned_ds, "--dask-scheduler", "nowhere")
    _assert_clean_failure(planned_ds, result, "--dask-scheduler", "tcp://")


def test_task_parts_carry_only_what_their_chips_need(worldcover_ds, tmp_path) -> None:
    """What travels to a Dask worker per task: no slot names, no other chips' polygons or hrefs."""
    import pickle

    from geosample.labels.sources import RasterSource, VectorSource

    src_ds, raster = worldcover_ds
    plan = gpd.read_parquet(src_ds / "plan.parquet")
    grids = chip_label_grids(plan, 10.0)
    wide = tmp_path / "uint16.tif"
    with rasterio.open(raster) as src, rasterio.open(wide, "w", **{**src.profile, "dtype": "uint16"}) as dst:
        dst.write(src.read(1).astype(np.uint16), 1)
    source = RasterSource(wide, name="wide", scheme="esa-worldcover")
    assert len(source.slots.values) == 65_537
    assert len(pickle.dumps((source.part(grids[:2]), grids[:2]))) < 4_000  # not the 65,537 slot names
    vector = VectorSource(_half_forest_vector(plan, tmp_path / "osm.gpkg"), "landuse", scheme="osm", resolution_m=10.0)
    part = vector.part(grids[:1])
    assert len(part.geometries) == 2 < len(vector.geometries)  # the two halves under that chip, not all twelve
    reader = part.reader()
    np.testing.assert_array_equal(reader.counts(grids[0]), vector.reader().counts(grids[0]))
    restored = pickle.loads(pickle.dumps(part))
    np.testing.assert_array_equal(restored.reader().counts(grids[0]), vector.reader().counts(grids[0]))
