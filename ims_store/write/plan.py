"""The plan of a file: what `write_ims` writes, decided before any block is.

The dtype policy (`storage_dtype`: which of Imaris' four types a source is stored as, and the
range checks and cast each slab passes through on its way in) and `Plan`: the stored dtype,
the pyramid's level sizes and block shapes, geometry, channel names, colours and ranges, time
stamps and the HDF5 dataset creation arguments (compression, shuffle).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..access.outputs import WriteError
from ..errors import SourceError
from ..format.pyramid import block_shapes, level_sizes
from ..store.ngff import default_color
from .sources import SourceImage

Compression = Literal["gzip", "lz4", "none"]
Vec3 = tuple[float, float, float]


# --------------------------------------------------------------------------------------------
# dtypes


def _native(dtype: np.dtype) -> np.dtype:
    """``dtype`` in this machine's byte order: ``>i2`` and ``<i2`` follow the same rule."""
    return np.dtype(dtype).newbyteorder("=")


def storage_dtype(dtype: np.dtype) -> np.dtype:
    """The type a source dtype is stored as. Imaris knows uint8, uint16, uint32 and float32.

    The rule never wraps values, whatever the byte order: ``bool`` -> uint8; int8 and int16 ->
    float32 (exact); float16 and float64 -> float32 (float64 rounds to the nearest float32;
    finite values beyond the float32 range are refused); int32, int64 and uint64 -> uint32 when
    every value is in 0..4294967295 (checked on the data as it streams), else refused.

    >>> storage_dtype(np.dtype("int16")), storage_dtype(np.dtype("bool"))
    (dtype('float32'), dtype('uint8'))
    >>> storage_dtype(np.dtype(">u2")) == np.dtype("<u2")  # big-endian uint16 is still uint16
    True
    """
    dtype = _native(dtype)
    if dtype in (np.uint8, np.uint16, np.uint32, np.float32):
        return dtype.newbyteorder("<")
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype in (np.int8, np.int16, np.float16, np.float64):
        return np.dtype("<f4")
    if dtype.kind in "iu":
        return np.dtype("<u4")
    raise WriteError(f"cannot store data of type {dtype} in an Imaris file (use uint8, uint16, uint32 or float32)")


def _check_range(values: np.ndarray, target: np.dtype, label: str) -> None:
    """Refuse values the dtype rule cannot store without wrapping or overflowing.

    Run on each slab as it streams (no pass over the whole source first): the output is written
    under a temporary name, so a refusal half-way leaves nothing behind.
    """
    source = _native(values.dtype)
    if not values.size:
        return
    if source.kind in "iu" and target.kind == "u" and not np.can_cast(source, target):
        lo, hi = values.min(), values.max()
        if lo < 0 or hi > np.iinfo(target).max:
            raise WriteError(
                f"values {lo}..{hi} of type {source} do not fit {target}, the widest integer Imaris stores; "
                "rescale or cast to float32 first",
                label,
            )
    elif source.kind == "f" and target.kind == "f" and source.itemsize > target.itemsize:
        top = np.max(np.abs(values), where=np.isfinite(values), initial=0.0)  # inf stays inf, NaN stays NaN
        if top > np.finfo(target).max:
            raise WriteError(f"values up to {top} overflow {target}, the only float type Imaris stores", label)


def as_stored(planes: Any, target: np.dtype, label: str) -> np.ndarray:
    """A slab as the file stores it: range-checked by the dtype rule, then cast to ``target``.

    The type the slab really has decides, not the one its source declared (a source may declare
    another: nibabel scales NIfTI voxels to float64); a slab whose own type would be stored as
    something else than ``target`` is refused rather than cast into wrong values.
    """
    planes = np.asarray(planes)
    if storage_dtype(planes.dtype) != target:
        raise WriteError(
            f"the source delivered {planes.dtype} data, stored as {storage_dtype(planes.dtype)}, "
            f"where its declared type makes the file {target}",
            label,
        )
    _check_range(planes, target, label)
    return planes.astype(target, copy=False)


# --------------------------------------------------------------------------------------------
# the plan of a file


@dataclass
class Plan:
    """What a file gets, decided once before anything is written (see `make_plan`): the stored
    dtype, each level's size and block shape, geometry, channels, time stamps, compression."""

    source: SourceImage
    dtype: np.dtype
    sizes: list[tuple[int, int, int]]
    blocks: list[tuple[int, int, int]]
    voxel_size: Vec3
    extent_min: Vec3
    unit: str
    channel_names: list[str]
    channel_colors: list[tuple[float, float, float]]
    channel_ranges: list[tuple[float, float]] | None
    time_stamps: list[_dt.datetime]
    recording_date: _dt.datetime
    create_args: dict[str, Any]
    spots: list[Any] = field(default_factory=list)
    """Spots objects to write beside the image (`spots.PreparedSpots`)."""
    merged: Any = None
    """Of several sources: the `merge.Merged` whose parts level 0 is read from."""
    stored: dict[tuple[int, int], Any] = field(default_factory=dict)
    """(time point, channel) -> where it is copied from as stored (`stored.StoredChannel`)."""

    @property
    def timepoints(self) -> int:
        return int(self.source.data.shape[0])

    @property
    def channels(self) -> int:
        return int(self.source.data.shape[1])


def _create_args(compression: Compression, level: int, shuffle: bool) -> dict[str, Any]:
    if compression == "gzip":
        if not 0 <= level <= 9:
            raise WriteError(f"gzip compression_level must be 0..9, not {level}")
        return {"compression": "gzip", "compression_opts": level, "shuffle": shuffle}
    if compression == "lz4":
        import hdf5plugin

        return {**dict(hdf5plugin.LZ4()), "shuffle": shuffle}
    if compression == "none":
        return {}
    raise WriteError(f"compression must be 'gzip', 'lz4' or 'none', not {compression!r}")


def make_plan(
    src: SourceImage,
    *,
    compression: Compression,
    compression_level: int,
    shuffle: bool | None,
    chunks: Sequence[int] | None,
) -> Plan:
    """The `Plan` of writing ``src`` with these options (a `WriteError` for an image that
    cannot be written: an empty axis, a type Imaris does not store, blocks that do not fit).
    Called by `write_ims` (``make_plan(open_source(...), compression="gzip", ...)``)."""
    data = src.data
    if data.ndim != 5 or any(s == 0 for s in data.shape):
        raise WriteError(f"the image has shape {tuple(data.shape)}; every axis needs at least one element", src.label)
    dtype = storage_dtype(data.dtype)  # values are checked against it slab by slab, as they stream
    size = tuple(int(s) for s in data.shape[2:])
    sizes = level_sizes(size, dtype.itemsize)
    if chunks is not None:
        block = tuple(int(c) for c in chunks)
        if len(block) != 3 or any(c <= 0 for c in block):
            raise WriteError(f"chunks must be 3 positive sizes (z, y, x), not {chunks!r}")
        blocks = [block] * len(sizes)
    else:
        blocks = block_shapes(sizes, dtype.itemsize, int(data.shape[0]))
    if shuffle is None:
        shuffle = dtype.kind == "u" and dtype.itemsize in (2, 4)  # as ImarisWriter: multi-byte integers
    voxel = src.voxel_size or (1.0, 1.0, 1.0)
    if any(not (math.isfinite(v) and v > 0) for v in voxel):
        raise WriteError(f"voxel sizes must be positive, got {voxel} (z, y, x)", src.label)
    origin = src.origin or tuple(v / 2 for v in voxel)
    channels = int(data.shape[1])
    names = list(src.channel_names or [f"Channel {i}" for i in range(channels)])
    colors = list(src.channel_colors or [default_color(i, channels) for i in range(channels)])
    for what, values in (("channel_names", names), ("channel_colors", colors)):
        if len(values) != channels:
            raise WriteError(f"{what} has {len(values)} entries for {channels} channels", src.label)
    ranges = list(src.channel_ranges) if src.channel_ranges else None
    if ranges is not None and len(ranges) != channels:
        raise WriteError(f"channel ranges have {len(ranges)} entries for {channels} channels", src.label)
    now = _dt.datetime.now().replace(microsecond=0)
    recording = src.recording_date or (src.time_stamps[0] if src.time_stamps else now)
    stamps = list(src.time_stamps or [recording + _dt.timedelta(seconds=i) for i in range(int(data.shape[0]))])
    if len(stamps) != data.shape[0]:
        raise WriteError(f"{len(stamps)} time stamps for {data.shape[0]} time points", src.label)
    return Plan(
        source=src,
        dtype=dtype,
        sizes=sizes,
        blocks=blocks,
        voxel_size=voxel,  # type: ignore[arg-type]
        extent_min=tuple(o - v / 2 for o, v in zip(origin, voxel, strict=True)),  # type: ignore[arg-type]
        unit=src.unit or "um",
        channel_names=names,
        channel_colors=colors,
        channel_ranges=ranges,
        time_stamps=stamps,
        recording_date=recording,
        create_args=_create_args(compression, compression_level, bool(shuffle)),
    )


def check_text(src: SourceImage, path: Path) -> None:
    """Refuse, before anything is written, text the file would hold that Latin-1 cannot encode.

    Imaris attributes are single-byte characters (format notes, section 2) and real files show
    no sign of what Imaris writes for other characters, so a Greek channel name or ``細胞.ims``
    cannot be written faithfully: the `SourceError` names the argument (a channel name, the image name,
    which is the file's stem unless the source names it, the description, the unit) and the
    character.

    >>> import numpy as np
    >>> from ims_store.write.sources import open_source
    >>> image = open_source(np.zeros((2, 4, 4), np.uint8), channel_names=["細胞"])
    >>> check_text(image, Path("cells.ims"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ims_store.errors.SourceError: cells.ims: channel_names[0] '細胞' holds '細' (U+7D30), which an Imaris ...
    """
    texts = [(f"channel_names[{i}]", name) for i, name in enumerate(src.channel_names or ())]
    texts += [("the image name", src.name) if src.name else ("the file name", path.name)]
    texts += [("description", src.description or ""), ("unit", src.unit or "")]
    for what, text in texts:
        bad = next((ch for ch in text if ord(ch) > 0xFF), None)
        if bad is not None:
            raise SourceError(
                f"{what} {text!r} holds {bad!r} (U+{ord(bad):04X}), which an Imaris file cannot store "
                "(its text is Latin-1); nothing was written",
                path,
            )
