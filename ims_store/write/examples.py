"""The example files the documentation opens (``cells.ims``, ``tracks.ims``, ``surfaces.ims``,
``tiles.ims``), made by `make_example_files` or ``ims-store demo --examples DIR``.

The analysis objects are written from the layouts documented in the shared format notes
(section 10), independently of ims_store's readers, so the tests use them as ground truth: a
scene is described once (`SpotsSpec`, `SurfacesSpec`, `OtherSpec`) and written in either layout,
`write_scene8` (compound tables) or `write_scene` (plain arrays, Imaris <= 7).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..access.outputs import DestinationExistsError
from ..format.attributes import write_text
from .images import write_images
from .synthetic import make_example_ims

__all__ = [
    "EXAMPLE_FILES",
    "OtherSpec",
    "SpotsSpec",
    "SurfacesSpec",
    "make_example_files",
    "surfaces_file",
    "tracks_file",
    "write_scene",
    "write_scene8",
]

EXAMPLE_FILES = ("cells.ims", "tracks.ims", "surfaces.ims", "tiles.ims")

TEXT = "S256"


@dataclass
class SpotsSpec:
    """A Spots object: ids, time indices, (x, y, z, radius) rows, tracks, edges and statistics."""

    name: str
    ids: list[int]
    t: list[int]
    xyzr: np.ndarray  # (n, 4) float32
    tracks: dict[int, list[int]] = field(default_factory=dict)  # track id -> spot ids in track order
    edges: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # track id -> spot id pairs
    # (statistic name, unit, category, factors, object id or -1, time index or -1, value)
    stats: list[tuple[str, str, str, dict[str, str], int, int, float]] = field(default_factory=list)
    color: tuple[float, float, float] = (1.0, 0.5, 0.0)


@dataclass
class SurfacesSpec:
    """A Surfaces object: one mesh after another, each with its time index."""

    name: str
    # one mesh after another: (time index, vertices (v, 6) x y z nx ny nz, triangles (f, 3) local rows)
    blocks: list[tuple[int, np.ndarray, np.ndarray]]
    color: tuple[float, float, float] = (0.2, 0.8, 0.2)


@dataclass
class MegaSurfacesSpec:
    """An Imaris 9+ surfaces object (``MegaSurfaces<k>``) as the real Imaris 9.5 file lays it out:
    ``SurfaceModel`` and ``SurfaceModelInfo`` one row per surface (mesh fields zero: the
    geometry is not read), ``SurfaceTimeOffset``, and the statistics tables."""

    name: str
    ids: list[int]
    t: list[int]
    # SurfaceModelInfo field -> one value per surface (fields not given: 0)
    info: dict[str, list[float]]
    extend_min: np.ndarray  # (n, 3) x, y, z
    extend_max: np.ndarray
    stats: list[tuple[str, str, str, dict[str, str], int, int, float]] = field(default_factory=list)
    color: tuple[float, float, float] = (0.2, 0.8, 0.2)


@dataclass
class OtherSpec:
    """A group of a kind whose geometry is not read (``Filaments0``, ``Cells0``...), with
    statistics tables when ``stats`` are given."""

    group: str
    name: str
    stats: list[tuple[str, str, str, dict[str, str], int, int, float]] = field(default_factory=list)


Spec = SpotsSpec | SurfacesSpec | MegaSurfacesSpec | OtherSpec

# the fields of the two per-surface tables, as Imaris 9.5 writes them
SURFACE_MODEL = [
    ("ID_Time", "<i8"), ("ID", "<i8"), ("NumberOfLevels", "<i8"), ("SizeX", "<i8"), ("SizeY", "<i8"),
    ("SizeZ", "<i8"), ("ExtendMinX", "<f4"), ("ExtendMinY", "<f4"), ("ExtendMinZ", "<f4"), ("ExtendMaxX", "<f4"),
    ("ExtendMaxY", "<f4"), ("ExtendMaxZ", "<f4"), ("DataCountPerChildNode", "<i8"), ("Threshold", "<f4"),
    ("LevelInfoBegin", "<i8"), ("LevelInfoEnd", "<i8"), ("BlockInfoBegin", "<i8"), ("BlockInfoEnd", "<i8"),
]  # fmt: skip
SURFACE_MODEL_INFO = [
    ("LevelCount", "<i8"), ("BlockCount", "<i8"), ("NodeCount", "<i8"), ("DataCount", "<i8"),
    ("NodeAndDataBytes", "<i8"), ("Volume", "<f4"), ("Area", "<f4"), ("Sphericity", "<f4"), ("PositionX", "<f4"),
    ("PositionY", "<f4"), ("PositionZ", "<f4"), ("CenterOfMassX", "<f8"), ("CenterOfMassY", "<f8"),
    ("CenterOfMassZ", "<f8"), *[(f"EllipsoidAxis{a}{x}", "<f8") for a in "ABC" for x in "XYZ"],
    *[(f"EllipsoidAxisLength{x}", "<f8") for x in "XYZ"], ("EllipticityProlate", "<f8"),
    ("EllipticityOblate", "<f8"), ("NumberOfTriangles", "<i8"), ("NumberOfSplittedSurfaceParts", "<i8"),
    *[(f"Orientation0{k}", "<f4") for k in range(4)],
    *[(f"OrientedBoundingBox{e}{x}", "<f4") for e in ("Min", "Max") for x in "XYZ"],
]  # fmt: skip


def image(path: Path, timepoints: int = 3, shape: Sequence[int] = (8, 32, 40)) -> Path:
    """A small image, voxel (1, 0.5, 0.5) um from (-2, 1, 3) (z, y, x): extents cover the objects."""
    return make_example_ims(
        path,
        shape=shape,
        channels=1,
        timepoints=timepoints,
        voxel_size=(1.0, 0.5, 0.5),
        extent_min=(-2.0, 1.0, 3.0),
        levels=1,
    )


def _material(color: tuple[float, float, float]) -> str:
    r, g, b = color
    return f'<bpMaterial mDiffusion="{r:g} {g:g} {b:g}" mSpecular="0.2 0.2 0.2" mTransparency="0"/>\n'


def _object_group(content: h5py.Group, name: str, spec_name: str, color: tuple[float, float, float]) -> h5py.Group:
    group = content.create_group(name)
    for key, value in (("Name", spec_name), ("Unit", "um"), ("Description", ""), ("HistoryLog", "")):
        write_text(group, key, value)
    write_text(group, "Material", _material(color))
    return group


def _table(group: h5py.Group, name: str, columns: dict[str, tuple[str, Sequence]]) -> None:
    """A compound dataset: field name -> (dtype, values)."""
    n = len(next(iter(columns.values()))[1])
    data = np.zeros(n, dtype=[(k, t) for k, (t, _) in columns.items()])
    for key, (_, values) in columns.items():
        data[key] = values
    group.create_dataset(name, data=data)


def _content(f: h5py.File, layout: str, specs: Sequence[Spec]) -> h5py.Group:
    content = f.create_group(f"{layout}/Content")
    dtype = np.int64 if layout == "Scene8" else np.uint64
    content.attrs["NumberOfPoints"] = dtype(sum(isinstance(s, SpotsSpec) for s in specs))
    content.attrs["NumberOfSurfaces"] = dtype(sum(isinstance(s, SurfacesSpec) for s in specs))
    f[layout].create_dataset("Data", data=np.zeros(1, np.int8))  # the viewer state (ignored)
    return content


def write_scene8(path: Path, specs: Sequence[Spec]) -> Path:
    """Add ``/Scene8`` holding ``specs`` (surfaces as ``MegaSurfaces<k>``, geometry left out)."""
    with h5py.File(path, "r+") as f:
        content = _content(f, "Scene8", specs)
        counts: dict[str, int] = {}
        for spec in specs:
            prefix = {SpotsSpec: "Points", SurfacesSpec: "MegaSurfaces", MegaSurfacesSpec: "MegaSurfaces"}.get(
                type(spec)
            )
            if isinstance(spec, OtherSpec):
                other = _object_group(content, spec.group, spec.name, (1, 1, 1))
                if spec.stats:
                    _statistics8(other, spec.stats)
                continue
            assert prefix is not None
            name = f"{prefix}{counts.setdefault(prefix, 0)}"
            counts[prefix] += 1
            group = _object_group(content, name, spec.name, spec.color)
            if isinstance(spec, SpotsSpec):
                _spots8(group, spec)
            elif isinstance(spec, MegaSurfacesSpec):
                _megasurfaces8(group, spec)
    return path


def _megasurfaces8(group: h5py.Group, spec: MegaSurfacesSpec) -> None:
    n = len(spec.ids)
    model = np.zeros(n, SURFACE_MODEL)
    model["ID_Time"], model["ID"] = spec.t, spec.ids
    for k, axis in enumerate("XYZ"):
        model[f"ExtendMin{axis}"] = spec.extend_min[:, k]
        model[f"ExtendMax{axis}"] = spec.extend_max[:, k]
    model["Threshold"] = 0.5
    info = np.zeros(n, SURFACE_MODEL_INFO)
    for key, values in spec.info.items():
        info[key] = values
    group.create_dataset("SurfaceModel", data=model)
    group.create_dataset("SurfaceModelInfo", data=info)
    # rows grouped by time, as in the real file (one time point there: one row [0, 32))
    t = np.asarray(spec.t)
    assert (np.diff(t) >= 0).all(), "list the surfaces by time"
    times = sorted(set(spec.t))
    begin = [int(np.searchsorted(t, v, "left")) for v in times]
    end = [int(np.searchsorted(t, v, "right")) for v in times]
    _table(group, "SurfaceTimeOffset", {"ID": ("i8", times), "IndexBegin": ("i8", begin), "IndexEnd": ("i8", end)})
    if spec.stats:
        _statistics8(group, spec.stats)


def _spots8(group: h5py.Group, spec: SpotsSpec) -> None:
    # rows grouped by time, as Imaris stores them: SpotTimeOffset gives each time index its rows
    order = np.argsort(spec.t, kind="stable")
    ids = np.asarray(spec.ids)[order]
    t = np.asarray(spec.t)[order]
    xyzr = np.asarray(spec.xyzr)[order]
    _table(
        group,
        "Spot",
        {
            "ID": ("i8", ids),
            "PositionX": ("f4", xyzr[:, 0]),
            "PositionY": ("f4", xyzr[:, 1]),
            "PositionZ": ("f4", xyzr[:, 2]),
            "Radius": ("f4", xyzr[:, 3]),
        },
    )
    times = sorted(set(t.tolist()))
    begin = [int(np.searchsorted(t, v, "left")) for v in times]
    end = [int(np.searchsorted(t, v, "right")) for v in times]
    _table(group, "SpotTimeOffset", {"ID": ("i8", times), "IndexBegin": ("i8", begin), "IndexEnd": ("i8", end)})
    _table(
        group,
        "Time",
        {
            "ID": ("i8", times),
            "Birth": ("i8", [v * 10**9 for v in times]),
            "Death": ("i8", [(v + 1) * 10**9 for v in times]),
            "IDTimeBegin": ("i8", [0] * len(times)),
        },
    )
    _table(group, "TimeBegin", {"ID": ("i8", [0]), "ObjectTimeBegin": (TEXT, [b"2026-01-02 03:04:05.000000000"])})
    if spec.tracks:
        track_ids = sorted(spec.tracks)
        members = [s for k in track_ids for s in spec.tracks[k]]
        edges = [e for k in track_ids for e in spec.edges.get(k, [])]
        ob = np.cumsum([0] + [len(spec.tracks[k]) for k in track_ids])
        eb = np.cumsum([0] + [len(spec.edges.get(k, [])) for k in track_ids])
        _table(
            group,
            "MainTrackTable",
            {
                "ObjectsName": (TEXT, [b"Spot"]),
                "TrackName": (TEXT, [b"Track0"]),
                "TrackObjectName": (TEXT, [b"TrackObject0"]),
                "TrackEdgeName": (TEXT, [b"TrackEdge0"]),
            },
        )
        _table(
            group,
            "Track0",
            {
                "ID": ("i8", track_ids),
                "IndexTrackObjectBegin": ("i8", ob[:-1]),
                "IndexTrackObjectEnd": ("i8", ob[1:]),
                "IndexTrackEdgeBegin": ("i8", eb[:-1]),
                "IndexTrackEdgeEnd": ("i8", eb[1:]),
            },
        )
        _table(group, "TrackObject0", {"ID_Object": ("i8", members)})
        _table(
            group,
            "TrackEdge0",
            {"ID_ObjectA": ("i8", [a for a, _ in edges]), "ID_ObjectB": ("i8", [b for _, b in edges])},
        )
    if spec.stats:
        _statistics8(group, spec.stats)


def _statistics8(group: h5py.Group, stats: list) -> None:
    categories = sorted({s[2] for s in stats})
    factor_sets = []
    for s in stats:
        if s[3] and s[3] not in factor_sets:
            factor_sets.append(s[3])
    types: list[tuple] = []
    for s in stats:
        key = (s[0], s[1], s[2], factor_sets.index(s[3]) + 1 if s[3] else 0)
        if key not in types:
            types.append(key)
    _table(
        group,
        "Category",
        {
            "ID": ("i8", range(len(categories))),
            "CategoryName": (TEXT, [c.encode() for c in categories]),
            "Name": (TEXT, [c.encode() for c in categories]),
        },
    )
    rows = [(k + 1, name, level) for k, fs in enumerate(factor_sets) for name, level in fs.items()]
    _table(
        group,
        "Factor",
        {
            "ID_List": ("i8", [r[0] for r in rows]),
            "Name": (TEXT, [r[1].encode() for r in rows]),
            "Level": (TEXT, [r[2].encode() for r in rows]),
        },
    )
    _table(group, "FactorList", {"ID": ("i8", range(1, len(factor_sets) + 1))})
    _table(
        group,
        "StatisticsType",
        {
            "ID": ("i8", [10 + i for i in range(len(types))]),
            "ID_Category": ("i8", [categories.index(k[2]) for k in types]),
            "ID_FactorList": ("i8", [k[3] for k in types]),
            "Name": (TEXT, [k[0].encode() for k in types]),
            "Unit": (TEXT, [k[1].encode() for k in types]),
        },
    )
    # values grouped by time (-1 first), as StatisticsValueTimeOffset indexes them
    ordered = sorted(stats, key=lambda s: s[5])
    type_id = [10 + types.index((s[0], s[1], s[2], factor_sets.index(s[3]) + 1 if s[3] else 0)) for s in ordered]
    _table(
        group,
        "StatisticsValue",
        {
            "ID_Time": ("i8", [s[5] for s in ordered]),
            "ID_Object": ("i8", [s[4] for s in ordered]),
            "ID_StatisticsType": ("i8", type_id),
            "Value": ("f8", [s[6] for s in ordered]),
        },
    )
    times = [s[5] for s in ordered]
    keys = sorted(set(times))
    _table(
        group,
        "StatisticsValueTimeOffset",
        {
            "ID": ("i8", keys),
            "IndexBegin": ("i8", [times.index(k) for k in keys]),
            "IndexEnd": ("i8", [len(times) - times[::-1].index(k) for k in keys]),
        },
    )


def write_scene(path: Path, specs: Sequence[Spec], *, global_triangles: bool = True) -> Path:
    """Add ``/Scene`` (Imaris <= 7) holding ``specs``: a spot's row is its place in the spec
    (spot ids must be 0..n-1), tracks are edges between rows. ``global_triangles``: vertex
    indices counted from the start of ``Vertices`` (else from each mesh's first vertex)."""
    with h5py.File(path, "r+") as f:
        content = _content(f, "Scene", specs)
        counts: dict[str, int] = {}
        for spec in specs:
            if isinstance(spec, OtherSpec):
                _object_group(content, spec.group, spec.name, (1, 1, 1))
                continue
            prefix = "Points" if isinstance(spec, SpotsSpec) else "Surfaces"
            name = f"{prefix}{counts.setdefault(prefix, 0)}"
            counts[prefix] += 1
            group = _object_group(content, name, spec.name, spec.color)
            group.attrs["Id"] = np.uint64(200001 if prefix == "Points" else 300001)
            stamp = np.array([b"2026-01-02 03:04:05.000"], "S23")
            if isinstance(spec, SpotsSpec):
                assert list(spec.ids) == list(range(len(spec.ids))), "the old layout's spot ids are rows"
                group.create_dataset("CoordsXYZR", data=np.asarray(spec.xyzr, np.float32).reshape(-1, 4))
                group.create_dataset("Time", data=np.asarray(spec.t, np.uint64).reshape(-1, 1))
                group.create_dataset("TimeInfos", data=stamp)
                edges = [e for k in sorted(spec.edges) for e in spec.edges[k]]
                if edges:
                    group.create_dataset("Edges", data=np.asarray(edges, np.uint64))
            else:
                vertices, triangles, table, base = [], [], [], 0
                for t, v, tri in spec.blocks:
                    vertices.append(np.asarray(v, np.float32))
                    triangles.append(np.asarray(tri, np.uint64) + (base if global_triangles else 0))
                    table.append((t, len(v), len(tri)))
                    base += len(v)
                group.create_dataset("Vertices", data=np.concatenate(vertices).reshape(-1, 6))
                group.create_dataset("Triangles", data=np.concatenate(triangles).reshape(-1, 3), chunks=True)
                group.create_dataset("TimeNVerticesNTriangles", data=np.asarray(table, np.uint64).reshape(-1, 3))
                group.create_dataset("TimeInfos", data=np.repeat(stamp, len(spec.blocks)))
    return path


# -- the scenes the tests and the documentation's examples use -------------------------------


def tetrahedron(centre: Sequence[float], size: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (4, 6) with outward unit normals, triangles (4, 3)) of a small tetrahedron."""
    corners = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], np.float64)
    normals = corners / np.linalg.norm(corners, axis=1, keepdims=True)
    vertices = np.hstack([np.asarray(centre) + size * corners, normals]).astype(np.float32)
    return vertices, np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]], np.int64)


def cells_spots() -> SpotsSpec:
    """5 spots over 2 time points in 2 tracks, one branched (1 -> 3, 1 -> 4), with statistics
    overall, per track, per spot, per time point, with and without factors."""
    xyzr = np.array([[5, 3, 1, 0.5], [9, 3, 1, 0.5], [6, 4, 1, 0.5], [10, 5, 2, 0.75], [10, 2, 0, 0.75]], np.float32)
    return SpotsSpec(
        name="Cells",
        ids=[0, 1, 2, 3, 4],
        t=[0, 0, 1, 1, 1],
        xyzr=xyzr,
        tracks={1000: [0, 2], 1001: [1, 3, 4]},
        edges={1000: [(0, 2)], 1001: [(1, 3), (1, 4)]},
        stats=[
            ("Total Number of Spots", "", "Overall", {}, -1, -1, 5.0),
            ("Number of Spots per Time Point", "", "Overall", {}, -1, 0, 2.0),
            ("Number of Spots per Time Point", "", "Overall", {}, -1, 1, 3.0),
            ("Track Speed Mean", "um/s", "Track", {}, 1000, -1, 4.0),
            ("Track Speed Mean", "um/s", "Track", {}, 1001, -1, 2.0),
            ("Track Duration", "s", "Track", {}, 1000, -1, 1.5),
            ("Track Duration", "s", "Track", {}, 1001, -1, 1.5),
            ("Intensity Mean", "", "Spot", {"Channel": "1", "Image": "Image 1"}, 0, 0, 100.0),
            ("Intensity Mean", "", "Spot", {"Channel": "1", "Image": "Image 1"}, 1, 0, 120.0),
            ("Intensity Mean", "", "Spot", {"Channel": "1", "Image": "Image 1"}, 2, 1, 90.0),
            ("Intensity Mean", "", "Spot", {"Channel": "1", "Image": "Image 1"}, 3, 1, 80.0),
            ("Intensity Mean", "", "Spot", {"Channel": "1", "Image": "Image 1"}, 4, 1, 70.0),
        ],
        color=(1.0, 0.5, 0.0),
    )


def untracked_spots() -> SpotsSpec:
    return SpotsSpec(
        name="Untracked",
        ids=[0, 1, 2],
        t=[2, 0, 2],
        xyzr=np.array([[4, 2, 0, 1], [12, 8, 3, 1], [15, 10, 4, 2]], np.float32),
        color=(0.0, 0.5, 1.0),
    )


def nuclei_surfaces() -> SurfacesSpec:
    """t 0: one tetrahedron; t 1: two (two meshes of one time point)."""
    a, b, c = tetrahedron((8, 5, 1)), tetrahedron((12, 6, 2), 0.5), tetrahedron((6, 9, 3), 0.75)
    return SurfacesSpec("Nuclei", [(0, *a), (1, *b), (1, *c)])


def nuclei_megasurfaces() -> MegaSurfacesSpec:
    """Two Imaris 9+ surfaces (ids 7, 8; time points 0 and 1) with a summary and statistics
    per surface and overall."""
    return MegaSurfacesSpec(
        name="Nuclei",
        ids=[7, 8],
        t=[0, 1],
        info={
            "Volume": [2.5, 1.25],
            "Area": [9.0, 6.5],
            "Sphericity": [0.9, 0.75],
            "PositionX": [8.0, 12.0],
            "PositionY": [5.0, 6.0],
            "PositionZ": [1.0, 2.0],
            "CenterOfMassX": [8.125, 12.25],
            "CenterOfMassY": [5.0, 6.0],
            "CenterOfMassZ": [1.0, 2.0],
            "NumberOfTriangles": [120, 64],
            "NumberOfSplittedSurfaceParts": [1, 2],
        },
        extend_min=np.array([[7, 4, 0], [11.5, 5.5, 1.5]], np.float32),
        extend_max=np.array([[9, 6, 2], [12.5, 6.5, 2.5]], np.float32),
        stats=[
            ("Total Number of Surfaces", "", "Overall", {}, -1, -1, 2.0),
            ("Volume", "um^3", "Surface", {}, 7, 0, 2.5),
            ("Volume", "um^3", "Surface", {}, 8, 1, 1.25),
            ("Intensity Mean", "", "Surface", {"Channel": "1", "Image": "Image 1"}, 7, 0, 310.0),
            ("Intensity Mean", "", "Surface", {"Channel": "1", "Image": "Image 1"}, 8, 1, 250.0),
        ],
    )


def tracks_file(path: Path) -> Path:
    """The documentation's example file (``tracks.ims``): Scene8 with tracked spots, untracked
    spots and Imaris 9+ surfaces (summary and statistics read, meshes not)."""
    image(path, timepoints=3)
    return write_scene8(path, [cells_spots(), untracked_spots(), nuclei_megasurfaces()])


def surfaces_file(path: Path) -> Path:
    """The documentation's surfaces example (``surfaces.ims``): an old-layout scene."""
    image(path, timepoints=2)
    return write_scene(path, [nuclei_surfaces()])


def make_example_files(folder: str | os.PathLike[str], overwrite: bool = False) -> list[Path]:
    """Write the documentation's example files into ``folder`` (made if missing) and return
    their paths: ``cells.ims`` (3 channels DAPI, GFP, mCherry; 2 time points; 16 x 128 x 96
    voxels, 2 levels), ``tracks.ims`` (tracked and untracked spots), ``surfaces.ims`` (meshes, the
    old layout) and ``tiles.ims`` (two images side by side). An existing one is refused before
    anything is written (`DestinationExistsError`) unless ``overwrite``.

    >>> [p.name for p in make_example_files("examples")]
    ['cells.ims', 'tracks.ims', 'surfaces.ims', 'tiles.ims']
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in EXAMPLE_FILES]
    for path in paths:
        if (path.exists() or path.is_symlink()) and not overwrite:
            raise DestinationExistsError("exists already; pass overwrite=True to replace it", path)
    cells, tracks, surfaces, tiles = paths
    make_example_ims(
        cells,
        shape=(16, 128, 96),
        channels=3,
        timepoints=2,
        threshold_voxels=100_000,
        channel_names=["DAPI", "GFP", "mCherry"],
    )
    tracks_file(tracks)
    surfaces_file(surfaces)
    # two 8 x 64 x 64 tiles, the second 90 um further along x (ExtMin x 0 and 90)
    planes = [np.full((8, 64, 64), 100 * (k + 1), np.uint16) for k in range(2)]
    write_images(
        planes, tiles, axes="zyx", voxel_size=(1.0, 0.5, 0.5),
        positions=[(0.5, 0.25, 0.25), (0.5, 0.25, 90.25)], overwrite=True,
    )  # fmt: skip
    return paths
