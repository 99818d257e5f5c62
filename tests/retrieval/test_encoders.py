"""The encoder registry and the precomputed embedding files: every format, every clear error."""

from __future__ import annotations

import sys
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geosample.errors import ConfigError, PluginError, PluginWarning
from geosample.retrieval import encoders
from geosample.retrieval._embedding_files import read_embeddings
from geosample.retrieval.config import EvaluateConfig
from geosample.retrieval.encoders import IMAGE_KEYS, TEXT_KEYS, PrecomputedEncoder, get_encoder

VECTORS = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
IDS = ["a", "b", "c", "d"]


@pytest.fixture
def npy(tmp_path: Path) -> Path:
    np.save(tmp_path / "v.npy", VECTORS)
    return tmp_path / "v.npy"


@pytest.mark.parametrize("kind", ["txt", "npy", "parquet", "structured"])
def test_npy_with_every_kind_of_ids_file(kind: str, npy: Path, tmp_path: Path) -> None:
    ids = tmp_path / f"ids.{ {'structured': 'npy'}.get(kind, kind) }"
    if kind == "txt":
        ids.write_text("sample_id\n" + "\n".join(IDS) + "\n")
    elif kind == "npy":
        np.save(ids, np.array(IDS))
    elif kind == "structured":
        np.save(ids, np.array([(s,) for s in IDS], dtype=[("sample_id", "U8")]))
    else:
        pq.write_table(pa.table({"sample_id": IDS}), ids)
    emb = read_embeddings(npy, ids, IMAGE_KEYS, "--image-embeddings")
    assert emb.keys["sample_id"].tolist() == IDS
    np.testing.assert_array_equal(emb.vectors, VECTORS)


def test_text_ids_as_csv_and_tab_lines(npy: Path, tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("sample_id,caption_index\na,0\na,1\nb,0\nc,2\n")
    (tmp_path / "t.tsv").write_text("a\t0\na\t1\nb\t0\nc\t2\n")
    for name in ("t.csv", "t.tsv"):
        emb = read_embeddings(npy, tmp_path / name, TEXT_KEYS, "--text-embeddings")
        assert emb.keys.values.tolist() == [["a", 0], ["a", 1], ["b", 0], ["c", 2]]


@pytest.mark.parametrize("list_type", [pa.list_(pa.float32()), pa.list_(pa.float64(), 3), pa.large_list(pa.float16())])
def test_parquet_list_columns(list_type: pa.DataType, tmp_path: Path) -> None:
    values = VECTORS.astype(np.float16) if list_type.value_type == pa.float16() else VECTORS
    table = pa.table({"sample_id": IDS, "clip": pa.array([list(v) for v in values], list_type), "n": [1, 2, 3, 4]})
    pq.write_table(table, tmp_path / "e.parquet")
    emb = read_embeddings(tmp_path / "e.parquet", None, IMAGE_KEYS, "--image-embeddings")
    np.testing.assert_array_equal(emb.vectors, VECTORS)
    assert emb.vectors.dtype == np.float32


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, Path | None, str]]:
    np.save(tmp_path / "v.npy", VECTORS)
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    (tmp_path / "dup.txt").write_text("a\nb\nb\nd\n")
    np.save(tmp_path / "nan.npy", np.where(VECTORS == 5, np.nan, VECTORS))
    np.save(tmp_path / "zero.npy", VECTORS * (np.arange(4) < 3)[:, None])
    np.save(tmp_path / "flat.npy", VECTORS.ravel())
    (tmp_path / "ids.txt").write_text("\n".join(IDS))
    (tmp_path / "e.csv").write_text("x")
    (tmp_path / "junk.parquet").write_text("not parquet")
    pq.write_table(pa.table({"sample_id": IDS[:2], "e": [[1.0, 2.0], [3.0]]}), tmp_path / "ragged.parquet")
    pq.write_table(pa.table({"sample_id": IDS[:1], "a": [[1.0]], "b": [[2.0]]}), tmp_path / "two.parquet")
    pq.write_table(pa.table({"id": IDS[:1], "embedding": [[1.0]]}), tmp_path / "nokey.parquet")
    pq.write_table(pa.table({"sample_id": IDS[:2], "embedding": [[1.0], None]}), tmp_path / "null.parquet")
    return {
        "missing": (tmp_path / "nothere.npy", tmp_path / "ids.txt", "does not exist"),
        "no ids": (tmp_path / "v.npy", None, "give --image-ids FILE"),
        "count": (tmp_path / "v.npy", tmp_path / "three.txt", "has 4 rows but its ids file"),
        "duplicate": (tmp_path / "v.npy", tmp_path / "dup.txt", "repeats the key ['b']"),
        "nan": (tmp_path / "nan.npy", tmp_path / "ids.txt", "1 row(s) hold NaN or infinite values (first: row 1)"),
        "zero": (tmp_path / "zero.npy", tmp_path / "ids.txt", "row(s) are all zeros (first: row 3)"),
        "1-D": (tmp_path / "flat.npy", tmp_path / "ids.txt", "must be a 2-D numeric array"),
        "format": (tmp_path / "e.csv", None, "unknown format '.csv'"),
        "not parquet": (tmp_path / "junk.parquet", None, "cannot be read as Parquet"),
        "ragged": (tmp_path / "ragged.parquet", None, "have different lengths (1–2)"),
        "which column": (tmp_path / "two.parquet", None, "cannot tell which column holds the embeddings"),
        "no key": (tmp_path / "nokey.parquet", None, "has no column(s) sample_id"),
        "null": (tmp_path / "null.parquet", None, "has 1 empty row(s)"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing", "no ids", "count", "duplicate", "nan", "zero", "1-D", "format", "not parquet", "ragged",
     "which column", "no key", "null"],
)  # fmt: skip
def test_bad_embedding_files_are_one_clear_error(case: str, tmp_path: Path) -> None:
    path, ids, message = bad_files(tmp_path)[case]
    with pytest.raises(ConfigError) as info:
        read_embeddings(path, ids, IMAGE_KEYS, "--image-embeddings")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_dimensions_must_agree(npy: Path, tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("\n".join(IDS))
    np.save(tmp_path / "t.npy", np.ones((2, 5), np.float32))
    (tmp_path / "t.csv").write_text("a,0\nb,0\n")
    with pytest.raises(ConfigError, match="embedding dimensions differ \\(image 3, text 5\\)"):
        PrecomputedEncoder(npy, tmp_path / "t.npy", image_ids=tmp_path / "ids.txt", text_ids=tmp_path / "t.csv")


def test_registry_names_paths_and_instances(npy: Path, tmp_path: Path) -> None:
    assert {"precomputed", "open_clip"} <= set(encoders.installed_encoders())
    (tmp_path / "ids.txt").write_text("\n".join(IDS))
    (tmp_path / "t.csv").write_text("a,0\nb,0\nc,0\nd,0\n")
    cfg = EvaluateConfig(
        image_embeddings=str(npy), image_ids=str(tmp_path / "ids.txt"),
        text_embeddings=str(npy), text_ids=str(tmp_path / "t.csv"),
    )  # fmt: skip
    by_name = get_encoder("precomputed", cfg)
    by_path = get_encoder("geosample.retrieval.encoders:PrecomputedEncoder", cfg)
    by_dots = get_encoder("geosample.retrieval.encoders.PrecomputedEncoder", cfg)
    assert all(isinstance(e, PrecomputedEncoder) for e in (by_name, by_path, by_dots))
    assert get_encoder(by_name) is by_name
    assert by_name.encode_prompts({"1": "x"}) is None
    with pytest.raises(ConfigError, match="needs --image-embeddings and --text-embeddings FILE"):
        get_encoder("precomputed", EvaluateConfig())


def test_unknown_encoder_lists_installed_ones() -> None:
    with pytest.raises(PluginError, match=r"unknown encoder 'clip'; installed: .*open_clip.*precomputed"):
        get_encoder("clip", EvaluateConfig())
    with pytest.raises(PluginError, match="cannot import encoder 'nowhere.module:Thing'"):
        get_encoder("nowhere.module:Thing", EvaluateConfig())
    with pytest.raises(PluginError, match="is not an encoder"):
        get_encoder(object())  # type: ignore[arg-type]


def test_broken_plugin_warns_and_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = EntryPoint("broken", "geosample_no_such_plugin.encoders:Encoder", encoders.ENTRY_POINT_GROUP)
    installed = {**encoders.installed_encoders(), "broken": broken}
    monkeypatch.setattr(encoders, "installed_encoders", lambda: installed)
    with pytest.warns(PluginWarning, match="encoder plugin 'broken' .* failed to load"):
        with pytest.raises(PluginError) as info:
            get_encoder("clip", EvaluateConfig())
    assert "broken" not in str(info.value).split("installed:")[1]
    with warnings.catch_warnings(), pytest.raises(PluginError, match="'broken' is installed but failed to load"):
        warnings.simplefilter("error")
        get_encoder("broken", EvaluateConfig())


def test_open_clip_without_its_packages_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where open_clip (or a torchvision matching torch) is missing, the error says what to install."""
    monkeypatch.setitem(sys.modules, "open_clip", None)
    (tmp_path / "w.pt").write_bytes(b"weights")
    cfg = EvaluateConfig(encoder="open_clip", model="ViT-B-32", checkpoint=str(tmp_path / "w.pt"), device="cpu")
    with pytest.raises(
        PluginError, match=r"needs torch, torchvision and open_clip_torch .* pip install 'geosample\[eval\]'"
    ):
        get_encoder("open_clip", cfg)
    with pytest.raises(ConfigError, match="--checkpoint .*nothere.pt does not exist"):
        get_encoder("open_clip", EvaluateConfig(model="ViT-B-32", checkpoint=str(tmp_path / "nothere.pt")))
