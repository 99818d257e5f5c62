"""``continent`` is the physical continent where a point lies, not its country's (issue #19)."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely

from geosample import layers

# Written by hand from atlases (not from the layer): point on land, sovereign country, continent.
KNOWN = [
    ("Novosibirsk", 82.93, 55.03, "RUS", "Asia"),
    ("Yakutsk", 129.73, 62.03, "RUS", "Asia"),
    ("Norilsk", 88.20, 69.35, "RUS", "Asia"),
    ("Yekaterinburg (east of the Urals)", 60.60, 56.84, "RUS", "Asia"),
    ("Moscow", 37.62, 55.75, "RUS", "Europe"),
    ("Perm (west of the Urals)", 56.25, 58.00, "RUS", "Europe"),
    ("Kaliningrad", 20.50, 54.70, "RUS", "Europe"),
    ("Novaya Zemlya", 55.00, 73.00, "RUS", "Europe"),
    ("Makhachkala (north of the Caucasus)", 47.50, 42.98, "RUS", "Europe"),
    ("Oral (west of the Ural River)", 51.37, 51.23, "KAZ", "Europe"),
    ("Aktobe", 57.20, 50.28, "KAZ", "Asia"),
    ("Quba (north of the watershed)", 48.51, 41.36, "AZE", "Europe"),
    ("Baku", 49.87, 40.41, "AZE", "Asia"),
    ("Tbilisi", 44.80, 41.70, "GEO", "Asia"),
    ("Istanbul, Fatih (European shore)", 28.95, 41.02, "TUR", "Europe"),
    ("Istanbul, Kadikoy (Asian shore)", 29.06, 40.98, "TUR", "Asia"),
    ("Ankara", 32.85, 39.93, "TUR", "Asia"),
    ("Cairo", 31.24, 30.04, "EGY", "Africa"),
    ("Sinai, Saint Catherine", 33.95, 28.56, "EGY", "Asia"),
    ("Cayenne", -52.33, 4.92, "FRA", "South America"),
    ("Saint-Denis, Reunion", 55.45, -20.88, "FRA", "Africa"),
    ("Fort-de-France, Martinique", -61.07, 14.62, "FRA", "North America"),
    ("Paris", 2.35, 48.86, "FRA", "Europe"),
    ("Las Palmas, Canary Islands", -15.43, 28.12, "ESP", "Africa"),
    ("Ceuta", -5.32, 35.89, "ESP", "Africa"),
    ("Madrid", -3.70, 40.42, "ESP", "Europe"),
    ("Funchal, Madeira", -16.92, 32.65, "PRT", "Africa"),
    ("Ponta Delgada, Azores", -25.67, 37.75, "PRT", "Europe"),
    ("Honolulu", -157.86, 21.31, "USA", "Oceania"),
    ("Anchorage", -149.90, 61.20, "USA", "North America"),
    ("Attu, western Aleutians (across the antimeridian)", 173.20, 52.90, "USA", "North America"),
    ("Nuuk", -51.60, 64.20, "GRL", "North America"),
    ("Jayapura, New Guinea", 140.70, -2.60, "IDN", "Oceania"),
    ("Jakarta", 106.85, -6.20, "IDN", "Asia"),
    ("Port Louis, Mauritius", 57.50, -20.16, "MUS", "Africa"),
    ("Victoria, Seychelles", 55.45, -4.62, "SYC", "Africa"),
    ("Jamestown, Saint Helena", -5.71, -15.93, "SHN", "Seven seas (open ocean)"),
    ("Easter Island", -109.35, -27.12, "CHL", "Oceania"),
    ("Galapagos, Puerto Ayora", -90.31, -0.74, "ECU", "South America"),
]


@pytest.mark.parametrize(("place", "lon", "lat", "iso3", "continent"), KNOWN, ids=[k[0] for k in KNOWN])
def test_known_places(place: str, lon: float, lat: float, iso3: str, continent: str) -> None:
    row = layers.country_index().lookup(np.array([lon]), np.array([lat]))[0]
    assert row >= 0, f"{place} is not on land in the layer"
    table = layers.countries()
    assert (table["iso3"].iloc[row], table["continent"].iloc[row]) == (iso3, continent), place


def test_no_siberia_in_europe() -> None:
    """Random points across Russia: east of 70°E always Asia; west of 55°E and north of 52°N always Europe.

    (South of 52°N, Orenburg oblast reaches over the Ural River's left bank, which is Asia.)
    """
    table = layers.countries()
    rng = np.random.default_rng(19)
    lon, lat = rng.uniform(19, 180, 200_000), rng.uniform(41, 82, 200_000)
    rows = layers.country_index().lookup(lon, lat)
    russia = rows >= 0
    russia[russia] = table["iso3"].to_numpy()[rows[russia]] == "RUS"
    continent = table["continent"].to_numpy()[np.maximum(rows, 0)]
    east, west = russia & (lon > 70), russia & (lon < 55) & (lat > 52)
    assert east.sum() > 1000 and west.sum() > 200
    assert set(continent[east]) == {"Asia"}
    assert set(continent[west]) == {"Europe"}


def test_european_russia_has_its_textbook_area() -> None:
    """European Russia is about 3.95–3.99 million km² (the figure atlases give); ours within 3 %."""
    table = layers.countries()
    piece = table[(table["iso3"] == "RUS") & (table["continent"] == "Europe")].geometry.item()
    area = abs(pyproj.Geod(ellps="WGS84").geometry_area_perimeter(piece)[0]) / 1e6
    assert 3.85e6 < area < 4.1e6


def test_a_country_pieces_partition_it() -> None:
    """The pieces of a split country never overlap, and every row keeps its country's Natural Earth continent."""
    table = layers.countries()
    split = table[table.duplicated("adm0_a3", keep=False)]
    assert {"RUS", "FRA", "TUR", "EGY", "USA"} <= set(split["iso3"])
    for _, pieces in split.groupby("adm0_a3"):
        geoms = pieces.geometry.to_numpy()
        assert shapely.union_all(geoms).area == pytest.approx(sum(g.area for g in geoms), rel=1e-9)
        assert pieces["country_continent"].nunique() == 1
