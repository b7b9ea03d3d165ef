"""Where each chunk of a dataset lives in the file, found once, then read without HDF5.

`index_dataset` asks HDF5 once per dataset for every chunk's byte offset, size and filter mask
(one ``H5Dchunk_iter`` pass). After that, chunk bytes are read with ``os.pread``, which
releases the GIL, so zarr's concurrent requests inflate on every core.
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from .codecs import FILTERS
from .hdf5lib import DONT_FILTER_PARTIAL_CHUNKS, chunk_options
from .layout import Filter, Level, dataset_filters, fill_value

__all__ = ["ChunkIndex", "index_dataset", "stored_chunks"]


@dataclass(frozen=True)
class ChunkIndex:
    """Byte locations of every chunk of one ``Data`` dataset, on its chunk grid (z, y, x)."""

    chunks: tuple[int, int, int]
    offsets: np.ndarray
    """int64 file offset per chunk; -1 where the chunk was never written (reads as `fill`)."""
    sizes: np.ndarray
    """int64 stored size per chunk."""
    masks: np.ndarray
    """uint32 HDF5 filter mask per chunk (bit i set: filter i was skipped for that chunk)."""
    filters: tuple[Filter, ...]
    direct: bool = True
    """False when HDF5 must read the data itself: see `why`."""
    listed: bool = True
    """Whether `offsets` say which chunks were written (false for virtual, external and compact
    storage, whose chunks all count as written)."""
    fill: int | float = 0
    """What HDF5 reads in a chunk never written (the dataset's fill value)."""
    file: str | None = None
    """The file the offsets are in, where that is not the opened file (an external link's target)."""
    why: str = ""
    """Why HDF5 must read this dataset (empty when `direct`)."""

    def fill_matches(self, level: Level) -> bool:
        """Whether the dataset's fill value is the one its level's metadata declares (bit for bit),
        so that a chunk never written may be left absent."""
        return np.array(self.fill, level.dtype).tobytes() == np.array(level.fill_value, level.dtype).tobytes()

    def locate(self, z: int, y: int, x: int) -> tuple[int, int, int]:
        """(offset, size, mask) of a chunk; offset -1 if unallocated."""
        return int(self.offsets[z, y, x]), int(self.sizes[z, y, x]), int(self.masks[z, y, x])


def index_dataset(dataset: h5py.Dataset, level: Level, file: str | None = None) -> ChunkIndex:
    """Build the chunk index of ``dataset``, a ``Data`` dataset of ``level`` (stored in ``file``,
    where that is not the file it was reached from).

    Chunks are read by offset only from storage checked to be understood here: chunked or
    contiguous in one file, a plain numeric type at full precision, every filter decodable;
    chunks HDF5 stored without some filters carry those in their mask. Anything else is left to
    HDF5 (`ChunkIndex.direct` false, `ChunkIndex.why` says why).

    The caller must hold whatever lock serialises its HDF5 calls. Raises ``ValueError`` when the
    dataset's shape or type differ from its level's (checked here rather than at open time, so
    that opening a file never visits every dataset).
    """
    shape = tuple(int(s) for s in dataset.shape)
    if dataset.ndim != 3 or dataset.dtype != level.dtype or shape != level.dataset_shape:
        raise ValueError(
            f"its shape {shape} and type {dataset.dtype} differ from the level's "
            f"{level.dataset_shape} and {level.dtype}"
        )
    own = tuple(int(c) for c in (dataset.chunks or (1, *shape[1:])))
    chunks = level.chunks  # the grid the store serves, whatever this dataset's own
    grid = tuple(-(-s // c) for s, c in zip(shape, chunks, strict=True))
    offsets = np.full(grid, -1, dtype=np.int64)
    sizes = np.zeros(grid, dtype=np.int64)
    masks = np.zeros(grid, dtype=np.uint32)
    filters = dataset_filters(dataset)
    dsid = dataset.id

    def through_hdf5(why: str, listed: bool = False) -> ChunkIndex:
        return ChunkIndex(chunks, offsets, sizes, masks, filters, False, listed, fill_value(dataset), file, why)

    if dataset.is_virtual:
        return through_hdf5("it is a virtual dataset (its data is mapped from other datasets)")
    if dsid.get_create_plist().get_external_count():
        return through_hdf5("its data lies in external raw data files")
    if own != chunks:
        return through_hdf5(f"its chunks {own} are not its level's {chunks}")
    why = _not_understood(dataset, filters)
    if dataset.chunks is None:
        # contiguous: every z plane is one run of bytes, served as a (1, Y, X) chunk
        offset = dsid.get_offset()
        if why:
            return through_hdf5(why)
        if offset is None:
            if dsid.get_storage_size():
                return through_hdf5("its data is stored inside the object header (compact storage)")
            # never written: every plane reads as the fill value
            return ChunkIndex(chunks, offsets, sizes, masks, (), fill=fill_value(dataset), file=file)
        plane = shape[1] * shape[2] * dataset.dtype.itemsize
        offsets[:, 0, 0] = offset + plane * np.arange(shape[0], dtype=np.int64)
        sizes[:] = plane
        return ChunkIndex(chunks, offsets, sizes, masks, (), fill=fill_value(dataset), file=file)

    for info in stored_chunks(dataset):
        if info.byte_offset is not None:
            z, y, x = (o // c for o, c in zip(info.chunk_offset, chunks, strict=True))
            offsets[z, y, x] = info.byte_offset
            sizes[z, y, x] = info.size
            masks[z, y, x] = info.filter_mask
    if why:  # (the index still says which chunks were written)
        return through_hdf5(why, listed=True)
    if filters and any(s % c for s, c in zip(shape, chunks, strict=True)):
        options = chunk_options(dataset)
        if options is None:
            return through_hdf5("whether its partial edge chunks are filtered cannot be asked of HDF5 here", True)
        if options & DONT_FILTER_PARTIAL_CHUNKS:
            # HDF5 stored the chunks that reach past the dataset's edge unfiltered, though the
            # index gives them a mask of 0: say so in their mask, every filter skipped
            edge = np.zeros(grid, dtype=bool)
            for axis, (s, c) in enumerate(zip(shape, chunks, strict=True)):
                if s % c:
                    edge[(slice(None),) * axis + (-1,)] = True
            masks[edge] = (1 << len(filters)) - 1
    return ChunkIndex(chunks, offsets, sizes, masks, filters, fill=fill_value(dataset), file=file)


def _not_understood(dataset: h5py.Dataset, filters: tuple[Filter, ...]) -> str:
    """Why the stored bytes of ``dataset`` must not be read by offset here ("" where they may)."""
    if not dataset.id.get_type().equal(h5py.h5t.py_create(dataset.dtype)):
        return f"its stored type is not a plain {dataset.dtype} at full precision (HDF5 converts it)"
    unknown = [f for f in filters if f.id not in FILTERS]
    if unknown:
        return "its HDF5 filter " + ", ".join(f"{f.id} ({f.name})" for f in unknown) + " has no decoder here"
    return ""


def stored_chunks(dataset: h5py.Dataset) -> list[h5py.h5d.StoreInfo]:
    """HDF5's record of every chunk of a chunked dataset: its offset in the dataset, and its file
    offset, stored size and filter mask (one ``H5Dchunk_iter`` pass)."""
    dsid = dataset.id
    if hasattr(dsid, "chunk_iter"):
        found: list[h5py.h5d.StoreInfo] = []
        dsid.chunk_iter(found.append)
        return found
    return [dsid.get_chunk_info(i) for i in range(dsid.get_num_chunks())]  # pragma: no cover - HDF5 < 1.12.3
