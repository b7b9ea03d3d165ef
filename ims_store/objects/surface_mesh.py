"""Imaris 9+ surface meshes (``Scene8/Content/MegaSurfaces<k>``), rebuilt from the field Imaris
stores in their place.

Imaris 9 keeps no triangles in the file. Each surface (a ``SurfaceModel`` row) is an octree of
cells over a grid of ``SizeX x SizeY x SizeZ`` cells spanning ``ExtendMin..ExtendMax``; the cells
of its finest level carry, at their eight corners, a square-root-coded sample of a field and its
direction (the surface normal). The surface is that field's level set at ``Threshold``, triangulated
by marching cubes (scikit-image's Lewiner implementation here): on ``PyramidalCell_Imaris95.ims``
this gives exactly Imaris' ``NumberOfTriangles`` for all 32 surfaces, areas within 0.2 % and volumes
within 1.9 % of Imaris' own statistics. docs/format.md ("Imaris 9+ MegaSurfaces") holds the layout
and the evidence for each part of it.

Every structure is checked before it is used (offsets, counts, sampling, grid bounds, corners
that disagree): what does not fit the layout raises `MalformedObjectsError` rather than a guess.

>>> import h5py
>>> with h5py.File("megasurfaces.ims", "r") as f:
...     mesh = read_mega_surface(f["Scene8/Content/MegaSurfaces0"], 0)
>>> mesh
Surface(t=0, vertices=774, triangles=1544)
>>> mesh.vertices.min(axis=0).round(1), mesh.vertices.max(axis=0).round(1)
(array([1.3, 2.3, 3.3]), array([4.7, 5.7, 6.7]))
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import h5py
import numpy as np

from ..errors import MissingDependencyError, SelectionError
from .groups import ObjectGroup
from .model import Surface

__all__ = ["read_mega_surface"]

_SURFACE = {
    "ID_Time": "int",
    "ID": "int",
    "NumberOfLevels": "int",
    **{f"Size{a}": "int" for a in "XYZ"},
    **{f"Extend{m}{a}": "float" for m in ("Min", "Max") for a in "XYZ"},
    "DataCountPerChildNode": "int",
    "Threshold": "float",
    "LevelInfoBegin": "int",
    "LevelInfoEnd": "int",
    "BlockInfoBegin": "int",
    "BlockInfoEnd": "int",
}
_BLOCK = {
    "ParentBlockIndex": "int",
    "SplitOffsetsBegin": "int",
    "SplitOffsetsEnd": "int",
    "NodeBegin": "int",
    "NodeEnd": "int",
    "LeafBegin": "int",
    "LeafEnd": "int",
}
_LEVEL = {"SamplingX": "int", "SamplingY": "int", "SamplingZ": "int"}

# A child's data: 8 corner words (13-bit value, 3-bit normal face) then 8 normal words (two bytes),
# 16 uint16 = DataCountPerChildNode (8) four-byte values = 4 int64 of BlockData.
_DATA_PER_CHILD = 8
_WORDS_PER_CHILD = 16
_EMPTY = 0xFFFF  # every word of a child that lies wholly inside the surface
_SCALE = 8192  # the 13-bit values' range: Threshold is a fraction of it (4096.5 / 8192 in real files)
# corner c (and child c of a node) sits at x = c & 1, y = (c >> 1) & 1, z = (c >> 2) & 1
_CORNERS = np.array([[c & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], np.int64)
_CHUNK = 64  # cells per axis meshed at a time: bounds the dense arrays to 65**3 samples
_OUTSIDE, _INSIDE = -1.0, 1.0  # field of samples no finest cell gives / of cells wholly inside


@dataclass(frozen=True)
class _Cells:
    """The finest cells of one surface: ``origin`` (m, 3) grid positions (x, y, z) and their 16
    data words each (``words`` (m, 16) uint16)."""

    origin: np.ndarray
    words: np.ndarray


def read_mega_surface(group: h5py.Group, index: int) -> Surface:
    """The mesh of surface ``index`` (a row of ``SurfaceModel``) of a ``MegaSurfaces`` group:
    vertices in the image's world coordinates (float64 x, y, z), outward unit normals, and
    triangles (int64 rows of vertices) wound counter-clockwise seen from outside; ``t`` is the
    surface's time-point index (``ID_Time``).

    >>> import h5py
    >>> with h5py.File("megasurfaces.ims", "r") as f:
    ...     read_mega_surface(f["Scene8/Content/MegaSurfaces0"], 1).t
    1
    """
    objects = ObjectGroup(group, group.file.filename)
    surfaces = objects.table("SurfaceModel", _SURFACE)
    assert surfaces is not None
    count = len(surfaces["ID"])
    if not 0 <= index < count:
        raise SelectionError(f"{objects.where} holds surfaces 0..{count - 1}, not surface {index}", objects.label)
    row = {name: column[index] for name, column in surfaces.items()}
    size = np.array([int(row[f"Size{a}"]) for a in "XYZ"], np.int64)
    low = np.array([float(row[f"ExtendMin{a}"]) for a in "XYZ"])
    high = np.array([float(row[f"ExtendMax{a}"]) for a in "XYZ"])
    what = f"surface {index} (ID {int(row['ID'])})"
    too_large = (size > 2**20).any()  # grid positions are numbered with int64
    if too_large or (size < 1).any() or not (np.isfinite(low).all() and np.isfinite(high).all()) or (high < low).any():
        raise objects.error(f"{what} has Size {size.tolist()} and extents {low.tolist()}..{high.tolist()}")
    if int(row["DataCountPerChildNode"]) != _DATA_PER_CHILD:
        count_per_child = int(row["DataCountPerChildNode"])
        raise objects.error(f"{what} has DataCountPerChildNode {count_per_child}; only {_DATA_PER_CHILD} is understood")
    threshold = float(row["Threshold"]) * _SCALE
    if not 0 < threshold < _SCALE - 1:
        raise objects.error(f"{what} has Threshold {float(row['Threshold'])}, outside 0..1")
    cells = _finest_cells(objects, row, size, what)
    points, values, normals = _samples(objects, cells, size, threshold, what)
    vertices, triangles = _triangulate(cells, points, values, size)
    voxel = (high - low) / size
    world = low + vertices * voxel
    return Surface(
        int(row["ID_Time"]), world, _vertex_normals(vertices, world, triangles, points, normals, size), triangles
    )


def _finest_cells(objects: ObjectGroup, row: dict[str, Any], size: np.ndarray, what: str) -> _Cells:
    """Walk the octree from its root to the finest level: where each cell lies and its data."""
    levels = objects.table("LevelInfo", _LEVEL)
    blocks = objects.table("BlockInfo", _BLOCK)
    assert levels is not None and blocks is not None
    level_begin, level_end = int(row["LevelInfoBegin"]), int(row["LevelInfoEnd"])
    block_begin, block_end = int(row["BlockInfoBegin"]), int(row["BlockInfoEnd"])
    objects.index_ranges(
        f"SurfaceModel ({what})", np.array([level_begin]), np.array([level_end]), len(levels["SamplingX"]), "LevelInfo"
    )
    objects.index_ranges(
        f"SurfaceModel ({what})", np.array([block_begin]), np.array([block_end]), len(blocks["NodeBegin"]), "BlockInfo"
    )
    n_levels = int(row["NumberOfLevels"])
    if n_levels < 1 or level_end - level_begin != n_levels or block_end <= block_begin:
        raise objects.error(
            f"{what} has {n_levels} levels, LevelInfo rows [{level_begin}, {level_end})"
            f" and BlockInfo rows [{block_begin}, {block_end})"
        )
    sampling = np.stack([levels[f"Sampling{a}"][level_begin:level_end] for a in "XYZ"], axis=1)
    if not np.isin(sampling, (1, 2)).all():
        raise objects.error(f"{what} has level samplings {sampling.tolist()}; only 1 and 2 are understood")
    # a node of level k spans the product of the samplings of levels k..; its children one level less
    span = np.cumprod(sampling[::-1], axis=0)[::-1]
    if (span[0] < size).any():
        raise objects.error(f"{what}: its octree spans {span[0].tolist()} cells, less than its Size {size.tolist()}")
    child_span = np.vstack([span[1:], np.ones((1, 3), np.int64)])
    depth, kids_of, cuts_of = _block_tree(objects, blocks, block_begin, block_end, what)
    data = objects.dataset("BlockData")
    assert data is not None
    if data.dtype.kind != "i" or data.dtype.itemsize != 8 or data.ndim != 2:
        raise objects.error(f"BlockData has type {data.dtype} and shape {data.shape}, expected int64 (rows, n)")
    stored = int(data.shape[0]) * int(data.shape[1])
    for name in ("Node", "Leaf"):
        objects.index_ranges(
            "BlockInfo",
            blocks[f"{name}Begin"][block_begin:block_end],
            blocks[f"{name}End"][block_begin:block_end],
            stored,
            "BlockData (as one run of int64)",
        )
    origins = np.zeros((1, 3), np.int64)  # the root node at grid position 0
    above = (np.zeros(0, np.int64), np.zeros(0, np.int64))  # the level above: each node's block, child nodes
    for level in range(n_levels):
        members = [b for b in range(block_end - block_begin) if depth[b] == level]
        if not members:
            raise objects.error(f"{what} has no block for level {level} of its {n_levels}")
        node_words, data_words, owner = [], [], []
        for b in members:
            i = block_begin + b
            nodes = _int64_run(objects, data, int(blocks["NodeBegin"][i]), int(blocks["NodeEnd"][i]))
            leaves = _int64_run(objects, data, int(blocks["LeafBegin"][i]), int(blocks["LeafEnd"][i]))
            node_words.append(nodes)
            data_words.append(leaves)
            owner.append(np.full(len(nodes), b))
        nodes = np.concatenate(node_words).view(np.uint64)
        if len(nodes) != len(origins):
            raise objects.error(f"{what} level {level} holds {len(nodes)} nodes; the level above makes {len(origins)}")
        if level:
            _check_split(objects, members, [len(w) for w in node_words], above, kids_of, cuts_of, what)
        present, split, data_offset, child_offset = _node_fields(nodes)
        if (split & ~present).any():
            raise objects.error(f"{what} level {level}: a node subdivides a child it holds no data for")
        _check_offsets(
            objects, present, data_offset, np.concatenate(owner), _DATA_PER_CHILD, f"{what} level {level} data"
        )
        # child-node offsets count from the start of the child block the node's children go to
        part = [
            np.searchsorted(cuts_of[b], np.arange(len(w)), side="right")
            for b, w in zip(members, node_words, strict=True)
        ]
        pairs = np.stack([np.concatenate(owner), np.concatenate(part)], axis=1)
        segment = np.unique(pairs, axis=0, return_inverse=True)[1].ravel()
        _check_offsets(objects, split, child_offset, segment, 1, f"{what} level {level} child-node")
        bits = (present[:, None] >> np.arange(8, dtype=np.uint64)) & np.uint64(1)
        node_of, corner = np.nonzero(bits)
        outside = (_CORNERS[corner] >= sampling[level]).any(axis=1)
        if outside.any():
            child = int(corner[outside][0])
            raise objects.error(
                f"{what} level {level}: child {child} lies outside the sampling {sampling[level].tolist()}"
            )
        leaf = np.concatenate(data_words)
        if len(leaf) * 4 != len(node_of) * _WORDS_PER_CHILD:
            raise objects.error(
                f"{what} level {level} holds {len(leaf)} int64 of data for {len(node_of)} children"
                f" ({len(node_of) * 4} expected)"
            )
        children = origins[node_of] + _CORNERS[corner] * child_span[level]
        if level == n_levels - 1:
            if split.any():
                raise objects.error(f"{what}: its finest level subdivides a cell")
            if (children >= size).any():
                at = children[(children >= size).any(axis=1)][0].tolist()
                raise objects.error(f"{what}: a finest cell lies at {at}, outside its Size {size.tolist()}")
            words = leaf.astype("<i8").view("<u2").reshape(-1, _WORDS_PER_CHILD)
            return _Cells(children, words)
        split_bits = (split[node_of] >> corner.astype(np.uint64)) & np.uint64(1)
        origins = children[split_bits.astype(bool)]
        above = (np.concatenate(owner), _popcount(split))
    raise AssertionError("unreachable")  # pragma: no cover


def _block_tree(
    objects: ObjectGroup, blocks: dict[str, Any], begin: int, end: int, what: str
) -> tuple[list[int], list[list[int]], list[np.ndarray]]:
    """The octree level each block holds, each block's child blocks and its ``SplitOffset`` cuts.

    The first block is the root's; every other names a parent block before it
    (``ParentBlockIndex``, counted from the surface's first block), and the children of the
    parent's nodes [cut[j-1], cut[j]) are the nodes of its j-th child block."""
    parents = blocks["ParentBlockIndex"][begin:end]
    depth = [0]
    for b in range(1, end - begin):
        parent = int(parents[b])
        if not 0 <= parent < b:
            raise objects.error(f"{what}: block {b} names parent block {parent}")
        depth.append(depth[parent] + 1)
    order = [int(parents[b]) for b in range(1, end - begin)]
    if order != sorted(order):
        raise objects.error(f"{what}: its blocks do not follow their parents' order ({order})")
    split = objects.table("SplitOffset", {"Data": "int"}, optional=True)
    cuts_of = []
    kids_of = [[k for k in range(1, end - begin) if int(parents[k]) == b] for b in range(end - begin)]
    for b in range(end - begin):
        kids = len(kids_of[b])
        first, last = int(blocks["SplitOffsetsBegin"][begin + b]), int(blocks["SplitOffsetsEnd"][begin + b])
        if not kids:
            cuts_of.append(np.zeros(0, np.int64))
            continue
        if split is None:
            raise objects.error("no SplitOffset dataset, which a surface of several blocks needs")
        objects.index_ranges("BlockInfo", np.array([first]), np.array([last]), len(split["Data"]), "SplitOffset")
        cuts = split["Data"][first:last]
        nodes = int(blocks["NodeEnd"][begin + b] - blocks["NodeBegin"][begin + b])
        if len(cuts) != kids or int(cuts[-1]) != nodes or (np.diff(cuts) < 0).any() or int(cuts[0]) < 0:
            raise objects.error(
                f"{what}: block {b}'s SplitOffset {cuts.tolist()} does not split its {nodes} nodes"
                f" among {kids} child blocks"
            )
        cuts_of.append(cuts)
    return depth, kids_of, cuts_of


def _check_split(
    objects: ObjectGroup,
    members: list[int],
    node_counts: list[int],
    above: tuple[np.ndarray, np.ndarray],
    kids_of: list[list[int]],
    cuts_of: list[np.ndarray],
    what: str,
) -> None:
    """The nodes of each block of a level (``members``, holding ``node_counts``) are the child
    nodes of the parent block's nodes its cut gives it (``above``: the level above's block of each
    node and that node's number of child nodes)."""
    owner, children = above
    got = dict(zip(members, node_counts, strict=True))
    for parent in np.unique(owner).tolist():
        per_node = children[owner == parent]
        if not kids_of[parent]:
            if per_node.any():
                raise objects.error(f"{what}: block {parent}'s nodes have child nodes but it has no child block")
            continue
        total = np.concatenate([[0], np.cumsum(per_node)])
        expected = np.diff(np.concatenate([[0], total[cuts_of[parent]]]))
        actual = [got.get(b, -1) for b in kids_of[parent]]
        if expected.tolist() != actual:
            raise objects.error(
                f"{what}: block {parent}'s nodes have {expected.tolist()} child nodes per child block,"
                f" its child blocks hold {actual}"
            )


def _int64_run(objects: ObjectGroup, data: h5py.Dataset, begin: int, end: int) -> np.ndarray:
    """Elements [begin, end) of BlockData read as one run (row after row)."""
    width = int(data.shape[1])
    parts = []
    position = begin
    while position < end:
        r, c = divmod(position, width)
        stop = min(end - position, width - c)
        try:
            parts.append(np.asarray(data[r, c : c + stop], dtype="<i8"))
        except (OSError, RuntimeError, ValueError) as err:
            raise objects.error(f"BlockData row {r} cannot be read ({type(err).__name__}: {err})") from err
        position += stop
    return np.concatenate(parts) if parts else np.zeros(0, "<i8")


def _node_fields(nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A node word: high half = mask of the children holding data (top byte) and where their data
    begins (24 bits, in 4-byte values); low half = mask of the children that are nodes of the
    next level and where those begin (24 bits, in nodes). Offsets count from the block's start."""
    high, low = nodes >> np.uint64(32), nodes & np.uint64(0xFFFFFFFF)
    mask24 = np.uint64(0xFFFFFF)
    return (
        high >> np.uint64(24),
        low >> np.uint64(24),
        (high & mask24).astype(np.int64),
        (low & mask24).astype(np.int64),
    )


def _popcount(masks: np.ndarray) -> np.ndarray:
    """The number of set bits of each 8-bit mask."""
    return np.unpackbits(masks.astype(np.uint8)[:, None], axis=1).sum(axis=1).astype(np.int64)


def _check_offsets(
    objects: ObjectGroup, masks: np.ndarray, offsets: np.ndarray, owner: np.ndarray, per: int, what: str
) -> None:
    """Each node's offset must be where the children of the block's nodes before it end."""
    counts = _popcount(masks) * per
    expected = np.zeros(len(counts), np.int64)
    for b in np.unique(owner):
        rows = np.flatnonzero(owner == b)
        expected[rows] = np.concatenate([[0], np.cumsum(counts[rows])[:-1]])
    wrong = (offsets != expected) & (counts > 0)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise objects.error(f"{what} offset of node {i} is {int(offsets[i])}, expected {int(expected[i])}")


def _samples(
    objects: ObjectGroup, cells: _Cells, size: np.ndarray, threshold: float, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid samples the finest cells give: sorted linear indices, the field (the stored value
    v decoded as sign(v - T) (v - T)^2, which the stored normals are the gradient of) and the
    outward unit normal (NaN where none is stored)."""
    corner = cells.words[:, :8]
    empty = corner == _EMPTY
    whole = empty.all(axis=1) & (cells.words[:, 8:] == _EMPTY).all(axis=1)
    if (empty.any(axis=1) & ~whole).any():
        raise objects.error(f"{what}: a finest cell has some corners marked empty (0xFFFF) and others not")
    shape = size + 1
    positions = cells.origin[:, None, :] + _CORNERS[None]
    keys = np.ravel_multi_index((positions[..., 0], positions[..., 1], positions[..., 2]), tuple(shape), order="F")
    real_keys, real_words = keys[~whole].ravel(), cells.words[~whole]
    value_words = real_words[:, :8].ravel()
    normal_words = real_words[:, 8:].ravel()
    order = np.argsort(real_keys, kind="stable")
    real_keys, value_words, normal_words = real_keys[order], value_words[order], normal_words[order]
    first = np.concatenate([[True], real_keys[1:] != real_keys[:-1]])
    group_of = np.cumsum(first) - 1
    disagree = (value_words != value_words[first][group_of]) | (normal_words != normal_words[first][group_of])
    if disagree.any():
        at = np.unravel_index(int(real_keys[disagree][0]), tuple(shape), order="F")
        raise objects.error(f"{what}: the cells around grid point {[int(v) for v in at]} give it different samples")
    points, value_words, normal_words = real_keys[first], value_words[first], normal_words[first]
    stored = (value_words & 0x1FFF).astype(np.float64)
    field = np.sign(stored - threshold) * ((stored - threshold) / (_SCALE / 2)) ** 2
    normals = _decode_normals(value_words >> 13, normal_words)
    inside = np.setdiff1d(keys[whole].ravel(), points)
    all_points = np.concatenate([points, inside])
    order = np.argsort(all_points)
    field = np.concatenate([field, np.full(len(inside), _INSIDE)])[order]
    normals = np.concatenate([normals, np.full((len(inside), 3), np.nan)])[order]
    return all_points[order], field, normals


def _decode_normals(face: np.ndarray, words: np.ndarray) -> np.ndarray:
    """A cube-map normal: ``face`` 1..6 = the axis (x, y, z) the field's gradient points along most,
    negative for 1..3 and positive for 4..6; the two bytes of ``words`` (127 = 0, 0 and 254 = -1
    and 1) are the next two axes (cyclically) relative to that one. The outward normal points
    against the gradient."""
    normals = np.full((len(face), 3), np.nan)
    known = (face >= 1) & (face <= 6)
    axis = (face[known].astype(np.int64) - 1) % 3
    gradient_sign = np.where(face[known] >= 4, 1.0, -1.0)
    u = ((words[known] & 0xFF).astype(np.float64) - 127) / 127
    v = ((words[known] >> 8).astype(np.float64) - 127) / 127
    n = np.zeros((len(axis), 3))
    rows = np.arange(len(axis))
    n[rows, axis] = -gradient_sign
    n[rows, (axis + 1) % 3] = u
    n[rows, (axis + 2) % 3] = v
    normals[known] = n / np.linalg.norm(n, axis=1, keepdims=True)
    return normals


def _triangulate(
    cells: _Cells, points: np.ndarray, field: np.ndarray, size: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes over the finest cells, a chunk of the grid at a time: vertices in grid
    units (float64 x, y, z) and triangles."""
    try:
        from skimage.measure import marching_cubes
    except ImportError as err:
        raise MissingDependencyError(
            "Imaris 9+ surface meshes are meshed by marching cubes, which needs scikit-image: "
            "pip install 'ims-store[surfaces]'"
        ) from err

    shape = size + 1
    coords = np.stack(np.unravel_index(points, tuple(shape), order="F"), axis=1)
    # a sample belongs to every chunk whose box (cells [o, o + C), samples [o, o + C]) holds it
    sample_chunks, sample_rows = _chunk_members(coords)
    grid_of_chunks = tuple(size // _CHUNK + 1)
    chunks, cell_groups = _groups(_chunk_keys(cells.origin // _CHUNK, grid_of_chunks))
    known, sample_groups = _groups(_chunk_keys(sample_chunks, grid_of_chunks))
    vertex_parts, triangle_parts = [], []
    count = 0
    for key, cell_rows in zip(chunks.tolist(), cell_groups, strict=True):
        origin = np.array(np.unravel_index(key, grid_of_chunks, order="F")) * _CHUNK
        extent = np.minimum(size - origin, _CHUNK)
        volume = np.full(tuple(extent + 1), _OUTSIDE, np.float32)
        # every finest cell's corners are samples, so its chunk has samples
        rows = sample_rows[sample_groups[int(np.searchsorted(known, key))]]
        local = coords[rows] - origin
        volume[local[:, 0], local[:, 1], local[:, 2]] = field[rows]
        if not volume.min() < 0 < volume.max() or min(volume.shape) < 2:
            continue
        finest = np.zeros(tuple(extent), bool)
        at = cells.origin[cell_rows] - origin
        finest[at[:, 0], at[:, 1], at[:, 2]] = True
        vertices, triangles, _, _ = marching_cubes(volume, 0.0, method="lewiner")
        triangles = triangles[:, ::-1]  # skimage winds them clockwise seen from the larger values
        keep = _in_cells(vertices[triangles].astype(np.float64).mean(axis=1), finest)
        triangles = triangles[keep]
        used, triangles = np.unique(triangles, return_inverse=True)
        vertex_parts.append(vertices[used].astype(np.float64) + origin)
        triangle_parts.append(triangles.reshape(-1, 3) + count)
        count += len(used)
    if not vertex_parts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    vertices = np.concatenate(vertex_parts)
    triangles = np.concatenate(triangle_parts).astype(np.int64)
    return _merge_chunk_seams(vertices, triangles)


def _chunk_keys(chunks: np.ndarray, grid_of_chunks: tuple[int, ...]) -> np.ndarray:
    return np.ravel_multi_index((chunks[:, 0], chunks[:, 1], chunks[:, 2]), grid_of_chunks, order="F")


def _groups(keys: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The distinct ``keys`` (sorted) and, for each, the indices holding it."""
    order = np.argsort(keys, kind="stable")
    distinct, starts = np.unique(keys[order], return_index=True)
    bounds = [*starts.tolist(), len(keys)]
    return distinct, [order[a:b] for a, b in pairwise(bounds)]


def _chunk_members(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(chunk, row) pairs: a sample on a chunk's low face also belongs to the chunk below."""
    chunks = [coords // _CHUNK]
    rows = [np.arange(len(coords))]
    on_face = (coords % _CHUNK == 0) & (coords > 0)
    for shift in _CORNERS[1:]:
        needed = (on_face | (shift == 0)).all(axis=1)
        chunks.append(coords[needed] // _CHUNK - shift)
        rows.append(np.flatnonzero(needed))
    return np.concatenate(chunks), np.concatenate(rows)


def _in_cells(centres: np.ndarray, finest: np.ndarray) -> np.ndarray:
    """Whether each triangle (given by its centre, in chunk grid units) lies in a finest cell. A
    marching-cubes triangle lies in its cell; a centre on a cell face (rounding) counts for the
    cells on both sides."""
    cell = np.floor(centres).astype(np.int64)
    limit = np.array(finest.shape) - 1
    keep = np.zeros(len(centres), bool)
    on_face = centres == cell
    for shift in _CORNERS:
        candidate = cell - shift
        valid = ((shift == 0) | on_face).all(axis=1) & (candidate >= 0).all(axis=1) & (candidate <= limit).all(axis=1)
        hit = np.zeros(len(centres), bool)
        hit[valid] = finest[candidate[valid, 0], candidate[valid, 1], candidate[valid, 2]]
        keep |= hit
    return keep


def _merge_chunk_seams(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One vertex for each point on a face between chunks, which both chunks triangulated (from
    the same samples, in the same local arithmetic: the positions are equal)."""
    seam = ((vertices % _CHUNK == 0) & (vertices > 0)).any(axis=1)
    if not seam.any():
        return vertices, triangles
    index = np.arange(len(vertices))
    seam_rows = np.flatnonzero(seam)
    _, first, inverse = np.unique(vertices[seam_rows], axis=0, return_index=True, return_inverse=True)
    index[seam_rows] = seam_rows[first][inverse.ravel()]
    used, triangles = np.unique(index[triangles], return_inverse=True)
    return vertices[used], triangles.reshape(-1, 3).astype(np.int64)


def _vertex_normals(
    vertices: np.ndarray,
    world: np.ndarray,
    triangles: np.ndarray,
    points: np.ndarray,
    normals: np.ndarray,
    size: np.ndarray,
) -> np.ndarray:
    """Each vertex's normal: the stored normals of its edge's two samples (``vertices`` in grid
    units), interpolated as the vertex is; where a sample holds none, the area-weighted mean of
    the vertex's triangles' normals (``world`` positions)."""
    if not len(vertices):
        return np.zeros((0, 3))
    base = np.floor(vertices).astype(np.int64)
    fraction = vertices - base
    axis = np.argmax(fraction, axis=1)
    t = fraction[np.arange(len(vertices)), axis]
    ends = base.copy()
    ends[np.arange(len(vertices)), axis] += (t > 0).astype(np.int64)
    shape = tuple(size + 1)

    def lookup(at: np.ndarray) -> np.ndarray:
        key = np.ravel_multi_index((at[:, 0], at[:, 1], at[:, 2]), shape, order="F", mode="clip")
        row = np.clip(np.searchsorted(points, key), 0, len(points) - 1)
        found = normals[row].copy()
        found[points[row] != key] = np.nan
        return found

    mixed = (1 - t)[:, None] * lookup(base) + t[:, None] * lookup(ends)
    length = np.linalg.norm(mixed, axis=1, keepdims=True)
    good = np.isfinite(length[:, 0]) & (length[:, 0] > 1e-6)
    result = np.zeros_like(vertices)
    result[good] = mixed[good] / length[good]
    if not good.all():
        corners = world[triangles]
        facet = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        summed = np.zeros_like(world)
        for k in range(3):
            np.add.at(summed, triangles[:, k], facet)
        norm = np.linalg.norm(summed, axis=1, keepdims=True)
        fallback = ~good & (norm[:, 0] > 0)
        result[fallback] = summed[fallback] / norm[fallback]
    return result
