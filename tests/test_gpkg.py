from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely

from geosample._gpkg import FIXED_TIMESTAMP, qualitative_colors, read_layer_styles, write_styled_gpkg

TRICKY = 'a & <b> "c"'
SLD_NS = {"se": "http://www.opengis.net/se", "ogc": "http://www.opengis.net/ogc"}


@pytest.fixture
def points() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"cls": ["water", TRICKY, "forest", "water", "crop"], "n": [1, 2, 3, 4, 5]},
        geometry=gpd.points_from_xy([0.0, 1.0, 2.0, 3.0, 4.0], [10.0, 11.0, 12.0, 13.0, 14.0]),
        crs="EPSG:4326",
    )


@pytest.fixture
def polygons() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"zone": ["B", "A", "B"]},
        geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1), shapely.box(2, 0, 3, 1)],
        crs="EPSG:4326",
    )


def _qml_renderer(qml: str) -> ET.Element:
    assert qml.startswith("<!DOCTYPE qgis")
    root = ET.fromstring(qml)
    assert root.tag == "qgis"
    assert root.get("version", "").startswith("3.34")
    renderer = root.find("renderer-v2")
    assert renderer is not None
    return renderer


def _layer_names(path: Path) -> list[str]:
    return [str(name) for name, _ in pyogrio.list_layers(path)]


def test_point_layer_styles(tmp_path: Path, points: gpd.GeoDataFrame) -> None:
    path = tmp_path / "samples.gpkg"
    write_styled_gpkg(points, path, "samples", category_column="cls", description="plan samples")

    assert set(_layer_names(path)) == {"samples", "layer_styles"}
    styles = read_layer_styles(path)
    assert len(styles) == 1
    row = styles.iloc[0]
    assert row["f_table_name"] == "samples"
    assert row["f_geometry_column"] == pyogrio.read_info(path, layer="samples")["geometry_name"]
    assert row["f_table_catalog"] == "" and row["f_table_schema"] == ""
    assert bool(row["useAsDefault"])
    assert row["styleName"] == "samples"
    assert row["description"] == "plan samples"
    assert row["update_time"] == FIXED_TIMESTAMP

    renderer = _qml_renderer(row["styleQML"])
    assert renderer.get("type") == "categorizedSymbol"
    assert renderer.get("attr") == "cls"
    values = [c.get("value") for c in renderer.iter("category")]
    assert values == sorted({"water", TRICKY, "forest", "crop"})
    symbols = renderer.find("symbols")
    assert symbols is not None
    assert {s.get("type") for s in symbols.findall("symbol")} == {"marker"}
    assert len(symbols.findall("symbol")) == len(values)
    colors = [s.find("layer/Option/Option[@name='color']").get("value") for s in symbols.findall("symbol")]
    assert len(set(colors)) == len(values)

    sld = ET.fromstring(row["styleSLD"].encode())
    literals = [e.text for e in sld.iterfind(".//ogc:Literal", SLD_NS)]
    assert literals == values
    assert len(sld.findall(".//se:PointSymbolizer", SLD_NS)) == len(values)


def test_layer_styles_registered_as_attributes_table(tmp_path: Path, points: gpd.GeoDataFrame) -> None:
    path = tmp_path / "samples.gpkg"
    write_styled_gpkg(points, path, "samples", category_column="cls")
    info = pyogrio.read_info(path, layer="layer_styles")
    assert info["geometry_type"] is None
    assert info["fid_column"] == "id"
    assert info["features"] == 1
    table = pyogrio.read_dataframe(path, layer="layer_styles")
    assert table["useAsDefault"].tolist() == [True]
    # The data layer itself is intact.
    back = pyogrio.read_dataframe(path, layer="samples")
    assert back["cls"].tolist() == points["cls"].tolist()


def test_polygon_layer_style(tmp_path: Path, polygons: gpd.GeoDataFrame) -> None:
    path = tmp_path / "zones.gpkg"
    write_styled_gpkg(polygons, path, "zones", category_column="zone", colors={"A": "#ff0000"})
    row = read_layer_styles(path).iloc[0]
    renderer = _qml_renderer(row["styleQML"])
    symbols = renderer.find("symbols").findall("symbol")
    assert [s.get("type") for s in symbols] == ["fill", "fill"]
    options = {o.get("name"): o.get("value") for o in symbols[0].iter("Option") if o.get("name")}
    assert symbols[0].find("layer").get("class") == "SimpleFill"
    assert options["color"] == "255,0,0,153"  # given colour, ~60 % opaque
    outline = [int(v) for v in options["outline_color"].split(",")]
    assert outline[0] < 255 and outline[3] == 255  # darker, opaque outline
    b_options = {o.get("name"): o.get("value") for o in symbols[1].iter("Option") if o.get("name")}
    assert b_options["color"].split(",")[:3] != ["255", "0", "0"]
    sld = ET.fromstring(row["styleSLD"].encode())
    assert len(sld.findall(".//se:PolygonSymbolizer", SLD_NS)) == 2


def test_line_layer_style(tmp_path: Path) -> None:
    lines = gpd.GeoDataFrame(
        {"kind": ["road", "river"]},
        geometry=[shapely.LineString([(0, 0), (1, 1)]), shapely.LineString([(1, 0), (2, 1)])],
        crs="EPSG:4326",
    )
    path = tmp_path / "lines.gpkg"
    write_styled_gpkg(lines, path, "lines", category_column="kind")
    renderer = _qml_renderer(read_layer_styles(path).iloc[0]["styleQML"])
    assert {s.get("type") for s in renderer.find("symbols").findall("symbol")} == {"line"}


def test_numeric_categories(tmp_path: Path, points: gpd.GeoDataFrame) -> None:
    path = tmp_path / "n.gpkg"
    write_styled_gpkg(points, path, "samples", category_column="n")
    renderer = _qml_renderer(read_layer_styles(path).iloc[0]["styleQML"])
    cats = list(renderer.iter("category"))
    assert [c.get("value") for c in cats] == ["1", "2", "3", "4", "5"]
    assert {c.get("type") for c in cats} == {"long"}


def test_deterministic(tmp_path: Path, points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame) -> None:
    contents = []
    for name in ("a.gpkg", "b.gpkg"):
        path = tmp_path / name
        write_styled_gpkg(points, path, "samples", category_column="cls")
        write_styled_gpkg(polygons, path, "zones", category_column="zone", append=True)
        # SQLite's header counts write transactions, which GDAL does not keep
        # constant between runs; the logical content (every table and row) must match.
        with sqlite3.connect(path) as db:
            dump = list(db.iterdump())
        contents.append((read_layer_styles(path), dump))
    pd.testing.assert_frame_equal(contents[0][0], contents[1][0])
    assert contents[0][1] == contents[1][1]


def test_append_keeps_first_layer(tmp_path: Path, points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame) -> None:
    path = tmp_path / "both.gpkg"
    write_styled_gpkg(points, path, "samples", category_column="cls")
    write_styled_gpkg(polygons, path, "zones", category_column="zone", append=True)

    assert set(_layer_names(path)) == {"samples", "zones", "layer_styles"}
    assert len(pyogrio.read_dataframe(path, layer="samples")) == len(points)
    styles = read_layer_styles(path)
    assert styles["f_table_name"].tolist() == ["samples", "zones"]
    assert styles["useAsDefault"].astype(bool).all()
    assert pyogrio.read_info(path, layer="layer_styles")["features"] == 2

    # Re-writing a layer replaces its style row instead of adding one.
    write_styled_gpkg(polygons, path, "zones", category_column="zone", append=True, style_name="v2")
    styles = read_layer_styles(path)
    assert sorted(styles["f_table_name"]) == ["samples", "zones"]
    assert styles.set_index("f_table_name").loc["zones", "styleName"] == "v2"


def test_without_append_file_is_recreated(tmp_path: Path, points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame) -> None:
    path = tmp_path / "x.gpkg"
    write_styled_gpkg(points, path, "samples", category_column="cls")
    write_styled_gpkg(polygons, path, "zones", category_column="zone")
    assert set(_layer_names(path)) == {"zones", "layer_styles"}
    assert read_layer_styles(path)["f_table_name"].tolist() == ["zones"]


def test_failure_leaves_nothing(tmp_path: Path, points: gpd.GeoDataFrame) -> None:
    path = tmp_path / "bad.gpkg"
    with pytest.raises(KeyError):
        write_styled_gpkg(points, path, "samples", category_column="missing")
    assert list(tmp_path.iterdir()) == []


def test_failure_in_append_keeps_existing_file(
    tmp_path: Path, points: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame
) -> None:
    path = tmp_path / "keep.gpkg"
    write_styled_gpkg(points, path, "samples", category_column="cls")
    before = path.read_bytes()
    mixed = pd.concat([points[["geometry"]], polygons[["geometry"]]], ignore_index=True).assign(c="x")
    with pytest.raises(ValueError, match="mixed"):
        write_styled_gpkg(gpd.GeoDataFrame(mixed, crs=4326), path, "mixed", category_column="c", append=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.gpkg"]


def test_read_layer_styles_without_table(tmp_path: Path, points: gpd.GeoDataFrame) -> None:
    path = tmp_path / "plain.gpkg"
    pyogrio.write_dataframe(points, path, layer="samples")
    assert read_layer_styles(path).empty


def test_qualitative_colors_deterministic() -> None:
    colors = qualitative_colors(60)
    assert colors == qualitative_colors(60)
    assert len(set(colors)) == 60 and colors[0] == "#1f77b4"
    ramp = qualitative_colors(65)  # past the palette: the turbo ramp, never a repeat
    assert len(set(ramp)) == 65 and ramp[0] == "#30123b"


def test_failure_while_writing_leaves_nothing(
    tmp_path: Path, points: gpd.GeoDataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geosample._gpkg as gpkg

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(gpkg, "_insert_style", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_styled_gpkg(points, tmp_path / "half.gpkg", "samples", category_column="cls")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("n", [12, 60, 61, 343])
def test_every_category_gets_its_own_colour(tmp_path: Path, n: int) -> None:
    """343 strata (a world plan) get 343 colours in QGIS: the palette up to 60, then the ramp."""
    gdf = gpd.GeoDataFrame(
        {"stratum": [f"s{i:03d}" for i in range(n)]},
        geometry=[shapely.Point(i % 36 * 10 - 175, i // 36 - 80) for i in range(n)],
        crs="EPSG:4326",
    )
    path = tmp_path / "many.gpkg"
    write_styled_gpkg(gdf, path, "samples", category_column="stratum")
    renderer = _qml_renderer(read_layer_styles(path).iloc[0]["styleQML"])
    colors = [s.find("layer/Option/Option[@name='color']").get("value") for s in renderer.find("symbols")]
    assert len(colors) == n and len(set(colors)) == n
