"""Which asset hrefs a catalogue may make geosample read.

A STAC catalogue is untrusted input: an item whose asset points at
``file:///home/me/secret.tif``, ``/etc/...``, ``../../x.tif`` or a GDAL
virtual path (``/vsicurl/...``, ``/vsizip/...``) would otherwise be read into a
chip. The rule (:class:`HrefPolicy`):

- remote schemes are read: ``http``, ``https``, ``s3``, ``gs``, ``az`` (what
  ``--sign planetary-computer`` signs is https);
- a local path or ``file:`` URL is read only when the source itself is a local
  static catalog or stac-geoparquet file and the path, resolved (``..`` and
  symbolic links followed), lies under that file's folder; relative paths are
  taken relative to that folder, never to the working directory;
- ``--allow-local-assets`` (command line only, never from a config file)
  lifts the folder rule for local paths;
- GDAL virtual paths (``/vsi...``), other schemes and GDAL connection strings
  are always refused.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from geosample._paths import is_inside
from geosample.errors import UnsafeInputError

__all__ = ["REMOTE_SCHEMES", "HrefPolicy"]

REMOTE_SCHEMES = ("http", "https", "s3", "gs", "az")
"""URL schemes read from any catalogue."""
_VSI = "is a GDAL virtual path (/vsi...): never read from a catalogue"


@dataclasses.dataclass(frozen=True)
class HrefPolicy:
    """What a source's asset hrefs may point at (see the module docstring)."""

    source: str
    """The catalogue, as the user gave it (``--stac``), for messages."""
    local_root: Path | None = None
    """The folder of a local static catalog or stac-geoparquet file; None for an API or a remote file."""
    allow_local: bool = False
    """``--allow-local-assets``: read local paths anywhere."""

    @classmethod
    def for_source(cls, stac: str, *, allow_local: bool = False) -> HrefPolicy:
        """The policy of ``--stac`` (a URL, a catalog.json or a folder holding one, or a stac-geoparquet file)."""
        scheme = urlparse(stac).scheme
        local = scheme in ("", "file") or (len(scheme) == 1 and stac[1:3] in (":\\", ":/"))
        root = None
        if local:
            path = Path(unquote(urlparse(stac).path) if stac.startswith("file:") else stac)
            root = Path(os.path.realpath(path if path.is_dir() else path.parent))
        return cls(stac, root, allow_local)

    def check(self, href: str, what: str = "asset") -> str:
        """The href to read (a local path made absolute), or an :class:`UnsafeInputError` saying why not."""
        text = str(href).strip()
        if not text:
            raise self._refuse(href, what, "is empty")
        if text.lower().startswith("/vsi"):
            raise self._refuse(href, what, _VSI)
        if text.startswith("<") or "\n" in text or "\x00" in text:
            raise self._refuse(href, what, "is not a URL or a path")
        parsed = urlparse(text)
        scheme = parsed.scheme.lower()
        if scheme in REMOTE_SCHEMES:
            if not parsed.netloc:
                raise self._refuse(href, what, f"has no host after {scheme}://")
            return text
        if scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise self._refuse(href, what, "is a file: URL on another host")
            return self._local(unquote(parsed.path), href, what)
        if scheme == "" or (len(scheme) == 1 and text[1:3] in (":\\", ":/")):
            return self._local(text, href, what)
        raise self._refuse(href, what, f"uses the scheme {scheme!r}; geosample reads {', '.join(REMOTE_SCHEMES)}")

    def check_hrefs(self, hrefs: Mapping[str, str], item_id: str) -> dict[str, str]:
        """``{asset key: href}`` with each href checked (see :meth:`check`)."""
        return {key: self.check(href, f"asset {key!r} of item {item_id!r}") for key, href in hrefs.items()}

    def check_item(self, item: Any, keys: Any) -> None:
        """Check the hrefs of ``item``'s assets among ``keys`` (a ``pystac.Item``), before anything is read."""
        for key in keys:
            asset = item.assets.get(key)
            if asset is not None:
                self.check(asset.get_absolute_href() or asset.href, f"asset {key!r} of item {item.id!r}")

    def _local(self, path: str, href: str, what: str) -> str:
        if self.local_root is None and not self.allow_local:
            raise self._refuse(href, what, "is a local file, named by a remote catalogue")
        full = Path(path) if os.path.isabs(path) or self.local_root is None else self.local_root / path
        full = Path(os.path.realpath(full))
        if str(full).lower().startswith("/vsi"):
            raise self._refuse(href, what, _VSI)
        if self.allow_local or (self.local_root is not None and is_inside(self.local_root, full)):
            return str(full)
        raise self._refuse(href, what, f"is a local file outside the catalogue's folder {self.local_root}")

    def _refuse(self, href: str, what: str, why: str) -> UnsafeInputError:
        shown = str(href) if len(str(href)) <= 120 else str(href)[:117] + "..."
        hint = (
            "add --allow-local-assets to read local files"
            if "local file" in why
            else "remove the item or use another catalogue"
        )
        return UnsafeInputError(f"{what} at {self.source} has href {shown!r}, which {why}; {hint}")
