"""Search plus scoring against the query-by-query reference, on random data with planted matches and ties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from retrieval import reference

from geosample.retrieval import EvaluateConfig, _scoring
from geosample.retrieval.design import Design, estimate
from geosample.retrieval.evaluate import score_queries
from geosample.retrieval.search import search

CODES = [f"c{i}" for i in range(9)]


def summary(
    image_scores: pd.DataFrame, text_scores: pd.DataFrame, text_image: np.ndarray, ks: list[int], levels: list[str]
) -> dict:
    """The unweighted summary of every query, as evaluate nests it (equal weights, no bootstrap)."""
    n = len(image_scores)
    design = Design(np.ones(n), np.arange(n), np.zeros(n, dtype=np.int64), "equal")
    est = estimate(
        design, image_scores.drop(columns="first_hit"), text_scores.drop(columns="first_hit"), text_image,
        [np.ones(n, bool)], replicates=0, seed=0,
    )[0]  # fmt: skip
    return _scoring.summarise(est, ks, levels, [])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 25),
    d=st.integers(1, 4),
    ks=st.lists(st.integers(1, 12), min_size=1, max_size=3, unique=True),
    planted=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**31),
)
def test_metrics_equal_the_reference(n: int, d: int, ks: list[int], planted: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    images = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
    text_image = np.repeat(np.arange(n), rng.integers(1, 4, size=n))
    # Captions near their image (``planted`` scales the image part); small integers make many exact ties.
    texts = np.round(planted * images[text_image] + rng.integers(-1, 2, size=(len(text_image), d))).astype(np.float32)
    texts[np.abs(texts).sum(axis=1) == 0, 0] = 1.0
    images[np.abs(images).sum(axis=1) == 0, 0] = 1.0
    labels = {lv: [set(rng.choice(CODES, size=int(rng.integers(0, 4)), replace=False)) for _ in range(n)]
              for lv in ("l2", "l3")}  # fmt: skip
    cfg = EvaluateConfig(k=tuple(ks), ties="index")
    found = search(images, texts, cfg.depth, device="cpu")
    frame = pd.DataFrame({lv: [sorted(s) for s in sets] for lv, sets in labels.items()})
    image_scores, text_scores, _ = score_queries(images, texts, frame, found, text_image, cfg)
    got = summary(image_scores, text_scores, text_image, ks, list(labels))
    want = reference.retrieval_metrics(images, texts, text_image, labels, ks)
    for direction in ("image_to_text", "text_to_image"):
        for key, value in got[direction].items():
            if isinstance(value, dict):
                for level, v in value.items():
                    assert v == pytest.approx(want[direction][key][level], abs=1e-12), (direction, key, level)
            else:
                assert value == pytest.approx(want[direction][key], abs=1e-12), (direction, key)
    assert got["mR"] == pytest.approx(want["mR"], abs=1e-12)
