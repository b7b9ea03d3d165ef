"""`ImageEngine`: the chunks of one image of an ``.ims`` file. Where a chunk is decoded.

Every front reads pixels through an engine: `ImsStore` (the zarr protocol: keys -> documents |
chunk bytes) serves its chunks, `ImsStore.to_dask` / `LevelArray` and the bioio plugin read
regions, ``ims-store convert`` / ``refs`` / ``validate --deep`` take chunk indexes, stored and
decoded chunks. One per image, made from an open `hdf5file.ImsFile` and the image's parsed
`ImsLayout`; it owns

* the chunk index of each (level, time point, channel) (`index`, built once, on first use);
* the served tiling of each level (`tilings`: HDF5 chunks one to one, or small ones grouped) and
  the codecs each level declares (`plans`);
* the fast-path / HDF5 decision (`hdf5_reason`: a chunk is read by offset and decoded here only
  where its storage was checked; else HDF5 reads it);
* a chunk's stored bytes, its decoded voxels (`decoded_chunk`, `decoded_box`: the one place a
  chunk is decoded) and the bytes served for it (`served_bytes`), a region read (`read_region`);
* remote fetch planning (`fetch_stored`, `span`: one request for chunks that lie together, the
  read-ahead for walks).

>>> from ims_store import ImsStore
>>> engine = ImsStore("cells.ims").engine
>>> engine.read_region(1, ((0, 1), (2, 3), (0, 8), (0, 64), (0, 48))).shape
(1, 1, 8, 64, 48)
>>> engine.index(1, 0, 2).listed
True
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from ..access.files import scratch_buffer
from ..access.readahead import DEFAULT_READ_AHEAD, ReadAhead
from ..access.workers import run_blocking, run_decoding
from ..errors import (
    CorruptChunkError,
    ImsError,
    LinkTargetError,
    MalformedImsError,
    RemoteReadError,
    SelectionError,
    TruncatedFileError,
)
from ..format.chunks import ChunkIndex, index_dataset
from ..format.codecs import RAW, CodecPlan, decode_chunk, encode_chunk, plan_codecs
from ..format.layout import Filter, ImsLayout, Level
from ..format.links import stored_elsewhere
from .byteranges import bounds, cut_range
from .hdf5file import ImsFile
from .keys import ChunkKey
from .tiling import MIN_CHUNK_BYTES, Tiling, tiling

if TYPE_CHECKING:
    from concurrent.futures import Future

    from zarr.abc.store import ByteRequest

__all__ = ["ImageEngine", "StoredParts"]

StoredParts = list["bytes | memoryview | None"]
"""The stored bytes of a served chunk's HDF5 chunks, as fetched (None: HDF5 reads that one)."""


class ImageEngine:
    """The chunks of one image: indexes, tiling, stored and decoded chunks, regions, fetches.

    Parameters
    ----------
    file
        The open file (its HDF5 lifecycle, byte sources, lock).
    layout
        The image's parsed layout.
    passthrough
        Whether levels whose HDF5 filters map to zarr codecs declare them (their chunks served
        as stored; ``chunk_mode="passthrough"``) rather than being served decoded.
    min_chunk_bytes
        Decoded mode: HDF5 chunks smaller than this are served grouped (see `tiling`).
    read_ahead
        For a URL: the read-ahead's byte budget (see `ImsStore`).
    """

    def __init__(
        self,
        file: ImsFile,
        layout: ImsLayout,
        *,
        passthrough: bool = False,
        min_chunk_bytes: int = MIN_CHUNK_BYTES,
        read_ahead: int = DEFAULT_READ_AHEAD,
    ) -> None:
        self.file = file
        self.layout = layout
        self._path = file.path
        #: what each level's metadata declares; decoded mode declares no codecs at all
        self.plans: list[CodecPlan] = [
            plan_codecs(level.filters, level.dtype) if passthrough else RAW for level in layout.levels
        ]
        #: how each level's HDF5 chunks are served: passthrough serves stored bytes, one per chunk
        self.tilings: list[Tiling] = [tiling(level, 0 if passthrough else min_chunk_bytes) for level in layout.levels]
        #: each level's grid of served chunks (z, y, x)
        self.grids = [t.served_grid for t in self.tilings]
        self._indexes: dict[tuple[int, int, int], ChunkIndex] = {}
        self._index_loads: dict[tuple[int, int, int], Future[ChunkIndex]] = {}
        self._walk_lock = threading.Lock()
        source = file.source
        self._ahead = (
            ReadAhead(source.fetch, budget=read_ahead, end=source.size())  # type: ignore[union-attr]
            if source.remote
            else None
        )

    def close(self) -> None:
        """Drop the chunks fetched ahead (the file is its owner's to close)."""
        if self._ahead is not None:
            self._ahead.clear()

    # ----------------------------------------------------------------------------------------
    # chunk indexes

    def index(self, level: int, t: int, c: int) -> ChunkIndex:
        """The chunk index of a (level, time point, channel), built on first use (links
        followed); a dataset that cannot be read raises the error that says why.

        >>> from ims_store import ImsStore
        >>> ImsStore("cells.ims").engine.index(0, 0, 0).offsets.shape
        (1, 1, 1)
        """
        index = self._indexes.get((level, t, c))
        if index is not None:
            return index
        path = self.layout.data_path(level, t, c)
        with self.file.lock:
            index = self._indexes.get((level, t, c))
            if index is None:
                with self.file.reads(f"the chunk index of {path}"):
                    index = self._build_index(path, self.layout.levels[level])
                self._indexes[(level, t, c)] = index
        return index

    def cached_index(self, level: int, t: int, c: int) -> ChunkIndex | None:
        """The chunk index of a (level, time point, channel) if it was built already."""
        return self._indexes.get((level, t, c))

    def _build_index(self, path: str, level: Level) -> ChunkIndex:
        """The chunk index of the dataset at ``path`` (links followed), or the error that says
        why it cannot be read (raised through `ImsFile.reads`, which frees the h5py objects its
        frames hold)."""
        found = self.file.links().get(path)
        dataset = found.obj if found is not None else None
        if not isinstance(dataset, h5py.Dataset):
            raise MalformedImsError(f"{path} is missing", self._path)
        try:
            index = index_dataset(dataset, level, found.file)  # type: ignore[union-attr]
        except ValueError as err:
            raise MalformedImsError(f"{path}: {err}", self._path) from err
        if not index.direct:
            problem = stored_elsewhere(
                dataset, remote=self.file.remote, follow=self.file.follow_links, within=self.file.within
            )
            if problem:
                raise LinkTargetError(f"{path}: {problem}", self._path)
        return index

    def load_index(self, key: tuple[int, int, int]) -> Future[ChunkIndex]:
        """One load of a chunk index, shared by every request waiting for it: they then go on in
        the order they asked (a thread hop each would shuffle them, and the read-ahead recognises
        a walk by that order)."""
        with self.file.lock:
            future = self._index_loads.get(key)
            if future is None:
                future = self._index_loads[key] = run_blocking(self.index, *key)
                future.add_done_callback(lambda _: self._index_loads.pop(key, None))
        return future

    async def _index_async(self, ck: ChunkKey) -> ChunkIndex:
        key = (ck.level, ck.t, ck.c)
        return self._indexes.get(key) or await asyncio.wrap_future(self.load_index(key))

    # ----------------------------------------------------------------------------------------
    # the served tiling

    def box(self, ck: ChunkKey) -> tuple[range, range, range]:
        """The HDF5 chunks of a served chunk, as positions along each axis (see `Tiling.box`)."""
        return self.tilings[ck.level].box(ck.z, ck.y, ck.x)

    def allocated(self, ck: ChunkKey) -> bool:
        """Whether any HDF5 chunk of a served chunk was written."""
        index = self.index(ck.level, ck.t, ck.c)
        return not index.listed or bool(written(index, self.box(ck)).any())

    def served_chunks(self, level: int | None = None, t: int | None = None, c: int | None = None) -> Iterator[ChunkKey]:
        """The served chunks that hold something (written, or an index that lists none), of
        every level, time point, channel or the one given, in order."""
        lay = self.layout
        levels = range(len(lay.levels)) if level is None else [level] if level < len(lay.levels) else []
        for li in levels:
            gz, gy, gx = lay.levels[li].chunk_grid
            tiles = self.tilings[li]
            times = range(len(lay.timepoints)) if t is None else [t] if t < len(lay.timepoints) else []
            for ti in times:
                chans = range(len(lay.channels)) if c is None else [c] if c < len(lay.channels) else []
                for ci in chans:
                    index = self.index(li, ti, ci)
                    present = index.offsets[:gz, :gy, :gx] >= 0 if index.listed else np.ones((gz, gy, gx), bool)
                    for z, y, x in zip(*np.nonzero(tiles.served_present(present)), strict=True):
                        yield ChunkKey(li, ti, ci, int(z), int(y), int(x))

    def chunk_nbytes(self, level: int) -> int:
        """The decoded bytes of one HDF5 chunk of a level."""
        lvl = self.layout.levels[level]
        return math.prod(lvl.chunks) * lvl.dtype.itemsize

    def declares_codecs(self, level: int) -> bool:
        """Whether a level's served chunks are encoded (passthrough mode, filters with codecs)."""
        return self.plans[level].passthrough and bool(self.layout.levels[level].filters)

    def passes_through(self, ck: ChunkKey, index: ChunkIndex, mask: int) -> bool:
        """Whether this chunk's stored bytes are exactly what the declared codecs decode."""
        level = self.layout.levels[ck.level]
        return (
            self.plans[ck.level].passthrough
            and index.direct
            and mask == 0
            and index.filters == level.filters
            and index.offsets[ck.z, ck.y, ck.x] >= 0
            and not self.oversized(int(index.sizes[ck.z, ck.y, ck.x]), ck.level)
        )

    def served_size(self, ck: ChunkKey) -> int | None:
        """The length of the bytes served for a chunk; None if none of it was written."""
        index = self.index(ck.level, ck.t, ck.c)
        if not self.allocated(ck):
            return None
        tiles = self.tilings[ck.level]
        if tiles.grouped:  # decoded mode: raw voxels, no codecs
            return math.prod(tiles.served_chunks) * self.layout.levels[ck.level].dtype.itemsize
        _, size, mask = index.locate(ck.z, ck.y, ck.x)
        if self.passes_through(ck, index, mask):
            return size
        if self.declares_codecs(ck.level):
            return len(self.served_bytes(ck, None) or b"")
        return self.chunk_nbytes(ck.level)

    # ----------------------------------------------------------------------------------------
    # served chunks

    def served_bytes(
        self, ck: ChunkKey, byte_range: ByteRequest | None, stored: StoredParts | None = None
    ) -> bytes | bytearray | np.ndarray | memoryview | None:
        """The bytes served for a served chunk, in the form its array's metadata declares; None
        where zarr fills it (never written, and the fill value is the one declared).

        ``stored``: the stored bytes of its HDF5 chunks (see `box`) when they were fetched
        already (remote files, `fetch_stored`).
        """
        if self.tilings[ck.level].grouped:
            raw = self._grouped_chunk(ck, stored)
            return None if raw is None else cut_range(raw, byte_range)
        return self._one_chunk_bytes(ck, byte_range, None if stored is None else stored[0])

    def _grouped_chunk(self, ck: ChunkKey, stored: StoredParts | None) -> np.ndarray | None:
        """A served chunk of several HDF5 chunks, decoded into place; None if none of them was
        written and the fill value is the one declared (zarr then fills it)."""
        level = self.layout.levels[ck.level]
        tiles = self.tilings[ck.level]
        index = self.index(ck.level, ck.t, ck.c)
        box = self.box(ck)
        # what no HDF5 chunk covers lies past the image's edge, which zarr crops away; unwritten
        # chunks are the fill value, as declared. (No fill where every chunk is there: a 1 MiB
        # memset costs a tenth of the decoding.)
        whole = tuple(map(len, box)) == tiles.group and (not index.listed or bool(written(index, box).all()))
        out = None
        places = itertools.product(*(axis[: len(r)] for axis, r in zip(tiles.places, box, strict=True)))
        # each chunk is copied as it is decoded, while its voxels are still in the CPU's cache
        for region, raw in zip(places, self.decoded_box(ck, box, stored), strict=True):
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
        index = self.index(ck.level, ck.t, ck.c)
        offset, size, mask = index.locate(ck.z, ck.y, ck.x)
        if index.listed and offset < 0 and index.fill_matches(self.layout.levels[ck.level]):
            return None  # never written: zarr fills with the fill value the metadata declares
        if self.passes_through(ck, index, mask):
            if stored is None and byte_range is not None:
                start, stop = bounds(size, byte_range)
                return self._read(offset + start, stop - start, ck, index)
            return cut_range(self.stored_chunk(ck, index) if stored is None else stored, byte_range)
        raw = self.decoded_chunk(ck, stored)
        if self.declares_codecs(ck.level):
            level = self.layout.levels[ck.level]
            raw = encode_chunk(raw, level.filters, level.dtype)
        return cut_range(raw, byte_range)

    # ----------------------------------------------------------------------------------------
    # decoding: the one place a chunk's stored bytes become voxels

    def hdf5_reason(self, index: ChunkIndex, size: int, level: int) -> str | None:
        """Why HDF5 must read a written chunk of ``size`` stored bytes rather than this engine
        (its storage is not one read by offset, see `index_dataset`; or it is larger than any
        filter's output); None: it is read by offset and decoded here (the fast path)."""
        if not index.direct:
            return index.why
        if self.oversized(size, level):
            return f"its stored size ({size} bytes) is more than ims_store reads by offset"
        return None

    def decoded_chunk(
        self, ck: ChunkKey, stored: bytes | memoryview | None = None
    ) -> bytes | bytearray | np.ndarray | None:
        """A chunk's voxels as raw bytes (the whole HDF5 chunk, padding included); None if
        unallocated. ``stored``: its stored bytes where fetched already."""
        index = self.index(ck.level, ck.t, ck.c)
        offset, size, mask = index.locate(ck.z, ck.y, ck.x)
        level = self.layout.levels[ck.level]
        if index.listed and offset < 0:
            # never written: the dataset's own fill value, where it is not the one declared
            return None if index.fill_matches(level) else np.full(level.chunks, index.fill, level.dtype).view(np.uint8)
        why = self.hdf5_reason(index, size, ck.level)
        if why is not None:
            return self._read_with_hdf5(ck, why)
        scratch = None
        if stored is None and self._ahead is None:
            # where a filter is undone, the voxels land in a new buffer and the stored bytes can
            # be read into this thread's scratch buffer (see `read_range`)
            if ~mask & ((1 << len(index.filters)) - 1):  # a filter not skipped
                scratch = scratch_buffer(size)
            stored = self._read(offset, size, ck, index, into=scratch)
        elif stored is None:
            stored = self.stored_chunk(ck, index)
        return self._decoded_bytes(
            ck, stored, index.filters, mask, level.dtype, self.chunk_nbytes(ck.level), scratch is not None
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
            raise CorruptChunkError(f"{self.describe(ck)} cannot be decoded ({err})", self._path) from err
        if scratch and not _owns_its_memory(raw, stored):
            if np.may_share_memory(np.frombuffer(raw, np.uint8), np.frombuffer(stored, np.uint8)):
                raw = bytes(raw)  # a stage that kept its input (no filter, a shuffle of 1-byte values)
        return raw

    def decoded_box(
        self, ck: ChunkKey, box: tuple[range, range, range], stored: StoredParts | None = None
    ) -> Iterator[bytes | bytearray | np.ndarray | None]:
        """`decoded_chunk` of a box of HDF5 chunks of ``ck``'s dataset (positions ``box`` along
        z, y, x), in C order, which is file order for most writers. ``stored``: their stored
        bytes where fetched already. A local file's are read a run at a time (`_decoded_locally`);
        a remote file's are fetched in one request where they lie together (`span`), else all
        asked for before the first is waited on, so that the read-ahead sees them as one walk."""
        if stored is None and self._ahead is None:
            index = self.index(ck.level, ck.t, ck.c)
            if index.direct:
                return self._decoded_locally(ck, box, index)
        keys = box_keys(ck, box)
        if stored is not None:
            return (self.decoded_chunk(k, data) for k, data in zip(keys, stored, strict=True))
        if self._ahead is not None:
            return self._decoded_remotely(keys)
        return (self.decoded_chunk(k) for k in keys)

    def _decoded_locally(
        self, ck: ChunkKey, box: tuple[range, range, range], index: ChunkIndex
    ) -> Iterator[bytes | bytearray | np.ndarray | None]:
        """`decoded_box` of a local dataset read by offset: the chunks' places and sizes
        checked in one pass, then each run of chunks that pass read together (see
        `LocalFile.read_ranges`); any other chunk (never written, oversized, past the end of the
        file) goes through `decoded_chunk`, which says what is wrong with it."""
        source = self.file.source_of(index.file)
        level = self.layout.levels[ck.level]
        nbytes = self.chunk_nbytes(ck.level)
        at = _slices(box)
        offsets, sizes = index.offsets[at].ravel(), index.sizes[at].ravel()
        fits = (_within(offsets, sizes, source.size()) & ~self.oversized(sizes, ck.level)).tolist()
        offsets, sizes, masks = offsets.tolist(), sizes.tolist(), index.masks[at].ravel().tolist()
        keys = box_keys(ck, box)
        i, n = 0, len(keys)
        while i < n:
            if not fits[i]:
                yield self.decoded_chunk(keys[i])
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
                yield from (self.decoded_chunk(key) for key in keys[k:j])
            i = j

    def _decoded_remotely(self, keys: list[ChunkKey]) -> Iterator[bytes | bytearray | np.ndarray | None]:
        index = self.index(keys[0].level, keys[0].t, keys[0].c)
        span = self.span(keys, index) if len(keys) > 1 else None
        if span is not None:  # one request for them all
            fetched = self.cut(
                keys, index, span[0], self._wait(keys[0], self.file.source.fetch(span[0], span[1] - span[0]))
            )  # type: ignore[union-attr]
            yield from (self.decoded_chunk(ck, stored) for ck, stored in zip(keys, fetched, strict=True))
            return
        with self._walk_lock:  # one read's requests together: another thread's would break the walk
            requests = [self._request(ck, index) for ck in keys]
        for ck, request in zip(keys, requests, strict=True):
            yield self.decoded_chunk(ck, None if request is None else self._wait(ck, request))

    def read_chunk(self, level: int, timepoint: int, channel: int, z: int, y: int, x: int) -> np.ndarray:
        """One decoded HDF5 chunk as a (z, y, x) array of the level's chunk shape (zeros if unwritten).

        >>> from ims_store import ImsStore
        >>> ImsStore("cells.ims").engine.read_chunk(1, 0, 2, 0, 0, 0).shape
        (8, 64, 48)
        """
        lvl = self.layout.level(level)
        ck = ChunkKey(lvl.index, self.layout.timepoint(timepoint).index, self.layout.channel(channel).index, z, y, x)
        if not all(0 <= i < n for i, n in zip((z, y, x), lvl.chunk_grid, strict=True)):
            raise SelectionError(
                f"chunk {(z, y, x)} does not exist; level {level} has {lvl.chunk_grid} chunks", self._path
            )
        raw = self.decoded_chunk(ck)
        if raw is None:
            return np.full(lvl.chunks, lvl.fill_value, dtype=lvl.dtype)
        return np.frombuffer(raw, dtype=lvl.dtype).reshape(lvl.chunks)

    def read_region(self, level: int, region: Sequence[tuple[int, int]], *, parallel: bool = False) -> np.ndarray:
        """The voxels of a region of a level: ``region`` is (start, stop) along t, c, z, y, x,
        each within the level's shape; a (t, c, z, y, x) array. Reads only the HDF5 chunks the
        region touches, each decoded straight into its place.

        ``parallel``: a local file's rows of chunks (one z and y chunk position each) are read
        and decoded on the decoding threads, one per core, for a caller that reads a region on
        one thread (the bioio plugin); dask's threads read the pieces of `LevelArray` side by
        side already. Never from a decoding thread (it would wait on its own pool).

        >>> from ims_store import ImsStore
        >>> ImsStore("cells.ims").engine.read_region(0, ((0, 2), (0, 1), (3, 4), (0, 128), (0, 96))).shape
        (2, 1, 1, 128, 96)
        """
        lvl = self.layout.levels[level]
        out = np.empty([b - a for a, b in region], dtype=lvl.dtype)  # every voxel is set below
        (t0, t1), (c0, c1), *space = region
        chunks = lvl.chunks
        box = tuple(range(a // n, -(-b // n)) for (a, b), n in zip(space, chunks, strict=True))
        # along each axis, for each chunk the region touches: the part of it taken, and where it goes
        spans = [
            [(max(a, i * n), min(b, (i + 1) * n), i * n) for i in r]
            for (a, b), n, r in zip(space, chunks, box, strict=True)
        ]
        taken = [[slice(lo - origin, hi - origin) for lo, hi, origin in axis] for axis in spans]
        placed = [[slice(lo - a, hi - a) for lo, hi, _ in axis] for axis, (a, _) in zip(spans, space, strict=True)]
        pieces: list[tuple[Any, ...]] = []
        for t in range(t0, t1) if out.size else ():
            for c in range(c0, c1):
                dest = out[t - t0, c - c0]
                if not (parallel and self._ahead is None):
                    pieces.append((dest, ChunkKey(lvl.index, t, c, 0, 0, 0), box, taken, placed))
                    continue
                for iz, iy in itertools.product(range(len(box[0])), range(len(box[1]))):
                    rows = (box[0][iz : iz + 1], box[1][iy : iy + 1], box[2])
                    pieces.append(
                        (
                            dest,
                            ChunkKey(lvl.index, t, c, 0, 0, 0),
                            rows,
                            [[taken[0][iz]], [taken[1][iy]], taken[2]],
                            [[placed[0][iz]], [placed[1][iy]], placed[2]],
                        )
                    )
        if parallel and len(pieces) > 1:
            for future in [run_decoding(self._fill, *piece) for piece in pieces]:
                future.result()
        else:
            for piece in pieces:
                self._fill(*piece)
        return out

    def _fill(
        self,
        dest: np.ndarray,
        ck: ChunkKey,
        box: tuple[range, range, range],
        taken: list[list[slice]],
        placed: list[list[slice]],
    ) -> None:
        """Decode the chunks of ``box`` (of ``ck``'s dataset) into ``dest``: along each axis,
        the part of each chunk ``taken`` goes where ``placed`` says."""
        lvl = self.layout.levels[ck.level]
        decoded = self.decoded_box(ck, box)
        for src, dst, raw in zip(itertools.product(*taken), itertools.product(*placed), decoded, strict=True):
            if raw is None:  # never written: the level's fill value
                dest[dst] = lvl.fill_value
            else:
                dest[dst] = np.frombuffer(raw, dtype=lvl.dtype).reshape(lvl.chunks)[src]

    # ----------------------------------------------------------------------------------------
    # stored bytes, and remote fetch planning

    async def fetch_stored(self, ck: ChunkKey) -> StoredParts:
        """The stored bytes of a served chunk's HDF5 chunks (a remote file): one range request
        where they lie together in the file (see `span`), else requested together."""
        parts = box_keys(ck, self.box(ck))
        if len(parts) > 1:
            index = await self._index_async(ck)
            span = self.span(parts, index)
            if span is not None:
                with self._read_errors(parts[0]):
                    data = await asyncio.wrap_future(self.file.source.fetch(span[0], span[1] - span[0]))  # type: ignore[union-attr]
                return self.cut(parts, index, span[0], data)
        return list(await asyncio.gather(*(self._fetch(part) for part in parts)))

    def span(self, keys: list[ChunkKey], index: ChunkIndex) -> tuple[int, int] | None:
        """The byte range (start, end) of a remote file that holds all these HDF5 chunks of one
        dataset, where they lie together: each read by offset from this file (not a link's
        target), written, and the range little more than their bytes. A group of a plane's
        chunks usually does (HDF5 writes a plane's chunks one after the other); one request for
        it is then one walk, whatever order the reads come in."""
        if not index.direct or index.file is not None:
            return None
        located = [index.locate(k.z, k.y, k.x) for k in keys]
        if any(offset < 0 or self.oversized(size, k.level) for k, (offset, size, _) in zip(keys, located, strict=True)):
            return None
        for k, (offset, size, _) in zip(keys, located, strict=True):
            self._check_extent(offset, size, k, index)
        start = min(offset for offset, _, _ in located)
        end = max(offset + size for offset, size, _ in located)
        stored = sum(size for _, size, _ in located)
        return (start, end) if end - start <= stored + stored // 4 + 65536 else None

    @staticmethod
    def cut(keys: list[ChunkKey], index: ChunkIndex, start: int, data: bytes | memoryview) -> StoredParts:
        """The stored bytes of each chunk, out of a range fetched from ``start`` (see `span`)."""
        view = memoryview(data)
        out: StoredParts = []
        for k in keys:
            offset, size, _ = index.locate(k.z, k.y, k.x)
            out.append(view[offset - start : offset - start + size])
        return out

    async def _fetch(self, ck: ChunkKey) -> bytes | memoryview | None:
        """A remote chunk's stored bytes, fetched on the file system's own event loop (so that
        zarr's concurrent requests are in flight together); None where HDF5 must read it."""
        index = await self._index_async(ck)
        future = self._request(ck, index)
        if future is None:
            return None
        with self._read_errors(ck):
            return await asyncio.wrap_future(future)

    def _request(self, ck: ChunkKey, index: ChunkIndex) -> Future[bytes | memoryview] | None:
        """A remote chunk's stored bytes, asked of the read-ahead; None where HDF5 must read it."""
        assert self._ahead is not None
        offset, size, _ = index.locate(ck.z, ck.y, ck.x)
        if not index.direct or offset < 0 or self.oversized(size, ck.level):
            return None
        self._check_extent(offset, size, ck, index)
        if index.file is not None:  # an external link's target: its own requests, no read-ahead
            return self.file.source_of(index.file).fetch(offset, size)  # type: ignore[union-attr]
        return self._ahead.request((ck.level, ck.t, ck.c), index, (ck.z, ck.y, ck.x))

    def _wait(self, ck: ChunkKey, future: Future[bytes | memoryview]) -> bytes | memoryview:
        with self._read_errors(ck):
            return future.result()

    def stored_chunk(self, ck: ChunkKey, index: ChunkIndex) -> bytes | memoryview:
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
            return self.file.source_of(index.file).read(offset, size, into)  # type: ignore[call-arg]
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
            return TruncatedFileError(f"{self.describe(ck)} lies past the end of the file ({err})", self._path)
        if isinstance(err, RemoteReadError):  # the network's or the server's doing, not the file's
            return RemoteReadError(f"{self.describe(ck)} cannot be fetched: {err.reason}", self._path)
        return CorruptChunkError(f"{self.describe(ck)} cannot be read ({err})", self._path)

    def _check_extent(self, offset: int, size: int, ck: ChunkKey, index: ChunkIndex) -> None:
        end = self.file.source_of(index.file).size()
        if not _within(offset, size, end):
            where = "" if index.file is None else f" {index.file}, which an external link leads to"
            raise TruncatedFileError(
                f"{self.describe(ck)} lies past the end of the file{where} (bytes {offset}..{offset + size} "
                f"of a file of {end})",
                self._path,
            )

    def oversized(self, size: Any, level: int) -> Any:
        """Whether a stored chunk is larger than any deflate or shuffle output of its voxels: HDF5
        reads it (an LZ4 chunk of tiny blocks may be; a damaged index claims anything), so that
        a claim is never what decides how much is read here. (Sizes may be an array.)"""
        return size > 2 * self.chunk_nbytes(level) + 65536

    # ----------------------------------------------------------------------------------------
    # HDF5's own reads (the slow path)

    def _read_with_hdf5(self, ck: ChunkKey, why: str) -> np.ndarray:
        """Let HDF5 read a chunk, for ``why`` (storage not read by offset here: see `index_dataset`)."""
        level = self.layout.levels[ck.level]
        origin = [i * n for i, n in zip((ck.z, ck.y, ck.x), level.chunks, strict=True)]
        region = tuple(slice(o, o + n) for o, n in zip(origin, level.chunks, strict=True))
        path = self.layout.data_path(ck.level, ck.t, ck.c)
        # ImsFile.reads: a failed request is a RemoteReadError; no error keeps h5py objects alive
        with self.file.lock, self.file.reads(self.describe(ck)):
            try:
                block = self._hdf5_region(path, region)
            except (RemoteReadError, MalformedImsError):  # reopening the file failed, a link broke
                raise
            except Exception as err:
                raise CorruptChunkError(
                    f"{self.describe(ck)} cannot be read by HDF5 ({_message(err)}); HDF5 reads it because {why}",
                    self._path,
                ) from err
        out = np.zeros(level.chunks, dtype=level.dtype)
        out[tuple(slice(0, s) for s in block.shape)] = block
        return out.reshape(-1).view(np.uint8)

    def _hdf5_region(self, path: str, region: tuple[slice, ...]) -> np.ndarray:
        """HDF5's read of ``region`` of the dataset at ``path`` (links followed). Its own frame,
        so that the h5py objects it holds are gone once an error has left it."""
        import hdf5plugin  # noqa: F401  (registers LZ4, Zstd, ... with HDF5)

        found = self.file.links().get(path)
        if found is None or not isinstance(found.obj, h5py.Dataset):
            raise MalformedImsError(f"{path} is missing", self._path)
        return found.obj[region]

    def describe(self, ck: ChunkKey) -> str:
        """A chunk, as error messages name it."""
        level = self.layout.levels[ck.level]
        start = [i * n for i, n in zip((ck.z, ck.y, ck.x), level.chunks, strict=True)]
        return (
            f"chunk ({ck.z}, {ck.y}, {ck.x}) (z, y, x; starting at voxel {tuple(start)}) of resolution level "
            f"{ck.level}, time point {ck.t}, channel {ck.c} ({self.layout.data_path(ck.level, ck.t, ck.c)})"
        )


def _slices(box: tuple[range, ...]) -> tuple[slice, ...]:
    return tuple(slice(r.start, r.stop) for r in box)


def box_keys(ck: ChunkKey, box: tuple[range, range, range]) -> list[ChunkKey]:
    """The HDF5 chunks of a box of ``ck``'s dataset (positions along z, y, x), in C order.

    >>> [k.x for k in box_keys(ChunkKey(0, 0, 0, 0, 0, 0), (range(1), range(1), range(2, 4)))]
    [2, 3]
    """
    return [ChunkKey(ck.level, ck.t, ck.c, *pos) for pos in itertools.product(*box)]


def written(index: ChunkIndex, box: tuple[range, range, range]) -> np.ndarray:
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


def _message(err: BaseException) -> str:
    return str(err) or type(err).__name__
