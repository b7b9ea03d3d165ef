"""Parse an Imaris file once into a plain metadata model (`ImsLayout`).

Everything downstream (the zarr store, the NGFF metadata, ``ims-store info``) reads this model
and never the HDF5 attributes again. Parsing is lenient where real files are untidy (any float
syntax, latin-1 text, missing optional groups, leftover attributes) and strict where pixels are
at stake (no image data, sizes larger than the data, levels that disagree).

Opening is cheap even for files with thousands of datasets: per resolution level only one
``Data`` dataset is inspected; the others are checked when their chunks are first indexed.

>>> from ims_store import read_layout
>>> layout = read_layout("cells.ims")
>>> layout.levels[0].size, layout.channels[1].name
((16, 128, 96), 'GFP')
"""

from __future__ import annotations

import datetime as _dt
import errno
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import h5py
import numpy as np

from ..errors import (
    ImsError,
    ImsFileNotFoundError,
    MalformedImsError,
    NotHDF5Error,
    NotImarisError,
    RemoteReadError,
    ResourceLimitError,
    SelectionError,
    TruncatedFileError,
)
from .attributes import decode_text, parse_float, parse_floats, parse_int, read_text
from .geometry import extents_valid, voxel_size
from .links import Links

__all__ = [
    "Channel",
    "Filter",
    "ImageEntry",
    "ImsLayout",
    "ImsWarning",
    "Level",
    "TimePoint",
    "dataset_filters",
    "fill_value",
    "image_count",
    "image_groups",
    "open_hdf5",
    "parse_images",
    "parse_layout",
    "parse_timestamp",
]

Vec3 = tuple[float, float, float]
Shape3 = tuple[int, int, int]


class ImsWarning(UserWarning):
    """A file is readable but something in it was odd and a documented default was used."""


@dataclass(frozen=True)
class Filter:
    """One stage of an HDF5 filter pipeline, as stored in the dataset's creation properties."""

    id: int
    name: str
    flags: int = 0
    values: tuple[int, ...] = ()


@dataclass(frozen=True)
class Level:
    """One resolution level. Shapes and sizes are (z, y, x)."""

    index: int
    """Position in the pyramid: 0 is full resolution."""
    number: int
    """The N of the ``ResolutionLevel N`` group."""
    size: Shape3
    """The true image size (``ImageSizeZ/Y/X``), never the padded dataset shape."""
    dataset_shape: Shape3
    """The stored (padded) shape of the ``Data`` datasets."""
    chunks: Shape3
    """HDF5 chunk shape (the whole dataset for a contiguous one)."""
    dtype: np.dtype
    filters: tuple[Filter, ...]
    voxel_size: Vec3
    """Physical voxel size at this level, in the layout's unit."""
    fill_value: int | float = 0
    """What HDF5 reads in chunks never written (the ``Data`` datasets' fill value)."""

    @property
    def chunk_grid(self) -> Shape3:
        """Chunks per axis over the true size."""
        return tuple(-(-s // c) for s, c in zip(self.size, self.chunks, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True)
class Channel:
    """One channel: the data in ``Channel N`` groups plus its ``DataSetInfo/Channel N`` description."""

    index: int
    number: int
    name: str | None = None
    color: tuple[float, float, float] | None = None
    """Base colour as (r, g, b) in 0..1."""
    color_range: tuple[float, float] | None = None
    """Display window (``ColorRange``)."""
    histogram_range: tuple[float, float] | None = None
    """``HistogramMin``/``HistogramMax`` of the full-resolution data, when recorded."""
    description: str | None = None
    opacity: float | None = None
    gamma: float | None = None
    color_mode: str | None = None
    color_table: tuple[tuple[float, float, float], ...] | None = None
    """The ``ColorTable`` of a ``TableColor`` channel: (r, g, b) entries in 0..1, low values first."""

    @property
    def label(self) -> str:
        """The name to show: the stored name, or ``Channel N``."""
        return self.name if self.name else f"Channel {self.number}"


@dataclass(frozen=True)
class TimePoint:
    """One time point: the N of ``TimePoint N`` and its time stamp (from ``TimeInfo``)."""

    index: int
    number: int
    stamp: _dt.datetime | None = None


@dataclass(frozen=True)
class ImsLayout:
    """Everything ims_store knows about an Imaris file, parsed once. Tuples are (z, y, x)."""

    path: str
    dataset_group: str
    """HDF5 path of the image data (``/DataSet`` unless the root attributes name another)."""
    levels: tuple[Level, ...]
    timepoints: tuple[TimePoint, ...]
    channels: tuple[Channel, ...]
    extent_min: Vec3
    extent_max: Vec3
    unit: str
    name: str | None = None
    description: str | None = None
    recording_date: _dt.datetime | None = None
    imaris_version: str | None = None
    warnings: tuple[str, ...] = field(default=())
    image: int = 0
    """Which image of the file this is (``DataSet`` is 0, ``DataSet1`` is 1, ...)."""
    image_count: int = 1
    """How many images the file holds (``NumberOfDataSets``)."""

    @property
    def dtype(self) -> np.dtype:
        return self.levels[0].dtype

    @property
    def origin(self) -> Vec3:
        """``ExtMin``: the outer corner of the first voxel (not its centre)."""
        return self.extent_min

    def shape(self, level: int = 0) -> tuple[int, int, int, int, int]:
        """The 5-D (t, c, z, y, x) shape of a level."""
        return (len(self.timepoints), len(self.channels), *self.level(level).size)

    def level(self, index: int) -> Level:
        return self.levels[self._check("level", index, len(self.levels))]

    def channel(self, index: int) -> Channel:
        return self.channels[self._check("channel", index, len(self.channels))]

    def timepoint(self, index: int) -> TimePoint:
        return self.timepoints[self._check("time point", index, len(self.timepoints))]

    def time_offsets(self) -> list[float] | None:
        """Seconds since the first time point, or ``None`` unless every time point has a stamp."""
        stamps = [tp.stamp for tp in self.timepoints]
        if not stamps or any(s is None for s in stamps):
            return None
        first = stamps[0]
        return [(s - first).total_seconds() for s in stamps]  # type: ignore[operator]

    def data_path(self, level: int, timepoint: int, channel: int) -> str:
        """HDF5 path of the ``Data`` dataset of a (level, time point, channel), by index."""
        return (
            f"{self.dataset_group}/ResolutionLevel {self.level(level).number}"
            f"/TimePoint {self.timepoint(timepoint).number}/Channel {self.channel(channel).number}/Data"
        )

    def _check(self, what: str, index: int, count: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < count:
            raise SelectionError(f"{what} {index!r} does not exist; the file has {what}s 0..{count - 1}", self.path)
        return int(index)


# --------------------------------------------------------------------------------------------
# opening


def open_hdf5(path: str | os.PathLike[str]) -> h5py.File:
    """Open ``path`` read-only with h5py, turning every failure into a specific `ImsError`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImsFileNotFoundError("no such file", path)
    if os.path.isdir(path):
        raise NotHDF5Error("is a directory, not an Imaris (.ims) file", path)
    try:
        size = os.path.getsize(path)
    except OSError as err:
        raise ImsError(f"cannot be read: {err.strerror or err}", path) from err
    if size == 0:
        raise NotHDF5Error("is empty (0 bytes), not an Imaris (.ims) file", path)
    try:
        try:
            # default locking, so that h5py.File(path) elsewhere in the process shares the file
            return h5py.File(path, "r")
        except OSError as err:
            if "lock" not in str(err).lower():
                raise
            # a file system without locks (NFS, read-only media): reading needs none
            return h5py.File(path, "r", locking=False)
    except PermissionError as err:
        raise ImsError("cannot be read: permission denied", path) from err
    except OSError as err:
        message = str(err)
        # no descriptor left says nothing of the file: HDF5 gives the errno in its message
        failed = re.search(r"errno = (\d+)", message)
        if err.errno in _NO_DESCRIPTORS or (failed and int(failed.group(1)) in _NO_DESCRIPTORS):
            raise ResourceLimitError("cannot be opened: too many open files", path) from err
        if "truncated" in message.lower():
            raise TruncatedFileError(
                f"the file is truncated (shorter than its HDF5 structures say: {message})", path
            ) from err
        if "signature" in message.lower() or not _has_hdf5_signature(path):
            raise NotHDF5Error("not an HDF5 file, so not an Imaris (.ims) file", path) from err
        raise TruncatedFileError(f"HDF5 cannot open the file; it is damaged ({message})", path) from err


_NO_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


def _has_hdf5_signature(path: str) -> bool:
    signature = b"\x89HDF\r\n\x1a\n"
    try:
        with open(path, "rb") as fh:
            offset = 0
            size = os.fstat(fh.fileno()).st_size
            # the superblock may sit at 0, 512, 1024, 2048, ... (after a user block)
            while offset < size:
                fh.seek(offset)
                if fh.read(8) == signature:
                    return True
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return False
    return False


# --------------------------------------------------------------------------------------------
# parsing

_NUMBERED = {kind: re.compile(rf"{kind} (0|[1-9][0-9]*)") for kind in ("ResolutionLevel", "TimePoint", "Channel")}


def _numbered(group: h5py.Group, kind: str, note: Callable[[str], None] | None = None) -> list[int]:
    """Numbers N of the ``<kind> N`` members of ``group``, sorted by number (HDF5 sorts by name).

    Only canonical names count (``Channel 1``, never ``Channel 01``, ``Channel \u0661`` or a
    name with trailing white space): the data of number N is read at ``<kind> N`` and nowhere
    else, as Imaris does. Look-alikes are left out, with a note."""
    pattern = _NUMBERED[kind]
    numbers = []
    for name in group:
        match = pattern.fullmatch(name)
        if match:
            numbers.append(int(match.group(1)))
        elif note is not None and name.startswith(kind):
            note(f"{group.name}/{name!r} is not a canonical {kind} name ({kind} N); it is left out, as Imaris does")
    return sorted(numbers)


def _group(links: Links, path: str) -> h5py.Group | None:
    """The group at ``path`` (links followed), or None: nothing there, a dangling soft link, or
    not a group. A broken external link raises `LinkTargetError`."""
    found = links.get(path)
    return found.obj if found is not None and isinstance(found.obj, h5py.Group) else None


def _why_not_a_group(parent: h5py.Group, name: str) -> str:
    """What stands at ``parent[name]`` instead of a group, for error messages."""
    try:
        link = parent.get(name, getlink=True)
    except (KeyError, OSError, RuntimeError, ValueError):
        link = None
    if link is None:
        return f"no /{name} group"
    if isinstance(link, h5py.SoftLink):
        try:
            target = parent.get(name)
        except (KeyError, OSError, RuntimeError, ValueError):
            target = None
        if target is None:
            return f"/{name} is a soft link to {link.path} that dangles or loops"
    try:
        obj = parent.get(name)
    except (KeyError, OSError, RuntimeError, ValueError):
        obj = None
    if isinstance(obj, h5py.Dataset):
        return f"/{name} is a dataset, not a group"
    return f"no /{name}/ResolutionLevel groups"


_TIMESTAMP = re.compile(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{1,2}):(\d{1,2})(?:[.,](\d+))?\s*$")


def parse_timestamp(text: str | None) -> _dt.datetime | None:
    """An Imaris time stamp (``YYYY-MM-DD HH:MM:SS[.fff...]``, any number of fraction digits).

    >>> parse_timestamp("2002-01-01 00:00:01.500000000")
    datetime.datetime(2002, 1, 1, 0, 0, 1, 500000)
    """
    match = _TIMESTAMP.match(text or "")
    if not match:
        return None
    *whole, fraction = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        return _dt.datetime(*(int(v) for v in whole), micro)
    except ValueError:
        return None


def _color(text: str | None) -> tuple[float, float, float] | None:
    values = parse_floats(text)
    if len(values) < 3 or not all(math.isfinite(v) for v in values[:3]):
        return None
    return tuple(min(max(v, 0.0), 1.0) for v in values[:3])  # type: ignore[return-value]


def _color_table(meta: h5py.Group, where: str, note: Callable[[str], None]) -> tuple[Vec3, ...] | None:
    """A channel's ``ColorTable``: "r g b r g b ..." in 0..1, ``ColorTableLength`` entries, kept
    as an attribute or (when long) as a dataset of single characters. Only entries the text
    holds whole are kept; a length that disagrees with the text is noted, not trusted."""
    text = read_text(meta, "ColorTable")
    if text is None:
        try:
            stored = meta.get("ColorTable")
            text = decode_text(stored[()]) if isinstance(stored, h5py.Dataset) else None
        except (KeyError, OSError, RuntimeError, TypeError, ValueError):
            text = None
    if text is None:
        return None
    values = parse_floats(text)
    length = parse_int(read_text(meta, "ColorTableLength"))
    whole = len(values) // 3
    if length is not None and length != whole:
        note(
            f"{where}: ColorTableLength is {length} but ColorTable holds {whole} whole (r, g, b) entries; "
            "those are used"
        )
    if not whole or not all(math.isfinite(v) for v in values[: 3 * whole]):
        note(f"{where}: ColorTable holds no usable (r, g, b) entries; it is left out")
        return None
    return tuple(
        tuple(min(max(v, 0.0), 1.0) for v in values[i : i + 3])  # type: ignore[misc]
        for i in range(0, 3 * whole, 3)
    )


def _pair(low: str | None, high: str | None = None) -> tuple[float, float] | None:
    values = parse_floats(low) if high is None else [parse_float(low), parse_float(high)]
    if len(values) < 2 or any(v is None or not math.isfinite(v) for v in values[:2]):
        return None
    return (float(values[0]), float(values[1]))  # type: ignore[arg-type]


def dataset_filters(dataset: h5py.Dataset) -> tuple[Filter, ...]:
    """The filter pipeline of a dataset, in the order HDF5 applies it when writing."""
    plist = dataset.id.get_create_plist()
    out = []
    for i in range(plist.get_nfilters()):
        fid, flags, values, name = plist.get_filter(i)
        out.append(
            Filter(
                int(fid),
                name.decode("latin-1") if isinstance(name, bytes) else str(name),
                int(flags),
                tuple(int(v) for v in values),
            )
        )
    return tuple(out)


def _level_dataset(links: Links, path: str, where: str) -> h5py.Dataset:
    found = links.get(path)  # (a broken link raises LinkTargetError; HDF5's own errors read as absent)
    obj = found.obj if found is not None else None
    if not isinstance(obj, h5py.Dataset):
        raise MalformedImsError(f"{where} has no Data dataset", links.label)
    if obj.ndim != 3:
        raise MalformedImsError(f"{where}: Data has {obj.ndim} dimensions, expected 3 (z, y, x)", links.label)
    if obj.dtype.kind not in "uif" or obj.dtype.itemsize > 8:
        raise MalformedImsError(f"{where}: Data has unsupported type {obj.dtype}", links.label)
    return obj


def fill_value(dataset: h5py.Dataset) -> int | float:
    """What h5py reads where a chunk of ``dataset`` was never written: its fill value, or 0 where
    the fill value is undefined or never written (HDF5 then leaves h5py's zeroed buffer as it is)."""
    plist = dataset.id.get_create_plist()
    if plist.fill_value_defined() == h5py.h5d.FILL_VALUE_UNDEFINED or plist.get_fill_time() == h5py.h5d.FILL_TIME_NEVER:
        return 0.0 if dataset.dtype.kind == "f" else 0
    value = dataset.fillvalue
    return float(value) if dataset.dtype.kind == "f" else int(value)


def image_count(f: h5py.File) -> int:
    """How many images the file holds: the root's ``NumberOfDataSets`` (a uint32, sometimes
    text), 1 where it is missing or not a whole number of at least 1. Never more than the root
    has members (each image needs a group of its own), so that a damaged count costs nothing;
    and 1 where the root has no ``DataSet1``, ``DataSet2``, ... at all (a leftover count on a
    file of one image, which `parse_layout` notes).

    >>> with h5py.File("cells.ims", "r") as f:
    ...     image_count(f)
    1
    """
    declared = _declared_images(f)
    if declared > 1 and not any(_has_link(f, image_groups(f, k)[0]) for k in range(1, declared)):
        return 1
    return declared


def _has_link(f: h5py.File, name: str) -> bool:
    """Whether the root has a member ``name``, whatever it leads to (a broken link counts)."""
    try:
        return f.get(name, getlink=True) is not None
    except (KeyError, OSError, RuntimeError, ValueError):
        return False


def _declared_images(f: h5py.File) -> int:
    try:
        value = f.attrs.get("NumberOfDataSets")
    except (KeyError, OSError, TypeError, ValueError):
        value = None
    if value is None:
        return 1
    if isinstance(value, np.ndarray) and value.dtype.kind in "uif":
        numbers = [float(v) for v in value.ravel()[:1]]
    else:
        numbers = parse_floats(decode_text(value))[:1]
    if not numbers or not math.isfinite(numbers[0]) or numbers[0] != int(numbers[0]) or numbers[0] < 1:
        return 1
    try:
        members = len(f)
    except (KeyError, OSError, RuntimeError, ValueError):
        members = 1
    return max(1, min(int(numbers[0]), members))


def image_groups(f: h5py.File, image: int) -> tuple[str, str]:
    """The names of image ``image``'s data and description groups: ``DataSetDirectoryName`` and
    ``DataSetInfoDirectoryName`` (default ``DataSet``, ``DataSetInfo``), followed by the image
    number for every image but the first.

    >>> with h5py.File("tiles.ims", "r") as f:
    ...     image_groups(f, 2)
    ('DataSet2', 'DataSetInfo2')
    """
    suffix = str(image) if image else ""
    data = (read_text(f, "DataSetDirectoryName") or "DataSet") + suffix
    info = (read_text(f, "DataSetInfoDirectoryName") or "DataSetInfo") + suffix
    return data, info


@dataclass(frozen=True)
class ImageEntry:
    """One image of a file: its layout, or the error that keeps it from being read (a tile whose
    linked file is missing, a group that is not there), so that the other images stay readable."""

    index: int
    group: str
    """HDF5 path of its data group (``/DataSet``, ``/DataSet1``, ...)."""
    layout: ImsLayout | None
    error: ImsError | None = None


def parse_images(
    f: h5py.File, path: str | os.PathLike[str] | None = None, links: Links | None = None
) -> tuple[ImageEntry, ...]:
    """Every image of an open file (`image_count` of them). In a file of one image its error is
    raised, as `parse_layout`'s; in a file of several, an image that cannot be read is kept with
    its error (`ImageEntry.error`) unless no image can be read at all: then image 0's error is
    raised. Errors of the network (`RemoteReadError`) are always raised.

    >>> with h5py.File("tiles.ims", "r") as f:
    ...     [entry.layout.extent_min for entry in parse_images(f)]
    [(0.0, 0.0, 0.0), (0.0, 0.0, 90.0)]
    """
    path = os.fspath(path) if path is not None else f.filename
    count = image_count(f)
    if count == 1:
        layout = parse_layout(f, path, links)
        return (ImageEntry(0, layout.dataset_group, layout),)
    entries = []
    for image in range(count):
        group = "/" + image_groups(f, image)[0]
        try:
            layout = parse_layout(f, path, links, image=image)
        except RemoteReadError:
            raise
        except ImsError as err:
            entries.append(ImageEntry(image, group, None, err))
            continue
        entries.append(ImageEntry(image, layout.dataset_group, layout))
    if all(entry.layout is None for entry in entries):
        raise entries[0].error  # type: ignore[misc]
    return tuple(entries)


def parse_layout(
    f: h5py.File, path: str | os.PathLike[str] | None = None, links: Links | None = None, *, image: int = 0
) -> ImsLayout:
    """Parse image ``image`` of an open HDF5 file into an `ImsLayout` (see the module docstring).

    ``links`` follows the file's links (default: HDF5's own rules, right for a local file; a
    remote file needs its own, see `Links`). In a file of several images, errors name the image.
    """
    path = os.fspath(path) if path is not None else f.filename
    count = image_count(f)
    if isinstance(image, bool) or not isinstance(image, (int, np.integer)) or not 0 <= image < count:
        raise SelectionError(f"image {image!r} does not exist; the file has images 0..{count - 1}", path)
    if count == 1:
        return _parse_image(f, path, links or Links(f, path), 0, count)
    try:
        return _parse_image(f, path, links or Links(f, path), int(image), count)
    except (MalformedImsError, NotImarisError) as err:
        group = image_groups(f, image)[0]
        kind = MalformedImsError if isinstance(err, NotImarisError) else type(err)
        raise kind(f"image {image} (/{group}): {err.reason}", path) from err


def _parse_image(f: h5py.File, path: str, links: Links, which: int, count: int) -> ImsLayout:
    notes: list[str] = []

    def note(message: str) -> None:
        if message not in notes:
            notes.append(message)
            where = f"image {which}: " if which else ""
            warnings.warn(f"{path}: {where}{message}", ImsWarning, stacklevel=5)

    dataset_dir, info_dir = image_groups(f, which)
    if count == 1 and _declared_images(f) > 1:
        note(f"NumberOfDataSets is {_declared_images(f)} but the file holds no {dataset_dir}1: read as one image")
    data = _group(links, dataset_dir)
    fallback = "DataSet" + (str(which) if which else "")
    if data is None and dataset_dir != fallback:
        dataset_dir, data = fallback, _group(links, fallback)
    level_numbers = _numbered(data, "ResolutionLevel", note) if data is not None else []
    if not level_numbers:
        if which:
            raise MalformedImsError(f"no image data: {_why_not_a_group(f, dataset_dir)}", path)
        if read_text(f, "ImarisDataSet") is not None:
            raise MalformedImsError(f"Imaris file without image data: {_why_not_a_group(f, dataset_dir)}", path)
        raise NotImarisError("HDF5 file, but not an Imaris file (no /DataSet/ResolutionLevel 0)", path)
    if level_numbers[0] != 0:
        raise MalformedImsError(f"no ResolutionLevel 0 (levels found: {level_numbers})", path)
    if level_numbers != list(range(len(level_numbers))):
        note(f"resolution levels are numbered {_span(level_numbers)}, not 0..{len(level_numbers) - 1}: one is missing")
    assert data is not None

    info = _group(links, info_dir)
    image = _group(links, f"{info_dir}/Image") if info is not None else None

    def member(name: str) -> h5py.Group:
        """A group under the image data (links followed), or a MalformedImsError naming it."""
        found = _group(links, f"{dataset_dir}/{name}")
        if found is None:
            raise MalformedImsError(f"{dataset_dir}/{name} is not a group that can be opened", path)
        return found

    # time points and channels are what level 0 holds
    level0 = member(f"ResolutionLevel {level_numbers[0]}")
    t_numbers = _numbered(level0, "TimePoint", note)
    if not t_numbers:
        raise MalformedImsError("ResolutionLevel 0 has no TimePoint groups", path)
    c_numbers = _numbered(member(f"ResolutionLevel 0/TimePoint {t_numbers[0]}"), "Channel", note)
    if not c_numbers:
        raise MalformedImsError("ResolutionLevel 0/TimePoint 0 has no Channel groups", path)

    # geometry
    ext_min = [parse_float(read_text(image, f"ExtMin{i}")) if image is not None else None for i in (2, 1, 0)]
    ext_max = [parse_float(read_text(image, f"ExtMax{i}")) if image is not None else None for i in (2, 1, 0)]
    unit = (read_text(image, "Unit") if image is not None else None) or "um"

    levels: list[Level] = []
    for index, number in enumerate(level_numbers):
        where = f"ResolutionLevel {number}"
        group = member(where)
        if index:
            t_here = _numbered(group, "TimePoint", note)
            if t_here != t_numbers:
                raise MalformedImsError(
                    f"{where} holds time points {_span(t_here)} but ResolutionLevel 0 holds {_span(t_numbers)}", path
                )
            c_here = _numbered(member(f"{where}/TimePoint {t_numbers[0]}"), "Channel", note)
            if c_here != c_numbers:
                raise MalformedImsError(
                    f"{where} holds channels {_span(c_here)} but ResolutionLevel 0 holds {_span(c_numbers)}", path
                )
        where = f"{where}/TimePoint {t_numbers[0]}/Channel {c_numbers[0]}"
        channel_group = member(where)
        dataset = _level_dataset(links, f"{dataset_dir}/{where}/Data", where)
        size = tuple(parse_int(read_text(channel_group, f"ImageSize{a}")) for a in "ZYX")
        if index == 0 and any(s is None for s in size) and image is not None:
            size = tuple(parse_int(read_text(image, a)) for a in "ZYX")
            if all(s is not None for s in size):
                note(f"{where}: ImageSizeX/Y/Z missing or not whole numbers; using DataSetInfo/Image X, Y, Z")
        if any(s is None for s in size):
            raise MalformedImsError(f"{where}: ImageSizeX/Y/Z missing or not whole numbers", path)
        if any(s <= 0 for s in size):  # type: ignore[operator]
            raise MalformedImsError(f"{where}: image size {size} (z, y, x) is not positive", path)
        if any(s > d for s, d in zip(size, dataset.shape, strict=True)):  # type: ignore[operator]
            raise MalformedImsError(
                f"{where}: image size {size} (z, y, x) is larger than the stored data {dataset.shape}", path
            )
        levels.append(
            Level(
                index=index,
                number=number,
                size=size,  # type: ignore[arg-type]
                dataset_shape=tuple(int(s) for s in dataset.shape),  # type: ignore[arg-type]
                # a contiguous dataset is served plane by plane (see chunks.index_dataset)
                chunks=tuple(int(c) for c in (dataset.chunks or (1, *dataset.shape[1:]))),  # type: ignore[arg-type]
                dtype=dataset.dtype,
                filters=dataset_filters(dataset),
                fill_value=fill_value(dataset),
                voxel_size=(1.0, 1.0, 1.0),  # set below, once the extents are settled
            )
        )
        if levels[-1].dtype != levels[0].dtype:
            raise MalformedImsError(
                f"{where}: data type {dataset.dtype} differs from level 0's {levels[0].dtype}", path
            )

    if any(v is None for v in ext_min + ext_max) or not extents_valid(ext_min, ext_max):  # type: ignore[arg-type]
        note(
            f"extents ExtMin/ExtMax missing or invalid (min {ext_min}, max {ext_max}, z, y, x); "
            "using a voxel size of 1 and an origin of 0"
        )
        size0 = levels[0].size
        ext_min = [0.0, 0.0, 0.0]
        ext_max = [float(s) for s in size0]
    extent_min: Vec3 = tuple(float(v) for v in ext_min)  # type: ignore[assignment]
    extent_max: Vec3 = tuple(float(v) for v in ext_max)  # type: ignore[assignment]
    levels = [replace(lvl, voxel_size=voxel_size(extent_min, extent_max, lvl.size)) for lvl in levels]

    channels = []
    for index, number in enumerate(c_numbers):
        meta = _group(links, f"{info_dir}/Channel {number}") if info is not None else None
        data_group = _group(links, f"{dataset_dir}/ResolutionLevel 0/TimePoint {t_numbers[0]}/Channel {number}")

        def get(name: str, meta: h5py.Group | None = meta) -> str | None:
            return read_text(meta, name) if meta is not None else None

        channels.append(
            Channel(
                index=index,
                number=number,
                name=get("Name") or None,
                color=_color(get("Color")),
                color_range=_pair(get("ColorRange")),
                histogram_range=(
                    _pair(read_text(data_group, "HistogramMin"), read_text(data_group, "HistogramMax"))
                    if data_group is not None
                    else None
                ),
                description=get("Description") or None,
                opacity=parse_float(get("ColorOpacity")),
                gamma=parse_float(get("GammaCorrection")),
                color_mode=get("ColorMode") or None,
                color_table=_color_table(meta, f"{info_dir}/Channel {number}", note) if meta is not None else None,
            )
        )

    time_info = _group(links, f"{info_dir}/TimeInfo") if info is not None else None
    timepoints = [
        TimePoint(
            index=index,
            number=number,
            stamp=parse_timestamp(read_text(time_info, f"TimePoint{number + 1}")) if time_info is not None else None,
        )
        for index, number in enumerate(t_numbers)
    ]

    def image_text(name: str) -> str | None:
        return (read_text(image, name) or None) if image is not None else None

    return ImsLayout(
        path=path,
        dataset_group="/" + dataset_dir.strip("/"),
        levels=tuple(levels),
        timepoints=tuple(timepoints),
        channels=tuple(channels),
        extent_min=extent_min,
        extent_max=extent_max,
        unit=unit,
        name=image_text("Name"),
        description=image_text("Description"),
        recording_date=parse_timestamp(image_text("RecordingDate")),
        imaris_version=read_text(f, "ImarisVersion"),
        warnings=tuple(notes),
        image=which,
        image_count=count,
    )


def _span(numbers: Iterable[int]) -> str:
    numbers = list(numbers)
    if not numbers:
        return "none"
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}..{numbers[-1]}" if len(numbers) > 1 else str(numbers[0])
    return ", ".join(map(str, numbers[:10])) + (", ..." if len(numbers) > 10 else "")
