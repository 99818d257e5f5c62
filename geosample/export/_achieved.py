"""The report's balance section: the plan's strata beside what the dataset achieved, and where fetch failed.

For ``geosample stats`` and ``report/index.html``, from ``achieved`` in
``report/balance.json`` (written by fetch, see
:mod:`geosample.stac.substitute`): per stratum the sites planned, the plan's
sites that got their chips, those replaced by reserve sites, the shortfall and
why (the failure reasons of the plan's sites, and of the reserves tried), and
a map of every failed site coloured by its reason (``report/achieved_map.png``),
because a user needs to see where the archive itself is thin. The failed sites
are recounted from ``chips.parquet``, the plan and the reserve, not taken from
the report.
"""

from __future__ import annotations

import base64
import html
from typing import Any

import pandas as pd

from geosample._dataset import CHIPS_FILE, read_plan, read_reserve, read_table
from geosample.export._content import DatasetContent

__all__ = ["achieved_section", "achieved_stats", "achieved_text", "write_failure_map"]

MAP_FILE = "report/achieved_map.png"
MAX_ROWS = 40
ACHIEVED_LABEL = "achieved"
"""The map's category for sites that got their chips (drawn beside the failed ones, for context)."""


def achieved_stats(content: DatasetContent) -> dict[str, Any] | None:
    """Planned vs achieved per stratum, the strata that fell short and why, and the failed sites by reason."""
    achieved = (content.balance or {}).get("achieved")
    if not isinstance(achieved, dict):
        return None
    sites = failed_sites(content)
    strata = [
        {
            "stratum": r["stratum"], "planned": r["target"], "achieved": r["achieved"], "planned_ok": r["planned_ok"],
            "substituted": r["substituted"], "shortfall": r["shortfall"], "not_fetched": r["not_fetched"],
            "reasons": r["reasons"], "reserve_reasons": r["reserve_reasons"], "reserves": r["reserves"],
            "reserves_used": r["reserves_used"],
        }
        for r in achieved.get("strata", [])
    ]  # fmt: skip
    out = {
        "substitution": bool(achieved.get("substitution")),
        "summary": achieved.get("summary", {}),
        "strata": strata,
        "short": [r for r in strata if r["shortfall"] > 0],
        "failed_sites": {
            "total": int(len(sites)),
            "plan": int((sites["kind"] == "plan").sum()) if len(sites) else 0,
            "reserve": int((sites["kind"] == "reserve").sum()) if len(sites) else 0,
            "by_reason": {str(k): int(v) for k, v in sites["reason"].value_counts().sort_index().items()}
            if len(sites)
            else {},
        },
        "map": None,
    }
    if "events" in achieved:
        out["events"] = achieved["events"]
    return out


def failed_sites(content: DatasetContent) -> pd.DataFrame:
    """Every plan and reserve site with a failed chip: id, lon, lat, stratum, time bin, ``reason`` and ``kind``."""
    from geosample.stac.substitute import Substitutes

    chips = read_table(content.ds, CHIPS_FILE, hint=f"geosample fetch {content.ds}")
    if chips is None or chips.empty:
        return pd.DataFrame(columns=["site_id", "lon", "lat", "stratum", "time_bin", "reason", "kind"])
    collections = list((content.config.get("fetch") or {}).get("collections") or chips["collection"].dropna().unique())
    return Substitutes(read_plan(content.ds), read_reserve(content.ds), collections).failed_sites(chips)


def write_failure_map(content: DatasetContent, report: dict[str, Any]) -> str | None:
    """Draw the failed sites (coloured by reason) beside the achieved ones into ``report/achieved_map.png``."""
    from geosample import layers
    from geosample.sampling._plots import plot_sample_map

    section = report.get("achieved")
    if not section:
        return None
    failed = failed_sites(content)
    done = content.plan.drop_duplicates("site_id")[["site_id", "lon", "lat", "stratum"]].assign(reason=ACHIEVED_LABEL)
    sites = pd.concat([failed, done], ignore_index=True) if len(failed) else done
    title = (
        f"Failed sites by reason: {len(failed)} ({section['failed_sites']['plan']} planned, "
        f"{section['failed_sites']['reserve']} reserve); {len(done)} achieved"
    )
    path = content.ds / MAP_FILE
    plot_sample_map(sites, layers.land_polygons(), path, column="reason", title=title)
    section["map"] = MAP_FILE
    return MAP_FILE


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "–"


def achieved_text(report: dict[str, Any]) -> list[str]:
    """The section as a few lines for the terminal."""
    section = report.get("achieved")
    if not section:
        return []
    s = section["summary"]
    how = "with substitution" if section["substitution"] else "without substitution"
    lines = [
        f"achieved ({how}): {s.get('achieved', 0)} of {s.get('target', 0)} planned sites, {s.get('planned_ok', 0)} "
        f"as planned and {s.get('substituted', 0)} by reserve sites; {s.get('shortfall', 0)} short"
    ]
    for row in section["short"][:8]:
        lines.append(
            f"  {row['stratum']}: {row['achieved']} of {row['planned']} (failed: {_reasons(row['reasons'])}; "
            f"reserves used {row['reserves_used']} of {row['reserves']})"
        )
    return lines


def achieved_section(content: DatasetContent, report: dict[str, Any], gallery: int) -> str:
    """The page's "Planned vs achieved" section (empty before fetch)."""
    from geosample.export.html import _table, section  # the page's own markup (html imports this module)

    data = report.get("achieved")
    if not data:
        return ""
    s = data["summary"]
    how = "substituting reserve sites for failed ones" if data["substitution"] else "without substitution"
    intro = (
        f"<p>{s.get('achieved', 0)} of {s.get('target', 0)} planned sites are in the dataset ({how}): "
        f"{s.get('planned_ok', 0)} as planned, {s.get('substituted', 0)} replaced by reserve sites of their stratum; "
        f"{s.get('shortfall', 0)} failed sites could not be replaced"
        + (f", {s.get('not_fetched', 0)} not fetched yet" if s.get("not_fetched") else "")
        + ".</p>"
    )
    short = {r["stratum"] for r in data["short"]}
    rows = sorted(data["strata"], key=lambda r: (-r["shortfall"], r["stratum"]))[:MAX_ROWS]
    table = _table(
        ["stratum", "planned", "achieved", "as planned", "substituted", "short", "why (failures)", "reserves used"],
        [[("⚠ " if r["stratum"] in short else "") + r["stratum"], r["planned"], r["achieved"], r["planned_ok"],
          r["substituted"], r["shortfall"], _reasons(r["reasons"]), f"{r['reserves_used']} / {r['reserves']}"]
         for r in rows],
        "Planned vs achieved sites per stratum (short strata first)",
    )  # fmt: skip
    failed = data["failed_sites"]
    reasons = _table(["reason", "failed sites"], [[k, v] for k, v in failed["by_reason"].items()], "Failed sites")
    body = intro + f'<div class="tables">{table}{reasons}</div>'
    path = content.ds / MAP_FILE
    if data.get("map") and path.is_file():
        png = base64.b64encode(path.read_bytes()).decode("ascii")
        body += f'<img class="figure" alt="map of failed sites by reason" src="data:image/png;base64,{png}">'
    lost = (data.get("events") or {}).get("lost_entirely") or []
    if lost:
        body += f"<p>Events lost entirely (no site achieved): {html.escape(', '.join(map(str, lost)))}</p>"
    return section("achieved", "Planned vs achieved", body)
