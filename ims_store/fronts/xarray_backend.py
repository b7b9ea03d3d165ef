"""An xarray backend: ``xr.open_dataarray("f.ims", engine="ims")`` and ``xr.open_datatree``.

Dimensions are ``t, c, z, y, x``; ``z``, ``y`` and ``x`` carry physical coordinates at voxel
centres (in the file's unit), ``c`` the channel names, ``t`` seconds from the first time stamp
(or the index when the file has no stamps). Unit, voxel size, colours, display ranges and time
stamps are attributes. Data stays lazy (dask) until computed.

>>> import xarray as xr
>>> da = xr.open_dataarray("cells.ims", engine="ims", level=1, timepoint=1, channel=2)
>>> da.dims, da.sizes["z"], float(da.x[0])
(('z', 'y', 'x'), 8, 0.25)
>>> tree = xr.open_datatree("cells.ims", engine="ims")
>>> sorted(tree.children)
['0', '1']

A file of several images (tiles): ``image=k`` opens image k; ``open_datatree`` gives one node
per image (``/k/<level>``), each with the coordinates of where it was acquired, and lists the
images that cannot be read in the root's ``unreadable_images`` attribute.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import MissingDependencyError
from ..format.geometry import ngff_unit, voxel_centre_origin
from ..store.ngff import channel_hex
from ..store.zarr_store import ImsStore

try:
    import xarray as xr
    from xarray.backends import BackendEntrypoint
except ImportError as err:  # tests hide xarray to reach this
    raise MissingDependencyError("the xarray backend needs xarray: pip install 'ims-store[xarray]'", None) from err

__all__ = ["ImsBackendEntrypoint", "open_level"]


def open_level(
    source: str | os.PathLike[str] | ImsStore,
    level: int = 0,
    timepoint: int | None = None,
    channel: int | None = None,
    image: int | None = None,
) -> xr.DataArray:
    """One level (optionally one time point and/or channel) as a lazy, geo-referenced DataArray;
    ``image``: which image of a file of several."""
    store = source if isinstance(source, ImsStore) else ImsStore(source, image=image)
    if image is not None and store.image != image:
        store = store.image_store(image)
    layout = store.layout
    lvl = layout.level(level)
    data = store.to_dask(lvl.index)
    origin = voxel_centre_origin(layout.extent_min, lvl.voxel_size)
    offsets = layout.time_offsets()
    count = len(layout.channels)
    coords: dict[str, Any] = {
        "t": ("t", np.asarray(offsets if offsets is not None else range(len(layout.timepoints)), dtype=float)),
        "c": ("c", [ch.label for ch in layout.channels]),
        # per-channel and per-time-point metadata as coordinates, so that selections keep them aligned
        "channel_color": ("c", ["#" + channel_hex(ch, count) for ch in layout.channels]),
        "display_min": ("c", [ch.color_range[0] if ch.color_range else np.nan for ch in layout.channels]),
        "display_max": ("c", [ch.color_range[1] if ch.color_range else np.nan for ch in layout.channels]),
        "time_stamp": ("t", [tp.stamp.isoformat() if tp.stamp else "" for tp in layout.timepoints]),
    }
    for axis, (o, v, n) in zip("zyx", zip(origin, lvl.voxel_size, lvl.size, strict=True), strict=True):
        coords[axis] = (axis, o + v * np.arange(n), {"units": ngff_unit(layout.unit) or layout.unit})
    attrs = {
        "unit": layout.unit,
        "voxel_size_zyx": list(lvl.voxel_size),
        "extent_min_zyx": list(layout.extent_min),
        "level": lvl.index,
        "source": layout.path,
    }
    if layout.name:
        attrs["name"] = layout.name
    array = xr.DataArray(data, dims=("t", "c", "z", "y", "x"), coords=coords, attrs=attrs, name="image")
    array.coords["t"].attrs["units"] = "s" if offsets is not None else "index"
    if timepoint is not None:
        array = array.isel(t=layout.timepoint(timepoint).index)
    if channel is not None:
        array = array.isel(c=layout.channel(channel).index)
    return array


class ImsBackendEntrypoint(BackendEntrypoint):
    """xarray's entry point for Imaris files (``engine="ims"``)."""

    description = "Imaris .ims files through ims_store (lazy, with physical coordinates)"
    url = "https://github.com/ims-store/ims-store"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "level", "timepoint", "channel", "image")

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: Iterable[str] | None = None,
        level: int = 0,
        timepoint: int | None = None,
        channel: int | None = None,
        image: int | None = None,
    ) -> xr.Dataset:
        array = open_level(_path(filename_or_obj), level, timepoint, channel, image)
        dataset = array.to_dataset()
        if drop_variables:
            dataset = dataset.drop_vars([v for v in drop_variables if v in dataset])
        return dataset

    def open_datatree(
        self, filename_or_obj: Any, *, drop_variables: Iterable[str] | None = None, **kwargs: Any
    ) -> xr.DataTree:
        return xr.DataTree.from_dict(self.open_groups_as_dict(filename_or_obj))

    def open_groups_as_dict(self, filename_or_obj: Any, **kwargs: Any) -> dict[str, xr.Dataset]:
        path = _path(filename_or_obj)
        store = path if isinstance(path, ImsStore) else ImsStore(path)
        if not store.is_collection:
            return {f"/{lvl.index}": open_level(store, lvl.index).to_dataset() for lvl in store.layout.levels}
        unreadable = [str(e.error) for e in store.images if e.error is not None]
        groups = {"/": xr.Dataset(attrs={"unreadable_images": unreadable} if unreadable else {})}
        for entry in store.images:
            if entry.layout is not None:
                one = store.image_store(entry.index)
                for lvl in entry.layout.levels:
                    groups[f"/{entry.index}/{lvl.index}"] = open_level(one, lvl.index).to_dataset()
        return groups

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        try:
            return os.fspath(filename_or_obj).lower().endswith(".ims")
        except TypeError:
            return False


def _path(obj: Any) -> str | ImsStore:
    if isinstance(obj, ImsStore):
        return obj
    return os.fspath(obj)
