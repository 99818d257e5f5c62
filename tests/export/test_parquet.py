"""``export --format parquet`` read back with pyarrow, Hugging Face ``datasets`` and GeoPandas."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import geopandas as gpd
import h3
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import shapely
from export.builders import invoke
from schemas import validate

from geosample.export.splits import SPLITS, dataset_splits


@pytest.fixture
def exported(full_ds: Path) -> tuple[Path, Path]:
    result = invoke("export", full_ds, "--format", "parquet", "--split", "0.6,0.2,0.2", "--seed", "5")
    assert result.exit_code == 0, result.output
    return full_ds, full_ds / "export" / "parquet"


def test_pyarrow_reads_every_record_with_its_content(exported: tuple[Path, Path]) -> None:
    ds, out = exported
    table = pads.dataset(out / "data", format="parquet").to_table().to_pandas()
    plan = gpd.read_parquet(ds / "plan.parquet")
    labels = pd.read_parquet(ds / "labels.parquet").set_index("sample_id")
    chips = pd.read_parquet(ds / "chips.parquet").set_index("sample_id")
    captions = pd.read_parquet(ds / "captions.parquet")
    assert sorted(table["sample_id"]) == sorted(plan["sample_id"])
    for file in (out / "data").glob("*.parquet"):
        split = file.name.split("-")[0]
        assert set(pq.read_table(file, columns=["split"]).column("split").to_pylist()) == {split}
    for row in table.itertuples():
        assert list(row.l2) == list(labels.loc[row.sample_id, "l2"])
        assert row.l1_dominant == labels.loc[row.sample_id, "l1_dominant"]
        assert list(row.captions) == list(captions.loc[captions["sample_id"] == row.sample_id, "caption"])
        chip = chips.loc[row.sample_id]
        if chip["status"] == "ok":
            assert hashlib.sha256(row.geotiff).hexdigest() == chip["sha256"]
            assert row.image["bytes"] == (ds / chip["preview"]).read_bytes()
            assert row.item_id == chip["item_id"] and row.width == 32
        else:
            assert row.geotiff is None and row.image is None
    counts = table["split"].value_counts()
    assert abs(counts["train"] - 0.6 * len(table)) < 1.5 and abs(counts["test"] - 0.2 * len(table)) < 1.5
    parents = table["h3"].map(lambda c: h3.cell_to_parent(c, 5))
    assert (table.groupby(parents)["split"].nunique() == 1).all()


def test_hugging_face_datasets_loads_the_folder(exported: tuple[Path, Path], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    ds, out = exported
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    plan = gpd.read_parquet(ds / "plan.parquet")
    assert set(loaded) <= set(SPLITS) and sum(len(loaded[s]) for s in loaded) == len(plan)
    assert isinstance(loaded["train"].features["image"], datasets.Image)
    captions = pd.read_parquet(ds / "captions.parquet")
    chips = pd.read_parquet(ds / "chips.parquet").set_index("sample_id")
    for record in loaded["train"]:
        if record["image"] is not None:
            assert record["image"].size == (32, 32)
            assert hashlib.sha256(record["geotiff"]).hexdigest() == chips.loc[record["sample_id"], "sha256"]
        expected = list(captions.loc[captions["sample_id"] == record["sample_id"], "caption"])
        assert record["captions"] == expected
        assert record["split"] == "train"
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "config_name: default" in card and "dtype: image" in card


def test_the_files_are_geoparquet_too(exported: tuple[Path, Path]) -> None:
    ds, out = exported
    plan = gpd.read_parquet(ds / "plan.parquet").set_index("sample_id")
    for file in (out / "data").glob("*.parquet"):
        geo = json.loads(pq.read_schema(file).metadata[b"geo"])
        assert geo["version"] == "1.1.0"
        validate(geo, "geoparquet-schema.json")  # the bundled GeoParquet 1.1.0 schema
        frame = gpd.read_parquet(file)
        assert frame.crs.equals("OGC:CRS84")
        for row in frame.itertuples():
            assert shapely.equals_exact(row.geometry, plan.loc[row.sample_id, "geometry"], 1e-12)


def test_plan_only_dataset_exports_metadata_rows(planned_ds: Path, tmp_path: Path) -> None:
    out = tmp_path / "hf"
    result = invoke("export", planned_ds, "-f", "parquet", "-o", out)
    assert result.exit_code == 0, result.output
    table = pads.dataset(out / "data", format="parquet").to_table()
    assert table.num_rows == len(gpd.read_parquet(planned_ds / "plan.parquet"))
    assert not {"image", "geotiff", "captions", "l1"} & set(table.column_names)
    assert {"sample_id", "split", "stratum", "time_bin", "geometry"} <= set(table.column_names)
    assert "Not in this dataset yet" in (out / "README.md").read_text()


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["blue", "green", "red", "nir"], [3, 2, 1]),
        (["B02", "B03", "B04", "B08"], [3, 2, 1]),
        (["rgb_red", "rgb_green", "rgb_blue"], [1, 2, 3]),
        (["nir", "swir16", "swir22"], [1, 2, 3]),
        (["ndvi"], [1]),
    ],
)
def test_preview_band_choice(names: list[str], expected: list[int]) -> None:
    from geosample.export._preview import rgb_band_indexes

    assert rgb_band_indexes(names) == expected


def test_rendered_previews_stretch_the_chip(full_ds: Path) -> None:
    import io

    import numpy as np
    import rasterio
    from PIL import Image

    from geosample.export._preview import render_png

    path = full_ds / pd.read_parquet(full_ds / "chips.parquet")["path"].dropna().iloc[0]
    with Image.open(io.BytesIO(render_png(path))) as image:
        pixels = np.asarray(image)
    with rasterio.open(path) as src:
        data = src.read(masked=True)
    assert pixels.shape == (32, 32, 4)
    assert (pixels[..., 3] == 0).sum() == np.ma.getmaskarray(data).any(axis=0).sum()  # no data is transparent
    red = data[0].compressed()
    low, high = np.percentile(red, [2, 98])
    expected = np.clip((data[0].filled(0).astype(float) - low) / (high - low), 0, 1) * 255
    valid = pixels[..., 3] > 0
    assert np.abs(pixels[..., 0][valid] - np.round(expected[valid])).max() <= 1


def test_the_card_snippet_runs(exported: tuple[Path, Path]) -> None:
    from export.builders import python_snippets

    _, out = exported
    (snippet,) = python_snippets(out / "README.md")
    namespace: dict = {}
    exec(compile(snippet.replace("path/to/this/folder", str(out)), "README.md", "exec"), namespace)
    assert namespace["ds"]["train"][0]["image"].size[0] > 0


def test_dataset_splits_follow_the_latest_export(full_ds: Path) -> None:
    """evaluate and finetune see the splits of the export run last, whatever format ran first."""
    for fmt, seed in (("parquet", "1"), ("webdataset", "2"), ("parquet", "3")):
        result = invoke("export", full_ds, "--format", fmt, "--split", "0.5,0.25,0.25", "--seed", seed, "--overwrite")
        assert result.exit_code == 0, result.output
    data = full_ds / "export" / "parquet" / "data"
    exported = pads.dataset(data, format="parquet").to_table(columns=["sample_id", "split"]).to_pandas()
    dealt = dataset_splits(full_ds)
    assert dealt.loc[exported["sample_id"]].tolist() == exported["split"].tolist()
    assert len(dealt.dropna()) == len(exported)
