"""Several sources written as one image: their channels one after another (or, with
``join="time"``, their time points).

The sources must agree on the size of what they share (z, y, x, and the time points or the
channels), and, where they carry it, on the geometry (voxel size, origin, unit; to float
rounding): an array without geometry takes the file sources'. Their data types become one, as
Imaris stores one type for every channel: narrower integers are widened, uint8 / uint16 go
exactly into float32; uint32 and float32 together are refused (float32 holds integers exactly
only up to 2**24).

>>> import numpy as np
>>> from ims_store.write.sources import open_source
>>> a = open_source(np.zeros((4, 8, 8), np.uint8), voxel_size=(2.0, 1.0, 1.0), channel_names=["raw"])
>>> b = open_source(np.ones((4, 8, 8), np.uint16), channel_names=["mask"])
>>> merged = merge_sources([a, b])
>>> merged.image.data.shape, merged.image.data.dtype, merged.image.channel_names, merged.image.voxel_size
((1, 2, 4, 8, 8), dtype('uint16'), ('raw', 'mask'), (2.0, 1.0, 1.0))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from ..errors import SourceError
from ..store.ngff import default_color
from .plan import as_stored, storage_dtype
from .sources import SourceImage

__all__ = ["Join", "Merged", "Part", "common_dtype", "merge_sources"]

Join = Literal["channels", "time"]

REL_TOL = 1e-5
"""Geometry agrees "to float rounding": voxel sizes within this relative difference, origins
within this fraction of a voxel (Imaris prints extents with a few decimals; float32 keeps 7)."""


@dataclass(frozen=True)
class Part:
    """One source of a merged image: its channels (or time points) ``start .. start + count``."""

    image: SourceImage
    start: int
    count: int
    label: str = ""
    """``source k (what it is)``, for messages."""

    def planes(self, t: int, c: int, z0: int, z1: int, dtype: np.dtype) -> np.ndarray:
        """Planes ``z0:z1`` of this source's (``t``, ``c``) as the merged file stores them
        (`as_stored` by the source's own rule, then widened to ``dtype``), read from the
        caller's numpy array itself where the source is one."""
        view = self.image.numpy_view()
        planes = view[t, c, z0:z1] if view is not None else self.image.data[t, c, z0:z1].compute()
        return _cast(planes, storage_dtype(np.dtype(self.image.data.dtype)), dtype, self.label)


@dataclass(frozen=True)
class Merged:
    """The merged image and where each of its channels (or time points) comes from."""

    image: SourceImage
    parts: tuple[Part, ...]
    join: Join

    def origin(self, t: int, c: int) -> tuple[Part, int, int]:
        """The part that holds the output's (time point ``t``, channel ``c``), and its own indices.

        >>> import numpy as np
        >>> from ims_store.write.sources import open_source
        >>> m = merge_sources([open_source(np.zeros((2, 4, 4), np.uint8)) for _ in range(3)])
        >>> part, t, c = m.origin(0, 2)
        >>> part.start, t, c
        (2, 0, 0)
        """
        index = c if self.join == "channels" else t
        part = next(p for p in self.parts if p.start <= index < p.start + p.count)
        return (part, t, c - part.start) if self.join == "channels" else (part, t - part.start, c)


def common_dtype(dtypes: Sequence[np.dtype], labels: Sequence[str]) -> np.dtype:
    """The one stored type of several sources' channels (see the module docstring).

    >>> common_dtype([np.dtype("uint8"), np.dtype("int16")], ["a", "b"])
    dtype('float32')
    >>> common_dtype([np.dtype("uint32"), np.dtype("float32")], ["a", "b"])
    Traceback (most recent call last):
    ...
    ims_store.errors.SourceError: uint32 (a) and float32 (b) cannot share one type exactly ...
    """
    stored = [storage_dtype(d) for d in dtypes]
    floats = [i for i, d in enumerate(stored) if d.kind == "f"]
    wide = [i for i, d in enumerate(stored) if d.kind == "u" and d.itemsize > 2]
    if floats and wide:
        i, j = wide[0], floats[0]
        raise SourceError(
            f"{stored[i]} ({labels[i]}) and {stored[j]} ({labels[j]}) cannot share one type exactly (float32 "
            "holds integers exactly only up to 2**24; Imaris stores one type for all channels): cast one first"
        )
    if floats:
        return np.dtype("<f4")
    return max(stored, key=lambda d: d.itemsize)


def _cast(block: np.ndarray, own: np.dtype, target: np.dtype, label: str) -> np.ndarray:
    """A block of one source as the merged file stores it: checked and cast by the source's own
    rule (so that values are refused exactly as they would be alone), then widened."""
    return as_stored(block, own, label).astype(target, copy=False)


def _agree(what: str, values: list[tuple[str, Any]], close: Any) -> Any:
    """The value the sources carrying one agree on (None when none does); a `SourceError`
    naming two sources and their values otherwise."""
    carried = [(label, v) for label, v in values if v is not None]
    if not carried:
        return None
    first_label, first = carried[0]
    for label, value in carried[1:]:
        if not close(first, value):
            raise SourceError(f"the sources disagree on the {what}: {first} ({first_label}) and {value} ({label})")
    return first


def _close_voxels(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(math.isclose(x, y, rel_tol=REL_TOL) for x, y in zip(a, b, strict=True))


def merge_sources(images: Sequence[SourceImage], join: Join = "channels") -> Merged:
    """``images`` as one image: channels concatenated in order (``join="channels"``) or time
    points (``join="time"``), names and colours kept (see the module docstring for the rules)."""
    if join not in ("channels", "time"):
        raise SourceError(f"join must be 'channels' or 'time', not {join!r}")
    if not images:
        raise SourceError("no sources to write")
    labels = [f"source {i + 1} ({im.label})" for i, im in enumerate(images)]
    axis = 1 if join == "channels" else 0
    shared = [i for i in range(5) if i != axis]
    names = "tczyx"
    for label, im in zip(labels[1:], images[1:], strict=True):
        for i in shared:
            if im.data.shape[i] != images[0].data.shape[i]:
                sizes = {names[k]: int(images[0].data.shape[k]) for k in shared}
                theirs = {names[k]: int(im.data.shape[k]) for k in shared}
                raise SourceError(f"the sources' sizes differ: {sizes} ({labels[0]}) and {theirs} ({label})")
    voxel = _agree("voxel size (z, y, x)", [(lb, im.voxel_size) for lb, im in zip(labels, images, strict=True)],
                   _close_voxels)  # fmt: skip
    reference = voxel or (1.0, 1.0, 1.0)

    def close_origin(a: Sequence[float], b: Sequence[float]) -> bool:
        return all(abs(x - y) <= REL_TOL * v for x, y, v in zip(a, b, reference, strict=True))

    origin = _agree("origin (z, y, x)", [(lb, im.origin) for lb, im in zip(labels, images, strict=True)], close_origin)
    unit = _agree("unit", [(lb, im.unit) for lb, im in zip(labels, images, strict=True)], lambda a, b: a == b)
    dtype = common_dtype([np.dtype(im.data.dtype) for im in images], labels)
    arrays = []
    for label, im in zip(labels, images, strict=True):
        own = storage_dtype(np.dtype(im.data.dtype))
        data = im.data
        if np.dtype(data.dtype) != dtype:
            data = data.map_blocks(_cast, own, dtype, label, dtype=dtype)
        arrays.append(data)
    import dask.array as da

    counts = [int(im.data.shape[axis]) for im in images]
    starts = list(np.cumsum([0, *counts[:-1]]).tolist())
    total = sum(counts)
    files = [im for im in images if im.voxel_size is not None] or list(images)
    first = files[0]
    if join == "channels":
        channel_names = tuple(
            name
            for im, start in zip(images, starts, strict=True)
            for name in (im.channel_names or [f"Channel {start + k}" for k in range(int(im.data.shape[1]))])
        )
        channel_colors = tuple(
            color
            for im, start in zip(images, starts, strict=True)
            for color in (im.channel_colors or [default_color(start + k, total) for k in range(int(im.data.shape[1]))])
        )
        ranges = [im.channel_ranges for im in images]
        channel_ranges = tuple(r for rs in ranges for r in rs) if all(ranges) else None  # type: ignore[union-attr]
        stamps = next((im.time_stamps for im in images if im.time_stamps), None)
    else:
        channel_names = first.channel_names or next((im.channel_names for im in images if im.channel_names), None)
        channel_colors = first.channel_colors or next((im.channel_colors for im in images if im.channel_colors), None)
        channel_ranges = first.channel_ranges
        all_stamps = [im.time_stamps for im in images]
        stamps = tuple(s for ss in all_stamps for s in ss) if all(all_stamps) else None  # type: ignore[union-attr]
    merged = replace(
        first,
        data=da.concatenate(arrays, axis=axis),
        voxel_size=voxel,
        origin=origin,
        unit=unit,
        channel_names=channel_names,
        channel_colors=channel_colors,
        channel_ranges=channel_ranges,
        time_stamps=stamps,
        label=" + ".join(im.label for im in images),
        in_memory=False,
        numpy=None,
        files=tuple(name for im in images for name in im.files),  # every input, for the output checks
        ims=None,  # the parts keep theirs: which channels can be copied as stored is decided per part
    )
    parts = tuple(Part(im, s, n, lb) for im, s, n, lb in zip(images, starts, counts, labels, strict=True))
    return Merged(merged, parts, join)
