"""The ``openai`` backend: captions from any OpenAI-compatible Chat Completions endpoint with vision.

For each sample it sends the chip preview (a base64 PNG data URL) and the
sample's facts with a versioned prompt (``prompts/openai-v2.md``: visual
captions grounded in the facts and observations, one focus each, no geometry),
asks for strict JSON (``response_format`` with the schema in ``prompts/openai-v2.json``:
``n`` captions and tags), validates the answer, and caches it under
``DS/.cache/captions/`` keyed by the image hash, facts, prompt hash, model,
``n`` and seed, so a re-run sends nothing. Requests run on ``concurrency``
threads, at most ``rpm`` per minute, with the retries of :mod:`._chat`.
The key comes from an environment variable and is never logged or written;
with ``send_key=False`` none is read or sent (a keyless local server, or a
loopback endpoint a config file chose, see :mod:`geosample._config_file`).
Pairs of a site (change captions) go the same way with both images, the
earlier first, and the change prompt ``prompts/openai-change-v1.md``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import string
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from geosample.captions._cache import CaptionCache, cache_key
from geosample.captions._chat import AnswersExhausted, ChatClient, EndpointError, InvalidAnswer
from geosample.captions._preview import chip_png
from geosample.captions.base import CaptionResult
from geosample.captions.change import ChangeContext
from geosample.captions.change_template import CHANGE_FOCUSES
from geosample.captions.context import SampleContext
from geosample.captions.template import FOCUSES, check_focus
from geosample.errors import ConfigError, PluginWarning

__all__ = ["DEFAULT_ENDPOINT", "EndpointError", "OpenAICaptioner", "Prompt", "load_prompt"]

DEFAULT_ENDPOINT = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
PROMPT = "openai-v2"
CHANGE_PROMPT = "openai-change-v1"


@dataclass(frozen=True)
class Prompt:
    """A versioned prompt: system and user message templates and the JSON schema of the answer."""

    name: str
    system: str
    user: str
    schema: dict[str, Any]
    sha256: str
    """Of the prompt file and the schema file, as read."""

    def messages(
        self,
        facts: dict[str, Any],
        n: int,
        image: bytes | None | Sequence[bytes | None],
        focuses: Sequence[str] = FOCUSES,
    ) -> list[dict[str, Any]]:
        """The chat messages for one sample (or one pair: its images in order, the earlier first)."""
        named = ", ".join(focuses[k % len(focuses)] for k in range(n))
        text = string.Template(self.user).safe_substitute(
            n=n, focuses=named, facts=json.dumps(facts, ensure_ascii=False, separators=(",", ":"))
        )
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        for one in [image] if image is None or isinstance(image, bytes) else image:
            if one is not None:
                url = "data:image/png;base64," + base64.b64encode(one).decode("ascii")
                content.append({"type": "image_url", "image_url": {"url": url}})
        return [{"role": "system", "content": self.system}, {"role": "user", "content": content}]

    def response_format(self, n: int) -> dict[str, Any]:
        """``response_format`` asking for exactly ``n`` captions."""
        schema = json.loads(json.dumps(self.schema))
        captions = schema["schema"]["properties"]["captions"]
        captions["minItems"] = captions["maxItems"] = n
        return {"type": "json_schema", "json_schema": schema}


def load_prompt(name: str = PROMPT) -> Prompt:
    """A shipped prompt by name (``openai-v1``), or a path to a ``.md`` file with a ``.json`` schema beside it."""
    path = Path(name)
    if path.suffix == ".md" and path.exists():
        md, schema_path = path, path.with_suffix(".json")
    else:
        folder = Path(str(resources.files("geosample.captions") / "prompts"))
        md, schema_path = folder / f"{name}.md", folder / f"{name}.json"
    if not md.exists() or not schema_path.exists():
        raise ConfigError(f"caption prompt {name!r} not found (needs {md.name} and {schema_path.name})")
    raw_md, raw_schema = md.read_bytes(), schema_path.read_bytes()
    sections = _sections(raw_md.decode("utf-8"))
    if set(sections) != {"system", "user"}:
        raise ConfigError(f"caption prompt {md} needs exactly two sections, '## system' and '## user'")
    return Prompt(
        name=md.stem,
        system=sections["system"],
        user=sections["user"],
        schema=json.loads(raw_schema),
        sha256=hashlib.sha256(raw_md + b"\0" + raw_schema).hexdigest(),
    )


def _sections(text: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip().lower()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {name: "\n".join(lines).strip() for name, lines in out.items()}


def validate_answer(data: Any, n: int) -> tuple[list[str], list[str]]:
    """Captions and tags from a parsed answer; :class:`InvalidAnswer` unless it is exactly as asked."""
    if not isinstance(data, dict):
        raise InvalidAnswer("the answer is not a JSON object")
    captions, tags = data.get("captions"), data.get("tags")
    if not isinstance(captions, list) or len(captions) != n:
        count = len(captions) if isinstance(captions, list) else "no"
        raise InvalidAnswer(f"{count} captions instead of {n}")
    if not all(isinstance(c, str) and c.strip() for c in captions):
        raise InvalidAnswer("a caption is empty or not text")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidAnswer("tags is not a list of strings")
    return [c.strip() for c in captions], [t.strip() for t in tags if t.strip()]


class OpenAICaptioner:
    """Captions from an OpenAI-compatible vision chat model."""

    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        endpoint: str | None = None,
        *,
        api_key_env: str | None = None,
        send_key: bool = True,
        concurrency: int | None = None,
        rpm: int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        seed: int = 0,
        focus: Sequence[str] | str | None = None,
        cache_dir: str | Path | None = None,
        prompt: str = PROMPT,
        change_prompt: str = CHANGE_PROMPT,
        retry_base: float = 1.0,
    ) -> None:
        if not model:
            raise ConfigError(
                "the openai backend needs --model NAME (e.g. gpt-4o-mini, or the model your server serves)"
            )
        variable = api_key_env or DEFAULT_KEY_ENV
        key = os.environ.get(variable, "").strip() if send_key else None
        if send_key and not key:
            raise ConfigError(
                f"no API key for the openai backend: set the environment variable {variable}"
                + ("" if api_key_env else " (or name another one with --api-key-env VAR)")
            )
        self.model = model
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.seed = int(seed)
        self.focus = check_focus(focus)
        self.concurrency = concurrency or 4
        self.prompt = load_prompt(prompt)
        mix = "" if self.focus == FOCUSES else ":" + ",".join(self.focus)
        # Another focus mix asks for other captions: a prompt of its own for resuming and caching.
        self.prompt_sha256 = (
            self.prompt.sha256 if not mix else hashlib.sha256((self.prompt.sha256 + mix).encode()).hexdigest()
        )
        self.change_prompt = load_prompt(change_prompt)
        self.change_prompt_sha256 = self.change_prompt.sha256
        self.cache = CaptionCache(cache_dir)
        self._client = ChatClient(
            self.endpoint,
            key,
            timeout=timeout or 120.0,
            max_retries=6 if max_retries is None else max_retries,
            rpm=rpm,
            concurrency=self.concurrency,
            retry_base=retry_base,
        )

    def __repr__(self) -> str:
        return f"OpenAICaptioner(model={self.model!r}, endpoint={self.endpoint!r})"

    def caption(self, contexts: Sequence[SampleContext], n: int) -> list[list[str]]:
        """``n`` captions per context (an empty list where the model never answered as asked)."""
        return [result.captions for result in self.caption_results(contexts, n)]

    def caption_results(self, contexts: Sequence[SampleContext], n: int) -> list[CaptionResult]:
        """``n`` captions per context with tags, token usage and cache hits."""
        return self._all(self._one, contexts, n)

    def caption_changes(self, contexts: Sequence[ChangeContext], n: int) -> list[CaptionResult]:
        """``n`` change captions per pair: both images, the earlier first, with the change prompt."""
        return self._all(self._one_change, contexts, n)

    def _all(self, one: Callable[[Any, int], CaptionResult], contexts: Sequence[Any], n: int) -> list[CaptionResult]:
        self._client.stop(False)
        if len(contexts) <= 1 or self.concurrency == 1:
            return [one(context, n) for context in contexts]
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="geosample-caption") as pool:
            futures = [pool.submit(one, context, n) for context in contexts]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
                failed = next((f for f in futures if f.done() and f.exception() is not None), None)
                if failed is not None:
                    raise failed.exception()  # type: ignore[misc]
                return [future.result() for future in futures]
            except BaseException:
                # One request failed the run (or the user interrupted it): the others give up instead of retrying.
                self._client.stop()
                for future in futures:
                    future.cancel()
                raise

    def _one(self, context: SampleContext, n: int) -> CaptionResult:
        image = chip_png(context)
        facts = context.to_facts()
        facts.pop("sample_id", None)
        digest = hashlib.sha256(image).hexdigest() if image is not None else None
        return self._ask(context.sample_id, facts, [image], digest, self.prompt, self.focus, n)

    def _one_change(self, context: ChangeContext, n: int) -> CaptionResult:
        images = [chip_png(context.before), chip_png(context.after)]
        facts = context.to_facts()
        for side in ("before", "after"):
            facts[side].pop("sample_id", None)
        digests = [hashlib.sha256(image).hexdigest() if image is not None else "" for image in images]
        digest = hashlib.sha256(":".join(digests).encode()).hexdigest() if any(digests) else None
        label = f"pair {context.before.sample_id} -> {context.after.sample_id}"
        return self._ask(label, facts, images, digest, self.change_prompt, CHANGE_FOCUSES, n)

    def _ask(
        self,
        label: str,
        facts: dict[str, Any],
        images: list[bytes | None],
        image_sha256: str | None,
        prompt: Prompt,
        focuses: Sequence[str],
        n: int,
    ) -> CaptionResult:
        key = cache_key(
            image_sha256=image_sha256,
            facts=facts,
            prompt_sha256=self.prompt_sha256 if prompt is self.prompt else prompt.sha256,
            model=self.model,
            n=n,
            seed=self.seed,
        )
        focus = [focuses[k % len(focuses)] for k in range(n)]
        cached = self.cache.get(key)
        if cached is not None:
            try:
                captions, tags = validate_answer(cached, n)
            except InvalidAnswer:
                cached = None
            else:
                usage = cached.get("usage") or {}
                return CaptionResult(
                    captions, focus, tags, usage.get("prompt_tokens"), usage.get("completion_tokens"), cache_hit=True
                )
        body = {
            "model": self.model,
            "messages": prompt.messages(facts, n, images, focuses),
            "response_format": prompt.response_format(n),
            "seed": self.seed,
        }
        try:
            (captions, tags), usage = self._client.complete(body, lambda data: validate_answer(data, n))
        except AnswersExhausted as exc:
            warnings.warn(
                f"{label if label.startswith('pair ') else 'sample ' + label}: the model never answered as asked "
                f"({exc}); it is left uncaptioned",
                PluginWarning,
                stacklevel=2,
            )
            return CaptionResult([])
        prompt_tokens = _int_or_none(usage.get("prompt_tokens"))
        completion_tokens = _int_or_none(usage.get("completion_tokens"))
        self.cache.put(
            key,
            {
                "captions": captions,
                "tags": tags,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
                "model": self.model,
            },
        )
        return CaptionResult(captions, focus, tags, prompt_tokens, completion_tokens, cache_hit=False)


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
