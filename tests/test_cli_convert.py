"""``ims-store convert`` in every direction on a multi-channel, multi-time-point file.

Ground truth is the source as h5py reads it (data, ExtMin / ExtMax, ImageSize, channel Name and
Color attributes) and the outputs as zarr, h5py and nibabel read them.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the LZ4 filter with h5py
import nibabel as nib
import numpy as np
import pytest
import zarr
from helpers import assert_group_matches_h5py, h5py_counts, h5py_level

from ims_store.fronts.cli import main
from ims_store.write.synthetic import make_example_ims

NAMES = ["DAPI", "GFP", "mCherry"]
COLORS = [(0.0, 0.4, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.3)]
LZ4_FILTER = 32004  # HDF5's registered id of the LZ4 filter


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 channels, 2 time points, 2 levels, several chunks per level, anisotropic voxels and an
    origin away from zero, so that every axis of the geometry is checked."""
    return make_example_ims(
        tmp_path_factory.mktemp("cli-convert") / "cells.ims",
        shape=(12, 70, 50),
        channels=3,
        timepoints=2,
        channel_names=NAMES,
        channel_colors=COLORS,
        voxel_size=(2.0, 0.5, 0.4),
        extent_min=(-3.0, 5.0, 7.0),
        threshold_voxels=10_000,
        chunks=(8, 32, 32),
    )


def _text(group: h5py.Group, name: str) -> str:
    return b"".join(group.attrs[name]).decode()


def _geometry(path: Path, level: int = 0) -> dict[str, object]:
    """Voxel size and voxel-centre origin (z, y, x) of one level, unit, channel names and colours,
    from the file's own attributes."""
    with h5py.File(path, "r") as f:
        image = f["DataSetInfo/Image"]
        lo = np.array([float(_text(image, f"ExtMin{i}")) for i in (2, 1, 0)])
        hi = np.array([float(_text(image, f"ExtMax{i}")) for i in (2, 1, 0)])
        first = f[f"DataSet/ResolutionLevel {level}/TimePoint 0/Channel 0"]
        size = np.array([int(_text(first, f"ImageSize{a}")) for a in "ZYX"])
        channels = [f[f"DataSetInfo/Channel {c}"] for c in range(h5py_counts(path)[2])]
        voxel = (hi - lo) / size
        return {
            "voxel": voxel,
            "origin": lo + voxel / 2,
            "unit": _text(image, "Unit"),
            "names": [_text(ch, "Name") for ch in channels],
            "colors": [[float(v) for v in _text(ch, "Color").split()] for ch in channels],
        }


def _hex(rgb: list[float]) -> str:
    return "".join(f"{round(v * 255):02X}" for v in rgb)


@pytest.mark.parametrize(("ngff", "codec"), [("0.5", "zstd"), ("0.4", "copy")])
def test_to_ome_zarr(source: Path, tmp_path: Path, ngff: str, codec: str) -> None:
    out = tmp_path / "cells.ome.zarr"
    assert main(["convert", str(source), str(out), "--ngff", ngff, "--codec", codec, "--quiet"]) == 0
    root = zarr.open_group(str(out), mode="r")
    assert_group_matches_h5py(root, source)

    attrs = dict(root.attrs)
    ome = attrs["ome"] if ngff == "0.5" else attrs
    assert (ome["version"] if ngff == "0.5" else ome["multiscales"][0]["version"]) == ngff
    for level, dataset in enumerate(ome["multiscales"][0]["datasets"]):
        truth = _geometry(source, level)
        scale, translation = (t for t in dataset["coordinateTransformations"])
        np.testing.assert_allclose(scale["scale"][2:], truth["voxel"], rtol=1e-6)
        np.testing.assert_allclose(translation["translation"][2:], truth["origin"], rtol=1e-6, atol=1e-9)
    truth = _geometry(source)
    channels = ome["omero"]["channels"]
    assert [c["label"] for c in channels] == truth["names"] == NAMES
    assert [c["color"].upper() for c in channels] == [_hex(c) for c in truth["colors"]]

    if codec == "copy":
        # the very bytes HDF5 stored (shuffle + deflate) become the zarr v2 chunks
        meta = json.loads((out / "0" / ".zarray").read_text())
        assert meta["compressor"]["id"] == "zlib" and [f["id"] for f in meta["filters"]] == ["shuffle"]
        with h5py.File(source, "r") as f:
            for t, c in ((0, 0), (1, 2)):
                data = f[f"DataSet/ResolutionLevel 0/TimePoint {t}/Channel {c}/Data"]
                for z, y, x in ((0, 0, 0), (1, 2, 1)):
                    _, stored = data.id.read_direct_chunk((z * 8, y * 32, x * 32))
                    assert (out / "0" / str(t) / str(c) / str(z) / str(y) / str(x)).read_bytes() == stored
    else:
        assert json.loads((out / "0" / "zarr.json").read_text())["codecs"][-1]["name"] == "zstd"


@pytest.mark.parametrize(("level", "timepoint", "channel"), [(0, "all", 2), (1, "1", 0)])
def test_to_nifti(source: Path, tmp_path: Path, level: int, timepoint: str, channel: int) -> None:
    out = tmp_path / "cells.nii.gz"
    args = ["convert", str(source), str(out), "--timepoint", timepoint, "--channel", str(channel)]
    assert main([*args, "--level", str(level), "--quiet"]) == 0
    image = nib.load(out)
    data = np.asarray(image.dataobj)
    times = range(2) if timepoint == "all" else [int(timepoint)]
    assert data.shape[3:] == ((2,) if timepoint == "all" else ())
    for i, t in enumerate(times):
        volume = data[..., i] if timepoint == "all" else data
        np.testing.assert_array_equal(volume.transpose(2, 1, 0), h5py_level(source, level, t, channel))
    truth = _geometry(source, level)
    # NIfTI's affine maps (i, j, k) = (x, y, z) voxel indices to the voxel centres
    np.testing.assert_allclose(np.diag(image.affine)[:3], truth["voxel"][::-1], rtol=1e-6)
    np.testing.assert_allclose(image.affine[:3, 3], truth["origin"][::-1], rtol=1e-6)
    assert image.header.get_xyzt_units()[0] == "micron"


@pytest.mark.parametrize(("options", "filter_id", "gzip_level"), [
    (["--compression", "lz4"], LZ4_FILTER, None),
    (["--compression", "none"], None, None),
    (["--compression-level", "9"], h5py.h5z.FILTER_DEFLATE, 9),
])  # fmt: skip
def test_to_ims(
    source: Path, tmp_path: Path, options: list[str], filter_id: int | None, gzip_level: int | None
) -> None:
    out = tmp_path / "again.ims"
    assert main(["convert", str(source), str(out), *options, "--quiet"]) == 0
    # the writer builds its own pyramid (Imaris' rule): level 0 carries the data across
    assert h5py_counts(out)[1:] == (2, 3)
    for t in range(2):
        for c in range(3):
            np.testing.assert_array_equal(h5py_level(out, 0, t, c), h5py_level(source, 0, t, c))
    with h5py.File(out, "r") as f:
        plist = f["DataSet/ResolutionLevel 0/TimePoint 1/Channel 2/Data"].id.get_create_plist()
        filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
    codecs = [code for code, *_ in filters if code != h5py.h5z.FILTER_SHUFFLE]
    assert codecs == ([] if filter_id is None else [filter_id])
    if gzip_level is not None:
        assert filters[-1][2][0] == gzip_level
    got, want = _geometry(out), _geometry(source)
    np.testing.assert_allclose(got.pop("voxel"), want.pop("voxel"), rtol=1e-6)
    np.testing.assert_allclose(got.pop("origin"), want.pop("origin"), rtol=1e-6)
    np.testing.assert_allclose(got.pop("colors"), want.pop("colors"), atol=1e-3)
    assert got == want
    assert main(["validate", str(out)]) == 0


@pytest.mark.parametrize("via", ["ims", "zarr"])
def test_to_ims_from_a_chosen_level(source: Path, tmp_path: Path, via: str) -> None:
    """``--level`` picks the source's level: level 1 becomes level 0 of the new file."""
    src = source
    if via == "zarr":
        src = tmp_path / "cells.zarr"
        assert main(["convert", str(source), str(src), "--quiet"]) == 0
    out = tmp_path / "level1.ims"
    assert main(["convert", str(src), str(out), "--level", "1", "--quiet"]) == 0
    for t in range(2):
        for c in range(3):
            np.testing.assert_array_equal(h5py_level(out, 0, t, c), h5py_level(source, 1, t, c))
    got, want = _geometry(out, 0), _geometry(source, 1)
    np.testing.assert_allclose(got["voxel"], want["voxel"], rtol=1e-6)
    np.testing.assert_allclose(got["origin"], want["origin"], rtol=1e-6)
    assert got["names"] == NAMES
