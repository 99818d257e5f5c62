"""Captions: pluggable backends that write ``n`` fact-based captions per sample into ``DS/captions.parquet``.

``geosample.captions.caption`` runs the stage; backends implement
:class:`Captioner` (built in: ``template``, offline and deterministic, and
``openai``, any OpenAI-compatible chat endpoint; others come through the
``geosample.captioners`` entry-point group) and receive one
:class:`SampleContext` per sample.
"""

from geosample.captions.base import Captioner, CaptionResult, available_captioners, get_captioner
from geosample.captions.caption import caption
from geosample.captions.config import CaptionConfig
from geosample.captions.context import SampleContext

__all__ = [
    "CaptionConfig",
    "CaptionResult",
    "Captioner",
    "SampleContext",
    "available_captioners",
    "caption",
    "get_captioner",
]
