"""GeoPackages that open styled in QGIS.

A GeoPackage can carry QGIS styles in a ``layer_styles`` table: the table QGIS
itself creates when a style is saved "in the database". A style row flagged
``useAsDefault`` is applied automatically when the layer is opened, so the
files written here open with a categorised renderer instead of QGIS' random
single colour.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pyogrio

__all__ = [
    "FIXED_TIMESTAMP",
    "categorized_qml",
    "categorized_sld",
    "qualitative_colors",
    "read_layer_styles",
    "write_styled_gpkg",
]

#: Timestamp written to ``update_time`` and ``gpkg_contents.last_change`` so the
#: same input always gives the same file.
FIXED_TIMESTAMP = "1970-01-01T00:00:00.000Z"

QGIS_VERSION = "3.34.0-Prizren"
QML_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"
LAYER_STYLES = "layer_styles"

LAYER_STYLES_DDL = (
    f'CREATE TABLE "{LAYER_STYLES}" ('
    '"id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, '
    '"f_table_catalog" TEXT(256), '
    '"f_table_schema" TEXT(256), '
    '"f_table_name" TEXT(256), '
    '"f_geometry_column" TEXT(256), '
    '"styleName" TEXT(30), '
    '"styleQML" TEXT, '
    '"styleSLD" TEXT, '
    '"useAsDefault" BOOLEAN, '
    '"description" TEXT, '
    '"owner" TEXT(30), '
    '"ui" TEXT(30), '
    '"update_time" DATETIME DEFAULT CURRENT_TIMESTAMP)'
)

_SLD_NAMESPACES = {
    "xmlns": "http://www.opengis.net/sld",
    "xmlns:ogc": "http://www.opengis.net/ogc",
    "xmlns:se": "http://www.opengis.net/se",
    "xmlns:xlink": "http://www.w3.org/1999/xlink",
    "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "xsi:schemaLocation": ("http://www.opengis.net/sld http://schemas.opengis.net/sld/1.1.0/StyledLayerDescriptor.xsd"),
}

# Fill opacity of polygon symbols and darkening factor of their outlines.
FILL_ALPHA = 0.6
OUTLINE_DARKEN = 0.65
OUTLINE_WIDTH_MM = 0.26
LINE_WIDTH_MM = 0.6
MM_TO_PIXELS = 90.0 / 25.4  # SLD sizes are in pixels of 0.28 mm (~90 dpi)


# --------------------------------------------------------------------------- colours


MAX_QUALITATIVE = 60
"""Categories up to this count get a distinct colour of the qualitative palette; more get a continuous ramp."""


def qualitative_colors(n: int) -> list[str]:
    """Returns ``n`` deterministic, pairwise distinct colours as ``#rrggbb``.

    Up to :data:`MAX_QUALITATIVE` (60) categories take matplotlib's tab20
    reordered so that the first ten colours are the saturated ones (tab10),
    followed by their light variants and by tab20b and tab20c. Beyond that a
    qualitative palette cannot keep categories apart, so the colours run along
    the ``turbo`` ramp (interpolated, so every category still gets its own
    colour; neighbours in sort order get neighbouring colours).

    Args:
        n: Number of colours.

    Returns:
        The colours, in palette (or ramp) order.
    """
    tab20 = list(_cmap_colors("tab20"))
    base = tab20[0::2] + tab20[1::2] + _cmap_colors("tab20b") + _cmap_colors("tab20c")
    if n <= MAX_QUALITATIVE:
        return base[:n]
    import matplotlib

    ramp = mcolors.LinearSegmentedColormap.from_list("turbo-smooth", matplotlib.colormaps["turbo"].colors, N=4096)
    colors: list[str] = []
    seen: set[str] = set()
    for t in np.linspace(0.0, 1.0, n):
        color = mcolors.to_hex(ramp(t))
        r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
        while color in seen:  # thousands of categories: nudge to the next free 24-bit colour
            b = (b + 1) % 256
            color = f"#{r:02x}{g:02x}{b:02x}"
        seen.add(color)
        colors.append(color)
    return colors


def _cmap_colors(name: str) -> list[str]:
    """Returns the listed colours of a matplotlib colormap as hex strings."""
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return [mcolors.to_hex(c) for c in cmap.colors]  # type: ignore[attr-defined]


def _rgba255(color: str, alpha: float | None = None) -> tuple[int, int, int, int]:
    """Converts a matplotlib colour spec to 0-255 RGBA integers."""
    r, g, b, a = mcolors.to_rgba(color, alpha)
    return tuple(int(round(v * 255)) for v in (r, g, b, a))  # type: ignore[return-value]


def _darker(color: str, factor: float = OUTLINE_DARKEN) -> str:
    """Returns ``color`` darkened by ``factor`` (0 black, 1 unchanged)."""
    r, g, b = mcolors.to_rgb(color)
    return mcolors.to_hex((r * factor, g * factor, b * factor))


def _qgis_color(color: str, alpha: float | None = None) -> str:
    """Formats a colour the way QGIS options store it (``r,g,b,a``)."""
    return ",".join(str(v) for v in _rgba255(color, alpha))


# --------------------------------------------------------------------------- categories


def _category_values(values: pd.Series) -> list[Any]:
    """Returns the distinct non-null values of ``values``, sorted."""
    unique = [v.item() if isinstance(v, np.generic) else v for v in values.dropna().unique()]
    try:
        return sorted(unique)
    except TypeError:
        return sorted(unique, key=str)


def _value_type(value: Any) -> str:
    """Returns the QGIS category value type (``long``, ``double`` or ``string``)."""
    if isinstance(value, bool):
        return "string"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    return "string"


def _category_colors(values: Sequence[Any], colors: Mapping[str, str] | None) -> list[str]:
    """Returns one hex colour per value: from ``colors`` if given, else the palette."""
    palette = qualitative_colors(len(values))
    colors = colors or {}
    out = []
    for value, fallback in zip(values, palette, strict=True):
        given = colors.get(value, colors.get(str(value)))  # type: ignore[call-overload]
        out.append(mcolors.to_hex(given) if given is not None else fallback)
    return out


def _symbol_type(gdf: Any) -> str:
    """Returns the QGIS symbol type (``marker``, ``line`` or ``fill``) for ``gdf``.

    Raises:
        ValueError: If the layer mixes points, lines and polygons.
    """
    families = {
        "Point": "marker",
        "MultiPoint": "marker",
        "LineString": "line",
        "MultiLineString": "line",
        "LinearRing": "line",
        "Polygon": "fill",
        "MultiPolygon": "fill",
    }
    kinds = {families.get(t) for t in gdf.geom_type.dropna().unique()}
    if None in kinds or len(kinds) > 1:
        raise ValueError(f"cannot style mixed or unsupported geometry types: {sorted(gdf.geom_type.dropna().unique())}")
    return kinds.pop() if kinds else "marker"


def default_point_size_mm(n_features: int) -> float:
    """Returns a marker size (mm) that keeps ``n_features`` points legible.

    Args:
        n_features: Number of points in the layer.

    Returns:
        The marker diameter in millimetres.
    """
    if n_features < 1_000:
        return 2.4
    if n_features < 10_000:
        return 1.6
    if n_features < 100_000:
        return 1.0
    return 0.6


# --------------------------------------------------------------------------- QML


def _options(parent: ET.Element, values: Mapping[str, str]) -> None:
    """Appends a QGIS ``<Option type="Map">`` with string options to ``parent``."""
    opt_map = ET.SubElement(parent, "Option", type="Map")
    for key, value in values.items():
        ET.SubElement(opt_map, "Option", name=key, type="QString", value=value)


def _symbol_layer_props(kind: str, color: str, size_mm: float) -> tuple[str, dict[str, str]]:
    """Returns the QGIS symbol layer class and its options for one category."""
    outline = _qgis_color(_darker(color))
    if kind == "marker":
        return "SimpleMarker", {
            "angle": "0",
            "color": _qgis_color(color),
            "joinstyle": "bevel",
            "name": "circle",
            "offset": "0,0",
            "offset_unit": "MM",
            "outline_color": outline,
            "outline_style": "solid",
            "outline_width": "0.1",
            "outline_width_unit": "MM",
            "scale_method": "diameter",
            "size": f"{size_mm:g}",
            "size_unit": "MM",
        }
    if kind == "line":
        return "SimpleLine", {
            "capstyle": "round",
            "joinstyle": "round",
            "line_color": _qgis_color(color),
            "line_style": "solid",
            "line_width": f"{LINE_WIDTH_MM:g}",
            "line_width_unit": "MM",
            "offset": "0",
            "offset_unit": "MM",
        }
    return "SimpleFill", {
        "border_width_unit": "MM",
        "color": _qgis_color(color, FILL_ALPHA),
        "joinstyle": "bevel",
        "offset": "0,0",
        "offset_unit": "MM",
        "outline_color": outline,
        "outline_style": "solid",
        "outline_width": f"{OUTLINE_WIDTH_MM:g}",
        "outline_width_unit": "MM",
        "style": "solid",
    }


def _qml_symbol(parent: ET.Element, name: str, kind: str, color: str, size_mm: float) -> None:
    """Appends one QGIS ``<symbol>`` element to ``parent``."""
    symbol = ET.SubElement(
        parent,
        "symbol",
        {
            "type": kind,
            "name": name,
            "alpha": "1",
            "clip_to_extent": "1",
            "force_rhr": "0",
            "is_animated": "0",
            "frame_rate": "10",
        },
    )
    cls, props = _symbol_layer_props(kind, color, size_mm)
    layer = ET.SubElement(symbol, "layer", {"class": cls, "enabled": "1", "locked": "0", "pass": "0"})
    _options(layer, props)


def categorized_qml(
    column: str,
    values: Sequence[Any],
    colors: Sequence[str],
    *,
    symbol_type: str,
    point_size_mm: float = 2.0,
) -> str:
    """Builds a QGIS QML style with a categorised renderer.

    Args:
        column: Attribute the categories are defined on.
        values: Category values, in legend order.
        colors: One colour per value.
        symbol_type: ``marker``, ``line`` or ``fill``.
        point_size_mm: Marker diameter in millimetres (marker symbols only).

    Returns:
        The QML document as a string.
    """
    root = ET.Element("qgis", {"version": QGIS_VERSION, "styleCategories": "Symbology|Labeling"})
    renderer = ET.SubElement(
        root,
        "renderer-v2",
        {
            "type": "categorizedSymbol",
            "attr": column,
            "symbollevels": "0",
            "enableorderby": "0",
            "forceraster": "0",
            "referencescale": "-1",
        },
    )
    categories = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for i, (value, color) in enumerate(zip(values, colors, strict=True)):
        ET.SubElement(
            categories,
            "category",
            {
                "value": str(value),
                "type": _value_type(value),
                "symbol": str(i),
                "label": str(value),
                "render": "true",
            },
        )
        _qml_symbol(symbols, str(i), symbol_type, color, point_size_mm)
    source = ET.SubElement(renderer, "source-symbol")
    _qml_symbol(source, "0", symbol_type, "#808080", point_size_mm)
    ET.SubElement(renderer, "rotation")
    ET.SubElement(renderer, "sizescale")
    ET.SubElement(root, "blendMode").text = "0"
    ET.SubElement(root, "featureBlendMode").text = "0"
    ET.SubElement(root, "layerOpacity").text = "1"
    ET.SubElement(root, "labelsEnabled").text = "0"
    ET.indent(root, space="  ")
    return f"{QML_DOCTYPE}\n{ET.tostring(root, encoding='unicode')}\n"


# --------------------------------------------------------------------------- SLD


def _svg_params(parent: ET.Element, tag: str, params: Mapping[str, str]) -> None:
    """Appends ``<tag>`` with ``<se:SvgParameter>`` children to ``parent``."""
    element = ET.SubElement(parent, tag)
    for name, value in params.items():
        ET.SubElement(element, "se:SvgParameter", name=name).text = value


def _sld_symbolizer(rule: ET.Element, kind: str, color: str, size_mm: float) -> None:
    """Appends the SLD symbolizer of one category to ``rule``."""
    hex_color = mcolors.to_hex(color)
    stroke = {"stroke": _darker(color), "stroke-width": "1"}
    if kind == "marker":
        graphic = ET.SubElement(ET.SubElement(rule, "se:PointSymbolizer"), "se:Graphic")
        mark = ET.SubElement(graphic, "se:Mark")
        ET.SubElement(mark, "se:WellKnownName").text = "circle"
        _svg_params(mark, "se:Fill", {"fill": hex_color})
        _svg_params(mark, "se:Stroke", {**stroke, "stroke-width": "0.5"})
        ET.SubElement(graphic, "se:Size").text = f"{size_mm * MM_TO_PIXELS:.0f}"
    elif kind == "line":
        line = ET.SubElement(rule, "se:LineSymbolizer")
        width = f"{LINE_WIDTH_MM * MM_TO_PIXELS:.0f}"
        _svg_params(line, "se:Stroke", {"stroke": hex_color, "stroke-width": width})
    else:
        polygon = ET.SubElement(rule, "se:PolygonSymbolizer")
        _svg_params(polygon, "se:Fill", {"fill": hex_color, "fill-opacity": f"{FILL_ALPHA:g}"})
        _svg_params(polygon, "se:Stroke", stroke)


def categorized_sld(
    layer: str,
    column: str,
    values: Sequence[Any],
    colors: Sequence[str],
    *,
    symbol_type: str,
    point_size_mm: float = 2.0,
) -> str:
    """Builds a minimal SLD 1.1 document matching :func:`categorized_qml`.

    Args:
        layer: Layer (and style) name.
        column: Attribute the categories are defined on.
        values: Category values, in legend order.
        colors: One colour per value.
        symbol_type: ``marker``, ``line`` or ``fill``.
        point_size_mm: Marker diameter in millimetres (marker symbols only).

    Returns:
        The SLD document as a string.
    """
    root = ET.Element("StyledLayerDescriptor", {"version": "1.1.0", **_SLD_NAMESPACES})
    named = ET.SubElement(root, "NamedLayer")
    ET.SubElement(named, "se:Name").text = layer
    style = ET.SubElement(named, "UserStyle")
    ET.SubElement(style, "se:Name").text = layer
    fts = ET.SubElement(style, "se:FeatureTypeStyle")
    for value, color in zip(values, colors, strict=True):
        rule = ET.SubElement(fts, "se:Rule")
        ET.SubElement(rule, "se:Name").text = str(value)
        desc = ET.SubElement(rule, "se:Description")
        ET.SubElement(desc, "se:Title").text = str(value)
        flt = ET.SubElement(rule, "ogc:Filter")
        equal = ET.SubElement(flt, "ogc:PropertyIsEqualTo")
        ET.SubElement(equal, "ogc:PropertyName").text = column
        ET.SubElement(equal, "ogc:Literal").text = str(value)
        _sld_symbolizer(rule, symbol_type, color, point_size_mm)
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


# --------------------------------------------------------------------------- GeoPackage


def _geometry_column(con: sqlite3.Connection, layer: str) -> str:
    """Returns the geometry column name of ``layer`` from ``gpkg_geometry_columns``."""
    row = con.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (layer,)).fetchone()
    if row is None:
        raise ValueError(f"layer {layer!r} has no geometry column")
    return str(row[0])


def _table_exists(con: sqlite3.Connection, table: str) -> bool:
    """Tells whether ``table`` exists in the SQLite database."""
    row = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return row is not None


def _ensure_layer_styles(con: sqlite3.Connection) -> None:
    """Creates ``layer_styles`` and registers it as an attributes table if missing."""
    if not _table_exists(con, LAYER_STYLES):
        con.execute(LAYER_STYLES_DDL)
    con.execute(
        "INSERT OR IGNORE INTO gpkg_contents "
        "(table_name, data_type, identifier, description, last_change) "
        "VALUES (?, 'attributes', ?, '', ?)",
        (LAYER_STYLES, LAYER_STYLES, FIXED_TIMESTAMP),
    )


def _sync_ogr_count(con: sqlite3.Connection, table: str) -> None:
    """Updates GDAL's ``gpkg_ogr_contents`` feature count of ``table`` if present."""
    if not _table_exists(con, "gpkg_ogr_contents"):
        return
    (count,) = con.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()
    con.execute("DELETE FROM gpkg_ogr_contents WHERE table_name = ?", (table,))
    con.execute(
        "INSERT INTO gpkg_ogr_contents (table_name, feature_count) VALUES (?, ?)",
        (table, count),
    )


def _insert_style(
    con: sqlite3.Connection,
    layer: str,
    geometry_column: str,
    style_name: str,
    qml: str,
    sld: str,
    description: str,
) -> None:
    """Replaces the styles of ``layer`` by one default style row."""
    _ensure_layer_styles(con)
    con.execute(f'DELETE FROM "{LAYER_STYLES}" WHERE f_table_name = ?', (layer,))
    con.execute(
        f'INSERT INTO "{LAYER_STYLES}" (f_table_catalog, f_table_schema, f_table_name, '
        "f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description, "
        "owner, ui, update_time) VALUES ('', '', ?, ?, ?, ?, ?, 1, ?, '', NULL, ?)",
        (layer, geometry_column, style_name, qml, sld, description, FIXED_TIMESTAMP),
    )
    _sync_ogr_count(con, LAYER_STYLES)
    con.execute(
        "UPDATE gpkg_contents SET last_change = ? WHERE table_name IN (?, ?)",
        (FIXED_TIMESTAMP, layer, LAYER_STYLES),
    )


def _style_documents(
    gdf: Any,
    layer: str,
    category_column: str,
    colors: Mapping[str, str] | None,
    point_size_mm: float | None,
) -> tuple[str, str]:
    """Builds the QML and SLD documents for ``gdf``."""
    if category_column not in gdf.columns:
        raise KeyError(f"category column {category_column!r} not in the GeoDataFrame")
    kind = _symbol_type(gdf)
    values = _category_values(gdf[category_column])
    palette = _category_colors(values, colors)
    size = point_size_mm if point_size_mm is not None else default_point_size_mm(len(gdf))
    qml = categorized_qml(category_column, values, palette, symbol_type=kind, point_size_mm=size)
    sld = categorized_sld(layer, category_column, values, palette, symbol_type=kind, point_size_mm=size)
    return qml, sld


def write_styled_gpkg(
    gdf: Any,
    path: str | os.PathLike[str],
    layer: str,
    *,
    category_column: str,
    colors: Mapping[str, str] | None = None,
    style_name: str | None = None,
    description: str = "",
    point_size_mm: float | None = None,
    append: bool = False,
) -> None:
    """Writes ``gdf`` to a GeoPackage layer with a default QGIS categorised style.

    The file is assembled under a temporary name next to ``path`` and moved into
    place at the end, so a failure leaves ``path`` untouched.

    Args:
        gdf: The features (a ``geopandas.GeoDataFrame``).
        path: Output ``.gpkg`` file.
        layer: Layer name.
        category_column: Column whose distinct values get one symbol each.
        colors: Optional colour (any matplotlib spec) per category value; values
            missing from it get palette colours.
        style_name: Style name shown in QGIS; defaults to ``layer``.
        description: Style description.
        point_size_mm: Marker diameter for point layers; by default it adapts to
            the number of features.
        append: Add the layer to an existing file (replacing a layer of the same
            name) instead of creating the file anew.

    Raises:
        KeyError: If ``category_column`` is not a column of ``gdf``.
        ValueError: If the geometry types cannot share one symbol type.
    """
    path = Path(path)
    qml, sld = _style_documents(gdf, layer, category_column, colors, point_size_mm)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        tmp_path = Path(tmp) / path.name
        if append and path.exists():
            shutil.copyfile(path, tmp_path)
        pyogrio.write_dataframe(gdf, tmp_path, layer=layer, driver="GPKG")
        with sqlite3.connect(tmp_path) as con:
            geometry_column = _geometry_column(con, layer)
            _insert_style(con, layer, geometry_column, style_name or layer, qml, sld, description)
        con.close()
        os.replace(tmp_path, path)


def read_layer_styles(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Reads the ``layer_styles`` table of a GeoPackage.

    Args:
        path: GeoPackage file.

    Returns:
        One row per stored style (empty, without columns, if there is no table).
    """
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as con:
        if not _table_exists(con, LAYER_STYLES):
            frame = pd.DataFrame()
        else:
            frame = pd.read_sql_query(f'SELECT * FROM "{LAYER_STYLES}" ORDER BY id', con)
    con.close()
    return frame
