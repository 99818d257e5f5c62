from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

from geosample.sampling._plots import plot_sample_map, plot_time_bins

CONTINENT_BOXES = {
    "Africa": (-15.0, -30.0, 45.0, 30.0),
    "Asia": (60.0, 10.0, 140.0, 60.0),
    "Europe": (-5.0, 40.0, 40.0, 65.0),
    "North America": (-125.0, 25.0, -70.0, 60.0),
    "South America": (-75.0, -45.0, -40.0, 5.0),
}
MAP_SHAPE = (975, 1800)  # 12 x 6.5 in at 150 dpi
BARS_SHAPE = (825, 1800)  # 12 x 5.5 in at 150 dpi


@pytest.fixture(scope="module")
def land() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"continent": list(CONTINENT_BOXES)},
        geometry=[shapely.box(*b) for b in CONTINENT_BOXES.values()],
        crs="EPSG:4326",
    )


def _samples(n: int, boxes: dict[str, tuple[float, float, float, float]], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = list(boxes)
    continent = rng.choice(names, n)
    bounds = np.array([boxes[c] for c in continent])
    lon = rng.uniform(bounds[:, 0], bounds[:, 2])
    lat = rng.uniform(bounds[:, 1], bounds[:, 3])
    climate = rng.choice(list("ABCD"), n)
    cover = rng.choice(["barren", "forest", "cropland"], n)
    months = [f"{y}-{m:02d}" for y in range(2019, 2024) for m in range(1, 13)]
    return pd.DataFrame(
        {
            "lon": lon,
            "lat": lat,
            "stratum": [f"{c}/{k}/{v}" for c, k, v in zip(continent, climate, cover, strict=True)],
            "continent": continent,
            "time_bin": rng.choice(months, n),
        }
    )


@pytest.fixture(scope="module")
def samples() -> pd.DataFrame:
    return _samples(2_000, CONTINENT_BOXES)


def test_sample_map_written_and_deterministic(tmp_path: Path, samples: pd.DataFrame, land: gpd.GeoDataFrame) -> None:
    assert samples["stratum"].nunique() >= 30
    first, second = tmp_path / "map1.png", tmp_path / "map2.png"
    fig = plot_sample_map(samples, land, first)
    plot_sample_map(samples, land, second)
    assert mpimg.imread(first).shape[:2] == MAP_SHAPE
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map1.png", "map2.png"]  # no temp files left

    # 60 strata: the 12 most frequent coloured, the rest "other"; the title counts what is drawn, once.
    legend = fig.legends[0]
    labels = [t.get_text().replace("\n", "") for t in legend.get_texts()]
    counts = samples["stratum"].value_counts()
    top = sorted(counts.index, key=lambda v: (-counts[v], v))[:12]
    assert labels[:12] == [f"{v} ({counts[v]:,})" for v in top]
    assert labels[12] == f"other ({len(counts) - 12} values) ({counts.drop(top).sum():,})"
    title = fig.texts[0].get_text()
    assert title == f"2,000 sites in {len(counts)} strata; coloured by stratum"


def test_sample_map_colours_by_the_dimension_with_most_values(
    tmp_path: Path, samples: pd.DataFrame, land: gpd.GeoDataFrame
) -> None:
    many = samples.assign(climate=samples["stratum"].str.split("/").str[1])
    fig = plot_sample_map(many, land, tmp_path / "map.png", dimensions=["climate", "continent"])
    assert fig.texts[0].get_text().endswith("; coloured by continent")  # 5 continents > 4 climates
    assert fig.legends[0].get_title().get_text() == "continent (sites)"


def test_sample_map_global_extent(tmp_path: Path, samples: pd.DataFrame, land: gpd.GeoDataFrame) -> None:
    fig = plot_sample_map(samples, land, tmp_path / "map.png", title="Plan")
    xmin, xmax = fig.axes[0].get_xlim()
    assert xmin < -1.7e7 and xmax > 1.7e7  # whole Equal Earth world (±17,243 km)
    assert fig.texts[0].get_text().startswith("Plan")


def test_sample_map_few_categories_one_entry_each(
    tmp_path: Path, samples: pd.DataFrame, land: gpd.GeoDataFrame
) -> None:
    fig = plot_sample_map(samples, land, tmp_path / "map.png", column="continent")
    labels = [t.get_text().replace("\n", "") for t in fig.legends[0].get_texts()]
    counts = samples["continent"].value_counts()
    assert labels == [f"{c} ({counts[c]:,})" for c in sorted(CONTINENT_BOXES, key=lambda c: (-counts[c], c))]
    assert fig.legends[0].get_title().get_text() == "continent (sites)"


def test_sample_map_zooms_on_regional_samples(tmp_path: Path, land: gpd.GeoDataFrame) -> None:
    europe = {"Europe": CONTINENT_BOXES["Europe"]}
    regional = _samples(500, europe, seed=1)
    path = tmp_path / "europe.png"
    fig = plot_sample_map(regional, land, path, column="continent")
    assert mpimg.imread(path).shape[:2] == MAP_SHAPE

    ax = fig.axes[0]
    (xmin, xmax), (ymin, ymax) = ax.get_xlim(), ax.get_ylim()
    x, y = Transformer.from_crs(4326, 8857, always_xy=True).transform(regional["lon"], regional["lat"])
    assert xmin <= x.min() and x.max() <= xmax and ymin <= y.min() and y.max() <= ymax
    assert xmax - xmin < 0.35 * 2 * 17_243_959  # far narrower than the world
    # Only land intersecting the view is drawn.
    assert len(ax.collections[0].get_paths()) < len(land)


def _scale_bar_km(ax) -> tuple[float, float]:
    """The scale bar's label (km) and its drawn length measured on the ellipsoid at the bar's height."""
    from pyproj import Geod

    label = next(t.get_text() for t in ax.texts if t.get_text().endswith("km"))
    (x0, x1), (y0, _) = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    lon, lat = Transformer.from_crs(8857, 4326, always_xy=True).transform([x0, x1], [y0, y0])
    return float(label.split()[0]), Geod(ellps="WGS84").inv(lon[0], lat[0], lon[1], lat[1])[2] / 1000


def test_zoomed_map_draws_footprints_and_a_true_scale_bar(tmp_path: Path, land: gpd.GeoDataFrame) -> None:
    from geosample.sampling._geometry import chip_footprints

    box = (10.0, 45.0, 13.0, 47.0)
    regional = _samples(40, {"Europe": box}, seed=3).assign(chip_size_m=10_000.0, epsg=32632)
    regional["geometry"] = chip_footprints(regional["lon"].to_numpy(), regional["lat"].to_numpy(), 32632, 10_000.0, 1)
    fig = plot_sample_map(regional, land, tmp_path / "zoom.png", column="continent")
    ax = fig.axes[0]
    footprints = [c for c in ax.collections[1:] if len(c.get_paths()) == len(regional)]
    assert footprints, "no footprint collection"
    x, y = Transformer.from_crs(4326, 8857, always_xy=True).transform(regional["lon"], regional["lat"])
    drawn = footprints[0].get_paths()[0].vertices
    assert drawn[:, 0].min() < x[0] < drawn[:, 0].max() and drawn[:, 1].min() < y[0] < drawn[:, 1].max()
    label, measured = _scale_bar_km(ax)
    assert measured == pytest.approx(label, rel=0.01)


def test_world_map_draws_points_and_a_scale_bar_at_the_equator(
    tmp_path: Path, samples: pd.DataFrame, land: gpd.GeoDataFrame
) -> None:
    fig = plot_sample_map(samples.assign(chip_size_m=2560.0), land, tmp_path / "map.png")
    ax = fig.axes[0]
    assert all(len(c.get_paths()) != len(samples) or c.get_offsets().shape[0] == len(samples)
               for c in ax.collections[1:])  # fmt: skip
    text = next(t.get_text() for t in ax.texts if "km" in t.get_text())
    assert text.endswith("km at the equator")


def test_sample_map_detailed_land_and_many_points(tmp_path: Path) -> None:
    # Detailed land (circles with many vertices) is simplified for display.
    centers = [(-100, 40), (20, 0), (100, 40), (-60, -20), (135, -25)]
    land = gpd.GeoSeries([shapely.Point(c).buffer(15, quad_segs=2_000) for c in centers], crs=4326)
    many = _samples(100_000, CONTINENT_BOXES, seed=2)
    fig = plot_sample_map(many, land, tmp_path / "many.png")
    n_vertices = sum(len(p.vertices) for p in fig.axes[0].collections[0].get_paths())
    assert n_vertices < sum(shapely.get_num_coordinates(land.values)) / 10


def test_time_bins_stacked(tmp_path: Path, samples: pd.DataFrame) -> None:
    first, second = tmp_path / "bins1.png", tmp_path / "bins2.png"
    fig = plot_time_bins(samples, first, hue_column="continent")
    plot_time_bins(samples, second, hue_column="continent")
    assert mpimg.imread(first).shape[:2] == BARS_SHAPE
    assert first.read_bytes() == second.read_bytes()

    ax = fig.axes[0]
    n_bins = samples["time_bin"].nunique()
    assert len(ax.patches) == n_bins * samples["continent"].nunique()
    tick_labels = [t.get_text() for t in ax.get_xticklabels()]
    assert tick_labels == sorted(samples["time_bin"].unique())
    assert ax.get_xticklabels()[0].get_rotation() == 90  # 60 monthly bins
    # Stacked bar tops add up to the number of samples.
    tops = {}
    for patch in ax.patches:
        x = round(patch.get_x() + patch.get_width() / 2)
        tops[x] = max(tops.get(x, 0.0), patch.get_y() + patch.get_height())
    assert sum(tops.values()) == len(samples)


def test_time_bins_unstacked_when_many_hues(tmp_path: Path, samples: pd.DataFrame) -> None:
    fig = plot_time_bins(samples, tmp_path / "bins.png", hue_column="stratum", title="Per month")
    ax = fig.axes[0]
    assert len(ax.patches) == samples["time_bin"].nunique()
    assert sum(p.get_height() for p in ax.patches) == len(samples)
    assert ax.get_legend() is None
    assert ax.get_title() == "Per month"


def test_time_bins_few_bins_sorted_with_totals(tmp_path: Path, samples: pd.DataFrame) -> None:
    yearly = samples.assign(time_bin=samples["time_bin"].str[:4].astype(int)).iloc[::-1]
    fig = plot_time_bins(yearly, tmp_path / "years.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2019", "2020", "2021", "2022", "2023"]
    assert ax.get_xticklabels()[0].get_rotation() == 0
    totals = yearly["time_bin"].value_counts().sort_index()
    assert [t.get_text() for t in ax.texts] == [f"{v:,}" for v in totals]


def test_sample_map_title_states_strata_once(tmp_path: Path, samples: pd.DataFrame, land: gpd.GeoDataFrame) -> None:
    n = samples["stratum"].nunique()
    fig = plot_sample_map(samples, land, tmp_path / "a.png", title=f"Plan: {n} strata")
    assert fig.texts[0].get_text() == f"Plan: {n} strata"
    fig = plot_sample_map(samples, land, tmp_path / "b.png", title="Plan")
    assert fig.texts[0].get_text() == "Plan"  # a given title is used as it is, never amended
