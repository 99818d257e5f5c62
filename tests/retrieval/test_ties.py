"""Tie-aware R@K against a brute-force enumeration of every order of the tied items, on tiny cases."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from retrieval.conftest import build_eval_dataset

from geosample.retrieval import EvaluateConfig, evaluate
from geosample.retrieval.evaluate import score_queries
from geosample.retrieval.search import search

pytestmark = pytest.mark.filterwarnings("ignore::geosample.errors.DataQualityWarning")
KS = (1, 2, 3, 10)


def enumerated_recall(row: np.ndarray, relevant: set[int], k: int) -> tuple[float, float, float]:
    """(mean, min, max) over every order of the equal scores of [a relevant item is among the first k].

    Items are sorted by score; each run of equal scores that reaches into the top k is permuted in every way.
    """
    values = np.unique(row)[::-1]
    groups = [list(np.flatnonzero(row == v)) for v in values]
    upto, used = [], 0
    for group in groups:
        if used >= k:
            break
        upto.append(group)
        used += len(group)
    outcomes = []
    for orders in itertools.product(*(itertools.permutations(g) for g in upto)):
        ranked = [i for order in orders for i in order][:k]
        outcomes.append(float(bool(relevant & set(ranked))))
    return float(np.mean(outcomes)), min(outcomes), max(outcomes)


def tiny_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 5))
    text_image = np.repeat(np.arange(n), rng.integers(1, 5, size=n))
    images = rng.integers(-1, 2, size=(n, 2)).astype(np.float32)
    texts = rng.integers(-1, 2, size=(len(text_image), 2)).astype(np.float32)
    images[np.abs(images).sum(axis=1) == 0] = [1, 0]
    texts[np.abs(texts).sum(axis=1) == 0] = [0, 1]
    return images, texts, text_image


def orders_to_enumerate(scores: np.ndarray, k: int) -> int:
    values = np.unique(scores)[::-1]
    total, used = 1, 0
    for v in values:
        if used >= k:
            break
        size = int((scores == v).sum())
        total *= math.factorial(size)
        used += size
    return total


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12])
def test_expected_optimistic_pessimistic_equal_enumeration(seed: int) -> None:
    images, texts, text_image = tiny_case(seed)
    scores = images @ texts.T
    if max(orders_to_enumerate(r, max(KS)) for r in [*scores, *scores.T]) > 50_000:
        pytest.skip("too many tie orders to enumerate")
    got = {}
    for policy in ("expected", "optimistic", "pessimistic", "index"):
        cfg = EvaluateConfig(k=KS, ties=policy)
        found = search(images, texts, cfg.depth, device="cpu")
        got[policy] = score_queries(images, texts, pd.DataFrame(index=range(len(images))), found, text_image, cfg)
    for direction, table, rows, relevant in (
        ("image_to_text", 0, scores, [set(np.flatnonzero(text_image == i)) for i in range(len(images))]),
        ("text_to_image", 1, scores.T, [{int(i)} for i in text_image]),
    ):
        for k in KS:
            want = np.array([enumerated_recall(r, rel, k) for r, rel in zip(rows, relevant, strict=True)])
            np.testing.assert_allclose(got["expected"][table][f"R@{k}"], want[:, 0], atol=1e-12, err_msg=direction)
            np.testing.assert_array_equal(got["pessimistic"][table][f"R@{k}"], want[:, 1])
            np.testing.assert_array_equal(got["optimistic"][table][f"R@{k}"], want[:, 2])
            index = got["index"][table][f"R@{k}"]
            assert ((want[:, 1] <= index) & (index <= want[:, 2])).all()
            report = got["expected"][2][direction]
            assert report.recall_depends[k] == int((want[:, 1] != want[:, 2]).sum())


def test_ties_past_the_ranking_are_counted_over_all_items() -> None:
    """Sixteen identical captions tie for every image: t counts all of them, not only the ranked 11."""
    images = np.eye(4, dtype=np.float32)
    texts = np.tile(np.array([[1, 1, 1, 1]], dtype=np.float32), (16, 1))
    text_image = np.repeat(np.arange(4), 4)
    cfg = EvaluateConfig(k=(1, 5, 10), ties="expected")
    found = search(images, texts, cfg.depth, device="cpu")
    image_scores, text_scores, reports = score_queries(
        images, texts, pd.DataFrame(index=range(4)), found, text_image, cfg
    )
    # Each image has 4 of the 16 tied captions: P(none in the first k) = C(12, k) / C(16, k).
    for k in (1, 5, 10):
        want = 1 - math.comb(12, k) / math.comb(16, k)
        np.testing.assert_allclose(image_scores[f"R@{k}"], want, atol=1e-12)
        # A caption's own image is one of 4 tied images.
        np.testing.assert_allclose(text_scores[f"R@{k}"], min(k, 4) / 4, atol=1e-12)
    assert reports["image_to_text"].boundary[1] == 4 and reports["image_to_text"].recall_depends[1] == 4


def test_evaluate_reports_ties_and_the_policy(planned_ds: Path) -> None:
    data = build_eval_dataset(planned_ds, seed=2, noise=1.0)
    vectors = pd.read_parquet(data.files["text_parquet"])
    vectors["embedding"] = [np.ones(len(v), dtype=np.float32) for v in vectors["embedding"]]  # every caption alike
    vectors.to_parquet(data.files["text_parquet"])
    files = {"image_embeddings": str(data.files["image_parquet"]), "text_embeddings": str(data.files["text_parquet"])}
    by_policy = {p: evaluate(data.ds, write=False, bootstrap=0, ties=p, **files).metrics for p in
                 ("index", "optimistic", "pessimistic", "expected")}  # fmt: skip
    # An image query sees every caption at one score: its g own captions among all M are first with chance g/M.
    r1 = {p: m["image_to_text"]["R@1"] for p, m in by_policy.items()}
    assert r1["pessimistic"] == 0.0 and r1["optimistic"] == 1.0
    assert r1["index"] == pytest.approx(1 / len(data.samples), abs=1e-12)  # the image owning caption 0 only
    assert r1["expected"] == pytest.approx(len(data.captions) / len(data.samples) / len(data.captions), abs=1e-12)
    ties = by_policy["expected"]["ties"]
    assert ties["policy"] == "expected"
    assert ties["image_to_text"]["boundary_ties"]["1"] == len(data.samples)
    assert ties["image_to_text"]["recall_range"]["R@1"] == [0.0, 1.0]
    assert ties["text_to_image"]["boundary_ties"]["1"] == 0  # the images' scores differ
