"""Imaris 9+ surfaces, ``/Scene8/Content/MegaSurfaces<k>``: what the group says about each
surface, one row per surface object (its meshes are stored in a layout not read here).

``SurfaceModel`` (one row per surface): ``ID_Time`` (time index), ``ID`` (the object id the
statistics name), ``ExtendMinX/Y/Z``, ``ExtendMaxX/Y/Z`` f4 (its axis-aligned bounding box in
world coordinates), the mesh's sampling (``NumberOfLevels``, ``SizeX/Y/Z``, ``Threshold``) and
its [begin, end) rows of ``LevelInfo`` and ``BlockInfo``. ``SurfaceModelInfo`` (one row per
surface, in ``SurfaceModel``'s order; it has no ID): ``Volume``, ``Area``, ``Sphericity``,
``PositionX/Y/Z`` f4, ``CenterOfMassX/Y/Z`` f8, ``NumberOfTriangles``,
``NumberOfSplittedSurfaceParts``, ellipsoid axes and an oriented bounding box.
``SurfaceTimeOffset`` (ID = time index, [IndexBegin, IndexEnd) rows of ``SurfaceModel``) is
checked against ``ID_Time``. The statistics tables are those of every ``Scene8`` group.
"""

from __future__ import annotations

import numpy as np

from .groups import ObjectGroup
from .scene8 import row_times

__all__ = ["MESH_NOT_READ", "MESH_TABLES", "read_summary"]

MESH_TABLES = ("LevelInfo", "BlockInfo", "SplitOffset", "BlockData")
"""What a ``MegaSurfaces`` group's meshes are rebuilt from (`surface_mesh.read_mega_surface`)."""

MESH_NOT_READ = (
    "the meshes of Imaris 9+ MegaSurfaces groups are not read without their octree tables"
    f" ({', '.join(MESH_TABLES)}), which this group lacks; its per-surface summary and statistics are read"
)

_MODEL = {
    "ID_Time": "int",
    "ID": "int",
    **{f"Extend{end}{axis}": "float" for end in ("Min", "Max") for axis in "XYZ"},
}
_INFO = {
    "Volume": "float",
    "Area": "float",
    "Sphericity": "float",
    **{f"Position{axis}": "float" for axis in "XYZ"},
    **{f"CenterOfMass{axis}": "float" for axis in "XYZ"},
    "NumberOfTriangles": "int",
    "NumberOfSplittedSurfaceParts": "int",
}
# summary column -> (table, field), in the summary's order
_COLUMNS = {
    "id": ("SurfaceModel", "ID"),
    "t": ("SurfaceModel", "ID_Time"),
    "volume": ("SurfaceModelInfo", "Volume"),
    "area": ("SurfaceModelInfo", "Area"),
    "sphericity": ("SurfaceModelInfo", "Sphericity"),
    **{f"{axis.lower()}": ("SurfaceModelInfo", f"Position{axis}") for axis in "XYZ"},
    **{f"center_of_mass_{axis.lower()}": ("SurfaceModelInfo", f"CenterOfMass{axis}") for axis in "XYZ"},
    **{
        f"{end.lower()}_{axis.lower()}": ("SurfaceModel", f"Extend{end}{axis}")
        for end in ("Min", "Max")
        for axis in "XYZ"
    },
    "triangles": ("SurfaceModelInfo", "NumberOfTriangles"),
    "parts": ("SurfaceModelInfo", "NumberOfSplittedSurfaceParts"),
}


def read_summary(group: ObjectGroup, timepoints: int) -> dict[str, np.ndarray]:
    """One entry per column of `_COLUMNS`, one row per surface in ``SurfaceModel``'s order:
    ``id``, ``t``, ``volume``, ``area``, ``sphericity``, ``x``, ``y``, ``z`` (Imaris' position),
    ``center_of_mass_x/y/z``, ``min_x`` ... ``max_z`` (the bounding box), ``triangles`` and
    ``parts`` (split surface parts). Values keep the file's types (ids and counts as int64)."""
    model = group.table("SurfaceModel", _MODEL)
    info = group.table("SurfaceModelInfo", _INFO)
    assert model is not None and info is not None
    n = len(model["ID"])
    if len(info["Volume"]) != n:
        raise group.error(f"SurfaceModelInfo has {len(info['Volume'])} rows but SurfaceModel has {n}")
    ids, counts = np.unique(model["ID"], return_counts=True)
    if (counts > 1).any():
        raise group.error(f"SurfaceModel holds ID {int(ids[counts > 1][0])} more than once")
    t = model["ID_Time"]
    group.time_indices("SurfaceModel", t, timepoints)
    by_offsets = row_times(group, "SurfaceTimeOffset", "SurfaceModel", n, timepoints)
    if (by_offsets != t).any():
        row = int(np.flatnonzero(by_offsets != t)[0])
        raise group.error(
            f"SurfaceTimeOffset gives SurfaceModel row {row} time {int(by_offsets[row])},"
            f" but its ID_Time is {int(t[row])}"
        )
    for field in ("NumberOfTriangles", "NumberOfSplittedSurfaceParts"):
        if (info[field] < 0).any():
            raise group.error(f"SurfaceModelInfo field {field} holds a negative count")
    tables = {"SurfaceModel": model, "SurfaceModelInfo": info}
    return {column: tables[table][field] for column, (table, field) in _COLUMNS.items()}
