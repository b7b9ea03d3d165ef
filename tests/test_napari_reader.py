"""The napari reader's layer data, tested without a display."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import h5py_level

from ims_store.fronts.napari_reader import napari_get_reader, reader_function
from ims_store.write.synthetic import make_example_ims


def test_reader_claims_only_ims(tmp_path: Path) -> None:
    assert napari_get_reader(str(tmp_path / "a.tif")) is None
    assert napari_get_reader([str(tmp_path / "a.ims"), str(tmp_path / "b.tif")]) is None
    assert napari_get_reader(str(tmp_path / "a.ims")) is not None


def test_one_layer_per_channel(real_files: dict[str, Path]) -> None:
    path = real_files["PtK2Cell.ims"]
    layers = napari_get_reader(str(path))(str(path))  # type: ignore[misc]
    assert [meta["name"] for _, meta, _ in layers] == ["Kinetochores", "Microtubules", "DNA", "Dynactin"]
    for index, (data, meta, kind) in enumerate(layers):
        # 32 x 256 x 256 fits a 3D texture: level 0 alone, which napari then draws in 3D too
        assert kind == "image" and not meta["multiscale"]
        assert data.shape == (1, 32, 256, 256)
        np.testing.assert_array_equal(np.asarray(data[0]), h5py_level(path, 0, 0, index))
        assert meta["units"] == ("pixel", "micrometer", "micrometer", "micrometer")  # one time point: no stamps
        assert meta["axis_labels"] == ("t", "z", "y", "x")
        assert meta["contrast_limits"] == [0.0, 247.0]
        voxel = (17.118 + 0.033) / 256
        assert meta["scale"] == pytest.approx((1.0, 0.2, voxel, voxel))
        assert meta["translate"] == pytest.approx((0.0, -0.1 + 0.1, -0.033 + voxel / 2, -0.033 + voxel / 2))
    colormap = layers[1][1]["colormap"]
    assert colormap["name"].startswith("Microtubules") and colormap["colors"][-1] == [0.0, 1.0, 0.0, 1.0]


def test_pyramid_levels_and_histogram_limits(real_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from ims_store.fronts import napari_reader

    path = real_files["PyramidalCell.ims"]
    layers = napari_get_reader(str(path))(str(path))  # type: ignore[misc]
    ((data, meta, _),) = [layer for layer in layers if layer[2] == "image"]  # (its objects: test_objects_napari)
    assert not meta["multiscale"] and data.shape == (1, 69, 254, 255)  # 4.5 MB: level 0 alone
    assert meta["contrast_limits"] == [0.0, 220.0]
    assert meta["name"] == "Channel 0"  # Imaris' "(name not specified)"
    # a volume larger than a 3D texture may hold keeps its pyramid
    monkeypatch.setattr(napari_reader, "FULL_3D_BYTES", 69 * 254 * 255 - 1)
    layers = napari_get_reader(str(path))(str(path))  # type: ignore[misc]
    ((data, meta, _),) = [layer for layer in layers if layer[2] == "image"]
    assert meta["multiscale"] and [level.shape for level in data] == [(1, 69, 254, 255), (1, 34, 127, 127)]
    np.testing.assert_array_equal(np.asarray(data[1][0]), h5py_level(path, 1, 0, 0))
    monkeypatch.setattr(napari_reader, "FULL_3D_BYTES", 1 << 40)
    monkeypatch.setattr(napari_reader, "MAX_TEXTURE", 254)
    ((data, meta, _),) = [layer for layer in napari_reader.reader_function(str(path)) if layer[2] == "image"]
    assert meta["multiscale"]


@pytest.mark.parametrize("name", ["PyramidalCell.ims"])
def test_unnamed_channels_are_shown_as_channel_n(real_files: dict[str, Path], name: str) -> None:
    """Real files name channels "(name not specified)", Imaris' placeholder: shown as Channel N."""
    path = real_files[name]
    with h5py.File(path, "r") as f:
        groups = sorted((g for g in f["DataSetInfo"] if g.startswith("Channel ")), key=lambda g: int(g.split()[1]))
        stored = [f[f"DataSetInfo/{g}"].attrs["Name"].tobytes().decode() for g in groups]
    assert set(stored) == {"(name not specified)"}
    names = [meta["name"] for _, meta, kind in reader_function(str(path)) if kind == "image"]
    assert names == [f"Channel {g.split()[1]}" for g in groups]


def test_time_in_seconds_where_the_file_has_stamps(tmp_path: Path) -> None:
    from ims_store import write_ims

    path = write_ims(np.zeros((3, 4, 8, 8), np.uint8), tmp_path / "t.ims", axes="tzyx", voxel_size=(1, 0.5, 0.5))
    (_, meta, _), *_ = reader_function(str(path))
    assert meta["units"] == ("second", "micrometer", "micrometer", "micrometer")
    assert meta["scale"][0] == pytest.approx(1.0)


def test_manifest_is_valid_and_registered() -> None:
    from importlib.metadata import entry_points

    import npe2

    (entry,) = [ep for ep in entry_points(group="napari.manifest") if ep.name == "ims-store"]
    manifest = npe2.PluginManifest.from_distribution("ims-store")
    assert entry.value == "ims_store:napari.yaml"
    reader = manifest.contributions.readers[0]
    assert reader.filename_patterns == ["*.ims"]
    assert manifest.contributions.commands[0].python_name == "ims_store.fronts.napari_reader:napari_get_reader"


def _h5py_color(path: Path, channel: int) -> list[float]:
    """The channel's ``Color`` attribute ("r g b" as a char array), read with h5py."""
    with h5py.File(path, "r") as f:
        text = b"".join(f[f"DataSetInfo/Channel {channel}"].attrs["Color"]).decode()
    return [float(v) for v in text.split()]


@pytest.fixture
def tinted_file(tmp_path: Path) -> Path:
    """Channels named like napari's built-in colormaps, tinted otherwise."""
    return make_example_ims(
        tmp_path / "tinted.ims",
        shape=(4, 32, 32),
        channels=2,
        timepoints=1,
        channel_names=["gray", "red"],
        channel_colors=[(1.0, 0.0, 0.3), (0.2, 0.6, 1.0)],
    )


@pytest.mark.parametrize("name", ["PtK2Cell.ims", "tinted"])
def test_colormaps_take_the_form_napari_accepts(name: str, real_files: dict[str, Path], tinted_file: Path) -> None:
    path = real_files[name] if name in real_files else tinted_file
    layers = reader_function(str(path))
    names = set()
    for index, (_, meta, _) in enumerate(layers):
        colormap = meta["colormap"]
        # napari's ensure_colormap builds Colormap(**value) from a dict holding "colors": only
        # Colormap's own fields may appear, colours as RGBA rows in 0..1
        assert isinstance(colormap, dict) and set(colormap) == {"name", "colors"}
        assert isinstance(colormap["name"], str) and colormap["name"].startswith(meta["name"])
        np.testing.assert_allclose(colormap["colors"], [[0.0, 0.0, 0.0, 1.0], [*_h5py_color(path, index), 1.0]])
        names.add(colormap["name"])
    # registered globally by name in napari: never a built-in's name, never shared
    assert len(names) == len(layers) and not names & {"gray", "red", "green", "blue"}


def test_napari_builds_the_colormaps(tinted_file: Path) -> None:
    colormaps = pytest.importorskip("napari.utils.colormaps")  # napari itself is an optional extra
    for index, (_, meta, _) in enumerate(reader_function(str(tinted_file))):
        built = colormaps.ensure_colormap(meta["colormap"])
        np.testing.assert_allclose(built.colors[-1], [*_h5py_color(tinted_file, index), 1.0], atol=1e-6)
        np.testing.assert_allclose(built.colors[0], [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(colormaps.ensure_colormap("gray").colors[-1], [1.0, 1.0, 1.0, 1.0])
