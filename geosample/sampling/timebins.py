"""Temporal bins and per-sample time windows, balanced within every stratum."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd

from geosample.errors import ConfigError

SEASONS = ("winter", "spring", "summer", "autumn")
# Local season -> months block, per hemisphere: DJF is summer in the south.
_SEASON_MONTHS = {
    True: {"winter": "DJF", "spring": "MAM", "summer": "JJA", "autumn": "SON"},
    False: {"winter": "JJA", "spring": "SON", "summer": "DJF", "autumn": "MAM"},
}
_BLOCK_START_MONTH = {"DJF": 12, "MAM": 3, "JJA": 6, "SON": 9}


@dataclasses.dataclass(frozen=True)
class Bin:
    """One abstract bin: a year, a month, or a (year, local season)."""

    year: int
    month: int | None = None
    season: str | None = None

    def span(self, north: bool) -> tuple[dt.date, dt.date, str]:
        """First day, last day and label of the bin for a hemisphere."""
        if self.season is not None:
            block = _SEASON_MONTHS[north][self.season]
            month = _BLOCK_START_MONTH[block]
            # DJF of year Y runs from December Y-1 to February Y.
            first = dt.date(self.year - 1 if block == "DJF" else self.year, month, 1)
            last = (pd.Timestamp(first) + pd.DateOffset(months=3) - pd.Timedelta(days=1)).date()
            return first, last, f"{self.year}-{block}"
        if self.month is not None:
            first = dt.date(self.year, self.month, 1)
            last = (pd.Timestamp(first) + pd.DateOffset(months=1) - pd.Timedelta(days=1)).date()
            return first, last, f"{self.year}-{self.month:02d}"
        return dt.date(self.year, 1, 1), dt.date(self.year, 12, 31), str(self.year)


def make_bins(start: dt.date, end: dt.date, binning: str, window_days: int | None) -> list[Bin]:
    """Bins of the period long enough for the window in both hemispheres, clipped to the period."""
    years = range(start.year, end.year + 1)
    if binning == "year":
        candidates = [Bin(y) for y in years]
    elif binning == "month":
        candidates = [Bin(y, month=m) for y in years for m in range(1, 13)]
    else:
        candidates = [Bin(y, season=s) for y in years for s in SEASONS]
    need = window_days or 1
    bins = [b for b in candidates if all(_clipped_days(b, north, start, end) >= need for north in (True, False))]
    if not bins:
        longest = max(_clipped_days(b, True, start, end) for b in candidates)
        raise ConfigError(
            f"no {binning} bin between {start} and {end} holds a {need}-day window (the longest holds {longest} days); "
            "widen --start/--end, use coarser --time-bins or shorten --window-days"
        )
    return bins


def _clipped_days(b: Bin, north: bool, start: dt.date, end: dt.date) -> int:
    first, last, _ = b.span(north)
    return max(0, (min(last, end) - max(first, start)).days + 1)


def assign_windows(
    strata: np.ndarray,
    lat: np.ndarray,
    bins: list[Bin],
    start: dt.date,
    end: dt.date,
    window_days: int | None,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """A time bin and window for each site, balanced (±1) within every stratum.

    Sites of a stratum take bins in turn after a random shuffle; the turn
    carries on from one stratum to the next, so bin totals are balanced too.
    Returns columns ``time_bin``, ``season`` (local season or None),
    ``start_datetime`` and ``end_datetime`` (UTC, end inclusive).
    """
    n = strata.size
    order = np.lexsort((rng.permutation(n), strata))
    bin_index = np.empty(n, dtype=np.int64)
    bin_index[order] = np.arange(n) % len(bins)
    return bin_windows(bin_index, lat, bins, start, end, window_days, rng)


def bin_windows(
    bin_index: np.ndarray,
    lat: np.ndarray,
    bins: list[Bin],
    start: dt.date,
    end: dt.date,
    window_days: int | None,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """The label and window of each site in its given bin (``bins[bin_index]``), as :func:`assign_windows` returns."""
    n = bin_index.size
    north = lat >= 0
    starts = np.empty(n, dtype="datetime64[D]")
    ends = np.empty(n, dtype="datetime64[D]")
    labels = np.empty(n, dtype=object)
    for k, b in enumerate(bins):
        for hemisphere in (True, False):
            sel = np.flatnonzero((bin_index == k) & (north == hemisphere))
            if sel.size == 0:
                continue
            first, last, label = b.span(hemisphere)
            first, last = max(first, start), min(last, end)
            labels[sel] = label
            if window_days is None:
                starts[sel], ends[sel] = np.datetime64(first), np.datetime64(last)
            else:
                slack = (last - first).days + 1 - window_days
                offset = rng.integers(0, slack + 1, size=sel.size)
                starts[sel] = np.datetime64(first) + offset.astype("timedelta64[D]")
                ends[sel] = starts[sel] + np.timedelta64(window_days - 1, "D")
    seasons = np.array([b.season for b in bins], dtype=object)[bin_index]
    day_end = np.timedelta64(86_399, "s")
    return pd.DataFrame(
        {
            "time_bin": labels,
            "season": seasons,
            "start_datetime": pd.to_datetime(starts.astype("datetime64[s]"), utc=True),
            "end_datetime": pd.to_datetime(ends.astype("datetime64[s]") + day_end, utc=True),
        }
    )


def revisit_offset(step: str, interval: int, index: int) -> pd.DateOffset:
    """The shift of the ``index``-th revisit window from the first."""
    return pd.DateOffset(years=interval * index) if step == "years" else pd.DateOffset(months=interval * index)


def revisit_bins(
    bins: list[Bin], start: dt.date, end: dt.date, window_days: int | None, revisits: int, step: str, interval: int
) -> list[Bin]:
    """The bins whose series of ``revisits`` windows fits before ``end``, after checking the windows cannot overlap.

    Raises:
        ConfigError: If the windows would overlap, or no series fits in the period.
    """
    if revisits <= 1:
        return bins
    step_offset = revisit_offset(step, interval, 1)
    for b in bins:
        for north in (True, False):
            first, last, _ = b.span(north)
            first, last = max(first, start), min(last, end)
            length = window_days or (last - first).days + 1
            step_days = ((pd.Timestamp(first) + step_offset).date() - first).days
            if length > step_days:
                raise ConfigError(
                    f"revisit windows of {length} days would overlap with --revisit-interval {interval} {step}; "
                    "use a shorter --window-days, finer --time-bins or a longer interval"
                )
    last = revisit_offset(step, interval, revisits - 1)
    fitting = [
        b for b in bins if all((pd.Timestamp(min(b.span(n)[1], end)) + last).date() <= end for n in (True, False))
    ]
    if not fitting:
        first_end = min(min(b.span(n)[1], end) for b in bins for n in (True, False))
        needed = (pd.Timestamp(first_end) + last).date()
        raise ConfigError(
            f"--revisits {revisits} every {interval} {step.rstrip('s')}(s) runs past --end {end} "
            f"(the earliest series ends on {needed}); move --end later or ask for fewer revisits"
        )
    return fitting


def bin_label(day: pd.Timestamp, binning: str) -> str:
    """The label of the bin a day falls in (``2021``, ``2021-07``, ``2021-DJF`` with December in next year's DJF)."""
    if binning == "year":
        return str(day.year)
    if binning == "month":
        return f"{day.year}-{day.month:02d}"
    block = {12: "DJF", 1: "DJF", 2: "DJF", 3: "MAM", 4: "MAM", 5: "MAM", 6: "JJA", 7: "JJA", 8: "JJA"}.get(
        day.month, "SON"
    )
    return f"{day.year + (day.month == 12)}-{block}"


def local_season(block: str, north: bool) -> str:
    """The local season name of a months block (``DJF`` is winter in the north, summer in the south)."""
    return next(season for season, b in _SEASON_MONTHS[north].items() if b == block)


def bin_of(day: pd.Timestamp, binning: str, north: bool) -> Bin:
    """The bin a day falls in (for seasons, by the hemisphere's local season)."""
    if binning == "year":
        return Bin(day.year)
    if binning == "month":
        return Bin(day.year, month=day.month)
    label = bin_label(day, "season")
    return Bin(int(label[:4]), season=local_season(label[-3:], north))
