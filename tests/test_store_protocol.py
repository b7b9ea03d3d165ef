"""The zarr Store contract for a read-only store, modelled on zarr.testing.store.StoreTests.

zarr's own suite writes keys through the store before reading them back, which a read-only view
of an existing file cannot do; these tests check the same read-side behaviour against keys the
file really has.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import cpu, default_buffer_prototype

from ims_store import ImsStore

PROTO = default_buffer_prototype()


@pytest.fixture(params=[3, 2])
def store(request: pytest.FixtureRequest, real_files: dict[str, Path]) -> ImsStore:
    return ImsStore(real_files["PyramidalCell.ims"], zarr_format=request.param)


def _chunk_key(store: ImsStore, rest: str = "0/0/1/0/0") -> str:
    return f"0/c/{rest}" if store.zarr_format == 3 else f"0/{rest}"


async def _collect(it) -> list[str]:
    return [k async for k in it]


def test_type_and_capabilities(store: ImsStore) -> None:
    assert isinstance(store, Store)
    assert store.read_only
    assert not store.supports_writes and not store.supports_deletes and not store.supports_partial_writes
    assert store.supports_listing
    with pytest.raises(AttributeError):
        store.read_only = False  # type: ignore[misc]
    assert "PyramidalCell.ims" in repr(store)


def test_equality_by_arguments(store: ImsStore, real_files: dict[str, Path]) -> None:
    path = real_files["PyramidalCell.ims"]
    assert store == store
    assert store == ImsStore(path, zarr_format=store.zarr_format)
    assert store != ImsStore(path, zarr_format=5 - store.zarr_format)
    assert store != ImsStore(path, zarr_format=store.zarr_format, chunk_mode="passthrough")
    assert store != ImsStore(real_files["PtK2Cell.ims"], zarr_format=store.zarr_format)


async def test_pickle_reopens(store: ImsStore) -> None:
    key = _chunk_key(store)
    clone = pickle.loads(pickle.dumps(store))
    assert clone == store and clone.read_only
    assert (await clone.get(key, PROTO)).to_bytes() == (await store.get(key, PROTO)).to_bytes()


async def test_open_classmethod_and_context_manager(real_files: dict[str, Path]) -> None:
    with await ImsStore.open(path=real_files["PtK2Cell.ims"], read_only=True) as store:
        assert store._is_open
        with pytest.raises(ValueError, match="store is already open"):
            await store._open()
    assert not store._is_open
    # a closed store reopens the file when used again
    assert await store.get("zarr.json", PROTO) is not None


async def test_writes_raise(store: ImsStore) -> None:
    buf = cpu.Buffer.from_bytes(b"bar")
    for call in (store.set("foo", buf), store.delete("foo"), store.set_if_not_exists("foo", buf), store.clear()):
        with pytest.raises(ValueError, match="store was opened in read-only mode and does not support writing"):
            await call
    with pytest.raises(ValueError, match="read-only"):
        store.with_read_only(False)
    assert store.with_read_only(True) == store


@pytest.mark.parametrize(
    "byte_range",
    [None, RangeByteRequest(1, 4), RangeByteRequest(10, 10_000_000), OffsetByteRequest(5), SuffixByteRequest(7)],
)
@pytest.mark.parametrize("chunk_mode", ["decoded", "passthrough"])
async def test_get_byte_ranges(real_files: dict[str, Path], byte_range, chunk_mode: str) -> None:
    store = ImsStore(real_files["PyramidalCell.ims"], zarr_format=2, chunk_mode=chunk_mode)
    for key in (".zattrs", "0/0/0/1/0/0"):
        whole = (await store.get(key, PROTO)).to_bytes()
        part = (await store.get(key, PROTO, byte_range)).to_bytes()
        if byte_range is None:
            expected = whole
        elif isinstance(byte_range, RangeByteRequest):
            expected = whole[byte_range.start : byte_range.end]
        elif isinstance(byte_range, OffsetByteRequest):
            expected = whole[byte_range.offset :]
        else:
            expected = whole[-byte_range.suffix :]
        assert part == expected
        assert store.get_sync(key, byte_range=byte_range).to_bytes() == expected


async def test_get_rejects_malformed_byte_range(store: ImsStore) -> None:
    with pytest.raises((ValueError, TypeError), match=r"Unexpected byte_range, got.*"):
        await store.get("zarr.json", PROTO, byte_range=(0, 2))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key", ["nope", "0/c/0/0/0/0", "0/c/0/0/9/0/0", "0/c/0/1/0/0/0", "7/zarr.json", "0/c/00/0/0/0/0", "0/c/0/0/-1/0/0"]
)
async def test_missing_keys(store: ImsStore, key: str) -> None:
    if store.zarr_format == 2:
        key = key.replace("/c/", "/").replace("zarr.json", ".zarray")
    assert await store.get(key, PROTO) is None
    assert not await store.exists(key)
    with pytest.raises(FileNotFoundError):
        await store.getsize(key)


async def test_exists_getsize_and_partial_values(store: ImsStore, real_files: dict[str, Path]) -> None:
    key = _chunk_key(store)
    meta = "zarr.json" if store.zarr_format == 3 else ".zattrs"
    assert await store.exists(key) and await store.exists(meta)
    assert await store.getsize(key) == 16 * 256 * 256  # decoded mode serves raw uint8
    assert await store.getsize(meta) == len((await store.get(meta, PROTO)).to_bytes())
    got = await store.get_partial_values(PROTO, [(key, RangeByteRequest(0, 3)), (meta, None), ("missing", None)])
    assert got[0].to_bytes() == (await store.get(key, PROTO)).to_bytes()[:3]
    assert got[2] is None
    passthrough = ImsStore(real_files["PyramidalCell.ims"], zarr_format=store.zarr_format, chunk_mode="passthrough")
    with h5py.File(real_files["PyramidalCell.ims"], "r") as f:
        info = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"].id.get_chunk_info_by_coord((16, 0, 0))
    assert await passthrough.getsize(key) == info.size
    assert await store.getsize_prefix("0") > 0


async def test_listing(store: ImsStore) -> None:
    keys = await _collect(store.list())
    assert len(keys) == len(set(keys))
    if store.zarr_format == 3:
        meta = {"zarr.json", "0/zarr.json", "1/zarr.json"}
        chunks = {f"0/c/0/0/{z}/0/0" for z in range(5)} | {"1/c/0/0/0/0/0"}
        assert set(keys) == meta | chunks
        assert sorted(await _collect(store.list_dir(""))) == ["0", "1", "zarr.json"]
        assert sorted(await _collect(store.list_dir("0"))) == ["c", "zarr.json"]
        assert sorted(await _collect(store.list_dir("0/c/0/0"))) == ["0", "1", "2", "3", "4"]
        assert sorted(await _collect(store.list_dir("0/c/0/0/4/0/"))) == ["0"]
        assert sorted(await _collect(store.list_prefix("1/"))) == ["1/c/0/0/0/0/0", "1/zarr.json"]
    else:
        meta = {".zgroup", ".zattrs", "0/.zarray", "0/.zattrs", "1/.zarray", "1/.zattrs"}
        chunks = {f"0/0/0/{z}/0/0" for z in range(5)} | {"1/0/0/0/0/0"}
        assert set(keys) == meta | chunks
        assert sorted(await _collect(store.list_dir(""))) == [".zattrs", ".zgroup", "0", "1"]
        assert sorted(await _collect(store.list_dir("1"))) == [".zarray", ".zattrs", "0"]
    assert set(await _collect(store.list_prefix(""))) == set(keys)
    assert await _collect(store.list_prefix("9/")) == []
    assert await _collect(store.list_dir("nothing/here")) == []
    assert not await store.is_empty("")


def test_metadata_documents_are_json(store: ImsStore) -> None:
    key = "zarr.json" if store.zarr_format == 3 else ".zattrs"
    doc = json.loads(store.get_sync(key).to_bytes())
    assert doc


def test_opening_visits_one_dataset_per_level(tmp_path: Path) -> None:
    from ims_store.write.synthetic import make_example_ims

    path = make_example_ims(tmp_path / "many.ims", shape=(2, 8, 8), channels=3, timepoints=40, levels=1)
    store = ImsStore(path)
    assert store.engine._indexes == {}  # no chunk index is built until a chunk is asked for
    store.get_sync("0/c/39/2/0/0/0")
    assert list(store.engine._indexes) == [(0, 39, 2)]


def test_close_releases_file(real_files: dict[str, Path]) -> None:
    store = ImsStore(real_files["PtK2Cell.ims"])
    store.get_sync("0/c/0/0/0/0/0")
    store.close()
    assert store._file._h5 is None and not store._file.source.is_open
    assert store.get_sync("0/c/0/0/0/0/0") is not None


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_mapping_view_has_the_store_keys_and_bytes(real_files: dict[str, Path], zarr_format: int) -> None:
    import asyncio
    from collections.abc import Mapping

    store = ImsStore(real_files["PyramidalCell.ims"], zarr_format=zarr_format)
    mapping = store.as_mapping()
    assert isinstance(mapping, Mapping)
    keys = asyncio.run(_collect(store.list()))
    assert sorted(mapping) == sorted(keys) and len(mapping) == len(keys)
    for key in keys:
        assert key in mapping
        assert mapping[key] == store.get_sync(key).to_bytes()
    assert "0/c/9/9/9/9/9" not in mapping and 5 not in mapping
    with pytest.raises(KeyError):
        mapping["nope"]
    clone = pickle.loads(pickle.dumps(mapping))
    assert clone == mapping and clone[keys[-1]] == mapping[keys[-1]]


@pytest.mark.posix_only("/proc/self/fd")  # twin: test_platforms.test_close_during_reads_serves_only_this_files_bytes
def test_close_during_reads_never_serves_another_files_bytes(synthetic_files: dict[str, Path], tmp_path: Path) -> None:
    """Closing while threads read: every read returns this file's bytes (a closed descriptor number may
    be reused by the next file opened), and no descriptor leaks."""
    from concurrent.futures import ThreadPoolExecutor

    from helpers import h5py_level

    path = synthetic_files["12-timepoints-3-channels"]
    expected = h5py_level(path, 0, 5, 1)
    store = ImsStore(path)
    decoy = tmp_path / "decoy.bin"
    decoy.write_bytes(b"\xff" * 2**20)
    zarr.open_array(store, path="0", mode="r")[5, 1]  # zarr's event loop and the chunk indexes exist
    before = len(os.listdir("/proc/self/fd"))

    decoys = []

    def read(i: int) -> bool:
        if i % 10 == 0:
            store.close()
            decoys.append(open(decoy, "rb"))  # held open: it takes the number just freed
        return np.array_equal(zarr.open_array(store, path="0", mode="r")[5, 1], expected)

    try:
        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(read, range(200)))
    finally:
        for fh in decoys:
            fh.close()
    store.close()
    assert len(os.listdir("/proc/self/fd")) <= before
