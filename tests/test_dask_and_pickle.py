"""Lazy reads through dask with threads and processes; the store crosses process boundaries."""

from __future__ import annotations

import pickle
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from helpers import h5py_level
from hypothesis import given, settings
from hypothesis import strategies as st

from ims_store import ImsStore, SelectionError


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_dask_from_zarr(synthetic_files: dict[str, Path], scheduler: str) -> None:
    path = synthetic_files["12-timepoints-3-channels"]
    arr = da.from_zarr(zarr.open_array(ImsStore(path), path="0", mode="r"))
    with dask.config.set(scheduler=scheduler):
        total = arr.sum(axis=(2, 3, 4)).compute()
    expected = np.array([[h5py_level(path, 0, t, c).sum() for c in range(3)] for t in range(12)])
    np.testing.assert_array_equal(total, expected)


def test_to_dask_selects_level_time_channel(synthetic_files: dict[str, Path]) -> None:
    path = synthetic_files["uint16-shuffle-gzip-3-levels"]
    store = ImsStore(path)
    sel = store.to_dask(2, timepoint=1, channel=0)
    np.testing.assert_array_equal(sel.compute(), h5py_level(path, 2, 1, 0))
    assert store.to_dask(1).shape == (2, 2, *h5py_level(path, 1, 0, 0).shape)
    with pytest.raises(SelectionError, match=r"level 3 does not exist; the file has levels 0\.\.2"):
        store.to_dask(3)
    with pytest.raises(SelectionError, match=r"channels 0\.\.1"):
        store.to_dask(0, channel=2)
    with pytest.raises(SelectionError, match=r"time points 0\.\.1"):
        store.to_dask(0, timepoint=5)


def test_pickled_store_reads_in_another_process(real_files: dict[str, Path]) -> None:
    import concurrent.futures
    import multiprocessing

    path = real_files["PtK2Cell.ims"]
    store = ImsStore(path, zarr_format=2)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        remote = pool.submit(_read_channel, pickle.dumps(store), 3).result(timeout=120)
    np.testing.assert_array_equal(remote, h5py_level(path, 0, 0, 3))


def _read_channel(blob: bytes, channel: int) -> np.ndarray:
    store = pickle.loads(blob)
    return zarr.open_array(store, path="0", mode="r")[0, channel]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_level_array_slices_equal_h5py(synthetic_files: dict[str, Path], data: st.DataObject) -> None:
    from ims_store.store import LevelArray

    path = synthetic_files["float32-padded-levels"]
    level = data.draw(st.integers(0, 2))
    expected = h5py_level(path, level, 0, 0)
    arr = LevelArray(ImsStore(path), level)
    assert arr.shape == (1, 1, *expected.shape)
    key = tuple(
        data.draw(st.one_of(st.integers(0, n - 1), st.builds(slice, st.integers(0, n), st.integers(0, n))))
        for n in expected.shape
    )
    np.testing.assert_array_equal(arr[(0, 0, *key)], expected[key])
    np.testing.assert_array_equal(arr[0, 0, ::3, 1::2], expected[::3, 1::2])


def test_read_chunk(real_files: dict[str, Path]) -> None:
    path = real_files["PyramidalCell.ims"]
    store = ImsStore(path)
    chunk = store.read_chunk(0, 0, 0, 4, 0, 0)
    assert chunk.shape == (16, 256, 256)
    np.testing.assert_array_equal(chunk[:5, :254, :255], h5py_level(path, 0, 0, 0)[64:69])
    with pytest.raises(SelectionError, match="chunk"):
        store.read_chunk(0, 0, 0, 5, 0, 0)


def test_eight_threads_on_one_fresh_store_equal_a_serial_read(synthetic_files: dict[str, Path]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = synthetic_files["12-timepoints-3-channels"]
    expected = {(t, c): h5py_level(path, 0, t, c) for t in range(12) for c in range(3)}
    store = ImsStore(path)  # no chunk index built yet: the threads race to build them
    arr = zarr.open_array(store, path="0", mode="r")
    jobs = [(t, c) for t in range(12) for c in range(3)] * 3
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda tc: (tc, arr[tc[0], tc[1]]), jobs))
    for (t, c), got in results:
        np.testing.assert_array_equal(got, expected[(t, c)])


def test_a_store_opened_by_a_relative_path_unpickles_anywhere(
    real_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(real_files["PtK2Cell.ims"].parent)
    store = ImsStore("PtK2Cell.ims")
    blob = pickle.dumps(store)
    monkeypatch.chdir(tmp_path)  # a worker with another working directory
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.to_dask(0)[0, 1].compute(), h5py_level(real_files["PtK2Cell.ims"], 0, 0, 1))


def test_level_array_takes_negative_indexes_like_numpy(synthetic_files: dict[str, Path]) -> None:
    from ims_store.store import LevelArray

    path = synthetic_files["12-timepoints-3-channels"]
    level = LevelArray(ImsStore(path), 0)
    np.testing.assert_array_equal(level[-1, -2, -1], h5py_level(path, 0, 11, 1)[-1])
    np.testing.assert_array_equal(level[0, 0, -3:, 2], h5py_level(path, 0, 0, 0)[-3:, 2])
    with pytest.raises(IndexError):
        level[12]
