"""Turning loose config values (YAML, CLI strings) into typed ones, with one-line errors naming the flag."""

from __future__ import annotations

from geosample.errors import ConfigError


def as_int(value: object, flag: str, *, noun: str = "an integer") -> int:
    """``value`` as an int (ints, or text of one); booleans and anything else are a :class:`ConfigError`."""
    if isinstance(value, bool):
        raise ConfigError(f"{flag} must be {noun}, not {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{flag} must be {noun}, not {value!r}") from None


def as_float(value: object, flag: str) -> float:
    """``value`` as a float (numbers, or text of one); booleans and anything else are a :class:`ConfigError`."""
    if isinstance(value, bool):
        raise ConfigError(f"{flag} must be a number, not {value!r}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} must be a number, not {value!r}") from None
