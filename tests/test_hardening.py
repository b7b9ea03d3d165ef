"""Fuzzing, concurrency, crash safety and server robustness."""

from __future__ import annotations

import errno
import hashlib
import http.client
import itertools
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import dask.array as da
import h5py
import hdf5plugin  # noqa: F401 - h5py reads the LZ4 chunks of re-encoded files
import numpy as np
import pytest
import zarr
from contract import (
    COMMANDS,
    INPUT_VARIANTS,
    OUTPUT_VARIANTS,
    RUN,
    WRITERS,
    Case,
    assert_specific,
    output_for,
    tree_digest,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ims_store import ImsError, ImsStore, WriteError, to_ome_zarr, write_ims
from ims_store.errors import CorruptChunkError, TruncatedFileError
from ims_store.format.attributes import decode_text, parse_float, parse_floats, parse_int
from ims_store.format.chunks import ChunkIndex
from ims_store.format.layout import parse_timestamp
from ims_store.write.synthetic import make_example_ims

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


# how the small file is made, and so its true size (z, y, x) per level: level 1 halved (floor)
SMALL_SHAPE = (6, 40, 30)
SMALL_SIZES = ((6, 40, 30), (3, 20, 15))
LIGHT_COMMANDS = ("open", "info", "read", "validate", "validate-deep")
"""What every fuzzed file goes through; `COMMANDS`' others (serve, convert) on every
`HEAVY_EVERY`-th file only, to keep the run short."""
HEAVY_EVERY = 3


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 levels, 1 time point, 2 channels, uint16, shuffle + gzip, padded: the file every fuzzed
    one is made from."""
    path = make_example_ims(
        tmp_path_factory.mktemp("fuzz") / "small.ims",
        shape=SMALL_SHAPE,
        channels=2,
        timepoints=1,
        threshold_voxels=2000,
        chunks=(4, 16, 16),
    )
    with h5py.File(path, "r") as f:  # `SMALL_SIZES` is what the file records
        levels = [name for name in f["DataSet"] if name.startswith("ResolutionLevel ")]
        assert len(levels) == len(SMALL_SIZES)
        for level, size in enumerate(SMALL_SIZES):
            group = f[f"DataSet/ResolutionLevel {level}/TimePoint 0/Channel 0"]
            assert tuple(int(b"".join(group.attrs[f"ImageSize{a}"])) for a in "ZYX") == size
    return path


@given(st.binary(max_size=40))
def test_text_parsers_never_raise(raw: bytes) -> None:
    text = decode_text(np.frombuffer(raw, dtype="S1") if raw else np.array([b""], dtype="S1"))
    parse_float(text), parse_floats(text), parse_int(text), parse_timestamp(text)


# Imaris writes numbers as text in any float syntax; a count is the text's first number, if whole
_FIRST_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)", re.IGNORECASE)


def _stated_count(raw: bytes) -> int | None:
    """The count an attribute of these bytes states: its first number when that is finite and
    whole, else None. The text ends at the first NUL, as a C string does for Imaris."""
    found = _FIRST_NUMBER.search(raw.split(b"\0", 1)[0].decode("latin-1"))
    value = float(found.group()) if found else math.nan
    return int(value) if math.isfinite(value) and value == int(value) else None


def _true_sizes(path: Path, where: tuple[str, str], raw: bytes) -> tuple[tuple[int, int, int], ...] | None:
    """Each level's size once ``raw`` replaced the attribute ``where``, or None where the file
    then states no usable size (every command must refuse it)."""
    group, name = where
    if not name.startswith("ImageSize"):
        return SMALL_SIZES  # the other attributes do not touch the pixels
    level, axis = int(group.split("/")[1].split(" ")[1]), "ZYX".index(name[-1])
    stated = _stated_count(raw)
    if stated is None:  # level 0 falls back to DataSetInfo/Image X, Y, Z, which hold the true size
        return SMALL_SIZES if level == 0 else None
    with h5py.File(path, "r") as f:
        stored = f[f"{group}/Data"].shape[axis]
    if not 0 < stated <= stored:
        return None
    sizes = [list(size) for size in SMALL_SIZES]
    sizes[level][axis] = stated  # a smaller size, or one reaching into the padding, is the file's word
    return tuple(tuple(size) for size in sizes)  # type: ignore[misc]


# numbers among garbage, so that ImageSize attributes also state sizes: small, in the padding, too big, 0, < 0
_NUMBER_IN_GARBAGE = st.builds(
    lambda before, number, tail, after: before + f"{number}{tail}".encode() + after,
    st.binary(max_size=3),
    st.integers(-2, 50),
    st.sampled_from(["", ".0", ".5", "e1", "e-1", " 7"]),
    st.binary(max_size=3),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(FUZZED), st.one_of(st.binary(min_size=1, max_size=24), _NUMBER_IN_GARBAGE))
@pytest.mark.filterwarnings("ignore::ims_store.format.layout.ImsWarning")
def test_arbitrary_bytes_in_any_attribute(
    small_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: tuple[str, str], raw: bytes
) -> None:
    """Every command on the fuzzed file keeps the bad-input corpus' contract (see `contract`)."""
    work = tmp_path / uuid.uuid4().hex  # a fresh folder per example: stores keep their files open
    work.mkdir()
    path = work / "fuzzed.ims"
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
    case = Case(path, _true_sizes(path, where, raw))
    event("sizes: " + ("refused" if case.sizes is None else "true" if case.sizes == SMALL_SIZES else "stated"))
    heavy = zlib.crc32(repr(where).encode() + raw) % HEAVY_EVERY == 0  # the same files on every run
    for command in COMMANDS if heavy else LIGHT_COMMANDS:
        out = work / command  # conversions must leave their (empty on failure) folder clean
        out.mkdir()
        try:
            observed = RUN[command](case, out, capsys)
        except ImsError as err:
            assert_specific(err, path)
            observed = type(err)
        event(f"{command}: {getattr(observed, '__name__', observed)}")  # --hypothesis-show-statistics


def _decode_as_indexed(
    stored: bytes, pipeline: tuple[int, ...], mask: int, dtype: np.dtype, chunks: tuple[int, ...]
) -> np.ndarray | None:
    """A chunk's voxels from its stored bytes, undoing the filters (HDF5 ids) its mask did not
    skip, last first; None where they do not decode to exactly one chunk."""
    data = stored
    for bit, filter_id in reversed(list(enumerate(pipeline))):
        if mask >> bit & 1:
            continue
        if filter_id == 1:  # deflate: a whole zlib stream (bytes after its end are ignored, as HDF5 does)
            inflater = zlib.decompressobj()
            try:
                data = inflater.decompress(data)
            except zlib.error:
                return None
            if not inflater.eof:
                return None
        elif filter_id == 2:  # shuffle: byte planes back into elements; a partial element stays as stored
            size, whole = dtype.itemsize, len(data) // dtype.itemsize * dtype.itemsize
            planes = np.frombuffer(data[:whole], np.uint8).reshape(size, -1)
            data = planes.T.tobytes() + data[whole:]
        else:
            raise AssertionError(f"no decoder here for HDF5 filter {filter_id}")
    if len(data) != np.prod(chunks) * dtype.itemsize:
        return None
    return np.frombuffer(data, dtype).reshape(chunks)


@pytest.fixture(scope="module")
def small_chunks(small_file: Path) -> list[tuple[int, int]]:
    """(offset, size) of every stored chunk in the small file, from h5py's chunk index."""
    entries: list[tuple[int, int]] = []
    with h5py.File(small_file, "r") as f:
        for name in (f"DataSet/ResolutionLevel {lvl}/TimePoint 0/Channel {c}/Data" for lvl in (0, 1) for c in (0, 1)):
            dsid = f[name].id
            entries += [(i.byte_offset, i.size) for i in map(dsid.get_chunk_info, range(dsid.get_num_chunks()))]
    return entries


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_arbitrary_chunk_index_entries(
    small_file: Path, small_chunks: list[tuple[int, int]], data: st.DataObject
) -> None:
    """Chunk (0, 0, 0) of level 0 read through a chunk index entry of arbitrary offset, size and
    filter mask (arbitrary numbers, or those of a real chunk, this one or another): the chunk
    those bytes decode to, or a CorruptChunkError / TruncatedFileError naming file and chunk."""
    offset, size = data.draw(
        st.one_of(
            st.tuples(st.integers(-(2**62), 2**62), st.integers(-(2**40), 2**40)),
            st.sampled_from(small_chunks),
            st.tuples(st.sampled_from([o for o, _ in small_chunks]), st.integers(-(2**20), 2**20)),
        ),
        label="offset, size",
    )
    mask = data.draw(st.integers(0, 3), label="mask")
    store = ImsStore(small_file)
    good = store.engine.index(0, 0, 0)
    offsets, sizes, masks = good.offsets.copy(), good.sizes.copy(), good.masks.copy()
    offsets[0, 0, 0], sizes[0, 0, 0], masks[0, 0, 0] = max(offset, -1), size, mask
    store.engine._indexes[(0, 0, 0)] = ChunkIndex(good.chunks, offsets, sizes, masks, good.filters)
    try:
        chunk = store.read_chunk(0, 0, 0, 0, 0, 0)
    except (CorruptChunkError, TruncatedFileError) as err:
        assert_specific(err, small_file)
        assert "chunk (0, 0, 0) " in err.reason and "resolution level 0, time point 0, channel 0" in err.reason, err
        event(type(err).__name__)
        return
    with h5py.File(small_file, "r") as f:
        dataset = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"]
        region = tuple(slice(0, n) for n in dataset.chunks)
        if offset < 0:  # never written: HDF5's fill value
            event("read: never written")
            expected = np.full(dataset.chunks, dataset.fillvalue, dataset.dtype)
        elif size > 2 * dataset.dtype.itemsize * np.prod(dataset.chunks) + 65536:
            # more than any deflate or shuffle output of the chunk: the store asks HDF5 instead
            event("read: by HDF5, an entry too large to read by offset")
            expected = dataset[region]
        else:
            plist = dataset.id.get_create_plist()
            pipeline = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
            whole = small_file.read_bytes()
            in_file = 0 <= size and offset + size <= len(whole)
            stored = whole[offset : offset + size] if in_file else b""
            expected = _decode_as_indexed(stored, pipeline, mask, dataset.dtype, dataset.chunks)
            assert in_file and expected is not None, f"read a chunk from bytes {offset}..{offset + size}"
            if (offset, size, mask) == good.locate(0, 0, 0):  # the true entry: the decoder agrees with HDF5
                np.testing.assert_array_equal(expected, dataset[region])
            event("read: the true entry" if (offset, size) == good.locate(0, 0, 0)[:2] else "read: other bytes")
    np.testing.assert_array_equal(chunk, expected)


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
    import psutil  # (distributed's dependency, so the test extra's) on every OS, unlike /proc

    return psutil.Process().memory_info().rss


def test_server_under_load(synthetic_files: dict[str, Path]) -> None:
    from ims_store.fronts.serve import make_server

    path = synthetic_files["uint16-shuffle-gzip-3-levels"]  # 2 time points, 2 channels, 3 levels: many chunks
    server = make_server(path, port=0, ngff="0.4")  # zarr v2 passes the stored deflate chunks through
    server.serve_in_thread()
    store = server.store
    expected = {key: store.get_sync(key).to_bytes() for key in store.documents}
    with h5py.File(path, "r") as f:  # every allocated chunk's stored bytes, as HDF5 itself reads them
        for level, t, c in itertools.product(range(3), range(2), range(2)):
            ds = f[f"DataSet/ResolutionLevel {level}/TimePoint {t}/Channel {c}/Data"]
            for i in range(ds.id.get_num_chunks()):
                offset = ds.id.get_chunk_info(i).chunk_offset
                grid = "/".join(str(o // n) for o, n in zip(offset, ds.chunks, strict=True))
                expected[f"{level}/{t}/{c}/{grid}"] = ds.id.read_direct_chunk(offset)[1]
    keys = list(expected)
    assert len(keys) - len(store.documents) > 100
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
    from ims_store.fronts.serve import make_server

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
    write_ims(np.random.default_rng(3).integers(0, 4000, (64, 512, 512), "uint16"), sys.argv[2], axes="zyx", workers=1)
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
        proc.kill()  # SIGKILL on POSIX, TerminateProcess on Windows: no handler, no clean-up runs
        proc.wait()
        killed = proc.returncode != 0
        if killed and not target.exists():
            # killed before the final rename: at most a hidden temporary beside the destination
            mid_write += bool(list(tmp_path.glob(f".{target.name}.*.part")))
            continue
        # finished, or killed after the rename while the interpreter shut down: the output is whole
        assert proc.returncode in (0, -signal.SIGKILL if hasattr(signal, "SIGKILL") else 1), proc.returncode
        _assert_same_output(target, reference)
    assert mid_write >= 3, f"only {mid_write} kills landed while the output was written ({writing:.2f} s)"
    assert _digest(source) == before


def test_full_disk_gives_a_clear_error_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synthetic_files: dict[str, Path]
) -> None:
    from ims_store.write import writer

    calls = {"n": 0}
    original = writer.ChunkSink._write_one

    def failing(self: writer.ChunkSink) -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(self)

    monkeypatch.setattr(writer.ChunkSink, "_write_one", failing)
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


# its twin, everywhere: test_full_disk_gives_a_clear_error_and_cleans_up
@pytest.mark.posix_only("resource.setrlimit", "signal.SIGXFSZ")
def test_a_real_write_failure_through_hdf5_is_a_clear_error(tmp_path: Path) -> None:
    """No mocking: the operating system refuses the bytes past 2 MiB, and the error comes up through HDF5."""
    target = tmp_path / "limited.ims"
    proc = subprocess.run([sys.executable, "-c", _FILE_SIZE_LIMITED, str(target)], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert str(target) in proc.stdout and "writing failed" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # neither the destination nor the temporary file


# --------------------------------------------------------------------------------------------
# no command that writes destroys its input, whatever its output is named (see `contract.WRITERS`)


def _writer_cases() -> list[tuple[str, str]]:
    cases = []
    for name, writer in WRITERS.items():
        for variant in OUTPUT_VARIANTS:
            if variant == "output == input" and writer.output_suffix not in ("", ".json", f".{writer.input_kind}"):
                continue  # the input's own name makes it another command (ims -> ims); its aliases are named apart
            if variant == "output == input (hard link)" and writer.input_kind == "zarr":
                continue  # folders have no hard links
            cases.append((name, variant))
        if writer.input_kind == "zarr":
            cases += [(name, variant) for variant in INPUT_VARIANTS]
    return cases


@pytest.fixture(scope="module")
def writer_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An Imaris file with analysis objects (for the export) and an OME-Zarr made from it."""
    from ims_store.write.examples import tracks_file

    folder = tmp_path_factory.mktemp("writer-sources")
    ims = tracks_file(folder / "in.ims")
    return {"ims": ims, "zarr": to_ome_zarr(ims, folder / "in.ome.zarr")}


_REFUSALS = {
    "output == input": "is the input",
    "output == input (symlink)": "is the input",
    "output == input (hard link)": "is the input",
    "output holds input": "holds the input",
    "input holds output": "lies inside the input",
}


@pytest.mark.parametrize(("command", "variant"), _writer_cases())
def test_no_command_writes_over_its_input(
    writer_sources: dict[str, Path], tmp_path: Path, command: str, variant: str
) -> None:
    """The command refuses (exit status 2, one line naming the output and why) before writing
    anything, and the input is byte for byte what it was; an export, which only adds files to
    its folder, may write beside its input but never over it."""
    import shutil

    writer = WRITERS[command]
    # the input lies in a folder named as the output would be, holding zarr metadata: an earlier
    # conversion's output, which an overwriting one replaces
    holder = tmp_path / f"holder{writer.output_suffix}"
    holder.mkdir()
    (holder / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    original = writer_sources[writer.input_kind]
    source = holder / original.name
    if original.is_dir():
        shutil.copytree(original, source)
    else:
        shutil.copyfile(original, source)
    output = output_for(variant, source, tmp_path, writer)
    before = tree_digest(source)
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = subprocess.run(
        [sys.executable, "-m", "ims_store.fronts.cli", *writer.argv(source, output)], capture_output=True, text=True
    )
    assert tree_digest(source) == before, f"{command} changed its input ({variant})"
    if not writer.replaces and variant == "output holds input":
        assert proc.returncode == 0, proc.stderr  # files added beside the input, none over it
        return
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and _REFUSALS[variant] in proc.stderr and str(output) in proc.stderr, (
        proc.stderr
    )
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == made, "the refused command wrote something"
