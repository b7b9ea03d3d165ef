"""The plain records analysis objects are parsed into, the same for both layouts.

Arrays are numpy, as stored (positions keep the file's float type); identifiers are ``int64``.
The pandas tables of `ims_store.objects` are built from these records (see ``frames``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ObjectInfo", "Spots", "Statistics", "Surface", "Tracks"]

NO_ID = -1
"""Marks "none" in the integer columns below (no track, no object, no time point)."""


@dataclass(frozen=True)
class ObjectInfo:
    """One analysis object of a file, as `list_objects` describes it.

    ``kind`` is ``"spots"``, ``"surfaces"`` (both layouts: ``Surfaces``, ``MegaSurfaces``), else
    the group's own kind (``"filaments"``, ``"cells"``...). ``readable`` says whether its
    geometry (spots, meshes) is read, ``reason`` why not; ``contents`` what ims_store reads of it
    (``"spots"``, ``"tracks"``, ``"meshes"``, ``"summary"``, ``"statistics"``), so an object
    whose geometry is not read may still have its statistics read. ``timepoints`` are the
    time-point indices that hold objects; ``count`` is the number of spots (spots), of meshes,
    one per time point (old-layout surfaces), of surface objects (``MegaSurfaces``), or ``None``
    where not known.
    """

    name: str
    kind: str
    count: int | None
    timepoints: tuple[int, ...]
    has_tracks: bool
    readable: bool
    reason: str | None = None
    layout: str = "Scene8"
    """``"Scene8"`` (Imaris >= 7.6) or ``"Scene"`` (Imaris <= 7): where it was read from."""
    group: str = ""
    """Its HDF5 group, e.g. ``/Scene8/Content/Points0``."""
    statistics: int = 0
    """How many statistics values the file holds for it."""
    color: tuple[float, float, float] | None = None
    """Its display colour (``Material``'s ``mDiffusion``), r, g, b in 0..1."""
    vertices: int | None = None
    """Surfaces: vertices in all meshes."""
    triangles: int | None = None
    """Surfaces: triangles in all meshes (``MegaSurfaces``: the sum of Imaris' per-surface counts)."""
    unit: str | None = None
    contents: tuple[str, ...] = ()
    """What ims_store reads of it: ``"spots"``, ``"tracks"``, ``"meshes"``, ``"summary"``, ``"statistics"``."""

    @property
    def color_hex(self) -> str | None:
        """The colour as ``RRGGBB``, or None."""
        return "".join(f"{round(v * 255):02X}" for v in self.color) if self.color else None


@dataclass(frozen=True)
class Spots:
    """Spots, one row each: ``ids``, time-point index ``t``, ``xyz`` (n, 3), ``radius``, and
    ``track_ids`` (`NO_ID` for a spot in no track)."""

    ids: np.ndarray
    t: np.ndarray
    xyz: np.ndarray
    radius: np.ndarray
    track_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Tracks:
    """Tracks of spots: ``track_ids`` of each (track, spot) row with its ``spot_ids``, in track
    order, and the edges (``edge_track``, ``edge_a``, ``edge_b``: spot ids joined by an edge)."""

    track_ids: np.ndarray
    spot_ids: np.ndarray
    edge_track: np.ndarray
    edge_a: np.ndarray
    edge_b: np.ndarray


@dataclass(frozen=True)
class Statistics:
    """Statistics values, one row each, with what they are (names, units, categories and
    factors of their statistic); ``object_id`` and ``t`` are `NO_ID` where not tied to one."""

    name: list[str]
    unit: list[str]
    category: list[str]
    factors: list[dict[str, str]]
    object_id: np.ndarray
    t: np.ndarray
    value: np.ndarray

    def __len__(self) -> int:
        return len(self.value)

    @classmethod
    def empty(cls) -> Statistics:
        none = np.zeros(0, np.int64)
        return cls([], [], [], [], none, none, np.zeros(0, np.float64))


@dataclass(frozen=True)
class Surface:
    """The mesh of one surfaces object at one time point: ``vertices`` and ``normals`` (n, 3),
    x, y, z in the image's world coordinates, and ``triangles`` (m, 3): rows of ``vertices``."""

    t: int
    vertices: np.ndarray
    normals: np.ndarray
    triangles: np.ndarray = field(repr=False)

    def __repr__(self) -> str:
        return f"Surface(t={self.t}, vertices={len(self.vertices)}, triangles={len(self.triangles)})"
