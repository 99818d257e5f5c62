"""Reserve sites: drawn with the plan's own rules, in an order that keeps any first few spread out.

Real archives fail a share of the planned samples (no scene in the window,
clouds, nodata at swath edges), and not at random: the tropics are cloudy,
high latitudes dark in winter. ``geosample fetch`` therefore replaces a failed
site by the next unused *reserve* site of its stratum and time bin (see
:mod:`geosample.stac.substitute`), so the dataset keeps the balance the plan
made. This module draws those reserves at plan time into ``DS/reserve.parquet``.

**The same rules.** Reserves are drawn by the plan's own sampler after the
plan's sites, from the same atlas, with the same strata, parent-cell rule
(``--max-per-parent``), minimum distance (one
:class:`~geosample.sampling.spacing.SpacingIndex` holds the plan's sites and
the reserves, so no two of all of them are closer than ``--min-distance-m``),
chip sizes, time bins and revisit series. Event plans take their reserves from
the candidate sites of the same event that the plan left unused (already
thinned by the same spacing rules).

**How many.** With ``F = --reserve`` and ``n`` planned sites in a stratum and
time bin (for events: in an event and stratum), the reserve holds
``r = ceil(F·n + sqrt(F·n))`` sites there: ``F·n`` is the number of failures
the reserves are sized for, and ``sqrt(F·n)`` one Poisson standard deviation
of that number on top, so a small stratum, whose failure count varies most
relative to its size, gets relatively more (``F = 0.5``: 1 planned site gets
2 reserves, 10 get 8, 100 get 58). ``F = 0`` draws none. Where the stratum
cannot hold them all under the spacing rules, fewer are drawn (the report says
so, per stratum).

**The order.** Reserves of one stratum and time bin are ranked
(``reserve_rank`` 1, 2, ...) in a *spread order*, so that the first ``k`` of
them, whatever ``k``, are spatially balanced. It is the idea of GRTS
(Stevens & Olsen 2004, "Spatially balanced sampling of natural resources"),
on the H3 hierarchy instead of a randomised quadtree: going up from the sites'
cells, the sequences of a parent cell's children are merged in proportion to
their sizes, each with a random phase (a child with ``m`` sites puts its
``j``-th at ``(j + u)/m``, ``u`` uniform in [0, 1)), up to the 122 base cells
and a single root. Any prefix of the final sequence then holds, in every H3
cell at every resolution, about its proportional share of the cell's
reserves (within one per level), so substitutions taken in rank order spread
over the stratum instead of piling up where the draw happened to start.

**Inclusion probabilities.** A reserve's ``inclusion_prob`` is what a plan
site of its stratum at its cell carries: ``n_h·a/A_h`` (see
:func:`geosample.sampling.sampler.inclusion_probabilities`), the design
weight it takes over when it stands in for a planned site. Reserves are drawn
from the same uniform distribution as the plan's sites, so a substitute is a
draw of the same design; what the substitutions cannot undo is a failure that
concentrates in part of a stratum (the fetchable part is then what the stratum's
sample represents), which the fetch report maps. ``fetch`` rescales the
probabilities of the achieved samples to the sites each stratum actually got
(:mod:`geosample.stac.substitute`).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pandas as pd

from geosample.errors import CapacityWarning
from geosample.sampling import _h3
from geosample.sampling.timebins import Bin, bin_windows

__all__ = [
    "RANK_COLUMN",
    "ReserveDraw",
    "event_reserves",
    "reserve_count",
    "spread_order",
]

RANK_COLUMN = "reserve_rank"
RULE = "ceil(F*n + sqrt(F*n)) per stratum and time bin (events: per event and stratum), n = planned sites there"
ORDER = "spread order: GRTS-like proportional merge up the H3 hierarchy with random phases"


def reserve_count(planned: np.ndarray | int, per_site: float) -> np.ndarray:
    """Reserve sites for ``planned`` sites at ``per_site`` reserves each: ``ceil(F·n + sqrt(F·n))`` (0 for n = 0)."""
    n = np.asarray(planned, dtype=np.float64)
    expected = per_site * n
    # Rounding noise must not add a site where F·n is a whole number (1e-9 is far below one site).
    return np.where(n > 0, np.ceil(expected + np.sqrt(expected) - 1e-9), 0).astype(np.int64)


def spread_order(cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``cells`` (H3 cells, uint64, one resolution) whose every prefix is spread (module docstring).

    Returns positions into ``cells``: ``cells[spread_order(cells, rng)]`` is the ranked sequence.
    """
    cells = np.asarray(cells, dtype=np.uint64)
    n = cells.size
    if n <= 1:
        return np.arange(n)
    res = int(_h3.resolution(cells[:1])[0])
    # Rank of each site within its node; the leaves (the cells themselves) each hold one site, ties at random.
    rank = np.zeros(n, dtype=np.int64)
    node = cells
    for level in range(res, -1, -1):
        parent = _h3.parent(cells, level - 1) if level > 0 else np.zeros(n, dtype=np.uint64)
        _, child, size = np.unique(node, return_inverse=True, return_counts=True)
        phase = rng.random(size.size)
        key = (rank + phase[child]) / size[child]
        # Merge the children of each parent by key: the new rank is the position within the parent.
        order = np.lexsort((rng.random(n), key, parent))
        sorted_parent = parent[order]
        starts = np.r_[0, np.flatnonzero(sorted_parent[1:] != sorted_parent[:-1]) + 1]
        first = np.repeat(starts, np.diff(np.r_[starts, n]))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - first
        node = parent
    return np.argsort(rank, kind="stable")


def rank_within(groups: pd.DataFrame, cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``reserve_rank`` (1-based) of each site in the spread order of its group (rows of ``groups`` alike).

    Groups are ranked in the order of their keys (the columns' values as text), each as
    :func:`spread_order` ranks it; all of them at once when their cells share a resolution.
    """
    ranks = np.zeros(len(groups), dtype=np.int64)
    if len(groups) == 0:
        return ranks
    # One string key per row (the columns joined by a unit separator); groups are taken in key order.
    keys: np.ndarray = np.zeros(len(groups))
    for i, column in enumerate(groups.columns):
        values = groups[column].astype(str).to_numpy(dtype=object)
        keys = values if i == 0 else keys + "\x1f" + values
    codes, uniques = pd.factorize(keys)  # hashed; then numbered in key order, as sorting them would
    rank_of = np.empty(len(uniques), dtype=np.int64)
    rank_of[np.argsort(np.asarray(uniques), kind="stable")] = np.arange(len(uniques))
    group = rank_of[codes]
    cells = np.asarray(cells, dtype=np.uint64)
    batch = np.unique(_h3.resolution(cells)).size == 1
    small: list[np.ndarray] = []  # consecutive small groups, ranked together

    def rank_small() -> None:
        if small:
            idx = np.concatenate(small)
            ranks[idx] = _spread_ranks(cells[idx], group[idx], rng)
            small.clear()

    by_group = np.argsort(group, kind="stable")  # each group's rows in their order
    for idx in np.split(by_group, np.flatnonzero(np.diff(group[by_group])) + 1):
        if batch and idx.size < _BATCH_BELOW:
            small.append(idx)
            if sum(part.size for part in small) >= _BATCH_ROWS:
                rank_small()
            continue
        rank_small()
        order = spread_order(cells[idx], rng)
        ranks[idx[order]] = np.arange(1, idx.size + 1)
    rank_small()
    return ranks


_BATCH_BELOW = 100
"""Groups smaller than this are ranked together: a group alone costs a fixed ~0.5 ms, about what ranking
100 sites costs."""
_BATCH_ROWS = 20_000
"""At most about this many sites are ranked together (longer sorts cost more per site)."""


def _spread_ranks(cells: np.ndarray, group: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """1-based rank of each cell in :func:`spread_order` of its group, for every group at once.

    The groups take their random numbers from ``rng`` in the order of their ids and, within a
    group, in the order :func:`spread_order` draws them (per level, a phase per node, then a tie
    breaker per site), so the ranks are those of calling it on each group in turn.
    """
    n_all = cells.size
    out = np.ones(n_all, dtype=np.int64)
    by_group = np.argsort(group, kind="stable")
    size_of = np.bincount(group)
    rows = by_group[size_of[group[by_group]] > 1]  # a lone site is rank 1 and draws nothing
    if rows.size == 0:
        return out
    _, g = np.unique(group[rows], return_inverse=True)  # groups renumbered 0, 1, ... in order
    g = g.ravel()
    c = cells[rows]
    n = rows.size
    n_groups = int(g[-1]) + 1
    members = np.bincount(g, minlength=n_groups)
    first_row = np.r_[0, np.cumsum(members)[:-1]]
    position = np.arange(n) - first_row[g]
    res = int(_h3.resolution(c[:1])[0])
    levels = list(range(res, -1, -1))
    # Per level: each site's node (its cell's ancestor there), numbered within the group in cell order.
    child, node_size, nodes = [], [], np.zeros((len(levels), n_groups), dtype=np.int64)
    for t, level in enumerate(levels):
        node = _h3.parent(c, level)
        order = np.lexsort((node, g))
        new = np.ones(n, dtype=bool)
        new[1:] = (node[order][1:] != node[order][:-1]) | (g[order][1:] != g[order][:-1])
        uid = np.empty(n, dtype=np.int64)
        uid[order] = np.cumsum(new) - 1
        child.append(uid)
        node_size.append(np.bincount(uid))
        nodes[t] = np.bincount(g[order][new], minlength=n_groups)
    # The random stream: group by group, level by level, the nodes' phases then the sites' tie breakers.
    per_level = nodes + members[None, :]
    group_start = np.r_[0, np.cumsum(per_level.sum(axis=0))[:-1]]
    level_start = group_start + np.cumsum(per_level, axis=0) - per_level
    stream = rng.random(int(per_level.sum()))
    rank = np.zeros(n, dtype=np.int64)
    for t, level in enumerate(levels):
        uid = child[t]  # a group's nodes are numbered consecutively, from its first
        first_uid = np.cumsum(nodes[t]) - nodes[t]
        node_group = np.empty(node_size[t].size, dtype=np.int64)
        node_group[uid] = g
        phase = stream[level_start[t][node_group] + np.arange(node_group.size) - first_uid[node_group]]
        tie = stream[level_start[t][g] + nodes[t][g] + position]
        key = (rank + phase[uid]) / node_size[t][uid]
        parent = _h3.parent(c, level - 1) if level > 0 else np.zeros(n, dtype=np.uint64)
        order = np.lexsort((tie, key, parent, g))
        sorted_parent, sorted_g = parent[order], g[order]
        starts = np.r_[
            0, np.flatnonzero((sorted_parent[1:] != sorted_parent[:-1]) | (sorted_g[1:] != sorted_g[:-1])) + 1
        ]
        first = np.repeat(starts, np.diff(np.r_[starts, n]))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - first
    out[rows] = rank + 1  # at the root every site of a group is in one node: the rank is its place in the order
    return out


@dataclasses.dataclass(frozen=True)
class ReserveDraw:
    """The reserve sites of a plan and how many each stratum wanted."""

    sites: pd.DataFrame
    """One row per reserve site, with the columns of the plan's site table and ``reserve_rank``."""
    wanted: pd.Series
    """Reserve sites wanted per stratum (by the rule)."""
    per_site: float

    def report(self, planned: pd.Series) -> dict[str, Any]:
        """The ``reserves`` section of ``balance.json``; ``planned`` counts the plan's sites per stratum."""
        drawn = self.sites.groupby("stratum").size() if len(self.sites) else pd.Series(dtype=np.int64)
        names = sorted(set(planned.index) | set(self.wanted.index))
        strata = {
            str(s): {"planned": int(planned.get(s, 0)), "wanted": int(self.wanted.get(s, 0)),
                     "reserves": int(drawn.get(s, 0))}
            for s in names
        }  # fmt: skip
        short = [s for s, v in strata.items() if v["reserves"] < v["wanted"]]
        return {
            "per_planned_site": self.per_site,
            "rule": RULE,
            "order": ORDER,
            "sites": int(len(self.sites)),
            "wanted": int(self.wanted.sum()),
            "strata_short": len(short),
            "strata": strata,
        }


def add_to_report(report: dict[str, Any], reserve: dict[str, Any]) -> None:
    """Put the reserve section into a balance report: ``reserves``, and ``reserves`` in each stratum's row."""
    report["reserves"] = reserve
    for row in report.get("strata", []):
        row["reserves"] = reserve["strata"].get(row["stratum"], {}).get("reserves", 0)


def warn_short(draw: ReserveDraw) -> None:
    """Warn when some strata hold fewer reserves than the rule asks for."""
    drawn = draw.sites.groupby("stratum").size() if len(draw.sites) else pd.Series(dtype=np.int64)
    short = draw.wanted[draw.wanted > drawn.reindex(draw.wanted.index, fill_value=0)]
    if len(short):
        missing = int((short - drawn.reindex(short.index, fill_value=0)).sum())
        warnings.warn(
            f"{len(short)} strata hold fewer reserve sites than --reserve {draw.per_site:g} asks for ({missing} short: "
            "their area is used up under the spacing rules); failed samples there may go unreplaced "
            "(see 'reserves' in report/balance.json)",
            CapacityWarning,
            stacklevel=4,
        )


# ------------------------------------------------------------------------------------------ ordinary plans


def plan_reserves(
    *,
    per_site: float,
    sites: pd.DataFrame,
    stratum_ids: dict[str, int],
    draw: Any,
    used: tuple[np.ndarray, ...],
    bins: list[Bin],
    start: Any,
    end: Any,
    window_days: int | None,
    keep_season: bool,
    inclusion: Any,
    rng: np.random.Generator,
) -> ReserveDraw:
    """Draw and rank the reserves of an ordinary plan.

    Args:
        per_site: ``--reserve``.
        sites: The plan's site table (``site_id``, ``lon``, ``lat``, ``stratum``, dimensions, ``time_bin``,
            ``season`` (seasonal bins), windows, ``inclusion_prob``), one row per site.
        stratum_ids: Stratum name → the sampler's stratum id.
        draw: ``draw(targets, used)``: the plan's sampler (same atlas, spacing rules and spacing index).
        used: The plan's sites (cells, stratum ids, and their centres' lon, lat when known): they count
            against the spacing rules.
        bins: The plan's time bins.
        start: The plan's first day.
        end: The plan's last day.
        window_days: The plan's window length (``None``: the whole bin).
        keep_season: Keep the ``season`` column (seasonal bins).
        inclusion: ``inclusion(cells, strata)``: the plan's inclusion probability of sites at ``cells`` when
            ``strata`` lists every site of each stratum.
        rng: Random generator of the reserves (the plan's draws do not depend on it).
    """
    n_strata = max(stratum_ids.values(), default=-1) + 1
    names = np.empty(n_strata, dtype=object)
    for name, sid in stratum_ids.items():
        names[sid] = name
    if per_site <= 0 or sites.empty:
        return ReserveDraw(_empty_like(sites), pd.Series(dtype=np.int64), per_site)
    bin_of = _bin_index(sites, bins)
    planned = pd.DataFrame({"stratum": sites["stratum"].to_numpy(), "bin": bin_of}).groupby(["stratum", "bin"]).size()
    wanted_cell = pd.Series(reserve_count(planned.to_numpy(), per_site), index=planned.index)
    wanted = wanted_cell.groupby(level=0).sum()
    targets = np.zeros(n_strata, dtype=np.int64)
    for name, count in wanted.items():
        targets[stratum_ids[name]] = count
    result = draw(targets, used)
    cells = result.cells[used[0].size :]
    strata = result.stratum[used[0].size :]
    order = np.argsort(cells, kind="stable")
    cells, strata = cells[order], strata[order]
    bin_index = _assign_bins(strata, names, wanted_cell, rng)
    if result.lon is not None and result.lat is not None:  # the centres the draw measured
        lon, lat = result.lon[used[0].size :][order], result.lat[used[0].size :][order]
    else:
        lon, lat = _h3.centres(cells)
    table = pd.DataFrame({"site_id": _h3.to_hex(cells), "lon": lon, "lat": lat})
    table["stratum"] = names[strata]
    dims = [c for c in sites.columns[sites.columns.get_loc("stratum") + 1 :] if c not in _NOT_DIMENSIONS]
    values = sites.drop_duplicates("stratum").set_index("stratum")
    for d in dims:
        table[d] = values[d].reindex(table["stratum"]).to_numpy()
    table = pd.concat([table, bin_windows(bin_index, lat, bins, start, end, window_days, rng)], axis=1)
    if not keep_season:
        table = table.drop(columns="season")
    # The design weight of a plan site of the stratum at this cell: n_h·a/A_h with the plan's n_h.
    plan_strata = used[1]
    table["inclusion_prob"] = inclusion(np.concatenate([used[0], cells]), np.concatenate([plan_strata, strata]))[
        used[0].size :
    ] * _share_planned(plan_strata, strata, n_strata)
    table[RANK_COLUMN] = rank_within(table[["stratum", "time_bin"]], cells, rng)
    return ReserveDraw(table, wanted, per_site)


_NOT_DIMENSIONS = ("time_bin", "season", "start_datetime", "end_datetime", "inclusion_prob")


def _share_planned(plan_strata: np.ndarray, strata: np.ndarray, n_strata: int) -> np.ndarray:
    """``n_h / (n_h + r_h)`` per reserve site: turns the probability of all sites of a stratum into the plan's."""
    planned = np.bincount(plan_strata, minlength=n_strata)
    reserve = np.bincount(strata, minlength=n_strata)
    return planned[strata] / np.maximum(planned[strata] + reserve[strata], 1)


def _empty_like(sites: pd.DataFrame) -> pd.DataFrame:
    return sites.iloc[:0].assign(**{RANK_COLUMN: np.zeros(0, dtype=np.int64)})


def _bin_index(sites: pd.DataFrame, bins: list[Bin]) -> np.ndarray:
    """Each plan site's time bin as a position in ``bins`` (its label and hemisphere name one bin)."""
    lookup = {(b.span(north)[2], north): k for k, b in enumerate(bins) for north in (True, False)}
    north = sites["lat"].to_numpy() >= 0
    label, labels = pd.factorize(sites["time_bin"].astype(str))
    pair = 2 * label + north  # each (label, hemisphere) pair looked up once
    present = np.unique(pair)
    index = np.zeros(2 * len(labels), dtype=np.int64)
    index[present] = [lookup[(str(labels[p // 2]), bool(p % 2))] for p in present.tolist()]
    return index[pair]


def _assign_bins(strata: np.ndarray, names: np.ndarray, wanted: pd.Series, rng: np.random.Generator) -> np.ndarray:
    """A time bin for each drawn reserve site: its stratum's wanted bins, in proportion when fewer were drawn."""
    out = np.zeros(strata.size, dtype=np.int64)
    for sid in np.unique(strata).tolist():
        idx = np.flatnonzero(strata == sid)
        per_bin = wanted.loc[names[sid]]
        slots, keys = [], []
        for k, count in per_bin.items():
            phase = rng.random()
            slots += [int(k)] * int(count)
            keys += [(j + phase) / count for j in range(int(count))]
        # Slots in a proportional order, so that a stratum short of reserves keeps its bins balanced.
        chosen = np.asarray(slots, dtype=np.int64)[np.argsort(keys, kind="stable")][: idx.size]
        out[rng.permutation(idx)] = chosen
    return out


# ------------------------------------------------------------------------------------------ event plans


def event_reserves(
    candidates: pd.DataFrame, columns: list[str], per_site: float, rng: np.random.Generator
) -> ReserveDraw:
    """Reserve sites of an event plan: unused candidates of each event and stratum, ``reserve_count`` of them.

    The candidates were thinned by the plan's spacing rules within their event, as the plan's sites were,
    so reserves keep the plan's distances to its sites and to each other. They are taken in spread order
    (the first ``r`` of the unused candidates), ranked within their event and stratum.

    Args:
        candidates: Every candidate site: the plan's site ``columns``, ``_event``, ``_cell`` and ``_chosen``
            (a plan site), with the plan sites' ``inclusion_prob``.
        columns: The site table's columns.
        per_site: ``--reserve``.
        rng: Random generator of the reserves.
    """
    empty = candidates.iloc[:0][columns].assign(**{RANK_COLUMN: np.zeros(0, dtype=np.int64)})
    if per_site <= 0 or candidates.empty:
        return ReserveDraw(empty, pd.Series(dtype=np.int64), per_site)
    chosen = candidates[candidates["_chosen"]]
    pool = candidates[~candidates["_chosen"]]
    planned = chosen.groupby(["_event", "stratum"]).size()
    prob = chosen.groupby(["_event", "stratum"])["inclusion_prob"].first()
    wanted_group = pd.Series(reserve_count(planned.to_numpy(), per_site), index=planned.index)
    parts = []
    for (event, stratum), want in wanted_group.items():
        mine = pool[(pool["_event"] == event) & (pool["stratum"] == stratum)]
        if want <= 0 or mine.empty:
            continue
        order = spread_order(mine["_cell"].to_numpy(dtype=np.uint64), rng)[:want]
        picked = mine.iloc[order].copy()
        # The design weight of the event's plan sites in this stratum (n_{e,h}/N_{e,h}), which a substitute takes.
        picked["inclusion_prob"] = prob.loc[(event, stratum)]
        picked[RANK_COLUMN] = np.arange(1, len(picked) + 1)
        parts.append(picked)
    wanted = wanted_group.groupby(level=1).sum()
    if not parts:
        return ReserveDraw(empty, wanted, per_site)
    sites = pd.concat(parts, ignore_index=True).sort_values(["stratum", "site_id"], kind="stable")
    return ReserveDraw(sites[[*columns, RANK_COLUMN]].reset_index(drop=True), wanted, per_site)


def check_ids(plan_ids: pd.Series, reserve_ids: pd.Series) -> None:
    """Reserve sample ids never equal plan ids (distinct cells make distinct ids; this keeps it so)."""
    clash = set(plan_ids.astype(str).to_numpy(dtype=object)) & set(reserve_ids.astype(str).to_numpy(dtype=object))
    if clash:  # pragma: no cover - the sampler never takes a cell twice
        raise RuntimeError(f"reserve ids collide with plan ids, e.g. {sorted(clash)[0]}")
