"""The shared thread pools (decoding, waiting) and reading stored bytes into a reused buffer."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st

from ims_store import ImsStore
from ims_store.access import files
from ims_store.access.files import LocalFile, read_range, scratch_buffer
from ims_store.access.workers import DECODE_THREADS, run_blocking, run_decoding

DATA = "DataSet/ResolutionLevel 0/TimePoint 0/Channel 1/Data"


def test_decoding_runs_on_one_thread_per_core() -> None:
    names = {run_decoding(lambda: threading.current_thread().name).result(timeout=30) for _ in range(50)}
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        cores = os.process_cpu_count()
    elif hasattr(os, "sched_getaffinity"):  # Linux
        cores = len(os.sched_getaffinity(0))
    else:  # macOS, Windows
        cores = os.cpu_count()
    assert DECODE_THREADS == cores
    assert 1 <= len(names) <= DECODE_THREADS
    assert all(name.startswith("ims-store-decode") for name in names)


def _read_in_child(path: str, queue: multiprocessing.Queue) -> None:
    try:
        got = zarr.open_array(ImsStore(path), path="0", mode="r")[0, 1]
        waited = run_blocking(lambda: 7).result(timeout=30)
        queue.put((got, waited))
    except BaseException as err:  # reported to the parent rather than lost with the child
        queue.put(err)


@pytest.mark.posix_only("os.fork")
# forking a process with threads is what is tested (dask's process scheduler and multiprocessing
# pools do it on Linux); Python 3.12+ warns of it
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_reads_with_pools_of_its_own(synthetic_files: dict[str, Path]) -> None:
    """A pool inherited through fork has no threads behind it: the child must make its own (else
    its first read would wait forever)."""
    _read_in_a_child(synthetic_files["uint16-shuffle-gzip-3-levels"], "fork")


def test_a_spawned_child_reads(synthetic_files: dict[str, Path]) -> None:
    """The fork test's twin on every OS: a child started by ``spawn`` (Windows', macOS' default)
    while the parent's pools run reads right through its own."""
    _read_in_a_child(synthetic_files["uint16-shuffle-gzip-3-levels"], "spawn")


def _read_in_a_child(path: Path, method: str) -> None:
    zarr.open_array(ImsStore(path), path="0", mode="r")[0, 1]  # the parent's pools exist now
    run_blocking(lambda: None).result(timeout=30)
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(str(path), queue))
    child.start()
    try:
        found = queue.get(timeout=60)
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    assert not isinstance(found, BaseException), found
    got, waited = found
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(got, f[DATA][: got.shape[0], : got.shape[1], : got.shape[2]])
    assert waited == 7


@pytest.mark.posix_only("os.pread")  # twin: test_platforms.test_read_through_thread_handles_reads_the_bytes
@given(data=st.binary(min_size=0, max_size=5000), start=st.integers(0, 5000), size=st.integers(0, 5000))
def test_read_range_into_a_buffer_reads_what_pread_reads(tmp_path_factory, data: bytes, start: int, size: int) -> None:
    path = tmp_path_factory.mktemp("r") / "f.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        buffer = bytearray(size + 3)
        if start + size > len(data):
            with pytest.raises(EOFError):
                read_range(fd, start, size, buffer)
            with pytest.raises(EOFError):
                read_range(fd, start, size)
        else:
            got = read_range(fd, start, size, buffer)
            assert bytes(got) == data[start : start + size] == read_range(fd, start, size)
            assert bytes(buffer[:size]) == data[start : start + size]  # read into the buffer itself
    finally:
        os.close(fd)


def test_scratch_buffers_are_one_per_thread_and_grow() -> None:
    first = scratch_buffer(10)
    assert scratch_buffer(5) is first
    grown = scratch_buffer(len(first) + 1)
    assert len(grown) >= len(first) + 1 and scratch_buffer(1) is grown
    other = run_decoding(scratch_buffer, 10).result(timeout=30)
    assert other is not grown


@pytest.mark.parametrize("portable", [False, True])
@given(
    data=st.binary(min_size=1, max_size=3000),
    cuts=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 400), st.booleans()), max_size=12),
    limit=st.sampled_from([1, 64, 700, 1 << 20]),
)
def test_read_ranges_gives_each_range_and_reads_neighbours_together(
    tmp_path_factory, data: bytes, cuts: list[tuple[int, int, bool]], limit: int, portable: bool
) -> None:
    """Ranges in order, some right after the one before (``True``), some anywhere: each view
    holds the bytes of its range, and a range is read with the one before it when it follows
    it in the file and their read stays within the limit."""
    path = tmp_path_factory.mktemp("r") / "f.bin"
    path.write_bytes(data)
    offsets: list[int] = []
    sizes: list[int] = []
    for start, size, follows in cuts:
        offset = offsets[-1] + sizes[-1] if follows and offsets else start % len(data)
        if offset >= len(data):
            break
        offsets.append(offset)
        sizes.append(min(size, len(data) - offset))
    if not portable and not hasattr(os, "pread"):
        pytest.skip("no os.pread here: the portable case runs")
    reads = []
    read_range, read_at = files.read_range, files._read_at  # each path's one read call
    with mock.patch.dict(os.environ, {files.PORTABLE_READS_VARIABLE: "1" if portable else "0"}):
        source = LocalFile(str(path))
    assert source.portable is portable
    with (
        mock.patch.object(files, "read_range", lambda fd, at, n, into: reads.append(at) or read_range(fd, at, n, into)),
        mock.patch.object(files, "_read_at", lambda fh, at, n, into: reads.append(at) or read_at(fh, at, n, into)),
        mock.patch.object(files, "MERGED_READ_BYTES", limit),
    ):
        got = [bytes(view) for view in source.read_ranges(offsets, sizes)]  # each copied before the next is taken
    source.close()
    assert got == [data[o : o + n] for o, n in zip(offsets, sizes, strict=True)]
    runs: list[list[int]] = []  # [start, stop] of each read, found independently
    for o, n in zip(offsets, sizes, strict=True):
        if runs and o == runs[-1][1] and o + n - runs[-1][0] <= limit:
            runs[-1][1] += n
        else:
            runs.append([o, o + n])
    assert reads == [start for start, _ in runs]


@pytest.mark.parametrize("portable", [False, True])
def test_read_ranges_past_the_end_of_the_file_raise_eof(tmp_path: Path, portable: bool, monkeypatch) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    if not portable and not hasattr(os, "pread"):
        pytest.skip("no os.pread here: the portable case runs")
    monkeypatch.setenv(files.PORTABLE_READS_VARIABLE, "1" if portable else "0")
    source = LocalFile(str(path))
    assert source.portable is portable
    ranges = source.read_ranges([0, 5, 8], [4, 2, 4])  # apart: three reads, the last short
    assert bytes(next(ranges)) == b"0123" and bytes(next(ranges)) == b"56"
    with pytest.raises(EOFError):
        next(ranges)
    with pytest.raises(EOFError):  # neighbours read together: the read of both falls short
        list(source.read_ranges([0, 4], [4, 8]))
    source.close()
