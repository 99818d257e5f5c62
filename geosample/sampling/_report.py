"""The plan's balance report (``DS/report/balance.json``) and its console summary."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from geosample.sampling.spacing import nearest_neighbour_m, overlapping_pairs


def balance_report(sites: pd.DataFrame, strata: pd.DataFrame, dims: list[str], meta: dict[str, Any]) -> dict[str, Any]:
    """Achieved vs target counts per stratum, per dimension value and per time bin.

    Args:
        sites: One row per site with the dimension columns, ``stratum`` and ``time_bin``.
        strata: One row per stratum: ``stratum``, the dimensions, ``area_km2``,
            ``weight``, ``target`` (first allocation), ``final_target`` (after
            capacity-limited strata passed their remainder on), ``achieved``,
            ``capacity_limited`` and ``limit_reason`` (``capacity``: its parent
            cells were seen to be used up; ``rare``: candidates rarely landed
            in it and its candidate budget ran out).
        dims: The stratification dimension names.
        meta: Run facts recorded as they are (resolutions, probes, rounds).
    """
    counts = strata["achieved"].to_numpy(dtype=float)
    nonzero = strata[strata["final_target"] > 0]
    per_bin = sites.groupby("time_bin").size()
    spread = sites.groupby(["stratum", "time_bin"]).size().unstack(fill_value=0)
    spread = spread.reindex(columns=sorted(per_bin.index), fill_value=0)
    shares = counts[counts > 0] / counts.sum() if counts.sum() else np.array([])
    limited = strata[strata["capacity_limited"]]
    report: dict[str, Any] = {
        **meta,
        "summary": {
            "n_sites": int(len(sites)),
            "n_strata": int(len(nonzero)),
            "n_strata_capacity_limited": int(len(limited)),
            "n_strata_limited_as_rare": int((limited["limit_reason"] == "rare").sum()),
            "shortfall_redistributed": int((limited["final_target"] - limited["achieved"]).sum()),
            "min_per_stratum": int(nonzero["achieved"].min()) if len(nonzero) else 0,
            "max_per_stratum": int(nonzero["achieved"].max()) if len(nonzero) else 0,
            "coefficient_of_variation": _round(counts[counts > 0].std() / counts[counts > 0].mean())
            if (counts > 0).any()
            else 0.0,
            "normalised_entropy": _round(-(shares * np.log(shares)).sum() / np.log(len(shares)))
            if len(shares) > 1
            else 1.0,
            "n_time_bins": int(len(per_bin)),
            "max_time_bin_spread_within_stratum": int((spread.max(axis=1) - spread.min(axis=1)).max())
            if len(spread)
            else 0,
        },
        "dimensions": {
            dim: {
                str(value): {
                    "target": int(group["target"].sum()),
                    "final_target": int(group["final_target"].sum()),
                    "achieved": int(group["achieved"].sum()),
                    "strata": int((group["final_target"] > 0).sum()),
                    "strata_capacity_limited": int(group["capacity_limited"].sum()),
                }
                for value, group in strata.groupby(dim, sort=True)
            }
            for dim in dims
        },
        "time_bins": {
            str(b): {"target": _round(len(sites) / len(per_bin)), "achieved": int(c)} for b, c in per_bin.items()
        },
        "strata": [
            {
                "stratum": row["stratum"],
                **{d: row[d] for d in dims},
                "area_km2": _round(row["area_km2"]),
                **(
                    {
                        "cells": _round(row["cells"]),
                        "inclusion_prob": _round(row["achieved"] / row["cells"]) if row["cells"] > 0 else None,
                    }
                    if "cells" in row
                    else {}
                ),
                **({"events": int(row["events"])} if "events" in row else {}),
                "weight": _round(row["weight"]),
                "target": int(row["target"]),
                "final_target": int(row["final_target"]),
                "achieved": int(row["achieved"]),
                "capacity_limited": bool(row["capacity_limited"]),
                "limit_reason": row["limit_reason"] or None,
            }
            for row in strata.to_dict("records")
        ],
    }
    if "season" in sites and sites["season"].notna().any():
        report["seasons"] = {str(k): int(v) for k, v in sites.groupby("season").size().items()}
    return report


def spacing_report(
    samples: pd.DataFrame, min_distance_m: float, max_per_parent: int | None = None, parent_res: int | None = None
) -> dict[str, Any]:
    """How far apart the sites are: the rules in force, nearest-neighbour distances and overlapping chips.

    Measured on the sites themselves (their centres; the footprint of their
    largest chip), not taken from the rules: ``overlapping_chip_pairs`` counts
    pairs of sites whose chips share area (0 with the default distance), and
    for event plans ``overlapping_chip_pairs_within_event`` those of one event.
    """
    if "event_id" in samples or samples["chip_size_m"].nunique() > 1:
        largest = samples.sort_values(["site_id", "chip_size_m"], kind="stable").drop_duplicates("site_id", keep="last")
    else:  # one chip size: a site's rows (revisits) share its centre and footprint, and no figure depends on order
        largest = samples.drop_duplicates("site_id")
    lon, lat = largest["lon"].to_numpy(), largest["lat"].to_numpy()
    nn = nearest_neighbour_m(lon, lat)
    pairs = overlapping_pairs(lon, lat, largest.geometry.to_numpy(), float(largest["chip_size_m"].max()))
    finite = nn[np.isfinite(nn)]
    report: dict[str, Any] = {
        "min_distance_m": _round(min_distance_m),
        "max_per_parent": max_per_parent,
        "parent_res": parent_res,
        "nearest_neighbour_m": {
            "min": _round(finite.min()) if finite.size else None,
            "p01": _round(np.percentile(finite, 1)) if finite.size else None,
            "median": _round(np.median(finite)) if finite.size else None,
        },
        "overlapping_chip_pairs": int(len(pairs)),
    }
    if "event_id" in largest:
        event = largest["event_id"].to_numpy()
        report["overlapping_chip_pairs_within_event"] = int((event[pairs[:, 0]] == event[pairs[:, 1]]).sum())
    return report


def _round(value: float) -> float:
    return float(round(float(value), 6))


def summary_table(report: dict[str, Any], *, max_rows: int = 12) -> str:
    """Achieved vs target per dimension value, as aligned plain text."""
    lines = []
    s = report["summary"]
    lines.append(
        f"{s['n_sites']} sites in {s['n_strata']} strata, {s['n_time_bins']} time bins "
        f"(per stratum {s['min_per_stratum']}–{s['max_per_stratum']}; "
        f"{s['n_strata_capacity_limited']} capacity-limited)"
    )
    for dim, values in report["dimensions"].items():
        rows = sorted(values.items(), key=lambda kv: -kv[1]["achieved"])
        shown, rest = rows[:max_rows], rows[max_rows:]
        if rest:
            shown.append((f"({len(rest)} more)", {k: sum(c[k] for _, c in rest) for k in shown[0][1]}))
        width = max(len(dim), *(len(v) for v, _ in shown))
        lines.append(f"  {dim:<{width}}  {'target':>7}  {'achieved':>8}  {'limited strata':>14}")
        for value, c in shown:
            limited = f"{c['strata_capacity_limited']}/{c['strata']}"
            lines.append(f"  {value:<{width}}  {c['target']:>7}  {c['achieved']:>8}  {limited:>14}")
    lines.append("  (target: first allocation; capacity-limited strata passed their remainder to the others)")
    return "\n".join(lines)
