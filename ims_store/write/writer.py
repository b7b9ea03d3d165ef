"""`write_ims`: arrays, OME-Zarr, NIfTI, TIFF and Imaris files into real Imaris files, chunk by chunk.

The source is read one slab of full-resolution planes at a time. Each slab is cut into blocks
(compressed in a thread pool, written in order by the one thread that talks to HDF5 with
``write_direct_chunk``) and handed down the pyramid: every level is built from the level above
while streaming, so memory stays bounded by a few slabs whatever the size of the volume.
Histograms and the thumbnail are accumulated on the way. The file is written under a temporary
name beside the destination and renamed at the end; on any error nothing remains at the
destination.

This module holds `write_ims` and its orchestration (the file's datasets, level 0 read slab by
slab, the temporary name); the parts live beside it: `plan` (dtype policy, what is written),
`stream` (the streaming pyramid), `sink` (encoder pool and HDF5 writer), `histogram`,
`thumbnail`, `metadata` (DataSetInfo, attributes) and `cluster_level0` (level 0 on dask.distributed
workers).

>>> import numpy as np
>>> path = write_ims(np.zeros((8, 64, 64), np.uint16), "zeros.ims", voxel_size=(2.0, 0.5, 0.5))
>>> from ims_store import read_layout
>>> read_layout(path).levels[0].voxel_size
(2.0, 0.5, 0.5)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..access.outputs import DestinationExistsError, WriteError, atomic_output, check_output, progress_bar
from ..errors import ImsError
from ..format.attributes import write_text
from ..format.layout import dataset_filters
from ..format.pyramid import halved_axes
from .beside import geometry_change, keep_beside_image
from .cluster import dask_client, worker_threads
from .cluster_level0 import distributed_level0
from .histogram import HistogramAccumulator, histogram
from .merge import Join, Merged, Part, merge_sources
from .metadata import write_dataset_info, write_histograms, write_root_attributes, write_thumbnail
from .plan import Compression, Plan, as_stored, check_text, make_plan, storage_dtype
from .sink import ChunkSink
from .sink import encode_block as encode_block  # reached through this module by the tests
from .sources import SourceError, is_source_list, named_files, open_source, open_sources
from .spots import prepare_spots, write_spots
from .stored import copy_channel, stored_channels
from .stream import PyramidStream, StreamLevel
from .thumbnail import THUMBNAIL_SIZE, ThumbnailAccumulator

__all__ = [
    "DestinationExistsError",
    "HistogramAccumulator",
    "ThumbnailAccumulator",
    "WriteError",
    "histogram",
    "storage_dtype",
    "write_dataset_info",
    "write_histograms",
    "write_ims",
    "write_root_attributes",
    "write_thumbnail",
]

SLAB_BYTES = 64 * 1024 * 1024
"""Level 0 is read in slabs of about this many bytes (or one block row, if larger), however large
the source's own chunks: memory stays bounded whatever the volume and its chunking."""


# --------------------------------------------------------------------------------------------
# the public function


def write_ims(
    source: Any,
    path: str | os.PathLike[str],
    *,
    axes: str | None = None,
    series: int | None = None,
    voxel_size: Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
    unit: str | None = None,
    channel_names: Sequence[str] | None = None,
    channel_colors: Sequence[tuple[float, float, float]] | None = None,
    time_stamps: Sequence[Any] | None = None,
    compression: Compression | None = None,
    compression_level: int | None = None,
    shuffle: bool | None = None,
    chunks: Sequence[int] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    workers: int | None = None,
    client: Any = None,
    spots: Mapping[str, Any] | None = None,
    join: Join = "channels",
) -> Path:
    """Write ``source`` as an Imaris file at ``path`` and return the path.

    ``source``: a numpy or dask array (with ``axes``, e.g. ``"zyx"``, ``"czyx"``, ``"tczyx"``),
    an OME-Zarr image (path, URL or zarr group), a NIfTI file, a TIFF / OME-TIFF file (``series``
    picks an image of a multi-series file; ``axes`` names its axes where the file does not), or
    an ``.ims`` file / `ImsStore`.
    Spatial tuples are (z, y, x); ``origin`` is the centre of the first voxel (as in OME-NGFF and
    NIfTI), so the file's ExtMin is ``origin - voxel_size / 2``. Given metadata overrides what
    the source carries. The file gets the full pyramid (Imaris' rule), per-level histograms and a
    thumbnail; blocks are compressed on ``workers`` threads (default: all cores).

    ``client`` (a ``dask.distributed.Client`` or a scheduler address) moves the heavy part onto
    a cluster: the workers read the source and compress level 0, slab by slab; this process
    writes their blocks in order (HDF5 has one writer) and builds the smaller levels.

    ``source`` may also be a list of such sources: their channels are written one after another
    (``join="time"``: their time points), names and colours kept (see `ims_store.write.merge` for
    what they must agree on); ``axes`` then names the axes of its array sources. A list of plain
    numbers stays one array.

    An ``.ims`` source whose levels are the pyramid the output needs (same level sizes, chunk
    shapes and type) is copied as stored: its chunks' bytes are moved without decoding, with
    their filters and its histograms (`ims_store.write.stored`); ``compression`` left at None
    keeps their filters (and is gzip level 2, as Imaris, for what is encoded); an explicit
    ``compression``, ``compression_level`` or ``shuffle`` is honoured by encoding every source not
    stored that way.

    ``spots`` (name -> a table as `read_spots` returns it, a ``(table, edges)`` pair or a
    `SpotsObject`) adds Spots objects, with their tracks, as Imaris 9.5 writes them (see
    `ims_store.write.spots`); they are checked before any of the image is written.

    >>> import numpy as np
    >>> stack = np.random.default_rng(0).integers(0, 4000, (2, 20, 300, 200), dtype=np.uint16)
    >>> out = write_ims(stack, "stack.ims", axes="czyx", voxel_size=(1.0, 0.2, 0.2),
    ...                 channel_names=["DAPI", "GFP"])
    >>> from ims_store import read_layout
    >>> [lvl.size for lvl in read_layout(out).levels]
    [(20, 300, 200), (20, 150, 100)]
    """
    path = check_output(path, overwrite, named_files(source))  # before any reading, however long
    merged = None
    if is_source_list(source):
        merged = merge_sources(open_sources(source, axes=axes, series=series), join)
        source, axes, series = merged.image, None, None
    elif join != "channels":
        raise SourceError(f"join={join!r} needs a list of sources")
    src = open_source(
        source,
        axes=axes,
        series=series,
        voxel_size=voxel_size,
        origin=origin,
        unit=unit,
        channel_names=channel_names,
        channel_colors=channel_colors,
        time_stamps=time_stamps,
    )
    check_text(src, path)  # before a cluster is reached or a voxel written
    prepared = prepare_spots(spots, int(src.data.shape[0])) if spots else []
    with dask_client(client) as cluster:
        plan = make_plan(
            src,
            compression=compression or "gzip",
            compression_level=2 if compression_level is None else compression_level,  # 2: as Imaris
            shuffle=shuffle,
            chunks=chunks,
        )
        plan.spots = prepared
        plan.merged = merged
        whole = merged or Merged(src, (Part(src, 0, plan.channels),), "channels")
        plan.stored = stored_channels(
            whole,
            sizes=plan.sizes,
            blocks=plan.blocks,
            dtype=plan.dtype,
            create_args=plan.create_args,
            keep_filters=compression is None and compression_level is None and shuffle is None,
        )
        _write_file(plan, path, overwrite, workers or os.cpu_count() or 1, progress, cluster)
    return path


def _write_file(plan: Plan, path: Path, overwrite: bool, workers: int, progress: bool, client: Any) -> None:
    with atomic_output(path, overwrite, inputs=plan.source.files) as tmp:
        try:
            _write(plan, tmp, workers, progress, path.name, client)
        except ImsError:
            raise
        except (OSError, ValueError, RuntimeError, TypeError) as err:
            # (HDF5's messages run over several lines: one line, as every error)
            raise WriteError(f"writing failed: {' '.join(str(err).split())}", path) from err


def _keep_beside(plan: Plan, f: h5py.File, label: str) -> None:
    """What the first Imaris source holds beside its image (analysis objects, time stamps, the
    log), where the new image keeps what they refer to: its geometry, and for several sources
    its channels and time points where they were (the source's come first: other channels or
    time points follow them, so that the objects' channel and time indices stay true)."""
    if plan.merged is None:
        if plan.source.ims is None:
            return
        store, level = plan.source.ims
        channels, timepoints, moved = plan.channels, plan.timepoints, None
    else:
        first = next((part for part in plan.merged.parts if part.image.ims is not None), None)
        if first is None:
            return
        store, level = first.image.ims
        by_channel = plan.merged.join == "channels"
        channels = first.count if by_channel else plan.channels
        timepoints = plan.timepoints if by_channel else first.count
        axis = "channels" if by_channel else "time points"
        moved = f"its {axis} start at {first.start} of the output, not 0" if first.start else None
    changed = moved or geometry_change(
        store.layout,
        level,
        size=plan.sizes[0],
        voxel_size=plan.voxel_size,
        extent_min=plan.extent_min,
        timepoints=timepoints,
        channels=channels,
    )
    keep_beside_image(
        store.path, f, image=store.layout.image, changed=changed, name=label, storage_options=store.storage_options
    )


def _slabs(z_chunks: Sequence[int], minimum: int, maximum: int) -> list[tuple[int, int]]:
    """(start, stop) of the z slabs level 0 is read in.

    Small source chunks are merged whole until a slab has at least ``minimum`` planes (one
    block row), so that no source chunk is read twice; a slab stays within ``maximum`` planes,
    so a source chunk larger than that is read in sub-ranges of ``maximum`` planes.

    >>> _slabs([4, 4, 4, 100], minimum=8, maximum=32)
    [(0, 8), (8, 12), (12, 44), (44, 76), (76, 108), (108, 112)]
    """
    bounds, start, stop = [], 0, 0
    for size in (int(s) for s in z_chunks):
        if stop > start and (size > maximum or stop + size - start > maximum):
            bounds.append((start, stop))  # what is open stays whole, however short
            start = stop
        stop += size
        while stop - start > maximum:
            bounds.append((start, start + maximum))
            start += maximum
        if stop - start >= minimum:
            bounds.append((start, stop))
            start = stop
    if stop > start:
        bounds.append((start, stop))
    return bounds


def _slab_planes(plan: Plan) -> tuple[int, int]:
    """(minimum, maximum) planes of a level-0 slab: one block row, and about `SLAB_BYTES` of the
    source (in whole block rows; one block row if that is larger)."""
    z_block = plan.blocks[0][0]
    _, y, x = plan.sizes[0]
    plane = y * x * max(np.dtype(plan.source.data.dtype).itemsize, plan.dtype.itemsize)
    return z_block, max(1, SLAB_BYTES // plane // z_block) * z_block


def _local_level0(plan: Plan, data: Any, t: int, c: int, stream: PyramidStream, label: str) -> None:
    """Push one (time point, channel) of the source through ``stream``, slab by slab (of several
    sources, from the one that holds it: its own numpy array, not the concatenation, is read)."""
    if plan.merged is not None:
        part, pt, pc = plan.merged.origin(t, c)
        for z0, z1 in _slabs(part.image.data.chunks[2], *_slab_planes(plan)):
            stream.push(0, part.planes(pt, pc, z0, z1, plan.dtype))
        return
    view = plan.source.numpy_view()  # a numpy array in memory: its slabs are views, not copies
    for z0, z1 in _slabs(data.chunks[2], *_slab_planes(plan)):
        # one indexing step: dask then reads just these planes from an array-like source (a nested
        # data[t, c][z0:z1] would read its whole chunk)
        planes = view[t, c, z0:z1] if view is not None else data[t, c, z0:z1].compute()
        stream.push(0, as_stored(planes, plan.dtype, label))


def _write(plan: Plan, tmp: Path, workers: int, progress: bool, label: str, client: Any) -> None:
    data = plan.source.data
    if client is not None and plan.source.in_memory:
        with warnings.catch_warnings():  # large by design: the array goes to the workers once, not with every slab
            warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
            data = client.persist(data)
    T, C = plan.timepoints, plan.channels
    n_levels = len(plan.sizes)
    grids = [
        [-(-s // b) for s, b in zip(size, block, strict=True)]
        for size, block in zip(plan.sizes, plan.blocks, strict=True)
    ]
    total = T * C * sum(int(np.prod(g)) for g in grids)
    # the thumbnail comes from the smallest level still at least 256 wide (cheap, yet sharp)
    thumb_level = max([i for i, s in enumerate(plan.sizes) if max(s[1:]) >= THUMBNAIL_SIZE] or [0])
    bar = progress_bar(progress, total, f"writing {label}")
    sink = ChunkSink(workers, bar)
    thumb = ThumbnailAccumulator(thumb_level)
    ranges_seen: dict[int, tuple[float, float]] = {}
    sources = _StoredSources()
    try:
        with h5py.File(tmp, "w") as f:
            write_root_attributes(f)
            root = f.create_group("DataSet")
            for t in range(T):
                for c in range(C):
                    if _copied(plan, sources, root, t, c, ranges_seen, bar):
                        continue
                    levels = []
                    for index, (size, block) in enumerate(zip(plan.sizes, plan.blocks, strict=True)):
                        group = root.require_group(f"ResolutionLevel {index}/TimePoint {t}/Channel {c}")
                        for key, value in zip(("ImageSizeZ", "ImageSizeY", "ImageSizeX"), size, strict=True):
                            write_text(group, key, str(value))
                        stored = tuple(g * b for g, b in zip(grids[index], block, strict=True))
                        dataset = group.create_dataset(
                            "Data", shape=stored, dtype=plan.dtype, chunks=block, fillvalue=0, **plan.create_args
                        )
                        levels.append(
                            StreamLevel(
                                size=size,
                                block=block,
                                dataset=dataset,
                                filters=dataset_filters(dataset),
                                halve_next=halved_axes(size) if index + 1 < n_levels else None,
                                histogram=HistogramAccumulator(plan.dtype),
                            )
                        )
                    thumb.channel = c
                    stream = PyramidStream(levels, sink, plan.dtype, thumb if t == 0 else None)
                    if client is not None:
                        distributed_level0(client, data, t, c, stream, 2 * worker_threads(client), label)
                    else:
                        _local_level0(plan, data, t, c, stream, label)
                    stream.finish()
                    sink.flush()
                    for index, level in enumerate(levels):
                        write_histograms(root[f"ResolutionLevel {index}/TimePoint {t}/Channel {c}"], level.histogram)
                    if t == 0:
                        ranges_seen[c] = levels[0].histogram.display_range()
            ranges = plan.channel_ranges or [ranges_seen[c] for c in range(C)]
            z, y, x = plan.sizes[0]
            extent_max = tuple(lo + v * n for lo, v, n in zip(plan.extent_min, plan.voxel_size, (z, y, x), strict=True))
            write_dataset_info(
                f,
                size=plan.sizes[0],
                extent_min=plan.extent_min,
                extent_max=extent_max,
                unit=plan.unit,
                channel_names=plan.channel_names,
                channel_colors=plan.channel_colors,
                channel_ranges=ranges,
                time_stamps=plan.time_stamps,
                recording_date=plan.recording_date,
                name=plan.source.name or Path(label).stem,  # Imaris names an image after its file
                description=plan.source.description or "",
            )
            thumbnail = _stored_thumbnail(plan, sources, ranges, C)
            if thumbnail is None:
                for c in range(C):  # the channels copied as stored: their projections read now
                    if c not in thumb.mips and (item := plan.stored.get((0, c))) is not None:
                        size = plan.sizes[thumb.level]
                        thumb.channel = c
                        thumb.add(sources.get(item.path)[item.data_path(thumb.level)][: size[0], : size[1], : size[2]])
                thumbnail = thumb.rgba(plan.channel_colors, ranges)
            write_thumbnail(f, thumbnail)
            _keep_beside(plan, f, label)  # before the spots: new Points are numbered after the source's
            if plan.spots:
                write_spots(f, plan.spots, unit=plan.unit, time_stamps=plan.time_stamps)
    finally:
        sources.close()
        sink.close()
        if bar is not None:
            bar.close()


class _StoredSources:
    """The ``.ims`` sources chunks are copied from, each opened once, read-only."""

    def __init__(self) -> None:
        self.files: dict[str, h5py.File] = {}

    def get(self, path: str) -> h5py.File:
        if path not in self.files:
            self.files[path] = h5py.File(path, "r")
        return self.files[path]

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def _copied(
    plan: Plan,
    sources: _StoredSources,
    root: h5py.Group,
    t: int,
    c: int,
    ranges_seen: dict[int, tuple[float, float]],
    bar: Any,
) -> bool:
    """Copy the output's (``t``, ``c``) as stored from its ``.ims`` source where it can be
    (`stored.copy_channel`), with its display range."""
    item = plan.stored.get((t, c))
    if item is None:
        return False
    source = sources.get(item.path)
    done = copy_channel(source, item, root, t, c, len(plan.sizes))
    if done is None:
        return False
    found, chunks = done
    if bar is not None:
        bar.update(chunks)
    item.copied = True
    if t == 0:
        ranges_seen[c] = item.color_range or found or (0.0, 1.0)
    return True


def _stored_thumbnail(
    plan: Plan, sources: _StoredSources, ranges: Sequence[tuple[float, float]], channels: int
) -> np.ndarray | None:
    """The source's own ``Thumbnail/Data`` where the output's first time point is that
    source's, channel for channel, copied as stored, with its colours and display ranges (the
    thumbnail would be made the same again); None otherwise."""
    items = [plan.stored.get((0, c)) for c in range(channels)]
    if any(i is None or not i.copied or i.t != 0 or i.c != c for c, i in enumerate(items)):
        return None
    paths = {i.path for i in items}  # type: ignore[union-attr]
    layout = items[0].layout  # type: ignore[union-attr]
    if len(paths) != 1 or len(layout.channels) != channels:
        return None
    same_look = all(
        tuple(plan.channel_colors[c]) == tuple(ch.color or (1.0, 1.0, 1.0)) and tuple(ranges[c]) == ch.color_range
        for c, ch in enumerate(layout.channels)
    )
    thumbnail = sources.get(paths.pop()).get("Thumbnail/Data")
    if not same_look or not isinstance(thumbnail, h5py.Dataset) or thumbnail.dtype != np.uint8 or thumbnail.ndim != 2:
        return None
    return thumbnail[()]
