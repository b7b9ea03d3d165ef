"""The Imaris resolution pyramid: which levels exist, and how each is computed from the last.

Checked against files written by Imaris 7.2 and by the official ImarisWriter (see
``docs/format.md``): a dimension D (the other two A and B) is halved when
``D > 1 and (10 * D)**2 > A * B``, by **floor** division; levels are added while the current
level holds more voxels than a threshold (ImarisWriter: 1 MiB of data); each level is the
**truncated mean** of 2x2x2 blocks (2x2 or 2 where an axis is not halved), a trailing odd
row dropped. Sizes here are (z, y, x).

>>> level_sizes((69, 254, 255), itemsize=1, threshold_voxels=4 * 1024 * 1024)
[(69, 254, 255), (34, 127, 127)]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "IMARISWRITER_BLOCK_BYTES",
    "IMARISWRITER_THRESHOLD_BYTES",
    "block_shapes",
    "downsample",
    "halved_axes",
    "level_sizes",
    "next_level_size",
]

Shape3 = tuple[int, int, int]

IMARISWRITER_THRESHOLD_BYTES = 1024 * 1024
"""ImarisWriter adds levels while a level holds more than 1 MiB of data."""


def halved_axes(size: Sequence[int]) -> tuple[bool, bool, bool]:
    """Which of (z, y, x) the next level halves, by Imaris' rule."""
    z, y, x = size
    return (
        z > 1 and (10 * z) ** 2 > x * y,
        y > 1 and (10 * y) ** 2 > x * z,
        x > 1 and (10 * x) ** 2 > y * z,
    )


def next_level_size(size: Sequence[int]) -> Shape3:
    """The size of the level below ``size``: floor halving of the axes `halved_axes` picks."""
    return tuple(s // 2 if h else s for s, h in zip(size, halved_axes(size), strict=True))  # type: ignore[return-value]


def level_sizes(size: Sequence[int], itemsize: int, threshold_voxels: int | None = None) -> list[Shape3]:
    """Sizes of every level of the pyramid for a full-resolution ``size`` (z, y, x).

    ``threshold_voxels`` defaults to ImarisWriter's 1 MiB of data at ``itemsize`` bytes per voxel.
    """
    if threshold_voxels is None:
        threshold_voxels = IMARISWRITER_THRESHOLD_BYTES // itemsize
    sizes: list[Shape3] = [tuple(int(s) for s in size)]  # type: ignore[list-item]
    while int(np.prod(sizes[-1], dtype=np.int64)) > threshold_voxels:
        if not any(halved_axes(sizes[-1])):
            break
        sizes.append(next_level_size(sizes[-1]))
    return sizes


def downsample(block: np.ndarray, halve: Sequence[bool]) -> np.ndarray:
    """The next level of ``block`` (z, y, x): truncated mean of 2x2x2 blocks along halved axes.

    Integers are summed in 64 bits and divided with truncation toward zero; float32 is summed in
    float32 in x, y, z order (as ImarisWriter does, so results agree to the last bit).

    >>> downsample(np.array([[[1, 2], [3, 5]]], dtype=np.uint8), (False, True, True))
    array([[[2]]], dtype=uint8)
    """
    steps = [2 if h else 1 for h in halve]
    out_shape = [s // k for s, k in zip(block.shape, steps, strict=True)]
    trimmed = block[tuple(slice(0, n * k) for n, k in zip(out_shape, steps, strict=True))]
    count = steps[0] * steps[1] * steps[2]
    # sum the strided views one by one: far faster than a reduction over a 6-D reshape
    parts = [
        trimmed[dz :: steps[0], dy :: steps[1], dx :: steps[2]]
        for dz in range(steps[0])
        for dy in range(steps[1])
        for dx in range(steps[2])
    ]
    if block.dtype.kind == "f":
        acc = parts[0].astype(block.dtype, copy=True)
        for part in parts[1:]:
            np.add(acc, part, out=acc)
        return (acc / block.dtype.type(count)).astype(block.dtype, copy=False)
    # eight values of n bits sum exactly in 2n bits (n <= 32)
    wide = np.dtype(f"{block.dtype.kind}{min(2 * block.dtype.itemsize, 8)}")
    acc = parts[0].astype(wide, copy=True)
    for part in parts[1:]:
        np.add(acc, part, out=acc)
    if block.dtype.kind == "u":
        np.floor_divide(acc, count, out=acc)
        return acc.astype(block.dtype)
    return (np.sign(acc) * (np.abs(acc) // count)).astype(block.dtype)  # truncate toward zero


IMARISWRITER_BLOCK_BYTES = 1024 * 1024
"""ImarisWriter's blocks ("chunks") hold about 1 MiB of data."""


def _slices_touched(grid: Sequence[int]) -> int:
    nz, ny, nx = grid
    return 1 + nx * ny + nx * nz + ny * nz - nx - ny - nz


def block_shapes(
    sizes: Sequence[Sequence[int]], itemsize: int, timepoints: int = 1, block_bytes: int = IMARISWRITER_BLOCK_BYTES
) -> list[Shape3]:
    """The chunk ("block") shape of every level, chosen the way ImarisWriter chooses them.

    A block holds ``2**floor(log2(block_bytes / itemsize))`` voxels (the time extent of a block,
    a power of two up to the number of time points, counts against that budget); every side is a
    power of two. 3-D images take blocks with X == Y and Z > 2; 2-D images Z == 1, X <= 4Y and
    Y <= 4X. A level's block is at least the previous level's block halved along the axes that
    level halved. Among candidates whose padded volume is at most twice the image (all of them if
    none is), the writer prefers the fewest blocks touched by an axis-aligned slice, then the
    smallest block surface, then the least padding. Last, no side exceeds the next power of two
    at least the level's size on that axis.

    >>> block_shapes([(300, 2048, 2048), (150, 1024, 1024)], 2)
    [(32, 128, 128), (32, 128, 128)]
    >>> block_shapes([(70, 120, 130)], 4)
    [(64, 64, 64)]
    >>> block_shapes([(1, 128, 128)], 2)
    [(1, 128, 128)]
    """
    budget_log2 = int(np.floor(np.log2(max(block_bytes // itemsize, 1))))
    t_log2_max = int(np.floor(np.log2(max(timepoints, 1))))
    shapes: list[Shape3] = []
    for index, size in enumerate(sizes):
        z, y, x = (int(s) for s in size)
        minimum = (1, 1, 1)
        if index:
            halve = halved_axes(sizes[index - 1])
            minimum = tuple(max(1, b // 2 if h else b) for b, h in zip(shapes[-1], halve, strict=True))  # type: ignore[assignment]
        candidates = []
        for t_log2 in range(t_log2_max + 1):
            voxels_log2 = budget_log2 - t_log2
            for by_log2 in range(voxels_log2 + 1):
                for bx_log2 in range(voxels_log2 + 1 - by_log2):
                    bz_log2 = voxels_log2 - by_log2 - bx_log2
                    block = (1 << bz_log2, 1 << by_log2, 1 << bx_log2)
                    if z == 1:
                        if bz_log2 != 0 or block[2] > 4 * block[1] or block[1] > 4 * block[2]:
                            continue
                    elif block[1] != block[2] or block[0] <= 2:
                        continue
                    if any(b < m for b, m in zip(block, minimum, strict=True)):
                        continue
                    grid = [-(-s // b) for s, b in zip((z, y, x), block, strict=True)]
                    padded = int(np.prod([g * b for g, b in zip(grid, block, strict=True)]))
                    surface = 2 * (block[0] * block[1] + block[0] * block[2] + block[1] * block[2])
                    candidates.append((padded > 2 * z * y * x, _slices_touched(grid), surface, padded, block))
        cover = _cover(size)
        if not candidates:  # tiny images: one block covering the level
            shapes.append(cover)
            continue
        # no side longer than the image needs: a 128x128 plane is one (1, 128, 128) block, as
        # ImarisWriter's own files have it, not a (1, 512, 1024) block of zeros
        shapes.append(tuple(min(b, c) for b, c in zip(min(candidates)[-1], cover, strict=True)))  # type: ignore[arg-type]
    return shapes


def _cover(size: Sequence[int]) -> Shape3:
    """The smallest power of two at least each side of ``size``."""
    return tuple(1 << (max(int(s), 1) - 1).bit_length() for s in size)  # type: ignore[return-value]
