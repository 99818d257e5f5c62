"""Zero-shot scene classification: the taxonomy's class names as prompts, scored against the dominant labels."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from geosample.errors import DataQualityWarning, DatasetError, GeosampleError
from geosample.retrieval import metrics
from geosample.retrieval._inputs import Inputs
from geosample.retrieval.config import EvaluateConfig
from geosample.retrieval.encoders import CLASS_KEYS, Encoder
from geosample.retrieval.search import normalise, search

TOP = 5


def add_zero_shot(
    model: Encoder,
    images: np.ndarray,
    samples: pd.DataFrame,
    inputs: Inputs,
    classes: Mapping[str, Mapping[str, str]] | None,
    cfg: EvaluateConfig,
    image_scores: pd.DataFrame,
) -> list[str]:
    """Add ``zero_shot/<level>/top1|top5`` columns to ``image_scores``; returns the levels scored.

    Each class's prompt (``cfg.prompt`` with its name) is embedded by the
    encoder; an image's prediction is its most similar prompts, compared with
    its dominant label at that level.
    """
    if not inputs.dominant_levels:
        return []
    names = dict(classes) if classes is not None else _taxonomy_classes(inputs.taxonomy, inputs.dominant_levels)
    levels = [level for level in inputs.dominant_levels if names.get(level)]
    if not levels:
        return []
    prompts = {code: cfg.prompt.format(name=str(name).lower()) for lv in levels for code, name in names[lv].items()}
    embedded = model.encode_prompts(prompts)
    if embedded is None:
        warnings.warn(
            f"encoder {cfg.encoder!r} embeds no prompts: zero-shot skipped (for precomputed embeddings, give "
            "--class-embeddings with one embedding per taxonomy code)",
            DataQualityWarning,
            stacklevel=3,
        )
        return []
    if embedded.vectors.shape[1] != images.shape[1]:
        raise DatasetError(
            f"class embeddings have {embedded.vectors.shape[1]} dimensions, image embeddings {images.shape[1]}"
        )
    scored = []
    for level in levels:
        codes = list(names[level])
        rows = pd.Index(embedded.keys[CLASS_KEYS[0]].astype(str)).get_indexer(codes)
        if (rows < 0).any():
            warnings.warn(
                f"{int((rows < 0).sum())} of {len(codes)} {level} classes have no prompt embedding and are never "
                "predicted",
                DataQualityWarning,
                stacklevel=3,
            )
        if not (rows >= 0).any():
            continue
        available = np.flatnonzero(rows >= 0)
        ranking = search(
            images, normalise(embedded.vectors[rows[available]]), TOP, device=cfg.device,
            memory_cap=cfg.memory_cap, precision=cfg.precision,
        ).image_to_text  # fmt: skip
        predicted = available[ranking]
        dominant = samples[f"{level}_dominant"].astype(object).where(samples[f"{level}_dominant"].notna(), None)
        truth = pd.Index(codes).get_indexer(dominant.to_numpy())
        unknown = int(((truth < 0) & dominant.notna().to_numpy()).sum())
        if unknown:
            warnings.warn(
                f"{unknown} sample(s) have a {level}_dominant code that is not a {level} class of the taxonomy; "
                "left out of zero-shot",
                DataQualityWarning,
                stacklevel=3,
            )
        image_scores[f"zero_shot/{level}/top1"] = metrics.zero_shot_hits(predicted, truth, 1)
        image_scores[f"zero_shot/{level}/top5"] = metrics.zero_shot_hits(predicted, truth, TOP)
        scored.append(level)
    return scored


def _taxonomy_classes(spec: str | None, levels: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Class names per level from the labels' taxonomy; empty (with a warning) when it cannot be loaded."""
    try:
        from geosample.labels import load_taxonomy

        taxonomy = load_taxonomy(spec)
    except (ImportError, GeosampleError) as exc:
        warnings.warn(f"zero-shot skipped: taxonomy {spec!r} cannot be loaded ({exc})", DataQualityWarning, 3)
        return {}
    return {
        level: {code: taxonomy.classes[code].name for code in taxonomy.codes_at(level)}
        for level in levels
        if level in taxonomy.levels
    }
