"""Loopback fixtures for the fetch tests: generated COGs over HTTP, a rustac STAC API, small plans."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import geopandas as gpd
import pytest
from stac.servers import FileServer, rustac_serve

DATA = Path(__file__).parents[1] / "data" / "stac"
ANDROS = [(-77.85, 24.55), (-78.05, 24.75), (-77.75, 24.25)]  # zones 18N, 17N (reprojected), 18N
"""Chip centres on Andros (Bahamas), inside the real Landsat 7 scene."""


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stac_fixture_generate", DATA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_gen = _load_generator()


@pytest.fixture(scope="session")
def gen() -> ModuleType:
    """tests/data/stac/generate.py, the seeded fixture generator."""
    return _gen


@pytest.fixture(scope="session")
def files_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stac-files")


@pytest.fixture(scope="session")
def file_server(files_root: Path) -> Iterator[FileServer]:
    server = FileServer(files_root).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def small_plan(_small_plan: Path) -> gpd.GeoDataFrame:
    return gpd.read_parquet(_small_plan / "plan.parquet")


@pytest.fixture(scope="session")
def s2(files_root: Path, small_plan: gpd.GeoDataFrame) -> dict[str, Any]:
    """Earth Search-shaped Sentinel-2 scenes for the 24-sample plan (see generate.SCENARIOS)."""
    return _gen.s2_fixture(files_root, small_plan)


@pytest.fixture(scope="session")
def pc(files_root: Path, small_plan: gpd.GeoDataFrame) -> dict[str, Any]:
    """Planetary Computer-shaped items for the last two samples, with 300 m chips (see pc_plan)."""
    return _gen.pc_fixture(files_root, _pc_samples(small_plan))


def _pc_samples(plan: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    sub = plan.sort_values("sample_id").tail(2).copy()
    sub["chip_size_m"] = 300.0
    return sub


@pytest.fixture(scope="session")
def landsat(files_root: Path) -> dict[str, Any]:
    return _gen.landsat_fixture(files_root)


@pytest.fixture(scope="session")
def all_items(file_server: FileServer, s2: dict, pc: dict, landsat: dict) -> list[dict[str, Any]]:
    return _gen.finalize([*s2["items"], *pc["items"], *landsat["items"]], file_server.url)


@pytest.fixture(scope="session")
def api_files(tmp_path_factory: pytest.TempPathFactory, all_items: list[dict[str, Any]]) -> list[Path]:
    return _gen.write_api_files(tmp_path_factory.mktemp("api"), all_items)


@pytest.fixture(scope="session")
def stac_api(api_files: list[Path]) -> Iterator[str]:
    """A real STAC API (rustac serve, in-memory backend) holding every fixture collection."""
    with rustac_serve(*api_files) as url:
        yield url


@pytest.fixture
def pc_ds(_small_plan: Path, tmp_path: Path) -> Path:
    """A dataset whose plan is the two Planetary Computer fixture samples, 300 m chips."""
    ds = tmp_path / "PC"
    shutil.copytree(_small_plan, ds)
    plan = _pc_samples(gpd.read_parquet(ds / "plan.parquet"))
    from geosample.sampling._geometry import chip_footprints

    plan["geometry"] = chip_footprints(plan["lon"], plan["lat"], plan["epsg"], 300.0)
    plan.to_parquet(ds / "plan.parquet", index=False)
    return ds


@pytest.fixture
def andros_ds(tmp_path: Path) -> Path:
    """A three-sample plan on Andros with 30 km chips, inside the real Landsat scene."""
    ds = tmp_path / "ANDROS"
    _gen.make_plan(ds, ANDROS, 30_000.0, year=2001)
    return ds


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """GDAL retries without long waits (the defaults wait 0.5 s and more between tries)."""
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.05")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "5")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fixture's half-covered chip warns on purpose (test_fetch checks the warning); elsewhere it is noise."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore::geosample.errors.DataQualityWarning"))
