"""Channels of an ``.ims`` source copied as stored: chunk bytes moved without decoding.

Where an ``.ims`` source's levels are exactly the ones the output needs (the same level sizes,
chunk shapes and data type: the same pyramid), each of its (time point, channel) datasets is
re-created with the source's own creation properties (shape, chunks, filters, fill value) and
its chunks copied with ``read_direct_chunk`` / ``write_direct_chunk``, filter masks as they
are; the channel groups' histograms and attributes come along. A chunk is copied only from
storage `format.chunks.index_dataset` checks it understands (chunked in the one file, a plain
type, every filter known); anything else is decoded and encoded as any other source.

With ``compression`` given explicitly, a source is copied only where its filters are the
ones that compression would write; left to its default, copied chunks keep their own.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..format.attributes import parse_float, read_text
from ..format.chunks import index_dataset, stored_chunks
from ..format.layout import Filter, ImsLayout, dataset_filters
from .merge import Merged

__all__ = ["StoredChannel", "copy_channel", "stored_channels"]


@dataclass
class StoredChannel:
    """Where one output (time point, channel) is copied from: the source file, its layout, the
    source level that is output level 0, and the source's time point and channel."""

    path: str
    layout: ImsLayout
    first_level: int
    t: int
    c: int
    color_range: tuple[float, float] | None
    copied: bool = False
    """Set once copied (a source whose storage turns out not to be copied here is encoded)."""

    def data_path(self, level: int) -> str:
        """The source's ``Data`` dataset of output level ``level``."""
        return self.layout.data_path(self.first_level + level, self.t, self.c)


_Filters = tuple[tuple[int, tuple[int, ...]], ...]


def _filters(create_args: dict[str, Any], dtype: np.dtype, block: Sequence[int]) -> _Filters:
    """The filters (id, values) HDF5 gives a dataset made with ``create_args``: asked of HDF5
    itself, on a dataset in memory."""
    with h5py.File(io.BytesIO(), "w") as f:
        probe = f.create_dataset("probe", shape=tuple(block), dtype=dtype, chunks=tuple(block), **create_args)
        return _comparable(dataset_filters(probe))


def _comparable(filters: tuple[Filter, ...]) -> _Filters:
    return tuple((f.id, f.values) for f in filters)


def stored_channels(
    merged: Merged,
    *,
    sizes: Sequence[tuple[int, int, int]],
    blocks: Sequence[tuple[int, int, int]],
    dtype: np.dtype,
    create_args: dict[str, Any],
    keep_filters: bool,
) -> dict[tuple[int, int], StoredChannel]:
    """The output's (time point, channel) that can be copied as stored, and from where.

    ``sizes`` / ``blocks`` / ``dtype``: the output's pyramid; ``keep_filters``: the caller left
    compression to its default (copied chunks keep theirs), else only sources stored with the
    filters ``create_args`` make are copied.
    """
    wanted = None if keep_filters else _filters(create_args, dtype, blocks[0])
    out: dict[tuple[int, int], StoredChannel] = {}
    for part in merged.parts:
        ims = part.image.ims
        if ims is None:
            continue
        store, first = ims
        if not Path(store.path).is_file():  # remote: its bytes are read through the store
            continue
        layout = store.layout
        if tuple(part.image.data.shape) != layout.shape(first):
            continue
        levels = layout.levels[first:]
        if len(levels) != len(sizes) or layout.dtype != dtype:
            continue
        if any(lv.size != s or lv.chunks != b for lv, s, b in zip(levels, sizes, blocks, strict=True)):
            continue
        if wanted is not None and any(_comparable(lv.filters) != wanted for lv in levels):
            continue
        ranges = [ch.color_range for ch in layout.channels]
        t_count, c_count = int(part.image.data.shape[0]), int(part.image.data.shape[1])
        for t in range(t_count):
            for c in range(c_count):
                key = (t, part.start + c) if merged.join == "channels" else (part.start + t, c)
                out[key] = StoredChannel(store.path, layout, first, t, c, ranges[c])
    return out


def _copyable(source: h5py.File, item: StoredChannel, levels: int) -> bool:
    """Whether every level's dataset of ``item`` is storage whose chunks may be copied as
    they are (and its channel group has the histograms to copy)."""
    for level in range(levels):
        ds = source.get(item.data_path(level))
        if not isinstance(ds, h5py.Dataset) or ds.chunks is None:
            return False
        try:
            index = index_dataset(ds, item.layout.level(item.first_level + level))
        except ValueError:
            return False
        if not index.direct or not index.listed or index.file is not None or "Histogram" not in ds.parent:
            return False
    return True


def _display_range(group: h5py.Group) -> tuple[float, float] | None:
    """A channel's default display range from its copied histogram's bounds."""
    lo, hi = parse_float(read_text(group, "HistogramMin")), parse_float(read_text(group, "HistogramMax"))
    return (lo, hi) if lo is not None and hi is not None else None


def copy_channel(
    source: h5py.File, item: StoredChannel, root: h5py.Group, t: int, c: int, levels: int
) -> tuple[tuple[float, float] | None, int] | None:
    """Copy ``item`` into ``root`` (the output's ``DataSet`` group) as its (``t``, ``c``) at
    every one of ``levels`` levels: datasets re-created with the source's creation properties,
    chunks moved as stored, the channel groups' attributes and histograms with them.

    Returns (the channel's display range from its histogram, the number of chunks copied), or
    None, having written nothing, where the source's storage is not one copied here.
    """
    if not _copyable(source, item, levels):
        return None
    chunks = 0
    for level in range(levels):
        src = source[item.data_path(level)]
        src_group = src.parent
        group = root.require_group(f"ResolutionLevel {level}/TimePoint {t}/Channel {c}")
        for key, value in src_group.attrs.items():
            group.attrs.create(key, value)
        for name in src_group:
            if name != "Data":
                source.copy(src_group[name], group, name=name)
        dcpl = src.id.get_create_plist()
        dst = h5py.h5d.create(group.id, b"Data", src.id.get_type(), src.id.get_space(), dcpl=dcpl)
        found_chunks = [info for info in stored_chunks(src) if info.byte_offset is not None]
        # one buffer for every chunk: a fresh one per chunk costs its pages' faults again
        buffer = np.empty(max((info.size for info in found_chunks), default=0), np.uint8)
        for info in found_chunks:
            mask, data = src.id.read_direct_chunk(info.chunk_offset, out=buffer)
            dst.write_direct_chunk(info.chunk_offset, data, mask)
        chunks += len(found_chunks)
        if level == 0:
            found = _display_range(group)
    return found, chunks
