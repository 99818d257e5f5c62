"""Each metric on hand-computed cases, and invariants over random rankings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from retrieval.reference import ap_at, wap_at

from geosample.retrieval import metrics
from geosample.retrieval._scoring import label_bits


def test_recall_and_first_hits_by_hand() -> None:
    # Texts 0,1 belong to image 0; text 2 to image 1; text 3 to image 2.
    text_image = np.array([0, 0, 1, 2])
    image_to_text = np.array([[2, 1, 0], [3, 0, 1], [0, 1, 2]])
    first = metrics.image_first_hit(image_to_text, text_image)
    # Image 0 meets text 1 at rank 1; the others never.
    np.testing.assert_array_equal(first, [1, metrics.NOT_RANKED, metrics.NOT_RANKED])
    assert metrics.recall_at(first, 1).mean() == 0.0
    assert metrics.recall_at(first, 2).mean() == pytest.approx(1 / 3)
    text_to_image = np.array([[0, 1], [1, 0], [1, 2], [0, 1]])  # text 3 (image 2) never meets it
    t_first = metrics.text_first_hit(text_to_image, text_image)
    np.testing.assert_array_equal(t_first, [0, 1, 0, metrics.NOT_RANKED])
    assert metrics.recall_at(t_first, 1).mean() == 0.5
    assert metrics.recall_at(t_first, 2).mean() == 0.75
    # mR over R@1, R@5, R@10 of both directions: (0 + 1/3 + 1/3 + 0.5 + 0.75 + 0.75) / 6.
    assert metrics.mean_recall(first, t_first) == pytest.approx((0 + 1 / 3 + 1 / 3 + 0.5 + 0.75 + 0.75) / 6)


def test_average_precision_by_hand() -> None:
    shared = np.array([[1, 0, 2], [0, 0, 0], [3, 1, 1], [0, 1, 0]])
    ap = metrics.average_precision(shared, 3)
    # [1,0,1]: (1/1 + 2/3) / 2; none relevant: 0; all: 1; [0,1,0]: (1/2) / 1.
    np.testing.assert_allclose(ap, [(1 + 2 / 3) / 2, 0.0, 1.0, 0.5])
    np.testing.assert_allclose(metrics.average_precision(shared, 1), [1.0, 0.0, 1.0, 0.0])


def test_weighted_average_precision_by_hand() -> None:
    shared = np.array([[2, 0, 1], [0, 0, 0], [1, 1, 1]])
    # r = [2,0,1]: ACG@1 = 2, ACG@3 = 1; WAP = (2 + 1) / 2.
    np.testing.assert_allclose(metrics.weighted_average_precision(shared, 3), [1.5, 0.0, 1.0])
    # Normalised by the query's 2, 1 and 4 labels: [1,0,.5] -> (1 + .5)/2; [.25,.25,.25] -> .25.
    counts = np.array([2, 1, 4])
    np.testing.assert_allclose(metrics.weighted_average_precision(shared, 3, counts), [0.75, 0.0, 0.25])
    np.testing.assert_allclose(metrics.weighted_average_precision(shared, 2, counts), [1.0, 0.0, 0.25])


def test_zero_shot_and_group_means_by_hand() -> None:
    ranking = np.array([[2, 0, 1], [1, 2, 0], [0, 1, 2]])
    truth = np.array([0, 1, -1])
    top1 = metrics.zero_shot_hits(ranking, truth, 1)
    top2 = metrics.zero_shot_hits(ranking, truth, 2)
    np.testing.assert_array_equal(top1[:2], [0.0, 1.0])
    np.testing.assert_array_equal(top2[:2], [1.0, 1.0])
    assert np.isnan(top1[2])
    means = metrics.group_means(np.array([1.0, 0.0, np.nan, 0.5]), np.array([0, 0, 1, 2]), 4)
    np.testing.assert_array_equal(means[:3], [0.5, np.nan, 0.5])
    assert np.isnan(means[3])


def test_label_bits_count_shared_labels() -> None:
    lists = pd.Series([["a", "b"], ["b"], [], None, ["c", "a", "d"]], dtype=object)
    bits, counts = label_bits(lists)
    np.testing.assert_array_equal(counts, [2, 1, 0, 0, 3])
    shared = metrics.shared_labels(bits, bits, np.array([[4, 1, 2], [0, 4, 3], [0, 1, 4], [0, 1, 2], [0, 1, 4]]))
    np.testing.assert_array_equal(shared, [[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0], [1, 0, 3]])


def test_label_bits_beyond_one_word() -> None:
    codes = [f"c{i}" for i in range(150)]
    lists = pd.Series([codes[:100], codes[60:150], ["c149"]], dtype=object)
    bits, counts = label_bits(lists)
    assert bits.shape == (3, 3)
    np.testing.assert_array_equal(counts, [100, 90, 1])
    shared = metrics.shared_labels(bits, bits, np.array([[1, 2], [0, 2], [1, 0]]))
    np.testing.assert_array_equal(shared, [[40, 0], [40, 1], [1, 0]])


def test_popcount_fallback_matches() -> None:
    words = np.random.default_rng(0).integers(0, 2**63, size=(50, 3), dtype=np.uint64)
    expected = np.array([[bin(int(w)).count("1") for w in row] for row in words])
    np.testing.assert_array_equal(metrics.popcount(words), expected)
    table = metrics._BYTE_POPCOUNT[words.view(np.uint8)].reshape(50, 3, 8).sum(axis=-1)
    np.testing.assert_array_equal(table, expected)


shared_rows = st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=12), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(rows=shared_rows, k=st.integers(1, 12))
def test_invariants_and_reference(rows: list[list[int]], k: int) -> None:
    depth = min(len(r) for r in rows)
    shared = np.array([r[:depth] for r in rows])
    counts = np.maximum(shared.max(axis=1), 1) + 1  # a query has at least as many labels as it shares
    ap = metrics.average_precision(shared, k)
    wap = metrics.weighted_average_precision(shared, k)
    norm = metrics.weighted_average_precision(shared, k, counts)
    assert ((ap >= 0) & (ap <= 1)).all() and ((norm >= 0) & (norm <= 1)).all()
    assert (wap <= shared.max(axis=1) + 1e-12).all()
    np.testing.assert_allclose(ap, [ap_at(list(r), k) for r in shared])
    np.testing.assert_allclose(wap, [wap_at(list(r), k) for r in shared])
    np.testing.assert_allclose(norm, [wap_at([v / c for v in r], k) for r, c in zip(shared, counts, strict=True)])
    # With 0/1 relevance the cumulative gain is the precision: WAP equals AP.
    binary = (shared > 0).astype(int)
    np.testing.assert_allclose(metrics.weighted_average_precision(binary, k), metrics.average_precision(binary, k))
