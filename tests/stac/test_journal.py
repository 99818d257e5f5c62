"""The manifest survives any kill: Parquet is always whole, the journal replays, the latest row wins."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geosample.errors import DatasetError
from geosample.stac.journal import JOURNAL_FILE, SCHEMA, Manifest, dataset_lock


def row(sample: int, collection: str, status: str) -> dict:
    ok = status == "ok"
    return {
        "sample_id": f"{sample:015x}-100m", "status": status, "error": None if ok else f"boom {sample}",
        "collection": collection, "item_id": f"item{sample}" if ok else None,
        "item_datetime": pd.Timestamp("2021-05-01T10:00:00Z") if ok else None, "cloud_cover": 1.5 if ok else None,
        "path": f"chips/{sample}.tif" if ok else None, "width": 8 if ok else None, "height": 8 if ok else None,
        "bands": ["red", "nir"] if ok else None, "sha256": "ab" * 32 if ok else None, "preview": None,
        "resolution": 10.0,
    }  # fmt: skip


def none_if_na(value: object) -> object:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


events = st.lists(
    st.tuples(
        st.integers(0, 6), st.sampled_from(["a", "b"]), st.sampled_from(["ok", "failed", "no_item"]), st.booleans()
    ),  # fmt: skip
    max_size=25,
)


@settings(max_examples=25, deadline=None)
@given(events=events, cut=st.integers(0, 400))
def test_replay_after_a_kill_keeps_every_whole_row(events: list, cut: int) -> None:
    """Rows appended (with compactions in between), the journal torn at any byte: the reopened
    manifest holds the latest version of every row written before the tear, and nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        ds = Path(tmp)
        manifest = Manifest(ds)
        compacted: dict = {}
        journaled: list[dict] = []
        for sample, collection, status, compact in events:
            r = row(sample, collection, status)
            manifest.append([r])
            journaled.append(r)
            if compact:
                manifest.compact()
                for j in journaled:
                    compacted[(j["sample_id"], j["collection"])] = j
                journaled = []
        manifest.close()
        journal = ds / JOURNAL_FILE
        survived = journaled
        if journal.exists():
            data = journal.read_bytes()
            cut = min(cut, len(data))
            journal.write_bytes(data[:cut])  # a kill in the middle of a line
            survived = journaled[: data[:cut].count(b"\n")]
        expected = dict(compacted)
        for j in survived:
            expected[(j["sample_id"], j["collection"])] = j
        table = Manifest(ds).table()
        assert len(table) == len(expected) and not table.duplicated(["sample_id", "collection"]).any()
        for rec in table.to_dict("records"):
            want = expected[(rec["sample_id"], rec["collection"])]
            assert rec["status"] == want["status"]
            assert none_if_na(rec["error"]) == want["error"] and none_if_na(rec["item_id"]) == want["item_id"]
        if (ds / "chips.parquet").exists():
            assert pq.read_schema(ds / "chips.parquet").names == SCHEMA.names


def test_round_trip_keeps_types(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path)
    manifest.append([row(1, "a", "ok"), row(2, "a", "failed")])
    manifest.compact()
    table = pd.read_parquet(tmp_path / "chips.parquet")
    assert table.loc[0, "item_datetime"] == pd.Timestamp("2021-05-01T10:00:00Z")
    assert list(table.loc[0, "bands"]) == ["red", "nir"] and pd.isna(table.loc[1, "width"])
    schema = pq.read_schema(tmp_path / "chips.parquet")
    assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in SCHEMA]
    reopened = Manifest(tmp_path).table()
    assert reopened["sample_id"].tolist() == [row(1, "a", "ok")["sample_id"], row(2, "a", "ok")["sample_id"]]


def test_an_empty_manifest_has_the_columns(tmp_path: Path) -> None:
    Manifest(tmp_path).compact()
    schema = pq.read_schema(tmp_path / "chips.parquet")
    assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in SCHEMA]


def test_unreadable_manifest_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "chips.parquet").write_text("garbage")
    with pytest.raises(DatasetError, match="chips.parquet cannot be read"):
        Manifest(tmp_path)


def test_one_fetch_at_a_time(tmp_path: Path) -> None:
    with dataset_lock(tmp_path):
        with pytest.raises(DatasetError, match="another geosample command .* is writing"):
            with dataset_lock(tmp_path):
                pass
    with dataset_lock(tmp_path):  # released
        pass
    assert list(tmp_path.iterdir()) == []  # the lock leaves no file behind
