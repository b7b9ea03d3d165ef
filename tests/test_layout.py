"""The parsed metadata model against what the files hold (read independently with h5py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ims_store import ImsWarning, SelectionError, read_layout
from ims_store.format.attributes import decode_text, parse_float, parse_floats, write_text
from ims_store.format.layout import parse_timestamp


def test_ptk2cell(real_files: dict[str, Path]) -> None:
    lay = read_layout(real_files["PtK2Cell.ims"])
    assert lay.dtype == np.uint8
    assert [lvl.size for lvl in lay.levels] == [(32, 256, 256)]
    assert lay.levels[0].chunks == (16, 256, 256)
    assert [f.id for f in lay.levels[0].filters] == [1] and lay.levels[0].filters[0].values == (2,)
    assert [ch.name for ch in lay.channels] == ["Kinetochores", "Microtubules", "DNA", "Dynactin"]
    assert [ch.color for ch in lay.channels] == [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)]
    assert lay.channels[2].description == "DAPI stained"
    assert lay.channels[0].color_range == (0.0, 247.0)
    assert lay.extent_min == (-0.1, -0.033, -0.033)  # exactly the stored text, no rounding
    assert lay.extent_max == (6.3, 17.118, 17.118)
    assert lay.levels[0].voxel_size == ((6.3 - -0.1) / 32, (17.118 - -0.033) / 256, (17.118 - -0.033) / 256)
    assert lay.timepoints[0].stamp == dt.datetime(2002, 1, 1)
    assert lay.unit == "um"


def test_pyramidal_cell_levels_use_true_size(real_files: dict[str, Path]) -> None:
    lay = read_layout(real_files["PyramidalCell.ims"])
    assert [lvl.size for lvl in lay.levels] == [(69, 254, 255), (34, 127, 127)]
    assert [lvl.dataset_shape for lvl in lay.levels] == [(80, 256, 256), (64, 128, 128)]
    assert [lvl.chunks for lvl in lay.levels] == [(16, 256, 256), (64, 128, 128)]
    # each level's voxel comes from the extents and its own size, not from a size ratio
    assert lay.levels[1].voxel_size[2] == (57.841 - -0.114) / 127
    assert lay.levels[1].voxel_size[1] == (57.8398 - -0.114) / 127
    assert lay.recording_date == dt.datetime(2003, 3, 18)


def test_minimal_file_without_channel_or_time_info(real_files: dict[str, Path]) -> None:
    lay = read_layout(real_files["Minimal_IMS_File.ims"])
    assert lay.levels[0].size == (1, 128, 128)
    assert lay.channels[0].name is None and lay.channels[0].label == "Channel 0"
    assert lay.timepoints[0].stamp is None
    assert lay.extent_min == (0.0, 3.0, 3.0) and lay.extent_max == (0.1, 10.0, 10.0)
    assert lay.unit == "um"  # Imaris' default when Unit is absent


def test_numbering_sorted_by_number_not_name(synthetic_files: dict[str, Path]) -> None:
    lay = read_layout(synthetic_files["12-timepoints-3-channels"])
    assert [tp.number for tp in lay.timepoints] == list(range(12))
    lay = read_layout(synthetic_files["numbering-gaps"])
    assert [tp.number for tp in lay.timepoints] == [0, 2, 11]
    assert [ch.number for ch in lay.channels] == [1, 10]
    assert lay.data_path(0, 2, 1) == "/DataSet/ResolutionLevel 0/TimePoint 11/Channel 10/Data"
    # stamps come from TimeInfo/TimePoint<N+1>, 1.5 s apart by index
    assert [tp.stamp.second + tp.stamp.microsecond / 1e6 for tp in lay.timepoints] == [5.0, 6.5, 8.0]


def test_selection_errors_list_what_exists(real_files: dict[str, Path]) -> None:
    lay = read_layout(real_files["PyramidalCell.ims"])
    with pytest.raises(SelectionError, match=r"level 2 does not exist; the file has levels 0\.\.1") as info:
        lay.level(2)
    assert isinstance(info.value, ValueError) and str(real_files["PyramidalCell.ims"]) in str(info.value)
    with pytest.raises(SelectionError, match=r"channels 0\.\.0"):
        lay.channel(1)
    with pytest.raises(SelectionError, match="time point -1"):
        lay.timepoint(-1)


def test_latin1_and_leftover_attributes(tmp_path: Path, synthetic_files: dict[str, Path]) -> None:
    path = tmp_path / "odd.ims"
    path.write_bytes(synthetic_files["uint8-gzip"].read_bytes())
    with h5py.File(path, "r+") as f:
        write_text(f["DataSetInfo/Image"], "Name", "Zürich É")
        write_text(f["DataSetInfo/Channel 0"], "Color", "1 5e-1 0")
        write_text(f["DataSetInfo/Image"], "ExtMax0", "+1.75E+01")
        for k in range(1, 50):  # a time-cropped file keeps stamps for time points it no longer has
            write_text(f["DataSetInfo/TimeInfo"], f"TimePoint{k}", "2001-02-03 04:05:06.000")
    lay = read_layout(path)
    assert lay.name == "Zürich É"
    assert lay.channels[0].color == (1.0, 0.5, 0.0)
    assert lay.extent_max[2] == 17.5
    assert len(lay.timepoints) == 1


def test_missing_extents_warn_and_fall_back(tmp_path: Path, synthetic_files: dict[str, Path]) -> None:
    path = tmp_path / "noext.ims"
    path.write_bytes(synthetic_files["uint8-gzip"].read_bytes())
    with h5py.File(path, "r+") as f:
        del f["DataSetInfo/Image"].attrs["ExtMax1"]
    with pytest.warns(ImsWarning, match="extents"):
        lay = read_layout(path)
    assert lay.levels[0].voxel_size == (1.0, 1.0, 1.0)
    assert lay.warnings


@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_numbers_in_any_float_syntax(value: float) -> None:
    for text in (repr(value), f"{value:.9e}", f"{value:g}", f"  {value!r} "):
        assert parse_float(text) == pytest.approx(float(text), rel=0, abs=0)


def test_parse_floats_and_text() -> None:
    assert parse_floats("0.000 1.000 0.500") == [0.0, 1.0, 0.5]
    assert parse_float("3.00000000") == 3.0
    assert parse_float("") is None and parse_float("abc") is None
    assert decode_text(np.array([b"u", b"m"], dtype="S1")) == "um"
    assert decode_text(np.array([b"\x00"], dtype="S1")) == ""
    assert decode_text(np.array([b"\xe9"], dtype="S1")) == "é"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2002-01-01 00:00:00", dt.datetime(2002, 1, 1)),
        ("2002-01-01 00:00:00.250", dt.datetime(2002, 1, 1, 0, 0, 0, 250000)),
        ("2020-12-31 23:59:59.123456789", dt.datetime(2020, 12, 31, 23, 59, 59, 123456)),
        ("not a date", None),
        ("2020-13-01 00:00:00", None),
    ],
)
def test_timestamps(text: str, expected: dt.datetime | None) -> None:
    assert parse_timestamp(text) == expected


def test_attribute_encoding_is_imaris_char_array(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "a.h5", "w") as f:
        write_text(f, "Unit", "um")
        write_text(f, "Empty", "")
    with h5py.File(tmp_path / "a.h5", "r") as f:
        for name, length in (("Unit", 2), ("Empty", 1)):
            attr = h5py.h5a.open(f.id, name.encode())
            tid = attr.get_type()
            assert tid.get_class() == h5py.h5t.STRING
            assert tid.get_size() == 1
            assert tid.get_strpad() == h5py.h5t.STR_NULLTERM
            assert attr.shape == (length,)
