"""What the HTTP server serves: a resolver maps a request's path to a store and one of its keys,
or to a document of its own (a folder's index), or to nothing (404).

One file is the trivial case (`SingleStore`: every path is a key of its one store); a folder
(`ims_store.fronts.folder.ImageFolder`) finds the file a path names, opens it on first use and
closes it when idle. The server has one handler for both.

>>> resolver = SingleStore(served_store("cells.ims", "0.5", follow_links=False))
>>> with resolver.target(Request("zarr.json", accept="", base_url="http://127.0.0.1:8000/")) as found:
...     store, key = found
>>> key
'zarr.json'
>>> resolver.close()
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..store.zarr_store import ImsStore

__all__ = ["Document", "Request", "Resolver", "Shared", "SingleStore", "Stamp", "Target", "served_store", "stamp_of"]


@dataclass(frozen=True)
class Request:
    """What a resolver may look at: the key (the URL path without its leading ``/``, already
    checked to hold no ``.``, ``..`` or empty segment), the ``Accept`` header, and the URL the
    client reached the server at (for links in documents)."""

    key: str
    accept: str
    base_url: str


@dataclass(frozen=True)
class Document:
    """A response the resolver makes itself (an index, or why a file cannot be served)."""

    body: bytes
    content_type: str
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


# (store, key): the key of that store; None: nothing there (404)
Target = tuple[ImsStore, str] | Document | None


class Resolver(Protocol):
    """Maps requests to targets; ``target`` holds what it yields in use until the block ends (a
    folder does not close a store a request is reading)."""

    def target(self, request: Request) -> contextlib.AbstractContextManager[Target]: ...

    def close(self) -> None: ...


# (device, inode, size, modification time): what changes when a file is replaced or rewritten
Stamp = tuple[int, int, int, int]


def stamp_of(info: os.stat_result) -> Stamp:
    """The `Stamp` of a file's status (``os.stat`` or ``os.fstat``).

    >>> stamp_of(os.stat("cells.ims"))[2] == os.path.getsize("cells.ims")
    True
    """
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


class Shared:
    """One opened store and the requests reading it: a store replaced (its file changed on disk)
    while in use is closed by its last user (`retire`, `release`)."""

    def __init__(self, store: ImsStore, stamp: Stamp | None = None) -> None:
        self.store = store
        self.stamp = stamp
        self.users = 0
        self.retired = False

    def retire(self) -> None:
        """No new request gets this store (caller's lock held); closed now if none reads it."""
        self.retired = True
        if self.users == 0:
            self.store.close()

    def release(self) -> None:
        """A request is done with the store (caller's lock held)."""
        self.users -= 1
        if self.retired and self.users == 0:
            self.store.close()


class SingleStore:
    """One store: every path is one of its keys (``ims-store serve cells.ims``).

    With ``reopen`` (which makes the store of ``path`` anew), a file changed on disk (another
    device, inode, size or modification time) is read afresh, as a folder's files are: the
    next request opens it again, and requests still reading the old store finish with it."""

    def __init__(self, store: ImsStore, reopen: Callable[[], ImsStore] | None = None) -> None:
        self._reopen = reopen
        self._failed: tuple[Stamp, Exception] | None = None  # the file that could not be reopened
        self._lock = threading.Lock()
        self._current = Shared(store, self._stamp(store.path) if reopen is not None else None)

    @property
    def store(self) -> ImsStore:
        """The store requests are served from now."""
        return self._current.store

    @staticmethod
    def _stamp(path: str) -> Stamp | None:
        try:
            return stamp_of(os.stat(path))
        except OSError:  # gone for now: the store keeps serving what it has open
            return None

    @contextlib.contextmanager
    def target(self, request: Request) -> Iterator[Target]:
        if not request.key:
            yield None
            return
        shared = self._lease()
        try:
            yield (shared.store, request.key)
        finally:
            with self._lock:
                shared.release()

    def _lease(self) -> Shared:
        with self._lock:
            shared = self._current
            if self._reopen is not None:
                stamp = self._stamp(shared.store.path)
                if stamp is not None and stamp != shared.stamp:
                    # the old store is not served for a changed file (its chunk index would be
                    # stale): a file that cannot be opened now (half written) raises, and is
                    # tried again only once it changes again
                    if self._failed is not None and self._failed[0] == stamp:
                        raise self._failed[1]
                    try:
                        fresh = Shared(self._reopen(), stamp)
                    except Exception as err:
                        self._failed = (stamp, err)
                        raise
                    self._failed = None
                    shared.retire()
                    shared = self._current = fresh
            shared.users += 1
            return shared

    def close(self) -> None:
        with self._lock:
            self._current.retire()


def served_store(
    path: str | os.PathLike[str],
    ngff: Literal["0.4", "0.5"],
    follow_links: bool,
    image: int | None = None,
    within: str | None = None,
) -> ImsStore:
    """The store a server presents ``path`` through (``image``: one image of a file of several;
    ``within``: the folder no file it opens may lie outside, see `ImsStore`).

    NGFF 0.4 is zarr v2 with the stored chunks passed through (zarr v2's ``zlib`` codec is read
    by zarr-python, tensorstore, neuroglancer and vizarr alike); NGFF 0.5 is zarr v3 with chunks
    decoded by the store, since zarr v3 has no core codec for HDF5's zlib streams.
    """
    if ngff not in ("0.4", "0.5"):
        raise ValueError(f"ngff must be '0.4' or '0.5', not {ngff!r}")
    if ngff == "0.4":
        return ImsStore(
            path, zarr_format=2, chunk_mode="passthrough", follow_links=follow_links, image=image, within=within
        )
    return ImsStore(path, zarr_format=3, follow_links=follow_links, image=image, within=within)
