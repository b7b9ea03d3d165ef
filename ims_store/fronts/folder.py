"""A folder of ``.ims`` files behind one HTTP server (``ims-store serve DIR``).

Each ``.ims`` under the folder is an OME-Zarr root at its own path (``/cells.ims/``,
``/sub/a.ims/``); ``/`` is an index of them, HTML for a person and JSON for a program (by the
``Accept`` header, or ``/index.json`` and ``/index.html``), listing each image's shape, data type,
levels, channels and viewer links, and each file that cannot be opened with its error.

Nothing outside the folder is served: a path is looked up only if each of its segments is a
plain name (no ``.``, ``..``, hidden names, no drive or absolute part) and only the first segment
ending in ``.ims`` names a file, which must be a regular file whose real path (symbolic links
resolved) lies inside the folder; anything else is 404.

Files are opened on their first request, closed after ``idle_timeout`` seconds without one
(never while a request reads them), and reopened when they change on disk (device, inode, size
or modification time): a file replaced while served is read afresh, not through the handles of
its predecessor.

>>> from pathlib import Path
>>> from ims_store.write.synthetic import make_example_ims
>>> Path("lab/sub").mkdir(parents=True)
>>> _ = make_example_ims("lab/sub/a.ims", shape=(4, 32, 32), channels=1, timepoints=1)
>>> folder = ImageFolder("lab", lambda path: ImsStore(path))
>>> folder.names()
['sub/a.ims']
>>> folder.index("http://127.0.0.1:8000/")["images"][0]["shape"]
[1, 1, 4, 32, 32]
>>> folder.close()
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import os
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import PurePath
from typing import Any, Literal

from ..errors import ImsError, ImsFileNotFoundError
from ..format.geometry import ngff_unit
from ..format.layout import ImsLayout
from ..store.ngff import channel_hex
from ..store.zarr_store import ImsStore
from .resolver import Document, Request, Target
from .viewers import viewer_links

__all__ = ["DEFAULT_IDLE_TIMEOUT", "ImageFolder"]

DEFAULT_IDLE_TIMEOUT = 300.0  # seconds a file stays open without a request
_INDEX_NAMES = ("", "index.html", "index.json")
_BANNER_FILES = 20  # files listed by name when the server starts (the index lists them all)

# (device, inode, size, modification time): what changes when a file is replaced or rewritten
_Stamp = tuple[int, int, int, int]


class _Open:
    """One opened store and the requests reading it; a store replaced (the file changed) while
    in use is closed by its last user."""

    def __init__(self, store: ImsStore) -> None:
        self.store = store
        self.users = 0
        self.retired = False


class _Image:
    """What the folder knows of one file; ``lock`` guards every field."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        self.lock = threading.Lock()
        self.open: _Open | None = None
        self.stamp: _Stamp | None = None  # of the open store, or of the file that failed to open
        self.error: str | None = None  # why the file at ``stamp`` cannot be opened
        self.layout: ImsLayout | None = None  # of the file at ``layout_stamp``, kept when closed
        self.layout_stamp: _Stamp | None = None
        self.last_used = 0.0


class ImageFolder:
    """Every ``.ims`` file under ``root``, each opened with ``opener`` on first use.

    Parameters
    ----------
    root
        The folder served.
    opener
        Makes the store of one file (``make_server`` passes one for the NGFF version served).
    ngff
        The NGFF version the stores present (for the viewer links of the index).
    idle_timeout
        Seconds a file stays open without a request (default 300).

    The server's resolver (see `ims_store.fronts.resolver`); thread-safe.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        opener: Callable[[str], ImsStore],
        *,
        ngff: Literal["0.4", "0.5"] = "0.5",
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, int | float) or not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be a number of seconds > 0, not {idle_timeout!r}")
        if ngff not in ("0.4", "0.5"):
            raise ValueError(f"ngff must be '0.4' or '0.5', not {ngff!r}")
        if not os.path.isdir(root):
            raise ImsFileNotFoundError("no such folder", root)
        self.root = os.path.realpath(root)
        self.ngff = ngff
        self.idle_timeout = float(idle_timeout)
        self._opener = opener
        self._images: dict[str, _Image] = {}
        self._verified: dict[str, _Stamp] = {}  # name -> the file last found inside the folder under it
        self._lock = threading.Lock()  # guards _images and _reaper
        self._closed = threading.Event()
        self._reaper: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"ImageFolder({self.root!r}, ngff={self.ngff!r}, idle_timeout={self.idle_timeout})"

    # -- what is there ---------------------------------------------------------------------

    def names(self) -> list[str]:
        """The ``.ims`` files served, as paths relative to the folder (``sub/a.ims``), sorted.

        Hidden files and folders (``.name``) are left out, as is everything whose real path lies
        outside the folder; folders linked more than once are walked once."""
        found: list[str] = []
        walked: set[str] = set()
        for folder, subfolders, files in os.walk(self.root, followlinks=True):
            real = os.path.realpath(folder)
            if real in walked or not self._inside(real):
                subfolders[:] = []
                continue
            walked.add(real)
            # a folder named x.ims cannot be reached: its path names the file x.ims
            subfolders[:] = sorted(d for d in subfolders if _plain(d) and not _is_ims(d))
            relative = os.path.relpath(folder, self.root)
            for file in files:
                name = file if relative == "." else f"{PurePath(relative).as_posix()}/{file}"
                if _is_ims(file) and _utf8(name) and self._locate(name) is not None:
                    found.append(name)
        return sorted(found)

    def open_names(self) -> list[str]:
        """The files open now (a request opens one; ``idle_timeout`` closes it)."""
        with self._lock:
            images = list(self._images.values())
        return sorted(image.name for image in images if image.open is not None)

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)

    def _locate(self, name: str) -> tuple[str, _Stamp] | None:
        """The path and stamp of the file ``name`` names, or None where it names no ``.ims``
        file inside the folder."""
        parts = name.split("/")
        if not all(_plain(p) for p in parts) or not _is_ims(parts[-1]) or any(_is_ims(p) for p in parts[:-1]):
            return None
        path = os.path.join(self.root, *parts)
        try:
            info = os.stat(path)
        except (OSError, ValueError):  # missing, unreadable, a name the file system refuses
            return None
        stamp = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        if not stat.S_ISREG(info.st_mode):
            return None
        # the real path is looked up again whenever the file found changes: a link retargeted
        # (to a file outside) leads to another device and inode
        if self._verified.get(name) != stamp:
            if not self._inside(os.path.realpath(path)):
                return None
            self._verified[name] = stamp
        return path, stamp

    def _image(self, name: str, path: str) -> _Image:
        with self._lock:
            image = self._images.get(name)
            if image is None:
                image = self._images[name] = _Image(name, path)
            return image

    # -- opening and closing ---------------------------------------------------------------

    @contextlib.contextmanager
    def lease(self, name: str) -> Iterator[ImsStore | None]:
        """The open store of ``name`` (None where it names no file here), kept open until the
        block ends; a file that cannot be opened raises its error (an `ImsError`)."""
        found = self._locate(name)
        if found is None:
            yield None
            return
        image = self._image(name, found[0])
        opened = self._acquire(image, found[1])
        try:
            yield opened.store
        finally:
            self._release(image, opened)

    def _acquire(self, image: _Image, stamp: _Stamp) -> _Open:
        with image.lock:
            if image.open is not None and image.stamp != stamp:  # changed on disk
                self._retire(image)
            if image.open is None:
                if image.error is not None and image.stamp == stamp:
                    raise _Unreadable(image.error, image.name)
                try:
                    store = self._opener(image.path)
                except Exception as err:  # any failure is this file's: the server stays up
                    image.error, image.stamp = self._describe_error(err), stamp
                    raise _Unreadable(image.error, image.name) from err
                image.open, image.stamp, image.error = _Open(store), stamp, None
                image.layout, image.layout_stamp = store.layout, stamp
                self._start_reaper()
            opened = image.open
            opened.users += 1
            image.last_used = time.monotonic()
            return opened

    def _release(self, image: _Image, opened: _Open) -> None:
        with image.lock:
            opened.users -= 1
            image.last_used = time.monotonic()
            if opened.retired and opened.users == 0:
                opened.store.close()

    @staticmethod
    def _retire(image: _Image) -> None:
        """Forget the open store (lock held); its last user closes it if one is reading."""
        opened = image.open
        assert opened is not None
        image.open = None
        opened.retired = True
        if opened.users == 0:
            opened.store.close()

    def close_idle(self) -> list[str]:
        """Close the files unused for ``idle_timeout`` seconds; returns their names. (A thread
        calls this while files are open.)"""
        now = time.monotonic()
        with self._lock:
            images = list(self._images.values())
        closed = []
        for image in images:
            with image.lock:
                if image.open is not None and image.open.users == 0 and now - image.last_used >= self.idle_timeout:
                    self._retire(image)
                    closed.append(image.name)
        return closed

    def _start_reaper(self) -> None:
        with self._lock:
            if self._reaper is None and not self._closed.is_set():
                self._reaper = threading.Thread(target=self._reap, name="ims-store-idle-close", daemon=True)
                self._reaper.start()

    def _reap(self) -> None:
        # a file is closed between idle_timeout and 1.25 idle_timeout after its last request
        interval = min(max(self.idle_timeout / 4, 0.01), 10.0)
        while not self._closed.wait(interval):
            self.close_idle()

    def close(self) -> None:
        """Close every file and stop the idle timer (the server's ``server_close`` calls this)."""
        self._closed.set()
        with self._lock:
            reaper, images = self._reaper, list(self._images.values())
        if reaper is not None:
            reaper.join()
        for image in images:
            with image.lock:
                if image.open is not None:
                    self._retire(image)

    def _describe_error(self, err: Exception) -> str:
        """Why a file cannot be opened, without the folder's own path (clients see this)."""
        reason = err.reason if isinstance(err, ImsError) else str(err)
        return f"{type(err).__name__}: {reason.replace(self.root + os.sep, '')}"

    def banner(self, url: str, *, print_state: bool = False) -> list[str]:
        """What ``ims-store serve FOLDER`` prints: the index's address and each file's (the first
        ``_BANNER_FILES``); with ``print_state``, each file's neuroglancer link with its channels
        in their colours (opens each file once to read it)."""
        names = self.names()
        lines = [
            f"serving {len(names)} .ims file(s) under {self.root} as OME-NGFF {self.ngff} at {url}",
            f"  index: {url} (JSON: {url}index.json)",
        ]
        shown = names[:_BANNER_FILES]
        if print_state:
            images = {image["name"]: image for image in self.index(url)["images"]}
        for name in shown:
            lines.append(f"  {name}: {url}{urllib.parse.quote(name)}/")
            if print_state and name in images:
                image = images[name]
                if "error" in image:
                    lines.append(f"    cannot be served: {image['error']}")
                else:
                    lines.append(f"    neuroglancer, each channel in its colour: {image['links']['neuroglancer']}")
        if len(names) > len(shown):
            lines.append(f"  ... and {len(names) - len(shown)} more: see the index")
        lines.append(f"  (each file is opened on its first request and closed after {self.idle_timeout:g} s unused)")
        return lines

    # -- the resolver ----------------------------------------------------------------------

    @contextlib.contextmanager
    def target(self, request: Request) -> Iterator[Target]:
        """``/``, ``/index.json``, ``/index.html``: the index; ``/<name>.ims/<key>``: that key of
        the file's store; anything else: None."""
        if request.key in _INDEX_NAMES:
            yield self._index_document(request)
            return
        parts = request.key.split("/")
        last = next((i for i, part in enumerate(parts) if _is_ims(part)), len(parts))
        name, key = "/".join(parts[: last + 1]), "/".join(parts[last + 1 :])
        if not key:
            yield None
            return
        try:
            with self.lease(name) as store:
                yield None if store is None else (store, key)
        except _Unreadable as err:
            yield Document(f"{err}\n".encode(), "text/plain; charset=utf-8", status=500)

    def _index_document(self, request: Request) -> Document:
        vary = {"Vary": "Accept", "Cache-Control": "no-cache"}
        wants_json = request.key == "index.json" or (request.key == "" and _prefers_json(request.accept))
        if wants_json:
            body = json.dumps(self.index(request.base_url), indent=1).encode()
            return Document(body, "application/json", headers=vary)
        return Document(self.index_html(request.base_url).encode(), "text/html; charset=utf-8", headers=vary)

    # -- the index -------------------------------------------------------------------------

    def index(self, base_url: str) -> dict[str, Any]:
        """The folder's index as JSON-ready data: for each file its URL, shape (t, c, z, y, x),
        dtype, levels, channels, voxel size and viewer links, or the error it cannot be opened
        with. ``base_url`` is where the server is reached (``http://host:port/``)."""
        images = []
        for name in self.names():
            url = base_url + urllib.parse.quote(name) + "/"
            found = self._locate(name)
            if found is None:  # gone since it was listed
                continue
            entry: dict[str, Any] = {"name": name, "url": url, "bytes": found[1][2]}
            layout = self._layout(self._image(name, found[0]), found[1])
            if isinstance(layout, str):
                entry["error"] = layout
            else:
                entry.update(_describe(layout))
                entry["links"] = viewer_links(url, self.ngff, layout)
            images.append(entry)
        zarr_format = 3 if self.ngff == "0.5" else 2
        return {"ngff": self.ngff, "zarr_format": zarr_format, "images": images}

    def _layout(self, image: _Image, stamp: _Stamp) -> ImsLayout | str:
        """The layout of the file at ``stamp``, or why it cannot be opened. A file not open is
        opened for it and closed again: listing a folder does not hold every file open."""
        with image.lock:
            if image.layout is not None and image.layout_stamp == stamp:
                return image.layout
            if image.error is not None and image.stamp == stamp:
                return image.error
            try:
                store = self._opener(image.path)
            except Exception as err:  # any failure is this file's: the index lists it
                image.error, image.stamp = self._describe_error(err), stamp
                return image.error
            image.layout, image.layout_stamp = store.layout, stamp
            store.close()
            return image.layout

    def index_html(self, base_url: str) -> str:
        """The index as a web page."""
        index = self.index(base_url)
        root_document = "zarr.json" if self.ngff == "0.5" else ".zattrs"  # what the file's name links to
        rows = []
        for image in index["images"]:
            name = html.escape(image["name"])
            if "error" in image:
                rows.append(f'<tr class="error"><td>{name}</td><td colspan="6">{html.escape(image["error"])}</td></tr>')
                continue
            channels = " ".join(
                f'<span class="swatch" style="background:{html.escape(ch["color"])}"></span>{html.escape(ch["name"])}'
                for ch in image["channels"]
            )
            links = " | ".join(f'<a href="{html.escape(link)}">{viewer}</a>' for viewer, link in image["links"].items())
            voxel = " &times; ".join(f"{v:.4g}" for v in image["voxel_size"])
            rows.append(
                "<tr>"
                f'<td><a href="{html.escape(image["url"])}{root_document}">{name}</a></td>'
                f"<td>{' &times; '.join(str(n) for n in image['shape'])}</td>"
                f"<td>{html.escape(image['dtype'])}</td>"
                f"<td>{len(image['levels'])}</td>"
                f"<td>{channels}</td>"
                f"<td>{voxel} {html.escape(image['unit'] or '')}</td>"
                f"<td>{links}</td>"
                "</tr>"
            )
        title = f"{html.escape(os.path.basename(self.root))}: {len(index['images'])} Imaris file(s)"
        body = "\n".join(rows) or '<tr><td colspan="7">no .ims files in this folder</td></tr>'
        return _PAGE.format(title=title, ngff=index["ngff"], rows=body)


class _Unreadable(ImsError):
    """A file of the folder that cannot be opened (the message is its error)."""


def _plain(part: str) -> bool:
    """A path segment that names an entry of its folder and nothing else."""
    return bool(part) and not part.startswith(".") and "\\" not in part and not os.path.splitdrive(part)[0]


def _utf8(name: str) -> bool:
    """Whether a file name is UTF-8 text (one that is not has no URL: it is not listed)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # bytes the file system gave undecoded (surrogate escapes)
        return False
    return True


def _is_ims(part: str) -> bool:
    return part.lower().endswith(".ims") and len(part) > 4


def _describe(layout: ImsLayout) -> dict[str, Any]:
    return {
        "shape": list(layout.shape(0)),
        "axes": "tczyx",
        "dtype": layout.dtype.name,
        "levels": [list(layout.shape(level.index)) for level in layout.levels],
        "channels": [
            {"name": ch.label, "color": "#" + channel_hex(ch, len(layout.channels))} for ch in layout.channels
        ],
        "voxel_size": list(layout.levels[0].voxel_size),
        "unit": ngff_unit(layout.unit),
    }


def _prefers_json(accept: str) -> bool:
    """Whether an ``Accept`` header ranks JSON above HTML (``*/*`` alone, as curl sends: HTML)."""
    quality: dict[str, float] = {}
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media and math.isfinite(q):
            quality[media.lower()] = max(q, quality.get(media.lower(), 0.0))

    def rank(media: str) -> float:
        kind = media.split("/")[0]
        for candidate in (media, f"{kind}/*", "*/*"):
            if candidate in quality:
                return quality[candidate]
        return 0.0

    return rank("application/json") > rank("text/html")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; text-align: left; }}
tr.error td {{ color: #a00; }}
.swatch {{ display: inline-block; width: 0.8em; height: 0.8em; margin: 0 0.2em 0 0.5em; }}
</style></head>
<body>
<h1>{title}</h1>
<p>Each file is an OME-NGFF {ngff} image at its own address. <a href="index.json">This index as JSON</a>.</p>
<table>
<tr><th>file</th><th>shape (t, c, z, y, x)</th><th>type</th><th>levels</th><th>channels</th>
<th>voxel (z, y, x)</th><th>open in</th></tr>
{rows}
</table>
</body></html>
"""
