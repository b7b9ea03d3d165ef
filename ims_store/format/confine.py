"""Files kept inside one folder: what a server may open (``ims-store serve``).

A server is asked to serve a folder (or one file, whose folder is then the boundary): every file
it opens, the served file itself and whatever that file's links lead to, must lie inside. A path
is checked by its real location (`inside`), and opened so that a link swapped in after the check
cannot lead elsewhere (`open_inside`): component by component without following any link where
the system allows it (``O_NOFOLLOW`` with ``dir_fd``: Linux, macOS, the BSDs), elsewhere by
comparing the opened descriptor with the checked file.

>>> import os
>>> root = os.path.realpath(".")
>>> _ = open("notes.txt", "w").write("a note")
>>> inside(root, "notes.txt") == os.path.join(root, "notes.txt")
True
>>> inside(root, "..") is None
True
"""

from __future__ import annotations

import errno
import os

from ..errors import OutsideFolderError

__all__ = ["identity", "inside", "open_inside"]

_READ = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# a walk that follows no link needs both flags and opens relative to a folder's descriptor
_WALKS = bool(_NOFOLLOW and _DIRECTORY) and os.open in os.supports_dir_fd


def inside(root: str, path: str | os.PathLike[str]) -> str | None:
    """The real path of ``path`` (every link resolved) when it lies inside ``root`` (itself a real
    path, see `os.path.realpath`), else None."""
    real = os.path.realpath(path)
    folder, there = os.path.normcase(root), os.path.normcase(real)
    if there == folder or there.startswith(folder.rstrip(os.sep) + os.sep):
        return real
    return None


def identity(fd: int) -> tuple[int, int]:
    """The (device, inode) of an open descriptor: which file it is, whatever its name.

    >>> with open("notes.txt", "w") as a, open("notes.txt") as b:
    ...     identity(a.fileno()) == identity(b.fileno())
    True
    """
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def open_inside(root: str, path: str | os.PathLike[str]) -> int:
    """A read-only descriptor of the file ``path`` names, certain to lie inside ``root`` (a real
    path) whatever links the path holds, or gains while it is opened.

    Raises `OutsideFolderError` when the file lies outside (or a link on its path changed while
    it was opened), ``OSError`` when it cannot be opened (missing, no permission, no descriptors
    left). The caller closes the descriptor.

    >>> _ = open("notes.txt", "w").write("a note")
    >>> fd = open_inside(os.path.realpath("."), "notes.txt")
    >>> os.read(fd, 6)
    b'a note'
    >>> os.close(fd)
    """
    real = inside(root, path)
    if real is None:
        raise OutsideFolderError(f"lies outside the folder served ({root})", os.fspath(path))
    if _WALKS:
        fd = _walk(root, os.path.relpath(real, root).split(os.sep), os.fspath(path))
    else:
        fd = os.open(real, _READ)
        try:
            # without a walk that follows no link: the file opened must be the one checked, and
            # its path must still hold no link
            if identity(fd) != _stat_identity(real) or inside(root, real) != real:
                raise OutsideFolderError("changed while it was opened (a link was swapped)", os.fspath(path))
        except BaseException:
            os.close(fd)
            raise
    return fd


def _stat_identity(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _walk(root: str, parts: list[str], label: str) -> int:
    """Open ``root/parts...`` one component at a time, following no link (the real path checked
    has none: one found now was swapped in since)."""
    folder = os.open(root, os.O_RDONLY | _DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                below = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=folder)
            except OSError as err:
                _refuse_link(err, label)
                raise
            os.close(folder)
            folder = below
        try:
            return os.open(parts[-1], _READ | _NOFOLLOW, dir_fd=folder)
        except OSError as err:
            _refuse_link(err, label)
            raise
    finally:
        os.close(folder)


def _refuse_link(err: OSError, label: str) -> None:
    # O_NOFOLLOW on a link: ELOOP (Linux, macOS), EMLINK (FreeBSD); O_DIRECTORY on one: ENOTDIR
    if err.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
        raise OutsideFolderError("changed while it was opened (a link was swapped)", label) from err
