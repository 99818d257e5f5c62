"""What the dataset card, the datasheet and the Croissant file state about a dataset, computed once from its files.

Every figure comes from the dataset folder: the plan and its balance report
(sampling design, strata, allocation, inclusion probabilities, capacity
limits), ``DS/stac/<collection>/collection.json`` (the source collections'
licences), the chips (bands, resolution), the labels (source, taxonomy) and
the captions (backend, model, prompt). What the folder does not record is
left out or named as unknown, never guessed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import numpy as np
import pandas as pd

from geosample.export._content import DatasetContent

__all__ = ["DatasetFacts", "dataset_facts"]

INDEX_RES = 2
"""H3 resolution of the dataset-level spatial index (cells of ~86,000 km²; at most 5,882 tokens)."""
_SPDX = re.compile(r"^[A-Za-z0-9.+-]+$")
_TEMPORAL_RESOLUTION = {"year": (1, "year"), "season": (3, "month"), "month": (1, "month")}


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
    """Facts about one dataset, as plain JSON-ready values."""

    name: str
    samples: int
    sites: int
    records: int
    splits: dict[str, int]
    licenses: list[str]
    """SPDX identifiers (or ``other``) of the source collections' licences, each once."""
    collections: list[dict[str, Any]]
    """Per source collection: ``id``, ``title``, ``license``, ``bands``, ``resolution_m``, ``chips``."""
    bands: list[str]
    """Band names of the chips when every collection has the same ones, else empty."""
    resolutions_m: list[float]
    """Distinct chip pixel sizes on the ground."""
    chip_sizes_m: list[float]
    epsg_codes: list[int]
    start: str | None
    end: str | None
    time_bins: str | None
    """``year``, ``season`` or ``month`` (plans by time bin), else None."""
    h3_res: int
    parent_res: int | None
    split_res: int
    """H3 resolution of the blocks dealt to splits (-1 when nothing was split)."""
    split_buffer_m: float | None
    """No chip of one split lies within this distance of another split's chip."""
    dimensions: list[str]
    strata: list[dict[str, Any]]
    """Per stratum: ``stratum``, ``sites``, ``samples``, ``target``, ``area_km2``, ``inclusion_prob`` (None unknown)."""
    allocation: str | None
    max_per_parent: int | None
    aoi: str | None
    capacity_limited: list[str]
    label_source: str | None
    taxonomy: str | None
    levels: list[str]
    captions: int
    captions_per_sample: float
    caption_sources: list[dict[str, Any]]
    """Distinct (backend, model, prompt_sha256) that wrote the captions, with their counts."""
    dimension_shares: dict[str, dict[str, float]]
    """Share of sites per value of each stratification dimension."""
    index_res: int
    """H3 resolution of :attr:`index_cells`."""
    index_cells: list[str]
    """The H3 cells at ``index_res`` that hold the sites: a coarse spatial index of the whole dataset."""

    @property
    def sampling_strategy(self) -> str:
        """One paragraph: the design, its figures and where the per-stratum probabilities are."""
        dims = " × ".join(self.dimensions) or "stratum"
        held = sum(1 for s in self.strata if s["sites"])
        found = f" of {len(self.strata)} found in the area" if len(self.strata) != held else ""
        text = (
            f"Stratified H3 probability sample: {self.sites} sites at H3 resolution {self.h3_res}, "
            f"strata {dims} ({held} strata hold sites{found}), {self.allocation or 'unrecorded'} allocation"
        )
        if self.max_per_parent is not None and self.parent_res is not None:
            text += f", at most {self.max_per_parent} site(s) per H3 resolution-{self.parent_res} parent cell"
        if self.aoi:
            text += f", area of interest {self.aoi}"
        if self.time_bins:
            text += f"; time balanced across {self.time_bins} bins"
        probs = [s["inclusion_prob"] for s in self.strata if s["inclusion_prob"] is not None]
        if probs:
            text += (
                f". Inclusion probability of a resolution-{self.h3_res} cell per stratum from "
                f"{min(probs):.3g} to {max(probs):.3g} (the strata record set lists each, with target and allocation)"
            )
        else:
            text += ". Inclusion probabilities were not recorded by this plan (no inclusion_prob column)"
        return text + "."

    @property
    def biases(self) -> list[str]:
        """Known biases and limits, from the balance report and the data."""
        out = []
        if self.capacity_limited:
            out.append(
                f"{len(self.capacity_limited)} stratum/strata could not reach their target (capacity-limited): "
                + ", ".join(self.capacity_limited[:10])
                + ("..." if len(self.capacity_limited) > 10 else "")
                + "; their share is below the design's."
            )
        for dim, shares in self.dimension_shares.items():
            top = sorted(shares.items(), key=lambda kv: -kv[1])[:3]
            out.append(f"Sites per {dim}: " + ", ".join(f"{k} {v:.0%}" for k, v in top) + (
                f" (of {len(shares)} values)" if len(shares) > 3 else ""
            ))  # fmt: skip
        if self.strata and self.allocation == "equal":
            out.append(
                "Equal allocation: every stratum gets about the same number of sites whatever its area, so small "
                "strata are over-represented relative to their area (weight by 1/inclusion_prob for area estimates)."
            )
        if self.label_source:
            out.append(f"Labels come from one map ({self.label_source}); its errors and resolution carry over.")
        return out


def dataset_facts(content: DatasetContent, records: pd.DataFrame) -> DatasetFacts:
    """The facts of ``content`` and its export ``records``.

    ``records`` carry their ``split``, and the split report in ``records.attrs["split_report"]``.
    """
    split_report = records.attrs.get("split_report") or {}
    plan = content.plan
    sites = plan.drop_duplicates("site_id")
    plan_cfg = content.config.get("plan") or {}
    balance = content.balance or {}
    collections = _collections(content)
    bands = {tuple(c["bands"]) for c in collections}
    caption_sources: list[dict[str, Any]] = []
    if content.captions is not None and len(content.captions):
        columns = [c for c in ("backend", "model", "prompt_sha256") if c in content.captions]
        grouped = content.captions.groupby(columns, dropna=False).size()
        for key, n in grouped.items():
            values = key if isinstance(key, tuple) else (key,)
            caption_sources.append({**{c: _plain(v) for c, v in zip(columns, values, strict=True)}, "captions": int(n)})
    counts = records["split"].value_counts()
    return DatasetFacts(
        name=content.name,
        samples=len(plan),
        sites=len(sites),
        records=len(records),
        splits={str(s): int(n) for s, n in counts.items()},
        licenses=sorted({c["license"] for c in collections}) or [],
        collections=collections,
        bands=list(next(iter(bands))) if len(bands) == 1 else [],
        resolutions_m=sorted({float(r) for r in records.get("resolution", pd.Series([], dtype=float)).dropna()}),
        chip_sizes_m=sorted({float(s) for s in plan["chip_size_m"]}),
        epsg_codes=sorted({int(e) for e in plan["epsg"]}),
        start=_iso(plan["start_datetime"].min()) if len(plan) else None,
        end=_iso(plan["end_datetime"].max()) if len(plan) else None,
        time_bins=plan_cfg.get("time_bins") if not plan_cfg.get("events") else None,
        h3_res=int(plan["h3_res"].min()) if len(plan) else 0,
        parent_res=content.parent_res,
        split_res=int((split_report.get("block") or {}).get("h3_res", -1)),
        split_buffer_m=split_report.get("buffer_m"),
        dimensions=list(content.dimensions),
        strata=_strata(content, sites),
        allocation=balance.get("allocation") or plan_cfg.get("allocation"),
        max_per_parent=balance.get("max_per_parent", plan_cfg.get("max_per_parent")),
        aoi=str(plan_cfg["aoi"]) if plan_cfg.get("aoi") else None,
        capacity_limited=[s["stratum"] for s in balance.get("strata", []) if s.get("capacity_limited")],
        label_source=str(content.labels["label_source"].iloc[0]) if content.labels is not None and len(content.labels)
        else None,
        taxonomy=content.taxonomy.key if content.taxonomy is not None else None,
        levels=list(content.levels),
        captions=0 if content.captions is None else len(content.captions),
        captions_per_sample=0.0 if content.captions is None or not len(plan)
        else float(content.captions.groupby("sample_id").size().mean()),
        caption_sources=caption_sources,
        index_res=min(INDEX_RES, int(plan["h3_res"].min()) if len(plan) else INDEX_RES),
        index_cells=_cells(plan, min(INDEX_RES, int(plan["h3_res"].min()) if len(plan) else INDEX_RES)),
        dimension_shares={
            d: {str(k): float(v) for k, v in sites[d].astype(str).value_counts(normalize=True).items()}
            for d in content.dimensions
        },
    )  # fmt: skip


def _cells(plan: pd.DataFrame, res: int) -> list[str]:
    from geosample.export.splits import h3_parents

    if not len(plan):
        return []
    return sorted(f"{int(c):x}" for c in np.unique(h3_parents(plan["h3"].to_numpy(), res)))


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _iso(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _collections(content: DatasetContent) -> list[dict[str, Any]]:
    """Each chip source: its licence and title from ``DS/stac/<id>/collection.json``, bands and pixel size."""
    if content.chips is None:
        return []
    out = []
    for name in content.collections:
        chips = content.chips[content.chips["collection"] == name]
        recorded: dict[str, Any] = {}
        path = content.ds / "stac" / name / "collection.json"
        if path.is_file():
            try:
                recorded = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                recorded = {}
        source = recorded.get("geosample:source") or {}
        license_ = str(recorded.get("license") or "other")
        bands = chips["bands"].dropna().iloc[0] if "bands" in chips and chips["bands"].notna().any() else []
        resolution = chips["resolution"].dropna() if "resolution" in chips else pd.Series([], dtype=float)
        out.append(
            {
                "id": name,
                "title": source.get("title") or name,
                "license": license_ if _SPDX.match(license_) else "other",
                "bands": [str(b) for b in bands],
                "resolution_m": sorted({float(r) for r in resolution}),
                "chips": len(chips),
            }
        )
    return out


def _strata(content: DatasetContent, sites: pd.DataFrame) -> list[dict[str, Any]]:
    """Per stratum: sites and samples achieved, the plan's target and area, and the inclusion probability."""
    per_site = sites["stratum"].astype(str).value_counts()
    per_sample = content.plan["stratum"].astype(str).value_counts()
    recorded = {row["stratum"]: row for row in (content.balance or {}).get("strata", [])}
    probability = (
        content.plan.groupby(content.plan["stratum"].astype(str))["inclusion_prob"].mean()
        if "inclusion_prob" in content.plan
        else None
    )
    out = []
    for stratum in sorted(set(per_site.index) | set(recorded)):
        row = recorded.get(stratum, {})
        prob = None if probability is None or stratum not in probability.index else float(probability[stratum])
        out.append(
            {
                "stratum": stratum,
                "sites": int(per_site.get(stratum, 0)),
                "samples": int(per_sample.get(stratum, 0)),
                "target": row.get("final_target", row.get("target")),
                "area_km2": row.get("area_km2"),
                "inclusion_prob": prob,
            }
        )
    return out
