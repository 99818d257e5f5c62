"""Independent computations that tests check geosample's answers against.

They use the layers' files through rasterio and geopandas directly, never
geosample's own lookups.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import rasterio

from geosample import layers


def raster_values(name: str, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Values of an embedded COG at points, through rasterio's own sampling."""
    with rasterio.open(layers.layer_path(name)) as src:
        return np.array([v[0] for v in src.sample(list(zip(lon, lat, strict=True)))])


def countries_at(lon: np.ndarray, lat: np.ndarray) -> gpd.GeoDataFrame:
    """The country row under each point, by a geopandas spatial join (NaN at sea)."""
    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    table = layers.countries()[["iso3", "continent", "geometry"]]
    joined = gpd.sjoin(points, table, predicate="within", how="left")
    return joined[~joined.index.duplicated(keep="first")].sort_index()


def utm_epsg_scalar(lon: float, lat: float) -> int:
    """The UTM/UPS EPSG code of one point, written out case by case (MGRS grid rules)."""
    if lat > 84:
        return 32661
    if lat < -84:
        return 32761
    zone = min(int((lon + 180) // 6) + 1, 60)
    if 56 <= lat < 64 and 3 <= lon < 12:
        zone = 32
    if 72 <= lat <= 84 and 0 <= lon < 42:
        zone = 31 if lon < 9 else 33 if lon < 21 else 35 if lon < 33 else 37
    return (32600 if lat >= 0 else 32700) + zone


CLIMATE_LETTERS = {1: "A", 2: "B", 3: "C", 4: "D", 5: "E"}
IGBP_NAMES = [
    "water", "evergreen_needleleaf_forest", "evergreen_broadleaf_forest", "deciduous_needleleaf_forest",
    "deciduous_broadleaf_forest", "mixed_forest", "closed_shrublands", "open_shrublands", "woody_savannas",
    "savannas", "grasslands", "permanent_wetlands", "croplands", "urban_and_built_up",
    "cropland_natural_vegetation_mosaic", "snow_and_ice", "barren",
]  # fmt: skip


def strata_at(lon: np.ndarray, lat: np.ndarray) -> dict[str, np.ndarray]:
    """Continent, country, climate letter and IGBP name at points, from the files themselves."""
    joined = countries_at(lon, lat)
    climate = raster_values("koppen_geiger_main_1km.tif", lon, lat)
    landcover = raster_values("modis_igbp_2019_0p05deg.tif", lon, lat)
    return {
        "continent": joined["continent"].to_numpy(dtype=object),
        "country": joined["iso3"].to_numpy(dtype=object),
        "climate": np.array([CLIMATE_LETTERS.get(int(v)) for v in climate], dtype=object),
        "landcover": np.array([IGBP_NAMES[v] if v < len(IGBP_NAMES) else None for v in landcover], dtype=object),
    }
