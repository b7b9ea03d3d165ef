"""The dask.distributed path: level 0 read, checked, counted and compressed on cluster workers.

Each worker reads one slab of whole block rows next to where the data lives and returns an
`_EncodedSlab` (compressed blocks, histogram counts, the slab downsampled for level 1, its
maximum projection); this process writes the blocks in order and streams the smaller levels.
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..format.layout import Filter
from ..format.pyramid import downsample
from .histogram import _count
from .plan import as_stored
from .sink import _encode_block
from .stream import _row_blocks, _Stream
from .thumbnail import _mip


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
    planes = np.ascontiguousarray(as_stored(planes, dtype, label))
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
