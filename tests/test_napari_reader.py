"""The napari reader's layer data, tested without a display."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import h5py_level

from ims_store.napari_reader import napari_get_reader


def test_reader_claims_only_ims(tmp_path: Path) -> None:
    assert napari_get_reader(str(tmp_path / "a.tif")) is None
    assert napari_get_reader([str(tmp_path / "a.ims"), str(tmp_path / "b.tif")]) is None
    assert napari_get_reader(str(tmp_path / "a.ims")) is not None


def test_one_multiscale_layer_per_channel(real_files: dict[str, Path]) -> None:
    path = real_files["PtK2Cell.ims"]
    layers = napari_get_reader(str(path))(str(path))  # type: ignore[misc]
    assert [meta["name"] for _, meta, _ in layers] == ["Kinetochores", "Microtubules", "DNA", "Dynactin"]
    for index, (data, meta, kind) in enumerate(layers):
        assert kind == "image" and meta["multiscale"]
        assert len(data) == 1 and data[0].shape == (1, 32, 256, 256)
        np.testing.assert_array_equal(np.asarray(data[0][0]), h5py_level(path, 0, 0, index))
        assert meta["contrast_limits"] == [0.0, 247.0]
        voxel = (17.118 + 0.033) / 256
        assert meta["scale"] == pytest.approx((1.0, 0.2, voxel, voxel))
        assert meta["translate"] == pytest.approx((0.0, -0.1 + 0.1, -0.033 + voxel / 2, -0.033 + voxel / 2))
    name, colors = layers[1][1]["colormap"]
    assert name == "Microtubules" and colors[-1].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_pyramid_levels_and_histogram_limits(real_files: dict[str, Path]) -> None:
    path = real_files["PyramidalCell.ims"]
    ((data, meta, _),) = napari_get_reader(str(path))(str(path))  # type: ignore[misc]
    assert [level.shape for level in data] == [(1, 69, 254, 255), (1, 34, 127, 127)]
    np.testing.assert_array_equal(np.asarray(data[1][0]), h5py_level(path, 1, 0, 0))
    assert meta["contrast_limits"] == [0.0, 220.0]


def test_manifest_is_valid_and_registered() -> None:
    from importlib.metadata import entry_points

    import npe2

    (entry,) = [ep for ep in entry_points(group="napari.manifest") if ep.name == "ims-store"]
    manifest = npe2.PluginManifest.from_distribution("ims-store")
    assert entry.value == "ims_store:napari.yaml"
    reader = manifest.contributions.readers[0]
    assert reader.filename_patterns == ["*.ims"]
    assert manifest.contributions.commands[0].python_name == "ims_store.napari_reader:napari_get_reader"
