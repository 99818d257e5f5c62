"""A catalogue cannot make geosample read local files: hostile hrefs served verbatim by a loopback STAC API."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from stac.conftest import ANDROS
from stac.hostile_server import HostileStac
from untrusted import assert_refused, assert_untouched, run_cli, tree

from geosample.errors import UnsafeInputError
from geosample.stac._hrefs import HrefPolicy

LANDSAT = Path(__file__).parents[1] / "data" / "imagery" / "landsat7_rgb_utm18n_300m.tif"


def _item(href: str, name: str = "evil") -> dict[str, Any]:
    """An item over the whole world in 2001 (the Andros plan's year), its one asset at ``href``."""
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": name, "collection": "hostile",
        "geometry": {"type": "Polygon", "coordinates": [[[-180, -85], [180, -85], [180, 85], [-180, 85], [-180, -85]]]},
        "bbox": [-180, -85, 180, 85], "properties": {"datetime": "2001-06-01T00:00:00Z"}, "links": [],
        "assets": {"data": {"href": href, "type": "image/tiff; application=geotiff", "roles": ["data"]}},
    }  # fmt: skip


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A readable raster that covers the plan: what a hostile catalogue would like to see copied into chips."""
    path = tmp_path / "private" / "secret.tif"
    path.parent.mkdir()
    shutil.copy(LANDSAT, path)
    return path


HREFS = {
    "file URL": lambda s: f"file://{s}",
    "absolute path": lambda s: str(s),
    "relative path": lambda s: "../private/secret.tif",  # resolved against the working directory, it hits
    "GDAL virtual path": lambda s: f"/vsicurl/file://{s}",
    "GDAL zip path": lambda s: f"/vsizip/{s}.zip/secret.tif",
}


@pytest.mark.parametrize("kind", HREFS)
def test_fetch_refuses_local_and_virtual_hrefs_from_an_api(
    andros_ds: Path, tmp_path: Path, secret: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:  # fmt: skip
    href = HREFS[kind](secret)
    monkeypatch.chdir(andros_ds)
    with HostileStac(items=[_item(href)], folder=tmp_path) as server:
        url = server.url
        before = tree(tmp_path)
        args = ["fetch", andros_ds, "--stac", url, "--collection", "hostile", "--assets", "data", "--resolution",
                "300", "--preview", "--no-progress"]  # fmt: skip
        code, _, err = run_cli(args, capsys)
        assert_refused(code, err, "asset 'data' of item 'evil'", href[:40])
        assert_untouched(tmp_path, before)  # no chip, preview or item, in DS or anywhere else
        if kind == "absolute path":  # the user may allow it: then the same catalogue gives chips
            code, _, err = run_cli([*args, "--allow-local-assets"], capsys)
            assert code == 0, err
            chips = pd.read_parquet(andros_ds / "chips.parquet")
            assert (chips["status"] == "ok").all() and len(chips) == len(ANDROS)
        if kind.startswith("GDAL"):  # never, even so
            assert_refused(*run_cli([*args, "--allow-local-assets"], capsys)[::2], "GDAL virtual path")


@pytest.mark.parametrize("folder", ["chips", "stac/hostile"])
def test_fetch_writes_nothing_through_a_folder_that_links_out_of_the_dataset(
    andros_ds: Path, tmp_path: Path, secret: Path, capsys: pytest.CaptureFixture[str], folder: str
) -> None:
    """The chip and item folders are resolved once per run (not per file); a link out of DS is still refused."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = andros_ds / folder
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere)
    with HostileStac(items=[_item(str(secret))], folder=tmp_path) as server:
        before = tree(tmp_path)
        args = ["fetch", andros_ds, "--stac", server.url, "--collection", "hostile", "--assets", "data",
                "--resolution", "300", "--no-progress", "--allow-local-assets"]  # fmt: skip
        code, _, err = run_cli(args, capsys)
        assert_refused(code, err, "would lie outside", f"{andros_ds / folder.split('/')[0]}")
        assert not any(elsewhere.iterdir())  # no chip and no item went through the link
        assert_untouched(tmp_path, before)
        link.unlink()  # the same run without the link makes every chip and item
        code, _, err = run_cli(args, capsys)
        assert code == 0, err
    chips = pd.read_parquet(andros_ds / "chips.parquet")
    assert (chips["status"] == "ok").all() and len(chips) == len(ANDROS)
    assert len(list((andros_ds / "stac" / "hostile").glob("*.json"))) == len(ANDROS) + 1  # + collection.json


def test_label_refuses_local_hrefs_from_an_api(
    andros_ds: Path, tmp_path: Path, secret: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with HostileStac(items=[_item(str(secret))], folder=tmp_path) as server:
        before = tree(tmp_path)
        code, _, err = run_cli(["label", andros_ds, "--source", "stac:hostile", "--stac", server.url, "--scheme",
                                "esa-worldcover", "--no-progress"], capsys)  # fmt: skip
        assert_refused(code, err, "is a local file, named by a remote catalogue", "--allow-local-assets")
        assert_untouched(tmp_path, before)


def test_allow_local_assets_is_kept_for_a_resumed_fetch_and_never_granted_by_a_config(
    andros_ds: Path, tmp_path: Path, secret: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with HostileStac(items=[_item(str(secret))], folder=tmp_path) as server:
        source = ["--stac", server.url, "--collection", "hostile"]
        settings = ["--assets", "data", "--resolution", "300", "--no-progress"]
        # A config file cannot grant it, for fetch or run: refused before anything is read or written.
        config = tmp_path / "shared.yaml"
        section = {"stac": server.url, "collection": "hostile", "assets": "data", "allow_local_assets": True}
        config.write_text(yaml.safe_dump({"out": str(andros_ds), "fetch": section}))
        before = tree(tmp_path)
        for command in (["fetch", andros_ds, "--config", config, "--no-progress"], ["run", config, "--no-progress"]):
            code, _, err = run_cli(command, capsys)
            assert_refused(code, err, "sets allow_local_assets: a config file may not grant it",
                           "give --allow-local-assets on the command line")  # fmt: skip
        assert_untouched(tmp_path, before)
        # Given on the command line, it is recorded with the source it was given for ...
        code, _, err = run_cli(["fetch", andros_ds, *source, *settings, "--limit", "1", "--allow-local-assets"],
                               capsys)  # fmt: skip
        assert code == 0, err
        assert yaml.safe_load((andros_ds / "geosample.yaml").read_text())["fetch"]["allow_local_assets"] is True
        # ... and a fetch that resumes (no --stac, --collection or --preset) keeps it: the rest is fetched.
        code, _, err = run_cli(["fetch", andros_ds, "--no-progress"], capsys)
        assert code == 0, err
        chips = pd.read_parquet(andros_ds / "chips.parquet")
        assert (chips["status"] == "ok").all() and len(chips) == len(ANDROS)
        assert yaml.safe_load((andros_ds / "geosample.yaml").read_text())["fetch"]["allow_local_assets"] is True
        # Naming the source again without the flag does not inherit it.
        code, _, err = run_cli(["fetch", andros_ds, *source, *settings, "--overwrite"], capsys)
        assert_refused(code, err, "is a local file, named by a remote catalogue", "--allow-local-assets")


@pytest.mark.parametrize(
    ("href", "readable"),
    [
        ("https://example.com/a.tif", True),
        ("s3://bucket/a.tif", True),
        ("gs://bucket/a.tif", True),
        ("az://container/a.tif", True),
        ("{root}/scene/a.tif", True),
        ("file://{root}/scene/a.tif", True),
        ("scene/a.tif", True),  # relative to the catalogue's folder, not the working directory
        ("{root}/../outside.tif", False),
        ("scene/../../outside.tif", False),
        ("{link}/a.tif", False),  # a symbolic link in the folder that leads out of it
        ("/vsicurl/https://example.com/a.tif", False),
        ("ftp://example.com/a.tif", False),
        ("zip+https://example.com/a.zip!a.tif", False),
        ("<VRTDataset><VRTRasterBand/></VRTDataset>", False),
        ("https:///a.tif", False),
        ("file://otherhost/a.tif", False),
        ("", False),
    ],
)
def test_policy_of_a_local_catalogue(tmp_path: Path, href: str, readable: bool) -> None:
    root = tmp_path / "catalog"
    (root / "scene").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    policy = HrefPolicy.for_source(str(root / "catalog.json"))
    href = href.format(root=root, link=root / "link")
    if readable:
        got = policy.check(href)
        assert got == href or Path(got) == (root / "scene" / "a.tif").resolve()
    else:
        with pytest.raises(UnsafeInputError, match="has href"):
            policy.check(href)


def test_an_api_may_name_no_local_file_and_its_links_are_followed_only_over_http() -> None:
    from pystac_client.exceptions import APIError

    from geosample._http import stac_api_io

    policy = HrefPolicy.for_source("https://earth-search.aws.element84.com/v1")
    assert policy.local_root is None
    with pytest.raises(UnsafeInputError, match="--allow-local-assets"):
        policy.check("/data/a.tif")
    assert HrefPolicy.for_source("https://x/v1", allow_local=True).check("/data/a.tif") == "/data/a.tif"
    io = stac_api_io(retries=0, deadline=5, max_retries=0)
    with pytest.raises(APIError, match="not an http"):
        io.read_text("/etc/passwd")
