"""Physical continents for the embedded countries layer (used by ``build_layers.py``).

Natural Earth's ``CONTINENT`` is a property of a whole country: all of Russia
is Europe, French Guiana is Europe, Hawaii is North America. geosample wants
the continent where a point lies, so every polygon part of every country is
given one, by these rules, in order (the same text is in
``geosample/data/layers/PROVENANCE.md``):

1. **Divides.** Five countries are cut along the conventional Europe–Asia
   boundary (``EUROPE_SIDE`` below: the Ural watershed, the Ural River, the
   Caspian Sea, the Greater Caucasus watershed, the Black Sea, the Bosporus,
   the Sea of Marmara and the Dardanelles): Russia, Kazakhstan, Georgia and
   Azerbaijan by polygon intersection, Turkey part by part (Thrace is a part of
   its own). Egypt is cut along the Suez Canal and the Gulf of Suez
   (``SINAI``): Sinai is Asia. The coordinates are hand-written from the named
   features, good to a few kilometres on the ridges and about 10–20 km along
   the Ural River: an approximation, documented as such.
2. **Land exclaves.** A part other than its country's largest whose land
   borders are all with countries of one other continent takes that
   continent (Ceuta and Melilla: Africa; Indonesia's New Guinea: Oceania).
3. **Home and overseas.** A country's parts are grouped by single linkage:
   parts closer than ``LINK_KM`` to each other are one group. The group with
   the largest part is the country's home; it keeps the country's continent
   (after rules 1–2). Every other group is overseas.
4. **Where an overseas group lies.** It takes the continent of the nearest
   *continental land*, the home parts of at least ``MIN_LAND_KM2`` of every
   country with a continent (its own included), when that land is within
   ``OPEN_OCEAN_KM``; French Guiana: South America, Réunion and the Canary
   Islands: Africa, Madeira: Africa (Morocco is nearer than Portugal), the
   Azores: Europe.
5. **Open ocean.** An overseas group with no continental land within
   ``OPEN_OCEAN_KM``, and the home of a country with none (other than its
   own), is Oceania in the Pacific (``PACIFIC``) and ``Seven seas (open
   ocean)`` elsewhere: Hawaii, Easter Island and the U.S. Minor Outlying
   Islands: Oceania; Saint Helena, the Chagos, Kerguelen: open ocean. Natural
   Earth's own "Seven seas" countries (Mauritius, Seychelles, Maldives, ...)
   go through rules 4–5 as overseas groups: Mauritius and the Seychelles:
   Africa, the Maldives: Asia.

Distances are great-circle distances between the outlines' vertices
(outlines simplified by 0.01° and densified to at most 0.25° per edge), so
within about 15 km of the true distance between the coasts.
"""

from __future__ import annotations

import dataclasses

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from scipy.spatial import cKDTree

EARTH_RADIUS_KM = 6371.0088
LINK_KM = 800.0
"""Parts of a country closer than this to each other belong to one group (home or overseas)."""
OPEN_OCEAN_KM = 1500.0
"""Land farther than this from every continent's land is open ocean."""
MIN_LAND_KM2 = 100.0
"""The smallest home part that counts as a continent's land (islets and reefs do not)."""
SEVEN_SEAS = "Seven seas (open ocean)"

# (lon, lat): the European side of the Europe–Asia boundary, north to south along the boundary,
# then closed round through the west. Only Russia, Kazakhstan, Georgia, Azerbaijan and Turkey are
# tested against it, so the closing edges through western Europe need no care.
EUROPE_SIDE = [
    (10.0, 83.0), (75.0, 83.0),
    # Kara Sea: east of Franz Josef Land and Novaya Zemlya, west of Vize Island, Severnaya Zemlya and Yamal
    (75.0, 80.0), (71.0, 76.5), (67.0, 73.5), (65.5, 71.0), (65.5, 70.2), (66.5, 69.5), (67.9, 68.75),
    # Ural watershed, from Konstantinov Kamen south
    (66.2, 68.48), (66.0, 67.6), (65.5, 66.9), (64.53, 66.07), (63.0, 65.75), (61.5, 65.35), (60.12, 65.03),
    (59.4, 64.2), (59.1, 63.3), (59.3, 62.3), (59.43, 61.5), (59.4, 60.5), (59.13, 59.63), (59.3, 59.0),
    (59.5, 58.3), (59.8, 57.5), (60.05, 56.85), (60.05, 56.3), (59.9, 55.6), (59.75, 55.1), (59.45, 54.65),
    # Ural River from its source to the Caspian
    (59.22, 53.88), (58.98, 53.42), (59.1, 53.0), (59.2, 52.5), (58.9, 51.8), (58.6, 51.2), (57.6, 51.3),
    (56.8, 51.55), (56.0, 51.7), (55.1, 51.75), (54.2, 51.6), (53.4, 51.5), (52.8, 51.45), (52.0, 51.35),
    (51.37, 51.2), (51.3, 50.8), (51.15, 50.2), (51.4, 49.2), (51.78, 48.55), (51.85, 47.6), (51.92, 47.11),
    (51.85, 46.8),
    # Caspian Sea, west of the Tyuleniy Islands and Mangyshlak
    (50.0, 45.8), (49.3, 45.0), (49.3, 43.0), (50.2, 41.6), (49.55, 40.82),
    # Greater Caucasus watershed, east to west (Tusheti, Khevsureti and Kazbegi lie north of it)
    (49.3, 40.85), (48.95, 40.88), (48.42, 40.99), (47.86, 41.22), (47.0, 41.65), (46.45, 41.9), (46.0, 42.1),
    (45.6, 42.25), (45.2, 42.45), (44.7, 42.5), (44.45, 42.51), (44.0, 42.62), (43.78, 42.72), (43.2, 42.95),
    (42.8, 43.15), (42.45, 43.25), (41.85, 43.25), (41.2, 43.45), (40.5, 43.6), (39.93, 43.96), (39.3, 44.2),
    (38.6, 44.45), (38.0, 44.65), (37.5, 44.85), (37.3, 44.88),
    # Black Sea, Bosporus, Sea of Marmara, Dardanelles (Gökçeada north, Bozcaada south)
    (37.0, 44.6), (36.5, 43.8), (33.0, 42.5), (29.5, 41.6), (29.13, 41.22), (29.05, 41.1), (29.0, 41.0),
    (28.5, 40.85), (27.6, 40.8), (26.6, 40.35), (26.1, 40.0), (25.5, 39.95), (10.0, 39.95),
]  # fmt: skip
# (lon, lat): Sinai, east of the Suez Canal and the Gulf of Suez.
SINAI = [
    (32.30, 31.6), (32.30, 31.27), (32.32, 30.85), (32.28, 30.6), (32.35, 30.4), (32.45, 30.25), (32.56, 29.93),
    (32.65, 29.6), (33.0, 29.0), (33.5, 28.3), (34.0, 27.75), (34.3, 27.4), (35.0, 27.0), (36.5, 27.0), (36.5, 31.6),
]  # fmt: skip
EUROPE_ASIA_CUT = ("RUS", "KAZ", "GEO", "AZE")
EUROPE_ASIA_BY_PART = ("TUR",)
AFRICA_ASIA_CUT = ("EGY",)


def in_pacific(lon: float, lat: float) -> bool:
    """The Pacific Ocean for rule 5: east of 130°E or west of 70°W, between 60°S and the Bering Strait."""
    return (lon >= 130.0 or lon <= -70.0) and -60.0 <= lat <= 66.0


@dataclasses.dataclass
class Part:
    """One polygon part of one country row."""

    row: int
    geometry: shapely.Polygon
    continent: str
    fixed: bool = False
    """Set by a divide (rule 1); later rules leave it."""
    rule: str = "country"


def physical_continents(countries: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """One row per country and continent (a country on two continents has two rows), and the rule log.

    Args:
        countries: Natural Earth rows with ``iso3``, ``name`` and ``continent``.

    Returns:
        The rows, with ``continent`` the physical continent and ``country_continent``
        Natural Earth's, in the input's order (a split country's pieces together);
        and a table of every part whose continent differs from its country's,
        with the rule that decided it.
    """
    parts = _divide(countries)
    _exclaves(countries, parts)
    _overseas(countries, parts)
    rows = []
    for row in range(len(countries)):
        mine = [p for p in parts if p.row == row]
        for continent in dict.fromkeys(p.continent for p in mine):
            pieces = [p.geometry for p in mine if p.continent == continent]
            geometry = pieces[0] if len(pieces) == 1 else shapely.MultiPolygon(pieces)
            record = countries.iloc[row].drop(labels="geometry").to_dict()
            record["country_continent"] = record["continent"]
            record["continent"] = continent
            rows.append({**record, "geometry": geometry})
    out = gpd.GeoDataFrame(rows, geometry="geometry", crs=countries.crs)
    changed = [
        {
            "iso3": countries["iso3"].iloc[p.row],
            "name": countries["name"].iloc[p.row],
            "lon": round(p.geometry.representative_point().x, 2),
            "lat": round(p.geometry.representative_point().y, 2),
            "area_km2": round(_area_km2(p.geometry), 1),
            "country_continent": countries["continent"].iloc[p.row],
            "continent": p.continent,
            "rule": p.rule,
        }
        for p in parts
        if p.continent != countries["continent"].iloc[p.row]
    ]
    return out, pd.DataFrame(changed)


def _divide(countries: gpd.GeoDataFrame) -> list[Part]:
    """Every polygon part, with the divides of rule 1 applied."""
    europe = shapely.Polygon(EUROPE_SIDE)
    sinai = shapely.Polygon(SINAI)
    parts: list[Part] = []
    for row, (iso3, continent, geometry) in enumerate(
        zip(countries["iso3"], countries["continent"], countries.geometry, strict=True)
    ):
        for polygon in shapely.get_parts(geometry):
            if iso3 in EUROPE_ASIA_CUT or iso3 in AFRICA_ASIA_CUT:
                cut, inside, outside = (
                    (europe, "Europe", "Asia") if iso3 in EUROPE_ASIA_CUT else (sinai, "Asia", "Africa")
                )
                for piece, name in ((polygon.intersection(cut), inside), (polygon.difference(cut), outside)):
                    for p in shapely.get_parts(piece):
                        if shapely.get_type_id(p) == 3 and p.area > 0:
                            parts.append(Part(row, p, name, fixed=True, rule="divide"))
            elif iso3 in EUROPE_ASIA_BY_PART:
                side = "Europe" if europe.contains(polygon.representative_point()) else "Asia"
                parts.append(Part(row, polygon, side, fixed=True, rule="divide"))
            else:
                parts.append(Part(row, polygon, continent))
    return parts


def _exclaves(countries: gpd.GeoDataFrame, parts: list[Part]) -> None:
    """Rule 2: a non-largest part bordering only countries of one other continent takes theirs."""
    geoms = np.array([p.geometry for p in parts], dtype=object)
    tree = shapely.STRtree(geoms)
    largest = {}
    for i, p in enumerate(parts):
        if p.row not in largest or p.geometry.area > parts[largest[p.row]].geometry.area:
            largest[p.row] = i
    for i, p in enumerate(parts):
        if p.fixed or largest[p.row] == i:
            continue
        touching = [j for j in tree.query(p.geometry.buffer(1e-6)) if parts[j].row != p.row]
        touching = [j for j in touching if shapely.intersects(parts[j].geometry, p.geometry.buffer(1e-6))]
        neighbours = {parts[j].continent for j in touching}
        if len(neighbours) == 1 and p.continent not in neighbours:
            p.continent, p.rule = neighbours.pop(), "exclave"


def _overseas(countries: gpd.GeoDataFrame, parts: list[Part]) -> None:
    """Rules 3–5: home groups keep the country's continent; overseas groups take the nearest land's."""
    vertices = [_unit_vertices(p.geometry) for p in parts]
    areas = np.array([_area_km2(p.geometry) for p in parts])
    by_row: dict[int, list[int]] = {}
    for i, p in enumerate(parts):
        by_row.setdefault(p.row, []).append(i)
    groups: list[tuple[int, list[int], bool]] = []  # (row, parts, is_home)
    for row, members in by_row.items():
        for k, group in enumerate(_single_linkage(members, vertices, areas, LINK_KM)):
            seven = countries["continent"].iloc[row] == SEVEN_SEAS
            groups.append((row, group, k == 0 and not seven))
    land = [i for row, group, home in groups if home for i in group if areas[i] >= MIN_LAND_KM2]
    land_points = np.concatenate([vertices[i] for i in land])
    land_owner = np.concatenate([np.full(len(vertices[i]), i) for i in land])
    land_row = np.array([parts[i].row for i in land_owner])
    # Rule 5 for homes: a home with no other country's continental land within reach is open ocean.
    whole = cKDTree(land_points)
    for row, group, home in groups:
        if not home:
            continue
        points = np.concatenate([vertices[i] for i in group])
        others = land_row != row
        km, _ = _nearest(points, land_points[others], whole if others.all() else None)
        if km > OPEN_OCEAN_KM:
            _open_ocean(parts, group, points, "open ocean (home)")
    # Rules 4 and 5 for overseas groups.
    for _, group, home in groups:
        if home:
            continue
        points = np.concatenate([vertices[i] for i in group])
        km, nearest = _nearest(points, land_points, whole)
        if km <= OPEN_OCEAN_KM:
            continent = parts[land_owner[nearest]].continent
            for i in group:
                if not parts[i].fixed:
                    parts[i].continent, parts[i].rule = continent, f"overseas: nearest land {km:.0f} km"
        else:
            _open_ocean(parts, group, points, f"open ocean: nearest land {km:.0f} km")


def _open_ocean(parts: list[Part], group: list[int], points: np.ndarray, rule: str) -> None:
    lon, lat = _lonlat(points.mean(axis=0))
    continent = "Oceania" if in_pacific(lon, lat) else SEVEN_SEAS
    for i in group:
        if not parts[i].fixed:
            parts[i].continent, parts[i].rule = continent, rule


def _single_linkage(members: list[int], vertices: list[np.ndarray], areas: np.ndarray, km: float) -> list[list[int]]:
    """Groups of parts linked by gaps under ``km``; the group of the largest part first, then by size."""
    chord = _chord(km)
    left = sorted(members, key=lambda i: -areas[i])
    groups = []
    while left:
        group, frontier = [left[0]], [left[0]]
        left = left[1:]
        while left and frontier:
            points = np.concatenate([vertices[i] for i in left])
            owner = np.concatenate([np.full(len(vertices[i]), i) for i in left])
            tree = cKDTree(points)
            found = set()
            for i in frontier:
                dist, idx = tree.query(vertices[i], distance_upper_bound=chord)
                found.update(owner[idx[np.isfinite(dist)]].tolist())
            frontier = [i for i in left if i in found]
            group.extend(frontier)
            left = [i for i in left if i not in found]
        groups.append(group)
    return groups


def _nearest(points: np.ndarray, land: np.ndarray, tree: cKDTree | None) -> tuple[float, int]:
    """Great-circle km from ``points`` to the nearest of ``land``, and that land vertex's position."""
    tree = tree if tree is not None else cKDTree(land)
    dist, idx = tree.query(points)
    k = int(np.argmin(dist))
    angle = 2 * np.arcsin(min(dist[k] / 2, 1.0))
    return float(angle * EARTH_RADIUS_KM), int(idx[k])


def _chord(km: float) -> float:
    return float(2 * np.sin(km / EARTH_RADIUS_KM / 2))


def _unit_vertices(polygon: shapely.Polygon) -> np.ndarray:
    """The outline's vertices (simplified by 0.01°, densified to 0.25°) as unit vectors."""
    ring = shapely.segmentize(shapely.simplify(polygon.exterior, 0.01), 0.25)
    lon, lat = np.radians(shapely.get_coordinates(ring)).T
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def _lonlat(xyz: np.ndarray) -> tuple[float, float]:
    x, y, z = xyz / np.linalg.norm(xyz)
    return float(np.degrees(np.arctan2(y, x))), float(np.degrees(np.arcsin(z)))


_GEOD = pyproj.Geod(ellps="WGS84")


def _area_km2(polygon: shapely.Polygon) -> float:
    return abs(_GEOD.geometry_area_perimeter(polygon)[0]) / 1e6
