"""Analysis objects written out (CSV, Parquet, PLY) and on the command line (objects, info)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import meshio
import numpy as np
import pandas as pd
import pytest

from ims_store import DestinationExistsError
from ims_store.fronts.cli import main
from ims_store.objects import (
    export_objects,
    read_spots,
    read_statistics,
    read_surfaces,
    read_track_edges,
    read_tracks,
    write_ply,
)
from ims_store.write.examples import (
    OtherSpec,
    cells_spots,
    image,
    nuclei_surfaces,
    untracked_spots,
    write_scene,
    write_scene8,
)


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both layouts: spots (tracked, untracked) read from Scene8, surfaces from Scene."""
    path = image(tmp_path_factory.mktemp("export") / "both.ims", timepoints=3)
    specs = [cells_spots(), untracked_spots(), nuclei_surfaces(), OtherSpec("Filaments0", "Dendrites")]
    return write_scene(write_scene8(path, specs), specs)


def _mesh_equal(path: Path, vertices: np.ndarray, normals: np.ndarray, triangles: np.ndarray) -> None:
    """meshio's read of a PLY file against the arrays written."""
    mesh = meshio.read(path)
    np.testing.assert_array_equal(mesh.points, vertices)
    np.testing.assert_array_equal(np.stack([mesh.point_data[f"n{a}"] for a in "xyz"], axis=1), normals)
    (cells,) = [c for c in mesh.cells if c.type == "triangle"] or [None]
    np.testing.assert_array_equal(cells.data if cells is not None else np.zeros((0, 3)), triangles)


@pytest.mark.real_file("PyramidalCell.ims")
def test_pyramidal_cell_surface_round_trips_through_ply(real_files: dict[str, Path], tmp_path: Path) -> None:
    path = real_files["PyramidalCell.ims"]
    (surface,) = read_surfaces(path)
    write_ply(surface, tmp_path / "cell.ply", comment="Surfaces 1")
    with h5py.File(path, "r") as f:  # ground truth: h5py's read of the file itself
        vertices = f["Scene/Content/Surfaces0/Vertices"][()]
        triangles = f["Scene/Content/Surfaces0/Triangles"][()]
    _mesh_equal(tmp_path / "cell.ply", vertices[:, :3], vertices[:, 3:], triangles)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trips(scene_file: Path, tmp_path: Path, fmt: str) -> None:
    written, skipped = export_objects(scene_file, tmp_path / "out", fmt=fmt)
    assert skipped == ["Dendrites"]
    names = sorted(p.name for p in written)
    tables = [
        f"{o}.{t}.{fmt}" for o in ("Cells", "Untracked") for t in ("spots", "statistics", "track_edges", "tracks")
    ]
    assert names == sorted([*tables, "Nuclei.t0.ply", "Nuclei.t1.ply"])

    def load(name: str) -> pd.DataFrame:
        target = tmp_path / "out" / f"{name}.{fmt}"
        if fmt == "parquet":
            return pd.read_parquet(target)
        dtypes = {"track_id": "Int64", "object_id": "Int64", "t": "Int64"}
        return pd.read_csv(target, dtype=dtypes, keep_default_na=False, na_values={c: [""] for c in dtypes})

    for name in ("Cells", "Untracked"):
        for what, reader in (("spots", read_spots), ("tracks", read_tracks), ("track_edges", read_track_edges)):
            pd.testing.assert_frame_equal(load(f"{name}.{what}"), reader(scene_file, name), check_dtype=False)
        stats = read_statistics(scene_file, name)
        back = load(f"{name}.statistics")
        assert [json.loads(v) for v in back["factors"]] == stats["factors"].tolist()
        pd.testing.assert_frame_equal(back.drop(columns="factors"), stats.drop(columns="factors"), check_dtype=False)
    for surface in read_surfaces(scene_file):
        _mesh_equal(tmp_path / "out" / f"Nuclei.t{surface.t}.ply", surface.vertices, surface.normals, surface.triangles)


def test_export_replaces_files_only_when_asked(scene_file: Path, tmp_path: Path) -> None:
    export_objects(scene_file, tmp_path, fmt="csv")
    before = (tmp_path / "Cells.spots.csv").read_bytes()
    with pytest.raises(DestinationExistsError):
        export_objects(scene_file, tmp_path, fmt="csv")
    written, _ = export_objects(scene_file, tmp_path, fmt="csv", overwrite=True)
    assert (tmp_path / "Cells.spots.csv").read_bytes() == before and len(written) == 10
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_objects_command_lists_and_exports(
    scene_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["objects", str(scene_file)]) == 0
    out = capsys.readouterr().out
    assert "spots     'Cells'  5 spots over 2 time point(s), tracked, 12 statistics values" in out
    assert "spots     'Untracked'  3 spots over 2 time point(s), no tracks" in out
    assert "surfaces  'Nuclei'  2 mesh(es) over 2 time point(s), 12 vertices, 12 triangles" in out
    assert "filaments 'Dendrites'  geometry not read:" in out

    assert main(["objects", "--json", str(scene_file)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(o["name"], o["kind"], o["count"], o["layout"]) for o in doc] == [
        ("Cells", "spots", 5, "Scene8"),
        ("Untracked", "spots", 3, "Scene8"),
        ("Nuclei", "surfaces", 2, "Scene"),
        ("Dendrites", "filaments", None, "Scene8"),
    ]
    assert doc[0]["color"] == "#FF8000" and doc[0]["timepoints"] == [0, 1] and doc[0]["has_tracks"]

    assert main(["objects", str(scene_file), "--export", str(tmp_path / "x"), "--format", "csv", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "left out the geometry of 'Dendrites'" in out and "wrote 10 file(s)" in out
    assert main(["objects", str(scene_file), "--export", str(tmp_path / "x"), "--format", "csv"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["objects", str(scene_file), "--export", str(tmp_path / "x"), "--overwrite", "--quiet"]) == 0


def test_info_lists_the_objects(scene_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(scene_file)]) == 0
    out = capsys.readouterr().out
    assert "analysis objects: 4" in out and "'Cells'  5 spots" in out
    assert main(["info", "--json", str(scene_file)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [o["name"] for o in doc["objects"]] == ["Cells", "Untracked", "Nuclei", "Dendrites"]
    assert doc["objects"][0]["statistics"] == 12


def test_info_without_objects(real_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(real_files["PtK2Cell.ims"])]) == 0
    assert "analysis objects: none" in capsys.readouterr().out
    assert main(["info", "--json", str(real_files["PtK2Cell.ims"])]) == 0
    assert json.loads(capsys.readouterr().out)["objects"] == []


def test_damaged_objects_keep_info_describing_the_image(
    scene_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "damaged.ims"
    shutil.copyfile(scene_file, path)
    with h5py.File(path, "r+") as f:
        del f["Scene8/Content/Points0/Spot"]
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "40 x 32 x 8 voxels" in out
    assert "analysis objects: unreadable:" in out and "/Scene8/Content/Points0: no Spot dataset" in out
    assert main(["info", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["objects"] is None and "no Spot dataset" in doc["objects_error"]
    assert main(["objects", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ims-store objects: error: {path}: /Scene8/Content/Points0: no Spot dataset"


def test_export_names_files_safely_and_uniquely(tmp_path: Path) -> None:
    path = image(tmp_path / "names.ims", timepoints=3)
    first, second = untracked_spots(), untracked_spots()
    first.name = second.name = "Spots 1/ünïcode"
    write_scene8(path, [first, second])
    written, _ = export_objects(path, tmp_path / "out", fmt="csv")
    stems = sorted({p.name.split(".")[0] for p in written})
    assert stems == ["Spots_1_n_code", "Spots_1_n_code-2"]
    for stem, name in zip(stems, ["Spots 1/ünïcode", "Points1"], strict=True):
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "out" / f"{stem}.spots.csv", dtype={"track_id": "Int64"}),
            read_spots(path, name),
            check_dtype=False,
        )
