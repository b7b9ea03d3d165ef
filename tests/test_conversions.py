"""Round trips between Imaris, NIfTI and OME-Zarr keep data and physical geometry."""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import zarr
from helpers import h5py_level

from ims_store import ImsStore, SourceError, read_layout, to_nifti, to_ome_zarr, write_ims


def _world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    return (affine[:3, :3] @ ijk.T).T + affine[:3, 3]


@pytest.mark.parametrize("flip", [False, True], ids=["diagonal", "flipped-x-permuted"])
def test_nifti_to_ims_to_nifti(tmp_path: Path, flip: bool) -> None:
    rng = np.random.default_rng(7)
    data = rng.integers(0, 3000, (30, 20, 12), dtype=np.uint16)  # (x, y, z)
    affine = np.array([[0.5, 0, 0, 10.0], [0, 0.25, 0, -20.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]])
    if flip:  # x runs backwards and array axes 0/1 are swapped
        data = np.ascontiguousarray(np.transpose(data, (1, 0, 2)))
        affine = np.array([[0, -0.5, 0, 10.0], [0.25, 0, 0, -20.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]])
    source = nib.Nifti1Image(data, affine)
    source.header.set_xyzt_units("mm")
    nib.save(source, tmp_path / "in.nii.gz")

    ims = write_ims(tmp_path / "in.nii.gz", tmp_path / "mid.ims")
    assert read_layout(ims).unit == "um"
    back = nib.load(to_nifti(ims, tmp_path / "out.nii.gz"))
    assert back.header.get_xyzt_units()[0] == "micron"
    out = np.asarray(back.dataobj)
    # every voxel sits at the same physical place (mm) with the same value
    ijk_in = np.argwhere(np.ones(data.shape, bool))
    world_in = _world(source.affine, ijk_in)
    ijk_out = np.rint(np.linalg.solve(back.affine[:3, :3] / 1000, (world_in - back.affine[:3, 3] / 1000).T).T)
    np.testing.assert_array_equal(out[tuple(ijk_out.astype(int).T)], data[tuple(ijk_in.T)])
    np.testing.assert_allclose(np.abs(np.diag(back.affine)[:3]), [500.0, 250.0, 2000.0])


def test_oblique_nifti_is_refused(tmp_path: Path) -> None:
    angle = np.deg2rad(10)
    affine = np.eye(4)
    affine[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), affine), tmp_path / "oblique.nii")
    with pytest.raises(SourceError, match="oblique"):
        write_ims(tmp_path / "oblique.nii", tmp_path / "x.ims")
    assert not (tmp_path / "x.ims").exists()


def _hand_made_ome_zarr(path: Path) -> np.ndarray:
    """An NGFF 0.4 image written with plain zarr (czyx, 2 channels, physical scale and offset)."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 255, (2, 10, 64, 48), dtype=np.uint8)
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.create_array("0", data=data, chunks=(1, 5, 32, 32))
    root.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {"name": "c", "type": "channel"},
                {"name": "z", "type": "space", "unit": "micrometer"},
                {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"},
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [1.0, 1.5, 0.2, 0.3]},
                        {"type": "translation", "translation": [0.0, 4.0, -1.0, 2.5]},
                    ],
                }
            ],
        }
    ]
    root.attrs["omero"] = {
        "channels": [
            {"label": "Nuclei", "color": "0000FF", "window": {"min": 0, "max": 255, "start": 5, "end": 200}},
            {"label": "Actin", "color": "FF00FF", "window": {"min": 0, "max": 255, "start": 0, "end": 250}},
        ]
    }
    return data


@pytest.mark.parametrize("ngff_version", ["0.5", "0.4"])
def test_ome_zarr_to_ims_to_ome_zarr(tmp_path: Path, ngff_version: str) -> None:
    data = _hand_made_ome_zarr(tmp_path / "in.zarr")
    ims = write_ims(tmp_path / "in.zarr", tmp_path / "mid.ims")
    out = to_ome_zarr(ims, tmp_path / "out.zarr", ngff_version=ngff_version)
    root = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(root["0"][0], data)
    attrs = root.attrs["ome"] if ngff_version == "0.5" else root.attrs
    ms = attrs["multiscales"][0]
    scale, translation = ms["datasets"][0]["coordinateTransformations"]
    assert scale["scale"][2:] == pytest.approx([1.5, 0.2, 0.3], rel=1e-12)
    assert translation["translation"][2:] == pytest.approx([4.0, -1.0, 2.5], rel=1e-12)
    channels = attrs["omero"]["channels"]
    assert [c["label"] for c in channels] == ["Nuclei", "Actin"]
    assert [c["color"] for c in channels] == ["0000FF", "FF00FF"]
    assert [(c["window"]["start"], c["window"]["end"]) for c in channels] == [(5, 200), (0, 250)]
    for level in range(1, len(ms["datasets"])):
        np.testing.assert_array_equal(root[str(level)][0, 0], h5py_level(ims, level, 0, 0))


def test_ims_reencode_lz4_to_gzip_keeps_metadata(tmp_path: Path, synthetic_files: dict[str, Path]) -> None:
    src = synthetic_files["uint32-shuffle-lz4"]
    out = write_ims(ImsStore(src), tmp_path / "gzip.ims")
    a, b = read_layout(src), read_layout(out)
    assert [ch.label for ch in b.channels] == [ch.label for ch in a.channels]
    assert [ch.color for ch in b.channels] == [ch.color for ch in a.channels]
    assert [tp.stamp for tp in b.timepoints] == [tp.stamp for tp in a.timepoints]
    assert b.levels[0].voxel_size == pytest.approx(a.levels[0].voxel_size, rel=1e-12)
    assert b.extent_min == pytest.approx(a.extent_min, abs=1e-12)
    with h5py.File(out, "r") as f:
        plist = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"].id.get_create_plist()
        assert [plist.get_filter(i)[0] for i in range(plist.get_nfilters())] == [2, 1]
    for t in range(2):
        for c in range(2):
            np.testing.assert_array_equal(h5py_level(out, 0, t, c), h5py_level(src, 0, t, c))


def test_written_files_open_with_an_independent_reader(tmp_path: Path, real_files: dict[str, Path]) -> None:
    from imaris_ims_file_reader.ims import ims as open_ims  # a reader that shares no code with ims_store

    data = np.random.default_rng(0).integers(0, 60000, (2, 3, 20, 200, 150), dtype=np.uint16)
    path = write_ims(data, tmp_path / "indep.ims", axes="tczyx", voxel_size=(1.0, 0.5, 0.5))
    ims = open_ims(str(path))
    assert ims.shape == data.shape
    np.testing.assert_array_equal(ims[0, :, :, :, :, :], data)
    assert tuple(ims.resolution) == (1.0, 0.5, 0.5)
    # and the re-encoded real file too
    out = write_ims(real_files["PtK2Cell.ims"], tmp_path / "ptk2.ims")
    ims2 = open_ims(str(out))
    np.testing.assert_array_equal(ims2[0, 0, 2, :, :, :], h5py_level(real_files["PtK2Cell.ims"], 0, 0, 2))


@pytest.mark.parametrize("ngff_version", ["0.5", "0.4"])
@pytest.mark.parametrize("codec", ["auto", "copy", "zstd", "zlib", "none"])
def test_ims_to_ome_zarr_every_level_and_codec(
    tmp_path: Path, synthetic_files: dict[str, Path], ngff_version: str, codec: str
) -> None:
    from ome_zarr_models.v04 import Image as Image04
    from ome_zarr_models.v05 import Image as Image05

    for name in ("uint16-shuffle-gzip-3-levels", "uint32-shuffle-lz4", "unallocated-chunks-softlink"):
        src = synthetic_files[name]
        out = to_ome_zarr(src, tmp_path / f"{name}-{codec}.zarr", ngff_version=ngff_version, codec=codec)
        root = zarr.open_group(str(out), mode="r")
        (Image05 if ngff_version == "0.5" else Image04).from_zarr(root)
        levels = sorted(root.array_keys(), key=int)
        assert len(levels) == len(read_layout(src).levels)
        for level in levels:
            data = root[level][...]
            for t in range(data.shape[0]):
                for c in range(data.shape[1]):
                    np.testing.assert_array_equal(data[t, c], h5py_level(src, int(level), t, c))


def test_copy_keeps_the_stored_chunk_bytes(tmp_path: Path, real_files: dict[str, Path]) -> None:
    src = real_files["PyramidalCell.ims"]
    out = to_ome_zarr(src, tmp_path / "copy.zarr", ngff_version="0.4", codec="copy")
    with h5py.File(src, "r") as f:
        _, stored = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"].id.read_direct_chunk((32, 0, 0))
    assert (out / "0" / "0" / "0" / "2" / "0" / "0").read_bytes() == stored


def test_conversion_refuses_to_overwrite(tmp_path: Path, real_files: dict[str, Path]) -> None:
    from ims_store import DestinationExistsError

    (tmp_path / "exists.zarr").mkdir()
    with pytest.raises(DestinationExistsError):
        to_ome_zarr(real_files["PtK2Cell.ims"], tmp_path / "exists.zarr")
    to_ome_zarr(real_files["PtK2Cell.ims"], tmp_path / "exists.zarr", overwrite=True)
    assert zarr.open_group(str(tmp_path / "exists.zarr"), mode="r")["0"].shape == (1, 4, 32, 256, 256)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.zarr"]


def test_nifti_of_every_time_point_carries_the_time_step(tmp_path: Path) -> None:
    import datetime as dt

    import h5py
    import nibabel as nib

    from ims_store.write.synthetic import make_example_ims

    source = make_example_ims(tmp_path / "series.ims", shape=(4, 32, 32), channels=1, timepoints=3)
    with h5py.File(source, "r") as f:
        attrs = f["DataSetInfo/TimeInfo"].attrs
        stamps = [dt.datetime.fromisoformat(b"".join(attrs[f"TimePoint{i}"]).decode()) for i in (1, 2, 3)]
    expected = (stamps[-1] - stamps[0]).total_seconds() / 2
    assert expected > 0
    img = nib.load(to_nifti(source, tmp_path / "series.nii.gz", timepoint=None))
    assert img.shape[3] == 3
    assert img.header.get_zooms()[3] == pytest.approx(expected)
    assert img.header.get_xyzt_units()[1] == "sec"
