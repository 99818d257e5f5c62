"""The caption backend interface and the registry that finds backends by name, path or instance.

A backend is any object with the :class:`Captioner` attributes and method;
third-party packages register theirs under the ``geosample.captioners``
entry-point group (``name = "package.module:Factory"``), so a local BLIP-2 or
InternVL backend plugs in without changing geosample. Entry points are
discovered once per process; one that fails to import warns
(:class:`~geosample.errors.PluginWarning`) and is left out.

Scene captions get one :class:`~geosample.captions.context.SampleContext`
per sample. A backend that also describes change between two samples of a
site (before/after pairs, revisits) implements :class:`ChangeCaptioner`:
``caption_changes`` gets :class:`~geosample.captions.change.ChangeContext`
objects and has its own ``change_prompt_sha256``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from geosample.errors import ConfigError, PluginError, PluginWarning

if TYPE_CHECKING:
    from geosample.captions.change import ChangeContext
    from geosample.captions.context import SampleContext

ENTRY_POINT_GROUP = "geosample.captioners"
_QUIET_OPTIONS = {"seed", "cache_dir"}
"""Options every backend is offered; one that does not take them simply ignores them."""


@runtime_checkable
class Captioner(Protocol):
    """What ``geosample caption`` needs of a backend."""

    name: str
    """Backend name, recorded in every caption row (``backend``)."""
    model: str
    """Model name (or template version), recorded in every caption row."""
    prompt_sha256: str
    """SHA-256 of the prompt or templates the captions come from; a new prompt re-captions."""

    def caption(self, contexts: Sequence[SampleContext], n: int) -> list[list[str]]:
        """``n`` captions for each context, in order; an empty list for a context that could not be captioned."""
        ...


@dataclasses.dataclass(frozen=True)
class CaptionResult:
    """One sample's captions with what a backend knows about them (optional richer answer)."""

    captions: list[str]
    focus: list[str] | None = None
    """What each caption is about (``overview``, ``composition``, ...), when the backend knows."""
    tags: list[str] = dataclasses.field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cache_hit: bool | None = None
    evidence: list[str] | None = None
    """What each caption's cover statements rest on (``observed``, ``map``, ``observed+map``, ``none``; for change
    captions ``change``, ``map`` or ``unobservable``), when the backend knows."""


@runtime_checkable
class DetailedCaptioner(Captioner, Protocol):
    """A backend that also reports focus, tags, token usage and cache hits per sample."""

    def caption_results(self, contexts: Sequence[SampleContext], n: int) -> list[CaptionResult]:
        """Like :meth:`Captioner.caption`, with the details."""
        ...


def results_of(captioner: Captioner, contexts: Sequence[SampleContext], n: int) -> list[CaptionResult]:
    """Call a backend, getting :class:`CaptionResult` objects whichever interface it offers."""
    if isinstance(captioner, DetailedCaptioner):
        results = list(captioner.caption_results(contexts, n))
    else:
        results = [CaptionResult(list(c)) for c in captioner.caption(contexts, n)]
    if len(results) != len(contexts):
        raise PluginError(
            f"caption backend {captioner.name!r} returned {len(results)} results for {len(contexts)} samples; "
            "a backend must answer every sample it is given (an empty list for one it cannot caption)"
        )
    return results


@runtime_checkable
class ChangeCaptioner(Protocol):
    """A backend that also captions what changed between two samples of a site."""

    name: str
    model: str
    change_prompt_sha256: str
    """SHA-256 of the change prompt or templates; a new one re-captions the pairs."""

    def caption_changes(self, contexts: Sequence[ChangeContext], n: int) -> list[CaptionResult]:
        """``n`` change captions per pair, in order; empty captions for a pair that could not be captioned."""
        ...


def change_results_of(captioner: ChangeCaptioner, contexts: Sequence[ChangeContext], n: int) -> list[CaptionResult]:
    """Call a backend's ``caption_changes``, checking it answers every pair."""
    results = list(captioner.caption_changes(contexts, n))
    if len(results) != len(contexts):
        raise PluginError(
            f"caption backend {captioner.name!r} returned {len(results)} change results for {len(contexts)} pairs; "
            "a backend must answer every pair it is given (empty captions for one it cannot caption)"
        )
    return results


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            warnings.warn(
                f"two caption backends are registered as {ep.name!r} ({found[ep.name].value} and {ep.value}); "
                "using the first",
                PluginWarning,
                stacklevel=2,
            )
            continue
        found.setdefault(ep.name, ep)
    return found


@functools.cache
def _loaded() -> tuple[dict[str, Callable[..., Any]], dict[str, str]]:
    factories: dict[str, Callable[..., Any]] = {}
    failed: dict[str, str] = {}
    for name, ep in sorted(_entry_points().items()):
        try:
            factories[name] = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take geosample down
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            failed[name] = reason
            warnings.warn(
                f"caption backend {name!r} ({ep.value}) failed to load and is skipped: {reason}",
                PluginWarning,
                stacklevel=3,
            )
    return factories, failed


def available_captioners() -> dict[str, Callable[..., Any]]:
    """Installed caption backends that load: name -> factory (class or function)."""
    return dict(_loaded()[0])


def refresh_captioners() -> None:
    """Forget the discovered backends, so packages installed since are found (tests, notebooks)."""
    _entry_points.cache_clear()
    _loaded.cache_clear()


def get_captioner(spec: str | Captioner | Callable[..., Any], **options: Any) -> Captioner:
    """A ready backend.

    Args:
        spec: A registered name (``"template"``, ``"openai"``, a plugin's), a
            dotted path (``"package.module:Class"`` or ``"package.module.Class"``),
            a factory (a class or function), or a ready :class:`Captioner`,
            returned as is.
        **options: Settings for the factory (``seed``, ``endpoint``, ``model``,
            ...); only those its signature takes are passed. ``None`` values are
            dropped.

    Raises:
        PluginError: the name is unknown (the message lists the installed
            backends), the path cannot be imported, or the result is not a Captioner.
        ConfigError: options were given that the backend does not take.
    """
    if isinstance(spec, Captioner) and not isinstance(spec, type):
        return spec
    if isinstance(spec, str):
        label = spec
        factory = _resolve(spec)
    elif callable(spec):
        label = getattr(spec, "__qualname__", repr(spec))
        factory = spec
    else:
        raise PluginError(f"caption backend {spec!r} is neither a name, a dotted path, a factory nor a Captioner")
    kwargs = _accepted(factory, {k: v for k, v in options.items() if v is not None}, label)
    try:
        captioner = factory(**kwargs)
    except TypeError as exc:
        raise PluginError(f"caption backend {label!r} could not be created: {exc}") from None
    if not isinstance(captioner, Captioner):
        raise PluginError(
            f"caption backend {label!r} made a {type(captioner).__name__}, which lacks the Captioner interface "
            "(attributes name, model, prompt_sha256 and a caption(contexts, n) method)"
        )
    return captioner


def _resolve(spec: str) -> Callable[..., Any]:
    factories, failed = _loaded()
    if spec in factories:
        return factories[spec]
    if spec in failed:
        raise PluginError(
            f"caption backend {spec!r} is installed but failed to load ({failed[spec]}); "
            "reinstall it or fix its dependencies"
        )
    if ":" in spec or "." in spec:
        return _import_path(spec)
    installed = ", ".join(sorted(factories)) or "none"
    raise PluginError(
        f"unknown caption backend {spec!r}; installed backends: {installed} "
        "(or give a dotted path such as mypackage.module:MyCaptioner)"
    )


def _import_path(spec: str) -> Callable[..., Any]:
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"caption backend {spec!r} cannot be imported: {exc}") from None
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise PluginError(f"caption backend {spec!r}: module {module_name!r} has no {attr!r}") from None
    if not callable(obj) and not isinstance(obj, Captioner):
        raise PluginError(f"caption backend {spec!r} is not a class, a function or a Captioner")
    return obj if callable(obj) else (lambda: obj)


def _accepted(factory: Callable[..., Any], options: dict[str, Any], label: str) -> dict[str, Any]:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return options
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return options
    unknown = sorted(k for k in options if k not in params and k not in _QUIET_OPTIONS)
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise ConfigError(f"caption backend {label!r} does not use {flags}; drop them or choose another --backend")
    return {k: v for k, v in options.items() if k in params}
