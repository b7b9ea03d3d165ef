"""Remote .ims through fsspec: a loopback HTTP server with byte ranges; requests are counted."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import zarr
from helpers import REAL_FILES, assert_group_matches_h5py
from http_files import FileServer

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
