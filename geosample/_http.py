"""A total deadline for every HTTP request: connect, headers and body together.

urllib3's and requests' timeouts bound each socket operation, so a server that
sends one byte every few seconds keeps a request alive for ever. Here every
attempt starts a watchdog timer when it takes its connection from the pool;
when the deadline passes before the answer is complete, the watchdog shuts
the socket down, the blocked read returns, and the attempt fails as a
timeout ("no complete answer within N s") that the caller retries like any
other. The timer stops when the connection goes back to the pool.

Before there is a socket to shut, the deadline is kept by the connection
itself (:class:`_DeadlineConnection`): the host name is resolved on a helper
thread that the attempt waits for only until the deadline (``getaddrinfo``
cannot be interrupted, and the system resolver's own limit, ``timeout`` ×
``attempts`` of ``resolv.conf`` per name server, is not ours), and each
address is tried with a connect timeout no longer than what is left of the
deadline. So the whole attempt, name resolution included, ends within the
deadline (plus the scheduling of a thread); a resolver that never answers
leaves only its helper thread waiting, which ends when the resolver gives up.

- :func:`deadline_pool_manager`: a ``urllib3.PoolManager`` whose pools do this
  (the OpenAI-compatible caption client).
- :class:`DeadlineAdapter`: the same for ``requests`` (pystac-client's
  ``StacApiIO``), which also retries answers whose body was cut off (a dropped
  connection after the headers), as urllib3 retries only until the headers.
- :func:`stac_api_io`: pystac-client's ``StacApiIO`` with the adapter mounted
  before the landing page is opened, which follows only http(s) links (a
  hostile API cannot make it read local files through a ``file:`` link).

Asset reads go through GDAL, whose ``GDAL_HTTP_TIMEOUT`` is already a total
per-request limit (curl's ``CURLOPT_TIMEOUT``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from typing import Any

import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError
from urllib3.util.connection import allowed_gai_family

__all__ = ["DeadlineAdapter", "deadline_pool_manager", "stac_api_io"]

_local = threading.local()


class _Watch:
    """One attempt's watchdog: after ``seconds``, shut down the socket of the connection it watches."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.fired = False
        self.conn: Any = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def start(self) -> None:
        self.ends = time.monotonic() + self.seconds
        self._timer.start()

    def left(self) -> float:
        """Seconds left before the deadline (0 when it has passed)."""
        return max(0.0, self.ends - time.monotonic())

    def attach(self, conn: Any) -> None:
        with self._lock:
            self.conn = conn

    def cancel(self) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            sock = getattr(self.conn, "sock", None)
            if sock is None:
                return
            self.fired = True
            # The base class's shutdown: for a TLS socket, cut the file descriptor without a TLS goodbye.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _stack() -> list[_Watch]:
    stack = getattr(_local, "watches", None)
    if stack is None:
        stack = _local.watches = []
    return stack


class _DeadlinePool:
    """Mixin for urllib3 connection pools: a watchdog per attempt (see the module docstring)."""

    deadline: float = 60.0

    def _watched(self) -> dict[int, _Watch]:
        watched = self.__dict__.get("_geosample_watched")
        if watched is None:
            watched = self.__dict__["_geosample_watched"] = {}
        return watched

    def urlopen(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        watch = _Watch(self.deadline)
        stack = _stack()
        stack.append(watch)
        watch.start()
        try:
            response = super().urlopen(method, url, *args, **kwargs)  # type: ignore[misc]
            if watch.fired:  # a cut can look like a complete answer (headers or a body read to the end)
                response.release_conn()
                raise urllib3.exceptions.ProtocolError("cut at the deadline")
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            watch.cancel()
            if watch.fired:
                raise urllib3.exceptions.ReadTimeoutError(
                    self,  # type: ignore[arg-type]
                    url,
                    f"no complete answer within the deadline of {self.deadline:g} s",
                ) from None
            raise exc
        finally:
            stack.pop()
        with contextlib.suppress(AttributeError):
            response._geosample_watch = watch
        return response

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        stack = _stack()
        if stack:
            stack[-1].attach(conn)
            self._watched()[id(conn)] = stack[-1]
        return conn

    def _put_conn(self, conn: Any) -> None:
        watched = self._watched()
        watch = watched.pop(id(conn), None) if conn is not None else None
        if watch is None:
            stack = _stack()
            watch = stack[-1] if stack else None
            for key in [k for k, w in watched.items() if w is watch]:
                del watched[key]
        if watch is not None:
            watch.cancel()
        super()._put_conn(conn)  # type: ignore[misc]


class _DeadlineConnection:
    """Mixin for urllib3 connections: name resolution and connecting within the attempt's deadline."""

    def _new_conn(self) -> socket.socket:
        stack = _stack()
        watch = stack[-1] if stack and stack[-1].conn is self else None
        if watch is None:
            return super()._new_conn()  # type: ignore[misc]
        host, port, timeout = self._dns_host, self.port, self.timeout  # type: ignore[attr-defined]
        try:
            addresses = _resolve(host.strip("[]"), port, watch)
        except TimeoutError:
            name = self.host  # type: ignore[attr-defined]
            raise ConnectTimeoutError(
                self, f"resolving {name} timed out: no address within the deadline of {watch.seconds:g} s"
            ) from None
        except (OSError, UnicodeError) as exc:  # no such name, or not one (a label too long for IDNA)
            raise urllib3.exceptions.NameResolutionError(self.host, self, exc) from None  # type: ignore[attr-defined,arg-type]
        failure: Exception | None = None
        try:
            for address in addresses:
                left = watch.left()
                if left <= 0:
                    break
                # Connect to the address found (the Host header, SNI and certificate check still use the name).
                self._dns_host = address
                self.timeout = left if not isinstance(timeout, int | float) else min(timeout, left)
                try:
                    return super()._new_conn()  # type: ignore[misc]
                except ConnectTimeoutError as exc:  # refused, unreachable or timed out: the next address
                    failure = exc
        finally:
            self._dns_host, self.timeout = host, timeout
        if failure is not None and watch.left() > 0:
            raise failure
        name = self.host  # type: ignore[attr-defined]
        raise ConnectTimeoutError(
            self, f"connecting to {name} timed out: not connected within the deadline of {watch.seconds:g} s"
        ) from failure


def _resolve(host: str, port: int, watch: _Watch) -> list[str]:
    """The addresses of ``host``, looked up on a helper thread within what is left of ``watch``'s deadline.

    Raises:
        TimeoutError: No answer before the deadline (the helper thread waits on alone).
        socket.gaierror: The name does not resolve.
    """
    try:
        ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 address may carry its zone: fe80::1%eth0
    except ValueError:
        pass
    else:
        return [host]  # an address already: nothing to look up
    answer: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            answer.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name="geosample-resolve", daemon=True).start()
    if not done.wait(watch.left()):
        raise TimeoutError(host)
    if isinstance(answer[0], BaseException):
        raise answer[0]
    addresses = list(dict.fromkeys(str(info[4][0]) for info in answer[0]))
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, "getaddrinfo returned no address")
    return addresses


class _HTTPConnection(_DeadlineConnection, HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnection, HTTPSConnection):
    pass


def _pool_classes(deadline: float) -> dict[str, type]:
    attrs = {"deadline": float(deadline)}
    http = {**attrs, "ConnectionCls": _HTTPConnection}
    https = {**attrs, "ConnectionCls": _HTTPSConnection}
    return {
        "http": type("DeadlineHTTPConnectionPool", (_DeadlinePool, HTTPConnectionPool), http),
        "https": type("DeadlineHTTPSConnectionPool", (_DeadlinePool, HTTPSConnectionPool), https),
    }


def deadline_pool_manager(deadline: float, **kwargs: Any) -> urllib3.PoolManager:
    """A ``urllib3.PoolManager`` whose every request attempt ends within ``deadline`` seconds."""
    manager = urllib3.PoolManager(**kwargs)
    manager.pool_classes_by_scheme = _pool_classes(deadline)  # type: ignore[assignment]
    return manager


def _cut_short(exc: BaseException, response: Any) -> bool:
    """Whether a failed attempt is worth another: a cut deadline or a body dropped after the headers."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False  # urllib3 retried the connection already
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError):
            return False
    return isinstance(
        exc,
        requests.exceptions.ConnectionError | requests.exceptions.Timeout | requests.exceptions.ChunkedEncodingError,
    )


class DeadlineAdapter(HTTPAdapter):
    """A ``requests`` adapter with a total deadline per attempt, that retries cut-off answers.

    urllib3 (``max_retries``) retries connection failures and throttling or
    server errors (429, 5xx); this adapter adds up to ``read_retries`` more
    attempts, with backoff, for answers cut off by the deadline or by a dropped
    connection, headers or body.
    """

    __attrs__ = [*HTTPAdapter.__attrs__, "deadline", "read_retries", "backoff"]

    def __init__(
        self, deadline: float = 60.0, read_retries: int = 5, backoff: float = 0.5, **kwargs: Any
    ) -> None:  # fmt: skip
        self.deadline = float(deadline)
        self.read_retries = int(read_retries)
        self.backoff = float(backoff)
        super().__init__(**kwargs)
        if self.max_retries.read:  # cut-off answers are retried here, with the body
            self.max_retries = self.max_retries.new(read=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.deadline)

    def send(self, request: Any, stream: bool = False, timeout: Any = None, **kwargs: Any) -> Any:  # noqa: D102
        import requests

        if timeout is None or isinstance(timeout, int | float):
            timeout = (min(self.deadline, 15.0), self.deadline)
        for attempt in range(self.read_retries + 1):
            response = None
            try:
                response = super().send(request, stream=stream, timeout=timeout, **kwargs)
                if not stream:
                    response.content  # noqa: B018 - read the body now, under the deadline and the retries
                    if getattr(getattr(response.raw, "_geosample_watch", None), "fired", False):
                        raise requests.exceptions.ChunkedEncodingError("cut at the deadline", request=request)
                return response
            except requests.RequestException as exc:
                error: requests.RequestException = exc
                watch = getattr(getattr(response, "raw", None), "_geosample_watch", None)
                if watch is not None and watch.fired:
                    error = requests.exceptions.ReadTimeout(
                        f"no complete answer from {request.url} within the deadline of {self.deadline:g} s",
                        request=request,
                    )
                if attempt == self.read_retries or not _cut_short(error, response):
                    raise error from None
            time.sleep(min(30.0, self.backoff * 2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover


def stac_api_io(*, retries: int, deadline: float, max_retries: Any) -> Any:
    """A pystac-client ``StacApiIO`` with :class:`DeadlineAdapter` mounted and only http(s) links followed.

    Args:
        retries: Extra attempts of a cut-off answer.
        deadline: Seconds each attempt may take, connection to last byte.
        max_retries: The urllib3 ``Retry`` for connections and 429/5xx answers.
    """
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

    class RemoteStacApiIO(StacApiIO):
        """Follows only http(s) links: a catalogue's ``file:`` or path links are not read."""

        def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
            href = source.href if hasattr(source, "href") else str(source)
            if not str(href).lower().startswith(("http://", "https://")):
                raise APIError(f"refused to follow the link {str(href)[:200]!r}: not an http(s) URL")
            return super().read_text(source, *args, **kwargs)

    io = RemoteStacApiIO(max_retries=None, timeout=(min(deadline, 15.0), deadline))
    adapter = DeadlineAdapter(deadline, read_retries=retries, max_retries=max_retries, pool_maxsize=16)
    io.session.mount("http://", adapter)
    io.session.mount("https://", adapter)
    return io
