"""Imaris' pyramid rule and downsampling, against real files and plain numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ims_store.format.pyramid import downsample, halved_axes, level_sizes


def test_real_pyramid_matches_rule_and_truncated_mean(real_files: dict[str, Path]) -> None:
    from helpers import h5py_level

    path = real_files["PyramidalCell.ims"]
    level0, level1 = h5py_level(path, 0, 0, 0), h5py_level(path, 1, 0, 0)
    # Imaris 7 files behave like a threshold of 4 Mi voxels
    assert level_sizes(level0.shape, 1, 4 * 1024 * 1024) == [level0.shape, level1.shape]
    z, y, x = level1.shape
    blocks = level0[: 2 * z, : 2 * y, : 2 * x].astype(np.int64).reshape(z, 2, y, 2, x, 2)
    expected = blocks.sum(axis=(1, 3, 5)) // 8
    np.testing.assert_array_equal(level1, expected)
    np.testing.assert_array_equal(downsample(level0, halved_axes(level0.shape)), level1)


@pytest.mark.parametrize(
    ("shape", "itemsize", "expected"),
    [
        ((300, 2048, 2048), 2, [(300, 2048, 2048), (150, 1024, 1024), (75, 512, 512), (37, 256, 256), (18, 128, 128)]),
        ((1, 700, 1000), 1, [(1, 700, 1000)]),
        ((1, 2000, 3000), 1, [(1, 2000, 3000), (1, 1000, 1500), (1, 500, 750)]),
        ((5, 4000, 4000), 2, [(5, 4000, 4000), (5, 2000, 2000), (5, 1000, 1000), (5, 500, 500), (5, 250, 250)]),
    ],
)
def test_level_sizes(shape: tuple[int, int, int], itemsize: int, expected: list[tuple[int, int, int]]) -> None:
    assert level_sizes(shape, itemsize) == expected


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.uint16, st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9))),
    st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_downsample_is_truncated_block_mean(block: np.ndarray, halve: tuple[bool, bool, bool]) -> None:
    halve = tuple(h and s > 1 for h, s in zip(halve, block.shape, strict=True))
    out = downsample(block, halve)
    steps = [2 if h else 1 for h in halve]
    for idx in np.ndindex(out.shape):
        window = block[tuple(slice(i * k, i * k + k) for i, k in zip(idx, steps, strict=True))]
        assert out[idx] == int(window.astype(np.int64).sum()) // window.size


def test_float32_sums_in_float32_order() -> None:
    rng = np.random.default_rng(0)
    block = rng.random((4, 6, 8), dtype=np.float32) * 1000
    out = downsample(block, (True, True, True))
    b = block.reshape(2, 2, 3, 2, 4, 2)
    acc = np.zeros((2, 3, 4), np.float32)
    for dz in range(2):
        for dy in range(2):
            for dx in range(2):
                acc = acc + b[:, dz, :, dy, :, dx]
    np.testing.assert_array_equal(out, acc / np.float32(8))


@pytest.mark.parametrize(
    ("shape", "itemsize", "timepoints", "expected"),
    [
        # the shapes the official writer produced (docs/format.md), (z, y, x)
        ((300, 2048, 2048), 2, 1, [(32, 128, 128)] * 5),
        ((70, 120, 130), 4, 1, [(64, 64, 64)] * 2),
        ((1, 700, 1000), 1, 1, [(1, 1024, 1024)]),
        ((40, 200, 300), 2, 2, [(16, 128, 128), (32, 128, 128)]),
    ],
)
def test_block_shapes_like_imariswriter(shape, itemsize, timepoints, expected) -> None:
    from ims_store.format.pyramid import block_shapes

    assert block_shapes(level_sizes(shape, itemsize), itemsize, timepoints) == expected


def test_blocks_of_small_images_fit_them_as_imariswriters_do(real_files: dict[str, Path]) -> None:
    import h5py

    from ims_store.format.pyramid import block_shapes

    with h5py.File(real_files["Minimal_IMS_File.ims"], "r") as f:  # uint16, 128 x 128 x 1, by ImarisWriter
        data = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"]
        size = tuple(int(b"".join(data.parent.attrs[f"ImageSize{a}"])) for a in "ZYX")
        chunks = data.chunks
    assert chunks == (1, 128, 128)
    assert block_shapes(level_sizes(size, 2), 2) == [chunks]
    # no side longer than the next power of two of the image: a z block of 2, not 128
    assert block_shapes(level_sizes((2, 64, 64), 2), 2) == [(2, 64, 64)]
    assert block_shapes(level_sizes((3, 40, 300), 1), 1) == [(4, 64, 512)]
