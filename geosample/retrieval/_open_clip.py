"""The ``open_clip`` encoder: any open_clip model with weights from a local file, never from the hub."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from geosample.errors import ConfigError, DatasetError, PluginError
from geosample.retrieval.encoders import Embeddings

if TYPE_CHECKING:
    from geosample.retrieval.config import EvaluateConfig

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


class OpenClipEncoder:
    """An open_clip model (``ViT-B-32``, a RemoteCLIP or GeoRSCLIP checkpoint, ...) run on the chips or previews."""

    name = "open_clip"

    def __init__(
        self,
        model: str,
        checkpoint: str | Path,
        *,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 64,
        images: str = "chips",
        rgb_bands: Sequence[str] | None = None,
    ) -> None:
        from geosample.retrieval.search import resolve_device

        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise ConfigError(f"--checkpoint {checkpoint} does not exist; give a local weights file")
        self.model_name = model
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.images = images
        self.rgb_bands = tuple(rgb_bands) if rgb_bands is not None else None
        self._model, self._preprocess, self._tokenizer = _load(model, checkpoint, self.device, precision)

    @classmethod
    def from_config(cls, config: EvaluateConfig) -> OpenClipEncoder:
        """Build from ``--model``, ``--checkpoint``, ``--device``, ``--batch-size`` and the image settings."""
        if config.model is None or config.checkpoint is None:
            raise ConfigError(
                "--encoder open_clip needs --model NAME (e.g. ViT-B-32) and --checkpoint FILE (local weights)"
            )
        return cls(
            config.model,
            config.checkpoint,
            device=config.device,
            precision=config.precision,
            batch_size=config.batch_size,
            images=config.images,
            rgb_bands=config.rgb_bands,
        )

    def encode_images(self, ds: Path, samples: pd.DataFrame) -> Embeddings:
        """Embed each sample's chip (RGB, stretched) or preview; samples without one are left out."""
        from PIL import Image

        column = "preview" if self.images == "previews" else "path"
        if column not in samples.columns:
            raise DatasetError(f"{ds} has no chip {column}s; run 'geosample fetch {ds}' first")
        usable = samples[samples[column].notna()]
        if "status" in usable.columns:
            usable = usable[usable["status"] == "ok"]
        usable = usable.drop_duplicates("sample_id")

        def picture(row: Any) -> Any:
            path = Path(ds) / row[column]
            if column == "preview":
                return Image.open(path).convert("RGB")
            from geosample.retrieval._images import read_chip_rgb

            bands = row["bands"] if "bands" in usable.columns else None
            return Image.fromarray(read_chip_rgb(path, None if bands is None else list(bands), self.rgb_bands))

        rows = [row for _, row in usable.iterrows()]
        vectors = []
        with ThreadPoolExecutor(max_workers=4) as pool:
            for start in range(0, len(rows), self.batch_size):
                pictures = list(pool.map(picture, rows[start : start + self.batch_size]))
                vectors.append(self._encode("image", [self._preprocess(p) for p in pictures]))
        return Embeddings(usable[["sample_id"]].reset_index(drop=True), _stack(vectors))

    def encode_texts(self, captions: pd.DataFrame) -> Embeddings:
        """Embed each caption with the model's tokenizer."""
        texts = captions["caption"].astype(str).tolist()
        vectors = [self._encode("text", texts[s : s + self.batch_size]) for s in range(0, len(texts), self.batch_size)]
        return Embeddings(captions[["sample_id", "caption_index"]].reset_index(drop=True), _stack(vectors))

    def encode_prompts(self, prompts: Mapping[str, str]) -> Embeddings:
        """Embed the zero-shot prompt of each class code."""
        codes = list(prompts)
        texts = [prompts[c] for c in codes]
        vectors = [self._encode("text", texts[s : s + self.batch_size]) for s in range(0, len(texts), self.batch_size)]
        return Embeddings(pd.DataFrame({"code": codes}), _stack(vectors))

    def _encode(self, kind: str, batch: list[Any]) -> np.ndarray:
        import torch

        with torch.no_grad():
            if kind == "image":
                dtype = next(self._model.parameters()).dtype
                tensor = torch.stack(batch).to(self.device, dtype=dtype)
                out = self._model.encode_image(tensor)
            else:
                out = self._model.encode_text(self._tokenizer(batch).to(self.device))
        return out.float().cpu().numpy()


def _stack(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0), dtype=np.float32)


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Tell huggingface_hub (and transformers) not to reach the network while a model is built."""
    saved = {k: os.environ.get(k) for k in OFFLINE_ENV}
    os.environ.update(OFFLINE_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _load(model: str, checkpoint: Path, device: str, precision: str) -> tuple[Any, Any, Any]:
    try:
        import open_clip
    except Exception as exc:  # noqa: BLE001 - torch/torchvision builds that do not match fail in many ways
        raise PluginError(
            f"the open_clip encoder needs torch, torchvision and open_clip_torch ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); install them with pip install 'geosample[eval]'"
        ) from None
    name = model
    if model.endswith(".json"):
        path = Path(model)
        if not path.is_file():
            raise ConfigError(f"--model {model} does not exist; give an open_clip model name or config JSON")
        open_clip.add_model_config(path)
        name = path.stem
    if name not in open_clip.list_models():
        raise ConfigError(
            f"--model {model!r} is not an open_clip model; e.g. {', '.join(open_clip.list_models()[:6])}, ... "
            "or a model-config JSON file"
        )
    on_gpu = device.startswith("cuda")
    model_precision = {"auto": "fp16" if on_gpu else "fp32"}.get(precision, precision)
    with _offline():
        try:
            # An absolute path is never mistaken for a pretrained tag (which would download).
            clip, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=str(checkpoint.resolve()), device=device, precision=model_precision
            )
            tokenizer = open_clip.get_tokenizer(name)
        except Exception as exc:  # noqa: BLE001 - torch.load and load_state_dict raise many kinds
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise PluginError(f"cannot load --checkpoint {checkpoint} into open_clip model {name}: {first}") from None
    clip.eval()
    return clip, preprocess, tokenizer
