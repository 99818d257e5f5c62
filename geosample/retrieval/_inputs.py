"""What an evaluation reads from ``DS``: the samples (split, strata, labels), their captions, and the embeddings."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from geosample._dataset import CAPTIONS_FILE, CHIPS_FILE, LABELS_FILE, read_config, read_samples, read_table
from geosample.errors import ConfigError, DataQualityWarning, DatasetError
from geosample.retrieval.config import EvaluateConfig
from geosample.retrieval.encoders import Embeddings

BUILTIN_STRATA = ("continent", "country", "climate", "landcover")
DESIGN_COLUMNS = ("site_id", "stratum", "inclusion_prob")  # the sampling design, for weights and the bootstrap


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The samples and captions of one evaluation, before encoding."""

    samples: pd.DataFrame
    """One row per sample: ``sample_id``, strata columns, label columns, chips columns when fetched."""
    captions: pd.DataFrame
    """``sample_id``, ``caption_index``, ``caption`` of those samples."""
    strata: tuple[str, ...]
    """Columns of ``samples`` for the per-stratum breakdown."""
    levels: tuple[str, ...]
    """Label levels for relevance (empty without labels)."""
    dominant_levels: tuple[str, ...]
    """Levels with a ``<level>_dominant`` column (zero-shot)."""
    taxonomy: str | None
    """The labels' taxonomy, ``id@version`` (or the config's override)."""
    known_images: pd.DataFrame
    """``sample_id`` of every sample in the dataset (any split)."""
    known_texts: pd.DataFrame
    """``sample_id``, ``caption_index`` of every caption in the dataset."""


def read_inputs(ds: Path, cfg: EvaluateConfig) -> Inputs:
    """Read and check everything the evaluation needs from ``DS``; nothing is written."""
    plan = pd.DataFrame(read_samples(ds).drop(columns="geometry", errors="ignore"))  # the achieved samples
    captions = read_table(ds, CAPTIONS_FILE, hint=f"geosample caption {ds}")
    if captions is None:
        raise DatasetError(f"{ds} has no {CAPTIONS_FILE}; run 'geosample caption {ds}' first")
    missing = [c for c in ("sample_id", "caption_index", "caption") if c not in captions.columns]
    if missing:
        raise DatasetError(f"{ds / CAPTIONS_FILE} lacks column(s) {', '.join(missing)}; re-run 'geosample caption'")
    if "kind" in captions.columns:  # change captions describe a pair of images, not one: scene captions only
        captions = captions[captions["kind"].fillna("scene") == "scene"]
    labels = read_table(ds, LABELS_FILE, hint=f"geosample label {ds}")
    strata = _strata(ds, plan, cfg)
    kept = ["sample_id", *strata, *(c for c in (*DESIGN_COLUMNS, "split") if c in plan.columns)]
    samples = plan[list(dict.fromkeys(kept))]
    levels: tuple[str, ...] = ()
    dominant: tuple[str, ...] = ()
    taxonomy = cfg.taxonomy
    if labels is None:
        warnings.warn(
            f"{ds} has no {LABELS_FILE}: only R@K and mR are computed; run 'geosample label {ds}' for "
            "mAP, WMAP and zero-shot",
            DataQualityWarning,
            stacklevel=3,
        )
    else:
        levels = _check_levels(labels, cfg.levels, ds)
        dominant = tuple(c.removesuffix("_dominant") for c in labels.columns if c.endswith("_dominant"))
        if taxonomy is None and "taxonomy" in labels.columns:
            keys = labels["taxonomy"].dropna().unique()
            if len(keys) > 1:
                raise DatasetError(f"{ds / LABELS_FILE} mixes taxonomies {sorted(keys)}; re-run 'geosample label'")
            taxonomy = str(keys[0]) if len(keys) else None
        columns = ["sample_id", *levels, *(f"{lv}_dominant" for lv in dominant)]
        columns += ["split"] if "split" in labels.columns and "split" not in samples.columns else []
        samples = samples.merge(labels[list(dict.fromkeys(columns))], on="sample_id", how="left", indicator=True)
        unlabelled = samples["_merge"] == "left_only"
        samples = samples[~unlabelled].drop(columns="_merge")
        if unlabelled.any():
            warnings.warn(
                f"{int(unlabelled.sum())} sample(s) have no row in {LABELS_FILE} and are left out",
                DataQualityWarning,
                stacklevel=3,
            )
    samples = _select_split(samples, cfg.split, ds)
    chips = read_table(ds, CHIPS_FILE, hint=f"geosample fetch {ds}")
    if chips is not None:
        if "status" in chips.columns:  # several sources per sample: the first usable chip
            chips = chips.sort_values("status", key=lambda status: status.ne("ok"), kind="stable")
        chips = chips.drop_duplicates("sample_id")
        samples = samples.merge(
            chips.drop(columns=[c for c in chips.columns if c in samples.columns and c != "sample_id"]),
            on="sample_id",
            how="left",
        )
    samples = samples.sort_values("sample_id", kind="stable").reset_index(drop=True)
    known_texts = captions[["sample_id", "caption_index"]]
    captions = captions[captions["sample_id"].isin(samples["sample_id"])]
    captions = captions[["sample_id", "caption_index", "caption"]]
    captions = captions.sort_values(["sample_id", "caption_index"], kind="stable").reset_index(drop=True)
    repeated = captions.duplicated(["sample_id", "caption_index"])
    if repeated.any():
        first = captions[repeated].iloc[0]
        raise DatasetError(
            f"{ds / CAPTIONS_FILE} repeats caption {first['caption_index']} of {first['sample_id']}; "
            "re-run 'geosample caption'"
        )
    return Inputs(samples, captions, strata, levels, dominant, taxonomy, plan[["sample_id"]], known_texts)


def _strata(ds: Path, plan: pd.DataFrame, cfg: EvaluateConfig) -> tuple[str, ...]:
    if cfg.strata is not None:
        unknown = [s for s in cfg.strata if s not in plan.columns]
        if unknown:
            have = [c for c in plan.columns if plan[c].dtype == object and c not in ("sample_id", "site_id", "h3")]
            raise ConfigError(f"--strata {','.join(unknown)}: not in plan.parquet; columns there: {', '.join(have)}")
        return tuple(cfg.strata)
    recorded = read_config(ds).get("plan", {}).get("strata") or BUILTIN_STRATA
    names = [str(s).split("=", 1)[0] for s in recorded]
    return tuple(n for n in names if n in plan.columns)


def _check_levels(labels: pd.DataFrame, levels: Sequence[str], ds: Path) -> tuple[str, ...]:
    have = sorted(c for c in labels.columns if len(c) == 2 and c[0] == "l" and c[1].isdigit())
    missing = [lv for lv in levels if lv not in labels.columns]
    if missing:
        raise ConfigError(f"--level {','.join(missing)}: {ds / LABELS_FILE} has levels {', '.join(have) or 'none'}")
    return tuple(levels)


def _select_split(samples: pd.DataFrame, split: str | None, ds: Path) -> pd.DataFrame:
    """The samples of one split: from a ``split`` column when there is one, else as ``geosample export`` deals them."""
    if split is None:
        return samples
    from geosample.retrieval._splits import dataset_splits, normalise

    split = normalise(split)
    if "split" in samples.columns:
        assigned = samples["split"].astype(str).map(normalise)
    else:
        assigned = samples["sample_id"].map(dataset_splits(ds))
    chosen = samples[(assigned == split).to_numpy()]
    if chosen.empty:
        have = ", ".join(sorted(assigned.dropna().unique())) or "none"
        raise ConfigError(f"--split {split!r} has no samples in {ds}; splits there: {have}")
    return chosen


def align(embeddings: Embeddings, wanted: pd.DataFrame, keys: Sequence[str], what: str, ds: Path) -> np.ndarray:
    """For each row of ``wanted``, the row of ``embeddings`` with the same keys, or -1; warns about the rest.

    Embeddings of things not in the dataset at all are reported (ignored);
    none matching at all is an error, since the file then belongs elsewhere.
    """
    have = embeddings.keys
    missing_keys = [k for k in keys if k not in have.columns]
    if missing_keys:
        raise DatasetError(f"{what} embeddings have no key column(s) {', '.join(missing_keys)}")
    index = pd.MultiIndex.from_frame(have[list(keys)]) if len(keys) > 1 else pd.Index(have[keys[0]])
    target = pd.MultiIndex.from_frame(wanted[list(keys)]) if len(keys) > 1 else pd.Index(wanted[keys[0]])
    rows = index.get_indexer(target)
    if len(wanted) and (rows < 0).all():
        example = have[list(keys)].iloc[0].tolist() if len(have) else []
        raise DatasetError(
            f"none of the {len(have)} {what} embeddings match {ds}'s {what}s (e.g. {example} vs "
            f"{wanted[list(keys)].iloc[0].tolist()}); are they from this dataset?"
        )
    return rows


def report_unknown(embeddings: Embeddings, known: pd.DataFrame, keys: Sequence[str], what: str, ds: Path) -> None:
    """Warn about embeddings whose keys are nowhere in the dataset (not merely outside the split)."""
    if len(keys) > 1:
        have = pd.MultiIndex.from_frame(embeddings.keys[list(keys)])
        known_index = pd.MultiIndex.from_frame(known[list(keys)])
    else:
        have = pd.Index(embeddings.keys[keys[0]])
        known_index = pd.Index(known[keys[0]])
    unknown = ~have.isin(known_index)
    if unknown.any():
        first = have[np.flatnonzero(unknown)[0]]
        warnings.warn(
            f"{int(unknown.sum())} {what} embedding(s) are for {what}s not in {ds} (e.g. {first!r}); ignored",
            DataQualityWarning,
            stacklevel=3,
        )
