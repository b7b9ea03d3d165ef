"""Every level, time point and channel read through zarr equals h5py's read of the true-size region."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import REAL_FILES, assert_group_matches_h5py, h5py_level
from synthetic_files import VARIANTS

from ims_store import ImsStore

FORMATS_AND_MODES = [(fmt, mode) for fmt in (3, 2) for mode in ("decoded", "passthrough")]


def assert_matches_h5py(path: Path, zarr_format: int, chunk_mode: str) -> None:
    root = zarr.open_group(ImsStore(path, zarr_format=zarr_format, chunk_mode=chunk_mode), mode="r")
    assert_group_matches_h5py(root, path)


@pytest.mark.parametrize(("zarr_format", "chunk_mode"), FORMATS_AND_MODES)
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_files(real_files: dict[str, Path], name: str, zarr_format: int, chunk_mode: str) -> None:
    assert_matches_h5py(real_files[name], zarr_format, chunk_mode)


@pytest.mark.parametrize(("zarr_format", "chunk_mode"), FORMATS_AND_MODES)
@pytest.mark.parametrize("name", list(VARIANTS))
def test_synthetic_files(synthetic_files: dict[str, Path], name: str, zarr_format: int, chunk_mode: str) -> None:
    assert_matches_h5py(synthetic_files[name], zarr_format, chunk_mode)


def test_partial_reads_cross_chunk_borders(synthetic_files: dict[str, Path]) -> None:
    path = synthetic_files["float32-padded-levels"]
    arr = zarr.open_array(ImsStore(path), path="0", mode="r")
    expected = h5py_level(path, 0, 0, 0)
    np.testing.assert_array_equal(arr[0, 0, 30:33, 60:70, 250:257], expected[30:33, 60:70, 250:257])
    np.testing.assert_array_equal(arr[0, 0, ::7, 5, ::3], expected[::7, 5, ::3])


def test_unallocated_chunks_are_missing_keys_and_read_as_zero(synthetic_files: dict[str, Path]) -> None:
    import h5py

    path = synthetic_files["unallocated-chunks-softlink"]
    store = ImsStore(path)
    with h5py.File(path, "r") as f:
        ds = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"]
        allocated = {
            tuple(o // c for o, c in zip(ds.id.get_chunk_info(i).chunk_offset, ds.chunks, strict=True))
            for i in range(ds.id.get_num_chunks())
        }
    assert 0 < len(allocated) < 2 * 4 * 2
    root = zarr.open_group(store, mode="r")
    for z in range(2):
        for y in range(4):
            for x in range(2):
                present = store.get_sync(f"0/c/0/0/{z}/{y}/{x}") is not None
                assert present == ((z, y, x) in allocated)
    assert root["0"][0, 0, 8:, :, :].max() == 0


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_zarr_open_gives_the_root_group(real_files: dict[str, Path], zarr_format: int) -> None:
    path = real_files["PyramidalCell.ims"]
    root = zarr.open(ImsStore(path, zarr_format=zarr_format), mode="r")  # the entry point of the README
    assert isinstance(root, zarr.Group)
    assert_group_matches_h5py(root, path)
