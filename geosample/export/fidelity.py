"""The report's evidence section: what the chips showed, what changed, and what the captions rest on.

For ``geosample stats`` and ``report/index.html``: the measured cloud and
nodata of every chip (beside each item's own ``eo:cloud_cover``), the chips
rejected as ``cloudy`` or ``nodata``, the observed cover shares per stratum,
the change summary of ``change.parquet`` (pairs showing each change type, and
the mask of the largest change per event type as a thumbnail), and how many
captions used observed vs map evidence (``captions.parquet``'s ``evidence``).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geosample._dataset import CHIPS_FILE, read_table
from geosample.export._content import DatasetContent

__all__ = ["fidelity_section", "fidelity_stats", "fidelity_text"]

CHANGE_MIN = 0.01
"""A pair "shows" a change type when that type covers at least this share of its jointly valid pixels."""
COVER = ("water", "vegetation", "bare", "snow_ice", "built")
CHANGES = ("water_gain", "water_loss", "vegetation_loss", "vegetation_gain", "burned", "snow_ice_change")
SPECIFIC_FIRST = ("burned", "water_gain", "water_loss", "snow_ice_change", "vegetation_loss", "vegetation_gain")
"""Which change names a pair when shares tie (a burn scar is also vegetation loss), as in the masks' priority."""
MAX_POINTS = 5000
"""Most (measured, eo:cloud_cover) pairs kept in ``stats.json``."""
UNDERSTATED = 10.0
"""Percentage points by which the measured cloud must exceed ``eo:cloud_cover`` to count as understated."""
THUMBNAIL_PX = 200


def fidelity_stats(content: DatasetContent) -> dict[str, Any]:
    """The section's figures, JSON-ready (``None`` for the parts whose files are missing)."""
    chips = read_table(content.ds, CHIPS_FILE, hint=f"geosample fetch {content.ds}")
    return {
        "chips": _chips(chips),
        "observed": _observed(chips, content.plan),
        "change": _change(content),
        "caption_evidence": _evidence(content),
    }


def _summary(values: np.ndarray) -> dict[str, float] | None:
    if values.size == 0:
        return None
    q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {"min": float(q[0]), "q25": float(q[1]), "median": float(q[2]), "q75": float(q[3]), "max": float(q[4]),
            "mean": float(values.mean())}  # fmt: skip


def _histogram(values: np.ndarray) -> dict[str, list[float]]:
    counts, edges = np.histogram(values, bins=10, range=(0.0, 1.0))
    return {"edges": [round(float(e), 2) for e in edges], "counts": [int(c) for c in counts]}


def _chips(chips: pd.DataFrame | None) -> dict[str, Any] | None:
    if chips is None or "cloud_fraction" not in chips.columns:
        return None
    measured = chips[chips["status"].isin(["ok", "cloudy", "nodata"])]
    cloud = measured["cloud_fraction"].dropna().to_numpy(dtype=np.float64)
    nodata = measured["nodata_fraction"].dropna().to_numpy(dtype=np.float64)
    both = chips[(chips["status"] == "ok") & chips["cloud_fraction"].notna() & chips["cloud_cover"].notna()]
    diff = both["cloud_fraction"].to_numpy(dtype=np.float64) * 100 - both["cloud_cover"].to_numpy(dtype=np.float64)
    return {
        "statuses": {str(k): int(v) for k, v in chips["status"].value_counts().sort_index().items()},
        "cloud_methods": {str(k): int(v) for k, v in measured["cloud_method"].fillna("none").value_counts().items()},
        "cloud_fraction": _summary(cloud),
        "cloud_histogram": _histogram(cloud),
        "nodata_fraction": _summary(nodata),
        "nodata_histogram": _histogram(nodata),
        "eo_cloud_cover": {
            "chips": len(both),
            "mean_measured_minus_metadata_pct": float(diff.mean()) if diff.size else None,
            "understated": int((diff > UNDERSTATED).sum()),
            "pairs": [
                [float(m), float(e)]
                for m, e in zip(both["cloud_fraction"][:MAX_POINTS], both["cloud_cover"][:MAX_POINTS], strict=True)
            ],
        },
    }


def _observed(chips: pd.DataFrame | None, plan: pd.DataFrame) -> dict[str, Any] | None:
    """Mean observed cover share per stratum (over the ok chips with an ``observed`` value)."""
    if chips is None or "observed" not in chips.columns:
        return None
    ok = chips[(chips["status"] == "ok") & chips["observed"].notna()].drop_duplicates("sample_id")
    if ok.empty:
        return {"samples": 0, "classes": [], "per_stratum": {}}
    shares = pd.DataFrame([json.loads(text) for text in ok["observed"]], index=ok["sample_id"].to_numpy())
    classes = [c for c in COVER if c in shares.columns]
    strata = plan.set_index("sample_id")["stratum"].reindex(shares.index).astype(str)
    per = shares[classes].groupby(strata.to_numpy()).mean()
    counts = strata.value_counts()
    return {
        "samples": len(shares),
        "classes": classes,
        "per_stratum": {
            str(s): {"samples": int(counts[s]), **{c: round(float(v), 4) for c, v in row.items() if pd.notna(v)}}
            for s, row in per.sort_index().iterrows()
        },
    }


def _change(content: DatasetContent) -> dict[str, Any] | None:
    from geosample.labels.change import CHANGE_FILE

    table = read_table(content.ds, CHANGE_FILE, hint=f"geosample label {content.ds}")
    if table is None:
        return None
    plan = content.plan.set_index("sample_id")
    kind = table["sample_id_after"].map(plan["event_type"]) if "event_type" in plan else None
    group = (kind.fillna(table["kind"]) if kind is not None else table["kind"]).astype(str)
    measured = table[table["valid_fraction"].notna()]
    shows = {c: int((table[c].fillna(0) >= CHANGE_MIN).sum()) for c in CHANGES}
    observable = {c: int(table[c].notna().sum()) for c in CHANGES}
    largest = {}
    for name, rows in table.assign(group=group).groupby("group", sort=True):
        rows = rows[rows["mask"].notna()]
        if rows.empty:
            continue
        total = rows[list(CHANGES)].fillna(0).max(axis=1)
        best = rows.loc[total.idxmax()]
        kind_of = max(SPECIFIC_FIRST, key=lambda c: 0.0 if pd.isna(best[c]) else float(best[c]))
        largest[str(name)] = {
            "site_id": str(best["site_id"]), "sample_id_before": str(best["sample_id_before"]),
            "sample_id_after": str(best["sample_id_after"]), "change": kind_of, "share": float(best[kind_of] or 0.0),
            "mask": str(best["mask"]),
        }  # fmt: skip
    return {
        "pairs": len(table),
        "measured": len(measured),
        "pairs_showing": shows,
        "pairs_observable": observable,
        "mean_share": {c: (float(table[c].mean()) if table[c].notna().any() else None) for c in CHANGES},
        "largest_by_event_type": largest,
    }


def _evidence(content: DatasetContent) -> dict[str, Any] | None:
    """Captions per ``evidence`` value, for scene and change captions (the column comes with the caption stage)."""
    out = {}
    for kind, frame in (("scene", content.captions), ("change", content.change_captions)):
        if frame is not None and "evidence" in frame.columns:
            counts = frame["evidence"].fillna("none").value_counts().sort_index()
            out[kind] = {str(k): int(v) for k, v in counts.items()}
    return out or None


# --------------------------------------------------------------------------------------- terminal and page


def fidelity_text(report: dict[str, Any]) -> list[str]:
    """A few lines for ``geosample stats``' summary."""
    section = report.get("fidelity") or {}
    lines = []
    chips = section.get("chips")
    if chips and chips["cloud_fraction"]:
        c, n = chips["cloud_fraction"], chips["nodata_fraction"]
        rejected = ", ".join(f"{chips['statuses'][k]} {k}" for k in ("cloudy", "nodata") if k in chips["statuses"])
        eo = chips["eo_cloud_cover"]
        lines.append(
            f"measured cloud: median {c['median']:.1%}, max {c['max']:.1%} ({_methods(chips)}); nodata median "
            f"{n['median']:.1%}; {eo['understated']} of {eo['chips']} chips cloudier than their eo:cloud_cover by "
            f"more than {UNDERSTATED:.0f} points" + (f"; rejected: {rejected}" if rejected else "")
        )
    observed = section.get("observed")
    if observed and observed["samples"]:
        lines.append(
            f"observed cover on {observed['samples']} chips ({', '.join(observed['classes'])}) in "
            f"{len(observed['per_stratum'])} strata"
        )
    change = section.get("change")
    if change:
        shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in change["pairs_showing"].items() if v)
        lines.append(f"change: {change['pairs']} pairs, {change['measured']} measured; " + (shown or "none shown"))
    evidence = section.get("caption_evidence")
    if evidence:
        for kind, counts in evidence.items():
            lines.append(f"{kind} captions by evidence: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return lines


def _methods(chips: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in chips["cloud_methods"].items())


def _png(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img class="figure" alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def fidelity_section(content: DatasetContent, report: dict[str, Any]) -> str:
    """The page's "Evidence" section (empty when there is nothing to show)."""
    from geosample.export.html import _table  # the page's own table markup (html imports this module)

    section = report.get("fidelity") or {}
    parts = []
    chips = section.get("chips")
    if chips and (chips["cloud_fraction"] or chips["nodata_fraction"]):
        rows = [[k, v] for k, v in chips["statuses"].items()]
        rows += [[f"cloud measured by {k}", v] for k, v in chips["cloud_methods"].items()]
        eo = chips["eo_cloud_cover"]
        if eo["chips"]:
            rows.append([f"cloudier than eo:cloud_cover by > {UNDERSTATED:.0f} points", eo["understated"]])
        parts.append(_table(["chips", "count"], rows, "Chips: measured cloud and nodata"))
        parts.append(_png(_distribution_png(chips), "measured cloud and nodata of the chips"))
    observed = section.get("observed")
    if observed and observed["per_stratum"]:
        classes = observed["classes"]
        rows = [[s, v["samples"], *(f"{v.get(c, 0):.0%}" for c in classes)] for s, v in observed["per_stratum"].items()]
        parts.append(_table(["stratum", "chips", *classes], rows[:40], "Observed cover (mean share per stratum)"))
    change = section.get("change")
    if change:
        rows = [[c.replace("_", " "), change["pairs_showing"][c], change["pairs_observable"][c]] for c in CHANGES]
        parts.append(_table(["change", f"pairs with ≥ {CHANGE_MIN:.0%}", "pairs observable"], rows,
                            f"Change: {change['pairs']} pairs, {change['measured']} measured"))  # fmt: skip
        thumbs = []
        for group, best in change["largest_by_event_type"].items():
            path = content.ds / best["mask"]
            if path.is_file():
                label = f"{group}: {best['change'].replace('_', ' ')} {best['share']:.0%} ({best['site_id']})"
                thumbs.append(f'<div class="card">{_png(mask_png(path), label)}<div>{html.escape(label)}</div></div>')
        if thumbs:
            parts.append(f'<div class="gallery">{"".join(thumbs)}</div>{_legend()}')
    evidence = section.get("caption_evidence")
    if evidence:
        for kind, counts in evidence.items():
            parts.append(_table(["evidence", "captions"], [[k, v] for k, v in counts.items()], f"{kind} captions"))
    if not parts:
        return ""
    return f'<section><h2>Evidence: what the chips show</h2><div class="tables">{"".join(parts)}</div></section>'


def _legend() -> str:
    from geosample.labels.change import CHANGE_CODES, CHANGE_COLOURS

    def swatch(code: int, name: str) -> str:
        ink = "#fff" if sum(CHANGE_COLOURS[code][:3]) < 300 else "#000"
        return (
            f'<span class="tag" style="background:rgb{CHANGE_COLOURS[code][:3]};color:{ink}">'
            f"{html.escape(name.replace('_', ' '))}</span>"
        )

    swatches = "".join(swatch(code, name) for code, name in CHANGE_CODES.items() if code)
    return f"<div>{swatches}</div>"


def mask_png(path: Path, size: int = THUMBNAIL_PX) -> bytes:
    """A change mask (or any paletted class COG) as an RGBA PNG through its own colour table."""
    import rasterio
    from PIL import Image

    with rasterio.open(path) as src:
        step = max(1, int(np.ceil(max(src.width, src.height) / size)))
        codes = src.read(1)[::step, ::step]
        colours = src.colormap(1)
    lut = np.zeros((256, 4), dtype=np.uint8)
    for value, rgba in colours.items():
        lut[int(value)] = rgba
    image = Image.fromarray(lut[codes], mode="RGBA").resize((size, size), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _distribution_png(chips: dict[str, Any]) -> bytes:
    """Histograms of measured cloud and nodata, and measured cloud against each item's eo:cloud_cover."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.2), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, key, title in ((axes[0], "cloud_histogram", "measured cloud"), (axes[1], "nodata_histogram", "nodata")):
        hist = chips[key]
        edges = np.asarray(hist["edges"])
        ax.bar(edges[:-1], hist["counts"], width=np.diff(edges), align="edge", color="#4878a8", edgecolor="white")
        ax.set_xlabel(f"{title} (share of {'valid pixels' if key == 'cloud_histogram' else 'the chip'})")
        ax.set_ylabel("chips")
    pairs = np.asarray(chips["eo_cloud_cover"]["pairs"], dtype=np.float64).reshape(-1, 2)
    axes[2].scatter(pairs[:, 1], pairs[:, 0] * 100, s=12, color="#c0392b")
    axes[2].plot([0, 100], [0, 100], color="#888", linewidth=0.8)
    axes[2].set_xlabel("eo:cloud_cover of the item (%)")
    axes[2].set_ylabel("measured on the chip (%)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    return buffer.getvalue()
