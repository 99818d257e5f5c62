"""The parameters of ``geosample evaluate``, as one typed, frozen object."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from geosample._coerce import as_int
from geosample.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
IMAGE_SOURCES = ("chips", "previews")
LEVEL_PATTERN = re.compile(r"^l[1-9]$")
DEFAULT_MEMORY_CAP = 2 * 1024**3
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3}
_UNITS |= {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}
_PATH_FIELDS = (
    "image_embeddings", "text_embeddings", "image_ids", "text_ids", "class_embeddings", "checkpoint", "adapter",
)  # fmt: skip
TIE_POLICIES = ("index", "optimistic", "pessimistic", "expected")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """Everything that determines an evaluation; the same config on the same dataset gives the same metrics."""

    encoder: str = "precomputed"
    """A ``geosample.encoders`` entry-point name (``precomputed``, ``open_clip``) or ``module:Class``."""
    image_embeddings: str | None = None
    """precomputed: image embeddings, ``.npy`` (with ``image_ids``) or Parquet with ``sample_id``."""
    text_embeddings: str | None = None
    """precomputed: caption embeddings, ``.npy`` (with ``text_ids``) or Parquet with ``sample_id, caption_index``."""
    image_ids: str | None = None
    """precomputed: the sample_id of each row of a ``.npy`` image file (text, ``.npy`` or Parquet)."""
    text_ids: str | None = None
    """precomputed: sample_id and caption_index of each row of a ``.npy`` text file (CSV/TSV text or Parquet)."""
    class_embeddings: str | None = None
    """precomputed: embeddings of the zero-shot prompts, keyed by taxonomy ``code`` (Parquet, or ``.npy`` + ids)."""
    model: str | None = None
    """open_clip: a model name (``ViT-B-32``) or a model-config JSON file."""
    checkpoint: str | None = None
    """open_clip: local weights file; geosample never downloads weights."""
    images: str = "chips"
    """open_clip: ``chips`` (GeoTIFF, RGB bands stretched to 8 bits) or ``previews`` (the ``preview`` PNGs)."""
    rgb_bands: tuple[str, ...] | None = None
    """open_clip: the chip bands to show as red, green, blue; default: found by name."""
    split: str | None = None
    """Evaluate only the samples of this split (a ``split`` column in plan or labels)."""
    levels: tuple[str, ...] = ("l2", "l3")
    """Label levels for mAP@k and WMAP@k relevance."""
    k: tuple[int, ...] = (1, 5, 10)
    """Cut-offs K for R@K, mAP@K and WMAP@K."""
    strata: tuple[str, ...] | None = None
    """Plan columns for the per-stratum breakdown; default: the plan's stratification dimensions."""
    device: str = "auto"
    """``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    precision: str = "auto"
    """Similarity matmul precision: ``auto`` (fp16 on CUDA, fp32 on CPU), ``fp32``, ``fp16``, ``bf16``."""
    batch_size: int = 64
    """Images or texts per encoder batch."""
    memory_cap: int = DEFAULT_MEMORY_CAP
    """Bytes the similarity search may use beyond its inputs; the N×M matrix is never materialised beyond it."""
    prompt: str = "a satellite image of {name}."
    """Zero-shot prompt; ``{name}`` is the class name."""
    taxonomy: str | None = None
    """Taxonomy for zero-shot class names (``id@version`` or a YAML file); default: the one in labels.parquet."""
    bootstrap: int = 1000
    """Replicates of the stratified bootstrap behind the 95 % intervals; 0 skips the intervals."""
    seed: int = 0
    """Seed of the bootstrap (and of nothing else: the metrics themselves are deterministic)."""
    ties: str = "expected"
    """R@K and mR among exactly tied scores: ``index``, ``optimistic``, ``pessimistic`` or ``expected`` (exact mean)."""
    adapter: str | None = None
    """An ``adapter.pt`` from ``geosample finetune``, applied to the encoder's embeddings."""

    def __post_init__(self) -> None:
        """Validate every field; raise ConfigError naming the fix."""
        if not self.encoder:
            raise ConfigError("--encoder is empty; use precomputed, open_clip or module:Class")
        if not self.k:
            raise ConfigError("--k is empty; give cut-offs such as 1,5,10")
        for value in self.k:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
                raise ConfigError(f"--k {value!r} is out of range; give whole numbers between 1 and 10000")
        if len(set(self.k)) != len(self.k):
            raise ConfigError(f"--k repeats a cut-off: {list(self.k)}")
        for level in self.levels:
            if not LEVEL_PATTERN.match(level):
                raise ConfigError(f"--level {level!r} is not a label level; use names such as l1, l2, l3")
        if len(set(self.levels)) != len(self.levels):
            raise ConfigError(f"--level repeats a level: {list(self.levels)}")
        device = self.device.lower()
        if device not in DEVICES and not re.match(r"^cuda:\d+$", device):
            raise ConfigError(f"--device {self.device!r} is not one of auto, cpu, cuda, cuda:N")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.images not in IMAGE_SOURCES:
            raise ConfigError(f"--images {self.images!r} is not one of {', '.join(IMAGE_SOURCES)}")
        if self.rgb_bands is not None and len(self.rgb_bands) != 3:
            raise ConfigError(f"--rgb-bands needs three band names (red,green,blue), not {list(self.rgb_bands)}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size!r} must be a positive whole number")
        if isinstance(self.memory_cap, bool) or not isinstance(self.memory_cap, int) or self.memory_cap < 1:
            raise ConfigError(f"--memory-cap {self.memory_cap!r} must be a positive size such as 2GB")
        if "{name}" not in self.prompt:
            raise ConfigError(f"--prompt {self.prompt!r} has no {{name}} placeholder for the class name")
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) or self.bootstrap < 0:
            raise ConfigError(f"--bootstrap {self.bootstrap!r} must be a whole number of replicates (0 to skip)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"--seed {self.seed!r} must be a whole number")
        if self.ties not in TIE_POLICIES:
            raise ConfigError(f"--ties {self.ties!r} is not one of {', '.join(TIE_POLICIES)}")
        if self.strata is not None and not self.strata:
            raise ConfigError("--strata is empty; give plan columns such as continent,climate or leave it out")

    @property
    def max_k(self) -> int:
        """The largest cut-off needed: the largest K, and 10 for mR."""
        return max(*self.k, 10)

    @property
    def depth(self) -> int:
        """The depth of the rankings: one past :attr:`max_k`, so that a tie across the last cut-off shows."""
        return self.max_k + 1

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, base_dir: Path | None = None) -> EvaluateConfig:
        """Build from loose values (YAML, CLI): dashes or underscores, comma strings for lists, ``2GB`` for sizes.

        Relative input paths are resolved against ``base_dir`` when given and the file exists there.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            name = {"level": "levels"}.get(name, name)
            if name not in names:
                raise ConfigError(f"unknown evaluate setting {key!r}; valid settings: {', '.join(sorted(names))}")
            if value is not None:
                kwargs[name] = value
        for name in ("levels", "strata", "rgb_bands"):
            if name in kwargs:
                kwargs[name] = tuple(str(v) for v in _as_tuple(kwargs[name], f"--{name.replace('_', '-')}"))
        if "k" in kwargs:
            kwargs["k"] = tuple(_as_int(v, "--k") for v in _as_tuple(kwargs["k"], "--k"))
        for name in ("batch_size", "bootstrap", "seed"):
            if name in kwargs:
                kwargs[name] = _as_int(kwargs[name], f"--{name.replace('_', '-')}")
        if "memory_cap" in kwargs:
            kwargs["memory_cap"] = parse_size(kwargs["memory_cap"])
        for name in ("encoder", "device", "precision", "images", "prompt", "split", "model", "taxonomy", "ties"):
            if name in kwargs:
                kwargs[name] = str(kwargs[name])
        for name in _PATH_FIELDS:
            if name in kwargs:
                kwargs[name] = _resolve(str(kwargs[name]), base_dir)
        if "model" in kwargs and kwargs["model"].endswith(".json"):
            kwargs["model"] = _resolve(kwargs["model"], base_dir)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values, as recorded in ``DS/geosample.yaml``."""
        out = dataclasses.asdict(self)
        for name in ("levels", "k", "strata", "rgb_bands"):
            if out[name] is not None:
                out[name] = list(out[name])
        return out


def parse_size(value: object) -> int:
    """Bytes from ``2GB``, ``512MiB``, ``1e9`` or an integer; ConfigError otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"--memory-cap {value!r} is not a size; use e.g. 2GB or 512MB")
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ConfigError(f"--memory-cap {value!r} is not a size; use e.g. 2GB or 512MB")
    return int(float(match.group(1)) * _UNITS[unit])


def _as_tuple(value: object, flag: str) -> tuple:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, int | float):
        return (value,)
    if isinstance(value, Sequence):
        out: list = []
        for item in value:
            out.extend(_as_tuple(item, flag) if isinstance(item, str) else [item])
        return tuple(out)
    raise ConfigError(f"{flag} expects a list or a comma-separated string, not {value!r}")


def _as_int(value: object, flag: str) -> int:
    return as_int(value, flag, noun="a whole number")


def _resolve(text: str, base_dir: Path | None) -> str:
    if base_dir is None or Path(text).is_absolute():
        return text
    candidate = base_dir / text
    return str(candidate) if candidate.exists() else text
