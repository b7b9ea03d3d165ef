"""`write_ims`: arrays, OME-Zarr, NIfTI and Imaris files into real Imaris files, chunk by chunk.

The source is read one slab of full-resolution planes at a time. Each slab is cut into blocks
(compressed in a thread pool, written in order by the one thread that talks to HDF5 with
``write_direct_chunk``) and handed down the pyramid: every level is built from the level above
while streaming, so memory stays bounded by a few slabs whatever the size of the volume.
Histograms and the thumbnail are accumulated on the way. The file is written under a temporary
name beside the destination and renamed at the end; on any error nothing remains at the
destination.

>>> import numpy as np
>>> path = write_ims(np.zeros((8, 64, 64), np.uint16), "zeros.ims", voxel_size=(2.0, 0.5, 0.5))
>>> from ims_store import read_layout
>>> read_layout(path).levels[0].voxel_size
(2.0, 0.5, 0.5)
"""

from __future__ import annotations

import collections
import datetime as _dt
import itertools
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from .attributes import write_text
from .cluster import dask_client, worker_threads
from .codecs import encode_chunk
from .errors import ImsError
from .layout import Filter, dataset_filters
from .ngff import default_color
from .outputs import DestinationExistsError, WriteError, atomic_output, progress_bar
from .pyramid import block_shapes, downsample, halved_axes, level_sizes
from .sources import SourceImage, open_source

__all__ = [
    "DestinationExistsError",
    "HistogramAccumulator",
    "ThumbnailAccumulator",
    "WriteError",
    "histogram",
    "storage_dtype",
    "write_dataset_info",
    "write_histograms",
    "write_ims",
    "write_root_attributes",
    "write_thumbnail",
]

Compression = Literal["gzip", "lz4", "none"]
Vec3 = tuple[float, float, float]

THUMBNAIL_SIZE = 256

SLAB_BYTES = 64 * 1024 * 1024
"""Level 0 is read in slabs of about this many bytes (or one block row, if larger), however large
the source's own chunks: memory stays bounded whatever the volume and its chunking."""


# --------------------------------------------------------------------------------------------
# dtypes


def _native(dtype: np.dtype) -> np.dtype:
    """``dtype`` in this machine's byte order: ``>i2`` and ``<i2`` follow the same rule."""
    return np.dtype(dtype).newbyteorder("=")


def storage_dtype(dtype: np.dtype) -> np.dtype:
    """The type a source dtype is stored as. Imaris knows uint8, uint16, uint32 and float32.

    The rule never wraps values, whatever the byte order: ``bool`` -> uint8; int8 and int16 ->
    float32 (exact); float16 and float64 -> float32 (float64 rounds to the nearest float32;
    finite values beyond the float32 range are refused); int32, int64 and uint64 -> uint32 when
    every value is in 0..4294967295 (checked on the data as it streams), else refused.

    >>> storage_dtype(np.dtype("int16")), storage_dtype(np.dtype("bool"))
    (dtype('float32'), dtype('uint8'))
    >>> storage_dtype(np.dtype(">u2")) == np.dtype("<u2")  # big-endian uint16 is still uint16
    True
    """
    dtype = _native(dtype)
    if dtype in (np.uint8, np.uint16, np.uint32, np.float32):
        return dtype.newbyteorder("<")
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype in (np.int8, np.int16, np.float16, np.float64):
        return np.dtype("<f4")
    if dtype.kind in "iu":
        return np.dtype("<u4")
    raise WriteError(f"cannot store data of type {dtype} in an Imaris file (use uint8, uint16, uint32 or float32)")


def _check_range(values: np.ndarray, target: np.dtype, label: str) -> None:
    """Refuse values the dtype rule cannot store without wrapping or overflowing.

    Run on each slab as it streams (no pass over the whole source first): the output is written
    under a temporary name, so a refusal half-way leaves nothing behind.
    """
    source = _native(values.dtype)
    if not values.size:
        return
    if source.kind in "iu" and target.kind == "u" and not np.can_cast(source, target):
        lo, hi = values.min(), values.max()
        if lo < 0 or hi > np.iinfo(target).max:
            raise WriteError(
                f"values {lo}..{hi} of type {source} do not fit {target}, the widest integer Imaris stores; "
                "rescale or cast to float32 first",
                label,
            )
    elif source.kind == "f" and target.kind == "f" and source.itemsize > target.itemsize:
        top = np.max(np.abs(values), where=np.isfinite(values), initial=0.0)  # inf stays inf, NaN stays NaN
        if top > np.finfo(target).max:
            raise WriteError(f"values up to {top} overflow {target}, the only float type Imaris stores", label)


def _as_stored(planes: Any, target: np.dtype, label: str) -> np.ndarray:
    """A slab as the file stores it: range-checked by the dtype rule, then cast to ``target``.

    The type the slab really has decides, not the one its source declared (a source may declare
    another: nibabel scales NIfTI voxels to float64); a slab whose own type would be stored as
    something else than ``target`` is refused rather than cast into wrong values.
    """
    planes = np.asarray(planes)
    if storage_dtype(planes.dtype) != target:
        raise WriteError(
            f"the source delivered {planes.dtype} data, stored as {storage_dtype(planes.dtype)}, "
            f"where its declared type makes the file {target}",
            label,
        )
    _check_range(planes, target, label)
    return planes.astype(target, copy=False)


def _encode_block(block: np.ndarray, shape: Sequence[int], filters: Sequence[Filter], dtype: np.dtype) -> Any:
    """Compress one block after checking it holds exactly a block of ``dtype``: whatever went
    wrong upstream fails here as a `WriteError` rather than landing in the file as wrong data."""
    expected = math.prod(shape) * dtype.itemsize
    if block.dtype != dtype or block.nbytes != expected:
        raise WriteError(f"a block of {block.nbytes} bytes of {block.dtype} where {expected} bytes of {dtype} belong")
    return encode_chunk(block, filters, dtype)


# --------------------------------------------------------------------------------------------
# histograms

PART_BINS = 4096
"""uint32 and float32 parts are counted in this many bins over their own range, 4x finer than
the 1024 bins they are merged into, so that merging moves a value by at most 1/8 of a bin."""


def histogram(counts: np.ndarray | None, lo: float, hi: float, nbins: int) -> tuple[np.ndarray, float, float]:
    """Resample exact integer counts (``counts[v]`` = voxels of value v) to ``nbins`` bins over lo..hi."""
    assert counts is not None
    edges = np.linspace(lo, hi + 1, nbins + 1)
    index = np.clip(np.searchsorted(edges, np.arange(counts.size), side="right") - 1, 0, nbins - 1)
    return np.bincount(index, weights=counts, minlength=nbins).astype(np.uint64), lo, hi


def _exact(dtype: np.dtype) -> bool:
    """uint8 and uint16 histograms count every value exactly."""
    return dtype.kind == "u" and dtype.itemsize <= 2


def _finite(plane: np.ndarray) -> np.ndarray:
    """The values of ``plane`` that are neither NaN nor infinite (the plane itself when all are)."""
    if plane.dtype.kind != "f":
        return plane
    keep = np.isfinite(plane)
    return plane if keep.all() else plane[keep]


def _count(
    planes: np.ndarray, dtype: np.dtype, value_range: tuple[float, float] | None = None
) -> tuple[np.ndarray, float, float]:
    """Counts of a few planes (runs on the pool: bincount releases the GIL), with their finite
    min and max (inf and -inf when no value is finite).

    uint8 / uint16: exact counts of every value. uint32 / float32: `PART_BINS` bins over
    ``value_range``, or over the planes' own finite range.
    """
    if _exact(dtype):
        counts = np.zeros(256 if dtype.itemsize == 1 else 0, dtype=np.uint64)
        for plane in planes:  # plane by plane: bincount makes an int64 copy of its input
            part = np.bincount(plane.ravel(), minlength=counts.size)
            if part.size > counts.size:
                part[: counts.size] += counts.astype(part.dtype)
                counts = part.astype(np.uint64)
            else:
                counts[: part.size] += part.astype(np.uint64)
        return counts, float(planes.min()), float(planes.max())
    lo, hi = math.inf, -math.inf
    for plane in planes:  # plane by plane: the finite values are a copy
        values = _finite(plane)
        if values.size:
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    counts = np.zeros(PART_BINS, np.uint64)
    bins = value_range or (lo, hi)
    for plane in planes if lo <= hi else ():
        values = _finite(plane)
        if bins[1] > bins[0]:
            counts += np.histogram(values, bins=PART_BINS, range=bins)[0].astype(np.uint64)
        else:  # one value: numpy would widen the range by 0.5, which is nothing next to 1e38
            counts[0] += np.uint64(np.count_nonzero(values == bins[0]))
    return counts, lo, hi


def _rebin(parts: Sequence[tuple[np.ndarray, float, float]], lo: float, hi: float, nbins: int) -> np.ndarray:
    """Merge histograms (counts, their lo, their hi) into ``nbins`` bins over lo..hi: each bin
    goes whole to the bin that holds its centre."""
    out = np.zeros(nbins, np.uint64)
    scale = nbins / (hi - lo) if hi > lo else 0.0
    for counts, part_lo, part_hi in parts:
        centres = part_lo + (np.arange(counts.size) + 0.5) * ((part_hi - part_lo) / counts.size)
        index = np.clip(np.floor((centres - lo) * scale), 0, nbins - 1).astype(np.intp)
        np.add.at(out, index, counts)
    return out


@dataclass
class HistogramAccumulator:
    """Counts of one (level, time point, channel), accumulated part by part on the worker pool.

    uint8 and uint16 are counted exactly. Each uint32 / float32 part is counted in `PART_BINS`
    bins over its own finite range (over ``value_range`` when the data's range is known
    beforehand); `tables` merges the parts into 1024 bins over the finite range of them all, each
    part's bin going whole to the bin that holds its centre. NaN and infinities are not counted.
    """

    dtype: np.dtype
    value_range: tuple[float, float] | None = None
    """The range of the data when known beforehand: every part is counted over it."""
    parts: collections.deque[Future] = field(default_factory=collections.deque)
    counts: np.ndarray | None = None
    """Exact counts so far (uint8 / uint16)."""
    binned: list[tuple[np.ndarray, float, float]] = field(default_factory=list)
    """Parts counted so far (uint32 / float32): counts over (lo, hi)."""
    vmin: float = math.inf
    vmax: float = -math.inf

    def add(self, planes: np.ndarray, pool: ThreadPoolExecutor | None = None) -> None:
        """Count ``planes`` on ``pool`` (or right here without one)."""
        if not planes.size:
            return
        if pool is None:
            self.add_counted(_count(planes, self.dtype, self.value_range))
        else:
            self.parts.append(pool.submit(_count, planes, self.dtype, self.value_range))
            self._gather(done_only=True)  # fold what is ready: parts do not pile up over a long stack

    def add_counted(self, part: tuple[np.ndarray, float, float]) -> None:
        """Counts made elsewhere (a dask.distributed worker) by the same rule as `add`."""
        done: Future = Future()
        done.set_result(part)
        self.parts.append(done)

    def _gather(self, done_only: bool = False) -> None:
        # in order, so that uint32 / float32 parts merge the same way however they were computed
        while self.parts and (not done_only or self.parts[0].done()):
            counts, lo, hi = self.parts.popleft().result()
            if lo > hi:
                continue  # no finite value
            self.vmin, self.vmax = min(self.vmin, lo), max(self.vmax, hi)
            if not _exact(self.dtype):
                self.binned.append((counts, *(self.value_range or (lo, hi))))
                continue
            if self.counts is None or counts.size > self.counts.size:
                counts, self.counts = self.counts, counts
            if counts is not None:
                self.counts[: counts.size] += counts

    def display_range(self) -> tuple[float, float]:
        """The finite min and max of everything counted ((0, 1) when nothing was): a default
        ``ColorRange``."""
        self._gather()
        return (self.vmin, self.vmax) if self.vmin <= self.vmax else (0.0, 1.0)

    def tables(self) -> dict[str, tuple[np.ndarray, float, float]]:
        """``{"Histogram": (counts, min, max), "Histogram1024": ...}`` as Imaris stores them."""
        self._gather()
        counts = self.counts if self.counts is not None else np.zeros(1, np.uint64)
        if self.dtype == np.uint8:
            return {"Histogram": (np.pad(counts, (0, 256 - counts.size))[:256].astype(np.uint64), 0.0, 255.0)}
        if self.dtype == np.uint16:
            # values 0..max (at least 256) counted exactly, then resampled as ImarisWriter does
            top = max(int(self.vmax) if math.isfinite(self.vmax) else 0, 256)
            exact = np.pad(counts, (0, top + 1 - counts.size))[: top + 1]
            factor = -(-exact.size // 1024)
            coarse = np.add.reduceat(exact, np.arange(0, exact.size, factor)).astype(np.uint64)
            return {
                "Histogram1024": (coarse, 0.0, float(top)),
                "Histogram": histogram(exact, 0.0, float(top), 256),
            }
        if self.value_range is not None:
            lo, hi = self.value_range
        else:
            lo, hi = (self.vmin, self.vmax) if self.vmin <= self.vmax else (0.0, 0.0)
        fine = _rebin(self.binned, lo, hi, 1024)
        return {
            "Histogram1024": (fine, lo, hi),
            "Histogram": (fine.reshape(256, 4).sum(axis=1).astype(np.uint64), lo, hi),
        }


# --------------------------------------------------------------------------------------------
# the plan of a file


@dataclass
class _Plan:
    source: SourceImage
    dtype: np.dtype
    sizes: list[tuple[int, int, int]]
    blocks: list[tuple[int, int, int]]
    voxel_size: Vec3
    extent_min: Vec3
    unit: str
    channel_names: list[str]
    channel_colors: list[tuple[float, float, float]]
    channel_ranges: list[tuple[float, float]] | None
    time_stamps: list[_dt.datetime]
    recording_date: _dt.datetime
    create_args: dict[str, Any]

    @property
    def timepoints(self) -> int:
        return int(self.source.data.shape[0])

    @property
    def channels(self) -> int:
        return int(self.source.data.shape[1])


def _create_args(compression: Compression, level: int, shuffle: bool) -> dict[str, Any]:
    if compression == "gzip":
        if not 0 <= level <= 9:
            raise WriteError(f"gzip compression_level must be 0..9, not {level}")
        return {"compression": "gzip", "compression_opts": level, "shuffle": shuffle}
    if compression == "lz4":
        import hdf5plugin

        return {**dict(hdf5plugin.LZ4()), "shuffle": shuffle}
    if compression == "none":
        return {}
    raise WriteError(f"compression must be 'gzip', 'lz4' or 'none', not {compression!r}")


def _plan(
    src: SourceImage,
    *,
    compression: Compression,
    compression_level: int,
    shuffle: bool | None,
    chunks: Sequence[int] | None,
) -> _Plan:
    data = src.data
    if data.ndim != 5 or any(s == 0 for s in data.shape):
        raise WriteError(f"the image has shape {tuple(data.shape)}; every axis needs at least one element", src.label)
    dtype = storage_dtype(data.dtype)  # values are checked against it slab by slab, as they stream
    size = tuple(int(s) for s in data.shape[2:])
    sizes = level_sizes(size, dtype.itemsize)
    if chunks is not None:
        block = tuple(int(c) for c in chunks)
        if len(block) != 3 or any(c <= 0 for c in block):
            raise WriteError(f"chunks must be 3 positive sizes (z, y, x), not {chunks!r}")
        blocks = [block] * len(sizes)
    else:
        blocks = block_shapes(sizes, dtype.itemsize, int(data.shape[0]))
    if shuffle is None:
        shuffle = dtype.kind == "u" and dtype.itemsize in (2, 4)  # as ImarisWriter: multi-byte integers
    voxel = src.voxel_size or (1.0, 1.0, 1.0)
    if any(not (math.isfinite(v) and v > 0) for v in voxel):
        raise WriteError(f"voxel sizes must be positive, got {voxel} (z, y, x)", src.label)
    origin = src.origin or tuple(v / 2 for v in voxel)
    channels = int(data.shape[1])
    names = list(src.channel_names or [f"Channel {i}" for i in range(channels)])
    colors = list(src.channel_colors or [default_color(i, channels) for i in range(channels)])
    for what, values in (("channel_names", names), ("channel_colors", colors)):
        if len(values) != channels:
            raise WriteError(f"{what} has {len(values)} entries for {channels} channels", src.label)
    ranges = list(src.channel_ranges) if src.channel_ranges else None
    if ranges is not None and len(ranges) != channels:
        raise WriteError(f"channel ranges have {len(ranges)} entries for {channels} channels", src.label)
    now = _dt.datetime.now().replace(microsecond=0)
    recording = src.recording_date or (src.time_stamps[0] if src.time_stamps else now)
    stamps = list(src.time_stamps or [recording + _dt.timedelta(seconds=i) for i in range(int(data.shape[0]))])
    if len(stamps) != data.shape[0]:
        raise WriteError(f"{len(stamps)} time stamps for {data.shape[0]} time points", src.label)
    return _Plan(
        source=src,
        dtype=dtype,
        sizes=sizes,
        blocks=blocks,
        voxel_size=voxel,  # type: ignore[arg-type]
        extent_min=tuple(o - v / 2 for o, v in zip(origin, voxel, strict=True)),  # type: ignore[arg-type]
        unit=src.unit or "um",
        channel_names=names,
        channel_colors=colors,
        channel_ranges=ranges,
        time_stamps=stamps,
        recording_date=recording,
        create_args=_create_args(compression, compression_level, bool(shuffle)),
    )


# --------------------------------------------------------------------------------------------
# streaming one (time point, channel) through the pyramid


class _ChunkSink:
    """Compresses blocks in a pool and writes them in order with ``write_direct_chunk``."""

    def __init__(self, workers: int, progress: Any) -> None:
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="ims-store-encode")
        self._pending: collections.deque[tuple[h5py.Dataset, tuple[int, int, int], Future]] = collections.deque()
        self._limit = 4 * max(1, workers)  # bounds the compressed bytes in flight
        self._progress = progress

    def submit(
        self,
        dataset: h5py.Dataset,
        offset: tuple[int, int, int],
        block: np.ndarray,
        shape: tuple[int, int, int],
        filters: tuple[Filter, ...],
        dtype: np.dtype,
    ) -> None:
        future = self.pool.submit(_encode_block, block, shape, filters, dtype)
        self._pending.append((dataset, offset, future))
        while len(self._pending) > self._limit:
            self._write_one()

    def put(self, dataset: h5py.Dataset, offset: tuple[int, int, int], payload: bytes) -> None:
        """A block compressed elsewhere (a dask.distributed worker), written in turn."""
        done: Future = Future()
        done.set_result(payload)
        self._pending.append((dataset, offset, done))
        while len(self._pending) > self._limit:
            self._write_one()

    def _write_one(self) -> None:
        dataset, offset, future = self._pending.popleft()
        dataset.id.write_direct_chunk(offset, bytes(memoryview(future.result())))
        if self._progress is not None:
            self._progress.update(1)

    def flush(self) -> None:
        while self._pending:
            self._write_one()

    def close(self) -> None:
        for _, _, future in self._pending:
            future.cancel()
        self._pending.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Level:
    size: tuple[int, int, int]
    block: tuple[int, int, int]
    dataset: h5py.Dataset
    filters: tuple[Filter, ...]
    halve_next: tuple[bool, bool, bool] | None
    histogram: HistogramAccumulator
    pending: list[np.ndarray] = field(default_factory=list)
    pending_planes: int = 0
    written_planes: int = 0
    carry: np.ndarray | None = None


class _Stream:
    """Pushes planes of one (time point, channel) through every level of the pyramid."""

    def __init__(
        self, levels: list[_Level], sink: _ChunkSink, dtype: np.dtype, thumb: ThumbnailAccumulator | None
    ) -> None:
        self.levels, self.sink, self.dtype, self.thumb = levels, sink, dtype, thumb

    def push(self, index: int, planes: np.ndarray) -> None:
        level = self.levels[index]
        if self.thumb is not None and index == self.thumb.level:
            self.thumb.add(planes)
        level.pending.append(planes)
        level.pending_planes += planes.shape[0]
        while level.pending_planes >= level.block[0]:
            self._write_row(level, self._take(level, level.block[0]))
        if level.halve_next is not None:
            if level.carry is not None:
                planes = np.concatenate([level.carry, planes])
                level.carry = None
            usable = planes.shape[0] - planes.shape[0] % 2 if level.halve_next[0] else planes.shape[0]
            if usable < planes.shape[0]:
                level.carry = planes[usable:]
            if usable:
                self.push(index + 1, downsample(planes[:usable], level.halve_next))

    def push_encoded(self, slab: _EncodedSlab) -> None:
        """Level 0 of a slab as a worker made it (`_encode_slab`); the levels below go on here."""
        level = self.levels[0]
        for offset, payload in slab.blocks:
            self.sink.put(level.dataset, offset, payload)
        for counts in slab.counts:
            level.histogram.add_counted(counts)
        if slab.mip is not None and self.thumb is not None:
            self.thumb.add_mip(slab.mip)
        if slab.below is not None and slab.below.shape[0]:
            self.push(1, slab.below)

    @staticmethod
    def _take(level: _Level, count: int) -> np.ndarray:
        rows = np.concatenate(level.pending) if len(level.pending) > 1 else level.pending[0]
        taken, rest = rows[:count], rows[count:]
        level.pending = [rest] if rest.shape[0] else []
        level.pending_planes = rest.shape[0]
        return taken

    def _write_row(self, level: _Level, planes: np.ndarray) -> None:
        # counted by block row, whatever the slabs were: histograms merge the same parts in the same
        # order on the local and the dask.distributed path (`_encode_slab`), to the last bit
        level.histogram.add(planes, self.sink.pool)
        for (y0, x0), block in _row_blocks(planes, level.size, level.block):
            offset = (level.written_planes, y0, x0)
            self.sink.submit(level.dataset, offset, block, level.block, level.filters, self.dtype)
        level.written_planes += level.block[0]

    def finish(self) -> None:
        for level in self.levels:
            if level.pending_planes:
                self._write_row(level, self._take(level, level.pending_planes))


def _row_blocks(
    planes: np.ndarray, size: tuple[int, int, int], block: tuple[int, int, int]
) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """The (y, x) offsets and contiguous blocks of one row of blocks (at most ``block[0]`` planes),
    zero-padded to whole blocks."""
    bz, by, bx = block
    _, y, x = size
    gy, gx = -(-y // by), -(-x // bx)
    if planes.shape == (bz, gy * by, gx * bx):
        row = planes  # nothing to pad
    else:
        row = np.zeros((bz, gy * by, gx * bx), dtype=planes.dtype)  # zero padding to whole blocks
        row[: planes.shape[0], :y, :x] = planes
    for iy in range(gy):
        for ix in range(gx):
            yield (iy * by, ix * bx), np.ascontiguousarray(row[:, iy * by : (iy + 1) * by, ix * bx : (ix + 1) * bx])


# --------------------------------------------------------------------------------------------
# level 0 on dask.distributed workers


@dataclass
class _EncodedSlab:
    """What a worker returns for one slab of level 0: little next to the slab itself."""

    blocks: list[tuple[tuple[int, int, int], bytes]]
    counts: list[tuple[np.ndarray, float, float]]
    """histogram counts of each block row, as `_Stream` counts them"""
    below: np.ndarray | None
    """the slab downsampled for level 1 (a quarter or an eighth of it)"""
    mip: np.ndarray | None


def _encode_slab(
    planes: np.ndarray,
    z0: int,
    size: tuple[int, int, int],
    block: tuple[int, int, int],
    filters: tuple[Filter, ...],
    dtype: np.dtype,
    halve: tuple[bool, bool, bool] | None,
    mip: bool,
    label: str,
) -> _EncodedSlab:
    """Level 0's work on one slab of whole block rows, run on a worker next to the data it read."""
    planes = np.ascontiguousarray(_as_stored(planes, dtype, label))
    blocks, counts = [], []
    for r in range(0, planes.shape[0], block[0]):
        row = planes[r : r + block[0]]
        counts.append(_count(row, dtype))
        for (y0, x0), data in _row_blocks(row, size, block):
            payload = bytes(memoryview(_encode_block(data, block, filters, dtype)))
            blocks.append(((z0 + r, y0, x0), payload))
    return _EncodedSlab(
        blocks=blocks,
        counts=counts,
        below=downsample(planes, halve) if halve is not None else None,
        mip=_mip(planes) if mip else None,
    )


def _distributed_level0(client: Any, data: Any, t: int, c: int, stream: _Stream, window: int, label: str) -> None:
    """Push one (time point, channel) through ``stream`` with level 0 read and compressed on the
    workers of ``client``; at most ``window`` slabs are in flight, and they are taken in order."""
    level = stream.levels[0]
    depth = level.size[0]
    step = level.block[0]
    if step % 2 and level.halve_next is not None and level.halve_next[0]:
        step *= 2  # even slabs: no plane is carried from one slab to the next when z halves
    bounds = iter([(z0, min(z0 + step, depth)) for z0 in range(0, depth, step)])
    mip = stream.thumb is not None and stream.thumb.level == 0

    def submit(z0: int, z1: int) -> Any:
        slab = client.compute(data[t, c, z0:z1])  # read on a worker (just these planes); stays there
        args = (z0, level.size, level.block, level.filters, stream.dtype, level.halve_next, mip, label)
        return client.submit(_encode_slab, slab, *args, pure=False)

    pending = collections.deque(submit(*b) for b in itertools.islice(bounds, window))
    while pending:
        slab = pending.popleft().result()
        following = next(bounds, None)
        if following is not None:
            pending.append(submit(*following))
        stream.push_encoded(slab)


def _mip(planes: np.ndarray) -> np.ndarray:
    """Maximum projection along z; NaN only where a pixel has no other value."""
    return np.fmax.reduce(planes, axis=0) if planes.dtype.kind == "f" else planes.max(axis=0)


@dataclass
class ThumbnailAccumulator:
    """Maximum projection along z of one level, per channel, for ``Thumbnail/Data``."""

    level: int
    mips: dict[int, np.ndarray] = field(default_factory=dict)
    channel: int = 0

    def add(self, planes: np.ndarray) -> None:
        self.add_mip(_mip(planes))

    def add_mip(self, mip: np.ndarray) -> None:
        """A maximum projection of some planes of the current channel."""
        current = self.mips.get(self.channel)
        self.mips[self.channel] = mip if current is None else np.fmax(current, mip)

    def rgba(self, colors: Sequence[tuple[float, float, float]], ranges: Sequence[tuple[float, float]]) -> np.ndarray:
        """Channels blended by maximum, each scaled by its display range (no wrapping), longest side 256.

        Sampled as ImarisWriter samples it (pixel i shows source pixel ``i * size // thumbnail
        size``), so a small image is enlarged by nearest neighbour; NaN shows as black, +inf as
        full intensity.
        """
        first = next(iter(self.mips.values()))
        h, w = first.shape
        scale = THUMBNAIL_SIZE / max(h, w)
        th, tw = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
        rows, cols = np.arange(th) * h // th, np.arange(tw) * w // tw
        rgb = np.zeros((th, tw, 3), np.float64)
        for c, mip in self.mips.items():
            lo, hi = ranges[c]
            small = mip[np.ix_(rows, cols)].astype(np.float64)
            level = np.nan_to_num((small - lo) / (hi - lo if hi > lo else 1.0), nan=0.0, posinf=1.0, neginf=0.0)
            rgb = np.maximum(rgb, np.clip(level, 0.0, 1.0)[..., None] * np.asarray(colors[c], np.float64))
        out = np.empty((th, tw, 4), np.uint8)
        out[..., :3] = np.rint(rgb * 255)
        out[..., 3] = 255
        return out.reshape(th, tw * 4)


# --------------------------------------------------------------------------------------------
# metadata


def _number(value: float) -> str:
    """Full precision, no exponent: ``0.0004`` stays ``0.0004`` (Imaris parses plain decimals)."""
    return np.format_float_positional(float(value), trim="-")


def _stamp(value: _dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def write_root_attributes(f: h5py.File) -> None:
    """The root attributes every Imaris file has."""
    for key, value in (
        ("DataSetDirectoryName", "DataSet"),
        ("DataSetInfoDirectoryName", "DataSetInfo"),
        ("ImarisDataSet", "ImarisDataSet"),
        ("ImarisVersion", "5.5.0"),
        ("ThumbnailDirectoryName", "Thumbnail"),
    ):
        write_text(f, key, value)
    f.attrs.create("NumberOfDataSets", np.array([1], dtype=np.uint32))


def write_dataset_info(
    f: h5py.File,
    *,
    size: Sequence[int],
    extent_min: Sequence[float],
    extent_max: Sequence[float],
    unit: str,
    channel_names: Sequence[str],
    channel_colors: Sequence[tuple[float, float, float]],
    channel_ranges: Sequence[tuple[float, float]],
    time_stamps: Sequence[_dt.datetime],
    recording_date: _dt.datetime,
    name: str = "",
    description: str = "",
    channel_numbers: Sequence[int] | None = None,
    timepoint_numbers: Sequence[int] | None = None,
) -> None:
    """``DataSetInfo``: Image, Channel N, TimeInfo and the creator groups. Spatial tuples (z, y, x).

    ``channel_numbers`` / ``timepoint_numbers`` are the N of the ``Channel N`` / ``TimePoint N``
    data groups (default 0, 1, ...); ``TimeInfo`` numbers its stamps from 1.
    """
    channel_numbers = list(channel_numbers) if channel_numbers is not None else list(range(len(channel_names)))
    timepoint_numbers = list(timepoint_numbers) if timepoint_numbers is not None else list(range(len(time_stamps)))
    info = f.require_group("DataSetInfo")
    image = info.require_group("Image")
    z, y, x = (int(s) for s in size)
    for key, value in (("X", x), ("Y", y), ("Z", z), ("Noc", len(channel_names))):
        write_text(image, key, str(value))
    for axis, i in (("0", 2), ("1", 1), ("2", 0)):
        write_text(image, f"ExtMin{axis}", _number(extent_min[i]))
        write_text(image, f"ExtMax{axis}", _number(extent_max[i]))
    write_text(image, "Unit", unit)
    write_text(image, "Name", name)
    write_text(image, "Description", description)
    write_text(image, "RecordingDate", _stamp(recording_date))
    for c, channel_name in enumerate(channel_names):
        ch = info.require_group(f"Channel {channel_numbers[c]}")
        write_text(ch, "Name", channel_name)
        write_text(ch, "Description", "")
        write_text(ch, "Color", " ".join(f"{v:.3f}" for v in channel_colors[c]))
        write_text(ch, "ColorMode", "BaseColor")
        write_text(ch, "ColorOpacity", "1.000")
        write_text(ch, "GammaCorrection", "1.000")
        lo, hi = channel_ranges[c]
        write_text(ch, "ColorRange", f"{_number(lo)} {_number(hi)}")
    time_info = info.require_group("TimeInfo")
    write_text(time_info, "DatasetTimePoints", str(len(time_stamps)))
    write_text(time_info, "FileTimePoints", str(len(time_stamps)))
    for number, stamp in zip(timepoint_numbers, time_stamps, strict=True):
        write_text(time_info, f"TimePoint{number + 1}", _stamp(stamp))
    creator = info.require_group("ImarisDataSet")
    for key, value in (("Creator", "ims_store"), ("NumberOfImages", "1"), ("Version", "5.5")):
        write_text(creator, key, value)
    imaris = info.require_group("Imaris")
    for key, value in (("ThumbnailMode", "thumbnailMIP"), ("ThumbnailSize", str(THUMBNAIL_SIZE)), ("Version", "5.5")):
        write_text(imaris, key, value)
    write_text(info.require_group("Log"), "Entries", "0")


def write_thumbnail(f: h5py.File, rgba: np.ndarray) -> None:
    """``Thumbnail/Data``: uint8, shape (h, 4 * w), interleaved RGBA."""
    f.require_group("Thumbnail").create_dataset("Data", data=np.ascontiguousarray(rgba, dtype=np.uint8))


def write_histograms(group: h5py.Group, hist: HistogramAccumulator) -> None:
    """``Histogram`` (and ``Histogram1024``) datasets with their Min/Max attributes on a channel group.

    Integer bounds as ImarisWriter prints them (``"255.000"``); float bounds at full precision, as
    3 decimals would turn a range of 0..0.0004 into 0.000..0.000.
    """
    text = _number if np.dtype(hist.dtype).kind == "f" else "{:.3f}".format
    for name, (counts, lo, hi) in hist.tables().items():
        group.create_dataset(name, data=counts.astype(np.uint64))
        suffix = "1024" if name.endswith("1024") else ""
        write_text(group, f"HistogramMin{suffix}", text(lo))
        write_text(group, f"HistogramMax{suffix}", text(hi))


# --------------------------------------------------------------------------------------------
# the public function


def write_ims(
    source: Any,
    path: str | os.PathLike[str],
    *,
    axes: str | None = None,
    voxel_size: Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
    unit: str | None = None,
    channel_names: Sequence[str] | None = None,
    channel_colors: Sequence[tuple[float, float, float]] | None = None,
    time_stamps: Sequence[Any] | None = None,
    compression: Compression = "gzip",
    compression_level: int = 2,
    shuffle: bool | None = None,
    chunks: Sequence[int] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    workers: int | None = None,
    client: Any = None,
) -> Path:
    """Write ``source`` as an Imaris file at ``path`` and return the path.

    ``source``: a numpy or dask array (with ``axes``, e.g. ``"zyx"``, ``"czyx"``, ``"tczyx"``),
    an OME-Zarr image (path, URL or zarr group), a NIfTI file, or an ``.ims`` file / `ImsStore`.
    Spatial tuples are (z, y, x); ``origin`` is the centre of the first voxel (as in OME-NGFF and
    NIfTI), so the file's ExtMin is ``origin - voxel_size / 2``. Given metadata overrides what
    the source carries. The file gets the full pyramid (Imaris' rule), per-level histograms and a
    thumbnail; blocks are compressed on ``workers`` threads (default: all cores).

    ``client`` (a ``dask.distributed.Client`` or a scheduler address) moves the heavy part onto
    a cluster: the workers read the source and compress level 0, slab by slab; this process
    writes their blocks in order (HDF5 has one writer) and builds the smaller levels.

    >>> import numpy as np
    >>> stack = np.random.default_rng(0).integers(0, 4000, (2, 20, 300, 200), dtype=np.uint16)
    >>> out = write_ims(stack, "stack.ims", axes="czyx", voxel_size=(1.0, 0.2, 0.2),
    ...                 channel_names=["DAPI", "GFP"])
    >>> from ims_store import read_layout
    >>> [lvl.size for lvl in read_layout(out).levels]
    [(20, 300, 200), (20, 150, 100)]
    """
    path = Path(path)
    if not overwrite and (path.exists() or path.is_symlink()):  # before any reading, however long
        raise DestinationExistsError("exists already; pass overwrite=True to replace it", path)
    src = open_source(
        source,
        axes=axes,
        voxel_size=voxel_size,
        origin=origin,
        unit=unit,
        channel_names=channel_names,
        channel_colors=channel_colors,
        time_stamps=time_stamps,
    )
    with dask_client(client) as cluster:
        plan = _plan(src, compression=compression, compression_level=compression_level, shuffle=shuffle, chunks=chunks)
        _write_file(plan, path, overwrite, workers or os.cpu_count() or 1, progress, cluster)
    return path


def _write_file(plan: _Plan, path: Path, overwrite: bool, workers: int, progress: bool, client: Any) -> None:
    with atomic_output(path, overwrite) as tmp:
        try:
            _write(plan, tmp, workers, progress, path.name, client)
        except ImsError:
            raise
        except (OSError, ValueError, RuntimeError, TypeError) as err:
            raise WriteError(f"writing failed: {err}", path) from err


def _slabs(z_chunks: Sequence[int], minimum: int, maximum: int) -> list[tuple[int, int]]:
    """(start, stop) of the z slabs level 0 is read in.

    Small source chunks are merged whole until a slab has at least ``minimum`` planes (one
    block row), so that no source chunk is read twice; a slab stays within ``maximum`` planes,
    so a source chunk larger than that is read in sub-ranges of ``maximum`` planes.

    >>> _slabs([4, 4, 4, 100], minimum=8, maximum=32)
    [(0, 8), (8, 12), (12, 44), (44, 76), (76, 108), (108, 112)]
    """
    bounds, start, stop = [], 0, 0
    for size in (int(s) for s in z_chunks):
        if stop > start and (size > maximum or stop + size - start > maximum):
            bounds.append((start, stop))  # what is open stays whole, however short
            start = stop
        stop += size
        while stop - start > maximum:
            bounds.append((start, start + maximum))
            start += maximum
        if stop - start >= minimum:
            bounds.append((start, stop))
            start = stop
    if stop > start:
        bounds.append((start, stop))
    return bounds


def _slab_planes(plan: _Plan) -> tuple[int, int]:
    """(minimum, maximum) planes of a level-0 slab: one block row, and about `SLAB_BYTES` of the
    source (in whole block rows; one block row if that is larger)."""
    z_block = plan.blocks[0][0]
    _, y, x = plan.sizes[0]
    plane = y * x * max(np.dtype(plan.source.data.dtype).itemsize, plan.dtype.itemsize)
    return z_block, max(1, SLAB_BYTES // plane // z_block) * z_block


def _local_level0(plan: _Plan, data: Any, t: int, c: int, stream: _Stream, label: str) -> None:
    """Push one (time point, channel) of the source through ``stream``, slab by slab."""
    for z0, z1 in _slabs(data.chunks[2], *_slab_planes(plan)):
        # one indexing step: dask then reads just these planes from an array-like source (a nested
        # data[t, c][z0:z1] would read its whole chunk)
        stream.push(0, _as_stored(data[t, c, z0:z1].compute(), plan.dtype, label))


def _write(plan: _Plan, tmp: Path, workers: int, progress: bool, label: str, client: Any) -> None:
    data = plan.source.data
    if client is not None and plan.source.in_memory:
        with warnings.catch_warnings():  # large by design: the array goes to the workers once, not with every slab
            warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
            data = client.persist(data)
    T, C = plan.timepoints, plan.channels
    n_levels = len(plan.sizes)
    grids = [
        [-(-s // b) for s, b in zip(size, block, strict=True)]
        for size, block in zip(plan.sizes, plan.blocks, strict=True)
    ]
    total = T * C * sum(int(np.prod(g)) for g in grids)
    # the thumbnail comes from the smallest level still at least 256 wide (cheap, yet sharp)
    thumb_level = max([i for i, s in enumerate(plan.sizes) if max(s[1:]) >= THUMBNAIL_SIZE] or [0])
    bar = progress_bar(progress, total, f"writing {label}")
    sink = _ChunkSink(workers, bar)
    thumb = ThumbnailAccumulator(thumb_level)
    ranges_seen: dict[int, tuple[float, float]] = {}
    try:
        with h5py.File(tmp, "w") as f:
            write_root_attributes(f)
            root = f.create_group("DataSet")
            for t in range(T):
                for c in range(C):
                    levels = []
                    for index, (size, block) in enumerate(zip(plan.sizes, plan.blocks, strict=True)):
                        group = root.require_group(f"ResolutionLevel {index}/TimePoint {t}/Channel {c}")
                        for key, value in zip(("ImageSizeZ", "ImageSizeY", "ImageSizeX"), size, strict=True):
                            write_text(group, key, str(value))
                        stored = tuple(g * b for g, b in zip(grids[index], block, strict=True))
                        dataset = group.create_dataset(
                            "Data", shape=stored, dtype=plan.dtype, chunks=block, fillvalue=0, **plan.create_args
                        )
                        levels.append(
                            _Level(
                                size=size,
                                block=block,
                                dataset=dataset,
                                filters=dataset_filters(dataset),
                                halve_next=halved_axes(size) if index + 1 < n_levels else None,
                                histogram=HistogramAccumulator(plan.dtype),
                            )
                        )
                    thumb.channel = c
                    stream = _Stream(levels, sink, plan.dtype, thumb if t == 0 else None)
                    if client is not None:
                        _distributed_level0(client, data, t, c, stream, 2 * worker_threads(client), label)
                    else:
                        _local_level0(plan, data, t, c, stream, label)
                    stream.finish()
                    sink.flush()
                    for index, level in enumerate(levels):
                        write_histograms(root[f"ResolutionLevel {index}/TimePoint {t}/Channel {c}"], level.histogram)
                    if t == 0:
                        ranges_seen[c] = levels[0].histogram.display_range()
            ranges = plan.channel_ranges or [ranges_seen[c] for c in range(C)]
            z, y, x = plan.sizes[0]
            extent_max = tuple(lo + v * n for lo, v, n in zip(plan.extent_min, plan.voxel_size, (z, y, x), strict=True))
            write_dataset_info(
                f,
                size=plan.sizes[0],
                extent_min=plan.extent_min,
                extent_max=extent_max,
                unit=plan.unit,
                channel_names=plan.channel_names,
                channel_colors=plan.channel_colors,
                channel_ranges=ranges,
                time_stamps=plan.time_stamps,
                recording_date=plan.recording_date,
                name=plan.source.name or Path(label).stem,  # Imaris names an image after its file
                description=plan.source.description or "",
            )
            write_thumbnail(f, thumb.rgba(plan.channel_colors, ranges))
    finally:
        sink.close()
        if bar is not None:
            bar.close()
