"""Analysis objects (ims_store.objects) against h5py's reads and the specs files were built from."""

from __future__ import annotations

import pickle
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ims_store import MalformedObjectsError, MissingDependencyError, SelectionError
from ims_store.objects import (
    list_objects,
    read_spots,
    read_statistics,
    read_surfaces,
    read_track_edges,
    read_tracks,
)
from ims_store.write.examples import (
    OtherSpec,
    SpotsSpec,
    SurfacesSpec,
    cells_spots,
    image,
    nuclei_surfaces,
    tetrahedron,
    untracked_spots,
    write_scene,
    write_scene8,
)

# -- the real file ---------------------------------------------------------------------------


def _h5(path: Path, name: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[name][()]


def _extents(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        image_group = f["DataSetInfo/Image"]
        low = [float(b"".join(image_group.attrs[f"ExtMin{i}"])) for i in range(3)]
        high = [float(b"".join(image_group.attrs[f"ExtMax{i}"])) for i in range(3)]
    return np.array(low), np.array(high)


@pytest.mark.real_file("PyramidalCell.ims")
def test_pyramidal_cell_spots_equal_h5py(real_files: dict[str, Path]) -> None:
    path = real_files["PyramidalCell.ims"]
    spots = read_spots(path)
    coords = _h5(path, "Scene/Content/Points0/CoordsXYZR")
    assert len(spots) == 4 == len(coords)
    np.testing.assert_array_equal(spots[["x", "y", "z", "radius"]].to_numpy(), coords)
    np.testing.assert_array_equal(spots["t"], _h5(path, "Scene/Content/Points0/Time")[:, 0])
    assert spots["id"].tolist() == [0, 1, 2, 3] and spots["track_id"].isna().all()
    low, high = _extents(path)
    assert ((coords[:, :3] >= low) & (coords[:, :3] <= high)).all()
    assert read_tracks(path).empty and read_track_edges(path).empty
    stats = read_statistics(path)
    assert stats.empty and list(stats.columns) == ["name", "unit", "category", "factors", "object_id", "t", "value"]


@pytest.mark.real_file("PyramidalCell.ims")
def test_pyramidal_cell_surface_equals_h5py(real_files: dict[str, Path]) -> None:
    path = real_files["PyramidalCell.ims"]
    (surface,) = read_surfaces(path)
    vertices = _h5(path, "Scene/Content/Surfaces0/Vertices")
    triangles = _h5(path, "Scene/Content/Surfaces0/Triangles")
    assert surface.t == 0 and surface.vertices.shape == (6756, 3) and surface.triangles.shape == (13508, 3)
    np.testing.assert_array_equal(surface.vertices, vertices[:, :3])
    np.testing.assert_array_equal(surface.normals, vertices[:, 3:])
    np.testing.assert_array_equal(surface.triangles, triangles.astype(np.int64))
    assert surface.triangles.min() == 0 and surface.triangles.max() == 6755
    # a mesh of a blob at the border runs up to half a voxel past it (y: -0.1439 for ExtMin -0.114)
    low, high = _extents(path)
    half_voxel = (high - low) / np.array([255, 254, 69]) / 2
    assert ((surface.vertices >= low - half_voxel) & (surface.vertices <= high + half_voxel)).all()
    np.testing.assert_allclose(np.linalg.norm(surface.normals, axis=1), 1, atol=1e-3)


@pytest.mark.real_file("PyramidalCell.ims")
def test_pyramidal_cell_lists_its_objects(real_files: dict[str, Path]) -> None:
    spots, surfaces = list_objects(real_files["PyramidalCell.ims"])
    assert (spots.name, spots.kind, spots.count, spots.timepoints, spots.has_tracks) == (
        "Spots 2",
        "spots",
        4,
        (0,),
        False,
    )
    assert (surfaces.name, surfaces.kind, surfaces.vertices, surfaces.triangles) == (
        "Surfaces 1",
        "surfaces",
        6756,
        13508,
    )
    assert spots.readable and surfaces.readable and spots.layout == surfaces.layout == "Scene"
    assert spots.color == (0.8, 0.8, 0.8) and spots.unit == "um"


def test_files_without_objects_list_none(real_files: dict[str, Path]) -> None:
    assert list_objects(real_files["PtK2Cell.ims"]) == []
    with pytest.raises(SelectionError, match="no spots objects; the file's spots objects: none"):
        read_spots(real_files["PtK2Cell.ims"])


# -- synthetic files in both layouts ---------------------------------------------------------


def empty_spots() -> SpotsSpec:
    return SpotsSpec("Empty", [], [], np.zeros((0, 4), np.float32))


SPECS = [cells_spots(), untracked_spots(), empty_spots(), nuclei_surfaces(), OtherSpec("Filaments0", "Dendrites")]


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image(tmp_path_factory.mktemp("objects") / "image.ims", timepoints=3)


def _copy(base: Path, folder: Path, name: str) -> Path:
    path = folder / name
    shutil.copyfile(base, path)
    return path


@pytest.fixture(scope="module")
def files(base_image: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scenes")
    return {
        "scene8": write_scene8(_copy(base_image, folder, "scene8.ims"), SPECS),
        "scene": write_scene(_copy(base_image, folder, "scene.ims"), SPECS),
        "scene-local": write_scene(_copy(base_image, folder, "scene-local.ims"), SPECS, global_triangles=False),
        "both": write_scene(write_scene8(_copy(base_image, folder, "both.ims"), SPECS), SPECS),
    }


def _expected_spots(spec: SpotsSpec) -> pd.DataFrame:
    """The spec's spots sorted by id, with their track from the spec's tracks."""
    track_of = {s: k for k, members in spec.tracks.items() for s in members}
    return pd.DataFrame(
        {
            "id": spec.ids,
            "t": spec.t,
            "x": spec.xyzr[:, 0],
            "y": spec.xyzr[:, 1],
            "z": spec.xyzr[:, 2],
            "radius": spec.xyzr[:, 3],
            "track_id": pd.array([track_of.get(s) for s in spec.ids], dtype="Int64"),
        }
    )


def _by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("id").reset_index(drop=True)


def _partition(frame: pd.DataFrame, column: str) -> set[frozenset[int]]:
    """The sets of spot ids sharing a track (track ids differ between the layouts)."""
    tracked = frame.dropna(subset=[column])
    return {frozenset(group["id"].tolist()) for _, group in tracked.groupby(column)}


@pytest.mark.parametrize("layout", ["scene8", "scene", "both"])
@pytest.mark.parametrize("spec", [cells_spots(), untracked_spots(), empty_spots()], ids=lambda s: s.name)
def test_spots_equal_the_spec(files: dict[str, Path], layout: str, spec: SpotsSpec) -> None:
    got = _by_id(read_spots(files[layout], spec.name))
    expected = _expected_spots(spec)
    assert list(got.columns) == ["id", "t", "x", "y", "z", "radius", "track_id"]
    assert str(got["track_id"].dtype) == "Int64"
    pd.testing.assert_frame_equal(got.drop(columns="track_id"), expected.drop(columns="track_id"), check_dtype=False)
    if layout == "scene":  # the old layout has no track ids: the same spots share a track
        assert _partition(got, "track_id") == _partition(expected, "track_id")
    else:
        pd.testing.assert_series_equal(got["track_id"], expected["track_id"])


def test_first_spots_object_by_default_and_unknown_names_listed(files: dict[str, Path]) -> None:
    pd.testing.assert_frame_equal(read_spots(files["scene8"]), read_spots(files["scene8"], "Cells"))
    pd.testing.assert_frame_equal(read_spots(files["scene8"], "Points1"), read_spots(files["scene8"], "Untracked"))
    with pytest.raises(SelectionError, match="'Cells', 'Untracked', 'Empty'") as err:
        read_spots(files["scene8"], "Nope")
    assert err.value.path == str(files["scene8"])
    with pytest.raises(SelectionError, match="'Nuclei'"):
        read_surfaces(files["scene"], "Cells")


@pytest.mark.parametrize("layout", ["scene8", "both"])
def test_tracks_in_track_order_with_branches(files: dict[str, Path], layout: str) -> None:
    spec = cells_spots()
    tracks = read_tracks(files[layout], "Cells")
    assert list(tracks.columns) == ["track_id", "spot_id", "t", "x", "y", "z"]
    rows = [(k, s) for k in sorted(spec.tracks) for s in spec.tracks[k]]
    assert list(zip(tracks["track_id"], tracks["spot_id"], strict=True)) == rows
    position = {s: spec.xyzr[i] for i, s in enumerate(spec.ids)}
    np.testing.assert_array_equal(tracks[["x", "y", "z"]].to_numpy(), [position[s][:3] for _, s in rows])
    assert tracks["t"].tolist() == [spec.t[spec.ids.index(s)] for _, s in rows]
    edges = read_track_edges(files[layout], "Cells")
    assert list(edges.columns) == ["track_id", "spot_a", "spot_b"]
    assert edges.values.tolist() == [[k, a, b] for k in sorted(spec.edges) for a, b in spec.edges[k]]


def test_old_layout_tracks_are_the_connected_edges(files: dict[str, Path]) -> None:
    spec = cells_spots()
    tracks = read_tracks(files["scene"], "Cells")
    members = {frozenset(g["spot_id"]) for _, g in tracks.groupby("track_id")}
    assert members == {frozenset(m) for m in spec.tracks.values()}
    # each track in time order
    for _, group in tracks.groupby("track_id"):
        assert group["t"].is_monotonic_increasing
    edges = read_track_edges(files["scene"], "Cells")
    assert {(a, b) for a, b in edges[["spot_a", "spot_b"]].values.tolist()} == {
        e for pairs in spec.edges.values() for e in pairs
    }
    spots = read_spots(files["scene"], "Cells").set_index("id")
    assert all(spots.loc[a, "track_id"] == k for k, a in edges[["track_id", "spot_a"]].values.tolist())


def _expected_statistics(spec: SpotsSpec) -> list[tuple]:
    return sorted(
        (name, unit, category, tuple(sorted(factors.items())), None if obj == -1 else obj, None if t == -1 else t, v)
        for name, unit, category, factors, obj, t, v in spec.stats
    )


@pytest.mark.parametrize("layout", ["scene8", "both"])
def test_statistics_tidy_with_and_without_factors(files: dict[str, Path], layout: str) -> None:
    stats = read_statistics(files[layout], "Cells")
    assert list(stats.columns) == ["name", "unit", "category", "factors", "object_id", "t", "value"]
    got = sorted(
        (r.name, r.unit, r.category, tuple(sorted(r.factors.items())), _na(r.object_id), _na(r.t), r.value)
        for r in stats.itertuples()
    )
    assert got == _expected_statistics(cells_spots())
    speeds = stats[stats["name"] == "Track Speed Mean"].set_index("object_id")["value"]
    assert speeds.to_dict() == {1000: 4.0, 1001: 2.0}
    assert read_statistics(files[layout], "Untracked").empty


def _na(value: object) -> object:
    return None if value is pd.NA else value


@pytest.mark.parametrize("layout", ["scene", "scene-local", "both"])
def test_surfaces_per_time_point(files: dict[str, Path], layout: str) -> None:
    spec = nuclei_surfaces()
    surfaces = read_surfaces(files[layout])
    assert [s.t for s in surfaces] == [0, 1]
    for surface in surfaces:
        blocks = [(v, tri) for t, v, tri in spec.blocks if t == surface.t]
        vertices = np.concatenate([v for v, _ in blocks])
        offsets = np.cumsum([0] + [len(v) for v, _ in blocks])[:-1]
        triangles = np.concatenate([tri + o for (_, tri), o in zip(blocks, offsets, strict=True)])
        np.testing.assert_array_equal(surface.vertices, vertices[:, :3])
        np.testing.assert_array_equal(surface.normals, vertices[:, 3:])
        np.testing.assert_array_equal(surface.triangles, triangles)
        assert surface.triangles.max() < len(surface.vertices)


def test_listing_in_both_layouts(files: dict[str, Path]) -> None:
    by_name = {o.name: o for o in list_objects(files["scene8"])}
    assert list(by_name) == ["Cells", "Untracked", "Empty", "Nuclei", "Dendrites"]
    cells, untracked, empty = by_name["Cells"], by_name["Untracked"], by_name["Empty"]
    assert (cells.kind, cells.count, cells.timepoints, cells.has_tracks, cells.statistics) == (
        "spots",
        5,
        (0, 1),
        True,
        12,
    )
    assert (untracked.count, untracked.timepoints, untracked.has_tracks) == (3, (0, 2), False)
    assert (empty.count, empty.timepoints, empty.readable) == (0, (), True)
    assert cells.color == (1.0, 0.5, 0.0) and cells.group == "/Scene8/Content/Points0"
    nuclei, dendrites = by_name["Nuclei"], by_name["Dendrites"]
    assert (nuclei.kind, nuclei.readable, nuclei.count) == ("surfaces", False, None) and "MegaSurfaces" in nuclei.reason
    assert (dendrites.kind, dendrites.readable) == ("filaments", False) and dendrites.reason
    with pytest.raises(SelectionError, match="not readable"):
        read_surfaces(files["scene8"])

    old = {o.name: o for o in list_objects(files["scene"])}
    assert old["Nuclei"].readable and (old["Nuclei"].count, old["Nuclei"].timepoints) == (2, (0, 1))
    assert (old["Nuclei"].vertices, old["Nuclei"].triangles) == (12, 12)
    assert old["Cells"].statistics == 0 and old["Cells"].has_tracks and old["Cells"].layout == "Scene"

    # both: Scene8 read, Scene only where Scene8's layout is not read
    both = {o.name: o for o in list_objects(files["both"])}
    assert [both[n].layout for n in ("Cells", "Untracked", "Empty", "Nuclei")] == ["Scene8"] * 3 + ["Scene"]
    assert both["Nuclei"].readable and both["Cells"].group == "/Scene8/Content/Points0"


def test_both_layouts_agree(files: dict[str, Path]) -> None:
    for name in ("Cells", "Untracked", "Empty"):
        new, old = _by_id(read_spots(files["scene8"], name)), _by_id(read_spots(files["scene"], name))
        pd.testing.assert_frame_equal(new.drop(columns="track_id"), old.drop(columns="track_id"))
        assert _partition(new, "track_id") == _partition(old, "track_id")
    for a, b in zip(read_surfaces(files["scene"]), read_surfaces(files["both"]), strict=True):
        assert a.t == b.t
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.triangles, b.triangles)


def test_over_http_as_locally(files: dict[str, Path]) -> None:
    from http_files import FileServer

    server = FileServer(files["scene8"].parent)
    try:
        url = server.url("scene8.ims")
        assert list_objects(url) == list_objects(files["scene8"])
        pd.testing.assert_frame_equal(read_spots(url), read_spots(files["scene8"]))
        pd.testing.assert_frame_equal(read_statistics(url), read_statistics(files["scene8"]))
        url = server.url("scene.ims")
        assert [s.triangles.tolist() for s in read_surfaces(url)] == [
            s.triangles.tolist() for s in read_surfaces(files["scene"])
        ]
    finally:
        server.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_tracked_spots_read_back(data: st.DataObject, base_image: Path, tmp_path_factory) -> None:
    """Random spots over 3 time points, random chains of tracks (branches included)."""
    n = data.draw(st.integers(0, 12))
    t = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    xyzr = np.array(
        data.draw(st.lists(st.tuples(*[st.floats(0, 20, width=32)] * 4), min_size=n, max_size=n)) or np.zeros((0, 4)),
        np.float32,
    ).reshape(-1, 4)
    ids = list(range(n))
    # tracks: each spot joins the track of an earlier spot of an earlier time point with an edge
    # (Imaris' edges join time points), or starts one, or stays alone
    tracks: dict[int, list[int]] = {}
    edges: dict[int, list[tuple[int, int]]] = {}
    track_of: dict[int, int] = {}
    for s in ids:
        choice = data.draw(st.integers(-2, s - 1)) if s else data.draw(st.integers(-2, -1))
        if choice == -1:
            track_of[s] = 1000 + len(tracks)
            tracks[track_of[s]] = [s]
        elif choice >= 0 and choice in track_of and t[choice] < t[s]:
            track_of[s] = track_of[choice]
            tracks[track_of[s]].append(s)
            edges.setdefault(track_of[s], []).append((choice, s))
    spec = SpotsSpec("Random", ids, t, xyzr, tracks, edges)
    folder = tmp_path_factory.mktemp("random")
    new = write_scene8(_copy(base_image, folder, "new.ims"), [spec])
    old = write_scene(_copy(base_image, folder, "old.ims"), [spec])
    expected = _expected_spots(spec)
    for path in (new, old):
        got = _by_id(read_spots(path))
        pd.testing.assert_frame_equal(
            got.drop(columns="track_id"), expected.drop(columns="track_id"), check_dtype=False
        )
        tracks_expected = _partition(expected, "track_id")
        if path == old:  # the old layout keeps tracks as edges: a track of one spot is no track there
            tracks_expected = {members for members in tracks_expected if len(members) > 1}
        assert _partition(got, "track_id") == tracks_expected
        assert len(read_track_edges(path)) == sum(len(e) for e in edges.values())
    assert list(zip(read_tracks(new)["track_id"], read_tracks(new)["spot_id"], strict=True)) == [
        (k, s) for k in sorted(tracks) for s in tracks[k]
    ]


# -- damaged object groups -------------------------------------------------------------------

Edit = Callable[[h5py.File], None]


def _replace(f: h5py.File, path: str, data: object) -> None:
    del f[path]
    f[path] = data


def _set_field(path: str, field: str, value: Callable[[np.ndarray], np.ndarray]) -> Edit:
    def edit(f: h5py.File) -> None:
        table = f[path][()]
        table[field] = value(table[field])
        _replace(f, path, table)

    return edit


def _drop_field(path: str, field: str) -> Edit:
    def edit(f: h5py.File) -> None:
        table = f[path][()]
        kept = [n for n in table.dtype.names if n != field]
        _replace(f, path, table[kept].copy())  # numpy keeps the dropped field's bytes: copy them out

    return edit


def _retype_field(path: str, field: str, dtype: str) -> Edit:
    def edit(f: h5py.File) -> None:
        table = f[path][()]
        new = np.zeros(len(table), [(n, dtype if n == field else table.dtype[n]) for n in table.dtype.names])
        for n in table.dtype.names:
            if n != field:
                new[n] = table[n]
        _replace(f, path, new)

    return edit


P8 = "Scene8/Content/Points0"
P = "Scene/Content/Points0"
S = "Scene/Content/Surfaces0"

MALFORMED: dict[str, tuple[str, str, Callable, Edit, str]] = {
    # name: (layout, group, reader, edit, message)
    "no Spot": ("scene8", P8, read_spots, lambda f: f[P8].__delitem__("Spot"), "no Spot dataset"),
    "Spot a group": (
        "scene8",
        P8,
        list_objects,
        lambda f: (f[P8].__delitem__("Spot"), f[P8].create_group("Spot")),
        "Spot is a group",
    ),
    "Spot lacks Radius": ("scene8", P8, read_spots, _drop_field(f"{P8}/Spot", "Radius"), "lacks field(s) ['Radius']"),
    "Spot ID text": ("scene8", P8, read_spots, _retype_field(f"{P8}/Spot", "ID", "S8"), "field ID has type |S8"),
    "Spot position int": (
        "scene8",
        P8,
        read_spots,
        _retype_field(f"{P8}/Spot", "PositionX", "i4"),
        "field PositionX has type int32",
    ),
    "Spot not compound": (
        "scene8",
        P8,
        read_spots,
        lambda f: _replace(f, f"{P8}/Spot", np.zeros((5, 5))),
        "expected a compound type",
    ),
    "Spot IDs repeat": (
        "scene8",
        P8,
        read_spots,
        _set_field(f"{P8}/Spot", "ID", lambda v: np.zeros_like(v)),
        "ID 0 more than once",
    ),
    "time offset past end": (
        "scene8",
        P8,
        list_objects,
        _set_field(f"{P8}/SpotTimeOffset", "IndexEnd", lambda v: v + 3),
        "points at rows",
    ),
    "time offsets overlap": (
        "scene8",
        P8,
        read_spots,
        _set_field(f"{P8}/SpotTimeOffset", "IndexBegin", lambda v: v * 0),
        "overlapping rows of Spot",
    ),
    "time offsets leave a gap": (
        "scene8",
        P8,
        read_spots,
        _set_field(f"{P8}/SpotTimeOffset", "IndexEnd", lambda v: v - 1),
        "no time point",
    ),
    "time index past the image": (
        "scene8",
        P8,
        list_objects,
        _set_field(f"{P8}/SpotTimeOffset", "ID", lambda v: v + 5),
        "time points 0..2",
    ),
    "track objects past end": (
        "scene8",
        P8,
        read_tracks,
        _set_field(f"{P8}/Track0", "IndexTrackObjectEnd", lambda v: v + 9),
        "of TrackObject0, which has 5 rows",
    ),
    "track edges past end": (
        "scene8",
        P8,
        read_track_edges,
        _set_field(f"{P8}/Track0", "IndexTrackEdgeEnd", lambda v: v + 9),
        "of TrackEdge0, which has 3 rows",
    ),
    "track begins after its end": (
        "scene8",
        P8,
        read_spots,
        _set_field(f"{P8}/Track0", "IndexTrackObjectBegin", lambda v: v + 9),
        "of TrackObject0, which has 5 rows",
    ),
    "track spot unknown": (
        "scene8",
        P8,
        read_spots,
        _set_field(f"{P8}/TrackObject0", "ID_Object", lambda v: v + 100),
        "not in Spot",
    ),
    "edge spot unknown": (
        "scene8",
        P8,
        read_track_edges,
        _set_field(f"{P8}/TrackEdge0", "ID_ObjectB", lambda v: v + 100),
        "not in Spot",
    ),
    "track IDs repeat": (
        "scene8",
        P8,
        read_tracks,
        _set_field(f"{P8}/Track0", "ID", lambda v: np.zeros_like(v)),
        "track ID 0 names more than one track",
    ),
    "spot in two tracks": (
        "scene8",
        P8,
        read_tracks,
        _set_field(f"{P8}/TrackObject0", "ID_Object", lambda v: np.zeros_like(v)),
        "more than one track",
    ),
    "edge across tracks": (
        "scene8",
        P8,
        read_tracks,
        _set_field(f"{P8}/TrackEdge0", "ID_ObjectB", lambda v: v[::-1].copy()),
        "not both in that track",
    ),
    "track table missing": (
        "scene8",
        P8,
        list_objects,
        _set_field(f"{P8}/MainTrackTable", "TrackName", lambda v: np.array([b"Track9"])),
        "no Track9 dataset",
    ),
    "statistic type unknown": (
        "scene8",
        P8,
        read_statistics,
        _set_field(f"{P8}/StatisticsValue", "ID_StatisticsType", lambda v: v + 50),
        "not in StatisticsType",
    ),
    "category unknown": (
        "scene8",
        P8,
        read_statistics,
        _set_field(f"{P8}/StatisticsType", "ID_Category", lambda v: v + 50),
        "not in Category",
    ),
    "factor list unknown": (
        "scene8",
        P8,
        read_statistics,
        _set_field(f"{P8}/StatisticsType", "ID_FactorList", lambda v: v + 50),
        "not in Factor",
    ),
    "statistic time past the image": (
        "scene8",
        P8,
        read_statistics,
        _set_field(f"{P8}/StatisticsValue", "ID_Time", lambda v: v + 7),
        "time points 0..2",
    ),
    "statistic time offsets disagree": (
        "scene8",
        P8,
        read_statistics,
        _set_field(f"{P8}/StatisticsValueTimeOffset", "ID", lambda v: v[::-1].copy()),
        "ID_Time differs",
    ),
    "statistic value text": (
        "scene8",
        P8,
        read_statistics,
        _retype_field(f"{P8}/StatisticsValue", "Value", "S4"),
        "field Value has type",
    ),
    "statistic name numeric": (
        "scene8",
        P8,
        read_statistics,
        _retype_field(f"{P8}/StatisticsType", "Name", "f8"),
        "field Name has type",
    ),
    "no CoordsXYZR": ("scene", P, list_objects, lambda f: f[P].__delitem__("CoordsXYZR"), "no CoordsXYZR dataset"),
    "CoordsXYZR 3 columns": (
        "scene",
        P,
        list_objects,
        lambda f: _replace(f, f"{P}/CoordsXYZR", np.zeros((5, 3), "f4")),
        "expected (n, 4)",
    ),
    "CoordsXYZR text": (
        "scene",
        P,
        read_spots,
        lambda f: _replace(f, f"{P}/CoordsXYZR", np.zeros((5, 4), "S2")),
        "expected a floating-point type",
    ),
    "Time rows differ": (
        "scene",
        P,
        list_objects,
        lambda f: _replace(f, f"{P}/Time", np.zeros((4, 1), "u8")),
        "Time has 4 rows",
    ),
    "Time float": (
        "scene",
        P,
        list_objects,
        lambda f: _replace(f, f"{P}/Time", np.zeros((5, 1), "f4")),
        "expected an integer type",
    ),
    "Time past int64": (
        "scene",
        P,
        list_objects,
        lambda f: _replace(f, f"{P}/Time", np.full((5, 1), 2**63, "u8")),
        "past the range of int64",
    ),
    "Time past the image": (
        "scene",
        P,
        list_objects,
        lambda f: _replace(f, f"{P}/Time", np.full((5, 1), 3, "u8")),
        "time points 0..2",
    ),
    "Edges past end": (
        "scene",
        P,
        read_spots,
        lambda f: _replace(f, f"{P}/Edges", np.array([[0, 5]], "u8")),
        "there are 5 spots",
    ),
    "Edges 3 columns": (
        "scene",
        P,
        read_tracks,
        lambda f: _replace(f, f"{P}/Edges", np.zeros((2, 3), "u8")),
        "expected (n, 2)",
    ),
    "no Vertices": ("scene", S, list_objects, lambda f: f[S].__delitem__("Vertices"), "no Vertices dataset"),
    "Vertices 5 columns": (
        "scene",
        S,
        read_surfaces,
        lambda f: _replace(f, f"{S}/Vertices", np.zeros((12, 5), "f4")),
        "expected (n, 6)",
    ),
    "vertex counts wrong": (
        "scene",
        S,
        list_objects,
        lambda f: _replace(f, f"{S}/TimeNVerticesNTriangles", np.array([[0, 4, 4], [1, 4, 8]], "u8")),
        "counts 8 vertices but Vertices has 12",
    ),
    "triangle counts wrong": (
        "scene",
        S,
        read_surfaces,
        lambda f: _replace(f, f"{S}/TimeNVerticesNTriangles", np.array([[0, 4, 4], [1, 4, 4], [1, 4, 3]], "u8")),
        "counts 11 triangles",
    ),
    "Triangles past the vertices": (
        "scene",
        S,
        read_surfaces,
        lambda f: _replace(f, f"{S}/Triangles", np.full((12, 3), 12, "u8")),
        "index vertices outside their mesh",
    ),
    "Triangles float": (
        "scene",
        S,
        read_surfaces,
        lambda f: _replace(f, f"{S}/Triangles", np.zeros((12, 3), "f8")),
        "expected an integer type",
    ),
    "surface time past the image": (
        "scene",
        S,
        list_objects,
        lambda f: _replace(f, f"{S}/TimeNVerticesNTriangles", np.array([[0, 4, 4], [1, 4, 4], [9, 4, 4]], "u8")),
        "time points 0..2",
    ),
    "negative counts": (
        "scene",
        S,
        read_surfaces,
        lambda f: _replace(f, f"{S}/TimeNVerticesNTriangles", np.array([[0, 4, 4], [1, 4, 4], [1, 4, 4]], "i8") * -1),
        "negative",
    ),
    "object group a dataset": (
        "scene",
        "/Scene/Content/Points1",
        list_objects,
        lambda f: _replace(f, "Scene/Content/Points1", np.zeros(3)),
        "is not a group",
    ),
    "Scene8 a dataset": (
        "scene8",
        "/Scene8",
        list_objects,
        lambda f: (f.__delitem__("Scene8"), f.create_dataset("Scene8", data=np.zeros(2))),
        "is not a group",
    ),
    "Content a dangling link": (
        "scene",
        "/Scene/Content",
        read_spots,
        lambda f: (f.__delitem__("Scene/Content"), f["Scene"].__setitem__("Content", h5py.SoftLink("/nowhere"))),
        "is not a group",
    ),
    "object group links to a missing file": (
        "scene8",
        P8,
        list_objects,
        lambda f: (f.__delitem__(P8), f["Scene8/Content"].__setitem__("Points0", h5py.ExternalLink("gone.h5", "/x"))),
        "is not a group that can be opened",
    ),
    "Spot links nowhere": (
        "scene8",
        P8,
        read_spots,
        lambda f: (f.__delitem__(f"{P8}/Spot"), f[P8].__setitem__("Spot", h5py.SoftLink("/nowhere"))),
        "Spot is a link that leads nowhere",
    ),
    "Spot two-dimensional": (
        "scene8",
        P8,
        read_spots,
        lambda f: _replace(f, f"{P8}/Spot", f[f"{P8}/Spot"][()].reshape(-1, 1)),
        "expected one dimension",
    ),
    "Spot a scalar": (
        "scene8",
        P8,
        list_objects,
        lambda f: _replace(f, f"{P8}/Spot", f[f"{P8}/Spot"][0]),
        "Spot is a scalar",
    ),
    "Content a dataset": (
        "scene8",
        "/Scene8/Content",
        list_objects,
        lambda f: _replace(f, "Scene8/Content", np.zeros(3)),
        "is not a group",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_damaged_groups_raise_the_specific_error(case: str, files: dict[str, Path], tmp_path: Path) -> None:
    layout, group, reader, edit, message = MALFORMED[case]
    path = tmp_path / f"{layout}.ims"
    shutil.copyfile(files[layout], path)
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(MalformedObjectsError) as err:
        reader(path)
    assert message in str(err.value)
    assert err.value.path == str(path)
    assert err.value.group == ("/" + group).replace("//", "/")
    assert str(err.value).startswith(f"{path}: {err.value.group}: ")


def test_the_error_pickles_with_its_group() -> None:
    err = MalformedObjectsError("no Spot dataset", "a.ims", "/Scene8/Content/Points0")
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.path, back.group) == (str(err), "a.ims", "/Scene8/Content/Points0")


def test_without_pandas_tables_say_which_extra(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"ims-store\[objects\]"):
        read_spots(files["scene8"])
    assert [s.t for s in read_surfaces(files["scene"])] == [0, 1]  # meshes need no pandas
    assert len(list_objects(files["scene8"])) == 5


def test_surface_triangle_numbering_that_fits_both_readings_is_refused(base_image: Path, tmp_path: Path) -> None:
    # second mesh's indices 0..3 fit both its own rows (local) and... only if they are also its
    # global rows 4..7: they are not, so a file whose second mesh uses 4..7 locally is refused
    a, b = tetrahedron((8, 5, 1)), tetrahedron((9, 5, 1))
    spec = SurfacesSpec("Mixed", [(0, a[0], a[1]), (1, np.vstack([b[0], b[0]]), b[1] + 4)])
    path = write_scene(_copy(base_image, tmp_path, "mixed.ims"), [spec], global_triangles=False)
    # the second mesh has 8 vertices and uses rows 4..7: read locally that fits; globally
    # (rows 4..11) it fits too; neither uses all 8 vertices
    with pytest.raises(MalformedObjectsError, match="fit both a global and a per-mesh numbering"):
        read_surfaces(path)
