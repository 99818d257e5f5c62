"""Shared fixtures."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from untrusted import FakeDNS
from validation import assert_valid


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not reach outside the machine: only loopback connections are allowed."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise RuntimeError(f"test tried to reach {address!r}; tests must stay offline")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDNS]:
    """Name resolution the test controls (see tests/untrusted.py, FakeDNS); hung lookups end with the test."""
    fake = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    yield fake
    fake.release()


class DaskCluster:
    """A running LocalCluster: its scheduler's ``address``, and which workers ran the tasks of a call."""

    def __init__(self, address: str) -> None:
        self.address = address

    def tasks_per_worker(self, run: Any) -> tuple[Any, dict[str, int]]:
        """``run()``'s result and, per worker, how many tasks it ran meanwhile (from the scheduler's task stream)."""
        import distributed

        with distributed.Client(self.address, timeout="20s") as client:
            with distributed.get_task_stream(client) as stream:
                result = run()
            counts: dict[str, int] = {}
            for task in stream.data:  # filled as the stream closes
                counts[task["worker"]] = counts.get(task["worker"], 0) + 1
        return result, counts


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[DaskCluster]:
    """A ``distributed.LocalCluster`` of two worker processes (one thread each) on loopback, for the session.

    Tasks run in other processes, so everything they get must pickle, and what they compute there must
    equal the local path's.
    """
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
        silence_logs=40,
    ) as cluster:  # fmt: skip
        yield DaskCluster(cluster.scheduler_address)


@pytest.fixture(scope="session")
def _small_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small real plan (24 sites in central Europe), made once per test session.

    Without reserve sites: the tests built on it check what fetch and the later stages do with the plan's own
    samples (tests/stac/test_substitute.py checks the reserves and the substitution).
    """
    from geosample import PlanConfig, plan

    ds = tmp_path_factory.mktemp("plan") / "DS"
    cfg = PlanConfig.from_mapping({"samples": 24, "aoi": "bbox:5,40,25,55", "seed": 1, "reserve": 0})
    plan(ds, config=cfg, progress=False)
    assert_valid(ds)  # every dataset the session builds passes `geosample validate`
    return ds


RESERVE_PLAN = {"samples": 24, "aoi": "bbox:5,40,25,55", "seed": 1, "strata": "climate", "start": "2021-01-01",
                "end": "2022-12-31", "chip_size": 640, "reserve": 1.0}  # fmt: skip
"""The plan with reserves the tests share: 4 climate strata (B, C, D, E) of 6 sites over two year bins, 640 m
chips, one reserve site per planned site (more where a stratum and bin are small)."""


@pytest.fixture(scope="session")
def _reserve_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:data:`RESERVE_PLAN`, planned once per session."""
    from geosample import PlanConfig, plan

    ds = tmp_path_factory.mktemp("reserve") / "DS"
    plan(ds, config=PlanConfig.from_mapping(RESERVE_PLAN), progress=False)
    assert_valid(ds)
    return ds


@pytest.fixture
def reserve_ds(_reserve_plan: Path, tmp_path: Path) -> Path:
    """A private copy of the planned dataset with reserves."""
    ds = tmp_path / "DS"
    shutil.copytree(_reserve_plan, ds)
    return ds


@pytest.fixture
def planned_ds(_small_plan: Path, tmp_path: Path) -> Path:
    """A private copy of the small planned dataset folder DS, for a test to add stages to."""
    ds = tmp_path / "DS"
    shutil.copytree(_small_plan, ds)
    return ds


@pytest.fixture(scope="session")
def _tiny_plan(_small_plan: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three samples of the small plan, for tests that run a stage many times (bad input, kills, locks)."""
    import geopandas as gpd

    ds = tmp_path_factory.mktemp("tiny") / "DS"
    shutil.copytree(_small_plan, ds)
    plan = gpd.read_parquet(ds / "plan.parquet").sort_values("sample_id").head(3).reset_index(drop=True)
    plan.to_parquet(ds / "plan.parquet", index=False)
    return ds


@pytest.fixture(scope="session")
def _events_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's offline events demo, small: a wildfire and a flood, two sites each, 1,280 m chips of the
    synthetic Sentinel-2-like imagery (data/examples/synthetic_stac.py), fetched with --max-chip-cloud 0.05 and
    labelled from the synthetic land cover (so change.parquet and the change masks exist)."""
    import warnings

    from scenes import synthetic

    from geosample import LabelConfig, PlanConfig, fetch, label, plan

    root = tmp_path_factory.mktemp("events-demo")
    events = root / "events.csv"
    events.write_text(
        "event_id,type,date,lon,lat\nfire,wildfire,2021-07-15,23.3,38.9\nflood,flood,2021-07-14,7.1,50.53\n"
    )
    ds = root / "DS"
    plan(
        ds,
        config=PlanConfig.from_mapping(
            {"events": str(events), "samples": 4, "chip_size": 1280, "event_radius_m": 8000}
        ),
        progress=False,
    )
    catalog = synthetic().build(ds, root / "stac")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fetch(ds, stac=str(catalog), collection="synthetic-s2", max_chip_cloud=0.05, progress=False)
        label(ds, LabelConfig(source="stac:synthetic-landcover", stac=str(catalog), scheme="esa-worldcover"),
              progress=False)  # fmt: skip
    return ds


@pytest.fixture
def tiny_ds(_tiny_plan: Path, tmp_path: Path) -> Path:
    """A private copy of the three-sample dataset folder (tmp_path/DS)."""
    ds = tmp_path / "DS"
    shutil.copytree(_tiny_plan, ds)
    return ds


@pytest.fixture
def events_demo_ds(_events_demo: Path, tmp_path: Path) -> Path:
    """A private copy of the events demo dataset."""
    ds = tmp_path / "EV"
    shutil.copytree(_events_demo, ds)
    return ds


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """Run the real entry point, ``geosample.cli.main``, as a user would: ``(exit code, stdout, stderr)``."""
    from untrusted import run_cli as run_main

    def run(*args: object) -> tuple[int, str, str]:
        return run_main(list(args), capsys)

    return run
