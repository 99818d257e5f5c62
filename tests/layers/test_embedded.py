"""The embedded layers answer as their sources do."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from independent import countries_at, raster_values

from geosample import layers
from geosample.layers import _embedded
from geosample.layers._embedded import COUNTRY_GRID_DEG
from geosample.layers._vector import MIXED, PolygonGrid, PolygonIndex, build_polygon_grid

SPOT_CHECKS = [  # (lon, lat, climate, landcover) from the layers' provenance notes
    (10.0, 25.0, 2, 16),
    (100.0, 62.0, 4, 8),
    (-40.0, 75.0, 5, 15),
    (-30.0, 0.0, 0, 0),
]


@pytest.mark.parametrize(("lon", "lat", "climate", "landcover"), SPOT_CHECKS)
def test_spot_checks(lon: float, lat: float, climate: int, landcover: int) -> None:
    values, valid = layers.climate_sampler().sample(np.array([lon]), np.array([lat]))
    assert values[0] == climate and valid[0] == (climate != 0)
    values, _ = layers.landcover_sampler().sample(np.array([lon]), np.array([lat]))
    assert values[0] == landcover


def test_run_length_climate_matches_the_cog() -> None:
    rng = np.random.default_rng(7)
    lon, lat = rng.uniform(-180, 180, 4000), rng.uniform(-90, 90, 4000)
    values, valid = layers.climate_sampler().sample(lon, lat)
    expected = raster_values("koppen_geiger_main_1km.tif", lon, lat)
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(valid, expected != 0)


def test_landcover_matches_rasterio_sampling() -> None:
    rng = np.random.default_rng(8)
    lon, lat = rng.uniform(-180, 180, 3000), rng.uniform(-90, 90, 3000)
    values, _ = layers.landcover_sampler().sample(lon, lat)
    np.testing.assert_array_equal(values, raster_values("modis_igbp_2019_0p05deg.tif", lon, lat))


def test_country_lookup_matches_a_spatial_join() -> None:
    rng = np.random.default_rng(9)
    lon, lat = rng.uniform(-180, 180, 5000), rng.uniform(-60, 85, 5000)
    rows = layers.country_index().lookup(lon, lat)
    joined = countries_at(lon, lat)
    expected = joined["index_right"].fillna(-1).astype(int).to_numpy()
    np.testing.assert_array_equal(rows, expected)


def test_countries_have_codes_for_every_row() -> None:
    table = layers.countries()
    assert table["adm0_a3"].nunique() == 250  # Natural Earth's countries; one row per country and continent
    assert not table.duplicated(["adm0_a3", "continent"]).any()
    assert (table["iso3"].str.len() == 3).all()
    assert set(table["continent"]) >= {"Africa", "Asia", "Europe", "North America", "Oceania", "South America"}
    assert table.geometry.is_valid.all()
    assert set(table.loc[table["name"] == "France", "iso3"]) == {"FRA"}


def _points_near_outlines(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Outline vertices, the same nudged by 1e-9° and 1e-3°, points on the 0.1° grid lines, and the edges."""
    coords = shapely.get_coordinates(layers.countries().geometry.values)
    pick = coords[rng.choice(len(coords), n)]
    on_lines = np.column_stack([np.round(rng.uniform(-180, 180, n), 1), np.round(rng.uniform(-90, 90, n), 1)])
    edges = np.array([[-180, 0], [180, 0], [-180, -89.95], [0, -90], [0, 90], [179.99, 65], [-180, 65], [180, -85]])
    points = np.concatenate(
        [pick, pick + rng.normal(0, 1e-9, pick.shape), pick + rng.normal(0, 1e-3, pick.shape), on_lines, edges]
    )
    return np.clip(points[:, 0], -180, 180), np.clip(points[:, 1], -90, 90)


def test_country_grid_answers_as_the_polygons() -> None:
    index = layers.country_index()
    assert index.grid is not None
    polygons_only = PolygonIndex(layers.countries().geometry.values)
    rng = np.random.default_rng(10)
    lon, lat = rng.uniform(-180, 180, 100_000), np.degrees(np.arcsin(rng.uniform(-1, 1, 100_000)))
    near_lon, near_lat = _points_near_outlines(rng, 30_000)
    lon, lat = np.concatenate([lon, near_lon]), np.concatenate([lat, near_lat])
    np.testing.assert_array_equal(index.lookup(lon, lat), polygons_only.lookup(lon, lat))
    # Most points are answered by the grid, not by a polygon test.
    assert (index.grid.answers(lon[:100_000], lat[:100_000]) != MIXED).mean() > 0.9


def test_shipped_country_grid_is_the_shipped_countries_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    grid = layers.country_grid()
    assert grid is not None and grid.res_deg == COUNTRY_GRID_DEG
    rebuilt = build_polygon_grid(layers.countries().geometry.values, COUNTRY_GRID_DEG)
    np.testing.assert_array_equal(grid.cells, rebuilt)
    # A grid built from another countries file is not used.
    monkeypatch.setattr(_embedded, "_sha256", lambda path: "0" * 64)
    assert layers.country_grid() is None


def test_polygon_grid_answers_as_the_polygons_on_a_made_up_layer() -> None:
    # Overlapping polygons (the first wins), a hole, outlines along grid lines and through corners,
    # a polygon cut at the antimeridian, one smaller than a cell, and one over the pole.
    polygons = np.array(
        [
            shapely.Polygon([(0, 0), (3, 0), (3, 3), (0, 3)], holes=[[(1, 1), (2, 1), (2, 2), (1, 2)]]),
            shapely.box(2.0, 2.0, 5.0, 5.0),
            shapely.box(170.0, -10.0, 180.0, 10.0),
            shapely.box(-180.0, -10.0, -170.0, 10.0),
            shapely.box(40.01, 40.01, 40.02, 40.02),
            shapely.box(-180.0, 80.0, 180.0, 90.0),
            shapely.Polygon([(10.05, 10.05), (12.3, 10.0), (11.0, 13.37)]),
            shapely.box(20.0, 20.0, 30.0, 30.0),  # 7, over 8 (inside it)
            shapely.box(22.0, 22.0, 28.0, 28.0),
            shapely.box(50.0, 50.0, 52.0, 52.0),  # 9, inside 10
            shapely.box(45.0, 45.0, 60.0, 60.0),
        ],
        dtype=object,
    )
    grid = PolygonGrid(build_polygon_grid(polygons, 0.5), 0.5)
    with_grid, polygons_only = PolygonIndex(polygons, grid=grid), PolygonIndex(polygons)
    rng = np.random.default_rng(11)
    lon = np.concatenate([rng.uniform(-180, 180, 50_000), rng.uniform(-1, 14, 50_000), np.arange(-2, 14, 0.25)])
    lat = np.concatenate([rng.uniform(-90, 90, 50_000), rng.uniform(-1, 14, 50_000), np.arange(-2, 14, 0.25)])
    lon, lat = np.concatenate([lon, [180.0, -180.0, 0.0, 175.0]]), np.concatenate([lat, [0.0, 0.0, 90.0, 85.0]])
    np.testing.assert_array_equal(with_grid.lookup(lon, lat), polygons_only.lookup(lon, lat))
    assert with_grid.lookup(np.array([2.5]), np.array([2.5]))[0] == 0  # overlap: the first polygon
    assert grid.answers(np.array([25.0, 51.0]), np.array([25.0, 51.0])).tolist() == [7, 9]  # first, as a whole cell
    assert with_grid.lookup(np.array([1.5]), np.array([1.5]))[0] == -1  # in the hole
    assert grid.answers(np.array([175.0, -175.0, 100.0]), np.array([5.0, -5.0, -50.0])).tolist() == [2, 3, -1]
