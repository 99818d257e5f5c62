"""Build geosample's embedded reference layers from the project's source files.

Run once by a maintainer, from the project root::

    python data/layers/build_layers.py SOURCE_DIR [--only countries]

where SOURCE_DIR holds the original files listed in
``geosample/data/layers/PROVENANCE.md``. It writes the package data under
``geosample/data/layers/``: a GeoParquet of the Natural Earth countries, one
row per country and physical continent (the rules are in ``continents.py``),
the 0.1° grid of its whole cells' countries (``--only country-grid`` rebuilds
just that, from the package's countries file), and two tiled, compressed
COGs. geosample never reads SOURCE_DIR at run time.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.enums import Resampling

from geosample.layers import SIMPLIFIED_TOLERANCE_DEG
from geosample.layers._embedded import COUNTRY_GRID_DEG, COUNTRY_GRID_FILE
from geosample.layers._raster import RunLengthRaster
from geosample.layers._vector import MIXED, PolygonIndex, build_polygon_grid, polygon_parts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from continents import physical_continents  # noqa: E402  (a sibling script module)

OUT = Path(__file__).resolve().parents[2] / "geosample" / "data" / "layers"
RULE_LOG = Path(__file__).resolve().parent / "continent_changes.csv"

COUNTRY_COLUMNS = {
    "NAME": "name",
    "ADM0_A3": "adm0_a3",
    "ISO_A3_EH": "iso_a3_eh",
    "CONTINENT": "continent",
    "REGION_UN": "region_un",
    "SUBREGION": "subregion",
}


def build_countries(zip_path: Path) -> None:
    """Natural Earth admin-0 countries -> GeoParquet, one row per country and physical continent."""
    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(zip_path).extractall(tmp)
        shp = next(Path(tmp).glob("*.shp"))
        # The archive has no .cpg; its attributes are UTF-8 (read as Latin-1, "Curaçao" becomes "CuraÃ§ao").
        gdf = gpd.read_file(shp, columns=list(COUNTRY_COLUMNS), engine="pyogrio", encoding="utf-8")
    gdf = gdf.rename(columns=COUNTRY_COLUMNS)
    # ISO_A3_EH is "-99" for a few territories; ADM0_A3 always has a code (DESIGN.md).
    gdf["iso3"] = np.where(gdf["iso_a3_eh"] == "-99", gdf["adm0_a3"], gdf["iso_a3_eh"])
    invalid = int((~gdf.geometry.is_valid).sum())
    gdf["geometry"] = shapely.make_valid(gdf.geometry.values)
    gdf = gdf.set_crs("EPSG:4326", allow_override=True)
    gdf = gdf[["iso3", "name", "adm0_a3", "continent", "region_un", "subregion", "geometry"]]
    gdf, changes = physical_continents(gdf)
    gdf = gdf[["iso3", "name", "adm0_a3", "continent", "country_continent", "region_un", "subregion", "geometry"]]
    gdf.to_parquet(OUT / "countries.parquet", compression="zstd", schema_version="1.1.0")
    changes.to_csv(RULE_LOG, index=False)
    print(f"countries: {len(gdf)} rows, {invalid} geometries repaired with make_valid, "
          f"{len(changes)} parts on another continent than their country's (see {RULE_LOG.name})")  # fmt: skip
    # A light copy for maps and for rasterising coarse AOI covers, never for lookups.
    light = gdf[["iso3", "continent"]].copy()
    simplified = shapely.simplify(gdf.geometry.values, SIMPLIFIED_TOLERANCE_DEG, preserve_topology=True)
    light["geometry"] = shapely.make_valid(simplified)
    gpd.GeoDataFrame(light, geometry="geometry", crs="EPSG:4326").to_parquet(
        OUT / "countries_simplified.parquet", compression="zstd", schema_version="1.1.0"
    )


def build_country_grid() -> None:
    """The 0.1° grid of whole cells' countries that spares most point-in-polygon tests, checked cell by cell."""
    countries = gpd.read_parquet(OUT / "countries.parquet")
    cells = build_polygon_grid(countries.geometry.values, COUNTRY_GRID_DEG)
    check_polygon_grid(cells, countries.geometry.values, COUNTRY_GRID_DEG)
    digest = hashlib.sha256((OUT / "countries.parquet").read_bytes()).hexdigest()
    np.savez_compressed(OUT / COUNTRY_GRID_FILE, cells=cells, res_deg=np.float64(COUNTRY_GRID_DEG),
                        countries_sha256=np.str_(digest))  # fmt: skip
    mixed = float((cells == MIXED).mean())
    print(f"{COUNTRY_GRID_FILE}: {cells.shape[1]} x {cells.shape[0]} cells, {mixed:.1%} crossed by an outline")


def check_polygon_grid(cells: np.ndarray, geometries: np.ndarray, res_deg: float) -> None:
    """Every cell not marked mixed lies wholly in the polygon it names (the first that holds it), or touches none."""
    geoms = np.asarray(geometries, dtype=object)
    shapely.prepare(geoms)

    def boxes(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        west, north = -180.0 + cols * res_deg, 90.0 - rows * res_deg
        return shapely.box(west, north - res_deg, west + res_deg, north)

    rows, cols = np.nonzero(cells >= 0)
    label = cells[rows, cols]
    assert shapely.contains_properly(geoms[label], boxes(rows, cols)).all(), "a cell is not wholly in its polygon"
    centre_lon, centre_lat = -180.0 + (cols + 0.5) * res_deg, 90.0 - (rows + 0.5) * res_deg
    assert (PolygonIndex(geoms).lookup(centre_lon, centre_lat) == label).all(), "a cell names a later polygon"
    rows, cols = np.nonzero(cells == -1)
    land = shapely.MultiPolygon(list(polygon_parts(geoms)[0]))
    shapely.prepare(land)
    assert not shapely.intersects(land, boxes(rows, cols)).any(), "a sea cell touches a polygon"


def build_cog(src_path: Path, dst_name: str, crs: str, tags: dict[str, str], runs_name: str = "") -> None:
    """Re-write a stripped global uint8 raster as a tiled, compressed COG (and run-length codes)."""
    with rasterio.open(src_path) as src:
        data = src.read(1)
        profile = {
            "driver": "COG",
            "dtype": "uint8",
            "count": 1,
            "width": src.width,
            "height": src.height,
            "transform": src.transform,
            # MODIS CMG is on the Clarke 1866 sphere; at 0.05° the datum shift is far
            # below a pixel, so both layers are declared WGS 84 lon/lat.
            "crs": CRS.from_string(crs),
            "nodata": src.nodata,
            "compress": "ZSTD",
            "level": 19,
            "blocksize": 512,
            "overview_resampling": "mode",
        }
    with rasterio.open(OUT / dst_name, "w", **profile) as dst:
        dst.write(data, 1)
        dst.update_tags(**tags)
    if runs_name:
        n_runs = RunLengthRaster.write(data, profile["transform"], int(profile["nodata"]), OUT / runs_name)
        print(f"{runs_name}: {n_runs} runs")
    with rasterio.open(OUT / dst_name) as check:
        assert check.is_tiled and check.overviews(1), dst_name
        assert np.array_equal(check.read(1, out_shape=(64, 128), resampling=Resampling.nearest).shape, (64, 128))
    print(f"{dst_name}: {(OUT / dst_name).stat().st_size / 1e6:.1f} MB")


def main(source: Path, only: str | None = None) -> None:
    """Build every layer from SOURCE_DIR (or only the countries, or only the rasters)."""
    OUT.mkdir(parents=True, exist_ok=True)
    if only in (None, "countries"):
        build_countries(source / "ne_10m_admin_0_countries_deu.zip")
    if only in (None, "countries", "country-grid"):
        build_country_grid()
    if only == "country-grid":
        return
    if only == "countries":
        return
    build_cog(
        source / "koppen_geiger_main_classes_1km.tif",
        "koppen_geiger_main_1km.tif",
        "EPSG:4326",
        {"classes": "0 sea/nodata; 1 A; 2 B; 3 C; 4 D; 5 E", "source": "Beck et al. 2018"},
        runs_name="koppen_geiger_main_1km.runs.npz",
    )
    build_cog(
        source / "modis_mcd12c1_2019_igbp_0p05deg.tif",
        "modis_igbp_2019_0p05deg.tif",
        "EPSG:4326",
        {"classes": "IGBP 0-16, 255 nodata", "source": "MCD12C1 v006 2019"},
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", default="../shared/data/layers", type=Path)
    parser.add_argument("--only", choices=["countries", "country-grid", "rasters"], help="rebuild only these layers")
    arguments = parser.parse_args()
    main(arguments.source, arguments.only)
