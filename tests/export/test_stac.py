"""``export --format stac``: a self-contained static catalog, opened with pystac and validated offline."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pystac
import pytest
from export.builders import invoke
from schemas import stac_extension_schema, validate

from geosample.export.splits import ML_AOI_SPLITS

ML_AOI = "https://stac-extensions.github.io/ml-aoi/v0.2.0/schema.json"
LABEL = "https://stac-extensions.github.io/label/v1.0.1/schema.json"


def _validate_extensions(document: dict) -> None:
    """Validate against the local copy of every extension schema we have (ml-aoi and label)."""
    for url in document.get("stac_extensions", []):
        if url in (ML_AOI, LABEL):
            validate(document, stac_extension_schema(url))


def _items(catalog: pystac.Catalog, collection: str) -> list[pystac.Item]:
    child = catalog.get_child(collection)
    assert child is not None, f"no collection {collection}"
    return list(child.get_items())


@pytest.fixture
def exported(full_ds: Path) -> tuple[Path, Path]:
    result = invoke("export", full_ds, "--format", "stac")
    assert result.exit_code == 0, result.output
    return full_ds, full_ds / "export" / "stac"


def test_catalog_holds_chips_samples_and_labels(exported: tuple[Path, Path]) -> None:
    ds, out = exported
    catalog = pystac.Catalog.from_file(str(out / "catalog.json"))
    chips = pd.read_parquet(ds / "chips.parquet")
    ok = chips[chips["status"] == "ok"].set_index("sample_id")
    assert {c.id for c in catalog.get_children()} == {"sentinel-2-l2a", "samples", "labels"}
    chip_items = _items(catalog, "sentinel-2-l2a")
    assert sorted(i.id for i in chip_items) == sorted(ok.index)
    assert sorted(i.id for i in _items(catalog, "samples")) == sorted(chips.loc[chips["status"] != "ok", "sample_id"])
    captions = pd.read_parquet(ds / "captions.parquet")
    for item in chip_items:
        image = item.assets["image"]
        assert image.extra_fields["ml-aoi:role"] == "feature"
        assert hashlib.sha256(Path(image.get_absolute_href()).read_bytes()).hexdigest() == ok.loc[item.id, "sha256"]
        assert Path(item.assets["preview"].get_absolute_href()).is_file()
        assert item.properties["ml-aoi:split"] in ("train", "validate", "test")  # ml-aoi's own words
        assert set(ML_AOI_SPLITS.values()) == {"train", "validate", "test"}
        assert (
            item.properties["proj:code"]
            == f"EPSG:{gpd.read_parquet(ds / 'plan.parquet').set_index('sample_id').loc[item.id, 'epsg']}"
        )
        assert item.properties["geosample:captions"] == list(captions.loc[captions["sample_id"] == item.id, "caption"])
        _validate_extensions(item.to_dict(include_self_link=False))


def test_label_items_validate_and_point_at_their_chips(exported: tuple[Path, Path]) -> None:
    ds, out = exported
    catalog = pystac.Catalog.from_file(str(out / "catalog.json"))
    labels = pd.read_parquet(ds / "labels.parquet").set_index("sample_id")
    collection = catalog.get_child("labels")
    _validate_extensions(collection.to_dict(include_self_link=False))
    items = list(collection.get_items())
    assert len(items) == len(labels)
    splits = {}
    for group in ("sentinel-2-l2a", "samples"):
        splits.update({i.id: i.properties["ml-aoi:split"] for i in _items(catalog, group)})
    for item in items:
        document = json.loads(Path(item.get_self_href()).read_text())
        _validate_extensions(document)
        assert item.properties["l1_dominant"] == labels.loc[item.id, "l1_dominant"]
        assert item.properties["ml-aoi:split"] == splits[item.id]
        assert item.assets["labels"].extra_fields["ml-aoi:role"] == "label"
        sources = [link.resolve_stac_object().target for link in item.get_links("source")]
        assert [s.id for s in sources] == [item.id]
        feature = json.loads(Path(item.assets["labels"].get_absolute_href()).read_text())
        assert feature["features"][0]["properties"]["l2"] == list(labels.loc[item.id, "l2"])


def test_catalog_is_self_contained(exported: tuple[Path, Path], tmp_path: Path) -> None:
    ds, out = exported
    moved = tmp_path / "elsewhere"
    shutil.move(str(out), moved)
    for path in moved.rglob("*.json"):
        text = path.read_text()
        assert str(ds.resolve()) not in text and str(tmp_path) not in text, path
    catalog = pystac.Catalog.from_file(str(moved / "catalog.json"))
    n = 0
    for item in catalog.get_items(recursive=True):
        for asset in item.assets.values():
            assert Path(asset.get_absolute_href()).is_file()
        n += 1
    assert n == 24 + 24  # one feature item and one label item per sample


def test_items_written_by_fetch_are_reused(full_ds: Path) -> None:
    from geosample.stac.catalog import chip_item, write_item
    from geosample.stac.grid import chip_grid

    plan = gpd.read_parquet(full_ds / "plan.parquet").set_index("sample_id")
    chips = pd.read_parquet(full_ds / "chips.parquet")
    row = chips[chips["status"] == "ok"].iloc[0].to_dict()
    sample = plan.loc[row["sample_id"]]
    grid = chip_grid(sample["lon"], sample["lat"], int(sample["epsg"]), sample["chip_size_m"], row["resolution"])
    source = ("S2B_33TWN_20200131", "https://example.test/items/S2B_33TWN_20200131")
    item = chip_item(row, sample["geometry"], grid, [source])
    write_item(full_ds, row["collection"], row["sample_id"], item)
    assert invoke("export", full_ds, "-f", "stac").exit_code == 0
    catalog = pystac.Catalog.from_file(str(full_ds / "export" / "stac" / "catalog.json"))
    exported = next(i for i in _items(catalog, row["collection"]) if i.id == row["sample_id"])
    assert [link.href for link in exported.get_links("derived_from")] == [source[1]]
    assert exported.properties["geosample:source_items"] == [source[0]]
    assert Path(exported.assets["image"].get_absolute_href()).read_bytes() == (full_ds / row["path"]).read_bytes()
    _validate_extensions(exported.to_dict(include_self_link=False))


def test_plan_only_catalog(planned_ds: Path) -> None:
    assert invoke("export", planned_ds, "-f", "stac").exit_code == 0
    catalog = pystac.Catalog.from_file(str(planned_ds / "export" / "stac" / "catalog.json"))
    assert [c.id for c in catalog.get_children()] == ["samples"]
    items = _items(catalog, "samples")
    assert len(items) == len(gpd.read_parquet(planned_ds / "plan.parquet"))
    for item in items:
        assert item.properties["start_datetime"] and not item.assets
        _validate_extensions(item.to_dict(include_self_link=False))
