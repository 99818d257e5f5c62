"""``geosample validate``: a whole dataset folder checked offline against DESIGN.md and the bundled standards.

``geosample.validate.validate(ds)`` returns a :class:`ValidationReport` with
one :class:`Problem` per thing wrong, file by file.
"""

from __future__ import annotations

from geosample.validate.validate import Problem, ValidationReport, validate

__all__ = ["Problem", "ValidationReport", "validate"]
