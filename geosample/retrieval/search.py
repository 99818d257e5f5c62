"""Exact top-k cosine search between images and texts, both directions in one pass, under a memory cap.

Rankings order items by score descending and break ties by item index, so
they equal a full stable sort of the similarity matrix computed the same way.
The matrix is computed in blocks of rows of the larger side; the smaller side
is whole in every block, so each block completes the larger side's rankings
and merges into the smaller side's running top k. Only the block, never the
full N×M matrix, is in memory.

Backends: numpy (float32 BLAS) on the CPU when torch is absent or when asked
for ``cpu``; torch on ``cuda`` (fp16 or bf16 matmul with float32 scores).
torch is imported only when a CUDA device is requested or may be present (a GPU driver is).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys

import numpy as np

from geosample.errors import ConfigError, DatasetError
from geosample.retrieval import _numpy_search


@dataclasses.dataclass(frozen=True)
class Neighbours:
    """The top-k items of every query, in both directions, best first."""

    image_to_text: np.ndarray
    """(n_images, k) text indices."""
    image_to_text_scores: np.ndarray
    """(n_images, k) cosine similarities."""
    text_to_image: np.ndarray
    """(n_texts, k) image indices."""
    text_to_image_scores: np.ndarray
    """(n_texts, k) cosine similarities."""
    device: str
    """Where the similarities were computed: ``cpu`` (numpy) or a torch CUDA device."""


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length as float32, so that cosine similarity is a dot product."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not (np.all(norms > 0) and np.all(np.isfinite(norms))):
        raise DatasetError("an encoder returned zero or non-finite vectors; they have no direction for cosine")
    return vectors / norms


def resolve_device(device: str = "auto") -> str:
    """``cpu`` or a CUDA device name; ``auto`` takes CUDA when torch is installed and sees a GPU."""
    device = device.lower()
    if device == "cpu":
        return "cpu"
    has_torch = importlib.util.find_spec("torch") is not None
    if device == "auto":
        if not has_torch or not gpu_driver_present():
            return "cpu"  # without a GPU driver torch cannot see one: importing it (seconds) would tell nothing
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if not has_torch:
        raise ConfigError(f"--device {device} needs torch; install it (pip install 'geosample[eval]') or use cpu")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: torch sees no CUDA GPU here; use --device cpu or auto")
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def gpu_driver_present() -> bool:
    """Whether a CUDA (or ROCm) driver may be present: False only where none can be (no driver files).

    Linux exposes the NVIDIA driver as /proc/driver/nvidia and /dev/nvidiactl, ROCm as /dev/kfd, WSL2's
    GPU as /dev/dxg; macOS has no CUDA. Elsewhere torch is asked.
    """
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        markers = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")
        return any(os.path.exists(marker) for marker in markers)
    return True


def search(
    images: np.ndarray,
    texts: np.ndarray,
    k: int,
    *,
    device: str = "auto",
    memory_cap: int = 2 * 1024**3,
    precision: str = "auto",
) -> Neighbours:
    """The ``k`` most similar texts of every image and images of every text.

    Args:
        images: (n, d) embeddings, L2-normalised for cosine similarity.
        texts: (m, d) embeddings, same dimension.
        k: Ranking depth; clipped to the number of items on each side.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        memory_cap: Bytes of working memory (host for numpy, GPU for torch)
            beyond the inputs; blocks are sized to fit.
        precision: ``auto`` (fp16 on CUDA, fp32 on CPU), ``fp32``, ``fp16``
            or ``bf16``; the CPU path is always fp32.

    Returns:
        :class:`Neighbours`, identical to a stable full sort of the same scores.
    """
    images = np.ascontiguousarray(images, dtype=np.float32)
    texts = np.ascontiguousarray(texts, dtype=np.float32)
    if images.ndim != 2 or texts.ndim != 2 or images.shape[1] != texts.shape[1]:
        raise ConfigError(f"embeddings must be two matrices of one width, not {images.shape} and {texts.shape}")
    if images.shape[0] == 0 or texts.shape[0] == 0:
        raise ConfigError("nothing to search: no images or no texts")
    resolved = resolve_device(device)
    # Chunk the larger side, so the running merge is over the smaller one.
    swap = texts.shape[0] > images.shape[0]
    big, small = (texts, images) if swap else (images, texts)
    if resolved == "cpu":
        if precision not in ("auto", "fp32"):
            raise ConfigError(f"--precision {precision} is for CUDA; the CPU path computes in fp32")
        try:
            big_idx, big_val, small_idx, small_val = _numpy_search.search_both(big, small, k, memory_cap=memory_cap)
        except MemoryError as exc:
            raise ConfigError(f"--memory-cap is too small for {len(images)}×{len(texts)} ({exc}); raise it") from None
    else:
        from geosample.retrieval import _torch_search

        big_idx, big_val, small_idx, small_val = _torch_search.search_both(
            big, small, k, device=resolved, precision=precision, memory_cap=memory_cap
        )
    if swap:
        return Neighbours(small_idx, small_val, big_idx, big_val, resolved)
    return Neighbours(big_idx, big_val, small_idx, small_val, resolved)
