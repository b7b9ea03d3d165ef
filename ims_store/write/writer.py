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
from collections.abc import Sequence
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
from .cluster_level0 import _distributed_level0
from .histogram import HistogramAccumulator, histogram
from .metadata import write_dataset_info, write_histograms, write_root_attributes, write_thumbnail
from .plan import Compression, _as_stored, _Plan, _plan, check_text, storage_dtype
from .sink import _ChunkSink
from .sink import _encode_block as _encode_block  # reached through this module by the tests
from .sources import named_files, open_source
from .stream import _Level, _Stream
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
    compression: Compression = "gzip",
    compression_level: int = 2,
    shuffle: bool | None = None,
    chunks: Sequence[int] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    workers: int | None = None,
    client: Any = None,
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

    >>> import numpy as np
    >>> stack = np.random.default_rng(0).integers(0, 4000, (2, 20, 300, 200), dtype=np.uint16)
    >>> out = write_ims(stack, "stack.ims", axes="czyx", voxel_size=(1.0, 0.2, 0.2),
    ...                 channel_names=["DAPI", "GFP"])
    >>> from ims_store import read_layout
    >>> [lvl.size for lvl in read_layout(out).levels]
    [(20, 300, 200), (20, 150, 100)]
    """
    path = check_output(path, overwrite, named_files(source))  # before any reading, however long
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
    with dask_client(client) as cluster:
        plan = _plan(src, compression=compression, compression_level=compression_level, shuffle=shuffle, chunks=chunks)
        _write_file(plan, path, overwrite, workers or os.cpu_count() or 1, progress, cluster)
    return path


def _write_file(plan: _Plan, path: Path, overwrite: bool, workers: int, progress: bool, client: Any) -> None:
    with atomic_output(path, overwrite, inputs=plan.source.files) as tmp:
        try:
            _write(plan, tmp, workers, progress, path.name, client)
        except ImsError:
            raise
        except (OSError, ValueError, RuntimeError, TypeError) as err:
            # (HDF5's messages run over several lines: one line, as every error)
            raise WriteError(f"writing failed: {' '.join(str(err).split())}", path) from err


def _keep_beside(plan: _Plan, f: h5py.File, label: str) -> None:
    """What the Imaris source holds beside its image, where the new image has its geometry."""
    store, level = plan.source.ims  # type: ignore[misc]
    changed = geometry_change(
        store.layout,
        level,
        size=plan.sizes[0],
        voxel_size=plan.voxel_size,
        extent_min=plan.extent_min,
        timepoints=plan.timepoints,
        channels=plan.channels,
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


def _slab_planes(plan: _Plan) -> tuple[int, int]:
    """(minimum, maximum) planes of a level-0 slab: one block row, and about `SLAB_BYTES` of the
    source (in whole block rows; one block row if that is larger)."""
    z_block = plan.blocks[0][0]
    _, y, x = plan.sizes[0]
    plane = y * x * max(np.dtype(plan.source.data.dtype).itemsize, plan.dtype.itemsize)
    return z_block, max(1, SLAB_BYTES // plane // z_block) * z_block


def _local_level0(plan: _Plan, data: Any, t: int, c: int, stream: _Stream, label: str) -> None:
    """Push one (time point, channel) of the source through ``stream``, slab by slab."""
    view = plan.source.numpy_view()  # a numpy array in memory: its slabs are views, not copies
    for z0, z1 in _slabs(data.chunks[2], *_slab_planes(plan)):
        # one indexing step: dask then reads just these planes from an array-like source (a nested
        # data[t, c][z0:z1] would read its whole chunk)
        planes = view[t, c, z0:z1] if view is not None else data[t, c, z0:z1].compute()
        stream.push(0, _as_stored(planes, plan.dtype, label))


def _write(plan: _Plan, tmp: Path, workers: int, progress: bool, label: str, client: Any) -> None:
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
    sink = _ChunkSink(workers, bar)
    thumb = ThumbnailAccumulator(thumb_level)
    ranges_seen: dict[int, tuple[float, float]] = {}
    try:
        with h5py.File(tmp, "w") as f:
            write_root_attributes(f)
            root = f.create_group("DataSet")
            for t in range(T):
                for c in range(C):
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
                            _Level(
                                size=size,
                                block=block,
                                dataset=dataset,
                                filters=dataset_filters(dataset),
                                halve_next=halved_axes(size) if index + 1 < n_levels else None,
                                histogram=HistogramAccumulator(plan.dtype),
                            )
                        )
                    thumb.channel = c
                    stream = _Stream(levels, sink, plan.dtype, thumb if t == 0 else None)
                    if client is not None:
                        _distributed_level0(client, data, t, c, stream, 2 * worker_threads(client), label)
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
            write_thumbnail(f, thumb.rgba(plan.channel_colors, ranges))
            if plan.source.ims is not None:
                _keep_beside(plan, f, label)
    finally:
        sink.close()
        if bar is not None:
            bar.close()
