"""``DS/report/index.html``: the dataset at a glance, in one self-contained page.

Every image is inlined as a ``data:`` URI and the page loads nothing else (a
Content-Security-Policy forbids it), so it opens offline, from an e-mail or
a USB stick. It shows the plan's map, the statistics' plots and tables, and
a gallery of samples picked across strata: the chip preview (or the chip
rendered, or the footprint when there is no chip) with its captions and
labels. A small inline script marks the page ``data-status="ok"`` once every
image has decoded, which the tests read from headless Chromium.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geosample._dataset import atomic_path
from geosample._gpkg import qualitative_colors
from geosample.captions.report_html import caption_quality_section
from geosample.export._achieved import achieved_section
from geosample.export._content import DatasetContent
from geosample.export._leakage import leakage_section
from geosample.export._preview import render_png, thumbnail
from geosample.export.fidelity import fidelity_section

__all__ = ["SECTIONS", "gallery_rows", "section", "write_index_html"]

THUMBNAIL_PX = 220
MAX_TABLE_ROWS = 30
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:18px 28px}header h1{margin:0 0 6px;font-size:24px}
main{padding:10px 28px 40px;max-width:1400px}section{background:#fff;border-radius:8px;padding:14px 18px;
margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}h2{font-size:18px;margin:4px 0 12px}
.figure{max-width:100%;height:auto;border:1px solid #e3e6ea}.missing{background:#fff4e5;border-left:4px solid #f0a030}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{padding:3px 10px;border-bottom:1px solid #e8eaed;
text-align:left}th{background:#f0f2f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
.tables{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}.gallery{display:grid;gap:14px;
grid-template-columns:repeat(auto-fill,minmax(230px,1fr))}.card{border:1px solid #e3e6ea;border-radius:6px;padding:8px;
background:#fff;font-size:12px}.card img,.card svg{width:220px;height:220px;object-fit:contain;background:#eef1f4;
display:block;margin:0 auto 6px}.card .id{font-family:monospace;color:#5a6570}
.card .caption{margin:4px 0;font-style:italic}
.tag{display:inline-block;background:#e8eef6;border-radius:3px;padding:1px 5px;margin:1px}
"""
SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var svgs = document.querySelectorAll("svg").length;
  document.body.setAttribute("data-images", ok + "/" + images.length);
  document.body.setAttribute("data-svgs", String(svgs));
  var shown = Array.prototype.slice.call(document.querySelectorAll("section[id]")).filter(function (s) {
    var box = s.getBoundingClientRect();
    var images = Array.prototype.slice.call(s.querySelectorAll("img"));
    return box.height > 0 && images.every(function (i) { return i.complete && i.naturalWidth > 0; });
  }).map(function (s) { return s.id; });
  document.body.setAttribute("data-sections", shown.join(" "));
  document.body.setAttribute("data-boxes", shown.map(function (id) {  // where each section lies, in CSS pixels
    var box = document.getElementById(id).getBoundingClientRect();
    return id + ":" + Math.round(box.top + window.scrollY) + ":" + Math.round(box.height);
  }).join(" "));
  document.body.setAttribute("data-status", ok === images.length ? "ok" : "broken-images");
  document.title = document.title + (ok === images.length ? " [loaded]" : " [broken images]");
});
"""


Section = Callable[[DatasetContent, dict[str, Any], int], str]
"""A section of the page: (content, report, gallery size) → HTML (empty when it has nothing to show)."""


def write_index_html(content: DatasetContent, report: dict[str, Any], path: Path, *, gallery: int = 24) -> None:
    """Write the page to ``path`` (atomically): the header, then every section of :data:`SECTIONS` in turn."""
    name = html.escape(content.name)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{name}: geosample report</title><style>{STYLE}</style></head>",
        '<body data-status="loading">',
        f"<header><h1>{name}</h1><div>{html.escape(_headline(report))}</div></header><main>",
    ]
    parts += [text for render in SECTIONS if (text := render(content, report, gallery))]
    parts.append(f"</main><script>{SCRIPT}</script></body></html>")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts) + "\n", encoding="utf-8")


def section(section_id: str, title: str, body: str, css: str = "") -> str:
    """One ``<section>`` with its id (the page's anchor, and what the tests look for) and heading."""
    cls = f' class="{css}"' if css else ""
    return f'<section id="{section_id}"{cls}><h2>{html.escape(title)}</h2>{body}</section>'


def _missing_section(content: DatasetContent, report: dict[str, Any], gallery: int) -> str:
    if not report["missing"]:
        return ""
    items = "".join(f"<li>{html.escape(m)}</li>" for m in report["missing"])
    return section("missing", "Not in the dataset yet", f"<ul>{items}</ul>", "missing")


def _plots_section(content: DatasetContent, report: dict[str, Any], gallery: int) -> str:
    """One section per figure of ``geosample stats`` (``report/stats_*.png``), titled after its file."""
    out = []
    for plot in report.get("plots", []):
        file = content.ds / plot
        if file.is_file():
            stem = Path(plot).stem.removeprefix("stats_")
            title = PLOT_TITLES.get(stem, stem.replace("_", " ").capitalize())
            out.append(section(f"plot-{stem}", title, _img(file.read_bytes(), title, "figure")))
    return "".join(out)


def _headline(report: dict[str, Any]) -> str:
    bits = [f"{report['samples']} samples", f"{report['sites']} sites", f"{report['strata']['count']} strata",
            f"{len(report['time_bins'])} time bins"]  # fmt: skip
    if report["chips"]:
        bits.append(f"{report['chips']['ok']} chips")
    if report["labels"]:
        bits.append(f"labels: {report['labels']['taxonomy']}")
    if report["captions"]:
        bits.append(f"{report['captions']['total']} captions")
    return " · ".join(bits)


def _img(png: bytes, alt: str, css: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="{css}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _map_section(content: DatasetContent, report: dict[str, Any], gallery: int) -> str:
    """The plan's map and time plot (``report/map.png``, ``time.png``); an SVG of the sites without the map."""
    map_png = content.ds / "report" / "map.png"
    if map_png.is_file():
        body = _img(map_png.read_bytes(), "map of the sites", "figure")
    else:
        body = _svg_map(content.plan.drop_duplicates("site_id"), content.dimensions)
    time_png = content.ds / "report" / "time.png"
    if time_png.is_file():
        body += _img(time_png.read_bytes(), "sites per time bin", "figure")
    return section("sites", "Sites", body)


def _svg_map(sites: pd.DataFrame, dimensions: tuple[str, ...]) -> str:
    """The sites as dots on a lon/lat canvas, coloured by the first dimension (the plan's map is missing)."""
    lon, lat = sites["lon"].to_numpy(), sites["lat"].to_numpy()
    west, east = float(lon.min()) - 1, float(lon.max()) + 1
    south, north = float(lat.min()) - 1, float(lat.max()) + 1
    width, height = 900, max(200, int(900 * (north - south) / max(east - west, 1e-6)))
    column = dimensions[0] if dimensions else "stratum"
    values = sorted(sites[column].astype(str).unique())
    colors = dict(zip(values, qualitative_colors(len(values)), strict=True))
    dots = "".join(
        f'<circle cx="{(x - west) / (east - west) * width:.1f}" cy="{(north - y) / (north - south) * height:.1f}" '
        f'r="4" fill="{colors[str(v)]}"><title>{html.escape(str(v))}</title></circle>'
        for x, y, v in zip(lon, lat, sites[column], strict=True)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'style="background:#eaf4fb;max-width:100%;height:auto">{dots}</svg>'
    )


def _table(headers: list[str], rows: list[list[Any]], caption: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{v}</td>' if isinstance(v, int | float) else f"<td>{html.escape(str(v))}</td>" for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def _tables_section(content: DatasetContent, report: dict[str, Any], gallery: int) -> str:
    strata = sorted(report["strata"]["per_stratum"], key=lambda r: -r["sites"])[:MAX_TABLE_ROWS]
    tables = [
        _table(["stratum", "sites", "samples", "target"],
               [[r["stratum"], r["sites"], r["samples"], r["target"] if r["target"] is not None else "–"]
                for r in strata], "Strata"),
        _table(["time bin", "samples"], [[k, v] for k, v in report["time_bins"].items()], "Time bins"),
    ]  # fmt: skip
    if report["labels"]:
        for level, info in report["labels"]["levels"].items():
            rows = [[code, c["name"], c["samples"], c["dominant"]] for code, c in info["classes"].items()]
            tables.append(_table(["class", "name", "samples", "dominant"], rows[:MAX_TABLE_ROWS], f"Labels {level}"))
    if report["captions"]:
        c = report["captions"]
        words = c["words_per_caption"]
        rows = [["captions", c["total"]], ["samples with captions", c["samples_with_captions"]],
                ["words per caption (mean)", round(words["mean"], 1)], ["distinct", f"{c['distinct_share']:.0%}"],
                ["vocabulary", c["vocabulary"]]]  # fmt: skip
        tables.append(_table(["", ""], rows, "Captions"))
    spatial = report["spatial"]
    nn = spatial["nearest_neighbour_km"]
    per_cell = spatial["sites_per_cell"]
    ratio = spatial["clark_evans_ratio"]
    rows = [
        [f"H3 res-{spatial['h3_res']} cells", spatial["cells"]],
        ["sites per cell (mean / max)", f"{per_cell['mean']:.2f} / {per_cell['max']:.0f}"],
        ["nearest neighbour km (min / median / max)", f"{nn['min']:.1f} / {nn['median']:.1f} / {nn['max']:.1f}"],
        ["Clark–Evans R", "–" if ratio is None else f"{ratio:.2f}"],
    ]
    tables.append(_table(["", ""], rows, "Spatial uniformity"))
    return section("balance", "Balance and content", f'<div class="tables">{"".join(tables)}</div>')


def gallery_rows(content: DatasetContent, n: int) -> pd.DataFrame:
    """Up to ``n`` samples taken in turn from each stratum (in ``sample_id`` order within a stratum)."""
    plan = content.plan
    if n <= 0 or plan.empty:
        return plan.iloc[:0]
    rank = plan.groupby("stratum", sort=True).cumcount()
    order = np.lexsort((plan["sample_id"].to_numpy(), plan["stratum"].astype(str).to_numpy(), rank.to_numpy()))
    return plan.iloc[order[:n]]


def _gallery_section(content: DatasetContent, report: dict[str, Any], n: int) -> str:
    rows = gallery_rows(content, n)
    shown = rows["sample_id"]

    def mine(table: pd.DataFrame | None) -> pd.DataFrame | None:  # the gallery's rows of a stage's table
        return None if table is None else table[table["sample_id"].isin(shown)]

    chips, labels, captions = mine(content.chips), mine(content.labels), mine(content.captions)
    chips = chips.drop_duplicates("sample_id").set_index("sample_id") if chips is not None else None
    labels = labels.set_index("sample_id") if labels is not None else None
    captions = captions.groupby("sample_id")["caption"].agg(list) if captions is not None else None
    cards = []
    for _, sample in rows.iterrows():
        sid = sample["sample_id"]
        chip = chips.loc[sid] if chips is not None and sid in chips.index else None
        picture = _chip_picture(content, chip) if chip is not None else _footprint_svg(sample)
        where = f"{sample['stratum']} · {sample['time_bin']}"
        lines = [picture, f'<div class="id">{html.escape(sid)}</div>', f"<div>{html.escape(where)}</div>"]
        if chip is not None:
            lines.append(f"<div>{html.escape(str(chip['collection']))}</div>")
        if captions is not None:
            for text in list(captions.get(sid, []))[:2]:
                lines.append(f'<div class="caption">{html.escape(str(text))}</div>')
        if labels is not None and sid in labels.index:
            lines.append("<div>" + _label_tags(content, labels.loc[sid]) + "</div>")
        cards.append(f'<div class="card">{"".join(lines)}</div>')
    title = "Gallery: chip previews" if content.chips is not None else "Gallery: sample footprints (no chips yet)"
    return section("gallery", title, f'<div class="gallery">{"".join(cards)}</div>')


def _chip_picture(content: DatasetContent, chip: pd.Series) -> str:
    preview = chip.get("preview")
    if isinstance(preview, str) and (content.ds / preview).is_file():
        png = thumbnail(content.ds / preview, THUMBNAIL_PX)
    else:
        png = render_png(content.ds / chip["path"], max_size=THUMBNAIL_PX)
    return _img(png, f"chip {chip.name}")


def _footprint_svg(sample: pd.Series) -> str:
    """The sample's footprint outline, scaled to the card."""
    geometry = sample["geometry"]
    west, south, east, north = geometry.bounds
    span = max(east - west, north - south, 1e-9)
    polygons = getattr(geometry, "geoms", [geometry])
    paths = []
    for polygon in polygons:
        xy = np.asarray(polygon.exterior.coords)
        points = " ".join(f"{10 + (x - west) / span * 200:.1f},{210 - (y - south) / span * 200:.1f}" for x, y in xy)
        paths.append(f'<polygon points="{points}" fill="#a8c5e2" stroke="#1d3557" stroke-width="2"/>')
    label = html.escape(f"{sample['lon']:.3f}, {sample['lat']:.3f}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 220 220">{"".join(paths)}'
        f'<text x="110" y="216" font-size="11" text-anchor="middle">{label}</text></svg>'
    )


def _label_tags(content: DatasetContent, row: pd.Series) -> str:
    """The dominant class at each level, once each (a coarse class can stand at several levels)."""
    taxonomy = content.taxonomy
    tags: dict[str, str] = {}
    for level in content.levels:
        code = row.get(f"{level}_dominant")
        if isinstance(code, str) and code not in tags:
            name = taxonomy[code].name if taxonomy is not None and code in taxonomy else code
            tags[code] = f'<span class="tag" title="{level} {html.escape(code)}">{html.escape(name)}</span>'
    return "".join(tags.values())


PLOT_TITLES = {
    "balance": "Sites per stratum",
    "labels": "Labels: samples per class",
    "captions": "Captions",
    "spatial": "Spatial uniformity",
}


def _caption_quality_section(content: DatasetContent, report: dict[str, Any], gallery: int) -> str:
    return caption_quality_section(content.ds)


def _fidelity_section(content: DatasetContent, report: dict[str, Any], gallery: int) -> str:
    return fidelity_section(content, report)


def _leakage_section(content: DatasetContent, report: dict[str, Any], gallery: int) -> str:
    return leakage_section(content)  # "Splits and leakage" (geosample/export/_leakage.py)


SECTIONS: list[Section] = [
    _missing_section,
    _map_section,
    _tables_section,
    achieved_section,  # "Planned vs achieved" and the map of failed sites (geosample/export/_achieved.py)
    _leakage_section,
    _caption_quality_section,
    _plots_section,
    _fidelity_section,
    _gallery_section,
]
"""The page's sections in order; a new part of the report adds its function here."""
