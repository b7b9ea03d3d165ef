"""Windows and macOS: paths as their users type them, reads without ``os.pread``, h5py's HDF5
library where their wheels put it, output to a console or file of another encoding.

What can only be known on those systems is tested by its rule here: path parsing with Windows'
semantics (``PureWindowsPath``), the library lookup on fake wheel layouts; the rest runs for real
on this OS (and the whole suite again under ``nox -s portable``, without ``os.pread``).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath, PureWindowsPath
from unittest import mock

import numpy as np
import pytest
import zarr
from helpers import h5py_level
from hypothesis import given
from hypothesis import strategies as st

from ims_store import ImsStore, read_layout
from ims_store.access import files
from ims_store.access.files import (
    PORTABLE_READS_VARIABLE,
    LocalFile,
    file_url_path,
    is_remote,
    local_path,
    location,
    portable_reads,
)
from ims_store.errors import ImsError
from ims_store.format import hdf5lib

# --- paths ---------------------------------------------------------------------------------------

WINDOWS_PATHS = [
    r"C:\data\cells.ims",
    r"C:\my data\día 1\cells.ims",
    r"\\server\share\cells.ims",
    r"\\server\share\my folder\cells.ims",
    r"D:\cells.ims",
]


@pytest.mark.parametrize("typed", WINDOWS_PATHS)
def test_a_windows_path_is_a_local_path_as_typed(typed: str) -> None:
    assert local_path(typed, windows=True) == typed
    assert local_path(typed, windows=False) == typed  # (a drive letter is never a URL scheme)
    assert not is_remote(typed) and location(typed) == typed


@pytest.mark.parametrize("typed", WINDOWS_PATHS)
def test_what_as_uri_writes_on_windows_reads_back_as_the_path(typed: str) -> None:
    uri = PureWindowsPath(typed).as_uri()  # file:///C:/my%20data/... and file://server/share/...
    assert local_path(uri, windows=True) == str(PureWindowsPath(typed))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("file:///C:/data/cells.ims", r"C:\data\cells.ims"),
        ("file://localhost/C:/data/cells.ims", r"C:\data\cells.ims"),
        ("file://LOCALHOST/C:/data/cells.ims", r"C:\data\cells.ims"),
        ("file:/C:/data/cells.ims", r"C:\data\cells.ims"),
        ("file:///C|/data/cells.ims", r"C:\data\cells.ims"),  # the old browsers' form
        ("file:///c:/my%20data/cells.ims", r"c:\my data\cells.ims"),
        ("file://server/share/cells.ims", r"\\server\share\cells.ims"),
        ("file:////server/share/cells.ims", r"\\server\share\cells.ims"),
        ("FILE:///C:/data/cells.ims", r"C:\data\cells.ims"),
    ],
)
def test_file_urls_name_windows_paths(url: str, expected: str) -> None:
    assert file_url_path(url, windows=True) == expected
    assert local_path(url, windows=True) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("file:///data/cells.ims", "/data/cells.ims"),
        ("file://localhost/data/cells.ims", "/data/cells.ims"),
        ("file:/data/cells.ims", "/data/cells.ims"),
        ("file:///data/my%20cells%23.ims", "/data/my cells#.ims"),
        ("local:///data/cells.ims", "/data/cells.ims"),
    ],
)
def test_file_urls_name_posix_paths(url: str, expected: str) -> None:
    assert local_path(url, windows=False) == expected


@given(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\0"), min_size=1),
                min_size=1, max_size=4))  # fmt: skip
def test_as_uri_round_trips_any_posix_name(parts: list[str]) -> None:
    path = PurePosixPath("/", *parts)
    if str(path) == "/":
        return
    assert local_path(path.as_uri(), windows=False) == str(path)


def test_a_file_url_of_another_host_is_refused_where_it_cannot_be_reached() -> None:
    with pytest.raises(ImsError, match="another host"):
        local_path("file://server/share/cells.ims", windows=False)


@pytest.mark.parametrize("url", ["s3://bucket/cells.ims", "https://host/cells.ims", "gs://b/c.ims", "memory://c.ims"])
def test_other_urls_stay_urls(url: str) -> None:
    assert local_path(url) is None and is_remote(url) and location(url) == url


@pytest.mark.parametrize("name", ["cells.ims", "notes:1.ims", "data/cells.ims", "ab:cd/cells.ims"])
def test_relative_paths_are_paths(name: str) -> None:
    assert local_path(name) == name and not is_remote(name)


@pytest.fixture
def spaced(tmp_path: Path, synthetic_files: dict[str, Path]) -> Path:
    """A file whose folder and name hold a space and a non-ASCII letter (as_uri escapes both)."""
    folder = tmp_path / "my data ü"
    folder.mkdir()
    path = folder / "my cells.ims"
    shutil.copyfile(synthetic_files["uint16-shuffle-gzip-3-levels"], path)
    return path


def _localhost_uri(path: Path) -> str:
    return path.resolve().as_uri().replace("file://", "file://localhost", 1)


@pytest.mark.parametrize("form", ["as_uri", "localhost"])
def test_file_urls_open_for_real(spaced: Path, form: str) -> None:
    url = spaced.resolve().as_uri() if form == "as_uri" else _localhost_uri(spaced)
    assert "%20" in url
    expected = h5py_level(spaced, 0, 0, 1)
    got = zarr.open_array(ImsStore(url), path="0", mode="r")[0, 1]
    np.testing.assert_array_equal(got, expected)
    assert read_layout(url).levels[0].size == read_layout(spaced).levels[0].size


def test_file_urls_work_in_the_commands(spaced: Path, tmp_path: Path) -> None:
    from ims_store.fronts.cli import main

    url = _localhost_uri(spaced)
    assert main(["info", "--json", url]) == 0
    assert main(["validate", spaced.resolve().as_uri()]) in (0, 1)
    out = tmp_path / "out dir" / "my out.ome.zarr"
    out.parent.mkdir()
    assert main(["convert", url, out.resolve().as_uri(), "--quiet"]) == 0
    assert out.is_dir() and not (tmp_path / "file:").exists()
    np.testing.assert_array_equal(zarr.open_array(out / "0", mode="r")[0, 1], h5py_level(spaced, 0, 0, 1))
    back = tmp_path / "back again.ims"
    assert main(["convert", out.resolve().as_uri(), back.as_uri(), "--quiet"]) == 0
    np.testing.assert_array_equal(h5py_level(back, 0, 0, 1), h5py_level(spaced, 0, 0, 1))


def test_file_urls_work_in_the_api(spaced: Path, tmp_path: Path) -> None:
    from ims_store import to_ome_zarr, write_ims
    from ims_store.write.sources import open_source

    url = spaced.resolve().as_uri()
    out = tmp_path / "api out.ims"
    write_ims(open_source(url), out.as_uri(), progress=False)
    np.testing.assert_array_equal(h5py_level(out, 0, 0, 1), h5py_level(spaced, 0, 0, 1))
    zarr_out = tmp_path / "api out.zarr"
    to_ome_zarr(url, zarr_out.as_uri(), progress=False)
    np.testing.assert_array_equal(zarr.open_array(zarr_out / "0", mode="r")[0, 1], h5py_level(spaced, 0, 0, 1))


def test_a_tiff_opens_from_a_file_url(tmp_path: Path) -> None:
    import tifffile

    from ims_store.write.tiff_source import read_tiff

    path = tmp_path / "my planes.tif"
    planes = np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8)
    tifffile.imwrite(path, planes, photometric="minisblack")
    tiff = read_tiff(path.as_uri())
    np.testing.assert_array_equal(tiff.voxels[:], planes)


# --- reads without os.pread -----------------------------------------------------------------------


@pytest.fixture(params=["pread", "portable"])
def read_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each local read path: ``os.pread`` (where the OS has it) and per-thread handles."""
    if request.param == "pread" and not hasattr(os, "pread"):
        pytest.skip("this platform has no os.pread (the portable path runs instead)")
    monkeypatch.setenv(PORTABLE_READS_VARIABLE, "1" if request.param == "portable" else "0")
    return request.param


def test_the_variable_forces_the_portable_path(read_path: str, tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    assert portable_reads() is (read_path == "portable")
    assert LocalFile(str(path)).portable is (read_path == "portable")


def test_without_pread_the_store_reads_what_h5py_reads(synthetic_files: dict[str, Path], monkeypatch) -> None:
    """Windows has neither ``os.pread`` nor ``os.preadv``: every chunk is still read, and right."""
    for name in ("pread", "preadv"):
        monkeypatch.delattr(os, name, raising=False)
    monkeypatch.setattr(files, "_preadv", None)
    for variant in ("uint16-shuffle-gzip-3-levels", "12-timepoints-3-channels"):
        path = synthetic_files[variant]
        store = ImsStore(path)
        assert store._file.source.portable
        for level in range(len(store.layout.levels)):
            got = zarr.open_array(store, path=str(level), mode="r")[0, 1]
            np.testing.assert_array_equal(got, h5py_level(path, level, 0, 1))
        store.close()


@given(data=st.binary(min_size=0, max_size=5000), start=st.integers(0, 5000), size=st.integers(0, 5000))
def test_read_through_thread_handles_reads_the_bytes(tmp_path_factory, data: bytes, start: int, size: int) -> None:
    path = tmp_path_factory.mktemp("r") / "f.bin"
    path.write_bytes(data)
    with mock.patch.dict(os.environ, {PORTABLE_READS_VARIABLE: "1"}):
        source = LocalFile(str(path))
    assert source.portable
    try:
        buffer = bytearray(size + 3)
        if size and start + size > len(data):
            with pytest.raises(EOFError):
                source.read(start, size, buffer)
            with pytest.raises(EOFError):
                source.read(start, size)
        else:
            assert bytes(source.read(start, size, buffer)) == data[start : start + size]
            assert bytes(buffer[:size]) == data[start : start + size]  # read into the buffer itself
            assert source.read(start, size) == data[start : start + size]
        assert source.size() == len(data)
    finally:
        source.close()


def test_threads_reading_at_once_each_get_their_bytes(tmp_path: Path) -> None:
    """Threads that read at once, each at its own places: no position is shared, so none reads
    another's bytes; every thread read through a handle of its own."""
    data = np.random.default_rng(0).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with mock.patch.dict(os.environ, {PORTABLE_READS_VARIABLE: "1"}):
        source = LocalFile(str(path))
    handles: dict[int, int] = {}

    def read(seed: int) -> bool:
        rng = np.random.default_rng(seed)
        for _ in range(300):
            at, n = int(rng.integers(0, len(data) - 4096)), int(rng.integers(1, 4096))
            if bytes(source.read(at, n, bytearray(n))) != data[at : at + n]:
                return False
        handles[threading.get_ident()] = id(source._handles._local.handle)  # type: ignore[union-attr]
        return True

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(read, range(32)))
    assert len(set(handles.values())) == len(handles)  # one handle per thread
    source.close()
    assert not source.is_open


def test_close_during_reads_serves_only_this_files_bytes(read_path: str, synthetic_files, tmp_path: Path) -> None:
    """Closing while threads read (each path): every read returns this file's bytes, the reads
    after a close open the file again, and a close at the end leaves nothing open."""
    path = synthetic_files["12-timepoints-3-channels"]
    expected = h5py_level(path, 0, 5, 1)
    store = ImsStore(path)
    decoy = tmp_path / "decoy.bin"
    decoy.write_bytes(b"\xff" * 2**20)
    decoys = []

    def read(i: int) -> bool:
        if i % 10 == 0:
            store.close()
            decoys.append(open(decoy, "rb"))  # held open: it takes a number just freed
        return np.array_equal(zarr.open_array(store, path="0", mode="r")[5, 1], expected)

    try:
        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(read, range(100)))
    finally:
        for fh in decoys:
            fh.close()
    assert store._file.source.portable is (read_path == "portable")
    store.close()
    assert not store._file.source.is_open


def test_the_handle_of_an_ended_thread_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    with mock.patch.dict(os.environ, {PORTABLE_READS_VARIABLE: "1"}):
        source = LocalFile(str(path))
    seen = []
    for _ in range(5):  # five threads, one after the other, each ending
        thread = threading.Thread(target=lambda: seen.append(source._handles._local.handle if source.read(0, 2) else 0))
        thread.start()
        thread.join()
    assert source.read(2, 3) == b"234"
    assert all(handle.closed for handle in seen[:-1])  # the ended threads' (the last ended too: closed by this read)
    assert len(source._handles._open) == 1  # only this thread's is kept
    source.close()
    assert not source.is_open


def test_close_does_not_wait_for_a_read_in_flight(tmp_path: Path) -> None:
    """A thread stopped mid-read (a daemon thread at exit) must not hold up `close`: the handle
    is closed by the read when it ends, and a read after `close` takes a new one."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    with mock.patch.dict(os.environ, {PORTABLE_READS_VARIABLE: "1"}):
        source = LocalFile(str(path))
    reading, finish = threading.Event(), threading.Event()
    read_at = files._read_at

    def slow(fh, at, n, into):  # type: ignore[no-untyped-def]
        reading.set()
        assert finish.wait(60)
        return read_at(fh, at, n, into)

    with mock.patch.object(files, "_read_at", slow), ThreadPoolExecutor(1) as pool:
        pending = pool.submit(source.read, 3, 4)
        assert reading.wait(60)
        handle = source._handles._open[0]  # type: ignore[union-attr]
        source.close()  # returns at once
        assert source.is_open and not handle.closed  # still in use
        finish.set()
        assert pending.result(timeout=60) == b"3456"
    assert handle.closed and not source.is_open
    assert source.read(0, 2) == b"01"  # opened again
    source.close()
    assert not source.is_open


# --- h5py's HDF5 library ---------------------------------------------------------------------------


def _layout(root: Path, files_: list[str]) -> Path:
    for name in files_:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    (root / "h5py").mkdir(exist_ok=True)
    return root / "h5py"


@pytest.mark.parametrize(
    ("wheel", "present", "expected"),
    [
        (
            "Linux (auditwheel)",
            ["h5py.libs/libhdf5-9e18f0c6.so.320.0.0", "h5py.libs/libhdf5_hl-69da89c9.so.320.0.0", "h5py.libs/libsz.so"],
            ["h5py.libs/libhdf5-9e18f0c6.so.320.0.0"],
        ),
        (
            "macOS (delocate)",
            ["h5py/.dylibs/libhdf5.310.dylib", "h5py/.dylibs/libhdf5_hl.310.dylib", "h5py/.dylibs/libsz.2.dylib"],
            ["h5py/.dylibs/libhdf5.310.dylib"],
        ),
        (
            "Windows (h5py's bundling)",
            ["h5py/hdf5.dll", "h5py/hdf5_hl.dll", "h5py/zlib.dll", "h5py/_errors.cp312-win_amd64.pyd"],
            ["h5py/hdf5.dll"],
        ),
        (
            "Windows (delvewheel)",
            ["h5py.libs/hdf5-4f1a2b3c.dll", "h5py.libs/hdf5_hl-9d8e7f6a.dll", "h5py.libs/zlib-1234.dll"],
            ["h5py.libs/hdf5-4f1a2b3c.dll"],
        ),
        ("a build on the system's HDF5 (nothing bundled)", ["h5py/_errors.so"], []),
    ],
)
def test_the_library_is_looked_for_where_each_wheel_puts_it(
    tmp_path: Path, wheel: str, present: list[str], expected: list[str]
) -> None:
    package = _layout(tmp_path, present)
    found = hdf5lib.candidates(package_dir=str(package), loaded=[])
    assert found == [os.path.realpath(tmp_path / name) for name in expected], wheel


def test_a_loaded_library_comes_first_and_others_are_left_out(tmp_path: Path) -> None:
    package = _layout(tmp_path, ["h5py/.dylibs/libhdf5.310.dylib"])
    loaded = ["/usr/lib/libc.so.6", "/opt/h5py/libhdf5_hl.so.310", "/opt/h5py/libhdf5.so.310", r"C:\py\h5py\hdf5.dll"]
    found = hdf5lib.candidates(package_dir=str(package), loaded=loaded)
    bundled = os.path.realpath(package / ".dylibs/libhdf5.310.dylib")
    assert found == ["/opt/h5py/libhdf5.so.310", r"C:\py\h5py\hdf5.dll", bundled]


def test_only_h5pys_own_copy_of_the_library_is_taken(tmp_path: Path) -> None:
    """Another copy of the same library (as a second HDF5 bundled by another package would be)
    fails the check: h5py's identifiers mean nothing in it."""
    own = hdf5lib.library()
    assert own is not None and hdf5lib.is_h5py_library(own)
    copy = tmp_path / "libhdf5-another-copy.so"
    shutil.copyfile(own._name, copy)
    other = ctypes.CDLL(str(copy))
    assert not hdf5lib.is_h5py_library(other)
    hdf5lib.library.cache_clear()
    try:
        with mock.patch.object(hdf5lib, "candidates", lambda: [str(copy), own._name]):
            assert hdf5lib.library()._name == own._name
        hdf5lib.library.cache_clear()
        with mock.patch.object(hdf5lib, "candidates", lambda: [str(copy)]):
            assert hdf5lib.library() is None
    finally:
        hdf5lib.library.cache_clear()


def test_without_the_library_partial_edge_chunks_are_read_by_hdf5_and_right(tmp_path: Path, monkeypatch) -> None:
    """The fallback where h5py's library is not found: a dataset with partial edge chunks, which
    may be stored raw with a filter mask of 0, is left to HDF5 (slower), never read by offset."""
    from corpus import sound_file
    from hdf5_variants import VARIANTS

    path = tmp_path / "partial.ims"
    VARIANTS["partial-chunks-unfiltered-deflate"](sound_file(tmp_path / "sound.ims"), path)
    monkeypatch.setattr("ims_store.format.chunks.chunk_options", lambda dataset: None)
    store = ImsStore(path)
    got = zarr.open_array(store, path="0", mode="r")[0, 0]
    np.testing.assert_array_equal(got, h5py_level(path, 0, 0, 0))
    assert not store.engine.index(0, 0, 0).direct
    store.close()


# --- output in another encoding -------------------------------------------------------------------


def test_demo_redirected_to_a_cp1252_file(tmp_path: Path) -> None:
    """``ims-store demo > out.txt`` on Windows writes cp1252: the tree is drawn in ASCII there."""
    env = {**os.environ, "PYTHONIOENCODING": "cp1252"}
    out = tmp_path / "out.txt"
    with open(out, "wb") as fh:
        result = subprocess.run(
            [sys.executable, "-m", "ims_store.fronts.cli", "demo", "--output", str(tmp_path / "demo.ims")],
            stdout=fh, stderr=subprocess.PIPE, env=env, timeout=240, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode("cp1252", "replace")
    text = out.read_bytes().decode("cp1252")
    assert "|-- 0  shape" in text and "`-- " in text
    assert "├" not in text


def test_demo_in_utf8_keeps_the_box_characters(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run(
        [sys.executable, "-m", "ims_store.fronts.cli", "demo", "--output", str(tmp_path / "demo.ims")],
        capture_output=True, env=env, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "├── 0  shape" in result.stdout.decode("utf-8")


def test_a_path_the_output_cannot_encode_is_replaced_not_fatal(tmp_path: Path, synthetic_files) -> None:
    """A name cp1252 has no letters for (a folder in Chinese) prints as ``?``, not an error."""
    folder = tmp_path / "细胞"
    folder.mkdir()
    path = folder / "cells.ims"
    shutil.copyfile(synthetic_files["uint16-shuffle-gzip-3-levels"], path)
    env = {**os.environ, "PYTHONIOENCODING": "cp1252"}
    result = subprocess.run(
        [sys.executable, "-m", "ims_store.fronts.cli", "info", str(path)],
        capture_output=True, env=env, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode("cp1252", "replace")
    assert str(path).replace("细胞", "??") in result.stdout.decode("cp1252")
