"""Spots and tracks written by `write_ims(..., spots=...)`: read back equal (hypothesis), and the
written Points groups compared with the one Imaris 9.5.1 wrote (``PyramidalCell_Imaris95.ims``),
dataset by dataset, dtype by dtype, attribute by attribute.

Ground truth is the input tables (sorted the way the file must store them: by time index, stably)
and the Imaris-written file read with h5py; never ims_store's writer itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ims_store import (
    SourceError,
    list_objects,
    read_spots,
    read_statistics,
    read_track_edges,
    read_tracks,
    write_ims,
)
from ims_store.write.spots import SpotsObject

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
IMARIS95 = FIXTURES / "PyramidalCell_Imaris95.ims"
TRACK_TABLES = {  # the track tables of the format notes (section 10), field by field
    "MainTrackTable": [("ObjectsName", "S256"), ("TrackName", "S256"), ("TrackObjectName", "S256"),
                       ("TrackEdgeName", "S256")],
    "Track0": [("ID", "<i8"), ("IndexTrackObjectBegin", "<i8"), ("IndexTrackObjectEnd", "<i8"),
               ("IndexTrackEdgeBegin", "<i8"), ("IndexTrackEdgeEnd", "<i8")],
    "TrackObject0": [("ID_Object", "<i8")],
    "TrackEdge0": [("ID_ObjectA", "<i8"), ("ID_ObjectB", "<i8")],
}  # fmt: skip


def _image(timepoints: int = 3) -> np.ndarray:
    return np.zeros((timepoints, 1, 4, 16, 16), np.uint8)


def _table(ids, t, xyz, radius, track) -> pd.DataFrame:
    xyz = np.asarray(xyz, np.float32).reshape(-1, 3)
    return pd.DataFrame(
        {
            "id": np.asarray(ids, np.int64),
            "t": np.asarray(t, np.int64),
            "x": xyz[:, 0].astype(np.float64),
            "y": xyz[:, 1].astype(np.float64),
            "z": xyz[:, 2].astype(np.float64),
            "radius": np.asarray(radius, np.float32).astype(np.float64),
            "track_id": pd.array(track, dtype="Int64"),
        }
    )


@st.composite
def spot_tables(draw: st.DrawFnType) -> tuple[pd.DataFrame, pd.DataFrame | None, int]:
    timepoints = draw(st.integers(1, 4))
    n = draw(st.integers(0, 12))
    ids = draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n, unique=True))
    t = draw(st.lists(st.integers(0, timepoints - 1), min_size=n, max_size=n))
    coord = st.floats(-1e4, 1e4, allow_nan=False, width=32)
    xyz = draw(st.lists(st.tuples(coord, coord, coord), min_size=n, max_size=n))
    radius = draw(st.lists(st.floats(0.0009765625, 100, width=32), min_size=n, max_size=n))
    branching = draw(st.booleans())
    track_pool = draw(st.lists(st.integers(0, 2**35), min_size=1, max_size=3, unique=True))
    track: list[int | None] = [draw(st.one_of(st.none(), st.sampled_from(track_pool))) for _ in range(n)]
    edges = None
    if branching:
        rows = []
        for tid in track_pool:
            members = [ids[i] for i in range(n) if track[i] == tid]
            if len(members) >= 2:
                pairs = draw(st.lists(st.tuples(st.sampled_from(members), st.sampled_from(members)), max_size=4))
                time_of = dict(zip(ids, t, strict=True))
                # edges join two time points, each pair once (the writer refuses others: tested below)
                kept = {(min(a, b), max(a, b)) for a, b in pairs if time_of[a] != time_of[b]}
                rows += [(tid, a, b) for a, b in sorted(kept)]
        edges = pd.DataFrame(rows, columns=["track_id", "spot_a", "spot_b"], dtype=np.int64)
    else:  # a chain: no two spots of a track at one time point
        seen: set[tuple[int, int]] = set()
        for i in range(n):
            if track[i] is not None and (track[i], t[i]) in seen:
                track[i] = None
            elif track[i] is not None:
                seen.add((track[i], t[i]))
    return _table(ids, t, xyz, radius, track), edges, timepoints


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=spot_tables())
def test_spots_and_tracks_read_back_equal(tmp_path_factory: pytest.TempPathFactory, case) -> None:
    table, edges, timepoints = case
    out = tmp_path_factory.mktemp("spots") / "spots.ims"
    write_ims(_image(timepoints), out, axes="tczyx", spots={"Detections": (table, edges)})
    stored = table.iloc[np.argsort(table["t"].to_numpy(), kind="stable")].reset_index(drop=True)
    pd.testing.assert_frame_equal(read_spots(out, "Detections"), stored, check_dtype=False)
    tracked = stored[stored["track_id"].notna()]
    expected_tracks = pd.DataFrame(
        {
            "track_id": tracked["track_id"].astype(np.int64),
            "spot_id": tracked["id"],
            "t": tracked["t"],
            "x": tracked["x"],
            "y": tracked["y"],
            "z": tracked["z"],
        }
    )
    expected_tracks = expected_tracks.iloc[np.argsort(expected_tracks["track_id"].to_numpy(), kind="stable")]
    pd.testing.assert_frame_equal(read_tracks(out), expected_tracks.reset_index(drop=True), check_dtype=False)
    if edges is None:
        chain = [
            (tid, a, b)
            for tid, rows in expected_tracks.groupby("track_id", sort=True)
            for a, b in zip(rows["spot_id"].tolist()[:-1], rows["spot_id"].tolist()[1:], strict=True)
        ]
        expected_edges = pd.DataFrame(chain, columns=["track_id", "spot_a", "spot_b"], dtype=np.int64)
    else:
        expected_edges = edges.iloc[np.argsort(edges["track_id"].to_numpy(), kind="stable")].reset_index(drop=True)
    pd.testing.assert_frame_equal(read_track_edges(out), expected_edges, check_dtype=False)
    [info] = list_objects(out)
    assert (info.kind, info.name, info.count, info.has_tracks) == ("spots", "Detections", len(table), len(tracked) > 0)


def _imaris_spots() -> pd.DataFrame:
    with h5py.File(IMARIS95, "r") as f:
        spot = f["Scene8/Content/Points0/Spot"][()]
    return pd.DataFrame(
        {
            "id": spot["ID"].astype(np.int64),
            "t": np.zeros(len(spot), np.int64),
            "x": spot["PositionX"].astype(np.float64),
            "y": spot["PositionY"].astype(np.float64),
            "z": spot["PositionZ"].astype(np.float64),
            "radius": spot["Radius"].astype(np.float64),
        }
    )


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Imaris 9.5 file's image (as an array with its geometry: a rewrite of the file itself
    would keep its own Points0 beside the new one) with its spots, taken from the file by h5py,
    written anew."""
    from ims_store import read_layout
    from ims_store.format.geometry import voxel_centre_origin

    layout = read_layout(IMARIS95)
    level = layout.levels[0]
    with h5py.File(IMARIS95, "r") as f:
        data = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"][
            : level.size[0], : level.size[1], : level.size[2]
        ]
    out = tmp_path_factory.mktemp("imaris95") / "rewritten.ims"
    origin = voxel_centre_origin(layout.extent_min, level.voxel_size)
    return write_ims(
        data, out, axes="zyx", voxel_size=level.voxel_size, origin=origin, unit=layout.unit,
        time_stamps=[tp.stamp for tp in layout.timepoints], spots={"Spots 1": _imaris_spots()},
    )  # fmt: skip


def _datasets(group: h5py.Group) -> dict[str, h5py.Dataset]:
    return {name: group[name] for name in group}


def _storage(ds: h5py.Dataset) -> tuple:
    return (ds.dtype, ds.ndim, ds.chunks is None, ds.compression, ds.compression_opts, ds.shuffle, ds.maxshape is None)


@pytest.mark.parametrize("layout", ["Scene8", "Scene"])
def test_points_group_as_imaris_writes_it(rewritten: Path, layout: str) -> None:
    with h5py.File(IMARIS95, "r") as imaris, h5py.File(rewritten, "r") as ours:
        theirs_group, ours_group = imaris[f"{layout}/Content/Points0"], ours[f"{layout}/Content/Points0"]
        theirs, mine = _datasets(theirs_group), _datasets(ours_group)
        assert sorted(mine) == sorted(theirs)
        for name, ds in theirs.items():
            assert mine[name].dtype == ds.dtype, name
            assert mine[name].ndim == ds.ndim, name
            # contiguous (Scene8's tables) or one gzip-2 chunk (Scene's arrays), as Imaris stores them
            assert (mine[name].chunks is None) == (ds.chunks is None), name
            assert (mine[name].compression, mine[name].compression_opts) == (ds.compression, ds.compression_opts), name
            assert mine[name].shuffle == ds.shuffle, name
        assert sorted(ours_group.attrs) == sorted(theirs_group.attrs)
        for key, value in theirs_group.attrs.items():
            got = ours_group.attrs[key]
            assert np.asarray(got).shape == np.asarray(value).shape, key
            if np.asarray(value).dtype.kind == "S":
                assert np.asarray(got).dtype.kind == "S", key  # fixed-length strings, not char arrays
            else:
                assert np.asarray(got).dtype == np.asarray(value).dtype, key
            if key != "CreationParameters":  # the spots did not come from Imaris' detection
                assert np.asarray(got).tobytes() == np.asarray(value).tobytes(), key
        content_theirs, content_ours = imaris[f"{layout}/Content"], ours[f"{layout}/Content"]
        assert content_ours.attrs["NumberOfPoints"].dtype == content_theirs.attrs["NumberOfPoints"].dtype
        assert content_ours.attrs["NumberOfPoints"] == 1


# the tables whose every row follows from the spots and the image's time stamps: equal byte for byte
@pytest.mark.parametrize(
    "where",
    [
        "Scene8/Content/Points0/Spot",
        "Scene8/Content/Points0/SpotTimeOffset",
        "Scene8/Content/Points0/Time",
        "Scene8/Content/Points0/TimeBegin",
        "Scene8/Content/Points0/Category",
        "Scene8/Content/Points0/MainTrackSegmentTable",
        "Scene8/Content/Points0/MainTrackSegmentTable_Focus",
        "Scene/Content/Points0/CoordsXYZR",
        "Scene/Content/Points0/Time",
        "Scene/Content/Points0/TimeInfos",
    ],
)
def test_tables_equal_imaris(rewritten: Path, where: str) -> None:
    with h5py.File(IMARIS95, "r") as imaris, h5py.File(rewritten, "r") as ours:
        assert ours[where][()].tobytes() == imaris[where][()].tobytes()


def test_statistics_equal_the_values_imaris_computed(rewritten: Path) -> None:
    """Every statistic written is one Imaris wrote for the same spots, with its ID, name, unit,
    category, objects and time, and the value Imaris computed (to float32 rounding)."""
    with h5py.File(IMARIS95, "r") as imaris, h5py.File(rewritten, "r") as ours:
        g_theirs, g_ours = imaris["Scene8/Content/Points0"], ours["Scene8/Content/Points0"]
        types_theirs = {int(r["ID"]): r for r in g_theirs["StatisticsType"][()]}
        values_theirs, values_ours = g_theirs["StatisticsValue"][()], g_ours["StatisticsValue"][()]
        cat_theirs = {int(r["ID"]): r["Name"] for r in g_theirs["Category"][()]}
        cat_ours = {int(r["ID"]): r["Name"] for r in g_ours["Category"][()]}
        written = g_ours["StatisticsType"][()]
        assert len(written) == 13
        for row in written:
            theirs = types_theirs[int(row["ID"])]
            assert (row["Name"], row["Unit"]) == (theirs["Name"], theirs["Unit"])
            assert cat_ours[int(row["ID_Category"])] == cat_theirs[int(theirs["ID_Category"])]
            a = values_theirs[values_theirs["ID_StatisticsType"] == row["ID"]]
            b = values_ours[values_ours["ID_StatisticsType"] == row["ID"]]
            assert b[["ID_Time", "ID_Object"]].tolist() == a[["ID_Time", "ID_Object"]].tolist()
            np.testing.assert_allclose(b["Value"], a["Value"], rtol=1e-6)
        # the time offsets of the statistics rows: overall first, then time point 0
        assert g_ours["StatisticsValueTimeOffset"][()]["ID"].tolist() == [-1, 0]
    stats = read_statistics(rewritten, "Spots 1")
    assert stats[stats["name"] == "Total Number of Spots"]["value"].tolist() == [4.0]


def test_track_tables_as_the_format_notes(tmp_path: Path) -> None:
    table = _table([1, 2, 3, 4], [0, 1, 2, 0], np.ones((4, 3)), [1, 1, 1, 1], [10, 10, 10, None])
    out = write_ims(_image(), tmp_path / "t.ims", axes="tczyx", spots={"Cells": table})
    with h5py.File(out, "r") as f:
        g = f["Scene8/Content/Points0"]
        for name, fields in TRACK_TABLES.items():
            assert g[name].dtype == np.dtype(fields), name
            assert g[name].chunks is None and g[name].compression is None
        assert g["MainTrackTable"][()].tolist() == [(b"0", b"Track0", b"TrackObject0", b"TrackEdge0")]
        assert g["Track0"][()].tolist() == [(10, 0, 3, 0, 2)]
        assert g["TrackObject0"][()]["ID_Object"].tolist() == [1, 2, 3]
        assert g["TrackEdge0"][()].tolist() == [(1, 2), (2, 3)]
        # one segment per track and per untracked spot
        assert g["TrackSegment0"][()]["FirstObjectId"].tolist() == [1, 4]
        assert g.attrs["CreationParameters"][0].find(b'mEnableTracking="true"') > 0
        old = f["Scene/Content/Points0"]
        rows = old["Edges"][()].tolist()  # old layout: rows of CoordsXYZR, sorted by time (1, 4, 2, 3)
        assert rows == [[0, 2], [2, 3]]
        assert old["Time"][()].ravel().tolist() == [0, 0, 1, 2]


def test_several_spots_objects_numbered_and_coloured(tmp_path: Path) -> None:
    one = _table([0], [0], [[1, 2, 3]], [1], [None])
    out = write_ims(
        _image(),
        tmp_path / "two.ims",
        axes="tczyx",
        spots={"A": one, "B": SpotsObject(one, color=(1.0, 0.0, 0.5))},
    )
    infos = list_objects(out)
    assert [(i.name, i.group, i.color) for i in infos] == [
        ("A", "/Scene8/Content/Points0", (0.8, 0.8, 0.8)),
        ("B", "/Scene8/Content/Points1", (1.0, 0.0, 0.5)),
    ]
    with h5py.File(out, "r") as f:
        assert [int(f[f"Scene8/Content/Points{k}"].attrs["Id"]) for k in (0, 1)] == [200001, 200002]
        assert int(f["Scene/Content"].attrs["NumberOfPoints"]) == 2


def test_spots_added_after_the_points_a_file_holds(tmp_path: Path) -> None:
    from ims_store.write.spots import prepare_spots, write_spots

    target = tmp_path / "objects.ims"
    shutil.copyfile(IMARIS95, target)
    before = read_spots(target, "Spots 1")
    with h5py.File(target, "a") as f:
        write_spots(f, prepare_spots({"Mine": _table([9], [0], [[1, 2, 3]], [2], [None])}, 1), unit="um",
                    time_stamps=[pd.Timestamp("2003-03-18").to_pydatetime()])  # fmt: skip
        assert int(f["Scene8/Content/Points1"].attrs["Id"]) == 200002
        assert int(f["Scene8/Content"].attrs["NumberOfPoints"]) == 2
    pd.testing.assert_frame_equal(read_spots(target, "Spots 1"), before)
    assert read_spots(target, "Mine")["id"].tolist() == [9]


@pytest.mark.parametrize(
    ("table", "edges", "message"),
    [
        (_table([1, 1], [0, 0], np.ones((2, 3)), [1, 1], [None, None]), None, "spot id 1 is given more than once"),
        (_table([1], [5], np.ones((1, 3)), [1], [None]), None, "time index 5 is not among"),
        (_table([1], [0], np.ones((1, 3)), [0], [None]), None, "radius must be > 0"),
        (_table([1, 2], [0, 0], np.ones((2, 3)), [1, 1], [4, 4]), None, "track 4 holds two spots at time index 0"),
        (
            _table([1, 2], [0, 1], np.ones((2, 3)), [1, 1], [4, None]),
            pd.DataFrame({"track_id": [4], "spot_a": [1], "spot_b": [2]}),
            "not both spots of that track",
        ),
        (pd.DataFrame({"id": [1], "t": [0]}), None, "has no column 'x'"),
        (_table([-1], [0], np.ones((1, 3)), [1], [None]), None, "whole numbers >= 0"),
    ],
)
def test_bad_tables_refused_before_writing(tmp_path: Path, table, edges, message: str) -> None:
    out = tmp_path / "bad.ims"
    with pytest.raises(SourceError, match=message) as caught:
        write_ims(_image(), out, axes="tczyx", spots={"Bad": (table, edges)})
    assert "spots 'Bad'" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_cli_convert_with_spots_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ims_store.fronts.cli import main

    csv = tmp_path / "detections.csv"
    csv.write_text("id,t,x,y,z,radius,track_id\n0,0,1.5,2,3,0.5,\n1,0,2.5,2,3,0.5,7\n2,0,3.5,2,3,0.5,\n")
    out = tmp_path / "out.ims"
    assert main(["convert", str(IMARIS95), str(out), "--quiet", "--spots", str(csv), "--spots", f"{csv}:Nuclei"]) == 0
    # the source's own objects are kept (its geometry is), the new spots follow them
    kept = [(i.name, i.count) for i in list_objects(IMARIS95)]
    assert sorted((i.name, i.count) for i in list_objects(out)) == sorted([*kept, ("detections", 3), ("Nuclei", 3)])
    got = read_spots(out, "Nuclei")
    assert got["x"].tolist() == [1.5, 2.5, 3.5]
    assert got["track_id"].isna().tolist() == [True, False, True]
    # the same name twice, a missing file, a bad table: a clear error, nothing written
    for argv, message in (
        (["--spots", str(csv), "--spots", str(csv)], "names an object twice"),
        (["--spots", str(tmp_path / "none.csv")], "no such file"),
    ):
        assert main(["convert", str(IMARIS95), str(tmp_path / "x.ims"), "--quiet", *argv]) != 0
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.ims").exists()


def test_cli_spots_with_their_edges(tmp_path: Path) -> None:
    from ims_store.fronts.cli import main

    spots, edges = tmp_path / "s.csv", tmp_path / "e.csv"
    spots.write_text("id,t,x,y,z,radius,track_id\n0,0,1,1,1,1,5\n1,1,2,1,1,1,5\n2,1,3,1,1,1,5\n")
    edges.write_text("track_id,spot_a,spot_b\n5,0,1\n5,0,2\n")
    out = tmp_path / "out.ims"
    image = write_ims([IMARIS95, IMARIS95], tmp_path / "two_times.ims", join="time")
    argv = ["convert", str(image), str(out), "--quiet", "--spots", f"{spots}:S"]
    assert main([*argv, "--spot-edges", f"{edges}:Other"]) != 0  # edges of an object not given
    assert main([*argv]) != 0  # a branching track without its edges
    assert not out.exists()
    assert main([*argv, "--spot-edges", f"{edges}:S"]) == 0
    assert read_track_edges(out, "S").values.tolist() == [[5, 0, 1], [5, 0, 2]]


@pytest.mark.parametrize(("pairs", "message"), [([(1, 2)], "at one time point"), ([(1, 3), (3, 1)], "twice")])
def test_edges_imaris_would_not_write_are_refused(tmp_path: Path, pairs, message: str) -> None:
    table = pd.DataFrame(
        {"id": [1, 2, 3], "t": [0, 0, 1], "x": [1.0] * 3, "y": [1.0] * 3, "z": [1.0] * 3, "radius": [1.0] * 3,
         "track_id": [7, 7, 7]}
    )  # fmt: skip
    edges = pd.DataFrame([(7, a, b) for a, b in pairs], columns=["track_id", "spot_a", "spot_b"])
    with pytest.raises(SourceError, match=message):
        write_ims(np.zeros((2, 1, 4, 4), np.uint8), tmp_path / "e.ims", axes="tzyx", spots={"S": (table, edges)})
    assert not (tmp_path / "e.ims").exists()
