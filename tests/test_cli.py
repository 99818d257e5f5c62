"""The CLI as a user meets it: flags, configs, bad input and the installed command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
import yaml
from untrusted import run_cli

from geosample.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::geosample.errors.CapacityWarning")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """:func:`untrusted.run_cli`, with ``plan``'s progress bar off."""
    return run_cli([*args, "--no-progress"] if args and args[0] == "plan" else args, capsys)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "junk.geojson").write_text("this is not geojson")
    gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)]).to_file(tmp_path / "nocrs.shp")
    gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 0), (1, 1)])], crs=4326).to_file(tmp_path / "line.geojson")
    gpd.GeoDataFrame(geometry=[shapely.Polygon()], crs=4326).to_file(tmp_path / "empty.gpkg")
    (tmp_path / "bad.yaml").write_text("plan: [1, 2\n")
    (tmp_path / "unknown.yaml").write_text("plan:\n  samples: 10\n  colour: red\n")
    (tmp_path / "weights.csv").write_text("region,weight\nnorth,1\n")
    return tmp_path


BAD_INPUT = [
    (["--aoi", "{d}/missing.geojson"], "does not exist"),
    (["--aoi", "{d}/junk.geojson"], "cannot read AOI file"),
    (["--aoi", "{d}/nocrs.shp"], "has no CRS"),
    (["--aoi", "{d}/line.geojson"], "no polygon area"),
    (["--aoi", "{d}/empty.gpkg"], "no features with geometry"),
    (["--aoi", "bbox:-30,-10,-20,0"], "--no-land-only"),
    (["--aoi", "bbox:10,50,5,40"], "south 50.0 not below north 40.0"),
    (["--aoi", "bbox:1,2,3"], "bbox:W,S,E,N"),
    (["--aoi", "QQQ,FRA"], "unknown ISO 3166 alpha-3 code(s) in --aoi: QQQ"),
    (["--strata", "continent,elevation"], "unknown stratum 'elevation'"),
    (["--strata", "dem={d}/missing.tif"], "does not exist"),
    (["--res", "16"], "--res 16 is out of range 0–15"),
    (["--res", "-1"], "--res -1 is out of range"),
    (["--parent-res", "10", "--res", "8"], "finer than --res 8"),
    (["-n", "0"], "--samples 0 is out of range"),
    (["-n", "500", "--aoi", "LUX", "--parent-res", "5"], "holds about"),
    (["--start", "2024-01-01", "--end", "2023-01-01"], "is after --end"),
    (["--start", "2020-13-01"], "is not a date"),
    (["--window-days", "400"], "400-day window"),
    (["--allocation", "fair"], "--allocation 'fair'"),
    (["--allocation", "{d}/weights.csv"], "match no stratum dimension"),
    (["--chip-size", "0"], "--chip-size 0.0 is out of range"),
    (["--time-bins", "decade"], "'decade' is not one of"),
    (["--config", "{d}/bad.yaml"], "not valid YAML at line"),
    (["--config", "{d}/unknown.yaml"], "unknown plan setting 'colour'"),
    (["--config", "{d}/nothere.yaml"], "config file"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_INPUT, ids=[" ".join(f) for f, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_nothing_written(
    flags: list[str], message: str, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = files / "DS"
    code, _, err = run(["plan", "-o", str(out), *[f.format(d=files) for f in flags]], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("geosample: error: ")
    assert message in lines[0]
    assert "Traceback" not in err
    assert not (out / "plan.parquet").exists() and not (out / "geosample.yaml").exists()


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="out of range"):
        main(["--debug", "plan", "-o", str(tmp_path / "DS"), "--res", "99"])


def test_missing_out_is_explained(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["plan", "-n", "5"], capsys)
    assert code == 2 and "-o/--out DS" in err


def test_invalid_aoi_geometry_is_repaired_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bowtie = shapely.Polygon([(30, 0), (32, 2), (32, 0), (30, 2)])
    gpd.GeoDataFrame(geometry=[bowtie], crs=4326).to_file(tmp_path / "bowtie.geojson")
    code, out, err = run(
        ["plan", "-o", str(tmp_path / "DS"), "-n", "10", "--aoi", str(tmp_path / "bowtie.geojson")], capsys
    )
    assert code == 0
    assert "repaired 1 invalid geometry" in err


def test_aoi_in_another_crs_is_reprojected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    box = gpd.GeoSeries([shapely.box(36, -2, 38, 0)], crs=4326).to_crs(32737)
    gpd.GeoDataFrame(geometry=box).to_file(tmp_path / "aoi.gpkg")
    code, _, _ = run(["plan", "-o", str(tmp_path / "DS"), "-n", "25", "--aoi", str(tmp_path / "aoi.gpkg")], capsys)
    assert code == 0
    plan = gpd.read_parquet(tmp_path / "DS" / "plan.parquet")
    assert plan["lon"].between(36, 38).all() and plan["lat"].between(-2, 0).all()


def test_config_file_and_flags_override_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # `out` in a config is relative to the working directory, like -o
    (tmp_path / "configs").mkdir()
    gpd.GeoDataFrame(geometry=[shapely.box(36, -2, 38, 0)], crs=4326).to_file(tmp_path / "configs" / "aoi.geojson")
    config = tmp_path / "configs" / "plan.yaml"
    config.write_text(
        yaml.safe_dump({"out": "DS", "plan": {"samples": 30, "aoi": "aoi.geojson", "strata": ["climate"], "seed": 4}})
    )
    code, out, _ = run(["plan", "--config", str(config), "-n", "40"], capsys)
    assert code == 0, out
    recorded = yaml.safe_load((tmp_path / "DS" / "geosample.yaml").read_text())["plan"]
    # Input paths in a config are relative to the config's folder.
    assert recorded["samples"] == 40 and recorded["aoi"] == str(tmp_path / "configs" / "aoi.geojson")
    assert recorded["strata"] == ["climate"]
    assert recorded["seed"] == 4
    assert "climate" in out and "target" in out and "achieved" in out


def test_rerun_same_settings_is_a_no_op_and_other_settings_need_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["plan", "-o", str(tmp_path), "-n", "20", "--aoi", "KEN"]
    assert run(args, capsys)[0] == 0
    first = (tmp_path / "plan.parquet").read_bytes()
    assert run(args, capsys)[0] == 0
    assert (tmp_path / "plan.parquet").read_bytes() == first
    code, _, err = run([*args[:-4], "-n", "21", "--aoi", "KEN"], capsys)
    assert code == 2 and "--overwrite" in err
    assert (tmp_path / "plan.parquet").read_bytes() == first
    assert run([*args[:-4], "-n", "21", "--aoi", "KEN", "--overwrite"], capsys)[0] == 0
    assert json.loads((tmp_path / "report" / "balance.json").read_text())["summary"]["n_sites"] == 21


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and "geosample" in out
    code, out, _ = run(["plan", "--help"], capsys)
    assert code == 0 and "--max-per-parent" in out and "--time-bins" in out


def test_installed_command_smoke(tmp_path: Path) -> None:
    exe = shutil.which("geosample") or pytest.skip("geosample is not installed as a command")
    proc = subprocess.run(
        [exe, "plan", "-o", str(tmp_path / "DS"), "-n", "30", "--aoi", "bbox:5,45,10,48", "--no-progress"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    proc = subprocess.run(
        [exe, "plan", "-o", str(tmp_path / "X"), "--res", "20"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "geosample", "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0


def test_help_lists_the_commands_as_click_would_without_importing_them(capsys: pytest.CaptureFixture[str]) -> None:
    import click

    from geosample.cli import LAZY_COMMANDS, SUMMARIES, cli

    assert set(SUMMARIES) == set(LAZY_COMMANDS)
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    # click's own listing, which imports every command for its help, is the reference.
    ctx = click.Context(cli, info_name="geosample", max_content_width=100)
    formatter = ctx.make_formatter()
    click.Group.format_commands(cli, ctx, formatter)
    assert formatter.getvalue() in out
    # In a fresh interpreter the listing imports no stage (nor geopandas): it starts in a tenth of a second.
    probe = (
        "import sys\nfrom geosample.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('geopandas', 'pandas', 'rasterio', 'numpy')"
        " or m.startswith(('geosample.stac', 'geosample.sampling', 'geosample.labels')))\n"
        "print('IMPORTED', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Commands:" in proc.stdout and "IMPORTED []" in proc.stdout


def test_no_arguments_prints_help_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([], capsys)
    assert code == 0
    assert "Commands:" in out and "plan" in out and err == ""
