"""A read that fails must not leave HDF5 work for interpreter shutdown (a crash at exit).

The file: channel 0 of level 0 is Blosc-compressed (an HDF5 plugin filter, so its chunks are
decoded through HDF5), chunked unlike the other channels, and its first chunk is damaged, so
that every read of level 0 raises CorruptChunkError from inside HDF5. zarr does not cancel a
failed read's other chunk requests: they run on in zarr's event loop thread while the program
goes on and exits. Any h5py object they still hold (say, in the traceback of their error) is
freed there, possibly while h5py's exit handler calls HDF5, which is not thread-safe:
"Segmentation fault" after the program has finished, in some runs only. Hence many runs, each
in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import hdf5plugin
import pytest
from http_files import FileServer

import ims_store
from ims_store.synthetic import make_example_ims

LOCAL_RUNS = 50
REMOTE_RUNS = 10
AT_ONCE = 4  # children run side by side (they mostly wait on one another's CPU on 2 cores)
MARKER = "IMS-STORE-CORRUPT"

# reads every array of the file, as a user would, catching the expected error; then exits
_CHILD = f"""
import ast
import sys
import zarr
from ims_store import ImsStore
from ims_store.errors import CorruptChunkError

where, via, options = sys.argv[1], sys.argv[2], ast.literal_eval(sys.argv[3])
store = ImsStore(where, **options)
if via == "dask":
    try:
        store.to_dask(0).compute()
    except CorruptChunkError:
        print("{MARKER} 0", flush=True)
else:
    root = zarr.open_group(store, mode="r")
    for name, array in sorted(root.arrays()):
        try:
            array[...]
        except CorruptChunkError:
            print("{MARKER}", name, flush=True)
print("finished", flush=True)
"""

LOCAL_MODES = [
    ("zarr", {}),
    ("zarr", {"zarr_format": 2}),
    ("zarr", {"chunk_mode": "passthrough"}),
    ("dask", {}),
]
REMOTE_MODES = [("zarr", {"read_ahead": 0}), ("zarr", {"chunk_mode": "passthrough"})]


def _make_file(path: Path) -> Path:
    """3 levels, 2 time points, 2 channels; level 0's channel 0 rewritten with the same values,
    Blosc and chunks of (4, 16, 16) instead of the (8, 32, 32) of every other dataset, its first
    chunk then overwritten with bytes Blosc cannot decode."""
    make_example_ims(path, shape=(20, 90, 70), channels=2, timepoints=2, threshold_voxels=3000, chunks=(8, 32, 32))
    with h5py.File(path, "r+") as f:
        group = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"]
        values = group["Data"][...]
        del group["Data"]
        data = group.create_dataset("Data", data=values, chunks=(4, 16, 16), **hdf5plugin.Blosc())
        data.id.write_direct_chunk((0, 0, 0), b"not a Blosc chunk" * 8)
    return path


@pytest.fixture(scope="module")
def blosc_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_file(tmp_path_factory.mktemp("exit") / "blosc_channel.ims")


def _child_env() -> dict[str, str]:
    # the child imports the ims_store this test imported (a checkout, or a copy on PYTHONPATH)
    package_root = str(Path(ims_store.__file__).resolve().parents[1])
    paths = [package_root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _run(where: str, via: str, options: dict[str, object]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", _CHILD, where, via, repr(options)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_child_env(),
    )


def _check_runs(where: str, modes: list[tuple[str, dict[str, object]]], runs: int) -> None:
    jobs = [modes[i % len(modes)] for i in range(runs)]
    with ThreadPoolExecutor(AT_ONCE) as pool:
        results = list(pool.map(lambda job: (job, _run(where, *job)), jobs))
    bad = []
    for (via, options), proc in results:
        level0_failed = f"{MARKER} 0" in proc.stdout.splitlines()
        if proc.returncode != 0 or not level0_failed or "finished" not in proc.stdout:
            bad.append(f"{via} {options}: exit status {proc.returncode}\n{proc.stdout[-500:]}{proc.stderr[-1500:]}")
    assert not bad, f"{len(bad)} of {runs} runs did not exit cleanly after CorruptChunkError:\n\n" + "\n\n".join(
        bad[:3]
    )


def test_file_is_the_one_described(blosc_file: Path) -> None:
    with h5py.File(blosc_file, "r") as f:
        level0 = f["DataSet/ResolutionLevel 0/TimePoint 0"]
        assert level0["Channel 0/Data"].chunks == (4, 16, 16)
        assert level0["Channel 1/Data"].chunks == (8, 32, 32)
        dcpl = level0["Channel 0/Data"].id.get_create_plist()
        assert [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())] == [hdf5plugin.BLOSC_ID]  # a plugin filter


def test_no_crash_at_exit_after_a_failed_local_read(blosc_file: Path) -> None:
    _check_runs(str(blosc_file), LOCAL_MODES, LOCAL_RUNS)


def test_no_crash_at_exit_after_a_failed_remote_read(blosc_file: Path) -> None:
    server = FileServer(blosc_file.parent)
    try:
        _check_runs(server.url(blosc_file.name), REMOTE_MODES, REMOTE_RUNS)
    finally:
        server.close()
