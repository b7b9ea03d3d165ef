"""`ImsStore`: a read-only zarr store that presents an Imaris file as a virtual OME-Zarr image.

>>> import zarr
>>> from ims_store import ImsStore
>>> root = zarr.open_group(ImsStore("cells.ims"), mode="r")
>>> root["0"].shape
(2, 3, 16, 128, 96)

Nothing is converted or copied. The metadata documents are built once from the parsed
`ImsLayout`; chunk requests are answered from a per-dataset chunk index with positional reads.

Two chunk modes (``chunk_mode=``):

``"decoded"`` (default)
    Every chunk is decoded here (libdeflate or ISA-L inflate, numpy unshuffle, HDF5-LZ4) and served
    raw; the arrays declare only the ``bytes`` codec. Fastest in-process (both beat the standard
    library's zlib that zarr's codecs use) and readable by any zarr implementation. Small HDF5
    chunks are served grouped into zarr chunks of at least ``min_chunk_bytes`` (see `tiling`).
``"passthrough"``
    Where the HDF5 filters map to zarr codecs (none; deflate; shuffle + deflate), stored chunk
    bytes are served untouched and the arrays declare matching codecs: zarr v2 ``zlib`` (with a
    ``shuffle`` filter), zarr v3 ``numcodecs.zlib`` / ``numcodecs.shuffle``. Least CPU per chunk
    for serving over a network. Levels whose filters have no zarr codec (HDF5-LZ4, unknown
    filters) are still served decoded. Every zarr chunk is one HDF5 chunk, whatever its size.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import math
import operator
import os
import threading
import time
import traceback
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import h5py
import numpy as np
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from ..access.files import LocalFile, RemoteFile, links_of, open_file, scratch_buffer
from ..access.readahead import DEFAULT_READ_AHEAD, ReadAhead
from ..access.workers import run_blocking, run_decoding
from ..errors import (
    CorruptChunkError,
    ImsError,
    LinkTargetError,
    MalformedImsError,
    ReadOnlyError,
    RemoteReadError,
    SelectionError,
    TruncatedFileError,
)
from ..format.chunks import ChunkIndex, index_dataset
from ..format.codecs import RAW, decode_chunk, encode_chunk, plan_codecs
from ..format.layout import Filter, ImageEntry, ImsLayout, Level, image_count, parse_images, parse_layout
from ..format.links import Links, stored_elsewhere
from .collection import ImageCollection
from .keys import ChunkKey, ZarrFormat, build_metadata, chunk_key, parse_chunk_key
from .tiling import DASK_CHUNK_BYTES, MIN_CHUNK_BYTES, Tiling, tiling

if TYPE_CHECKING:
    from concurrent.futures import Future

    import dask.array
    import zarr
    from zarr.abc.store import ByteRequest

    from .mapping import StoreMapping

__all__ = ["ChunkMode", "ImsStore", "LevelArray"]

ChunkMode = Literal["decoded", "passthrough"]
_READ_ONLY = "store was opened in read-only mode and does not support writing"


class ImsStore(Store):
    """A read-only zarr store over an Imaris (``.ims``) file: an OME-NGFF multiscale image.

    Parameters
    ----------
    path
        The ``.ims`` file.
    zarr_format
        3 (default) presents OME-NGFF 0.5 on zarr v3; 2 presents OME-NGFF 0.4 on zarr v2.
    chunk_mode
        ``"decoded"`` (default) or ``"passthrough"``; see the module documentation.
    storage_options
        For a URL (``s3://``, ``https://``, any fsspec protocol): options for its file system.
        The HDF5 metadata is read once through a block-cached file object; chunks are then
        fetched as byte ranges, concurrently.
    read_ahead
        For a URL: bytes of chunks fetched ahead of a read that walks a dataset in file order
        (a level, a z range, a plane), several chunks to a request, so that zarr's limit of
        ``async.concurrency`` chunks at once does not bound the read by the server's latency.
        0 fetches only what is asked for. Default 64 MiB.
    follow_links
        Whether data behind HDF5 external links (tiles kept in other ``.ims`` files) is read
        (default). False refuses such data with a `LinkTargetError`, so that nothing outside
        the file is ever opened (``ims-store serve`` does this unless told ``--follow-links``).
    min_chunk_bytes
        Decoded mode: a level whose HDF5 chunks are smaller than this is served in zarr chunks
        that group adjacent HDF5 chunks (aligned to their grid) up to at least this many decoded
        bytes, so that zarr, dask or a viewer pays its per-chunk cost once per group (default
        1 MiB; Imaris' own 1-2 MiB blocks are served as they are). 0 serves every HDF5 chunk
        as one zarr chunk. Passthrough mode always serves HDF5 chunks one to one.
    image
        Which image of a file of several (``NumberOfDataSets`` > 1: tiles, positions) to present,
        alone, exactly as a file of one image is presented. Default: a file of one image is that
        image; a file of several is an OME-NGFF ``bioformats2raw.layout`` collection of them
        (image k at ``k/``, see `store.collection`).
    read_only
        Must be true: the store never writes. Accepted for zarr's ``Store.open`` protocol.
    within
        A folder every file the store opens must lie in: the file itself (checked on the opened
        descriptor, so that a link swapped meanwhile cannot lead out) and whatever its links
        lead to (resolved against the linking file's folder only; external raw data files are
        refused). A server's boundary (see `ims_store.format.confine`); default: no check.

    Examples
    --------
    >>> import zarr
    >>> store = ImsStore("cells.ims")
    >>> zarr.open_array(store, path="1", mode="r").shape
    (2, 3, 8, 64, 48)
    >>> store.layout.level(1).voxel_size
    (2.0, 0.5, 0.5)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        zarr_format: ZarrFormat = 3,
        chunk_mode: ChunkMode = "decoded",
        storage_options: dict[str, Any] | None = None,
        read_ahead: int = DEFAULT_READ_AHEAD,
        follow_links: bool = True,
        min_chunk_bytes: int = MIN_CHUNK_BYTES,
        image: int | None = None,
        read_only: bool = True,
        within: str | os.PathLike[str] | None = None,
    ) -> None:
        if not read_only:
            raise ReadOnlyError("ImsStore is read-only; " + _READ_ONLY, path)
        if zarr_format not in (2, 3):
            raise ValueError(f"zarr_format must be 2 or 3, not {zarr_format!r}")
        if chunk_mode not in ("decoded", "passthrough"):
            raise ValueError(f"chunk_mode must be 'decoded' or 'passthrough', not {chunk_mode!r}")
        for name, value in (("read_ahead", read_ahead), ("min_chunk_bytes", min_chunk_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a number of bytes >= 0, not {value!r}")
        super().__init__(read_only=True)
        self._path = os.fspath(path)
        self._zarr_format: ZarrFormat = zarr_format
        self._chunk_mode: ChunkMode = chunk_mode
        self._storage_options = dict(storage_options or {})
        self._lock = threading.RLock()  # every h5py call goes through it
        self._follow_links = follow_links
        self._min_chunk_bytes = min_chunk_bytes
        self._image = image
        self._within = None if within is None else os.path.realpath(within)
        self._source = open_file(self._path, self._storage_options, self._within)
        self._linked = _LinkedFiles(self._source)
        self._links: Links | None = None
        self._h5: h5py.File | None = self._source.open_hdf5()
        _OPEN_STORES.add(self)
        self._collection: ImageCollection | None = None
        try:
            with self._hdf5_reads("its metadata"):
                if image is None and image_count(self._h5) > 1:
                    entries = parse_images(self._h5, self._path, self._file_links())
                    self._collection = ImageCollection(entries, zarr_format, self._image_store)
                else:
                    self._layout = parse_layout(self._h5, self._path, self._file_links(), image=image or 0)
        except BaseException:
            self._release_hdf5()
            raise
        if self._collection is not None:
            # each image is served by a store of its own, which opens the file itself
            self._release_hdf5()
            self._layout = None  # type: ignore[assignment]
            self._plans = []
            self._metadata = self._collection.metadata
            self._indexes = {}
            self._index_loads = {}
            self._read_ahead = read_ahead
            self._ahead = None
            return
        # what each level's metadata declares; decoded mode declares no codecs at all
        self._plans = [
            plan_codecs(level.filters, level.dtype) if chunk_mode == "passthrough" else RAW
            for level in self._layout.levels
        ]
        # how each level's HDF5 chunks are served: passthrough serves stored bytes, one per chunk
        self._tilings = [
            tiling(level, min_chunk_bytes if chunk_mode == "decoded" else 0) for level in self._layout.levels
        ]
        self._metadata = build_metadata(
            self._layout, self._plans, zarr_format, [t.served_chunks for t in self._tilings]
        )
        self._grids = [t.served_grid for t in self._tilings]
        self._indexes: dict[tuple[int, int, int], ChunkIndex] = {}
        self._index_loads: dict[tuple[int, int, int], Future[ChunkIndex]] = {}
        self._walk_lock = threading.Lock()
        self._read_ahead = read_ahead
        self._ahead = (
            ReadAhead(self._source.fetch, budget=read_ahead, end=self._source.size())  # type: ignore[union-attr]
            if self._source.remote
            else None
        )

    # ----------------------------------------------------------------------------------------
    # identity, pickling, lifetime

    @property
    def layout(self) -> ImsLayout:
        """The parsed metadata model of the image presented. A collection of several images has
        none of its own: a `SelectionError` says so (see `images` and `image_store`)."""
        if self._collection is not None:
            raise SelectionError(
                f"the file holds {len(self._collection.entries)} images, presented as a collection; "
                "choose one with ImsStore(path, image=k) or store.image_store(k)",
                self._path,
            )
        return self._layout

    @property
    def image(self) -> int | None:
        """The image presented (None: the file's only image, or the collection of them all)."""
        return self._image

    @property
    def is_collection(self) -> bool:
        """Whether the store presents several images (a ``bioformats2raw.layout`` collection)."""
        return self._collection is not None

    @property
    def images(self) -> tuple[ImageEntry, ...]:
        """The images presented, each with its layout or the error that keeps it from being read:
        every image of a collection, else the one image.

        >>> [(e.index, e.error is None) for e in ImsStore("tiles.ims").images]
        [(0, True), (1, True)]
        """
        if self._collection is not None:
            return self._collection.entries
        return (ImageEntry(self._layout.image, self._layout.dataset_group, self._layout),)

    def image_store(self, image: int) -> ImsStore:
        """The store of one image alone: the collection's own for a collection, this store for
        the image it presents, else a new store of that image. An image that cannot be read
        raises its error; one that does not exist a `SelectionError`.

        >>> ImsStore("tiles.ims").image_store(1).layout.image
        1
        """
        if self._collection is None:
            if isinstance(image, (int, np.integer)) and not isinstance(image, bool) and image == self._layout.image:
                return self
            if self._image is None:  # a file of one image
                raise SelectionError(f"image {image!r} does not exist; the file has image 0 only", self._path)
            return self._image_store(image)
        entries = self._collection.entries
        if isinstance(image, bool) or not isinstance(image, (int, np.integer)) or not 0 <= image < len(entries):
            raise SelectionError(
                f"image {image!r} does not exist; the file has images 0..{len(entries) - 1}", self._path
            )
        entry = entries[int(image)]
        if entry.error is not None:
            raise entry.error
        return self._collection.store(int(image))

    def _image_store(self, image: int) -> ImsStore:
        return type(self)(self._path, **{**self._options(), "image": image})

    def _routed(self, key: str) -> tuple[ImsStore, str] | None:
        """For a collection: the image store a key belongs to, and the key within it."""
        return self._collection.split(key) if self._collection is not None else None

    @property
    def path(self) -> str:
        return self._path

    @property
    def storage_options(self) -> dict[str, Any]:
        """The fsspec options a remote file is opened with (a copy; empty for a local file)."""
        return dict(self._storage_options)

    @property
    def zarr_format(self) -> ZarrFormat:
        return self._zarr_format

    @property
    def chunk_mode(self) -> ChunkMode:
        return self._chunk_mode

    @property
    def read_ahead(self) -> int:
        """Bytes of a remote file's chunks fetched ahead of a walk at most (0: none)."""
        return self._read_ahead

    @property
    def follow_links(self) -> bool:
        """Whether data behind external links (in other files) is read."""
        return self._follow_links

    @property
    def min_chunk_bytes(self) -> int:
        """Decoded mode: HDF5 chunks smaller than this are served grouped (0: never)."""
        return self._min_chunk_bytes

    def tiling(self, level: int) -> Tiling:
        """How a level's HDF5 chunks are served as zarr chunks (one to one, or grouped).

        >>> ImsStore("cells.ims").tiling(0).served_chunks
        (16, 128, 96)
        """
        return self._tilings[self.layout.level(level).index]

    def _args(self) -> tuple[Any, ...]:
        where = self._path if self._source.remote else os.path.abspath(self._path)
        return (where, self._zarr_format, self._chunk_mode, self._follow_links, self._min_chunk_bytes, self._image)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ImsStore)
            and self._args() == other._args()
            and self._storage_options == other._storage_options
        )

    def __hash__(self) -> int:
        return hash(self._args())

    def __repr__(self) -> str:
        image = "" if self._image is None else f", image={self._image}"
        return f"ImsStore({self._path!r}, zarr_format={self._zarr_format}, chunk_mode={self._chunk_mode!r}{image})"

    def _options(self) -> dict[str, Any]:
        """The keyword arguments this store was made with (a copy is made with the same)."""
        return {
            "zarr_format": self._zarr_format,
            "chunk_mode": self._chunk_mode,
            "storage_options": self._storage_options,
            "read_ahead": self._read_ahead,
            "follow_links": self._follow_links,
            "min_chunk_bytes": self._min_chunk_bytes,
            "image": self._image,
            "within": self._within,
        }

    def __getstate__(self) -> dict[str, Any]:
        # a new process reopens the file; no handle crosses a process boundary, and a relative
        # path is made absolute so that a worker with another working directory finds the file
        return {"path": self._args()[0], **self._options()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        options = dict(state)
        self.__init__(options.pop("path"), **options)  # type: ignore[misc]

    def with_read_only(self, read_only: bool = False) -> ImsStore:
        if not read_only:
            raise ReadOnlyError("ImsStore is read-only; " + _READ_ONLY, self._path)
        return type(self)(self._path, **self._options())

    def close(self) -> None:
        """Release the file (the store reopens it if used again)."""
        with self._lock:
            self._release_hdf5()
            self._source.close()
            self._linked.close()
            if self._ahead is not None:
                self._ahead.clear()
            if self._collection is not None:
                self._collection.close()
        super().close()

    @contextlib.contextmanager
    def _hdf5_reads(self, what: str) -> Iterator[None]:
        """HDF5 reading through a remote file's requests: one that failed becomes a
        RemoteReadError naming ``what``, and the HDF5 file is closed (reopened on next use):
        HDF5 left holding a file whose read failed can crash the interpreter at exit.
        Every error leaves without the h5py objects its frames held (see `_drop_locals`)."""
        try:
            yield
        except Exception as err:
            _drop_locals(err)
            failed = self._failed_request(what)
            if failed is None:
                raise
            raise failed from err

    def _failed_request(self, what: str) -> RemoteReadError | None:
        """The error for a request that failed under HDF5's last read, if one did (see `_hdf5_reads`)."""
        failed = next(
            (e for e in (s.failed_read(what) for s in (self._source, *self._linked.sources())) if e is not None), None
        )
        if failed is not None:
            with self._lock:
                self._release_hdf5()
        return failed

    def _release_hdf5(self) -> None:
        """Close the HDF5 file and every link target opened for it (reopened on next use)."""
        with self._lock:
            if self._links is not None:
                self._links.close()
                self._links = None
            if self._h5 is not None:
                self._h5.close()
                self._h5 = None

    def _file(self) -> h5py.File:
        with self._lock:
            if self._h5 is None:
                self._h5 = self._source.open_hdf5()
            return self._h5

    def _file_links(self) -> Links:
        """The links of the open HDF5 file; a remote file's targets open as sources of their own,
        whose bytes the chunk reads then use."""
        with self._lock:
            if self._links is None:
                self._links = links_of(
                    self._source,
                    self._file(),
                    follow=self._follow_links,
                    open_linked=self._linked.open_hdf5,
                    within=self._within,
                )
            return self._links

    def _source_of(self, index: ChunkIndex) -> LocalFile | RemoteFile:
        """Where a dataset's chunk bytes are: the file itself, or an external link's target."""
        return self._source if index.file is None else self._linked.source(index.file)

    # ----------------------------------------------------------------------------------------
    # capabilities

    @property
    def supports_writes(self) -> bool:
        return False

    @property
    def supports_deletes(self) -> bool:
        return False

    @property
    def supports_listing(self) -> bool:
        return True

    @property
    def supports_partial_writes(self) -> Literal[False]:
        return False

    async def set(self, key: str, value: Buffer) -> None:
        raise ReadOnlyError(_READ_ONLY, self._path)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        raise ReadOnlyError(_READ_ONLY, self._path)

    async def delete(self, key: str) -> None:
        raise ReadOnlyError(_READ_ONLY, self._path)

    async def set_partial_values(self, key_start_values: Iterable[tuple[str, int, Any]]) -> None:
        raise ReadOnlyError(_READ_ONLY, self._path)

    async def delete_dir(self, prefix: str) -> None:
        raise ReadOnlyError(_READ_ONLY, self._path)

    async def clear(self) -> None:
        raise ReadOnlyError(_READ_ONLY, self._path)

    # ----------------------------------------------------------------------------------------
    # reading

    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        _check_byte_range(byte_range)
        prototype = prototype or default_buffer_prototype()
        meta = self._metadata.get(key)
        if meta is not None:
            return prototype.buffer.from_bytes(_slice(meta, byte_range))
        if self._collection is not None:
            routed = self._routed(key)
            return None if routed is None else await routed[0].get(routed[1], prototype, byte_range)
        ck = parse_chunk_key(key, self._layout, self._zarr_format, self._grids)
        if ck is None:
            return None
        with _IN_FLIGHT.request():
            stored = await self._fetch_parts(ck) if self._source.remote else None
            # on the decoding threads (one per core), not zarr's executor: see access/workers.py
            data = await asyncio.wrap_future(run_decoding(self._chunk_bytes, ck, byte_range, stored))
        return None if data is None else prototype.buffer.from_bytes(data)

    def get_sync(
        self, key: str, *, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Synchronous `get`, for zarr's synchronous read path."""
        _check_byte_range(byte_range)
        prototype = prototype or default_buffer_prototype()
        meta = self._metadata.get(key)
        if meta is not None:
            return prototype.buffer.from_bytes(_slice(meta, byte_range))
        if self._collection is not None:
            routed = self._routed(key)
            return None if routed is None else routed[0].get_sync(routed[1], prototype=prototype, byte_range=byte_range)
        ck = parse_chunk_key(key, self._layout, self._zarr_format, self._grids)
        data = None if ck is None else self._chunk_bytes(ck, byte_range)
        return None if data is None else prototype.buffer.from_bytes(data)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        if key in self._metadata:
            return True
        return await asyncio.to_thread(self._is_key, key)

    async def getsize(self, key: str) -> int:
        meta = self._metadata.get(key)
        if meta is not None:
            return len(meta)
        if self._collection is not None and (routed := self._routed(key)) is not None:
            return await routed[0].getsize(routed[1])
        ck = parse_chunk_key(key, self._layout, self._zarr_format, self._grids) if self._collection is None else None
        if ck is not None:
            size = await asyncio.to_thread(self._served_size, ck)
            if size is not None:
                return size
        raise FileNotFoundError(f"{self._path}: no key {key!r} in the virtual OME-Zarr")

    # ----------------------------------------------------------------------------------------
    # listing (chunk keys need each dataset's chunk index, built on first use)

    async def list(self) -> AsyncIterator[str]:
        if self._collection is not None:
            async for key in self.list_prefix(""):
                yield key
            return
        for key in self._metadata:
            yield key
        for key in self._chunk_keys():
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in self._keys_under(prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/")
        if self._collection is not None:
            own = self._collection.children(prefix)
            if own is not None:
                for child in own:
                    yield child
                return
            routed = self._routed(prefix + "/")
            if routed is not None:
                async for child in routed[0].list_dir(routed[1]):
                    yield child
            return
        base = f"{prefix}/" if prefix else ""
        for child in self._candidate_children(prefix):
            if self._is_key(base + child) or any(True for _ in self._keys_under(f"{base}{child}/")):
                yield child

    def _is_key(self, key: str) -> bool:
        if key in self._metadata:
            return True
        if self._collection is not None:
            routed = self._routed(key)
            return routed is not None and routed[0]._is_key(routed[1])
        ck = parse_chunk_key(key, self._layout, self._zarr_format, self._grids)
        return ck is not None and self._allocated(ck)

    def _keys_under(self, prefix: str) -> Iterator[str]:
        for key in self._metadata:
            if key.startswith(prefix):
                yield key
        if self._collection is not None:  # each image's keys, under k/
            for image in self._collection.readable:
                head = f"{image}/"
                if head.startswith(prefix) or prefix.startswith(head):
                    inner = prefix[len(head) :] if prefix.startswith(head) else ""
                    yield from (head + key for key in self._collection.store(image)._keys_under(inner))
            return
        # narrow the datasets to visit by the whole path components the prefix fixes
        parts = prefix.split("/")[:-1]
        if self._zarr_format == 3 and len(parts) >= 2:
            if parts[1] != "c":
                return
            del parts[1]
        fixed: list[int | None] = [None, None, None]
        for i, part in enumerate(parts[:3]):
            if not (part.isdigit() and part.isascii()):
                return
            fixed[i] = int(part)
        for key in self._chunk_keys(*fixed):
            if key.startswith(prefix):
                yield key

    def _candidate_children(self, prefix: str) -> list[str]:
        lay = self._layout
        names = sorted({k.split("/")[0] for k in self._metadata if "/" not in k}) if not prefix else []
        if not prefix:
            return names + [str(lvl.index) for lvl in lay.levels]
        parts = prefix.split("/")
        if not (parts[0].isdigit() and int(parts[0]) < len(lay.levels)):
            return []
        level = lay.levels[int(parts[0])]
        meta = [k.split("/", 1)[1] for k in self._metadata if k.startswith(parts[0] + "/")]
        if self._zarr_format == 3:
            if len(parts) == 1:
                return [*meta, "c"]
            if parts[1] != "c":
                return []
            depth = len(parts) - 2
        else:
            if len(parts) == 1:
                return meta + [str(t) for t in range(len(lay.timepoints))]
            depth = len(parts) - 1
        extents = (len(lay.timepoints), len(lay.channels), *self._grids[level.index])
        return [str(i) for i in range(extents[depth])] if depth < len(extents) else []

    def _chunk_keys(self, level: int | None = None, t: int | None = None, c: int | None = None) -> Iterator[str]:
        lay = self._layout
        levels = range(len(lay.levels)) if level is None else [level] if level < len(lay.levels) else []
        for li in levels:
            gz, gy, gx = lay.levels[li].chunk_grid
            tiles = self._tilings[li]
            times = range(len(lay.timepoints)) if t is None else [t] if t < len(lay.timepoints) else []
            for ti in times:
                chans = range(len(lay.channels)) if c is None else [c] if c < len(lay.channels) else []
                for ci in chans:
                    index = self._index(li, ti, ci)
                    present = index.offsets[:gz, :gy, :gx] >= 0 if index.listed else np.ones((gz, gy, gx), bool)
                    for z, y, x in zip(*np.nonzero(tiles.served_present(present)), strict=True):
                        yield chunk_key(ChunkKey(li, ti, ci, int(z), int(y), int(x)), self._zarr_format)

    # ----------------------------------------------------------------------------------------
    # chunks

    def _index(self, level: int, t: int, c: int) -> ChunkIndex:
        index = self._indexes.get((level, t, c))
        if index is not None:
            return index
        path = self._layout.data_path(level, t, c)
        with self._lock:
            index = self._indexes.get((level, t, c))
            if index is None:
                with self._hdf5_reads(f"the chunk index of {path}"):
                    index = self._build_index(path, self._layout.levels[level])
                self._indexes[(level, t, c)] = index
        return index

    def _build_index(self, path: str, level: Level) -> ChunkIndex:
        """The chunk index of the dataset at ``path`` (links followed), or the error that says
        why it cannot be read (raised through `_hdf5_reads`, which frees the h5py objects its
        frames hold)."""
        found = self._file_links().get(path)
        dataset = found.obj if found is not None else None
        if not isinstance(dataset, h5py.Dataset):
            raise MalformedImsError(f"{path} is missing", self._path)
        try:
            index = index_dataset(dataset, level, found.file)  # type: ignore[union-attr]
        except ValueError as err:
            raise MalformedImsError(f"{path}: {err}", self._path) from err
        if not index.direct:
            problem = stored_elsewhere(
                dataset, remote=self._source.remote, follow=self._follow_links, within=self._within
            )
            if problem:
                raise LinkTargetError(f"{path}: {problem}", self._path)
        return index

    def _box(self, ck: ChunkKey) -> tuple[range, range, range]:
        """The HDF5 chunks of a served chunk, as positions along each axis (see `Tiling.box`)."""
        return self._tilings[ck.level].box(ck.z, ck.y, ck.x)

    def _allocated(self, ck: ChunkKey) -> bool:
        """Whether any HDF5 chunk of a served chunk was written."""
        index = self._index(ck.level, ck.t, ck.c)
        return not index.listed or bool(_written(index, self._box(ck)).any())

    def _chunk_nbytes(self, level: int) -> int:
        lvl = self._layout.levels[level]
        return math.prod(lvl.chunks) * lvl.dtype.itemsize

    def _passes_through(self, ck: ChunkKey, index: ChunkIndex, mask: int) -> bool:
        """Whether this chunk's stored bytes are exactly what the declared codecs decode."""
        level = self._layout.levels[ck.level]
        return (
            self._plans[ck.level].passthrough
            and index.direct
            and mask == 0
            and index.filters == level.filters
            and index.offsets[ck.z, ck.y, ck.x] >= 0
            and not self._oversized(int(index.sizes[ck.z, ck.y, ck.x]), ck.level)
        )

    def _served_size(self, ck: ChunkKey) -> int | None:
        index = self._index(ck.level, ck.t, ck.c)
        if not self._allocated(ck):
            return None
        tiles = self._tilings[ck.level]
        if tiles.grouped:  # decoded mode: raw voxels, no codecs
            return math.prod(tiles.served_chunks) * self._layout.levels[ck.level].dtype.itemsize
        _, size, mask = index.locate(ck.z, ck.y, ck.x)
        if self._passes_through(ck, index, mask):
            return size
        if self._declares_codecs(ck.level):
            return len(self._chunk_bytes(ck, None) or b"")
        return self._chunk_nbytes(ck.level)

    def _declares_codecs(self, level: int) -> bool:
        return self._plans[level].passthrough and bool(self._layout.levels[level].filters)

    def _chunk_bytes(
        self, ck: ChunkKey, byte_range: ByteRequest | None, stored: list[bytes | memoryview | None] | None = None
    ) -> bytes | bytearray | np.ndarray | memoryview | None:
        """The bytes served for a chunk key, in the form its array's metadata declares.

        ``stored``: the stored bytes of its HDF5 chunks (see `_box`) when they were fetched
        already (remote files).
        """
        if self._tilings[ck.level].grouped:
            raw = self._grouped_chunk(ck, stored)
            return None if raw is None else _slice(raw, byte_range)
        return self._one_chunk_bytes(ck, byte_range, None if stored is None else stored[0])

    def _grouped_chunk(self, ck: ChunkKey, stored: list[bytes | memoryview | None] | None) -> np.ndarray | None:
        """A served chunk of several HDF5 chunks, decoded into place; None if none of them was
        written and the fill value is the one declared (zarr then fills it)."""
        level = self._layout.levels[ck.level]
        tiles = self._tilings[ck.level]
        index = self._index(ck.level, ck.t, ck.c)
        box = self._box(ck)
        # what no HDF5 chunk covers lies past the image's edge, which zarr crops away; unwritten
        # chunks are the fill value, as declared. (No fill where every chunk is there: a 1 MiB
        # memset costs a tenth of the decoding.)
        whole = tuple(map(len, box)) == tiles.group and (not index.listed or bool(_written(index, box).all()))
        out = None
        places = itertools.product(*(axis[: len(r)] for axis, r in zip(tiles.places, box, strict=True)))
        # each chunk is copied as it is decoded, while its voxels are still in the CPU's cache
        for region, raw in zip(places, self._decoded_box(ck, box, stored), strict=True):
            if raw is None:
                continue
            if out is None:
                out = (
                    np.empty(tiles.served_chunks, level.dtype)
                    if whole
                    else np.full(tiles.served_chunks, level.fill_value, level.dtype)
                )
            out[region] = np.frombuffer(raw, level.dtype).reshape(level.chunks)
        return None if out is None else out.reshape(-1).view(np.uint8)

    def _one_chunk_bytes(
        self, ck: ChunkKey, byte_range: ByteRequest | None, stored: bytes | memoryview | None = None
    ) -> bytes | bytearray | np.ndarray | memoryview | None:
        """The bytes served for a zarr chunk that is one HDF5 chunk (``stored``: as fetched)."""
        index = self._index(ck.level, ck.t, ck.c)
        offset, size, mask = index.locate(ck.z, ck.y, ck.x)
        if index.listed and offset < 0 and index.fill_matches(self._layout.levels[ck.level]):
            return None  # never written: zarr fills with the fill value the metadata declares
        if self._passes_through(ck, index, mask):
            if stored is None and byte_range is not None:
                start, stop = _bounds(size, byte_range)
                return self._read(offset + start, stop - start, ck, index)
            return _slice(self._stored(ck, index) if stored is None else stored, byte_range)
        raw = self._decoded_chunk(ck, stored)
        if self._declares_codecs(ck.level):
            level = self._layout.levels[ck.level]
            raw = encode_chunk(raw, level.filters, level.dtype)
        return _slice(raw, byte_range)

    def _decoded_chunk(
        self, ck: ChunkKey, stored: bytes | memoryview | None = None
    ) -> bytes | bytearray | np.ndarray | None:
        """A chunk's voxels as raw bytes (the whole HDF5 chunk, padding included); None if
        unallocated. ``stored``: its stored bytes where fetched already."""
        index = self._index(ck.level, ck.t, ck.c)
        offset, size, mask = index.locate(ck.z, ck.y, ck.x)
        level = self._layout.levels[ck.level]
        if index.listed and offset < 0:
            # never written: the dataset's own fill value, where it is not the one declared
            return None if index.fill_matches(level) else np.full(level.chunks, index.fill, level.dtype).view(np.uint8)
        if not index.direct:
            return self._read_with_hdf5(ck, index.why)
        if self._oversized(size, ck.level):
            return self._read_with_hdf5(ck, f"its stored size ({size} bytes) is more than ims_store reads by offset")
        scratch = None
        if stored is None and self._ahead is None:
            # where a filter is undone, the voxels land in a new buffer and the stored bytes can
            # be read into this thread's scratch buffer (see `read_range`)
            if ~mask & ((1 << len(index.filters)) - 1):  # a filter not skipped
                scratch = scratch_buffer(size)
            stored = self._read(offset, size, ck, index, into=scratch)
        elif stored is None:
            stored = self._stored(ck, index)
        return self._decoded_bytes(
            ck, stored, index.filters, mask, level.dtype, self._chunk_nbytes(ck.level), scratch is not None
        )

    def _decoded_bytes(
        self,
        ck: ChunkKey,
        stored: Any,
        filters: tuple[Filter, ...],
        mask: int,
        dtype: np.dtype,
        nbytes: int,
        scratch: bool,
    ) -> bytes | bytearray | np.ndarray:
        """A chunk's stored bytes decoded (a damaged chunk raises `CorruptChunkError`); where
        they are in this thread's ``scratch`` buffer, never a view of them."""
        try:
            raw = decode_chunk(stored, filters, mask, dtype, nbytes)
        except Exception as err:  # zlib/libdeflate errors, ValueError, ...: the stored bytes are damaged
            raise CorruptChunkError(f"{_describe(self._layout, ck)} cannot be decoded ({err})", self._path) from err
        if scratch and not _owns_its_memory(raw, stored):
            if np.may_share_memory(np.frombuffer(raw, np.uint8), np.frombuffer(stored, np.uint8)):
                raw = bytes(raw)  # a stage that kept its input (no filter, a shuffle of 1-byte values)
        return raw

    def _decoded_box(
        self, ck: ChunkKey, box: tuple[range, range, range], stored: list[bytes | memoryview | None] | None = None
    ) -> Iterator[bytes | bytearray | np.ndarray | None]:
        """`_decoded_chunk` of a box of HDF5 chunks of ``ck``'s dataset (positions ``box`` along
        z, y, x), in C order, which is file order for most writers. ``stored``: their stored
        bytes where fetched already. A local file's are read a run at a time (`_decoded_locally`);
        a remote file's are fetched in one request where they lie together (`_span`), else all
        asked for before the first is waited on, so that the read-ahead sees them as one walk."""
        if stored is None and self._ahead is None:
            index = self._index(ck.level, ck.t, ck.c)
            if index.direct:
                return self._decoded_locally(ck, box, index)
        keys = _keys(ck, box)
        if stored is not None:
            return (self._decoded_chunk(k, data) for k, data in zip(keys, stored, strict=True))
        if self._ahead is not None:
            return self._decoded_remotely(keys)
        return (self._decoded_chunk(k) for k in keys)

    def _decoded_locally(
        self, ck: ChunkKey, box: tuple[range, range, range], index: ChunkIndex
    ) -> Iterator[bytes | bytearray | np.ndarray | None]:
        """`_decoded_box` of a local dataset read by offset: the chunks' places and sizes
        checked in one pass, then each run of chunks that pass read together (see
        `LocalFile.read_ranges`); any other chunk (never written, oversized, past the end of the
        file) goes through `_decoded_chunk`, which says what is wrong with it."""
        source = self._source_of(index)
        level = self._layout.levels[ck.level]
        nbytes = self._chunk_nbytes(ck.level)
        at = _slices(box)
        offsets, sizes = index.offsets[at].ravel(), index.sizes[at].ravel()
        fits = (_within(offsets, sizes, source.size()) & ~self._oversized(sizes, ck.level)).tolist()
        offsets, sizes, masks = offsets.tolist(), sizes.tolist(), index.masks[at].ravel().tolist()
        keys = _keys(ck, box)
        i, n = 0, len(keys)
        while i < n:
            if not fits[i]:
                yield self._decoded_chunk(keys[i])
                i += 1
                continue
            j = i + 1
            while j < n and fits[j]:
                j += 1
            # a run is decoded to its end before anything else (a fall-back chunk) may use this
            # thread's scratch buffer, which its views are in
            k = i
            try:
                for data in source.read_ranges(offsets[i:j], sizes[i:j]):  # type: ignore[union-attr]
                    yield self._decoded_bytes(keys[k], data, index.filters, masks[k], level.dtype, nbytes, True)
                    k += 1
            except (EOFError, OSError):  # (the file changed since it was checked) each read alone names its chunk
                yield from (self._decoded_chunk(key) for key in keys[k:j])
            i = j

    def _decoded_remotely(self, keys: list[ChunkKey]) -> Iterator[bytes | bytearray | np.ndarray | None]:
        index = self._index(keys[0].level, keys[0].t, keys[0].c)
        span = self._span(keys, index) if len(keys) > 1 else None
        if span is not None:  # one request for them all
            fetched = self._cut(
                keys, index, span[0], self._wait(keys[0], self._source.fetch(span[0], span[1] - span[0]))
            )  # type: ignore[union-attr]
            yield from (self._decoded_chunk(ck, stored) for ck, stored in zip(keys, fetched, strict=True))
            return
        with self._walk_lock:  # one read's requests together: another thread's would break the walk
            requests = [self._request(ck, index) for ck in keys]
        for ck, request in zip(keys, requests, strict=True):
            yield self._decoded_chunk(ck, None if request is None else self._wait(ck, request))

    def read_chunk(self, level: int, timepoint: int, channel: int, z: int, y: int, x: int) -> np.ndarray:
        """One decoded HDF5 chunk as a (z, y, x) array of the level's chunk shape (zeros if unwritten).

        >>> ImsStore("cells.ims").read_chunk(1, 0, 2, 0, 0, 0).shape
        (8, 64, 48)
        """
        lvl = self.layout.level(level)
        ck = ChunkKey(lvl.index, self._layout.timepoint(timepoint).index, self._layout.channel(channel).index, z, y, x)
        if not all(0 <= i < n for i, n in zip((z, y, x), lvl.chunk_grid, strict=True)):
            raise SelectionError(
                f"chunk {(z, y, x)} does not exist; level {level} has {lvl.chunk_grid} chunks", self._path
            )
        raw = self._decoded_chunk(ck)
        if raw is None:
            return np.full(lvl.chunks, lvl.fill_value, dtype=lvl.dtype)
        return np.frombuffer(raw, dtype=lvl.dtype).reshape(lvl.chunks)

    async def _fetch_parts(self, ck: ChunkKey) -> list[bytes | memoryview | None]:
        """The stored bytes of a served chunk's HDF5 chunks: one range request where they lie
        together in the file (see `_span`), else requested together (see `_fetch`)."""
        parts = _keys(ck, self._box(ck))
        if len(parts) > 1:
            key = (ck.level, ck.t, ck.c)
            index = self._indexes.get(key) or await asyncio.wrap_future(self._index_load(key))
            span = self._span(parts, index)
            if span is not None:
                with self._read_errors(parts[0]):
                    data = await asyncio.wrap_future(self._source.fetch(span[0], span[1] - span[0]))  # type: ignore[union-attr]
                return self._cut(parts, index, span[0], data)
        return list(await asyncio.gather(*(self._fetch(part) for part in parts)))

    def _span(self, keys: list[ChunkKey], index: ChunkIndex) -> tuple[int, int] | None:
        """The byte range (start, end) of a remote file that holds all these HDF5 chunks of one
        dataset, where they lie together: each read by offset from this file (not a link's
        target), written, and the range little more than their bytes. A group of a plane's
        chunks usually does (HDF5 writes a plane's chunks one after the other); one request for
        it is then one walk, whatever order the reads come in."""
        if not index.direct or index.file is not None:
            return None
        located = [index.locate(k.z, k.y, k.x) for k in keys]
        if any(
            offset < 0 or self._oversized(size, k.level) for k, (offset, size, _) in zip(keys, located, strict=True)
        ):
            return None
        for k, (offset, size, _) in zip(keys, located, strict=True):
            self._check_extent(offset, size, k, index)
        start = min(offset for offset, _, _ in located)
        end = max(offset + size for offset, size, _ in located)
        stored = sum(size for _, size, _ in located)
        return (start, end) if end - start <= stored + stored // 4 + 65536 else None

    @staticmethod
    def _cut(
        keys: list[ChunkKey], index: ChunkIndex, start: int, data: bytes | memoryview
    ) -> list[bytes | memoryview | None]:
        """The stored bytes of each chunk, out of a range fetched from ``start`` (see `_span`)."""
        view = memoryview(data)
        out: list[bytes | memoryview | None] = []
        for k in keys:
            offset, size, _ = index.locate(k.z, k.y, k.x)
            out.append(view[offset - start : offset - start + size])
        return out

    async def _fetch(self, ck: ChunkKey) -> bytes | memoryview | None:
        """A remote chunk's stored bytes, fetched on the file system's own event loop (so that
        zarr's concurrent requests are in flight together); None where HDF5 must read it."""
        key = (ck.level, ck.t, ck.c)
        index = self._indexes.get(key) or await asyncio.wrap_future(self._index_load(key))
        future = self._request(ck, index)
        if future is None:
            return None
        with self._read_errors(ck):
            return await asyncio.wrap_future(future)

    def _index_load(self, key: tuple[int, int, int]) -> Future[ChunkIndex]:
        """One load of a chunk index, shared by every request waiting for it: they then go on in
        the order they asked (a thread hop each would shuffle them, and the read-ahead recognises
        a walk by that order)."""
        with self._lock:
            future = self._index_loads.get(key)
            if future is None:
                future = self._index_loads[key] = run_blocking(self._index, *key)
                future.add_done_callback(lambda _: self._index_loads.pop(key, None))
        return future

    def _request(self, ck: ChunkKey, index: ChunkIndex) -> Future[bytes | memoryview] | None:
        """A remote chunk's stored bytes, asked of the read-ahead; None where HDF5 must read it."""
        assert self._ahead is not None
        offset, size, _ = index.locate(ck.z, ck.y, ck.x)
        if not index.direct or offset < 0 or self._oversized(size, ck.level):
            return None
        self._check_extent(offset, size, ck, index)
        if index.file is not None:  # an external link's target: its own requests, no read-ahead
            return self._source_of(index).fetch(offset, size)  # type: ignore[union-attr]
        return self._ahead.request((ck.level, ck.t, ck.c), index, (ck.z, ck.y, ck.x))

    def _wait(self, ck: ChunkKey, future: Future[bytes | memoryview]) -> bytes | memoryview:
        with self._read_errors(ck):
            return future.result()

    def _stored(self, ck: ChunkKey, index: ChunkIndex) -> bytes | memoryview:
        """A written chunk's stored bytes: a positional read, or a remote request through the read-ahead."""
        future = self._request(ck, index) if self._ahead is not None else None
        if future is None:
            offset, size, _ = index.locate(ck.z, ck.y, ck.x)
            return self._read(offset, size, ck, index)
        return self._wait(ck, future)

    def _read(self, offset: int, size: int, ck: ChunkKey, index: ChunkIndex, into: Any = None) -> bytes | memoryview:
        """A local chunk's stored bytes (``into``: a buffer to read them into, see `read_range`)."""
        self._check_extent(offset, size, ck, index)
        try:  # (no context manager: this runs once per chunk, thousands of times per read)
            return self._source_of(index).read(offset, size, into)  # type: ignore[call-arg]
        except (EOFError, OSError) as err:
            raise self._read_error(ck, err) from err

    @contextlib.contextmanager
    def _read_errors(self, ck: ChunkKey) -> Iterator[None]:
        """A short or failed read of a chunk, as an error naming the chunk and the file."""
        try:
            yield
        except (EOFError, RemoteReadError, OSError) as err:
            raise self._read_error(ck, err) from err

    def _read_error(self, ck: ChunkKey, err: EOFError | OSError) -> ImsError:
        if isinstance(err, EOFError):
            return TruncatedFileError(
                f"{_describe(self._layout, ck)} lies past the end of the file ({err})", self._path
            )
        if isinstance(err, RemoteReadError):  # the network's or the server's doing, not the file's
            return RemoteReadError(f"{_describe(self._layout, ck)} cannot be fetched: {err.reason}", self._path)
        return CorruptChunkError(f"{_describe(self._layout, ck)} cannot be read ({err})", self._path)

    def _check_extent(self, offset: int, size: int, ck: ChunkKey, index: ChunkIndex) -> None:
        end = self._source_of(index).size()
        if not _within(offset, size, end):
            where = "" if index.file is None else f" {index.file}, which an external link leads to"
            raise TruncatedFileError(
                f"{_describe(self._layout, ck)} lies past the end of the file{where} (bytes {offset}..{offset + size} "
                f"of a file of {end})",
                self._path,
            )

    def _oversized(self, size: Any, level: int) -> Any:
        """Whether a stored chunk is larger than any deflate or shuffle output of its voxels: HDF5
        reads it (an LZ4 chunk of tiny blocks may be; a damaged index claims anything), so that
        a claim is never what decides how much is read here. (Sizes may be an array.)"""
        return size > 2 * self._chunk_nbytes(level) + 65536

    def _read_with_hdf5(self, ck: ChunkKey, why: str) -> np.ndarray:
        """Let HDF5 read a chunk, for ``why`` (storage not read by offset here: see `index_dataset`)."""
        level = self._layout.levels[ck.level]
        origin = [i * n for i, n in zip((ck.z, ck.y, ck.x), level.chunks, strict=True)]
        region = tuple(slice(o, o + n) for o, n in zip(origin, level.chunks, strict=True))
        path = self._layout.data_path(ck.level, ck.t, ck.c)
        # _hdf5_reads: a failed request is a RemoteReadError; no error keeps h5py objects alive
        with self._lock, self._hdf5_reads(_describe(self._layout, ck)):
            try:
                block = self._hdf5_region(path, region)
            except (RemoteReadError, MalformedImsError):  # reopening the file failed, a link broke
                raise
            except Exception as err:
                raise CorruptChunkError(
                    f"{_describe(self._layout, ck)} cannot be read by HDF5 ({_message(err)}); HDF5 reads it "
                    f"because {why}",
                    self._path,
                ) from err
        out = np.zeros(level.chunks, dtype=level.dtype)
        out[tuple(slice(0, s) for s in block.shape)] = block
        return out.reshape(-1).view(np.uint8)

    def _hdf5_region(self, path: str, region: tuple[slice, ...]) -> np.ndarray:
        """HDF5's read of ``region`` of the dataset at ``path`` (links followed). Its own frame,
        so that the h5py objects it holds are gone once an error has left it."""
        import hdf5plugin  # noqa: F401  (registers LZ4, Zstd, ... with HDF5)

        found = self._file_links().get(path)
        if found is None or not isinstance(found.obj, h5py.Dataset):
            raise MalformedImsError(f"{path} is missing", self._path)
        return found.obj[region]

    # ----------------------------------------------------------------------------------------
    # conveniences for the common selections

    def as_mapping(self) -> StoreMapping:
        """The store as a read-only ``Mapping[str, bytes]`` (same keys, same bytes), for tools
        such as ZarrNii and ngff-zarr that take a key -> bytes mapping."""
        from .mapping import StoreMapping

        return StoreMapping(self)

    def open_array(self, level: int = 0) -> zarr.Array:
        """One resolution level as a read-only zarr array of shape (t, c, z, y, x)."""
        import zarr

        self.layout.level(level)
        return zarr.open_array(self, path=str(level), mode="r", zarr_format=self._zarr_format)

    def to_dask(
        self,
        level: int = 0,
        *,
        timepoint: int | None = None,
        channel: int | None = None,
        chunk_bytes: int = DASK_CHUNK_BYTES,
    ) -> dask.array.Array:
        """A level as a lazy dask array (t, c, z, y, x); selecting a time point or channel drops that axis.

        Each dask chunk groups whole HDF5 chunks of a plane, as the store's tiling does (see
        ``min_chunk_bytes``), to at least ``chunk_bytes`` where the planes are that large
        (default `DASK_CHUNK_BYTES`; 0: one HDF5 chunk each), decoded straight from the file
        (no zarr round trip), so the threaded, process and distributed schedulers all read in
        parallel. Pass a viewer's size (the store's ``min_chunk_bytes``) where small regions
        are read one at a time, as napari does.

        >>> ImsStore("cells.ims").to_dask(1, timepoint=0, channel=2).shape
        (8, 64, 48)
        """
        import dask.array as da
        from dask.base import tokenize

        if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 0:
            raise ValueError(f"chunk_bytes must be a number of bytes >= 0, not {chunk_bytes!r}")
        lvl = self.layout.level(level)
        t = slice(None) if timepoint is None else self._layout.timepoint(timepoint).index
        c = slice(None) if channel is None else self._layout.channel(channel).index
        version = self._source.size() if self._source.remote else os.stat(self._path).st_mtime_ns
        chunks = tiling(lvl, chunk_bytes).served_chunks
        name = "ims-store-" + tokenize(self._args(), version, self._source.size(), lvl.index, chunks)
        arr = da.from_array(LevelArray(self, lvl.index), chunks=(1, 1, *chunks), asarray=False, lock=False, name=name)
        return arr[t, c] if timepoint is not None or channel is not None else arr


class _InFlight:
    """The chunk requests under way in this process.

    zarr does not cancel the other chunk requests of a read that failed: a program that catches
    the error and ends leaves them running on zarr's event loop thread, and Python then destroys
    their tasks mid-way ("Task was destroyed but it is pending!") while h5py's exit handler runs.
    At exit, the process waits for them, and then for the other tasks of the loops they ran on
    (zarr's tasks that awaited them finish a few loop turns later), `WAIT_AT_EXIT` seconds at
    most. Only where that can be needed: on every loop a request ran on if some were still under
    way, else only where one failed. A loop that keeps running with long-lived tasks of its own
    (an application's server) must not hold up every exit."""

    def __init__(self) -> None:
        self._count = 0
        self._settled = threading.Condition()
        self._loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._failed: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        with self._settled:
            self._count += 1
            self._loops.add(loop)
        try:
            yield
        except BaseException:
            with self._settled:
                self._failed.add(loop)
            raise
        finally:
            with self._settled:
                self._count -= 1
                self._settled.notify_all()

    def settle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._settled:
            busy = self._count > 0
            self._settled.wait_for(lambda: not self._count, timeout)
            loops = list(self._loops if busy else self._failed)
        for loop in loops:
            left = deadline - time.monotonic()
            if left <= 0 or loop.is_closed() or not loop.is_running():
                continue
            with contextlib.suppress(Exception):  # a loop stopped meanwhile: nothing left to wait for
                asyncio.run_coroutine_threadsafe(_others_done(left), loop).result(left + 1)


async def _others_done(timeout: float) -> None:
    """Return once no other task of the running loop is pending, or after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    deadline = loop.time() + timeout
    while loop.time() < deadline and any(task is not me and not task.done() for task in asyncio.all_tasks()):
        await asyncio.sleep(0.005)


#: seconds the process waits at exit for chunk requests still under way (see `_InFlight`)
WAIT_AT_EXIT = 2.0
_IN_FLIGHT = _InFlight()
# the stores alive: closed at exit, on the main thread, before h5py's own exit handler runs (a
# store kept alive only by a failed read's abandoned tasks would else close its HDF5 file on
# zarr's thread while that handler is inside HDF5)
_OPEN_STORES: weakref.WeakSet[ImsStore] = weakref.WeakSet()


@atexit.register
def _settle_at_exit() -> None:
    _IN_FLIGHT.settle(WAIT_AT_EXIT)
    for store in list(_OPEN_STORES):
        with contextlib.suppress(Exception):
            store.close()


class _LinkedFiles:
    """The byte sources of the files external links lead to, one per file (by path or URL).

    Held apart from the store, which hands `open_hdf5` to its `Links`: a store referring to
    itself through that would live on, file open, until the garbage collector came by."""

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


class LevelArray:
    """One resolution level as a lazily read numpy-like array (t, c, z, y, x), chunk by chunk.

    Slicing with steps of 1 reads only the chunks the region touches; it is what `ImsStore.to_dask`
    hands to dask, and it pickles (with its store) to other processes.
    """

    def __init__(self, store: ImsStore, level: int) -> None:
        self.store = store
        self.level = store.layout.level(level)
        self.shape = store.layout.shape(level)
        self.dtype = self.level.dtype
        self.ndim = 5

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (5 - len(key))
        bounds = []
        for k, n in zip(key, self.shape, strict=True):
            start, stop, step = (k if isinstance(k, slice) else _index_slice(k, n)).indices(n)
            if step != 1:  # read the whole extent of stepped axes, then step through it
                whole = self[tuple(slice(None) if isinstance(k, slice) else k for k in key)]
                return whole[tuple(k for k in key if isinstance(k, slice))]
            bounds.append((start, max(start, stop)))
        out = np.empty([b - a for a, b in bounds], dtype=self.dtype)  # every voxel is set below
        (t0, t1), (c0, c1), *space = bounds
        chunks = self.level.chunks
        box = tuple(range(a // n, -(-b // n)) for (a, b), n in zip(space, chunks, strict=True))
        # along each axis, for each chunk the region touches: the part of it taken, and where it goes
        spans = [
            [(max(a, i * n), min(b, (i + 1) * n), i * n) for i in r]
            for (a, b), n, r in zip(space, chunks, box, strict=True)
        ]
        taken = [[slice(lo - origin, hi - origin) for lo, hi, origin in axis] for axis in spans]
        placed = [[slice(lo - a, hi - a) for lo, hi, _ in axis] for axis, (a, _) in zip(spans, space, strict=True)]
        for t in range(t0, t1) if out.size else ():
            for c in range(c0, c1):
                dest = out[t - t0, c - c0]
                decoded = self.store._decoded_box(ChunkKey(self.level.index, t, c, 0, 0, 0), box)
                for src, dst, raw in zip(itertools.product(*taken), itertools.product(*placed), decoded, strict=True):
                    if raw is None:  # never written: the level's fill value
                        dest[dst] = self.level.fill_value
                    else:
                        dest[dst] = np.frombuffer(raw, dtype=self.dtype).reshape(chunks)[src]
        squeeze = tuple(0 if not isinstance(k, slice) else slice(None) for k in key)
        return out[squeeze]


def _slices(box: tuple[range, ...]) -> tuple[slice, ...]:
    return tuple(slice(r.start, r.stop) for r in box)


def _keys(ck: ChunkKey, box: tuple[range, range, range]) -> list[ChunkKey]:
    """The HDF5 chunks of a box of ``ck``'s dataset (positions along z, y, x), in C order."""
    return [ChunkKey(ck.level, ck.t, ck.c, *pos) for pos in itertools.product(*box)]


def _written(index: ChunkIndex, box: tuple[range, range, range]) -> np.ndarray:
    """Which chunks of a box were written (meaningful where the index is ``listed``)."""
    return index.offsets[_slices(box)] >= 0


def _within(offset: Any, size: Any, end: int) -> Any:
    """Whether a stored chunk lies inside a file of ``end`` bytes (arrays of offsets and sizes:
    an array of answers): a damaged chunk index must not make us read past its end."""
    return (offset >= 0) & (size >= 0) & (offset + size <= end)


def _owns_its_memory(decoded: object, stored: object) -> bool:
    """Whether a decoder's output surely has memory of its own (new bytes or bytearray, as
    libdeflate returns, or an array that owns its data), so that it cannot be ``stored``'s
    scratch buffer (cheaper than comparing the two buffers' bounds, once per chunk)."""
    if decoded is stored or decoded is getattr(stored, "obj", None):
        return False
    kind = type(decoded)
    return kind is bytes or kind is bytearray or (kind is np.ndarray and decoded.base is None)  # type: ignore[union-attr]


def _index_slice(index: Any, size: int) -> slice:
    """An integer index as a slice of one, counting from the end when negative (as numpy does)."""
    i = operator.index(index)
    if not -size <= i < size:
        raise IndexError(f"index {i} is out of bounds for an axis of size {size}")
    i %= size
    return slice(i, i + 1)


def _describe(layout: ImsLayout, ck: ChunkKey) -> str:
    level = layout.levels[ck.level]
    start = [i * n for i, n in zip((ck.z, ck.y, ck.x), level.chunks, strict=True)]
    return (
        f"chunk ({ck.z}, {ck.y}, {ck.x}) (z, y, x; starting at voxel {tuple(start)}) of resolution level "
        f"{ck.level}, time point {ck.t}, channel {ck.c} ({layout.data_path(ck.level, ck.t, ck.c)})"
    )


def _drop_locals(err: BaseException) -> None:
    """Free the local variables of the finished frames in ``err``'s traceback, and in those of
    the errors it chains (``raise ... from None`` still chains ``__context__``).

    Those frames hold h5py objects (the dataset or group being read, h5py's own ``self``) for
    as long as the error lives. zarr does not cancel the other chunk requests of a read that
    failed: their errors are dropped later on zarr's event loop thread, possibly while the
    interpreter exits, as h5py's exit handler calls HDF5 with the GIL released; freeing an
    h5py object then calls HDF5 from a second thread at once, which HDF5 does not survive."""
    pending, seen = [err], set()
    while pending:
        e = pending.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)  # frames still running (the caller's) are skipped
        pending += [e.__cause__, e.__context__]


def _message(err: BaseException) -> str:
    return str(err) or type(err).__name__


def _check_byte_range(byte_range: object) -> None:
    if byte_range is not None and not isinstance(byte_range, (RangeByteRequest, OffsetByteRequest, SuffixByteRequest)):
        raise TypeError(f"Unexpected byte_range, got {byte_range!r}")


def _bounds(size: int, byte_range: ByteRequest | None) -> tuple[int, int]:
    if byte_range is None:
        return 0, size
    if isinstance(byte_range, RangeByteRequest):
        start, stop = byte_range.start, byte_range.end
    elif isinstance(byte_range, OffsetByteRequest):
        start, stop = byte_range.offset, size
    else:
        start, stop = size - byte_range.suffix, size
    start = min(max(start, 0), size)
    return start, max(start, min(stop, size))


def _slice(data: Any, byte_range: ByteRequest | None) -> Any:
    if byte_range is None:
        return data
    start, stop = _bounds(memoryview(data).nbytes, byte_range)
    return memoryview(data).cast("B")[start:stop]
