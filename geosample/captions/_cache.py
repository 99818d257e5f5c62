"""A response cache for model backends under ``DS/.cache/captions/``: re-runs cost nothing.

An entry is a small JSON file named by the SHA-256 of what determines the
answer: the image bytes' hash, the facts, the prompt's hash, the model, the
number of captions and the seed. Entries are written under a temporary name
and renamed, so a crash leaves no half entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def cache_key(
    *, image_sha256: str | None, facts: dict[str, Any], prompt_sha256: str, model: str, n: int, seed: int
) -> str:
    """The SHA-256 naming one answer."""
    material = {
        "image_sha256": image_sha256,
        "facts": facts,
        "prompt_sha256": prompt_sha256,
        "model": model,
        "n": n,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class CaptionCache:
    """JSON answers by key in a folder (``None``: no caching)."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored answer, or None (also for an unreadable entry, which is then redone)."""
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store an answer atomically."""
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:8]}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(value, handle, ensure_ascii=False)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
