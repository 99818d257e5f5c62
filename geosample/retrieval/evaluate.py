"""``geosample.evaluate``: image–text retrieval metrics of an encoder on a dataset, overall and per stratum."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geosample import __version__
from geosample._dataset import write_section, writes_dataset
from geosample.errors import DataQualityWarning, DatasetError
from geosample.retrieval import _scoring, metrics, ties
from geosample.retrieval._inputs import Inputs, align, read_inputs, report_unknown
from geosample.retrieval._zero_shot import add_zero_shot
from geosample.retrieval.config import EvaluateConfig
from geosample.retrieval.design import Design, estimate
from geosample.retrieval.encoders import IMAGE_KEYS, TEXT_KEYS, Embeddings, Encoder, get_encoder
from geosample.retrieval.search import Neighbours, normalise, search

EVAL_DIR = "eval"
METRICS_FILE = "metrics.json"
PLOT_FILE = "per_stratum.png"


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` computed."""

    metrics: dict[str, Any]
    """The content of ``DS/eval/metrics.json``."""
    images: pd.DataFrame
    """One row per image query: ``sample_id``, strata, ``first_hit`` (rank of its first caption) and scores."""
    texts: pd.DataFrame
    """One row per caption query: ``sample_id``, ``caption_index``, ``first_hit`` and scores."""
    neighbours: Neighbours
    """The rankings (indices into ``images`` and ``texts`` rows)."""
    seconds: dict[str, float]
    """Wall time of encoding, search and scoring."""
    design: Design | None = None
    """Weights, bootstrap units and strata of the image queries (rows of ``images``)."""

    def table(self) -> str:
        """The metrics as the readable text ``geosample evaluate`` prints."""
        from geosample.retrieval._report import metrics_table

        return metrics_table(self.metrics, self.seconds)


@writes_dataset("evaluate")
def evaluate(
    ds: str | Path,
    *,
    config: EvaluateConfig | None = None,
    encoder: Encoder | str | None = None,
    classes: Mapping[str, Mapping[str, str]] | None = None,
    write: bool = True,
    **settings: Any,
) -> EvaluationResult:
    """Evaluate image–text retrieval on dataset ``ds``; write ``DS/eval/metrics.json`` and ``per_stratum.png``.

    Args:
        ds: Dataset folder with plan.parquet, captions.parquet and, for
            label metrics, labels.parquet.
        config: A ready :class:`EvaluateConfig`; otherwise ``settings`` build one
            (``image_embeddings="img.npy", image_ids=..., k=(1, 5, 10)``, ...).
        encoder: An encoder instance (or name), instead of the one ``config.encoder`` names.
        classes: Zero-shot class names per level (``{"l1": {"1": "Artificial
            surfaces", ...}}``) instead of the labels' taxonomy.
        write: Write the files and the ``evaluate`` section of geosample.yaml.
        **settings: :class:`EvaluateConfig` fields, when ``config`` is not given.

    Returns:
        :class:`EvaluationResult` with the metrics and the per-query scores.
    """
    if isinstance(encoder, str):  # a registered name or module:Class, as the settings give it
        settings, encoder = {**settings, "encoder": encoder}, None
    cfg = config if config is not None else EvaluateConfig.from_mapping(settings)
    ds = Path(ds)
    inputs = read_inputs(ds, cfg)
    started = time.perf_counter()
    model = encoder if encoder is not None else get_encoder(cfg.encoder, cfg)
    if encoder is not None:  # recorded under the instance's own name, not the default setting's
        cfg = dataclasses.replace(cfg, encoder=str(getattr(model, "name", type(model).__name__)))
    if cfg.adapter is not None:
        from geosample.finetune.adapter import AdaptedEncoder

        model = AdaptedEncoder.load(model, cfg.adapter)
    prepare = getattr(model, "prepare", None)
    if callable(prepare):
        prepare(ds)
    image_emb = model.encode_images(ds, inputs.samples)
    text_emb = model.encode_texts(inputs.captions)
    report_unknown(image_emb, inputs.known_images, IMAGE_KEYS, "image", ds)
    report_unknown(text_emb, inputs.known_texts, TEXT_KEYS, "caption", ds)
    samples, captions, images, texts = _pair(inputs, image_emb, text_emb, ds)
    encoded = time.perf_counter()
    text_image = samples.index.get_indexer(captions["sample_id"])
    neighbours = search(images, texts, cfg.depth, device=cfg.device, memory_cap=cfg.memory_cap, precision=cfg.precision)
    searched = time.perf_counter()
    image_scores, text_scores, tie_reports = score_queries(
        images, texts, samples[list(inputs.levels)].reset_index(drop=True), neighbours, text_image, cfg
    )
    zero_shot_levels = add_zero_shot(model, images, samples, inputs, classes, cfg, image_scores)
    strata = samples[list(inputs.strata)].reset_index(drop=True)
    parts = _scoring.domains(strata)
    design = Design.of(samples.reset_index(drop=True))
    estimates = estimate(
        design,
        image_scores.drop(columns="first_hit"),
        text_scores.drop(columns="first_hit"),
        text_image,
        [np.ones(len(samples), dtype=bool)] + [mask for _, _, mask in parts],
        replicates=cfg.bootstrap,
        seed=cfg.seed,
    )
    summary = _scoring.summarise(estimates[0], cfg.k, inputs.levels, zero_shot_levels)
    result = {
        "encoder": getattr(model, "name", type(model).__name__),
        **({"model": cfg.model} if cfg.model else {}),
        **({"adapter": cfg.adapter} if cfg.adapter else {}),
        "split": cfg.split,
        "n_images": summary.pop("n_images"),
        "n_texts": summary.pop("n_texts"),
        "levels": list(inputs.levels),
        "k": list(cfg.k),
        **summary,
        "per_stratum": _scoring.per_stratum(
            [(dim, value, est) for (dim, value, _), est in zip(parts, estimates[1:], strict=True)],
            cfg.k,
            inputs.levels,
            zero_shot_levels,
        ),
        "ties": {"policy": cfg.ties, **{d: r.to_dict() for d, r in tie_reports.items()}},
        "design": {
            "weights": design.source,
            "estimator": "Hájek: Σ y/π / Σ 1/π",
            "bootstrap": cfg.bootstrap,
            "seed": cfg.seed,
            "strata": int(len(np.unique(design.unit_stratum))),
            "units": design.n_units,
            "unit": "site_id" if "site_id" in samples.columns else "sample_id",
        },
    }
    done = time.perf_counter()
    seconds = {"encode": encoded - started, "search": searched - encoded, "score": done - searched}
    image_frame = pd.concat([samples[["sample_id", *inputs.strata]].reset_index(drop=True), image_scores], axis=1)
    text_frame = pd.concat([captions[["sample_id", "caption_index"]].reset_index(drop=True), text_scores], axis=1)
    if write:
        _write(ds, result, cfg)
    return EvaluationResult(result, image_frame, text_frame, neighbours, seconds, design)


def _pair(
    inputs: Inputs, image_emb: Embeddings, text_emb: Embeddings, ds: Path
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """Samples with an image embedding and at least one embedded caption; their captions; unit vectors."""
    if image_emb.vectors.shape[1] != text_emb.vectors.shape[1]:
        raise DatasetError(
            f"image embeddings have {image_emb.vectors.shape[1]} dimensions, caption embeddings "
            f"{text_emb.vectors.shape[1]}; both must come from one model"
        )
    samples, captions = inputs.samples, inputs.captions
    image_rows = align(image_emb, samples, IMAGE_KEYS, "image", ds)
    text_rows = align(text_emb, captions, TEXT_KEYS, "caption", ds)
    _warn_missing(int((image_rows < 0).sum()), "sample(s) have no image embedding")
    _warn_missing(int((text_rows < 0).sum()), "caption(s) have no embedding")
    with_image = set(samples["sample_id"][image_rows >= 0])
    keep_text = (text_rows >= 0) & captions["sample_id"].isin(with_image).to_numpy()
    with_text = set(captions["sample_id"][keep_text])
    keep_image = (image_rows >= 0) & samples["sample_id"].isin(with_text).to_numpy()
    _warn_missing(int(((image_rows >= 0) & ~keep_image).sum()), "sample(s) have no embedded caption")
    if not keep_image.any():
        raise DatasetError(f"no sample of {ds} has both an image and a caption embedding; nothing to evaluate")
    kept = samples[keep_image].set_index("sample_id", drop=False)
    kept.index.name = None
    kept_captions = captions[keep_text].reset_index(drop=True)
    images = normalise(image_emb.vectors[image_rows[keep_image]])
    texts = normalise(text_emb.vectors[text_rows[keep_text]])
    return kept, kept_captions, images, texts


def _warn_missing(count: int, what: str) -> None:
    if count:
        warnings.warn(f"{count} {what} and are left out", DataQualityWarning, stacklevel=4)


def score_queries(
    images: np.ndarray,
    texts: np.ndarray,
    labels: pd.DataFrame,
    nb: Neighbours,
    text_image: np.ndarray,
    cfg: EvaluateConfig,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, ties.TieReport]]:
    """Per-query scores of both directions (R@K under ``cfg.ties``) and their tie counts.

    A caption carries its image's labels.
    """
    image_bits, counts = {}, {}
    for level in labels.columns:
        image_bits[level], counts[level] = _scoring.label_bits(labels[level])
    text_bits = {level: bits[text_image] for level, bits in image_bits.items()}
    text_counts = {level: c[text_image] for level, c in counts.items()}
    own_caption = text_image[nb.image_to_text] == np.arange(len(images))[:, None]
    own_image = nb.text_to_image == text_image[:, None]
    caption = np.arange(len(texts))
    directions = {
        "image_to_text": (nb.image_to_text, nb.image_to_text_scores, own_caption, images, texts, (text_image, caption)),
        "text_to_image": (nb.text_to_image, nb.text_to_image_scores, own_image, texts, images, (caption, text_image)),
    }
    # The CUDA matmul rounds its inputs to fp16 (the default there) or bf16; the CPU computes in fp32.
    precision = "fp32" if nb.device == "cpu" else ("fp16" if cfg.precision == "auto" else cfg.precision)
    rounding = ties.rounding_bound(images.shape[1], precision)
    frames, reports = {}, {}
    for direction, (ranking, scores, relevant, queries, items, pairs) in directions.items():
        first = metrics.first_hit(ranking, relevant)
        found = ties.first_hit_ties(
            ranking, scores, relevant, queries, items, pairs, memory_cap=cfg.memory_cap, rounding=rounding
        )
        reports[direction] = ties.report(scores, found, sorted({*cfg.k, *_scoring.MR_CUTOFFS}), len(items))
        recall = None
        if cfg.ties != "index":
            recall = {k: ties.recall_at(found, k, cfg.ties) for k in sorted({*cfg.k, *_scoring.MR_CUTOFFS})}
        query_bits, item_bits, label_counts = (
            (image_bits, text_bits, counts) if direction == "image_to_text" else (text_bits, image_bits, text_counts)
        )
        frames[direction] = _scoring.retrieval_scores(
            first, ranking, query_bits, item_bits, label_counts, cfg.k, recall
        )
    return frames["image_to_text"], frames["text_to_image"], reports


def _write(ds: Path, result: dict[str, Any], cfg: EvaluateConfig) -> None:
    """Write metrics.json and per_stratum.png under a temporary name, then move both into DS/eval."""
    from geosample.retrieval._plots import plot_per_stratum

    staging = Path(tempfile.mkdtemp(prefix=".eval-", dir=ds))
    try:
        (staging / METRICS_FILE).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        plot_per_stratum(result, staging / PLOT_FILE)
        (ds / EVAL_DIR).mkdir(exist_ok=True)
        for name in (METRICS_FILE, PLOT_FILE):
            (staging / name).replace(ds / EVAL_DIR / name)
        write_section(
            ds,
            "evaluate",
            {**cfg.to_dict(), "n_images": result["n_images"], "n_texts": result["n_texts"],
             "geosample_version": __version__},
        )  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)
