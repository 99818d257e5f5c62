"""``export --format gpkg``: layers read with pyogrio/GeoPandas, QGIS styles checked in ``layer_styles``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import matplotlib.colors as mcolors
import pandas as pd
import pyogrio
import pytest
import shapely
import yaml
from export.builders import invoke

from geosample._gpkg import read_layer_styles
from geosample.export.gpkg import SPLIT_COLORS

TAXONOMY = Path(__file__).parents[2] / "taxonomy" / "geosample-lulc.yaml"


def _qml_categories(qml: str) -> tuple[str, dict[str, str]]:
    """The renderer's attribute and each category's fill colour (``#rrggbb``), read from the QML."""
    root = ET.fromstring(qml.split("\n", 1)[1])
    renderer = root.find("renderer-v2")
    symbols = {}
    for symbol in renderer.find("symbols"):
        options = {o.get("name"): o.get("value") for o in symbol.iter("Option") if o.get("name")}
        rgba = options.get("color") or options.get("line_color")
        symbols[symbol.get("name")] = mcolors.to_hex([int(v) / 255 for v in rgba.split(",")[:3]])
    colors = {c.get("value"): symbols[c.get("symbol")] for c in renderer.find("categories")}
    return renderer.get("attr"), colors


def _taxonomy_colors() -> dict[str, str]:
    """Level-1 class name -> colour, read from the taxonomy YAML with plain PyYAML."""
    raw = yaml.safe_load(TAXONOMY.read_text(encoding="utf-8"))
    return {str(c["name"]): mcolors.to_hex(c["color"]) for c in raw["classes"] if c.get("color")}


@pytest.fixture
def exported(full_ds: Path) -> tuple[Path, Path]:
    result = invoke("export", full_ds, "--format", "gpkg")
    assert result.exit_code == 0, result.output
    return full_ds, full_ds / "export" / "gpkg" / "DS.gpkg"


def test_layers_hold_the_dataset(exported: tuple[Path, Path]) -> None:
    ds, path = exported
    layers = dict(pyogrio.list_layers(path))
    assert layers["samples"] == "Polygon" and layers["sites"] == "Point" and layers["chips"] == "Polygon"
    plan = gpd.read_parquet(ds / "plan.parquet").set_index("sample_id")
    labels = pd.read_parquet(ds / "labels.parquet").set_index("sample_id")
    samples = gpd.read_file(path, layer="samples").set_index("sample_id")
    assert sorted(samples.index) == sorted(plan.index) and samples.crs.to_epsg() == 4326
    for sid, row in samples.iterrows():
        assert row["l1_dominant"] == labels.loc[sid, "l1_dominant"]
        assert row["l3"].split(",") == list(labels.loc[sid, "l3"])
        assert shapely.equals_exact(row.geometry, plan.loc[sid, "geometry"], 1e-9)
    sites = gpd.read_file(path, layer="sites")
    assert sorted(sites["site_id"]) == sorted(plan["site_id"].unique())
    assert set(sites["split"]) <= set(SPLIT_COLORS)
    centres = sites.set_index("site_id").geometry
    assert all(abs(centres[s].x - plan.loc[plan["site_id"] == s, "lon"].iloc[0]) < 1e-9 for s in centres.index)


def test_chip_footprints_are_the_chips_own(exported: tuple[Path, Path]) -> None:
    ds, path = exported
    chips = gpd.read_file(path, layer="chips")
    manifest = pd.read_parquet(ds / "chips.parquet")
    assert sorted(chips["sample_id"]) == sorted(manifest.loc[manifest["status"] == "ok", "sample_id"])
    plan = gpd.read_parquet(ds / "plan.parquet").set_index("sample_id")
    for row in chips.itertuples():
        sample = plan.loc[row.sample_id]
        assert row.geometry.contains(shapely.Point(sample["lon"], sample["lat"]))
        area = gpd.GeoSeries([row.geometry], crs=4326).to_crs(int(sample["epsg"])).area.iloc[0]
        assert area == pytest.approx(sample["chip_size_m"] ** 2, rel=0.01)
        assert Path(row.file).is_file() and (ds / row.path).resolve() == Path(row.file)


def test_every_layer_is_styled_with_the_right_colours(exported: tuple[Path, Path]) -> None:
    ds, path = exported
    styles = read_layer_styles(path).set_index("f_table_name")
    assert set(styles.index) == {"samples", "sites", "chips"} and (styles["useAsDefault"] == 1).all()
    attr, colors = _qml_categories(styles.loc["samples", "styleQML"])
    samples = gpd.read_file(path, layer="samples")
    assert attr == "l1_dominant_name"
    assert set(colors) == set(samples["l1_dominant_name"].dropna())
    expected = _taxonomy_colors()
    assert colors == {name: expected[name] for name in colors}
    attr, colors = _qml_categories(styles.loc["sites", "styleQML"])
    assert attr == "split" and colors == {k: v for k, v in SPLIT_COLORS.items() if k in colors}
    attr, colors = _qml_categories(styles.loc["chips", "styleQML"])
    assert attr == "collection" and set(colors) == {"sentinel-2-l2a"}


def test_plan_only_geopackage(planned_ds: Path) -> None:
    assert invoke("export", planned_ds, "-f", "gpkg").exit_code == 0
    path = planned_ds / "export" / "gpkg" / "DS.gpkg"
    assert sorted(name for name, _ in pyogrio.list_layers(path)) == ["layer_styles", "samples", "sites"]
    attr, colors = _qml_categories(read_layer_styles(path).set_index("f_table_name").loc["samples", "styleQML"])
    assert attr == "stratum" and set(colors) == set(gpd.read_parquet(planned_ds / "plan.parquet")["stratum"])


def test_chip_grids_come_from_fetch_items_without_opening_the_chip(full_ds: Path) -> None:
    import json

    import rasterio

    from geosample.export._rasters import chip_grid

    row = pd.read_parquet(full_ds / "chips.parquet").dropna(subset=["path"]).iloc[0].to_dict()
    with rasterio.open(full_ds / row["path"]) as src:
        from_raster = (src.crs.to_epsg(), tuple(src.bounds), (src.height, src.width), tuple(src.transform)[:6])
        props = {"proj:code": f"EPSG:{src.crs.to_epsg()}", "proj:bbox": list(src.bounds),
                 "proj:shape": [src.height, src.width], "proj:transform": list(src.transform)[:6]}  # fmt: skip
    assert tuple(vars(chip_grid(full_ds, row)).values()) == from_raster
    item = full_ds / "stac" / row["collection"] / f"{row['sample_id']}.json"
    item.parent.mkdir(parents=True, exist_ok=True)
    item.write_text(json.dumps({"type": "Feature", "properties": props}))
    (full_ds / row["path"]).unlink()  # the item alone must do
    assert tuple(vars(chip_grid(full_ds, row)).values()) == from_raster
