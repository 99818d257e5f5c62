"""geosample: globally balanced, hierarchically labelled, captioned remote-sensing datasets."""

from __future__ import annotations

__version__ = "0.1.0"

from geosample.errors import GeosampleError  # noqa: E402
from geosample.sampling.config import PlanConfig  # noqa: E402
from geosample.sampling.plan import plan  # noqa: E402

__all__ = ["GeosampleError", "PlanConfig", "__version__", "plan"]
