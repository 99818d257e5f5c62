"""The Parquet export's dataset card: Hugging Face metadata and a datasheet ("Datasheets for Datasets").

The metadata follow the Hub's dataset card fields (licence from the source
collections, task categories, size category, machine-generated annotations,
source datasets); the datasheet answers Gebru et al.'s questions with what
the run recorded: composition, the collection process with the sampling
design and its figures, preprocessing, uses. Motivation and maintenance are
left to the dataset's authors as marked placeholders: geosample cannot know
them.
"""

from __future__ import annotations

from typing import Any

from geosample import __version__
from geosample.export._content import DatasetContent
from geosample.export._facts import DatasetFacts

__all__ = ["PLACEHOLDER", "card_metadata", "datasheet", "hf_license"]

PLACEHOLDER = "_To be written by the dataset's authors (geosample cannot know it)._"
MAX_STRATA_ROWS = 25


def hf_license(spdx: str) -> str:
    """An SPDX identifier as the Hub's licence id (lower case: ``CC-BY-4.0`` → ``cc-by-4.0``); ``other`` stays."""
    return spdx.lower()


def card_metadata(facts: DatasetFacts) -> dict[str, Any]:
    """The card's YAML header, but for ``configs`` and ``dataset_info`` (which come from the files)."""
    from geosample.export.parquet import size_category

    licenses = [hf_license(x) for x in facts.licenses] or ["other"]
    header: dict[str, Any] = {
        "license": licenses[0] if len(licenses) == 1 else licenses,
        "pretty_name": facts.name,
        "language": ["en"],
        "tags": ["remote-sensing", "earth-observation", "geospatial", "image-text", "geosample"],
        "task_categories": ["image-to-text", "zero-shot-image-classification", "image-classification"],
        "size_categories": [size_category(facts.records)],
        "annotations_creators": ["machine-generated"],
        "language_creators": ["machine-generated"],
        "source_datasets": [f"stac:{c['id']}" for c in facts.collections] + (
            [f"labels:{facts.label_source}"] if facts.label_source else []
        ),
    }  # fmt: skip
    if "other" in licenses:
        header["license_name"] = "see the source collections"
        header["license_details"] = (
            "The licence of at least one source STAC collection is not an SPDX identifier or was not recorded; "
            "see the datasheet's collection section."
        )
    return header


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    out += ["| " + " | ".join("–" if v is None else str(v) for v in row) + " |" for row in rows]
    return out


def datasheet(facts: DatasetFacts, content: DatasetContent) -> list[str]:
    """The datasheet section of the card, as Markdown lines."""
    lines = ["## Datasheet", "", "### Motivation", "", PLACEHOLDER, ""]
    lines += ["### Composition", ""]
    lines.append(
        f"{facts.records} records: {facts.samples} samples at {facts.sites} sites"
        + (f", {sum(c['chips'] for c in facts.collections)} image chips" if facts.collections else ", no image chips")
        + (f", {facts.captions} captions ({facts.captions_per_sample:.1f} per captioned sample)" if facts.captions
           else "") + "."
    )  # fmt: skip
    buffer = (
        f"; spatial blocks of H3 resolution {facts.split_res}, and no chip of one split within "
        f"{facts.split_buffer_m:,.0f} m of another split's chip"
        if facts.split_buffer_m is not None and facts.split_res >= 0
        else ""
    )
    lines.append("Splits: " + ", ".join(f"{s} {n}" for s, n in facts.splits.items()) + buffer + ".")
    if facts.levels:
        lines.append(
            f"Labels: taxonomy {facts.taxonomy}, levels {', '.join(facts.levels)}, from {facts.label_source}; "
            "each record lists the classes covering at least the label stage's minimum share of the chip, "
            "the dominant class per level and every class's share."
        )
    for dim, shares in facts.dimension_shares.items():
        top = sorted(shares.items(), key=lambda kv: -kv[1])[:8]
        lines.append(f"Sites per {dim}: " + ", ".join(f"{k} {v:.0%}" for k, v in top) + ".")
    if content.missing():
        lines.append("Missing parts: " + "; ".join(content.missing()) + ".")
    lines += ["", "### Collection process", "", facts.sampling_strategy, ""]
    if facts.start and facts.end:
        lines.append(f"Imagery time windows: {facts.start[:10]} to {facts.end[:10]}.")
    for c in facts.collections:
        res = ", ".join(f"{r:g} m" for r in c["resolution_m"]) or "unrecorded"
        lines.append(
            f"Imagery: STAC collection `{c['id']}` ({c['title']}), licence {c['license']}, "
            f"{c['chips']} chips, bands {', '.join(c['bands']) or 'unrecorded'}, pixel size {res}."
        )
    rows = [
        [s["stratum"], s["sites"], s["target"], _area(s["area_km2"]), _prob(s["inclusion_prob"])]
        for s in sorted(facts.strata, key=lambda s: -s["sites"])[:MAX_STRATA_ROWS]
    ]
    if rows:
        lines += ["", "Strata (largest first" + (f", {MAX_STRATA_ROWS} of {len(facts.strata)}" if len(
            facts.strata) > MAX_STRATA_ROWS else "") + "):", ""]  # fmt: skip
        lines += _table(["stratum", "sites", "target", "area km²", "inclusion probability"], rows)
    lines += ["", "### Preprocessing, cleaning, labelling", ""]
    if facts.collections:
        lines.append(
            "Each chip is read from its source item's Cloud-Optimized GeoTIFFs through the window under the chip "
            "and warped onto the sample's grid: centred on the sample, in the UTM zone of its centre "
            f"(EPSG codes {', '.join(str(e) for e in facts.epsg_codes[:12])}), "
            f"{', '.join(f'{s:g}' for s in facts.chip_sizes_m)} m on a side."
        )
    if facts.label_source:
        lines.append(
            f"Labels are the class shares of {facts.label_source} on each chip's own grid, mapped to {facts.taxonomy} "
            "and rolled up its levels (machine-generated, not reviewed by people)."
        )
    for source in facts.caption_sources:
        lines.append(
            f"Captions: {source['captions']} machine-generated by the `{source.get('backend')}` backend"
            f" (model {source.get('model') or 'none'}, prompt sha256 {str(source.get('prompt_sha256'))[:12]}…)."
        )
    lines += [
        "",
        "### Uses",
        "",
        "Training and evaluating image–text retrieval, zero-shot scene classification and captioning models for "
        "remote sensing, with spatial splits separated by a buffer; per-stratum evaluation (weight by "
        "1/inclusion probability for design-based estimates).",
        "",
        "Known biases and limits:",
        "",
        *(f"- {b}" for b in facts.biases),
        "",
        "### Distribution and maintenance",
        "",
        "Licences: " + (", ".join(facts.licenses) or "other") + " (the source collections'); " + PLACEHOLDER,
        "",
        f"_Generated by geosample {__version__}._",
    ]
    return lines


def _prob(value: float | None) -> str | None:
    return None if value is None else f"{value:.3g}"


def _area(value: float | None) -> str | None:
    return None if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
