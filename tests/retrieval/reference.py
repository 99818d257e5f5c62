"""Brute-force reference implementations, written from the definitions in DESIGN.md, one query at a time.

Nothing here imports geosample.retrieval: these are the independent answers
the tests compare geosample against.
"""

from __future__ import annotations

import numpy as np


def full_ranking(scores: np.ndarray) -> np.ndarray:
    """Every row's items by score descending, ties by index ascending (a stable sort of the full matrix)."""
    n, m = scores.shape
    return np.lexsort((np.broadcast_to(np.arange(m), (n, m)), -scores), axis=1)


def topk_both(images: np.ndarray, texts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k texts per image and images per text from the full similarity matrix."""
    scores = images @ texts.T
    return full_ranking(scores)[:, :k], full_ranking(scores.T)[:, :k]


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def recall(rankings: list[list[int]], relevant: list[set[int]], k: int) -> float:
    """Fraction of queries with a relevant item among their first k."""
    return float(np.mean([bool(set(r[:k]) & rel) for r, rel in zip(rankings, relevant, strict=True)]))


def ap_at(shared: list[int], k: int) -> float:
    """AP@k from the shared-label counts of the ranked items (relevant: shares at least one)."""
    hits, total, found = 0, 0.0, 0
    for i, r in enumerate(shared[:k], start=1):
        if r > 0:
            hits += 1
            total += hits / i
            found += 1
    return total / found if found else 0.0


def wap_at(shared: list[float], k: int) -> float:
    """WAP@k (Zhao et al. 2015): mean of ACG@i over the relevant ranks i ≤ k."""
    cumulative, total, found = 0.0, 0.0, 0
    for i, r in enumerate(shared[:k], start=1):
        cumulative += r
        if r > 0:
            total += cumulative / i
            found += 1
    return total / found if found else 0.0


def retrieval_metrics(
    images: np.ndarray,
    texts: np.ndarray,
    text_image: np.ndarray,
    labels: dict[str, list[set[str]]],
    ks: list[int],
    image_queries: np.ndarray | None = None,
) -> dict:
    """metrics.json's image_to_text, text_to_image and mR, computed query by query.

    ``image_queries`` (boolean per image) limits the queries to those images and
    their captions, still ranked against all items (the per-stratum figures).
    """
    scores = images @ texts.T
    n, m = scores.shape
    chosen = np.ones(n, bool) if image_queries is None else image_queries
    i_rows, t_rows = np.flatnonzero(chosen), np.flatnonzero(chosen[text_image])
    i2t = full_ranking(scores)[i_rows]
    t2i = full_ranking(scores.T)[t_rows]
    own_texts = [set(np.flatnonzero(text_image == i)) for i in i_rows]
    out: dict = {"image_to_text": {}, "text_to_image": {}}
    for k in sorted(set(ks) | {1, 5, 10}):
        out["image_to_text"][f"R@{k}"] = recall([list(r) for r in i2t], own_texts, k)
        out["text_to_image"][f"R@{k}"] = recall([list(r) for r in t2i], [{text_image[j]} for j in t_rows], k)
    out["mR"] = float(np.mean([out[d][f"R@{k}"] for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)]))
    for level, sets in labels.items():
        text_sets = [sets[text_image[j]] for j in range(m)]
        for k in ks:
            for direction, rankings, queries, items in (
                ("image_to_text", i2t, [sets[i] for i in i_rows], text_sets),
                ("text_to_image", t2i, [text_sets[j] for j in t_rows], sets),
            ):
                shared = [
                    [len(q & items[j]) for j in ranking[:k]] for q, ranking in zip(queries, rankings, strict=True)
                ]
                norm = [[r / len(q) if q else 0.0 for r in row] for q, row in zip(queries, shared, strict=True)]
                block = out[direction]
                block.setdefault(f"mAP@{k}", {})[level] = float(np.mean([ap_at(s, k) for s in shared]))
                block.setdefault(f"WMAP@{k}", {})[level] = float(np.mean([wap_at(s, k) for s in shared]))
                block.setdefault(f"WMAP@{k}_norm", {})[level] = float(np.mean([wap_at(s, k) for s in norm]))
    return out


def zero_shot(images: np.ndarray, classes: np.ndarray, truth: list[int | None]) -> dict[str, float]:
    """Top-1 and top-5 accuracy of classifying each image by its most similar class embedding."""
    ranking = full_ranking(images @ classes.T)
    scored = [(r, t) for r, t in zip(ranking, truth, strict=True) if t is not None]
    return {
        "top1": float(np.mean([r[0] == t for r, t in scored])),
        "top5": float(np.mean([t in r[:5] for r, t in scored])),
    }
