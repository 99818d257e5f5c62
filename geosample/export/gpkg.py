"""``export --format gpkg``: one GeoPackage for QGIS, every layer styled through ``layer_styles``.

- ``samples``: chip footprints with split, strata, labels (codes and class
  names at every level) and the first caption, coloured by the dominant
  level-1 class in the taxonomy's colours (by stratum without labels);
- ``sites``: one point per site, coloured by split, to see that splits
  keep apart;
- ``chips``: the footprints of the fetched chips (their real grid), with
  their paths, coloured by source collection.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from rasterio.warp import transform_geom

from geosample._gpkg import write_styled_gpkg
from geosample.export._content import DatasetContent
from geosample.export._export import ExportConfig
from geosample.export._rasters import ChipGrid, chip_grid

__all__ = ["SPLIT_COLORS", "write_gpkg"]

SPLIT_COLORS = {"train": "#1f77b4", "validation": "#ff7f0e", "test": "#2ca02c"}


def write_gpkg(
    content: DatasetContent, records: pd.DataFrame, out: Path, cfg: ExportConfig, *, progress: bool | None = None
) -> None:
    """Write ``<dataset>.gpkg`` into the empty folder ``out``."""
    path = out / f"{content.name}.gpkg"
    samples, column, colors = samples_layer(content, records)
    write_styled_gpkg(samples, path, "samples", category_column=column, colors=colors,
                      description="Samples: chip footprints with labels and captions")  # fmt: skip
    sites = sites_layer(content, records)
    write_styled_gpkg(sites, path, "sites", category_column="split", colors=SPLIT_COLORS,
                      description="Sites, coloured by split", append=True)  # fmt: skip
    chips = chips_layer(content, records)
    if chips is not None:
        write_styled_gpkg(chips, path, "chips", category_column="collection",
                          description="Footprints of the fetched chips", append=True)  # fmt: skip


def samples_layer(content: DatasetContent, records: pd.DataFrame) -> tuple[gpd.GeoDataFrame, str, dict[str, str]]:
    """The ``samples`` layer, the column it is styled by, and the colour of each of its values."""
    rows = records.drop_duplicates("sample_id").reset_index(drop=True)
    keep = [c for c in content.plan.columns if c != "geometry" and c != "bbox"]
    layer = pd.DataFrame(rows[keep])
    layer.insert(2, "split", rows["split"].to_numpy())
    taxonomy = content.taxonomy
    column, colors = "stratum", {}
    for level in content.levels:
        layer[level] = [",".join(map(str, v)) if isinstance(v, list | np.ndarray) else None for v in rows[level]]
        layer[f"{level}_dominant"] = rows[f"{level}_dominant"].to_numpy()
        if taxonomy is not None:
            names = [
                taxonomy[c].name if isinstance(c, str) and c in taxonomy else None for c in rows[f"{level}_dominant"]
            ]
            layer[f"{level}_dominant_name"] = names
    if content.labels is not None and taxonomy is not None and content.levels:
        column = f"{content.levels[0]}_dominant_name"
        colors = {c.name: c.color for c in taxonomy.classes.values() if c.color and c.depth == 1}
        layer["valid_fraction"] = rows["valid_fraction"].to_numpy()
    if content.captions is not None:
        layer["n_captions"] = [len(c) for c in rows["captions"]]
        layer["caption"] = [c[0] if len(c) else None for c in rows["captions"]]
    if content.chips is not None:
        chips_per_sample = records.dropna(subset=["path"]).groupby("sample_id").size()
        layer["n_chips"] = rows["sample_id"].map(chips_per_sample).fillna(0).astype(np.int64).to_numpy()
    return gpd.GeoDataFrame(layer, geometry=rows["geometry"].to_numpy(), crs="EPSG:4326"), column, colors


def sites_layer(content: DatasetContent, records: pd.DataFrame) -> gpd.GeoDataFrame:
    """One point per site (its chip centre), with its strata, split and number of samples."""
    rows = records.drop_duplicates("sample_id")
    per_site = rows.groupby("site_id", sort=True)
    first = per_site.first().reset_index()
    columns = ["site_id", "split", "h3", "stratum", *content.dimensions, "lon", "lat"]
    layer = pd.DataFrame(first[columns])
    layer["n_samples"] = per_site.size().to_numpy()
    points = shapely.points(first["lon"].to_numpy(), first["lat"].to_numpy())
    return gpd.GeoDataFrame(layer, geometry=points, crs="EPSG:4326")


def chips_layer(content: DatasetContent, records: pd.DataFrame) -> gpd.GeoDataFrame | None:
    """The fetched chips' footprints from their own grids, with DS-relative and absolute paths; None without chips."""
    chips = records.dropna(subset=["path"]).reset_index(drop=True)
    if chips.empty:
        return None
    footprints = [_footprint(chip_grid(content.ds, row), row["geometry"]) for row in chips.to_dict("records")]
    columns = ["sample_id", "split", "collection", "item_id", "item_datetime", "cloud_cover", "width", "height",
               "resolution", "path", "preview"]  # fmt: skip
    layer = pd.DataFrame(chips[[c for c in columns if c in chips.columns]])
    layer["bands"] = [",".join(map(str, b)) if b is not None else None for b in chips["bands"]]
    layer["file"] = [str((content.ds / p).resolve()) for p in chips["path"]]
    for column in ("width", "height"):
        layer[column] = pd.to_numeric(layer[column]).astype("Int64")
    return gpd.GeoDataFrame(layer, geometry=footprints, crs="EPSG:4326")


def _footprint(grid: ChipGrid, fallback: shapely.Geometry) -> shapely.Geometry:
    """The chip's extent in lon/lat, its edges densified so the UTM square stays true in EPSG:4326.

    A chip whose CRS has no EPSG code keeps the plan's footprint.
    """
    if grid.epsg is None:
        return fallback
    box = shapely.box(*grid.bounds)
    side = max(grid.bounds[2] - grid.bounds[0], grid.bounds[3] - grid.bounds[1])
    dense = shapely.segmentize(box, side / 8)
    return shapely.geometry.shape(transform_geom(f"EPSG:{grid.epsg}", "EPSG:4326", shapely.geometry.mapping(dense)))
