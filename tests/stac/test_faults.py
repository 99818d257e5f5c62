"""Faults a long run meets: throttling, server errors and dropped connections, a server that dies,
kill -9, expiring signed URLs, and a search that matches nothing."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from stac.servers import FaultProxy, FileServer, rustac_serve

from geosample.stac import fetch
from geosample.stac.grid import chip_grid
from geosample.stac.reader import DatasetCache, read_onto_grid

COLL = "sentinel-2-l2a"
ASSETS = "red,scl"


@pytest.fixture(scope="module")
def reference(_small_plan: Path, tmp_path_factory: pytest.TempPathFactory, stac_api: str) -> pd.DataFrame:
    """The manifest of a clean run (no faults), to compare against."""
    ds = tmp_path_factory.mktemp("reference") / "DS"
    shutil.copytree(_small_plan, ds)
    return fetch(ds, stac=stac_api, collection=COLL, assets=ASSETS, progress=False)


@contextlib.contextmanager
def api_for(gen: Any, s2: dict, base: str, folder: Path) -> Iterator[str]:
    """A STAC API whose items' assets live under ``base``."""
    with rustac_serve(*gen.write_api_files(folder, gen.finalize(s2["items"], base))) as url:
        yield url


def same_chips(table: pd.DataFrame, reference: pd.DataFrame) -> None:
    cols = ["sample_id", "status", "item_id", "sha256", "path"]
    pd.testing.assert_frame_equal(table[cols], reference[cols])


def test_throttling_errors_and_dropped_connections(
    planned_ds: Path, tmp_path: Path, gen: Any, s2: dict, file_server: FileServer, stac_api: str,
    reference: pd.DataFrame, fast_retries: None,
) -> None:  # fmt: skip
    """Through proxies that answer 429/500 or drop the connection on ~1 request in 4, every chip still arrives."""
    files = FaultProxy(file_server.url, p429=0.1, p500=0.1, pdrop=0.05, seed=1).start()
    try:
        with api_for(gen, s2, files.url, tmp_path / "api") as api:
            proxy = FaultProxy(api, p429=0.15, p500=0.1, pdrop=0.05, seed=2).start()
            try:
                # Six faults in a row on one request (GDAL's or urllib3's retries spent) happen once in
                # 1,400 (API) to 4,100 (files) requests here: the run's own retries absorb them.
                table = fetch(planned_ds, stac=proxy.url, collection=COLL, assets=ASSETS, retries=8, progress=False)
                api_faults = proxy.stats()
            finally:
                proxy.stop()
        file_faults = files.stats()
    finally:
        files.stop()
    same_chips(table, reference)
    assert api_faults["429"] + api_faults["500"] + api_faults.get("drop", 0) >= 2
    assert file_faults["429"] + file_faults["500"] + file_faults.get("drop", 0) >= 10


def test_server_killed_mid_run_then_resumed(
    planned_ds: Path, tmp_path: Path, gen: Any, s2: dict, files_root: Path, reference: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "1")
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.05")
    server = FileServer(files_root).start()
    server.control(delay=0.02)
    try:
        with api_for(gen, s2, server.url, tmp_path / "api") as api:
            journal = planned_ds / ".chips.journal"

            def kill_when_started() -> None:  # after a few chips, whatever the machine's load
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if journal.exists() and journal.read_text().count("\n") >= 3:
                        break
                    time.sleep(0.01)
                server.kill()

            killer = threading.Thread(target=kill_when_started)
            killer.start()
            first = fetch(planned_ds, stac=api, collection=COLL, assets=ASSETS, workers=2, retries=1, progress=False)
            killer.join()
            failed = first[first["status"] == "failed"]
            assert 0 < len(failed) < 22, "the server should die mid-run"
            assert failed["error"].str.contains("127.0.0.1").all()
            assert set(first.loc[first["status"] == "ok", "sha256"]) <= set(reference["sha256"])
            server = FileServer(files_root, port=server.port).start()  # back up, same address
            second = fetch(planned_ds, retry_failed=True, progress=False)
    finally:
        server.stop()
    summary = second.attrs["summary"]
    assert summary["ok"] == len(failed) and summary["no_item"] == 1  # --retry-failed also searches no_item again
    assert summary["skipped"] == 24 - len(failed) - 1
    same_chips(second, reference)


def test_kill_9_keeps_the_manifest_and_the_rerun_completes(
    planned_ds: Path, tmp_path: Path, gen: Any, s2: dict, files_root: Path, reference: pd.DataFrame
) -> None:
    server = FileServer(files_root).start()
    server.control(delay=0.03)
    exe = shutil.which("geosample") or str(Path(sys.executable).parent / "geosample")
    journal = planned_ds / ".chips.journal"
    try:
        with api_for(gen, s2, server.url, tmp_path / "api") as api:
            args = [exe, "fetch", str(planned_ds), "--stac", api, "--collection", COLL, "--assets", ASSETS,
                    "--workers", "2", "--no-progress"]  # fmt: skip
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if journal.exists() and journal.read_text().count("\n") >= 5:
                    break
                time.sleep(0.02)
            assert proc.poll() is None, "the run ended before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            # The manifest is a valid table at once; the journal holds what came after it.
            assert pq.read_table(planned_ds / "chips.parquet").num_rows < 24
            lines = journal.read_text().splitlines()
            assert len(lines) >= 5
            server.control(delay=0.0)
            done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
            assert done.returncode == 0, done.stderr
    finally:
        server.stop()
    table = pd.read_parquet(planned_ds / "chips.parquet")
    assert table["sample_id"].is_unique and len(table) == 24
    same_chips(table.sort_values("sample_id").reset_index(drop=True), reference)
    for row in table[table["status"] == "ok"].itertuples():
        import hashlib

        assert hashlib.sha256((planned_ds / row.path).read_bytes()).hexdigest() == row.sha256
    assert not list((planned_ds / "chips").glob(".*.tmp"))
    items = list((planned_ds / "stac" / COLL).glob("*.json"))
    assert len(items) == 1 + (table["status"] == "ok").sum()  # the collection's catalog and one item per chip


class ExpiringSigner:
    """Appends a SAS-like token (its issue time) to the URL; counts the calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, href: str) -> str:
        with self.lock:
            self.calls += 1
        return f"{href}?token={time.time():.6f}"


def test_signed_urls_are_signed_just_before_each_read(
    planned_ds: Path, tmp_path: Path, gen: Any, s2: dict, files_root: Path, reference: pd.DataFrame
) -> None:
    ttl = 1.0
    server = FileServer(files_root).start()
    server.control(token_ttl=ttl, delay=0.03)
    try:
        with api_for(gen, s2, server.url, tmp_path / "api") as api:
            unsigned = fetch(planned_ds, stac=api, collection=COLL, assets=ASSETS, limit=4, progress=False)
            assert unsigned.loc[unsigned["status"] == "failed", "error"].str.contains("403").sum() == 3
            server.reset()
            server.control(token_ttl=ttl, delay=0.03)
            signer = ExpiringSigner()
            started = time.monotonic()
            signed = fetch(planned_ds, stac=api, collection=COLL, assets=ASSETS, workers=1, progress=False,
                           signer=signer, retry_failed=True)  # fmt: skip
            elapsed = time.monotonic() - started
        hits = server.hits()
    finally:
        server.stop()
    same_chips(signed, reference)
    assert elapsed > 3 * ttl  # longer than a token lives: signing once up front would have failed
    ok = (signed["status"] == "ok").sum()
    assert signer.calls >= 2 * ok  # a fresh signature for every source opened
    assert hits["forbidden"] == 0  # and no request ever carried an expired one
    assert all(age is not None and age <= ttl for _, _, age in hits["log"])


def test_a_stale_signature_is_renewed(files_root: Path, s2: dict, small_plan: Any) -> None:
    """A 403 (token expired) with a signer: sign again and reopen, instead of failing the chip."""
    server = FileServer(files_root).start()
    server.control(token_ttl=5.0)
    calls: list[str] = []

    def signer(href: str) -> str:
        calls.append(href)
        issued = time.time() - (60 if len(calls) == 1 else 0)  # the first token is already stale
        return f"{href}?token={issued:.6f}"

    try:
        sid = next(s for s, r in s2["roles"].items() if r == "plain")
        row = small_plan.set_index("sample_id").loc[sid]
        grid = chip_grid(row.lon, row.lat, int(row.epsg), float(row.chip_size_m), 10.0)
        href = f"{server.url}/{COLL}/{s2['expect'][sid]['cloud'][0]}/red.tif"
        with DatasetCache(signer) as cache:
            data = read_onto_grid([href], grid, cache=cache, retries=2)
        assert len(calls) >= 2 and not data.mask.any()
        assert server.hits()["forbidden"] >= 1
    finally:
        server.stop()


def test_a_search_that_matches_nothing(planned_ds: Path, stac_api: str) -> None:
    table = fetch(planned_ds, stac=stac_api, collection="landsat-7-rgb", progress=False)
    assert (table["status"] == "no_item").all() and len(table) == 24
    assert table["path"].isna().all() and table["error"].isna().all()
    assert table.attrs["summary"]["no_item"] == 24
    assert not list((planned_ds / "chips").glob("*"))
