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

import os
import re
import socket
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from ..errors import ServerError
from ..store.zarr_store import ImsStore
from .folder import DEFAULT_IDLE_TIMEOUT, ImageFolder
from .resolver import Document, Request, Resolver, SingleStore, served_store
from .viewers import neuroglancer_state, viewer_links

__all__ = ["ImsHTTPServer", "make_server", "neuroglancer_state", "viewer_links"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
# a Host header fit to build links from (a name or address, and a port); anything else is ignored
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
_MAX_KEY = 1024
_ALLOWED = "GET, HEAD, OPTIONS"  # every other method is answered 405


class ImsHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one store, or to a resolver (a folder of files); ``url``
    is where clients find the image (or the folder's index)."""

    daemon_threads = True
    # socketserver listens with a backlog of 5: a viewer or zarr client opening dozens of
    # connections at once would see the rest dropped and retried after a second or more
    request_queue_size = socket.SOMAXCONN

    def __init__(self, source: ImsStore | Resolver, host: str, port: int, cors: str | None) -> None:
        self.resolver: Resolver = SingleStore(source) if isinstance(source, ImsStore) else source
        self.cors = cors
        super().__init__((host, port), _Handler)

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
        self.resolver.close()

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up or time out are routine; anything else is printed as a bug."""
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"

    def serve_in_thread(self, poll_interval: float = 0.5) -> threading.Thread:
        """Serve on a daemon thread (tests, notebooks); stop with ``shutdown()``, which returns
        within ``poll_interval`` seconds."""
        thread = threading.Thread(target=self.serve_forever, args=(poll_interval,), name="ims-store-serve", daemon=True)
        thread.start()
        return thread


def make_server(
    path: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    ngff: Literal["0.4", "0.5"] = "0.5",
    cors: str | None = "*",
    follow_links: bool = False,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    image: int | None = None,
) -> ImsHTTPServer:
    """An HTTP server for ``path`` (not yet serving: call ``serve_forever`` or ``serve_in_thread``;
    ``server_close`` releases the file). A host and port it cannot listen on raise `ServerError`.

    ``path`` may be a folder: every ``.ims`` under it is served under its own path
    (``/sub/cells.ims/`` is an OME-Zarr root), with an index at ``/`` (see `ImageFolder`); each
    file is opened on its first request and closed after ``idle_timeout`` seconds unused.

    Data behind links to other files (external links, virtual datasets, external raw data) is
    served only with ``follow_links``: a server never opens a file it was not asked to serve
    unless told to (else that data raises `LinkTargetError`). ``image``: one image of a file of
    several, alone (default: every image, as a ``bioformats2raw.layout`` collection)."""
    source: ImsStore | Resolver
    if os.path.isdir(path):
        source = ImageFolder(
            path,
            lambda file: served_store(file, ngff, follow_links),
            ngff=ngff,
            idle_timeout=idle_timeout,
        )
    else:
        source = served_store(path, ngff, follow_links, image)
    try:
        return ImsHTTPServer(source, host, port, cors)
    except OSError as err:  # port in use, no such address, a host name that does not resolve
        # (socketserver already called server_close, which released the store or folder)
        raise ServerError(f"cannot listen on {host}:{port}: {err.strerror or err}", path) from err


class _Handler(BaseHTTPRequestHandler):
    server: ImsHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "ims-store"
    timeout = 60  # seconds an idle or slow connection may hold its thread
    # headers and body go out in two writes; with Nagle's algorithm the body then waits for the
    # client's delayed ACK of the headers, ~40 ms per response on a keep-alive connection
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # quiet: a viewer makes many requests
        pass

    # -- methods ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def do_OPTIONS(self) -> None:
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

    def _cors(self) -> None:
        if self.server.cors:
            self.send_header("Access-Control-Allow-Origin", self.server.cors)
            self.send_header("Access-Control-Expose-Headers", "Content-Length, Content-Range, Accept-Ranges")

    def _error(self, status: HTTPStatus, extra: dict[str, str] | None = None, send_body: bool = True) -> None:
        body = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self._cors()
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
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
        key = self._key()
        if key is None:
            self._error(HTTPStatus.NOT_FOUND, send_body=send_body)
            return
        request = Request(key, self.headers.get("Accept", ""), self._base_url())
        try:
            with self.server.resolver.target(request) as target:
                if isinstance(target, tuple):
                    store, store_key = target
                    whole = store.get_sync(store_key)
                    target = None if whole is None else Document(whole.to_bytes(), _content_type(store_key))
        except Exception:  # a damaged chunk: the client gets an error, the server keeps serving
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, send_body=send_body)
            return
        if target is None:
            self._error(HTTPStatus.NOT_FOUND, send_body=send_body)
            return
        data = target.body
        size = len(data)
        status = HTTPStatus(target.status)
        headers = {"Accept-Ranges": "bytes", **target.headers} if status == HTTPStatus.OK else dict(target.headers)
        header = self.headers.get("Range")
        if header is not None and status == HTTPStatus.OK:
            span = _parse_range(header, size)
            if span is None:
                self._error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, {"Content-Range": f"bytes */{size}"}, send_body)
                return
            start, stop = span
            data = data[start:stop]
            status = HTTPStatus.PARTIAL_CONTENT
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        self.send_response(status)
        self._cors()
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", target.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if send_body:
            self.wfile.write(data)


def _content_type(key: str) -> str:
    is_json = key.endswith(("zarr.json", ".zarray", ".zattrs", ".zgroup"))
    return "application/json" if is_json else "application/octet-stream"


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, stop) of a single ``bytes=`` range within ``size``, or None if unsatisfiable."""
    match = _RANGE.match(header.strip())
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if len(first) > 18 or len(last) > 18:  # beyond any file: refuse before converting
        return None
    if first == "":  # the last N bytes
        start, stop = max(size - int(last), 0), size
    else:
        start = int(first)
        stop = size if last == "" else min(int(last) + 1, size)
    if start >= size or stop <= start:
        return None
    return start, stop
