"""What a user types that an Imaris file cannot hold, and selections with no voxels: refused with
an error naming the argument (or selection) before anything is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from ims_store import SelectionError, SourceError, to_nifti, to_ome_zarr, write_ims
from ims_store.write import writer
from ims_store.write.synthetic import make_example_ims

ALPHA = "\N{GREEK SMALL LETTER ALPHA}"


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_example_ims(tmp_path_factory.mktemp("text") / "cells.ims", shape=(8, 32, 24), channels=2, timepoints=1)


@pytest.fixture
def nothing_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the writer starts writing voxels (the refusal must come first)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the writer started writing")

    monkeypatch.setattr(writer, "_write", refuse)


@pytest.mark.parametrize(
    ("name", "options", "argument", "char"),
    [
        ("cells.ims", {"channel_names": ["\N{GREEK SMALL LETTER ALPHA}-Tubulin"]}, "channel_names[0]", ALPHA),
        ("cells.ims", {"channel_names": ["DAPI", "微管"]}, "channel_names[1]", "微"),
        ("細胞.ims", {}, "the file name", "細"),
        ("cells.ims", {"unit": "мкм"}, "unit", "м"),
    ],
)
def test_text_outside_latin1_is_refused_before_writing(
    tmp_path: Path, nothing_written: None, name: str, options: dict, argument: str, char: str
) -> None:
    data = np.zeros((2, 4, 8, 8), np.uint16)
    with pytest.raises(SourceError) as caught:
        write_ims(data, tmp_path / name, axes="czyx", **options)
    message = str(caught.value)
    assert argument in message and repr(char) in message and f"U+{ord(char):04X}" in message
    assert name in message
    assert list(tmp_path.iterdir()) == []


def test_latin1_text_is_written_as_it_was_given(tmp_path: Path) -> None:
    """µ, é, ß are Latin-1: written, and read back byte for byte by h5py."""
    path = write_ims(np.zeros((4, 8, 8), np.uint8), tmp_path / "µ-café.ims", channel_names=["µ-Straße"])
    with h5py.File(path, "r") as f:
        assert f["DataSetInfo/Channel 0"].attrs["Name"].tobytes() == "µ-Straße".encode("latin-1")
        assert f["DataSetInfo/Image"].attrs["Name"].tobytes() == "µ-café".encode("latin-1")


def test_a_source_channel_name_outside_latin1_is_refused_on_the_command_line(tmp_path: Path) -> None:
    """An OME-TIFF whose channel is named in Greek: `convert` exits 2 with one line naming it."""
    import tifffile

    tiff = tmp_path / "stack.ome.tif"
    tifffile.imwrite(
        tiff, np.zeros((2, 4, 8, 8), np.uint16), metadata={"axes": "CZYX", "Channel": {"Name": [ALPHA, "b"]}}
    )
    result = subprocess.run(
        [sys.executable, "-m", "ims_store.fronts.cli", "convert", str(tiff), str(tmp_path / "out.ims"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"channel_names[0] '{ALPHA}'" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.ome.tif"]


def _crop_outside(path: Path):
    xr = pytest.importorskip("xarray")
    image = xr.open_dataarray(path, engine="ims", level=0, timepoint=0, channel=0)
    crop = image.sel(x=slice(image.x.values[-1] + 100, image.x.values[-1] + 200))
    assert crop.shape[-1] == 0
    return crop


def test_an_empty_crop_to_ome_zarr_is_a_selection_error(cells: Path, tmp_path: Path) -> None:
    with pytest.raises(SelectionError, match=r"the selection holds no voxels \(shape \(1, 1, 8, 32, 0\)\)"):
        to_ome_zarr(_crop_outside(cells), tmp_path / "empty.ome.zarr")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_crop_to_nifti_is_a_selection_error(cells: Path, tmp_path: Path) -> None:
    with pytest.raises(SelectionError, match=r"level 0, time point 0, channel 0 holds no voxels"):
        to_nifti(_crop_outside(cells), tmp_path / "empty.nii.gz")
    assert list(tmp_path.iterdir()) == []
