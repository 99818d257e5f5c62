"""A planned dataset whose caption embeddings are a fixed linear map of the image embeddings, plus noise."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DIM = 24


@dataclasses.dataclass
class LinearData:
    ds: Path
    images: Path
    texts: Path


@pytest.fixture(scope="session")
def _linear_dataset(tmp_path_factory: pytest.TempPathFactory) -> LinearData:
    """300 planned sites; captions t = W·x + noise with W a random rotation, so cosine alone cannot match them."""
    from geosample import PlanConfig, plan

    folder = tmp_path_factory.mktemp("linear")
    ds = folder / "DS"
    planned = plan(ds, config=PlanConfig.from_mapping({"samples": 300, "aoi": "bbox:-10,35,30,60", "seed": 4}),
                   progress=False)  # fmt: skip
    samples = sorted(planned["sample_id"])
    rng = np.random.default_rng(11)
    rotation, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    images = rng.normal(size=(len(samples), DIM)).astype(np.float32)
    captions = pd.DataFrame({"sample_id": np.repeat(samples, 2), "caption_index": np.tile([0, 1], len(samples))})
    captions["caption"] = "caption " + captions["caption_index"].astype(str) + " of " + captions["sample_id"]
    owner = np.repeat(np.arange(len(samples)), 2)
    texts = (images[owner] @ rotation.T + 0.35 * rng.normal(size=(len(owner), DIM))).astype(np.float32)
    captions.to_parquet(ds / "captions.parquet", index=False)
    pd.DataFrame({"sample_id": samples, "embedding": list(images)}).to_parquet(folder / "images.parquet")
    frame = captions[["sample_id", "caption_index"]].assign(embedding=list(texts))
    frame.to_parquet(folder / "texts.parquet")
    return LinearData(ds, folder / "images.parquet", folder / "texts.parquet")


@pytest.fixture
def linear(_linear_dataset: LinearData, tmp_path: Path) -> LinearData:
    """A private copy of the linear dataset."""
    ds = tmp_path / "DS"
    shutil.copytree(_linear_dataset.ds, ds)
    return LinearData(ds, _linear_dataset.images, _linear_dataset.texts)
