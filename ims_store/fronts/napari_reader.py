"""A napari reader for ``*.ims``: one multiscale image layer per channel, in physical units,
and layers for the file's analysis objects (spots, tracks, surfaces: see `napari_objects`).

A file of several images (tiles) gives one set of layers per image, named ``image k: channel``
and each placed where its tile was acquired; an image that cannot be read (a tile whose linked
file is missing) is left out with an `ImsWarning` naming it. A ``TableColor`` channel gets its
colour table as a colormap.

Each layer holds a lazy dask array ``(t, z, y, x)`` per resolution level, with the channel's
name (``Channel N`` for Imaris' ``(name not specified)``), a colormap from its colour, contrast
limits from its display range (else the recorded histogram range, else the data type's range),
scale / translate and ``units`` in the file's unit and ``axis_labels`` t, z, y, x.

In 3D napari draws the coarsest level of a multiscale layer. An image whose full resolution fits
a 3D texture (at most `MAX_TEXTURE` voxels along each axis and `FULL_3D_BYTES` per channel and
time point) is therefore given as level 0 alone: 2D and 3D both show every voxel. A larger image
keeps its pyramid (2D reads the level the zoom needs; 3D shows the coarsest).
The reader needs no display; napari finds it through the ``napari.manifest`` entry point.

>>> layers = reader_function("cells.ims")
>>> [(meta["name"], meta["colormap"]["name"], meta["multiscale"]) for data, meta, kind in layers]
[('DAPI', 'DAPI #FF0000', False), ('GFP', 'GFP #00FF00', False), ('mCherry', 'mCherry #0000FF', False)]
>>> layers[0][1]["units"], layers[0][1]["axis_labels"]
(('second', 'micrometer', 'micrometer', 'micrometer'), ('t', 'z', 'y', 'x'))
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..format.geometry import voxel_centre_origin
from ..format.layout import ImsWarning
from ..store.ngff import time_step, type_range
from ..store.zarr_store import ImsStore
from .napari_objects import layer_axes

__all__ = ["FULL_3D_BYTES", "MAX_TEXTURE", "napari_get_reader", "reader_function"]

LayerData = tuple[Any, dict[str, Any], str]

# the largest 3D texture OpenGL implementations commonly allow along an axis, and the memory a
# channel's full-resolution volume (one time point) may take for napari to draw it in 3D
MAX_TEXTURE = 2048
FULL_3D_BYTES = 256 * 1024**2
# Imaris' name for a channel nobody named (3 of the 4 real files here have it)
UNNAMED = "(name not specified)"


def napari_get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """napari's hook: a reader for ``.ims`` paths, ``None`` for anything else."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(os.fspath(p).lower().endswith(".ims") for p in paths):
        return None
    return reader_function


def reader_function(path: str | list[str]) -> list[LayerData]:
    """Layer data tuples ``(levels, metadata, "image")``, one per channel of every file."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[LayerData] = []
    for one in paths:
        file_store = ImsStore(one)
        for entry in file_store.images:
            if entry.error is not None:
                warnings.warn(f"{entry.error} (left out)", ImsWarning, stacklevel=2)
                continue
            prefix = f"image {entry.index}: " if file_store.is_collection else ""
            layers += _image_layers(file_store.image_store(entry.index), prefix)
        if not file_store.is_collection:  # (the objects of a file of several images: not placed yet)
            layers.extend(_objects(one, file_store.layout))
    return layers


def _image_layers(store: ImsStore, prefix: str) -> list[LayerData]:
    """The layers of one image: one per channel."""
    layers: list[LayerData] = []
    layout = store.layout
    # a viewer reads small regions one at a time: dask chunks of the store's own tile size
    pyramid = [store.to_dask(level.index, chunk_bytes=store.min_chunk_bytes) for level in layout.levels]
    voxel = layout.levels[0].voxel_size
    translate = voxel_centre_origin(layout.extent_min, voxel)
    step = time_step(layout) or 1.0
    size = layout.levels[0].size
    whole = max(size) <= MAX_TEXTURE and int(np.prod(size)) * layout.dtype.itemsize <= FULL_3D_BYTES
    for ch in layout.channels:
        color = ch.color or ((1.0, 1.0, 1.0) if len(layout.channels) == 1 else None)
        meta: dict[str, Any] = {
            "name": prefix + display_name(ch),
            "scale": (step, *voxel),
            "translate": (0.0, *translate),
            "contrast_limits": list(_limits(ch, layout.dtype)),
            "multiscale": not whole,
            "blending": "additive",
            **layer_axes(layout),
            "metadata": {"source": layout.path, "unit": layout.unit, "description": ch.description},
        }
        if ch.color_mode == "TableColor" and ch.color_table:
            meta["colormap"] = _table_colormap(ch.label, ch.color_table)
        elif color is not None:
            meta["colormap"] = _colormap(ch.label, color)
        levels = [level[:, ch.index] for level in pyramid]
        layers.append((levels[0] if whole else levels, meta, "image"))
    return layers


def display_name(channel: Any) -> str:
    """A channel's layer name: its label, but ``Channel N`` for Imaris' ``(name not specified)``
    (napari would otherwise show ``(name not specified) [1]``, ``[2]``...)."""
    return f"Channel {channel.number}" if channel.label.strip() == UNNAMED else channel.label


def _objects(path: str, layout: Any) -> list[LayerData]:
    """The file's analysis objects as layers (`napari_objects`). Objects that cannot be read
    leave the image layers alone: a warning says why they are missing."""
    import warnings

    from ..errors import ImsError
    from ..format.layout import ImsWarning
    from .napari_objects import object_layers

    try:
        return object_layers(path, layout)
    except ImsError as err:
        warnings.warn(f"analysis objects not shown: {err}", ImsWarning, stacklevel=3)
        return []


def _colormap(label: str, color: tuple[float, float, float]) -> dict[str, Any]:
    """A linear colormap from black to the channel colour, in the dict form napari's
    ``ensure_colormap`` turns into a ``Colormap`` (``Colormap(**value)``).

    napari registers it globally under its name, so the name carries the colour: a channel
    labelled like a built-in colormap ("gray", "red") must not replace that colormap, and two
    files with same-named channels of different colours must not replace each other's.
    """
    rgb = [float(v) for v in color]
    hex_code = "".join(f"{round(v * 255):02X}" for v in rgb)
    return {"name": f"{label} #{hex_code}", "colors": [[0.0, 0.0, 0.0, 1.0], [*rgb, 1.0]]}


def _table_colormap(label: str, table: tuple[tuple[float, float, float], ...]) -> dict[str, Any]:
    """A ``TableColor`` channel's colour table as a napari colormap: the entries evenly spaced
    from the bottom of the contrast range to its top, as Imaris spreads them. Named by a digest
    of the table, for the reason `_colormap` gives."""
    import hashlib

    colors = [[float(r), float(g), float(b), 1.0] for r, g, b in table]
    if len(colors) == 1:  # napari needs two controls at least
        colors = colors * 2
    digest = hashlib.sha1(np.asarray(colors, dtype=np.float64).tobytes()).hexdigest()[:8]
    return {"name": f"{label} table {digest}", "colors": colors}


def _limits(channel: Any, dtype: np.dtype) -> tuple[float, float]:
    for window in (channel.color_range, channel.histogram_range):
        if window is not None and window[1] > window[0]:
            return window
    return type_range(dtype)
