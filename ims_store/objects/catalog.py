"""Which analysis objects a file holds: the object groups of ``/Scene8`` and ``/Scene``, each
described (`ObjectInfo`) and bound to the readers of its layout.

Where a file holds both layouts (Imaris 7.6 to 9), they describe the same objects: ``Scene8`` is
read, and ``Scene`` only for an object ``Scene8`` lacks or whose geometry it holds in a layout
not read here (surfaces); such an object keeps the statistics and summary of its ``Scene8``
copy. Two groups are the same object when they have the same kind and name, or the same group
name and numeric ``Id`` (Imaris 9.5 leaves a ``Scene/Content/MegaSurfaces0`` without a name or
datasets beside the real ``Scene8`` one).
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import h5py
import numpy as np

from ..access.files import links_of, open_file
from ..errors import MalformedObjectsError, SelectionError
from ..format.layout import ImsLayout, ImsWarning, parse_layout
from .groups import ObjectGroup, material_color
from .megasurfaces import MESH_NOT_READ, MESH_TABLES, read_summary
from .model import ObjectInfo, Spots, Statistics, Surface, Tracks
from .scene import read_spots as scene_spots
from .scene import read_surfaces as scene_surfaces
from .scene import spot_summary as scene_spot_summary
from .scene import surface_summary
from .scene8 import object_ids
from .scene8 import read_spots as scene8_spots
from .scene8 import spot_summary as scene8_spot_summary
from .statistics import read_statistics, statistics_count
from .surface_mesh import read_mega_surface

__all__ = ["Entry", "catalog", "opened", "select"]

_MEMBER = re.compile(r"([A-Za-z]+?)(0|[1-9][0-9]*)")
# group-name prefix -> kind; which layouts ims_store reads the geometry of
_KINDS = {"Points": "spots", "Surfaces": "surfaces", "MegaSurfaces": "surfaces", "Filaments": "filaments"}
_ORDER = {"Points": 0, "Surfaces": 1, "MegaSurfaces": 1}  # spots, then surfaces, then the rest
_READ = {("Scene8", "Points"), ("Scene", "Points"), ("Scene", "Surfaces")}
# the table naming the objects of a Scene8 group whose statistics are checked against its ids
_OBJECT_TABLE = {"Points": "Spot", "MegaSurfaces": "SurfaceModel"}


@dataclass(frozen=True)
class Entry:
    """One object: its description and its group, ready to read."""

    info: ObjectInfo
    group: ObjectGroup
    layout_name: str
    prefix: str
    timepoints: int
    """The image's time points (an object's time indices must be among them)."""
    scene8: Entry | None = None
    """An old-layout object's ``Scene8`` copy, whose statistics and summary it has."""

    def spots(self) -> tuple[Spots, Tracks]:
        """A spots object's spots and tracks (one read serves both)."""
        read = scene8_spots if self.layout_name == "Scene8" else scene_spots
        return read(self.group, self.timepoints)

    def statistics(self) -> Statistics:
        """Its statistics, checked to name only objects it holds where their ids are known (the
        old layout holds none: empty there)."""
        if self.scene8 is not None:
            return self.scene8.statistics()
        if self.layout_name != "Scene8":
            return Statistics.empty()
        table = _OBJECT_TABLE.get(self.prefix)
        ids = object_ids(self.group, table) if table is not None else None
        return read_statistics(self.group, self.timepoints, ids)

    def summary(self) -> dict[str, np.ndarray]:
        """A ``MegaSurfaces`` object's per-surface summary (`megasurfaces.read_summary`)."""
        if self.scene8 is not None:
            return self.scene8.summary()
        return read_summary(self.group, self.timepoints)

    def surfaces(self) -> list[Surface]:
        """Its meshes: one per time point (the old layout), or one per surface (Imaris 9+
        ``MegaSurfaces``, each rebuilt from its octree field: `surface_mesh`)."""
        if self.prefix == "MegaSurfaces":
            count = len(self.summary()["id"])
            return [read_mega_surface(self.group.group, i) for i in range(count)]
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
    has_statistics = layout_name == "Scene8" and group.has("StatisticsValue")
    common: dict[str, Any] = {
        "name": group.text("Name") or group.where.rsplit("/", 1)[-1],
        "kind": kind,
        "layout": layout_name,
        "group": group.where,
        "color": material_color(group.text("Material")),
        "unit": group.text("Unit") or opened_file.layout.unit,
        "statistics": statistics_count(group) if has_statistics else 0,
    }
    if prefix == "Points" and (layout_name, prefix) in _READ:
        summary = scene8_spot_summary if layout_name == "Scene8" else scene_spot_summary
        count, times, has_tracks = summary(group, timepoints)
        contents = ("spots", "tracks", "statistics")
        return ObjectInfo(
            count=count, timepoints=times, has_tracks=has_tracks, readable=True, contents=contents, **common
        )
    if (layout_name, prefix) in _READ:
        meshes, times, vertices, triangles = surface_summary(group, timepoints)
        return ObjectInfo(
            count=meshes,
            timepoints=times,
            has_tracks=False,
            readable=True,
            vertices=vertices,
            triangles=triangles,
            contents=("meshes",),
            **common,
        )
    statistics = ("statistics",) if has_statistics else ()
    if prefix == "MegaSurfaces" and layout_name == "Scene8" and group.has("SurfaceModel"):
        table = read_summary(group, timepoints)
        meshes = all(group.has(name) for name in MESH_TABLES)
        return ObjectInfo(
            count=len(table["id"]),
            timepoints=tuple(int(v) for v in np.unique(table["t"])),
            has_tracks=False,
            readable=meshes,
            reason=None if meshes else MESH_NOT_READ,
            triangles=int(table["triangles"].sum()),
            contents=(*(("meshes",) if meshes else ()), "summary", *statistics),
            **common,
        )
    reason = f"the {layout_name} layout of {prefix} groups is not read by ims_store (its geometry is not documented)"
    if statistics:
        reason += "; its statistics are read"
    return ObjectInfo(
        count=None, timepoints=(), has_tracks=False, readable=False, reason=reason, contents=statistics, **common
    )


def _numeric_id(group: ObjectGroup) -> int | None:
    """The group's numeric ``Id`` attribute (a string of NULs in some files: then None)."""
    try:
        value = np.asarray(group.group.attrs.get("Id"))
    except (OSError, RuntimeError, KeyError, ValueError, TypeError):
        return None
    return int(value.reshape(-1)[0]) if value.dtype.kind in "iu" and value.size == 1 else None


def _same_object(a: Entry, b: Entry) -> bool:
    if a.info.kind != b.info.kind:
        return False
    if a.info.name == b.info.name:
        return True
    same_group = a.group.where.rsplit("/", 1)[-1] == b.group.where.rsplit("/", 1)[-1]
    return same_group and _numeric_id(a.group) is not None and _numeric_id(a.group) == _numeric_id(b.group)


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
                (i for i, e in enumerate(entries) if e.layout_name != layout_name and _same_object(e, entry)), None
            )
            if same is None:
                entries.append(entry)
            elif not entries[same].info.readable and info.readable:
                entries[same] = _joined(entry, entries[same])
    return entries


def _joined(scene: Entry, scene8: Entry) -> Entry:
    """Scene's copy of an object whose geometry Scene8 holds in a layout not read: Scene's
    geometry with Scene8's statistics and summary."""
    extra = tuple(c for c in scene8.info.contents if c not in scene.info.contents)
    info = replace(scene.info, statistics=scene8.info.statistics, contents=scene.info.contents + extra)
    return replace(scene, info=info, scene8=scene8)


def select(opened_file: OpenFile, kind: str | None, name: str | None, what: str) -> Entry:
    """The object of ``kind`` (any kind: None) called ``name`` (its ``Name``, else its group's
    name such as ``Points1``), or the first of that kind whose ``what`` (an `ObjectInfo`
    ``contents`` entry) is read; a `SelectionError` listing them otherwise, or saying why its
    ``what`` is not read. Of any kind, a name several objects share is refused (give the group's)."""
    entries = [e for e in catalog(opened_file) if kind is None or e.info.kind == kind]
    label = kind or "analysis"
    if name is None:
        chosen = next((e for e in entries if what in e.info.contents), entries[0] if entries else None)
    else:
        named = [e for e in entries if e.info.name == name]
        if kind is None and len(named) > 1:
            groups = ", ".join(e.group.where for e in named)
            raise SelectionError(
                f"several objects are named {name!r} ({groups}): give the group's name", opened_file.label
            )
        chosen = next(iter(named), None) or next((e for e in entries if e.group.where.rsplit("/", 1)[-1] == name), None)
    if chosen is None:
        names = ", ".join(repr(e.info.name) for e in entries) or "none"
        what_missing = f"no {label} object named {name!r}" if name is not None else f"no {label} objects"
        raise SelectionError(f"{what_missing}; the file's {label} objects: {names}", opened_file.label)
    if what not in chosen.info.contents:
        # the geometry is what a layout not read leaves out; tables are absent from the group
        geometry = what in ("spots", "tracks", "meshes")
        reason = chosen.info.reason if geometry and chosen.info.reason else f"its group holds no {what} tables"
        raise SelectionError(
            f"the {what} of {chosen.info.kind} object {chosen.info.name!r} are not readable: {reason}",
            opened_file.label,
        )
    return chosen
