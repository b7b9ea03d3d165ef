"""What an Imaris file holds besides its image blocks, written with h5py.

The root attributes, ``DataSetInfo`` (Image, Channel N, TimeInfo and the creator groups), the
``Thumbnail/Data`` dataset and each channel's ``Histogram`` / ``Histogram1024`` datasets, with
numbers and time stamps printed as Imaris prints them.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

import h5py
import numpy as np

from ..format.attributes import write_text
from .histogram import HistogramAccumulator
from .thumbnail import THUMBNAIL_SIZE


def _number(value: float) -> str:
    """Full precision, no exponent: ``0.0004`` stays ``0.0004`` (Imaris parses plain decimals)."""
    return np.format_float_positional(float(value), trim="-")


def _stamp(value: _dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def write_root_attributes(f: h5py.File) -> None:
    """The root attributes every Imaris file has."""
    for key, value in (
        ("DataSetDirectoryName", "DataSet"),
        ("DataSetInfoDirectoryName", "DataSetInfo"),
        ("ImarisDataSet", "ImarisDataSet"),
        ("ImarisVersion", "5.5.0"),
        ("ThumbnailDirectoryName", "Thumbnail"),
    ):
        write_text(f, key, value)
    f.attrs.create("NumberOfDataSets", np.array([1], dtype=np.uint32))


def write_dataset_info(
    f: h5py.File,
    *,
    size: Sequence[int],
    extent_min: Sequence[float],
    extent_max: Sequence[float],
    unit: str,
    channel_names: Sequence[str],
    channel_colors: Sequence[tuple[float, float, float]],
    channel_ranges: Sequence[tuple[float, float]],
    time_stamps: Sequence[_dt.datetime],
    recording_date: _dt.datetime,
    name: str = "",
    description: str = "",
    channel_numbers: Sequence[int] | None = None,
    timepoint_numbers: Sequence[int] | None = None,
) -> None:
    """``DataSetInfo``: Image, Channel N, TimeInfo and the creator groups. Spatial tuples (z, y, x).

    ``channel_numbers`` / ``timepoint_numbers`` are the N of the ``Channel N`` / ``TimePoint N``
    data groups (default 0, 1, ...); ``TimeInfo`` numbers its stamps from 1.
    """
    channel_numbers = list(channel_numbers) if channel_numbers is not None else list(range(len(channel_names)))
    timepoint_numbers = list(timepoint_numbers) if timepoint_numbers is not None else list(range(len(time_stamps)))
    info = f.require_group("DataSetInfo")
    image = info.require_group("Image")
    z, y, x = (int(s) for s in size)
    for key, value in (("X", x), ("Y", y), ("Z", z), ("Noc", len(channel_names))):
        write_text(image, key, str(value))
    for axis, i in (("0", 2), ("1", 1), ("2", 0)):
        write_text(image, f"ExtMin{axis}", _number(extent_min[i]))
        write_text(image, f"ExtMax{axis}", _number(extent_max[i]))
    write_text(image, "Unit", unit)
    write_text(image, "Name", name)
    write_text(image, "Description", description)
    write_text(image, "RecordingDate", _stamp(recording_date))
    for c, channel_name in enumerate(channel_names):
        ch = info.require_group(f"Channel {channel_numbers[c]}")
        write_text(ch, "Name", channel_name)
        write_text(ch, "Description", "")
        write_text(ch, "Color", " ".join(f"{v:.3f}" for v in channel_colors[c]))
        write_text(ch, "ColorMode", "BaseColor")
        write_text(ch, "ColorOpacity", "1.000")
        write_text(ch, "GammaCorrection", "1.000")
        lo, hi = channel_ranges[c]
        write_text(ch, "ColorRange", f"{_number(lo)} {_number(hi)}")
    time_info = info.require_group("TimeInfo")
    write_text(time_info, "DatasetTimePoints", str(len(time_stamps)))
    write_text(time_info, "FileTimePoints", str(len(time_stamps)))
    for number, stamp in zip(timepoint_numbers, time_stamps, strict=True):
        write_text(time_info, f"TimePoint{number + 1}", _stamp(stamp))
    creator = info.require_group("ImarisDataSet")
    for key, value in (("Creator", "ims_store"), ("NumberOfImages", "1"), ("Version", "5.5")):
        write_text(creator, key, value)
    imaris = info.require_group("Imaris")
    for key, value in (("ThumbnailMode", "thumbnailMIP"), ("ThumbnailSize", str(THUMBNAIL_SIZE)), ("Version", "5.5")):
        write_text(imaris, key, value)
    write_text(info.require_group("Log"), "Entries", "0")


def write_thumbnail(f: h5py.File, rgba: np.ndarray) -> None:
    """``Thumbnail/Data``: uint8, shape (h, 4 * w), interleaved RGBA."""
    f.require_group("Thumbnail").create_dataset("Data", data=np.ascontiguousarray(rgba, dtype=np.uint8))


def write_histograms(group: h5py.Group, hist: HistogramAccumulator) -> None:
    """``Histogram`` (and ``Histogram1024``) datasets with their Min/Max attributes on a channel group.

    Integer bounds as ImarisWriter prints them (``"255.000"``); float bounds at full precision, as
    3 decimals would turn a range of 0..0.0004 into 0.000..0.000.
    """
    text = _number if np.dtype(hist.dtype).kind == "f" else "{:.3f}".format
    for name, (counts, lo, hi) in hist.tables().items():
        group.create_dataset(name, data=counts.astype(np.uint64))
        suffix = "1024" if name.endswith("1024") else ""
        write_text(group, f"HistogramMin{suffix}", text(lo))
        write_text(group, f"HistogramMax{suffix}", text(hi))
