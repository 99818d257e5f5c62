"""``geosample fetch`` as a user meets it: flags, config, bad input, and the installed command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from stac.servers import FileServer, free_port
from untrusted import run_cli as run

from geosample.cli import cli

COLL = "sentinel-2-l2a"


def snapshot(ds: Path) -> dict[str, bytes]:
    return {str(p.relative_to(ds)): p.read_bytes() for p in sorted(ds.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def not_stac(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("web")
    (root / "page.html").write_text("<html><body>hello</body></html>")
    (root / "thing.json").write_text(json.dumps({"hello": "world"}))
    return str(root)


@pytest.fixture(scope="module")
def web(not_stac: str) -> FileServer:
    server = FileServer(Path(not_stac)).start()
    yield server
    server.stop()


S, C = ["--stac", "{api}"], ["--collection", COLL]
BAD = [
    (["--stac", "http://127.0.0.1:{dead}", *C], "cannot reach --stac"),
    (["--stac", "{web}/page.html", *C], "is not STAC"),
    (["--stac", "{web}/thing.json", *C], "is not STAC"),
    (["--stac", "{web}/nothing", *C], "answered HTTP 404"),
    (["--stac", "{tmp}/nowhere/catalog.json", *C], "no such file"),
    ([*S, "--collection", "sentinel-3"], "unknown --collection 'sentinel-3'"),
    ([*S, *C, "--assets", "red,B99"], "unknown asset key(s) 'B99'"),
    ([*S, *C, "--resolution", "0"], "--resolution 0.0 must be a positive number"),
    ([*S, *C, "--resolution", "-10"], "must be a positive number"),
    ([*S, *C, "--max-cloud", "120"], "--max-cloud 120.0 is out of range"),
    ([*S, *C, "--workers", "0"], "--workers 0 is out of range"),
    ([*S, *C, "--limit", "0"], "--limit 0 must be a positive"),
    ([*S, *C, "--preset", "sentinel"], "unknown --preset 'sentinel'; known presets: earth-search-s2"),
    ([*S, *C, "--sort", "random"], "'random' is not one of"),
    ([*S, *C, "--dask-scheduler", "nowhere"], "--dask-scheduler 'nowhere'"),
    (C, "no --stac given"),
    (S, "no --collection given"),
    (["--config", "{tmp}/bad.yaml"], "unknown fetch setting 'colour'"),
]


@pytest.mark.parametrize(("flags", "message"), BAD, ids=[" ".join(f) for f, _ in BAD])
def test_bad_input_is_one_line_exit_2_nothing_written(
    flags: list[str], message: str, planned_ds: Path, stac_api: str, web: FileServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    (tmp_path / "bad.yaml").write_text("fetch:\n  colour: red\n")
    before = snapshot(planned_ds)
    args = [f.format(dead=free_port(), web=web.url, tmp=tmp_path, api=stac_api) for f in flags]
    code, out, err = run(["fetch", str(planned_ds), *args, "--no-progress"], capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geosample: error: "), err
    assert message in lines[0]
    assert "Traceback" not in err
    assert snapshot(planned_ds) == before  # no chips/, no chips.parquet, geosample.yaml unchanged


def test_dataset_without_plan(tmp_path: Path, stac_api: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "DS").mkdir()
    code, _, err = run(["fetch", str(tmp_path / "DS"), "--stac", stac_api, "--collection", COLL], capsys)
    assert code == 2 and "has no plan.parquet; run 'geosample plan -o" in err
    assert list((tmp_path / "DS").iterdir()) == []
    code, _, err = run(["fetch", str(tmp_path / "missing"), "--stac", stac_api, "--collection", COLL], capsys)
    assert code == 2 and "does not exist" in err and not (tmp_path / "missing").exists()


def test_cli_fetches_and_summarises(planned_ds: Path, stac_api: str, tmp_path: Path) -> None:
    config = tmp_path / "fetch.yaml"
    config.write_text(f"fetch:\n  stac: {stac_api}\n  collection: [{COLL}]\n  assets: red,green,nir\n  workers: 2\n")
    result = CliRunner().invoke(
        cli, ["fetch", str(planned_ds), "--config", str(config), "--limit", "4", "--preview", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "fetch: 4 chip(s)" in result.output and "2 ok, 1 no_item, 1 failed" in result.output
    table = pd.read_parquet(planned_ds / "chips.parquet")
    assert len(table) == 4 and list(table["bands"].dropna().iloc[0]) == ["red", "green", "nir"]
    assert (planned_ds / "stac" / "catalog.json").exists()
    # The command line wins over the config; a second run resumes.
    result = CliRunner().invoke(cli, ["fetch", str(planned_ds), "--limit", "6", "-q", "--no-progress"])
    assert result.exit_code == 0 and result.output == ""
    assert len(pd.read_parquet(planned_ds / "chips.parquet")) == 6


def test_installed_command(planned_ds: Path, stac_api: str) -> None:
    exe = shutil.which("geosample") or str(Path(sys.executable).parent / "geosample")
    done = subprocess.run(
        [exe, "fetch", str(planned_ds), "--stac", stac_api, "--collection", COLL, "--assets", "red", "--limit", "2"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "fetch: 2 chip(s)" in done.stdout
    assert "--stac" in subprocess.run([exe, "fetch", "--help"], capture_output=True, text=True, check=True).stdout
