"""EvaluateConfig: loose values in, one validated frozen object out, and back."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geosample.errors import ConfigError
from geosample.retrieval.config import EvaluateConfig, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("2GB", 2 * 10**9), ("512MiB", 512 * 2**20), ("1.5 gib", int(1.5 * 2**30)), ("1e9", 10**9), (4096, 4096)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "2 parsecs", "GB", "", True])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ConfigError, match="is not a size; use e.g. 2GB"):
        parse_size(text)


def test_from_loose_values(tmp_path: Path) -> None:
    (tmp_path / "img.npy").write_bytes(b"")
    cfg = EvaluateConfig.from_mapping(
        {"image-embeddings": "img.npy", "level": "l1, l3", "k": "10,1", "memory_cap": "1GB", "batch-size": "8",
         "rgb_bands": ["B04", "B03", "B02"], "text_embeddings": "missing.npy"},
        base_dir=tmp_path,
    )  # fmt: skip
    assert cfg.image_embeddings == str(tmp_path / "img.npy")  # resolved: it exists beside the config
    assert cfg.text_embeddings == "missing.npy"  # left as given: it is not there
    assert cfg.levels == ("l1", "l3") and cfg.k == (10, 1) and cfg.max_k == 10
    assert cfg.memory_cap == 10**9 and cfg.batch_size == 8 and cfg.rgb_bands == ("B04", "B03", "B02")
    assert EvaluateConfig(k=(1, 50)).max_k == 50


@given(
    k=st.lists(st.integers(1, 10_000), min_size=1, max_size=5, unique=True),
    levels=st.lists(st.sampled_from(["l1", "l2", "l3", "l4"]), max_size=4, unique=True),
    cap=st.integers(1, 2**40),
    split=st.none() | st.sampled_from(["test", "val"]),
)
def test_round_trip_through_the_recorded_section(k: list[int], levels: list[str], cap: int, split: str | None) -> None:
    cfg = EvaluateConfig(k=tuple(k), levels=tuple(levels), memory_cap=cap, split=split)
    assert EvaluateConfig.from_mapping(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"k": "1,1"}, "--k repeats a cut-off"),
        ({"k": []}, "--k is empty"),
        ({"level": "l2,l2"}, "--level repeats a level"),
        ({"precision": "fp8"}, "--precision 'fp8' is not one of"),
        ({"images": "tiles"}, "--images 'tiles' is not one of"),
        ({"rgb_bands": "red,green"}, "needs three band names"),
        ({"strata": ""}, "--strata is empty"),
        ({"encoder": ""}, "--encoder is empty"),
        ({"device": "cuda:x"}, "--device 'cuda:x' is not one of"),
    ],
)
def test_invalid_values(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EvaluateConfig.from_mapping(values)
