"""``geosample validate`` on the offline demo with every export, and on hand-corrupted copies of it.

Each corruption must give exit status 2 and one line that names the file; the
STAC structure (one root, no relative self link) is also checked with pystac
as an independent reader, and ``rustac validate`` runs on every STAC file
against the bundled schemas through a loopback proxy (tests/validation.py).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pystac
import pytest
from export.builders import run_main
from validation import RUSTAC, rustac_validate, schema_proxy

from geosample.validate import validate


def _stac_files(ds: Path) -> list[Path]:
    roots = [ds / "stac", ds / "export" / "stac"]
    return sorted(p for root in roots for p in root.rglob("*.json") if "stac_version" in json.loads(p.read_text()))


def test_the_offline_demo_validates(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["validate", demo], capsys)
    assert code == 0, out + err
    summary, *rest = out.strip().splitlines()  # no problem lines: the summary alone
    assert not rest
    for part in ("plan.parquet rows", "chip files", "STAC objects", "TrainingDML-AI", "Croissant files"):
        assert part in summary, summary
    assert "no problems" in summary and "mlcroissant" in err


def test_one_root_reaches_every_stac_object_and_no_self_link_is_relative(demo: Path) -> None:
    for root in (demo / "stac", demo / "export" / "stac"):
        files = {p.resolve() for p in root.rglob("*.json") if "stac_version" in json.loads(p.read_text())}
        catalog = pystac.Catalog.from_file(str(root / "catalog.json"))
        reached = {Path(catalog.get_self_href()).resolve()}
        for child in catalog.get_children():
            reached.add(Path(child.get_self_href()).resolve())
            reached |= {Path(i.get_self_href()).resolve() for i in child.get_items()}
        assert reached == files, sorted(str(p) for p in files - reached)[:3]
        children = {c.id for c in catalog.get_children()}
        if root.name == "stac" and root.parent == demo:
            assert children == {"landsat7-demo", f"{demo.name}-labels"}
        for path in files:
            for link in json.loads(path.read_text())["links"]:
                if link["rel"] == "self":
                    assert "://" in link["href"], (path, link)


@pytest.mark.skipif(not RUSTAC.exists(), reason="rustac is not installed (pip install rustac)")
def test_rustac_validates_every_stac_file_with_the_bundled_schemas(demo: Path, tmp_path: Path) -> None:
    files = _stac_files(demo)
    assert len(files) > 40
    with schema_proxy(tmp_path) as proxy:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda p: rustac_validate(p, proxy), files))
    failed = [(f, r.stdout + r.stderr) for f, r in zip(files, results, strict=True) if r.returncode != 0]
    assert not failed, failed[:2]
    assert not proxy.missing, proxy.missing  # every schema rustac asked for is bundled
    served = set(proxy.served)
    for name in ("projection/v2.0.0", "file/v2.1.0", "eo/v2.0.0", "label/v1.0.1", "ml-aoi/v0.2.0"):
        assert any(name in url for url in served), (name, served)


@pytest.mark.skipif(not RUSTAC.exists(), reason="rustac is not installed (pip install rustac)")
def test_rustac_refuses_a_broken_item(demo: Path, tmp_path: Path) -> None:
    item = next((demo / "stac" / "landsat7-demo").glob("89*.json"))
    document = json.loads(item.read_text())
    document["properties"]["proj:code"] = 32618  # a string such as "EPSG:32618" in projection v2.0.0
    item.write_text(json.dumps(document))
    with schema_proxy(tmp_path) as proxy:
        result = rustac_validate(item, proxy)
    assert result.returncode != 0, result.stdout  # the proxy's schemas really are applied
    assert "not valid under any of the schemas listed in the 'oneOf' keyword" in result.stdout + result.stderr


def _problems(ds: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code, out, err = run_main(["validate", ds], capsys)
    assert code == 2, out + err
    assert "Traceback" not in err
    return out.strip().splitlines()


def test_a_broken_item(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    item = next((demo / "stac" / "landsat7-demo").glob("89*.json"))
    document = json.loads(item.read_text())
    document["properties"]["proj:code"] = 32618
    del document["bbox"]
    item.write_text(json.dumps(document))
    lines = _problems(demo, capsys)
    rel = item.relative_to(demo).as_posix()
    assert any(line.startswith(f"{rel}: STAC 1.1.0 item schema") and "bbox" in line for line in lines), lines
    assert any(line.startswith(f"{rel}: projection extension schema") for line in lines), lines
    assert all(line.startswith(rel) for line in lines), lines


def test_a_chip_with_a_changed_byte(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chip = sorted((demo / "chips").glob("*.tif"))[3]
    data = bytearray(chip.read_bytes())
    data[len(data) // 2] ^= 0x01
    chip.write_bytes(bytes(data))
    lines = _problems(demo, capsys)
    assert lines == [
        f"chips/{chip.name}: does not match its sha256 in chips.parquet (the file changed after fetch); "
        f"run 'geosample fetch {demo}' again to re-fetch it"
    ] + [line for line in lines[1:] if "file:checksum" in line]  # the STAC asset's checksum says the same
    assert any(line.startswith("stac/landsat7-demo/") and "file:checksum" in line for line in lines)


@pytest.mark.parametrize(
    ("table", "column"), [("plan.parquet", "h3"), ("captions.parquet", "caption"), ("chips.parquet", "sha256")]
)
def test_a_missing_column(demo: Path, table: str, column: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = pq.read_table(demo / table)
    pq.write_table(data.drop_columns([column]), demo / table)
    lines = _problems(demo, capsys)
    assert any(line.startswith(f"{table}: has no column {column}") for line in lines), lines


def test_a_column_of_the_wrong_type(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = pq.read_table(demo / "labels.parquet")
    index = data.schema.get_field_index("valid_fraction")
    pq.write_table(data.set_column(index, "valid_fraction", data.column(index).cast("string")), demo / "labels.parquet")
    assert any("column valid_fraction is string, not float" in line for line in _problems(demo, capsys))


def test_optional_columns_of_other_stages_are_accepted(demo: Path) -> None:
    """Columns the contract lets other stages add (and unknown ones) pass; a wrongly typed known one does not."""
    import pyarrow as pa

    def put(table: pa.Table, name: str, value: object) -> pa.Table:
        column = pa.array([value] * table.num_rows)
        index = table.schema.get_field_index(name)
        return table.set_column(index, name, column) if index >= 0 else table.append_column(name, column)

    plan = pq.read_table(demo / "plan.parquet")
    plan = put(put(plan, "inclusion_prob", 0.01), "something_new", "x")
    pq.write_table(plan, demo / "plan.parquet")
    chips = pq.read_table(demo / "chips.parquet")
    chips = put(put(chips, "nodata_fraction", 0.0), "observed", '{"water": 0.5, "vegetation": 0.25}')
    pq.write_table(chips, demo / "chips.parquet")
    assert validate(demo).ok, validate(demo).problems
    chips = chips.set_column(chips.schema.get_field_index("observed"), "observed",
                             pa.array(['{"water": 0.9, "bare": 0.5}'] * chips.num_rows))  # fmt: skip
    pq.write_table(chips, demo / "chips.parquet")
    assert [p.path for p in validate(demo).problems] == ["chips.parquet"]


def test_a_relative_self_link_and_an_unlinked_item(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    collection = demo / "stac" / "labels" / "collection.json"
    document = json.loads(collection.read_text())
    document["links"].append({"rel": "self", "href": "./collection.json"})
    document["links"] = [link for link in document["links"] if not link["href"].endswith(f"{_first_label(demo)}.json")]
    collection.write_text(json.dumps(document))
    lines = _problems(demo, capsys)
    assert any(line.startswith("stac/labels/collection.json: has a relative self link") for line in lines), lines
    assert any(f"stac/labels/items/{_first_label(demo)}.json: is not reached from stac/catalog.json" in line
               for line in lines), lines  # fmt: skip


def _first_label(ds: Path) -> str:
    return sorted((ds / "stac" / "labels" / "items").glob("*.json"))[0].stem


def test_a_broken_croissant_file(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = demo / "export" / "croissant" / "croissant.json"
    document = json.loads(path.read_text())
    samples = next(r for r in document["recordSet"] if r["@id"] == "samples")
    samples["field"][1]["source"]["extract"]["column"] = "no_such_column"
    path.write_text(json.dumps(document))
    lines = _problems(demo, capsys)
    assert lines and all(line.startswith("export/croissant/croissant.json: mlcroissant") for line in lines), lines


def test_without_mlcroissant_the_bundled_checks_run(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlcroissant" else real(name, *a))
    report = validate(demo)
    assert report.ok and "Croissant checked with bundled JSON-LD checks" in report.notes
    path = demo / "export" / "croissant" / "croissant.json"
    document = json.loads(path.read_text())
    document["distribution"][1]["sha256"] = "0" * 64
    samples = next(r for r in document["recordSet"] if r["@id"] == "samples")
    samples["field"][1]["source"]["extract"]["column"] = "no_such_column"
    del document["license"]
    path.write_text(json.dumps(document))
    messages = [p.message for p in validate(demo).problems]
    assert any("has no license" in m for m in messages), messages
    assert any("does not match its sha256" in m for m in messages), messages
    assert any("extracts column 'no_such_column'" in m for m in messages), messages


def test_a_broken_trainingdml_document(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = demo / "trainingdml.json"
    document = json.loads(path.read_text())
    document["data"][0]["labels"][0]["type"] = "AI_Nonsense"
    path.write_text(json.dumps(document))
    lines = _problems(demo, capsys)
    assert any(line.startswith("trainingdml.json: TrainingDML-AI 1.0 schema: at data/0") for line in lines), lines


def test_not_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["validate", tmp_path / "nowhere"], capsys)
    assert code == 2 and err.startswith("geosample: error: dataset folder") and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    code, out, _ = run_main(["validate", tmp_path / "empty"], capsys)
    assert code == 2 and out.startswith("plan.parquet: missing")


def test_every_plan_problem_is_listed_as_every_stage_sees_it(tiny_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """validate lists what the one plan validator finds, all of it; a stage stops at the first and counts the rest."""
    import geopandas as gpd

    plan = gpd.read_parquet(tiny_ds / "plan.parquet")
    ids = plan["sample_id"].tolist()
    plan.loc[0, "lon"] = float("nan")
    plan.loc[1, "sample_id"] = "../escaped"
    plan.loc[2, "chip_size_m"] = -5.0
    plan.loc[2, "h3"] = "not-a-cell"
    plan.to_parquet(tiny_ds / "plan.parquet")
    lines = _problems(tiny_ds, capsys)
    fix = "; fix the plan or make a new one with 'geosample plan'"
    assert sorted(lines) == sorted([
        "plan.parquet: row 1 (sample_id '../escaped'): sample_id contains a path separator; sample_ids must be "
        f"1 to 128 characters from A-Z a-z 0-9 . _ - +, starting with a letter or digit{fix}",
        f"plan.parquet: row 0 (sample_id '{ids[0]}'): lon nan is not a finite number{fix}",
        f"plan.parquet: row 2 (sample_id '{ids[2]}'): chip_size_m -5 is outside 1..1e+06 m{fix}",
        f"plan.parquet: row 2 (sample_id '{ids[2]}'): h3 'not-a-cell' is not a valid H3 cell (leave it empty to "
        f"recompute it){fix}",
    ])  # fmt: skip
    code, _, err = run_main(["caption", tiny_ds, "--no-progress"], capsys)
    first = next(line for line in lines if "row 1" in line).removeprefix("plan.parquet: ").removesuffix(fix)
    assert code == 2 and f"{tiny_ds / 'plan.parquet'}: {first} (3 more problem(s) after it){fix}" in err, err


def test_every_unsafe_manifest_row_is_listed(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """validate lists every unsafe row of chips.parquet (reading none of those files); a stage stops at the first."""
    chips = pq.read_table(demo / "chips.parquet").to_pandas()
    chips.loc[0, "path"] = "/home/me/.ssh/id_rsa"
    chips.loc[1, "path"] = "chips/../../secret.tif"
    chips.loc[2, "preview"] = "chips/../x.png"
    chips.loc[3, "collection"] = "../up"
    chips.to_parquet(demo / "chips.parquet", index=False)
    lines = _problems(demo, capsys)
    fix = f"; the manifest is damaged or was made elsewhere: delete it and run 'geosample fetch {demo}' again"
    assert sorted(line for line in lines if line.startswith("chips.parquet:")) == sorted(
        f"chips.parquet: row {row} (sample_id '{chips['sample_id'].iloc[row]}'): {what}{fix}"
        for row, what in [
            (3, "collection '../up' contains a path separator"),
            (0, "path '/home/me/.ssh/id_rsa' is not a file under chips/"),
            (1, "path 'chips/../../secret.tif' is not a file under chips/"),
            (2, "preview 'chips/../x.png' is not a file under chips/"),
        ]
    )
    assert not [line for line in lines if line.startswith(("/home", "chips/.."))]  # no file check on those
    code, _, err = run_main(["export", demo, "-f", "parquet"], capsys)
    assert code == 2 and "row 3: collection '../up'" in err and "(3 more problem(s) after it)" in err, err


def test_an_asset_outside_the_dataset_is_reported_not_read(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    item = next((demo / "stac" / "landsat7-demo").glob("89*.json"))
    document = json.loads(item.read_text())
    key = next(iter(document["assets"]))
    document["assets"][key]["href"] = "/etc/hostname"
    item.write_text(json.dumps(document))
    rel = item.relative_to(demo).as_posix()
    assert _problems(demo, capsys) == [f"{rel}: asset {key!r} points at '/etc/hostname', outside the dataset folder"]
