"""TIFF and OME-TIFF files as write sources, read through tifffile's zarr store.

`read_tiff` opens one series (and one pyramid level) of a TIFF file: its voxels as an array-like
read region by region through ``TiffFile.aszarr`` (tifffile >= 2025.6.11, zarr 3), never the
whole file at once, the (t, c, z, y, x) meaning of each axis, and what the file says of its
physical meaning. `open_source` (``write_ims("stack.ome.tif", ...)``) makes a `SourceImage` of
it. Axes come from tifffile (OME-XML ``DimensionOrder``, ImageJ hyperstacks, tifffile's own
shaped files); physical pixel sizes, time interval, channel names and colours come from the
OME-XML where the file has one, else from the ImageJ metadata (``spacing``, ``unit``,
``finterval``, the resolution tags, ``LUTs``, ``Ranges``).

Axis letters map to (t, c, z, y, x) as T, C, Z, Y, X say; samples (S, RGB) are channels when the
image has no channel axis; one axis of unknown meaning (tifffile's I or Q: a plain multi-page
file) is z when the image has no z. Anything else needs ``axes`` (one letter of ``tczyx`` per
axis of tifffile's squeezed shape, as ``tifffile.imread`` returns it).

>>> import numpy as np, tifffile
>>> tifffile.imwrite("cells.ome.tif", np.zeros((2, 5, 64, 64), np.uint16),
...                  metadata={"axes": "CZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2,
...                            "PhysicalSizeZ": 1.0, "Channel": {"Name": ["DAPI", "GFP"]}})
>>> tiff = read_tiff("cells.ome.tif")
>>> tiff.voxels.shape, tiff.axes, tiff.metadata["voxel_size"], tiff.metadata["channel_names"]
((2, 5, 64, 64), 'czyx', (1.0, 0.2, 0.2), ('DAPI', 'GFP'))
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from ..access.files import location
from ..errors import ImsFileNotFoundError, MissingDependencyError, SelectionError, SourceError
from ..format.geometry import TO_MICROMETRES, imaris_unit
from ..format.layout import ImsWarning

__all__ = ["TiffImage", "read_tiff"]

Vec3 = tuple[float, float, float]

_LETTERS = {"T": "t", "C": "c", "Z": "z", "Y": "y", "X": "x"}
_SEQUENCE = "IQ"  # tifffile's letters for an image sequence / an axis of unknown meaning
_SECONDS = {"s": 1.0, "sec": 1.0, "second": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "min": 60.0, "h": 3600.0}
_EPOCH = _dt.datetime(2000, 1, 1)  # time stamps from an interval alone start here, as other sources' do
_NOT_TAKEN = "its voxel size and channel metadata are not taken (give voxel_size= / --voxel-size)"
_STEP = "time step"  # the seconds between time points the metadata readers find, made stamps once t is known


@dataclass(frozen=True)
class TiffImage:
    """One image of a TIFF file, as `read_tiff` finds it."""

    voxels: Any
    """An array-like with tifffile's squeezed shape (``tifffile.imread``'s), read on indexing."""
    axes: str
    """One letter of ``tczyx`` for each axis of ``voxels``."""
    metadata: dict[str, Any]
    """`SourceImage` fields the file gives: ``voxel_size``, ``unit``, ``time_stamps``,
    ``channel_names``, ``channel_colors``, ``channel_ranges``, ``name``."""


def read_tiff(path: str | os.PathLike[str], *, series: int = 0, level: int = 0, axes: str | None = None) -> TiffImage:
    """Series ``series``, pyramid level ``level`` of a TIFF / OME-TIFF file.

    ``axes`` names the axes of tifffile's squeezed shape (``"zyx"``, ``"tczyx"``...) where the
    file does not say them. A level above 0 gets the voxel size of level 0 scaled by the ratio
    of the sizes. The file stays open while ``voxels`` lives.

    >>> import numpy as np, tifffile
    >>> tifffile.imwrite("planes.tif", np.zeros((6, 32, 32), np.uint16))
    >>> tiff = read_tiff("planes.tif")
    >>> tiff.voxels.shape, tiff.axes, tiff.metadata
    ((6, 32, 32), 'zyx', {})
    """
    text = location(path)
    tif = _open_file(text)
    try:
        return _read(tif, text, series, level, axes)
    except BaseException:
        tif.close()
        raise


def _open_file(path: str) -> Any:
    try:
        import tifffile
    except ImportError as err:  # pragma: no cover - tifffile is a core dependency
        raise MissingDependencyError("reading TIFF needs tifffile: pip install tifffile", path) from err
    if "://" in path:
        raise SourceError("TIFF files are read from a local path, not a URL", path)
    if not Path(path).exists():
        raise ImsFileNotFoundError("no such file", path)
    try:
        return tifffile.TiffFile(path)
    except Exception as err:  # TiffFileError, and whatever a damaged file makes the parser raise
        raise SourceError(f"not a readable TIFF file ({err})", path) from err


def _read(tif: Any, path: str, series: int, level: int, axes: str | None) -> TiffImage:
    count = len(tif.series)
    if count == 0:
        raise SourceError("the TIFF file holds no image", path)
    if isinstance(series, bool) or not isinstance(series, (int, np.integer)) or not 0 <= series < count:
        listed = "; ".join(f"{i}: {s.axes} {s.shape}" for i, s in enumerate(tif.series))
        raise SelectionError(f"series {series} does not exist; the file has series 0..{count - 1} ({listed})", path)
    chosen = tif.series[series]
    levels = chosen.levels
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level < len(levels):
        raise SelectionError(
            f"level {level} does not exist; series {series} has pyramid levels 0..{len(levels) - 1}", path
        )
    _check_codecs(levels[level].keyframe, path)
    missing = sum(page is None for page in levels[level])
    if missing:  # tifffile reads them as its fill value
        _warn(
            path,
            f"{missing} of {len(levels[level])} planes of series {series} are not in the file (the other files of a "
            "multi-file OME-TIFF not found beside it, or an acquisition cut short)",
            "they are written as zeros",
        )
    # squeezed, as tifffile.imread shapes the image (tifffile >= 2026.11 has no other)
    tiff_axes = chosen.axes
    letters = _tczyx_axes(tiff_axes, tuple(int(s) for s in chosen.shape), axes, path)
    voxels = _TiffVoxels(path, int(series), int(level), tif)
    if len(voxels.shape) != len(letters):
        raise SourceError(f"level {level} of series {series} has shape {voxels.shape}, unlike level 0", path)
    meta = _ome_metadata(tif, series, path) if tif.is_ome else None
    if meta is None and tif.is_imagej:
        meta = _imagej_metadata(tif, path)
    base = dict(zip(letters, (int(s) for s in chosen.shape), strict=True))
    return TiffImage(voxels, letters, _fitted(meta or {}, dict(zip(letters, voxels.shape, strict=True)), base))


def _fitted(meta: dict[str, Any], sizes: dict[str, int], base: dict[str, int]) -> dict[str, Any]:
    """The file's metadata made to fit the image as read, of ``sizes`` per axis (``base`` at
    level 0): voxel sizes scaled to the level, one time stamp per time point (``axes=`` may make
    pages time points), per-channel lists dropped where they do not count one per channel (an
    RGB OME image names one channel for its three samples: better no names than wrong ones)."""
    if "voxel_size" in meta:
        meta["voxel_size"] = tuple(
            v * base[a] / sizes[a] if a in sizes else v for v, a in zip(meta["voxel_size"], "zyx", strict=True)
        )
    step = meta.pop(_STEP, None)
    if step:
        meta["time_stamps"] = tuple(_EPOCH + _dt.timedelta(seconds=i * step) for i in range(sizes.get("t", 1)))
    for key in ("channel_names", "channel_colors", "channel_ranges"):
        if key in meta and len(meta[key]) != sizes.get("c", 1):
            del meta[key]
    return meta


def _check_codecs(keyframe: Any, path: str) -> None:
    """Refuse, before any reading, a compression or predictor tifffile cannot decode here."""
    from tifffile import TIFF

    for table, value in ((TIFF.DECOMPRESSORS, keyframe.compression), (TIFF.UNPREDICTORS, keyframe.predictor)):
        if value == 1:  # none
            continue
        try:
            table[value]
        except KeyError as err:
            reason = str(err).strip("'\"")
            if "imagecodecs" in reason:
                raise MissingDependencyError(
                    f"{reason}: pip install 'ims-store[tiff]' (or imagecodecs) to read this file", path
                ) from err
            raise SourceError(f"cannot decode this TIFF: {reason}", path) from err


def _tczyx_axes(tiff_axes: str, shape: Sequence[int], given: str | None, path: str) -> str:
    """One letter of ``tczyx`` for each of tifffile's (squeezed) axes ``tiff_axes``."""
    where = f"its image has shape {tuple(shape)}, tifffile's axes {tiff_axes!r}"
    if given is not None:
        given = given.lower()
        if len(given) != len(tiff_axes) or len(set(given)) != len(given) or not set(given) <= set("tczyx"):
            raise SourceError(
                f"axes {given!r} do not fit this TIFF ({where}): give {len(tiff_axes)} distinct letters of 'tczyx'",
                path,
            )
        return given
    mapped: list[str | None] = [_LETTERS.get(a) for a in tiff_axes]
    if "S" in tiff_axes and "c" not in mapped:  # RGB(A) samples of an image with no channel axis
        mapped[tiff_axes.index("S")] = "c"
    unknown = [i for i, m in enumerate(mapped) if m is None]
    if len(unknown) == 1 and tiff_axes[unknown[0]] in _SEQUENCE and "z" not in mapped:
        mapped[unknown[0]] = "z"  # a plain stack of pages is a z stack
    if None in mapped or len(set(mapped)) != len(mapped):
        free = iter(a for a in "tzc" if a not in mapped)
        example = "".join(m or next(free, "?") for m in mapped)  # one reading of the axes: the user knows
        raise SourceError(
            f"cannot tell which of t, c, z, y, x each axis is ({where}): give one letter of 'tczyx' for each "
            f"with axes= / --axes, e.g. {example!r}",
            path,
        )
    return "".join(mapped)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# the voxels


class _TiffVoxels:
    """One level of one series of a TIFF file as an array-like with tifffile's squeezed shape,
    read through tifffile's zarr store (whole pages as chunks): indexing reads only the pages
    (and, within them, the strips or tiles) the region needs.

    tifffile's store cannot be pickled; this can (dask.distributed): a copy opens the file
    again where it is first read. The file is closed when the object is collected.
    """

    def __init__(self, path: str, series: int, level: int, tif: Any = None) -> None:
        self.path, self.series, self.level = path, series, level
        self._lock = threading.Lock()
        self._array: Any = None
        array = self._open(tif)
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        stat = os.stat(path)
        self._stamp = (stat.st_size, stat.st_mtime_ns)

    def _open(self, tif: Any = None) -> Any:
        with self._lock:
            if self._array is None:
                import tifffile
                import zarr

                tif = tif if tif is not None else tifffile.TiffFile(self.path)
                try:
                    store = tif.aszarr(series=self.series, level=self.level, squeeze=True, chunkmode=2)
                    self._array = zarr.open_array(store, mode="r")
                except Exception as err:
                    tif.close()
                    raise SourceError(f"cannot read series {self.series} through tifffile ({err})", self.path) from err
                weakref.finalize(self, tif.close)
            return self._array

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None, "_lock": None}  # an open file does not travel

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def __dask_tokenize__(self) -> Any:
        return (type(self).__name__, self.path, self._stamp, self.series, self.level)

    def __getitem__(self, key: Any) -> np.ndarray:
        array = self._open()
        try:
            return np.asarray(array[key])
        except Exception as err:  # a damaged strip or tile, a file cut short...
            raise SourceError(f"reading series {self.series} failed ({err})", self.path) from err


# --------------------------------------------------------------------------------------------
# metadata


def _ome_metadata(tif: Any, series: int, path: str) -> dict[str, Any] | None:
    """What the OME-XML says of the image behind series ``series``: voxel size and unit, time
    stamps, channel names and colours, name."""
    try:
        root = ElementTree.fromstring(tif.ome_metadata)
    except (ElementTree.ParseError, TypeError, ValueError):
        return None
    pixels = _ome_pixels(root, tif.series, series, path)
    if pixels is None:
        return None
    attrib = pixels.attrib
    sizes = []
    for axis in "ZYX":
        value = attrib.get(f"PhysicalSize{axis}")
        unit = attrib.get(f"PhysicalSize{axis}Unit", "µm")
        sizes.append((_float(value), unit))
    meta: dict[str, Any] = {}
    unknown = sorted({unit for value, unit in sizes if value is not None and imaris_unit(unit)[0] is None})
    if unknown:
        _warn(path, f"the OME-XML gives pixel sizes in {', '.join(unknown)}, which Imaris has no unit for")
    elif any(v is not None for v, _ in sizes):
        meta["voxel_size"], meta["unit"] = _lengths(sizes)
    step = _float(attrib.get("TimeIncrement"))
    if step:
        meta[_STEP] = step * _SECONDS.get(attrib.get("TimeIncrementUnit", "s"), 1.0)
    channels = [el for el in pixels if el.tag.endswith("}Channel") or el.tag == "Channel"]
    if channels:
        names = [el.attrib.get("Name") for el in channels]
        if all(names):
            meta["channel_names"] = tuple(str(n) for n in names)
        colors = [el.attrib.get("Color") for el in channels]
        if all(c is not None for c in colors):
            meta["channel_colors"] = tuple(_ome_color(str(c)) for c in colors)
    image = _parent_image(root, pixels)
    if image is not None and image.attrib.get("Name"):
        meta["name"] = image.attrib["Name"]
    return meta


def _images(root: Any) -> list[Any]:
    return [el for el in root if el.tag.rsplit("}", 1)[-1] == "Image"]


def _ome_pixels(root: Any, all_series: Sequence[Any], index: int, path: str) -> Any:
    """The ``Pixels`` element of the OME ``Image`` tifffile made series ``index`` of.

    tifffile makes a series of each image that has data, in order: with as many images as
    series they pair by position; else by name and size, where that is unique. An image that
    cannot be paired gives no metadata, with a warning (its voxel size would be a guess).
    """
    images = [(img, next((p for p in img if p.tag.rsplit("}", 1)[-1] == "Pixels"), None)) for img in _images(root)]
    images = [(img, px) for img, px in images if px is not None]
    if len(images) == len(all_series):
        return images[index][1]
    chosen = all_series[index]
    shape = dict(zip(chosen.axes, chosen.shape, strict=True))
    matches = [
        px
        for img, px in images
        if img.attrib.get("Name") == chosen.name
        and all(int(px.attrib.get(f"Size{a}", -1)) == shape.get(a, 1) for a in "XYZCT" if a in shape)
    ]
    if len(matches) == 1:
        return matches[0]
    _warn(path, f"the OME-XML image of series {index} cannot be told apart from the others")
    return None


def _warn(path: str, why: str, then: str = _NOT_TAKEN) -> None:
    warnings.warn(f"{path}: {why}; {then}", ImsWarning, stacklevel=2)


def _parent_image(root: Any, pixels: Any) -> Any:
    return next((img for img in _images(root) if any(child is pixels for child in img)), None)


def _float(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _lengths(sizes: Sequence[tuple[float | None, str]]) -> tuple[Vec3, str]:
    """(z, y, x) lengths with their units (each one Imaris knows) -> one Imaris unit (x's, or
    micrometres for angstroms and picometres); a length not given is 1 of that unit."""
    symbol = None
    for value, unit in reversed(sizes):  # x first
        if value is not None:
            symbol, factor = imaris_unit(unit)
            if symbol is not None and factor != 1.0:  # angstrom, picometre: written in micrometres
                symbol = "um"
            break
    symbol = symbol or "um"
    out = []
    for value, unit in sizes:
        if value is None:
            out.append(1.0)
            continue
        name, factor = imaris_unit(unit)
        out.append(value * factor * TO_MICROMETRES[name] / TO_MICROMETRES[symbol])  # type: ignore[index]
    return tuple(out), symbol  # type: ignore[return-value]


def _ome_color(text: str) -> tuple[float, float, float]:
    """OME's colour: a signed 32-bit RGBA integer."""
    try:
        value = int(text) & 0xFFFFFFFF
    except ValueError:
        return (1.0, 1.0, 1.0)
    return tuple(((value >> shift) & 0xFF) / 255 for shift in (24, 16, 8))  # type: ignore[return-value]


def _imagej_metadata(tif: Any, path: str) -> dict[str, Any]:
    """What an ImageJ hyperstack says: z spacing, x / y pixel size (resolution tags), unit,
    frame interval, channel colours (the LUTs' brightest entries) and display ranges. Sizes with
    no unit (or ``pixel``) are kept as they are, in the writer's default unit; sizes in a unit
    Imaris has none for (``inch``) are not taken."""
    ij = tif.imagej_metadata or {}
    meta: dict[str, Any] = {}
    page = tif.series[0].keyframe
    resolution = getattr(page, "resolution", (1.0, 1.0))
    x, y = (1.0 / float(r) if r and float(r) > 0 else 1.0 for r in resolution)
    z = _float(ij.get("spacing")) or 1.0
    unit = str(ij.get("unit", "")).replace("\\u00B5", "µ").replace("\\u00b5", "µ")
    symbol, factor = imaris_unit(unit)
    if symbol is None and unit.strip().lower() not in ("", "pixel", "pixels"):
        _warn(path, f"the ImageJ metadata gives pixel sizes in {unit}, which Imaris has no unit for")
    elif symbol is not None or (x, y, z) != (1.0, 1.0, 1.0):
        meta["voxel_size"] = (z * factor, y * factor, x * factor)
        meta["unit"] = symbol
    step = _float(ij.get("finterval"))
    if step:
        meta[_STEP] = step * _SECONDS.get(str(ij.get("tunit", "s")).lower(), 1.0)
    luts = ij.get("LUTs")
    if luts:
        meta["channel_colors"] = tuple(tuple(float(v) / 255 for v in np.asarray(lut)[:3, -1]) for lut in luts)
    ranges = ij.get("Ranges")
    if ranges and len(ranges) % 2 == 0:
        meta["channel_ranges"] = tuple((float(ranges[i]), float(ranges[i + 1])) for i in range(0, len(ranges), 2))
    return meta
