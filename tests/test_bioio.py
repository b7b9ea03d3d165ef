"""The bioio plugin, through bioio's own public API (`BioImage`), against h5py's reads.

Ground truth is h5py and numpy: data from `h5py_level`, pixel sizes from the ``ExtMin`` /
``ExtMax`` / ``ImageSize`` attributes, channel names from ``DataSetInfo``, the time interval
from ``TimeInfo``'s stamps.
"""

from __future__ import annotations

import datetime as dt
import functools
import sys
from collections.abc import Iterator
from importlib.metadata import requires
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import pytest
from bioio import BioImage, plugin_feasibility_report
from bioio.plugins import get_plugins
from bioio_base.exceptions import UnsupportedFileFormatError
from bioio_base.test_utilities import run_image_container_checks
from bioio_base.types import ureg
from fsspec.core import url_to_fs
from helpers import REAL_FILES, _canonical, h5py_counts, h5py_level, h5py_region
from http_files import FileServer
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from s3_server import S3Server
from synthetic_files import VARIANTS

from ims_store import (
    ImsFileNotFoundError,
    ImsLayout,
    ImsWarning,
    MissingDependencyError,
    NotHDF5Error,
    NotImarisError,
    TruncatedFileError,
)
from ims_store.fronts.bioio_plugin import Reader
from ims_store.write.synthetic import make_example_ims

# -- ground truth from the attributes, with h5py and numpy ------------------------------------


def _text(group: h5py.Group, name: str) -> str | None:
    if name not in group.attrs:
        return None
    value = group.attrs[name]
    return b"".join(value).decode("latin-1") if value.dtype.kind == "S" and value.ndim else str(value)


def _numbers(group: h5py.Group, prefix: str) -> list[int]:
    return sorted(int(n.split(" ")[-1]) for n in _canonical(group, prefix))


def h5py_voxel_sizes(path: Path) -> list[tuple[float, float, float]]:
    """(z, y, x) voxel size of every level: extents over the true size, each from the attributes."""
    with h5py.File(path, "r") as f:
        image = f["DataSetInfo/Image"]
        lo = np.array([float(_text(image, f"ExtMin{i}")) for i in (2, 1, 0)])
        hi = np.array([float(_text(image, f"ExtMax{i}")) for i in (2, 1, 0)])
        sizes = []
        for n in _numbers(f["DataSet"], "ResolutionLevel"):
            level = f[f"DataSet/ResolutionLevel {n}"]
            tp = level[f"TimePoint {_numbers(level, 'TimePoint')[0]}"]
            ch = tp[f"Channel {_numbers(tp, 'Channel')[0]}"]
            size = np.array([float(_text(ch, f"ImageSize{a}")) for a in "ZYX"])
            sizes.append(tuple(float(v) for v in (hi - lo) / size))
        return sizes


def h5py_channel_names(path: Path) -> list[str]:
    """``Name`` of ``DataSetInfo/Channel N`` for each channel N of the data, else ``Channel N``."""
    with h5py.File(path, "r") as f:
        tp = f["DataSet/ResolutionLevel 0"][f"TimePoint {_numbers(f['DataSet/ResolutionLevel 0'], 'TimePoint')[0]}"]
        names = []
        for n in _numbers(tp, "Channel"):
            group = f.get(f"DataSetInfo/Channel {n}")
            name = _text(group, "Name") if group is not None else None
            names.append(name or f"Channel {n}")
        return names


def h5py_mean_interval(path: Path) -> float | None:
    """Mean seconds between ``TimeInfo``'s stamps (``TimePoint1``...), None without two stamps."""
    _, times, _ = h5py_counts(path)
    with h5py.File(path, "r") as f:
        info = f.get("DataSetInfo/TimeInfo")
        stamps = [_text(info, f"TimePoint{i + 1}") if info is not None else None for i in range(times)]
    if times < 2 or any(not s for s in stamps):
        return None
    parsed = np.array([np.datetime64(s.replace(" ", "T")) for s in stamps])  # type: ignore[union-attr]
    return float((parsed[-1] - parsed[0]) / np.timedelta64(1, "us")) / 1e6 / (times - 1)


def assert_image_equals_h5py(img: BioImage, path: Path) -> None:
    """Every resolution level of ``img`` equals h5py's read of ``path``, with its pixel sizes."""
    levels, times, chans = h5py_counts(path)
    voxels = h5py_voxel_sizes(path)
    assert img.resolution_levels == tuple(range(levels))
    for level in range(levels):
        img.set_resolution_level(level)
        assert img.current_resolution_level == level
        assert img.dims.order == "TCZYX"
        assert isinstance(img.dask_data, da.Array)
        assert img.physical_pixel_sizes == pytest.approx(voxels[level], rel=1e-12)
        data = img.dask_data.compute()
        for t in range(times):
            for c in range(chans):
                expected = h5py_level(path, level, t, c)
                assert data.shape == (times, chans, *expected.shape)
                assert data.dtype == expected.dtype.newbyteorder("<")
                np.testing.assert_array_equal(data[t, c], expected, err_msg=f"level {level} t {t} c {c}")


# -- discovery --------------------------------------------------------------------------------


def test_bioio_finds_the_plugin_for_ims(synthetic_files: dict[str, Path]) -> None:
    entries = get_plugins(use_cache=False)[".ims"]
    assert [entry.entrypoint.name for entry in entries] == ["ims-store"]
    path = synthetic_files["uint8-gzip"]
    assert BioImage.determine_plugin(path).entrypoint.name == "ims-store"
    img = BioImage(path)
    assert isinstance(img.reader, Reader) and img.reader.name == "ims-store"
    assert img.scenes == ("Image:0",) and img.current_scene == "Image:0"


def test_the_distribution_names_bioio_base_once() -> None:
    # bioio reads the plugin's bioio-base requirement from the distribution named like the entry
    # point, and fails for every file (any format) unless it finds exactly one
    named = [r for r in requires("ims-store") or [] if r.startswith("bioio-base")]
    assert len(named) == 1, named


# -- data: every level equals h5py ------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
def test_synthetic_files_equal_h5py(synthetic_files: dict[str, Path], name: str) -> None:
    path = synthetic_files[name]
    assert_image_equals_h5py(BioImage(path), path)
    assert BioImage(path).channel_names == h5py_channel_names(path)


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_files_equal_h5py(real_files: dict[str, Path], name: str) -> None:
    path = real_files[name]
    assert_image_equals_h5py(BioImage(path), path)
    assert BioImage(path, reader=Reader).channel_names == h5py_channel_names(path)


@pytest.mark.real_file("PyramidalCell.ims")
def test_pyramidal_cell_levels_and_sizes(real_files: dict[str, Path]) -> None:
    path = real_files["PyramidalCell.ims"]
    img = BioImage(path)
    shapes = {}
    with h5py.File(path, "r") as f:
        for level in range(len(_canonical(f["DataSet"], "ResolutionLevel"))):
            ch = f[f"DataSet/ResolutionLevel {level}/TimePoint 0/Channel 0"]
            shapes[level] = (1, 1, *(int(_text(ch, f"ImageSize{a}")) for a in "ZYX"))
    assert img.resolution_level_dims == shapes
    img.set_resolution_level(1)
    assert img.physical_pixel_sizes.X == pytest.approx((57.841 + 0.114) / 127, rel=1e-12)


def test_data_is_lazy_until_computed(synthetic_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path = synthetic_files["uint16-shuffle-gzip-3-levels"]
    reads: list[tuple[int, ...]] = []
    from ims_store.store.zarr_store import LevelArray

    original = LevelArray.__getitem__

    def counting(self: LevelArray, key: tuple) -> np.ndarray:
        block = original(self, key)
        if block.size:  # dask asks for an empty block to learn the dtype
            reads.append(key)
        return block

    monkeypatch.setattr(LevelArray, "__getitem__", counting)
    img = BioImage(path)
    lazy = img.get_image_dask_data("ZYX", T=1, C=0)
    assert reads == [] and isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), h5py_level(path, 0, 1, 0))
    assert 0 < len(reads) < img.dask_data.npartitions


def test_selections_read_what_they_select(synthetic_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path = synthetic_files["12-timepoints-3-channels"]

    def whole_image(self: Reader) -> None:
        raise AssertionError("a selection read the whole image")

    monkeypatch.setattr(Reader, "_read_immediate", whole_image)
    img = BioImage(path)
    np.testing.assert_array_equal(img.get_image_data("ZYX", T=5, C=2), h5py_level(path, 0, 5, 2))
    # a list on two axes: every combination of the two
    got = img.get_image_data("TCZYX", T=[1, 7], C=[0, 2], Z=slice(1, 4))
    expected = np.stack([np.stack([h5py_level(path, 0, t, c)[1:4] for c in (0, 2)]) for t in (1, 7)])
    np.testing.assert_array_equal(got, expected)
    region = (slice(2, 4), slice(3, 20), slice(5, 9))
    got = img.get_image_data("YX", T=3, C=1, Z=2, Y=slice(3, 20), X=slice(5, 9))
    np.testing.assert_array_equal(got, h5py_region(path, 0, 3, 1, region)[0])


def _selection(size: int) -> st.SearchStrategy:
    index = st.integers(0, size - 1)
    return st.one_of(
        st.none(),
        index,
        st.lists(index, min_size=1, max_size=4),
        st.builds(slice, st.integers(0, size - 1), st.integers(1, size), st.integers(1, 3)),
    )


# (t, c, z, y, x) = (2, 2, 9, 66, 40) in blocks of (4, 32, 32): selections cross block borders
SELECTED, SHAPE = "uint32-shuffle-lz4", (2, 2, 9, 66, 40)


@functools.cache
def h5py_whole(path: Path) -> np.ndarray:
    _, times, chans = h5py_counts(path)
    return np.stack([np.stack([h5py_level(path, 0, t, c) for c in range(chans)]) for t in range(times)])


@settings(max_examples=30, deadline=None)
@given(st.tuples(*(_selection(n) for n in SHAPE)))
def test_any_selection_equals_numpy(synthetic_files: dict[str, Path], selection: tuple) -> None:
    path = synthetic_files[SELECTED]
    truth = h5py_whole(path)
    assert truth.shape == SHAPE
    kwargs = {dim: spec for dim, spec in zip("TCZYX", selection, strict=True) if spec is not None}
    order = "".join(dim for dim in "TCZYX" if not isinstance(kwargs.get(dim), int))
    assume(order)  # bioio returns at least one dimension
    # numpy, one axis at a time: an integer drops its axis, a list keeps its order and repeats
    expected = truth
    axis = 0
    for dim in "TCZYX":
        spec = kwargs.get(dim, slice(None))
        expected = expected[(slice(None),) * axis + (spec,)]
        axis += 0 if isinstance(spec, int) else 1
    img = BioImage(path, reader=Reader)
    np.testing.assert_array_equal(img.get_image_data(order, **kwargs), expected)
    if sum(isinstance(spec, list) for spec in kwargs.values()) <= 1:
        # bioio's lazy selection leaves lists on two axes to dask, which refuses them
        np.testing.assert_array_equal(img.get_image_dask_data(order, **kwargs).compute(), expected)


def test_bioio_reader_checks(synthetic_files: dict[str, Path]) -> None:
    """bioio_base's own suite for readers (serialization, scenes, levels, chunked reads)."""
    path = synthetic_files["uint16-shuffle-gzip-3-levels"]
    levels, times, chans = h5py_counts(path)
    for level in range(levels):
        run_image_container_checks(
            image_container=Reader(path),
            set_scene="Image:0",
            expected_scenes=("Image:0",),
            expected_current_scene="Image:0",
            set_resolution_level=level,
            expected_current_resolution_level=level,
            expected_resolution_levels=tuple(range(levels)),
            expected_shape=(times, chans, *h5py_level(path, level, 0, 0).shape),
            expected_dtype=np.dtype("uint16"),
            expected_dims_order="TCZYX",
            expected_channel_names=h5py_channel_names(path),
            expected_physical_pixel_sizes=h5py_voxel_sizes(path)[level],
            expected_metadata_type=dict,
        )


def test_remote_file_over_http(synthetic_files: dict[str, Path]) -> None:
    path = synthetic_files["uint32-shuffle-lz4"]
    server = FileServer(path.parent)
    try:
        url = server.url(path.name)
        img = BioImage(url)
        assert isinstance(img.reader, Reader)
        assert_image_equals_h5py(img, path)
        # bioio_base's own entry: a file system and a path in it
        assert Reader._is_supported_image(*url_to_fs(url)) is True
        assert Reader._is_supported_image(*url_to_fs(str(path))) is True
        (path.parent / "notes.txt").write_text("not an image")
        assert Reader._is_supported_image(*url_to_fs(server.url("notes.txt"))) is False
    finally:
        server.close()


def test_s3_object_with_fs_kwargs(synthetic_files: dict[str, Path]) -> None:
    import s3fs

    path = synthetic_files["uint16-shuffle-gzip-3-levels"]
    server = S3Server()
    fs = s3fs.S3FileSystem(**server.storage_options, skip_instance_cache=True)
    try:
        # a bucket of its own, removed after: moto keeps its buckets for the whole process
        fs.mkdir("bioio-bucket")
        fs.put(str(path), f"bioio-bucket/{path.name}")
        # bioio's fs_kwargs are the store's storage_options
        img = BioImage(f"s3://bioio-bucket/{path.name}", fs_kwargs=server.storage_options)
        assert isinstance(img.reader, Reader)
        assert_image_equals_h5py(img, path)
        with pytest.raises(ImsFileNotFoundError, match=r"s3://bioio-bucket/missing\.ims"):
            BioImage("s3://bioio-bucket/missing.ims", fs_kwargs=server.storage_options)
    finally:
        fs.rm("bioio-bucket", recursive=True)
        server.close()


# -- metadata ---------------------------------------------------------------------------------


def test_time_interval_from_the_time_stamps(synthetic_files: dict[str, Path], real_files: dict[str, Path]) -> None:
    path = synthetic_files["12-timepoints-3-channels"]
    step = h5py_mean_interval(path)
    assert step is not None and step > 0
    img = BioImage(path)
    assert img.time_interval == dt.timedelta(seconds=step)
    assert img.scale.T == pytest.approx(step)
    assert img.dimension_properties.T.unit == ureg.second
    meta = img.standard_metadata
    assert meta.timelapse and meta.timelapse_interval == dt.timedelta(seconds=step)
    assert meta.total_time_duration == dt.timedelta(seconds=step * 11)
    # one time point: no interval
    single = real_files["PtK2Cell.ims"]
    assert h5py_mean_interval(single) is None and BioImage(single).time_interval is None


def test_units_dates_and_metadata(real_files: dict[str, Path]) -> None:
    path = real_files["PtK2Cell.ims"]
    with h5py.File(path, "r") as f:
        image = f["DataSetInfo/Image"]
        unit, recorded = _text(image, "Unit"), _text(image, "RecordingDate")
        stored_names = [_text(f[f"DataSetInfo/Channel {c}"], "Name") for c in range(4)]
    img = BioImage(path)
    assert unit == "um"
    for axis in "ZYX":
        assert getattr(img.dimension_properties, axis) == ("space", ureg.micrometer)
    assert img.standard_metadata.imaging_datetime == dt.datetime.strptime(recorded, "%Y-%m-%d %H:%M:%S.%f")
    assert img.standard_metadata.pixel_size_x == pytest.approx(h5py_voxel_sizes(path)[0][2], rel=1e-12)
    meta = img.metadata
    assert meta["unit"] == unit and [ch["name"] for ch in meta["channels"]] == stored_names
    assert isinstance(img.xarray_dask_data.attrs["unprocessed"], ImsLayout)


def test_coordinates_are_physical_voxel_centres(synthetic_files: dict[str, Path]) -> None:
    path = synthetic_files["non-isotropic-halving"]
    with h5py.File(path, "r") as f:
        lo = [float(_text(f["DataSetInfo/Image"], f"ExtMin{i}")) for i in (2, 1, 0)]
    img = BioImage(path)
    for level, voxel in enumerate(h5py_voxel_sizes(path)):
        img.set_resolution_level(level)
        arr = img.xarray_dask_data
        for axis, start, size in zip("ZYX", lo, voxel, strict=True):
            expected = start + size / 2 + size * np.arange(arr.sizes[axis])
            np.testing.assert_allclose(arr.coords[axis].values, expected, rtol=1e-12, atol=1e-12)


# -- what is not an Imaris file ---------------------------------------------------------------


@pytest.fixture
def not_imaris(tmp_path: Path) -> Iterator[dict[str, Path]]:
    (tmp_path / "text.ims").write_text("not hdf5\n" * 100)
    with h5py.File(tmp_path / "plain.ims", "w") as f:
        f["x"] = np.arange(3)
    (tmp_path / "image.tif").write_bytes(b"II*\x00" + bytes(100))
    make_example_ims(tmp_path / "whole.ims", shape=(8, 64, 64), channels=1, timepoints=1, levels=1)
    data = (tmp_path / "whole.ims").read_bytes()
    (tmp_path / "cut.ims").write_bytes(data[: len(data) // 2])
    yield {p.name: p for p in tmp_path.iterdir()}


@pytest.mark.parametrize(("name", "error"), [("text.ims", NotHDF5Error), ("plain.ims", NotImarisError)])
def test_not_imaris_is_unsupported(not_imaris: dict[str, Path], name: str, error: type[Exception]) -> None:
    path = not_imaris[name]
    assert Reader.is_supported_image(path) is False
    # bioio tries its other readers, and says no reader supports the file
    with pytest.raises(UnsupportedFileFormatError, match=name):
        BioImage(path)
    # given explicitly, the reader says why (bioio wraps it)
    with pytest.raises(UnsupportedFileFormatError, match=f"{name}: .*not an (HDF5|Imaris) file"):
        BioImage(path, reader=Reader)
    with pytest.raises(error, match=f"{name}: "):
        Reader(path)


def test_other_formats_and_arrays_are_not_ours(not_imaris: dict[str, Path]) -> None:
    path = not_imaris["image.tif"]
    assert Reader.is_supported_image(path) is False
    report = plugin_feasibility_report(path)
    assert report["ims-store"].supported is False and report["ims-store"].error is None
    assert Reader.is_supported_image(np.zeros((2, 3))) is False
    with pytest.raises(TypeError, match="path or URL"):
        Reader(np.zeros((2, 3)))  # type: ignore[arg-type]


def test_a_lenient_file_warns_once(synthetic_files: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "noext.ims"
    path.write_bytes(synthetic_files["uint8-gzip"].read_bytes())
    with h5py.File(path, "r+") as f:
        del f["DataSetInfo/Image"].attrs["ExtMax1"]
    # bioio's question "is this file yours?" opens the file too; only the reader's opening warns
    with pytest.warns(ImsWarning, match="extents") as record:
        img = BioImage(path)
    assert len([w for w in record if issubclass(w.category, ImsWarning)]) == 1
    np.testing.assert_array_equal(img.get_image_data("ZYX", T=0, C=1), h5py_level(path, 0, 0, 1))


def test_missing_and_damaged_files_raise_ims_errors(not_imaris: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ImsFileNotFoundError, match=r"missing\.ims: no such file"):
        BioImage(tmp_path / "missing.ims")
    # an .ims file HDF5 cannot open: this reader's, and its error names the file and the fault
    cut = not_imaris["cut.ims"]
    assert Reader.is_supported_image(cut) is True
    with pytest.raises(TruncatedFileError, match=r"cut\.ims: the file is truncated"):
        BioImage(cut)


def test_missing_bioio_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.setitem(sys.modules, "bioio_base", None)
    monkeypatch.setitem(sys.modules, "bioio_base.reader_metadata", None)
    for module in [m for m in sys.modules if m.startswith("ims_store.fronts.bioio_plugin")]:
        monkeypatch.delitem(sys.modules, module)
    with pytest.raises(MissingDependencyError, match=r"ims-store\[bioio\]") as err:
        importlib.import_module("ims_store.fronts.bioio_plugin")
    assert isinstance(err.value, ImportError)


def test_reads_go_through_the_engine_not_dask(
    synthetic_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """get_image_data and data read through the engine's region read (no dask compute: the
    store's speed), and equal h5py's reads."""
    from ims_store.store.zarr_store import LevelArray

    def no_dask(self: LevelArray, key: tuple) -> np.ndarray:
        if any(isinstance(k, slice) and k != slice(0, 0) for k in key):  # (dask's dtype probe is empty)
            raise AssertionError("read through dask")
        return np.empty((0,) * 5, self.dtype)

    monkeypatch.setattr(LevelArray, "__getitem__", no_dask)
    path = synthetic_files["12-timepoints-3-channels"]
    img = BioImage(path)
    np.testing.assert_array_equal(img.get_image_data("ZYX", T=5, C=2), h5py_level(path, 0, 5, 2))
    np.testing.assert_array_equal(img.get_image_data("YX", T=3, C=1, Z=2), h5py_level(path, 0, 3, 1)[2])
    _, times, chans = h5py_counts(path)
    whole = np.stack([np.stack([h5py_level(path, 0, t, c) for c in range(chans)]) for t in range(times)])
    np.testing.assert_array_equal(img.data, whole)
    assert img.xarray_data.dims == ("T", "C", "Z", "Y", "X")
