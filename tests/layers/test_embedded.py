"""The embedded layers answer as their sources do."""

from __future__ import annotations

import numpy as np
import pytest
from independent import countries_at, raster_values

from geosample import layers

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
