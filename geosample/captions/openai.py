"""The ``openai`` backend: captions from any OpenAI-compatible Chat Completions endpoint with vision.

For each sample it sends the chip preview (a base64 PNG data URL) and the
sample's facts with a versioned prompt (``prompts/openai-v1.md``), asks for
strict JSON (``response_format`` with the schema in ``prompts/openai-v1.json``:
``n`` captions and tags), validates the answer, and caches it under
``DS/.cache/captions/`` keyed by the image hash, facts, prompt hash, model,
``n`` and seed, so a re-run sends nothing. Requests run on ``concurrency``
threads, at most ``rpm`` per minute, with the retries of :mod:`._chat`.
The key comes from an environment variable and is never logged or written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import string
import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from geosample.captions._cache import CaptionCache, cache_key
from geosample.captions._chat import AnswersExhausted, ChatClient, EndpointError, InvalidAnswer
from geosample.captions._preview import chip_png
from geosample.captions.base import CaptionResult
from geosample.captions.context import SampleContext
from geosample.captions.template import FOCUSES
from geosample.errors import ConfigError, PluginWarning

__all__ = ["DEFAULT_ENDPOINT", "EndpointError", "OpenAICaptioner", "Prompt", "load_prompt"]

DEFAULT_ENDPOINT = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
PROMPT = "openai-v1"


@dataclass(frozen=True)
class Prompt:
    """A versioned prompt: system and user message templates and the JSON schema of the answer."""

    name: str
    system: str
    user: str
    schema: dict[str, Any]
    sha256: str
    """Of the prompt file and the schema file, as read."""

    def messages(self, facts: dict[str, Any], n: int, image: bytes | None) -> list[dict[str, Any]]:
        """The chat messages for one sample."""
        focuses = ", ".join(FOCUSES[k % len(FOCUSES)] for k in range(n))
        text = string.Template(self.user).safe_substitute(
            n=n, focuses=focuses, facts=json.dumps(facts, ensure_ascii=False, separators=(",", ":"))
        )
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if image is not None:
            url = "data:image/png;base64," + base64.b64encode(image).decode("ascii")
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
        concurrency: int | None = None,
        rpm: int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        prompt: str = PROMPT,
        retry_base: float = 1.0,
    ) -> None:
        if not model:
            raise ConfigError(
                "the openai backend needs --model NAME (e.g. gpt-4o-mini, or the model your server serves)"
            )
        variable = api_key_env or DEFAULT_KEY_ENV
        key = os.environ.get(variable, "").strip()
        if not key:
            raise ConfigError(
                f"no API key for the openai backend: set the environment variable {variable}"
                + ("" if api_key_env else " (or name another one with --api-key-env VAR)")
            )
        self.model = model
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.seed = int(seed)
        self.concurrency = concurrency or 4
        self.prompt = load_prompt(prompt)
        self.prompt_sha256 = self.prompt.sha256
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
        self._client.stop(False)
        if len(contexts) <= 1 or self.concurrency == 1:
            return [self._one(context, n) for context in contexts]
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="geosample-caption") as pool:
            futures = [pool.submit(self._one, context, n) for context in contexts]
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
        key = cache_key(
            image_sha256=hashlib.sha256(image).hexdigest() if image is not None else None,
            facts=facts,
            prompt_sha256=self.prompt_sha256,
            model=self.model,
            n=n,
            seed=self.seed,
        )
        focus = [FOCUSES[k % len(FOCUSES)] for k in range(n)]
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
            "messages": self.prompt.messages(facts, n, image),
            "response_format": self.prompt.response_format(n),
            "seed": self.seed,
        }
        try:
            (captions, tags), usage = self._client.complete(body, lambda data: validate_answer(data, n))
        except AnswersExhausted as exc:
            warnings.warn(
                f"sample {context.sample_id}: the model never answered as asked ({exc}); it is left uncaptioned",
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
