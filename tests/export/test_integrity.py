"""Export reads only the chips the manifest names under DS/chips, and only as fetch wrote them (sha256)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from untrusted import assert_refused, assert_untouched, run_cli, tree


def _chips(ds: Path) -> pd.DataFrame:
    return pd.read_parquet(ds / "chips.parquet")


def _members(folder: Path) -> dict[str, bytes]:
    out = {}
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                out[member.name] = tar.extractfile(member).read()
    return out


def test_a_corrupted_chip_stops_the_export_or_is_left_out(full_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chips = _chips(full_ds)
    ok = chips[chips["status"] == "ok"].reset_index(drop=True)
    bad = ok.iloc[1]
    data = bytearray((full_ds / bad["path"]).read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the pixels
    (full_ds / bad["path"]).write_bytes(bytes(data))
    before = tree(full_ds)
    code, _, err = run_cli(["export", full_ds, "-f", "webdataset"], capsys)
    assert_refused(code, err, f"chip {full_ds / bad['path']}", bad["sample_id"], f"'geosample fetch {full_ds}'",
                   "--skip-invalid")  # fmt: skip
    assert tree(full_ds) == before  # no export, not even a section in geosample.yaml
    code, out, err = run_cli(["export", full_ds, "-f", "webdataset", "--skip-invalid"], capsys)
    assert code == 0, err
    assert f"left out 1 chip(s) that no longer match their sha256 (e.g. {bad['path']})" in err
    members = _members(full_ds / "export" / "webdataset")
    tifs = {name for name in members if name.endswith(".tif")}
    assert len(tifs) == len(ok) - 1 and f"{bad['sample_id']}.json" in members  # the sample stays, without image
    recorded = dict(zip(ok["sample_id"] + ".tif", ok["sha256"], strict=True))
    assert all(hashlib.sha256(members[name]).hexdigest() == recorded[name] for name in tifs)


HOSTILE_PATHS = {
    "parent path": ("path", "../../secret.txt"),
    "absolute path": ("preview", "{secret}"),
    "outside chips": ("path", "plan.parquet"),
    "nul byte": ("preview", "chips/a\x00.png"),
}
OFFLINE = Path(__file__).parents[2] / "data" / "examples" / "offline-stac" / "catalog.json"


@pytest.mark.parametrize("kind", HOSTILE_PATHS)
def test_a_manifest_naming_files_outside_the_chips_folder_is_refused(
    full_ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    column, value = HOSTILE_PATHS[kind]
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy me")
    chips = _chips(full_ds)
    chips.loc[0, column] = value.format(secret=secret)
    chips.to_parquet(full_ds / "chips.parquet", index=False)
    (full_ds / "captions.parquet").unlink()  # caption would send a preview to its model: it must refuse too
    before = tree(tmp_path)
    commands = (
        ["export", full_ds, "-f", "parquet"],
        ["caption", full_ds, "--no-progress"],
        ["label", full_ds, "--overwrite", "--no-progress"],
        ["fetch", full_ds, "--stac", OFFLINE, "--collection", "landsat7-demo", "--no-progress"],
    )
    for command in commands:
        code, _, err = run_cli(command, capsys)
        assert_refused(code, err, f"{full_ds / 'chips.parquet'} row 0: {column}", "delete it and run 'geosample fetch")
    assert_untouched(tmp_path, before)


def test_links_out_of_the_chips_folder_are_refused(
    full_ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret.tif"
    secret.write_bytes(b"not a chip")
    path = full_ds / _chips(full_ds)["path"].iloc[0]
    chip = path.read_bytes()
    path.unlink()
    path.symlink_to(secret)  # a chip that is a link to a file elsewhere
    code, _, err = run_cli(["export", full_ds, "-f", "webdataset"], capsys)
    assert_refused(code, err, "leads out of")
    path.unlink()
    path.write_bytes(chip)
    chips = full_ds / "chips"
    chips.rename(tmp_path / "elsewhere")
    chips.symlink_to(tmp_path / "elsewhere")  # the whole folder a link out of DS
    code, _, err = run_cli(["export", full_ds, "-f", "webdataset"], capsys)
    assert_refused(code, err, "leads out of")
    assert not (full_ds / "export").exists()


def test_stac_item_ids_cannot_leave_the_export(
    full_ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row = _chips(full_ds).iloc[0]
    item = {
        "type": "Feature", "stac_version": "1.1.0", "id": "../../../../escaped", "properties": {"datetime": None,
        "start_datetime": "2020-01-01T00:00:00Z", "end_datetime": "2020-12-31T00:00:00Z"},
        "geometry": {"type": "Point", "coordinates": [0, 0]}, "bbox": [0, 0, 0, 0], "links": [],
        "assets": {"image": {"href": f"../../{row['path']}", "roles": ["data"]}},
    }  # fmt: skip
    folder = full_ds / "stac" / row["collection"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{row['sample_id']}.json").write_text(json.dumps(item))
    before = tree(tmp_path)
    code, _, err = run_cli(["export", full_ds, "-f", "stac"], capsys)
    assert_refused(code, err, "STAC item id '", "escaped", "would lie outside")
    assert_untouched(tmp_path, before)
