"""The command line's refusals: one line on stderr, exit status 2, no traceback, nothing written
or deleted that was not asked for."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import h5py
import pytest

from ims_store import MissingDependencyError, WriteError
from ims_store.access.outputs import atomic_output
from ims_store.fronts.cli import main
from ims_store.write.sources import path_kind
from ims_store.write.synthetic import make_example_ims


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_example_ims(
        tmp_path_factory.mktemp("cli-errors") / "cells.ims", shape=(8, 40, 40), channels=3, timepoints=2
    )


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("output", "options", "named"),
    [
        ("out.nii", ["--codec", "zstd"], "--codec"),
        ("out.nii.gz", ["--ngff", "0.4"], "--ngff"),
        ("out.ims", ["--codec", "copy"], "--codec"),
        ("out.ims", ["--ngff", "0.5"], "--ngff"),
        ("out.zarr", ["--timepoint", "1"], "--timepoint"),
        ("out.ome.zarr", ["--channel", "0"], "--channel"),
        ("out.ims", ["--timepoint", "all"], "--timepoint"),
        ("out.ims", ["--channel", "2"], "--channel"),
        ("out.zarr", ["--compression", "gzip"], "--compression"),
        ("out.nii", ["--compression-level", "3"], "--compression-level"),
        ("out.zarr", ["--level", "1"], "--level"),  # every level goes to OME-Zarr
        ("out.ims", ["--compression", "lz4", "--compression-level", "3"], "--compression-level"),
        ("out.ims", ["--compression", "none", "--compression-level", "0"], "--compression-level"),
    ],
)
def test_options_of_another_direction_are_refused(
    cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], output: str, options: list[str], named: str
) -> None:
    assert main(["convert", str(cells), str(tmp_path / output), *options, "--quiet"]) == 2
    err = _one_line_error(capsys)
    assert err.startswith("ims-store convert: error: ") and named in err
    assert list(tmp_path.iterdir()) == []


def test_level_of_a_nifti_input_is_refused(cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nii = tmp_path / "one.nii"
    assert main(["convert", str(cells), str(nii), "--quiet"]) == 0
    assert main(["convert", str(nii), str(tmp_path / "back.ims"), "--level", "1", "--quiet"]) == 2
    assert "--level" in _one_line_error(capsys)
    assert not (tmp_path / "back.ims").exists()


@pytest.mark.parametrize("value", ["x", "1.5", ""])
def test_timepoint_is_an_index_or_all(
    cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit) as code:
        main(["convert", str(cells), str(tmp_path / "out.nii"), "--timepoint", value])
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert "argument --timepoint" in err and "'all'" in err and "invalid literal" not in err


def test_timepoint_all_is_not_case_sensitive(cells: Path, tmp_path: Path) -> None:
    import nibabel as nib

    out = tmp_path / "all.nii"
    assert main(["convert", str(cells), str(out), "--timepoint", "ALL", "--quiet"]) == 0
    assert nib.load(out).shape == (40, 40, 8, 2)


@pytest.mark.parametrize("command", ["convert", "refs"])
def test_existing_output_asks_for_the_option(
    cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    out = tmp_path / ("out.nii" if command == "convert" else "refs.json")
    out.write_text("mine")
    args = ["convert", str(cells), str(out)] if command == "convert" else ["refs", str(cells), "-o", str(out)]
    assert main(args) == 2
    err = _one_line_error(capsys)
    assert "--overwrite" in err and "overwrite=True" not in err and str(out) in err
    assert out.read_text() == "mine"


# -- a folder is never replaced unless it is a zarr ------------------------------------------


def test_path_kind_of_outputs_comes_from_the_name(tmp_path: Path) -> None:
    plain = tmp_path / "results"
    plain.mkdir()
    assert path_kind(plain) is None and path_kind(plain, output=True) is None
    (plain / "zarr.json").write_text("{}")
    assert path_kind(plain) == "zarr"  # read as an input: it holds zarr metadata
    assert path_kind(plain, output=True) is None  # never an output without a .zarr name
    assert path_kind(tmp_path / "new.ome.zarr", output=True) == "zarr"
    assert path_kind(tmp_path / "new.OME.ZARR/", output=True) == "zarr"
    assert path_kind("s3://bucket/image", output=True) is None
    assert path_kind("s3://bucket/image") == "zarr"


def test_convert_refuses_a_plain_folder_as_output(
    cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mydir"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    assert main(["convert", str(cells), str(folder), "--overwrite", "--quiet"]) == 2
    assert "cannot convert" in _one_line_error(capsys)
    assert (folder / "notes.txt").read_text() == "precious"


def test_overwrite_spares_a_zarr_named_folder_that_is_no_zarr(
    cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "data.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    assert main(["convert", str(cells), str(folder), "--overwrite", "--quiet"]) == 2
    err = _one_line_error(capsys)
    assert str(folder) in err and "not a zarr" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.zarr"]  # no temporary left either
    assert (folder / "notes.txt").read_text() == "precious"


def test_overwrite_replaces_a_zarr(cells: Path, tmp_path: Path) -> None:
    out = tmp_path / "cells.zarr"
    assert main(["convert", str(cells), str(out), "--ngff", "0.4", "--quiet"]) == 0
    assert (out / ".zgroup").is_file()
    assert main(["convert", str(cells), str(out), "--ngff", "0.5", "--overwrite", "--quiet"]) == 0
    assert (out / "zarr.json").is_file() and not (out / ".zgroup").exists()


def test_atomic_output_refuses_to_replace_a_plain_folder(tmp_path: Path) -> None:
    folder = tmp_path / "out.ims"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    with pytest.raises(WriteError, match="not a zarr") as err, atomic_output(folder, overwrite=True) as tmp:
        tmp.write_text("new")  # pragma: no cover - never reached
    assert err.value.path == str(folder)
    assert (folder / "notes.txt").read_text() == "precious"
    empty = tmp_path / "empty.ims"
    empty.mkdir()  # nothing in it to lose: replaced like any output
    with atomic_output(empty, overwrite=True) as tmp:
        tmp.write_text("new")
    assert empty.read_text() == "new"


def test_a_zarr_folder_without_zarr_name_is_read_as_input(cells: Path, tmp_path: Path) -> None:
    from helpers import h5py_level
    from numpy.testing import assert_array_equal

    out = tmp_path / "cells.zarr"
    assert main(["convert", str(cells), str(out), "--quiet"]) == 0
    plain = out.rename(tmp_path / "exported")
    back = tmp_path / "back.ims"
    assert main(["convert", str(plain), str(back), "--quiet"]) == 0
    assert_array_equal(h5py_level(back, 0, 1, 2), h5py_level(cells, 0, 1, 2))


# -- serve that cannot listen ---------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port this test holds, so that nothing else can bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.fixture
def closed_stores(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every ImsStore closed while the test runs."""
    from ims_store.store import ImsStore

    closed: list[object] = []
    original = ImsStore.close

    def close(self: ImsStore) -> None:
        closed.append(self)
        original(self)

    monkeypatch.setattr(ImsStore, "close", close)
    return closed


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "in use"),  # errno 98, the port is held
        ("no-such-host.invalid", "not known"),  # socket.gaierror
        ("192.0.2.1", "assign"),  # TEST-NET-1: an address of no interface here (errno 99)
    ],
)
def test_serve_that_cannot_bind(
    cells: Path,
    busy_port: int,
    closed_stores: list[object],
    capsys: pytest.CaptureFixture[str],
    host: str,
    reason: str,
) -> None:
    assert main(["serve", str(cells), "--host", host, "--port", str(busy_port)]) == 2
    err = _one_line_error(capsys)
    assert f"{host}:{busy_port}" in err and reason in err
    assert capsys.readouterr().out == ""
    assert len(closed_stores) == 1
    with h5py.File(cells, "r+"):  # HDF5 refuses this while a read-only handle stays open here
        pass


# -- output to a reader that went away ------------------------------------------------------


def test_broken_pipe_is_quiet(cells: Path) -> None:
    """``ims-store info f.ims | head -0``: the reader is gone before anything is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ims_store.fronts.cli", "info", str(cells)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert result.stderr == ""


# -- optional dependencies ------------------------------------------------------------------


def test_scheduler_without_distributed_names_the_extra(
    cells: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ims_store.write.cluster import dask_client

    monkeypatch.setitem(sys.modules, "distributed", None)  # ``import distributed`` now fails
    with pytest.raises(MissingDependencyError, match=r"ims-store\[distributed\]") as err, dask_client("tcp://x:1"):
        pass  # pragma: no cover - never reached
    assert isinstance(err.value, ImportError)
    out = tmp_path / "out.zarr"
    assert main(["convert", str(cells), str(out), "--scheduler", "tcp://x:1", "--quiet"]) == 2
    assert "ims-store[distributed]" in _one_line_error(capsys)
    assert not out.exists()
