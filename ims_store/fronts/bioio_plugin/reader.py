"""The bioio `Reader` of Imaris files, built on `ImsStore` and its parsed layout.

One file is one scene (``"Image:0"``) with dimensions ``TCZYX``; every Imaris resolution level
is a bioio resolution level (0 the full size). Data is lazy: one dask task per HDF5 chunk, read
by ims_store (`ImsStore.to_dask`). Coordinates are physical, as in the xarray backend: ``Z``,
``Y``, ``X`` at voxel centres in the file's unit, ``C`` the channel names, ``T`` seconds from the
first time stamp (the index when the file has none). ``metadata`` is ``ims-store info --json``'s
summary of the file; the parsed `ImsLayout` itself is ``xarray_dask_data.attrs["unprocessed"]``.

>>> from bioio import BioImage
>>> img = BioImage("cells.ims")
>>> img.dims.order, img.shape, img.channel_names
('TCZYX', (2, 3, 16, 128, 96), ['DAPI', 'GFP', 'mCherry'])
>>> img.physical_pixel_sizes, img.time_interval.total_seconds()
(PhysicalPixelSizes(Z=1.0, Y=0.25, X=0.25), 1.5)
>>> img.resolution_levels, img.resolution_level_dims[1]
((0, 1), (2, 3, 8, 64, 48))
>>> img.metadata["unit"], str(img.dimension_properties.X.unit)
('um', 'micrometer')
"""

from __future__ import annotations

import datetime as _dt
import operator
import os
import warnings
from typing import Any

import numpy as np

from ...access.files import read_layout
from ...errors import ImsError, ImsFileNotFoundError, MissingDependencyError, NotHDF5Error, NotImarisError
from ...format.geometry import ngff_unit
from ...format.layout import ImsWarning
from ...store.ngff import time_step
from ...store.zarr_store import ImsStore
from ..summary import layout_summary
from ..xarray_backend import open_level

try:
    import xarray as xr
    from bioio_base import constants, reader, types
    from bioio_base.standard_metadata import StandardMetadata
    from fsspec.implementations.local import LocalFileSystem
    from fsspec.spec import AbstractFileSystem
except ImportError as err:  # tests hide bioio-base to reach this
    raise MissingDependencyError("the bioio plugin needs bioio: pip install 'ims-store[bioio]'", None) from err

__all__ = ["Reader"]

# the id bioio's readers give the first (here: only) image of a file
SCENE = "Image:0"


class Reader(reader.Reader):
    """bioio's reader of an Imaris (``.ims``) file, local or at any fsspec URL.

    Parameters
    ----------
    image
        The ``.ims`` file: a path or a URL (``s3://``, ``https://``...).
    fs_kwargs
        For a URL: options for its fsspec file system (``{"anon": True}`` for a public bucket).

    Bad input raises ims_store's errors (`ImsFileNotFoundError`, `NotImarisError`,
    `TruncatedFileError`...), each naming the file. `bioio.BioImage` passes them on when it chose
    this reader by extension (a file that is not HDF5, or HDF5 without an Imaris image, it reports
    as no reader's with its ``UnsupportedFileFormatError``), and wraps them in that error when the
    reader was given with ``reader=``.

    >>> r = Reader("cells.ims")
    >>> r.set_resolution_level(1)
    >>> r.get_image_data("ZYX", T=1, C=2).shape, r.physical_pixel_sizes.Z
    ((8, 64, 48), 2.0)
    """

    NAME = "ims-store"

    def __init__(self, image: types.PathLike, fs_kwargs: dict[str, Any] | None = None) -> None:
        if not isinstance(image, (str, os.PathLike)):
            raise TypeError(f"the ims-store reader reads a path or URL to an .ims file, not {type(image).__name__}")
        self._path = os.fspath(image)
        self._store = ImsStore(self._path, storage_options=dict(fs_kwargs or {}))
        self._layout = self._store.layout

    # ----------------------------------------------------------------------------------------
    # which files

    @classmethod
    def is_supported_image(cls, image: types.ImageLike, fs_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> bool:
        """Whether ``image`` is an Imaris file (see `_is_imaris`); arrays are bioio's own reader's."""
        if not isinstance(image, (str, os.PathLike)):
            return False
        return _is_imaris(os.fspath(image), fs_kwargs)

    @staticmethod
    def _is_supported_image(fs: AbstractFileSystem, path: str, **kwargs: Any) -> bool:
        url = path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)
        return _is_imaris(url, fs.storage_options)

    # ----------------------------------------------------------------------------------------
    # scenes and resolution levels

    @property
    def scenes(self) -> tuple[str, ...]:
        return (SCENE,)

    @property
    def resolution_levels(self) -> tuple[int, ...]:
        return tuple(level.index for level in self._layout.levels)

    # ----------------------------------------------------------------------------------------
    # data

    def _read_delayed(self) -> xr.DataArray:
        array = open_level(self._store, self._current_resolution_level)
        array = array.rename({dim: dim.upper() for dim in array.dims})
        array.attrs = {
            constants.METADATA_UNPROCESSED: self._layout,
            constants.METADATA_PROCESSED: layout_summary(self._layout),
        }
        return array

    @property
    def xarray_data(self) -> xr.DataArray:
        """The current level read whole (see `_read_immediate`). bioio's base class then remakes
        ``xarray_dask_data`` from it with ``dask.array.from_array``, which copies and hashes the
        whole array (a second copy of the level, measured 0.5-1 s on 256 MiB); here the lazy
        array stays the file's, whose reads equal the same voxels."""
        if self._xarray_data is None:
            self._xarray_data = self._read_immediate()
        return self._xarray_data

    def _read_immediate(self) -> xr.DataArray:
        # the whole level through the engine's region read (no dask graph), with the delayed
        # array's dimensions, coordinates and attributes
        delayed = self.xarray_dask_data
        whole = tuple((0, n) for n in delayed.shape)
        data = self._store.engine.read_region(self._current_resolution_level, whole, parallel=True)
        return xr.DataArray(data, dims=delayed.dims, coords=delayed.coords, attrs=delayed.attrs)

    def _read_indexed(self, given_dims: str, dim_specs: list[types.DimSpec]) -> np.ndarray:
        # bioio's default reads the whole image first; this reads only the region the selection
        # spans, through the engine (`ImageEngine.read_region`), on the decoding threads. Each
        # axis is selected apart: lists on two axes select every combination, as two dimensions'
        # selections mean (numpy would pair the lists up).
        shape = self.xarray_dask_data.shape
        level = self._current_resolution_level
        return _select(lambda region: self._store.engine.read_region(level, region, parallel=True), shape, dim_specs)

    # ----------------------------------------------------------------------------------------
    # metadata

    @property
    def physical_pixel_sizes(self) -> types.PhysicalPixelSizes:
        """The current level's voxel size (z, y, x) in the file's unit (``metadata["unit"]``)."""
        z, y, x = self._layout.level(self._current_resolution_level).voxel_size
        return types.PhysicalPixelSizes(Z=z, Y=y, X=x)

    @property
    def time_interval(self) -> types.TimeInterval:
        """The mean interval between time points, when every time point has a time stamp."""
        step = time_step(self._layout)
        return None if step is None else _dt.timedelta(seconds=step)

    @property
    def dimension_properties(self) -> types.DimensionProperties:
        """bioio's per-dimension kinds, with the units of T (seconds) and of Z, Y, X (the file's
        unit, when it has an OME-NGFF name)."""
        base = super().dimension_properties
        name = ngff_unit(self._layout.unit)
        unit = types.ureg.Unit(name) if name else None
        space = types.DimensionProperty(type="space", unit=unit)
        time = base.T if self.time_interval is None else types.DimensionProperty(type="time", unit=types.ureg.second)
        return types.DimensionProperties(T=time, C=base.C, Z=space, Y=space, X=space)

    @property
    def standard_metadata(self) -> StandardMetadata:
        """bioio's standard fields, with the recording date and the time span of the time stamps."""
        meta = super().standard_metadata
        meta.imaging_datetime = self._layout.recording_date
        offsets = self._layout.time_offsets()
        if offsets is not None and len(offsets) > 1:
            meta.total_time_duration = _dt.timedelta(seconds=offsets[-1])
        return meta

    @property
    def channel_names(self) -> list[str]:
        return [channel.label for channel in self._layout.channels]

    def __repr__(self) -> str:
        return f"<ims-store Reader {self._path!r}, level {self._current_resolution_level}>"


def _select(read: Any, shape: tuple[int, ...], specs: list[types.DimSpec]) -> np.ndarray:
    """``specs`` (per axis: an integer, a slice or a list of indices, as bioio's
    ``compute_dim_specs`` makes them) applied to an array of ``shape`` of which ``read(region)``
    reads the (start, stop) bounds given per axis. A list reads each of its indices apart
    (every combination with the other axes' selections); a stepped slice reads its span, then
    steps through it; an integer drops its axis.

    >>> data = np.arange(24).reshape(2, 3, 4)
    >>> read = lambda region: data[tuple(slice(a, b) for a, b in region)]
    >>> _select(read, data.shape, [1, [2, 0], slice(None, None, 2)]).tolist()
    [[20, 22], [12, 14]]
    """
    region: list[tuple[int, int]] = []
    after: list[Any] = []
    for axis, (spec, n) in enumerate(zip(specs, shape, strict=True)):
        if isinstance(spec, slice):
            start, stop, step = spec.indices(n)
            if step < 0:  # a reversed slice: its span read forwards, then stepped through backwards
                region.append((stop + 1, start + 1) if stop < start else (start, start))
            else:
                region.append((start, max(start, stop)))
            after.append(slice(None, None, step))
        elif isinstance(spec, (list, tuple, range, np.ndarray)):
            picks = [_index(i, n) for i in spec]
            parts = [_select(read, shape, [*specs[:axis], slice(i, i + 1), *specs[axis + 1 :]]) for i in picks]
            # the axes before this one that an integer dropped
            kept = sum(1 for s in specs[:axis] if not isinstance(s, (int, np.integer)))
            if not parts:  # an empty list selects nothing along this axis
                return _select(read, shape, [*specs[:axis], slice(0, 0), *specs[axis + 1 :]])
            return np.concatenate(parts, axis=kept)
        else:
            i = _index(spec, n)
            region.append((i, i + 1))
            after.append(0)
    return read(region)[tuple(after)]


def _index(index: Any, size: int) -> int:
    """An integer index into an axis of ``size``, counting from the end when negative (an
    `IndexError` outside it, as numpy says)."""
    i = operator.index(index)
    if not -size <= i < size:
        raise IndexError(f"index {i} is out of bounds for an axis of size {size}")
    return i % size


def _is_imaris(path: str, storage_options: dict[str, Any] | None) -> bool:
    """Whether ``path`` is for this reader: an HDF5 file with an Imaris image.

    Not HDF5, or HDF5 without an Imaris image: no, so that bioio tries its other readers. A
    missing file raises `ImsFileNotFoundError` (bioio passes a ``FileNotFoundError`` on). A file
    that is Imaris by its extension but cannot be read (truncated, malformed, a server refusing)
    is this reader's: constructing it then raises the error that says what is wrong, where bioio
    would only report that no plugin supports the file.
    """
    try:
        with warnings.catch_warnings():
            # the reader's own opening warns again, once, where the user sees it
            warnings.simplefilter("ignore", ImsWarning)
            read_layout(path, storage_options or None)
    except ImsFileNotFoundError:
        raise
    except (NotHDF5Error, NotImarisError):
        return False
    except ImsError:
        return path.split("?")[0].lower().endswith(".ims")
    return True
