"""Where items come from: a STAC API, a static catalog, or a stac-geoparquet file.

:func:`open_source` normalises ``--stac`` once, at the edge, into a
:class:`StacSource`. An API is searched through pystac-client, whose
``StacApiIO`` retries throttling (429), server errors (5xx), timeouts and
dropped connections with exponential backoff (a urllib3 ``Retry``, honouring
``Retry-After``). A static catalog or a stac-geoparquet file is read once
and searched in memory with the same semantics.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pystac
import shapely
from urllib3 import Retry

from geosample.errors import SourceError, StacError

__all__ = ["ApiSource", "LocalSource", "StacSource", "open_source"]

RETRY_STATUS = (408, 429, 500, 502, 503, 504)
PAGE_SIZE = 200


class StacSource(Protocol):
    """A searchable source of STAC items."""

    url: str
    """What the user gave as ``--stac``."""
    searches: int
    """Searches issued so far (an API answers each with one or more pages)."""

    def collection_ids(self) -> list[str]:
        """Ids of the collections the source holds."""
        ...

    def collection_info(self, collection: str) -> dict[str, Any]:
        """The collection's JSON (for ``item_assets``), or an empty dict."""
        ...

    def search(
        self, collection: str, geometry: dict[str, Any], start: dt.datetime, end: dt.datetime
    ) -> list[pystac.Item]:
        """Items of ``collection`` intersecting ``geometry`` (GeoJSON, lon/lat) with a datetime in [start, end]."""
        ...

    def item_href(self, item: pystac.Item) -> str | None:
        """Where the item can be fetched (its ``self`` link), for provenance links."""
        ...


def _retry(retries: int) -> Retry:
    # Searches are read-only, so POST is retried too (urllib3 leaves POST out by default).
    return Retry(
        total=retries, connect=retries, read=retries, status=retries, backoff_factor=0.5, backoff_max=30,
        status_forcelist=RETRY_STATUS, allowed_methods=None, respect_retry_after_header=True, raise_on_status=False,
    )  # fmt: skip


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if len(text) <= 240 else text[:237] + "..."


def _is_local(stac: str) -> bool:
    scheme = urlparse(stac).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and stac[1:3] in (":\\", ":/"))


def open_source(stac: str, *, retries: int = 5, timeout: float = 60.0, page_size: int = PAGE_SIZE) -> StacSource:
    """Open ``--stac``: an API root URL, a ``catalog.json`` (path or URL) or a stac-geoparquet file.

    Raises:
        StacError: If it cannot be reached or read, or is not STAC; the message says what to give instead.
    """
    what = "give the root URL of a STAC API, a static catalog.json, or a stac-geoparquet file"
    if _is_local(stac):
        path = Path(urlparse(stac).path if stac.startswith("file:") else stac)
        if not path.exists():
            raise StacError(f"--stac {stac}: no such file or folder; {what}")
        if path.is_dir():
            path = path / "catalog.json"
            if not path.exists():
                raise StacError(f"--stac {stac} is a folder without catalog.json; {what}")
        if path.suffix.lower() in (".parquet", ".geoparquet"):
            return LocalSource.from_geoparquet(stac, path)
        return LocalSource.from_json(stac, path)
    if urlparse(stac).path.lower().endswith((".parquet", ".geoparquet")):
        return LocalSource.from_geoparquet(stac, stac)
    return _open_api(stac, retries=retries, timeout=timeout, page_size=page_size, what=what)


def _open_api(stac: str, *, retries: int, timeout: float, page_size: int, what: str) -> StacSource:
    import requests
    from pystac_client import Client, ConformanceClasses
    from pystac_client.exceptions import APIError

    from geosample._http import DeadlineAdapter, stac_api_io

    # Every request has a total deadline (a dripping server is cut) and cut-off answers are retried like
    # searches; only connecting to the root fails fast (a wrong URL should not take a minute to report).
    io = stac_api_io(retries=retries, deadline=timeout, max_retries=_retry(retries).new(connect=min(retries, 2)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client = Client.open(stac, stac_io=io)
    except (APIError, requests.RequestException) as exc:
        status = getattr(exc, "status_code", None)
        if status is not None:
            raise StacError(f"--stac {stac} answered HTTP {status}; {what}") from None
        raise StacError(f"cannot reach --stac {stac} ({_one_line(exc)}); check the URL and the network") from None
    except Exception as exc:  # noqa: BLE001 - JSON, pystac and type errors all mean "not STAC"
        raise StacError(f"--stac {stac} is not STAC ({exc.__class__.__name__}: {_one_line(exc)}); {what}") from None
    adapter = DeadlineAdapter(timeout, read_retries=retries, max_retries=_retry(retries), pool_maxsize=16)
    io.session.mount("http://", adapter)
    io.session.mount("https://", adapter)
    if client.conforms_to(ConformanceClasses.ITEM_SEARCH):
        return ApiSource(stac, client, page_size)
    try:
        items = [item.to_dict(transform_hrefs=False) for item in client.get_items(recursive=True)]
        collections = {c.id: c.to_dict(transform_hrefs=False) for c in client.get_collections()}
    except Exception as exc:  # noqa: BLE001
        raise StacError(f"cannot read the static catalog {stac} ({_one_line(exc)}); {what}") from None
    return LocalSource(stac, items, collections)


class ApiSource:
    """A STAC API searched with pystac-client (POST /search, paging through ``next`` links)."""

    def __init__(self, url: str, client: Any, page_size: int = PAGE_SIZE) -> None:
        self.url = url
        self.client = client
        self.page_size = page_size
        self.searches = 0
        self._lock = threading.Lock()
        self._collections: dict[str, dict[str, Any]] | None = None

    def _load_collections(self) -> dict[str, dict[str, Any]]:
        if self._collections is None:
            try:
                self._collections = {c.id: c.to_dict(transform_hrefs=False) for c in self.client.get_collections()}
            except Exception as exc:  # noqa: BLE001
                raise StacError(f"cannot list the collections of {self.url} ({_one_line(exc)})") from None
        return self._collections

    def collection_ids(self) -> list[str]:  # noqa: D102
        return sorted(self._load_collections())

    def collection_info(self, collection: str) -> dict[str, Any]:  # noqa: D102
        return self._load_collections().get(collection, {})

    def search(  # noqa: D102
        self, collection: str, geometry: dict[str, Any], start: dt.datetime, end: dt.datetime
    ) -> list[pystac.Item]:
        with self._lock:
            self.searches += 1
        bbox = _bbox_if_box(geometry)
        try:
            search = self.client.search(
                collections=[collection], bbox=bbox, intersects=None if bbox else geometry,
                datetime=[_iso(start), _iso(end)], limit=self.page_size,
            )  # fmt: skip
            return list(search.items())
        except Exception as exc:  # noqa: BLE001 - after the retries, any failure fails this search only
            raise StacError(f"search of {collection!r} at {self.url} failed: {_one_line(exc)}") from None

    def item_href(self, item: pystac.Item) -> str | None:  # noqa: D102
        link = item.get_single_link("self")
        if link is not None:
            return str(link.href)
        return f"{self.url.rstrip('/')}/collections/{item.collection_id}/items/{item.id}"


def _iso(value: dt.datetime) -> str:
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _bbox_if_box(geometry: dict[str, Any]) -> list[float] | None:
    """The bbox of a GeoJSON polygon that is an axis-aligned box (searched as ``bbox``, which every API supports)."""
    shape = shapely.geometry.shape(geometry)
    if shape.geom_type == "Polygon" and shapely.equals(shape, shapely.envelope(shape)):
        return list(shape.bounds)
    return None


class LocalSource:
    """Items held in memory (from a static catalog or stac-geoparquet), searched like an API."""

    def __init__(self, url: str, items: Sequence[dict[str, Any]], collections: dict[str, dict[str, Any]]) -> None:
        self.url = url
        self.searches = 0
        self._dicts = list(items)
        self._items: dict[int, pystac.Item] = {}
        self._lock = threading.Lock()
        self._collections = collections
        ids = np.array([d.get("collection") or "" for d in self._dicts], dtype=object)
        self._coll = ids
        for cid in set(ids.tolist()) - set(collections) - {""}:
            self._collections[cid] = {"id": cid}
        geoms = [shapely.geometry.shape(d["geometry"]) if d.get("geometry") else None for d in self._dicts]
        self._geoms = np.array(geoms, dtype=object)
        self._tree = shapely.STRtree(self._geoms)
        spans = [_time_range(d.get("properties", {})) for d in self._dicts]
        self._start = pd.to_datetime(pd.Series([s[0] for s in spans], dtype=object), utc=True, format="ISO8601")
        self._end = pd.to_datetime(pd.Series([s[1] for s in spans], dtype=object), utc=True, format="ISO8601")

    @classmethod
    def from_json(cls, url: str, path: Path) -> LocalSource:
        """A static catalog, collection, or FeatureCollection of items."""
        what = "give a static catalog.json, a collection.json, an item collection, or a stac-geoparquet file"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StacError(f"--stac {url} is not JSON ({exc.__class__.__name__}); {what}") from None
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "FeatureCollection":
            items = [_absolute_assets(f, path) for f in data.get("features", [])]
            return cls(url, items, {})
        if kind not in ("Catalog", "Collection"):
            raise StacError(f"--stac {url} is not a STAC catalog or item collection (type {kind!r}); {what}")
        try:
            root = pystac.read_file(str(path))
            if not isinstance(root, pystac.Catalog):
                raise StacError(f"--stac {url} is not a STAC catalog ({type(root).__name__}); {what}")
            items = []
            for item in root.get_items(recursive=True):
                item.make_asset_hrefs_absolute()
                items.append(item.to_dict(transform_hrefs=False))
            collections = {c.id: c.to_dict(transform_hrefs=False) for c in root.get_all_collections()}
            if isinstance(root, pystac.Collection):
                collections[root.id] = root.to_dict(transform_hrefs=False)
        except StacError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken link or a bad item makes the catalog unusable
            raise StacError(f"cannot read the catalog {url} ({_one_line(exc)}); {what}") from None
        return cls(url, items, collections)

    @classmethod
    def from_geoparquet(cls, url: str, path: Path | str) -> LocalSource:
        """A stac-geoparquet file, read with rustac."""
        try:
            import rustac
        except ImportError:
            raise StacError("reading stac-geoparquet needs the rustac package: pip install rustac") from None
        try:
            data = rustac.read_sync(str(path))
        except Exception as exc:  # noqa: BLE001
            raise StacError(f"cannot read --stac {url} as stac-geoparquet ({_one_line(exc)})") from None
        return cls(url, [json.loads(json.dumps(f, default=list)) for f in data.get("features", [])], {})

    def collection_ids(self) -> list[str]:  # noqa: D102
        return sorted(self._collections)

    def collection_info(self, collection: str) -> dict[str, Any]:  # noqa: D102
        return self._collections.get(collection, {})

    def search(  # noqa: D102
        self, collection: str, geometry: dict[str, Any], start: dt.datetime, end: dt.datetime
    ) -> list[pystac.Item]:
        with self._lock:
            self.searches += 1
        query = shapely.geometry.shape(geometry)
        hits = self._tree.query(query, predicate="intersects")
        keep = hits[
            (self._coll[hits] == collection)
            & (self._start.iloc[hits] <= pd.Timestamp(end)).to_numpy()
            & (self._end.iloc[hits] >= pd.Timestamp(start)).to_numpy()
        ]
        return [self._item(int(i)) for i in np.sort(keep)]

    def _item(self, i: int) -> pystac.Item:
        with self._lock:
            item = self._items.get(i)
            if item is None:
                item = self._items[i] = pystac.Item.from_dict(self._dicts[i], preserve_dict=True)
            return item

    def item_href(self, item: pystac.Item) -> str | None:  # noqa: D102
        link = item.get_single_link("self")
        return str(link.href) if link is not None else None


def _time_range(properties: dict[str, Any]) -> tuple[str | None, str | None]:
    when = properties.get("datetime")
    return properties.get("start_datetime") or when, properties.get("end_datetime") or when


def _absolute_assets(feature: dict[str, Any], path: Path) -> dict[str, Any]:
    base = path.resolve().parent
    for asset in feature.get("assets", {}).values():
        href = asset.get("href", "")
        if href and _is_local(href) and not Path(href).is_absolute():
            asset["href"] = str((base / href).resolve())
    return feature


def check_collections(source: StacSource, collections: Sequence[str]) -> None:
    """Raise a SourceError naming the collections that ``source`` lacks, and listing those it has."""
    known = source.collection_ids()
    missing = [c for c in collections if c not in known]
    if missing:
        have = ", ".join(known[:40]) + (f", ... ({len(known)} in all)" if len(known) > 40 else "") if known else "none"
        raise SourceError(
            f"unknown --collection {', '.join(map(repr, missing))} at {source.url}; collections there: {have}"
        )
