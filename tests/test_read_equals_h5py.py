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


@pytest.mark.parametrize("name", list(VARIANTS))
def test_chunks_read_one_after_another_keep_their_voxels(synthetic_files: dict[str, Path], name: str) -> None:
    # a chunk is read into the thread's scratch buffer and decoded from there; where decoding
    # gives its input back (no filter, shuffle of 1-byte values), what is handed out must not be
    # that buffer, which the next read in the thread overwrites
    path = synthetic_files[name]
    store = ImsStore(path)
    level = store.layout.levels[0]
    image = h5py_level(path, 0, 0, 0)
    positions = list(np.ndindex(*level.chunk_grid))
    kept = [store.read_chunk(0, 0, 0, *pos) for pos in positions]
    for pos, chunk in zip(positions, kept, strict=True):
        region = tuple(slice(p * n, (p + 1) * n) for p, n in zip(pos, level.chunks, strict=True))
        expected = image[region]
        np.testing.assert_array_equal(chunk[tuple(slice(0, s) for s in expected.shape)], expected, err_msg=str(pos))


def test_a_run_of_chunks_whose_read_fails_is_read_again_chunk_by_chunk(
    synthetic_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # chunks next to each other in the file are read together; where that read fails (the file
    # changed after its size was checked), each chunk's own read decides: here they succeed
    from ims_store.access.files import LocalFile

    read_ranges = LocalFile.read_ranges
    failed = []

    def first_then_fail(self: LocalFile, offsets: list[int], sizes: list[int]):  # type: ignore[no-untyped-def]
        views = read_ranges(self, offsets, sizes)
        yield next(views)
        if len(offsets) > 1:
            failed.append(offsets)
            raise OSError("the disk went away")
        yield from views

    monkeypatch.setattr(LocalFile, "read_ranges", first_then_fail)
    path = synthetic_files["uint16-shuffle-gzip-3-levels"]
    store = ImsStore(path)
    np.testing.assert_array_equal(store.to_dask(0, timepoint=1, channel=1).compute(), h5py_level(path, 0, 1, 1))
    np.testing.assert_array_equal(zarr.open_array(store, path="0", mode="r")[1, 0], h5py_level(path, 0, 1, 0))
    assert failed
