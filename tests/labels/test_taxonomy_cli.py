"""``geosample taxonomy validate|show|export`` as a user meets them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from rdflib import SKOS, Graph
from untrusted import run_cli as run

from geosample.labels import load_taxonomy

SHIPPED = Path(__file__).parents[2] / "taxonomy"
DATA = Path(__file__).parents[1] / "data" / "taxonomy"


def test_validate_shipped_taxonomies(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        ["taxonomy", "validate", str(SHIPPED / "geosample-lulc.yaml"), str(SHIPPED / "geosample-events.yaml")], capsys
    )
    assert code == 0 and not err
    lulc, events = load_taxonomy(), load_taxonomy("geosample-events")
    assert out.splitlines() == [
        f"ok: geosample-lulc@1.0.0, {len(lulc)} classes "
        f"({'/'.join(str(len(lulc.codes_at(level))) for level in lulc.levels)} per level), "
        "schemes: esa-worldcover, io-lulc, modis-igbp, corine, corine-raster, dynamic-world, osm",
        f"ok: geosample-events@1.0.0, {len(events)} classes "
        f"({'/'.join(str(len(events.codes_at(level))) for level in events.levels)} per level), "
        "schemes: esa-worldcover, io-lulc, modis-igbp, corine, corine-raster, dynamic-world, osm, events",
    ]
    assert run(["taxonomy", "validate", "geosample-events"], capsys)[0] == 0  # a built-in id works too


def test_validate_broken_copy_prints_file_line_problems_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (SHIPPED / "geosample-lulc.yaml").read_text()
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace('color: "#ff4d4d"', 'color: "#ff4d4"').replace('"122": "1.2.2"', '"122": "X"'))
    good = tmp_path / "mini.yaml"
    shutil.copy(DATA / "mini.yaml", good)
    code, out, err = run(["taxonomy", "validate", str(broken), str(good), str(tmp_path / "gone.yaml")], capsys)
    lines = out.splitlines()
    assert code == 2 and "Traceback" not in out + err
    colour = next(i for i, line in enumerate(broken.read_text().splitlines(), 1) if '"#ff4d4"' in line)
    assert lines[0] == f"{broken}:{colour}: color '#ff4d4' is not valid; write it as \"#rrggbb\""
    assert lines[1].startswith(f"{broken}:") and "corine 122 -> 'X'" in lines[1]
    assert lines[2].startswith("ok: mini@0.1.0")
    assert lines[3] == f"{tmp_path / 'gone.yaml'}: file does not exist; check the path"


def test_show_tree_and_level(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["taxonomy", "show"], capsys)
    lulc = load_taxonomy()
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("geosample-lulc@1.0.0")
    assert lines[1:] == [f"{'  ' * c.depth}{c.code}  {c.name}" for c in lulc.classes.values()]
    code, out, _ = run(["taxonomy", "show", "geosample-events", "--level", "l1"], capsys)
    assert out.splitlines()[1:] == [f"  {c}  {load_taxonomy('geosample-events')[c].name}" for c in "12345678"] + [
        "  E  Hazard and disturbance footprints  [geosample-events]"
    ]


def test_show_crosswalk_rolled_up_to_a_level(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["taxonomy", "show", str(DATA / "mini.yaml"), "--scheme", "toy", "--level", "coarse"], capsys)
    rows = [line.split() for line in out.splitlines()[2:]]
    assert code == 0 and rows == [
        ["1", "built", "->", "A", "Built"],
        ["2", "trees", "->", "B", "Green"],
        ["3", "grass", "->", "B", "Green"],
        ["7", "plants", "->", "B", "Green"],
    ]


def test_export_each_format_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lulc = load_taxonomy()
    out = tmp_path / "out" / "lulc.ttl"
    code, stdout, _ = run(["taxonomy", "export", "--format", "skos", "-o", str(out)], capsys)
    assert code == 0 and "wrote" in stdout
    graph = Graph().parse(out, format="turtle")
    assert len(set(graph.subjects(predicate=SKOS.notation))) == len(lulc)
    code, _, _ = run(
        ["taxonomy", "export", "geosample-events", "--format", "tdml", "--level", "l1", "-o", str(tmp_path / "c.json")],
        capsys,
    )
    doc = json.loads((tmp_path / "c.json").read_text())
    assert code == 0 and [c["key"] for c in doc["classes"]] == [*"12345678", "E"]
    assert doc["classificationScheme"] == load_taxonomy("geosample-events").uri and doc["numberOfClasses"] == 9
    code, _, _ = run(["taxonomy", "export", "--format", "csv", "-o", str(tmp_path / "l.csv")], capsys)
    assert list(pd.read_csv(tmp_path / "l.csv", dtype=str)["code"]) == list(lulc.classes)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["c.json", "l.csv", "lulc.ttl", "out"]  # no temp files


def test_export_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["taxonomy", "export", str(DATA / "mini.yaml"), "--format", "skos", "--skos-format", "json-ld"], capsys
    )
    assert code == 0 and json.loads(out)["@graph"][0]["@type"] == "skos:ConceptScheme"
    code, out, _ = run(
        ["taxonomy", "export", str(DATA / "mini.yaml"), "--format", "tdml", "--tdml-version", "1.0"], capsys
    )
    assert json.loads(out)["classes"][0] == {"key": "A", "value": "Built"}


BAD = [
    (["taxonomy", "show", "no-such-taxonomy"], "unknown taxonomy 'no-such-taxonomy'"),
    (["taxonomy", "show", "missing.yaml"], "taxonomy file missing.yaml does not exist"),
    (["taxonomy", "show", "--level", "l7"], "unknown level 'l7'"),
    (["taxonomy", "show", "--scheme", "glc"], "no crosswalk for scheme 'glc'"),
    (["taxonomy", "export", "--format", "skos", "--level", "l2"], "--level applies to --format tdml only"),
    (["taxonomy", "export", "--format", "rdf"], "'rdf' is not one of"),
    (["taxonomy", "export", "geosample-lulc@3.0.0", "--format", "csv"], "is version 1.0.0, not 3.0.0"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("geosample: error: ") and message in lines[0], err


def test_invalid_taxonomy_is_one_line_and_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((DATA / "mini.yaml").read_text().replace('code: "B.2"', 'code: "B.1"'))
    code, _, err = run(["taxonomy", "export", str(bad), "--format", "csv", "-o", str(tmp_path / "x.csv")], capsys)
    assert code == 2 and err.count("\n") == 1 and f"{bad}:" in err and "duplicate code 'B.1'" in err
    assert not (tmp_path / "x.csv").exists()


def test_installed_command_smoke(tmp_path: Path) -> None:
    exe = shutil.which("geosample") or pytest.skip("geosample is not installed as a command")
    proc = subprocess.run(
        [exe, "taxonomy", "validate", "geosample-lulc", "geosample-events"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and proc.stdout.count("ok: ") == 2, proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nid: y\n")
    proc = subprocess.run([exe, "taxonomy", "validate", str(bad)], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and f"{bad}:2: duplicate key 'id'" in proc.stdout
