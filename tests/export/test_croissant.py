"""``export --format croissant``: mlcroissant loads it offline and its records match the files; the card parses."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
import pytest
from export.builders import invoke
from validation import assert_valid

from geosample.export.splits import SPLITS

mlc = pytest.importorskip("mlcroissant")


@pytest.fixture
def exported(full_ds: Path) -> tuple[Path, Path]:
    result = invoke("export", full_ds, "--format", "croissant")
    assert result.exit_code == 0, result.output
    return full_ds, full_ds / "export" / "croissant"


def _records(dataset: mlc.Dataset, record_set: str, n: int | None = None) -> list[dict]:
    return list(itertools.islice(dataset.records(record_set), n))


def _text(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


def test_mlcroissant_reads_every_record_set_offline(exported: tuple[Path, Path]) -> None:
    ds, out = exported
    logging.getLogger("absl").setLevel(logging.ERROR)
    dataset = mlc.Dataset(jsonld=out / "croissant.json")
    names = {r.uuid for r in dataset.metadata.record_sets}
    assert names == {"splits", "samples", "captions", "labels", "strata"}
    assert [r["splits/name"] for r in _records(dataset, "splits")] == list(SPLITS)
    table = pd.concat([pq.read_table(f).to_pandas() for f in sorted((out / "data").glob("*.parquet"))])
    by_key = table.set_index("key")
    for record in _records(dataset, "samples", 3):
        row = by_key.loc[_text(record["samples/key"])]
        assert _text(record["samples/split"]) == row["split"]
        assert record["samples/lon"] == row["lon"] and _text(record["samples/crs"]) == f"EPSG:{row['epsg']}"
        assert [_text(c) for c in record["samples/captions"]] == list(row["captions"])
        assert [_text(c) for c in record["samples/l2"]] == list(row["l2"])
        assert record["samples/image"].size == (32, 32)  # the PNG preview, decoded
    captions = pd.read_parquet(ds / "captions.parquet")
    first = _records(dataset, "captions", 1)[0]
    match = captions[(captions["sample_id"] == _text(first["captions/sample_id"]))
                     & (captions["caption_index"] == first["captions/caption_index"])]  # fmt: skip
    assert _text(first["captions/caption"]) == match["caption"].item()
    labels = pd.read_parquet(ds / "labels.parquet").set_index("sample_id")
    first = _records(dataset, "labels", 1)[0]
    assert _text(first["labels/l1_dominant"]) == labels.loc[_text(first["labels/sample_id"]), "l1_dominant"]
    plan = gpd.read_parquet(ds / "plan.parquet")
    sites = plan.drop_duplicates("site_id")["stratum"].value_counts()
    strata = {r["strata/stratum"]: r for r in _records(dataset, "strata")}
    assert {s: r["strata/sites"] for s, r in strata.items() if r["strata/sites"]} == sites.to_dict()


def test_geocroissant_and_rai_properties_state_the_data(exported: tuple[Path, Path]) -> None:
    ds, out = exported
    doc = json.loads((out / "croissant.json").read_text())
    assert set(doc["conformsTo"]) >= {"http://mlcommons.org/croissant/1.1", "http://mlcommons.org/croissant/geo/1.0"}
    plan = gpd.read_parquet(ds / "plan.parquet")
    chips = pd.read_parquet(ds / "chips.parquet")
    ok = chips[chips["status"] == "ok"]
    start = plan["start_datetime"].min().strftime("%Y-%m-%dT%H:%M:%SZ")
    end = plan["end_datetime"].max().strftime("%Y-%m-%dT%H:%M:%SZ")
    assert doc["temporalCoverage"] == f"{start}/{end}"
    assert doc["geocr:temporalResolution"] == {"@type": "QuantitativeValue", "value": 1, "unitText": "year"}
    assert doc["geocr:spatialResolution"]["value"] == ok["resolution"].iloc[0]
    assert doc["geocr:bandConfiguration"]["geocr:bandNameList"] == list(ok["bands"].iloc[0])
    import h3

    cells = {h3.cell_to_parent(c, 2) for c in plan["h3"]}
    assert {t.removeprefix("h3:") for t in doc["geocr:spatialIndex"]} == cells
    strategy = doc["geocr:samplingStrategy"]
    n_sites = plan["site_id"].nunique()
    assert strategy.startswith(f"Stratified H3 probability sample: {n_sites} sites at H3 resolution 9")
    assert f"({plan['stratum'].nunique()} strata hold sites" in strategy and "equal allocation" in strategy
    assert "machine" in doc["rai:dataAnnotationProtocol"]
    assert "captions: backend template" in " ".join(doc["rai:machineAnnotationTools"])
    assert doc["rai:dataBiases"] and doc["rai:dataCollectionTimeframe"] == [start, end]


def test_inclusion_probabilities_come_from_the_plan(full_ds: Path) -> None:
    plan = gpd.read_parquet(full_ds / "plan.parquet")
    probability = {s: 1.0 / (i + 2) for i, s in enumerate(sorted(plan["stratum"].unique()))}
    plan["inclusion_prob"] = plan["stratum"].map(probability)
    plan.to_parquet(full_ds / "plan.parquet", schema_version="1.1.0")
    assert invoke("export", full_ds, "--format", "croissant").exit_code == 0
    doc = json.loads((full_ds / "export" / "croissant" / "croissant.json").read_text())
    strata = next(r for r in doc["recordSet"] if r["@id"] == "strata")["data"]
    assert {r["strata/stratum"]: r["strata/inclusion_prob"] for r in strata if r["strata/sites"]} == probability
    low, high = min(probability.values()), max(probability.values())
    assert f"from {low:.3g} to {high:.3g}" in doc["geocr:samplingStrategy"]


def test_every_export_of_the_full_dataset_validates(full_ds: Path) -> None:
    assert invoke("export", full_ds, "--format", "all").exit_code == 0
    assert (full_ds / "export" / "croissant" / "croissant.json").is_file()
    assert_valid(full_ds)


def test_the_dataset_card_parses_and_carries_a_datasheet(full_ds: Path) -> None:
    from huggingface_hub import DatasetCard

    assert invoke("export", full_ds, "--format", "parquet").exit_code == 0
    card = DatasetCard.load(full_ds / "export" / "parquet" / "README.md")
    data = card.data.to_dict()
    assert data["annotations_creators"] == ["machine-generated"]
    assert data["license"] == "other"  # fetched by the test builder: no source collection recorded its licence
    assert data["size_categories"] == ["n<1K"] and "image-to-text" in data["task_categories"]
    assert data["source_datasets"] == ["stac:sentinel-2-l2a", "labels:modis-igbp@embedded"]
    assert [c["split"] for c in data["configs"][0]["data_files"]] == list(SPLITS)
    text = card.text
    for heading in ("## Datasheet", "### Motivation", "### Composition", "### Collection process", "### Uses"):
        assert heading in text
    plan = gpd.read_parquet(full_ds / "plan.parquet")
    assert f"{len(plan)} samples at {plan['site_id'].nunique()} sites" in text
    assert "To be written by the dataset's authors" in text.split("### Motivation")[1].split("###")[0]
