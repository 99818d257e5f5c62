"""The caption-quality section of ``DS/report/index.html``, from ``report/captions.json``."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

REPORT = Path("report") / "captions.json"


def caption_quality_section(ds: str | Path) -> str:
    """An HTML ``<section>`` with the captions' quality figures; "" when the dataset has no caption report."""
    try:
        report = json.loads((Path(ds) / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    q = report.get("quality")
    if not q:
        return ""
    dup, near, grams = q.get("duplicates", {}), q.get("near_duplicates", {}), q.get("ngrams", {})
    rows: list[tuple[str, Any]] = [
        ("scene captions", report.get("n_captions", 0)),
        ("exact duplicates across images", f"{dup.get('duplicated_captions', 0)} ({dup.get('rate', 0.0):.2%})"),
        (
            f"near-duplicate pairs across images (Jaccard ≥ {near.get('threshold', 0.8)})",
            f"{near.get('near_duplicate_pairs', 0)} of {near.get('pairs', 0)} ({near.get('pair_rate', 0.0):.3%})",
        ),
        ("captions with a near-duplicate", f"{near.get('caption_rate', 0.0):.1%}"),
        *((f"distinct {n}-grams / all", f"{grams.get(f'distinct_{n}', 0.0):.3f}") for n in (1, 2, 3, 4)),
        ("vocabulary (words)", grams.get("vocabulary", 0)),
        *((f"text→image {k} ceiling", f"{v:.4f}") for k, v in q.get("text_to_image_ceiling", {}).items()),
    ]
    hall = report.get("hallucination", {})
    if hall.get("checked"):
        rows.append(("captions naming an unsupported class", hall.get("flagged_captions", 0)))
    sem = q.get("semantic")
    if sem:
        rows.append(("mean nearest cosine (MiniLM)", sem.get("mean_nearest_cosine")))
        rows.append(
            (
                "near-paraphrases (MiniLM)",
                f"{sem.get('near_paraphrases', 0)} ({sem.get('near_paraphrase_rate', 0):.2%})",
            )
        )
    focus_rows = [
        (name, v.get("captions", 0), f"{v.get('share', 0.0):.0%}", v.get("mean_words", 0.0))
        for name, v in q.get("focus", {}).items()
    ]
    evidence_rows = list(q.get("evidence", {}).items())
    change = report.get("change", {})
    if change:
        evidence_rows += [(f"change: {k}", v) for k, v in change.get("evidence", {}).items()]
        evidence_rows.append(
            ("change: pairs not written (unobservable)", change.get("unobservable_pairs", {}).get("not_written", 0))
        )
    tables = [
        _table(["figure", "value"], rows, "Caption quality"),
        _table(["focus", "captions", "share", "mean words"], focus_rows, "Captions per focus"),
        _table(["evidence", "captions"], evidence_rows, "Evidence of the cover statements"),
    ]
    return (
        f'<section id="caption-quality"><h2>Caption quality</h2><div class="tables">{"".join(tables)}</div></section>'
    )


def _table(headers: list[str], rows: list[tuple[Any, ...]], caption: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"
