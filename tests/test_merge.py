"""Several sources into one file: ``write_ims([src1, src2, ...], path)`` and ``join="time"``.

Ground truth: the numpy arrays themselves (level 0) and, at every level, each source written
alone (the one-source writer, tested on its own) read with h5py; geometry from h5py's reads of
the sources' attributes.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import h5py_counts, h5py_level

from ims_store import SourceError, WriteError, write_ims
from ims_store.fronts.cli import main
from ims_store.write.synthetic import make_example_ims

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
IMARIS95 = FIXTURES / "PyramidalCell_Imaris95.ims"


def _text(group: h5py.Group, name: str) -> str:
    return b"".join(group.attrs[name]).decode("latin-1")


def _channel_meta(path: Path) -> list[tuple[str, str]]:
    with h5py.File(path, "r") as f:
        info = f["DataSetInfo"]
        count = len([k for k in info if k.startswith("Channel ")])
        return [(_text(info[f"Channel {c}"], "Name"), _text(info[f"Channel {c}"], "Color")) for c in range(count)]


def _extents(path: Path) -> list[float]:
    with h5py.File(path, "r") as f:
        image = f["DataSetInfo/Image"]
        return [float(_text(image, k)) for k in ("ExtMin0", "ExtMin1", "ExtMin2", "ExtMax0", "ExtMax1", "ExtMax2")]


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 channels, 2 time points, 3 levels, uint16, an origin away from zero."""
    return make_example_ims(
        tmp_path_factory.mktemp("merge") / "cells.ims",
        shape=(20, 200, 150),
        channels=2,
        timepoints=2,
        channel_names=["DAPI", "GFP"],
        channel_colors=[(0.0, 0.0, 1.0), (0.0, 1.0, 0.0)],
        voxel_size=(2.0, 0.5, 0.4),
        extent_min=(-3.0, 5.0, 7.0),
        threshold_voxels=50_000,
    )


def test_channels_of_a_file_and_an_array_at_every_level(cells: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    mask = (rng.random((2, 20, 200, 150)) > 0.7).astype(np.uint8)  # t z y x; uint8 widened to uint16
    out = write_ims([cells, mask], tmp_path / "merged.ims", axes="tzyx")
    mask_alone = write_ims(mask.astype(np.uint16), tmp_path / "mask.ims", axes="tzyx")
    cells_alone = write_ims(cells, tmp_path / "cells.ims")
    levels, times, channels = h5py_counts(out)
    assert (times, channels) == (2, 3)
    assert levels == h5py_counts(cells_alone)[0] == h5py_counts(mask_alone)[0] == 2
    for level in range(levels):
        for t in range(2):
            for c in range(2):
                theirs = h5py_level(cells_alone, level, t, c)
                assert np.array_equal(h5py_level(out, level, t, c), theirs), (level, t, c)
                if level == 0:
                    assert np.array_equal(theirs, h5py_level(cells, 0, t, c))
            assert np.array_equal(h5py_level(out, level, t, 2), h5py_level(mask_alone, level, t, 0)), (level, t)
    for t in range(2):
        assert np.array_equal(h5py_level(out, 0, t, 2), mask[t])
    names = _channel_meta(out)
    assert names[:2] == _channel_meta(cells)
    assert names[2][0] == "Channel 2"
    assert _extents(out) == pytest.approx(_extents(cells))  # the array takes the file's geometry


def test_join_time(cells: Path, tmp_path: Path) -> None:
    extra = np.full((1, 2, 20, 200, 150), 7, np.uint16)
    out = write_ims([cells, extra], tmp_path / "longer.ims", axes="tczyx", join="time")
    levels, times, channels = h5py_counts(out)
    assert (times, channels) == (3, 2)
    cells_alone = write_ims(cells, tmp_path / "cells.ims")
    for level in range(levels):
        for t in range(2):
            for c in range(2):
                assert np.array_equal(h5py_level(out, level, t, c), h5py_level(cells_alone, level, t, c))
        assert (h5py_level(out, level, 2, 1) == 7).all()
    assert _channel_meta(out) == _channel_meta(cells)
    # two files: their time stamps one after another
    twice = write_ims([cells, cells], tmp_path / "twice.ims", join="time")
    with h5py.File(cells, "r") as a, h5py.File(twice, "r") as b:
        stamps = [_text(a["DataSetInfo/TimeInfo"], f"TimePoint{i}") for i in (1, 2)]
        assert [_text(b["DataSetInfo/TimeInfo"], f"TimePoint{i}") for i in (1, 2, 3, 4)] == stamps * 2


@pytest.mark.parametrize(
    ("dtypes", "stored"),
    [(("uint8", "uint16"), "uint16"), (("uint16", "uint32"), "uint32"), (("uint8", "float32"), "float32"),
     (("uint16", "int16"), "float32")],
)  # fmt: skip
def test_channel_types_widened_exactly(tmp_path: Path, dtypes: tuple[str, str], stored: str) -> None:
    rng = np.random.default_rng(2)
    arrays = []
    for d in dtypes:
        info = np.iinfo(d) if np.dtype(d).kind in "iu" else None
        lo, hi = (info.min, info.max) if info else (-1e3, 1e3)
        arrays.append(rng.uniform(lo, hi, (6, 40, 30)).astype(d))
    out = write_ims(arrays, tmp_path / "w.ims")
    for c, array in enumerate(arrays):
        got = h5py_level(out, 0, 0, c)
        assert got.dtype == np.dtype(stored)
        assert np.array_equal(got.astype(np.float64), array.astype(np.float64))


def test_types_that_cannot_share_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"uint32 \(source 1 \(array\)\) and float32 \(source 2 \(array\)\)"):
        write_ims([np.zeros((4, 8, 8), np.uint32), np.zeros((4, 8, 8), np.float32)], tmp_path / "x.ims")
    # a negative int32 value cannot go into the uint32 file: refused as it streams, naming its source
    bad = np.zeros((4, 8, 8), np.int32)
    bad[1, 2, 3] = -5
    with pytest.raises(WriteError, match=r"source 2 \(array\)"):
        write_ims([np.zeros((4, 8, 8), np.uint32), bad], tmp_path / "x.ims")
    assert list(tmp_path.iterdir()) == []


def test_geometry_disagreements_refused(cells: Path, tmp_path: Path) -> None:
    from ims_store.write.sources import open_source

    same = np.zeros((2, 20, 200, 150), np.uint16)
    tzyx = {"axes": "tzyx"}
    cases = [
        (
            open_source(same, **tzyx, voxel_size=(2.0, 0.5, 0.5)),
            r"voxel size.*\(2\.0, 0\.5, 0\.4\).*\(2\.0, 0\.5, 0\.5\)",
        ),
        (open_source(same, **tzyx, origin=(0.0, 0.0, 0.0)), r"origin.*\(-2\.0, 5\.25, 7\.2\).*\(0\.0, 0\.0, 0\.0\)"),
        (open_source(same, **tzyx, unit="nm"), r"unit.*um.*nm"),
        (np.zeros((1, 20, 200, 151), np.uint16), r"sizes differ.*'x': 150.*'x': 151"),
    ]
    for other, message in cases:
        with pytest.raises(SourceError, match=message) as caught:
            write_ims([cells, other], tmp_path / "x.ims")
        assert str(cells) in str(caught.value) and "source 2" in str(caught.value)
    # within float rounding: accepted
    close = open_source(same, **tzyx, voxel_size=(2.0 * (1 + 1e-7), 0.5, 0.4), origin=(-2.0, 5.25, 7.2 + 1e-7))
    write_ims([cells, close], tmp_path / "ok.ims")
    assert list(p.name for p in tmp_path.iterdir()) == ["ok.ims"]


def test_channel_names_and_colours_kept_in_order(tmp_path: Path) -> None:
    from ims_store.write.sources import open_source

    a = open_source(np.zeros((2, 4, 8, 8), np.uint8), axes="czyx", channel_names=["a0", "a1"],
                    channel_colors=[(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)])  # fmt: skip
    b = open_source(np.zeros((4, 8, 8), np.uint8), channel_names=["b0"], channel_colors=[(0.0, 0.0, 1.0)])
    out = write_ims([a, b], tmp_path / "n.ims")
    assert _channel_meta(out) == [("a0", "1.000 0.000 0.000"), ("a1", "0.000 1.000 0.000"), ("b0", "0.000 0.000 1.000")]


def test_join_needs_a_list(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="needs a list"):
        write_ims(np.zeros((4, 8, 8), np.uint8), tmp_path / "x.ims", join="time")
    # nested lists of numbers stay one array
    out = write_ims([[[1, 2], [3, 4]]], tmp_path / "nested.ims")
    assert h5py_level(out, 0, 0, 0).tolist() == [[[1, 2], [3, 4]]]


def test_cli_several_inputs(cells: Path, tmp_path: Path) -> None:
    mask = np.zeros((2, 20, 200, 150), np.uint8)
    mask[1, 5:8, 30:40, 10:20] = 1
    segmented = write_ims(mask, tmp_path / "mask.ims", axes="tzyx", voxel_size=(2.0, 0.5, 0.4),
                          origin=(-2.0, 5.25, 7.2))  # fmt: skip
    out = tmp_path / "out.ims"
    assert main(["convert", str(cells), str(segmented), str(out), "--quiet"]) == 0
    assert h5py_counts(out)[1:] == (2, 3)
    assert np.array_equal(h5py_level(out, 0, 1, 2), mask[1])
    assert main(["convert", str(cells), str(cells), str(tmp_path / "t.ims"), "--quiet", "--join", "time"]) == 0
    assert h5py_counts(tmp_path / "t.ims")[1:] == (4, 2)
    assert main(["convert", str(cells), str(tmp_path / "x.ims"), "--join", "time"]) != 0
    assert main(["convert", str(cells), str(segmented), str(tmp_path / "x.zarr")]) != 0
    assert not (tmp_path / "x.ims").exists() and not (tmp_path / "x.zarr").exists()
