"""Adapter-tuning on a dataset (``geosample finetune``): residual adapters over frozen embeddings, before/after.

torch is imported only when a finetune runs or an adapter is applied.
"""

from geosample.finetune.config import FinetuneConfig
from geosample.finetune.train import FinetuneResult, finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune"]
