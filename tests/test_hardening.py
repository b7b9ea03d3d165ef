"""Fuzzing, concurrency, crash safety and server robustness."""

from __future__ import annotations

import errno
import hashlib
import http.client
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import dask.array as da
import h5py
import hdf5plugin  # noqa: F401 - h5py reads the LZ4 chunks of re-encoded files
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ims_store import ImsError, ImsStore, WriteError, to_ome_zarr, write_ims
from ims_store.attributes import decode_text, parse_float, parse_floats, parse_int
from ims_store.chunks import ChunkIndex
from ims_store.layout import parse_timestamp
from ims_store.synthetic import make_example_ims

FUZZED = [
    ("DataSet/ResolutionLevel 0/TimePoint 0/Channel 0", "ImageSizeX"),
    ("DataSet/ResolutionLevel 0/TimePoint 0/Channel 0", "ImageSizeZ"),
    ("DataSet/ResolutionLevel 1/TimePoint 0/Channel 0", "ImageSizeY"),
    ("DataSetInfo/Image", "ExtMin0"),
    ("DataSetInfo/Image", "ExtMax2"),
    ("DataSetInfo/Image", "Unit"),
    ("DataSetInfo/Image", "RecordingDate"),
    ("DataSetInfo/Channel 0", "Color"),
    ("DataSetInfo/Channel 0", "ColorRange"),
    ("DataSetInfo/Channel 1", "Name"),
    ("DataSetInfo/TimeInfo", "TimePoint1"),
    ("/", "DataSetDirectoryName"),
]


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_example_ims(
        tmp_path_factory.mktemp("fuzz") / "small.ims",
        shape=(6, 40, 30),
        channels=2,
        timepoints=1,
        threshold_voxels=2000,
        chunks=(4, 16, 16),
    )


@given(st.binary(max_size=40))
def test_text_parsers_never_raise(raw: bytes) -> None:
    text = decode_text(np.frombuffer(raw, dtype="S1") if raw else np.array([b""], dtype="S1"))
    parse_float(text), parse_floats(text), parse_int(text), parse_timestamp(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(FUZZED), st.binary(min_size=1, max_size=24))
@pytest.mark.filterwarnings("ignore::ims_store.layout.ImsWarning")
def test_arbitrary_bytes_in_any_attribute(small_file: Path, tmp_path: Path, where: tuple[str, str], raw: bytes) -> None:
    path = tmp_path / f"fuzzed-{uuid.uuid4().hex}.ims"  # a fresh file per example: stores keep theirs open
    path.write_bytes(small_file.read_bytes())
    group, name = where
    char = h5py.h5t.C_S1.copy()
    char.set_size(1)
    with h5py.File(path, "r+") as f:
        obj = f[group]
        if name in obj.attrs:
            del obj.attrs[name]
        attr = h5py.h5a.create(obj.id, name.encode(), char, h5py.h5s.create_simple((len(raw),)))
        attr.write(np.frombuffer(raw, dtype="S1"), mtype=attr.get_type())
    try:
        store = ImsStore(path)
        for lvl in store.layout.levels:
            data = zarr.open_array(store, path=str(lvl.index), mode="r")[0, 0]
            with h5py.File(path, "r") as f:
                expected = f[store.layout.data_path(lvl.index, 0, 0)][tuple(slice(0, n) for n in lvl.size)]
            np.testing.assert_array_equal(data, expected)
    except ImsError as err:
        assert str(path) in str(err)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(-(2**62), 2**62), st.integers(-(2**40), 2**40), st.integers(0, 3))
def test_arbitrary_chunk_index_entries(small_file: Path, offset: int, size: int, mask: int) -> None:
    store = ImsStore(small_file)
    good = store._index(0, 0, 0)
    offsets, sizes, masks = good.offsets.copy(), good.sizes.copy(), good.masks.copy()
    offsets[0, 0, 0], sizes[0, 0, 0], masks[0, 0, 0] = max(offset, -1), size, mask
    store._indexes[(0, 0, 0)] = ChunkIndex(good.chunks, offsets, sizes, masks, good.filters)
    try:
        chunk = store.read_chunk(0, 0, 0, 0, 0, 0)
    except ImsError as err:
        assert "chunk (0, 0, 0)" in str(err) and str(small_file) in str(err)
    else:
        assert chunk.shape == good.chunks  # a readable range that decodes to a whole chunk


def test_threads_and_a_process_pool_at_once(synthetic_files: dict[str, Path]) -> None:
    from helpers import h5py_level

    path = synthetic_files["12-timepoints-3-channels"]
    expected = np.stack([np.stack([h5py_level(path, 0, t, c) for c in range(3)]) for t in range(12)])
    store = ImsStore(path)
    arr = zarr.open_array(store, path="0", mode="r")
    go = threading.Barrier(9)  # 8 reader threads and the process pool start together

    def reader(_: int) -> list[np.ndarray]:
        go.wait()
        return [arr[t] for t in range(12) for _ in range(3)]

    with ThreadPoolExecutor(8) as pool:
        threads = [pool.submit(reader, i) for i in range(8)]
        go.wait()
        with dask.config.set(scheduler="processes", num_workers=2):
            whole = da.from_zarr(arr).compute()
        results = [f.result() for f in threads]
    np.testing.assert_array_equal(whole, expected)
    for per_thread in results:
        for i, got in enumerate(per_thread):
            np.testing.assert_array_equal(got, expected[i // 3])


def _rss() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) * 1024


def test_server_under_load(synthetic_files: dict[str, Path]) -> None:
    from ims_store.serve import make_server

    path = synthetic_files["uint16-shuffle-gzip-3-levels"]  # 2 time points, 2 channels, 3 levels: many chunks
    server = make_server(path, port=0, ngff="0.4")  # zarr v2 passes the stored deflate chunks through
    server.serve_in_thread()
    store = server.store
    expected = {key: store.get_sync(key).to_bytes() for key in store._metadata}
    with h5py.File(path, "r") as f:  # every allocated chunk's stored bytes, as HDF5 itself reads them
        for level, t, c in itertools.product(range(3), range(2), range(2)):
            ds = f[f"DataSet/ResolutionLevel {level}/TimePoint {t}/Channel {c}/Data"]
            for i in range(ds.id.get_num_chunks()):
                offset = ds.id.get_chunk_info(i).chunk_offset
                grid = "/".join(str(o // n) for o, n in zip(offset, ds.chunks, strict=True))
                expected[f"{level}/{t}/{c}/{grid}"] = ds.id.read_direct_chunk(offset)[1]
    keys = list(expected)
    assert len(keys) - len(store._metadata) > 100
    host, port = server.server_address[:2]
    rng = random.Random(0)
    plan = [rng.choice(keys) for _ in range(2000)]

    def worker(part: list[str]) -> int:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        errors = 0
        for key in part:
            conn.request("GET", "/" + key)
            response = conn.getresponse()
            body = response.read()
            errors += response.status != 200 or body != expected[key]
        conn.close()
        return errors

    try:
        worker(plan[:50])  # warm up: chunk indexes
        start = time.perf_counter()
        with ThreadPoolExecutor(32) as pool:
            errors = sum(pool.map(worker, [plan[:1000][i::32] for i in range(32)]))
            middle = _rss()  # after the first 1,000: threads, connections and caches exist
            errors += sum(pool.map(worker, [plan[1000:][i::32] for i in range(32)]))
            growth = _rss() - middle
        seconds = time.perf_counter() - start
    finally:
        server.shutdown()
        server.server_close()
    assert errors == 0
    assert growth < 16 * 2**20, f"memory grew by {growth / 2**20:.0f} MiB over the second 1,000 requests"
    assert seconds < 60


def test_a_slow_client_does_not_block_others(real_files: dict[str, Path]) -> None:
    from ims_store.serve import make_server

    server = make_server(real_files["PtK2Cell.ims"], port=0)
    server.serve_in_thread()
    host, port = server.server_address[:2]
    slow = socket.create_connection((host, port))
    try:
        slow.sendall(b"GET /zarr.json HT")  # and then nothing
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", "/zarr.json")
        assert conn.getresponse().status == 200
    finally:
        slow.close()
        server.shutdown()
        server.server_close()


_KILLED = """
import sys
from ims_store import to_ome_zarr, write_ims
import numpy as np
if sys.argv[1] == "write":  # random voxels: quick to make, slow to compress, so the writing takes a while
    write_ims(np.random.default_rng(3).integers(0, 4000, (32, 512, 512), "uint16"), sys.argv[2], axes="zyx", workers=1)
elif sys.argv[1] == "reencode":  # .ims -> .ims: the source is an Imaris file that must stay untouched
    write_ims(sys.argv[3], sys.argv[2], compression="lz4", workers=1)
else:
    to_ome_zarr(sys.argv[3], sys.argv[2], codec="zstd", workers=1)
"""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_same_output(result: Path, reference: Path) -> None:
    """Outputs of the same job are equal: every zarr file byte for byte, every .ims dataset value for value
    (an .ims also holds the time of writing, so its bytes differ)."""
    if result.is_dir():
        files = sorted(p.relative_to(result) for p in result.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(reference) for p in reference.rglob("*") if p.is_file())
        for name in files:
            assert (result / name).read_bytes() == (reference / name).read_bytes(), name
        return
    with h5py.File(result, "r") as got, h5py.File(reference, "r") as want:
        names: list[str] = []
        want.visit(lambda name: names.append(name) if isinstance(want[name], h5py.Dataset) else None)
        assert names, "the reference holds no dataset"
        for name in names:
            np.testing.assert_array_equal(got[name][()], want[name][()], err_msg=name)


def _start_and_wait_for_output(args: list[str], folder: Path, name: str) -> tuple[subprocess.Popen, float]:
    """Start the job; return once its temporary output exists beside ``name`` (the writing has begun)."""
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, *args])
    deadline = time.perf_counter() + 120
    while not list(folder.glob(f".{name}.*.part")) and proc.poll() is None:
        assert time.perf_counter() < deadline, "the job never started writing"
        time.sleep(0.002)
    return proc, time.perf_counter()


@pytest.mark.parametrize("kind", ["write", "reencode", "convert"])
def test_sigkill_leaves_nothing_or_a_whole_output(tmp_path: Path, kind: str) -> None:
    source = make_example_ims(tmp_path / "source.ims", shape=(32, 256, 256), channels=2, timepoints=2)
    before = _digest(source)
    suffix = ".zarr" if kind == "convert" else ".ims"
    reference = tmp_path / f"reference{suffix}"
    proc, began = _start_and_wait_for_output([kind, str(reference), str(source)], tmp_path, reference.name)
    assert proc.wait() == 0
    writing = time.perf_counter() - began  # how long the output takes to write, under this machine's load
    mid_write = 0
    # kill points spread over the writing itself, from its first moment to just after its end
    for attempt, fraction in enumerate([0.0, 0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 1.1]):
        target = tmp_path / f"out{attempt}{suffix}"
        proc, _ = _start_and_wait_for_output([kind, str(target), str(source)], tmp_path, target.name)
        time.sleep(writing * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode == -signal.SIGKILL and not target.exists():
            # killed before the final rename: at most a hidden temporary beside the destination
            mid_write += bool(list(tmp_path.glob(f".{target.name}.*.part")))
            continue
        # finished, or killed after the rename while the interpreter shut down: the output is whole
        assert proc.returncode in (0, -signal.SIGKILL), proc.returncode
        _assert_same_output(target, reference)
    assert mid_write >= 3, f"only {mid_write} kills landed while the output was written ({writing:.2f} s)"
    assert _digest(source) == before


def test_full_disk_gives_a_clear_error_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synthetic_files: dict[str, Path]
) -> None:
    from ims_store import writer

    calls = {"n": 0}
    original = writer._ChunkSink._write_one

    def failing(self: writer._ChunkSink) -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(self)

    monkeypatch.setattr(writer._ChunkSink, "_write_one", failing)
    with pytest.raises(WriteError, match="No space left on device") as err:
        write_ims(np.ones((40, 300, 300), np.uint16), tmp_path / "full.ims", axes="zyx")
    assert str(tmp_path / "full.ims") in str(err.value)
    monkeypatch.undo()

    real_write_bytes = Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        if "/c/" in str(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(WriteError, match="No space left on device"):
        to_ome_zarr(synthetic_files["uint8-gzip"], tmp_path / "full.zarr")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


_FILE_SIZE_LIMITED = """
import resource, signal, sys
import numpy as np
from ims_store import WriteError, write_ims
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 2**20, 2 * 2**20))
volume = np.random.default_rng(0).integers(0, 60000, (40, 300, 300), dtype=np.uint16)  # barely compressible
try:
    write_ims(volume, sys.argv[1], axes="zyx")
except WriteError as err:
    print("WriteError:", err)
    sys.exit(3)
"""


def test_a_real_write_failure_through_hdf5_is_a_clear_error(tmp_path: Path) -> None:
    """No mocking: the operating system refuses the bytes past 2 MiB, and the error comes up through HDF5."""
    target = tmp_path / "limited.ims"
    proc = subprocess.run([sys.executable, "-c", _FILE_SIZE_LIMITED, str(target)], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert str(target) in proc.stdout and "writing failed" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # neither the destination nor the temporary file
