"""Adapters that turn what users hold into one lazy 5-D image with its physical metadata.

`open_source` accepts numpy and dask arrays (with an ``axes`` string), OME-Zarr images (a path,
URL or zarr group; NGFF 0.4 and 0.5), NIfTI files (``.nii``, ``.nii.gz``), TIFF / OME-TIFF
files (``.tif``, ``.tiff``; see `tiff_source`) and Imaris files (a path or an `ImsStore`), and
returns a `SourceImage`: a dask array ``(t, c, z, y, x)`` plus voxel
size, origin (centre of the first voxel), unit, channel names, colours and display ranges, and
time stamps. Spatial tuples are (z, y, x).

>>> import numpy as np
>>> src = open_source(np.zeros((3, 4, 5), np.uint8), axes="zyx", voxel_size=(2.0, 1.0, 1.0))
>>> src.data.shape, src.voxel_size
((1, 1, 3, 4, 5), (2.0, 1.0, 1.0))
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import MissingDependencyError, SourceError
from ..format.geometry import TO_MICROMETRES as _TO_UM
from ..format.geometry import imaris_unit as _imaris_unit
from ..format.geometry import voxel_centre_origin
from .tiff_source import read_tiff

__all__ = ["SourceError", "SourceImage", "open_source", "path_kind", "source_layout"]

Vec3 = tuple[float, float, float]

_TCZYX = "tczyx"  # the axes of every SourceImage's data


@dataclass(frozen=True)
class SourceImage:
    """A lazy (t, c, z, y, x) image and what is known of its physical meaning."""

    data: Any
    """dask array, 5-D (t, c, z, y, x)."""
    voxel_size: Vec3 | None = None
    origin: Vec3 | None = None
    """Physical position of the centre of the first voxel (as OME-NGFF translations and NIfTI)."""
    unit: str | None = None
    """An Imaris unit symbol (``um``, ``nm``, ``mm``...)."""
    channel_names: tuple[str, ...] | None = None
    channel_colors: tuple[tuple[float, float, float], ...] | None = None
    channel_ranges: tuple[tuple[float, float], ...] | None = None
    time_stamps: tuple[_dt.datetime, ...] | None = None
    name: str | None = None
    description: str | None = None
    recording_date: _dt.datetime | None = None
    label: str = "array"
    """What the source was, for messages."""
    in_memory: bool = False
    """The data is a numpy array wrapped by dask: a cluster gets it once, not with every slab."""
    numpy: tuple[str, np.ndarray] | None = None
    """For a numpy array in memory: the dask name of `data` and the same values as a (t, c, z,
    y, x) numpy view, which the writer slices (dask's compute copies every result)."""
    files: tuple[str, ...] = ()
    """The local files and folders the voxels are read from: no output may be one of them, hold
    one or lie inside one (`outputs.check_output`)."""
    ims: tuple[Any, int] | None = None
    """For an Imaris source: its `ImsStore` and the resolution level read, so that a new Imaris
    file of the same geometry keeps what the source holds beside the image (`beside`)."""

    def numpy_view(self) -> np.ndarray | None:
        """`data` as a numpy view of the caller's array, while `data` is still that array
        (a replaced or derived dask array has another name); None otherwise."""
        if self.numpy is None or getattr(self.data, "name", None) != self.numpy[0]:
            return None
        return self.numpy[1]


def open_source(
    source: Any, *, axes: str | None = None, level: int = 0, series: int | None = None, **overrides: Any
) -> SourceImage:
    """Turn ``source`` into a `SourceImage`; keyword ``overrides`` replace what it carries.

    ``axes`` names the dimensions of an array source (``"zyx"``, ``"czyx"``, ``"tczyx"``,
    ``"yx"``...); without it, 2-D is ``yx``, 3-D ``zyx``, 4-D ``czyx`` and 5-D ``tczyx``. For a
    TIFF file it names the axes of tifffile's squeezed shape, where the file does not say them.
    ``level`` picks a resolution level of a multiscale source (``.ims``, OME-Zarr, pyramidal
    OME-TIFF); ``series`` the image of a multi-series TIFF (default 0).
    """
    from ..store.zarr_store import ImsStore

    tiff = isinstance(source, (str, os.PathLike)) and path_kind(source) == "tiff"
    if series is not None and not tiff:
        raise SourceError(
            "series= applies to TIFF files only", source if isinstance(source, (str, os.PathLike)) else None
        )
    if isinstance(source, SourceImage):
        image = source
    elif isinstance(source, ImsStore):
        image = _from_ims(source, level)
    elif tiff:
        image = _from_tiff(os.fspath(source), series or 0, level, axes)
    elif isinstance(source, (str, os.PathLike)):
        image = _from_path(source, level)
    elif _is_zarr_group(source):
        image = _from_ome_zarr(source, getattr(source, "store", "zarr group"), level)
    elif hasattr(source, "dims") and hasattr(source, "coords") and hasattr(source, "data"):
        image = _from_dataarray(source)
    elif hasattr(source, "shape") and hasattr(source, "dtype"):
        image = _from_array(source, axes)
    else:
        image = _from_array(_as_array(source), axes)  # nested lists, anything np.asarray takes
    named = isinstance(source, (SourceImage, ImsStore, str, os.PathLike)) or _is_zarr_group(source)
    if axes is not None and not tiff and (hasattr(source, "dims") or named):
        raise SourceError("axes= applies to array sources only; this source names its own axes", image.label)
    changes = {k: _normalise(k, v) for k, v in overrides.items() if v is not None}
    return replace(image, **changes) if changes else image


def named_files(source: Any) -> tuple[str, ...]:
    """The local files or folders a source names, known before it is opened (a path, an
    `ImsStore`): an output is checked against them before anything is read.

    >>> named_files("cells.ims"), named_files([1, 2, 3])
    (('cells.ims',), ())
    """
    from ..store.zarr_store import ImsStore

    if isinstance(source, (str, os.PathLike)):
        return (os.fspath(source),)
    if isinstance(source, ImsStore):
        return (source.path,)
    if isinstance(source, SourceImage):
        return source.files
    return ()


def _as_array(source: Any) -> np.ndarray:
    """What ``np.asarray`` makes of an array-like (nested lists, ...), if it is numbers."""
    try:
        array = np.asarray(source)
    except (TypeError, ValueError) as err:  # ragged lists and the like
        raise SourceError(f"cannot write a {type(source).__name__}: {err}") from err
    if array.dtype.kind not in "biuf" or array.ndim < 2:
        raise SourceError(
            f"cannot write a {type(source).__name__} ({array.ndim}-D, {array.dtype}): give an array of numbers "
            "(2-D or more), an OME-Zarr, a NIfTI or an .ims file"
        )
    return array.astype(np.uint8) if array.dtype.kind == "b" else array


def _normalise(key: str, value: Any) -> Any:
    if key in ("voxel_size", "origin"):
        values = tuple(float(v) for v in value)
        if len(values) != 3:
            raise SourceError(f"{key} must have 3 values (z, y, x), got {value!r}")
        return values
    if key in ("channel_names",):
        return tuple(str(v) for v in value)
    if key in ("channel_colors",):
        return tuple(tuple(float(x) for x in v) for v in value)
    if key in ("channel_ranges",):
        return tuple((float(v[0]), float(v[1])) for v in value)
    if key == "time_stamps":
        return tuple(_as_datetime(v) for v in value)
    return value


def _as_datetime(value: Any) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        return value
    if isinstance(value, (int, float, np.number)):  # seconds from an arbitrary start
        return _dt.datetime(2000, 1, 1) + _dt.timedelta(seconds=float(value))
    if isinstance(value, str):
        return _dt.datetime.fromisoformat(value)
    raise SourceError(f"time stamps must be datetimes, ISO strings or seconds, got {value!r}")


def _is_zarr_group(obj: Any) -> bool:
    try:
        import zarr
    except ImportError:  # pragma: no cover - zarr is a core dependency
        return False
    return isinstance(obj, zarr.Group)


# --------------------------------------------------------------------------------------------
# arrays


def _from_array(array: Any, axes: str | None) -> SourceImage:
    import dask.array as da

    ndim = len(array.shape)
    if axes is None:
        axes = {2: "yx", 3: "zyx", 4: "czyx", 5: "tczyx"}.get(ndim)
        if axes is None:
            raise SourceError(f"a {ndim}-D array needs axes= (2 to 5 of t, c, z, y, x)")
    axes = axes.lower()
    if len(axes) != ndim or len(set(axes)) != ndim or not set(axes) <= set("tczyx"):
        raise SourceError(f"axes {axes!r} do not fit a {ndim}-D array: use {ndim} distinct letters of 'tczyx'")
    if isinstance(array, da.Array):
        return SourceImage(data=_to_tczyx(array, axes))
    data = _read_as_tczyx(array, axes, _default_chunks(array, axes), name=False)
    if isinstance(array, np.ndarray) and not isinstance(array, np.memmap):
        # not handed to dask as it is: dask's from_array copies a numpy array whole, and names
        # the result by hashing every byte; wrapped, it is read where needed, and the writer
        # slices it as a numpy view (a dask result is always a copy)
        view = _AsTczyx(array, axes)[(slice(None),) * len(_TCZYX)]
        return SourceImage(data=data, in_memory=True, numpy=(data.name, view))
    # a zarr array, a memory map...: read where it is needed (on a cluster, by the workers)
    return SourceImage(data=data)


def _default_chunks(array: Any, axes: str) -> tuple[int, ...]:
    # one time point and channel, whole planes a few at a time: the writer reads z slabs
    return tuple({"t": 1, "c": 1, "z": min(s, 16)}.get(a, s) for s, a in zip(array.shape, axes, strict=True))


def _to_tczyx(data: Any, axes: str) -> Any:
    """A dask array with axes ``axes`` as (t, c, z, y, x): transposed, missing axes inserted.

    dask fuses no later slice through the inserted axes into the reads below them (a slab of
    the result reads whole chunks), so the array-likes ims_store wraps in dask itself take
    `_read_as_tczyx` instead; this is for dask arrays users give, and numpy arrays.
    """
    order = [axes.index(a) for a in _TCZYX if a in axes]
    data = data.transpose(order) if order != list(range(len(order))) else data
    present = [a for a in _TCZYX if a in axes]
    for i, a in enumerate(_TCZYX):
        if a not in present:
            data = data[(slice(None),) * i + (None,)]
    return data


def _read_as_tczyx(array: Any, axes: str, chunks: tuple[int, ...], name: str | bool | None = None) -> Any:
    """A dask (t, c, z, y, x) array of an array-like with axes ``axes``, in ``chunks`` (one per
    axis of ``array``; 1 along the axes it lacks), that reads only the regions asked for
    (``name``: as `dask.array.from_array` takes it; False names it without hashing the data).

    >>> data = _read_as_tczyx(np.arange(24).reshape(2, 3, 4), "yzx", (2, 3, 4))
    >>> data.shape, data.chunks[2:], int(data[0, 0, 2, 1, 3].compute())
    ((1, 1, 3, 2, 4), ((3,), (2,), (4,)), 23)
    """
    import dask.array as da

    by_axis = dict(zip(axes, chunks, strict=True))
    return da.from_array(_AsTczyx(array, axes), chunks=tuple(by_axis.get(a, 1) for a in _TCZYX), name=name)


class _AsTczyx:
    """An array-like seen as (t, c, z, y, x): its axes reordered and the missing ones inserted
    (length 1) in each region read, not around the whole array.

    dask fuses slices into the read of its source, but not through ``x[None]`` or a transpose:
    ``da.from_array(a)[None][0, 10:20]`` reads a's whole dask chunk. Given this view, dask asks
    it for the (t, c, z, y, x) region wanted, and only that region of the array is read.
    Picklable (dask.distributed) when the array is.
    """

    def __init__(self, array: Any, axes: str) -> None:
        self.array, self.axes = array, axes
        self.shape = tuple(int(array.shape[axes.index(a)]) if a in axes else 1 for a in _TCZYX)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(_TCZYX)

    def __dask_tokenize__(self) -> Any:
        from dask.base import normalize_token

        return normalize_token((type(self).__name__, self.axes, self.array))

    def __getitem__(self, key: Any) -> np.ndarray:
        """The region ``key`` selects: a tuple of ints and slices (what dask's getter passes),
        one per (t, c, z, y, x) axis; an int drops its axis, as numpy does."""
        key = key if isinstance(key, tuple) else (key,)
        by_axis = dict(zip(_TCZYX, key + (slice(None),) * (len(_TCZYX) - len(key)), strict=True))
        if not all(isinstance(k, (int, np.integer, slice)) for k in by_axis.values()):
            raise TypeError(f"only ints and slices select a region here, not {key!r}")
        block = np.asarray(self.array[tuple(by_axis[a] for a in self.axes)])
        kept = [a for a in self.axes if isinstance(by_axis[a], slice)]  # the axes of block, in source order
        block = block.transpose([kept.index(a) for a in _TCZYX if a in kept])
        out = [a for a in _TCZYX if isinstance(by_axis[a], slice)]  # the axes of the result
        for a in (a for a in _TCZYX if a not in self.axes):  # in order: the axes before a are in place
            k = by_axis[a]
            if isinstance(k, slice):  # a length-1 axis, sliced as asked (dask's meta read asks for 0:0)
                i = out.index(a)
                block = np.expand_dims(block, i)[(slice(None),) * i + (k,)]
            elif k not in (0, -1):
                raise IndexError(f"index {k} is out of range for axis {a!r} of length 1")
        return block


# --------------------------------------------------------------------------------------------
# files


def path_kind(path: str | os.PathLike[str], *, output: bool = False) -> Literal["ims", "nifti", "tiff", "zarr"] | None:
    """What a path names: an Imaris file, a NIfTI file, a TIFF file, an OME-Zarr, or None.

    An input is an OME-Zarr by a ``.zarr`` name, a URL, or an existing folder holding zarr
    metadata (``zarr.json``, ``.zgroup``, ``.zattrs``). An ``output`` is judged by its name
    alone (``.zarr`` / ``.ome.zarr``): any folder counted as a zarr would be replaced by an
    overwriting conversion, so a folder of the user's must never qualify by merely existing.
    """
    text = os.fspath(path)
    lower = text.lower().rstrip("/\\")
    if lower.endswith(".ims"):
        return "ims"
    if lower.endswith((".nii", ".nii.gz")):
        return "nifti"
    if lower.endswith((".tif", ".tiff")):  # .ome.tif, .ome.tiff too
        return "tiff"
    if lower.endswith(".zarr"):
        return "zarr"
    if output:
        return None
    if "://" in text:
        return "zarr"
    folder = Path(text)
    if folder.is_dir() and any((folder / name).is_file() for name in ("zarr.json", ".zgroup", ".zattrs")):
        return "zarr"
    return None


def _from_path(source: str | os.PathLike[str], level: int = 0) -> SourceImage:
    text = os.fspath(source)
    kind = path_kind(text)
    if kind == "ims":
        from ..store.zarr_store import ImsStore

        return _from_ims(ImsStore(text), level)
    if kind == "nifti":
        return _from_nifti(text)
    if kind == "zarr":
        import zarr

        try:
            group = zarr.open_group(text, mode="r")
        except Exception as err:
            raise SourceError(f"not an OME-Zarr image ({err})", text) from err
        return _from_ome_zarr(group, text, level)
    if not Path(text).exists():
        from ..errors import ImsFileNotFoundError

        raise ImsFileNotFoundError("no such file", text)
    raise SourceError("unknown kind of file: expected .ims, .nii, .nii.gz, .tif, .tiff or an OME-Zarr (.zarr)", text)


def _from_tiff(path: str, series: int, level: int, axes: str | None) -> SourceImage:
    """A TIFF / OME-TIFF file (see `tiff_source`), read a few planes at a time."""
    tiff = read_tiff(path, series=series, level=level, axes=axes)
    data = _read_as_tczyx(tiff.voxels, tiff.axes, _default_chunks(tiff.voxels, tiff.axes))
    return SourceImage(data=data, label=path, files=(path,), **tiff.metadata)


def _from_ims(store: Any, index: int = 0) -> SourceImage:
    layout = store.layout
    level = layout.level(index)
    ranges = [ch.color_range for ch in layout.channels]
    stamps = [tp.stamp for tp in layout.timepoints]
    return SourceImage(
        data=store.to_dask(level.index),
        voxel_size=level.voxel_size,
        origin=voxel_centre_origin(layout.extent_min, level.voxel_size),
        unit=layout.unit,
        channel_names=tuple(ch.label for ch in layout.channels),
        channel_colors=tuple(ch.color or (1.0, 1.0, 1.0) for ch in layout.channels),
        channel_ranges=tuple(ranges) if all(ranges) else None,  # type: ignore[arg-type]
        time_stamps=tuple(stamps) if all(stamps) else None,  # type: ignore[arg-type]
        name=layout.name,
        description=layout.description,
        recording_date=layout.recording_date,
        label=layout.path,
        files=(layout.path,),
        ims=(store, level.index),
    )


def _from_dataarray(array: Any) -> SourceImage:
    """An xarray DataArray with dims among t, c, z, y, x (as `xarray_backend` makes them)."""
    import dask.array as da

    dims = "".join(str(d) for d in array.dims)
    if len(dims) != len(array.dims) or not set(dims) <= set("tczyx") or len(set(dims)) != len(dims):
        raise SourceError(f"DataArray dims {array.dims} must be distinct names among t, c, z, y, x")
    data = array.data if isinstance(array.data, da.Array) else da.from_array(np.asarray(array.data))
    attrs = dict(array.attrs)
    voxel, origin = [], []
    for i, axis in enumerate("zyx"):
        coord = np.asarray(array.coords[axis].values, dtype=float) if axis in array.coords else None
        if coord is not None and coord.ndim == 0:
            coord = coord.reshape(1)
        known = attrs.get("voxel_size_zyx")
        if coord is not None and coord.size >= 2:
            step = (coord[-1] - coord[0]) / (coord.size - 1)
        else:
            step = float(known[i]) if known else 1.0
        if step <= 0:
            raise SourceError(f"coordinate {axis} decreases; flip the array (e.g. .isel({axis}=slice(None, None, -1)))")
        voxel.append(float(step))
        origin.append(float(coord[0]) if coord is not None and coord.size else step / 2)
    unit = attrs.get("unit")
    if unit is None:
        unit, _ = _imaris_unit(next((array.coords[a].attrs.get("units") for a in "zyx" if a in array.coords), None))

    def per(name: str, kind: str) -> list[Any] | None:
        if name not in array.coords:
            return None
        values = np.atleast_1d(np.asarray(array.coords[name].values))
        return list(values) if kind in array.coords[name].dims or values.size == 1 else None

    names = per("c", "c")
    colors = per("channel_color", "c")
    lows, highs = per("display_min", "c"), per("display_max", "c")
    stamps = per("time_stamp", "t")
    image = SourceImage(
        data=_to_tczyx(data, dims),
        voxel_size=tuple(voxel),  # type: ignore[arg-type]
        origin=tuple(origin),  # type: ignore[arg-type]
        unit=unit,
        channel_names=tuple(str(n) for n in names) if names else None,
        channel_colors=tuple(_hex_color(str(c)) for c in colors) if colors else None,
        name=attrs.get("name"),
        label=str(array.name or "DataArray"),
        in_memory=not isinstance(array.data, da.Array),
    )
    if lows and highs and not any(np.isnan(v) for v in [*lows, *highs]):
        image = replace(image, channel_ranges=tuple((float(a), float(b)) for a, b in zip(lows, highs, strict=True)))
    if stamps and all(stamps):
        image = replace(image, time_stamps=tuple(_dt.datetime.fromisoformat(str(s)) for s in stamps))
    return image


def _from_ome_zarr(group: Any, label: Any, level: int = 0) -> SourceImage:
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)
    multiscales = ome.get("multiscales")
    if not multiscales:
        raise SourceError("not an OME-Zarr image: no 'multiscales' in the group attributes", str(label))
    ms = multiscales[0]
    axes = [a["name"] if isinstance(a, dict) else a for a in ms.get("axes", ["t", "c", "z", "y", "x"])]
    units = {a["name"]: a.get("unit") for a in ms.get("axes", []) if isinstance(a, dict)}
    if not set(axes) <= set("tczyx"):
        raise SourceError(f"axes {axes} are not a subset of t, c, z, y, x", str(label))
    if not 0 <= level < len(ms["datasets"]):
        from ..errors import SelectionError

        raise SelectionError(
            f"level {level} does not exist; the image has levels 0..{len(ms['datasets']) - 1}", str(label)
        )
    dataset = ms["datasets"][level]
    scale = [1.0] * len(axes)
    shift = [0.0] * len(axes)
    for transforms in (dataset.get("coordinateTransformations", []), ms.get("coordinateTransformations", [])):
        for tr in transforms:  # dataset transforms first, then the multiscale's
            if tr.get("type") == "scale":
                shift = [s * v for s, v in zip(shift, tr["scale"], strict=True)]
                scale = [s * v for s, v in zip(scale, tr["scale"], strict=True)]
            elif tr.get("type") == "translation":
                shift = [s + v for s, v in zip(shift, tr["translation"], strict=True)]
    array = group[dataset["path"]]
    by_axis = dict(zip(axes, zip(scale, shift, strict=True), strict=True))
    space_unit = next((units.get(a) for a in "zyx" if units.get(a)), None)
    unit, factor = _imaris_unit(space_unit)
    voxel = tuple(by_axis.get(a, (1.0, 0.0))[0] * factor for a in "zyx")
    origin = tuple(by_axis.get(a, (1.0, 0.0))[1] * factor for a in "zyx")
    image = SourceImage(
        data=_read_as_tczyx(array, "".join(axes), tuple(array.chunks)),
        voxel_size=voxel,  # type: ignore[arg-type]
        origin=origin,  # type: ignore[arg-type]
        unit=unit,
        name=ms.get("name") or None,
        label=str(label),
        files=_zarr_folder(group, label),
    )
    omero = ome.get("omero")
    if omero and omero.get("channels"):
        chans = omero["channels"]
        names = tuple(str(ch.get("label", f"Channel {i}")) for i, ch in enumerate(chans))
        colors = tuple(_hex_color(ch.get("color", "FFFFFF")) for ch in chans)
        windows = tuple((float(ch["window"]["start"]), float(ch["window"]["end"])) for ch in chans if "window" in ch)
        complete = windows if len(windows) == len(chans) else None
        image = replace(image, channel_names=names, channel_colors=colors, channel_ranges=complete)
    if "t" in units and units.get("t") in ("second", "s") and "t" in by_axis:
        step, start = by_axis["t"]
        count = image.data.shape[0]
        base = _dt.datetime(2000, 1, 1)
        image = replace(image, time_stamps=tuple(base + _dt.timedelta(seconds=start + i * step) for i in range(count)))
    return image


def _zarr_folder(group: Any, label: Any) -> tuple[str, ...]:
    """The local folder an OME-Zarr group is read from, if it is one."""
    root = getattr(getattr(group, "store", None), "root", None)
    if root is not None:
        return (os.fspath(root),)
    return (os.fspath(label),) if isinstance(label, (str, os.PathLike)) else ()


def _hex_color(text: str) -> tuple[float, float, float]:
    text = text.lstrip("#")
    try:
        return tuple(int(text[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]
    except ValueError:
        return (1.0, 1.0, 1.0)


def _from_nifti(path: str) -> SourceImage:
    try:
        import nibabel as nib
    except ImportError as err:  # pragma: no cover - nibabel is a core dependency
        raise MissingDependencyError("reading NIfTI needs nibabel: pip install nibabel", path) from err
    import dask.array as da

    try:
        img = nib.load(path, keep_file_open=True)  # see _NiftiVoxels
    except FileNotFoundError as err:
        from ..errors import ImsFileNotFoundError

        raise ImsFileNotFoundError("no such file", path) from err
    except Exception as err:
        raise SourceError(f"not a readable NIfTI file ({err})", path) from err
    shape = img.shape
    if len(shape) < 3:
        shape = (*shape, 1)
    if len(shape) > 4 and any(s != 1 for s in shape[4:]):
        raise SourceError(f"NIfTI with {len(shape)} dimensions is not supported (x, y, z and t only)", path)
    affine = np.asarray(img.affine, dtype=np.float64)
    linear = affine[:3, :3]
    # which world axis each array axis (i, j, k) runs along; anything else is oblique
    order = np.argmax(np.abs(linear), axis=0)
    if sorted(order.tolist()) != [0, 1, 2] or np.count_nonzero(np.abs(linear) > 1e-9 * np.abs(linear).max()) != 3:
        raise SourceError(
            "the NIfTI affine is oblique (rotated against the world axes); Imaris images are axis-aligned. "
            "Resample it to an axis-aligned grid first (e.g. nibabel.processing.resample_to_output)",
            path,
        )
    # reorder array axes so axis a runs along world axis a (x, y, z), then flip negative steps
    perm = [int(np.where(order == w)[0][0]) for w in range(3)]
    voxels = _NiftiVoxels(path, img.dataobj)
    data = da.from_array(voxels, chunks=_nifti_chunks(img.dataobj.shape, perm[2], voxels.dtype.itemsize))
    data = data.reshape(shape[:4]) if len(shape) > 4 else data
    while data.ndim < 4:  # (x, y) or (x, y, z) -> (x, y, z, t)
        data = data[..., None]
    data = data.transpose(*perm, 3)
    steps = np.array([linear[w, perm[w]] for w in range(3)])
    origin = affine[:3, 3].copy()
    for w in range(3):
        if steps[w] < 0:
            origin[w] += steps[w] * (data.shape[w] - 1)  # the voxel that becomes first
            data = da.flip(data, axis=w)
    xyzt_unit = img.header.get_xyzt_units()[0] if hasattr(img.header, "get_xyzt_units") else "unknown"
    symbol = {"meter": "m", "mm": "mm", "micron": "um"}.get(xyzt_unit, "mm")  # NIfTI's default unit is mm
    factor = _TO_UM[symbol]
    # (x, y, z, t) -> (t, c, z, y, x); lengths in micrometres, Imaris' default unit
    data = data.transpose(3, 2, 1, 0)[:, None]
    voxel = tuple(float(abs(steps[w]) * factor) for w in (2, 1, 0))
    centre = tuple(float(origin[w] * factor) for w in (2, 1, 0))
    return SourceImage(
        data=data,
        voxel_size=voxel,  # type: ignore[arg-type]
        origin=centre,  # type: ignore[arg-type]
        unit="um",
        name=Path(path).name,
        label=path,
        files=(path,),
    )


_NIFTI_CHUNK_BYTES = 32 * 1024 * 1024
"""NIfTI sources are read in chunks of about this size along world z, not one volume at a time."""


class _NiftiVoxels:
    """A NIfTI file's voxels as nibabel returns them, for dask to read range by range.

    ``dtype`` is the type nibabel really returns, found by reading one voxel: float64 when
    ``scl_slope`` / ``scl_inter`` scale the stored values, the stored type (in its byte order)
    when they do not. The file stays open between reads, so a ``.nii.gz`` read front to back is
    decompressed once, not again from its start for every range; a pickled copy (a
    dask.distributed worker) opens the file again.
    """

    def __init__(self, path: str, proxy: Any) -> None:
        self.path, self._proxy = path, proxy
        self.shape = tuple(int(s) for s in proxy.shape)
        self.ndim = len(self.shape)
        self.dtype = np.asarray(proxy[(slice(0, 1),) * self.ndim]).dtype

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_proxy": None}  # an open file does not travel

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._proxy is None:
            import nibabel as nib

            self._proxy = nib.load(self.path, keep_file_open=True).dataobj
        return np.asarray(self._proxy[key])  # no cast: a type other than `dtype` is the writer's to refuse


def _nifti_chunks(shape: tuple[int, ...], z_axis: int, itemsize: int) -> tuple[int, ...]:
    """Dask chunks of a NIfTI array: whole planes, about `_NIFTI_CHUNK_BYTES` along the array
    axis ``z_axis`` that becomes world z, one volume along t (and any later axis)."""
    spatial = shape[:3]
    plane = int(np.prod([s for a, s in enumerate(spatial) if a != z_axis])) * itemsize
    depth = max(1, _NIFTI_CHUNK_BYTES // max(plane, 1))
    return tuple(min(s, depth) if a == z_axis else s if a < 3 else 1 for a, s in enumerate(shape))


def source_layout(image: SourceImage, chunks: tuple[int, int, int]) -> Any:
    """An `ImsLayout` (one level) describing a source, so that NGFF metadata of outputs made
    from it come from the same builders as the virtual store's."""
    from ..format.layout import Channel, ImsLayout, Level, TimePoint
    from ..store.ngff import default_color

    t, c, *size = (int(s) for s in image.data.shape)
    voxel = image.voxel_size or (1.0, 1.0, 1.0)
    origin = image.origin or tuple(v / 2 for v in voxel)
    extent_min = tuple(o - v / 2 for o, v in zip(origin, voxel, strict=True))
    dtype = np.dtype(image.data.dtype)
    level = Level(0, 0, tuple(size), tuple(size), chunks, dtype, (), tuple(voxel))  # type: ignore[arg-type]
    stamps = image.time_stamps or (None,) * t
    return ImsLayout(
        path=image.label,
        dataset_group="",
        levels=(level,),
        timepoints=tuple(TimePoint(i, i, stamp) for i, stamp in enumerate(stamps)),
        channels=tuple(
            Channel(
                i,
                i,
                name=image.channel_names[i] if image.channel_names else None,
                color=image.channel_colors[i] if image.channel_colors else default_color(i, c),
                color_range=image.channel_ranges[i] if image.channel_ranges else None,
            )
            for i in range(c)
        ),
        extent_min=extent_min,  # type: ignore[arg-type]
        extent_max=tuple(lo + v * n for lo, v, n in zip(extent_min, voxel, size, strict=True)),  # type: ignore[arg-type]
        unit=image.unit or "um",
        name=image.name,
    )
