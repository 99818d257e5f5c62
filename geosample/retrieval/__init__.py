"""Image–text retrieval evaluation (``geosample evaluate``): R@K, mR, mAP@k, WMAP@k and zero-shot accuracy.

Embeddings come from an encoder (:mod:`geosample.retrieval.encoders`); the
exact top-k search of both directions runs in chunks under a memory cap
(:mod:`geosample.retrieval.search`), on a GPU through torch when one is there.
torch and open_clip are imported only when used.
"""

from geosample.retrieval.config import EvaluateConfig
from geosample.retrieval.encoders import Embeddings, Encoder, PrecomputedEncoder, get_encoder
from geosample.retrieval.evaluate import EvaluationResult, evaluate

__all__ = [
    "Embeddings",
    "Encoder",
    "EvaluateConfig",
    "EvaluationResult",
    "PrecomputedEncoder",
    "evaluate",
    "get_encoder",
]
