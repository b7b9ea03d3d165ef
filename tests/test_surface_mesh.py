"""Imaris 9 surface meshes (``MegaSurfaces``) rebuilt by `ims_store.objects.surface_mesh`.

Ground truth: on the real file, Imaris' own statistics of each surface (triangle count, area,
volume, read with h5py); on files built here from a field known in closed form, scikit-image's
marching cubes run on that field sampled directly (no file, no decoding) and the shape's own
geometry.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from mega_surface_files import EXAMPLE, Ellipsoid, mega_surfaces_file
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from conftest import find_real_file
from ims_store.errors import MalformedObjectsError, MissingDependencyError, SelectionError
from ims_store.objects.surface_mesh import read_mega_surface

IMARIS95 = "PyramidalCell_Imaris95.ims"
IMARIS95_SHA256 = "a62faa04e77dd2129298bc7fda86128dc7f3030e6e3f783b75214c4bc67f1782"
GROUP = "Scene8/Content/MegaSurfaces0"


@pytest.fixture(scope="module")
def imaris95(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = find_real_file(IMARIS95)
    assert source is not None  # the real_file mark skipped (or failed) the test otherwise
    copy = tmp_path_factory.mktemp("imaris95") / IMARIS95
    shutil.copyfile(source, copy)
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == IMARIS95_SHA256
    return copy


def _area_volume(vertices: np.ndarray, triangles: np.ndarray) -> tuple[float, float]:
    corners = vertices[triangles]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    volume = np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum() / 6
    return float(0.5 * np.linalg.norm(cross, axis=1).sum()), float(volume)


def _closed_and_oriented(triangles: np.ndarray, n: int) -> bool:
    """Every edge joins exactly two triangles, which run along it in opposite directions."""
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    forward = edges[:, 0] * n + edges[:, 1]
    backward = edges[:, 1] * n + edges[:, 0]
    return len(np.unique(forward)) == len(forward) and bool(np.isin(backward, forward).all())


def _facet_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    corners = vertices[triangles]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return cross / np.linalg.norm(cross, axis=1, keepdims=True)


@pytest.mark.real_file(IMARIS95)
def test_every_imaris95_surface_has_imaris_area_volume_and_triangle_count(imaris95: Path) -> None:
    with h5py.File(imaris95, "r") as f:
        group = f[GROUP]
        model = group["SurfaceModel"][()]
        info = group["SurfaceModelInfo"][()]
        values = group["StatisticsValue"][()]
        types = {row["Name"].decode(): row["ID"] for row in group["StatisticsType"][()]}
        meshes = [read_mega_surface(group, i) for i in range(len(model))]
    assert len(meshes) == 32
    assert sum(len(m.triangles) for m in meshes) == 147_332  # "Total Number of Triangles"

    def statistic(name: str, surface_id: int) -> float:
        rows = values[(values["ID_StatisticsType"] == types[name]) & (values["ID_Object"] == surface_id)]
        assert len(rows) == 1
        return float(rows["Value"][0])

    for i, mesh in enumerate(meshes):
        surface_id = int(model["ID"][i])
        area, volume = _area_volume(mesh.vertices, mesh.triangles)
        assert len(mesh.triangles) == info["NumberOfTriangles"][i] == statistic("Number of Triangles", surface_id)
        for measured, name in ((area, "Area"), (volume, "Volume")):
            assert statistic(name, surface_id) == pytest.approx(float(info[name][i]), rel=1e-6)
            assert measured == pytest.approx(float(info[name][i]), rel=0.02), (i, name)
        assert area == pytest.approx(float(info["Area"][i]), rel=0.005), i  # measured: within 0.19 %
        assert mesh.t == model["ID_Time"][i]


@pytest.mark.real_file(IMARIS95)
def test_imaris95_meshes_are_closed_outward_and_inside_their_extent(imaris95: Path) -> None:
    with h5py.File(imaris95, "r") as f:
        group = f[GROUP]
        model = group["SurfaceModel"][()]
        for i in range(len(model)):
            mesh = read_mega_surface(group, i)
            low = np.array([model[f"ExtendMin{a}"][i] for a in "XYZ"], np.float64)
            high = np.array([model[f"ExtendMax{a}"][i] for a in "XYZ"], np.float64)
            assert mesh.vertices.dtype == np.float64 and mesh.triangles.dtype == np.int64
            assert _closed_and_oriented(mesh.triangles, len(mesh.vertices)), i
            assert len(np.unique(mesh.triangles)) == len(mesh.vertices)  # no vertex left unused
            assert _area_volume(mesh.vertices, mesh.triangles)[1] > 0  # wound counter-clockwise from outside
            assert (mesh.vertices >= low - 1e-5).all() and (mesh.vertices <= high + 1e-5).all()
            np.testing.assert_allclose(np.linalg.norm(mesh.normals, axis=1), 1, rtol=1e-9)
            # the stored normals point out, as the triangles face: measured >= 92 % per surface
            facing = (mesh.normals[mesh.triangles] * _facet_normals(mesh.vertices, mesh.triangles)[:, None]).sum(-1)
            assert (facing > 0).mean() > 0.9, i


def _dense_mesh(shape: Ellipsoid) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes on the closed-form field sampled on the grid, in world coordinates."""
    vertices, triangles, _, _ = marching_cubes(shape.dense(), 0.0)
    return np.asarray(shape.origin) + vertices * np.asarray(shape.voxel), triangles


def _assert_matches_field(mesh, shape: Ellipsoid, *, normal_error: tuple[float, float] = (3, 20)) -> None:
    vertices, triangles = _dense_mesh(shape)
    assert len(mesh.triangles) == len(triangles)
    # 13-bit square-root samples: positions within a hundredth of a voxel (7.3e-3 seen on one
    # generated ellipsoid of 0.15 voxels; most are within 5e-3)
    assert cKDTree(vertices).query(mesh.vertices)[0].max() < 1e-2 * min(shape.voxel)
    assert cKDTree(mesh.vertices).query(vertices)[0].max() < 1e-2 * min(shape.voxel)
    area, volume = _area_volume(mesh.vertices, mesh.triangles)
    true_area, true_volume = _area_volume(vertices, triangles)
    assert area == pytest.approx(true_area, rel=1e-3)
    assert volume == pytest.approx(abs(true_volume), rel=1e-3)
    # and that is the ellipsoid, in world units (marching cubes on a coarse grid cuts corners)
    assert volume == pytest.approx(4 / 3 * np.pi * np.prod(shape.radii), rel=0.1)
    assert _closed_and_oriented(mesh.triangles, len(mesh.vertices))
    # the normals are the ellipsoid's own, pointing out (interpolated between samples a voxel
    # apart: on a thin shape, off by up to 14 degrees)
    q = (mesh.vertices - shape.centre) / np.asarray(shape.radii) ** 2
    exact = q / np.linalg.norm(q, axis=1, keepdims=True)
    angle = np.degrees(np.arccos(np.clip((exact * mesh.normals).sum(1), -1, 1)))
    assert np.median(angle) < normal_error[0] and angle.max() < normal_error[1]


def test_synthetic_group_gives_the_fields_mesh(example: Path) -> None:
    with h5py.File(example, "r") as f:
        for i, shape in enumerate(EXAMPLE):
            mesh = read_mega_surface(f[GROUP], i)
            assert mesh.t == shape.time
            _assert_matches_field(mesh, shape)


def test_samples_without_a_normal_give_their_vertices_the_triangles_normal(tmp_path: Path) -> None:
    shape = Ellipsoid(centre=(3.0, 4.0, 5.0), radii=(1.7, 1.5, 1.6), stored_normals=False)
    path = mega_surfaces_file(tmp_path / "faceless.ims", [shape])
    with h5py.File(path, "r") as f:
        # the triangles' own normals: off by 4 degrees (median) where the stored ones are within 3
        _assert_matches_field(read_mega_surface(f[GROUP], 0), shape, normal_error=(6, 30))


def test_a_surface_wider_than_a_meshing_chunk_is_one_closed_mesh(tmp_path: Path) -> None:
    # 80 x 10 x 10 cells, the surface from x = 4 to 76: two chunks of 64 along x, their seam merged
    long = Ellipsoid(
        centre=(4.5, 0.5, 0.5), radii=(3.6, 0.35, 0.35), origin=(0.5, 0.0, 0.0), voxel=(0.1, 0.1, 0.1),
        size=(80, 10, 10), sampling=[(2, 2, 2)] * 4 + [(2, 1, 1)] * 3,
    )  # fmt: skip
    path = mega_surfaces_file(tmp_path / "long.ims", [long])
    with h5py.File(path, "r") as f:
        _assert_matches_field(read_mega_surface(f[GROUP], 0), long)


@settings(max_examples=8, deadline=None, phases=[Phase.generate])
@given(
    centre=st.tuples(*(st.floats(-0.3, 0.3) for _ in range(3))),
    radii=st.tuples(*(st.floats(0.6, 1.3) for _ in range(3))),
    voxel=st.tuples(*(st.sampled_from([0.15, 0.2, 0.3]) for _ in range(3))),
    split=st.integers(1, 3),
)
def test_any_ellipsoid_reads_back(tmp_path_factory, centre, radii, voxel, split) -> None:
    size = tuple(int(np.ceil(2 * 1.45 / v)) for v in voxel)
    levels = int(np.ceil(np.log2(max(size))))
    sampling = [(2, 2, 2)] * levels
    shape = Ellipsoid(
        centre=tuple(1.5 + c for c in centre), radii=radii, origin=(0.05, 0.05, 0.05), voxel=voxel, size=size,
        sampling=sampling, split_finest=split,
    )  # fmt: skip
    path = mega_surfaces_file(tmp_path_factory.mktemp("any") / "any.ims", [shape])
    with h5py.File(path, "r") as f:
        _assert_matches_field(read_mega_surface(f[GROUP], 0), shape)


def _damage(path: Path, how: str) -> None:
    with h5py.File(path, "r+") as f:
        group = f[GROUP]
        if how in ("data_count", "threshold", "size", "sampling", "levels"):
            table = group["SurfaceModel"][()]
            if how == "data_count":
                table["DataCountPerChildNode"][0] = 4
            elif how == "threshold":
                table["Threshold"][0] = 1.5
            elif how == "size":
                table["SizeX"][0] = 3
            elif how == "levels":
                table["NumberOfLevels"][0] = 2
            else:
                levels = group["LevelInfo"][()]
                levels["SamplingY"][1] = 3
                group["LevelInfo"][...] = levels
            group["SurfaceModel"][...] = table
        elif how in ("leaf_past_end", "parent"):
            blocks = group["BlockInfo"][()]
            if how == "leaf_past_end":
                blocks["LeafEnd"][0] = group["BlockData"].size + 5
            else:
                blocks["ParentBlockIndex"][2] = 4
            group["BlockInfo"][...] = blocks
        else:
            blocks = group["BlockInfo"][()]
            data = group["BlockData"][()]
            flat = data.reshape(-1)
            first_leaf = int(blocks["LeafBegin"][4])  # the first surface's finest block
            words = flat[first_leaf : first_leaf + 4].view("<u2")
            if how == "node_offset":
                node = int(blocks["NodeBegin"][1]) + 1
                flat[node] += 8 << 32  # its data now begins 8 values late
            elif how == "half_empty":
                words[:4] = 0xFFFF
            elif how == "disagreeing_corner":
                # a corner of the first finest cell that another cell shares: corner 7, shifted
                words[7] ^= 0x0100
            group["BlockData"][...] = data


DAMAGE = {
    "data_count": "DataCountPerChildNode 4",
    "threshold": "Threshold 1.5",
    "size": "outside its Size",
    "sampling": "samplings",
    "levels": "levels",
    "leaf_past_end": "BlockData",
    "parent": "parent block",
    "node_offset": "offset of node",
    "half_empty": "some corners marked empty",
    "disagreeing_corner": "different samples",
}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mega_surfaces_file(tmp_path_factory.mktemp("mega") / "mega.ims")


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_group_raises_the_specific_error(example: Path, tmp_path: Path, how: str) -> None:
    path = tmp_path / "mega.ims"
    shutil.copyfile(example, path)
    _damage(path, how)
    with h5py.File(path, "r") as f, pytest.raises(MalformedObjectsError, match=DAMAGE[how]) as caught:
        read_mega_surface(f[GROUP], 0)
    assert caught.value.path == str(path) and caught.value.group == f"/{GROUP}"


def test_a_surface_index_outside_the_table_is_a_selection_error(example: Path) -> None:
    with h5py.File(example, "r") as f, pytest.raises(SelectionError, match=r"surfaces 0\.\.1, not surface 2"):
        read_mega_surface(f[GROUP], 2)


def test_without_scikit_image_the_error_names_the_extra(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # scikit-image is the `surfaces` extra, not a core requirement: its absence is a clear error
    monkeypatch.setitem(sys.modules, "skimage.measure", None)
    with h5py.File(example, "r") as f, pytest.raises(MissingDependencyError, match=r"ims-store\[surfaces\]"):
        read_mega_surface(f[GROUP], 0)


@pytest.mark.real_file(IMARIS95)
def test_the_public_readers_give_imaris95_surfaces_as_meshes(imaris95: Path, tmp_path: Path) -> None:
    """list_objects, read_surfaces and the export reach the meshes: one per surface, each with
    Imaris' triangle count and time point (SurfaceModelInfo / SurfaceModel read by h5py)."""
    from ims_store import export_objects, list_objects, read_surfaces

    with h5py.File(imaris95, "r") as f:
        model, info = f[GROUP]["SurfaceModel"][()], f[GROUP]["SurfaceModelInfo"][()]
    surfaces = {o.name: o for o in list_objects(imaris95)}["Surfaces 1"]
    assert surfaces.readable and surfaces.reason is None
    assert surfaces.contents == ("meshes", "summary", "statistics")
    meshes = read_surfaces(imaris95, "Surfaces 1")
    assert [len(m.triangles) for m in meshes] == info["NumberOfTriangles"].tolist()
    assert [m.t for m in meshes] == model["ID_Time"].tolist()
    written, skipped = export_objects(imaris95, tmp_path / "objects", fmt="csv")
    assert "Surfaces 1" not in skipped
    expected = sorted(f"Surfaces_1.surface{i}.t{t}.ply" for i, t in zip(model["ID"], model["ID_Time"], strict=True))
    assert sorted(p.name for p in written if p.suffix == ".ply") == expected
