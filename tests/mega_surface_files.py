"""Imaris 9 ``MegaSurfaces`` groups written with h5py from a field known in closed form, in the
layout docs/format.md describes ("Imaris 9+ MegaSurfaces"), encoded here independently of the
reader: an octree of cells over the grid, the finest cells (those the surface crosses and their
neighbours) holding square-root-coded samples and cube-map normals at their corners, cells wholly
inside marked empty (0xFFFF), some coarse cells left undivided, and optionally the finest level
split over several blocks (``SplitOffset``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

CORNERS = np.array([[c & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], np.int64)
EMPTY = 0xFFFF
THRESHOLD = 4096.5 / 8192


@dataclass
class Ellipsoid:
    """The surface |(p - centre) / radii| = 1 over a grid of ``size`` cells of ``voxel`` (world
    units) starting at ``origin``; the field is 1 - |(p - centre) / radii| (positive inside)."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    origin: tuple[float, float, float] = (1.0, 2.0, 3.0)
    voxel: tuple[float, float, float] = (0.2, 0.25, 0.4)
    size: tuple[int, int, int] = (20, 16, 12)
    sampling: list[tuple[int, int, int]] = field(
        default_factory=lambda: [(2, 2, 2), (2, 2, 2), (2, 2, 1), (2, 2, 2), (2, 1, 2)]
    )
    time: int = 0
    split_finest: int = 1
    """How many blocks the finest level is split over."""
    stored_normals: bool = True
    """False: samples carry face 0 (no normal), as the background samples of real files do."""

    def world(self, grid: np.ndarray) -> np.ndarray:
        return np.asarray(self.origin) + grid * np.asarray(self.voxel)

    def field(self, grid: np.ndarray) -> np.ndarray:
        """The field at grid positions (..., 3)."""
        return 1.0 - np.linalg.norm((self.world(grid) - self.centre) / np.asarray(self.radii), axis=-1)

    def gradient(self, grid: np.ndarray) -> np.ndarray:
        q = (self.world(grid) - self.centre) / np.asarray(self.radii)
        norm = np.linalg.norm(q, axis=-1, keepdims=True)
        return -q / np.asarray(self.radii) / np.where(norm == 0, 1, norm)

    def dense(self) -> np.ndarray:
        """The field on the whole grid of samples, indexed [x, y, z]."""
        axes = [np.arange(n + 1) for n in self.size]
        return self.field(np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1))


def encode(value: np.ndarray, gradient: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two 16-bit words of samples: 13-bit value T + sign(f) sqrt(|f|) 4096 (never T itself)
    with a 3-bit cube-map face, and the two bytes of the outward normal on that face."""
    t = THRESHOLD * 8192
    coded = t + np.sign(value) * np.sqrt(np.abs(value)) * 4096
    coded = np.where(value > 0, np.maximum(np.floor(coded), np.ceil(t)), np.minimum(np.floor(coded), np.floor(t)))
    coded = np.clip(coded, 0, 8191).astype(np.uint16)
    length = np.linalg.norm(gradient, axis=-1, keepdims=True)
    g = gradient / np.where(length == 0, 1, length)
    g = np.where(length == 0, np.array([1.0, 0, 0]), g)
    axis = np.argmax(np.abs(g), axis=-1)
    major = np.take_along_axis(g, axis[..., None], -1)[..., 0]
    face = axis + 1 + 3 * (major > 0)
    normal = -g / np.abs(major)[..., None]  # outward, major component -1 or 1
    u = np.take_along_axis(normal, ((axis + 1) % 3)[..., None], -1)[..., 0]
    v = np.take_along_axis(normal, ((axis + 2) % 3)[..., None], -1)[..., 0]
    to_byte = lambda w: np.round(np.clip(w, -1, 1) * 127 + 127).astype(np.uint16)  # noqa: E731
    return (coded | (face.astype(np.uint16) << 13)).astype(np.uint16), (to_byte(u) | (to_byte(v) << 8)).astype(
        np.uint16
    )


def finest_cells(shape: Ellipsoid) -> tuple[np.ndarray, np.ndarray]:
    """The cells the finest level holds (the surface's cells and their neighbours, in the grid)
    and which of them lie wholly inside."""
    values = shape.dense()
    corner_values = np.stack(
        [values[x : x + shape.size[0], y : y + shape.size[1], z : z + shape.size[2]] for x, y, z in CORNERS], -1
    )
    crossing = (corner_values > 0).any(-1) & (corner_values <= 0).any(-1)
    near = crossing.copy()
    for axis in range(3):
        for step in (-1, 1):
            near |= np.roll(crossing, step, axis) & _not_wrapped(crossing.shape, axis, step)
    inside = (corner_values > 0).all(-1)
    return np.argwhere(near), inside[near]


def _not_wrapped(shape: tuple[int, ...], axis: int, step: int) -> np.ndarray:
    keep = np.ones(shape, bool)
    index = [slice(None)] * 3
    index[axis] = 0 if step == 1 else -1
    keep[tuple(index)] = False
    return keep


def _node_word(data_mask: int, data_offset: int, child_mask: int, child_offset: int) -> int:
    word = ((data_mask << 24 | data_offset) << 32) | (child_mask << 24 | child_offset)
    return word - (1 << 64) if word >= 1 << 63 else word


def build_surface(shape: Ellipsoid, coarse_leaves: bool = True) -> dict:
    """The blocks (node and leaf int64 words, parent, split cuts) of one surface."""
    sampling = np.array(shape.sampling, np.int64)
    levels = len(sampling)
    span = np.cumprod(sampling[::-1], axis=0)[::-1]
    child_span = np.vstack([span[1:], np.ones((1, 3), np.int64)])
    assert (span[0] >= shape.size).all()
    cells, inside = finest_cells(shape)
    wholly_inside = {tuple(c) for c in cells[inside]}
    finest = {tuple(c) for c in cells}
    # the children each level holds: ancestors of finest cells (and, when asked, some undivided)
    holders = [dict() for _ in range(levels)]  # level -> {child origin: divided?}
    for level in range(levels):
        for cell in finest:
            holders[level][tuple(np.asarray(cell) // child_span[level] * child_span[level])] = level < levels - 1
    if coarse_leaves and levels > 2:
        level = levels - 2
        nodes = {tuple(np.asarray(c) // span[level] * span[level]) for c in holders[level]}
        for node in nodes:
            for corner in CORNERS:
                if (corner < sampling[level]).all():
                    child = tuple(np.asarray(node) + corner * child_span[level])
                    if child not in holders[level] and (np.asarray(child) < shape.size).all():
                        holders[level][child] = False  # data, no subdivision
    nodes_of = [[(0, 0, 0)]]
    words: list[list[int]] = []
    data: list[list[np.ndarray]] = []
    for level in range(levels):
        level_words, level_data, next_nodes = [], [], []
        offset = child_offset = 0
        for node in nodes_of[level]:
            data_mask = child_mask = 0
            first_data, first_child = offset, child_offset
            for c, corner in enumerate(CORNERS):
                child = tuple(np.asarray(node) + corner * child_span[level])
                if (corner >= sampling[level]).any() or child not in holders[level]:
                    continue
                data_mask |= 1 << c
                offset += 8
                corners = np.asarray(child) + CORNERS * child_span[level]
                if level == levels - 1 and child in wholly_inside:
                    value_words = normal_words = np.full(8, EMPTY, np.uint16)
                else:
                    value_words, normal_words = encode(shape.field(corners), shape.gradient(corners))
                    if not shape.stored_normals:
                        value_words = value_words & np.uint16(0x1FFF)
                level_data.append(np.concatenate([value_words, normal_words]).astype("<u2"))
                if holders[level][child]:
                    child_mask |= 1 << c
                    child_offset += 1
                    next_nodes.append(child)
            level_words.append((data_mask, first_data, child_mask, first_child))
        words.append(level_words)
        data.append(level_data)
        nodes_of.append(next_nodes)
    return {"levels": levels, "words": words, "data": data, "sampling": sampling}


def write_mega_surfaces(group: h5py.Group, shapes: list[Ellipsoid], *, width: int = 4096) -> None:
    """A ``MegaSurfaces`` group's datasets for ``shapes``, one ``SurfaceModel`` row each."""
    stream: list[np.ndarray] = []
    position = 0
    model_rows, block_rows, level_rows, split_rows = [], [], [], []
    for shape in shapes:
        built = build_surface(shape)
        level_begin = len(level_rows)
        level_rows += [tuple(s) for s in built["sampling"]]
        block_begin = len(block_rows)
        levels = built["levels"]
        for level in range(levels):
            nodes, leaves = built["words"][level], built["data"][level]
            parts = 1 if level < levels - 1 else shape.split_finest
            # the nodes of the level above hand their children to the parts in runs
            cuts_above = None
            if parts > 1:
                above = built["words"][level - 1]
                children = [bin(w[2]).count("1") for w in above]
                cuts_above = [len(above) * (k + 1) // parts for k in range(parts)]
                sizes = [sum(children[a:b]) for a, b in zip([0, *cuts_above[:-1]], cuts_above, strict=True)]
                # the parent's child offsets restart at each part
                total = 0
                fixed = []
                for i, w in enumerate(above):
                    if i in [0, *cuts_above[:-1]]:
                        total = 0
                    fixed.append((w[0], w[1], w[2], total))
                    total += bin(w[2]).count("1")
                built["words"][level - 1] = fixed
                prev = block_rows[-1]
                first = len(split_rows)
                split_rows += cuts_above
                block_rows[-1] = (*prev[:3], first, len(split_rows), *prev[5:])
                _rewrite_nodes(stream, prev, fixed)
            else:
                sizes = [len(nodes)]
            start = 0
            for part in range(parts):
                part_nodes = nodes[start : start + sizes[part]]
                first_data = part_nodes[0][1] if part_nodes else 0
                node_words = [_node_word(m, off - first_data, cm, co) for m, off, cm, co in part_nodes]
                count = sum(bin(m).count("1") for m, *_ in part_nodes)
                first_leaf = sum(bin(m).count("1") for m, *_ in nodes[:start])
                leaf = np.concatenate(leaves[first_leaf : first_leaf + count]) if count else np.zeros(0, "<u2")
                leaf_words = leaf.view("<i8")
                node_begin = position
                stream.append(np.array(node_words, np.int64))
                position += len(node_words)
                leaf_begin = position
                stream.append(leaf_words)
                position += len(leaf_words)
                parent = 0 if level == 0 else (level - 1 if level < levels - 1 or parts == 1 else levels - 2)
                split_begin = len(split_rows)
                split_rows.append(len(node_words))
                path = (part, part + 1) if parts > 1 else (0, 0)
                block_rows.append(
                    (parent, *path, split_begin, split_begin + 1, node_begin, leaf_begin, leaf_begin, position)
                )
                start += sizes[part]
        # the finest blocks have no children: their SplitOffset range is empty
        for b in range(len(block_rows) - shape.split_finest, len(block_rows)):
            row = block_rows[b]
            block_rows[b] = (*row[:3], len(split_rows), len(split_rows), *row[5:])
        model_rows.append((shape, levels, level_begin, len(level_rows), block_begin, len(block_rows)))
    flat = np.concatenate(stream) if stream else np.zeros(0, np.int64)
    rows = -(-len(flat) // width)
    padded = np.zeros(rows * width, np.int64)
    padded[: len(flat)] = flat
    group.create_dataset("BlockData", data=padded.reshape(rows, width), chunks=(1, width), compression="gzip")
    _table(group, "SurfaceModel", _MODEL, [_model_row(i, *r) for i, r in enumerate(model_rows)])
    _table(group, "LevelInfo", [("SamplingX", "<i8"), ("SamplingY", "<i8"), ("SamplingZ", "<i8")], level_rows)
    _table(group, "BlockInfo", _BLOCK, block_rows)
    _table(group, "SplitOffset", [("Data", "<i8")], [(v,) for v in split_rows])
    _table(group, "BlockPath", [("Data", "<i8")], [(k,) for k in range(max(s.split_finest for s in shapes))])


def _rewrite_nodes(stream: list[np.ndarray], block: tuple, fixed: list[tuple[int, int, int, int]]) -> None:
    """Replace the node words of an already written block (its child offsets changed)."""
    begin = block[5]
    position = 0
    for k, part in enumerate(stream):
        if position == begin:
            stream[k] = np.array([_node_word(*w) for w in fixed], np.int64)
            return
        position += len(part)
    raise AssertionError("block not found")


_MODEL = [
    ("ID_Time", "<i8"), ("ID", "<i8"), ("NumberOfLevels", "<i8"),
    ("SizeX", "<i8"), ("SizeY", "<i8"), ("SizeZ", "<i8"),
    ("ExtendMinX", "<f4"), ("ExtendMinY", "<f4"), ("ExtendMinZ", "<f4"),
    ("ExtendMaxX", "<f4"), ("ExtendMaxY", "<f4"), ("ExtendMaxZ", "<f4"),
    ("DataCountPerChildNode", "<i8"), ("Threshold", "<f4"),
    ("LevelInfoBegin", "<i8"), ("LevelInfoEnd", "<i8"), ("BlockInfoBegin", "<i8"), ("BlockInfoEnd", "<i8"),
]  # fmt: skip
_BLOCK = [
    ("ParentBlockIndex", "<i8"), ("RelativeBlockPathBegin", "<i8"), ("RelativeBlockPathEnd", "<i8"),
    ("SplitOffsetsBegin", "<i8"), ("SplitOffsetsEnd", "<i8"), ("NodeBegin", "<i8"), ("NodeEnd", "<i8"),
    ("LeafBegin", "<i8"), ("LeafEnd", "<i8"),
]  # fmt: skip


def _model_row(i: int, shape: Ellipsoid, levels: int, lb: int, le: int, bb: int, be: int) -> tuple:
    low = np.asarray(shape.origin, np.float32)
    high = (np.asarray(shape.origin) + np.asarray(shape.size) * np.asarray(shape.voxel)).astype(np.float32)
    return (shape.time, 41 + i, levels, *shape.size, *low, *high, 8, THRESHOLD, lb, le, bb, be)


def _table(group: h5py.Group, name: str, fields: list[tuple[str, str]], rows: list[tuple]) -> None:
    group.create_dataset(name, data=np.array(rows, dtype=fields))


EXAMPLE = [
    Ellipsoid(centre=(3.0, 4.0, 5.0), radii=(1.7, 1.7, 1.7)),
    Ellipsoid(centre=(2.5, 3.5, 5.2), radii=(1.0, 0.8, 1.5), time=1, split_finest=3),
]


def mega_surfaces_file(path: Path, shapes: list[Ellipsoid] | None = None) -> Path:
    """A file with ``Scene8/Content/MegaSurfaces0`` holding ``shapes`` (default `EXAMPLE`)."""
    with h5py.File(path, "w") as f:
        write_mega_surfaces(f.create_group("Scene8/Content/MegaSurfaces0"), shapes or EXAMPLE)
    return path
