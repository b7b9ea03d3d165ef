"""Small HDF5 chunks served grouped into larger zarr chunks: the same voxels as h5py reads, for
every grouping, zarr format, access path (zarr, dask, HTTP) and chunk that was never written."""

from __future__ import annotations

import math
from pathlib import Path

import dask
import h5py
import numpy as np
import pytest
import zarr
from helpers import h5py_level, h5py_region
from http_files import FileServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ims_store import ImsStore
from ims_store.store.tiling import DASK_CHUNK_BYTES, MIN_CHUNK_BYTES, group_factors, tiling
from ims_store.write.synthetic import make_example_ims

CHUNKS = (4, 32, 32)  # 8 KiB of uint16: far below MIN_CHUNK_BYTES
SHAPE = (40, 200, 260)  # a grid of 10 x 7 x 9 HDF5 chunks, partial at the y and x edges
GROUPINGS = [0, 1, 20_000, 100_000, 300_000, MIN_CHUNK_BYTES]


def _volume(t: int, c: int) -> np.ndarray:
    rng = np.random.default_rng(10 * t + c)
    data = rng.integers(1, 4000, size=SHAPE, dtype=np.uint16)
    data[8:20, 64:160, :96] = 0  # whole HDF5 chunks of zeros, never written (skip_zero_chunks)...
    data[16:24] = 0  # ... and whole planes of them
    data[:, :, 256:] = 0  # the last column of chunks only partly zero: written
    return data


@pytest.fixture(scope="module")
def small_chunks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiling") / "small_chunks.ims"
    make_example_ims(
        path, _volume, shape=SHAPE, channels=2, timepoints=1, chunks=CHUNKS, skip_zero_chunks=True, threshold_voxels=1
    )
    with h5py.File(path, "r") as f:  # the file really has unwritten chunks, and several levels
        data = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"]
        assert data.id.get_num_chunks() < math.prod(-(-s // c) for s, c in zip(data.shape, data.chunks, strict=True))
        assert len(f["DataSet"]) > 2
    return path


def _hdf5_chunks(path: Path, level: int, c: int) -> tuple[tuple[int, int, int], tuple[int, int, int], set]:
    """h5py's view of a dataset: chunk shape, size, and the grid positions of its written chunks."""
    with h5py.File(path, "r") as f:
        group = f[f"DataSet/ResolutionLevel {level}/TimePoint 0/Channel {c}"]
        data = group["Data"]
        size = tuple(int(float(b"".join(group.attrs[f"ImageSize{a}"]).decode())) for a in "ZYX")
        written = {
            tuple(o // n for o, n in zip(data.id.get_chunk_info(i).chunk_offset, data.chunks, strict=True))
            for i in range(data.id.get_num_chunks())
        }
        return data.chunks, size, written  # type: ignore[return-value]


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.tuples(*[st.integers(1, 300)] * 3),
    grid=st.tuples(*[st.integers(1, 200)] * 3),
    itemsize=st.sampled_from([1, 2, 4, 8]),
    min_bytes=st.integers(0, 8 << 20),
)
def test_group_factors_reach_the_target_and_no_further(
    chunks: tuple[int, int, int], grid: tuple[int, int, int], itemsize: int, min_bytes: int
) -> None:
    factors = group_factors(chunks, grid, itemsize, min_bytes)
    assert all(1 <= f <= g for f, g in zip(factors, grid, strict=True))
    nbytes = math.prod(chunks) * itemsize
    served = nbytes * math.prod(factors)
    assert factors[0] == 1  # never along z: a plane read reads no more planes than its chunks hold
    if nbytes >= min_bytes:
        assert factors == (1, 1, 1)  # large enough chunks are served as they are
    else:
        assert served >= min_bytes or factors[1:] == grid[1:]  # the target, or whole planes
        assert served < 2 * min_bytes  # each step at most doubles the group


@pytest.mark.parametrize("min_bytes", GROUPINGS)
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_every_level_equals_h5py(small_chunks: Path, min_bytes: int, zarr_format: int) -> None:
    store = ImsStore(small_chunks, zarr_format=zarr_format, min_chunk_bytes=min_bytes)
    root = zarr.open_group(store, mode="r", zarr_format=zarr_format)
    for level in store.layout.levels:
        array = root[str(level.index)]
        tiles = store.tiling(level.index)
        assert array.chunks == (1, 1, *tiles.served_chunks)
        hdf5_chunks = _hdf5_chunks(small_chunks, level.index, 0)[0]
        assert all(s % c == 0 for s, c in zip(tiles.served_chunks, hdf5_chunks, strict=True))
        for c in range(2):
            np.testing.assert_array_equal(array[0, c], h5py_level(small_chunks, level.index, 0, c))
    if min_bytes == 0:
        assert all(store.tiling(i).group == (1, 1, 1) for i in range(len(store.layout.levels)))
    if min_bytes == MIN_CHUNK_BYTES:  # the default groups this file's 8 KiB chunks
        assert store.tiling(0).grouped and ImsStore(small_chunks).tiling(0) == store.tiling(0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), min_bytes=st.sampled_from(GROUPINGS))
def test_any_region_equals_h5py(small_chunks: Path, data: st.DataObject, min_bytes: int) -> None:
    array = zarr.open_group(ImsStore(small_chunks, min_chunk_bytes=min_bytes), mode="r")["0"]
    region = []
    for n in SHAPE:
        start = data.draw(st.integers(0, n - 1))
        region.append(slice(start, data.draw(st.integers(start + 1, n))))
    c = data.draw(st.integers(0, 1))
    np.testing.assert_array_equal(array[(0, c, *region)], h5py_region(small_chunks, 0, 0, c, tuple(region)))


@pytest.mark.parametrize("min_bytes", [100_000, MIN_CHUNK_BYTES])
def test_listing_names_the_groups_that_hold_written_chunks(small_chunks: Path, min_bytes: int) -> None:
    store = ImsStore(small_chunks, min_chunk_bytes=min_bytes)
    tiles = store.tiling(0)
    chunks, size, written = _hdf5_chunks(small_chunks, 0, 1)
    grid = [-(-s // n) for s, n in zip(size, chunks, strict=True)]
    inside = [pos for pos in written if all(p < n for p, n in zip(pos, grid, strict=True))]
    expected = {"0/c/0/1/{}/{}/{}".format(*(p // g for p, g in zip(pos, tiles.group, strict=True))) for pos in inside}
    listed = set(store.keys_under("0/c/0/1/"))
    assert listed == expected
    every = {
        f"0/c/0/1/{z}/{y}/{x}"
        for z in range(tiles.served_grid[0])
        for y in range(tiles.served_grid[1])
        for x in range(tiles.served_grid[2])
    }
    assert every - listed, "the file should have a group of unwritten chunks only"
    for key in every:
        value = store.get_sync(key)
        if key in listed:
            assert len(value.to_bytes()) == math.prod(tiles.served_chunks) * 2
        else:
            assert value is None  # zarr fills it with the fill value the metadata declares
    assert store.layout.levels[0].fill_value == 0


async def test_getsize_is_the_served_size(small_chunks: Path) -> None:
    store = ImsStore(small_chunks)
    async for key in store.list_prefix("0/c/0/0/"):
        assert await store.getsize(key) == len((await store.get(key)).to_bytes())


def test_to_dask_uses_the_tiling_and_equals_h5py(small_chunks: Path) -> None:
    store = ImsStore(small_chunks)
    level = store.layout.levels[0]
    for chunk_bytes in (store.min_chunk_bytes, DASK_CHUNK_BYTES, 100_000, 0):
        arr = store.to_dask(0, timepoint=0, channel=1, chunk_bytes=chunk_bytes)
        served = tiling(level, chunk_bytes).served_chunks
        assert all(s % c == 0 for s, c in zip(served, CHUNKS, strict=True))
        assert arr.chunksize == tuple(min(s, n) for s, n in zip(served, SHAPE, strict=True))
        with dask.config.set(scheduler="threads"):
            np.testing.assert_array_equal(arr.compute(), h5py_level(small_chunks, 0, 0, 1))
    assert store.to_dask(0).chunksize == store.to_dask(0, chunk_bytes=DASK_CHUNK_BYTES).chunksize
    assert store.to_dask(0, chunk_bytes=0).chunksize == (1, 1, *CHUNKS)
    assert store.to_dask(0).name != store.to_dask(0, chunk_bytes=0).name
    with pytest.raises(ValueError, match="chunk_bytes"):
        store.to_dask(0, chunk_bytes=-1)


def test_passthrough_serves_hdf5_chunks_one_to_one(small_chunks: Path) -> None:
    store = ImsStore(small_chunks, chunk_mode="passthrough")
    array = zarr.open_group(store, mode="r")["0"]
    assert array.chunks == (1, 1, *CHUNKS)
    np.testing.assert_array_equal(array[0, 0], h5py_level(small_chunks, 0, 0, 0))


def test_min_chunk_bytes_is_kept_by_copies_and_pickles(small_chunks: Path) -> None:
    import pickle

    store = ImsStore(small_chunks, min_chunk_bytes=20_000)
    for copy in (pickle.loads(pickle.dumps(store)), store.with_read_only(True)):
        assert copy.min_chunk_bytes == 20_000 and copy.tiling(0) == store.tiling(0) and copy == store
    assert store != ImsStore(small_chunks)
    with pytest.raises(ValueError, match="min_chunk_bytes"):
        ImsStore(small_chunks, min_chunk_bytes=-1)


def test_grouped_reads_over_http_equal_h5py(small_chunks: Path) -> None:
    server = FileServer(small_chunks.parent)
    try:
        store = ImsStore(server.url(small_chunks.name))
        assert store.tiling(0).grouped
        root = zarr.open_group(store, mode="r")
        for c in range(2):
            np.testing.assert_array_equal(root["0"][0, c], h5py_level(small_chunks, 0, 0, c))
        with dask.config.set(scheduler="threads"):
            np.testing.assert_array_equal(
                store.to_dask(1, timepoint=0, channel=0).compute(), h5py_level(small_chunks, 1, 0, 0)
            )
        store.close()
    finally:
        server.close()
