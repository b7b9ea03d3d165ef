"""ZarrNii and ngff-zarr, the real packages, on .ims files through ims_store (the interop extra).

Run with ``pytest -m interop`` after ``pip install -e '.[test,interop]'`` (nox: ``nox -s interop``).

Expected geometry comes from h5py's reads of the ``.ims`` attributes (``DataSetInfo/Image``
``ExtMin``/``ExtMax``/``Unit`` and each level's ``ImageSize``), expected voxels from h5py's reads
of the data, and every step of the ZarrNii pipeline is checked against numpy / nibabel / h5py
computations, never against ims_store code.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from helpers import h5py_level

from ims_store import ImsStore, write_ims

# deselected by default (addopts: -m 'not interop'); the packages are imported inside the tests,
# so that collecting this module needs neither of them
pytestmark = pytest.mark.interop

# Imaris unit symbols -> millimetres (ZarrNii's unit) per unit
_MM = {"nm": 1e-6, "um": 1e-3, "mm": 1.0}


def _text(attrs: h5py.AttributeManager, name: str) -> str:
    """An Imaris attribute: an array of single characters."""
    return b"".join(attrs[name]).decode()


def h5py_geometry(path: Path, level: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(voxel size, centre of the first voxel, unit) of one resolution level, (z, y, x) in the
    file's unit, from the attributes alone: voxel = (ExtMax - ExtMin) / ImageSize and the
    voxel-centre origin ExtMin + voxel / 2."""
    with h5py.File(path, "r") as f:
        image = f["DataSetInfo/Image"].attrs
        lo = np.array([float(_text(image, f"ExtMin{i}")) for i in (2, 1, 0)])  # 0, 1, 2 = x, y, z
        hi = np.array([float(_text(image, f"ExtMax{i}")) for i in (2, 1, 0)])
        unit = _text(image, "Unit")
        full = np.array([int(_text(image, a)) for a in "ZYX"])
        sizes = f[f"DataSet/ResolutionLevel {level}/TimePoint 0/Channel 0"].attrs
        size = np.array([int(_text(sizes, f"ImageSize{a}")) for a in "ZYX"])
        if level == 0:
            assert np.array_equal(size, full), (size, full)  # DataSetInfo/Image X, Y, Z is level 0's size
    voxel = (hi - lo) / size
    return voxel, lo + voxel / 2, unit


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_ngff_zarr_reads_every_level_with_geometry(real_files: dict[str, Path], zarr_format: int) -> None:
    import ngff_zarr

    path = real_files["PyramidalCell.ims"]
    multiscales = ngff_zarr.from_ngff_zarr(ImsStore(path, zarr_format=zarr_format).as_mapping())
    assert len(multiscales.images) == 2
    for level, image in enumerate(multiscales.images):
        np.testing.assert_array_equal(np.asarray(image.data)[0, 0], h5py_level(path, level, 0, 0))
        voxel, origin, unit = h5py_geometry(path, level)
        assert unit == "um"
        # ngff-zarr keeps the file's unit (micrometre for Imaris' "um")
        assert [image.scale[a] for a in "zyx"] == pytest.approx(voxel, rel=1e-12)
        assert [image.translation[a] for a in "zyx"] == pytest.approx(origin, abs=1e-12)
        assert all(image.axes_units[a] == "micrometer" for a in "zyx")


def _zarrnii_matches(zn, path: Path, level: int, channel: int) -> None:
    np.testing.assert_array_equal(np.asarray(zn.data)[0, 0], h5py_level(path, level, 0, channel))
    voxel, origin, unit = h5py_geometry(path, level)
    # ZarrNii works in millimetres, (z, y, x) by default (its axes_order "ZYX")
    np.testing.assert_allclose(zn.get_zooms(), voxel * _MM[unit], rtol=1e-12)
    np.testing.assert_allclose(zn.get_origin(), origin * _MM[unit], rtol=1e-12, atol=1e-15)
    assert all(zn.ngff_image.axes_units[a] == "millimeter" for a in "zyx")


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_zarrnii_from_mapping(real_files: dict[str, Path], zarr_format: int) -> None:
    import zarrnii

    path = real_files["PyramidalCell.ims"]
    mapping = ImsStore(path, zarr_format=zarr_format).as_mapping()
    for level in (0, 1):
        _zarrnii_matches(zarrnii.ZarrNii.from_ome_zarr(mapping, level=level, channels=[0]), path, level, 0)
    ptk2 = real_files["PtK2Cell.ims"]
    zn = zarrnii.ZarrNii.from_ome_zarr(ImsStore(ptk2, zarr_format=zarr_format).as_mapping(), channels=[2])
    _zarrnii_matches(zn, ptk2, 0, 2)


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_zarrnii_through_the_served_url(real_files: dict[str, Path], ngff: str) -> None:
    import zarrnii

    from ims_store.fronts.serve import make_server

    path = real_files["PtK2Cell.ims"]
    server = make_server(path, port=0, ngff=ngff)  # type: ignore[arg-type]
    server.serve_in_thread()
    try:
        zn = zarrnii.ZarrNii.from_ome_zarr(server.url, channels=[1])
        _zarrnii_matches(zn, path, 0, 1)
    finally:
        server.shutdown()
        server.server_close()


def test_the_zarrnii_imaris_workflow(tmp_path: Path, real_files: dict[str, Path]) -> None:
    """open -> crop -> downsample -> NIfTI -> .ims -> read again, each step checked on its own:
    voxels against numpy on h5py's read, geometry against the ``.ims`` attributes."""
    import zarrnii

    path = real_files["PtK2Cell.ims"]
    voxel_um, origin_um, unit = h5py_geometry(path, 0)
    assert unit == "um"
    voxel, origin = voxel_um / 1000, origin_um / 1000  # ZarrNii's millimetres, (z, y, x)
    source = h5py_level(path, 0, 0, 1)
    start, stop = np.array([4, 40, 60]), np.array([20, 140, 200])  # (z, y, x) voxel indices

    # open: all of level 0, channel 1; Imaris x, y, z taken as R, A, S (ZarrNii's default)
    zn = zarrnii.ZarrNii.from_ome_zarr(ImsStore(path).as_mapping(), channels=[1])
    np.testing.assert_array_equal(np.asarray(zn.data)[0, 0], source)
    np.testing.assert_allclose(zn.get_zooms(), voxel, rtol=1e-12)
    np.testing.assert_allclose(zn.get_origin(), origin, rtol=1e-12, atol=1e-15)
    assert zn.get_orientation() == "RAS"

    # crop: ZarrNii boxes are (x, y, z) voxel indices, the first voxel's centre moves to start
    crop = zn.crop(tuple(start[::-1]), tuple(stop[::-1]))
    region = source[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]]
    np.testing.assert_array_equal(np.asarray(crop.data)[0, 0], region)
    np.testing.assert_allclose(crop.get_zooms(), voxel, rtol=1e-12)
    np.testing.assert_allclose(crop.get_origin(), origin + start * voxel, rtol=1e-12, atol=1e-15)

    # downsample by 2: block means (ZarrNii casts back to uint8, truncating); two voxels merge,
    # so the first centre moves half an original voxel further
    small = crop.downsample(along_x=2, along_y=2, along_z=2)
    nz, ny, nx = region.shape
    blocks = region.astype(np.float64).reshape(nz // 2, 2, ny // 2, 2, nx // 2, 2).mean(axis=(1, 3, 5))
    reduced = np.asarray(small.data)[0, 0]
    assert reduced.shape == blocks.shape and reduced.dtype == np.uint8
    assert np.abs(reduced - blocks).max() < 1.0  # a rounding of the true mean, nothing else
    np.testing.assert_allclose(small.get_zooms(), 2 * voxel, rtol=1e-12)
    small_origin = origin + start * voxel + voxel / 2
    np.testing.assert_allclose(small.get_origin(), small_origin, rtol=1e-12, atol=1e-15)

    # NIfTI: (x, y, z) array order, RAS+ affine in millimetres, diagonal: no flip, no rotation
    small.to_nifti(str(tmp_path / "small.nii.gz"))
    nifti = nib.load(tmp_path / "small.nii.gz")
    np.testing.assert_array_equal(np.asarray(nifti.dataobj), reduced.transpose(2, 1, 0))
    expected_affine = np.eye(4)
    expected_affine[:3, :3] = np.diag(2 * voxel[::-1])
    expected_affine[:3, 3] = small_origin[::-1]
    np.testing.assert_allclose(nifti.affine, expected_affine, rtol=1e-6, atol=1e-9)  # NIfTI-1 holds float32
    assert nib.aff2axcodes(nifti.affine) == ("R", "A", "S")
    assert nifti.header.get_xyzt_units()[0] == "mm"

    # back to Imaris: h5py's reads of the new file (micrometres, (z, y, x) again)
    out = write_ims(tmp_path / "small.nii.gz", tmp_path / "small.ims")
    np.testing.assert_array_equal(h5py_level(out, 0, 0, 0), reduced)
    out_voxel, out_origin, out_unit = h5py_geometry(out, 0)
    assert out_unit == "um"
    np.testing.assert_allclose(out_voxel, 2 * voxel_um, rtol=1e-6)
    np.testing.assert_allclose(out_origin, small_origin * 1000, rtol=1e-6, atol=1e-5)

    # read again with ZarrNii: the same voxels and geometry as before the NIfTI
    again = zarrnii.ZarrNii.from_ome_zarr(ImsStore(out).as_mapping(), channels=[0])
    np.testing.assert_array_equal(np.asarray(again.data)[0, 0], reduced)
    np.testing.assert_allclose(again.get_zooms(), small.get_zooms(), rtol=1e-6)
    np.testing.assert_allclose(again.get_origin(), small.get_origin(), rtol=1e-6, atol=1e-9)


def test_zarrnii_orientation_relabels_the_imaris_axes(tmp_path: Path, real_files: dict[str, Path]) -> None:
    """What the docs page says of ``orientation=``: the default (RAS) maps Imaris x, y, z to
    R, A, S unchanged; "LPS" makes the x and y steps negative about the same first-voxel centre,
    and `write_ims`, which takes the NIfTI world as the Imaris frame, stores that mirrored."""
    import zarrnii

    path = real_files["PtK2Cell.ims"]
    voxel_um, origin_um, _ = h5py_geometry(path, 0)
    source = h5py_level(path, 0, 0, 1)
    mapping = ImsStore(path).as_mapping()
    for orientation, flips in ((None, np.array([1, 1, 1])), ("LPS", np.array([1, -1, -1]))):  # (z, y, x)
        zn = zarrnii.ZarrNii.from_ome_zarr(mapping, channels=[1], orientation=orientation)
        nifti = zn.to_nifti()
        expected_affine = np.eye(4)
        expected_affine[:3, :3] = np.diag((flips * voxel_um / 1000)[::-1])
        expected_affine[:3, 3] = (origin_um / 1000)[::-1]
        np.testing.assert_allclose(nifti.affine, expected_affine, rtol=1e-6, atol=1e-9)
        target = tmp_path / f"{orientation}.nii.gz"
        nib.save(nifti, target)
        out = write_ims(target, tmp_path / f"{orientation}.ims")
        np.testing.assert_array_equal(h5py_level(out, 0, 0, 0), source[:, :: flips[1], :: flips[2]])
        out_voxel, out_origin, _ = h5py_geometry(out, 0)
        np.testing.assert_allclose(out_voxel, voxel_um, rtol=1e-6)
        first = np.where(flips < 0, origin_um - (np.array(source.shape) - 1) * voxel_um, origin_um)
        np.testing.assert_allclose(out_origin, first, rtol=1e-6, atol=1e-5)
