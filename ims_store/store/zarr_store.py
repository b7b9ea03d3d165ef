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
import operator
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from ..access.readahead import DEFAULT_READ_AHEAD
from ..access.workers import run_decoding
from ..errors import ReadOnlyError, SelectionError
from ..format.layout import ImageEntry, ImsLayout, image_count, parse_images, parse_layout
from .byteranges import check_byte_range, cut_range
from .collection import ImageCollection
from .engine import ImageEngine
from .hdf5file import ImsFile
from .keys import ZarrFormat, build_metadata, candidate_children, chunk_key, fixed_by_prefix, parse_chunk_key
from .mapping import StoreMapping
from .readonly import READ_ONLY, ReadOnlyStore
from .shutdown import IN_FLIGHT, track_open
from .tiling import DASK_CHUNK_BYTES, MIN_CHUNK_BYTES, Tiling, tiling

if TYPE_CHECKING:
    import dask.array
    import zarr
    from zarr.abc.store import ByteRequest

__all__ = ["ChunkMode", "ImsStore", "LevelArray"]

ChunkMode = Literal["decoded", "passthrough"]


class ImsStore(ReadOnlyStore):
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
            raise ReadOnlyError("ImsStore is read-only; " + READ_ONLY, path)
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
        self._follow_links = follow_links
        self._min_chunk_bytes = min_chunk_bytes
        self._read_ahead = read_ahead
        self._image = image
        self._within = None if within is None else os.path.realpath(within)
        self._file = ImsFile(self._path, self._storage_options, follow_links, self._within)
        track_open(self)
        self._collection: ImageCollection[ImsStore] | None = None
        self._engine: ImageEngine | None = None
        layout: ImsLayout | None = None
        try:
            with self._file.reads("its metadata"):
                h5 = self._file.hdf5()
                if image is None and image_count(h5) > 1:
                    entries = parse_images(h5, self._path, self._file.links())
                    self._collection = ImageCollection(entries, zarr_format, self._image_store)
                else:
                    layout = parse_layout(h5, self._path, self._file.links(), image=image or 0)
        except BaseException:
            self._file.release()
            raise
        if self._collection is not None:
            # each image is served by a store of its own, which opens the file itself
            self._file.release()
            self._metadata = self._collection.metadata
            return
        assert layout is not None
        self._engine = engine = ImageEngine(
            self._file,
            layout,
            passthrough=chunk_mode == "passthrough",
            min_chunk_bytes=min_chunk_bytes,
            read_ahead=read_ahead,
        )
        self._metadata = build_metadata(layout, engine.plans, zarr_format, [t.served_chunks for t in engine.tilings])

    # ----------------------------------------------------------------------------------------
    # identity, pickling, lifetime

    @property
    def engine(self) -> ImageEngine:
        """The image's chunks (indexes, tiling, stored and decoded chunks, region reads: see
        `engine.ImageEngine`), which every other front reads through. A collection of several
        images has none of its own: a `SelectionError` says so.

        >>> ImsStore("cells.ims").engine.read_chunk(1, 0, 2, 0, 0, 0).dtype
        dtype('uint16')
        """
        if self._engine is None:
            raise self._no_single_image()
        return self._engine

    @property
    def layout(self) -> ImsLayout:
        """The parsed metadata model of the image presented. A collection of several images has
        none of its own: a `SelectionError` says so (see `images` and `image_store`)."""
        if self._engine is None:
            raise self._no_single_image()
        return self._engine.layout

    def _no_single_image(self) -> SelectionError:
        assert self._collection is not None
        return SelectionError(
            f"the file holds {len(self._collection.entries)} images, presented as a collection; "
            "choose one with ImsStore(path, image=k) or store.image_store(k)",
            self._path,
        )

    @property
    def documents(self) -> dict[str, bytes]:
        """The metadata documents of the virtual hierarchy (``zarr.json``, ``.zattrs``...), by key.

        >>> sorted(ImsStore("cells.ims", zarr_format=2).documents)[:2]
        ['.zattrs', '.zgroup']
        """
        return self._metadata

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
        return (ImageEntry(self.layout.image, self.layout.dataset_group, self.layout),)

    def image_store(self, image: int) -> ImsStore:
        """The store of one image alone: the collection's own for a collection, this store for
        the image it presents, else a new store of that image. An image that cannot be read
        raises its error; one that does not exist a `SelectionError`.

        >>> ImsStore("tiles.ims").image_store(1).layout.image
        1
        """
        if self._collection is None:
            if isinstance(image, (int, np.integer)) and not isinstance(image, bool) and image == self.layout.image:
                return self
            if self._image is None:  # a file of one image
                raise SelectionError(f"image {image!r} does not exist; the file has image 0 only", self._path)
            return self._image_store(image)
        return self._collection.image(image, self._path)

    def _image_store(self, image: int) -> ImsStore:
        return type(self)(self._path, **{**self._options(), "image": image})

    @property
    def path(self) -> str:
        return self._path

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
    def storage_options(self) -> dict[str, Any]:
        """The fsspec options a remote file is opened with (a copy; empty for a local file)."""
        return dict(self._storage_options)

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
        return self.engine.tilings[self.layout.level(level).index]

    def _args(self) -> tuple[Any, ...]:
        where = self._path if self._file.source.remote else os.path.abspath(self._path)
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
            raise ReadOnlyError("ImsStore is read-only; " + READ_ONLY, self._path)
        return type(self)(self._path, **self._options())

    def close(self) -> None:
        """Release the file (the store reopens it if used again)."""
        with self._file.lock:
            self._file.close()
            if self._engine is not None:
                self._engine.close()
            if self._collection is not None:
                self._collection.close()
        super().close()

    # ----------------------------------------------------------------------------------------
    # reading

    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        check_byte_range(byte_range)
        prototype = prototype or default_buffer_prototype()
        meta = self._metadata.get(key)
        if meta is not None:
            return prototype.buffer.from_bytes(cut_range(meta, byte_range))
        if self._engine is None:
            routed = self._routed(key)
            return None if routed is None else await routed[0].get(routed[1], prototype, byte_range)
        engine = self._engine
        ck = parse_chunk_key(key, engine.layout, self._zarr_format, engine.grids)
        if ck is None:
            return None
        with IN_FLIGHT.request():
            stored = await engine.fetch_stored(ck) if self._file.remote else None
            # on the decoding threads (one per core), not zarr's executor: see access/workers.py
            data = await asyncio.wrap_future(run_decoding(engine.served_bytes, ck, byte_range, stored))
        return None if data is None else prototype.buffer.from_bytes(data)

    def get_sync(
        self, key: str, *, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Synchronous `get`, for zarr's synchronous read path."""
        check_byte_range(byte_range)
        prototype = prototype or default_buffer_prototype()
        meta = self._metadata.get(key)
        if meta is not None:
            return prototype.buffer.from_bytes(cut_range(meta, byte_range))
        if self._engine is None:
            routed = self._routed(key)
            return None if routed is None else routed[0].get_sync(routed[1], prototype=prototype, byte_range=byte_range)
        ck = parse_chunk_key(key, self._engine.layout, self._zarr_format, self._engine.grids)
        data = None if ck is None else self._engine.served_bytes(ck, byte_range)
        return None if data is None else prototype.buffer.from_bytes(data)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        if key in self._metadata:
            return True
        return await asyncio.to_thread(self.is_key, key)

    async def getsize(self, key: str) -> int:
        meta = self._metadata.get(key)
        if meta is not None:
            return len(meta)
        if self._engine is None and (routed := self._routed(key)) is not None:
            return await routed[0].getsize(routed[1])
        ck = None if self._engine is None else parse_chunk_key(key, self.layout, self._zarr_format, self._engine.grids)
        if ck is not None:
            size = await asyncio.to_thread(self.engine.served_size, ck)
            if size is not None:
                return size
        raise FileNotFoundError(f"{self._path}: no key {key!r} in the virtual OME-Zarr")

    def _routed(self, key: str) -> tuple[ImsStore, str] | None:
        """For a collection: the image store a key belongs to, and the key within it."""
        return self._collection.split(key) if self._collection is not None else None

    # ----------------------------------------------------------------------------------------
    # listing (chunk keys need each dataset's chunk index, built on first use)

    async def list(self) -> AsyncIterator[str]:
        if self._engine is None:
            async for key in self.list_prefix(""):
                yield key
            return
        for key in self._metadata:
            yield key
        for key in self._chunk_keys():
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in self.keys_under(prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/")
        if self._collection is not None:
            async for child in self._collection.list_dir(prefix):
                yield child
            return
        base = f"{prefix}/" if prefix else ""
        for child in candidate_children(prefix, self._metadata, self.layout, self._zarr_format, self.engine.grids):
            if self.is_key(base + child) or any(True for _ in self.keys_under(f"{base}{child}/")):
                yield child

    def is_key(self, key: str) -> bool:
        """Whether ``key`` holds something: a metadata document, or a chunk any of whose HDF5
        chunks was written (reads one chunk index at most).

        >>> store = ImsStore("cells.ims")
        >>> store.is_key("zarr.json"), store.is_key("0/c/0/0/0/0/0"), store.is_key("0/c/9/0/0/0/0")
        (True, True, False)
        """
        if key in self._metadata:
            return True
        if self._engine is None:
            routed = self._routed(key)
            return routed is not None and routed[0].is_key(routed[1])
        ck = parse_chunk_key(key, self._engine.layout, self._zarr_format, self._engine.grids)
        return ck is not None and self._engine.allocated(ck)

    def keys_under(self, prefix: str) -> Iterator[str]:
        """The keys that start with ``prefix`` (documents first, then chunk keys in order),
        visiting only the chunk indexes of the datasets the prefix's whole path components allow.

        >>> list(ImsStore("cells.ims").keys_under("1/c/0/2/"))
        ['1/c/0/2/0/0/0']
        """
        if self._collection is not None:  # its documents, then each image's keys, under k/
            yield from self._collection.keys_under(prefix)
            return
        for key in self._metadata:
            if key.startswith(prefix):
                yield key
        fixed = fixed_by_prefix(prefix, self._zarr_format)
        if fixed is None:
            return
        for key in self._chunk_keys(*fixed):
            if key.startswith(prefix):
                yield key

    def _chunk_keys(self, level: int | None = None, t: int | None = None, c: int | None = None) -> Iterator[str]:
        fmt = self._zarr_format
        return (chunk_key(ck, fmt) for ck in self.engine.served_chunks(level, t, c))

    def read_chunk(self, level: int, timepoint: int, channel: int, z: int, y: int, x: int) -> np.ndarray:
        """One decoded HDF5 chunk as a (z, y, x) array (see `ImageEngine.read_chunk`).

        >>> ImsStore("cells.ims").read_chunk(1, 0, 2, 0, 0, 0).shape
        (8, 64, 48)
        """
        return self.engine.read_chunk(level, timepoint, channel, z, y, x)

    # ----------------------------------------------------------------------------------------
    # conveniences for the common selections

    def as_mapping(self) -> StoreMapping:
        """The store as a read-only ``Mapping[str, bytes]`` (same keys, same bytes), for tools
        such as ZarrNii and ngff-zarr that take a key -> bytes mapping."""
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
        t = slice(None) if timepoint is None else self.layout.timepoint(timepoint).index
        c = slice(None) if channel is None else self.layout.channel(channel).index
        version = self._file.source.size() if self._file.remote else os.stat(self._path).st_mtime_ns
        chunks = tiling(lvl, chunk_bytes).served_chunks
        name = "ims-store-" + tokenize(self._args(), version, self._file.source.size(), lvl.index, chunks)
        arr = da.from_array(LevelArray(self, lvl.index), chunks=(1, 1, *chunks), asarray=False, lock=False, name=name)
        return arr[t, c] if timepoint is not None or channel is not None else arr


class LevelArray:
    """One resolution level as a lazily read numpy-like array (t, c, z, y, x), chunk by chunk.

    Slicing with steps of 1 reads only the chunks the region touches (`ImageEngine.read_region`);
    it is what `ImsStore.to_dask` hands to dask, and it pickles (with its store) to other processes.
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
        out = self.store.engine.read_region(self.level.index, bounds)
        squeeze = tuple(0 if not isinstance(k, slice) else slice(None) for k in key)
        return out[squeeze]


def _index_slice(index: Any, size: int) -> slice:
    """An integer index as a slice of one, counting from the end when negative (as numpy does)."""
    i = operator.index(index)
    if not -size <= i < size:
        raise IndexError(f"index {i} is out of bounds for an axis of size {size}")
    i %= size
    return slice(i, i + 1)
