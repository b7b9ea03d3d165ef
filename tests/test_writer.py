"""write_ims: round trips through ImsStore and plain h5py, pyramid, histograms, metadata, safety."""

from __future__ import annotations

import pickle
import sys
from itertools import pairwise
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from helpers import assert_same_ims_content, h5py_counts, h5py_level
from hypothesis import given, settings
from hypothesis import strategies as st

from ims_store import DestinationExistsError, ImsStore, SourceError, WriteError, read_layout, write_ims


def independent_mean(level: np.ndarray, target: tuple[int, int, int]) -> np.ndarray:
    """Truncated mean of 2x2x2 (or 2x2, 2) blocks, written without ims_store: an axis halves iff
    the target is smaller."""
    steps = [2 if t < s else 1 for s, t in zip(level.shape, target, strict=True)]
    trimmed = level[: target[0] * steps[0], : target[1] * steps[1], : target[2] * steps[2]]
    if level.dtype.kind == "f":
        acc = np.zeros(target, dtype=level.dtype)
        for dz in range(steps[0]):
            for dy in range(steps[1]):
                for dx in range(steps[2]):
                    acc = acc + trimmed[dz :: steps[0], dy :: steps[1], dx :: steps[2]]
        return acc / level.dtype.type(np.prod(steps))
    total = trimmed.reshape(target[0], steps[0], target[1], steps[1], target[2], steps[2]).astype(np.int64)
    return (total.sum(axis=(1, 3, 5)) // int(np.prod(steps))).astype(level.dtype)


def expected_sizes(shape: tuple[int, int, int], itemsize: int) -> list[tuple[int, int, int]]:
    """Imaris' rule, spelled out again here: halve D when (10 D)^2 > A B; stop at 1 MiB."""
    sizes = [shape]
    while np.prod(sizes[-1]) > (1 << 20) // itemsize:
        z, y, x = sizes[-1]
        nz = z // 2 if z > 1 and (10 * z) ** 2 > x * y else z
        ny = y // 2 if y > 1 and (10 * y) ** 2 > x * z else y
        nx = x // 2 if x > 1 and (10 * x) ** 2 > y * z else x
        if (nz, ny, nx) == (z, y, x):
            break
        sizes.append((nz, ny, nx))
    return sizes


def _volume(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return (rng.random(shape, dtype=np.float32) * 1000).astype(dtype)
    top = min(np.iinfo(dtype).max, 70000)
    return rng.integers(0, top, shape, dtype=np.uint64).astype(dtype)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "float32"])
def test_round_trip_every_level(tmp_path: Path, dtype: str) -> None:
    data = _volume((2, 2, 40, 270, 190), dtype)
    path = write_ims(data, tmp_path / f"{dtype}.ims", axes="tczyx", voxel_size=(2.0, 0.3, 0.3))
    levels, times, chans = h5py_counts(path)
    assert (times, chans) == (2, 2)
    sizes = expected_sizes((40, 270, 190), np.dtype(dtype).itemsize)
    assert levels == len(sizes) >= 2
    root = zarr.open_group(ImsStore(path), mode="r")
    for t in range(2):
        for c in range(2):
            previous = data[t, c]
            np.testing.assert_array_equal(h5py_level(path, 0, t, c), previous)
            np.testing.assert_array_equal(root["0"][t, c], previous)
            for level in range(1, levels):
                expected = independent_mean(previous, sizes[level])
                got = h5py_level(path, level, t, c)
                assert got.shape == sizes[level]
                np.testing.assert_array_equal(got, expected, err_msg=f"level {level}")
                np.testing.assert_array_equal(root[str(level)][t, c], expected)
                previous = expected


@pytest.mark.parametrize(
    "shape",
    [(64, 128, 96), (128, 256, 192), (256, 512, 384), (1, 700, 1000), (1, 2000, 3000), (5, 1024, 1024)],
    ids=lambda s: "x".join(map(str, s)),
)
def test_level_sizes_follow_the_halving_rule(tmp_path: Path, shape: tuple[int, int, int]) -> None:
    import dask.array as da

    # uint16: a 1 MiB level holds 524288 voxels, so each of these shapes has several levels
    expected = expected_sizes(shape, 2)
    assert len(expected) >= 2
    data = da.zeros(shape, dtype=np.uint16, chunks=(16, -1, -1))
    path = write_ims(data, tmp_path / "sizes.ims", axes="zyx")
    assert [lvl.size for lvl in read_layout(path).levels] == expected
    with h5py.File(path, "r") as f:
        assert len(f["DataSet"]) == len(expected)
        for index, size in enumerate(expected):
            group = f[f"DataSet/ResolutionLevel {index}/TimePoint 0/Channel 0"]
            assert [int(b"".join(group.attrs[f"ImageSize{a}"])) for a in "ZYX"] == list(size)
            ds = group["Data"]
            assert all(d % c == 0 and d >= s for d, c, s in zip(ds.shape, ds.chunks, size, strict=True))


def test_two_dimensional_image(tmp_path: Path) -> None:
    data = _volume((600, 900), "uint16")
    path = write_ims(data, tmp_path / "plane.ims", axes="yx")
    lay = read_layout(path)
    assert lay.levels[0].size == (1, 600, 900)
    np.testing.assert_array_equal(h5py_level(path, 0, 0, 0)[0], data)


def _attr(group: h5py.Group, name: str) -> str:
    return b"".join(group.attrs[name]).decode()


def _levels_of(path: Path, t: int = 0, c: int = 0) -> list[tuple[h5py.Group, np.ndarray]]:
    """(channel group attributes and histograms, h5py's read of the level) for every level."""
    levels, _, _ = h5py_counts(path)
    out = []
    with h5py.File(path, "r") as f:
        for level in range(levels):
            group = f[f"DataSet/ResolutionLevel {level}/TimePoint {t}/Channel {c}"]
            tables = {k: group[k][...] for k in group if k.startswith("Histogram")}
            out.append(({**{k: _attr(group, k) for k in group.attrs}, **tables}, h5py_level(path, level, t, c)))
    return out


def test_integer_histograms_equal_numpy_counts_on_every_level(tmp_path: Path) -> None:
    u8 = _volume((1, 2, 40, 300, 210), "uint8", seed=3)
    u16 = (_volume((1, 1, 40, 300, 210), "uint16", seed=4) % 3000).astype(np.uint16)
    path8 = write_ims(u8, tmp_path / "h8.ims", axes="tczyx")
    path16 = write_ims(u16, tmp_path / "h16.ims", axes="tczyx")
    assert h5py_counts(path8)[0] >= 2 and h5py_counts(path16)[0] >= 2
    for c in range(2):
        for group, level in _levels_of(path8, 0, c):
            np.testing.assert_array_equal(group["Histogram"], np.bincount(level.ravel(), minlength=256))
            assert (group["HistogramMin"], group["HistogramMax"]) == ("0.000", "255.000")
            assert "Histogram1024" not in group
    for group, level in _levels_of(path16):
        top = max(int(level.max()), 256)  # values 0..max, at least 256, as ImarisWriter counts them
        exact = np.bincount(level.ravel(), minlength=top + 1)
        factor = -(-(top + 1) // 1024)
        coarse = [exact[i : i + factor].sum() for i in range(0, top + 1, factor)]
        np.testing.assert_array_equal(group["Histogram1024"], coarse)
        # 256 equal bins over 0..top + 1, bin by bin
        np.testing.assert_array_equal(group["Histogram"], np.histogram(level, bins=256, range=(0, top + 1))[0])
        for suffix in ("", "1024"):
            assert float(group[f"HistogramMin{suffix}"]) == 0.0
            assert float(group[f"HistogramMax{suffix}"]) == top


def test_uint16_histograms_and_blocks_equal_imariswriters(tmp_path: Path, real_files: dict[str, Path]) -> None:
    fixture = real_files["Minimal_IMS_File.ims"]
    with h5py.File(fixture, "r") as f:
        group = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"]
        data, chunks = group["Data"][...], group["Data"].chunks
        want = {k: group[k][...] for k in ("Histogram", "Histogram1024")}
        want_attrs = {k: _attr(group, k) for k in group.attrs if k.startswith("Histogram")}
    path = write_ims(data, tmp_path / "minimal.ims", axes="zyx")
    with h5py.File(path, "r") as f:
        group = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"]
        assert group["Data"].chunks == chunks == (1, 128, 128)
        for name, counts in want.items():
            np.testing.assert_array_equal(group[name][...], counts, err_msg=name)
        assert {k: _attr(group, k) for k in group.attrs if k.startswith("Histogram")} == want_attrs


def _assert_binned_like_numpy(counts: np.ndarray, values: np.ndarray, lo: float, hi: float) -> None:
    """The documented rule for uint32 / float32: 1024 bins over lo..hi, each value counted in the
    bin of a point at most 1/8 bin away; so bin k holds at least the values 1/8 bin inside its
    edges and at most those up to 1/8 bin outside them."""
    values = values[np.isfinite(values)].astype(np.float64)
    assert counts.shape == (1024,) and counts.sum() == values.size
    width = (hi - lo) / 1024
    edges = lo + np.arange(1025) * width
    inner = [np.count_nonzero((values >= a + width / 8) & (values < b - width / 8)) for a, b in pairwise(edges)]
    outer = [np.count_nonzero((values >= a - width / 8) & (values < b + width / 8)) for a, b in pairwise(edges)]
    outer[-1] = np.count_nonzero(values >= edges[-2] - width / 8)  # the last bin holds the maximum
    assert (np.asarray(inner) <= counts).all() and (counts <= np.asarray(outer)).all()


@pytest.mark.parametrize("dtype", ["float32", "uint32"])
def test_float_and_uint32_histograms_on_every_level(tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(9)
    if dtype == "float32":
        data = (rng.normal(0.0002, 0.0001, (40, 300, 210))).astype(np.float32)  # a tiny range: 3 decimals lose it
    else:
        data = rng.integers(10_000, 4_000_000_000, (40, 300, 210), dtype=np.uint64).astype(np.uint32)
    path = write_ims(data, tmp_path / f"{dtype}.ims", axes="zyx")
    levels = _levels_of(path)
    assert len(levels) >= 2
    for group, level in levels:
        lo, hi = float(level.min()), float(level.max())
        for suffix in ("", "1024"):  # full precision: the attributes parse back to the data's min and max
            assert (float(group[f"HistogramMin{suffix}"]), float(group[f"HistogramMax{suffix}"])) == (lo, hi)
        _assert_binned_like_numpy(group["Histogram1024"], level, lo, hi)
        np.testing.assert_array_equal(group["Histogram"], group["Histogram1024"].reshape(256, 4).sum(axis=1))


def test_nan_and_inf_in_float_data(tmp_path: Path) -> None:
    data = _volume((8, 40, 50), "float32", seed=2)
    data[0, 0, :5] = np.nan
    data[:, 1, 0] = np.nan  # NaN on every plane: the maximum projection of this pixel is NaN
    data[3, 2, :3] = np.inf
    data[4, 3, :2] = -np.inf
    path = write_ims(data, tmp_path / "nan.ims", axes="zyx", channel_colors=[(1.0, 1.0, 1.0)])
    np.testing.assert_array_equal(h5py_level(path, 0, 0, 0), data)  # NaN and inf kept as they are
    finite = data[np.isfinite(data)]
    with h5py.File(path, "r") as f:
        group = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"]
        assert (float(_attr(group, "HistogramMin")), float(_attr(group, "HistogramMax"))) == (
            float(finite.min()),
            float(finite.max()),
        )
        _assert_binned_like_numpy(group["Histogram1024"][...], data, float(finite.min()), float(finite.max()))
        window = [float(v) for v in _attr(f["DataSetInfo/Channel 0"], "ColorRange").split()]
        assert window == [float(finite.min()), float(finite.max())]
        rgba = f["Thumbnail/Data"][...].reshape(205, 256, 4)
    # 40 x 50 enlarged to 205 x 256; pixel (i, j) shows source pixel (i * 40 // 205, j * 50 // 256)
    assert rgba.shape == (205, 256, 4)
    assert rgba[1 * 205 // 40 + 1, 0, :3].tolist() == [0, 0, 0]  # all-NaN pixel: black
    assert rgba[2 * 205 // 40 + 1, 0, :3].tolist() == [255, 255, 255]  # +inf: full intensity


def test_metadata_lands_as_imaris_writes_it(tmp_path: Path) -> None:
    data = _volume((2, 6, 64, 64), "uint16")
    path = write_ims(
        data,
        tmp_path / "meta.ims",
        axes="czyx",
        voxel_size=(0.5, 0.0004, 0.0004),
        origin=(10.0, -3.0, 7.25),
        channel_names=["DAPI", "GFP"],
        channel_colors=[(0.0, 0.0, 1.0), (0.0, 1.0, 0.0)],
    )
    with h5py.File(path, "r") as f:

        def text(obj: h5py.HLObject, name: str) -> str:
            attr = h5py.h5a.open(obj.id, name.encode())
            tid = attr.get_type()
            assert tid.get_class() == h5py.h5t.STRING and tid.get_size() == 1
            assert tid.get_strpad() == h5py.h5t.STR_NULLTERM
            return b"".join(obj.attrs[name]).decode()

        for key in ("ImarisDataSet", "ImarisVersion", "DataSetDirectoryName", "ThumbnailDirectoryName"):
            text(f, key)
        assert f.attrs["NumberOfDataSets"].dtype == np.uint32
        image = f["DataSetInfo/Image"]
        assert float(text(image, "ExtMin0")) == 7.25 - 0.0002
        assert float(text(image, "ExtMin2")) == 10.0 - 0.25
        assert float(text(image, "ExtMax0")) == pytest.approx(7.25 - 0.0002 + 64 * 0.0004, abs=1e-12)
        assert (text(image, "X"), text(image, "Y"), text(image, "Z"), text(image, "Unit")) == ("64", "64", "6", "um")
        assert text(f["DataSetInfo/Channel 1"], "Name") == "GFP"
        assert text(f["DataSetInfo/Channel 0"], "Color") == "0.000 0.000 1.000"
        assert text(f["DataSetInfo/TimeInfo"], "DatasetTimePoints") == "1"
        assert text(f["DataSetInfo/TimeInfo"], "TimePoint1")
        thumb = f["Thumbnail/Data"]
        assert thumb.dtype == np.uint8 and thumb.shape == (256, 4 * 256)  # 64 x 64 enlarged, as ImarisWriter does
        for group in ("DataSet/ResolutionLevel 0/TimePoint 0/Channel 1",):
            assert text(f[group], "ImageSizeZ") == "6"
    lay = read_layout(path)
    assert lay.levels[0].voxel_size == pytest.approx((0.5, 0.0004, 0.0004), rel=1e-12)
    root = zarr.open_group(ImsStore(path), mode="r")
    translation = root.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][1]["translation"]
    assert translation[2:] == pytest.approx([10.0, -3.0, 7.25], abs=1e-12)


def test_thumbnail_scales_uint16_without_wrapping(tmp_path: Path) -> None:
    data = np.zeros((4, 300, 200), np.uint16)
    data[:, 100:200, 50:150] = 60000
    path = write_ims(data, tmp_path / "thumb.ims", axes="zyx")
    with h5py.File(path, "r") as f:
        rgba = f["Thumbnail/Data"][...].reshape(256, -1, 4)
    assert rgba.shape[:2] == (256, 171)
    assert rgba[128, 85, :3].tolist() == [255, 255, 255] and rgba[5, 5, :3].tolist() == [0, 0, 0]
    assert (rgba[..., 3] == 255).all()


@pytest.mark.parametrize(
    ("compression", "shuffle", "ids"),
    [("gzip", None, [2, 1]), ("lz4", None, [2, 32004]), ("none", False, []), ("gzip", False, [1])],
)
def test_compression_options(tmp_path: Path, compression: str, shuffle: bool | None, ids: list[int]) -> None:
    data = _volume((8, 70, 60), "uint16")
    path = write_ims(data, tmp_path / "c.ims", axes="zyx", compression=compression, shuffle=shuffle)
    with h5py.File(path, "r") as f:
        import hdf5plugin  # noqa: F401

        ds = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"]
        plist = ds.id.get_create_plist()
        assert [plist.get_filter(i)[0] for i in range(plist.get_nfilters())] == ids
        np.testing.assert_array_equal(ds[:8, :70, :60], data)


def test_destination_safety(tmp_path: Path) -> None:
    data = _volume((4, 32, 32), "uint8")
    path = write_ims(data, tmp_path / "a.ims", axes="zyx")
    before = path.read_bytes()
    with pytest.raises(DestinationExistsError, match="overwrite=True"):
        write_ims(data, path, axes="zyx")
    assert path.read_bytes() == before
    write_ims(data * 2, path, axes="zyx", overwrite=True)
    np.testing.assert_array_equal(h5py_level(path, 0, 0, 0), data * 2)


def test_failure_mid_write_leaves_nothing(tmp_path: Path) -> None:
    import dask.array as da

    def explode(block: np.ndarray, block_info=None) -> np.ndarray:
        if block_info[None]["chunk-location"][0] == 2:
            raise RuntimeError("disk on fire")
        return block

    data = da.ones((64, 64, 64), dtype=np.uint16, chunks=(16, 64, 64)).map_blocks(explode, dtype=np.uint16)
    with pytest.raises((WriteError, RuntimeError), match="disk on fire"):
        write_ims(data, tmp_path / "broken.ims", axes="zyx")
    assert list(tmp_path.iterdir()) == []


def test_refuses_values_that_would_wrap(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match="do not fit uint32"):
        write_ims(np.full((2, 4, 4), -5, np.int32), tmp_path / "neg.ims", axes="zyx")
    with pytest.raises(WriteError, match="overflow float32"):
        write_ims(np.full((2, 4, 4), 1e300), tmp_path / "big.ims", axes="zyx")
    assert list(tmp_path.iterdir()) == []
    path = write_ims(np.arange(32, dtype=np.int64).reshape(2, 4, 4) * 100_000, tmp_path / "ok.ims", axes="zyx")
    assert read_layout(path).dtype == np.uint32


@settings(max_examples=15, deadline=None)
@given(
    st.tuples(st.integers(1, 3), st.integers(1, 2), st.integers(1, 12), st.integers(1, 40), st.integers(1, 40)),
    st.sampled_from(["uint8", "uint16", "float32"]),
)
def test_any_small_shape_round_trips(tmp_path_factory: pytest.TempPathFactory, shape, dtype: str) -> None:
    data = _volume(shape, dtype, seed=sum(shape))
    path = write_ims(data, tmp_path_factory.mktemp("h") / "any.ims", axes="tczyx", chunks=(4, 16, 16))
    back = zarr.open_array(ImsStore(path), path="0", mode="r")[...]
    np.testing.assert_array_equal(back, data)


def test_progress_bar_only_when_asked_and_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _volume((4, 64, 64), "uint8")
    write_ims(data, tmp_path / "quiet.ims", axes="zyx")
    assert capsys.readouterr().err == ""
    # stderr is not a terminal (a log, a pipe): no bar, so no \r frames
    write_ims(data, tmp_path / "logged.ims", axes="zyx", progress=True)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    write_ims(data, tmp_path / "loud.ims", axes="zyx", progress=True)
    assert "writing loud.ims" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# dtypes: the documented rule, NIfTI scaling and byte order, checks while streaming


def _stored(path: Path) -> np.ndarray:
    """Level 0 as h5py reads it, in its stored dtype."""
    with h5py.File(path, "r") as f:
        assert f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"].dtype.byteorder in "<|="
    return h5py_level(path, 0, 0, 0)


@pytest.mark.parametrize(
    ("dtype", "stored"),
    [("int8", "float32"), ("int16", "float32"), ("bool", "uint8"), ("float16", "float32"), ("float64", "float32")],
)
def test_converted_dtypes_follow_the_documented_rule(tmp_path: Path, dtype: str, stored: str) -> None:
    rng = np.random.default_rng(1)
    if dtype == "bool":
        data = rng.random((6, 50, 40)) > 0.5
    elif np.dtype(dtype).kind == "i":
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, (6, 50, 40), endpoint=True).astype(dtype)
        data[0, 0, :2] = info.min, info.max  # the extremes are stored exactly
    else:
        data = (rng.normal(0, 1000, (6, 50, 40))).astype(dtype)
    back = _stored(write_ims(data, tmp_path / f"{dtype}.ims", axes="zyx"))
    assert back.dtype == np.dtype(stored)
    # int8/int16/float16 and bool convert exactly; float64 rounds to the nearest float32
    np.testing.assert_array_equal(back, data.astype(stored))
    if dtype != "float64":
        np.testing.assert_array_equal(back.astype(dtype), data)


@pytest.mark.parametrize(
    ("dtype", "stored"),
    [(">i2", "float32"), (">u2", "uint16"), (">f4", "float32"), (">f8", "float32"), (">u4", "uint32")],
)
def test_big_endian_arrays_never_wrap(tmp_path: Path, dtype: str, stored: str) -> None:
    data = np.arange(-5, 6 * 30 * 20 - 5).reshape(6, 30, 20)
    data = (data if np.dtype(dtype).kind in "if" else np.abs(data)).astype(dtype)
    back = _stored(write_ims(data, tmp_path / "big.ims", axes="zyx"))
    assert back.dtype == np.dtype(stored)
    np.testing.assert_array_equal(back, data.astype(stored))  # -5 stays -5.0, never 4294967291


@pytest.mark.parametrize("dtype", [">i4", ">i8", ">u8", "int64"])
def test_big_and_wide_integers_are_range_checked(tmp_path: Path, dtype: str) -> None:
    bad = -5 if np.dtype(dtype).kind == "i" else 2**40
    with pytest.raises(WriteError, match="do not fit uint32"):
        write_ims(np.full((2, 4, 4), bad, dtype), tmp_path / "bad.ims", axes="zyx")
    assert list(tmp_path.iterdir()) == []
    good = np.arange(32, dtype=dtype).reshape(2, 4, 4) * 100_000
    np.testing.assert_array_equal(_stored(write_ims(good, tmp_path / "ok.ims", axes="zyx")), good.astype(np.uint32))


def _nifti(path: Path, data: np.ndarray, slope: float = 1.0, inter: float = 0.0, endian: str = "<") -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(data, np.eye(4), header=nib.Nifti1Header(endianness=endian))
    img.set_data_dtype(data.dtype)
    img.header.set_slope_inter(slope, inter)
    nib.save(img, path)
    return path


def _nibabel_zyx(path: Path) -> np.ndarray:
    """nibabel's own read of a NIfTI with an identity affine, as (z, y, x)."""
    import nibabel as nib

    return np.asarray(nib.load(path).dataobj).transpose(2, 1, 0)


@pytest.mark.parametrize(
    ("dtype", "slope", "inter", "stored"),
    [
        ("float32", 2.0, 1.5, "float32"),  # float32 on disk, float64 from nibabel
        ("uint8", 0.5, -3.0, "float32"),  # used to raise TypeError
        ("uint16", 0.001, 0.0, "float32"),
        ("int16", 1.0, 0.0, "float32"),  # not scaled: int16, the documented rule
        ("uint8", 1.0, 0.0, "uint8"),  # not scaled: stays uint8
    ],
)
def test_scaled_nifti_lands_as_nibabel_reads_it(
    tmp_path: Path, dtype: str, slope: float, inter: float, stored: str
) -> None:
    rng = np.random.default_rng(4)
    raw = (rng.random((40, 30, 12)) * 200).astype(dtype)  # (x, y, z)
    source = _nifti(tmp_path / "scaled.nii.gz", raw, slope, inter)
    back = _stored(write_ims(source, tmp_path / "scaled.ims"))
    assert back.dtype == np.dtype(stored)
    expected = _nibabel_zyx(source)
    np.testing.assert_array_equal(back, expected.astype(stored))
    if slope != 1.0:
        assert not np.array_equal(back, raw.transpose(2, 1, 0).astype(stored))  # the scaling was applied


def test_big_endian_nifti(tmp_path: Path) -> None:
    raw = np.arange(-300, 40 * 30 * 12 - 300).reshape(40, 30, 12).astype(">i2")
    source = _nifti(tmp_path / "big.nii", raw, endian=">")
    back = _stored(write_ims(source, tmp_path / "big.ims"))
    assert back.dtype == np.float32 and back.min() == -300
    np.testing.assert_array_equal(back, _nibabel_zyx(source).astype(np.float32))


def test_a_source_delivering_another_dtype_is_refused(tmp_path: Path) -> None:
    import dask.array as da

    halves = da.ones((8, 16, 16), dtype=np.uint8, chunks=(4, 16, 16))
    lying = halves.map_blocks(lambda b: b * 0.5, dtype=np.uint8)  # says uint8, gives float64 0.5
    with pytest.raises(WriteError, match="delivered float64"):
        write_ims(lying, tmp_path / "lie.ims", axes="zyx")
    broken = halves.map_blocks(lambda b: b + "x", dtype=np.uint8)  # a TypeError while reading
    with pytest.raises(WriteError, match="writing failed"):
        write_ims(broken, tmp_path / "type.ims", axes="zyx")
    assert list(tmp_path.iterdir()) == []


def test_blocks_of_the_wrong_size_are_never_encoded() -> None:
    from ims_store.write.writer import encode_block

    with pytest.raises(WriteError, match="bytes"):
        encode_block(np.zeros((2, 4, 4), np.float64), (2, 4, 4), (), np.dtype("<f4"))
    with pytest.raises(WriteError, match="bytes"):
        encode_block(np.zeros((2, 4, 4), np.float32), (4, 4, 4), (), np.dtype("<f4"))


class _Reads:
    """An array-like that records the z ranges read from it (dask reads it with plain slices)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.ranges: list[tuple[int, int]] = []

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        out = self.data[key]
        if out.size:
            z = key[2].indices(self.shape[2])
            self.ranges.append((z[0], z[1]))
        return out


def test_the_source_is_read_once_and_checked_while_streaming(tmp_path: Path) -> None:
    import dask.array as da

    volume = _volume((1, 1, 40, 64, 48), "float32")
    reads = _Reads(volume)
    write_ims(da.from_array(reads, chunks=(1, 1, 8, 64, 48)), tmp_path / "once.ims", axes="tczyx")
    assert sorted(reads.ranges) == [(z, z + 8) for z in range(0, 40, 8)]  # no pass before the write

    reads.ranges.clear()
    with pytest.raises(DestinationExistsError):
        write_ims(da.from_array(reads, chunks=(1, 1, 8, 64, 48)), tmp_path / "once.ims", axes="tczyx")
    assert reads.ranges == []  # refused before reading anything

    late = np.zeros((1, 1, 40, 16, 16), np.int64)
    late[0, 0, -1, 0, 0] = -1  # only the last slab holds a value uint32 cannot store
    reads = _Reads(late)
    with pytest.raises(WriteError, match="do not fit uint32"):
        write_ims(da.from_array(reads, chunks=(1, 1, 8, 16, 16)), tmp_path / "late.ims", axes="tczyx")
    assert max(z1 for _, z1 in reads.ranges) == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["once.ims"]


def test_large_source_chunks_are_read_in_bounded_slabs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dask.array as da

    from ims_store.write import writer

    monkeypatch.setattr(writer, "SLAB_BYTES", 64 * 48 * 2 * 8)  # 8 planes of this volume
    volume = _volume((1, 1, 64, 48, 64), "uint16")
    big = _Reads(volume)  # one source chunk of 64 planes: read 8 planes at a time
    path = write_ims(
        da.from_array(big, chunks=(1, 1, 64, 48, 64)), tmp_path / "big.ims", axes="tczyx", chunks=(4, 16, 16)
    )
    assert sorted(big.ranges) == [(z, z + 8) for z in range(0, 64, 8)]
    np.testing.assert_array_equal(h5py_level(path, 0, 0, 0), volume[0, 0])
    small = _Reads(volume)  # chunks of 3 planes: merged, each read once
    write_ims(da.from_array(small, chunks=(1, 1, 3, 48, 64)), tmp_path / "small.ims", axes="tczyx", chunks=(4, 16, 16))
    assert sorted(small.ranges) == [(z, min(z + 3, 64)) for z in range(0, 64, 3)]


def test_nifti_sources_have_modest_z_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ims_store.write import sources

    monkeypatch.setattr(sources, "_NIFTI_CHUNK_BYTES", 40 * 30 * 2 * 5)  # 5 planes of this volume
    raw = _volume((40, 30, 23), "uint16")  # (x, y, z)
    path = _nifti(tmp_path / "chunked.nii.gz", raw)
    image = sources.open_source(path)
    assert image.data.chunks[2] == (5, 5, 5, 5, 3)
    copy = pickle.loads(pickle.dumps(image.data))  # as a dask.distributed worker gets it: the file reopens
    np.testing.assert_array_equal(copy[0, 0].compute(), raw.transpose(2, 1, 0))
    back = _stored(write_ims(path, tmp_path / "chunked.ims"))
    np.testing.assert_array_equal(back, raw.transpose(2, 1, 0))


def test_small_images_get_a_thumbnail_enlarged_by_nearest_neighbour(tmp_path: Path) -> None:
    data = _volume((3, 40, 64), "uint8", seed=8)
    path = write_ims(data, tmp_path / "small.ims", axes="zyx", channel_colors=[(1.0, 1.0, 1.0)])
    with h5py.File(path, "r") as f:
        rgba = f["Thumbnail/Data"][...].reshape(160, 256, 4)
    mip = data.max(axis=0).astype(np.float64)
    lo, hi = float(data.min()), float(data.max())  # the default display range
    rows, cols = np.arange(160) * 40 // 160, np.arange(256) * 64 // 256  # as ImarisWriter samples
    grey = np.rint(np.clip((mip[np.ix_(rows, cols)] - lo) / (hi - lo), 0, 1) * 255)
    for k in range(3):
        np.testing.assert_array_equal(rgba[..., k], grey)
    assert (rgba[..., 3] == 255).all()


class _PlaneReads(_Reads):
    """`_Reads` of a (z, y, x) array-like."""

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        out = self.data[key]
        if out.size:
            self.ranges.append(key[0].indices(self.shape[0])[:2])
        return out


def test_a_slab_of_a_3d_array_like_reads_only_its_planes() -> None:
    """The (t, c) axes a 3-D source lacks are added region by region: dask then asks the source
    for a slab's planes, not for the whole of every chunk the slab touches."""
    from ims_store.write.sources import open_source

    volume = _volume((300, 64, 64), "uint16")
    reads = _PlaneReads(volume)
    reads.chunks = (256, 64, 64)  # as a zarr array declares them
    data = open_source(reads).data
    np.testing.assert_array_equal(data[0, 0, 10:20].compute(), volume[10:20])
    assert sorted(reads.ranges) == [(10, 16), (16, 20)]  # within the dask chunks of 16 planes
    reads.ranges.clear()
    np.testing.assert_array_equal(data[0, :, 250:260, 5].compute(), volume[None, 250:260, 5])
    assert sorted(reads.ranges) == [(250, 256), (256, 260)]
    copy = pickle.loads(pickle.dumps(data))  # as a dask.distributed worker gets it
    np.testing.assert_array_equal(copy[0, 0, 290:].compute(), volume[290:])


def test_3d_zarr_sources_with_big_z_chunks_are_read_slab_by_slab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zarr array, and an OME-Zarr image whose dask chunks are its 256-plane zarr chunks, write
    as their voxels; the OME-Zarr's chunks are read a slab (8 planes here) at a time, never whole."""
    from ims_store.write import writer

    volume = _volume((300, 40, 48), "uint16")
    array = zarr.create_array(tmp_path / "plain.zarr", shape=volume.shape, chunks=(256, 64, 64), dtype="uint16")
    array[...] = volume
    np.testing.assert_array_equal(h5py_level(write_ims(array, tmp_path / "plain.ims"), 0, 0, 0), volume)

    group = zarr.open_group(tmp_path / "image.zarr", mode="w", zarr_format=2)
    group.create_array("0", shape=volume.shape, chunks=(256, 64, 64), dtype="uint16")[...] = volume
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]}],
        }
    ]
    planes: list[int] = []
    read = zarr.Array.__getitem__

    def counted(self: zarr.Array, key: tuple[slice, ...]) -> np.ndarray:
        out = read(self, key)
        planes.append(out.shape[0] if out.ndim == 3 else 1)
        return out

    monkeypatch.setattr(zarr.Array, "__getitem__", counted)
    monkeypatch.setattr(writer, "SLAB_BYTES", 40 * 48 * 2 * 8)  # 8 planes of this volume
    path = write_ims(tmp_path / "image.zarr", tmp_path / "image.ims", chunks=(8, 32, 32))
    assert max(planes) == 8 and sum(planes) == 300  # each plane once, 8 at a time
    np.testing.assert_array_equal(h5py_level(path, 0, 0, 0), volume)


def test_array_likes_numpy_takes(tmp_path: Path) -> None:
    """Nested lists (anything ``np.asarray`` makes numbers of) are arrays too."""
    path = write_ims([[1, 2], [3, 4]], tmp_path / "list.ims")
    with h5py.File(path, "r") as f:
        data = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"]
        np.testing.assert_array_equal(data[0, :2, :2], np.array([[1, 2], [3, 4]]))
    volume = [[[0.5, 1.5], [2.5, 3.5]]] * 3
    path = write_ims(volume, tmp_path / "floats.ims", axes="zyx")
    np.testing.assert_array_equal(ImsStore(path).to_dask(0, timepoint=0, channel=0).compute(), np.asarray(volume))
    for bad in ([[1, 2], [3]], [["a", "b"], ["c", "d"]], [1, 2, 3]):
        with pytest.raises(SourceError):
            write_ims(bad, tmp_path / "bad.ims")
    assert not (tmp_path / "bad.ims").exists()


# --------------------------------------------------------------------------------------------
# the work spread over threads: the same file to the byte, however many, and no copy of the input


def _fixed_stamps(count: int) -> list:
    import datetime as dt

    return [dt.datetime(2026, 1, 1, 0, 0, t) for t in range(count)]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_the_file_is_the_same_whatever_the_threads(tmp_path: Path, dtype: str) -> None:
    """Blocks are cut, compressed, counted and downsampled on a pool: what the file holds (every
    chunk's stored bytes, every histogram, attribute and the thumbnail) must not depend on how
    many threads there are or which finishes first."""
    rng = np.random.default_rng(3)
    data = (rng.normal(300, 40, (2, 37, 150, 130))).clip(0, 255 if dtype == "uint8" else 4000).astype(dtype)
    files = []
    for workers in (1, 2, 5):
        out = tmp_path / str(workers) / "same.ims"  # (the file's name is the image's name)
        out.parent.mkdir()
        write_ims(data, out, axes="czyx", chunks=(4, 32, 32), workers=workers, time_stamps=_fixed_stamps(1))
        files.append(out)
    assert_same_ims_content(files[0], files[1])
    assert_same_ims_content(files[0], files[2])


def test_a_numpy_array_is_written_as_its_dask_wrapper_is(tmp_path: Path) -> None:
    """The writer slices a numpy array in place; a dask array of the same values (read through
    dask, copies and all) must give the same file."""
    import dask.array as da

    data = np.random.default_rng(4).integers(0, 4000, (45, 200, 170), dtype=np.uint16)
    stamps = _fixed_stamps(1)
    (tmp_path / "numpy").mkdir()
    (tmp_path / "dask").mkdir()
    write_ims(data, tmp_path / "numpy/a.ims", axes="zyx", time_stamps=stamps)
    write_ims(da.from_array(data, chunks=(16, 200, 170)), tmp_path / "dask/a.ims", axes="zyx", time_stamps=stamps)
    assert_same_ims_content(tmp_path / "numpy/a.ims", tmp_path / "dask/a.ims")
    np.testing.assert_array_equal(h5py_level(tmp_path / "numpy/a.ims", 0, 0, 0), data)


def test_a_numpy_array_is_neither_copied_nor_hashed(tmp_path: Path) -> None:
    """dask.array.from_array copies a numpy array whole (and hashes it for a name); the writer
    must not: what it allocates while writing stays below the array's own size (it was twice
    that when it did)."""
    import tracemalloc

    data = np.random.default_rng(5).integers(0, 4000, (64, 512, 1024), dtype=np.uint16)  # 64 MiB
    write_ims(data[:4, :64, :64], tmp_path / "warm.ims", axes="zyx")  # imports and pools made once
    tracemalloc.start()
    try:
        write_ims(data, tmp_path / "big.ims", axes="zyx")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < data.nbytes, f"{peak / 2**20:.1f} MiB allocated writing a {data.nbytes / 2**20:.0f} MiB array"
    np.testing.assert_array_equal(h5py_level(tmp_path / "big.ims", 0, 0, 0), data)
