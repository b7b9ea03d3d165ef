"""Atomic outputs: write under a temporary name beside the destination, rename at the end.

On any error or interruption the temporary file or folder is removed and the destination is
untouched; an existing destination is only replaced when asked, and an existing folder only
when it is a zarr (or empty).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ImsError

__all__ = ["DestinationExistsError", "WriteError", "atomic_output", "progress_bar"]


class WriteError(ImsError):
    """Writing an output failed; nothing was left at the destination."""


class DestinationExistsError(WriteError, FileExistsError):
    """The destination exists and ``overwrite`` was not given."""


def _is_zarr(folder: Path) -> bool:
    """A folder zarr wrote: v3 (``zarr.json``) or v2 (``.zgroup``) root metadata."""
    return (folder / "zarr.json").is_file() or (folder / ".zgroup").is_file()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_output(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it goes.

    >>> with atomic_output(Path("result.txt"), overwrite=False) as tmp:
    ...     _ = tmp.write_text("done")
    >>> Path("result.txt").read_text()
    'done'
    """
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise DestinationExistsError("exists already; pass overwrite=True to replace it", path)
    if path.is_dir() and not path.is_symlink() and not _is_zarr(path) and any(path.iterdir()):
        # overwriting deletes the old output: a folder with content that zarr did not write (a
        # user's data directory named by mistake) must survive any overwrite=True; an empty
        # one has nothing to lose
        raise WriteError("is a folder but not a zarr (no zarr.json or .zgroup); refusing to replace it", path)
    if not path.parent.is_dir():
        raise WriteError(f"folder {path.parent} does not exist", path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            # a folder cannot be replaced atomically: move the old one aside first
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def progress_bar(enabled: bool, total: int, description: str) -> Any:
    """A tqdm bar over ``total`` chunks when ``enabled``, else ``None`` (library calls stay quiet).

    The bar draws only on a terminal (tqdm's ``disable=None``: a log or a pipe gets no ``\\r``
    frames) or in a notebook (whose bar turns ``None`` into shown)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="chunk", desc=description, dynamic_ncols=True, disable=None)
