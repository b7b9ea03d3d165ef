"""The xarray backend and saving xarray selections with their geometry."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
import zarr
from helpers import h5py_level

from ims_store import SelectionError, read_layout, to_nifti, to_ome_zarr, write_ims


def test_open_dataarray_with_geometry(real_files: dict[str, Path]) -> None:
    path = real_files["PtK2Cell.ims"]
    da = xr.open_dataarray(path, engine="ims", level=0, timepoint=0, channel=1)
    assert da.dims == ("z", "y", "x")
    assert str(da.c.values) == "Microtubules" and str(da.channel_color.values) == "#00FF00"
    voxel = (17.118 - -0.033) / 256
    assert float(da.x[0]) == -0.033 + voxel / 2 and float(da.x[1] - da.x[0]) == pytest.approx(voxel)
    assert da.x.attrs["units"] == "micrometer" and da.attrs["unit"] == "um"
    np.testing.assert_array_equal(da.values, h5py_level(path, 0, 0, 1))
    whole = xr.open_dataarray(path, engine="ims")
    assert whole.dims == ("t", "c", "z", "y", "x") and list(whole.c.values)[3] == "Dynactin"


def test_out_of_range_selection_lists_what_exists(real_files: dict[str, Path]) -> None:
    with pytest.raises(SelectionError, match=r"level 2 does not exist; the file has levels 0\.\.1") as err:
        xr.open_dataarray(real_files["PyramidalCell.ims"], engine="ims", level=2)
    assert isinstance(err.value, ValueError)
    with pytest.raises(ValueError, match=r"channels 0\.\.3"):
        xr.open_dataarray(real_files["PtK2Cell.ims"], engine="ims", channel=9)


def test_open_datatree_has_the_pyramid(real_files: dict[str, Path]) -> None:
    tree = xr.open_datatree(real_files["PyramidalCell.ims"], engine="ims")
    assert sorted(tree.children) == ["0", "1"]
    level1 = tree["1"]["image"]
    assert level1.shape == (1, 1, 34, 127, 127)
    assert float(level1.x[0]) == -0.114 + (57.841 + 0.114) / 127 / 2


def test_time_in_seconds(synthetic_files: dict[str, Path]) -> None:
    da = xr.open_dataarray(synthetic_files["12-timepoints-3-channels"], engine="ims")
    assert da.t.values.tolist() == pytest.approx([1.5 * i for i in range(12)])
    assert da.t.attrs["units"] == "s"


def test_crop_downsample_and_save_keep_geometry(tmp_path: Path, synthetic_files: dict[str, Path]) -> None:
    src = synthetic_files["uint16-shuffle-gzip-3-levels"]
    da = xr.open_dataarray(src, engine="ims")
    crop = da.isel(t=1, c=1).sel(z=slice(3.0, 12.0), y=slice(5.0, 30.0), x=slice(2.0, 20.0))
    expected = h5py_level(src, 0, 1, 1)[3:12, 20:120, 8:80]
    np.testing.assert_array_equal(crop.values, expected)
    origin = (float(crop.z[0]), float(crop.y[0]), float(crop.x[0]))

    ims = write_ims(crop, tmp_path / "crop.ims")
    back = xr.open_dataarray(ims, engine="ims", timepoint=0, channel=0)
    np.testing.assert_array_equal(back.values, expected)
    assert (float(back.z[0]), float(back.y[0]), float(back.x[0])) == pytest.approx(origin, abs=1e-9)
    assert str(back.c.values) == "Channel 1"

    nii = nib.load(to_nifti(crop, tmp_path / "crop.nii.gz"))
    np.testing.assert_array_equal(np.asarray(nii.dataobj).transpose(2, 1, 0), expected)
    assert tuple(nii.affine[:3, 3]) == pytest.approx(origin[::-1], abs=1e-9)

    out = to_ome_zarr(crop, tmp_path / "crop.zarr")
    root = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(root["0"][0, 0], expected)
    transforms = root.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    assert transforms[1]["translation"][2:] == pytest.approx(list(origin), abs=1e-9)
    assert transforms[0]["scale"][2:] == pytest.approx([1.0, 0.25, 0.25])

    coarse = crop.coarsen(y=2, x=2, boundary="trim").mean().astype(np.uint16)
    small = write_ims(coarse, tmp_path / "coarse.ims")
    lay = read_layout(small)
    assert lay.levels[0].voxel_size == pytest.approx((1.0, 0.5, 0.5))
    assert float(xr.open_dataarray(small, engine="ims").y[0]) == pytest.approx(float(coarse.y[0]))


def test_without_xarray_the_backend_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    from ims_store import MissingDependencyError

    # a None entry makes ``import xarray`` fail as if it were not installed; the backend module
    # is dropped so that it is imported afresh (monkeypatch puts both back afterwards)
    monkeypatch.setitem(sys.modules, "xarray", None)
    monkeypatch.delitem(sys.modules, "ims_store.fronts.xarray_backend", raising=False)
    with pytest.raises(MissingDependencyError, match=r"ims-store\[xarray\]") as err:
        importlib.import_module("ims_store.fronts.xarray_backend")
    assert isinstance(err.value, ImportError)
