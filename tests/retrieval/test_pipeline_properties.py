"""Search plus scoring against the query-by-query reference, on random data with planted matches and ties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from retrieval import reference

from geosample.retrieval import _scoring, metrics
from geosample.retrieval.search import search

CODES = [f"c{i}" for i in range(9)]


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
    depth = max(*ks, 10)
    found = search(images, texts, depth, device="cpu")
    bits, counts = {}, {}
    for level, sets in labels.items():
        bits[level], counts[level] = _scoring.label_bits(pd.Series([sorted(s) for s in sets], dtype=object))
    text_bits = {lv: b[text_image] for lv, b in bits.items()}
    image_scores = _scoring.retrieval_scores(
        metrics.image_first_hit(found.image_to_text, text_image), found.image_to_text, bits, text_bits, counts, ks
    )
    text_scores = _scoring.retrieval_scores(
        metrics.text_first_hit(found.text_to_image, text_image), found.text_to_image, text_bits, bits,
        {lv: c[text_image] for lv, c in counts.items()}, ks,
    )  # fmt: skip
    got = _scoring.summarise(image_scores, text_scores, ks, list(labels), [])
    want = reference.retrieval_metrics(images, texts, text_image, labels, ks)
    for direction in ("image_to_text", "text_to_image"):
        for key, value in got[direction].items():
            if isinstance(value, dict):
                for level, v in value.items():
                    assert v == pytest.approx(want[direction][key][level], abs=1e-12), (direction, key, level)
            else:
                assert value == pytest.approx(want[direction][key], abs=1e-12), (direction, key)
    assert got["mR"] == pytest.approx(want["mR"], abs=1e-12)
