"""Where each chunk of a dataset lives in the file, found once, then read without HDF5.

`index_dataset` asks HDF5 once per dataset for every chunk's byte offset, size and filter mask
(one ``H5Dchunk_iter`` pass). After that, chunk bytes are read with ``os.pread``, which
releases the GIL, so zarr's concurrent requests inflate on every core.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from .layout import Filter, Level, dataset_filters

__all__ = ["ChunkIndex", "index_dataset", "read_range", "stored_chunks"]


@dataclass(frozen=True)
class ChunkIndex:
    """Byte locations of every chunk of one ``Data`` dataset, on its chunk grid (z, y, x)."""

    chunks: tuple[int, int, int]
    offsets: np.ndarray
    """int64 file offset per chunk; -1 where the chunk was never written (reads as zeros)."""
    sizes: np.ndarray
    """int64 stored size per chunk."""
    masks: np.ndarray
    """uint32 HDF5 filter mask per chunk (bit i set: filter i was skipped for that chunk)."""
    filters: tuple[Filter, ...]
    direct: bool = True
    """False when HDF5 must read the data itself (compact storage, or no file offsets)."""

    def locate(self, z: int, y: int, x: int) -> tuple[int, int, int]:
        """(offset, size, mask) of a chunk; offset -1 if unallocated."""
        return int(self.offsets[z, y, x]), int(self.sizes[z, y, x]), int(self.masks[z, y, x])


def index_dataset(dataset: h5py.Dataset, level: Level) -> ChunkIndex:
    """Build the chunk index of ``dataset``, a ``Data`` dataset of ``level``.

    The caller must hold whatever lock serialises its HDF5 calls. Raises ``ValueError`` when the
    dataset's shape, type or chunking differ from its level's (checked here rather than at open
    time, so that opening a file never visits every dataset).
    """
    shape = tuple(int(s) for s in dataset.shape)
    chunks = tuple(int(c) for c in (dataset.chunks or (1, *shape[1:])))
    if dataset.ndim != 3 or chunks != level.chunks or dataset.dtype != level.dtype or shape != level.dataset_shape:
        raise ValueError(
            f"its shape {shape}, chunks {chunks} and type {dataset.dtype} differ from the level's "
            f"{level.dataset_shape}, {level.chunks} and {level.dtype}"
        )
    grid = tuple(-(-s // c) for s, c in zip(shape, chunks, strict=True))
    offsets = np.full(grid, -1, dtype=np.int64)
    sizes = np.zeros(grid, dtype=np.int64)
    masks = np.zeros(grid, dtype=np.uint32)
    dsid = dataset.id

    if dataset.chunks is None:
        # contiguous: every z plane is one run of bytes, served as a (1, Y, X) chunk
        offset = dsid.get_offset()
        if offset is None:
            # never written (all zeros) or compact (inside the object header): let HDF5 read it
            direct = dsid.get_storage_size() == 0
            return ChunkIndex(chunks, offsets, sizes, masks, (), direct=direct)
        plane = shape[1] * shape[2] * dataset.dtype.itemsize
        offsets[:, 0, 0] = offset + plane * np.arange(shape[0], dtype=np.int64)
        sizes[:] = plane
        return ChunkIndex(chunks, offsets, sizes, masks, ())

    for info in stored_chunks(dataset):
        if info.byte_offset is not None:
            z, y, x = (o // c for o, c in zip(info.chunk_offset, chunks, strict=True))
            offsets[z, y, x] = info.byte_offset
            sizes[z, y, x] = info.size
            masks[z, y, x] = info.filter_mask
    return ChunkIndex(chunks, offsets, sizes, masks, dataset_filters(dataset))


def stored_chunks(dataset: h5py.Dataset) -> list[h5py.h5d.StoreInfo]:
    """HDF5's record of every chunk of a chunked dataset: its offset in the dataset, and its file
    offset, stored size and filter mask (one ``H5Dchunk_iter`` pass)."""
    dsid = dataset.id
    if hasattr(dsid, "chunk_iter"):
        found: list[h5py.h5d.StoreInfo] = []
        dsid.chunk_iter(found.append)
        return found
    return [dsid.get_chunk_info(i) for i in range(dsid.get_num_chunks())]  # pragma: no cover - HDF5 < 1.12.3


def read_range(fd: int, offset: int, size: int) -> bytes:
    """Read exactly ``size`` bytes at ``offset`` (positional, GIL-free, thread-safe).

    Raises ``EOFError`` when the file ends first (a truncated copy).
    """
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
