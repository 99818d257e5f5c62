"""Independent computations that tests check geosample's answers against.

They use the layers' files through rasterio and geopandas directly, never
geosample's own lookups.
"""

from __future__ import annotations

import functools

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


def close_pairs(lon: np.ndarray, lat: np.ndarray, within_m: float) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs ``i < j`` whose WGS 84 geodesic distance is below ``within_m``, by brute force.

    A haversine pre-filter (mean radius, with 1 % slack) over every pair, then pyproj's geodesic.
    """
    from pyproj import Geod

    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    i, j = np.triu_indices(lon.size, k=1)
    phi1, phi2, dlon = np.radians(lat[i]), np.radians(lat[j]), np.radians(lon[j] - lon[i])
    hav = np.sin((phi2 - phi1) / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlon / 2) ** 2
    rough = 2 * 6_371_008.8 * np.arcsin(np.sqrt(np.clip(hav, 0, 1)))
    near = rough < within_m * 1.01 + 1.0
    i, j = i[near], j[near]
    _, _, dist = Geod(ellps="WGS84").inv(lon[i], lat[i], lon[j], lat[j])
    keep = np.asarray(dist) < within_m
    return np.column_stack([i[keep], j[keep]]), np.asarray(dist)[keep]


def nearest_geodesic_m(lon: np.ndarray, lat: np.ndarray) -> float:
    """The smallest geodesic distance between any two points (brute force over all pairs)."""
    from pyproj import Geod

    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    i, j = np.triu_indices(lon.size, k=1)
    _, _, dist = Geod(ellps="WGS84").inv(lon[i], lat[i], lon[j], lat[j])
    return float(np.min(dist))


def footprints_overlap(a, b) -> bool:
    """Whether two lon/lat footprints share area, measured in metres in an azimuthal equidistant CRS
    centred between them (so the antimeridian and the poles are nothing special there)."""
    import shapely

    ca, cb = a.representative_point(), b.representative_point()
    mid_lon = np.degrees(np.arctan2(np.sin(np.radians(ca.x)) + np.sin(np.radians(cb.x)),
                                    np.cos(np.radians(ca.x)) + np.cos(np.radians(cb.x))))  # fmt: skip
    transform = _aeqd_transformer(round((ca.y + cb.y) / 2, 1), round(float(mid_lon), 1))
    pa, pb = (_to_metres(g, transform) for g in (a, b))
    return shapely.intersection(pa, pb).area > 1.0  # m²; footprints that only touch share no area


def overlapping_chip_pairs(plan) -> list[tuple[str, str]]:
    """Pairs of distinct sites whose chips (any sizes) overlap, from the footprints alone."""
    sites = plan.sort_values("chip_size_m").drop_duplicates("site_id", keep="last").reset_index(drop=True)
    reach = float(sites["chip_size_m"].max()) * np.sqrt(2) * 1.05
    pairs, _ = close_pairs(sites["lon"].to_numpy(), sites["lat"].to_numpy(), reach)
    geoms = sites.geometry.to_numpy()
    ids = sites["site_id"].to_numpy()
    return [(ids[i], ids[j]) for i, j in pairs if footprints_overlap(geoms[i], geoms[j])]


def footprint_gap_m(a, b) -> float:
    """Distance in metres between two lon/lat footprints (0 if they touch or overlap), in an azimuthal
    equidistant CRS centred within 0.1° of the midpoint between them (their representative points':
    a footprint split at the antimeridian has its centroid near lon 0)."""
    ca, cb = a.representative_point(), b.representative_point()
    mid_lon = np.degrees(np.arctan2(np.sin(np.radians(ca.x)) + np.sin(np.radians(cb.x)),
                                    np.cos(np.radians(ca.x)) + np.cos(np.radians(cb.x))))  # fmt: skip
    return aeqd_gap_m(a, b, round(float(mid_lon), 1), round((ca.y + cb.y) / 2, 1))


def aeqd_gap_m(a, b, lon0: float, lat0: float) -> float:
    """Distance in metres between two lon/lat footprints in an azimuthal equidistant CRS centred at (lon0, lat0)."""
    transform = _aeqd_transformer(lat0, lon0)
    return float(_to_metres(a, transform).distance(_to_metres(b, transform)))


@functools.lru_cache(maxsize=4096)
def _aeqd_transformer(lat0: float, lon0: float):
    from pyproj import CRS, Transformer

    crs = CRS.from_proj4(f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +datum=WGS84 +units=m")
    return Transformer.from_crs(4326, crs, always_xy=True)


def _to_metres(geometry, transformer):
    """A lon/lat geometry through a pyproj transformer (every vertex), repaired."""
    import shapely

    moved = shapely.transform(geometry, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))
    return shapely.make_valid(moved)


def cross_split_gaps(plan, split) -> dict[str, float]:
    """Per split, the smallest footprint distance (metres) from its chips to another split's chips.

    ``split`` maps ``sample_id`` to a split name (samples left out are ignored). Geodesic centre
    distances over every pair closer than 50 km; the footprints are measured for the pairs whose
    centres are within two chip diagonals of the split's nearest centres (no other pair can be closer).
    """
    rows = plan[plan["sample_id"].isin(split.index)].copy()
    rows["split"] = split.reindex(rows["sample_id"]).to_numpy()
    assert (rows.groupby("site_id")["split"].nunique() == 1).all(), "a site straddles two splits"
    sites = rows.sort_values("chip_size_m").drop_duplicates("site_id", keep="last").reset_index(drop=True)
    pairs, dist = close_pairs(sites["lon"].to_numpy(), sites["lat"].to_numpy(), 50_000.0)
    name = sites["split"].to_numpy()
    geoms = sites.geometry.to_numpy()
    slack = 2 * float(sites["chip_size_m"].max()) * np.sqrt(2) * 1.01
    cross = name[pairs[:, 0]] != name[pairs[:, 1]]
    pairs, dist = pairs[cross], dist[cross]
    gaps = {s: np.inf for s in set(name)}
    for s in gaps:
        mine = (name[pairs[:, 0]] == s) | (name[pairs[:, 1]] == s)
        if not mine.any():
            continue
        near = mine & (dist <= dist[mine].min() + slack)
        gaps[s] = min(footprint_gap_m(geoms[i], geoms[j]) for i, j in pairs[near])
    return gaps
