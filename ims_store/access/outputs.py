"""Atomic outputs: write under a temporary name beside the destination, rename at the end.

Every file or folder ims_store writes goes through `atomic_output`, which keeps these promises
(docs/promises.md):

- an output is never one of its inputs, never holds one (an existing folder about to be
  replaced) and never lies inside one (a file written into an input OME-Zarr folder): compared
  by identity (device and inode: symlinks and hard links included), before anything is written;
- an existing destination is replaced only when asked, and an existing folder only when it is a
  zarr (or empty);
- on any error or interruption (Ctrl-C, SIGTERM from the command line) the temporary file or
  folder is removed and the destination is untouched; operating-system failures come out as a
  `WriteError` naming the destination, whatever goes wrong while cleaning up;
- temporaries are named ``.<name>.<pid>@<host>.<random>.part`` (plus the destination's
  suffixes where a library picks the format from them), so that those of a writer killed
  outright are recognised: the next write to the same destination removes them once their
  writer process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ImsError
from .files import local_path, output_path

__all__ = [
    "DestinationExistsError",
    "OutputIsInputError",
    "WriteError",
    "atomic_output",
    "check_output",
    "check_stop",
    "progress_bar",
    "request_stop",
    "scratch_folder",
    "stale_temporaries",
]


class WriteError(ImsError):
    """Writing an output failed; nothing was left at the destination."""


class DestinationExistsError(WriteError, FileExistsError):
    """The destination exists and ``overwrite`` was not given."""


class OutputIsInputError(WriteError, ValueError):
    """The destination is an input, holds one, or lies inside one: writing would destroy it."""


def _is_zarr(folder: Path) -> bool:
    """A folder zarr wrote: v3 (``zarr.json``) or v2 (``.zgroup``) root metadata."""
    return (folder / "zarr.json").is_file() or (folder / ".zgroup").is_file()


def _remove(path: Path) -> None:
    """Remove a temporary, never raising: a cleanup that fails (a read-only or lost file system)
    must not hide the error that made it necessary."""
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _local_inputs(inputs: Iterable[Any]) -> list[Path]:
    """The inputs that are local paths which exist (URLs, arrays and the like cannot be written over)."""
    found = []
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)):
            continue
        local = local_path(item)  # a file: URL names a path too
        if local is not None and _stat(Path(local)) is not None:
            found.append(Path(local))
    return found


def _within(inner: Path, outer: os.stat_result) -> bool:
    """Whether ``inner`` (an existing path) is the folder ``outer`` or lies anywhere under it,
    following the real path up (symlinked folders on the way included)."""
    real = Path(os.path.realpath(inner))
    for folder in (real, *real.parents):
        st = _stat(folder)
        if st is not None and os.path.samestat(st, outer):
            return True
    return False


def _named(path: str | os.PathLike[str]) -> Path:
    """``path`` (a ``file:`` URL as the path it names) with a last component to name temporaries
    after (``.`` and ``..`` made absolute)."""
    path = output_path(path)
    return path if path.name not in ("", ".", "..") else Path(os.path.abspath(path))


def check_output(
    path: str | os.PathLike[str], overwrite: bool, inputs: Iterable[Any] = (), *, replaced: bool = True
) -> Path:
    """Refuse a destination that would destroy an input or that exists without ``overwrite``.

    Raises `OutputIsInputError` when ``path`` is one of ``inputs`` (the same file, through any
    name: symlink, hard link), holds one (an existing folder, where ``replaced``: a folder that
    is only added to loses nothing), or lies inside one (a folder); then
    `DestinationExistsError` when it exists and ``overwrite`` is false. Cheap: writers call it
    before reading anything, and `atomic_output` again before writing.

    >>> try:
    ...     check_output("cells.ims", overwrite=True, inputs=["cells.ims"])
    ... except OutputIsInputError as err:
    ...     print(err.reason)
    is the input cells.ims (the same file); write the output elsewhere
    """
    path = _named(path)
    target = _stat(path)
    parent = _stat(path.parent)
    for source in _local_inputs(inputs):
        st = _stat(source)
        assert st is not None  # (_local_inputs keeps existing paths only)
        if target is not None and os.path.samestat(target, st):
            raise OutputIsInputError(f"is the input {source} (the same file); write the output elsewhere", path)
        if replaced and target is not None and path.is_dir() and _within(source, target):
            raise OutputIsInputError(
                f"holds the input {source}; replacing it would delete the input: write the output elsewhere", path
            )
        if parent is not None and source.is_dir() and _within(path.parent, st):
            raise OutputIsInputError(
                f"lies inside the input {source}; writing there would change the input: write the output elsewhere",
                path,
            )
    if replaced and (target is not None or path.is_symlink()) and not overwrite:
        raise DestinationExistsError("exists already; pass overwrite=True to replace it", path)
    return path


# --------------------------------------------------------------------------------------------
# temporaries: named after their writer, so that those of a killed one are found again

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"
_TEMPORARY = re.compile(r"\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]+)\.[0-9a-f]{8}\.(?:part|old|scratch)")


def _temporary(path: Path, kind: str = "part", suffix: str = "") -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}@{_HOST}.{uuid.uuid4().hex[:8]}.{kind}{suffix}")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine; True where that cannot be told (kept, then)."""
    if pid == os.getpid():
        return True
    try:
        import psutil  # type: ignore[import-untyped]

        return bool(psutil.pid_exists(pid))
    except ImportError:
        pass
    if sys.platform == "win32":  # os.kill would end the process there: ask the kernel instead
        return _alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # (PermissionError: it exists, under another user)
        return True
    return True


def _alive_windows(pid: int) -> bool:  # pragma: no cover - Windows only
    import ctypes

    kernel = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    handle = kernel.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() != 87  # ERROR_INVALID_PARAMETER: no such process
    try:
        code = ctypes.c_ulong()
        if not kernel.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel.CloseHandle(handle)


def stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """The temporaries beside ``path`` left by writers of it that are gone (killed outright).

    Only those written on this machine count (a process elsewhere cannot be asked whether it
    still runs); `atomic_output` removes them before it writes ``path``.

    >>> stale_temporaries("cells.ome.zarr")
    []
    """
    path = _named(path)
    found = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    prefix = f".{path.name}."
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        m = _TEMPORARY.match(entry.name, len(prefix) - 1)
        if m and m.group("host") == _HOST and not _alive(int(m.group("pid"))):
            found.append(entry)
    return found


# --------------------------------------------------------------------------------------------
# stopping: a signal handler's exception can be lost (raised inside a __del__ or a weakref
# callback, Python prints it and goes on), so the command line also sets a flag that the
# writers' loops and the final rename look at

_STOP = threading.Event()


def request_stop(stop: bool = True) -> None:
    """Ask every write under way to stop (``False``: clear the request). The command line's
    SIGINT / SIGTERM handlers call it besides raising; writers then raise `KeyboardInterrupt`
    at their next `check_stop`, and no output is renamed into place.

    >>> request_stop(); request_stop(False)
    """
    if stop:
        _STOP.set()
    else:
        _STOP.clear()


def check_stop() -> None:
    """Raise `KeyboardInterrupt` if `request_stop` was called: writers call it between blocks.

    >>> check_stop()
    """
    if _STOP.is_set():
        raise KeyboardInterrupt("stop requested")


# --------------------------------------------------------------------------------------------
# the mechanism


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str],
    overwrite: bool,
    *,
    inputs: Iterable[Any] = (),
    suffix: str = "",
    merge: bool = False,
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it goes.

    ``inputs``: the files and folders the output is made from (see `check_output`). ``suffix``
    ends the temporary name (``".nii.gz"`` for a writer that picks its format from the name).
    ``merge``: ``path`` is a folder (made if missing) that the files of the temporary folder are
    moved into at the end; a file it holds already is replaced only with ``overwrite`` (all
    checked before any is moved) and the folder itself is never replaced. Operating-system
    errors in the body or the rename come out as `WriteError`; every handle on the temporary
    must be closed by the end of the body (Windows cannot rename an open file).

    >>> with atomic_output(Path("result.txt"), overwrite=False) as tmp:
    ...     _ = tmp.write_text("done")
    >>> Path("result.txt").read_text()
    'done'
    """
    path = _named(path)
    sources = _local_inputs(inputs)
    if merge:
        check_output(path, overwrite, sources, replaced=False)
        if path.exists() and not path.is_dir():
            raise WriteError("is not a folder", path)
    else:
        check_output(path, overwrite, sources)
        if path.is_dir() and not path.is_symlink() and not _is_zarr(path) and any(path.iterdir()):
            # overwriting deletes the old output: a folder with content that zarr did not write (a
            # user's data directory named by mistake) must survive any overwrite=True; an empty
            # one has nothing to lose
            raise WriteError("is a folder but not a zarr (no zarr.json or .zgroup); refusing to replace it", path)
    if not path.parent.is_dir():
        raise WriteError(f"folder {path.parent} does not exist", path)
    # merged into a folder that exists, the temporary folder lies inside it: its parent may be
    # anyone's (the export of ``.``), the folder is the user's choice
    beside = path / path.name if merge and path.is_dir() else path
    for stale in stale_temporaries(beside):
        _remove(stale)
    tmp = _temporary(beside, suffix=suffix)
    try:
        try:
            yield tmp
            check_stop()
            if merge:
                _merge(tmp, path, overwrite, sources)
            elif path.is_dir() and not path.is_symlink():
                # a folder cannot be replaced atomically: move the old one aside first
                old = _temporary(path, "old")
                os.replace(path, old)
                os.replace(tmp, path)
                _remove(old)
            else:
                os.replace(tmp, path)
        except ImsError:
            raise
        except OSError as err:
            raise WriteError(f"writing failed: {err.strerror or err}", path) from err
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def scratch_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A folder beside ``path`` for intermediate files of its writing, removed at the end
    whatever happens (named as `atomic_output`'s temporaries, so that a killed writer's is
    found again); failing to make it is a `WriteError` naming ``path``.

    >>> with scratch_folder("result.ims") as scratch:
    ...     scratch.is_dir()
    True
    """
    path = Path(path)
    folder = _temporary(path, "scratch")
    try:
        folder.mkdir()
    except OSError as err:
        raise WriteError(f"writing failed: {err.strerror or err}", path) from err
    try:
        yield folder
    finally:
        _remove(folder)


def _merge(tmp: Path, folder: Path, overwrite: bool, inputs: list[Path]) -> None:
    """The files of ``tmp`` moved into ``folder`` (see `atomic_output`'s ``merge``)."""
    if not folder.exists():
        os.replace(tmp, folder)
        return
    names = sorted(p.name for p in tmp.iterdir())
    for name in names:  # all refused before any is moved
        check_output(folder / name, overwrite, inputs)
    for name in names:
        os.replace(tmp / name, folder / name)
    _remove(tmp)


def progress_bar(enabled: bool, total: int, description: str) -> Any:
    """A tqdm bar over ``total`` chunks when ``enabled``, else ``None`` (library calls stay quiet).

    The bar draws only on a terminal (tqdm's ``disable=None``: a log or a pipe gets no ``\\r``
    frames) or in a notebook (whose bar turns ``None`` into shown)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="chunk", desc=description, dynamic_ncols=True, disable=None)
