"""TIFF and OME-TIFF files into Imaris files: files written by tifffile in tmp_path, the written
.ims read back with h5py and compared with the numpy arrays and metadata that went in."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import tracemalloc
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from helpers import h5py_counts, h5py_level
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ims_store import ImsFileNotFoundError, SelectionError, SourceError, write_ims
from ims_store.format.layout import ImsWarning
from ims_store.fronts.cli import main
from ims_store.write.sources import open_source


def _volume(shape: tuple[int, ...], dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    top = 250 if dtype == "uint8" else 4000
    return np.random.default_rng(seed).integers(0, top, shape).astype(dtype)


def _stored(path: Path) -> np.ndarray:
    """Every (time point, channel) of level 0, as h5py reads it: (t, c, z, y, x)."""
    _, times, channels = h5py_counts(path)
    return np.stack([np.stack([h5py_level(path, 0, t, c) for c in range(channels)]) for t in range(times)])


def _text(path: Path, group: str, name: str) -> str:
    with h5py.File(path, "r") as f:
        return b"".join(f[group].attrs[name]).decode()


def _extent_max(path: Path, start: float | tuple[float, ...] = 0.0) -> tuple[float, float, float]:
    """(z, y, x) ExtMax, once ExtMin is checked to be ``start`` (0 for a TIFF: no origin in it)."""
    low = [float(_text(path, "DataSetInfo/Image", f"ExtMin{i}")) for i in (2, 1, 0)]
    np.testing.assert_allclose(low, np.broadcast_to(start, 3))
    return tuple(float(_text(path, "DataSetInfo/Image", f"ExtMax{i}")) for i in (2, 1, 0))  # type: ignore[return-value]


def _channel(path: Path, c: int, name: str) -> str:
    return _text(path, f"DataSetInfo/Channel {c}", name)


def _stamps(path: Path, count: int) -> list[str]:
    return [_text(path, "DataSetInfo/TimeInfo", f"TimePoint{i + 1}") for i in range(count)]


# --------------------------------------------------------------------------------------------
# OME-TIFF


@pytest.mark.parametrize("compression", [None, "zlib", "lzw"])
def test_ome_tiff_5d_with_sizes_names_colours(tmp_path: Path, compression: str | None) -> None:
    data = _volume((2, 3, 5, 40, 33))
    tif = tmp_path / "cells.ome.tif"
    colours = [-16776961, 16711935, 65535]  # OME's signed RGBA: red, green, blue
    tifffile.imwrite(
        tif,
        data,
        compression=compression,
        metadata={
            "axes": "TCZYX",
            "PhysicalSizeX": 0.2,
            "PhysicalSizeY": 0.25,
            "PhysicalSizeZ": 1.5,
            "TimeIncrement": 2.5,
            "Channel": {"Name": ["DAPI", "GFP", "RFP"], "Color": colours},
        },
    )
    out = write_ims(tif, tmp_path / "cells.ims")
    np.testing.assert_array_equal(_stored(out), data)
    np.testing.assert_allclose(_extent_max(out), (5 * 1.5, 40 * 0.25, 33 * 0.2))
    assert _text(out, "DataSetInfo/Image", "Unit") == "um"
    assert [_channel(out, c, "Name") for c in range(3)] == ["DAPI", "GFP", "RFP"]
    assert [_channel(out, c, "Color") for c in range(3)] == [
        "1.000 0.000 0.000",
        "0.000 1.000 0.000",
        "0.000 0.000 1.000",
    ]
    assert _stamps(out, 2) == ["2000-01-01 00:00:00.000", "2000-01-01 00:00:02.500"]


def test_ome_units_are_brought_to_one(tmp_path: Path) -> None:
    """Each axis may have its own unit: the file gets x's, the others converted to it."""
    data = _volume((4, 10, 12))
    tif = tmp_path / "units.ome.tif"
    metadata = {"axes": "ZYX", "PhysicalSizeX": 80.0, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 80.0}
    metadata |= {"PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 0.5, "PhysicalSizeZUnit": "µm"}
    tifffile.imwrite(tif, data, metadata=metadata)
    out = write_ims(tif, tmp_path / "units.ims")
    assert _text(out, "DataSetInfo/Image", "Unit") == "nm"
    np.testing.assert_allclose(_extent_max(out), (4 * 500.0, 10 * 80.0, 12 * 80.0))


def test_ome_rgb_samples_are_channels(tmp_path: Path) -> None:
    rgb = _volume((4, 20, 30, 3), "uint8", seed=3)
    tif = tmp_path / "rgb.ome.tif"
    tifffile.imwrite(tif, rgb, photometric="rgb", metadata={"axes": "ZYXS", "PhysicalSizeX": 0.5})
    out = write_ims(tif, tmp_path / "rgb.ims")
    np.testing.assert_array_equal(_stored(out)[0], rgb.transpose(3, 0, 1, 2))
    assert _extent_max(out)[2] == 30 * 0.5


def test_multi_series_ome_tiff(tmp_path: Path) -> None:
    first = _volume((2, 16, 24), "uint8", seed=1)
    second = _volume((3, 2, 8, 12), seed=2)
    tif = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(tif, ome=True) as writer:
        writer.write(first, metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "Name": "overview"})
        writer.write(
            second,
            metadata={
                "axes": "CZYX",
                "PhysicalSizeX": 2.0,
                "PhysicalSizeY": 2.0,
                "PhysicalSizeZ": 3.0,
                "Name": "detail",
                "Channel": {"Name": ["a", "b", "c"]},
            },
        )
    one = write_ims(tif, tmp_path / "one.ims")
    np.testing.assert_array_equal(_stored(one)[0, 0], first)
    np.testing.assert_allclose(_extent_max(one), (2 * 1.0, 16 * 0.5, 24 * 0.5))
    two = write_ims(tif, tmp_path / "two.ims", series=1)
    np.testing.assert_array_equal(_stored(two)[0], second)
    np.testing.assert_allclose(_extent_max(two), (2 * 3.0, 8 * 2.0, 12 * 2.0))
    assert [_channel(two, c, "Name") for c in range(3)] == ["a", "b", "c"]
    assert _text(two, "DataSetInfo/Image", "Name") == "detail"
    with pytest.raises(SelectionError, match=r"series 2 does not exist; the file has series 0\.\.1") as err:
        write_ims(tif, tmp_path / "three.ims", series=2)
    assert err.value.path == str(tif)
    assert not (tmp_path / "three.ims").exists()


def test_pyramidal_ome_tiff_level_0_and_our_own_pyramid(tmp_path: Path) -> None:
    """Level 0 of the TIFF's pyramid is written and the .ims pyramid built from it, as from the
    same numpy array; ``level=1`` takes the TIFF's own level 1, with twice the voxel size."""
    data = _volume((2, 512, 768), seed=4)  # large enough for Imaris' rule to want a level 1
    tif = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(tif, ome=True) as writer:
        meta = {"axes": "ZYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3, "PhysicalSizeZ": 1.0}
        writer.write(data, subifds=2, tile=(128, 128), metadata=meta)
        writer.write(data[:, ::2, ::2], subfiletype=1, tile=(128, 128))
        writer.write(data[:, ::4, ::4], subfiletype=1, tile=(64, 64))
    out = write_ims(tif, tmp_path / "pyramid.ims")
    same = write_ims(data, tmp_path / "numpy.ims")
    levels = h5py_counts(same)[0]
    assert levels > 1 and h5py_counts(out)[0] == levels
    for level in range(levels):
        np.testing.assert_array_equal(h5py_level(out, level, 0, 0), h5py_level(same, level, 0, 0))
    np.testing.assert_array_equal(h5py_level(out, 0, 0, 0), data)
    image = open_source(tif, level=1)
    np.testing.assert_array_equal(image.data[0, 0].compute(), data[:, ::2, ::2])
    np.testing.assert_allclose(image.voxel_size, (1.0, 0.6, 0.6))
    with pytest.raises(SelectionError, match=r"level 3 does not exist; series 0 has pyramid levels 0\.\.2"):
        open_source(tif, level=3)


# --------------------------------------------------------------------------------------------
# ImageJ hyperstacks and plain TIFF


@pytest.mark.parametrize("unit", ["um", "micron", "\\u00B5m"])
def test_imagej_hyperstack(tmp_path: Path, unit: str) -> None:
    data = _volume((2, 4, 3, 30, 20), seed=5)  # (t, z, c, y, x), ImageJ's order
    tif = tmp_path / "hyper.tif"
    luts = [np.zeros((3, 256), np.uint8) for _ in range(3)]
    for k, lut in enumerate(luts):
        lut[k] = np.arange(256)  # red, green, blue ramps
    tifffile.imwrite(
        tif,
        data,
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.25),  # pixels per unit: x 0.5, y 0.25
        metadata={
            "axes": "TZCYX",
            "spacing": 2.0,
            "unit": unit,
            "finterval": 1.5,
            "LUTs": luts,
            "Ranges": (10.0, 1000.0, 20.0, 2000.0, 30.0, 3000.0),
        },
    )
    out = write_ims(tif, tmp_path / "hyper.ims")
    np.testing.assert_array_equal(_stored(out), data.transpose(0, 2, 1, 3, 4))
    np.testing.assert_allclose(_extent_max(out), (4 * 2.0, 30 * 0.25, 20 * 0.5))
    assert _text(out, "DataSetInfo/Image", "Unit") == "um"
    assert [_channel(out, c, "Color") for c in range(3)] == [
        "1.000 0.000 0.000",
        "0.000 1.000 0.000",
        "0.000 0.000 1.000",
    ]
    assert [_channel(out, c, "ColorRange") for c in range(3)] == ["10 1000", "20 2000", "30 3000"]
    assert _stamps(out, 2) == ["2000-01-01 00:00:00.000", "2000-01-01 00:00:01.500"]


def test_imagej_rgb_stack(tmp_path: Path) -> None:
    rgb = _volume((4, 20, 30, 3), "uint8", seed=6)
    tif = tmp_path / "rgb.tif"
    tifffile.imwrite(tif, rgb, imagej=True, photometric="rgb", metadata={"axes": "ZYXS"})
    out = write_ims(tif, tmp_path / "rgb.ims")
    np.testing.assert_array_equal(_stored(out)[0], rgb.transpose(3, 0, 1, 2))


def test_2d_tiff_with_a_voxel_size(tmp_path: Path) -> None:
    plane = _volume((50, 70), "uint8", seed=7)
    tif = tmp_path / "plane.tif"
    tifffile.imwrite(tif, plane)
    out = write_ims(tif, tmp_path / "plane.ims", voxel_size=(1.0, 0.4, 0.2))
    np.testing.assert_array_equal(_stored(out), plane[None, None, None])
    np.testing.assert_allclose(_extent_max(out), (1.0, 50 * 0.4, 70 * 0.2))


@pytest.mark.parametrize("shaped", [True, False], ids=["tifffile-shaped", "plain-pages"])
def test_3d_page_stack_is_z(tmp_path: Path, shaped: bool) -> None:
    """A stack of pages with no metadata saying what they are (tifffile's Q or I axis) is z."""
    stack = _volume((7, 24, 18), "float32", seed=8)
    tif = tmp_path / "stack.tiff"
    tifffile.imwrite(tif, stack, photometric="minisblack", metadata={} if shaped else None)
    with tifffile.TiffFile(tif) as check:
        assert check.series[0].axes[0] in "QI"
    out = write_ims(tif, tmp_path / "stack.ims")
    np.testing.assert_array_equal(_stored(out)[0, 0], stack)
    assert _extent_max(out) == (7.0, 24.0, 18.0)  # voxel size 1 where nothing says otherwise


def test_axes_name_what_the_file_does_not(tmp_path: Path) -> None:
    stack = _volume((5, 12, 16), seed=9)
    tif = tmp_path / "movie.tif"
    tifffile.imwrite(tif, stack, photometric="minisblack")
    out = write_ims(tif, tmp_path / "movie.ims", axes="tyx")
    np.testing.assert_array_equal(_stored(out)[:, 0, 0], stack)
    assert h5py_counts(out)[1:] == (5, 1)
    for bad in ("zy", "tzz", "tyq"):
        with pytest.raises(SourceError, match=r"do not fit this TIFF .*shape \(5, 12, 16\)") as err:
            write_ims(tif, tmp_path / "bad.ims", axes=bad)
        assert err.value.path == str(tif)


def test_big_endian_tiff(tmp_path: Path) -> None:
    stack = _volume((3, 10, 11), seed=10)
    tif = tmp_path / "big-endian.tif"
    tifffile.imwrite(tif, stack, byteorder=">", photometric="minisblack")
    np.testing.assert_array_equal(_stored(write_ims(tif, tmp_path / "be.ims"))[0, 0], stack)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order=st.permutations("TCZ"),
    sizes=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4)),
    yx=st.tuples(st.integers(1, 9), st.integers(2, 9)),  # tifffile writes no OME image 1 pixel wide
    dtype=st.sampled_from(["uint8", "uint16", "float32"]),
)
def test_ome_axis_orders(tmp_path_factory: pytest.TempPathFactory, order, sizes, yx, dtype) -> None:  # type: ignore[no-untyped-def]
    """Any OME dimension order and sizes (length-1 axes included) land as (t, c, z, y, x)."""
    tmp = tmp_path_factory.mktemp("orders")
    by_axis = dict(zip("TCZ", sizes, strict=True))
    axes = "".join(order) + "YX"
    data = _volume(tuple(by_axis[a] for a in order) + yx, dtype, seed=sum(sizes))
    tif = tmp / "any.ome.tif"
    tifffile.imwrite(tif, data, photometric="minisblack", metadata={"axes": axes})
    expected = data.transpose([axes.index(a) for a in "TCZYX"])
    np.testing.assert_array_equal(open_source(tif).data.compute(), expected)
    np.testing.assert_array_equal(_stored(write_ims(tif, tmp / "any.ims")), expected)


# --------------------------------------------------------------------------------------------
# errors


def test_files_that_are_not_tiff(tmp_path: Path) -> None:
    text = tmp_path / "notes.tif"
    text.write_text("not an image\n" * 20)
    with pytest.raises(SourceError, match="not a readable TIFF file") as err:
        write_ims(text, tmp_path / "notes.ims")
    assert err.value.path == str(text)
    with pytest.raises(ImsFileNotFoundError) as missing:
        write_ims(tmp_path / "absent.ome.tiff", tmp_path / "absent.ims")
    assert missing.value.path == str(tmp_path / "absent.ome.tiff")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tif"]


def test_axes_that_do_not_map(tmp_path: Path) -> None:
    """Channels of RGB images: two axes would be channels."""
    tif = tmp_path / "channels-of-rgb.ome.tif"
    tifffile.imwrite(tif, _volume((2, 20, 30, 3), "uint8"), photometric="rgb", metadata={"axes": "CYXS"})
    with pytest.raises(SourceError, match=r"cannot tell which of t, c, z, y, x.*'CYXS'.*axes=") as err:
        open_source(tif)
    assert err.value.path == str(tif)
    image = open_source(tif, axes="tyxc")  # what the user says
    assert image.data.shape == (2, 3, 1, 20, 30)


def test_series_is_for_tiff_only(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="series= applies to TIFF files only"):
        write_ims(np.zeros((2, 8, 8), np.uint8), tmp_path / "a.ims", series=1)


def test_a_compression_needing_imagecodecs_without_it(tmp_path: Path) -> None:
    """Without imagecodecs an LZW file is refused up front, naming the extra to install."""
    tif = tmp_path / "lzw.tif"
    tifffile.imwrite(tif, _volume((3, 16, 16)), compression="lzw", photometric="minisblack")
    code = (
        "import sys; sys.modules['imagecodecs'] = None\n"  # an import of it fails, as when not installed
        "from ims_store import MissingDependencyError, write_ims\n"
        "try:\n"
        f"    write_ims({str(tif)!r}, {str(tmp_path / 'lzw.ims')!r})\n"
        "except MissingDependencyError as err:\n"
        "    print('refused:', err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.startswith(f"refused: {tif}: ") and "ims-store[tiff]" in done.stdout, done.stdout + done.stderr
    assert not (tmp_path / "lzw.ims").exists()


def test_ome_images_that_cannot_be_paired_with_series_give_no_metadata(tmp_path: Path) -> None:
    """An OME image without data makes no series: with two images of the same name and size
    left for one series, the voxel size is not guessed, and a warning says so."""
    data = _volume((2, 8, 8))
    tif = tmp_path / "odd.ome.tif"
    tifffile.imwrite(tif, data, photometric="minisblack", metadata={"axes": "ZYX", "PhysicalSizeX": 0.5})
    with tifffile.TiffFile(tif) as f:
        xml = f.ome_metadata
    image = xml[xml.index("<Image ") : xml.index("</Image>") + len("</Image>")]
    copy = image.replace('ID="Image:0"', 'ID="Image:1"').replace('PhysicalSizeX="0.5"', 'PhysicalSizeX="9"')
    copy = copy.replace('<TiffData IFD="0" PlaneCount="2"/>', "")
    assert copy != image
    tifffile.tiffcomment(tif, xml.replace("</Image>", "</Image>" + copy, 1).encode())
    with pytest.warns(ImsWarning, match="cannot be told apart"):
        source = open_source(tif)
    assert source.voxel_size is None
    np.testing.assert_array_equal(source.data[0, 0].compute(), data)


# --------------------------------------------------------------------------------------------
# reading: bounded, and on other processes


def test_a_tiff_larger_than_a_slab_is_read_slab_by_slab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each page is read once, 8 at a time (the slab), and memory stays far below the file's
    size: the file is never read whole."""
    from ims_store.write import tiff_source, writer

    planes, y, x = 384, 128, 160
    stack = _volume((planes, y, x), seed=11)
    tif = tmp_path / "long.tif"
    tifffile.imwrite(tif, stack, photometric="minisblack")
    del stack
    size = planes * y * x * 2  # 15 MiB of voxels
    monkeypatch.setattr(writer, "SLAB_BYTES", y * x * 2 * 8)  # 8 planes
    write_ims(tif, tmp_path / "warm-up.ims", chunks=(8, 32, 32))  # imports and caches out of the count

    reads: list[tuple[int, ...]] = []
    read = tiff_source._TiffVoxels.__getitem__

    def counted(self: tiff_source._TiffVoxels, key: object) -> np.ndarray:
        out = read(self, key)
        if out.size:
            reads.append(out.shape)
        return out

    monkeypatch.setattr(tiff_source._TiffVoxels, "__getitem__", counted)
    tracemalloc.start()
    try:
        out = write_ims(tif, tmp_path / "long.ims", chunks=(8, 32, 32))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < size / 2, f"peak {peak / 2**20:.1f} MiB for {size / 2**20:.1f} MiB of voxels"
    assert max(r[0] for r in reads) == 8 and sum(r[0] for r in reads) == planes
    np.testing.assert_array_equal(h5py_level(out, 0, 0, 0), tifffile.imread(tif))


def test_tiff_sources_travel_to_other_processes(tmp_path: Path) -> None:
    """A dask.distributed worker gets the source pickled: the file opens again there."""
    data = _volume((2, 6, 10, 12), seed=12)
    tif = tmp_path / "travel.ome.tif"
    tifffile.imwrite(tif, data, metadata={"axes": "CZYX"})
    copy = pickle.loads(pickle.dumps(open_source(tif).data))
    np.testing.assert_array_equal(copy[0, 1, 2:5].compute(), data[1, 2:5])


# --------------------------------------------------------------------------------------------
# the command line


def test_convert_tiff_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    movie = _volume((5, 12, 16), seed=13)
    tif = tmp_path / "movie.tif"
    tifffile.imwrite(tif, movie, photometric="minisblack")
    out = tmp_path / "movie.ims"
    argv = ["convert", str(tif), str(out), "--axes", "tyx", "--voxel-size", "2,0.5,0.25", "--quiet"]
    assert main(argv) == 0
    np.testing.assert_array_equal(_stored(out)[:, 0, 0], movie)
    np.testing.assert_allclose(_extent_max(out), (2.0, 12 * 0.5, 16 * 0.25))

    two = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(two, ome=True) as writer:
        writer.write(movie[:2], metadata={"axes": "ZYX"})
        writer.write(movie[2:], metadata={"axes": "ZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1})
    assert main(["convert", str(two), str(tmp_path / "second.ims"), "--series", "1", "--quiet"]) == 0
    np.testing.assert_array_equal(_stored(tmp_path / "second.ims")[0, 0], movie[2:])
    np.testing.assert_allclose(_extent_max(tmp_path / "second.ims"), (3.0, 12 * 0.1, 16 * 0.1))
    capsys.readouterr()

    assert main(["convert", str(two), str(tmp_path / "none.ims"), "--series", "5", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(two) in err and "series 5 does not exist" in err, err
    assert main(["convert", str(tif), str(tmp_path / "none.ims"), "--axes", "cz", "--quiet"]) == 2
    assert str(tif) in capsys.readouterr().err
    not_tiff = tmp_path / "fake.tif"
    not_tiff.write_bytes(b"\x00" * 64)
    assert main(["convert", str(not_tiff), str(tmp_path / "none.ims"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{not_tiff}: not a readable TIFF file" in err, err
    assert not (tmp_path / "none.ims").exists()


def test_tiff_options_are_refused_where_they_do_not_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_ims(np.zeros((2, 8, 8), np.uint8), tmp_path / "source.ims")
    for option in (["--series", "1"], ["--axes", "zyx"]):
        assert main(["convert", str(source), str(tmp_path / "copy.ims"), *option]) == 2
        assert f"{option[0]} applies to TIFF input only" in capsys.readouterr().err
    assert main(["convert", str(source), str(tmp_path / "out.ome.zarr"), "--voxel-size", "1,1,1"]) == 2
    assert "--voxel-size does not apply to OME-Zarr output" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", str(source), str(tmp_path / "copy.ims"), "--voxel-size", "1,0,1"])
    assert "expected three positive numbers" in capsys.readouterr().err
    # --voxel-size replaces any source's; the centre of the first voxel stays where the source has it (0.5)
    assert main(["convert", str(source), str(tmp_path / "copy.ims"), "--voxel-size", "3,2,1", "--quiet"]) == 0
    np.testing.assert_allclose(_extent_max(tmp_path / "copy.ims", (-1.0, -0.5, 0.0)), (5.0, 15.5, 8.0))


def test_units_imaris_has_no_symbol_for(tmp_path: Path) -> None:
    """Sizes in a unit Imaris cannot say are not taken (with a warning); ImageJ sizes with no
    unit keep their proportions in the default unit."""
    data = _volume((3, 10, 12))
    ome = tmp_path / "inches.ome.tif"
    tifffile.imwrite(ome, data, metadata={"axes": "ZYX", "PhysicalSizeX": 0.001, "PhysicalSizeXUnit": "in"})
    with pytest.warns(ImsWarning, match=r"inches\.ome\.tif: the OME-XML gives pixel sizes in in,"):
        assert open_source(ome).voxel_size is None
    imagej = tmp_path / "inches.tif"
    tifffile.imwrite(imagej, data, imagej=True, resolution=(100.0, 100.0), metadata={"unit": "inch"})
    with pytest.warns(ImsWarning, match="in inch, which Imaris has no unit for"):
        assert open_source(imagej).voxel_size is None
    plain = tmp_path / "no-unit.tif"
    tifffile.imwrite(plain, data, imagej=True, resolution=(2.0, 4.0), metadata={"axes": "ZYX", "spacing": 3.0})
    out = write_ims(plain, tmp_path / "no-unit.ims")
    np.testing.assert_allclose(_extent_max(out), (3 * 3.0, 10 * 0.25, 12 * 0.5))
    assert _text(out, "DataSetInfo/Image", "Unit") == "um"


def test_time_stamps_follow_the_axes_given(tmp_path: Path) -> None:
    """An interval in the file stamps every time point of the image as read: here the pages,
    made time points by axes=."""
    tif = tmp_path / "interval.ome.tif"
    tifffile.imwrite(tif, _volume((4, 6, 8)), metadata={"axes": "ZYX", "TimeIncrement": 0.5})
    assert open_source(tif).time_stamps == (datetime(2000, 1, 1),)
    out = write_ims(tif, tmp_path / "interval.ims", axes="tyx")
    assert _stamps(out, 4) == [f"2000-01-01 00:00:0{s}" for s in ("0.000", "0.500", "1.000", "1.500")]


def test_planes_missing_from_the_file_are_zeros_with_a_warning(tmp_path: Path) -> None:
    data = _volume((2, 8, 8)) + 1  # no zeros of its own
    tif = tmp_path / "cut-short.ome.tif"
    tifffile.imwrite(tif, data, photometric="minisblack", metadata={"axes": "ZYX"})
    with tifffile.TiffFile(tif) as f:
        xml = f.ome_metadata
    longer = xml.replace('SizeZ="2"', 'SizeZ="3"').replace('PlaneCount="2"', 'PlaneCount="3"')
    assert longer != xml
    tifffile.tiffcomment(tif, longer.encode())
    with pytest.warns(ImsWarning, match=r"cut-short\.ome\.tif: 1 of 3 planes of series 0 are not in the file"):
        out = write_ims(tif, tmp_path / "cut-short.ims")
    np.testing.assert_array_equal(_stored(out)[0, 0], np.concatenate([data, np.zeros((1, 8, 8), data.dtype)]))


def _multi_file_ome(tmp_path: Path, planes: list[np.ndarray]) -> Path:
    """One z plane in each of several OME-TIFF files; the first file's OME-XML names them all."""
    names, uuids = [], []
    for i, plane in enumerate(planes):
        names.append(f"part{i}.ome.tif")
        tifffile.imwrite(tmp_path / names[-1], plane, metadata={"axes": "YX"})
        with tifffile.TiffFile(tmp_path / names[-1]) as f:
            uuids.append(re.search(r'UUID="([^"]+)"', f.ome_metadata).group(1))  # type: ignore[union-attr]
    with tifffile.TiffFile(tmp_path / names[0]) as f:
        xml = f.ome_metadata
    data = "".join(
        f'<TiffData IFD="0" PlaneCount="1" FirstZ="{z}"><UUID FileName="{n}">{u}</UUID></TiffData>'
        for z, (n, u) in enumerate(zip(names, uuids, strict=True))
    )
    xml = re.sub(r"<TiffData[^>]*/>", data, xml).replace('SizeZ="1"', f'SizeZ="{len(planes)}"')
    tifffile.tiffcomment(tmp_path / names[0], xml.encode())
    return tmp_path / names[0]


def test_multi_file_ome_tiff(tmp_path: Path) -> None:
    """The planes in the other files are read too (also by a pickled copy, as a worker reads);
    with one of those files gone, its plane is zeros, with a warning."""
    planes = [_volume((8, 10), seed=20 + z) + 1 for z in range(3)]
    main_file = _multi_file_ome(tmp_path, planes)
    np.testing.assert_array_equal(_stored(write_ims(main_file, tmp_path / "all.ims"))[0, 0], np.stack(planes))
    copy = pickle.loads(pickle.dumps(open_source(main_file).data))
    np.testing.assert_array_equal(copy[0, 0, 2].compute(), planes[2])
    (tmp_path / "part1.ome.tif").unlink()
    with pytest.warns(ImsWarning, match="1 of 3 planes of series 0 are not in the file"):
        out = write_ims(main_file, tmp_path / "some.ims")
    np.testing.assert_array_equal(_stored(out)[0, 0], np.stack([planes[0], np.zeros_like(planes[1]), planes[2]]))
