"""Remote .ims through fsspec: a loopback HTTP server with byte ranges and a moto S3 server; requests are
counted."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import REAL_FILES, assert_group_matches_h5py, h5py_level
from http_files import FileServer
from s3_server import S3Server

from ims_store import ImsFileNotFoundError, ImsStore, NotHDF5Error


@pytest.fixture(scope="module")
def files(real_files: dict[str, Path], synthetic_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("served")
    for path in [*real_files.values(), synthetic_files["uint16-shuffle-gzip-3-levels"]]:
        shutil.copyfile(path, root / path.name)
    (root / "text.ims").write_text("not hdf5\n" * 100)
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
    store = ImsStore(server.url("PtK2Cell.ims"))  # 1.4 MB: the metadata fits the block cache
    opened = len(server.requests)
    assert opened <= 4, server.requests
    store.get_sync("zarr.json")
    assert len(server.requests) == opened  # metadata is served from the parse
    store.get_sync("0/c/0/2/1/0/0")
    assert len(server.requests) == opened + 1  # the chunk index comes from the cached metadata blocks
    store.get_sync("0/c/0/2/0/0/0")
    assert len(server.requests) == opened + 2  # one range request per chunk


def test_remote_store_pickles_and_compares(server: FileServer) -> None:
    store = ImsStore(server.url("PyramidalCell.ims"), zarr_format=2)
    clone = pickle.loads(pickle.dumps(store))
    assert clone == store
    assert clone.get_sync("0/0/0/1/0/0").to_bytes() == store.get_sync("0/0/0/1/0/0").to_bytes()


def test_remote_errors_name_the_url(server: FileServer) -> None:
    with pytest.raises(ImsFileNotFoundError, match=r"missing\.ims"):
        ImsStore(server.url("missing.ims"))
    with pytest.raises(NotHDF5Error, match=r"text\.ims"):
        ImsStore(server.url("text.ims"))


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
    assert opened <= 4, s3.requests
    store.get_sync("0/c/0/2/1/0/0")
    assert len(s3.requests) == opened + 1, s3.requests[opened:]
    method, _, byte_range = s3.requests[-1]
    assert method == "GET" and byte_range is not None  # a byte range, not the whole object


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
