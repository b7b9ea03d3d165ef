"""A folder of ``.ims`` files behind one HTTP server (``ims-store serve DIR``).

Each ``.ims`` under the folder is an OME-Zarr root at its own path (``/cells.ims/``,
``/sub/a.ims/``); ``/`` is an index of them, HTML for a person and JSON for a program (by the
``Accept`` header, or ``/index.json`` and ``/index.html``), listing each image's shape, data type,
levels, channels and viewer links, and each file that cannot be opened with its error.

Nothing outside the folder is served: a path is looked up only if each of its segments is a
plain name (no ``.``, ``..``, hidden names, no drive or absolute part) and only the first segment
ending in ``.ims`` names a file, which must be a regular file whose real path (symbolic links
resolved) lies inside the folder, checked on each request on the file as opened (a link swapped
after the check cannot lead out: see `ims_store.format.confine`); anything else is 404. A file
of several images is a collection (image k at ``/name.ims/k/``), listed with each image.

Files are opened on their first request, closed after ``idle_timeout`` seconds without one
(never while a request reads them) or when more than ``max_open`` are open (the least recently
used first), and reopened when they change on disk (device, inode, size or modification time):
a file replaced while served is read afresh, not through the handles of its predecessor.

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
import errno
import html
import json
import math
import os
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, Literal

from ..errors import ImsError, ImsFileNotFoundError, OutsideFolderError, ResourceLimitError
from ..format.confine import inside, open_inside
from ..format.geometry import ngff_unit
from ..format.layout import ImageEntry, ImsLayout
from ..store.ngff import channel_hex
from ..store.zarr_store import ImsStore
from .resolver import Document, Request, Shared, Stamp, Target, stamp_of
from .viewers import viewer_links

__all__ = ["DEFAULT_IDLE_TIMEOUT", "DEFAULT_MAX_OPEN", "MAX_DEPTH", "ImageFolder"]

# seconds a file stays open without a request: short, because a file held open cannot be
# renamed over or deleted on Windows (Imaris saving it fails until the server lets go of it)
DEFAULT_IDLE_TIMEOUT = 30.0
_INDEX_NAMES = ("", "index.html", "index.json")
_BANNER_FILES = 20  # files listed by name when the server starts (the index lists them all)

# folders deeper than this below the folder served are not walked (nor listed)
MAX_DEPTH = 64
DEFAULT_MAX_OPEN = 32  # files open at once at most (see ImageFolder's max_open)


class _Image:
    """What the folder knows of one file; ``lock`` guards every field."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path  # its real path, inside the folder
        self.lock = threading.Lock()
        self.open: Shared | None = None  # the open store, with the stamp of the file it reads
        self.stamp: Stamp | None = None  # of the file that failed to open (with ``error``)
        self.error: str | None = None  # why the file at ``stamp`` cannot be opened
        # what the index says of the file at ``images_stamp`` (kept when closed): its images,
        # and whether it is a collection of them (a file of several)
        self.images: tuple[ImageEntry, ...] | None = None
        self.collection = False
        self.images_stamp: Stamp | None = None
        self.last_used = 0.0


class ImageFolder:
    """Every ``.ims`` file under ``root``, each opened with ``opener`` on first use.

    Parameters
    ----------
    root
        The folder served.
    opener
        Makes the store of one file (``make_server`` passes one for the NGFF version served,
        which keeps every file the store opens inside the folder: see `ImsStore`'s ``within``).
    ngff
        The NGFF version the stores present (for the viewer links of the index).
    idle_timeout
        Seconds a file stays open without a request (default 30).
    max_open
        Files open at most at once (default 32): opening one more closes the least recently used
        of those no request is reading.

    The server's resolver (see `ims_store.fronts.resolver`); thread-safe.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        opener: Callable[[str], ImsStore],
        *,
        ngff: Literal["0.4", "0.5"] = "0.5",
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_open: int = DEFAULT_MAX_OPEN,
    ) -> None:
        if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, int | float) or not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be a number of seconds > 0, not {idle_timeout!r}")
        if isinstance(max_open, bool) or not isinstance(max_open, int) or max_open < 1:
            raise ValueError(f"max_open must be a number of files >= 1, not {max_open!r}")
        if ngff not in ("0.4", "0.5"):
            raise ValueError(f"ngff must be '0.4' or '0.5', not {ngff!r}")
        if not os.path.isdir(root):
            raise ImsFileNotFoundError("no such folder", root)
        self.root = os.path.realpath(root)
        self.ngff = ngff
        self.idle_timeout = float(idle_timeout)
        self.max_open = max_open
        self.too_deep: list[str] = []  # folders `names` did not walk into (see MAX_DEPTH)
        self._opener = opener
        self._images: dict[str, _Image] = {}
        self._lock = threading.Lock()  # guards _images and _reaper
        self._closed = threading.Event()
        self._reaper: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"ImageFolder({self.root!r}, ngff={self.ngff!r}, idle_timeout={self.idle_timeout})"

    # -- what is there ---------------------------------------------------------------------

    def names(self) -> list[str]:
        """The ``.ims`` files served, as paths relative to the folder (``sub/a.ims``), sorted.

        Hidden files and folders (``.name``) are left out, as is everything whose real path lies
        outside the folder; folders linked more than once are walked once, and folders more
        than `MAX_DEPTH` levels down not at all (named in ``too_deep``)."""
        found: list[str] = []
        walked: set[str] = set()
        too_deep: list[str] = []
        # a walk of its own, with a stack: os.walk recurses (Python < 3.12), and a tree a few
        # thousand folders deep would exhaust the interpreter's stack
        stack: list[tuple[str, str, int]] = [(self.root, "", 0)]
        while stack:
            folder, relative, depth = stack.pop()
            real = inside(self.root, folder)
            if real is None or real in walked:
                continue
            walked.add(real)
            try:
                with os.scandir(folder) as entries:
                    listed = sorted(entries, key=lambda e: e.name)
            except OSError:  # unreadable, or gone meanwhile
                continue
            for entry in listed:
                name = f"{relative}{entry.name}"
                if not _plain(entry.name):
                    continue
                try:
                    is_dir = entry.is_dir()  # following links, as os.walk(followlinks=True) did
                except OSError:
                    continue
                if is_dir:
                    # a folder named x.ims cannot be reached: its path names the file x.ims
                    if _is_ims(entry.name):
                        continue
                    if depth + 1 > MAX_DEPTH:
                        too_deep.append(name)
                    else:
                        stack.append((entry.path, name + "/", depth + 1))
                elif _is_ims(entry.name) and _utf8(name) and self._locate(name) is not None:
                    found.append(name)
        self.too_deep = sorted(too_deep)
        return sorted(found)

    def open_names(self) -> list[str]:
        """The files open now (a request opens one; ``idle_timeout`` closes it)."""
        with self._lock:
            images = list(self._images.values())
        return sorted(image.name for image in images if image.open is not None)

    def _locate(self, name: str) -> tuple[str, Stamp] | None:
        """The real path and stamp of the file ``name`` names, or None where it names no
        ``.ims`` file inside the folder. The stamp is the file's as opened following no link
        that was swapped in after its real path was checked (see `open_inside`): nothing is
        remembered as checked, each request checks again. Raises `ResourceLimitError` when
        no file descriptor is left to look."""
        parts = name.split("/")
        if not all(_plain(p) for p in parts) or not _is_ims(parts[-1]) or any(_is_ims(p) for p in parts[:-1]):
            return None
        try:
            real = inside(self.root, os.path.join(self.root, *parts))
            if real is None:
                return None
            fd = open_inside(self.root, real)
        except OutsideFolderError:
            return None
        except (OSError, ValueError) as err:  # missing, unreadable, a name the file system refuses
            if isinstance(err, OSError) and err.errno in (errno.EMFILE, errno.ENFILE):
                raise ResourceLimitError(f"cannot be opened: {err.strerror}", name) from err
            return None
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        return real, stamp_of(info)

    def _image(self, name: str, path: str) -> _Image:
        with self._lock:
            old = self._images.get(name)
            if old is not None and old.path == path:
                return old
            image = self._images[name] = _Image(name, path)
        if old is not None:  # the name leads to another file now (a link retargeted)
            with old.lock:
                if old.open is not None:
                    old.open.retire()
                    old.open = None
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
            self._evict(keep=image)
            yield opened.store
        finally:
            with image.lock:
                image.last_used = time.monotonic()
                opened.release()

    def _acquire(self, image: _Image, stamp: Stamp) -> Shared:
        with image.lock:
            if image.open is not None and image.open.stamp != stamp:  # changed on disk
                image.open.retire()
                image.open = None
            if image.open is None:
                if image.error is not None and image.stamp == stamp:
                    raise _Unreadable(image.error, image.name)
                store = self._open(image, stamp)
                image.open, image.error = Shared(store, stamp), None
                image.images, image.collection, image.images_stamp = store.images, store.is_collection, stamp
                self._start_reaper()
            opened = image.open
            opened.users += 1
            image.last_used = time.monotonic()
            return opened

    def _open(self, image: _Image, stamp: Stamp) -> ImsStore:
        """The store of ``image`` (its lock held); a failure is remembered as the file's, unless
        it is the process's (no descriptor left), which says nothing of the file."""
        try:
            return self._opener(image.path)
        except ResourceLimitError as err:
            raise _Unreadable(self._describe_error(err), image.name, status=503) from err
        except OutsideFolderError as err:
            if self._locate(image.name) != (image.path, stamp):
                # the name was swapped for a link leading out while the file was opened:
                # nothing is here now (404), and nothing is remembered of the file
                raise _Unreadable("not found", image.name, status=404) from err
            image.error, image.stamp = self._describe_error(err), stamp  # a link of its own leads out
            raise _Unreadable(image.error, image.name) from err
        except Exception as err:  # any other failure is this file's: the server stays up
            image.error, image.stamp = self._describe_error(err), stamp
            raise _Unreadable(image.error, image.name) from err

    def _evict(self, keep: _Image) -> None:
        """Close the least recently used files no request reads until at most ``max_open`` are
        open (a file being read stays open, even beyond the cap)."""
        with self._lock:
            images = [image for image in self._images.values() if image.open is not None and image is not keep]
        excess = len(images) + 1 - self.max_open
        for image in sorted(images, key=lambda image: image.last_used):
            if excess <= 0:
                break
            # another request may hold this file's lock while it waits for ours: never block
            if not image.lock.acquire(blocking=False):
                continue
            try:
                if image.open is not None and image.open.users == 0:
                    image.open.retire()
                    image.open = None
                    excess -= 1
            finally:
                image.lock.release()

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
                    image.open.retire()
                    image.open = None
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
                    image.open.retire()
                    image.open = None

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
                for part in image.get("images", [image]):  # a file of several: each image
                    where = f"image {part['image']}: " if "images" in image else ""
                    if "error" in part:
                        lines.append(f"    {where}cannot be served: {part['error']}")
                    else:
                        link = part["links"]["neuroglancer"]
                        lines.append(f"    {where}neuroglancer, each channel in its colour: {link}")
        if len(names) > len(shown):
            lines.append(f"  ... and {len(names) - len(shown)} more: see the index")
        if self.too_deep:
            lines.append(
                f"  not listed: {len(self.too_deep)} folder(s) more than {MAX_DEPTH} levels down "
                f"(the first: {self.too_deep[0]})"
            )
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
        served = False  # an error raised while the request reads the store is the request's
        try:
            with self.lease(name) as store:
                served = True
                yield None if store is None else (store, key)
        except _Unreadable as err:
            if served:
                raise
            yield Document(f"{err}\n".encode(), "text/plain; charset=utf-8", status=err.status)
        except ResourceLimitError as err:  # the process's, not the file's: try again later
            if served:
                raise
            yield Document(f"{self._describe_error(err)}\n".encode(), "text/plain; charset=utf-8", status=503)

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
            described = self._entries(self._image(name, found[0]), found[1])
            if isinstance(described, str):
                entry["error"] = described
            elif described[0]:  # a file of several images: a collection, image k at k/
                entry["images"] = [_entry(f"{url}{e.index}/", e, self.ngff) for e in described[1]]
            else:
                entry.update(_entry(url, described[1][0], self.ngff))
                del entry["image"]
            images.append(entry)
        zarr_format = 3 if self.ngff == "0.5" else 2
        return {"ngff": self.ngff, "zarr_format": zarr_format, "images": images}

    def _entries(self, image: _Image, stamp: Stamp) -> tuple[bool, tuple[ImageEntry, ...]] | str:
        """Whether the file at ``stamp`` is a collection, and its images; or why it cannot be
        opened. A file not open is opened for it and closed again: listing a folder does not
        hold every file open."""
        with image.lock:
            if image.images is not None and image.images_stamp == stamp:
                return image.collection, image.images
            if image.error is not None and image.stamp == stamp:
                return image.error
            try:
                store = self._open(image, stamp)
            except _Unreadable as err:
                return err.reason
            try:
                image.images, image.collection, image.images_stamp = store.images, store.is_collection, stamp
            finally:
                store.close()
            return image.collection, image.images

    def index_html(self, base_url: str) -> str:
        """The index as a web page."""
        index = self.index(base_url)
        root_document = "zarr.json" if self.ngff == "0.5" else ".zattrs"  # what the file's name links to
        rows = []
        # a file of several images: a row per image, named file [k]
        flat = [
            {**part, "name": f"{file['name']} [{part['image']}]"} if "images" in file else file
            for file in index["images"]
            for part in file.get("images", [file])
        ]
        for image in flat:
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
    """A file of the folder that cannot be opened (the message is its error); ``status``: the
    HTTP status it is answered with (503 where the process, not the file, is at fault)."""

    def __init__(self, message: str, path: str | None = None, status: int = 500) -> None:
        super().__init__(message, path)
        self.status = status


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


def _entry(url: str, entry: ImageEntry, ngff: Literal["0.4", "0.5"]) -> dict[str, Any]:
    """What the index says of one image served at ``url``: its description and viewer links, or
    why it cannot be read."""
    if entry.layout is None:
        reason = entry.error.reason if entry.error is not None else "cannot be read"
        return {"image": entry.index, "url": url, "error": f"{type(entry.error).__name__}: {reason}"}
    return {"image": entry.index, "url": url, **_describe(entry.layout), "links": viewer_links(url, ngff, entry.layout)}


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
