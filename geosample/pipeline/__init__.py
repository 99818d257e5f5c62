"""``geosample run``: the whole pipeline (plan → fetch → label → caption → evaluate) from one config file."""

from geosample.pipeline.run import STAGES, StageResult, run

__all__ = ["STAGES", "StageResult", "run"]
