"""``.ims`` sources copied as stored: where the output has the source's pyramid, each chunk's
stored bytes and filter mask arrive unchanged, with the histograms; other channels are encoded.

Ground truth: h5py's ``read_direct_chunk`` of the source and its reads of the data, numpy arrays.
The sources are written with gzip level 6 (or by Imaris), which `write_ims` never writes by
default: a re-encoded chunk would differ from its source's bytes.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import h5py_counts, h5py_level

from ims_store import read_layout, write_ims
from ims_store.format.chunks import stored_chunks

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def _chunks(ds: h5py.Dataset) -> dict[tuple[int, ...], tuple[int, bytes]]:
    return {tuple(i.chunk_offset): ds.id.read_direct_chunk(i.chunk_offset) for i in stored_chunks(ds) if i.byte_offset}


def assert_copied_as_stored(src: Path, out: Path, pairs: list[tuple[tuple[int, int], tuple[int, int]]]) -> None:
    """Every level of each (source t, c) -> (output t, c): the same chunks, bytes and masks, the
    same creation properties (shape, chunks, filters, fill value), the same histograms."""
    layout = read_layout(src)
    with h5py.File(src, "r") as a, h5py.File(out, "r") as b:
        for (st, sc), (ot, oc) in pairs:
            for level in layout.levels:
                da = a[layout.data_path(level.index, st, sc)]
                db = b[f"DataSet/ResolutionLevel {level.index}/TimePoint {ot}/Channel {oc}/Data"]
                assert (db.shape, db.chunks, db.dtype, db.fillvalue) == (da.shape, da.chunks, da.dtype, da.fillvalue)
                assert db.id.get_create_plist().get_nfilters() == da.id.get_create_plist().get_nfilters()
                for k in range(da.id.get_create_plist().get_nfilters()):
                    assert db.id.get_create_plist().get_filter(k)[:3] == da.id.get_create_plist().get_filter(k)[:3]
                assert _chunks(db) == _chunks(da)
                for name in da.parent:
                    if name != "Data":
                        assert np.array_equal(db.parent[name][()], da.parent[name][()]), name
                assert sorted(db.parent.attrs) == sorted(da.parent.attrs)
                for key, value in da.parent.attrs.items():
                    assert np.array_equal(db.parent.attrs[key], value), key


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 3000, (2, 2, 24, 300, 200), dtype=np.uint16)  # t c z y x
    path = tmp_path_factory.mktemp("stored") / "gzip6.ims"
    write_ims(data, path, axes="tczyx", compression_level=6, voxel_size=(1.0, 0.3, 0.3), channel_names=["a", "b"])
    return path, data


def test_rewriting_copies_every_chunk_as_stored(source: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    src, data = source
    out = write_ims(src, tmp_path / "rewritten.ims")
    assert_copied_as_stored(src, out, [((t, c), (t, c)) for t in range(2) for c in range(2)])
    with h5py.File(src, "r") as a, h5py.File(out, "r") as b:
        assert np.array_equal(a["Thumbnail/Data"][()], b["Thumbnail/Data"][()])
    for t in range(2):
        for c in range(2):
            assert np.array_equal(h5py_level(out, 0, t, c), data[t, c])


def test_adding_a_channel_copies_the_others(source: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    src, data = source
    mask = (data[:, 0] > 2500).astype(np.uint8)  # t z y x
    out = write_ims([src, mask], tmp_path / "plus_mask.ims", axes="tzyx")
    assert h5py_counts(out) == (*h5py_counts(src)[:2], 3)
    assert_copied_as_stored(src, out, [((t, c), (t, c)) for t in range(2) for c in range(2)])
    alone = write_ims(mask.astype(np.uint16), tmp_path / "mask.ims", axes="tzyx")
    for level in range(h5py_counts(out)[0]):
        for t in range(2):
            assert np.array_equal(h5py_level(out, level, t, 2), h5py_level(alone, level, t, 0))
    # the new channel's thumbnail part comes from the data: the thumbnail is made anew
    with h5py.File(out, "r") as f:
        assert f["Thumbnail/Data"].shape[0] > 0


def test_time_points_of_two_files(source: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    src, data = source
    out = write_ims([src, src], tmp_path / "twice.ims", join="time")
    levels_src = [lv.chunks for lv in read_layout(src).levels]
    if [lv.chunks for lv in read_layout(out).levels] == levels_src:  # 4 time points may change Imaris' blocks
        assert_copied_as_stored(src, out, [((t % 2, c), (t, c)) for t in range(4) for c in range(2)])
    for t in range(4):
        assert np.array_equal(h5py_level(out, 0, t, 1), data[t % 2, 1])


@pytest.mark.parametrize("name", ["PyramidalCell_Imaris95.ims", "PyramidalCell.ims"])
def test_an_imaris_written_file_copied_as_stored(name: str, tmp_path: Path) -> None:
    src = FIXTURES / name
    out = write_ims(src, tmp_path / "copy.ims")
    assert_copied_as_stored(src, out, [((0, 0), (0, 0))])
    for level in range(2):
        assert np.array_equal(h5py_level(out, level, 0, 0), h5py_level(src, level, 0, 0))


def test_other_pyramids_and_asked_compression_are_encoded(source: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    src, data = source
    lz4 = write_ims(src, tmp_path / "lz4.ims", compression="lz4")
    with h5py.File(lz4, "r") as f:
        ds = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"]
        assert 32004 in [
            ds.id.get_create_plist().get_filter(k)[0] for k in range(ds.id.get_create_plist().get_nfilters())
        ]
    assert np.array_equal(h5py_level(lz4, 0, 1, 1), data[1, 1])
    # gzip asked for explicitly at another level than the source's: re-encoded at that level
    gzip2 = write_ims(src, tmp_path / "gzip2.ims", compression="gzip", compression_level=2)
    with h5py.File(src, "r") as a, h5py.File(gzip2, "r") as b:
        path = "DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"
        assert b[path].compression_opts == 2 and a[path].compression_opts == 6
    assert np.array_equal(h5py_level(gzip2, 0, 0, 0), data[0, 0])
    # other block shapes: another layout, encoded
    half = write_ims(src, tmp_path / "half.ims", chunks=(8, 64, 64))
    with h5py.File(half, "r") as f:
        assert f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"].chunks == (8, 64, 64)
    assert np.array_equal(h5py_level(half, 0, 0, 1), data[0, 1])


def test_copied_and_added_channels_read_by_an_independent_reader(
    source: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    from imaris_ims_file_reader.ims import ims as open_ims  # shares no code with ims_store

    src, data = source
    mask = (data[:, 1] > 1500).astype(np.uint8)
    out = write_ims([src, mask], tmp_path / "plus_mask.ims", axes="tzyx")
    reader = open_ims(str(out))
    assert reader.shape == (2, 3, *data.shape[2:])
    # six indices, the first the resolution level; one (t, c) at a time (its channel ranges
    # are not read as numpy's)
    for t in range(2):
        for c in range(2):
            np.testing.assert_array_equal(reader[0, t, c, :, :, :], data[t, c])
        np.testing.assert_array_equal(reader[0, t, 2, :, :, :], mask[t])
    for level in range(1, h5py_counts(out)[0]):
        for t in range(2):
            for c in range(3):
                np.testing.assert_array_equal(reader[level, t, c, :, :, :], h5py_level(out, level, t, c))
