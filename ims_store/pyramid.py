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

__all__ = ["IMARISWRITER_THRESHOLD_BYTES", "downsample", "halved_axes", "level_sizes"]

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


def level_sizes(size: Sequence[int], itemsize: int, threshold_voxels: int | None = None) -> list[Shape3]:
    """Sizes of every level of the pyramid for a full-resolution ``size`` (z, y, x).

    ``threshold_voxels`` defaults to ImarisWriter's 1 MiB of data at ``itemsize`` bytes per voxel.
    """
    if threshold_voxels is None:
        threshold_voxels = IMARISWRITER_THRESHOLD_BYTES // itemsize
    sizes: list[Shape3] = [tuple(int(s) for s in size)]  # type: ignore[list-item]
    while int(np.prod(sizes[-1], dtype=np.int64)) > threshold_voxels:
        halve = halved_axes(sizes[-1])
        if not any(halve):
            break
        sizes.append(tuple(s // 2 if h else s for s, h in zip(sizes[-1], halve, strict=True)))  # type: ignore[arg-type]
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
    blocks = trimmed.reshape(out_shape[0], steps[0], out_shape[1], steps[1], out_shape[2], steps[2])
    count = steps[0] * steps[1] * steps[2]
    if block.dtype.kind == "f":
        acc = None
        for dz in range(steps[0]):
            for dy in range(steps[1]):
                for dx in range(steps[2]):
                    value = blocks[:, dz, :, dy, :, dx]
                    acc = value.astype(block.dtype, copy=True) if acc is None else np.add(acc, value, out=acc)
        assert acc is not None
        return (acc / block.dtype.type(count)).astype(block.dtype, copy=False)
    wide = np.int64 if block.dtype.kind == "i" else np.uint64
    total = blocks.sum(axis=(1, 3, 5), dtype=wide)
    if block.dtype.kind == "i":
        mean = np.sign(total) * (np.abs(total) // count)  # truncate toward zero
    else:
        mean = total // count
    return mean.astype(block.dtype)
