"""Adapter-tuning on a dataset (``geosample finetune``): residual adapters over frozen embeddings, before/after.

torch is imported only when a finetune runs or an adapter is applied.

The package itself is callable, so ``geosample.finetune(...)`` is the finetune
function even after ``import geosample.finetune.train`` (which binds the name
``geosample.finetune`` to this package).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from geosample.finetune.config import FinetuneConfig
from geosample.finetune.train import FinetuneResult, finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune"]


class _CallableModule(types.ModuleType):
    """This package, callable as :func:`finetune`."""

    def __call__(self, *args: Any, **kwargs: Any) -> FinetuneResult:
        return finetune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
