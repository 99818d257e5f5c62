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
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FAILED", "Step", "Substitutes", "Units", "write_achieved"]

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


class Units:
    """The sites of a plan-like table (the unit of substitution) and their samples.

    ``table`` is indexed by ``site_id``, with ``stratum``, ``time_bin`` (of the site's earliest window),
    ``mid`` (that window's middle, ns), ``group`` (the pool a reserve is taken from: the stratum, or the
    event and stratum), ``event``, ``reserve_rank``, ``lon`` and ``lat``; ``members`` holds each site's
    sample ids (sorted) and ``keys`` their :func:`member_key`, in the same order.
    """

    def __init__(self, samples: pd.DataFrame | None) -> None:
        columns = ["stratum", "time_bin", "mid", "group", "event", "reserve_rank", "lon", "lat"]
        self.members: dict[str, tuple[str, ...]] = {}
        self.keys: dict[str, tuple[str, ...]] = {}
        self.group: dict[str, str] = {}
        self.time_bin: dict[str, str] = {}
        self.mid: dict[str, int] = {}
        self.rank: dict[str, int] = {}
        if samples is None or len(samples) == 0:
            self.table = pd.DataFrame(columns=columns, index=pd.Index([], name="site_id"))
            return
        n = len(samples)

        def text(column: str) -> np.ndarray:
            return samples[column].astype(str).to_numpy() if column in samples else np.full(n, "", dtype=object)

        start = pd.to_datetime(samples["start_datetime"], utc=True).dt.tz_convert(None)
        end = pd.to_datetime(samples["end_datetime"], utc=True).dt.tz_convert(None)
        frame = pd.DataFrame(
            {
                "sample_id": samples["sample_id"].astype(str).to_numpy(),
                "site_id": text("site_id") if "site_id" in samples else samples["sample_id"].astype(str).to_numpy(),
                "stratum": text("stratum"),
                "time_bin": text("time_bin"),
                "event": text("event_id"),
                "key": member_key(samples).to_numpy(),
                "lon": samples["lon"].to_numpy(dtype=float),
                "lat": samples["lat"].to_numpy(dtype=float),
                "reserve_rank": samples["reserve_rank"].to_numpy(dtype=np.int64) if "reserve_rank" in samples else 0,
                "start": start.to_numpy().astype("datetime64[ns]").astype(np.int64),
                "mid": (start + (end - start) / 2).to_numpy().astype("datetime64[ns]").astype(np.int64),
            }
        )
        first = frame.sort_values(["site_id", "start", "sample_id"], kind="stable").drop_duplicates("site_id")
        table = first.set_index("site_id")[["stratum", "time_bin", "mid", "event", "reserve_rank", "lon", "lat"]]
        table.insert(3, "group", np.where(table["event"] != "", table["event"] + "\x1f" + table["stratum"],
                                          table["stratum"]))  # fmt: skip
        self.table = table.sort_index()
        ordered = frame.sort_values(["site_id", "sample_id"], kind="stable")
        sites = _objects(ordered["site_id"])
        bounds = np.r_[0, np.flatnonzero(sites[1:] != sites[:-1]) + 1, len(sites)]
        ids, keys = _objects(ordered["sample_id"]).tolist(), _objects(ordered["key"]).tolist()
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            self.members[sites[a]] = tuple(ids[a:b])
            self.keys[sites[a]] = tuple(keys[a:b])
        index = _objects(self.table.index)
        self.group = dict(zip(index, _objects(self.table["group"]), strict=True))
        self.time_bin = dict(zip(index, _objects(self.table["time_bin"]), strict=True))
        self.mid = dict(zip(index, self.table["mid"].tolist(), strict=True))
        self.rank = dict(zip(index, self.table["reserve_rank"].tolist(), strict=True))

    def __len__(self) -> int:
        return len(self.table)

    @property
    def index(self) -> pd.Index:
        """The site ids."""
        return self.table.index


@dataclasses.dataclass(frozen=True)
class Step:
    """One round of substitution: the reserve sites to fetch now and what their samples replace."""

    fetch: list[str]
    """Reserve sites to fetch (new substitutes and ones a killed run left unfinished), in ``site_id`` order."""
    replaces: dict[str, str]
    """Reserve sample id → the plan sample it stands in for, for every substitute to fetch or recorded."""


@dataclasses.dataclass
class _State:
    plan: dict[str, str]
    """Plan site → ``ok``, ``pending`` (a chip missing) or the reason of its first failed chip."""
    reserve: dict[str, str]
    """Reserve site → the same."""
    substitutes: dict[str, list[str]]
    """Plan site → its reserve sites, by rank."""
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

    def substitute_ok(self, site: str) -> str | None:
        """The plan site's substitute that got all its chips, if any (and the site itself did not)."""
        if self.plan.get(site) == OK:
            return None  # the site got its chips after all (--retry-failed, --overwrite): no substitute needed
        return next((sub for sub in self.substitutes.get(site, ()) if self.reserve.get(sub) == OK), None)


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
        self.plan = Units(plan)
        self.reserve = Units(reserve)
        self.site_of = {sid: site for site, members in self.plan.members.items() for sid in members}
        self.site_of.update({sid: site for site, members in self.reserve.members.items() for sid in members})
        chosen = set(map(str, selected)) if selected is not None else None
        self.selected = [
            site for site, members in self.plan.members.items() if chosen is None or any(m in chosen for m in members)
        ]
        mids = pd.concat([self.plan.table[["time_bin", "mid"]], self.reserve.table[["time_bin", "mid"]]])
        self.bin_mid = mids.groupby("time_bin")["mid"].median().to_dict() if len(mids) else {}

    @property
    def has_reserve(self) -> bool:
        """Whether there are reserve sites at all."""
        return len(self.reserve) > 0

    # ------------------------------------------------------------------------------------------ state

    def _status(self, units: Units, chips: pd.DataFrame) -> dict[str, str]:
        """Each unit's status: ``ok``, ``pending``, or its first failed chip's reason (by sample, collection)."""
        if not len(units):
            return {}
        sites = np.repeat(np.array(list(units.members), dtype=object), [len(m) for m in units.members.values()])
        samples = [m for members in units.members.values() for m in members]
        expected = pd.DataFrame({"site_id": sites, "sample_id": samples})
        expected = expected.merge(pd.DataFrame({"collection": self.collections}), how="cross")
        got = chips[["sample_id", "collection", "status"]].drop_duplicates(["sample_id", "collection"], keep="last")
        joined = expected.merge(got, on=["sample_id", "collection"], how="left", sort=False)
        status = joined["status"].fillna(PENDING).astype(str)
        out = dict.fromkeys(units.members, PENDING)
        all_ok = (status == OK).groupby(joined["site_id"]).all()
        out.update(dict.fromkeys(all_ok.index[all_ok.to_numpy()], OK))
        failed = joined.assign(status=status)[status.isin(FAILED)]
        first = failed.sort_values(["site_id", "sample_id", "collection"], kind="stable").drop_duplicates("site_id")
        out.update(zip(_objects(first["site_id"]), _objects(first["status"]), strict=True))
        return out

    def state(self, chips: pd.DataFrame) -> _State:
        """The substitution state recorded in ``chips`` (the manifest's rows)."""
        chips = chips[chips["collection"].isin(self.collections)] if len(chips) else chips
        plan = self._status(self.plan, chips)
        reserve = self._status(self.reserve, chips)
        replaces: dict[str, str] = {}
        replaced_by: dict[str, str] = {}
        if len(chips) and len(self.reserve):
            marked = chips[chips["replaces"].notna()]
            marked = marked[_member(marked["sample_id"], self.site_of)]
            pairs = zip(_objects(marked["sample_id"]), _objects(marked["replaces"]), strict=True)
            for sample, original in pairs:
                site, target = self.site_of.get(sample), self.site_of.get(original)
                if site in self.reserve.members and target in self.plan.members:
                    replaces[sample] = original
                    replaced_by.setdefault(site, target)
        rank = self.reserve.rank
        substitutes: dict[str, list[str]] = {}
        for site in sorted(replaced_by, key=lambda s: (rank[s], s)):
            substitutes.setdefault(replaced_by[site], []).append(site)
        return _State(plan, reserve, substitutes, replaced_by, replaces)

    def replaced(self, chips: pd.DataFrame) -> set[str]:
        """Plan sample ids of sites that have a substitute that has not failed (``--retry-failed`` leaves them)."""
        state = self.state(chips)
        return {m for site in state.substitutes if state.live(site) for m in self.plan.members[site]}

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
            sub = state.live(site) if state.plan[site] != OK else None  # a site that got its chips needs none
            if sub is not None and (state.reserve[sub] == PENDING or refetch):
                fetch.append(sub)
                pending_gen.append(state.generation(site))
        new: dict[str, str] = {}
        if assign and self.has_reserve:
            pools = self._pools(set(state.replaced_by))
            needs = [
                s for s in self.selected
                if state.plan[s] not in (OK, PENDING) and state.live(s) is None and pools.get(self.plan.group[s])
            ]  # fmt: skip
            generations = [state.generation(s) for s in needs] + pending_gen
            if generations:
                lowest = min(generations)
                new = self._assign([s for s in needs if state.generation(s) == lowest], pools)
        fetch += list(new)
        # Every sample of a site to fetch names its counterpart (a killed run may have recorded only some).
        assigned = {**state.replaced_by, **new}
        for reserve_site in fetch:
            plan_site = assigned[reserve_site]
            targets = dict(zip(self.plan.keys[plan_site], self.plan.members[plan_site], strict=True))
            for key, sample in zip(self.reserve.keys[reserve_site], self.reserve.members[reserve_site], strict=True):
                replaces.setdefault(sample, targets.get(key, self.plan.members[plan_site][0]))
        return Step(sorted(set(fetch)), replaces)

    def _pools(self, used: set[str]) -> dict[str, dict[str, deque[str]]]:
        """Unused reserve sites per group and time bin, in rank order."""
        pools: dict[str, dict[str, deque[str]]] = {}
        free = self.reserve.table[~_member(self.reserve.index, used)]
        free = free.assign(site=free.index).sort_values(["group", "time_bin", "reserve_rank", "site"], kind="stable")
        for group, time_bin, site in zip(free["group"], free["time_bin"], free["site"], strict=True):
            pools.setdefault(group, {}).setdefault(time_bin, deque()).append(site)
        return pools

    def _assign(self, sites: list[str], pools: dict[str, dict[str, deque[str]]]) -> dict[str, str]:
        """Greedy, in site order: the same bin first for every site, then the nearest bin of the same group."""
        out: dict[str, str] = {}
        rest = []
        for site in sites:
            queue = pools.get(self.plan.group[site], {}).get(self.plan.time_bin[site])
            if queue:
                out[queue.popleft()] = site
            else:
                rest.append(site)
        for site in rest:
            group = self.plan.group[site]
            here = self.bin_mid.get(self.plan.time_bin[site], self.plan.mid[site])
            bins = [b for b, q in pools.get(group, {}).items() if q]
            if not bins:
                continue
            nearest = min(bins, key=lambda b: (abs(self.bin_mid.get(b, here) - here), b))
            out[pools[group][nearest].popleft()] = site
        return out

    def samples_of(self, sites: Iterable[str]) -> pd.DataFrame:
        """The reserve rows of these sites."""
        if self.reserve_rows is None:
            raise ValueError("no reserve")
        members = {m for s in sites for m in self.reserve.members[s]}
        rows = self.reserve_rows[_member(self.reserve_rows["sample_id"], members)]
        return rows.sort_values("sample_id", kind="stable").reset_index(drop=True)

    # ------------------------------------------------------------------------------------------ the result

    def achieved(self, chips: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The achieved samples (plan columns plus ``replaces``) and the ``achieved`` report of ``balance.json``."""
        state = self.state(chips)
        ok_plan = [s for s in self.plan.index if state.plan[s] == OK]
        used = {site: sub for site in state.substitutes if (sub := state.substitute_ok(site)) is not None}
        members = {m for s in ok_plan for m in self.plan.members[s]}
        rows = self.plan_rows[_member(self.plan_rows["sample_id"], members)].copy()
        rows["replaces"] = pd.Series([None] * len(rows), index=rows.index, dtype=object)
        parts = [rows]
        if used and self.reserve_rows is not None:
            sub_members = {m for s in used.values() for m in self.reserve.members[s]}
            extra = self.reserve_rows[_member(self.reserve_rows["sample_id"], sub_members)].copy()
            extra = extra.drop(columns=["reserve_rank"], errors="ignore")
            extra["replaces"] = extra["sample_id"].astype(str).map(self._counterparts(used)).astype(object)
            parts.append(extra)
        samples = pd.concat(parts, ignore_index=True) if len(parts) > 1 else rows
        samples = samples.sort_values("sample_id", kind="stable").reset_index(drop=True)
        samples = self._reweight(samples, set(ok_plan) | set(used.values()))
        return samples, self._report(state, set(ok_plan), used)

    def _counterparts(self, used: dict[str, str]) -> dict[str, str]:
        """Reserve sample → the plan sample it replaces, for the substitutes in ``used`` (plan → reserve site)."""
        out = {}
        for plan_site, reserve_site in used.items():
            targets = dict(zip(self.plan.keys[plan_site], self.plan.members[plan_site], strict=True))
            for key, sample in zip(self.reserve.keys[reserve_site], self.reserve.members[reserve_site], strict=True):
                out[sample] = targets.get(key, self.plan.members[plan_site][0])
        return out

    def _reweight(self, samples: pd.DataFrame, achieved_sites: set[str]) -> pd.DataFrame:
        """``inclusion_prob`` times achieved over planned sites of its group (stratum, or event and stratum)."""
        if "inclusion_prob" not in samples or samples.empty:
            return samples
        planned = self.plan.table.groupby("group").size()
        group = {**self.reserve.group, **self.plan.group}
        got = pd.Series([group[s] for s in achieved_sites], dtype=object).value_counts()
        ratio = (got.reindex(planned.index, fill_value=0) / planned).to_dict()
        sites = samples["site_id"].astype(str) if "site_id" in samples else samples["sample_id"].astype(str)
        factor = np.array([ratio.get(group.get(s), 1.0) for s in sites], dtype=float)
        samples = samples.copy()
        samples["inclusion_prob"] = np.clip(samples["inclusion_prob"].to_numpy(dtype=float) * factor, 0.0, 1.0)
        return samples

    def _report(self, state: _State, ok: set[str], used: dict[str, str]) -> dict[str, Any]:
        """Per stratum and time bin: target, planned_ok, substituted, shortfall, not_fetched and reasons."""
        units = self.plan.table[["stratum", "time_bin", "group", "event"]].copy()
        status = units.index.map(state.plan).to_numpy(dtype=object)
        live = np.array([state.live(s) is not None for s in units.index], dtype=bool)
        free = self._pools(set(state.replaced_by))
        in_ok = _member(units.index, ok)
        in_used = _member(units.index, used) & ~in_ok
        failed = ~in_ok & ~in_used & (status != PENDING) & (status != OK)
        units["target"] = 1
        units["planned_ok"] = in_ok.astype(int)
        units["substituted"] = in_used.astype(int)
        other = [self.reserve.time_bin[used[s]] != b if s in used else False
                 for s, b in zip(units.index, units["time_bin"], strict=True)]  # fmt: skip
        units["substituted_from_other_bins"] = (in_used & np.array(other, dtype=bool)).astype(int)
        units["shortfall"] = failed.astype(int)
        lost = failed & ~live & ~units["group"].map(lambda g: bool(free.get(g))).to_numpy(dtype=bool)
        units["no_reserve_left"] = lost.astype(int)
        units["not_fetched"] = (~in_ok & ~in_used & (status == PENDING)).astype(int)
        units["reason"] = np.where((status != OK) & (status != PENDING), status, None)
        counts = ["target", "planned_ok", "substituted", "substituted_from_other_bins", "shortfall", "no_reserve_left",
                  "not_fetched"]  # fmt: skip
        tried = [(site, state.reserve[sub]) for site, subs in state.substitutes.items() for sub in subs
                 if state.reserve.get(sub) not in (OK, PENDING)]  # fmt: skip
        dead = pd.DataFrame(tried, columns=["site", "reason"]).join(units[["stratum", "time_bin"]], on="site")
        reasons = _nested(units, ["stratum", "time_bin"])
        reserve_reasons = _nested(dead, ["stratum", "time_bin"])
        cells = units.groupby(["stratum", "time_bin"], sort=True)[counts].sum()
        rows = [
            {"stratum": stratum, "time_bin": time_bin, **{k: int(v) for k, v in cell.items()},
             "reasons": reasons.get(key, {}), "reserve_reasons": reserve_reasons.get(key, {})}
            for key, cell in cells.iterrows()
            for stratum, time_bin in [key]
        ]  # fmt: skip
        reserve_total = self.reserve.table.groupby("stratum").size()
        taken = self.reserve.table[_member(self.reserve.index, state.replaced_by)].groupby("stratum").size()
        by_stratum = units.groupby("stratum", sort=True)[counts].sum()
        reasons = _nested(units, ["stratum"])
        reserve_reasons = _nested(dead, ["stratum"])
        per_stratum = []
        for stratum, cell in by_stratum.iterrows():
            row = {"stratum": stratum, **{k: int(v) for k, v in cell.items()}, "reasons": reasons.get(stratum, {}),
                   "reserve_reasons": reserve_reasons.get(stratum, {})}  # fmt: skip
            row["achieved"] = row["planned_ok"] + row["substituted"]
            row["reserves"] = int(reserve_total.get(stratum, 0))
            row["reserves_used"] = int(taken.get(stratum, 0))
            per_stratum.append(row)
        summary = {k: int(units[k].sum()) for k in counts}
        summary["achieved"] = summary["planned_ok"] + summary["substituted"]
        summary["strata_short"] = sum(r["shortfall"] > 0 for r in per_stratum)
        summary["reserves"] = int(len(self.reserve))
        summary["reserves_used"] = int(len(state.replaced_by))
        summary["reasons"] = _counts(units["reason"])
        summary["reserve_reasons"] = _counts(dead["reason"])
        report: dict[str, Any] = {
            "unit": "site",
            "collections": self.collections,
            "summary": summary,
            "strata": per_stratum,
            "cells": rows,
        }
        if (units["event"] != "").any():
            per = units.assign(achieved=units["planned_ok"] + units["substituted"], lost=units["no_reserve_left"])
            per = per.groupby("event")[["target", "achieved", "lost"]].sum()
            lost_entirely = per.index[(per["achieved"] == 0) & (per["lost"] > 0)]
            report["events"] = {
                "per_event": {str(e): {k: int(v) for k, v in r.items()} for e, r in per.iterrows()},
                "lost_entirely": sorted(map(str, lost_entirely)),
            }
        return report

    def failed_sites(self, chips: pd.DataFrame) -> pd.DataFrame:
        """Every plan or reserve site that failed: ``site_id``, ``lon``, ``lat``, ``stratum``, ``reason``, ``kind``."""
        state = self.state(chips)
        parts = []
        for kind, units, status in (("plan", self.plan, state.plan), ("reserve", self.reserve, state.reserve)):
            bad = {site: s for site, s in status.items() if s not in (OK, PENDING)}
            if bad:
                sub = units.table.loc[list(bad), ["lon", "lat", "stratum", "time_bin"]].copy()
                sub["reason"] = list(bad.values())
                sub["kind"] = kind
                parts.append(sub)
        if not parts:
            return pd.DataFrame(columns=["site_id", "lon", "lat", "stratum", "time_bin", "reason", "kind"])
        return pd.concat(parts).rename_axis("site_id").reset_index()


def _member(values: Iterable[Any], wanted: Iterable[Any]) -> np.ndarray:
    """Whether each value is in ``wanted`` (a set or dict), as a boolean array (faster than Arrow's isin here)."""
    wanted = wanted if isinstance(wanted, set | dict | frozenset) else set(wanted)
    values = _objects(values)
    return np.fromiter((v in wanted for v in values), dtype=bool, count=len(values))


def _objects(values: Iterable[Any]) -> np.ndarray:
    """Values as a NumPy object array (iterating one is far faster than iterating Arrow strings)."""
    if isinstance(values, pd.Series | pd.Index):
        return values.to_numpy(dtype=object)
    return np.asarray(list(values), dtype=object)


def _nested(frame: pd.DataFrame, keys: list[str]) -> dict[Any, dict[str, int]]:
    """``reason`` counts per group of ``keys`` (a tuple key for several), reasons sorted."""
    if frame.empty or frame["reason"].isna().all():
        return {}
    sizes = frame.dropna(subset=["reason"]).groupby([*keys, "reason"], sort=True).size()
    out: dict[Any, dict[str, int]] = {}
    for index, count in sizes.items():
        key = index[0] if len(keys) == 1 else tuple(index[:-1])
        out.setdefault(key, {})[str(index[-1])] = int(count)
    return out


def _counts(values: pd.Series) -> dict[str, int]:
    """How often each (non-null) value occurs, by value."""
    counts = values.dropna().astype(str).value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items())}


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
