"""Surfaces as PLY meshes (binary little-endian): vertices with normals, triangles.

Written here rather than through a mesh library: the format is a text header and two numpy
record arrays, the small PLY library (plyfile) is GPL-3.0, and the general mesh toolkits
(trimesh, meshio) are far larger than this. Tests read the files back with meshio.

>>> import numpy as np
>>> from ims_store.objects import Surface
>>> mesh = Surface(0, np.eye(3, dtype="f4"), np.eye(3, dtype="f4"), np.array([[0, 1, 2]]))
>>> write_ply(mesh, "triangle.ply", comment="one triangle")
PosixPath('triangle.ply')
>>> Path("triangle.ply").read_bytes().split(b"end_header")[0].decode().splitlines()[:4]
['ply', 'format binary_little_endian 1.0', 'comment one triangle', 'element vertex 3']
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ImsError
from .model import Surface

__all__ = ["write_ply"]

_VERTEX = np.dtype([(name, "<f4") for name in ("x", "y", "z", "nx", "ny", "nz")])
_FACE = np.dtype([("count", "u1"), ("vertex_indices", "<i4", (3,))])


def write_ply(surface: Surface, path: str | os.PathLike[str], *, comment: str = "") -> Path:
    """Write ``surface`` to ``path`` as a binary PLY (float32 x y z nx ny nz; int32 triangles)."""
    path = Path(path)
    n = len(surface.vertices)
    if n and int(surface.triangles.max(initial=0)) >= 2**31:
        raise ImsError(f"a mesh of {n} vertices is too large for PLY's int32 vertex indices", path)
    vertices = np.empty(n, _VERTEX)
    for i, axis in enumerate("xyz"):
        vertices[axis] = surface.vertices[:, i]
        vertices[f"n{axis}"] = surface.normals[:, i]
    faces = np.empty(len(surface.triangles), _FACE)
    faces["count"] = 3
    faces["vertex_indices"] = surface.triangles
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {line}" for line in comment.splitlines() if line]
    lines += [f"element vertex {n}", *(f"property float {name}" for name in _VERTEX.names)]
    lines += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    with open(path, "wb") as out:
        out.write(("\n".join(lines) + "\n").encode("ascii", "replace"))
        out.write(vertices.tobytes())
        out.write(faces.tobytes())
    return path
