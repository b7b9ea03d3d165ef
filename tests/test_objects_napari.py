"""The napari reader's analysis-object layers: their data, and that they sit in the image layers'
world coordinates (tested without a display; the last tests build the layers with napari
itself, in the nox ``napari`` session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from ims_store.format.layout import ImsWarning
from ims_store.fronts.napari_objects import object_layers
from ims_store.fronts.napari_reader import reader_function
from ims_store.write.examples import SpotsSpec, cells_spots, nuclei_surfaces, write_scene, write_scene8
from ims_store.write.synthetic import make_example_ims

BRIGHT = 1000
# voxel (t, z, y, x) of each bright blob; spots are put at their centres
BLOBS = [(0, 1, 5, 7), (0, 6, 20, 30), (1, 3, 12, 2), (1, 7, 31, 39)]


def _world_centres(path: Path) -> np.ndarray:
    """World (x, y, z) of each blob's voxel centre, from h5py's read of the extents: the
    centre of voxel i is ExtMin + (i + 0.5) * (ExtMax - ExtMin) / size."""
    with h5py.File(path, "r") as f:
        image = f["DataSetInfo/Image"]

        def number(name: str) -> float:
            return float(b"".join(image.attrs[name]))

        low = np.array([number(f"ExtMin{i}") for i in range(3)])
        high = np.array([number(f"ExtMax{i}") for i in range(3)])
        size = np.array([number(a) for a in "XYZ"])
    voxel = (high - low) / size
    return np.array([low + (np.array([x, y, z]) + 0.5) * voxel for _, z, y, x in BLOBS])


@pytest.fixture(scope="module")
def blobs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bright voxels at `BLOBS` over a dark image with an odd origin and voxel size; spots at
    their centres (in two tracks), and the surfaces of the object files."""

    def data(t: int, c: int) -> np.ndarray:
        volume = np.zeros((8, 32, 40), np.uint16)
        for bt, z, y, x in BLOBS:
            if bt == t:
                volume[z, y, x] = BRIGHT
        return volume

    path = make_example_ims(
        tmp_path_factory.mktemp("napari") / "blobs.ims",
        data,
        shape=(8, 32, 40),
        channels=1,
        timepoints=2,
        voxel_size=(0.8, 0.3, 0.45),
        extent_min=(-3.1, 2.2, 10.5),
        levels=1,
        time_interval=2.5,
    )
    xyz = _world_centres(path)
    spots = SpotsSpec(
        "Blobs",
        ids=[0, 1, 2, 3],
        t=[b[0] for b in BLOBS],
        xyzr=np.column_stack([xyz, [0.5, 0.6, 0.7, 0.8]]).astype(np.float32),
        tracks={7: [0, 2], 8: [1, 3]},
        edges={7: [(0, 2)], 8: [(1, 3)]},
        stats=[("Intensity Max", "", "Spot", {"Channel": "1"}, i, BLOBS[i][0], float(BRIGHT - i)) for i in range(4)]
        + [("Track Length", "um", "Track", {}, 7, -1, 3.0)],
        color=(0.1, 0.9, 0.3),
    )
    # surfaces are read from the old layout; (float32 world positions as Imaris stores them)
    write_scene8(path, [spots])
    return write_scene(path, [nuclei_surfaces()])


def _layers(path: Path) -> dict[str, tuple]:
    return {meta["name"]: (data, meta, kind) for data, meta, kind in reader_function(str(path))}


def _voxel_of(world_tzyx: np.ndarray, image_meta: dict) -> np.ndarray:
    """The image layer's data index at a world position (napari: world = data * scale + translate)."""
    index = (world_tzyx - np.array(image_meta["translate"])) / np.array(image_meta["scale"])
    np.testing.assert_allclose(index, np.rint(index), atol=1e-4)  # a voxel centre, not between voxels
    return np.rint(index).astype(int)


def test_spots_sit_on_the_blobs_they_mark(blobs_file: Path) -> None:
    layers = _layers(blobs_file)
    image, image_meta, _ = layers["Channel 0"]
    points, meta, kind = layers["Blobs"]
    assert kind == "points" and points.shape == (4, 4)  # (t, z, y, x): the image has time
    world = points * np.array(meta["scale"]) + np.array(meta.get("translate", (0, 0, 0, 0)))
    level0 = np.asarray(image[0] if image_meta["multiscale"] else image)  # (t, z, y, x) of level 0
    for position, blob in zip(world, BLOBS, strict=True):
        index = _voxel_of(position, image_meta)
        assert tuple(index) == blob
        assert level0[tuple(index)] == BRIGHT
    assert meta["scale"][0] == pytest.approx(2.5) == image_meta["scale"][0]


def test_points_size_colour_and_features(blobs_file: Path) -> None:
    points, meta, _ = _layers(blobs_file)["Blobs"]
    np.testing.assert_allclose(meta["size"], 2 * np.array([0.5, 0.6, 0.7, 0.8], np.float32))
    # a ring in the object's colour around a faint disc, so the marked voxels stay visible
    assert meta["face_color"] == pytest.approx([0.1, 0.9, 0.3, 0.15])
    assert meta["border_color"] == pytest.approx([0.1, 0.9, 0.3, 1.0]) and meta["border_width"] == 0.15
    assert meta["border_width_is_relative"]
    assert meta["units"] == ("second", "micrometer", "micrometer", "micrometer")
    assert meta["axis_labels"] == ("t", "z", "y", "x")
    features = meta["features"]
    assert len(features) == len(points)
    assert features["id"].tolist() == [0, 1, 2, 3] and features["track_id"].tolist() == [7, 8, 7, 8]
    assert features["Intensity Max (Channel=1)"].tolist() == [1000.0, 999.0, 998.0, 997.0]
    assert "Track Length" not in features  # a track's statistic, not a spot's


def test_tracks_layer(blobs_file: Path) -> None:
    points, _, _ = _layers(blobs_file)["Blobs"]
    tracks, meta, kind = _layers(blobs_file)["Blobs tracks"]
    assert kind == "tracks" and tracks.shape == (4, 5)
    # segment id, t, z, y, x: each track one segment, in time order, at its spots' positions
    assert tracks[:, 0].tolist() == [0, 0, 1, 1] and tracks[:, 1].tolist() == [0, 1, 0, 1]
    np.testing.assert_array_equal(tracks[:, 1:], points[[0, 2, 1, 3]])
    assert meta["graph"] == {} and meta["features"]["track_id"].tolist() == [7, 7, 8, 8]


def test_branched_tracks_become_segments_joined_by_the_graph(tmp_path: Path) -> None:
    path = make_example_ims(tmp_path / "b.ims", shape=(8, 32, 40), channels=1, timepoints=2, levels=1)
    write_scene8(path, [cells_spots()])  # track 1001: spot 1 (t 0) -> spots 3 and 4 (t 1)
    layers = {meta["name"]: (data, meta) for data, meta, _ in object_layers(path)}
    tracks, meta = layers["Cells tracks"]
    spot_of_row = meta["features"]["spot_id"].tolist()
    segments = {
        int(k): [s for s, seg in zip(spot_of_row, tracks[:, 0], strict=True) if seg == k] for k in set(tracks[:, 0])
    }
    assert sorted(segments.values()) == [[0, 2], [1], [3], [4]]
    parent = next(k for k, v in segments.items() if v == [1])
    children = [k for k, v in segments.items() if v in ([3], [4])]
    assert meta["graph"] == {child: [parent] for child in children}
    assert meta["features"]["track_id"].tolist() == [1000, 1000, 1001, 1001, 1001]


def test_surface_layer_in_world_coordinates(blobs_file: Path) -> None:
    (vertices, faces, values), meta, kind = _layers(blobs_file)["Nuclei"]
    assert kind == "surface" and vertices.shape[1] == 4 and len(values) == len(vertices)
    spec = nuclei_surfaces()
    for t in (0, 1):
        expected = np.concatenate([v[:, :3] for bt, v, _ in spec.blocks if bt == t])[:, ::-1]
        np.testing.assert_array_equal(vertices[vertices[:, 0] == t][:, 1:], expected)
    # every triangle joins vertices of one time point
    assert (vertices[faces][:, :, 0] == vertices[faces][:, :1, 0]).all()
    assert meta["scale"][0] == pytest.approx(2.5) and meta["colormap"]["colors"][-1] == [0.2, 0.8, 0.2, 1.0]


def test_single_time_point_images_get_three_axes(real_files: dict[str, Path]) -> None:
    layers = {meta["name"]: (data, meta, kind) for data, meta, kind in object_layers(real_files["PyramidalCell.ims"])}
    points, meta, _ = layers["Spots 2"]
    with h5py.File(real_files["PyramidalCell.ims"], "r") as f:
        coords = f["Scene/Content/Points0/CoordsXYZR"][()]
        vertices = f["Scene/Content/Surfaces0/Vertices"][()]
    np.testing.assert_array_equal(points, coords[:, 2::-1])
    np.testing.assert_array_equal(meta["size"], 2 * coords[:, 3].astype(np.float64))
    (surface_vertices, faces, _), _, kind = layers["Surfaces 1"]
    np.testing.assert_array_equal(surface_vertices, vertices[:, 2::-1])
    assert kind == "surface" and faces.shape == (13508, 3)


def test_damaged_objects_leave_the_images_with_a_warning(blobs_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "damaged.ims"
    shutil.copyfile(blobs_file, path)
    with h5py.File(path, "r+") as f:
        del f["Scene8/Content/Points0/SpotTimeOffset"]
    with pytest.warns(ImsWarning, match="analysis objects not shown: .*no SpotTimeOffset dataset"):
        layers = reader_function(str(path))
    assert [kind for _, _, kind in layers] == ["image"]


# -- with napari itself (nox -s napari) --------------------------------------------------------


def test_napari_builds_the_layers_in_the_images_world(blobs_file: Path) -> None:
    layers_module = pytest.importorskip("napari.layers")  # napari is an optional extra
    built = {
        meta["name"]: layers_module.Layer.create(data, meta, kind)
        for data, meta, kind in reader_function(str(blobs_file))
    }
    image, points = built["Channel 0"], built["Blobs"]
    for row, blob in zip(points.data, BLOBS, strict=True):
        world = np.asarray(points.data_to_world(row))
        np.testing.assert_allclose(world, image.data_to_world(np.array(blob, float)), atol=1e-5)
    assert built["Blobs tracks"].graph == {}
    assert built["Nuclei"].vertices.shape[1] == 4
    np.testing.assert_allclose(points.size, 2 * np.array([0.5, 0.6, 0.7, 0.8], np.float32))
    assert list(points.features.columns[:2]) == ["id", "track_id"]


def test_napari_takes_units_axis_labels_and_the_styling(blobs_file: Path) -> None:
    layers_module = pytest.importorskip("napari.layers")  # napari is an optional extra
    built = {
        meta["name"]: layers_module.Layer.create(data, meta, kind)
        for data, meta, kind in reader_function(str(blobs_file))
    }
    for layer in built.values():
        # pint units: the scale bar reads micrometres, the sliders t and z
        assert [str(u) for u in layer.units][-3:] == ["micrometer"] * 3, layer.name
        assert tuple(layer.axis_labels)[-3:] == ("z", "y", "x")
    assert tuple(built["Channel 0"].axis_labels) == ("t", "z", "y", "x")
    assert str(built["Channel 0"].units[0]) == "second"
    points = built["Blobs"]
    np.testing.assert_allclose(points.face_color[:, 3], 0.15)  # translucent faces
    np.testing.assert_allclose(points.border_color[:, 3], 1.0)  # opaque rings
    np.testing.assert_allclose(points.border_width, 0.15)
    tracks = built["Blobs tracks"]
    assert tracks.colormap == "hsv"
    # every track drawn bright: no colour near black (turbo's dark end took one track before)
    assert tracks.track_colors[:, :3].max(axis=1).min() > 0.5


def test_merging_tracks_give_a_segment_two_parents() -> None:
    from ims_store.fronts.napari_objects import track_segments
    from ims_store.objects.model import Spots, Tracks

    ids = np.array([10, 11, 12, 13])  # 10 (t 0) and 11 (t 0) merge into 12 (t 1), then 13 (t 2)
    spots = Spots(ids, np.array([0, 0, 1, 2]), np.zeros((4, 3)), np.ones(4), np.full(4, 5))
    # an edge stored backwards in time (13 -> 12) is read forwards
    tracks = Tracks(np.full(4, 5), ids, np.full(3, 5), np.array([10, 11, 13]), np.array([12, 12, 12]))
    rows, graph, track = track_segments(tracks, spots)
    assert [r.tolist() for r in rows] == [[0], [1], [2, 3]]
    assert graph == {2: [0, 1]} and track.tolist() == [5, 5, 5]
