"""ZarrNii and ngff-zarr, the real packages, on .ims files through ims_store (the interop extra).

Run with ``pytest -m interop`` after ``pip install -e '.[test,interop]'`` (nox: ``nox -s interop``).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import h5py_level

from ims_store import ImsStore, read_layout, write_ims

# deselected by default (addopts: -m 'not interop'); the packages are imported inside the tests,
# so that collecting this module needs neither of them
pytestmark = pytest.mark.interop


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_ngff_zarr_reads_every_level_with_geometry(real_files: dict[str, Path], zarr_format: int) -> None:
    import ngff_zarr

    path = real_files["PyramidalCell.ims"]
    layout = read_layout(path)
    multiscales = ngff_zarr.from_ngff_zarr(ImsStore(path, zarr_format=zarr_format).as_mapping())
    assert len(multiscales.images) == 2
    for level, image in enumerate(multiscales.images):
        np.testing.assert_array_equal(np.asarray(image.data)[0, 0], h5py_level(path, level, 0, 0))
        voxel = layout.levels[level].voxel_size
        assert [image.scale[a] for a in "zyx"] == pytest.approx(voxel, rel=1e-12)
        expected_origin = [lo + v / 2 for lo, v in zip(layout.extent_min, voxel, strict=True)]
        assert [image.translation[a] for a in "zyx"] == pytest.approx(expected_origin, abs=1e-12)
        assert image.axes_units["x"] == "micrometer"


def _zarrnii_matches(zn, path: Path, level: int, channel: int) -> None:
    layout = read_layout(path)
    np.testing.assert_array_equal(np.asarray(zn.data)[0, 0], h5py_level(path, level, 0, channel))
    voxel_mm = np.array(layout.levels[level].voxel_size) / 1000  # ZarrNii works in millimetres
    origin_mm = (np.array(layout.extent_min) + np.array(layout.levels[level].voxel_size) / 2) / 1000
    np.testing.assert_allclose(zn.get_zooms(), voxel_mm, rtol=1e-12)
    np.testing.assert_allclose(zn.get_origin(), origin_mm, atol=1e-15)


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

    from ims_store.serve import make_server

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
    """open -> crop -> downsample -> NIfTI -> .ims -> read again: data and geometry survive."""
    import zarrnii

    path = real_files["PtK2Cell.ims"]
    layout = read_layout(path)
    voxel = np.array(layout.levels[0].voxel_size)
    zn = zarrnii.ZarrNii.from_ome_zarr(ImsStore(path).as_mapping(), channels=[1])
    crop = zn.crop((60, 40, 4), (200, 140, 20))  # ZarrNii boxes are (x, y, z) voxel indices
    small = crop.downsample(along_x=2, along_y=2, along_z=2)
    small.to_nifti(str(tmp_path / "small.nii.gz"))
    out = write_ims(tmp_path / "small.nii.gz", tmp_path / "small.ims")

    region = h5py_level(path, 0, 0, 1)[4:20, 40:140, 60:200].astype(np.float64)
    blocks = region.reshape(8, 2, 50, 2, 70, 2).mean(axis=(1, 3, 5))
    back = h5py_level(out, 0, 0, 0).astype(np.float64)
    assert back.shape == (8, 50, 70)
    assert np.abs(back - blocks).max() <= 1.0  # ZarrNii's local mean, cast back to uint8
    result = read_layout(out)
    assert result.unit == "um"
    # the crop starts at voxel (4, 40, 60); two voxels merge, so the first centre moves half a voxel
    expected_origin = np.array(layout.extent_min) + (np.array([4, 40, 60]) + 1.0) * voxel
    got_origin = np.array(result.extent_min) + np.array(result.levels[0].voxel_size) / 2
    np.testing.assert_allclose(result.levels[0].voxel_size, 2 * voxel, rtol=1e-6)  # NIfTI affines are float32
    np.testing.assert_allclose(got_origin, expected_origin, atol=1e-5)
    nifti = nib.load(tmp_path / "small.nii.gz")
    assert nifti.header.get_xyzt_units()[0] == "mm"
