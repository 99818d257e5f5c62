"""The caption stage: files, schema, resume and overwrite, warnings, the checks report, bad input."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from untrusted import run_cli as run

from geosample.captions import caption
from geosample.captions.caption import SCHEMA
from geosample.captions.template import FOCUSES
from geosample.errors import DatasetError, PluginError

pytestmark = pytest.mark.filterwarnings("ignore:.*has no chips.parquet:geosample.errors.DataQualityWarning")


def test_files_schema_section_and_report(labelled_ds: Path) -> None:
    table = caption(labelled_ds, progress=False)
    plan = pd.read_parquet(labelled_ds / "plan.parquet")
    written = pq.read_table(labelled_ds / "captions.parquet")
    assert written.schema.remove_metadata() == SCHEMA
    assert written.column_names[:6] == ["sample_id", "caption_index", "caption", "backend", "model", "prompt_sha256"]
    frame = written.to_pandas()
    assert list(frame["sample_id"].unique()) == list(plan["sample_id"])  # plan order
    assert (frame.groupby("sample_id")["caption_index"].apply(list) == [[0, 1, 2, 3, 4]] * len(plan)).all()
    assert list(frame["caption"]) == list(table["caption"]) and list(frame["sample_id"]) == list(table["sample_id"])
    section = yaml.safe_load((labelled_ds / "geosample.yaml").read_text())["caption"]
    assert section["backend_used"] == "template" and section["n"] == 5 and section["seed"] == 0
    assert section["prompt_sha256"] == frame["prompt_sha256"].iloc[0] and section["n_samples"] == len(plan)
    report = json.loads((labelled_ds / "report" / "captions.json").read_text())
    words = frame["caption"].map(lambda c: len(c.split()))
    assert report["length"]["words"]["mean"] == pytest.approx(words.mean(), abs=0.01)
    assert report["length"]["chars"]["max"] == frame["caption"].str.len().max()
    assert set(report["length"]["by_focus"]) == set(FOCUSES)
    assert set(frame["evidence"]) <= {"map", "none"} and (frame[frame["focus"] == "place"]["evidence"] == "none").all()
    # Near-duplicates recomputed here: word-set Jaccard over every pair of a sample's captions.
    pairs = [
        len(set(re.findall(r"\w+", a.lower())) & set(re.findall(r"\w+", b.lower())))
        / len(set(re.findall(r"\w+", a.lower())) | set(re.findall(r"\w+", b.lower())))
        for _, g in frame.groupby("sample_id")
        for a, b in itertools.combinations(g["caption"], 2)
    ]
    assert report["near_duplicates"]["pairs"] == len(pairs) == 10 * len(plan)
    assert report["near_duplicates"]["mean_similarity"] == pytest.approx(np.mean(pairs), abs=1e-4)
    assert report["near_duplicates"]["near_duplicate_pairs"] == sum(p >= 0.7 for p in pairs) == 0
    assert report["hallucination"]["flagged_captions"] == 0 and report["attribution"].startswith("Place names")


def test_limit_resume_no_op_and_overwrite(labelled_ds: Path) -> None:
    path = labelled_ds / "captions.parquet"
    first = caption(labelled_ds, limit=5, progress=False)
    assert first["sample_id"].nunique() == 5 and first.attrs["run"]["captioned"] == 5
    more = caption(labelled_ds, limit=10, progress=False)
    assert more.attrs["run"] == {"captioned": 5, "skipped": 5, "failed": 0}
    key = ["sample_id", "caption_index", "caption"]
    assert more.head(25)[key].equals(first[key])
    stamp = path.stat().st_mtime_ns
    again = caption(labelled_ds, limit=10, progress=False)
    assert again.attrs["run"]["captioned"] == 0 and path.stat().st_mtime_ns == stamp
    with pytest.raises(DatasetError, match="other settings.*--overwrite"):
        caption(labelled_ds, limit=10, seed=1, progress=False)
    assert path.stat().st_mtime_ns == stamp
    replaced = caption(labelled_ds, limit=3, seed=1, overwrite=True, progress=False)
    seeds = replaced.groupby("sample_id", sort=False)["seed"].first()
    assert list(seeds) == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert not replaced.head(15)["caption"].equals(first.head(15)["caption"])


def test_without_labels_one_warning_line_and_fewer_facts(labelled_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (labelled_ds / "labels.parquet").unlink()
    code, out, err = run(["caption", str(labelled_ds), "--no-progress"], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("geosample: warning:")]
    about_labels = [line for line in warnings if "labels.parquet" in line]
    assert len(about_labels) == 1 and "without land-cover classes" in about_labels[0]
    table = pd.read_parquet(labelled_ds / "captions.parquet")
    plan = pd.read_parquet(labelled_ds / "plan.parquet").set_index("sample_id")
    # Without labels, the cells of the embedded MODIS map under the chip (the plan's centre class among them).
    overview = table[table["focus"] == "overview"].set_index("sample_id")["caption"]
    for sample_id, text in overview.items():
        assert "MODIS" in text and plan.loc[sample_id, "landcover"].replace("_", " ")[:8] in text
    report = json.loads((labelled_ds / "report" / "captions.json").read_text())
    assert report["hallucination"]["checked"] is False


class _Careless:
    """A backend that names rice fields and a lake in every third sample, whatever the labels."""

    name = "careless"
    model = "careless-1"
    prompt_sha256 = hashlib.sha256(b"careless").hexdigest()

    def caption(self, contexts, n):
        out = []
        for i, context in enumerate(contexts):
            first = context.labels_at("l3")[0].name
            # Vineyards and airports: classes that neither the MODIS labels nor the MODIS surroundings can give.
            extra = " Vineyards border an airport." if i % 3 == 0 else " It lies far from Lake Placid."
            out.append([f"Mostly {first}.{extra}"] + [f"Caption {k} about {first}." for k in range(1, n)])
        return out


def test_hallucination_flag_names_the_samples(labelled_ds: Path) -> None:
    table = caption(labelled_ds, backend=_Careless(), progress=False)
    labels = pd.read_parquet(labelled_ds / "labels.parquet").set_index("sample_id")
    order = list(table["sample_id"].unique())

    def covered(code: str, finest: list[str]) -> bool:
        # A label is the class itself, a finer class, or a coarser one the source could not resolve.
        return any(c == code or c.startswith(code + ".") or code.startswith(c + ".") for c in finest)

    expected = [
        s
        for i, s in enumerate(order)
        if i % 3 == 0
        and not (covered("2.2.1", list(labels.loc[s, "l3"])) and covered("1.2.4", list(labels.loc[s, "l3"])))
    ]
    report = table.attrs["report"]["hallucination"]
    assert expected and report["sample_ids"] == expected
    assert report["flagged_captions"] == len(expected)
    assert set(report["terms"]) <= {"vineyards", "airport"} and report["terms"]
    assert all(e["caption_index"] == 0 for e in report["examples"])


class _Short:
    name, model, prompt_sha256 = "short", "short-1", "0" * 64

    def caption(self, contexts, n):
        return [["only one"] for _ in contexts]


def test_a_backend_answering_the_wrong_number_of_captions_is_an_error(labelled_ds: Path) -> None:
    with pytest.raises(PluginError, match="answered sample .* with 1 captions .* expected 5"):
        caption(labelled_ds, backend=_Short(), progress=False)
    assert not (labelled_ds / "captions.parquet").exists()


def test_config_file_and_flags_override_it(
    labelled_ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "caption.yaml"
    config.write_text(yaml.safe_dump({"caption": {"n": 3, "seed": 2, "limit": 4}}))
    code, out, err = run(["caption", str(labelled_ds), "--config", str(config), "-n", "2", "--no-progress"], capsys)
    assert code == 0, err
    assert "captioned 4 samples" in out and "near-duplicate caption pairs: 0 of 4" in out
    table = pd.read_parquet(labelled_ds / "captions.parquet")
    assert len(table) == 8 and set(table["seed"]) == {2}
    section = yaml.safe_load((labelled_ds / "geosample.yaml").read_text())["caption"]
    assert (section["n"], section["seed"], section["limit"]) == (2, 2, 4)


BAD_INPUT = [
    (["--backend", "nonesuch"], "unknown caption backend 'nonesuch'; installed backends:"),
    (["-n", "0"], "-n 0 is out of range 1–20"),
    (["-n", "21"], "-n 21 is out of range"),
    (["--limit", "0"], "--limit 0 is out of range"),
    (["--endpoint", "http://localhost:1/v1"], "does not use --endpoint"),
    (["--config", "{d}/bad.yaml"], "unknown caption setting 'colour'"),
    (["--concurrency", "0", "--backend", "openai"], "--concurrency 0 is out of range"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_INPUT, ids=[" ".join(f) for f, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_nothing_written(
    flags: list[str], message: str, labelled_ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.yaml").write_text("caption:\n  colour: red\n")
    before = {p: p.stat().st_mtime_ns for p in labelled_ds.rglob("*")}
    code, _, err = run(["caption", str(labelled_ds), *[f.format(d=tmp_path) for f in flags]], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geosample: error: ") and message in lines[0], err
    assert {p: p.stat().st_mtime_ns for p in labelled_ds.rglob("*")} == before


def test_dataset_without_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["caption", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "does not exist; make it with 'geosample plan" in err and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    code, _, err = run(["caption", str(tmp_path / "empty")], capsys)
    assert code == 2 and "has no plan.parquet" in err
    assert list((tmp_path / "empty").iterdir()) == []


def test_unreadable_captions_table(labelled_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (labelled_ds / "captions.parquet").write_text("not parquet")
    code, _, err = run(["caption", str(labelled_ds)], capsys)
    assert code == 2 and "captions.parquet cannot be read" in err and "delete it" in err and err.count("\n") == 1


def test_installed_command_smoke(labelled_ds: Path) -> None:
    exe = shutil.which("geosample") or pytest.skip("geosample is not installed as a command")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    proc = subprocess.run(
        [exe, "caption", str(labelled_ds), "--limit", "2", "--no-progress"],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "captioned 2 samples" in proc.stdout
    proc = subprocess.run([exe, "caption", str(labelled_ds), "--backend", "openai", "--model", "m"],
                          capture_output=True, text=True, check=False, env=env)  # fmt: skip
    assert proc.returncode == 2 and "OPENAI_API_KEY" in proc.stderr and "Traceback" not in proc.stderr
