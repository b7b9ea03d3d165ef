"""What ims_store promises about the user's data (docs/promises.md), tried the way a user meets
it: an ``.ims -> .ims`` conversion keeps what Imaris keeps beside the image; Ctrl-C and SIGTERM
stop every write within about a second and leave nothing; a write that fails (read-only or full
file system, unwritable folder) is one `WriteError` with nothing left; temporaries of a writer
killed outright are removed by the next write to the same destination; ``demo`` refuses an
existing file. (That no output destroys its input is the hardening contract's, in
`test_hardening.test_no_command_writes_over_its_input`.)"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from ims_store import ImsStore, ImsWarning, WriteError, keep_beside_image, list_objects, to_ome_zarr, write_ims
from ims_store.access import outputs
from ims_store.access.outputs import atomic_output, stale_temporaries
from ims_store.write import convert

CLI = [sys.executable, "-m", "ims_store.fronts.cli"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# --------------------------------------------------------------------------------------------
# .ims -> .ims keeps what Imaris keeps beside the image


def _h5_items(f: h5py.File, root: str) -> dict[str, object]:
    """Every dataset's values and every group's and dataset's attributes under ``root`` (h5py's reads)."""
    items: dict[str, object] = {}

    def visit(name: str, obj: object) -> None:
        key = f"{root}/{name}"
        items[key + "@attrs"] = {k: np.asarray(v).tobytes() for k, v in obj.attrs.items()}  # type: ignore[attr-defined]
        if isinstance(obj, h5py.Dataset):
            values = np.asarray(obj[()])
            # (variable-length text: the values, not the addresses h5py holds them at)
            items[key] = (
                [np.asarray(v).tobytes() for v in values.ravel()] if values.dtype.kind == "O" else values.tobytes()
            )

    f[root].visititems(visit)
    items[root + "@attrs"] = {k: np.asarray(v).tobytes() for k, v in f[root].attrs.items()}
    return items


BESIDE = ("Scene", "Scene8", "DataSetTimes", "DataSetInfo/Log")


@pytest.mark.parametrize("how", ["cli", "write_ims-path", "write_ims-store"])
def test_ims_to_ims_keeps_objects_log_and_times(real_files: dict[str, Path], tmp_path: Path, how: str) -> None:
    """A real Imaris 9.5 file (spots, surfaces, Scene and Scene8, DataSetTimes, a log entry):
    everything beside the image comes out as h5py reads it in the source."""
    source = real_files["PyramidalCell_Imaris95.ims"]
    before = _digest(source)
    out = tmp_path / "copy.ims"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImsWarning)  # nothing is left out: no warning
        if how == "cli":
            proc = subprocess.run([*CLI, "convert", str(source), str(out), "--quiet"], capture_output=True, text=True)
            assert proc.returncode == 0 and "left out" not in proc.stderr, proc.stderr
        elif how == "write_ims-path":
            write_ims(source, out)
        else:
            write_ims(ImsStore(source), out)
    with h5py.File(source, "r") as a, h5py.File(out, "r") as b:
        for root in BESIDE:
            assert root in a, f"the fixture has no {root}"
            assert _h5_items(b, root) == _h5_items(a, root), root
        for key, value in a["DataSetInfo/Image"].attrs.items():  # the source's descriptions, where not rewritten
            assert key in b["DataSetInfo/Image"].attrs, key
            if key not in ("RecordingDate", "Name", "Description") and not key.startswith(("Ext", "Unit")):
                assert np.asarray(b["DataSetInfo/Image"].attrs[key]).tobytes() == np.asarray(value).tobytes(), key
    assert [(o.name, o.kind, o.count) for o in list_objects(out)] == [
        (o.name, o.kind, o.count) for o in list_objects(source)
    ]
    assert _digest(source) == before


def test_a_remote_ims_source_keeps_its_objects_too(tmp_path: Path) -> None:
    """The source opened over HTTP: what lies beside its image is read through the same URL."""
    from http_files import FileServer

    from ims_store.write.examples import tracks_file

    served = tmp_path / "served"
    served.mkdir()
    tracks_file(served / "tracks.ims")
    server = FileServer(served)
    try:
        out = write_ims(server.url("tracks.ims"), tmp_path / "copy.ims")
    finally:
        server.close()
    with h5py.File(served / "tracks.ims", "r") as a, h5py.File(out, "r") as b:
        assert _h5_items(b, "Scene8") == _h5_items(a, "Scene8")


@pytest.mark.parametrize(
    ("options", "reason"),
    [(["--level", "1"], "resolution level 1"), (["--voxel-size", "1,0.5,0.5"], "voxel size")],
)
def test_a_conversion_that_changes_the_geometry_leaves_the_objects_out_and_says_so(
    real_files: dict[str, Path], tmp_path: Path, options: list[str], reason: str
) -> None:
    source = real_files["PyramidalCell_Imaris95.ims"]
    out = tmp_path / "changed.ims"
    proc = subprocess.run([*CLI, "convert", str(source), str(out), "--quiet", *options], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "ImsWarning" in proc.stderr and "Scene, Scene8" in proc.stderr and reason in proc.stderr, proc.stderr
    assert "changed.ims" in proc.stderr and ".part" not in proc.stderr, proc.stderr  # names the output, not its temp
    with h5py.File(out, "r") as f, h5py.File(source, "r") as g:
        assert not {"Scene", "Scene8", "DataSetTimes"} & set(f)
        assert _h5_items(f, "DataSetInfo/Log") == _h5_items(g, "DataSetInfo/Log")  # the history stays true
    assert list_objects(out) == []


def test_a_crop_through_a_source_image_leaves_the_objects_out(real_files: dict[str, Path], tmp_path: Path) -> None:
    from dataclasses import replace

    from ims_store.write.sources import open_source

    image = open_source(real_files["PyramidalCell_Imaris95.ims"])
    cropped = replace(image, data=image.data[:, :, :, :20])
    with pytest.warns(ImsWarning, match=r"Scene.* left out .*size"):
        write_ims(cropped, tmp_path / "crop.ims")
    assert list_objects(tmp_path / "crop.ims") == []


def test_keep_beside_image_copies_what_the_writer_lacks_and_nothing_it_wrote(tmp_path: Path) -> None:
    """The public function on its own: a root group and attribute of the source's, an attribute of
    DataSetInfo/Image the writer does not write, the log; what the new file holds stays."""
    source = write_ims(np.zeros((4, 16, 16), np.uint8), tmp_path / "source.ims", axes="zyx")
    with h5py.File(source, "r+") as f:
        f.create_group("Scene8/Content").create_dataset("Thing", data=np.arange(5))
        f.attrs["Custom"] = np.frombuffer(b"yes", "S1")
        f["DataSetInfo/Image"].attrs["NumericalAperture"] = np.frombuffer(b"1.4", "S1")
        f["DataSetInfo/Image"].attrs["Name"] = np.frombuffer(b"source name", "S1")
        del f["DataSetInfo/Log"]
        log = f["DataSetInfo"].create_group("Log")
        log.attrs["Entries"] = np.frombuffer(b"1", "S1")
        log.attrs["Entry0"] = np.frombuffer(b"<Entry>filtered</Entry>", "S1")
    target = write_ims(np.ones((4, 16, 16), np.uint8), tmp_path / "target.ims", axes="zyx")
    with h5py.File(target, "r+") as f:
        copied = keep_beside_image(source, f)
    assert sorted(copied) == ["DataSetInfo/Log", "Scene8"]
    with h5py.File(target, "r") as f:
        assert f["Scene8/Content/Thing"][()].tolist() == [0, 1, 2, 3, 4]
        assert f.attrs["Custom"].tobytes() == b"yes"
        assert f["DataSetInfo/Image"].attrs["NumericalAperture"].tobytes() == b"1.4"
        assert f["DataSetInfo/Image"].attrs["Name"].tobytes() == b"target"  # the writer's, kept
        assert f["DataSetInfo/Log"].attrs["Entry0"].tobytes() == b"<Entry>filtered</Entry>"
        assert f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"][0, 0, 0] == 1
    with h5py.File(target, "r+") as f, pytest.warns(ImsWarning, match="Scene8 left out of target.ims"):
        del f["Scene8"], f["DataSetInfo/Log"]
        assert keep_beside_image(source, f, changed="another size", name="target.ims") == ["DataSetInfo/Log"]
        assert "Scene8" not in f


# --------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM: stopped within about a second, nothing left

STOPPED_WITHIN = 1.5
"""Seconds from the signal to the command's last word (``interrupted``, ``terminated``): the
write is stopped and its temporary removed by then (about one is wanted; this machine is shared)."""
EXITED_WITHIN = 10.0
"""Seconds from the signal to the process's exit: the interpreter's own shutdown (modules, HDF5)
comes on top, 0.8 s after any command (``info`` too) on a two-core machine at load 11, several
seconds at load 20: a bound against a process that goes on working, not a speed target."""

posix_signals = pytest.mark.skipif(
    sys.platform == "win32", reason="a child process cannot be sent SIGINT / SIGTERM on Windows"
)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Imaris file of noise: slow to compress, so that every conversion of it takes seconds
    (a quarter of this size converted to OME-Zarr in 0.3 s on an idle machine: too fast for
    the signals at 0.4 and 1.0 s to land while it was written)."""
    volume = np.random.default_rng(0).integers(0, 4000, (64, 1024, 1024), dtype=np.uint16)
    return write_ims(volume, tmp_path_factory.mktemp("noisy") / "noise.ims", axes="zyx")


_LIBRARY_WRITE = """
import sys
import numpy as np
from ims_store import write_ims
volume = np.random.default_rng(1).integers(0, 4000, (64, 1024, 1024), dtype=np.uint16)
write_ims(volume, sys.argv[1], axes="zyx")
"""


def _interrupted(
    command: list[str], folder: Path, name: str, delay: float, sig: int
) -> tuple[int, float, float, str, bool]:
    """Run ``command``; once its temporary output exists, wait ``delay`` s and send ``sig``.
    Returns the exit status, the seconds from the signal to the last line on stderr and to the
    exit, stderr, and whether the process was still writing when the signal went."""
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.perf_counter(), line) for line in proc.stderr))  # type: ignore[union-attr]
    reader.start()
    deadline = time.perf_counter() + 120
    while not list(folder.glob(f".{name}.*.part*")) and proc.poll() is None:
        assert time.perf_counter() < deadline, "the job never started writing"
        time.sleep(0.002)
    time.sleep(delay)
    writing = proc.poll() is None and not (folder / name).exists()
    sent = time.perf_counter()
    proc.send_signal(sig)
    proc.wait(timeout=60)
    exited = time.perf_counter() - sent
    reader.join()
    said = lines[-1][0] - sent if lines else exited
    return proc.returncode, said, exited, "".join(line for _, line in lines), writing


@posix_signals
@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("out.ome.zarr", []),
        ("sharded.ome.zarr", ["--chunks-per-shard", "1,2,2"]),
        ("out.ims", ["--compression-level", "6"]),  # (re-encoded: a plain rewrite is a stored copy, too fast)
        ("out.nii.gz", []),
        ("library.ims", None),  # write_ims in a script: Python's own Ctrl-C handling
    ],
)
def test_ctrl_c_and_sigterm_stop_a_write_at_once_and_leave_nothing(
    noisy: Path, tmp_path: Path, name: str, options: list[str] | None
) -> None:
    before = _digest(noisy)
    landed = 0
    moments = [(0.0, signal.SIGINT), (0.4, signal.SIGTERM), (1.0, signal.SIGINT)]
    if options is None:
        moments = [(d, signal.SIGINT) for d, _ in moments]  # a script has no SIGTERM handler: that ends it outright
    for delay, sig in moments:
        if options is None:
            command = [sys.executable, "-c", _LIBRARY_WRITE, str(tmp_path / name)]
        else:
            command = [*CLI, "convert", str(noisy), str(tmp_path / name), "--quiet", *options]
        status, said, exited, err, writing = _interrupted(command, tmp_path, name, delay, sig)
        if not writing:  # finished before the signal (a fast machine): nothing to learn from this moment
            assert (tmp_path / name).exists(), (status, err)
            shutil.rmtree(tmp_path / name) if (tmp_path / name).is_dir() else (tmp_path / name).unlink()
            continue
        landed += 1
        assert _leftovers(tmp_path, set()) == [], (delay, err)
        if options is not None:
            assert said < STOPPED_WITHIN, f"{name}: {said:.2f} s from the signal to the command's last word"
        assert exited < EXITED_WITHIN, (
            f"{name}: {exited:.2f} s from the signal to the exit ({said:.2f} s to its last word)"
        )
        if options is None:
            # Python's own exit on an uncaught KeyboardInterrupt: by SIGINT (POSIX), after the traceback
            assert status == -signal.SIGINT and err.strip().endswith("KeyboardInterrupt"), (status, err)
        else:
            expected = (130, "interrupted") if sig == signal.SIGINT else (143, "terminated")
            assert (status, err.strip().splitlines()[-1]) == (expected[0], f"ims-store convert: {expected[1]}"), err
    assert landed >= 2, f"only {landed} signals reached {name} while it was written"
    assert _digest(noisy) == before


def _counting_writer(calls: list[float], fail_after: int | None = None):  # type: ignore[no-untyped-def]
    def write(keys, root: Path) -> int:  # type: ignore[no-untyped-def]
        calls.append(time.perf_counter())
        if fail_after is not None and len(calls) > fail_after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        time.sleep(0.002)
        return len(keys)

    return write


def test_the_first_failure_of_a_conversion_stops_the_rest(tmp_path: Path) -> None:
    """A full disk is reported after the chunks under way, not after every chunk was tried."""
    calls: list[float] = []
    jobs = [convert.ChunkKey(0, 0, 0, z, 0, 0) for z in range(2000)]
    with pytest.raises(OSError, match="No space left"):
        convert._on_threads(jobs, _counting_writer(calls, fail_after=3), tmp_path, 2, None)
    assert len(calls) <= 3 + 4 * 2 + 2, f"{len(calls)} of 2000 chunks tried after the disk was full"


def test_the_progress_bar_advances_while_chunks_are_written(tmp_path: Path) -> None:
    calls: list[float] = []
    updates: list[float] = []

    class Bar:
        def update(self, n: int) -> None:
            updates.append(time.perf_counter())

    jobs = [convert.ChunkKey(0, 0, 0, z, 0, 0) for z in range(200)]
    convert._on_threads(jobs, _counting_writer(calls), tmp_path, 2, Bar())
    assert len(updates) == 200
    assert updates[0] < calls[-1], "the bar moved only once every chunk was written"


def test_no_job_writes_once_the_guard_is_closed(tmp_path: Path) -> None:
    """A thread the pool lost track of (an interruption while it started) runs its job after the
    cleanup began: it must write nothing; and closing waits for a job under way."""
    written: list[float] = []

    def write(keys, root: Path) -> int:  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        written.append(time.perf_counter())
        return len(keys)

    guard = convert._Guard(write)
    under_way = threading.Thread(target=guard, args=([convert.ChunkKey(0, 0, 0, 0, 0, 0)], tmp_path))
    under_way.start()
    time.sleep(0.05)
    guard.close()
    closed = time.perf_counter()
    assert written and written[0] <= closed  # the job under way finished before close returned
    assert guard([convert.ChunkKey(0, 0, 0, 1, 0, 0)], tmp_path) == 0 and len(written) == 1
    under_way.join()


def test_a_stop_requested_while_the_exception_was_lost_still_leaves_nothing(tmp_path: Path) -> None:
    """A signal handler's exception raised inside a __del__ is printed and lost; the request it
    also made keeps the output from being renamed into place."""
    target = tmp_path / "out.txt"
    try:
        with pytest.raises(KeyboardInterrupt), atomic_output(target, overwrite=False) as tmp:
            tmp.write_text("half")
            outputs.request_stop()
    finally:
        outputs.request_stop(False)
    assert _leftovers(tmp_path, set()) == []


# --------------------------------------------------------------------------------------------
# failed writes: one WriteError, nothing left


@contextlib.contextmanager
def _tmpfs(folder: Path, size: str, read_only: bool = False) -> Iterator[bool]:
    """A tmpfs mounted at ``folder`` (True), where this machine lets the tests mount one (root on
    Linux), else nothing (False)."""
    folder.mkdir()
    mount = shutil.which("mount")
    if sys.platform != "linux" or os.geteuid() != 0 or mount is None:
        yield False
        return
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run([mount, "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


_WRITES = {
    "convert-zarr": lambda i, o: ["convert", str(i), str(o / "out.ome.zarr"), "--quiet"],
    "convert-ims": lambda i, o: ["convert", str(i), str(o / "out.ims"), "--quiet"],
    "convert-nifti": lambda i, o: ["convert", str(i), str(o / "out.nii.gz"), "--quiet"],
    "refs": lambda i, o: ["refs", str(i), "-o", str(o / "refs.json")],
    "objects-export": lambda i, o: ["objects", str(i), "--export", str(o / "objects"), "--quiet", "--format", "csv"],
}


@pytest.fixture(scope="module")
def with_objects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1.5 MB Imaris file with analysis objects: none of its outputs fits in 64 KiB."""
    from ims_store.write.examples import cells_spots, image, write_scene8

    path = image(tmp_path_factory.mktemp("objects") / "cells.ims", timepoints=3, shape=(16, 256, 256))
    with h5py.File(path, "r+") as f:  # noise, so that the conversions' outputs are large
        for c in (0,):
            for t in range(3):
                data = f[f"DataSet/ResolutionLevel 0/TimePoint {t}/Channel {c}/Data"]
                data[...] = np.random.default_rng(t).integers(0, 200, data.shape, dtype=data.dtype)
    spots = cells_spots()
    spots.stats = spots.stats * 400  # a statistics table of several hundred kilobytes
    return write_scene8(path, [spots])


def _fill(folder: Path, leave: int) -> None:
    """Fill the file system of ``folder`` but ``leave`` bytes."""
    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "wb") as fh:
        with contextlib.suppress(OSError):
            fh.write(b"\0" * max(0, free - leave))


def _run_failing(command: list[str], limit: int | None = None) -> subprocess.CompletedProcess[str]:
    if limit is None:
        return subprocess.run(command, capture_output=True, text=True)
    script = (
        "import resource, signal, sys, runpy\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "sys.argv = ['ims-store', *sys.argv[1:]]\n"
        "runpy.run_module('ims_store.fronts.cli', run_name='__main__')\n"
    )
    return subprocess.run([sys.executable, "-c", script, *command[3:]], capture_output=True, text=True)


def _assert_clean_failure(proc: subprocess.CompletedProcess[str], folder: Path, keep: set[str], what: str) -> None:
    assert proc.returncode == 2, (what, proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, (what, proc.stderr)
    assert "writing failed" in lines[0] and str(folder) in lines[0], (what, lines)
    assert _leftovers(folder, keep) == [], (what, _leftovers(folder, keep))


@pytest.mark.parametrize("command", _WRITES)
def test_a_full_file_system_gives_one_write_error_and_leaves_nothing(
    with_objects: Path, tmp_path: Path, command: str
) -> None:
    before = _digest(with_objects)
    folder = tmp_path / "full"
    with _tmpfs(folder, "4m") as mounted:
        argv = [*CLI, *_WRITES[command](with_objects, folder)]
        if mounted:
            _fill(folder, leave=0)
            proc = _run_failing(argv)
            keep = {"filler"}
        elif hasattr(os, "geteuid") and sys.platform != "win32":  # no tmpfs here: a file-size limit instead
            proc = _run_failing(argv, limit=0)
            keep = set()
        else:
            pytest.skip("neither a tmpfs nor RLIMIT_FSIZE on this platform")
        _assert_clean_failure(proc, folder, keep, command)
    assert _digest(with_objects) == before


@pytest.mark.parametrize("command", _WRITES)
def test_a_read_only_file_system_gives_one_write_error(with_objects: Path, tmp_path: Path, command: str) -> None:
    folder = tmp_path / "read-only"
    with _tmpfs(folder, "1m", read_only=True) as mounted:
        if not mounted:
            if sys.platform == "win32" or os.geteuid() == 0:
                pytest.skip("no read-only file system to mount, and root writes into any folder")
            folder.chmod(0o555)  # an unwritable folder instead
        try:
            proc = _run_failing([*CLI, *_WRITES[command](with_objects, folder)])
            _assert_clean_failure(proc, folder, set(), command)
        finally:
            if not mounted:
                folder.chmod(0o755)


def test_a_failed_nifti_write_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """nibabel picks the format from the name: the temporary ends as the destination does, and is removed."""
    import nibabel as nib

    source = write_ims(np.ones((4, 16, 16), np.uint16), tmp_path / "in.ims", axes="zyx")
    real_save = nib.save
    seen = []

    def failing(image: object, name: object) -> None:
        seen.append(Path(str(name)))
        real_save(image, name)  # written whole, then the disk fills up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(nib, "save", failing)
    with pytest.raises(WriteError, match="No space left"):
        convert.to_nifti(source, tmp_path / "out.nii.gz")
    assert seen[0].name.endswith(".part.nii.gz")
    assert _leftovers(tmp_path, {"in.ims"}) == []


def test_a_failed_export_leaves_no_half_written_folder(
    with_objects: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fourth table fails: none of the three before it remains, and the error is a WriteError."""
    import pandas as pd

    from ims_store import export_objects

    real = pd.DataFrame.to_csv
    calls = []

    def fourth_fails(self: pd.DataFrame, path: object, **kwargs: object) -> object:
        calls.append(path)
        if len(calls) == 4:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(self, path, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", fourth_fails)
    with pytest.raises(WriteError, match="Permission denied"):
        export_objects(with_objects, tmp_path / "objects", fmt="csv")
    assert _leftovers(tmp_path, set()) == []


def test_a_cleanup_that_fails_does_not_hide_the_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a file system gone read-only the temporary cannot be removed either: the error stays the WriteError."""

    def refused(self: Path, missing_ok: bool = False) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "unlink", refused)
    with pytest.raises(WriteError, match="Read-only file system"), atomic_output(tmp_path / "x.json", False) as tmp:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp))


def test_a_rename_that_fails_is_a_write_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last step, the rename into place, is a write like the others (a file system that went
    away, a rename Windows refuses)."""

    def refused(src: object, dst: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))

    monkeypatch.setattr(outputs.os, "replace", refused)
    with pytest.raises(WriteError, match="Permission denied") as err:
        write_ims(np.zeros((2, 8, 8), np.uint8), tmp_path / "out.ims", axes="zyx")
    assert err.value.path == str(tmp_path / "out.ims")
    assert _leftovers(tmp_path, set()) == []


# --------------------------------------------------------------------------------------------
# temporaries of a writer killed outright


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="no SIGKILL on this platform (see the twin test)")
def test_the_next_write_removes_what_a_killed_writer_left(noisy: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.ome.zarr"
    status, _, _, _, writing = _interrupted(
        [*CLI, "convert", str(noisy), str(target), "--quiet"], tmp_path, target.name, 0.3, signal.SIGKILL
    )
    assert status == -signal.SIGKILL and writing
    left = _leftovers(tmp_path, set())
    assert len(left) == 1 and left[0].startswith(".out.ome.zarr.") and left[0].endswith(".part"), left
    assert stale_temporaries(target) == [tmp_path / left[0]]
    to_ome_zarr(ImsStore(noisy), target)
    assert _leftovers(tmp_path, set()) == ["out.ome.zarr"]


def _ended_pid() -> int:
    """The pid of a process that has ended (not reused yet: pids go round slowly)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_are_those_of_ended_writers_on_this_machine(tmp_path: Path) -> None:
    """The twin of the SIGKILL test, where there is no SIGKILL: temporaries as a killed writer
    leaves them, named with a pid that has ended, one of a live process, one of another host."""
    host = outputs._HOST
    dead = tmp_path / f".out.ims.{_ended_pid()}@{host}.0123abcd.part"
    dead_folder = tmp_path / f".out.ims.{_ended_pid()}@{host}.4567abcd.part"
    live = tmp_path / f".out.ims.{os.getppid()}@{host}.89abcdef.part"
    elsewhere = tmp_path / f".out.ims.{_ended_pid()}@other-{socket.gethostname()[:8]}x.0123abcd.part"
    other_output = tmp_path / f".other.ims.{_ended_pid()}@{host}.0123abcd.part"
    for path in (dead, live, elsewhere, other_output):
        path.write_bytes(b"half an image")
    dead_folder.mkdir()
    (dead_folder / "chunk").write_bytes(b"x")
    assert sorted(stale_temporaries(tmp_path / "out.ims")) == sorted([dead, dead_folder])
    write_ims(np.zeros((2, 8, 8), np.uint8), tmp_path / "out.ims", axes="zyx")
    assert _leftovers(tmp_path, set()) == sorted([*(p.name for p in (elsewhere, live, other_output)), "out.ims"])


def test_temporaries_name_their_writer(tmp_path: Path) -> None:
    seen = []
    with atomic_output(tmp_path / "out.nii.gz", overwrite=False, suffix=".nii.gz") as tmp:
        seen.append(tmp.name)
        tmp.write_bytes(b"x")
    assert seen[0].startswith(f".out.nii.gz.{os.getpid()}@{outputs._HOST}.") and seen[0].endswith(".part.nii.gz")


# --------------------------------------------------------------------------------------------
# demo refuses an existing file, as every command


def test_demo_refuses_an_existing_output(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("a week of notes")
    before = _digest(notes)
    proc = subprocess.run([*CLI, "demo", "--output", str(notes)], capture_output=True, text=True)
    assert proc.returncode == 2 and _digest(notes) == before
    assert proc.stderr.strip() == f"ims-store demo: error: {notes}: exists already; pass --overwrite to replace it"
    proc = subprocess.run([*CLI, "demo", "--output", str(notes), "--overwrite"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert h5py.is_hdf5(notes)


def test_sigterm_handler_is_installed_only_in_the_main_thread() -> None:
    """`main` from another thread (an embedding) must not touch the process's signal handlers."""
    from ims_store.fronts.cli import main

    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def run() -> None:
        seen.append(main(["info", "missing.ims"]))
        seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [2, before]


# --------------------------------------------------------------------------------------------
# the library's writers refuse an output that is their input as the commands do


@pytest.mark.parametrize("writer", ["write_ims", "write_images", "write_images-link", "to_ome_zarr", "to_nifti"])
def test_every_writing_function_refuses_its_input_as_output(tmp_path: Path, writer: str) -> None:
    from ims_store import OutputIsInputError, to_nifti, write_images
    from ims_store.write.sources import open_source

    source = write_ims(np.arange(4 * 16 * 16, dtype=np.uint16).reshape(4, 16, 16), tmp_path / "in.ims", axes="zyx")
    zarr_in = to_ome_zarr(source, tmp_path / "in.ome.zarr")
    link = tmp_path / {"to_ome_zarr": "alias.ome.zarr", "to_nifti": "alias.nii.gz"}.get(writer, "alias.ims")
    os.link(source, link) if writer == "to_nifti" else link.symlink_to(source)
    before = {p: _digest(p) for p in (source, *sorted(q for q in zarr_in.rglob("*") if q.is_file()))}
    calls = {
        "write_ims": lambda: write_ims(open_source(ImsStore(source)), link, overwrite=True),
        "write_images": lambda: write_images([source, source], link, overwrite=True),
        "write_images-link": lambda: write_images([source], tmp_path / "in", link=True, overwrite=True),
        "to_ome_zarr": lambda: to_ome_zarr(ImsStore(source), link, overwrite=True),
        "to_nifti": lambda: to_nifti(source, link, overwrite=True),
    }
    if writer == "write_images-link":  # its image files are outputs too: in_image_0.ims is made the input
        link.unlink()
        (tmp_path / "in_image_0.ims").symlink_to(source)
    with pytest.raises(OutputIsInputError, match="is the input"):
        calls[writer]()
    # an output inside an input folder, from the library (a zarr group's folder)
    with pytest.raises(OutputIsInputError, match="lies inside the input"):
        write_ims(zarr_in, zarr_in / "inner.ims")
    assert {p: _digest(p) for p in before} == before
    assert not [p for p in tmp_path.rglob(".*") if ".part" in p.name or ".scratch" in p.name]
