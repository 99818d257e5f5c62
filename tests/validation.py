"""``geosample validate`` for the datasets the tests build, and ``rustac validate`` pointed at the bundled schemas.

rustac fetches each extension schema over HTTPS (reqwest, honouring
``HTTPS_PROXY``, trusting the CAs of ``SSL_CERT_FILE``). :func:`schema_proxy`
is a loopback HTTPS proxy that answers those requests from the schemas
bundled in ``geosample/data/schemas`` with a throwaway CA made by ``trustme``,
so rustac validates offline against exactly the files geosample ships. A URL
that is not bundled gets a 404 and is recorded.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from geosample.cli import main
from geosample.validate._schemas import bundled_urls, schema

RUSTAC = Path(sys.executable).with_name("rustac")


def assert_valid(ds: Path) -> None:
    """``geosample validate DS`` through the real entry point: exit status 0, or the problems as the failure."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(["validate", str(ds)])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    assert code == 0, f"geosample validate {ds} found problems:\n{out.getvalue()}{err.getvalue()}"


class SchemaProxy:
    """A loopback HTTPS proxy serving the bundled schemas; ``env`` points rustac at it."""

    def __init__(self, folder: Path) -> None:
        import trustme

        hosts = sorted({urlparse(url).hostname for url in bundled_urls()} | {"json-schema.org"})
        ca = trustme.CA()
        self.ca_file = folder / "schema-proxy-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*hosts).configure_cert(self.context)
        self.served: list[str] = []
        self.missing: list[str] = []
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def env(self) -> dict[str, str]:
        """Environment for a rustac subprocess: the proxy for HTTPS, its CA trusted, nothing else proxied."""
        return {"HTTPS_PROXY": f"http://127.0.0.1:{self.port}", "https_proxy": f"http://127.0.0.1:{self.port}",
                "SSL_CERT_FILE": str(self.ca_file), "NO_PROXY": "", "no_proxy": ""}  # fmt: skip

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError), conn:
            conn.settimeout(30)
            head = conn.makefile("rb")
            request = head.readline().decode("latin-1").split()
            while head.readline() not in (b"\r\n", b"\n", b""):
                pass
            if len(request) < 2 or request[0] != "CONNECT":
                conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host = request[1].split(":")[0]
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with self.context.wrap_socket(conn, server_side=True) as tls:
                reader = tls.makefile("rb")
                line = reader.readline().decode("latin-1").split()
                while reader.readline() not in (b"\r\n", b"\n", b""):
                    pass
                url = f"https://{host}{line[1] if len(line) > 1 else '/'}"
                body, status = self._body(url)
                tls.sendall(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n".encode()
                    + body
                )

    def _body(self, url: str) -> tuple[bytes, str]:
        key = url.rstrip("#")
        if key in bundled_urls():
            self.served.append(key)
            return json.dumps(schema(key)).encode(), "200 OK"
        if key.startswith("https://json-schema.org/draft-07/schema") or key.startswith("http://json-schema.org"):
            from jsonschema_specifications import REGISTRY

            return json.dumps(REGISTRY["http://json-schema.org/draft-07/schema"].contents).encode(), "200 OK"
        self.missing.append(url)
        return b"{}", "404 Not Found"

    def close(self) -> None:
        """Stop accepting connections."""
        self.socket.close()


@contextlib.contextmanager
def schema_proxy(folder: Path) -> Iterator[SchemaProxy]:
    """A running :class:`SchemaProxy`, closed at the end."""
    proxy = SchemaProxy(folder)
    try:
        yield proxy
    finally:
        proxy.close()


def rustac_validate(path: Path, proxy: SchemaProxy) -> subprocess.CompletedProcess[str]:
    """``rustac validate PATH`` with the schemas served by ``proxy``."""
    import os

    env = {**os.environ, **proxy.env}
    return subprocess.run(
        [str(RUSTAC), "validate", str(path)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
