"""``export --format tdml``: the TrainingDML-AI document, validated offline, with splits and resolvable data URLs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads
import pytest
from export.builders import invoke, run_main
from schemas import validate

TRAINING_TYPE = {"train": "training", "validation": "validation", "test": "test"}


def test_document_validates_and_carries_splits_and_chips(full_ds: Path, tmp_path: Path) -> None:
    out = tmp_path / "somewhere" / "tdml"
    result = invoke("export", full_ds, "-f", "tdml", "-o", out, "--seed", "2")
    assert result.exit_code == 0, result.output
    assert invoke("export", full_ds, "-f", "parquet", "--seed", "2").exit_code == 0
    document = json.loads((out / "trainingdml.json").read_text())
    validate(document, "trainingdml-ai-1.0/ai_eoTrainingDataset.json")
    for entry in document["data"]:
        validate(entry, "trainingdml-ai-1.1/ai_eoTrainingData.json")
    labels = pd.read_parquet(full_ds / "labels.parquet").set_index("sample_id")
    chips = pd.read_parquet(full_ds / "chips.parquet").set_index("sample_id")
    table = pads.dataset(full_ds / "export" / "parquet" / "data").to_table(columns=["sample_id", "split"]).to_pandas()
    split = table.set_index("sample_id")["split"]
    assert document["amountOfTrainingData"] == len(document["data"]) == len(labels)
    for entry in document["data"]:
        sid = entry["id"]
        assert entry["trainingType"] == TRAINING_TYPE[split[sid]]
        classes = {label["class"] for label in entry["labels"]}
        assert classes == set(labels.loc[sid, "l1"]) | set(labels.loc[sid, "l2"]) | set(labels.loc[sid, "l3"])
        (url,) = entry["dataURL"]
        target = (out / url.split("#")[0]).resolve()
        if chips.loc[sid, "status"] == "ok":
            assert target == (full_ds / chips.loc[sid, "path"]).resolve()
        else:
            assert target == (full_ds / "plan.parquet").resolve() and url.endswith(f"#{sid}")


def test_dataset_without_labels_is_refused(planned_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["export", planned_ds, "-f", "tdml"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("geosample: error: ") and "geosample label" in err
    assert not (planned_ds / "export").exists()
