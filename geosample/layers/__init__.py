"""Reference layers: the embedded global ones and user layers, sampled at points.

The embedded layers ship as package data (see ``geosample/data/layers/
PROVENANCE.md``): Natural Earth admin-0 countries, Köppen-Geiger main climate
classes (1 km) and MODIS MCD12C1 2019 IGBP land cover (0.05°).
"""

from geosample.layers._embedded import (
    CLIMATE_CLASSES,
    IGBP_CLASSES,
    SIMPLIFIED_TOLERANCE_DEG,
    climate_sampler,
    countries,
    country_grid,
    country_index,
    land_polygons,
    landcover_sampler,
    layer_path,
)
from geosample.layers._raster import RasterPointSampler
from geosample.layers._vector import PolygonIndex, read_vector

__all__ = [
    "CLIMATE_CLASSES",
    "IGBP_CLASSES",
    "SIMPLIFIED_TOLERANCE_DEG",
    "PolygonIndex",
    "RasterPointSampler",
    "climate_sampler",
    "countries",
    "country_grid",
    "country_index",
    "land_polygons",
    "landcover_sampler",
    "layer_path",
    "read_vector",
]
