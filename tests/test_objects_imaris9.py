"""Statistics of every Scene8 object group and the per-surface summary of Imaris 9+ surfaces
(``MegaSurfaces``), against tables joined here from the raw datasets with h5py and against the
specs the files were built from; the real Imaris 9.5 file included."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from corpus import dendrites
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ims_store import (
    ImsWarning,
    SelectionError,
    export_objects,
    list_objects,
    read_statistics,
    read_surface_summary,
    read_surfaces,
)
from ims_store.fronts.cli import main
from ims_store.fronts.napari_objects import object_layers
from ims_store.write.examples import (
    OtherSpec,
    cells_spots,
    image,
    nuclei_megasurfaces,
    nuclei_surfaces,
    write_scene,
    write_scene8,
)

REAL = "PyramidalCell_Imaris95.ims"
S8 = "Scene8/Content/MegaSurfaces0"


def _text(value: bytes) -> str:
    return value.decode()


def raw_statistics(path: Path, group: str) -> list[tuple]:
    """The group's statistics joined from its raw tables: (name, unit, category, factors as
    sorted pairs, object id or None, time index or None, value), in StatisticsValue's order."""
    with h5py.File(path, "r") as f:
        g = f[group]
        values, types = g["StatisticsValue"][()], g["StatisticsType"][()]
        categories = {int(r["ID"]): _text(r["Name"]) for r in g["Category"][()]}
        factors: dict[int, list[tuple[str, str]]] = {}
        for r in g["Factor"][()]:
            factors.setdefault(int(r["ID_List"]), []).append((_text(r["Name"]), _text(r["Level"])))
    by_type = {
        int(r["ID"]): (
            _text(r["Name"]),
            _text(r["Unit"]),
            categories[int(r["ID_Category"])],
            tuple(sorted(factors.get(int(r["ID_FactorList"]), []))),
        )
        for r in types
    }
    return [
        (
            *by_type[int(v["ID_StatisticsType"])],
            None if v["ID_Object"] == -1 else int(v["ID_Object"]),
            None if v["ID_Time"] == -1 else int(v["ID_Time"]),
            float(v["Value"]),
        )
        for v in values
    ]


def rows_of(frame: pd.DataFrame) -> list[tuple]:
    return [
        (
            r.name,
            r.unit,
            r.category,
            tuple(sorted(r.factors.items())),
            None if pd.isna(r.object_id) else int(r.object_id),
            None if pd.isna(r.t) else int(r.t),
            float(r.value),
        )
        for r in frame.itertuples(index=False)
    ]


def spec_statistics(stats: list[tuple]) -> list[tuple]:
    """A spec's statistics as `rows_of` gives them, in the order the file holds them (by time)."""
    ordered = sorted(stats, key=lambda s: s[5])
    return [
        (n, u, c, tuple(sorted(fs.items())), None if o == -1 else o, None if t == -1 else t, v)
        for n, u, c, fs, o, t, v in ordered
    ]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Spots, Imaris 9+ surfaces and filaments with statistics, and a Cells group with statistics."""
    path = image(tmp_path_factory.mktemp("imaris9") / "scene.ims", timepoints=3)
    cells = OtherSpec(
        "Cells0",
        "Cell bodies",
        stats=[
            ("Cell Volume", "um^3", "Cell", {}, 3, 1, 40.0),
            ("Nucleus Volume", "um^3", "Nucleus", {"Channel": "2"}, 9, 1, 12.0),
            ("Total Number of Cells", "", "Overall", {}, -1, -1, 1.0),
        ],
    )
    return write_scene8(path, [cells_spots(), nuclei_megasurfaces(), dendrites(), cells])


def test_list_objects_describes_every_group(scene: Path) -> None:
    spec = nuclei_megasurfaces()
    by_name = {o.name: o for o in list_objects(scene)}
    assert list(by_name) == ["Cells", "Nuclei", "Cell bodies", "Dendrites"]
    nuclei = by_name["Nuclei"]
    assert (nuclei.kind, nuclei.count, nuclei.timepoints, nuclei.statistics) == ("surfaces", 2, (0, 1), 5)
    assert nuclei.triangles == sum(spec.info["NumberOfTriangles"]) and nuclei.vertices is None
    assert nuclei.contents == ("summary", "statistics") and not nuclei.readable
    assert "MegaSurfaces" in nuclei.reason and "not read" in nuclei.reason
    for name, kind, count in (("Dendrites", "filaments", 2), ("Cell bodies", "cells", 3)):
        o = by_name[name]
        assert (o.kind, o.count, o.statistics, o.contents, o.readable) == (kind, None, count, ("statistics",), False)
        assert "statistics are read" in o.reason
    assert by_name["Cells"].contents == ("spots", "tracks", "statistics")


def test_statistics_of_every_group_equal_the_raw_tables(scene: Path) -> None:
    specs = {"Points0": cells_spots().stats, "MegaSurfaces0": nuclei_megasurfaces().stats}
    specs |= {"Filaments0": dendrites().stats}
    for group, name in (("Points0", "Cells"), ("MegaSurfaces0", "Nuclei"), ("Filaments0", "Dendrites")):
        raw = raw_statistics(scene, f"Scene8/Content/{group}")
        assert rows_of(read_statistics(scene, name)) == raw == spec_statistics(specs[group])
        assert rows_of(read_statistics(scene, group)) == raw  # by group name as well
    cells = read_statistics(scene, "Cell bodies")
    assert rows_of(cells) == raw_statistics(scene, "Scene8/Content/Cells0")
    assert cells["category"].tolist() == ["Overall", "Cell", "Nucleus"]
    assert cells["factors"].tolist()[2] == {"Channel": "2"}
    assert str(cells["object_id"].dtype) == "Int64" and cells["object_id"].isna().tolist() == [True, False, False]


def test_summary_equals_the_spec_and_the_raw_tables(scene: Path) -> None:
    spec = nuclei_megasurfaces()
    summary = read_surface_summary(scene, "Nuclei")
    assert summary.columns.tolist()[:5] == ["id", "t", "volume", "area", "sphericity"]
    assert summary["id"].tolist() == spec.ids and summary["t"].tolist() == spec.t
    for column, key in (("volume", "Volume"), ("area", "Area"), ("x", "PositionX"), ("triangles", "NumberOfTriangles")):
        assert summary[column].tolist() == spec.info[key]
    assert summary["parts"].tolist() == spec.info["NumberOfSplittedSurfaceParts"]
    assert summary["center_of_mass_x"].tolist() == spec.info["CenterOfMassX"]
    np.testing.assert_array_equal(summary[["min_x", "min_y", "min_z"]].to_numpy(), spec.extend_min)
    np.testing.assert_array_equal(summary[["max_x", "max_y", "max_z"]].to_numpy(), spec.extend_max)
    assert read_surface_summary(scene).equals(summary)  # the first surfaces object with a summary


def test_meshes_of_megasurfaces_are_refused_with_the_reason(scene: Path) -> None:
    with pytest.raises(SelectionError, match=r"meshes of surfaces object 'Nuclei' are not readable.*MegaSurfaces"):
        read_surfaces(scene, "Nuclei")
    with pytest.raises(
        SelectionError, match="no surfaces object named 'Dendrites'; the file's surfaces objects: 'Nuclei'"
    ):
        read_surface_summary(scene, "Dendrites")


def test_a_name_objects_of_two_kinds_share_is_refused(tmp_path: Path) -> None:
    path = image(tmp_path / "shared.ims", timepoints=3)
    write_scene8(path, [cells_spots(), OtherSpec("Cells0", "Cells", stats=dendrites().stats)])
    with pytest.raises(SelectionError, match=r"several objects are named 'Cells'.*Points0.*Cells0"):
        read_statistics(path, "Cells")
    assert rows_of(read_statistics(path, "Cells0")) == raw_statistics(path, "Scene8/Content/Cells0")
    assert len(read_statistics(path)) == len(cells_spots().stats)  # the first object with statistics


def test_the_export_and_the_command_line_include_them(scene: Path, tmp_path: Path, capsys) -> None:
    written, skipped = export_objects(scene, tmp_path / "out", fmt="csv")
    names = sorted(p.name for p in written)
    assert skipped == ["Nuclei", "Cell bodies", "Dendrites"]
    assert {"Nuclei.surfaces.csv", "Nuclei.statistics.csv", "Dendrites.statistics.csv"} <= set(names)
    assert "Cell_bodies.statistics.csv" in names and not any(n.endswith(".ply") for n in names)
    table = pd.read_csv(tmp_path / "out" / "Nuclei.surfaces.csv")
    assert table["id"].tolist() == [7, 8] and table["volume"].tolist() == [2.5, 1.25]
    stats = pd.read_csv(tmp_path / "out" / "Dendrites.statistics.csv", keep_default_na=False)
    assert stats["name"].tolist() == ["Total Number of Filaments", "Dendrite Length"]
    assert [json.loads(f) for f in stats["factors"]] == [{}, {}]

    assert main(["objects", str(scene)]) == 0
    out = capsys.readouterr().out
    assert "surfaces  'Nuclei'  2 surface(s) over 2 time point(s), 184 triangles (Imaris' count)" in out
    assert "5 statistics values, geometry not read: the meshes of Imaris 9+ MegaSurfaces" in out
    assert "filaments 'Dendrites'  2 statistics values, geometry not read" in out
    assert main(["objects", "--json", str(scene)]) == 0
    doc = {o["name"]: o for o in json.loads(capsys.readouterr().out)}
    assert doc["Nuclei"]["contents"] == ["summary", "statistics"] and doc["Nuclei"]["count"] == 2
    assert main(["objects", str(scene), "--export", str(tmp_path / "cli"), "--quiet"]) == 0
    assert "left out the geometry of 'Nuclei'" in capsys.readouterr().out


def test_napari_names_the_objects_it_shows_no_layer_for(scene: Path) -> None:
    with pytest.warns(ImsWarning) as caught:
        layers = object_layers(scene)
    assert [meta["name"] for _, meta, _ in layers] == ["Cells", "Cells tracks"]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3 and all(str(scene) in m for m in messages)
    assert "surfaces object 'Nuclei' is not shown: the meshes of Imaris 9+ MegaSurfaces" in messages[0]
    assert "(ims_store reads its summary and statistics)" in messages[0]
    assert "filaments object 'Dendrites' is not shown" in messages[2]


def test_both_layouts_join_meshes_and_statistics(tmp_path: Path) -> None:
    """Scene8 surfaces (statistics, summary) and the same object's old-layout meshes: one object."""
    path = image(tmp_path / "both.ims", timepoints=3)
    nuclei = nuclei_megasurfaces()
    write_scene8(path, [nuclei])
    write_scene(path, [nuclei_surfaces()])
    (entry,) = list_objects(path)
    assert (entry.layout, entry.readable, entry.statistics) == ("Scene", True, 5)
    assert entry.contents == ("meshes", "summary", "statistics")
    assert [s.t for s in read_surfaces(path, "Nuclei")] == [0, 1]
    assert rows_of(read_statistics(path, "Nuclei")) == raw_statistics(path, S8)
    assert read_surface_summary(path, "Nuclei")["id"].tolist() == nuclei.ids


def test_the_placeholder_imaris_95_leaves_in_scene_is_the_same_object(tmp_path: Path) -> None:
    """Imaris 9.5 writes /Scene/Content/MegaSurfaces0 with only an Id (no Name, no datasets)."""
    path = image(tmp_path / "placeholder.ims", timepoints=3)
    write_scene8(path, [nuclei_megasurfaces()])
    with h5py.File(path, "r+") as f:
        f[S8].attrs["Id"] = np.uint64(700001)
        f.create_group("Scene/Content/MegaSurfaces0").attrs["Id"] = np.uint64(700001)
    assert [(o.name, o.layout) for o in list_objects(path)] == [("Nuclei", "Scene8")]
    with h5py.File(path, "r+") as f:
        f["Scene/Content/MegaSurfaces0"].attrs["Id"] = np.uint64(700002)  # another object
    assert [(o.name, o.layout) for o in list_objects(path)] == [("Nuclei", "Scene8"), ("MegaSurfaces0", "Scene")]


# -- an empty mesh, as writers store empty arrays ----------------------------------------------


@pytest.mark.parametrize("empty", ["(0, k)", "(0,)", "no dataspace"])
def test_a_surfaces_block_with_no_vertices_reads_as_an_empty_mesh(tmp_path: Path, empty: str) -> None:
    path = image(tmp_path / "empty.ims", timepoints=2)
    write_scene(path, [nuclei_surfaces()])
    with h5py.File(path, "r+") as f:
        g = f["Scene/Content/Surfaces0"]
        for name, dtype in (("Vertices", "f4"), ("Triangles", "u8")):
            del g[name]
            columns = 6 if name == "Vertices" else 3
            if empty == "(0, k)":
                g.create_dataset(name, shape=(0, columns), dtype=dtype)
            elif empty == "(0,)":
                g.create_dataset(name, shape=(0,), dtype=dtype)
            else:
                g.create_dataset(name, data=h5py.Empty(dtype))
        del g["TimeNVerticesNTriangles"]
        g["TimeNVerticesNTriangles"] = np.array([[1, 0, 0]], np.uint64)
    (info,) = list_objects(path)
    assert (info.count, info.timepoints, info.vertices, info.triangles) == (1, (1,), 0, 0)
    (mesh,) = read_surfaces(path)
    assert (mesh.t, mesh.vertices.shape, mesh.normals.shape, mesh.triangles.shape) == (1, (0, 3), (0, 3), (0, 3))


# -- the real Imaris 9.5 file ------------------------------------------------------------------


@pytest.mark.real_file(REAL)
def test_the_real_files_objects_are_listed(real_files: dict[str, Path]) -> None:
    path = real_files[REAL]
    with h5py.File(path, "r") as f:
        model, info = f[f"{S8}/SurfaceModel"][()], f[f"{S8}/SurfaceModelInfo"][()]
        values = len(f[f"{S8}/StatisticsValue"])
        spot_values = len(f["Scene8/Content/Points0/StatisticsValue"])
    spots, surfaces = list_objects(path)  # the bare Scene/Content/MegaSurfaces0 is the same object
    assert (spots.name, spots.statistics) == ("Spots 1", spot_values)
    assert (surfaces.name, surfaces.kind, surfaces.count, surfaces.statistics) == (
        "Surfaces 1",
        "surfaces",
        len(model),
        values,
    )
    assert surfaces.timepoints == tuple(np.unique(model["ID_Time"]).tolist())
    assert surfaces.triangles == int(info["NumberOfTriangles"].sum()) == 147332


@pytest.mark.real_file(REAL)
def test_the_real_files_statistics_equal_its_raw_tables(real_files: dict[str, Path]) -> None:
    path = real_files[REAL]
    for group, name in ((S8, "Surfaces 1"), ("Scene8/Content/Points0", "Spots 1")):
        raw = raw_statistics(path, group)
        assert rows_of(read_statistics(path, name)) == raw
    stats = read_statistics(path, "Surfaces 1")
    assert len(stats) == 1542 and set(stats["category"]) == {"Surface", "Overall"}
    intensity = stats[(stats["name"] == "Intensity Mean")]
    assert intensity["factors"].map(lambda f: f == {"Channel": "1", "Image": "Image 1"}).all()


@pytest.mark.real_file(REAL)
def test_the_real_files_summary_equals_its_raw_tables(real_files: dict[str, Path]) -> None:
    path = real_files[REAL]
    with h5py.File(path, "r") as f:
        model, info = f[f"{S8}/SurfaceModel"][()], f[f"{S8}/SurfaceModelInfo"][()]
    summary = read_surface_summary(path, "Surfaces 1")
    pairs = {
        "id": model["ID"],
        "t": model["ID_Time"],
        "volume": info["Volume"],
        "area": info["Area"],
        "sphericity": info["Sphericity"],
        "x": info["PositionX"],
        "y": info["PositionY"],
        "z": info["PositionZ"],
        "center_of_mass_x": info["CenterOfMassX"],
        "min_x": model["ExtendMinX"],
        "max_z": model["ExtendMaxZ"],
        "triangles": info["NumberOfTriangles"],
        "parts": info["NumberOfSplittedSurfaceParts"],
    }
    assert len(summary) == 32
    for column, raw in pairs.items():
        np.testing.assert_array_equal(summary[column].to_numpy(), raw, err_msg=column)
        assert summary[column].dtype == raw.dtype.newbyteorder("="), column
    # the summary's rows are the surfaces the statistics name: Imaris' own Area per surface id
    stats = read_statistics(path, "Surfaces 1")
    area = stats[stats["name"] == "Area"].set_index("object_id")["value"]
    np.testing.assert_allclose(area.loc[summary["id"]].to_numpy(), summary["area"], rtol=1e-6)


@pytest.mark.real_file(REAL)
def test_the_real_files_surfaces_in_napari_are_named(real_files: dict[str, Path], tmp_path: Path) -> None:
    path = shutil.copy(real_files[REAL], tmp_path / REAL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layers = object_layers(path)
    # the Imaris 9+ surfaces as one Surface layer of every surface's mesh (Imaris' 147,332 triangles)
    assert [(meta["name"], kind) for _, meta, kind in layers] == [("Spots 1", "points"), ("Surfaces 1", "surface")]
    assert len(layers[1][0][1]) == 147_332
    assert not any("is not shown" in str(w.message) for w in caught)


# -- any statistics ------------------------------------------------------------------------------

_STATISTIC = st.tuples(
    st.sampled_from(["Volume", "Area", "Intensity Mean", "Total Number of Surfaces"]),
    st.sampled_from(["", "um^3", "um^2"]),
    st.sampled_from(["Surface", "Overall", "Track"]),
    st.dictionaries(
        st.sampled_from(["Channel", "Image", "Collection"]), st.sampled_from(["1", "2", "Position"]), max_size=2
    ),
    st.sampled_from([-1, 7, 8]),
    st.sampled_from([-1, 0, 1]),
    st.floats(-1e6, 1e6, allow_nan=False),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stats=st.lists(_STATISTIC, max_size=12))
def test_any_statistics_of_surfaces_read_back(stats: list[tuple], tmp_path_factory: pytest.TempPathFactory) -> None:
    """Random values (overall or per surface, with or without a time point and factors) join
    to what the raw tables say and to the spec the file was written from."""
    path = image(tmp_path_factory.mktemp("any-statistics") / "s.ims", timepoints=3)
    spec = nuclei_megasurfaces()
    spec.stats = stats
    write_scene8(path, [spec])
    if not stats:  # the writer then writes no statistics tables
        with pytest.raises(
            SelectionError, match="statistics of surfaces object 'Nuclei' are not readable: its group holds no"
        ):
            read_statistics(path, "Nuclei")
        assert list_objects(path)[0].contents == ("summary",)
        return
    got = rows_of(read_statistics(path, "Nuclei"))
    assert got == raw_statistics(path, S8) == spec_statistics(stats)
    assert list_objects(path)[0].statistics == len(stats)
