"""How a level's HDF5 chunks are served as zarr chunks: one to one, or grouped.

Files with small HDF5 chunks are common: ZarrNii writes 8x64x64 (64 KiB), Imaris 7 wrote
1x64x64 planes for small images, and the low levels of every pyramid are small. Read one HDF5
chunk per zarr chunk, such a file costs zarr (and dask, and an HTTP viewer) its whole per-chunk
overhead thousands of times over: slower than h5py. So the decoded store serves zarr chunks that
each group whole, adjacent HDF5 chunks of a plane, aligned to the HDF5 grid, of at least
`MIN_CHUNK_BYTES` decoded where the planes are that large; a level whose chunks are that large
already is served one to one, as before.

>>> from ims_store.store.tiling import group_factors
>>> group_factors((8, 64, 64), (16, 16, 16), itemsize=2)  # ZarrNii's 64 KiB chunks, 128x1024x1024
(1, 4, 4)
>>> group_factors((16, 256, 256), (8, 4, 4), itemsize=2)  # Imaris' own 2 MiB chunks: as they are
(1, 1, 1)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ..format.layout import Level

__all__ = ["DASK_CHUNK_BYTES", "MIN_CHUNK_BYTES", "Tiling", "group_factors", "tiling"]

Shape3 = tuple[int, int, int]

#: the smallest zarr chunk the decoded store serves, where the HDF5 chunks allow (1 MiB: the
#: size of Imaris' own 32x128x128 uint16 blocks, which readers already handle well; grouping
#: stops below twice that, so a served chunk stays a cheap unit of work for a viewer)
MIN_CHUNK_BYTES = 1 << 20

#: the smallest dask chunk `ImsStore.to_dask` makes, where the HDF5 chunks allow: dask's
#: scheduler costs about as much per task as decoding a few hundred KiB, so a read of a level
#: of 64 KiB HDF5 chunks took 0.76-0.98 s in 1 MiB dask chunks and 0.63-0.69 s in 4 MiB ones
#: (larger ones gained nothing that outlasted the noise; 2 MiB chunks gained nothing at all)
DASK_CHUNK_BYTES = 4 << 20


def group_factors(chunks: Shape3, grid: Shape3, itemsize: int, min_bytes: int = MIN_CHUNK_BYTES) -> Shape3:
    """How many HDF5 chunks along (z, y, x) each served zarr chunk groups.

    The group grows by doubling along y or x (whichever is shorter in voxels; x among equals),
    never past the level's own chunk grid, until the served chunk holds at least ``min_bytes``
    (0: every HDF5 chunk alone), or spans whole planes. Never along z: viewers and remote
    readers read planes, and a plane read then decodes and fetches no more planes than its
    HDF5 chunks hold anyway (a level of thin chunks and small planes is served in whole planes,
    below ``min_bytes``).

    >>> group_factors((1, 64, 64), (64, 8, 8), itemsize=2)  # Imaris 7 planes of 8 KiB, 512 x 512
    (1, 8, 8)
    """
    factors = [1, 1, 1]
    while math.prod(chunks) * math.prod(factors) * itemsize < min_bytes:
        growable = [axis for axis in (2, 1) if factors[axis] < grid[axis]]
        if not growable:
            break
        axis = min(growable, key=lambda a: chunks[a] * factors[a])  # min keeps the first of equals: x
        factors[axis] = min(2 * factors[axis], grid[axis])
    return tuple(factors)  # type: ignore[return-value]


@dataclass(frozen=True)
class Tiling:
    """A level's served zarr chunks: ``group`` HDF5 chunks of shape ``chunks`` along (z, y, x)."""

    chunks: Shape3
    """the HDF5 chunk shape"""
    grid: Shape3
    """the HDF5 chunk grid over the level's image (edge chunks included)"""
    group: Shape3 = (1, 1, 1)

    @property
    def grouped(self) -> bool:
        return self.group != (1, 1, 1)

    @property
    def served_chunks(self) -> Shape3:
        """The zarr chunk shape (z, y, x) the level's metadata declares."""
        return tuple(c * g for c, g in zip(self.chunks, self.group, strict=True))  # type: ignore[return-value]

    @property
    def served_grid(self) -> Shape3:
        """The zarr chunk grid (z, y, x)."""
        return tuple(-(-n // g) for n, g in zip(self.grid, self.group, strict=True))  # type: ignore[return-value]

    def box(self, z: int, y: int, x: int) -> tuple[range, range, range]:
        """The HDF5 chunks of served chunk (z, y, x): their positions along each axis of the
        HDF5 grid (chunks past the level's grid, at its far edges, left out)."""
        return tuple(  # type: ignore[return-value]
            range(i * g, min((i + 1) * g, n)) for i, g, n in zip((z, y, x), self.group, self.grid, strict=True)
        )

    @functools.cached_property
    def places(self) -> tuple[list[slice], list[slice], list[slice]]:
        """Where each HDF5 chunk lies within a served chunk, along each axis (in voxels)."""
        return tuple(  # type: ignore[return-value]
            [slice(i * n, (i + 1) * n) for i in range(g)] for n, g in zip(self.chunks, self.group, strict=True)
        )

    def served_present(self, present: np.ndarray) -> np.ndarray:
        """Which served chunks hold at least one present HDF5 chunk, from a (z, y, x) grid of flags."""
        if not self.grouped:
            return present
        padded = np.zeros([s * g for s, g in zip(self.served_grid, self.group, strict=True)], bool)
        padded[tuple(slice(0, n) for n in present.shape)] = present
        (sz, sy, sx), (gz, gy, gx) = self.served_grid, self.group
        return padded.reshape(sz, gz, sy, gy, sx, gx).any(axis=(1, 3, 5))


def tiling(level: Level, min_bytes: int = MIN_CHUNK_BYTES) -> Tiling:
    """The served tiling of a level: HDF5 chunks grouped to at least ``min_bytes`` (0: one to one)."""
    group = group_factors(level.chunks, level.chunk_grid, level.dtype.itemsize, min_bytes)
    return Tiling(level.chunks, level.chunk_grid, group)
