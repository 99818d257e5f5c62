"""Keeping the planned balance: reserve sites replace failed fetches (``fetch --substitute``).

A loopback archive with holes (rustac serve + the Range file server): items only for part of the AOI,
items cloudy by their metadata (``--max-cloud`` drops them) or by their pixels (``--max-chip-cloud``
rejects the chip), and mostly-nodata ones (``--min-valid``). What the dataset must achieve is computed
here from the archive's own rules (:func:`fate`), never from the code under test.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scenes import api_files, archive_with_holes
from stac.servers import FileServer, rustac_serve
from untrusted import assert_refused, assert_untouched, run_process, tree

from geosample._dataset import read_samples
from geosample.errors import ShortfallWarning
from geosample.stac.substitute import Substitutes

STATUS = {"clear": "ok", "hole": "no_item", "cloudy_meta": "no_item", "cloudy_pixels": "cloudy", "nodata": "nodata"}
"""What fetch must record for each fate of a sample in the archive."""
FETCH = ["--collection", "scenes", "--max-cloud", "50", "--max-chip-cloud", "0.3", "--min-valid", "0.5",
         "--workers", "2", "--no-progress"]  # fmt: skip


def fate(row: Any) -> str:
    """The archive's holes: stratum E has no imagery at all; C none west of 12° E; B's metadata is cloudy for a
    third of its sites; D's pixels are cloudy for a third of its sites and mostly nodata for a sixth."""
    h = int(hashlib.sha256(str(row.site_id).encode()).hexdigest(), 16) % 6
    if row.stratum == "E" or (row.stratum == "C" and row.lon < 12):
        return "hole"
    if row.stratum == "B" and h in (0, 1):
        return "cloudy_meta"
    if row.stratum == "D" and h in (0, 1):
        return "cloudy_pixels"
    if row.stratum == "D" and h == 2:
        return "nodata"
    return "clear"


def expected(plan: pd.DataFrame, reserve: pd.DataFrame) -> pd.DataFrame:
    """Per stratum, from the archive's rules alone: planned sites, those that arrive, the reserves that would."""
    sites_p = plan.drop_duplicates("site_id")
    sites_r = reserve.drop_duplicates("site_id")
    ok_p = sites_p[[fate(r) == "clear" for r in sites_p.itertuples()]].groupby("stratum").size()
    ok_r = sites_r[[fate(r) == "clear" for r in sites_r.itertuples()]].groupby("stratum").size()
    out = pd.DataFrame({"target": sites_p.groupby("stratum").size()})
    out["planned_ok"] = ok_p.reindex(out.index, fill_value=0)
    out["reserves_ok"] = ok_r.reindex(out.index, fill_value=0)
    out["achieved"] = out["planned_ok"] + np.minimum(out["target"] - out["planned_ok"], out["reserves_ok"])
    return out


def achieved_from_files(ds: Path) -> pd.Series:
    """Sites per stratum that the dataset holds, from chips.parquet, the plan and the reserve (not the report)."""
    chips = pd.read_parquet(ds / "chips.parquet")
    plan = gpd.read_parquet(ds / "plan.parquet")
    reserve = gpd.read_parquet(ds / "reserve.parquet")
    ok = set(chips.loc[chips["status"] == "ok", "sample_id"])
    plan_ok = plan[plan["sample_id"].isin(ok)]
    subs = reserve[reserve["sample_id"].isin(set(chips.loc[(chips["status"] == "ok") & chips["replaces"].notna(),
                                                             "sample_id"]))]  # fmt: skip
    return pd.concat([plan_ok, subs]).groupby("stratum")["site_id"].nunique()


@pytest.fixture(scope="module")
def archive(_reserve_plan: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FileServer]]:
    """The plan's and reserve's samples in a loopback STAC API with holes, COGs over HTTP with Range requests."""
    root = tmp_path_factory.mktemp("holes")
    server = FileServer(root / "files").start()
    rows = pd.concat([gpd.read_parquet(_reserve_plan / "plan.parquet"),
                      gpd.read_parquet(_reserve_plan / "reserve.parquet")])  # fmt: skip
    items = archive_with_holes(rows, root / "files" / "scenes", server.url + "/scenes", fate)
    try:
        with rustac_serve(*api_files(root / "api", items)) as url:
            yield url, server
    finally:
        server.stop()


def fetch_cli(ds: Path, url: str, *extra: str) -> tuple[int, str, str]:
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    from geosample.cli import main

    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(["fetch", str(ds), "--stac", url, *FETCH, *extra])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def substituted(_reserve_plan: Path, archive: tuple[str, FileServer], tmp_path_factory: pytest.TempPathFactory):
    """The plan fetched from the archive with holes as a user would: ``geosample fetch`` (substitution on)."""
    ds = tmp_path_factory.mktemp("substituted") / "DS"
    shutil.copytree(_reserve_plan, ds)
    code, out, err = fetch_cli(ds, archive[0])
    assert code == 0, err
    return ds, out, err


def test_the_archive_is_thin_where_the_test_says(_reserve_plan: Path) -> None:
    """The fixture is not vacuous: some strata lose sites and their reserves suffice, one cannot be saved."""
    want = expected(
        gpd.read_parquet(_reserve_plan / "plan.parquet"), gpd.read_parquet(_reserve_plan / "reserve.parquet")
    )
    recovered = want[(want["planned_ok"] < want["target"]) & (want["achieved"] == want["target"])]
    assert len(recovered) >= 2, want
    assert (want["achieved"] < want["target"]).any(), want


def test_without_substitution_the_strata_drift(reserve_ds: Path, archive: tuple[str, FileServer]) -> None:
    code, out, err = fetch_cli(reserve_ds, archive[0], "--no-substitute")
    assert code == 0, err
    want = expected(gpd.read_parquet(reserve_ds / "plan.parquet"), gpd.read_parquet(reserve_ds / "reserve.parquet"))
    got = achieved_from_files(reserve_ds).reindex(want.index, fill_value=0)
    assert (got == want["planned_ok"]).all()  # the plan's own sites only: the failed ones leave holes
    assert (got < want["target"]).sum() >= 3
    chips = pd.read_parquet(reserve_ds / "chips.parquet")
    assert chips["replaces"].isna().all() and len(chips) == 24
    samples = read_samples(reserve_ds)
    assert set(samples["sample_id"]) == set(chips.loc[chips["status"] == "ok", "sample_id"])
    achieved = json.loads((reserve_ds / "report" / "balance.json").read_text())["achieved"]
    assert achieved["substitution"] is False
    assert {r["stratum"]: r["shortfall"] for r in achieved["strata"]} == (want["target"] - want["planned_ok"]).to_dict()
    assert "not replaced: substitution is off" in err


def test_with_substitution_the_strata_reach_their_targets_where_reserves_allow(substituted: tuple) -> None:
    ds, out, err = substituted
    want = expected(gpd.read_parquet(ds / "plan.parquet"), gpd.read_parquet(ds / "reserve.parquet"))
    got = achieved_from_files(ds).reindex(want.index, fill_value=0)
    assert (got == want["achieved"]).all(), pd.DataFrame({"got": got, **want})
    enough = want["reserves_ok"] >= want["target"] - want["planned_ok"]
    assert (got[enough] - want.loc[enough, "target"]).abs().max() <= 1  # the targets, where reserves suffice
    # The report says the same, with the shortfall and its reasons where they did not suffice.
    achieved = json.loads((ds / "report" / "balance.json").read_text())["achieved"]
    assert achieved["substitution"] is True
    rows = {r["stratum"]: r for r in achieved["strata"]}
    for stratum, w in want.iterrows():
        row = rows[stratum]
        assert (row["target"], row["planned_ok"], row["achieved"]) == (w["target"], w["planned_ok"], got[stratum])
        assert row["shortfall"] == w["target"] - got[stratum]
        assert sum(row["reasons"].values()) == w["target"] - w["planned_ok"]
    assert rows["E"]["reasons"] == {"no_item": 6} and rows["E"]["no_reserve_left"] == 6
    cells = pd.DataFrame(achieved["cells"])
    assert (
        cells.groupby("stratum")["substituted"].sum() == pd.Series({s: r["substituted"] for s, r in rows.items()})
    ).all()
    assert f"achieved {int(got.sum())} of 24 planned site(s)" in out
    assert "geosample: warning:" in err and "were not replaced" in err


def test_substitutes_come_from_the_same_stratum_in_rank_order(substituted: tuple) -> None:
    ds, _, _ = substituted
    chips = pd.read_parquet(ds / "chips.parquet")
    plan = gpd.read_parquet(ds / "plan.parquet").set_index("sample_id")
    reserve = gpd.read_parquet(ds / "reserve.parquet").set_index("sample_id")
    used = chips[chips["replaces"].notna()]
    assert set(used["sample_id"]) <= set(reserve.index)  # only reserves carry replaces, each fetched once
    assert used["sample_id"].is_unique
    failed = set(chips.loc[chips["status"] != "ok", "sample_id"]) & set(plan.index)
    assert set(used["replaces"]) <= failed  # a reserve replaces a failed plan sample
    assert (
        reserve.loc[used["sample_id"], "stratum"].to_numpy() == plan.loc[used["replaces"], "stratum"].to_numpy()
    ).all()
    # Within a stratum and bin, reserves are taken in rank order: the used ones are the first ranks.
    for (stratum, time_bin), group in reserve.groupby(["stratum", "time_bin"]):
        taken = sorted(group.loc[group.index.isin(used["sample_id"]), "reserve_rank"])
        assert taken == list(range(1, len(taken) + 1)), (stratum, time_bin, taken)
    # A reserve from another bin only once the failed site's own bin had none left.
    for sample, original in zip(used["sample_id"], used["replaces"], strict=True):
        own = plan.loc[original, ["stratum", "time_bin"]]
        if reserve.loc[sample, "time_bin"] != own["time_bin"]:
            same = reserve[(reserve["stratum"] == own["stratum"]) & (reserve["time_bin"] == own["time_bin"])]
            assert same.index.isin(used["sample_id"]).all()


def test_the_achieved_samples_feed_the_later_stages(substituted: tuple, tmp_path: Path, run_cli) -> None:
    source, _, _ = substituted
    ds = tmp_path / "DS"
    shutil.copytree(source, ds)
    chips = pd.read_parquet(ds / "chips.parquet")
    plan = gpd.read_parquet(ds / "plan.parquet")
    samples = gpd.read_parquet(ds / "samples.parquet")
    ok = set(chips.loc[chips["status"] == "ok", "sample_id"])
    assert set(samples["sample_id"]) == ok and set(samples.columns) == {*plan.columns, "replaces"}
    subs = samples[samples["replaces"].notna()]
    assert dict(zip(subs["sample_id"], subs["replaces"], strict=True)) == dict(
        zip(chips.loc[chips["replaces"].notna() & chips["status"].eq("ok"), "sample_id"],
            chips.loc[chips["replaces"].notna() & chips["status"].eq("ok"), "replaces"], strict=True)
    )  # fmt: skip
    # Inclusion probabilities rescaled to the sites each stratum holds: pi * achieved / planned.
    reserve = gpd.read_parquet(ds / "reserve.parquet")
    base = pd.concat([plan, reserve]).set_index("sample_id")["inclusion_prob"]
    planned = plan.groupby("stratum")["site_id"].nunique()
    held = samples.groupby("stratum")["site_id"].nunique()
    factor = (held / planned).reindex(samples["stratum"]).to_numpy()
    np.testing.assert_allclose(samples["inclusion_prob"], base.loc[samples["sample_id"]].to_numpy() * factor)
    code, _, err = run_cli("label", ds)
    assert code == 0, err
    assert set(pd.read_parquet(ds / "labels.parquet")["sample_id"]) == set(samples["sample_id"])
    code, _, err = run_cli("caption", ds)
    assert code == 0, err
    assert set(pd.read_parquet(ds / "captions.parquet")["sample_id"]) == set(samples["sample_id"])
    code, out, err = run_cli("stats", ds)
    assert code == 0, err
    stats = json.loads((ds / "report" / "stats.json").read_text())
    assert stats["samples"] == len(samples)
    short = {r["stratum"]: r for r in stats["achieved"]["short"]}
    want = expected(plan, reserve)
    assert set(short) == set(want.index[want["achieved"] < want["target"]])
    failed = stats["achieved"]["failed_sites"]
    statuses = chips[chips["status"] != "ok"].drop_duplicates("sample_id")
    assert failed["total"] == len(statuses) and failed["by_reason"] == statuses["status"].value_counts().to_dict()
    assert "E: 0 of 6" in out
    page = (ds / "report" / "index.html").read_text()
    assert 'id="achieved"' in page and "Planned vs achieved" in page and "map of failed sites" in page
    assert (ds / "report" / "achieved_map.png").is_file()
    from validation import assert_valid

    assert_valid(ds)


def test_a_rerun_does_nothing_and_retry_failed_keeps_the_substitutes(
    substituted: tuple, archive: tuple[str, FileServer], tmp_path: Path
) -> None:
    source, _, _ = substituted
    ds = tmp_path / "DS"
    shutil.copytree(source, ds)
    before = pd.read_parquet(ds / "chips.parquet")
    code, out, err = fetch_cli(ds, archive[0])
    assert code == 0, err and "fetch: 0 chip(s)" in out
    code, out, err = fetch_cli(ds, archive[0], "--retry-failed")
    assert code == 0, err
    after = pd.read_parquet(ds / "chips.parquet")
    key = ["sample_id", "collection", "status", "replaces"]
    pd.testing.assert_frame_equal(before[key], after[key])
    assert set(read_samples(ds)["sample_id"]) == set(before.loc[before["status"] == "ok", "sample_id"])


def test_kill_9_during_substitution_then_resume(
    substituted: tuple, archive: tuple[str, FileServer], _reserve_plan: Path, tmp_path: Path
) -> None:
    """Killed right after the first substitute is journaled; the re-run ends where an unbroken run ends."""
    url, server = archive
    ds = tmp_path / "DS"
    shutil.copytree(_reserve_plan, ds)
    kill = (
        "import os, signal\n"
        "from geosample.stac import journal\n"
        "_append = journal.Manifest.append\n"
        "def append(self, rows):\n"
        "    rows = list(rows)\n"
        "    _append(self, rows)\n"
        "    if any(r.get('replaces') for r in rows):\n"
        f"        os.kill(os.getpid(), {9})\n"
        "journal.Manifest.append = append\n"
    )
    killed = run_process(["fetch", ds, "--stac", url, *FETCH], code=kill)
    assert killed.returncode == -9, killed.stderr
    from geosample.stac.journal import Manifest

    mid = Manifest(ds).table()  # what the killed run recorded (the journal replayed)
    recorded = set(mid.loc[mid["replaces"].notna(), "sample_id"])
    assert recorded and not (ds / "samples.parquet").exists()
    server.reset()
    done = run_process(["fetch", ds])  # resume: the recorded settings
    assert done.returncode == 0, done.stderr
    hits = server.hits()["paths"]
    refetched = [p for p in hits if any(f"/{sample}-item" in p for sample in recorded)]
    assert not refetched, refetched  # no reserve fetched twice
    reference = pd.read_parquet(substituted[0] / "chips.parquet")
    final = pd.read_parquet(ds / "chips.parquet")
    key = ["sample_id", "collection", "status", "replaces"]
    pd.testing.assert_frame_equal(final[key], reference[key])  # no substitution lost, none different
    assert set(read_samples(ds)["sample_id"]) == set(read_samples(substituted[0])["sample_id"])


def test_substitute_without_reserves_is_refused_and_writes_nothing(tiny_ds: Path, run_cli) -> None:
    before = tree(tiny_ds.parent)
    code, _, err = run_cli("fetch", tiny_ds, "--stac", "http://127.0.0.1:9/", "--collection", "x", "--substitute")
    assert_refused(code, err, "--substitute", "reserve.parquet", "--reserve")
    assert_untouched(tiny_ds.parent, before)


# ------------------------------------------------------------------------------------------ events


def test_an_event_pair_with_a_failed_phase_is_replaced_whole_or_the_event_is_lost(
    tmp_path: Path, archive: tuple[str, FileServer]
) -> None:
    from geosample import PlanConfig, fetch, plan

    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,type,date,lon,lat\nfire,wildfire,2021-07-15,23.3,38.9\nflood,flood,2021-07-14,7.1,50.53\n"
    )
    ds = tmp_path / "EV"
    plan(ds, config=PlanConfig.from_mapping({"events": str(events), "samples": 4, "chip_size": 640,
                                             "event_radius_m": 8000, "reserve": 1.0}), progress=False)  # fmt: skip
    rows = gpd.read_parquet(ds / "plan.parquet")
    reserve = gpd.read_parquet(ds / "reserve.parquet")
    fire_sites = sorted(rows.loc[rows["event_id"] == "fire", "site_id"].unique())
    broken = fire_sites[0]

    def event_fate(row: Any) -> str:
        if row.event_id == "flood":  # no after image for any flood site: the event is lost
            return "hole" if row.phase == "after" else "clear"
        return "cloudy_pixels" if row.site_id == broken and row.phase == "after" else "clear"

    server = archive[1]
    items = archive_with_holes(pd.concat([rows, reserve]), server.root / "events", server.url + "/events", event_fate)
    with rustac_serve(*api_files(tmp_path / "api", items)) as url, pytest.warns(ShortfallWarning, match="not replaced"):
        table = fetch(ds, stac=url, collection="scenes", max_chip_cloud=0.3, progress=False)
    subs = table[table["replaces"].notna()]
    fire = subs[subs["sample_id"].isin(reserve.loc[reserve["event_id"] == "fire", "sample_id"])]
    ok_fire = fire[fire["status"] == "ok"]
    assert sorted(ok_fire["replaces"]) == sorted(rows.loc[rows["site_id"] == broken, "sample_id"])  # both phases
    phase = reserve.set_index("sample_id")["phase"]
    assert (phase.loc[ok_fire["sample_id"]].to_numpy() == rows.set_index("sample_id")["phase"]
            .loc[ok_fire["replaces"]].to_numpy()).all()  # fmt: skip
    samples = read_samples(ds)
    assert set(samples["site_id"]) & set(fire_sites) == set(fire_sites) - {broken}
    assert not (samples["event_id"] == "flood").any()
    achieved = json.loads((ds / "report" / "balance.json").read_text())["achieved"]
    assert achieved["events"]["lost_entirely"] == ["flood"]
    assert achieved["events"]["per_event"]["fire"]["achieved"] == len(fire_sites)


# ------------------------------------------------------------------------------------------ kill-safety, in memory


def _tables(n_strata: int, per: int, reserves: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A plan and a reserve of sites with two chip sizes each, two year bins."""

    def rows(kind: str, count: int) -> pd.DataFrame:
        out = []
        for s in range(n_strata):
            for i in range(count):
                year = 2021 + i % 2
                for size in (640.0, 1280.0):
                    out.append({"sample_id": f"{kind}{s}-{i}-{size:g}m", "site_id": f"{kind}{s}-{i}",
                                "stratum": f"S{s}", "time_bin": str(year),
                                "start_datetime": pd.Timestamp(f"{year}-01-01", tz="UTC"),
                                "end_datetime": pd.Timestamp(f"{year}-12-31", tz="UTC"), "lon": float(i),
                                "lat": float(s), "chip_size_m": size, "reserve_rank": i // 2 + 1})  # fmt: skip
        return pd.DataFrame(out)

    return rows("p", per).drop(columns="reserve_rank"), rows("r", reserves)


class _Killed(Exception):
    pass


def _outcome(rows: list[dict]) -> dict[str, tuple[str, str | None]]:
    """Per site: ``ok`` or ``failed`` (any failed chip), and the plan site a reserve site replaces."""
    out: dict[str, tuple[str, str | None]] = {}
    for r in rows:
        site = r["sample_id"].rsplit("-", 1)[0]
        replaced = r["replaces"].rsplit("-", 1)[0] if r["replaces"] else None
        status = "ok" if r["status"] == "ok" else "failed"
        before = out.get(site, ("ok", replaced))
        out[site] = ("failed" if "failed" in (before[0], status) else "ok", replaced)
    return out


def _simulate(subs: Substitutes, fates: dict[str, str], rows: list[dict], kill_after: int | None, seed: int) -> list:
    """Fetch as fetch does, recording rows one by one in a shuffled order; raise _Killed after ``kill_after``."""
    rng = np.random.default_rng(seed)
    count = [0]

    def record(new: list[dict]) -> None:
        for i in rng.permutation(len(new)):
            if kill_after is not None and count[0] >= kill_after:
                raise _Killed
            rows.append(new[i])
            count[0] += 1

    frame = lambda: pd.DataFrame(rows, columns=["sample_id", "collection", "status", "replaces"])  # noqa: E731
    have = {r["sample_id"] for r in rows}
    record([{"sample_id": s, "collection": "c", "status": fates[s], "replaces": None}
            for s in subs.plan_rows["sample_id"] if s not in have])  # fmt: skip
    for _ in range(100):
        table = frame()
        step = subs.step(table)
        if not step.fetch:
            break
        done = set(table.loc[table["status"] == "ok", "sample_id"])
        todo = [m for site in step.fetch for m in subs.reserve.members[site] if m not in done]
        record([{"sample_id": s, "collection": "c", "status": fates[s], "replaces": step.replaces[s]} for s in todo])
    return rows


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_substitution_resumes_on_the_same_path_after_a_kill_anywhere(data: st.DataObject) -> None:
    plan, reserve = _tables(n_strata=2, per=4, reserves=5)
    reasons = ["ok", "ok", "no_item", "cloudy", "nodata", "failed"]
    fates = {s: data.draw(st.sampled_from(reasons)) for s in [*plan["sample_id"], *reserve["sample_id"]]}
    subs = Substitutes(plan, reserve, ["c"])
    seed = data.draw(st.integers(0, 1000))
    reference = _simulate(subs, fates, [], None, seed)
    kill = data.draw(st.integers(0, len(reference)))
    rows: list[dict] = []
    try:
        _simulate(subs, fates, rows, kill, seed)
    except _Killed:
        pass
    resumed = _simulate(subs, fates, rows, None, seed + 1)
    assert len({r["sample_id"] for r in resumed}) == len(resumed)  # no sample recorded twice: none fetched twice
    # The same substitutions with the same outcomes, site by site (a resumed run may skip the rest of a reserve
    # site whose first chip already failed, which an unbroken run fetched in the same round).
    assert _outcome(resumed) == _outcome(reference)
    both = {r["sample_id"] for r in resumed} & {r["sample_id"] for r in reference}
    pick = lambda rs: {(r["sample_id"], r["status"], r["replaces"]) for r in rs if r["sample_id"] in both}  # noqa: E731
    assert pick(resumed) == pick(reference)
    # Whatever the fates: a stratum holds min(planned, sites that arrived + reserves that arrived) sites.
    table = pd.DataFrame(resumed)
    samples, report = subs.achieved(table)
    for row in report["strata"]:
        units = lambda frame, s: frame[frame["stratum"] == s].groupby("site_id")["sample_id"].agg(list)  # noqa: E731
        ok = lambda members: all(fates[m] == "ok" for m in members)  # noqa: E731
        planned = units(plan, row["stratum"])
        spare = units(reserve, row["stratum"])
        good = sum(map(ok, planned))
        assert row["achieved"] == good + min(len(planned) - good, sum(map(ok, spare)))
        assert samples[samples["stratum"] == row["stratum"]]["site_id"].nunique() == row["achieved"]
