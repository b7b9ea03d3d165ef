"""The streaming pyramid: planes of one (time point, channel) pushed through every level.

`PyramidStream` takes level 0 slab by slab (z planes), cuts each level into rows of blocks for the
chunk sink, counts their histograms, feeds the thumbnail and builds the next level from the
planes as they pass (`downsample`), so no level is ever held whole.

The calling thread only cuts and hands out work: blocks are copied out and compressed, rows
counted and planes downsampled (in pieces, side by side) on the sink's pool, while it writes
finished blocks to HDF5. It waits for each downsampled slab before going on, so that blocks
reach the file in the same order, and the file is the same to the byte, whatever the threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import h5py
import numpy as np

from ..format.layout import Filter
from ..format.pyramid import downsample
from .histogram import HistogramAccumulator
from .sink import ChunkSink
from .thumbnail import ThumbnailAccumulator

# --------------------------------------------------------------------------------------------
# streaming one (time point, channel) through the pyramid


@dataclass
class EncodedSlab:
    """What a worker returns for one slab of level 0 (see `cluster_level0`), which
    `PyramidStream.push_encoded` takes: little next to the slab itself."""

    blocks: list[tuple[tuple[int, int, int], bytes]]
    counts: list[tuple[np.ndarray, float, float]]
    """histogram counts of each block row, as `PyramidStream` counts them"""
    below: np.ndarray | None
    """the slab downsampled for level 1 (a quarter or an eighth of it)"""
    mip: np.ndarray | None


@dataclass
class StreamLevel:
    """One level of the streaming pyramid: its dataset, block shape, histogram and the planes
    waiting for a whole row of blocks."""

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


class PyramidStream:
    """Pushes planes of one (time point, channel) through every level of the pyramid."""

    def __init__(
        self, levels: list[StreamLevel], sink: ChunkSink, dtype: np.dtype, thumb: ThumbnailAccumulator | None
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
                self.push(index + 1, self._downsample(planes[:usable], level.halve_next))

    def _downsample(self, planes: np.ndarray, halve: tuple[bool, bool, bool]) -> np.ndarray:
        """`downsample` on the pool, in as many pieces as it has threads (of whole pairs of
        planes where z halves: each piece downsamples alone to the same planes as the whole)."""
        pair = 2 if halve[0] else 1
        step = pair * max(1, -(-planes.shape[0] // (pair * self.sink.workers)))
        pieces = [planes[z : z + step] for z in range(0, planes.shape[0], step)]
        if len(pieces) == 1:
            return self.sink.pool.submit(downsample, planes, halve).result()
        return np.concatenate(list(self.sink.pool.map(downsample, pieces, [halve] * len(pieces))))

    def push_encoded(self, slab: EncodedSlab) -> None:
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
    def _take(level: StreamLevel, count: int) -> np.ndarray:
        rows = np.concatenate(level.pending) if len(level.pending) > 1 else level.pending[0]
        taken, rest = rows[:count], rows[count:]
        level.pending = [rest] if rest.shape[0] else []
        level.pending_planes = rest.shape[0]
        return taken

    def _write_row(self, level: StreamLevel, planes: np.ndarray) -> None:
        # counted by block row, whatever the slabs were: histograms merge the same parts in the same
        # order on the local and the dask.distributed path (`_encode_slab`), to the last bit
        level.histogram.add(planes, self.sink.pool)
        for (y0, x0), block in row_blocks(planes, level.size, level.block):
            offset = (level.written_planes, y0, x0)
            self.sink.submit(level.dataset, offset, block, level.block, level.filters, self.dtype)
        level.written_planes += level.block[0]

    def finish(self) -> None:
        for level in self.levels:
            if level.pending_planes:
                self._write_row(level, self._take(level, level.pending_planes))


def row_blocks(
    planes: np.ndarray, size: tuple[int, int, int], block: tuple[int, int, int]
) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """The (y, x) offsets and blocks of one row of blocks (at most ``block[0]`` planes), zero-padded
    to whole blocks: views of the row, which the encoder copies out (`encode_block`)."""
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
            yield (iy * by, ix * bx), row[:, iy * by : (iy + 1) * by, ix * bx : (ix + 1) * bx]
