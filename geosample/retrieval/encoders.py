"""Encoders turn a dataset's images, captions and class prompts into embeddings.

An encoder is any object with the :class:`Encoder` methods. Built in:
``precomputed`` (embedding files made elsewhere) and ``open_clip`` (any
open_clip model with local weights). Others come from installed packages
through the ``geosample.encoders`` entry-point group::

    [project.entry-points."geosample.encoders"]
    mymodel = "mypackage.encoders:MyEncoder"

:func:`get_encoder` accepts a registered name, a ``module:Class`` path or an
instance. A class (or factory) with a ``from_config(EvaluateConfig)``
classmethod is built from the evaluate settings; otherwise it is called with
no arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import warnings
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from geosample.errors import ConfigError, PluginError, PluginWarning

if TYPE_CHECKING:
    from geosample.retrieval.config import EvaluateConfig

ENTRY_POINT_GROUP = "geosample.encoders"
IMAGE_KEYS = ("sample_id",)
TEXT_KEYS = ("sample_id", "caption_index")
CLASS_KEYS = ("code",)


@dataclasses.dataclass(frozen=True)
class Embeddings:
    """Vectors with the keys of what they embed (``sample_id``; ``sample_id, caption_index``; or ``code``)."""

    keys: pd.DataFrame
    """One row per vector, in the vectors' order."""
    vectors: np.ndarray
    """(len(keys), d) float32; need not be normalised."""

    def __post_init__(self) -> None:
        """Check that keys and vectors line up."""
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.keys):
            raise PluginError(f"an encoder returned {len(self.keys)} keys for vectors of shape {self.vectors.shape}")


@runtime_checkable
class Encoder(Protocol):
    """What ``geosample evaluate`` needs from a model."""

    name: str
    """Short name recorded in metrics.json."""

    def encode_images(self, ds: Path, samples: pd.DataFrame) -> Embeddings:
        """Embeddings of the samples' images (``samples``: ``sample_id`` plus the chips columns, when fetched)."""
        ...

    def encode_texts(self, captions: pd.DataFrame) -> Embeddings:
        """Embeddings of ``captions`` (``sample_id``, ``caption_index``, ``caption``)."""
        ...

    def encode_prompts(self, prompts: Mapping[str, str]) -> Embeddings | None:
        """Embeddings of zero-shot prompts keyed by class ``code``; None when the encoder cannot embed text."""
        ...


@functools.cache
def installed_encoders() -> dict[str, EntryPoint]:
    """The encoders registered under the ``geosample.encoders`` entry points, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get_encoder(spec: str | Encoder, config: EvaluateConfig | None = None) -> Encoder:
    """An encoder from a registered name, a ``module:Class`` (or ``module.Class``) path, or an instance."""
    if not isinstance(spec, str):
        if isinstance(spec, Encoder):
            return spec
        raise PluginError(f"{spec!r} is not an encoder: it needs encode_images, encode_texts and encode_prompts")
    registered = installed_encoders()
    if spec in registered:
        factory = _load_entry_point(registered[spec])
    elif ":" in spec or "." in spec:
        factory = _import_path(spec)
    else:
        names = ", ".join(sorted(_loadable(registered))) or "none"
        raise PluginError(f"unknown encoder {spec!r}; installed: {names} (or give module:Class)")
    encoder = factory.from_config(config) if config is not None and hasattr(factory, "from_config") else factory()
    if not isinstance(encoder, Encoder):
        raise PluginError(f"encoder {spec!r} built {encoder!r}, which lacks encode_images/encode_texts/encode_prompts")
    return encoder


def _loadable(registered: Mapping[str, EntryPoint]) -> list[str]:
    """Names whose entry point imports; a broken one is skipped with a PluginWarning."""
    names = []
    for name, ep in registered.items():
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001 - a third-party plugin may fail in any way
            warnings.warn(f"encoder plugin {name!r} ({ep.value}) failed to load: {exc}", PluginWarning, stacklevel=3)
            continue
        names.append(name)
    return names


def _load_entry_point(ep: EntryPoint) -> Any:
    try:
        return ep.load()
    except Exception as exc:  # noqa: BLE001 - a third-party plugin may fail in any way
        raise PluginError(f"encoder {ep.name!r} is installed but failed to load ({exc}); reinstall it") from None


def _import_path(spec: str) -> Any:
    module_name, _, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError, ValueError) as exc:
        names = ", ".join(sorted(installed_encoders())) or "none"
        raise PluginError(f"cannot import encoder {spec!r} ({exc}); installed: {names}") from None


class PrecomputedEncoder:
    """Embeddings computed elsewhere: ``.npy`` + ids files, or Parquet with key columns and an embedding column."""

    name = "precomputed"

    def __init__(
        self,
        image_embeddings: str | Path,
        text_embeddings: str | Path,
        *,
        image_ids: str | Path | None = None,
        text_ids: str | Path | None = None,
        class_embeddings: str | Path | None = None,
        class_ids: str | Path | None = None,
    ) -> None:
        from geosample.retrieval._embedding_files import read_embeddings

        self._images = read_embeddings(image_embeddings, image_ids, IMAGE_KEYS, "--image-embeddings")
        self._texts = read_embeddings(text_embeddings, text_ids, TEXT_KEYS, "--text-embeddings")
        self._classes = (
            read_embeddings(class_embeddings, class_ids, CLASS_KEYS, "--class-embeddings")
            if class_embeddings is not None
            else None
        )
        dims = {"image": self._images.vectors.shape[1], "text": self._texts.vectors.shape[1]}
        if self._classes is not None:
            dims["class"] = self._classes.vectors.shape[1]
        if len(set(dims.values())) > 1:
            shown = ", ".join(f"{k} {v}" for k, v in dims.items())
            raise ConfigError(f"embedding dimensions differ ({shown}); all must come from one model")

    @classmethod
    def from_config(cls, config: EvaluateConfig) -> PrecomputedEncoder:
        """Build from ``--image-embeddings``, ``--text-embeddings`` and their ids files."""
        missing = [f for f, v in (("--image-embeddings", config.image_embeddings),
                                  ("--text-embeddings", config.text_embeddings)) if v is None]  # fmt: skip
        if missing:
            raise ConfigError(f"--encoder precomputed needs {' and '.join(missing)} FILE")
        return cls(
            config.image_embeddings,  # type: ignore[arg-type]
            config.text_embeddings,  # type: ignore[arg-type]
            image_ids=config.image_ids,
            text_ids=config.text_ids,
            class_embeddings=config.class_embeddings,
        )

    def encode_images(self, ds: Path, samples: pd.DataFrame) -> Embeddings:
        """All image embeddings in the file (the evaluator matches them to ``samples``)."""
        return self._images

    def encode_texts(self, captions: pd.DataFrame) -> Embeddings:
        """All caption embeddings in the file."""
        return self._texts

    def encode_prompts(self, prompts: Mapping[str, str]) -> Embeddings | None:
        """The class embeddings file, if one was given (keyed by taxonomy code)."""
        return self._classes


def __getattr__(name: str) -> Any:
    """``OpenClipEncoder`` lives with its torch code; import it only when asked for."""
    if name == "OpenClipEncoder":
        from geosample.retrieval._open_clip import OpenClipEncoder

        return OpenClipEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
