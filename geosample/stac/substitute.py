"""Substitution: reserve sites that replace failed fetches, so the dataset keeps the balance the plan made.

A sample whose chip ends ``no_item``, ``failed`` (after the retries), ``cloudy``
or ``nodata`` leaves a hole in its stratum; failures are not random (tropics
are cloudy, high latitudes dark in winter), so the holes pile up where the
archive is thin and the dataset drifts back to the imbalance the plan removed.
``fetch`` therefore fills each hole with a reserve site of the plan
(``DS/reserve.parquet``, see :mod:`geosample.sampling.reserves`).

**The unit is the site.** All samples of a site (its chip sizes, its revisit
series, its event's before and after) stand or fall together: a site counts
as achieved when every one of its samples has an ``ok`` chip in every
collection of the dataset, and a site with any failed chip is replaced as a
whole by a reserve site (all its samples, same collections). An event pair
with a failed phase is so replaced by a reserve site of the same event (both
phases), and a revisit series by a whole reserve series. The failed site's
chips keep their rows and reasons; its ``ok`` chips stay in ``chips.parquet``
but not in the achieved sample set.

**Which reserve.** The next unused reserve site (lowest ``reserve_rank``) of
the same stratum and time bin; when that bin has none left, of the same
stratum in the nearest time bin (by the bins' middles); never of another
stratum. For events: the next unused reserve of the same event and stratum;
when there is none, the event's site is lost (the report lists it). Failed
sites take reserves in ``site_id`` order, all sites needing a first
substitute before any needs a second (a substitute can fail too: the site
then takes the next reserve).

**Kill-safe.** The assignment is written nowhere but in the reserve's own
rows of ``chips.parquet``: each carries ``replaces``, the plan sample it
stands in for. Everything else follows from the manifest: a reserve is
*used* once it has a row, and which reserve a failed site takes next is a
function of the rows there are. Greedy assignment in a fixed order gives the
same pairs when some of them are already recorded (those leave the pool on
both sides), and the generations above (first substitutes before second
ones) keep a resumed run on the same path as one never killed, so a re-run
neither fetches a reserve twice nor loses a substitution.

**The achieved set** (:meth:`Substitutes.achieved`): plan sites whose chips
all arrived, and the reserve sites that replaced the others, written to
``DS/samples.parquet`` with ``replaces``. Their ``inclusion_prob`` is
rescaled to the sites each stratum (each event and stratum) actually holds:
``π' = π · m_h / n_h`` with ``n_h`` sites planned and ``m_h`` achieved, the
weighting-class adjustment for non-response, so a stratum's weights still add
up to its size when it fell short. This treats the failures as missing at
random within the stratum; the report's map of failed sites shows where that
is doubtful.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FAILED", "Step", "Substitutes", "unit_table", "write_achieved"]

FAILED = ("no_item", "failed", "cloudy", "nodata")
"""Chip statuses that make a site fail (and a reserve take its place)."""
OK = "ok"
PENDING = "pending"


def member_key(samples: pd.DataFrame) -> pd.Series:
    """What pairs a reserve site's sample with the failed site's: chip size, event phase and revisit index."""
    size = samples["chip_size_m"].astype(float).map("{:g}".format) if "chip_size_m" in samples else ""
    phase = samples["phase"].astype(str) if "phase" in samples else ""
    revisit = samples["revisit_index"].astype(str) if "revisit_index" in samples else ""
    return pd.Series(size, index=samples.index).astype(str) + "|" + phase + "|" + revisit


def unit_table(samples: pd.DataFrame | None) -> pd.DataFrame:
    """One row per site (the unit of substitution), indexed by ``site_id``.

    Columns: ``stratum``, ``time_bin`` (of the site's earliest window), ``mid`` (that window's middle,
    ns), ``group`` (the pool key: the stratum, or event and stratum), ``reserve_rank``, ``lon``, ``lat``,
    ``members`` (the site's sample ids, sorted) and ``keys`` (member key → sample id).
    """
    columns = ["stratum", "time_bin", "mid", "group", "reserve_rank", "lon", "lat", "members", "keys"]
    if samples is None or len(samples) == 0:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="site_id"))
    frame = pd.DataFrame(
        {
            "sample_id": samples["sample_id"].astype(str).to_numpy(),
            "site_id": (samples["site_id"] if "site_id" in samples else samples["sample_id"]).astype(str).to_numpy(),
            "stratum": samples["stratum"].astype(str).to_numpy() if "stratum" in samples else "",
            "time_bin": samples["time_bin"].astype(str).to_numpy() if "time_bin" in samples else "",
            "key": member_key(samples).to_numpy(),
            "lon": samples["lon"].to_numpy(dtype=float),
            "lat": samples["lat"].to_numpy(dtype=float),
            "rank": samples["reserve_rank"].to_numpy() if "reserve_rank" in samples else 0,
            "event": samples["event_id"].astype(str).to_numpy() if "event_id" in samples else "",
        }
    )
    start = pd.to_datetime(samples["start_datetime"], utc=True).dt.tz_convert(None)
    end = pd.to_datetime(samples["end_datetime"], utc=True).dt.tz_convert(None)
    frame["start"] = start.to_numpy().astype("datetime64[ns]").astype(np.int64)
    frame["mid"] = (start + (end - start) / 2).to_numpy().astype("datetime64[ns]").astype(np.int64)
    frame = frame.sort_values(["site_id", "start", "sample_id"], kind="stable")
    first = frame.groupby("site_id", sort=True).first()
    units = pd.DataFrame(index=first.index)
    units["stratum"] = first["stratum"]
    units["time_bin"] = first["time_bin"]
    units["mid"] = first["mid"]
    units["group"] = np.where(first["event"] != "", first["event"] + "\x1f" + first["stratum"], first["stratum"])
    units["reserve_rank"] = first["rank"].astype(np.int64)
    units["lon"], units["lat"] = first["lon"], first["lat"]
    ordered = frame.sort_values(["site_id", "sample_id"], kind="stable")
    units["members"] = ordered.groupby("site_id", sort=True)["sample_id"].agg(tuple)
    units["keys"] = ordered.groupby("site_id", sort=True)[["key", "sample_id"]].apply(
        lambda g: dict(zip(g["key"], g["sample_id"], strict=True))
    )
    units["event"] = first["event"]
    return units


@dataclasses.dataclass(frozen=True)
class Step:
    """One round of substitution: the reserve sites to fetch now and what their samples replace."""

    fetch: list[str]
    """Reserve sites to fetch (new substitutes and ones a killed run left unfinished), in ``site_id`` order."""
    replaces: dict[str, str]
    """Reserve sample id → the plan sample it stands in for, for every substitute assigned so far."""


@dataclasses.dataclass
class _State:
    plan: pd.Series
    """Plan site → ``ok``, ``pending`` (a chip missing) or the reason of its first failed chip."""
    reserve: pd.Series
    """Reserve site → the same."""
    substitutes: dict[str, list[str]]
    """Plan site → its reserve sites, in the order they were assigned (by reserve rank within bins)."""
    replaced_by: dict[str, str]
    """Reserve site → the plan site it replaces."""
    replaces: dict[str, str]
    """Reserve sample → plan sample, from the manifest."""

    def live(self, site: str) -> str | None:
        """The plan site's substitute that has not failed, if any."""
        for sub in self.substitutes.get(site, ()):
            if self.reserve.get(sub) in (OK, PENDING):
                return sub
        return None

    def generation(self, site: str) -> int:
        """How many of the site's substitutes failed."""
        return sum(self.reserve.get(s) not in (OK, PENDING) for s in self.substitutes.get(site, ()))


class Substitutes:
    """The plan's and the reserve's sites, and the substitution state a chips manifest records.

    Args:
        plan: The plan (every row).
        reserve: ``reserve.parquet``, or None.
        collections: The dataset's collections: a site is achieved with an ``ok`` chip in each.
        selected: Plan sample ids this fetch works on (``--limit``); substitutes are found for those only.
    """

    def __init__(
        self,
        plan: pd.DataFrame,
        reserve: pd.DataFrame | None,
        collections: Sequence[str],
        selected: Iterable[str] | None = None,
    ) -> None:
        self.plan_rows = plan
        self.reserve_rows = reserve
        self.collections = list(dict.fromkeys(collections))
        self.plan = unit_table(plan)
        self.reserve = unit_table(reserve)
        self.site_of = {sid: site for site, members in self.plan["members"].items() for sid in members}
        self.site_of.update({sid: site for site, members in self.reserve["members"].items() for sid in members})
        chosen = set(map(str, selected)) if selected is not None else None
        self.selected = [
            site
            for site, members in self.plan["members"].items()
            if chosen is None or any(m in chosen for m in members)
        ]
        mids = pd.concat([self.plan[["time_bin", "mid"]], self.reserve[["time_bin", "mid"]]])
        self.bin_mid = mids.groupby("time_bin")["mid"].median().to_dict() if len(mids) else {}

    @property
    def has_reserve(self) -> bool:
        """Whether there are reserve sites at all."""
        return len(self.reserve) > 0

    # ------------------------------------------------------------------------------------------ state

    def _status(self, units: pd.DataFrame, chips: pd.DataFrame) -> pd.Series:
        """Each unit's status: ``ok``, ``pending``, or its first failed chip's reason (by sample, collection)."""
        if units.empty:
            return pd.Series(dtype=object)
        members = units["members"].explode()
        expected = pd.DataFrame({"site_id": members.index, "sample_id": members.to_numpy()})
        expected = expected.merge(pd.DataFrame({"collection": self.collections}), how="cross")
        got = chips[["sample_id", "collection", "status"]].drop_duplicates(["sample_id", "collection"], keep="last")
        joined = expected.merge(got, on=["sample_id", "collection"], how="left", sort=False)
        status = joined["status"].fillna(PENDING).astype(str)
        joined["status"] = status
        out = pd.Series(PENDING, index=units.index, dtype=object)
        out[(status == OK).groupby(joined["site_id"]).all()] = OK
        failed = joined[status.isin(FAILED)].sort_values(["site_id", "sample_id", "collection"], kind="stable")
        first = failed.groupby("site_id")["status"].first()
        out[first.index] = first.to_numpy()
        return out

    def state(self, chips: pd.DataFrame) -> _State:
        """The substitution state recorded in ``chips`` (the manifest's rows)."""
        chips = chips[chips["collection"].isin(self.collections)] if len(chips) else chips
        plan = self._status(self.plan, chips)
        reserve = self._status(self.reserve, chips)
        replaces: dict[str, str] = {}
        replaced_by: dict[str, str] = {}
        if len(chips) and len(self.reserve):
            marked = chips[chips["replaces"].notna() & chips["sample_id"].isin(self.site_of)]
            for sample, original in zip(marked["sample_id"].astype(str), marked["replaces"].astype(str), strict=True):
                site, target = self.site_of.get(sample), self.site_of.get(original)
                if site in self.reserve.index and target in self.plan.index:
                    replaces[sample] = original
                    replaced_by.setdefault(site, target)
        substitutes: dict[str, list[str]] = {}
        for site in sorted(replaced_by, key=lambda s: (self.reserve.at[s, "reserve_rank"], s)):
            substitutes.setdefault(replaced_by[site], []).append(site)
        return _State(plan, reserve, substitutes, replaced_by, replaces)

    def replaced(self, chips: pd.DataFrame) -> set[str]:
        """Plan sample ids of sites that have a substitute that has not failed (``--retry-failed`` leaves them)."""
        state = self.state(chips)
        return {m for site in state.substitutes if state.live(site) for m in self.plan.at[site, "members"]}

    # ------------------------------------------------------------------------------------------ stepping

    def step(self, chips: pd.DataFrame, *, assign: bool = True, refetch: bool = False) -> Step:
        """The next round: substitutes for failed sites of the lowest generation, and unfinished substitutes.

        Args:
            chips: The manifest's rows.
            assign: Find substitutes for failed sites (``--substitute``); otherwise only finish started ones.
            refetch: Fetch every live substitute again (``--overwrite``), not only unfinished ones.
        """
        state = self.state(chips)
        replaces = dict(state.replaces)
        fetch = []
        pending_gen = []
        for site in self.selected:
            sub = state.live(site)
            if sub is not None and (state.reserve[sub] == PENDING or refetch):
                fetch.append(sub)
                pending_gen.append(state.generation(site))
        new: dict[str, str] = {}
        if assign and self.has_reserve:
            used = set(state.replaced_by)
            pools = self._pools(used)
            needs = [
                s for s in self.selected
                if state.plan[s] not in (OK, PENDING) and state.live(s) is None and pools.get(self.plan.at[s, "group"])
            ]  # fmt: skip
            generations = [state.generation(s) for s in needs] + pending_gen
            if generations:
                lowest = min(generations)
                new = self._assign([s for s in needs if state.generation(s) == lowest], pools)
        for reserve_site, plan_site in new.items():
            fetch.append(reserve_site)
            for key, sample in self.reserve.at[reserve_site, "keys"].items():
                targets = self.plan.at[plan_site, "keys"]
                replaces[sample] = targets.get(key, self.plan.at[plan_site, "members"][0])
        return Step(sorted(set(fetch)), replaces)

    def _pools(self, used: set[str]) -> dict[str, dict[str, deque[str]]]:
        """Unused reserve sites per group and time bin, in rank order."""
        pools: dict[str, dict[str, deque[str]]] = {}
        free = self.reserve[~self.reserve.index.isin(list(used))]
        free = free.assign(site=free.index).sort_values(["group", "time_bin", "reserve_rank", "site"], kind="stable")
        for group, time_bin, site in zip(free["group"], free["time_bin"], free["site"], strict=True):
            pools.setdefault(group, {}).setdefault(time_bin, deque()).append(site)
        return pools

    def _assign(self, sites: list[str], pools: dict[str, dict[str, deque[str]]]) -> dict[str, str]:
        """Greedy, in site order: the same bin first for every site, then the nearest bin of the same group."""
        out: dict[str, str] = {}
        rest = []
        for site in sites:
            group, time_bin = self.plan.at[site, "group"], self.plan.at[site, "time_bin"]
            queue = pools.get(group, {}).get(time_bin)
            if queue:
                out[queue.popleft()] = site
            else:
                rest.append(site)
        for site in rest:
            group, time_bin = self.plan.at[site, "group"], self.plan.at[site, "time_bin"]
            here = self.bin_mid.get(time_bin, self.plan.at[site, "mid"])
            bins = [b for b, q in pools.get(group, {}).items() if q]
            if not bins:
                continue
            nearest = min(bins, key=lambda b: (abs(self.bin_mid.get(b, here) - here), b))
            out[pools[group][nearest].popleft()] = site
        return out

    def samples_of(self, sites: Iterable[str]) -> pd.DataFrame:
        """The reserve rows of these sites."""
        members = {m for s in sites for m in self.reserve.at[s, "members"]}
        assert self.reserve_rows is not None
        rows = self.reserve_rows[self.reserve_rows["sample_id"].astype(str).isin(members)]
        return rows.sort_values("sample_id", kind="stable").reset_index(drop=True)

    # ------------------------------------------------------------------------------------------ the result

    def achieved(self, chips: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The achieved samples (plan columns plus ``replaces``) and the ``achieved`` report of ``balance.json``."""
        state = self.state(chips)
        ok_plan = [s for s in self.plan.index if state.plan[s] == OK]
        used: dict[str, str] = {}  # plan site -> its ok substitute
        for site, subs in state.substitutes.items():
            if state.plan.get(site) == OK:
                continue  # the site got its chips after all (--retry-failed, --overwrite): no substitute needed
            for sub in subs:
                if state.reserve.get(sub) == OK:
                    used[site] = sub
                    break
        members = {m for s in ok_plan for m in self.plan.at[s, "members"]}
        rows = self.plan_rows[self.plan_rows["sample_id"].astype(str).isin(members)].copy()
        rows["replaces"] = pd.Series([None] * len(rows), index=rows.index, dtype=object)
        parts = [rows]
        if used and self.reserve_rows is not None:
            sub_members = {m for s in used.values() for m in self.reserve.at[s, "members"]}
            extra = self.reserve_rows[self.reserve_rows["sample_id"].astype(str).isin(sub_members)].copy()
            extra = extra.drop(columns=["reserve_rank"], errors="ignore")
            extra["replaces"] = extra["sample_id"].astype(str).map(state.replaces).astype(object)
            parts.append(extra)
        samples = pd.concat(parts, ignore_index=True) if len(parts) > 1 else rows
        samples = samples.sort_values("sample_id", kind="stable").reset_index(drop=True)
        achieved_sites = set(ok_plan) | set(used.values())
        samples = self._reweight(samples, achieved_sites)
        return samples, self._report(state, ok_plan, used)

    def _reweight(self, samples: pd.DataFrame, achieved_sites: set[str]) -> pd.DataFrame:
        """``inclusion_prob`` times achieved over planned sites of its group (stratum, or event and stratum)."""
        if "inclusion_prob" not in samples or samples.empty:
            return samples
        planned = self.plan.groupby("group").size()
        all_units = pd.concat([self.plan[["group"]], self.reserve[["group"]]])
        got = all_units[all_units.index.isin(list(achieved_sites))].groupby("group").size()
        ratio = (got / planned).reindex(planned.index).fillna(0.0)
        group = all_units["group"]
        group = group[~group.index.duplicated()]
        sites = samples["site_id"].astype(str) if "site_id" in samples else samples["sample_id"].astype(str)
        factor = sites.map(group).map(ratio).fillna(1.0).to_numpy(dtype=float)
        samples = samples.copy()
        samples["inclusion_prob"] = np.clip(samples["inclusion_prob"].to_numpy(dtype=float) * factor, 0.0, 1.0)
        return samples

    def _report(self, state: _State, ok_plan: list[str], used: dict[str, str]) -> dict[str, Any]:
        """Per stratum and time bin: target, planned_ok, substituted, shortfall, not_fetched and reasons."""
        ok = set(ok_plan)
        free = self._pools(set(state.replaced_by))
        cells: dict[tuple[str, str], dict[str, Any]] = {}
        lost_sites = []
        for site, unit in self.plan.iterrows():
            cell = cells.setdefault((unit["stratum"], unit["time_bin"]), _cell())
            cell["target"] += 1
            status = state.plan[site]
            if site in ok:
                cell["planned_ok"] += 1
            elif site in used:
                cell["substituted"] += 1
                if self.reserve.at[used[site], "time_bin"] != unit["time_bin"]:
                    cell["substituted_from_other_bins"] += 1
            elif status == PENDING:
                cell["not_fetched"] += 1
            else:
                cell["shortfall"] += 1
                if state.live(site) is None and not free.get(unit["group"]):
                    cell["no_reserve_left"] += 1
                    lost_sites.append(site)
            if status not in (OK, PENDING):
                cell["reasons"][status] += 1
            for sub in state.substitutes.get(site, ()):
                if state.reserve.get(sub) not in (OK, PENDING):
                    cell["reserve_reasons"][state.reserve[sub]] += 1
        rows = [{"stratum": s, "time_bin": b, **_plain(c)} for (s, b), c in sorted(cells.items())]
        strata = {}
        for row in rows:
            agg = strata.setdefault(row["stratum"], _cell())
            for key, value in row.items():
                if isinstance(value, dict):
                    agg[key].update(value)
                elif key not in ("stratum", "time_bin"):
                    agg[key] += value
        reserve_total = self.reserve.groupby("stratum").size()
        reserve_used = self.reserve[self.reserve.index.isin(list(state.replaced_by))].groupby("stratum").size()
        per_stratum = []
        for stratum, agg in sorted(strata.items()):
            row = {"stratum": stratum, **_plain(agg)}
            row["achieved"] = row["planned_ok"] + row["substituted"]
            row["reserves"] = int(reserve_total.get(stratum, 0))
            row["reserves_used"] = int(reserve_used.get(stratum, 0))
            per_stratum.append(row)
        totals = _cell()
        for agg in strata.values():
            for key, value in agg.items():
                if isinstance(value, Counter):
                    totals[key].update(value)
                else:
                    totals[key] += value
        summary = _plain(totals)
        summary["achieved"] = summary["planned_ok"] + summary["substituted"]
        summary["strata_short"] = sum(r["shortfall"] > 0 for r in per_stratum)
        summary["reserves"] = int(len(self.reserve))
        summary["reserves_used"] = int(len(state.replaced_by))
        report: dict[str, Any] = {
            "unit": "site",
            "collections": self.collections,
            "summary": summary,
            "strata": per_stratum,
            "cells": rows,
        }
        events = self.plan["event"]
        if (events != "").any():
            report["events"] = self._events(ok, used, lost_sites)
        return report

    def _events(self, ok: set[str], used: dict[str, str], lost: list[str]) -> dict[str, Any]:
        per: dict[str, dict[str, int]] = {}
        for site, event in self.plan["event"].items():
            row = per.setdefault(str(event), {"target": 0, "achieved": 0, "lost": 0})
            row["target"] += 1
            row["achieved"] += int(site in ok or site in used)
            row["lost"] += int(site in lost)
        return {"per_event": per, "lost_entirely": sorted(e for e, r in per.items() if r["target"] and not r["achieved"]
                                                          and r["lost"])}  # fmt: skip

    def failed_sites(self, chips: pd.DataFrame) -> pd.DataFrame:
        """Every plan or reserve site that failed: ``site_id``, ``lon``, ``lat``, ``stratum``, ``reason``, ``kind``."""
        state = self.state(chips)
        parts = []
        for kind, units, status in (("plan", self.plan, state.plan), ("reserve", self.reserve, state.reserve)):
            bad = status[~status.isin([OK, PENDING])]
            if len(bad):
                sub = units.loc[bad.index, ["lon", "lat", "stratum", "time_bin"]].copy()
                sub["reason"] = bad.to_numpy()
                sub["kind"] = kind
                parts.append(sub)
        if not parts:
            return pd.DataFrame(columns=["site_id", "lon", "lat", "stratum", "time_bin", "reason", "kind"])
        return pd.concat(parts).rename_axis("site_id").reset_index()


def _cell() -> dict[str, Any]:
    return {"target": 0, "planned_ok": 0, "substituted": 0, "substituted_from_other_bins": 0, "shortfall": 0,
            "no_reserve_left": 0, "not_fetched": 0, "reasons": Counter(), "reserve_reasons": Counter()}  # fmt: skip


def _plain(cell: dict[str, Any]) -> dict[str, Any]:
    return {k: dict(sorted(v.items())) if isinstance(v, Counter | dict) else int(v) for k, v in cell.items()}


BALANCE_FILE = "report/balance.json"


def write_achieved(ds: Path, subs: Substitutes, chips: pd.DataFrame, *, substitute: bool = True) -> dict[str, Any]:
    """Write ``DS/samples.parquet`` and the ``achieved`` section of ``report/balance.json``; returns the section."""
    import geopandas as gpd

    from geosample._dataset import SAMPLES_FILE, atomic_path

    samples, report = subs.achieved(chips)
    report = {"substitution": bool(substitute and subs.has_reserve), **report}
    crs = getattr(subs.plan_rows, "crs", None) or "EPSG:4326"
    table = gpd.GeoDataFrame(samples, geometry="geometry", crs=crs)
    with atomic_path(ds / SAMPLES_FILE) as tmp:
        table.to_parquet(tmp, index=False, compression="zstd", schema_version="1.1.0", write_covering_bbox=True)
    path = ds / BALANCE_FILE
    try:
        balance = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:
        balance = {}
    balance = balance if isinstance(balance, dict) else {}
    balance["achieved"] = report
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(balance, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report
