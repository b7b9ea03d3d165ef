"""Remote .ims through fsspec: a loopback HTTP server with byte ranges and a moto S3 server; requests are
counted."""

from __future__ import annotations

import math
import pickle
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import fsspec
import h5py
import numpy as np
import pytest
import zarr
from helpers import REAL_FILES, assert_group_matches_h5py, h5py_level
from http_files import FileServer
from s3_server import S3Server

from ims_store import ImsFileNotFoundError, ImsStore, NotHDF5Error, RemoteReadError, write_ims
from ims_store.fronts.cli import main
from ims_store.write.synthetic import make_example_ims


@pytest.fixture(scope="module")
def files(real_files: dict[str, Path], synthetic_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("served")
    for path in [*real_files.values(), synthetic_files["uint16-shuffle-gzip-3-levels"]]:
        shutil.copyfile(path, root / path.name)
    (root / "text.ims").write_text("not hdf5\n" * 100)
    # 128 small chunks in one dataset, all inside the first metadata block
    make_example_ims(
        root / "many-chunks.ims", shape=(32, 128, 128), channels=1, timepoints=1, levels=1, chunks=(4, 32, 32)
    )
    return root


@pytest.fixture
def server(files: Path) -> Iterator[FileServer]:
    srv = FileServer(files)
    yield srv
    srv.close()


@pytest.mark.parametrize("name", [*REAL_FILES, "uint16-shuffle-gzip-3-levels.ims"])
def test_remote_reads_equal_local_reads(server: FileServer, files: Path, name: str) -> None:
    assert_group_matches_h5py(zarr.open_group(ImsStore(server.url(name)), mode="r"), files / name)


def test_requests_to_open_and_to_read_one_chunk_are_few(server: FileServer) -> None:
    store = ImsStore(server.url("PtK2Cell.ims"))  # 1.4 MB: the metadata fits the first block
    opened = len(server.requests)
    # one round trip: the size and the first block asked for together
    assert sorted((method, byte_range) for method, _, byte_range in server.requests) == [
        ("GET", "bytes=0-4194303"),
        ("HEAD", None),
    ]
    store.get_sync("zarr.json")
    assert len(server.requests) == opened  # metadata is served from the parse
    store.get_sync("0/c/0/2/1/0/0")
    assert len(server.requests) == opened + 1  # the chunk index comes from the cached metadata blocks
    store.get_sync("0/c/0/2/0/0/0")
    assert len(server.requests) == opened + 2  # one range request per chunk


def chunk_count(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"].id.get_num_chunks()


def test_a_level_read_whole_is_fetched_ahead_in_few_requests(server: FileServer, files: Path) -> None:
    path = files / "many-chunks.ims"
    assert chunk_count(path) == 128
    store = ImsStore(server.url(path.name))
    opened = len(server.requests)
    np.testing.assert_array_equal(zarr.open_array(store, path="0", mode="r")[0, 0], h5py_level(path, 0, 0, 0))
    chunk_requests = server.requests[opened:]
    assert len(chunk_requests) <= 128 // 8, chunk_requests
    assert all(method == "GET" and byte_range for method, _, byte_range in chunk_requests)


def test_dask_reads_a_remote_level_in_few_requests(server: FileServer, files: Path) -> None:
    path = files / "many-chunks.ims"
    store = ImsStore(server.url(path.name))
    opened = len(server.requests)
    level = store.to_dask(0, timepoint=0, channel=0).compute(scheduler="threads")
    np.testing.assert_array_equal(level, h5py_level(path, 0, 0, 0))
    assert len(server.requests) - opened <= 128 // 8


def test_without_read_ahead_every_chunk_is_one_request(server: FileServer, files: Path) -> None:
    path = files / "many-chunks.ims"
    store = ImsStore(server.url(path.name), read_ahead=0, min_chunk_bytes=0)  # a zarr chunk per HDF5 chunk
    opened = len(server.requests)
    np.testing.assert_array_equal(zarr.open_array(store, path="0", mode="r")[0, 0], h5py_level(path, 0, 0, 0))
    assert len(server.requests) - opened == 128
    # small chunks served grouped: a group's chunks lie together in the file, one request each
    grouped = ImsStore(server.url(path.name), read_ahead=0)
    groups = math.prod(grouped.tiling(0).served_grid)
    assert grouped.tiling(0).grouped and groups < 128
    opened = len(server.requests)
    np.testing.assert_array_equal(zarr.open_array(grouped, path="0", mode="r")[0, 0], h5py_level(path, 0, 0, 0))
    assert len(server.requests) - opened == groups


def test_a_plane_fetches_little_more_than_its_chunks(server: FileServer, files: Path) -> None:
    path = files / "many-chunks.ims"
    store = ImsStore(server.url(path.name))
    opened = len(server.requests)
    plane = zarr.open_array(store, path="0", mode="r")[0, 0, 13]  # the 16 chunks of z block 3
    np.testing.assert_array_equal(plane, h5py_level(path, 0, 0, 0)[13])
    fetched = 0
    for _, _, byte_range in server.requests[opened:]:
        start, stop = map(int, byte_range.removeprefix("bytes=").split("-"))
        fetched += stop + 1 - start
    with h5py.File(path, "r") as f:
        ds = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"]
        needed = sum(ds.id.get_chunk_info_by_coord((12, y * 32, x * 32)).size for y in range(4) for x in range(4))
    assert fetched <= 3 * needed


def test_any_fsspec_url_even_a_file_system_without_an_event_loop(real_files: dict[str, Path]) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/ims-store-tests/PtK2Cell.ims", real_files["PtK2Cell.ims"].read_bytes())
    try:
        store = ImsStore("memory://ims-store-tests/PtK2Cell.ims")
        assert_group_matches_h5py(zarr.open_group(store, mode="r"), real_files["PtK2Cell.ims"])
    finally:
        fs.rm("/ims-store-tests", recursive=True)


def test_http_responses_are_read_in_large_pieces_unless_told_otherwise(server: FileServer) -> None:
    store = ImsStore(server.url("PtK2Cell.ims"))
    assert store._file.source.fs.client_kwargs["read_bufsize"] == 4 * 2**20
    options = {"client_kwargs": {"read_bufsize": 2**16, "trust_env": True}}
    store = ImsStore(server.url("PtK2Cell.ims"), storage_options=options)
    assert store._file.source.fs.client_kwargs == {"read_bufsize": 2**16, "trust_env": True}
    assert store.get_sync("0/c/0/0/0/0/0") is not None
    assert options == {"client_kwargs": {"read_bufsize": 2**16, "trust_env": True}}  # the caller's, untouched


def test_read_ahead_must_be_a_number_of_bytes(server: FileServer) -> None:
    for bad in (-1, 1.5, True, "64M"):
        with pytest.raises(ValueError, match="read_ahead"):
            ImsStore(server.url("PtK2Cell.ims"), read_ahead=bad)  # type: ignore[arg-type]


@pytest.mark.real_file("PyramidalCell.ims")
def test_remote_store_pickles_and_compares(server: FileServer) -> None:
    store = ImsStore(server.url("PyramidalCell.ims"), zarr_format=2)
    clone = pickle.loads(pickle.dumps(store))
    assert clone == store
    assert clone.get_sync("0/0/0/1/0/0").to_bytes() == store.get_sync("0/0/0/1/0/0").to_bytes()
    assert pickle.loads(pickle.dumps(ImsStore(server.url("PtK2Cell.ims"), read_ahead=0))).read_ahead == 0


def test_remote_errors_name_the_url(server: FileServer) -> None:
    with pytest.raises(ImsFileNotFoundError, match=r"missing\.ims"):
        ImsStore(server.url("missing.ims"))
    with pytest.raises(NotHDF5Error, match=r"text\.ims"):
        ImsStore(server.url("text.ims"))


@pytest.mark.parametrize("args", [["info"], ["info", "--json"], ["validate"], ["validate", "--deep"]])
@pytest.mark.real_file("PyramidalCell.ims")
def test_info_and_validate_take_a_url_and_say_what_they_say_of_the_local_file(
    server: FileServer, files: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, local = server.url("PyramidalCell.ims"), str(files / "PyramidalCell.ims")
    outputs = []
    for where in (url, local):
        assert main([*args, where]) == 0
        outputs.append(capsys.readouterr().out.replace(where, "FILE"))
    assert outputs[0] == outputs[1] and outputs[0].strip()


@pytest.mark.parametrize("after", [0, 2])
@pytest.mark.real_file("PyramidalCell.ims")
def test_validate_on_a_failing_server_says_so_and_not_that_the_file_is_unsound(
    server: FileServer, capsys: pytest.CaptureFixture[str], after: int
) -> None:
    server.fail_with(500, after=after)  # at once, or once the file is open
    assert main(["validate", "--deep", server.url("PyramidalCell.ims")]) == 2
    output = capsys.readouterr()
    assert "the server answered HTTP 500" in output.err and "sound" not in output.out + output.err


@pytest.mark.real_file("PyramidalCell.ims")
def test_info_on_a_failing_server_says_so(server: FileServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.fail_with(500)
    assert main(["info", server.url("PyramidalCell.ims")]) == 2
    assert "cannot be read: the server answered HTTP 500" in capsys.readouterr().err


@pytest.mark.parametrize("status", [403, 500, 503])
def test_a_failing_server_is_reported_as_such_not_as_a_missing_file(server: FileServer, status: int) -> None:
    server.fail_with(status)
    with pytest.raises(RemoteReadError, match=rf"PtK2Cell\.ims: cannot be read: the server answered HTTP {status}"):
        ImsStore(server.url("PtK2Cell.ims"))


def test_a_server_that_is_not_there_is_reported_as_such() -> None:
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RemoteReadError, match=rf"127\.0\.0\.1:{port}/x\.ims: cannot be read: \w+"):
        ImsStore(f"http://127.0.0.1:{port}/x.ims")


def test_chunks_the_server_fails_name_the_chunk_and_the_answer_and_nothing_failed_is_kept(
    server: FileServer, files: Path
) -> None:
    path = files / "many-chunks.ims"
    store = ImsStore(server.url(path.name))
    array = zarr.open_array(store, path="0", mode="r")
    np.testing.assert_array_equal(array[0, 0, :8], h5py_level(path, 0, 0, 0)[:8])  # a walk is under way
    server.fail_with(503)
    with pytest.raises(RemoteReadError, match=r"resolution level 0.* cannot be fetched: bytes \d+\.\.\d+: .*HTTP 503"):
        array[0, 0]
    last = "/".join(str(n - 1) for n in store.tiling(0).served_grid)  # (small chunks are served grouped)
    with pytest.raises(RemoteReadError, match="HTTP 503"):
        store.get_sync(f"0/c/0/0/{last}")
    server.fail_with(None)
    np.testing.assert_array_equal(array[0, 0], h5py_level(path, 0, 0, 0))  # the server is back: all reads again


def test_metadata_the_server_fails_while_opening_is_a_remote_read_error(tmp_path: Path) -> None:
    # 6 MB that do not compress: the metadata write_ims puts last lies beyond the first block
    noise = np.random.default_rng(0).integers(0, 65535, (48, 256, 256), dtype=np.uint16)
    write_ims(noise, tmp_path / "noise.ims", axes="zyx", chunks=(16, 64, 64))
    srv = FileServer(tmp_path)
    try:
        srv.fail_with(500, after=2)  # the size and the first block come; the next block does not
        with pytest.raises(RemoteReadError, match=r"noise\.ims: .*cannot be read: the server answered HTTP 500"):
            ImsStore(srv.url("noise.ims"))
        assert len(srv.requests) == 3
    finally:
        srv.close()


def test_a_chunk_index_the_server_fails_is_named_and_read_again_later(server: FileServer, files: Path) -> None:
    store = ImsStore(server.url("PtK2Cell.ims"))
    store._file.source._reads.handle.cache._blocks.clear()  # as if the metadata blocks had been evicted
    server.fail_with(500)
    index_failed = r"the chunk index of /DataSet/ResolutionLevel 0/.* cannot be read: .*HTTP 500"
    with pytest.raises(RemoteReadError, match=index_failed):
        store.get_sync("0/c/0/1/0/0/0")
    server.fail_with(None)  # the server is back: HDF5 reopens the file, and every read is right
    np.testing.assert_array_equal(
        zarr.open_array(store, path="0", mode="r")[0, 1], h5py_level(files / "PtK2Cell.ims", 0, 0, 1)
    )


# --- S3: moto's server on a loopback port, reached through s3fs like any bucket ---


@pytest.fixture(scope="module")
def s3(files: Path) -> Iterator[S3Server]:
    import s3fs

    srv = S3Server()
    fs = s3fs.S3FileSystem(**srv.storage_options, skip_instance_cache=True)
    fs.mkdir("bucket")
    for path in files.iterdir():
        fs.put(str(path), f"bucket/{path.name}")
    yield srv
    srv.close()


@pytest.mark.parametrize("name", [*REAL_FILES, "uint16-shuffle-gzip-3-levels.ims"])
def test_s3_reads_equal_local_reads(s3: S3Server, files: Path, name: str) -> None:
    store = ImsStore(f"s3://bucket/{name}", storage_options=s3.storage_options)
    assert_group_matches_h5py(zarr.open_group(store, mode="r"), files / name)


def test_s3_requests_to_open_and_to_read_one_chunk_are_few(s3: S3Server) -> None:
    s3.requests.clear()
    store = ImsStore("s3://bucket/PtK2Cell.ims", storage_options=s3.storage_options)
    opened = len(s3.requests)
    assert opened <= 2, s3.requests  # the size and the first block, in one round trip
    store.get_sync("0/c/0/2/1/0/0")
    assert len(s3.requests) == opened + 1, s3.requests[opened:]
    method, _, byte_range = s3.requests[-1]
    assert method == "GET" and byte_range is not None  # a byte range, not the whole object


@pytest.mark.real_file("PyramidalCell.ims")
def test_s3_store_pickles_with_its_storage_options(s3: S3Server, files: Path) -> None:
    store = ImsStore("s3://bucket/PyramidalCell.ims", storage_options=s3.storage_options)
    clone = pickle.loads(pickle.dumps(store))
    assert clone == store
    np.testing.assert_array_equal(
        zarr.open_array(clone, path="1", mode="r")[0, 0], h5py_level(files / "PyramidalCell.ims", 1, 0, 0)
    )


def test_s3_missing_object_names_the_url(s3: S3Server) -> None:
    with pytest.raises(ImsFileNotFoundError, match=r"s3://bucket/missing\.ims"):
        ImsStore("s3://bucket/missing.ims", storage_options=s3.storage_options)
