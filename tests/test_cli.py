"""The ims-store command line, run through its entry point."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from ims_store.fronts.cli import _parser, main


def test_info_text(real_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(real_files["PyramidalCell.ims"])]) == 0
    out = capsys.readouterr().out
    assert "255 x 254 x 69 voxels (x, y, z), 1 time point(s), 1 channel(s)" in out
    assert "0: 255 x 254 x 69  stored 256 x 256 x 80  chunks 256 x 256 x 16" in out
    assert "1: 127 x 127 x 34  stored 128 x 128 x 64  chunks 128 x 128 x 64" in out
    assert "gzip level 2" in out and "uint8" in out and "um (micrometer)" in out
    assert "#FFFF00" in out and "display 0..220" in out


def test_info_json(synthetic_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json", str(synthetic_files["uint32-shuffle-lz4"])]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["dtype"] == "uint32"
    assert doc["shape_tczyx"] == [2, 2, 9, 66, 40]
    assert doc["levels"][0]["compression"] == "shuffle + LZ4"
    assert doc["levels"][0]["chunks"] == [4, 32, 32]
    assert [c["name"] for c in doc["channels"]] == ["Channel 0", "Channel 1"]
    assert len(doc["timepoints"]) == 2 and doc["time_step_seconds"] == pytest.approx(1.5)
    assert doc["levels"][0]["voxel_size"] == [1.0, 0.25, 0.25]
    assert doc["levels"][0]["origin"] == [0.5, 0.125, 0.125]


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing.ims", "no such file"), ("text.ims", "not an HDF5 file")],
)
def test_info_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, message: str) -> None:
    path = tmp_path / name
    if name == "text.ims":
        path.write_text("just text\n" * 10)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(path) in err and "Traceback" not in err


def test_demo_through_console_script(tmp_path: Path) -> None:
    out_file = tmp_path / "demo.ims"
    result = subprocess.run(
        [sys.executable, "-m", "ims_store.fronts.cli", "demo", "--output", str(out_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "OME-NGFF 0.5 multiscale image" in out
    assert "├── 0  shape (2, 3, 32, 256, 256)  uint16" in out
    assert "└── 1  shape (2, 3, 16, 128, 128)  uint16" in out
    for label in ("DAPI", "GFP", "mCherry"):
        assert label in out
    assert "equal to h5py's read of the same voxels: True" in out
    assert out_file.exists()


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_help_on_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _subcommands()
    assert set(commands) >= {"info", "convert", "serve", "validate", "refs", "demo"}
    for args in (["--help"], *([name, "--help"] for name in commands)):
        with pytest.raises(SystemExit) as code:
            main(args)
        assert code.value.code == 0, args
        out = capsys.readouterr().out
        assert out.startswith(f"usage: ims-store {args[0] if len(args) == 2 else ''}".rstrip()), args
    for name, parser in commands.items():
        with pytest.raises(SystemExit):
            main([name, "--help"])
        out = "".join(capsys.readouterr().out.split())  # argparse re-wraps (even at hyphens)
        assert "".join(parser.description.split()) in out, name


def test_console_script(real_files: dict[str, Path]) -> None:
    """The installed ``ims-store`` entry point itself, in a fresh process."""
    script = shutil.which("ims-store", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    assert script is not None, "the ims-store console script is not installed"
    path = real_files["PtK2Cell.ims"]
    result = subprocess.run([script, "info", "--json", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    with h5py.File(path, "r") as f:
        info = f["DataSetInfo"]
        names = [_text(info[f"Channel {c}"], "Name") for c in range(4)]
        size = [int(_text(info["Image"], axis)) for axis in "ZYX"]
    assert [c["name"] for c in doc["channels"]] == names
    assert doc["shape_tczyx"] == [1, 4, *size]


def _text(group: h5py.Group, name: str) -> str:
    """An Imaris text attribute (a char array), read with h5py."""
    return b"".join(group.attrs[name]).decode()


def test_convert_round_trips_through_the_cli(tmp_path: Path, real_files: dict[str, Path]) -> None:
    import nibabel as nib
    import numpy as np
    import zarr
    from helpers import h5py_level

    src = real_files["PyramidalCell.ims"]
    for ngff in ("0.5", "0.4"):
        out = tmp_path / f"cell-{ngff}.ome.zarr"
        assert main(["convert", str(src), str(out), "--ngff", ngff, "--quiet"]) == 0
        back = tmp_path / f"back-{ngff}.ims"
        assert main(["convert", str(out), str(back), "--quiet"]) == 0
        np.testing.assert_array_equal(h5py_level(back, 0, 0, 0), h5py_level(src, 0, 0, 0))
        assert main(["validate", str(back)]) == 0
        root = zarr.open_group(str(out), mode="r")
        np.testing.assert_array_equal(root["1"][0, 0], h5py_level(src, 1, 0, 0))
    nii = tmp_path / "cell.nii.gz"
    assert main(["convert", str(src), str(nii), "--level", "1", "--quiet"]) == 0
    image = nib.load(nii)
    np.testing.assert_array_equal(np.asarray(image.dataobj).transpose(2, 1, 0), h5py_level(src, 1, 0, 0))
    np.testing.assert_allclose(
        image.header.get_zooms(), [(57.841 + 0.114) / 127, (57.8398 + 0.114) / 127, (20.631 + 0.151) / 34], rtol=1e-6
    )
    back = tmp_path / "from-nifti.ims"
    assert main(["convert", str(nii), str(back), "--quiet"]) == 0
    from ims_store import read_layout

    lay, orig = read_layout(back), read_layout(src)
    np.testing.assert_array_equal(h5py_level(back, 0, 0, 0), h5py_level(src, 1, 0, 0))
    np.testing.assert_allclose(lay.levels[0].voxel_size, orig.levels[1].voxel_size, rtol=1e-6)
    np.testing.assert_allclose(lay.extent_min, orig.extent_min, atol=1e-6)


def test_convert_refuses_unknown_directions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]) == 2
    assert "cannot convert" in capsys.readouterr().err


@pytest.fixture
def sound_file(tmp_path: Path) -> Path:
    import numpy as np

    from ims_store import write_ims

    data = np.random.default_rng(0).integers(0, 255, (40, 600, 500), dtype=np.uint8)
    return write_ims(data, tmp_path / "ok.ims", axes="zyx")


def test_validate_flags_a_broken_pyramid(sound_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ims_store.format.attributes import write_text

    assert main(["validate", str(sound_file)]) == 0
    assert "sound (0 error(s)" in capsys.readouterr().out
    with h5py.File(sound_file, "r+") as f:
        # the last level (2) of a 500-wide level 0 is 125 wide by Imaris' rule: claim 17
        write_text(f["DataSet/ResolutionLevel 2/TimePoint 0/Channel 0"], "ImageSizeX", "17")
    assert main(["validate", str(sound_file)]) == 1
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("error:") and "does not follow" in line]
    assert "ResolutionLevel 2" in line and "does not follow from level 1" in line and "17)" in line
    # the level's histogram, made for the true width, no longer counts the claimed voxels either
    (hist,) = [line for line in out.splitlines() if line.startswith("error:") and "Histogram" in line]
    assert "ResolutionLevel 2" in hist
    assert "not sound (2 error(s)" in out


def test_validate_lists_every_problem(sound_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    with h5py.File(sound_file, "r+") as f:
        del f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Histogram"]
        f["DataSetInfo/Image"].attrs["Unit"] = np.array([b"u", b"m"], dtype="S1")  # NULLPAD
    assert main(["validate", str(sound_file)]) == 1
    out = capsys.readouterr().out
    assert "not sound" in out and "no Histogram" in out and "NULLPAD" in out
    assert main(["validate", str(sound_file.parent / "missing.ims")]) == 1


def test_validate_checks_histograms(sound_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ims_store.format.attributes import write_text

    with h5py.File(sound_file, "r+") as f:
        group = f["DataSet/ResolutionLevel 1/TimePoint 0/Channel 0"]
        group["Histogram"][...] = 0  # written, but counting nothing
        write_text(group, "HistogramMin", "300")
        write_text(group, "HistogramMax", "20")
    assert main(["validate", str(sound_file)]) == 1
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("ResolutionLevel 1" in line for line in errors)
    assert any("counts 0 voxels" in line for line in errors)
    assert any("HistogramMin 300.0 is above HistogramMax 20.0" in line for line in errors)


def test_validate_strict_counts_warnings(sound_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with h5py.File(sound_file, "r+") as f:
        del f["Thumbnail"]  # a warning only: Imaris opens the file, without a preview
    assert main(["validate", str(sound_file)]) == 0
    out = capsys.readouterr().out
    assert "warning: /Thumbnail/Data" in out and ": sound (0 error(s), 1 warning(s))" in out
    assert main(["validate", "--strict", str(sound_file)]) == 1
    assert ": not sound (0 error(s), 1 warning(s))" in capsys.readouterr().out


def test_validate_passes_the_real_files(real_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(real_file)]) == 0, capsys.readouterr().out
    assert f"{real_file}: sound (0 error(s)" in capsys.readouterr().out


def test_validate_deep_decodes_every_chunk(sound_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with h5py.File(sound_file, "r+") as f:
        data = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"]
        mask, stored = data.id.read_direct_chunk((0, 0, 0))
        # same length, garbage bytes: the structure stays sound, only decoding notices
        data.id.write_direct_chunk((0, 0, 0), bytes(len(stored)), filter_mask=mask)
    assert main(["validate", str(sound_file)]) == 0
    capsys.readouterr()
    assert main(["validate", "--deep", str(sound_file)]) == 1
    out = capsys.readouterr().out
    assert "not sound (1 error(s)" in out and "ResolutionLevel 0" in out
