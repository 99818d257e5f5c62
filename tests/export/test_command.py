"""``geosample export`` as a user meets it: flags, configs, re-runs, the record in geosample.yaml, bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from export.builders import invoke, run_main

import geosample.export
from geosample.export import FORMATS, ExportConfig


def _state(ds: Path) -> dict[str, bytes]:
    return {str(p.relative_to(ds)): p.read_bytes() for p in sorted(ds.rglob("*")) if p.is_file()}


BAD_INPUT = [
    (["--format", "zip"], "'zip' is not one of webdataset"),
    ([], "no export format given"),
    (["-f", "parquet", "--split", "0.8,0.3,0.1"], "sum to 1"),
    (["-f", "parquet", "--split", "0.9,0.1"], "three numbers"),
    (["-f", "parquet", "--split-buffer-m", "-5"], "--split-buffer-m -5.0 must be a distance"),
    (["-f", "parquet", "--split-block-km", "0"], "--split-block-km 0.0 must be a positive size"),
    (["-f", "parquet", "--split-block-km", "50", "--split-res", "3"], "not both"),
    (["-f", "parquet", "--split-res", "16"], "out of range"),
    (["-f", "parquet", "--shard-size", "0"], "positive number of MB"),
    (["-f", "gpkg", "-o", "{ds}"], "would replace the dataset folder"),
    (["-f", "gpkg", "-o", "{ds}/plan.parquet"], "is a file"),
    (["-f", "tdml"], "run 'geosample label"),
    (["-f", "parquet", "--config", "{ds}/missing.yaml"], "does not exist"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_INPUT, ids=[" ".join(f) or "none" for f, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_nothing_written(
    flags: list[str], message: str, planned_ds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _state(planned_ds)
    code, _, err = run_main(["export", planned_ds, *[f.format(ds=planned_ds) for f in flags]], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geosample: error: ") and "Traceback" not in err
    assert message in lines[0]
    assert _state(planned_ds) == before


def test_missing_dataset_and_missing_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["export", tmp_path / "nowhere", "-f", "parquet"], capsys)
    assert code == 2 and "does not exist" in err and "geosample plan" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_main(["export", tmp_path / "empty", "-f", "parquet"], capsys)
    assert code == 2 and "has no plan.parquet" in err
    assert list((tmp_path / "empty").iterdir()) == []


def test_tables_made_for_another_plan_are_refused(full_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = pd.read_parquet(full_ds / "labels.parquet")
    labels.loc[0, "sample_id"] = "8f0000000000000-2560m"
    labels.to_parquet(full_ds / "labels.parquet")
    code, _, err = run_main(["export", full_ds, "-f", "parquet"], capsys)
    assert code == 2 and "labels.parquet names 1 sample(s) that plan.parquet does not have" in err
    assert "--overwrite" in err and not (full_ds / "export").exists()


def test_a_missing_chip_file_is_named(full_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = pd.read_parquet(full_ds / "chips.parquet")["path"].dropna().iloc[0]
    (full_ds / path).unlink()
    code, _, err = run_main(["export", full_ds, "-f", "webdataset"], capsys)
    assert code == 2 and path in err and "geosample fetch" in err
    assert not (full_ds / "export").exists()


def test_record_in_geosample_yaml_and_reruns(full_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke("export", full_ds, "-f", "parquet", "--seed", "3").exit_code == 0
    assert invoke("export", full_ds, "-f", "gpkg").exit_code == 0
    config = yaml.safe_load((full_ds / "geosample.yaml").read_text())
    assert {"plan", "label", "export"} <= set(config)
    assert set(config["export"]) == {"parquet", "gpkg"}
    recorded = config["export"]["parquet"]
    assert recorded["seed"] == 3 and recorded["split"] == [0.8, 0.1, 0.1] and recorded["split_res_used"] == 5
    assert recorded["records"] == 24 and sum(recorded["splits"].values()) == 24
    assert recorded["out"] == str(full_ds / "export" / "parquet")
    assert invoke("export", full_ds, "-f", "parquet", "--seed", "3").exit_code == 0  # same settings: re-export
    before = _state(full_ds / "export" / "parquet")
    code, _, err = run_main(["export", full_ds, "-f", "parquet", "--seed", "4"], capsys)
    assert code == 2 and "--overwrite" in err
    assert _state(full_ds / "export" / "parquet") == before
    assert invoke("export", full_ds, "-f", "parquet", "--seed", "4", "--overwrite").exit_code == 0
    assert yaml.safe_load((full_ds / "geosample.yaml").read_text())["export"]["parquet"]["seed"] == 4
    assert not [p for p in (full_ds / "export").iterdir() if p.name.startswith(".")]  # no staging left behind


def test_config_file_and_every_format(full_ds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {"out": str(full_ds), "export": {"format": "all", "split": "0.6,0.2,0.2", "shard-size": 50, "seed": 9}}
        )
    )
    result = invoke("export", full_ds, "--config", config, "--seed", "1", "-o", "exports")
    assert result.exit_code == 0, result.output
    for fmt in FORMATS:
        assert f"export {fmt}:" in result.output
        assert any((tmp_path / "exports" / fmt).iterdir())
    recorded = yaml.safe_load((full_ds / "geosample.yaml").read_text())["export"]
    assert set(recorded) == set(FORMATS)
    assert all(r["split"] == [0.6, 0.2, 0.2] and r["seed"] == 1 and r["shard_size"] == 50 for r in recorded.values())


def test_python_api_and_the_callable_package(planned_ds: Path) -> None:
    result = geosample.export(planned_ds, format="webdataset", split="0.5,0.5,0")
    assert result.records == 24 and result.splits["test"] == 0 and result.images == 0
    assert result.missing and "dataset.json" in result.files
    again = geosample.export.export(planned_ds, config=ExportConfig(format="gpkg", split_res=3))
    assert again.split_res == 3 and again.path == planned_ds / "export" / "gpkg"


def test_installed_command_smoke(full_ds: Path) -> None:
    exe = shutil.which("geosample") or pytest.skip("geosample is not installed as a command")
    proc = subprocess.run([exe, "export", str(full_ds), "-f", "tdml"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "export tdml: 24 records" in proc.stdout and (full_ds / "export" / "tdml" / "trainingdml.json").is_file()
    proc = subprocess.run([exe, "stats", str(full_ds), "-q"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout == "" and (full_ds / "report" / "index.html").is_file()


def test_dataset_whose_chips_all_failed(planned_ds: Path) -> None:
    from export.builders import write_chips

    write_chips(planned_ds, no_item=24)
    result = invoke("export", planned_ds, "-f", "parquet", "-f", "stac")
    assert result.exit_code == 0, result.output
    assert "0 images" in result.output and "none fetched yet" in result.output


def test_an_unreadable_chip_stops_the_export_and_leaves_nothing(
    full_ds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row = pd.read_parquet(full_ds / "chips.parquet").dropna(subset=["path"]).iloc[-1]
    (full_ds / row["path"]).write_bytes(b"not a GeoTIFF")
    (full_ds / row["preview"]).unlink()  # so the parquet export renders the chip itself
    code, _, err = run_main(["export", full_ds, "-f", "parquet"], capsys)
    assert code == 2 and err.count("\n") == 1 and row["path"] in err and "geosample fetch" in err
    assert not (full_ds / "export").exists()
    assert "export" not in yaml.safe_load((full_ds / "geosample.yaml").read_text())
