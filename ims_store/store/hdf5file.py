"""`ImsFile`: one ``.ims`` file opened for reading, and the lifecycle of the HDF5 file over it.

Its byte source (a local file or an fsspec URL, see `access.files`), the h5py file on that source
(opened at once, released after an error that leaves HDF5 unsure of it, reopened on next use),
the files HDF5 external links lead to, and the one lock every h5py call goes through (HDF5 is not
thread-safe). Everything that reads an image's chunks (`engine.ImageEngine`) holds one.

>>> f = ImsFile("cells.ims")
>>> with f.lock, f.reads("its root group"):
...     sorted(f.hdf5().keys())[:2]
['DataSet', 'DataSetInfo']
>>> f.close()
"""

from __future__ import annotations

import contextlib
import os
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import h5py

from ..access.files import LocalFile, RemoteFile, links_of, open_file
from ..errors import RemoteReadError
from ..format.links import Links

__all__ = ["ImsFile", "drop_locals"]


class ImsFile:
    """An ``.ims`` file opened for reading: its byte source, its HDF5 file, its links' files.

    ``follow_links``: whether data behind HDF5 external links is read; ``within``: the folder
    every file it opens must lie in (see `ImsStore`)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        storage_options: dict[str, Any] | None = None,
        follow_links: bool = True,
        within: str | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.follow_links = follow_links
        self.within = within
        #: every h5py call goes through it
        self.lock = threading.RLock()
        #: where the file's bytes come from
        self.source: LocalFile | RemoteFile = open_file(self.path, dict(storage_options or {}), within)
        self._linked = _LinkedFiles(self.source)
        self._links: Links | None = None
        self._h5: h5py.File | None = self.source.open_hdf5()

    @property
    def remote(self) -> bool:
        """Whether the file is at a URL (its chunks are fetched as byte ranges)."""
        return self.source.remote

    def hdf5(self) -> h5py.File:
        """The open HDF5 file (reopened if it was released); call it holding `lock`."""
        with self.lock:
            if self._h5 is None:
                self._h5 = self.source.open_hdf5()
            return self._h5

    def links(self) -> Links:
        """The links of the open HDF5 file; a remote file's targets open as sources of their own,
        whose bytes the chunk reads then use."""
        with self.lock:
            if self._links is None:
                self._links = links_of(
                    self.source,
                    self.hdf5(),
                    follow=self.follow_links,
                    open_linked=self._linked.open_hdf5,
                    within=self.within,
                )
            return self._links

    def source_of(self, file: str | None) -> LocalFile | RemoteFile:
        """Where a dataset's chunk bytes are: this file (``file`` None), or the target of an
        external link (``file``: the `ChunkIndex.file` of the dataset)."""
        return self.source if file is None else self._linked.source(file)

    @contextlib.contextmanager
    def reads(self, what: str) -> Iterator[None]:
        """HDF5 reading through a remote file's requests: one that failed becomes a
        RemoteReadError naming ``what``, and the HDF5 file is closed (reopened on next use):
        HDF5 left holding a file whose read failed can crash the interpreter at exit.
        Every error leaves without the h5py objects its frames held (see `drop_locals`)."""
        try:
            yield
        except Exception as err:
            drop_locals(err)
            failed = self._failed_request(what)
            if failed is None:
                raise
            raise failed from err

    def _failed_request(self, what: str) -> RemoteReadError | None:
        """The error for a request that failed under HDF5's last read, if one did (see `reads`)."""
        failed = next(
            (e for e in (s.failed_read(what) for s in (self.source, *self._linked.sources())) if e is not None), None
        )
        if failed is not None:
            with self.lock:
                self.release()
        return failed

    def release(self) -> None:
        """Close the HDF5 file and every link target opened for it (reopened on next use)."""
        with self.lock:
            if self._links is not None:
                self._links.close()
                self._links = None
            if self._h5 is not None:
                self._h5.close()
                self._h5 = None

    def close(self) -> None:
        """Release the HDF5 file and close the byte sources (reopened if used again)."""
        with self.lock:
            self.release()
            self.source.close()
            self._linked.close()


class _LinkedFiles:
    """The byte sources of the files external links lead to, one per file (by path or URL).

    Held apart from the file, which hands `open_hdf5` to its `Links`: a file referring to
    itself through that would live on, open, until the garbage collector came by."""

    def __init__(self, source: LocalFile | RemoteFile) -> None:
        self._source = source
        self._files: dict[str, LocalFile | RemoteFile] = {}
        self._lock = threading.Lock()

    def source(self, label: str) -> LocalFile | RemoteFile:
        with self._lock:
            found = self._files.get(label)
            if found is None:
                found = self._files[label] = self._source.linked(label)
            return found

    def open_hdf5(self, label: str) -> h5py.File:
        return self.source(label).open_hdf5()

    def sources(self) -> list[LocalFile | RemoteFile]:
        with self._lock:
            return list(self._files.values())

    def close(self) -> None:
        for source in self.sources():
            source.close()


def drop_locals(err: BaseException) -> None:
    """Free the local variables of the finished frames in ``err``'s traceback, and in those of
    the errors it chains (``raise ... from None`` still chains ``__context__``).

    Those frames hold h5py objects (the dataset or group being read, h5py's own ``self``) for
    as long as the error lives. zarr does not cancel the other chunk requests of a read that
    failed: their errors are dropped later on zarr's event loop thread, possibly while the
    interpreter exits, as h5py's exit handler calls HDF5 with the GIL released; freeing an
    h5py object then calls HDF5 from a second thread at once, which HDF5 does not survive.

    >>> try:
    ...     raise ValueError("x")
    ... except ValueError as err:
    ...     drop_locals(err)
    """
    pending, seen = [err], set()
    while pending:
        e = pending.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)  # frames still running (the caller's) are skipped
        pending += [e.__cause__, e.__context__]
