"""Which analysis objects a file holds: the object groups of ``/Scene8`` and ``/Scene``, each
described (`ObjectInfo`) and bound to the reader of its layout.

Where a file holds both layouts (Imaris 7.6 to 9), they describe the same objects: ``Scene8`` is
read, and ``Scene`` only for an object ``Scene8`` lacks or holds in a layout not read here
(surfaces).
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import h5py

from ..access.files import links_of, open_file
from ..errors import MalformedObjectsError, SelectionError
from ..format.layout import ImsLayout, ImsWarning, parse_layout
from .groups import ObjectGroup, material_color
from .model import ObjectInfo, Spots, Statistics, Surface, Tracks
from .scene import read_spots as scene_spots
from .scene import read_surfaces as scene_surfaces
from .scene import spot_summary as scene_spot_summary
from .scene import surface_summary
from .scene8 import read_spots as scene8_spots
from .scene8 import spot_summary as scene8_spot_summary
from .statistics import read_statistics, statistics_count

__all__ = ["Entry", "catalog", "opened", "select"]

_MEMBER = re.compile(r"([A-Za-z]+?)(0|[1-9][0-9]*)")
# group-name prefix -> kind; which layouts ims_store reads the geometry of
_KINDS = {"Points": "spots", "Surfaces": "surfaces", "MegaSurfaces": "surfaces", "Filaments": "filaments"}
_ORDER = {"Points": 0, "Surfaces": 1, "MegaSurfaces": 1}  # spots, then surfaces, then the rest
_READ = {("Scene8", "Points"), ("Scene", "Points"), ("Scene", "Surfaces")}


@dataclass(frozen=True)
class Entry:
    """One object: its description and its group, ready to read."""

    info: ObjectInfo
    group: ObjectGroup
    layout_name: str
    prefix: str
    timepoints: int
    """The image's time points (an object's time indices must be among them)."""

    def spots(self) -> tuple[Spots, Tracks]:
        """A spots object's spots and tracks (one read serves both)."""
        read = scene8_spots if self.layout_name == "Scene8" else scene_spots
        return read(self.group, self.timepoints)

    def statistics(self) -> Statistics:
        """The old layout holds no statistics: empty there."""
        if self.layout_name != "Scene8":
            return Statistics.empty()
        return read_statistics(self.group, self.timepoints)

    def surfaces(self) -> list[Surface]:
        return scene_surfaces(self.group, self.timepoints)


@dataclass
class OpenFile:
    """An open file: its image layout (time points, unit, extents) and its HDF5 root."""

    f: h5py.File
    layout: ImsLayout
    label: str
    source: Any


@contextlib.contextmanager
def opened(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> Iterator[OpenFile]:
    """The file at ``path`` (local or any URL `ImsStore` takes), open for reading objects."""
    label = os.fspath(path)
    source = open_file(path, storage_options)
    try:
        with source.open_hdf5() as f:
            links = links_of(source, f)
            try:
                # the image's oddities are the image readers' to report: here only its time
                # points and unit are needed, and `info` would say them twice
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ImsWarning)
                    layout = parse_layout(f, label, links)
                yield OpenFile(f, layout, label, source)
            finally:
                links.close()
    finally:
        source.close()


def _members(opened_file: OpenFile, layout_name: str) -> list[tuple[str, int, h5py.Group | None, str]]:
    """(prefix, number, group or None when not a group, path) of each object group, in order."""
    content_path = f"{layout_name}/Content"
    for path in (layout_name, content_path):
        # absent: no objects of this layout; present but not a group (or a link to nothing): damaged
        try:
            link = opened_file.f.get(path, getlink=True)
            obj = opened_file.f.get(path) if link is not None else None
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:
            raise MalformedObjectsError(f"cannot be opened ({err})", opened_file.label, "/" + path) from err
        if link is None:
            return []
        if not isinstance(obj, h5py.Group):
            raise MalformedObjectsError("is not a group that can be opened", opened_file.label, "/" + path)
    content = obj
    found = []
    for name in content:
        match = _MEMBER.fullmatch(name)
        if not match:
            continue  # not an object group (Imaris keeps nothing else here, but leftovers are harmless)
        try:
            obj = content.get(name)
        except (OSError, RuntimeError, KeyError, ValueError):
            obj = None
        found.append((match.group(1), int(match.group(2)), obj if isinstance(obj, h5py.Group) else None, name))
    found.sort(key=lambda m: (_ORDER.get(m[0], len(_ORDER)), m[0], m[1]))
    return [(prefix, number, obj, f"/{content_path}/{name}") for prefix, number, obj, name in found]


def _describe(opened_file: OpenFile, layout_name: str, prefix: str, group: ObjectGroup) -> ObjectInfo:
    timepoints = len(opened_file.layout.timepoints)
    kind = _KINDS.get(prefix, prefix.lower())
    common: dict[str, Any] = {
        "name": group.text("Name") or group.where.rsplit("/", 1)[-1],
        "kind": kind,
        "layout": layout_name,
        "group": group.where,
        "color": material_color(group.text("Material")),
        "unit": group.text("Unit") or opened_file.layout.unit,
    }
    if (layout_name, prefix) not in _READ:
        reason = (
            f"the {layout_name} layout of {prefix} groups is not read by ims_store (its geometry is not documented)"
        )
        return ObjectInfo(count=None, timepoints=(), has_tracks=False, readable=False, reason=reason, **common)
    if prefix == "Points":
        summary = scene8_spot_summary if layout_name == "Scene8" else scene_spot_summary
        count, times, has_tracks = summary(group, timepoints)
        stats = statistics_count(group) if layout_name == "Scene8" else 0
        return ObjectInfo(
            count=count, timepoints=times, has_tracks=has_tracks, readable=True, statistics=stats, **common
        )
    meshes, times, vertices, triangles = surface_summary(group, timepoints)
    return ObjectInfo(
        count=meshes,
        timepoints=times,
        has_tracks=False,
        readable=True,
        vertices=vertices,
        triangles=triangles,
        **common,
    )


def catalog(opened_file: OpenFile) -> list[Entry]:
    """Every object of the file (see the module docstring for which layout is read)."""
    entries: list[Entry] = []
    for layout_name in ("Scene8", "Scene"):
        for prefix, _number, obj, where in _members(opened_file, layout_name):
            if obj is None:
                raise MalformedObjectsError("is not a group that can be opened", opened_file.label, where)
            group = ObjectGroup(obj, opened_file.label, getattr(opened_file.source, "failed_read", None))
            info = _describe(opened_file, layout_name, prefix, group)
            entry = Entry(info, group, layout_name, prefix, len(opened_file.layout.timepoints))
            # the same object in the other layout (objects of one layout may share a name)
            same = next(
                (
                    i
                    for i, e in enumerate(entries)
                    if e.layout_name != layout_name and (e.info.kind, e.info.name) == (info.kind, info.name)
                ),
                None,
            )
            if same is None:
                entries.append(entry)
            elif not entries[same].info.readable and info.readable:
                entries[same] = entry  # Scene8 holds it in a layout not read; Scene's copy is read
    return entries


def select(opened_file: OpenFile, kind: str, name: str | None) -> Entry:
    """The object of ``kind`` called ``name`` (its ``Name``, else its group's name such as
    ``Points1``), or the first of that kind; a `SelectionError` listing them otherwise."""
    entries = [e for e in catalog(opened_file) if e.info.kind == kind]
    if name is None and entries:
        chosen = entries[0]
    else:
        chosen = next((e for e in entries if e.info.name == name), None) or next(
            (e for e in entries if e.group.where.rsplit("/", 1)[-1] == name), None
        )
    if chosen is None:
        names = ", ".join(repr(e.info.name) for e in entries) or "none"
        what = f"no {kind} object named {name!r}" if name is not None else f"no {kind} objects"
        raise SelectionError(f"{what}; the file's {kind} objects: {names}", opened_file.label)
    if not chosen.info.readable:
        raise SelectionError(
            f"{kind} object {chosen.info.name!r} is not readable: {chosen.info.reason}", opened_file.label
        )
    return chosen
