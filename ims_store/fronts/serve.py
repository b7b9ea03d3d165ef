"""The HTTP front of an `ImsStore`, or of a folder of them: virtual OME-Zarr for web viewers and
remote zarr clients.

GET and HEAD of store keys, single byte ranges (206 / 416), CORS (with the preflight a ``Range``
header needs), 404 for anything that is not a key, 405 for every other method (POST, TRACE,
CONNECT, made-up verbs...). Nothing outside the store is reachable: for one file a path is only
ever looked up as a store key, never on disk. Loopback by default.

A folder is served through the same handler: its resolver (`ims_store.fronts.folder`) maps
``/sub/cells.ims/<key>`` to that file's store and key (looking on disk only for ``.ims`` files
inside the folder), and ``/`` to an index of the folder. NGFF 0.4 / 0.5: see `served_store`.

>>> server = make_server("cells.ims", port=0)
>>> server.url.startswith("http://127.0.0.1:")
True
>>> server.server_close()
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from ..errors import NotImarisError, ResourceLimitError, ServerError
from ..store.zarr_store import ImsStore
from .folder import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_OPEN, ImageFolder
from .resolver import Document, Request, Resolver, SingleStore, served_store
from .viewers import VIEWER_ORIGINS, neuroglancer_state, viewer_links

__all__ = ["Limits", "ImsHTTPServer", "make_server", "neuroglancer_state", "viewer_links"]

_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
# a Host header fit to build links from (a name or address, and a port); anything else is ignored
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
# pages served by this machine itself (a neuroglancer or vizarr run locally): always allowed
_LOOPBACK_ORIGIN = re.compile(r"^https?://(?:localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d{1,5})?$", re.IGNORECASE)
_MAX_KEY = 1024
_MAX_DISCARDED_BODY = 64 * 1024  # a GET or OPTIONS body read and dropped; a larger one closes the connection
_ALLOWED = "GET, HEAD, OPTIONS"  # every other method is answered 405
_WILDCARDS = ("", "0.0.0.0", "::")
_MIB = 1024 * 1024


class Limits:
    """What one server may take of the machine (the defaults suit a workstation).

    ``request_bytes``: memory one request may take (estimated as twice the decoded size of the
    chunk it names: decoded voxels and a copy); a larger one is refused with 500 and a line on
    stderr. ``memory_bytes``: memory every request together may take; a request waits (up to
    ``header_seconds``) for the budget, else 503. ``connections``: connections served at once
    (one thread each); the next is answered 503 and closed. ``header_seconds``: time a client
    has to send a request's headers once it started it; ``idle_seconds``: time a connection may
    stay silent (between requests, or within a read or write).

    >>> Limits(request_bytes=64 * 1024 * 1024, connections=16).memory_bytes // (1024 * 1024)
    512
    """

    def __init__(
        self,
        *,
        request_bytes: int = 128 * _MIB,
        memory_bytes: int = 512 * _MIB,
        connections: int = 128,
        header_seconds: float = 20.0,
        idle_seconds: float = 60.0,
    ) -> None:
        counts = (("request_bytes", request_bytes), ("memory_bytes", memory_bytes), ("connections", connections))
        for name, value in counts:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
        for name, seconds in (("header_seconds", header_seconds), ("idle_seconds", idle_seconds)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, not {seconds!r}")
        self.request_bytes = request_bytes
        self.memory_bytes = max(memory_bytes, request_bytes)
        self.connections = connections
        self.header_seconds = float(header_seconds)
        self.idle_seconds = float(idle_seconds)


class _Budget:
    """Bytes of memory shared by the requests under way."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._free = total
        self._cond = threading.Condition()

    def take(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._free >= n, timeout) and self._take(n)

    def _take(self, n: int) -> bool:
        self._free -= n
        return True

    def give(self, n: int) -> None:
        with self._cond:
            self._free += n
            self._cond.notify_all()


class _Deadlines:
    """Connections that must finish sending a request's headers by a time, and a thread that
    cuts those that do not (a client trickling a byte at a time holds a thread otherwise)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._due: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, conn: socket.socket) -> None:
        with self._lock:
            self._due[conn] = time.monotonic() + self.seconds
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._watch, name="ims-store-header-deadlines", daemon=True)
                self._thread.start()

    def stop(self, conn: socket.socket) -> None:
        with self._lock:
            self._due.pop(conn, None)

    def _watch(self) -> None:
        while not self._stop.wait(min(self.seconds / 4, 0.5)):
            now = time.monotonic()
            with self._lock:
                late = [conn for conn, due in self._due.items() if due <= now]
                for conn in late:
                    del self._due[conn]
            for conn in late:
                try:
                    conn.shutdown(socket.SHUT_RDWR)  # the handler's read then ends
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()


def _exclusive_option() -> int | None:
    """Windows' SO_EXCLUSIVEADDRUSE: without it a second server binds a port already served and
    takes some of its connections silently (CPython #85307). POSIX refuses that by itself."""
    return getattr(socket, "SO_EXCLUSIVEADDRUSE", None)


class ImsHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one store, or to a resolver (a folder of files); ``url``
    is where clients find the image (or the folder's index).

    ``allow_origins``: the origins whose pages may read the server (CORS; ``"*"``: any);
    the origins of the viewers `viewer_links` opens, and pages of this machine itself
    (``http://localhost:PORT``...), always may. ``allow_hosts``: names a request's ``Host``
    may give besides the address listened on and ``localhost`` (``"*"``: any); others are
    answered 421 (a page that rebinds its own name to this machine's address is refused)."""

    daemon_threads = True
    # socketserver listens with a backlog of 5: a viewer or zarr client opening dozens of
    # connections at once would see the rest dropped and retried after a second or more
    request_queue_size = socket.SOMAXCONN

    def __init__(
        self,
        source: Resolver | ImsStore,
        host: str,
        port: int,
        *,
        allow_origins: Iterable[str] = (),
        allow_hosts: Iterable[str] = (),
        limits: Limits | None = None,
    ) -> None:
        self.resolver: Resolver = SingleStore(source) if isinstance(source, ImsStore) else source
        self.allow_origins = frozenset({*VIEWER_ORIGINS, *(o.rstrip("/") for o in allow_origins)})
        self.limits = limits or Limits()
        self.budget = _Budget(self.limits.memory_bytes)
        self.deadlines = _Deadlines(self.limits.header_seconds)
        self._slots = threading.BoundedSemaphore(self.limits.connections)
        self.host = host
        self.allow_hosts = frozenset(_host_name(h) for h in (*allow_hosts, "localhost", host))
        # an IPv6 address is listened on by an IPv6 socket (the class default is IPv4 only)
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.allow_reuse_address = _exclusive_option() is None
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        exclusive = _exclusive_option()
        if exclusive is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, exclusive, 1)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, up to ``limits.connections``; beyond, 503 and close."""
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self._slots.release()

    @property
    def store(self) -> ImsStore:
        """The store of a one-file server (a folder has a store per file: see `folder`)."""
        if isinstance(self.resolver, SingleStore):
            return self.resolver.store
        raise AttributeError("a folder server has one store per file: see its .folder")

    @property
    def folder(self) -> ImageFolder | None:
        """The folder served, or None for a one-file server."""
        return self.resolver if isinstance(self.resolver, ImageFolder) else None

    def server_close(self) -> None:
        """Stop listening and release the file(s)."""
        super().server_close()
        self.deadlines.close()
        self.resolver.close()

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up or time out are routine; anything else is printed as a bug."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        """Where a client on this machine reaches the server: a server listening on every
        address (``0.0.0.0``, ``::``) is given as the loopback address, which is one of them and
        which every system routes (``0.0.0.0`` is not an address to connect to)."""
        host, port = self.server_address[:2]
        if str(host) in _WILDCARDS:
            host = "::1" if self.address_family == socket.AF_INET6 else "127.0.0.1"
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"

    def origin_allowed(self, origin: str) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for a request from ``origin``, or None."""
        if "*" in self.allow_origins:
            return "*"
        if origin.rstrip("/") in self.allow_origins or _LOOPBACK_ORIGIN.match(origin):
            return origin
        return None

    def host_allowed(self, header: str | None) -> bool:
        """Whether a ``Host`` header names this server: the address listened on (any address
        of this machine, when listening on all), ``localhost``, or a name allowed."""
        if not header or "*" in self.allow_hosts:  # HTTP/1.0 clients may send none (or an empty one)
            return True
        name = _host_name(header)
        if name in self.allow_hosts or name == _host_name(str(self.server_address[0])):
            return True
        if self.host in _WILDCARDS:
            # listening on every address: any address literal (a page rebinding its name to
            # this machine still gives its name, which is refused)
            try:
                ipaddress.ip_address(name)
            except ValueError:
                return False
            return True
        return False

    def serve_in_thread(self, poll_interval: float = 0.5) -> threading.Thread:
        """Serve on a daemon thread (tests, notebooks); stop with ``shutdown()``, which returns
        within ``poll_interval`` seconds."""
        thread = threading.Thread(target=self.serve_forever, args=(poll_interval,), name="ims-store-serve", daemon=True)
        thread.start()
        return thread


def _host_name(header: str) -> str:
    """The name or address of a ``Host`` header (no port, no brackets, lower case)."""
    text = header.strip().lower()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    return text.rstrip(".")


def make_server(
    path: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    ngff: Literal["0.4", "0.5"] = "0.5",
    allow_origins: Iterable[str] = (),
    allow_hosts: Iterable[str] = (),
    follow_links: bool = False,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    image: int | None = None,
    max_open: int = DEFAULT_MAX_OPEN,
    limits: Limits | None = None,
) -> ImsHTTPServer:
    """An HTTP server for ``path`` (not yet serving: call ``serve_forever`` or ``serve_in_thread``;
    ``server_close`` releases the file). A host and port it cannot listen on raise `ServerError`;
    a path that is neither an ``.ims`` file nor a folder holding any, `NotImarisError`.

    ``path`` may be a folder: every ``.ims`` under it is served under its own path
    (``/sub/cells.ims/`` is an OME-Zarr root), with an index at ``/`` (see `ImageFolder`); each
    file is opened on its first request and closed after ``idle_timeout`` seconds unused, or when
    more than ``max_open`` are open. One file is read afresh when it changes on disk, too.

    The server's boundary is the folder (for one file: the file's own folder): no file outside
    it is ever opened. Data behind links to other files is served only with ``follow_links``,
    and then only from files inside that boundary: HDF5 external links and virtual datasets
    whose targets lie there (resolved against the linking file's folder, never through
    ``HDF5_EXT_PREFIX`` / ``HDF5_VDS_PREFIX`` or the working folder to a file outside);
    external raw data files are never read. Everything else raises `LinkTargetError`
    (`OutsideFolderError` for what lies outside). ``image``: one image of a file of several,
    alone (default: every image, as a ``bioformats2raw.layout`` collection).

    ``allow_origins``, ``allow_hosts``: see `ImsHTTPServer`; ``limits``: see `Limits`."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ServerError(f"cannot listen on port {port!r}: a port is a number from 0 to 65535", path)
    if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, int | float) or not idle_timeout > 0:
        raise ValueError(f"idle_timeout must be a number of seconds > 0, not {idle_timeout!r}")
    source: ImsStore | Resolver
    if os.path.isdir(path):
        folder = ImageFolder(
            path,
            lambda file: served_store(file, ngff, follow_links, within=folder.root),
            ngff=ngff,
            idle_timeout=idle_timeout,
            max_open=max_open,
        )
        if not folder.names():
            folder.close()
            raise NotImarisError("is a folder holding no .ims file: there is nothing to serve", path)
        source = folder
    else:
        real = os.path.realpath(path)  # its links resolved against its own folder
        within = os.path.dirname(real)
        store = served_store(real, ngff, follow_links, image, within)
        source = SingleStore(store, lambda: served_store(real, ngff, follow_links, image, within))
    try:
        return ImsHTTPServer(source, host, port, allow_origins=allow_origins, allow_hosts=allow_hosts, limits=limits)
    except OSError as err:  # port in use, no such address, a host name that does not resolve
        # (socketserver already called server_close, which released the store or folder)
        raise ServerError(f"cannot listen on {host}:{port}: {err.strerror or err}", path) from err
    except BaseException:
        source.close()
        raise


class _Handler(BaseHTTPRequestHandler):
    server: ImsHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "ims-store"
    # headers and body go out in two writes; with Nagle's algorithm the body then waits for the
    # client's delayed ACK of the headers, ~40 ms per response on a keep-alive connection
    disable_nagle_algorithm = True

    def setup(self) -> None:
        self.timeout = self.server.limits.idle_seconds  # seconds a silent connection holds its thread
        super().setup()

    def handle_one_request(self) -> None:
        """One request, its headers due within ``limits.header_seconds`` of its first byte
        (the wait for that byte is the connection's idle time)."""
        try:
            if not self.rfile.peek(1):
                self.close_connection = True
                return
        except (OSError, ValueError):  # timed out idle, reset, or closed
            self.close_connection = True
            return
        self.server.deadlines.start(self.connection)
        try:
            super().handle_one_request()
        finally:
            self.server.deadlines.stop(self.connection)

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self.server.deadlines.stop(self.connection)
        return parsed

    def log_message(self, format: str, *args: object) -> None:  # quiet: a viewer makes many requests
        pass

    # -- methods ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def do_OPTIONS(self) -> None:
        if not self._admitted(send_body=True):
            return
        self.send_response(HTTPStatus.NO_CONTENT)
        self._cors()
        self.send_header("Access-Control-Allow-Methods", _ALLOWED)
        requested = self.headers.get("Access-Control-Request-Headers")
        self.send_header("Access-Control-Allow-Headers", requested or "Range")
        self.send_header("Access-Control-Max-Age", "86400")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _not_allowed(self) -> None:
        # the request's body (if any) is never read, so it must not be taken for the next request
        self.close_connection = True
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, extra={"Allow": _ALLOWED, "Connection": "close"})

    def __getattr__(self, name: str) -> Any:
        """``do_<METHOD>`` for every method not defined above (POST, TRACE, CONNECT, PROPFIND, any
        made-up verb): the base class looks handlers up by name and answers 501 when it finds
        none, which tells a client the server does not know the method rather than refuses it."""
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- helpers ---------------------------------------------------------------------------

    def _admitted(self, send_body: bool) -> bool:
        """Drop the request's body (GET, HEAD and OPTIONS carry none a server reads: one sent
        must not be read as the next request), and refuse a ``Host`` that names another server
        (421): a web page whose own name was made to point at this machine."""
        self._discard_body()
        if self.server.host_allowed(self.headers.get("Host")):
            return True
        self.close_connection = True
        self._error(HTTPStatus.MISDIRECTED_REQUEST, extra={"Connection": "close"}, send_body=send_body)
        return False

    def _discard_body(self) -> None:
        if self.headers.get("Transfer-Encoding"):  # a chunked body: where it ends is not worth finding
            self.close_connection = True
            return
        length = self.headers.get("Content-Length")
        if length is None:
            return
        try:
            n = int(length)
        except ValueError:
            n = -1
        if not 0 <= n <= _MAX_DISCARDED_BODY:
            self.close_connection = True
            return
        while n > 0:
            got = self.rfile.read(min(n, 16384))
            if not got:
                self.close_connection = True
                return
            n -= len(got)

    def _cors(self, vary: str = "") -> None:
        """CORS headers for the request's origin, and ``Vary`` (``vary``: what else the
        response depends on)."""
        origin = self.headers.get("Origin")
        allowed = self.server.origin_allowed(origin) if origin else None
        if allowed is not None:
            self.send_header("Access-Control-Allow-Origin", allowed)
            self.send_header("Access-Control-Expose-Headers", "Content-Length, Content-Range, Accept-Ranges")
        # the answer depends on who asks (unless any page may read it): caches must know
        varies = ", ".join(v for v in (vary, "" if "*" in self.server.allow_origins else "Origin") if v)
        if varies:
            self.send_header("Vary", varies)

    def _error(
        self, status: HTTPStatus, extra: dict[str, str] | None = None, send_body: bool = True, text: str = ""
    ) -> None:
        body = (text or f"{status.value} {status.phrase}\n").encode()
        self.send_response(status)
        self._cors()
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _key(self) -> str | None:
        """The key a request path names (``""`` for ``/``), or None for anything that is not a
        plain key."""
        raw = urllib.parse.urlsplit(self.path).path
        key = urllib.parse.unquote(raw).lstrip("/")
        if len(key) > _MAX_KEY or "\\" in key or "\x00" in key:
            return None
        parts = key.split("/")
        if key and any(part in ("", ".", "..") for part in parts):
            return None
        return key

    def _base_url(self) -> str:
        """The URL the client reached the server at (its ``Host`` header, when well-formed)."""
        host = self.headers.get("Host", "")
        return f"http://{host}/" if _HOST.match(host) else self.server.url

    def _respond(self, send_body: bool) -> None:
        if not self._admitted(send_body):
            return
        key = self._key()
        if key is None:
            self._error(HTTPStatus.NOT_FOUND, send_body=send_body)
            return
        request = Request(key, self.headers.get("Accept", ""), self._base_url())
        taken = 0
        try:
            try:
                with self.server.resolver.target(request) as target:
                    if isinstance(target, tuple):
                        store, store_key = target
                        taken = self._budget(store, store_key, send_body)
                        if taken < 0:
                            return
                        whole = store.get_sync(store_key)
                        target = None if whole is None else Document(whole.to_bytes(), _content_type(store_key))
            except ResourceLimitError as err:  # no descriptor left: the process's, not the file's
                self._error(HTTPStatus.SERVICE_UNAVAILABLE, {"Retry-After": "1"}, send_body, f"{err.reason}\n")
                return
            except Exception:  # a damaged chunk: the client gets an error, the server keeps serving
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, send_body=send_body)
                return
            self._send(target, send_body)
        finally:
            if taken > 0:
                self.server.budget.give(taken)

    def _budget(self, store: ImsStore, key: str, send_body: bool) -> int:
        """Take the memory a chunk's request may need from the server's budget: the bytes
        taken (0 for metadata), or -1 when refused (answered already)."""
        need = 2 * _decoded_bytes(store, key)  # the decoded voxels, and the bytes sent
        limits = self.server.limits
        if need > limits.request_bytes:
            message = (
                f"{key}: its chunk takes {need / _MIB:.0f} MiB in memory to serve, more than this server's limit "
                f"of {limits.request_bytes / _MIB:.0f} MiB per request (--max-request-mib)\n"
            )
            print(f"ims-store serve: refused {message}", end="", file=sys.stderr, flush=True)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, send_body=send_body, text=message)
            return -1
        if need and not self.server.budget.take(need, limits.header_seconds):
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, {"Retry-After": "1"}, send_body)
            return -1
        return need

    def _send(self, target: Document | None, send_body: bool) -> None:
        if target is None:
            self._error(HTTPStatus.NOT_FOUND, send_body=send_body)
            return
        data: bytes | memoryview = target.body
        size = len(data)
        status = HTTPStatus(target.status)
        headers = {"Accept-Ranges": "bytes", **target.headers} if status == HTTPStatus.OK else dict(target.headers)
        header = self.headers.get("Range")
        if header is not None and status == HTTPStatus.OK:
            span = _parse_range(header, size)
            if span == "unsatisfiable":
                self._error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, {"Content-Range": f"bytes */{size}"}, send_body)
                return
            if isinstance(span, tuple):
                start, stop = span
                data = memoryview(data)[start:stop]
                status = HTTPStatus.PARTIAL_CONTENT
                headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        self.send_response(status)
        self._cors(headers.pop("Vary", ""))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", target.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if send_body:
            self.wfile.write(data)


_METADATA = ("zarr.json", ".zarray", ".zattrs", ".zgroup")


def _content_type(key: str) -> str:
    is_json = key.endswith(_METADATA)
    return "application/json" if is_json else "application/octet-stream"


def _decoded_bytes(store: ImsStore, key: str) -> int:
    """The decoded size of the chunk ``key`` names (0 for metadata and what is no chunk key),
    from its array's metadata: a bound on what serving it holds in memory, known before any of
    it is read."""
    if key.endswith(_METADATA):
        return 0
    parts = key.split("/")
    if "c" in parts:  # zarr v3: ARRAY/c/i/j/k...
        candidates = ["/".join(parts[: parts.index("c")]) + "/zarr.json"]
    else:  # zarr v2: ARRAY/i/j/k... (one index per dimension, "/" separated)
        candidates = ["/".join(parts[:-n]) + "/.zarray" for n in range(1, len(parts))]
    for name in candidates:
        found = store.get_sync(name.lstrip("/"))
        if found is None:
            continue
        meta = json.loads(found.to_bytes())
        if "chunk_grid" in meta:
            shape, dtype = meta["chunk_grid"]["configuration"]["chunk_shape"], meta["data_type"]
        else:
            shape, dtype = meta["chunks"], meta["dtype"]
        if meta.get("zarr_format") == 2 and len(shape) != len(parts) - name.count("/"):
            continue
        itemsize = _itemsize(dtype)
        total = itemsize
        for n in shape:
            total *= int(n)
        return total
    return 0


def _itemsize(dtype: Any) -> int:
    import numpy as np

    try:
        return int(np.dtype(dtype).itemsize)
    except TypeError:  # a structured or unknown type: as large as numpy's largest scalar
        return 16


def _parse_range(header: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """(start, stop) of a single ``bytes=`` range within ``size``; "unsatisfiable" for one that
    lies past the end; None where the header is to be ignored (RFC 9110 section 14.2: a unit
    other than bytes, several ranges, which this server does not combine, or a malformed
    value), which answers the whole representation, 200."""
    unit, sep, ranges = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in ranges:
        return None
    match = _RANGE.match(ranges)
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if len(first) > 18 or len(last) > 18:  # beyond any file: refuse before converting
        return "unsatisfiable"
    if first == "":  # the last N bytes
        if int(last) == 0:
            return "unsatisfiable"
        start, stop = max(size - int(last), 0), size
    else:
        start = int(first)
        if last != "" and int(last) < start:
            return None  # invalid (RFC 9110: a last position below the first): ignored
        stop = size if last == "" else min(int(last) + 1, size)
    if start >= size or stop <= start:
        return "unsatisfiable"
    return start, stop
