"""The parameters of ``geosample finetune``: the evaluation's (encoder, metrics) and the training's."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geosample._coerce import as_int
from geosample.errors import ConfigError
from geosample.retrieval.config import EvaluateConfig

KINDS = ("linear", "mlp")
_RUN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Everything that determines a finetune run; the same config on the same dataset trains the same adapter."""

    evaluate: EvaluateConfig = dataclasses.field(default_factory=EvaluateConfig)
    """Encoder and metric settings (``--encoder``, ``--k``, ``--bootstrap``, ...), as for ``geosample evaluate``."""
    run: str | None = None
    """Name of the run folder ``DS/finetune/<run>``; default ``<encoder>-<adapter_kind>-seed<seed>``."""
    adapter_kind: str = "mlp"
    """``linear`` (x + Wx) or ``mlp`` (x + W₂ GELU(W₁x)) on each side."""
    hidden: int = 256
    """Hidden width of the MLP adapter."""
    epochs: int = 200
    """Most passes over the training images."""
    patience: int = 15
    """Stop after this many epochs without a lower validation loss; the best epoch's weights are kept."""
    train_batch_size: int = 256
    """Image–caption pairs per InfoNCE batch."""
    lr: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    temperature: float = 0.07
    """Initial InfoNCE temperature (learned, as CLIP's logit scale)."""
    seed: int = 0
    """Seed of the initialisation, the shuffles and the caption drawn per image and epoch."""
    overwrite: bool = False
    """Replace an existing run folder of the same name."""

    def __post_init__(self) -> None:
        """Validate every field; raise ConfigError naming the fix."""
        if self.adapter_kind not in KINDS:
            raise ConfigError(f"--adapter-kind {self.adapter_kind!r} is not one of {', '.join(KINDS)}")
        for name in ("hidden", "epochs", "train_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {value!r} must be a positive whole number")
        if self.train_batch_size < 2:
            raise ConfigError("--train-batch-size must be at least 2 (InfoNCE needs negatives in the batch)")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise ConfigError(f"--patience {self.patience!r} must be a positive whole number")
        for name in ("lr", "temperature"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"--{name} {getattr(self, name)!r} must be positive")
        if not float(self.weight_decay) >= 0:
            raise ConfigError(f"--weight-decay {self.weight_decay!r} must be zero or positive")
        if self.run is not None and not _RUN.match(self.run):
            raise ConfigError(f"--run {self.run!r}: use letters, digits, '.', '_' and '-' (a folder name)")
        if self.evaluate.adapter is not None:
            raise ConfigError("--adapter applies a trained adapter in 'geosample evaluate'; finetune trains a new one")

    @property
    def run_name(self) -> str:
        """The run folder's name."""
        encoder = re.sub(r"[^A-Za-z0-9._-]", "_", self.evaluate.encoder)
        return self.run or f"{encoder}-{self.adapter_kind}-seed{self.seed}"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, base_dir: Path | None = None) -> FinetuneConfig:
        """Build from loose values (YAML, CLI); evaluate's settings go to :attr:`evaluate`."""
        own = {f.name for f in dataclasses.fields(cls)} - {"evaluate"}
        mine: dict[str, Any] = {}
        theirs: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name in own:
                if value is not None:
                    mine[name] = value
            else:
                theirs[key] = value
        for name in ("hidden", "epochs", "patience", "train_batch_size", "seed"):
            if name in mine:
                mine[name] = as_int(mine[name], f"--{name.replace('_', '-')}", noun="a whole number")
        for name in ("lr", "weight_decay", "temperature"):
            if name in mine:
                try:
                    mine[name] = float(mine[name])
                except (TypeError, ValueError):
                    raise ConfigError(f"--{name.replace('_', '-')} {mine[name]!r} is not a number") from None
        for name in ("run", "adapter_kind"):
            if name in mine:
                mine[name] = str(mine[name])
        if "overwrite" in mine:
            mine["overwrite"] = bool(mine["overwrite"])
        if "seed" in mine:
            theirs.setdefault("seed", mine["seed"])
        return cls(evaluate=EvaluateConfig.from_mapping(theirs, base_dir=base_dir), **mine)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values, as recorded in the run folder and ``DS/geosample.yaml``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "evaluate"}
        out["run"] = self.run_name
        out["evaluate"] = self.evaluate.to_dict()
        return out
