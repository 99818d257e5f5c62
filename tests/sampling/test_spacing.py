"""Distance spacing (``--min-distance-m``) and inclusion probabilities, checked independently.

Chip overlaps are tested on the footprints themselves, in metres, in an
azimuthal equidistant CRS centred between each pair (``tests/independent.py``),
and distances with pyproj's WGS 84 geodesic, never with geosample's code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h3
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from independent import aeqd_gap_m, close_pairs, nearest_geodesic_m, overlapping_chip_pairs, strata_at
from pyproj import Geod

import geosample
from geosample.sampling import spacing
from geosample.sampling._geometry import chip_footprints
from geosample.sampling.spacing import R_MIN_M, SpacingIndex, default_min_distance_m, footprint_distances_m

pytestmark = pytest.mark.filterwarnings("ignore::geosample.errors.CapacityWarning")
DIAGONAL_2560 = 2560 * math.sqrt(2)


def _min_site_distance(plan: pd.DataFrame) -> float:
    sites = plan.drop_duplicates("site_id")
    return nearest_geodesic_m(sites["lon"].to_numpy(), sites["lat"].to_numpy())


@pytest.fixture(scope="module")
def dense_pair() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same dense plan (sites much closer than a parent cell) with the default spacing and with none."""
    args = dict(samples=150, aoi="bbox:8,46,9,47", strata="landcover", res=10, parent_res=6, max_per_parent=3,
                seed=4, progress=False)  # fmt: skip
    return geosample.plan(**args), geosample.plan(**args, min_distance_m=0)


def test_default_plan_has_no_overlapping_chips_even_with_k_above_one(dense_pair) -> None:
    spaced, unspaced = dense_pair
    assert overlapping_chip_pairs(spaced) == []
    assert _min_site_distance(spaced) >= DIAGONAL_2560
    # Today's rule alone (three per parent cell) lets chips overlap here: the check can fail.
    assert len(overlapping_chip_pairs(unspaced)) > 0
    parents = spaced["h3"].map(lambda c: h3.cell_to_parent(c, 6)).value_counts()
    assert parents.max() <= 3 and parents.max() > 1


def test_balance_reports_spacing_as_measured(dense_pair) -> None:
    for plan in dense_pair:
        spacing = plan.attrs["balance"]["spacing"]
        sites = plan.drop_duplicates("site_id")
        assert spacing["overlapping_chip_pairs"] == len(overlapping_chip_pairs(plan))
        assert spacing["nearest_neighbour_m"]["min"] == pytest.approx(_min_site_distance(plan), rel=1e-6)
        pairs, dist = close_pairs(sites["lon"].to_numpy(), sites["lat"].to_numpy(), 1e9)
        nearest = np.full(len(sites), np.inf)
        np.minimum.at(nearest, pairs[:, 0], dist)
        np.minimum.at(nearest, pairs[:, 1], dist)
        assert spacing["nearest_neighbour_m"]["median"] == pytest.approx(np.median(nearest), rel=1e-6)
        assert spacing["nearest_neighbour_m"]["p01"] == pytest.approx(np.percentile(nearest, 1), rel=1e-6)
    assert dense_pair[0].attrs["balance"]["spacing"]["min_distance_m"] == pytest.approx(DIAGONAL_2560 * 1.01)
    assert dense_pair[1].attrs["balance"]["spacing"]["min_distance_m"] == 0


@pytest.mark.parametrize(
    ("aoi", "extra"),
    [
        ("bbox:177,-19.5,-178,-15.5", {}),  # Fiji, across the antimeridian
        ("bbox:-180,83.5,180,90", {"land_only": False, "strata": "landcover", "res": 7}),  # round the North Pole
    ],
)
def test_no_overlap_across_the_antimeridian_and_near_the_poles(aoi: str, extra: dict) -> None:
    kwargs = {"samples": 40, "aoi": aoi, "strata": "landcover", "chip_size": [20000], "seed": 2, **extra}
    plan = geosample.plan(**kwargs, progress=False)
    assert len(plan) == 40
    assert overlapping_chip_pairs(plan) == []
    assert _min_site_distance(plan) >= 20000 * math.sqrt(2)
    if aoi.startswith("bbox:177"):
        assert (plan.geometry.geom_type == "MultiPolygon").any(), "no footprint crossed the antimeridian"


def test_multi_scale_rows_share_a_site_and_sites_keep_the_largest_diagonal() -> None:
    plan = geosample.plan(samples=60, aoi="bbox:30,-2,31,-1", strata="landcover", chip_size=[1280, 5120],
                          res=10, parent_res=7, seed=5, progress=False)  # fmt: skip
    assert plan.groupby("site_id").size().eq(2).all()
    assert _min_site_distance(plan) >= 5120 * math.sqrt(2)
    assert overlapping_chip_pairs(plan) == []


def test_events_keep_their_sites_apart(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,type,date,geometry\n"
        'big-fire,wildfire,2021-08-01,"POLYGON ((22.8 38.6, 23.6 38.6, 23.6 39.1, 22.8 39.1, 22.8 38.6))"\n'
        'flood,flood,2021-07-14,"POLYGON ((6.8 50.3, 7.4 50.3, 7.4 50.7, 6.8 50.7, 6.8 50.3))"\n'
    )
    plan = geosample.plan(events=str(events), samples=40, chip_size=[5000], res=10, parent_res=5, max_per_parent=20,
                          progress=False)  # fmt: skip
    spacing = plan.attrs["balance"]["spacing"]
    assert spacing["overlapping_chip_pairs_within_event"] == 0
    for _, rows in plan.groupby("event_id"):
        assert rows["site_id"].nunique() > 3
        assert _min_site_distance(rows) >= 5000 * math.sqrt(2)
        assert overlapping_chip_pairs(rows) == []


@settings(max_examples=25, deadline=None, database=None)
@given(
    distance=st.sampled_from([80.0, 2_000.0, 40_000.0, 900_000.0]),
    seed=st.integers(0, 2**16),
    near_pentagon=st.booleans(),
)
def test_thinning_is_a_greedy_packing(distance: float, seed: int, near_pentagon: bool) -> None:
    """Kept points are ≥ D apart (geodesic); every dropped point has a kept earlier point within D."""
    rng = np.random.default_rng(seed)
    index = SpacingIndex(distance)
    if near_pentagon:
        lat0, lon0 = h3.cell_to_latlng(h3.get_pentagons(5)[seed % 12])
    else:
        lat0, lon0 = rng.uniform(-89, 89), rng.choice([179.9, -179.9, rng.uniform(-180, 180)])
    spread = 4 * distance / 111_000
    lat = np.clip(lat0 + rng.normal(0, spread, 300), -90, 90)
    lon = (lon0 + rng.normal(0, spread, 300) + 180) % 360 - 180
    taken = rng.random(300) < 0.3
    index.add(lon[taken], lat[taken])
    rest = np.flatnonzero(~taken)
    kept = index.thin(lon[rest], lat[rest])
    everyone = np.concatenate([np.flatnonzero(taken), rest[kept]])
    pairs, _ = close_pairs(lon[everyone], lat[everyone], distance)
    new = np.arange(everyone.size) >= taken.sum()  # the taken ones were placed at random, unspaced
    assert not (new[pairs[:, 0]] | new[pairs[:, 1]]).any()
    geod = Geod(ellps="WGS84")
    for k in np.flatnonzero(~kept):
        before = np.concatenate([np.flatnonzero(taken), rest[:k][kept[:k]]])
        _, _, dist = geod.inv(np.full(before.size, lon[rest[k]]), np.full(before.size, lat[rest[k]]),
                              lon[before], lat[before])  # fmt: skip
        assert np.min(dist) < distance * 1.01  # the 1 % is the sphere's margin below the ellipsoid


@settings(max_examples=30, deadline=None, database=None)
@given(
    distance=st.sampled_from([0.5, 80.0, 3_660.0, 40_000.0, 900_000.0, 15_000_000.0]),
    seed=st.integers(0, 2**16),
    where=st.sampled_from(["anywhere", "pole", "antimeridian", "pentagon"]),
    batches=st.integers(1, 12),
)
def test_blocked_finds_every_taken_site_within_the_distance(
    distance: float, seed: int, where: str, batches: int
) -> None:
    """``blocked`` agrees with great circles measured by pyproj on the index's sphere, pair by pair."""
    rng = np.random.default_rng(seed)
    lat0, lon0 = {
        "anywhere": (rng.uniform(-80, 80), rng.uniform(-180, 180)),
        "pole": (rng.choice([-89.99, 89.99]), rng.uniform(-180, 180)),
        "antimeridian": (rng.uniform(-70, 70), 179.999),
        "pentagon": h3.cell_to_latlng(h3.get_pentagons(7)[seed % 12]),
    }[where]
    spread = 3 * distance / 111_000
    lat = np.clip(lat0 + rng.normal(0, spread, 400), -90, 90)
    lon = (lon0 + rng.normal(0, spread / max(np.cos(np.radians(lat0)), 0.01), 400) + 180) % 360 - 180
    taken, query = np.arange(200), np.arange(200, 400)
    index = SpacingIndex(distance)
    for part in np.array_split(taken, batches):  # many small runs, merged as they grow
        index.add(lon[part], lat[part])
    assert len(index) == taken.size
    sphere = Geod(a=R_MIN_M, b=R_MIN_M)
    lon_q, lat_q = np.repeat(lon[query], taken.size), np.repeat(lat[query], taken.size)
    _, _, dist = sphere.inv(lon_q, lat_q, np.tile(lon[taken], query.size), np.tile(lat[taken], query.size))
    dist = dist.reshape(query.size, taken.size)
    clear = np.abs(dist - distance).min(axis=1) > 1e-6 * distance + 1e-6  # no pair on the edge itself
    expected = (dist < distance).any(axis=1)
    got = index.blocked(lon[query], lat[query])
    np.testing.assert_array_equal(got[clear], expected[clear])


def test_inclusion_prob_matches_an_independent_area_estimate() -> None:
    """π = n_h · a / A_h, with the stratum areas estimated here by uniform random points on the box."""
    west, south, east, north = 36.0, -1.5, 38.0, 0.5  # Kenya around Mount Kenya: many land covers
    plan = geosample.plan(samples=300, aoi=f"bbox:{west},{south},{east},{north}", strata="landcover", res=8,
                          seed=9, progress=False)  # fmt: skip
    rng = np.random.default_rng(1)
    m = 30_000
    lon = rng.uniform(west, east, m)
    lat = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(south)), np.sin(np.radians(north)), m)))
    truth = strata_at(lon, lat)
    box_km2 = abs(Geod(ellps="WGS84").polygon_area_perimeter([west, east, east, west], [south, south, north, north])[0])
    box_km2 /= 1e6
    on_land = pd.notna(truth["country"]) & pd.notna(truth["landcover"]) & pd.notna(truth["climate"])
    share = pd.Series(truth["landcover"][on_land]).value_counts() / m
    sites = plan.drop_duplicates("site_id")
    n = sites.groupby("landcover").size()
    cell_km2 = np.array([h3.cell_area(c, "km^2") for c in sites["h3"]])
    area = share.reindex(sites["landcover"]).to_numpy() * box_km2
    expected = n.reindex(sites["landcover"]).to_numpy() * cell_km2 / area
    big = share.reindex(sites["landcover"]).to_numpy() > 0.05  # strata well measured by 30 000 points
    assert big.sum() > 100
    np.testing.assert_allclose(sites["inclusion_prob"].to_numpy()[big], expected[big], rtol=0.12)
    # Rows of one site share it; balance.json's stratum sizes say the same.
    assert plan.groupby("site_id")["inclusion_prob"].nunique().eq(1).all()
    strata = {row["stratum"]: row for row in plan.attrs["balance"]["strata"]}
    for cover, count in n.items():
        row = strata[cover]
        assert row["cells"] == pytest.approx(row["area_km2"] / h3.average_hexagon_area(8, "km^2"), rel=1e-6)
        assert row["inclusion_prob"] == pytest.approx(count / row["cells"], rel=1e-4)


def test_inclusion_prob_for_revisits_and_events(tmp_path: Path) -> None:
    revisits = geosample.plan(samples=20, aoi="bbox:36,-1.5,38,0.5", strata="landcover", revisits=3, seed=1,
                              progress=False)  # fmt: skip
    assert revisits.groupby("site_id")["inclusion_prob"].nunique().eq(1).all()
    assert revisits["inclusion_prob"].between(0, 1, inclusive="right").all()
    events = tmp_path / "events.csv"
    events.write_text("event_id,type,date,lon,lat\na,flood,2021-07-14,7.10,50.53\nb,wildfire,2021-08-03,23.3,38.9\n")
    plan = geosample.plan(events=str(events), samples=4, event_radius_m=20_000, chip_size=[2560], progress=False)
    sites = plan.drop_duplicates("site_id")
    # Each event's sites over its disk's cells (in cells of the sample resolution), per stratum share.
    disk_cells = math.pi * 20.0**2 / h3.average_hexagon_area(9, "km^2")
    assert (sites["inclusion_prob"] >= sites.groupby("event_id")["site_id"].transform("size") / disk_cells).all()
    assert plan.groupby("site_id")["inclusion_prob"].nunique().eq(1).all()


def test_default_distance_is_the_chip_diagonal() -> None:
    assert default_min_distance_m([1280, 2560]) == pytest.approx(2560 * math.sqrt(2) * 1.01)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--min-distance-m", "-5"], ["--min-distance-m", "between 0"]),
        (["--min-distance-m", "nan"], ["--min-distance-m"]),
        (["--aoi", "bbox:8,46,8.5,46.5", "-n", "50", "--min-distance-m", "20000"], ["holds about", "at most"]),
    ],
)
def test_bad_min_distance_is_one_line_exit_2_nothing_written(
    tmp_path: Path, run_cli, args: list[str], words: list[str]
) -> None:
    ds = tmp_path / "DS"
    code, out, err = run_cli("plan", "-o", ds, "--no-progress", *args)
    assert code == 2, out + err
    line = err.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert all(w in line for w in words), line
    assert not ds.exists() or not any(ds.iterdir())
    if "holds about" in line:
        held = int(line.split("holds about ")[1].split()[0])
        assert 0 < held < 50
        # That many do fit.
        plan = geosample.plan(aoi="bbox:8,46,8.5,46.5", samples=held, min_distance_m=20000, progress=False)
        assert _min_site_distance(plan) >= 20000


def test_plan_command_records_the_distance(tmp_path: Path, run_cli) -> None:
    ds = tmp_path / "DS"
    code, out, err = run_cli("plan", "-o", ds, "-n", 12, "--aoi", "bbox:8,46,9,47", "--min-distance-m", 9000,
                             "--no-progress")  # fmt: skip
    assert code == 0, out + err
    balance = json.loads((ds / "report" / "balance.json").read_text())
    assert balance["spacing"]["min_distance_m"] == 9000
    assert balance["spacing"]["nearest_neighbour_m"]["min"] >= 9000


def test_footprint_distances_agree_with_an_azimuthal_equidistant_projection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pairs of chips 0 to ~15 km apart, on the antimeridian (split footprints) and near a pole
    too: the array distances equal pyproj's aeqd distances to a centimetre, and 0 where they touch."""
    rng = np.random.default_rng(7)
    centres = [(179.99, -17.0), (-179.995, 65.0), (12.0, 89.95), (0.0, 0.0), (-70.0, -45.0), (140.0, 35.0)]
    lon0 = np.repeat([c[0] for c in centres], 40)
    lat0 = np.repeat([c[1] for c in centres], 40)
    geod = Geod(ellps="WGS84")
    azimuth, reach = rng.uniform(0, 360, (2, lon0.size)), rng.uniform(0, 15_000, (2, lon0.size))
    lon_a, lat_a, _ = geod.fwd(lon0, lat0, azimuth[0], reach[0] / 4)
    lon_b, lat_b, _ = geod.fwd(lon0, lat0, azimuth[1], reach[1])
    size = rng.choice([1280.0, 2560.0, 5120.0], (2, lon0.size))
    epsg = [32601 + int((x + 180) // 6) % 60 + (0 if y >= 0 else 100) for x, y in zip(lon_a, lat_a, strict=True)]
    a = chip_footprints(lon_a, lat_a, epsg, size[0])
    b = chip_footprints(lon_b, lat_b, epsg, size[1])
    got = footprint_distances_m(a, b)
    # the independent answer: pyproj's aeqd centred on the geodesic midpoint of the two centres
    forward, _, span = geod.inv(lon_a, lat_a, lon_b, lat_b)
    mid_lon, mid_lat, _ = geod.fwd(lon_a, lat_a, forward, span / 2)
    want = np.array([aeqd_gap_m(*pair) for pair in zip(a, b, mid_lon, mid_lat, strict=True)])
    assert (want == 0).sum() > 20 and (want > 1000).sum() > 20  # overlapping pairs and distant ones
    np.testing.assert_allclose(got, want, atol=0.01)  # metres
    assert ((got == 0) == (want == 0)).all()
    monkeypatch.setattr(spacing, "_PAIRS_AT_ONCE", 7)  # many blocks, the last one short: the same answers
    np.testing.assert_array_equal(footprint_distances_m(a, b), got)


@settings(max_examples=40, deadline=None, database=None)
@given(
    n=st.integers(1, 400),
    spread=st.sampled_from([0.002, 0.02, 0.5]),
    chord_length=st.floats(0.001, 0.05),
    seed=st.integers(0, 2**32 - 1),
)
def test_greedy_spacing_is_the_in_order_greedy(n: int, spread: float, chord_length: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    xyz = np.array([0.0, 0.0, 1.0]) + rng.normal(0, spread, (n, 3))  # a cluster: long chains of close points
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    # Point by point, as the rule is stated: kept unless an earlier kept point is that close.
    expected = np.zeros(n, dtype=bool)
    for i in range(n):
        kept = xyz[:i][expected[:i]]
        expected[i] = not (np.linalg.norm(kept - xyz[i], axis=1) <= chord_length * (1 - 1e-12)).any()
    np.testing.assert_array_equal(spacing.greedy_spacing(xyz, chord_length), expected)
