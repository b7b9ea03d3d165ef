"""The old layout, ``/Scene/Content`` (Imaris <= 7): plain numeric datasets per object.

Spots (``Points<k>``): ``CoordsXYZR`` (n, 4) x, y, z, radius; ``Time`` (n, 1) time-point index;
``Edges`` (m, 2) rows joined by a track edge (absent without tracks). The layout has no spot or
track ids: a spot's id is its row, and a track is a connected set of edges, numbered from 0 in
the order of their first spot's row.

Surfaces (``Surfaces<k>``): ``Vertices`` (v, 6) x, y, z, nx, ny, nz; ``Triangles`` (f, 3)
vertex rows; ``TimeNVerticesNTriangles`` (k, 3): per mesh its time index, vertex count and
triangle count, the meshes one after another in ``Vertices`` and ``Triangles``.
"""

from __future__ import annotations

import numpy as np

from .groups import ObjectGroup
from .model import NO_ID, Spots, Surface, Tracks

__all__ = ["read_spots", "read_surfaces", "spot_summary", "surface_summary"]


def _times(group: ObjectGroup, n: int, timepoints: int) -> np.ndarray:
    t = group.array("Time", "int", 1)
    assert t is not None
    if len(t) != n:
        raise group.error(f"Time has {len(t)} rows but CoordsXYZR has {n}")
    t = t[:, 0]
    group.time_indices("Time", t, timepoints)
    return t


def _edges(group: ObjectGroup, t: np.ndarray) -> np.ndarray:
    edges = group.array("Edges", "int", 2, optional=True)
    if edges is None:
        return np.zeros((0, 2), np.int64)
    n = len(t)
    bad = (edges < 0) | (edges >= n)
    if bad.any():
        raise group.error(f"Edges joins spot row {int(edges[bad][0])}, but there are {n} spots (rows 0..{n - 1})")
    group.track_edges("Edges", edges[:, 0], edges[:, 1], t[edges[:, 0]], t[edges[:, 1]])
    return edges


def spot_summary(group: ObjectGroup, timepoints: int) -> tuple[int, tuple[int, ...], bool]:
    """(spot count, time indices holding spots, whether there are tracks), reading only ``Time``
    and the shape of ``Edges``."""
    n = _coords_rows(group)
    t = _times(group, n, timepoints)
    has_tracks = group.has("Edges") and group.rows("Edges") > 0
    return n, tuple(int(v) for v in np.unique(t)), has_tracks


def _coords_rows(group: ObjectGroup) -> int:
    return group.matrix_rows("CoordsXYZR", 4)


def read_spots(group: ObjectGroup, timepoints: int) -> tuple[Spots, Tracks]:
    """The spots and their tracks (read together: a spot's track is found from the edges)."""
    coords = group.array("CoordsXYZR", "float", 4)
    assert coords is not None
    n = len(coords)
    t = _times(group, n, timepoints)
    edges = _edges(group, t)
    labels = _components(n, edges)
    spots = Spots(
        ids=np.arange(n, dtype=np.int64),
        t=t,
        xyz=np.ascontiguousarray(coords[:, :3]),
        radius=np.ascontiguousarray(coords[:, 3]),
        track_ids=labels,
    )
    tracked = np.flatnonzero(labels != NO_ID)
    # track order: by track, then time, then row
    order = tracked[np.lexsort((tracked, t[tracked], labels[tracked]))]
    edges = edges[np.lexsort((edges[:, 1], edges[:, 0], labels[edges[:, 0]]))] if len(edges) else edges
    tracks = Tracks(
        track_ids=labels[order],
        spot_ids=spots.ids[order],
        edge_track=labels[edges[:, 0]],
        edge_a=edges[:, 0].copy(),
        edge_b=edges[:, 1].copy(),
    )
    return spots, tracks


def _components(n: int, edges: np.ndarray) -> np.ndarray:
    """Track id of each of ``n`` spots: the connected sets of ``edges``, numbered by their first
    row; `NO_ID` for a spot on no edge."""
    # min-label hooking with pointer jumping, in numpy: each spot ends up pointing at the smallest
    # row of its connected set (labels only ever take the rows of members, and only decrease)
    roots = np.arange(n, dtype=np.int64)
    a, b = edges[:, 0], edges[:, 1]
    while True:
        ra, rb = roots[a], roots[b]
        hooked = roots.copy()
        low = np.minimum(ra, rb)
        np.minimum.at(hooked, ra, low)
        np.minimum.at(hooked, rb, low)
        while not np.array_equal(jumped := hooked[hooked], hooked):
            hooked = jumped
        if np.array_equal(hooked, roots):
            break
        roots = hooked
    on_edge = np.zeros(n, bool)
    on_edge[edges.ravel()] = True
    labels = np.full(n, NO_ID, np.int64)
    first_rows = np.unique(roots[on_edge])  # sorted: each track's first row
    labels[on_edge] = np.searchsorted(first_rows, roots[on_edge])
    return labels


def _blocks(group: ObjectGroup, timepoints: int) -> np.ndarray:
    blocks = group.array("TimeNVerticesNTriangles", "int", 3)
    assert blocks is not None
    if (blocks[:, 1:] < 0).any():
        raise group.error("TimeNVerticesNTriangles holds a negative vertex or triangle count")
    group.time_indices("TimeNVerticesNTriangles", blocks[:, 0], timepoints)
    return blocks


def surface_summary(group: ObjectGroup, timepoints: int) -> tuple[int, tuple[int, ...], int, int]:
    """(meshes, time indices, vertices, triangles), from the block table and dataset shapes."""
    blocks = _blocks(group, timepoints)
    vertices, triangles = _checked_totals(group, blocks)
    times = tuple(int(v) for v in np.unique(blocks[:, 0]))
    return len(times), times, vertices, triangles


def _checked_totals(group: ObjectGroup, blocks: np.ndarray) -> tuple[int, int]:
    shapes = {name: group.matrix_rows(name, columns) for name, columns in (("Vertices", 6), ("Triangles", 3))}
    for name, column in (("Vertices", 1), ("Triangles", 2)):
        total = int(blocks[:, column].sum())
        if total != shapes[name]:
            raise group.error(f"TimeNVerticesNTriangles counts {total} {name.lower()} but {name} has {shapes[name]}")
    return shapes["Vertices"], shapes["Triangles"]


def read_surfaces(group: ObjectGroup, timepoints: int) -> list[Surface]:
    blocks = _blocks(group, timepoints)
    _checked_totals(group, blocks)
    vertices = group.array("Vertices", "float", 6)
    triangles = group.array("Triangles", "int", 3)
    assert vertices is not None and triangles is not None
    v_start = np.concatenate([[0], np.cumsum(blocks[:, 1])])
    f_start = np.concatenate([[0], np.cumsum(blocks[:, 2])])
    pieces = [triangles[f_start[i] : f_start[i + 1]] for i in range(len(blocks))]
    offsets = _triangle_offsets(group, pieces, blocks[:, 1], v_start[:-1])
    by_time: dict[int, list[int]] = {}
    for i, t in enumerate(blocks[:, 0].tolist()):
        by_time.setdefault(int(t), []).append(i)
    surfaces = []
    for t in sorted(by_time):
        verts, faces, base = [], [], 0
        for i in by_time[t]:
            verts.append(vertices[v_start[i] : v_start[i + 1]])
            # rows of this block's own vertices, then of the time point's merged vertices
            faces.append(pieces[i] - offsets[i] + base)
            base += int(blocks[i, 1])
        merged = np.concatenate(verts) if verts else np.zeros((0, 6), vertices.dtype)
        surfaces.append(
            Surface(
                t=t,
                vertices=np.ascontiguousarray(merged[:, :3]),
                normals=np.ascontiguousarray(merged[:, 3:]),
                triangles=np.concatenate(faces) if faces else np.zeros((0, 3), np.int64),
            )
        )
    return surfaces


def _triangle_offsets(
    group: ObjectGroup, pieces: list[np.ndarray], counts: np.ndarray, starts: np.ndarray
) -> list[int]:
    """What to subtract from each block's vertex indices to make them rows of its own vertices.

    Whether the indices count from the start of ``Vertices`` (global) or restart at 0 in each
    block (local) is not documented: the reading under which every block's indices fall within
    its own vertices is taken; where both fit (possible past the first block), the one under
    which every block uses all of its vertices; where that does not decide either, an error."""

    def fits(offsets: np.ndarray) -> bool:
        return all(
            not len(p) or (int(p.min()) >= o and int(p.max()) < o + int(n))
            for p, n, o in zip(pieces, counts, offsets, strict=True)
        )

    def uses_all(offsets: np.ndarray) -> bool:
        return all(len(np.unique(p)) == int(n) for p, n, o in zip(pieces, counts, offsets, strict=True) if int(n))

    readings = [r for r in (starts, np.zeros_like(starts)) if fits(r)]
    if len(readings) == 2 and len(pieces) > 1 and not np.array_equal(*readings):
        complete = [r for r in readings if uses_all(r)]
        if len(complete) != 1:
            raise group.error("the triangles' vertex indices fit both a global and a per-mesh numbering")
        readings = complete
    if not readings:
        sizes = ", ".join(str(int(n)) for n in counts[:5])
        raise group.error(
            f"Triangles index vertices outside their mesh (meshes of {sizes}{', ...' if len(counts) > 5 else ''}"
            " vertices, indices counted globally or per mesh)"
        )
    return [int(v) for v in readings[0]]
