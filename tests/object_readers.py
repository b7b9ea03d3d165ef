"""Every public way of reading a file's analysis objects, run on one file, each with its outcome:
``"works"`` or the name of the `ims_store.errors` class it raised (anything else propagates).

Shared by the hardening tests in this process and in a child process whose memory is measured
(``python object_readers.py FILE...`` prints one JSON line per file, then the peak RSS).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ims_store import (
    ImsError,
    MalformedObjectsError,
    export_objects,
    list_objects,
    read_spots,
    read_statistics,
    read_surface_summary,
    read_surfaces,
    read_track_edges,
    read_tracks,
)
from ims_store.fronts.cli import main as cli
from ims_store.fronts.napari_objects import object_layers


def _cli(path: Path) -> object:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = cli(["objects", str(path)])
    if status == 0:
        return None
    # one line naming the file, as every refused command gives
    assert status == 2 and err.getvalue().count("\n") == 1 and str(path) in err.getvalue(), err.getvalue()
    raise MalformedObjectsError("refused by the command line", path)


def _export(path: Path) -> object:
    with tempfile.TemporaryDirectory() as folder:
        return export_objects(path, folder, fmt="csv")


def _napari(path: Path) -> object:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the objects it shows no layer for are warned about
        return object_layers(path)


READERS: dict[str, Callable[[Path], object]] = {
    "list": list_objects,
    "spots": read_spots,
    "tracks": read_tracks,
    "track_edges": read_track_edges,
    "statistics-points": lambda p: read_statistics(p, "Points0"),
    "statistics-surfaces": lambda p: read_statistics(p, "MegaSurfaces0"),
    "statistics-filaments": lambda p: read_statistics(p, "Filaments0"),
    "summary": lambda p: read_surface_summary(p, "MegaSurfaces0"),
    "meshes": read_surfaces,
    "export": _export,
    "cli": _cli,
    "napari": _napari,
}


def outcomes(path: Path) -> dict[str, str]:
    """Each reader's outcome on ``path``; a MalformedObjectsError must name the file and, but for
    the command line's, the object's group."""
    found = {}
    for name, read in READERS.items():
        try:
            read(path)
        except ImsError as err:
            assert str(path) in str(err), (name, str(err))
            if isinstance(err, MalformedObjectsError) and name != "cli":
                assert err.group and err.group.startswith("/Scene"), (name, str(err))
            found[name] = type(err).__name__
        else:
            found[name] = "works"
    return found


def peak_rss() -> int:
    """This process's peak resident memory in bytes."""
    if sys.platform == "win32":  # pragma: no cover - Windows
        import ctypes
        from ctypes import wintypes

        class Counters(ctypes.Structure):
            _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD)] + [
                (f, ctypes.c_size_t)
                for f in (
                    "PeakWorkingSetSize",
                    "WorkingSetSize",
                    "QuotaPeakPagedPoolUsage",
                    "QuotaPagedPoolUsage",
                    "QuotaPeakNonPagedPoolUsage",
                    "QuotaNonPagedPoolUsage",
                    "PagefileUsage",
                    "PeakPagefileUsage",
                )
            ]

        counters = Counters(cb=ctypes.sizeof(Counters))
        handle = ctypes.windll.kernel32.GetCurrentProcess()
        ctypes.windll.psapi.GetProcessMemoryInfo(handle, ctypes.byref(counters), counters.cb)
        return int(counters.PeakWorkingSetSize)
    status = Path("/proc/self/status")
    if status.is_file():
        # VmHWM is this program's own peak: ru_maxrss keeps what the process held before its
        # exec, the forked pytest's hundreds of megabytes
        return next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines() if line.startswith("VmHWM"))
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


if __name__ == "__main__":
    if sys.platform.startswith("linux"):
        import resource

        # an allocation the readers should never try fails at once instead of swapping the machine
        limit = 4 * 2**30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for arg in sys.argv[1:]:
        try:
            result = outcomes(Path(arg))
        except MemoryError as err:  # what the unbounded readers ran into
            result = {"error": f"MemoryError: {err}"}
        print(json.dumps(result), flush=True)
    print(peak_rss())
