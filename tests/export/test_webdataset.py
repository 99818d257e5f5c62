"""``export --format webdataset`` read back with the ``webdataset`` package and checked for content."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import webdataset as wds
from export.builders import invoke, write_captions, write_chips
from independent import cross_split_gaps

from geosample.export.splits import SPLITS


def _read(folder: Path) -> dict[str, list[dict]]:
    index = json.loads((folder / "dataset.json").read_text())
    out = {}
    for split in SPLITS:
        url = index["splits"][split]["url"]
        out[split] = [] if url is None else list(wds.WebDataset(str(folder / url), shardshuffle=False))
    return out


@pytest.fixture
def exported(full_ds: Path) -> tuple[Path, Path, dict[str, list[dict]]]:
    result = invoke("export", full_ds, "--format", "webdataset", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "export webdataset: 24 records" in result.output
    folder = full_ds / "export" / "webdataset"
    return full_ds, folder, _read(folder)


def test_every_record_round_trips(exported: tuple[Path, Path, dict[str, list[dict]]]) -> None:
    ds, _, splits = exported
    chips = pd.read_parquet(ds / "chips.parquet").set_index("sample_id")
    labels = pd.read_parquet(ds / "labels.parquet").set_index("sample_id")
    captions = pd.read_parquet(ds / "captions.parquet")
    plan = gpd.read_parquet(ds / "plan.parquet").set_index("sample_id")
    seen = []
    for split, samples in splits.items():
        for sample in samples:
            meta = json.loads(sample["json"])
            sid = meta["sample_id"]
            seen.append(sid)
            assert meta["split"] == split and sample["__key__"] == meta["key"] == sid
            assert meta["location"]["lon"] == pytest.approx(plan.loc[sid, "lon"])
            assert meta["time"]["time_bin"] == plan.loc[sid, "time_bin"]
            label = labels.loc[sid]
            for level in ("l1", "l2", "l3"):
                assert meta["labels"][level] == list(label[level])
                assert meta["labels"][f"{level}_dominant"] == label[f"{level}_dominant"]
            assert meta["labels"]["fractions"] == json.loads(label["fractions"])
            expected = [" ".join(c.split()) for c in captions.loc[captions["sample_id"] == sid, "caption"]]
            assert sample["txt"].decode("utf-8").splitlines() == expected
            chip = chips.loc[sid]
            if chip["status"] == "ok":
                assert hashlib.sha256(sample["tif"]).hexdigest() == chip["sha256"]
                assert sample["png"] == (ds / chip["preview"]).read_bytes()
                assert meta["image"]["width"] == 32 and meta["image"]["bands"] == ["red", "green", "blue"]
            else:
                assert "tif" not in sample and meta["image"] is None
    assert sorted(seen) == sorted(plan.index)


def test_splits_are_buffered_and_keep_sites_whole(exported: tuple[Path, Path, dict[str, list[dict]]]) -> None:
    ds, _, splits = exported
    assert set(splits) <= set(SPLITS) and "validate" not in splits
    split = pd.Series({json.loads(r["json"])["sample_id"]: name for name, rows in splits.items() for r in rows})
    gaps = cross_split_gaps(gpd.read_parquet(ds / "plan.parquet"), split)
    assert min(gaps.values()) >= 2560  # the default buffer: one chip size
    assert len(splits["train"]) > len(splits["validation"]) and len(splits["train"]) > len(splits["test"])


def test_small_shards_and_identical_bytes_on_rerun(full_ds: Path, tmp_path: Path) -> None:
    out = tmp_path / "wds"
    assert invoke("export", full_ds, "-f", "webdataset", "-o", out, "--shard-size", "0.02", "-q").exit_code == 0
    index = json.loads((out / "dataset.json").read_text())
    train = index["splits"]["train"]
    assert len(train["shards"]) > 3 and "{000000.." in train["url"]
    for shard in train["shards"]:
        assert (out / shard).stat().st_size <= 0.02e6 + 2 * 10240  # one record over, plus the tar's end blocks
    assert sum(1 for _ in wds.WebDataset(str(out / train["url"]), shardshuffle=False)) == train["records"]
    before = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    assert invoke("export", full_ds, "-f", "webdataset", "-o", out, "--shard-size", "0.02", "-q").exit_code == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == before


def test_plan_only_dataset_with_dotted_ids_gets_safe_keys(planned_ds: Path) -> None:
    plan = gpd.read_parquet(planned_ds / "plan.parquet")
    plan["sample_id"] = plan["sample_id"].str.replace("-2560m", "-2560.5m")
    plan.to_parquet(planned_ds / "plan.parquet")
    result = invoke("export", planned_ds, "-f", "webdataset")
    assert result.exit_code == 0, result.output
    assert "not in the dataset yet: chips" in result.output and "labels" in result.output
    records = [r for rows in _read(planned_ds / "export" / "webdataset").values() for r in rows]
    assert len(records) == len(plan)
    for record in records:
        meta = json.loads(record["json"])
        assert "." not in record["__key__"] and "." in meta["sample_id"]
        assert set(record) - {"__key__", "__url__", "__local_path__"} == {"json"}
        assert meta["labels"] is None and meta["image"] is None


def test_two_collections_give_one_record_per_chip(planned_ds: Path) -> None:
    chips = write_chips(planned_ds, ("sentinel-2-l2a", "landsat-c2-l2"), no_item=1)
    result = invoke("export", planned_ds, "-f", "webdataset")
    assert result.exit_code == 0, result.output
    records = [r for rows in _read(planned_ds / "export" / "webdataset").values() for r in rows]
    ok = chips[chips["status"] == "ok"]
    assert len(records) == len(ok) + 1  # the sample without any chip is one record
    keys = {r["__key__"] for r in records}
    assert len(keys) == len(records)
    by_key = {r["__key__"]: r for r in records}
    for row in ok.itertuples():
        record = by_key[f"{row.sample_id}_{row.collection}"]
        assert hashlib.sha256(record["tif"]).hexdigest() == row.sha256
        assert json.loads(record["json"])["image"]["collection"] == row.collection


@pytest.mark.parametrize("collections", [("sentinel-2-l2a",), ("sentinel-2-l2a", "landsat-c2-l2")])
def test_each_record_carries_its_samples_captions(planned_ds: Path, collections: tuple[str, ...]) -> None:
    # One collection: records in caption order (the captions' column is used as it is); two: a sample's
    # captions repeat on each of its records (they are gathered). The first sample has no caption.
    from geosample.export._content import load_content
    from geosample.export._records import record_table

    write_chips(planned_ds, collections)
    written = write_captions(planned_ds, per_sample=3, skip=1)
    content = load_content(planned_ds)
    records = record_table(content, pd.Series("train", index=content.plan.index))
    expected = {
        sid: group.sort_values("caption_index")["caption"].tolist() for sid, group in written.groupby("sample_id")
    }
    assert len(records) > len(content.plan) if len(collections) > 1 else len(records) == len(content.plan)
    for sample_id, captions in zip(records["sample_id"], records["captions"], strict=True):
        assert list(captions) == expected.get(sample_id, [])


def test_the_readme_snippet_runs(
    exported: tuple[Path, Path, dict[str, list[dict]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from export.builders import python_snippets

    ds, out, records = exported
    (snippet,) = python_snippets(out / "README.md")
    monkeypatch.chdir(out)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # as a user pastes it
    assert namespace["meta"]["split"] == "train" and isinstance(namespace["captions"], list)
