"""What an Imaris file holds beside its image, carried into a new Imaris file made from it.

Imaris keeps more than voxels in a file: the analysis objects (``Scene``, ``Scene8``: spots,
tracks, surfaces, statistics), the times they refer to (``DataSetTimes``), the processing log
(``DataSetInfo/Log``), and attributes of its own in ``DataSetInfo`` (microscope, objective,
wavelengths...). A new file written from an ``.ims`` (`write_ims`, ``ims-store convert a.ims
b.ims``) is rewritten from the image, and `keep_beside_image` copies all of that over with
HDF5's object copy. The objects' coordinates and time indexes refer to the source's geometry,
so when a conversion changes it (another level, a crop, other voxel sizes or extents, fewer
time points or channels) they and ``DataSetTimes`` are left out and an `ImsWarning` says so and
why; the descriptions and the log are copied whatever the geometry.

>>> import h5py
>>> from ims_store import write_ims
>>> out = write_ims("tracks.ims", "copy.ims")
>>> with h5py.File("tracks.ims", "r") as before, h5py.File(out, "r") as after:
...     sorted(before["Scene8/Content"]) == sorted(after["Scene8/Content"])
True
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from typing import Any

import h5py

from ..access.files import open_file
from ..format.layout import ImsLayout, ImsWarning

__all__ = ["geometry_change", "keep_beside_image"]

# the root's image groups (of any image of a file of several): the writer's own
_IMAGE_GROUPS = re.compile(r"(DataSet|DataSetInfo|Thumbnail)\d*")
_REWRITTEN_ROOT_ATTRIBUTES = {"NumberOfDataSets"}
_PLACEHOLDERS = {"Log"}
"""``DataSetInfo`` groups the writer fills with an empty default: the source's replace them."""


def geometry_change(
    layout: ImsLayout,
    level: int,
    *,
    size: Sequence[int],
    voxel_size: Sequence[float],
    extent_min: Sequence[float],
    timepoints: int,
    channels: int,
) -> str | None:
    """How a new image differs from level 0 of ``layout`` (the source's) in what its analysis
    objects refer to, or None where it does not. ``level`` is the source level read.

    >>> from ims_store import read_layout
    >>> layout = read_layout("cells.ims")
    >>> lvl = layout.levels[0]
    >>> geometry_change(layout, 0, size=lvl.size, voxel_size=lvl.voxel_size,
    ...                 extent_min=layout.extent_min, timepoints=2, channels=3) is None
    True
    >>> geometry_change(layout, 1, size=lvl.size, voxel_size=lvl.voxel_size,
    ...                 extent_min=layout.extent_min, timepoints=2, channels=3)
    'resolution level 1 of the source, not level 0'
    """
    first = layout.levels[0]
    if level != 0:
        return f"resolution level {level} of the source, not level 0"
    if tuple(int(s) for s in size) != tuple(first.size):
        return f"size {tuple(size)} where the source has {first.size}"

    def close(a: Sequence[float], b: Sequence[float]) -> bool:
        return all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9 * max(1.0, abs(y))) for x, y in zip(a, b, strict=True))

    if not close(voxel_size, first.voxel_size):
        return f"voxel size {tuple(voxel_size)} where the source has {first.voxel_size}"
    if not close(extent_min, layout.extent_min):
        return f"extents from {tuple(extent_min)} where the source's start at {layout.extent_min}"
    if timepoints != len(layout.timepoints):
        return f"{timepoints} time point(s) of the source's {len(layout.timepoints)}"
    if channels != len(layout.channels):
        return f"{channels} channel(s) of the source's {len(layout.channels)}"
    return None


def _beside(source: h5py.File, info_name: str) -> list[str]:
    """What ``source`` holds beside its images: root groups and datasets, and ``DataSetInfo``'s
    (``info_name``) groups, as paths."""
    names = [name for name in source if not _IMAGE_GROUPS.fullmatch(name)]
    info = source.get(info_name)
    if isinstance(info, h5py.Group):
        names += [f"{info_name}/{name}" for name in info]
    return names


def keep_beside_image(
    source: str | os.PathLike[str],
    target: h5py.File,
    *,
    image: int = 0,
    changed: str | None = None,
    name: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[str]:
    """Copy into ``target`` (a new Imaris file of one image, open for writing) what image
    ``image`` of the Imaris file ``source`` holds beside its image; returns what was copied.

    Copied: every root group or dataset other than the images' own (``Scene``, ``Scene8``,
    ``DataSetTimes``, anything unknown), the root attributes ``target`` lacks, the
    ``DataSetInfo`` groups ``target`` lacks or holds as empty defaults (``Log``), and the
    attributes ``target`` lacks in the groups both have. What ``target`` already holds is never
    replaced otherwise. ``changed``: how the new image's geometry differs from the source's
    (`geometry_change`); then the root groups (the objects, ``DataSetTimes``) are left out and
    an `ImsWarning` names them (``name``: the new file's name for messages, default
    ``target``'s), while the ``DataSetInfo`` descriptions and the log, true whatever the
    geometry, are still copied. The analysis objects of a file of several images are not tied to
    one of them: they are left out the same way. ``source`` may be any URL `ImsStore` opens,
    with its ``storage_options``.
    """
    source_file = open_file(source, storage_options)
    try:
        with source_file.open_hdf5() as f:
            count = int(f.attrs.get("NumberOfDataSets", [1])[0]) if "NumberOfDataSets" in f.attrs else 1
            info_name = "DataSetInfo" + (str(image) if image else "")
            beside = _beside(f, info_name)
            objects = [n for n in beside if "/" not in n]
            reason = changed and f"the conversion changes the image's geometry ({changed}), which they refer to"
            if count > 1 and not reason:
                reason = f"the source holds {count} images, and no single one owns them"
            if reason:
                if objects:
                    warnings.warn(
                        f"{source}: {', '.join(objects)} left out of {name or target.filename}: {reason}",
                        ImsWarning,
                        stacklevel=3,
                    )
                beside = [n for n in beside if "/" in n]  # the descriptions and the log stay true
            copied = _copy(f, target, info_name, beside)
    finally:
        source_file.close()
    return copied


def _copy(source: h5py.File, target: h5py.File, info_name: str, beside: list[str]) -> list[str]:
    copied = []
    for key, value in source.attrs.items():
        if key not in target.attrs and key not in _REWRITTEN_ROOT_ATTRIBUTES:
            target.attrs[key] = value
    for name in beside:
        local = name.replace(info_name, "DataSetInfo", 1) if name.startswith(info_name + "/") else name
        held = target.get(local)
        if held is not None and local.split("/")[-1] in _PLACEHOLDERS and "/" in local:
            del target[local]
            held = None
        if held is None:
            source.copy(source[name], target, name=local)
            copied.append(local)
        elif isinstance(held, h5py.Group) and isinstance(source[name], h5py.Group):
            for key, value in source[name].attrs.items():  # an attribute of the source the writer has not written
                if key not in held.attrs:
                    held.attrs[key] = value
    return copied
