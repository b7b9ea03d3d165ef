"""write_ims: round trips through ImsStore and plain h5py, pyramid, histograms, metadata, safety."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from helpers import h5py_counts, h5py_level
from hypothesis import given, settings
from hypothesis import strategies as st

from ims_store import DestinationExistsError, ImsStore, WriteError, read_layout, write_ims


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
    [(64, 128, 96), (128, 256, 192), (256, 512, 384), (1, 700, 1000), (5, 300, 200)],
    ids=lambda s: "x".join(map(str, s)),
)
def test_level_sizes_follow_the_halving_rule(tmp_path: Path, shape: tuple[int, int, int]) -> None:
    import dask.array as da

    data = da.zeros(shape, dtype=np.uint8, chunks=(16, -1, -1))
    path = write_ims(data, tmp_path / "sizes.ims", axes="zyx")
    assert [lvl.size for lvl in read_layout(path).levels] == expected_sizes(shape, 1)
    with h5py.File(path, "r") as f:
        for index, size in enumerate(expected_sizes(shape, 1)):
            ds = f[f"DataSet/ResolutionLevel {index}/TimePoint 0/Channel 0/Data"]
            assert all(d % c == 0 and d >= s for d, c, s in zip(ds.shape, ds.chunks, size, strict=True))


def test_two_dimensional_image(tmp_path: Path) -> None:
    data = _volume((600, 900), "uint16")
    path = write_ims(data, tmp_path / "plane.ims", axes="yx")
    lay = read_layout(path)
    assert lay.levels[0].size == (1, 600, 900)
    np.testing.assert_array_equal(h5py_level(path, 0, 0, 0)[0], data)


def test_histograms_equal_numpy_counts(tmp_path: Path) -> None:
    u8 = _volume((1, 2, 20, 90, 70), "uint8", seed=3)
    path = write_ims(u8, tmp_path / "h8.ims", axes="tczyx")
    u16 = (_volume((1, 1, 20, 90, 70), "uint16", seed=4) % 3000).astype(np.uint16)
    path16 = write_ims(u16, tmp_path / "h16.ims", axes="tczyx")
    with h5py.File(path, "r") as f, h5py.File(path16, "r") as g:
        for c in range(2):
            group = f[f"DataSet/ResolutionLevel 0/TimePoint 0/Channel {c}"]
            np.testing.assert_array_equal(group["Histogram"][...], np.bincount(u8[0, c].ravel(), minlength=256))
            assert b"".join(group.attrs["HistogramMax"]) == b"255.000"
        group = g["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"]
        top = int(u16.max())
        h1024 = group["Histogram1024"][...]
        exact = np.bincount(u16.ravel(), minlength=top + 1)
        factor = -(-(top + 1) // 1024)
        np.testing.assert_array_equal(h1024, [exact[i : i + factor].sum() for i in range(0, top + 1, factor)])
        assert group["Histogram"].shape == (256,) and group["Histogram"][...].sum() == u16.size
        assert float(b"".join(group.attrs["HistogramMax"])) == top


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
        assert thumb.dtype == np.uint8 and thumb.shape[1] == 4 * thumb.shape[0] and max(thumb.shape[0], 64) == 64
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


def test_progress_bar_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _volume((4, 64, 64), "uint8")
    write_ims(data, tmp_path / "quiet.ims", axes="zyx")
    assert capsys.readouterr().err == ""
    write_ims(data, tmp_path / "loud.ims", axes="zyx", progress=True)
    assert "writing loud.ims" in capsys.readouterr().err
