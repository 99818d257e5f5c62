"""Loopback servers for the fetch tests (and the benchmark), each in its own process.

* ``FileServer``: a folder over HTTP/1.1 with keep-alive, HEAD and byte-range GETs, so GDAL reads
  through its network path. Tests steer it through ``/_control`` (missing files, failures, delays,
  SAS-like tokens that expire) and read ``/_hits``.
* ``FaultProxy``: a reverse proxy that answers 429 or 500, or drops the connection, at random.
* ``rustac_serve``: a STAC API from ``rustac serve`` (in-memory backend).

The servers run in child processes, never in the test's own: GDAL makes some requests while
rasterio holds the GIL, which would stall a server thread in the same interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(url: str, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                raise RuntimeError(f"{what} exited: {err}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start within {timeout:.0f} s") from None
            time.sleep(0.05)


def _post(url: str, payload: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


class _Process:
    """A server script run as ``python servers.py ...`` on a free port."""

    def __init__(self, args: list[str], port: int | None, what: str) -> None:
        self.port = port or free_port()
        self.args = args
        self.what = what
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Any:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, *self.args, "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _wait_for(f"{self.url}/_hits", self.proc, self.what)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Kill the server at once (as a crash would)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class FileServer(_Process):
    """A folder over HTTP with Range requests, steerable from the test."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        super().__init__(["files", str(root)], port, "file server")
        self.root = Path(root)

    def control(self, **settings: Any) -> None:
        """Set ``missing`` (paths), ``delay`` (s), ``fail`` and ``token_ttl`` (s or None).

        ``fail`` is {pattern, status, count, skip}: after letting ``skip`` matching requests through
        (0 if absent), answer the next ``count`` with ``status``.
        """
        _post(f"{self.url}/_control", settings)

    def reset(self) -> None:
        _post(f"{self.url}/_control", {"reset": True})

    def hits(self) -> dict[str, Any]:
        """``{"paths": {path: requests}, "forbidden": n, "log": [[t, path, token_age], ...]}``."""
        with urllib.request.urlopen(f"{self.url}/_hits", timeout=10) as resp:
            return json.loads(resp.read())


class FaultProxy(_Process):
    """A reverse proxy to ``target`` answering 429/500 or dropping connections with the given odds."""

    def __init__(self, target: str, *, p429: float = 0.0, p500: float = 0.0, pdrop: float = 0.0, seed: int = 0):
        args = ["proxy", target, "--p429", str(p429), "--p500", str(p500), "--pdrop", str(pdrop), "--seed", str(seed)]
        super().__init__(args, None, "fault proxy")

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/_hits", timeout=10) as resp:
            return json.loads(resp.read())


@contextlib.contextmanager
def rustac_serve(*hrefs: Path, port: int | None = None) -> Iterator[str]:
    """A STAC API from ``rustac serve`` (in-memory backend) on a free loopback port."""
    exe = shutil.which("rustac") or str(Path(sys.executable).parent / "rustac")
    if not Path(exe).exists():
        raise RuntimeError("the rustac command is not installed; pip install rustac")
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    # Supervised by this script, so that rustac goes when the test run goes, however it ends.
    proc = subprocess.Popen(
        [sys.executable, __file__, "supervise", exe, "serve", "--addr", f"127.0.0.1:{port}", *map(str, hrefs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "RUST_LOG": "error"},
    )
    try:
        _wait_for(f"{url}/", proc, "rustac serve")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- the server processes


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients (GDAL) abort transfers they no longer need; that is not an error here


def _serve_files(root: Path, port: int) -> None:
    state: dict[str, Any] = {"missing": set(), "delay": 0.0, "fail": None, "token_ttl": None}
    hits: Counter[str] = Counter()
    log: list[list[Any]] = []
    counters = {"forbidden": 0}
    lock = threading.Lock()
    root = root.resolve()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _json(self, payload: Any, status: int = 200) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"{}")
            with lock:
                if payload.get("reset"):
                    state.update(missing=set(), delay=0.0, fail=None, token_ttl=None)
                    hits.clear()
                    log.clear()
                    counters["forbidden"] = 0
                for key in ("delay", "fail", "token_ttl"):
                    if key in payload:
                        state[key] = payload[key]
                if "missing" in payload:
                    state["missing"] = set(payload["missing"])
            self._json({"ok": True})

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            if self.path == "/_hits":
                with lock:
                    return self._json({"paths": dict(hits), "forbidden": counters["forbidden"], "log": log})
            self._serve(body=True)

        def _fail(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, body: bool) -> None:
            path, _, query = self.path.partition("?")
            rel = path.lstrip("/")
            now = time.time()
            token = parse_qs(query).get("token", [None])[0]
            with lock:
                hits[rel] += 1
                delay, fail, ttl = state["delay"], state["fail"], state["token_ttl"]
                missing = rel in state["missing"]
                matching = fail is not None and fail["pattern"] in rel
                if matching and fail.get("skip", 0) > 0:  # let the first few requests through
                    fail["skip"] -= 1
                    matching = False
                failing = matching and fail["count"] > 0
                if failing:
                    fail["count"] -= 1
            if delay:
                time.sleep(delay)
            if failing:
                return self._fail(int(fail["status"]))
            if ttl is not None:
                # A SAS-like token: "<issued unix time>"; valid for ttl seconds.
                age = None if token is None else now - float(token)
                with lock:
                    log.append([now, rel, age])
                if age is None or age > ttl or age < -1:
                    with lock:
                        counters["forbidden"] += 1
                    return self._fail(403)
            file = (root / rel).resolve()
            if missing or root not in file.parents or not file.is_file():
                return self._fail(404)
            size = file.stat().st_size
            start, end, status = 0, size - 1, 200
            header = self.headers.get("Range")
            match = _RANGE.match(header.strip()) if header else None
            if match and (match.group(1) or match.group(2)):
                if match.group(1):
                    start = int(match.group(1))
                    end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                else:
                    start = max(0, size - int(match.group(2)))
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                status = 206
            self.send_response(status)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "image/tiff")
            self.send_header("Content-Length", str(end - start + 1))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if body:
                with open(file, "rb") as fh:
                    fh.seek(start)
                    self.wfile.write(fh.read(end - start + 1))

    _Server(("127.0.0.1", port), Handler).serve_forever()


def _serve_proxy(target: str, port: int, p429: float, p500: float, pdrop: float, seed: int) -> None:
    rng = random.Random(seed)
    faults: Counter[str] = Counter()
    lock = threading.Lock()
    host, tport = target.removeprefix("http://").rstrip("/").split(":")
    upstream, mine = f"http://{host}:{tport}".encode(), f"http://127.0.0.1:{port}".encode()

    def draw() -> str:
        with lock:
            r = rng.random()
            kind = "429" if r < p429 else "500" if r < p429 + p500 else "drop" if r < p429 + p500 + pdrop else "ok"
            faults[kind] += 1
            return kind

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._relay()

        def do_GET(self) -> None:
            if self.path == "/_hits":
                with lock:
                    body = json.dumps(dict(faults)).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self._relay()

        def do_POST(self) -> None:
            self._relay()

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else None
            kind = draw()
            if kind == "drop":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if kind in ("429", "500"):
                body = b'{"code":"fault","description":"injected"}'
                self.send_response(int(kind))
                if kind == "429":
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                return
            skip = ("host", "connection", "upgrade", "http2-settings", "keep-alive")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
            conn = http.client.HTTPConnection(host, int(tport), timeout=60)
            try:
                conn.request(self.command, self.path, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
            except OSError:
                self.close_connection = True
                return
            finally:
                conn.close()
            if (resp.getheader("Content-Type") or "").startswith(("application/json", "application/geo+json")):
                payload = payload.replace(upstream, mine)  # links must lead back through the proxy
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "keep-alive"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

    _Server(("127.0.0.1", port), Handler).serve_forever()


def _exit_with_parent() -> None:
    """Stop when the process that started this server is gone (a killed test run leaves no orphan)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _supervise(command: list[str]) -> None:
    child = subprocess.Popen(command)
    parent = os.getppid()

    def stop(*_: object) -> None:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    while child.poll() is None:
        if os.getppid() != parent:
            child.terminate()
            break
        time.sleep(0.2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(5)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "supervise":
        _supervise(argv[1:])
        return
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="kind", required=True)
    files = sub.add_parser("files")
    files.add_argument("root", type=Path)
    files.add_argument("--port", type=int, required=True)
    proxy = sub.add_parser("proxy")
    proxy.add_argument("target")
    proxy.add_argument("--port", type=int, required=True)
    for name in ("--p429", "--p500", "--pdrop"):
        proxy.add_argument(name, type=float, default=0.0)
    proxy.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    _exit_with_parent()
    if args.kind == "files":
        _serve_files(args.root, args.port)
    else:
        _serve_proxy(args.target, args.port, args.p429, args.p500, args.pdrop, args.seed)


if __name__ == "__main__":
    main()
