"""An OpenAI-protocol Chat Completions server on loopback, for the ``openai`` backend tests.

It answers ``POST /v1/chat/completions`` as the real API does: a
``chat.completion`` object whose ``choices[0].message.content`` is a JSON
string, and ``usage``. Captions are made from the facts in the request, so
each sample gets its own. ``script`` queues misbehaviours, one per request,
before normal answers resume: ``("status", 429, {"Retry-After": "1"})``,
``("status", 500)``, ``("malformed",)`` (content that is not JSON),
``("wrong_count",)``, ``("garbage",)`` (a body that is not JSON),
``("drop",)`` (close the connection without answering). Every request is
recorded with its headers, body and arrival time.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

_FACTS = re.compile(r"```json\n(.*?)\n```", re.S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float

    @property
    def user_text(self) -> str:
        content = self.body["messages"][1]["content"]
        return content if isinstance(content, str) else next(p["text"] for p in content if p["type"] == "text")

    @property
    def facts(self) -> dict[str, Any]:
        return json.loads(_FACTS.search(self.user_text).group(1))

    @property
    def image(self) -> bytes | None:
        images = self.images
        return images[0] if images else None

    @property
    def images(self) -> list[bytes]:
        """Every image of the user message, in order (a change request sends the earlier image first)."""
        content = self.body["messages"][1]["content"]
        if isinstance(content, str):
            return []
        out = []
        for url in (p["image_url"]["url"] for p in content if p["type"] == "image_url"):
            head, data = url.split(",", 1)
            assert head == "data:image/png;base64"
            out.append(base64.b64decode(data))
        return out


@dataclass
class OpenAIServer:
    api_key: str
    port: int = field(default_factory=free_port)
    delay: float = 0.0
    script: list[tuple] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._httpd: http.server.ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    step = server.script.pop(0) if server.script else ("ok",)
                    server.requests.append(Request(self.path, dict(self.headers), json.loads(raw), time.monotonic()))
                try:
                    if server.delay:
                        time.sleep(server.delay)
                    server._answer(self, step, json.loads(raw))
                finally:
                    with server._lock:
                        server.in_flight -= 1

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def _send(self, handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes,
              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)

    def _answer(self, handler: http.server.BaseHTTPRequestHandler, step: tuple, body: dict[str, Any]) -> None:
        if handler.path != "/v1/chat/completions":
            self._send(handler, 404, json.dumps({"error": {"message": "Not found"}}).encode())
            return
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            got = handler.headers.get("Authorization", "")[7:]
            # The real API echoes part of the key it refuses.
            message = f"Incorrect API key provided: {got[:8]}***{got[-4:]}. You can find your API key at ..."
            self._send(handler, 401, json.dumps({"error": {"message": message, "code": "invalid_api_key"}}).encode())
            return
        kind = step[0]
        if kind == "status":
            payload = json.dumps({"error": {"message": f"scripted {step[1]}", "type": "server_error"}}).encode()
            self._send(handler, step[1], payload, step[2] if len(step) > 2 else None)
            return
        if kind == "garbage":
            self._send(handler, 200, b"<html>bad gateway</html>")
            return
        if kind == "drop":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        n = body["response_format"]["json_schema"]["schema"]["properties"]["captions"]["minItems"]
        captions = self.captions(Request(handler.path, {}, body, 0.0), n)
        if kind == "wrong_count":
            captions = captions[:-1]
        content = "this is not JSON {" if kind == "malformed" else json.dumps({"captions": captions, "tags": ["test"]})
        prompt_tokens = len(json.dumps(body["messages"])) // 4
        completion_tokens = sum(len(c.split()) for c in captions) + 5
        answer = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }  # fmt: skip
        self._send(handler, 200, json.dumps(answer).encode())

    @staticmethod
    def captions(request: Request, n: int) -> list[str]:
        facts = request.facts
        if "before" in facts:  # a change request: the pair's facts
            where = facts["after"]["location"]
            return [
                f"Change caption {k + 1} of {n} for the pair at {where['lat']:.5f}, {where['lon']:.5f} "
                f"({facts['dates']['before']} to {facts['dates']['after']})."
                for k in range(n)
            ]
        where = facts["location"]
        return [
            f"Caption {k + 1} of {n} for the chip at {where['lat']:.5f}, {where['lon']:.5f} "
            f"in {where['country'] or 'no country'}."
            for k in range(n)
        ]
