"""Check a file against what Imaris needs, listing every problem found.

`validate` walks the whole file (every level, time point and channel): required groups and
attributes, the char-array encoding of text attributes, the resolution pyramid (present and
consistent with Imaris' rule), data sets (their filters and where their chunks lie in the
file), histograms and the thumbnail. Problems are errors (Imaris would refuse the file, rebuild
it, or show wrong data) or warnings (Imaris copes).

The check reads the file's structure, never its pixels, so a file of any size is checked in
seconds; a chunk whose stored bytes are damaged goes unnoticed. ``deep=True`` also decodes every
chunk and reports each one that fails, naming its level, time point, channel and position.

>>> problems = validate("cells.ims")
>>> [p for p in problems if p.severity == "error"]
[]
>>> [p for p in validate("cells.ims", deep=True) if p.severity == "error"]  # decodes every chunk
[]
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import h5py
import numpy as np

from ..access.files import LocalFile, RemoteFile, links_of, open_file
from ..access.outputs import progress_bar
from ..errors import CorruptChunkError, ImsError, LinkTargetError, RemoteReadError, TruncatedFileError
from ..format.attributes import parse_float, parse_int, read_text
from ..format.chunks import stored_chunks
from ..format.codecs import FILTERS, HDF5_BUILTIN_FILTERS
from ..format.layout import (
    ImsLayout,
    ImsWarning,
    Level,
    dataset_filters,
    image_count,
    image_groups,
    parse_images,
    parse_layout,
)
from ..format.links import Links, Located, stored_elsewhere
from ..format.pyramid import halved_axes, next_level_size

if TYPE_CHECKING:
    from .engine import ImageEngine

__all__ = ["Problem", "validate"]

# Imaris 7 files stop adding levels at 4 Mi voxels (ImarisWriter: 1 MiB of data); a file whose
# last level is larger than this and could still halve lacks part of its pyramid.
PYRAMID_LIMIT_VOXELS = 4 * 1024 * 1024

ROOT_TEXT = (
    "DataSetDirectoryName",
    "DataSetInfoDirectoryName",
    "ImarisDataSet",
    "ImarisVersion",
    "ThumbnailDirectoryName",
)


@dataclass(frozen=True)
class Problem:
    """One finding: ``where`` in the file, ``what`` is wrong, and how bad it is."""

    severity: Literal["error", "warning"]
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.what}"


def _char_array_problem(obj: h5py.HLObject, name: str) -> str | None:
    """Why an attribute is not an Imaris char array (H5T_C_S1, size 1, NULLTERM), or None."""
    try:
        attr = h5py.h5a.open(obj.id, name.encode("latin-1"))
    except KeyError:
        return "missing"
    tid = attr.get_type()
    if tid.get_class() != h5py.h5t.STRING:
        return f"stored as {attr.dtype}, not as text"
    if tid.is_variable_str():
        return "a variable-length string; Imaris reads 1-byte char arrays"
    if tid.get_size() != 1:
        return f"a fixed string of {tid.get_size()} bytes; Imaris reads arrays of 1-byte chars"
    if tid.get_strpad() != h5py.h5t.STR_NULLTERM:
        return "padded NULLPAD/SPACEPAD; Imaris expects NULLTERM"
    return None


def _text_attributes(
    obj: h5py.HLObject,
    where: str,
    required: tuple[str, ...] = (),
    expected: tuple[str, ...] = (),
    numeric: tuple[str, ...] = ("NumberOfDataSets",),
) -> Iterator[Problem]:
    """Encoding of every text attribute; ``required`` missing is an error, ``expected`` a warning."""
    for name in sorted(set(obj.attrs) | set(required) | set(expected)):
        if name in numeric:
            continue
        problem = _char_array_problem(obj, name)
        if problem == "missing":
            if name in required:
                yield Problem("error", where, f"attribute {name} is missing")
            else:
                yield Problem("warning", where, f"attribute {name} is missing (Imaris falls back to a default)")
        elif problem is not None:
            yield Problem("error", where, f"attribute {name} is {problem}")


def validate(path: str | os.PathLike[str], deep: bool = False, progress: bool = False) -> list[Problem]:
    """Every problem found in the file; an empty list means Imaris will be content with it.

    ``deep``: also decode every chunk of every level, time point and channel, and report each
    chunk that cannot be read or decoded (this reads the whole file); ``progress`` shows a bar
    over those chunks. ``path`` may be a URL.

    A file of several images (tiles) is checked image by image; an image that cannot be read
    at all (a tile whose linked file is missing) is one error naming its group, and the others
    are checked as usual.
    """
    path = os.fspath(path)
    source = open_file(path)
    try:
        f = source.open_hdf5()
        file_size = source.size()
    except RemoteReadError:
        raise  # the network failed, not the file: nothing could be checked
    except ImsError as err:
        return [Problem("error", path, err.reason)]
    finally:
        source.close()
    with f:
        links = links_of(source, f)
        try:
            try:
                if image_count(f) > 1:
                    entries = parse_images(f, path, links)
                    layouts = [e.layout for e in entries]
                else:
                    entries, layouts = (), [parse_layout(f, path, links)]
            except ImsError as err:
                return [Problem("error", path, err.reason)]
            problems = [Problem("error", e.group, e.error.reason) for e in entries if e.error is not None]
            readable = [layout for layout in layouts if layout is not None]
            for layout in readable:
                where = layout.dataset_group if entries else path
                problems += [Problem("warning", where, note) for note in layout.warnings]
            problems += _check_root(f)
            data = _Data(links, source, file_size)
            for layout in readable:
                problems += _check(f, layout, data)
            problems += _check_thumbnail(f)
            if deep:
                total = sum(
                    len(layout.timepoints) * len(layout.channels) * math.prod(lvl.chunk_grid)
                    for layout in readable
                    for lvl in layout.levels
                )
                bar = progress_bar(progress, total, f"decoding {Path(path).name}")
                try:
                    for layout in readable:
                        problems += _check_chunks(f, layout, bar)
                finally:
                    if bar is not None:
                        bar.close()
            return problems
        except Exception as err:
            failed = source.failed_read()
            if failed is None:
                raise
            raise failed from err
        finally:
            links.close()


@dataclass
class _Data:
    """The image data of the file under check, links followed, and the size of each file it is in."""

    links: Links
    source: LocalFile | RemoteFile
    file_size: int

    def get(self, path: str) -> Located | None:
        return self.links.get(path)

    sizes: dict[str, int] = field(default_factory=dict)
    """the size of each file links lead to, asked once"""

    def size_of(self, file: str | None) -> int:
        if file is None:
            return self.file_size
        if file not in self.sizes:
            self.sizes[file] = self.source.linked(file).size()
        return self.sizes[file]


def _check_root(f: h5py.File) -> Iterator[Problem]:
    yield from _text_attributes(f, "/", ROOT_TEXT)
    count = f.attrs.get("NumberOfDataSets")
    if count is None:
        yield Problem("error", "/", "attribute NumberOfDataSets is missing")
    elif np.asarray(count).dtype != np.uint32:
        yield Problem("warning", "/", f"attribute NumberOfDataSets is {np.asarray(count).dtype}, Imaris writes uint32")


def _check(f: h5py.File, layout: ImsLayout, data: _Data) -> Iterator[Problem]:
    """The checks of one image: its description group, pyramid and data."""
    name = "/" + image_groups(f, layout.image)[1]
    info = f.get(name)
    if not isinstance(info, h5py.Group):
        yield Problem("error", name, "missing")
    else:
        yield from _check_info(info, layout)
    yield from _check_pyramid(layout)
    yield from _check_data(layout, data)


def _check_thumbnail(f: h5py.File) -> Iterator[Problem]:
    thumb = f.get("Thumbnail/Data")
    if not isinstance(thumb, h5py.Dataset):
        yield Problem("warning", "/Thumbnail/Data", "missing (Imaris shows no preview)")
    elif thumb.dtype != np.uint8 or thumb.ndim != 2 or thumb.shape[1] % 4:
        yield Problem("warning", "/Thumbnail/Data", f"{thumb.dtype} {thumb.shape}; expected uint8 (h, 4 * w) RGBA")


def _check_info(info: h5py.Group, layout: ImsLayout) -> Iterator[Problem]:
    base = info.name
    image = info.get("Image")
    if not isinstance(image, h5py.Group):
        yield Problem("error", f"{base}/Image", "missing")
    else:
        extents = ("ExtMin0", "ExtMin1", "ExtMin2", "ExtMax0", "ExtMax1", "ExtMax2")
        yield from _text_attributes(image, f"{base}/Image", extents, ("X", "Y", "Z", "Unit"))
        for name in extents:
            if read_text(image, name) is not None and parse_float(read_text(image, name)) is None:
                yield Problem("error", f"{base}/Image", f"attribute {name} is not a number")
        yield from _check_extents(image)
        size = tuple(parse_int(read_text(image, a)) for a in "ZYX")
        if None not in size and size != layout.levels[0].size:
            yield Problem("error", f"{base}/Image", f"Z, Y, X = {size} but level 0 holds {layout.levels[0].size}")
    for ch in layout.channels:
        where = f"{base}/Channel {ch.number}"
        group = info.get(f"Channel {ch.number}")
        if not isinstance(group, h5py.Group):
            yield Problem("warning", where, "missing (Imaris shows the channel without name or colour)")
        else:
            yield from _text_attributes(group, where, expected=("Color", "ColorRange"))
    time_info = info.get("TimeInfo")
    if not isinstance(time_info, h5py.Group):
        yield Problem("warning", f"{base}/TimeInfo", "missing (Imaris shows no time stamps)")
    else:
        stamps = tuple(f"TimePoint{tp.number + 1}" for tp in layout.timepoints)
        yield from _text_attributes(
            time_info, f"{base}/TimeInfo", expected=("DatasetTimePoints", "FileTimePoints", *stamps)
        )
        declared = parse_int(read_text(time_info, "DatasetTimePoints"))
        if declared is not None and declared != len(layout.timepoints):
            yield Problem(
                "warning",
                f"{base}/TimeInfo",
                f"DatasetTimePoints is {declared}, the data has {len(layout.timepoints)}",
            )


def _check_extents(image: h5py.Group) -> Iterator[Problem]:
    """ExtMax must lie above ExtMin on every axis: the voxel size is their difference over the size."""
    for i, axis in enumerate("XYZ"):
        lo = parse_float(read_text(image, f"ExtMin{i}"))
        hi = parse_float(read_text(image, f"ExtMax{i}"))
        if lo is None or hi is None:
            continue  # missing or not a number: reported above
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            yield Problem(
                "error",
                "/DataSetInfo/Image",
                f"ExtMax{i} ({hi:g}) is not above ExtMin{i} ({lo:g}): the voxel size along {axis} is not positive",
            )


def _check_pyramid(layout: ImsLayout) -> Iterator[Problem]:
    sizes = [lvl.size for lvl in layout.levels]
    for r in range(1, len(sizes)):
        expected = next_level_size(sizes[r - 1])
        if sizes[r] != expected:
            yield Problem(
                "error",
                f"{'' if not layout.image else layout.dataset_group + '/'}ResolutionLevel {layout.levels[r].number}",
                f"size {sizes[r]} (z, y, x) does not follow from level {r - 1} {sizes[r - 1]}: expected {expected}",
            )
    last = sizes[-1]
    if int(np.prod(last)) > PYRAMID_LIMIT_VOXELS and any(halved_axes(last)):
        yield Problem(
            "error",
            layout.dataset_group,
            f"the pyramid stops at {last} (z, y, x), {int(np.prod(last))} voxels: Imaris treats the file as "
            "lacking its resolution pyramid and rebuilds it on every open",
        )


def _check_data(layout: ImsLayout, image: _Data) -> Iterator[Problem]:
    for lvl in layout.levels:
        for tp in layout.timepoints:
            for ch in layout.channels:
                where = layout.data_path(lvl.index, tp.index, ch.index).rsplit("/", 1)[0]
                try:
                    found = image.get(where)
                    stored = image.get(f"{where}/Data")
                except LinkTargetError as err:
                    yield Problem("error", where, err.reason)
                    continue
                group = found.obj if found is not None else None
                if not isinstance(group, h5py.Group):
                    yield Problem("error", where, "missing")
                    continue
                yield from _text_attributes(group, where, ("ImageSizeX", "ImageSizeY", "ImageSizeZ"))
                size = tuple(parse_int(read_text(group, f"ImageSize{a}")) for a in "ZYX")
                if size != lvl.size:
                    yield Problem("error", where, f"ImageSize Z, Y, X = {size}, level {lvl.index} is {lvl.size}")
                data = stored.obj if stored is not None else None
                if not isinstance(data, h5py.Dataset):
                    yield Problem("error", where, "no Data dataset")
                    continue
                elsewhere = stored_elsewhere(data, remote=image.links.remote)
                if elsewhere:
                    yield Problem("error", f"{where}/Data", elsewhere)
                if data.dtype != lvl.dtype or data.ndim != 3:
                    yield Problem("error", f"{where}/Data", f"{data.dtype} with {data.ndim} axes; level is {lvl.dtype}")
                elif any(d < s for d, s in zip(data.shape, lvl.size, strict=True)):
                    yield Problem("error", f"{where}/Data", f"shape {data.shape} is smaller than the image {lvl.size}")
                elif data.chunks and any(d % c for d, c in zip(data.shape, data.chunks, strict=True)):
                    yield Problem(
                        "warning", f"{where}/Data", f"shape {data.shape} is not padded to whole chunks {data.chunks}"
                    )
                yield from _check_filters(data, f"{where}/Data")
                yield from _check_chunk_extents(data, f"{where}/Data", image.size_of(stored.file))  # type: ignore[union-attr]
                yield from _check_histograms(group, lvl, where)


def _check_histograms(group: h5py.Group, lvl: Level, where: str) -> Iterator[Problem]:
    """``Histogram`` (and ``Histogram1024`` beyond 8 bits) count the voxels of the true-size region,
    each exactly once (floats may leave NaN out), between HistogramMin and HistogramMax."""
    voxels = int(np.prod(lvl.size, dtype=np.int64))
    tables = {"Histogram": 256, "Histogram1024": 1024}
    for name, most in tables.items():
        table = group.get(name)
        if not isinstance(table, h5py.Dataset):
            if name == "Histogram":
                yield Problem("error", where, "no Histogram")
            elif lvl.dtype != np.uint8:
                yield Problem("warning", where, "no Histogram1024 (Imaris writes one for data beyond 8 bits)")
            continue
        if table.ndim != 1 or table.dtype.kind not in "iu" or not 0 < table.shape[0] <= most:
            yield Problem(
                "error", f"{where}/{name}", f"{table.dtype} of shape {table.shape}; expected up to {most} counts"
            )
            continue
        counted = int(table[()].astype(np.uint64).sum())
        if counted != voxels and not (lvl.dtype.kind == "f" and counted < voxels):
            yield Problem("error", f"{where}/{name}", f"counts {counted} voxels; the level has {voxels}")
        suffix = name[len("Histogram") :]
        low, high = (parse_float(read_text(group, f"Histogram{b}{suffix}")) for b in ("Min", "Max"))
        if low is None or high is None:
            yield Problem("warning", where, f"no HistogramMin{suffix} / HistogramMax{suffix}")
        elif low > high:
            yield Problem("error", where, f"HistogramMin{suffix} {low} is above HistogramMax{suffix} {high}")


def _check_filters(data: h5py.Dataset, where: str) -> Iterator[Problem]:
    """Filters outside Imaris' set (deflate, shuffle, LZ4, and those every HDF5 library has):
    Imaris cannot read the data, and ims_store only through an HDF5 plugin, if one is installed."""
    for f in dataset_filters(data):
        if f.id in HDF5_BUILTIN_FILTERS:
            yield Problem("warning", where, f"HDF5 filter {f.id} ({f.name}): read through HDF5, more slowly")
        elif f.id not in FILTERS:
            yield Problem(
                "error",
                where,
                f"compressed with HDF5 filter {f.id} ({f.name or 'unnamed'}), which no ims_store decoder knows; "
                "Imaris reads only deflate, shuffle and LZ4",
            )


def _chunk_extents(data: h5py.Dataset) -> Iterator[tuple[tuple[int, ...], int, int]]:
    """(chunk position on the chunk grid, file offset, stored size) of every written chunk."""
    dsid = data.id
    if data.chunks is None:
        offset = dsid.get_offset()
        if offset is not None:  # contiguous: one run of bytes (None: never written, or compact)
            yield (0, 0, 0), int(offset), int(dsid.get_storage_size())
        return
    for info in stored_chunks(data):
        if info.byte_offset is not None:
            grid = tuple(o // c for o, c in zip(info.chunk_offset, data.chunks, strict=True))
            yield grid, int(info.byte_offset), int(info.size)


def _check_chunk_extents(data: h5py.Dataset, where: str, file_size: int) -> Iterator[Problem]:
    """Chunks whose bytes lie (partly) past the end of the file: a damaged chunk index, or a copy
    cut short whose HDF5 structures survived. Nobody can read them."""
    try:
        extents = list(_chunk_extents(data))
    except (OSError, RuntimeError, ValueError) as err:
        yield Problem("error", where, f"HDF5 cannot list the chunks ({err})")
        return
    for grid, offset, size in extents:
        if offset + size > file_size:
            yield Problem(
                "error",
                where,
                f"chunk {grid} (z, y, x) lies past the end of the file: bytes {offset}..{offset + size} "
                f"of a file of {file_size}",
            )


def _check_chunks(f: h5py.File, layout: ImsLayout, bar: Any = None) -> list[Problem]:
    """Decode every chunk (``validate(deep=True)``); one problem per chunk that fails."""
    from .zarr_store import ImsStore

    with warnings.catch_warnings():
        # parse_layout warned about the same file a moment ago
        warnings.simplefilter("ignore", ImsWarning)
        store = ImsStore(layout.path, image=layout.image)
    problems: list[Problem] = []
    try:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for lvl in layout.levels:
                for tp in layout.timepoints:
                    for ch in layout.channels:
                        path = layout.data_path(lvl.index, tp.index, ch.index)
                        data = f.get(path)
                        if isinstance(data, h5py.Dataset) and data.ndim == 3 and data.dtype == lvl.dtype:
                            problems += _decode_dataset(store.engine, pool, lvl, tp.index, ch.index, path)
                        if bar is not None:  # a dataset without readable Data counts as checked
                            bar.update(math.prod(lvl.chunk_grid))
                        # else: no readable Data at all, reported by the structural checks
    finally:
        store.close()
    return problems


def _decode_dataset(
    engine: ImageEngine, pool: ThreadPoolExecutor, lvl: Level, t: int, c: int, path: str
) -> list[Problem]:
    """Problems of one dataset: one for the dataset if it cannot be indexed, else one per bad chunk."""
    grid: list[tuple[int, int, int]] = list(itertools.product(*(range(n) for n in lvl.chunk_grid)))  # type: ignore[arg-type]

    def decode(pos: tuple[int, int, int]) -> Problem | None:
        try:
            engine.read_chunk(lvl.index, t, c, *pos)
        except (CorruptChunkError, TruncatedFileError) as err:
            return Problem("error", path, err.reason)
        return None

    try:
        first = decode(grid[0])  # also builds the chunk index, which fails for the whole dataset
    except RemoteReadError:
        raise  # the network failed, not the file
    except ImsError as err:
        return [Problem("error", path, f"its chunks cannot be read: {err.reason}")]
    found = [first, *pool.map(decode, grid[1:])]
    return [p for p in found if p is not None]
