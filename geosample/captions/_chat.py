"""A small client for OpenAI-compatible Chat Completions: retries, back-off, a request-rate cap.

Retried: HTTP 429 (after ``Retry-After`` when the server sends it), 5xx,
timeouts, dropped connections once the endpoint has answered, and answers
that fail validation (the same request is sent again). Not retried: 401/403
(the key), other 4xx, and a connection that cannot be made before the
endpoint ever answered (a wrong ``--endpoint`` fails at once). The API key is
sent in the ``Authorization`` header and appears nowhere else: not in logs,
exceptions or reprs.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3

from geosample._http import deadline_pool_manager
from geosample.errors import PluginError

log = logging.getLogger("geosample.captions.openai")
T = TypeVar("T")
MAX_WAIT_S = 600.0
"""Longest wait honoured from a ``Retry-After`` header."""


class EndpointError(PluginError, ConnectionError):
    """The model endpoint is unreachable, refuses the key or the request, or keeps failing."""


class InvalidAnswer(ValueError):
    """A response that is not the JSON asked for; the request is sent again."""


class AnswersExhausted(RuntimeError):
    """Every attempt returned an invalid answer (the sample is skipped, the run goes on)."""


class RateLimiter:
    """Spaces request starts at least ``60 / rpm`` seconds apart, across threads."""

    def __init__(self, rpm: int | None) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until this thread may start a request."""
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


class ChatClient:
    """POSTs to ``{endpoint}/chat/completions`` with retries; thread-safe."""

    def __init__(
        self,
        endpoint: str,
        api_key: str | None,
        *,
        timeout: float = 120.0,
        max_retries: int = 6,
        rpm: int | None = None,
        concurrency: int = 4,
        retry_base: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        self.url = f"{endpoint.rstrip('/')}/chat/completions"
        self._headers = {"Content-Type": "application/json"}
        if api_key is not None:  # None: no key at all (a keyless server, or an endpoint the user did not confirm)
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._secret = api_key or ""
        self.max_retries = max_retries
        self.retry_base = retry_base
        self.max_backoff = max_backoff
        self.limiter = RateLimiter(rpm)
        self._pool = deadline_pool_manager(  # each attempt ends within ``timeout``, also on a dripping server
            timeout,
            maxsize=max(1, concurrency),
            block=False,
            retries=False,
            timeout=urllib3.Timeout(connect=min(timeout, 15.0), read=timeout),
        )
        self._answered = threading.Event()
        self._stopped = threading.Event()

    def __repr__(self) -> str:
        return f"ChatClient({self.url!r})"

    def stop(self, stopped: bool = True) -> None:
        """Make requests waiting to retry give up at once (another request already failed the run); or undo that."""
        if stopped:
            self._stopped.set()
        else:
            self._stopped.clear()

    def complete(self, body: dict[str, Any], validate: Callable[[dict[str, Any]], T]) -> tuple[T, dict[str, Any]]:
        """The validated answer and the response's ``usage``, retrying as the module says."""
        payload = json.dumps(body).encode("utf-8")
        problem = "no attempt"
        invalid = False
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(attempt, problem)
            if self._stopped.is_set():
                raise EndpointError(f"caption requests to {self.url} were stopped after another request failed")
            self.limiter.wait()
            try:
                response = self._pool.request("POST", self.url, body=payload, headers=self._headers, redirect=False)
            except urllib3.exceptions.ReadTimeoutError:
                problem, invalid = "timed out", False
                continue
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if not self._answered.is_set():
                    raise EndpointError(
                        f"cannot reach the caption endpoint {self.url} ({_reason(exc)}); "
                        "check --endpoint and that the server is running"
                    ) from None
                problem, invalid = f"connection failed ({_reason(exc)})", False
                continue
            self._answered.set()
            status = response.status
            if status == 200:
                try:
                    data = json.loads(response.data)
                    return _answer(data, validate)
                except (InvalidAnswer, ValueError) as exc:
                    problem, invalid = f"invalid answer ({_scrub(str(exc), self._secret)})", True
                    continue
            invalid = False
            if status == 429 or status >= 500:
                problem = f"HTTP {status}"
                wait = _retry_after(response.headers.get("Retry-After")) if status == 429 else None
                if wait is not None:
                    log.info("caption endpoint asked to wait %.1f s (HTTP 429)", wait)
                    self._stopped.wait(wait)
                    problem = "HTTP 429 (waited as asked)"
                continue
            raise EndpointError(self._refusal(status, response.data))
        if invalid:
            raise AnswersExhausted(f"{self.max_retries + 1} attempts, the last: {problem}")
        raise EndpointError(
            f"the caption endpoint {self.url} kept failing ({problem}) after {self.max_retries + 1} attempts; "
            "try again later, or lower --concurrency / --rpm"
        )

    def _sleep(self, attempt: int, problem: str) -> None:
        if problem == "HTTP 429 (waited as asked)":
            return
        delay = min(self.max_backoff, self.retry_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        log.info("retrying a caption request in %.2f s (attempt %d, %s)", delay, attempt + 1, problem)
        self._stopped.wait(delay)

    def _refusal(self, status: int, data: bytes) -> str:
        if status in (401, 403) and not self._secret:
            return (
                f"the caption endpoint {self.url} refused the request (HTTP {status}); no API key was sent to it "
                "(a config file chose this endpoint, or send_key is false): give --endpoint with its URL on the "
                "command line to send the key"
            )
        if status in (401, 403):
            return (
                f"the caption endpoint {self.url} refused the API key (HTTP {status}); "
                "check the key in the environment variable (--api-key-env, default OPENAI_API_KEY)"
            )
        if status == 404:
            return (
                f"the caption endpoint answered HTTP 404 for {self.url}; check --endpoint (the API's base URL, "
                "e.g. https://api.openai.com/v1) and --model"
            )
        message = _error_message(data)
        return (
            f"the caption endpoint {self.url} rejected the request (HTTP {status}"
            f"{': ' + _scrub(message, self._secret) if message else ''}); check --model and that it accepts images"
        )


def _answer(data: Any, validate: Callable[[dict[str, Any]], T]) -> tuple[T, dict[str, Any]]:
    try:
        choice = data["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise InvalidAnswer("no choices[0].message.content in the response") from None
    if choice.get("finish_reason") == "length":
        raise InvalidAnswer("the answer was cut off (finish_reason: length)")
    if not isinstance(content, str):
        raise InvalidAnswer("the message content is not text")
    try:
        parsed = json.loads(content)
    except ValueError:
        raise InvalidAnswer("the message content is not JSON") from None
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return validate(parsed), usage


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_WAIT_S)


def _error_message(data: bytes) -> str:
    try:
        error = json.loads(data).get("error", {})
        message = error.get("message", "") if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        message = data[:200].decode("utf-8", "replace")
    return " ".join(str(message).split())[:200]


def _scrub(text: str, secret: str) -> str:
    """Text with the key (and any long piece of it) masked, in case a server echoes it."""
    if secret:
        text = text.replace(secret, "***")
        for size in (16, 8):
            for start in range(0, max(0, len(secret) - size + 1)):
                piece = secret[start : start + size]
                if piece in text:
                    text = text.replace(piece, "***")
    return text


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", None) or exc)
    for known in ("Connection refused", "Name or service not known", "nodename nor servname", "timed out",
                  "No route to host", "Network is unreachable", "Connection reset"):  # fmt: skip
        if known.lower() in text.lower():
            return known.lower()
    return type(exc).__name__
