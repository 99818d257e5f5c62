"""Reading config files that other people wrote, and what a config file may not decide on its own.

A config file is read whole only up to :data:`MAX_CONFIG_BYTES`, and its
YAML may use anchors and aliases only while the document, with every alias
expanded, stays under :data:`MAX_YAML_NODES` nodes (a "billion laughs" alias
bomb of a few hundred bytes would otherwise expand without bound as soon as
anything walks it). Both limits are checked before any value is built.

Some settings can leak or run things, so a config file cannot choose them
alone (:func:`check_consent`):

- ``api_key_env``: the environment variable whose value is sent as the API
  key. A config file may name one only when the command line names the same
  variable (``--api-key-env VAR``); otherwise the run stops before any request.
- ``endpoint``: where the API key is sent. The key goes only to an endpoint
  the command line chose (``--endpoint URL``, which wins over the file's; to
  keep the file's, give the same URL) or, with no endpoint anywhere, to the
  backend's default (``https://api.openai.com/v1``). An endpoint from a config
  file alone stops the run before any request, with one exception: a loopback
  endpoint (``localhost``, ``127.0.0.0/8``, ``[::1]``, written as such; no name
  is resolved to decide) for the built-in ``openai`` backend is used, but no
  key is sent to it (``send_key`` false), as a local server rarely needs one
  and a local port may be anything. ``--endpoint`` sends the key there too.
- ``allow_local_assets``: reading local files a catalogue names; only the
  command-line flag ``--allow-local-assets`` grants it.
- ``backend``/``encoder`` as ``module:callable``: importing and calling any
  installed callable. From a config file, only names registered as entry
  points (``geosample.captioners``, ``geosample.encoders``) are accepted; a
  dotted path must come from the command line (``--backend``/``--encoder``,
  or ``geosample run --allow-import module:callable``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from geosample.errors import ConfigError, ConsentWarning, UnsafeInputError

__all__ = [
    "COMMAND_LINE_ONLY",
    "MAX_CONFIG_BYTES",
    "MAX_YAML_NODES",
    "check_consent",
    "check_node_budget",
    "is_loopback_url",
    "load_yaml",
    "registered_plugins",
]

MAX_CONFIG_BYTES = 1 << 20
"""Largest config (or ``geosample.yaml``) read: 1 MiB, far above any real one."""
MAX_YAML_NODES = 100_000
"""Most YAML nodes a document may hold with every alias expanded."""
MAX_YAML_DEPTH = 200
"""Deepest nesting of mappings and sequences."""
COMMAND_LINE_ONLY = {"allow_local_assets": "--allow-local-assets"}
"""Consents a config file may not give, with the flag that gives them."""
KEYLESS_LOOPBACK_BACKENDS = ("openai",)
"""Backends that honour ``send_key`` false, so a config file may point them at a loopback endpoint."""


def load_yaml(path: str | Path, what: str = "config file") -> Any:
    """The YAML document in ``path``, read within the size, alias and depth budgets.

    Raises:
        ConfigError: The file is missing, unreadable, not YAML, too large, too deep,
            or expands beyond the alias budget; the message names the file and the fix.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a folder; give a YAML file") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read ({exc.strerror or exc}); check its permissions") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{what} {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB, far more than any config needs; "
            "check that it is the right file"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text; save it as UTF-8 YAML") from None
    return parse_yaml(text, f"{what} {path}")


def parse_yaml(text: str, where: str) -> Any:
    """YAML ``text`` as plain values, within the alias and depth budgets (``where`` names it in messages)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_node_budget(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where} is not valid YAML{at}; fix its syntax") from None
    except RecursionError:
        raise ConfigError(f"{where} is nested too deeply to be a config; check that it is the right file") from None
    finally:
        loader.dispose()


def check_node_budget(node: yaml.Node, where: str, *, allow_cycles: bool = False) -> None:
    """Refuse a composed YAML document too deep, or too large with its aliases expanded.

    Limits: :data:`MAX_YAML_DEPTH` levels, :data:`MAX_YAML_NODES` nodes; the nodes
    are counted once each, with memoised subtree sizes, so nothing is expanded. An alias
    inside its own anchor (a cycle) is refused, unless ``allow_cycles`` (the caller reports it).
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(node, 0, False)]
    open_nodes: set[int] = set()
    while stack:
        current, depth, done = stack.pop()
        key = id(current)
        if done:
            open_nodes.discard(key)
            sizes[key] = min(1 + sum(sizes.get(id(c), 0) for c in _children(current)), MAX_YAML_NODES + 1)
            continue
        if key in sizes:
            continue
        if key in open_nodes:  # an alias of a node that contains it
            if allow_cycles:
                continue
            raise UnsafeInputError(f"{where} uses an alias inside its own anchor; write the values out")
        if depth > MAX_YAML_DEPTH:
            raise UnsafeInputError(f"{where} nests deeper than {MAX_YAML_DEPTH} levels; check that it is a config")
        open_nodes.add(key)
        stack.append((current, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(current) if id(child) not in sizes)
    if sizes[id(node)] > MAX_YAML_NODES:
        raise UnsafeInputError(
            f"{where} expands to more than {MAX_YAML_NODES:,} values once its YAML aliases (*name) are expanded "
            "(an alias bomb?); write the settings out without nested aliases"
        )


def _children(node: yaml.Node) -> Iterable[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value
    elif isinstance(node, yaml.SequenceNode):
        yield from node.value


def check_consent(
    settings: Mapping[str, Any],
    from_file: Iterable[str],
    *,
    where: str,
    api_key_env: str | None = None,
    allowed_imports: Iterable[str] = (),
    registered: Iterable[str] = (),
    plugin_keys: Iterable[str] = ("backend",),
) -> dict[str, Any]:
    """Refuse settings a config file may not choose alone (see the module docstring).

    Args:
        settings: A stage's merged settings.
        from_file: The keys whose values came from the config file (not the command line).
        where: The config file, for messages (``config file run.yaml, section caption``).
        api_key_env: The variable the command line names (``--api-key-env``), if any.
        allowed_imports: ``module:callable`` paths the command line allows.
        registered: Plugin names registered as entry points (always allowed).
        plugin_keys: The settings that name a plugin (``backend``, ``encoder``).

    Returns:
        Settings the caller must apply over ``settings``: ``{"send_key": False}`` when the
        file chose a loopback endpoint that the command line did not confirm, else nothing.

    Raises:
        UnsafeInputError: One line naming the setting and the command-line flag that confirms it.
    """
    from_file = {str(k).replace("-", "_") for k in from_file}
    normalised = {str(k).replace("-", "_"): v for k, v in settings.items()}
    for key, flag in COMMAND_LINE_ONLY.items():
        if key in from_file and normalised.get(key) not in (None, False):
            raise UnsafeInputError(
                f"{where} sets {key}: a config file may not grant it; give {flag} on the command line"
            )
    variable = normalised.get("api_key_env")
    if "api_key_env" in from_file and variable is not None and str(variable).strip() != (api_key_env or ""):
        raise UnsafeInputError(
            f"{where} names api_key_env {str(variable)!r}: a config file may not choose which environment "
            f"variable is sent to the endpoint; confirm it on the command line with --api-key-env {variable}"
        )
    forced: dict[str, Any] = {}
    endpoint = normalised.get("endpoint")
    if "endpoint" in from_file and endpoint is not None and str(endpoint).strip():
        url = str(endpoint).strip().rstrip("/")
        backend = str(normalised.get("backend") or "template").strip()
        if not (is_loopback_url(url) and backend in KEYLESS_LOOPBACK_BACKENDS):
            raise UnsafeInputError(
                f"{where} sets endpoint {url!r}: a config file may not choose where the API key is sent; "
                f"confirm it on the command line with --endpoint {url}"
            )
        if normalised.get("send_key") is not False:
            warnings.warn(
                f"{where} chose the loopback endpoint {url}: no API key is sent to it; "
                f"give --endpoint {url} on the command line to send the key",
                ConsentWarning,
                stacklevel=3,
            )
        forced["send_key"] = False
    registered = set(registered)
    allowed = {str(a).strip() for a in allowed_imports}
    for key in plugin_keys:
        spec = normalised.get(key)
        if key not in from_file or not isinstance(spec, str) or spec.strip() in registered:
            continue
        spec = spec.strip()
        if (":" in spec or "." in spec) and spec not in allowed:
            flag = "--" + key.replace("_", "-")
            raise UnsafeInputError(
                f"{where} sets {key} {spec!r}, a Python import path: a config file may name only installed plugins "
                f"({', '.join(sorted(registered)) or 'none'}); to run {spec!r}, give {flag} {spec} on the command "
                f"line (or 'geosample run --allow-import {spec}')"
            )
    return forced


def is_loopback_url(url: str) -> bool:
    r"""Whether ``url``'s host is written as a loopback address: ``localhost``, ``127.x.x.x`` or ``[::1]``.

    Only the host as written counts (no name is resolved: a name that resolves to 127.0.0.1 now may
    resolve elsewhere later). A URL with user info or a backslash is never loopback here, and both
    Python's and urllib3's URL parsers (the one that connects) must read the same loopback host, so a
    URL the two read differently (``http://evil.example\@127.0.0.1``) cannot pass.
    """
    import ipaddress
    from urllib.parse import urlsplit

    from urllib3.util import parse_url

    text = url.strip()
    if "@" in text or "\\" in text or not text.lower().startswith(("http://", "https://")):
        return False
    try:
        hosts = {urlsplit(text).hostname or "", (parse_url(text).host or "").strip("[]").lower()}
    except ValueError:  # urllib3's LocationParseError is a ValueError too
        return False
    if len(hosts) != 1:
        return False
    host = hosts.pop().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


PLUGIN_GROUPS = ("geosample.captioners", "geosample.encoders")


def registered_plugins() -> set[str]:
    """Names of the installed caption backends and encoders (entry points), found without importing them."""
    from importlib.metadata import entry_points

    return {ep.name for group in PLUGIN_GROUPS for ep in entry_points(group=group)}
