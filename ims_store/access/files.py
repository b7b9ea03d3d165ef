"""Where an Imaris file's bytes come from: a local path (``os.pread``, or per-thread file handles
where the OS has no positional reads) or any fsspec URL.

The HDF5 metadata is parsed through h5py either way (for a remote file, through an fsspec file
object with a large block cache, so that the many small reads HDF5 makes cost few requests);
chunk bytes are then fetched as byte ranges, never through h5py.

>>> source = open_file("cells.ims")
>>> source.size() > 0, source.remote
(True, False)
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import h5py

from ..errors import (
    ImsError,
    ImsFileNotFoundError,
    MissingDependencyError,
    NotHDF5Error,
    OutsideFolderError,
    RemoteReadError,
    ResourceLimitError,
    TruncatedFileError,
)
from ..format.confine import identity, open_inside
from ..format.layout import ImageEntry, ImsLayout, open_hdf5, parse_images, parse_layout
from ..format.links import Links
from .workers import run_blocking

__all__ = [
    "MERGED_READ_BYTES",
    "PORTABLE_READS_VARIABLE",
    "WHOLE_FILE_LIMIT",
    "LocalFile",
    "RemoteFile",
    "file_url_path",
    "is_remote",
    "links_of",
    "local_path",
    "location",
    "open_file",
    "output_path",
    "portable_reads",
    "read_images",
    "read_layout",
    "read_range",
    "scratch_buffer",
]

T = TypeVar("T")

# HDF5 reads its metadata in many small pieces; blocks of this size make them few requests
REMOTE_BLOCK_SIZE = 4 * 1024 * 1024

# `LocalFile.read_ranges` reads chunks that lie one after the other in the file in one call of
# at most this size: enough to save thousands of calls on small chunks, small enough that the
# bytes read are still in the CPU's cache when they are decoded (a chunk larger is read alone)
MERGED_READ_BYTES = 512 * 1024

# a server that ignores byte ranges (python -m http.server) answers every request with the whole
# file: a file up to this size is then read once and served from memory (with a warning); a
# larger one is refused with a RemoteReadError
WHOLE_FILE_LIMIT = 512 * 1024 * 1024

# aiohttp pauses reading a response each time 64 KiB (its read_bufsize) wait for the reader: for
# chunk responses of megabytes that churn costs more CPU than the bytes (a level of 123 MB was
# received with 0.08-0.13 s of CPU instead of 0.18-0.20 s with this)
HTTP_READ_BUFSIZE = 4 * 1024 * 1024

# a URL scheme (RFC 3986): a letter, then letters, digits, "+", "-", "."
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def is_remote(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a URL of a non-local fsspec file system (``s3://``, ``https://``...).

    >>> is_remote("s3://bucket/cells.ims"), is_remote(r"C:\\data\\cells.ims"), is_remote("file:///data/cells.ims")
    (True, False, False)
    """
    return local_path(path) is None


def local_path(path: str | os.PathLike[str], *, windows: bool | None = None) -> str | None:
    """The path on this machine that ``path`` names, or None when it is a URL of another file
    system (``s3://``, ``https://``...): the one place ims_store tells paths from URLs.

    A path is taken as typed (``C:\\data\\cells.ims``, ``\\\\server\\share\\cells.ims``,
    ``/data/cells.ims``, ``cells.ims``); a ``file:`` URL is turned into the path it names (see
    `file_url_path`). A drive letter is never taken for a URL scheme. ``windows``: parse as on
    Windows or not (default: as this OS does).

    >>> local_path("file:///data/my%20cells.ims", windows=False)
    '/data/my cells.ims'
    >>> local_path("file:///C:/data/cells.ims", windows=True)
    'C:\\\\data\\\\cells.ims'
    >>> local_path("https://host/cells.ims") is None
    True
    """
    text = os.fspath(path)
    scheme, colon, _ = text.partition(":")
    if not colon or len(scheme) < 2 or not _SCHEME.fullmatch(scheme):  # a path, or a drive letter
        return text
    if scheme.lower() == "file":
        return file_url_path(text, windows=windows)
    if scheme.lower() == "local" and text[len(scheme) :].startswith("://"):  # fsspec's alias of file://
        return file_url_path("file" + text[len(scheme) :], windows=windows)
    return None if "://" in text else text  # "name:with-colon.ims" is a relative path


def location(path: str | os.PathLike[str]) -> str:
    """``path`` as ims_store opens it: the local path it names (a ``file:`` URL turned into its
    path), or a remote URL unchanged (see `local_path`).

    >>> location("file://localhost/data/cells.ims") == os.path.normpath("/data/cells.ims")
    True
    >>> location("s3://bucket/cells.ims")
    's3://bucket/cells.ims'
    """
    text = os.fspath(path)
    local = local_path(text)
    return text if local is None else local


def output_path(path: str | os.PathLike[str]) -> Path:
    """The path an output is written to: a path as typed, or the path a ``file:`` URL names
    (see `location`).

    >>> output_path("file:///data/my%20cells.ims") == Path("/data/my cells.ims")
    True
    """
    return Path(location(path))


def file_url_path(url: str, *, windows: bool | None = None) -> str:
    """The path a ``file:`` URL names (RFC 8089), percent-escapes decoded: what `Path.as_uri`
    writes, read back. ``file:///C:/data/x.ims`` and ``file://localhost/C:/data/x.ims`` name
    ``C:\\data\\x.ims`` on Windows; ``file://server/share/x.ims`` (and ``file:////server/share``)
    the share ``\\\\server\\share\\x.ims``. ``windows``: parse as on Windows or not (default:
    as this OS does). Elsewhere a URL naming another host cannot be read: an `ImsError`.

    >>> file_url_path("file:///C:/my%20data/cells.ims", windows=True)
    'C:\\\\my data\\\\cells.ims'
    >>> file_url_path("file://server/share/cells.ims", windows=True)
    '\\\\\\\\server\\\\share\\\\cells.ims'
    >>> file_url_path("file://localhost/data/cells.ims", windows=False)
    '/data/cells.ims'
    """
    import urllib.parse

    if windows is None:
        windows = os.name == "nt"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "file":
        raise ImsError("is not a file: URL", url)
    host = urllib.parse.unquote(parts.netloc)
    path = urllib.parse.unquote(parts.path)
    if host.lower() == "localhost":
        host = ""
    if not host and path.startswith("//") and not path.startswith("///"):  # file:////server/share/...
        host, _, rest = path[2:].partition("/")
        path = "/" + rest
    if windows:
        from pathlib import PureWindowsPath

        if host:
            return str(PureWindowsPath(f"//{host}{path}"))
        if len(path) >= 3 and path[0] == "/" and path[2] in ":|" and path[1].isalpha():  # /C:/... (or /C|/...)
            path = path[1] + ":" + path[3:]
        return str(PureWindowsPath(path))
    if host:
        raise ImsError(f"names a file on another host ({host}); open it through a mounted path", url)
    return path


#: set to 1 to read local files through per-thread handles (``seek`` + ``readinto``) even where
#: the OS has positional reads: the path Windows takes, for tests and benchmarks on Linux
PORTABLE_READS_VARIABLE = "IMS_STORE_PORTABLE_READS"


def portable_reads() -> bool:
    """Whether local files are read through per-thread handles rather than ``os.pread``: where
    the OS has no positional reads (Windows), or where `PORTABLE_READS_VARIABLE` asks for it
    (read when a `LocalFile` is made).

    >>> portable_reads() == (not hasattr(os, "pread") or os.environ.get("IMS_STORE_PORTABLE_READS") == "1")
    True
    """
    return not hasattr(os, "pread") or os.environ.get(PORTABLE_READS_VARIABLE, "") == "1"


class LocalFile:
    """A file on this machine: positional reads on one descriptor shared by every thread
    (``os.pread``), or, where the OS has none (see `portable_reads`), one handle per thread.

    `close` never pulls a descriptor from under a read in flight (the number could be reused by
    another file, and the read would return its bytes): the last read to finish closes it. A
    read after `close` opens the file again.
    """

    remote = False

    def __init__(self, path: str, within: str | None = None) -> None:
        self.label = path
        self.within = within
        """A folder (a real path) the file must lie in, checked on the descriptors opened (see
        `ims_store.format.confine`): a server's boundary. None: no check."""
        self._fd: int | None = None
        self._readers: dict[int, int] = {}  # descriptor -> reads in flight on it
        self._retired: set[int] = set()  # closed by `close`, still in use by reads
        self._lock = threading.Lock()
        self._handles: _ThreadHandles | None = _ThreadHandles(self._open_descriptor) if portable_reads() else None

    @property
    def portable(self) -> bool:
        """Whether this file is read through per-thread handles (see `portable_reads`)."""
        return self._handles is not None

    @property
    def is_open(self) -> bool:
        """Whether a descriptor or handle of this file is open (none after `close` until the next
        read, except one a read in flight still holds)."""
        if self._handles is not None and self._handles.is_open:
            return True
        with self._lock:
            return self._fd is not None or bool(self._retired)

    def open_hdf5(self) -> h5py.File:
        f = open_hdf5(self.label)
        if self.within is not None:
            # HDF5 opens the file by its name: it must have opened the file this source's own
            # descriptor (opened following no link) holds, not one a link swapped in meanwhile
            try:
                fd = self._acquire()
                try:
                    same = identity(f.id.get_vfd_handle()) == identity(fd)
                finally:
                    self._release(fd)
            except BaseException:
                f.close()
                raise
            if not same:
                f.close()
                raise OutsideFolderError("changed while it was opened (a link was swapped)", self.label)
        return f

    def linked(self, path: str) -> LocalFile:
        """Another file on this machine (the target of an external link), within the same folder."""
        return LocalFile(path, self.within)

    def failed_read(self, what: str = "") -> RemoteReadError | None:
        """Never anything: a local file has no requests to fail (see `RemoteFile`)."""
        return None

    def _open_descriptor(self) -> int:
        """A new descriptor on the file (inside `within` where set), for `_acquire` and for each
        thread's handle; too many open files: a `ResourceLimitError`."""
        try:
            if self.within is not None:
                return open_inside(self.within, self.label)
            return os.open(self.label, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except OSError as err:
            if err.errno in (errno.EMFILE, errno.ENFILE):
                raise ResourceLimitError(f"cannot be opened: {err.strerror}", self.label) from err
            raise

    def _acquire(self) -> int:
        with self._lock:
            if self._fd is None:
                self._fd = self._open_descriptor()
            self._readers[self._fd] = self._readers.get(self._fd, 0) + 1
            return self._fd

    def _release(self, fd: int) -> None:
        with self._lock:
            self._readers[fd] -= 1
            if not self._readers[fd]:
                del self._readers[fd]
                if fd in self._retired:
                    self._retired.discard(fd)
                    os.close(fd)

    def size(self) -> int:
        if self._handles is not None:
            return self._handles.size()
        fd = self._acquire()
        try:
            return os.fstat(fd).st_size
        finally:
            self._release(fd)

    def read(self, offset: int, size: int, into: Any = None) -> bytes | memoryview:
        """``size`` bytes at ``offset``, into new bytes or into ``into`` (see `read_range`)."""
        if self._handles is not None:
            return self._handles.read(offset, size, into)
        fd = self._acquire()
        try:
            return read_range(fd, offset, size, into)
        finally:
            self._release(fd)

    def read_ranges(self, offsets: Sequence[int], sizes: Sequence[int]) -> Iterator[memoryview]:
        """The bytes at each ``offsets[i]``, ``sizes[i]`` long, in order, as views of this
        thread's scratch buffer (see `scratch_buffer`): valid until the next one is taken.

        Ranges that follow each other in the file are read together, `MERGED_READ_BYTES` at
        most at a time: a chunk read costs a system call and a hand-back of the GIL whatever its
        size, and chunks of 64 KiB are read a few thousand times per level.

        Raises ``EOFError`` when the file ends first (see `read_range`).
        """
        if self._handles is not None:
            # each read takes this thread's handle anew: the generator may be suspended while
            # its consumer closes the file
            yield from _merged_reads(self._handles.read, offsets, sizes)
            return
        fd = self._acquire()
        try:
            yield from _merged_reads(lambda at, n, into: read_range(fd, at, n, into), offsets, sizes)
        finally:
            self._release(fd)

    def close(self) -> None:
        if self._handles is not None:
            self._handles.close()  # (the descriptor below is opened here only to check identity)
        with self._lock:
            if self._fd is not None:
                if self._fd in self._readers:
                    self._retired.add(self._fd)  # the last read on it closes it
                else:
                    os.close(self._fd)
                self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


def _merged_reads(
    read: Callable[[int, int, Any], bytes | memoryview], offsets: Sequence[int], sizes: Sequence[int]
) -> Iterator[memoryview]:
    """`LocalFile.read_ranges` with ``read(offset, size, into)``."""
    i, n = 0, len(offsets)
    while i < n:
        start = offsets[i]
        stop, j = start + sizes[i], i + 1
        while j < n and offsets[j] == stop and stop + sizes[j] - start <= MERGED_READ_BYTES:
            stop += sizes[j]
            j += 1
        run = read(start, stop - start, scratch_buffer(stop - start))
        for k in range(i, j):
            at = offsets[k] - start
            yield run[at : at + sizes[k]]  # type: ignore[misc]
        i = j


class _Handle:
    """One thread's file object on a file. ``lock`` guards only its flags, never a read: `close`
    never waits for a read (a daemon thread stopped mid-read at exit would hold it forever), and
    a handle retired by `close` while a read is in flight on it is closed by that read."""

    __slots__ = ("busy", "closed", "file", "lock", "retired", "thread")

    def __init__(self, opener: Callable[[], int]) -> None:
        self.file = open(opener(), "rb", buffering=0)  # closed by `retire` or by the read in flight then
        self.lock = threading.Lock()
        self.thread = threading.current_thread()
        self.busy = self.retired = self.closed = False

    def take(self) -> bool:
        """Mark a read begun; False once `retire` has been called (take another handle)."""
        with self.lock:
            if self.retired:
                return False
            self.busy = True
            return True

    def give_back(self) -> None:
        """Mark the read ended: close the file if `retire` was called meanwhile."""
        with self.lock:
            self.busy = False
            if self.retired and not self.closed:
                self.closed = True
                self.file.close()

    def retire(self) -> None:
        """Close the file now, or when the read in flight on it ends."""
        with self.lock:
            self.retired = True
            if not self.busy and not self.closed:
                self.closed = True
                self.file.close()


class _ThreadHandles:
    """Positional reads without ``pread``: each thread reads through a handle of its own
    (``seek`` + ``readinto`` on an unbuffered file object, which hold no lock of Python's and
    release the GIL), so that no two threads share a file position or wait for one another.

    The handles are kept here to be closed with the file; the handle of a thread that has ended
    is closed when another thread opens one.
    """

    def __init__(self, opener: Callable[[], int]) -> None:
        self.opener = opener  # a new descriptor on the file
        self._local = threading.local()
        self._open: list[_Handle] = []
        self._retiring: list[_Handle] = []  # retired by `close` while a read was in flight on them
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        with self._lock:
            return any(not h.closed for h in self._open + self._retiring)

    def _taken(self) -> _Handle:
        """This thread's handle, marked busy (opened first where it has none, or `close` retired it)."""
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is not None and handle.take():
            return handle
        handle = _Handle(self.opener)
        handle.take()
        with self._lock:
            ended = [h for h in self._open if not h.thread.is_alive()]
            self._open = [h for h in self._open if h.thread.is_alive()]
            self._open.append(handle)
        for h in ended:
            h.retire()
        self._local.handle = handle
        return handle

    def size(self) -> int:
        handle = self._taken()
        try:
            return os.fstat(handle.file.fileno()).st_size
        finally:
            handle.give_back()

    def read(self, offset: int, size: int, into: Any = None) -> bytes | memoryview:
        """``size`` bytes at ``offset`` through this thread's handle (see `read_range`)."""
        handle = self._taken()
        try:
            return _read_at(handle.file, offset, size, into)
        finally:
            handle.give_back()

    def close(self) -> None:
        with self._lock:
            handles, self._open = self._open, []
        for handle in handles:
            handle.retire()
        with self._lock:
            self._retiring = [h for h in self._retiring + handles if not h.closed]


def _read_at(file: io.FileIO, offset: int, size: int, into: Any = None) -> bytes | memoryview:
    """`read_range` through a file object of this thread's own: ``seek``, then ``readinto``."""
    file.seek(offset)
    if into is None:
        data = file.read(size)
        if len(data) != size:
            got = len(data)
            parts = [data]
            while got < size:
                more = file.read(size - got)
                if not more:
                    raise EOFError(f"file ends {size - got} bytes short of a chunk at offset {offset}")
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        return data
    view = memoryview(into).cast("B")[:size]
    got = 0
    while got < size:
        n = file.readinto(view[got:])
        if not n:
            raise EOFError(f"file ends {size - got} bytes short of a chunk at offset {offset}")
        got += n
    return view


class RemoteFile:
    """A file behind an fsspec URL: metadata through a cached file object, chunks as ranges."""

    remote = True

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.label = url
        self.storage_options = dict(storage_options or {})
        options = dict(self.storage_options)
        if url.split("://", 1)[0].lower() in ("http", "https"):
            options["client_kwargs"] = {"read_bufsize": HTTP_READ_BUFSIZE, **(options.get("client_kwargs") or {})}
        try:
            self.fs, self.path = fsspec.core.url_to_fs(url, **options)
        except ImportError as err:
            raise missing_protocol(url, err) from err
        except ValueError as err:
            raise ImsError(f"cannot reach the file: {err}", url) from err
        self._size: int | None = None
        self._whole: bytes | None = None  # the whole file, from a server that ignores byte ranges
        self._async = bool(getattr(self.fs, "async_impl", False)) and getattr(self.fs, "loop", None) is not None
        self._reads: _Reads | None = None

    def linked(self, url: str) -> RemoteFile:
        """Another file on the same file system, with the same options (an external link's target)."""
        return RemoteFile(url, self.storage_options)

    def size(self) -> int:
        if self._size is None:
            try:
                self._size = int(self.fs.size(self.path))
            except FileNotFoundError as err:
                raise ImsFileNotFoundError("no such file", self.label) from err
            except OSError as err:
                raise ImsError(f"cannot be read: {err}", self.label) from err
        return self._size

    def open_hdf5(self) -> h5py.File:
        from .blockcache import CACHE_TYPE

        # the size and the first block, which HDF5 reads first, asked for in one round trip
        first = self._call("cat_file", self.path, start=0, end=REMOTE_BLOCK_SIZE)
        size = self._size if self._size is not None else self._call("info", self.path)
        try:
            self._size = size if isinstance(size, int) else int(size.result()["size"])
        except Exception as err:
            failure = first.exception()
            # fsspec's HTTP file system calls any failure to learn the size "not found": the
            # first block's answer tells a missing file from a server that failed or was not there
            if isinstance(err, FileNotFoundError) and (failure is None or isinstance(failure, FileNotFoundError)):
                raise ImsFileNotFoundError("no such file", self.label) from err
            cause = failure if isinstance(err, FileNotFoundError) and failure is not None else err
            raise unreadable(cause, self.label) from cause
        if self._size == 0:
            raise NotHDF5Error("is empty (0 bytes), not an Imaris (.ims) file", self.label)
        # a first block that failed or came short is simply fetched again by the file object,
        # which then reports what is wrong
        seed = first.result() if first.exception() is None else b""
        if len(seed) > min(REMOTE_BLOCK_SIZE, self._size):
            self._ranges_ignored(seed)
        if self._whole is not None:
            return self._hdf5_of(io.BytesIO(self._whole), None)
        blocks = {0: seed} if len(seed) == min(REMOTE_BLOCK_SIZE, self._size) else {}
        try:
            handle = self.fs.open(
                self.path,
                "rb",
                block_size=REMOTE_BLOCK_SIZE,
                cache_type=CACHE_TYPE,
                cache_options={"blocks": blocks},
                size=self._size,
            )
        except FileNotFoundError as err:
            raise ImsFileNotFoundError("no such file", self.label) from err
        except Exception as err:
            raise unreadable(err, self.label) from err
        self._reads = reads = _Reads(handle)
        return self._hdf5_of(reads, handle)

    def _hdf5_of(self, fileobj: Any, handle: Any) -> h5py.File:
        """h5py's file over ``fileobj``; a failure to open it as the error that says why."""
        try:
            return h5py.File(fileobj, "r")
        except OSError as err:
            if handle is not None:
                handle.close()
            failed = self.failed_read()
            if failed is not None:
                raise failed from err
            message = str(err).lower()
            if "signature" in message:
                raise NotHDF5Error("not an HDF5 file, so not an Imaris (.ims) file", self.label) from err
            raise TruncatedFileError(
                f"HDF5 cannot open the file; it is damaged or truncated ({err})", self.label
            ) from err

    def failed_read(self, what: str = "") -> RemoteReadError | None:
        """The error for the last request HDF5 made that failed, once (then forgotten); ``what``:
        what HDF5 was reading. HDF5 passes such a failure on as the transport's own exception, or
        as an error of its own while opening: this tells the network's failures from the file's."""
        if self._reads is None:  # HDF5 never read through this file (its opening failed first)
            return None
        failure, self._reads.failure = self._reads.failure, None
        return None if failure is None else unreadable(failure, self.label, what)

    def read(self, offset: int, size: int) -> bytes:
        return self.fetch(offset, size).result()

    def fetch(self, offset: int, size: int) -> Future[bytes]:
        """A future of ``size`` bytes at ``offset``, one range request, on the file system's own
        event loop where it has one (so that many are in flight together, without threads)."""
        if self._whole is not None:  # a server without byte ranges: the file is here already
            done: Future[bytes] = Future()
            try:
                done.set_result(_checked(self._whole[offset : offset + size], offset, size))
            except EOFError as err:
                done.set_exception(err)
            return done
        if self._async:
            return asyncio.run_coroutine_threadsafe(self._exactly(offset, size), self.fs.loop)
        return run_blocking(self._exactly_blocking, offset, size)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Future[Any]:
        """``fs.method(...)`` as a future: its coroutine ``fs._method`` on the file system's loop,
        or a thread for a file system without one."""
        if self._async:
            return asyncio.run_coroutine_threadsafe(getattr(self.fs, "_" + method)(*args, **kwargs), self.fs.loop)
        return run_blocking(getattr(self.fs, method), *args, **kwargs)

    async def _exactly(self, offset: int, size: int) -> bytes:
        try:
            data = await self.fs._cat_file(self.path, start=offset, end=offset + size)
        except Exception as err:
            raise self._failed(err, offset, size) from err
        return self._answered(data, offset, size)

    def _exactly_blocking(self, offset: int, size: int) -> bytes:
        try:
            data = self.fs.cat_file(self.path, start=offset, end=offset + size)
        except Exception as err:
            raise self._failed(err, offset, size) from err
        return self._answered(data, offset, size)

    def _answered(self, data: bytes, offset: int, size: int) -> bytes:
        """The bytes a range request asked for, from what the server sent (more than asked: the
        server ignores byte ranges, see `_ranges_ignored`)."""
        if len(data) > size:
            data = self._ranges_ignored(data)[offset : offset + size]
        return _checked(data, offset, size)

    def _ranges_ignored(self, data: bytes) -> bytes:
        """The whole file, which a server that ignores byte ranges sent for a range request: kept
        and served from memory with a warning, up to `WHOLE_FILE_LIMIT`; beyond it, refused."""
        import warnings

        from ..format.layout import ImsWarning

        size = self.size()
        if len(data) != size:
            raise RemoteReadError(
                f"the server answered a byte range request with {len(data)} bytes of a file of {size}", self.label
            )
        if size > WHOLE_FILE_LIMIT:
            raise RemoteReadError(
                f"the server does not support byte ranges (it answers every request with the whole file), "
                f"and the file ({size} bytes) is larger than ims_store reads whole ({WHOLE_FILE_LIMIT} bytes)",
                self.label,
            )
        if self._whole is None:
            self._whole = data
            warnings.warn(
                f"{self.label}: the server does not support byte ranges; the whole file ({size} bytes) was "
                "read once and every read is served from memory",
                ImsWarning,
                stacklevel=2,
            )
        return self._whole

    def _failed(self, err: Exception, offset: int, size: int) -> RemoteReadError:
        return RemoteReadError(f"bytes {offset}..{offset + size}: {describe_failure(err)}", self.label)

    def close(self) -> None:
        """Nothing to release: every read is its own request."""


class _Reads:
    """The fsspec file object HDF5 reads a remote file's metadata through, keeping the last
    request that failed (see `RemoteFile.failed_read`)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.failure: BaseException | None = None

    def readinto(self, buffer: Any) -> int:
        try:
            return self.handle.readinto(buffer)
        except Exception as err:
            self.failure = err
            raise

    def read(self, size: int = -1) -> bytes:
        try:
            return self.handle.read(size)
        except Exception as err:
            self.failure = err
            raise

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()

    def close(self) -> None:
        self.handle.close()


def unreadable(err: BaseException, label: str, what: str = "") -> RemoteReadError:
    """The error for a request that failed with ``err`` while reading ``what`` of the file ``label``."""
    return RemoteReadError(f"{what} cannot be read: {describe_failure(err)}".lstrip(), label)


def describe_failure(err: BaseException) -> str:
    """What a failed request says: the server's status where it answered, else the error."""
    status = getattr(err, "status", None)
    if isinstance(status, int):
        return f"the server answered HTTP {status} {getattr(err, 'message', '') or ''}".rstrip()
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _checked(data: bytes, offset: int, size: int) -> bytes:
    if len(data) != size:
        raise EOFError(f"got {len(data)} of {size} bytes at offset {offset}")
    return data


def links_of(
    source: LocalFile | RemoteFile,
    f: h5py.File,
    *,
    follow: bool = True,
    open_linked: Callable[[str], h5py.File] | None = None,
    within: str | None = None,
) -> Links:
    """The links of ``f``, ``source``'s open HDF5 file: a remote file's targets are opened with
    ``open_linked`` (default: on the same file system, with the same options)."""
    return Links(
        f,
        source.label,
        remote=source.remote,
        follow=follow,
        open_linked=open_linked or (lambda url: source.linked(url).open_hdf5()),
        within=within,
    )


# the extra of this distribution that installs what fsspec needs for a protocol
REMOTE_EXTRAS = {"http": "remote", "https": "remote"}


def missing_protocol(url: str, err: ImportError) -> MissingDependencyError:
    """The error for a URL whose fsspec file system cannot be imported: names the missing package
    and the extra that installs it (``ims-store[remote]`` for HTTP(S)).

    >>> print(missing_protocol("https://example.org/cells.ims", ModuleNotFoundError(name="aiohttp")))
    https://example.org/cells.ims: https:// URLs need 'aiohttp', not installed: pip install 'ims-store[remote]'
    """
    protocol = url.split("://", 1)[0].lower()
    # fsspec re-raises the import's failure as a message of its own (naming more than it needs)
    missing = err.name or getattr(err.__cause__, "name", None)
    what = repr(missing) if missing else f"a package that is not installed ({err})"
    extra = REMOTE_EXTRAS.get(protocol)
    fix = f"pip install 'ims-store[{extra}]'" if extra else "install the fsspec implementation of that protocol"
    return MissingDependencyError(f"{protocol}:// URLs need {what}, not installed: {fix}", url)


def open_file(
    path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None, within: str | None = None
) -> LocalFile | RemoteFile:
    """The byte source for ``path``: local, or remote when it is a URL. ``within``: a folder a
    local file must lie in (see `LocalFile.within`)."""
    text = os.fspath(path)
    local = local_path(text)
    return RemoteFile(text, storage_options) if local is None else LocalFile(local, within)


_preadv = getattr(os, "preadv", None)
_scratch = threading.local()


def read_range(fd: int, offset: int, size: int, into: Any = None) -> bytes | memoryview:
    """Read exactly ``size`` bytes at ``offset`` (positional, GIL-free, thread-safe): into new
    bytes, or into the start of ``into`` (a writable buffer of at least ``size`` bytes, returned
    as a memoryview of them).

    Reading into a buffer that is used again spares the allocator: each fresh megabyte it hands
    out costs page faults once it has given freed memory back to the kernel, which glibc does
    for buffers of this size (bench_read: 10-15% of a read of 2 MiB chunks).

    Raises ``EOFError`` when the file ends first (a truncated copy).
    """
    if into is not None and _preadv is not None:
        view = memoryview(into).cast("B")[:size]
        got = 0
        while got < size:
            n = _preadv(fd, [view[got:]], offset + got)
            if not n:
                raise EOFError(f"file ends {size - got} bytes short of a chunk at offset {offset}")
            got += n
        return view
    data = os.pread(fd, size, offset)
    if len(data) == size:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            raise EOFError(f"file ends {size - got} bytes short of a chunk at offset {offset}")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def scratch_buffer(size: int) -> Any:
    """This thread's buffer of at least ``size`` bytes, for bytes used up before the thread
    reads into it again (stored chunk bytes decoded at once: see `read_range`). It grows to the
    largest size asked, one per thread."""
    buffer = getattr(_scratch, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = _scratch.buffer = bytearray(size)
    return buffer


def read_layout(
    path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None, *, image: int = 0
) -> ImsLayout:
    """Open an Imaris file (a path or any fsspec URL), parse image ``image`` (default the first,
    in most files the only one) into an `ImsLayout` and close it.

    >>> read_layout("cells.ims").levels[1].size
    (8, 64, 48)
    """
    return _parsed(path, storage_options, lambda f, label, links: parse_layout(f, label, links, image=image))


def read_images(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> tuple[ImageEntry, ...]:
    """Every image of an Imaris file, each with its layout or the error that keeps it from being
    read (see `parse_images`).

    >>> [entry.index for entry in read_images("cells.ims")]
    [0]
    """
    return _parsed(path, storage_options, parse_images)


def _parsed(path: str | os.PathLike[str], storage_options: dict[str, Any] | None, parse: Callable[..., T]) -> T:
    source = open_file(path, storage_options)
    try:
        with source.open_hdf5() as f:
            links = links_of(source, f)
            try:
                return parse(f, os.fspath(path), links)
            finally:
                links.close()
    finally:
        source.close()
