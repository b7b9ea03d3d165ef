"""Objects reached through links, and the file each one lives in.

Tiled acquisitions are put together for Imaris as one file whose channel groups or ``Data``
datasets are HDF5 *external links* into one ``.ims`` per tile. A chunk index built from such a
dataset gives offsets in the *target* file, so whoever reads chunk bytes by offset must read
them from that file: `Links.get` returns every object together with the file holding it.

For a local file HDF5 resolves each external link itself (so that the file read is the one
h5py reads, whatever HDF5's search rules find). For a remote file HDF5 would look for the
target on this machine's disk, which is never right: there the link is resolved here, against
the linking file's URL, and the target opened through the caller's ``open_linked``.

>>> import h5py
>>> with h5py.File("cells.ims", "r") as f:
...     found = Links(f, "cells.ims").get("DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data")
>>> found.file is None  # in the file itself
True
"""

from __future__ import annotations

import os
import posixpath
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import h5py

from ..errors import ImsError, LinkTargetError, OutsideFolderError
from .confine import inside

__all__ = ["MAX_LINKS", "Located", "Links", "link_target_url", "stored_elsewhere"]

# HDF5's own limit on links followed to reach one object (H5L_NUM_LINKS)
MAX_LINKS = 16

_HDF5_ERRORS = (KeyError, OSError, RuntimeError, ValueError)


@dataclass(frozen=True)
class Located:
    """An object and the file it lives in."""

    obj: h5py.Group | h5py.Dataset
    file: str | None
    """The path (or URL) of the file holding ``obj`` when that is not the opened file itself."""


class Links:
    """Follows the links of one open file to the objects they name.

    Parameters
    ----------
    f
        The open HDF5 file.
    label
        Its path or URL (what error messages name; remote targets are resolved against it).
    remote
        Whether ``label`` is a URL: external links are then resolved here and their targets
        opened with ``open_linked``.
    follow
        False refuses every external link (`LinkTargetError`) instead of opening its target.
    open_linked
        For a remote file, or one kept ``within`` a folder: opens the file at a URL or path.
        Each target is opened once, and closed by `close`.
    within
        A folder (a real path) every target must lie in (a server's boundary): each external
        link is then resolved here, against the linking file's folder only (not HDF5's
        ``HDF5_EXT_PREFIX`` nor the working folder), a target outside raises
        `OutsideFolderError`, and targets are opened with ``open_linked``.
    """

    def __init__(
        self,
        f: h5py.File,
        label: str,
        *,
        remote: bool = False,
        follow: bool = True,
        open_linked: Callable[[str], h5py.File] | None = None,
        within: str | None = None,
    ) -> None:
        self.file = f
        self.within = within
        self.label = label
        self.remote = remote
        self.follow = follow
        self._open_linked = open_linked
        self._opened: dict[str, h5py.File] = {}

    def get(self, path: str) -> Located | None:
        """The object at ``path`` and its file; None where nothing is there (a missing member,
        a dangling soft link). A broken external link (missing, looping, unreadable or refused
        target) raises `LinkTargetError` naming this file, the link and its target."""
        if not self.remote and self.follow and self.within is None:
            # HDF5 follows every link itself, as it does for h5py: one call; the walk below
            # only runs to say which link broke
            try:
                obj = self.file[path]
            except _HDF5_ERRORS:
                return self._walk(path)
            return Located(obj, None if obj.id.fileno == self.file.id.fileno else os.path.abspath(obj.file.filename))
        return self._walk(path)

    def _walk(self, path: str) -> Located | None:
        """`get`, one link at a time."""
        obj: h5py.Group | h5py.Dataset = self.file["/"]
        file: str | None = None
        parts = deque(p for p in path.split("/") if p)
        hops = 0
        while parts:
            name = parts.popleft()
            if not isinstance(obj, h5py.Group):
                return None
            try:
                link = obj.get(name, getlink=True)
            except _HDF5_ERRORS:
                return None
            where = f"{obj.name.rstrip('/')}/{name}"
            if link is None:
                return None
            if isinstance(link, h5py.HardLink):
                try:
                    obj = obj[name]
                except _HDF5_ERRORS:
                    return None
                continue
            hops += 1
            if hops > MAX_LINKS:
                raise LinkTargetError(
                    f"{where}: links loop (more than {MAX_LINKS} followed to reach {path})", self.label
                )
            if isinstance(link, h5py.SoftLink):
                if link.path.startswith("/"):
                    obj = obj.file["/"]
                parts.extendleft(reversed([p for p in link.path.split("/") if p]))
                continue
            if not isinstance(link, h5py.ExternalLink):
                return None  # a user-defined link class: nothing HDF5 itself can follow
            described = f"{where} is an external link to {link.filename}:{link.path}"
            if not self.follow:
                raise LinkTargetError(f"{described}, another file, which is not followed here", self.label)
            if self.remote:
                file = link_target_url(file or self.label, link.filename)
                obj = self._open_remote(file, described)
                parts.extendleft(reversed([p for p in link.path.split("/") if p]))
                continue
            if self.within is not None:
                target = os.path.join(os.path.dirname(os.path.abspath(file or self.label)), link.filename)
                real = inside(self.within, target)
                if real is None:
                    raise OutsideFolderError(f"{described}, outside the folder served ({self.within})", self.label)
                file = real
                obj = self._open_remote(file, described)
                parts.extendleft(reversed([p for p in link.path.split("/") if p]))
                continue
            try:
                obj = obj[name]  # HDF5 finds the target as it always does for h5py
            except _HDF5_ERRORS as err:
                raise LinkTargetError(f"{described}, which cannot be opened ({_hdf5_reason(err)})", self.label) from err
            file = None if obj.id.fileno == self.file.id.fileno else os.path.abspath(obj.file.filename)
        return Located(obj, file)

    def _open_remote(self, url: str, described: str) -> h5py.Group:
        if self._open_linked is None:
            raise LinkTargetError(f"{described}, which is not followed for this file", self.label)
        if url not in self._opened:
            try:
                self._opened[url] = self._open_linked(url)
            except OutsideFolderError as err:
                raise OutsideFolderError(f"{described}, which {err.reason}", self.label) from err
            except ImsError as err:
                raise LinkTargetError(f"{described}, which cannot be opened ({url}: {err.reason})", self.label) from err
        return self._opened[url]["/"]

    def close(self) -> None:
        """Close the targets opened for a remote file (HDF5 closes those it opened itself)."""
        opened, self._opened = self._opened, {}
        for f in opened.values():
            f.close()


def link_target_url(linking: str, target: str) -> str:
    """The URL of an external link's target, relative to the linking file's folder, as HDF5
    resolves a relative target on disk (an absolute target is looked for by its name there,
    which is HDF5's own fallback: a local absolute path means nothing on a server).

    >>> link_target_url("https://host/data/mosaic.ims", "./tiles/t1.ims")
    'https://host/data/tiles/t1.ims'
    """
    scheme, rest = linking.split("://", 1)
    host, _, path = rest.partition("/")
    name = target.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        name = name.rsplit("/", 1)[-1]
    joined = posixpath.normpath(posixpath.join(posixpath.dirname("/" + path), name))
    return f"{scheme}://{host}{joined}"


def _hdf5_reason(err: BaseException) -> str:
    """HDF5's message without h5py's prefix ("Unable to synchronously open object (...)")."""
    text = str(err).strip("'\"")
    inner = text[text.find("(") + 1 : text.rfind(")")] if "(" in text and text.endswith(")") else text
    return inner or type(err).__name__


def stored_elsewhere(
    dataset: h5py.Dataset, *, remote: bool, follow: bool = True, within: str | None = None, depth: int = 0
) -> str:
    """What keeps HDF5 from reading ``dataset`` right when its data lies in other files ("" when
    nothing does): a virtual dataset's missing source (HDF5 would read its fill value, with no
    error), an external raw data file that is missing; either in a remote file, whose other
    files HDF5 would look for on this machine; or any other file at all when not ``follow``.

    ``within`` (a server's folder, a real path): external raw data files are refused whatever
    they are, and each virtual source must be the file HDF5 itself would find (its prefix
    variable and working folder included), inside that folder, and a dataset whose own data
    lies nowhere else (checked the same way, up to `MAX_LINKS` sources deep)."""
    plist = dataset.id.get_create_plist()
    folder = os.path.dirname(os.path.abspath(dataset.file.filename)) if not remote else ""
    if plist.get_external_count() and not follow:
        return "its data lies in external raw data files, which are not followed here"
    if plist.get_external_count() and within is not None:
        # any file at all, named by the dataset: a server never reads one (a file's own voxels
        # are never stored so by Imaris)
        return "its data lies in external raw data files, which a server never reads"
    if dataset.is_virtual:
        for source in dataset.virtual_sources():
            if source.file_name == ".":
                continue
            if not follow:
                return f"a virtual dataset whose source {source.file_name} is another file, not followed here"
            if remote:
                return f"a virtual dataset in a remote file: HDF5 would look for its source {source.file_name} here"
            # HDF5 looks in HDF5_VDS_PREFIX's folders, the virtual dataset's folder, the working folder
            places = [*_prefixes("HDF5_VDS_PREFIX", folder), folder, ""]
            candidates = _candidates(source.file_name, places)
            if within is not None:
                problem = _source_within(within, candidates, source.file_name, source.dset_name, depth)
                if problem:
                    return problem
            elif not _has_dataset(candidates, source.dset_name):
                return f"a virtual dataset whose source {source.file_name}:{source.dset_name} cannot be found"
    for i in range(plist.get_external_count()):
        name = plist.get_external(i)[0].decode("utf-8", "replace")
        if remote:
            return f"its data lies in the external raw data file {name}, which HDF5 would look for here"
        # HDF5 looks in HDF5_EXTFILE_PREFIX's folder, else the working folder (not the file's)
        places = _prefixes("HDF5_EXTFILE_PREFIX", folder) or [""]
        if not any(os.path.isfile(p) for p in _candidates(name, places)):
            return f"its data lies in the external raw data file {name}, which cannot be found"
    return ""


def _source_within(within: str, candidates: list[str], name: str, dataset: str, depth: int) -> str:
    """Why a virtual source cannot be read by a server serving ``within`` ("" when it can): the
    first candidate HDF5 would open must lie inside, hold the dataset without crossing an
    external link (HDF5 would resolve that itself), and its data must lie nowhere outside."""
    found = next((p for p in candidates if os.path.isfile(p)), None)
    if found is None:
        return f"a virtual dataset whose source {name}:{dataset} cannot be found"
    real = inside(within, found)
    if real is None:
        return f"a virtual dataset whose source {name} is {os.path.abspath(found)}, outside the folder served"
    if depth >= MAX_LINKS:
        return f"a virtual dataset whose sources nest more than {MAX_LINKS} deep"
    try:
        with h5py.File(real, "r") as f:
            located = Links(f, real, within=within).get(dataset)
            if located is None or not isinstance(located.obj, h5py.Dataset):
                return f"a virtual dataset whose source {name}:{dataset} cannot be found"
            if located.file is not None:
                return f"a virtual dataset whose source {name}:{dataset} lies behind an external link, not followed"
            inner = stored_elsewhere(located.obj, remote=False, within=within, depth=depth + 1)
    except ImsError as err:
        return f"a virtual dataset whose source {name}:{dataset} cannot be read ({err.reason})"
    except _HDF5_ERRORS as err:
        return f"a virtual dataset whose source {name} cannot be opened ({_hdf5_reason(err)})"
    return f"a virtual dataset whose source {name}:{dataset} is itself {inner}" if inner else ""


def _prefixes(variable: str, folder: str) -> list[str]:
    """The folders an HDF5 prefix variable names (``${ORIGIN}``: the naming file's folder)."""
    text = os.environ.get(variable, "")
    return [p.replace("${ORIGIN}", folder) for p in text.split(os.pathsep) if p]


def _candidates(name: str, places: list[str]) -> list[str]:
    """Where HDF5 looks for a file another file names: the name itself when absolute, else in
    each of ``places`` ("" is the working folder)."""
    if os.path.isabs(name):
        return [name]
    return [os.path.join(p, name) if p else name for p in places]


def _has_dataset(paths: list[str], dataset: str) -> bool:
    for path in paths:
        if os.path.isfile(path):
            try:
                with h5py.File(path, "r") as f:
                    return isinstance(f.get(dataset), h5py.Dataset)
            except _HDF5_ERRORS:
                return False
    return False
