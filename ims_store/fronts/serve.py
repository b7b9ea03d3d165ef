"""The HTTP front of an `ImsStore`: a virtual OME-Zarr for web viewers and remote zarr clients.

GET and HEAD of store keys, single byte ranges (206 / 416), CORS (with the preflight a ``Range``
header needs), 404 for anything that is not a key, 405 for every other method (POST, TRACE,
CONNECT, made-up verbs...). Nothing outside the store is reachable: a path is only ever looked
up as a store key, never on disk. Loopback by default.

NGFF 0.4 is served as zarr v2 with the stored chunks passed through (zarr v2's ``zlib`` codec
is read by zarr-python, tensorstore, neuroglancer and vizarr alike); NGFF 0.5 as zarr v3 with
chunks decoded by the store, since zarr v3 has no core codec for HDF5's zlib streams.

>>> server = make_server("cells.ims", port=0)
>>> server.url.startswith("http://127.0.0.1:")
True
>>> server.server_close()
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from ..errors import ServerError
from ..format.geometry import ngff_unit
from ..format.layout import ImsLayout
from ..store.ngff import channel_hex, time_step, type_range
from ..store.zarr_store import ImsStore

__all__ = ["ImsHTTPServer", "make_server", "neuroglancer_state", "viewer_links"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_MAX_KEY = 1024
_ALLOWED = "GET, HEAD, OPTIONS"  # every other method is answered 405


class ImsHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one store; ``url`` is where clients find the image."""

    daemon_threads = True
    # socketserver listens with a backlog of 5: a viewer or zarr client opening dozens of
    # connections at once would see the rest dropped and retried after a second or more
    request_queue_size = socket.SOMAXCONN

    def __init__(self, store: ImsStore, host: str, port: int, cors: str | None) -> None:
        self.store = store
        self.cors = cors
        super().__init__((host, port), _Handler)

    def server_close(self) -> None:
        """Stop listening and release the file."""
        super().server_close()
        self.store.close()

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
    image: int | None = None,
) -> ImsHTTPServer:
    """An HTTP server for ``path`` (not yet serving: call ``serve_forever`` or ``serve_in_thread``;
    ``server_close`` releases the file). A host and port it cannot listen on raise `ServerError`.

    Data behind links to other files (external links, virtual datasets, external raw data) is
    served only with ``follow_links``: a server never opens a file it was not asked to serve
    unless told to (else that data raises `LinkTargetError`). ``image``: one image of a file of
    several, alone (default: every image, as a ``bioformats2raw.layout`` collection)."""
    if ngff not in ("0.4", "0.5"):
        raise ValueError(f"ngff must be '0.4' or '0.5', not {ngff!r}")
    if ngff == "0.4":
        store = ImsStore(path, zarr_format=2, chunk_mode="passthrough", follow_links=follow_links, image=image)
    else:
        store = ImsStore(path, zarr_format=3, follow_links=follow_links, image=image)
    try:
        return ImsHTTPServer(store, host, port, cors)
    except OSError as err:  # port in use, no such address, a host name that does not resolve
        # (socketserver already called server_close, which released the store)
        raise ServerError(f"cannot listen on {host}:{port}: {err.strerror or err}", path) from err


def neuroglancer_state(layout: ImsLayout, url: str, ngff: Literal["0.4", "0.5"]) -> dict[str, Any]:
    """A neuroglancer state that opens on the x-y plane of the middle z slice.

    One image layer per channel (neuroglancer makes the channel axis a local dimension, ``c'``),
    each tinted with the channel's colour, blended additively, with its contrast from the
    display range; dimensions in metres as neuroglancer wants them.
    """
    scheme = "zarr3" if ngff == "0.5" else "zarr2"
    level = layout.levels[0]
    metres = _METRES.get(ngff_unit(layout.unit) or "", 1e-6)
    step = time_step(layout) or 1.0
    dimensions = {"t": [step, "s" if time_step(layout) else ""]}
    dimensions.update({axis: [v * metres, "m"] for axis, v in zip("zyx", level.voxel_size, strict=True)})
    # positions count voxels of these dimensions from the physical origin: voxel i spans
    # ExtMin / voxel + i .. + i + 1. x and y sit at the centre of the image; z at the centre of
    # slice n // 2 (the image's centre, n / 2, would be a border between two slices)
    (z0, y0, x0), (nz, ny, nx) = (lo / v for lo, v in zip(layout.extent_min, level.voxel_size, strict=True)), level.size
    position = [0.5, z0 + nz // 2 + 0.5, y0 + ny / 2, x0 + nx / 2]
    layers = []
    for ch in layout.channels:
        lo, hi = ch.color_range or ch.histogram_range or type_range(layout.dtype)
        color = "#" + channel_hex(ch, len(layout.channels)).lower()
        layers.append(
            {
                "type": "image",
                "source": f"{scheme}://{url}",
                "name": ch.label,
                "localDimensions": {"c'": [1, ""]},
                "localPosition": [ch.index],  # channel dimensions take the integer index
                "shader": _SHADER,
                "shaderControls": {"normalized": {"range": [lo, hi]}, "color": color},
                "opacity": 1.0,  # neuroglancer's default of 0.5 would show the top of the range at half brightness
                "blend": "additive",
            }
        )
    extent = max(level.size[1] * level.voxel_size[1], level.size[2] * level.voxel_size[2]) * metres
    return {
        "dimensions": dimensions,
        "displayDimensions": ["x", "y", "z"],
        "position": position,
        "crossSectionScale": extent / 700 / min(level.voxel_size[1:]) / metres,
        "layers": layers,
        "layout": "xy",
    }


_SHADER = """#uicontrol invlerp normalized
#uicontrol vec3 color color
void main() {
  emitRGB(color * normalized());
}
"""

_METRES = {
    "nanometer": 1e-9,
    "micrometer": 1e-6,
    "millimeter": 1e-3,
    "centimeter": 1e-2,
    "meter": 1.0,
    "angstrom": 1e-10,
    "picometer": 1e-12,
}


def viewer_links(url: str, ngff: Literal["0.4", "0.5"], layout: ImsLayout | None = None) -> dict[str, str]:
    """Links that open a served image in neuroglancer (x-y plane, channels coloured) and vizarr."""
    if layout is not None:
        state: dict[str, Any] = neuroglancer_state(layout, url, ngff)
    else:
        scheme = "zarr3" if ngff == "0.5" else "zarr2"
        state = {"layers": [{"type": "image", "source": f"{scheme}://{url}", "name": "image"}], "layout": "xy"}
    fragment = urllib.parse.quote(json.dumps(state, separators=(",", ":")), safe="")
    return {
        "neuroglancer": f"https://neuroglancer-demo.appspot.com/#!{fragment}",
        "vizarr": f"https://hms-dbmi.github.io/vizarr/?source={urllib.parse.quote(url, safe='')}",
    }


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
        """The store key a request path names, or None for anything that is not a plain key."""
        raw = urllib.parse.urlsplit(self.path).path
        key = urllib.parse.unquote(raw).lstrip("/")
        if len(key) > _MAX_KEY or "\\" in key or "\x00" in key:
            return None
        parts = key.split("/")
        if any(part in ("", ".", "..") for part in parts):
            return None
        return key

    def _respond(self, send_body: bool) -> None:
        key = self._key()
        if key is None:
            self._error(HTTPStatus.NOT_FOUND, send_body=send_body)
            return
        store = self.server.store
        try:
            whole = store.get_sync(key)
        except Exception:  # a damaged chunk: the client gets an error, the server keeps serving
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, send_body=send_body)
            return
        if whole is None:
            self._error(HTTPStatus.NOT_FOUND, send_body=send_body)
            return
        data = whole.to_bytes()
        size = len(data)
        status = HTTPStatus.OK
        headers = {"Accept-Ranges": "bytes"}
        header = self.headers.get("Range")
        if header is not None:
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
        is_json = key.endswith(("zarr.json", ".zarray", ".zattrs", ".zgroup"))
        self.send_header("Content-Type", "application/json" if is_json else "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if send_body:
            self.wfile.write(data)


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
