"""A small STAC API on loopback that says exactly what a test tells it to, however hostile.

Unlike ``rustac serve``, which rewrites asset hrefs, it serves items verbatim
(``file:///...``, ``/abs/path.tif``, ``../../x.tif``, ``/vsicurl/...``), and it
misbehaves on request: ``--drip PATH`` answers PATH one byte at a time
(headers sent, the body never finished), ``--drop PATH=N`` cuts the body of
the first N answers on PATH halfway (the connection closes after the
headers and half the promised bytes). ``/_hits`` counts requests per path.
Paths are matched by prefix, so ``--drip /v1`` also drips an OpenAI-style
``/v1/chat/completions``; ``--drip-headers PATH`` sends the status line, then header lines
that never end. Run in its own process (see :class:`HostileStac`);
it stops when its parent goes.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

DRIP_SECONDS = 60.0
"""A dripping answer gives up after this long, so a client without a deadline fails a test instead of hanging it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HostileStac:
    """The server in a child process: ``with HostileStac(items=[...], drip=["/"], folder=tmp) as server: ...``."""

    def __init__(
        self, *, items: list[dict[str, Any]] = (), collection: str = "hostile", drip: list[str] = (),
        drip_headers: list[str] = (), drop: dict[str, int] | None = None, folder: Path,
    ) -> None:  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        spec = folder / f"hostile-{self.port}.json"
        spec.write_text(json.dumps({"items": list(items), "collection": collection, "drip": list(drip),
                                    "drip_headers": list(drip_headers), "drop": dict(drop or {})}))  # fmt: skip
        self.args = [sys.executable, __file__, str(spec), "--port", str(self.port)]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> HostileStac:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_hits", timeout=1):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.proc.stderr.read().decode(errors="replace")[-2000:]) from None
                if time.monotonic() > deadline:
                    raise RuntimeError("the hostile STAC server did not start") from None
                time.sleep(0.05)

    def hits(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/_hits", timeout=5) as resp:
            return json.loads(resp.read())

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def _serve(spec: dict[str, Any], port: int) -> None:
    url = f"http://127.0.0.1:{port}"
    name = spec["collection"]
    hits: Counter[str] = Counter()
    lock = threading.Lock()
    landing = {
        "type": "Catalog", "id": "hostile", "stac_version": "1.0.0", "description": "serves what it is told",
        "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search",
                       "https://api.stacspec.org/v1.0.0/collections"],
        "links": [
            {"rel": "self", "href": f"{url}/", "type": "application/json"},
            {"rel": "root", "href": f"{url}/", "type": "application/json"},
            {"rel": "data", "href": f"{url}/collections", "type": "application/json"},
            {"rel": "search", "href": f"{url}/search", "type": "application/geo+json", "method": "POST"},
            {"rel": "search", "href": f"{url}/search", "type": "application/geo+json", "method": "GET"},
        ],
    }  # fmt: skip
    collection = {
        "type": "Collection", "id": name, "stac_version": "1.0.0", "description": "hostile", "license": "other",
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
        "links": [{"rel": "self", "href": f"{url}/collections/{name}"}, {"rel": "root", "href": f"{url}/"}],
    }  # fmt: skip
    items = {"type": "FeatureCollection", "features": spec["items"], "links": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self._answer()

        def _answer(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/_hits":
                with lock:
                    return self._send(dict(hits))
            with lock:
                hits[path] += 1
                count = hits[path]
            if any(path.startswith(p) for p in spec["drip"]):
                return self._drip()
            if any(path.startswith(p) for p in spec["drip_headers"]):
                return self._drip(headers=True)
            if path in ("/", ""):
                body: Any = landing
            elif path == "/collections":
                body = {"collections": [collection], "links": []}
            elif path == f"/collections/{name}":
                body = collection
            elif path.startswith("/search") or path.startswith(f"/collections/{name}/items"):
                body = items
            else:
                return self._send({"code": "NotFound"}, 404)
            cut = spec["drop"].get(path, 0) >= count
            self._send(body, cut=cut)

        def _send(self, payload: Any, status: int = 200, cut: bool = False) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if cut:  # half the promised body, then the connection goes
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data)

        def _drip(self, headers: bool = False) -> None:
            if headers:  # a status line, then header lines that never end
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "100000")
                self.end_headers()
            started = time.monotonic()
            try:
                while time.monotonic() - started < DRIP_SECONDS:
                    self.wfile.write(b"X-Drip: 1\r\n" if headers else b" ")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            self.close_connection = True

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass

    Server(("127.0.0.1", port), Handler).serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec", type=Path)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    parent = os.getppid()

    def watch() -> None:  # go when the test run goes
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    _serve(json.loads(args.spec.read_text()), args.port)


if __name__ == "__main__":
    main()
