"""Residual adapters over frozen embeddings, and an encoder that applies a trained one (``evaluate --adapter``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from geosample.errors import ConfigError, DatasetError
from geosample.retrieval.encoders import Embeddings, Encoder

FORMAT = "geosample-adapter/1"
KINDS = ("linear", "mlp")


class ResidualAdapter(torch.nn.Module):
    """x + f(x), f linear or a one-hidden-layer MLP whose last layer starts at zero (so training starts at x)."""

    def __init__(self, dim: int, kind: str = "mlp", hidden: int = 256) -> None:
        super().__init__()
        if kind == "linear":
            self.body: torch.nn.Module = torch.nn.Linear(dim, dim)
            last = self.body
        else:
            self.body = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, dim))
            last = self.body[2]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x + self.body(x)


class PairAdapter(torch.nn.Module):
    """One residual adapter per side and the learnable InfoNCE temperature (as CLIP's logit scale)."""

    def __init__(self, dim: int, kind: str = "mlp", hidden: int = 256, temperature: float = 0.07) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"--adapter-kind {kind!r} is not one of {', '.join(KINDS)}")
        self.dim, self.kind, self.hidden = dim, kind, hidden
        self.image = ResidualAdapter(dim, kind, hidden)
        self.text = ResidualAdapter(dim, kind, hidden)
        self.logit_scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / temperature))))

    def loss(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE of matching rows: (CE(image→text) + CE(text→image)) / 2."""
        a = torch.nn.functional.normalize(self.image(images), dim=1)
        b = torch.nn.functional.normalize(self.text(texts), dim=1)
        logits = self.logit_scale.clamp(max=float(np.log(100))).exp() * a @ b.T
        target = torch.arange(len(a), device=a.device)
        return (
            torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)
        ) / 2

    def save(self, path: Path, meta: Mapping[str, Any]) -> None:
        """Weights and what is needed to rebuild and check them."""
        torch.save({"format": FORMAT, "dim": self.dim, "kind": self.kind, "hidden": self.hidden,
                    "meta": dict(meta), "state_dict": self.state_dict()}, path)  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> tuple[PairAdapter, dict[str, Any]]:
        """An adapter saved by :meth:`save` (on the CPU), and its metadata."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"--adapter {path} does not exist; give an adapter.pt from 'geosample finetune'")
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("format") != FORMAT:
                raise ValueError(f"format {saved.get('format')!r}, not {FORMAT}")
            model = cls(int(saved["dim"]), str(saved["kind"]), int(saved["hidden"]))
            model.load_state_dict(saved["state_dict"])
        except Exception as exc:  # noqa: BLE001 - torch.load and load_state_dict raise many kinds
            raise ConfigError(
                f"--adapter {path} is not a geosample adapter ({exc}); re-run 'geosample finetune'"
            ) from None
        model.eval()
        return model, dict(saved.get("meta") or {})


class AdaptedEncoder:
    """Another encoder's embeddings passed through a trained :class:`PairAdapter` (image side, text side)."""

    def __init__(self, base: Encoder, adapter: PairAdapter, meta: Mapping[str, Any] | None = None) -> None:
        self.base = base
        self.adapter = adapter
        self.meta = dict(meta or {})
        self.name = f"{getattr(base, 'name', type(base).__name__)}+adapter"

    @classmethod
    def load(cls, base: Encoder, path: str | Path) -> AdaptedEncoder:
        """``base`` with the adapter saved at ``path``."""
        adapter, meta = PairAdapter.load(path)
        trained_on = meta.get("encoder")
        name = getattr(base, "name", None)
        if trained_on and name and trained_on != name:
            raise ConfigError(f"--adapter {path} was trained on encoder {trained_on!r} features, not {name!r}")
        return cls(base, adapter, meta)

    def prepare(self, ds: Path) -> None:
        """Let the base encoder read what it needs from the dataset first."""
        prepare = getattr(self.base, "prepare", None)
        if callable(prepare):
            prepare(ds)

    def encode_images(self, ds: Path, samples: pd.DataFrame) -> Embeddings:
        """The base image embeddings, adapted."""
        return self._apply(self.base.encode_images(ds, samples), self.adapter.image)

    def encode_texts(self, captions: pd.DataFrame) -> Embeddings:
        """The base caption embeddings, adapted."""
        return self._apply(self.base.encode_texts(captions), self.adapter.text)

    def encode_prompts(self, prompts: Mapping[str, str]) -> Embeddings | None:
        """The base prompt embeddings, through the text adapter."""
        embedded = self.base.encode_prompts(prompts)
        return None if embedded is None else self._apply(embedded, self.adapter.text)

    def _apply(self, embedded: Embeddings, side: torch.nn.Module) -> Embeddings:
        if embedded.vectors.shape[1] != self.adapter.dim:
            raise DatasetError(
                f"the adapter takes {self.adapter.dim}-d embeddings, the encoder gives {embedded.vectors.shape[1]}-d"
            )
        return Embeddings(embedded.keys, apply(side, embedded.vectors))


def apply(side: torch.nn.Module, vectors: np.ndarray, batch: int = 8192) -> np.ndarray:
    """Unit rows of ``vectors`` through one side of an adapter, on the CPU, in batches."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    out = np.empty_like(unit)
    with torch.no_grad():
        for start in range(0, len(unit), batch):
            out[start : start + batch] = side(torch.from_numpy(unit[start : start + batch])).numpy()
    return out
