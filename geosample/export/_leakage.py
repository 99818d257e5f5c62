"""The "Splits and leakage" section of ``report/index.html``: what is guaranteed, and the figures.

The figures are the dataset's own: the plan's spacing (``report/balance.json``) and the split
report of the last export (``report/splits.json``), or, before any export, the splits that
``geosample export`` would make with its defaults, computed here.
"""

from __future__ import annotations

import html
import json
from typing import Any

from geosample.export._content import DatasetContent

__all__ = ["leakage_section", "split_report"]

GUARANTEES = [
    "No two sites of the plan are closer than its minimum distance (by default the chip diagonal), so no two "
    "chips overlap, also across H3 cell edges.",
    "A site's chips (every date, size and before/after phase) are in one split.",
    "No chip of one split lies within the buffer (by default one chip size) of a chip of another split; sites "
    "that would be are dropped and counted.",
    "Splits are dealt by spatial blocks (H3 cells), stratum by stratum; every stratum with at least 3 sites "
    "has a site in every split, unless its sites crowd within the buffer of one another (then named below).",
]


def split_report(content: DatasetContent) -> tuple[dict[str, Any], str]:
    """The split report to show and where it comes from."""
    path = content.ds / "report" / "splits.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8")), "the last export (report/splits.json)"
    from geosample.export.splits import make_splits

    return make_splits(content.plan).report, "the default splits (no export yet)"


def leakage_section(content: DatasetContent) -> str:
    """The HTML section: the guarantees, the plan's spacing and the splits' figures."""
    spacing = (content.balance or {}).get("spacing") or {}
    report, source = split_report(content)
    items = "".join(f"<li>{html.escape(text)}</li>" for text in GUARANTEES)
    parts = [f"<section><h2>Splits and leakage</h2><ul>{items}</ul>", '<div class="tables">']
    if spacing:
        nn = spacing.get("nearest_neighbour_m") or {}
        rows = [
            ["minimum distance between sites (m)", _number(spacing.get("min_distance_m"))],
            ["nearest neighbour (m): min / 1st pct / median",
             " / ".join(_number(nn.get(k)) for k in ("min", "p01", "median"))],
            ["pairs of sites whose chips overlap", _number(spacing.get("overlapping_chip_pairs"))],
        ]  # fmt: skip
        parts.append(_table(["plan spacing", ""], rows))
    if report:
        block = report.get("block", {})
        header = ["split", "sites", "samples", "strata", "min distance to other splits (m)", "dropped for buffer"]
        rows = [
            [name, s["sites"], s["samples"], s["strata"], _number(s["min_distance_to_other_splits_m"]),
             s["sites_dropped_for_buffer"]]
            for name, s in report.get("splits", {}).items()
        ]  # fmt: skip
        caption = (
            f"From {source}: blocks of ~{block.get('km', 0):g} km (H3 res {block.get('h3_res')}, "
            f"{block.get('rule', '')}), buffer {report.get('buffer_m', 0):g} m"
        )
        parts.append(_table(header, rows, caption))
        missing = report.get("strata_missing_from_a_split") or []
        if missing:
            parts.append(f"<p>Strata of 3+ sites missing from a split: {html.escape(', '.join(missing))}</p>")
    parts.append("</div></section>")
    return "".join(parts)


def _number(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]], caption: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<tr>{head}</tr>{body}</table>"
