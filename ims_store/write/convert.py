"""Conversions out of Imaris files: OME-Zarr (every level, time point and channel) and NIfTI.

Both write beside the destination and rename at the end (see `outputs.atomic_output`), so a
failed conversion leaves nothing behind.

>>> out = to_ome_zarr("cells.ims", "cells.ome.zarr")
>>> import zarr
>>> zarr.open_group(out, mode="r")["1"].shape
(2, 3, 8, 64, 48)
>>> to_nifti("cells.ims", "dapi.nii.gz", channel=0).name
'dapi.nii.gz'
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..access.outputs import atomic_output, check_output, check_stop, progress_bar
from ..errors import MissingDependencyError, SelectionError
from ..format.codecs import RAW, CodecPlan
from ..format.layout import ImsLayout
from ..store.keys import ChunkKey, build_metadata, chunk_key
from ..store.ngff import AXES
from ..store.zarr_store import ImsStore
from .cluster import dask_client
from .sources import SourceImage, named_files, open_source, path_kind, source_layout
from .writer import storage_dtype

__all__ = ["to_nifti", "to_ome_zarr"]

# Imaris unit symbol -> NIfTI spatial unit code name, with the factor into it
_NIFTI_UNITS = {
    "um": ("micron", 1.0),
    "nm": ("micron", 1e-3),
    "mm": ("mm", 1.0),
    "m": ("meter", 1.0),
    "cm": ("mm", 10.0),
}


Codec = Literal["auto", "copy", "zstd", "zlib", "none"]


def _target_plan(codec: str, level: int) -> CodecPlan:
    """Codecs declared for re-encoded chunks."""
    if codec == "zstd":
        return CodecPlan(
            True,
            {"id": "zstd", "level": level},
            None,
            [{"name": "zstd", "configuration": {"level": level, "checksum": False}}],
        )
    if codec == "zlib":  # zarr v3 has gzip, not zlib, as a core codec
        return CodecPlan(
            True, {"id": "zlib", "level": level}, None, [{"name": "gzip", "configuration": {"level": level}}]
        )
    return CodecPlan(True, None, None, [])


def _encoder(codec: str, level: int, zarr_format: int) -> Callable[[Any], Any]:
    if codec == "zstd":
        from numcodecs import Zstd

        return Zstd(level=level).encode
    if codec == "zlib":
        from numcodecs import GZip, Zlib

        return (Zlib(level) if zarr_format == 2 else GZip(level)).encode
    return _unchanged


def _unchanged(raw: Any) -> Any:
    return raw


@dataclass(frozen=True)
class _ImsChunks:
    """The bytes of each chunk of the OME-Zarr copy of an ``.ims`` (picklable: it runs on dask workers too)."""

    store: ImsStore
    copy: tuple[bool, ...]
    """per level: copy the stored compressed bytes (True) or decode and re-encode"""
    encode: Callable[[Any], Any]
    fmt: Literal[2, 3]

    def __call__(self, ck: ChunkKey) -> bytes | None:
        if self.copy[ck.level]:
            data = self.store.get_sync(chunk_key(ck, self.fmt))
            return None if data is None else data.to_bytes()
        raw = self.store.engine.decoded_chunk(ck)
        return None if raw is None else bytes(memoryview(self.encode(raw)))


_Writer = Callable[[list[ChunkKey], Path], int]
"""Writes the chunks (or shards) of some keys under a root folder; returns how many keys were done."""


@dataclass(frozen=True)
class _Output:
    """Where and how an OME-Zarr is written (the options of `to_ome_zarr`, checked)."""

    path: Path
    fmt: Literal[2, 3]
    codec: str
    """copy, zstd, zlib or none ("auto" resolved)"""
    codec_level: int
    overwrite: bool
    progress: bool
    workers: int | None
    chunks_per_shard: tuple[int, int, int] | None
    inputs: tuple[str, ...] = ()
    """the files and folders read (see `outputs.check_output`)"""

    @property
    def recode(self) -> str:
        """The codec of re-encoded chunks (copying falls back to zstd where it cannot copy)."""
        return "zstd" if self.codec == "copy" else self.codec

    def write(self, metadata: dict[str, bytes], jobs: list[ChunkKey], write: _Writer, client: Any = None) -> Path:
        _write_zarr(self, metadata, jobs, write, client)
        return self.path


def to_ome_zarr(
    source: str | os.PathLike[str] | ImsStore,
    path: str | os.PathLike[str],
    *,
    ngff_version: Literal["0.4", "0.5"] = "0.5",
    codec: Codec = "auto",
    codec_level: int = 3,
    chunks_per_shard: Sequence[int] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    workers: int | None = None,
    client: Any = None,
) -> Path:
    """Materialise an Imaris file as an OME-Zarr image: every level, time point and channel.

    NGFF 0.5 writes zarr v3, NGFF 0.4 zarr v2; the metadata is what `ImsStore` presents.
    ``codec="copy"`` copies the stored compressed chunks without decoding them where zarr can
    declare their codecs (deflate, shuffle + deflate; other levels are re-encoded with zstd);
    ``"zstd"``, ``"zlib"`` (gzip framing on zarr v3) and ``"none"`` re-encode every chunk.
    ``"auto"`` copies for NGFF 0.4 (zarr v2's ``zlib`` is read everywhere) and writes zstd for
    NGFF 0.5 (the copied chunks would need numcodecs' codecs, which not every zarr v3 reader
    has). Chunks are read and encoded on ``workers`` threads; unwritten chunks stay absent.

    ``chunks_per_shard=(z, y, x)`` (NGFF 0.5 only) groups that many chunks of each level into
    one shard file (zarr v3's ``sharding_indexed`` codec): far fewer files for large images.
    ``client`` (a ``dask.distributed.Client`` or a scheduler address) reads, encodes and writes
    the chunks on the cluster's workers instead, which must see the destination's file system.

    >>> out = to_ome_zarr("cells.ims", "sharded.ome.zarr", chunks_per_shard=(1, 2, 2))
    >>> import zarr
    >>> zarr.open_array(out / "0", mode="r").shards
    (1, 1, 16, 128, 96)
    """
    if ngff_version not in ("0.4", "0.5"):
        raise ValueError(f"ngff_version must be '0.4' or '0.5', not {ngff_version!r}")
    if codec not in ("auto", "copy", "zstd", "zlib", "none"):
        raise ValueError(f"codec must be one of auto, copy, zstd, zlib, none, not {codec!r}")
    fmt: Literal[2, 3] = 3 if ngff_version == "0.5" else 2
    if codec == "auto":
        codec = "copy" if fmt == 2 else "zstd"
    shard = None
    if chunks_per_shard is not None:
        shard = tuple(int(k) for k in chunks_per_shard)
        if len(shard) != 3 or any(k < 1 for k in shard):
            raise ValueError(f"chunks_per_shard must be 3 positive counts (z, y, x), not {chunks_per_shard!r}")
        if fmt != 3:
            raise ValueError("sharding needs zarr v3: use ngff_version='0.5'")
        if codec == "copy":
            raise ValueError("sharded chunks are re-encoded: use codec 'zstd', 'zlib' or 'none' with sharding")
    inputs = named_files(source)
    target = check_output(path, overwrite, inputs)  # before connecting or reading anything
    out = _Output(target, fmt, codec, codec_level, overwrite, progress, workers, shard, inputs)  # type: ignore[arg-type]
    with dask_client(client) as cluster:
        if not _is_ims(source):
            image = open_source(source)
            return _generic_to_ome_zarr(image, replace(out, inputs=image.files))
        return _ims_to_ome_zarr(source, out, cluster)


def _ims_to_ome_zarr(source: str | os.PathLike[str] | ImsStore, out: _Output, client: Any) -> Path:
    image = source.image if isinstance(source, ImsStore) else None
    store = ImsStore(
        source.path if isinstance(source, ImsStore) else source,
        zarr_format=out.fmt,
        chunk_mode="passthrough",
        image=image,
    )
    if store.is_collection:
        from .collection import collection_to_ome_zarr

        def one(k: int, dst: Path) -> Path:
            return _ims_to_ome_zarr(store.image_store(k), replace(out, path=dst, overwrite=False), client)

        return collection_to_ome_zarr(store, out.path, one, out.overwrite, out.inputs)
    layout = store.layout
    if out.chunks_per_shard is not None:
        return _sharded_ims_to_ome_zarr(store, out, client)
    stored = store.engine.plans
    copy = [out.codec == "copy" and plan.passthrough for plan in stored]
    plans = [stored[i] if copy[i] else _target_plan(out.recode, out.codec_level) for i in range(len(layout.levels))]
    jobs = _grid_keys(layout, [lvl.chunk_grid for lvl in layout.levels])
    chunks = _ImsChunks(store, tuple(copy), _encoder(out.recode, out.codec_level, out.fmt), out.fmt)
    return out.write(build_metadata(layout, plans, out.fmt), jobs, _ChunkWriter(chunks, out.fmt), client)


def _sharded_ims_to_ome_zarr(store: ImsStore, out: _Output, client: Any) -> Path:
    """Every level with shards of ``out.chunks_per_shard`` chunks (fewer at the edges of small levels)."""
    import zarr
    from zarr.storage import MemoryStore

    layout = store.layout
    assert out.chunks_per_shard is not None
    shards = tuple(
        tuple(min(k, g) * n for k, g, n in zip(out.chunks_per_shard, lvl.chunk_grid, lvl.chunks, strict=True))
        for lvl in layout.levels
    )
    # zarr lays out the sharded arrays' metadata; the group's (with the OME-NGFF attributes) is ours
    documents: dict[str, Any] = {}
    compressors = {
        "zstd": zarr.codecs.ZstdCodec(level=out.codec_level),
        "zlib": zarr.codecs.GzipCodec(level=out.codec_level),
        "none": None,
    }[out.recode]
    for lvl, shard in zip(layout.levels, shards, strict=True):
        zarr.create_array(
            MemoryStore(documents),
            name=str(lvl.index),
            shape=layout.shape(lvl.index),
            dtype=lvl.dtype,
            chunks=(1, 1, *lvl.chunks),
            shards=(1, 1, *shard),
            compressors=compressors,
            fill_value=lvl.fill_value,
            dimension_names=AXES,
            zarr_format=3,
        )
    metadata = {key: doc.to_bytes() for key, doc in documents.items() if key.endswith("/zarr.json")}
    metadata["zarr.json"] = build_metadata(layout, [RAW] * len(layout.levels), 3)["zarr.json"]
    grids = [
        tuple(-(-s // n) for s, n in zip(lvl.size, shard, strict=True))
        for lvl, shard in zip(layout.levels, shards, strict=True)
    ]
    return out.write(metadata, _grid_keys(layout, grids), _ShardWriter(store, shards), client)


def _grid_keys(layout: ImsLayout, grids: Sequence[Sequence[int]]) -> list[ChunkKey]:
    """A key for every cell of each level's grid (of chunks, or of shards), time point and channel."""
    return [
        ChunkKey(level, t, c, z, y, x)
        for level, grid in enumerate(grids)
        for t in range(len(layout.timepoints))
        for c in range(len(layout.channels))
        for z, y, x in np.ndindex(*grid)
    ]


def _is_ims(source: Any) -> bool:
    return isinstance(source, ImsStore) or (isinstance(source, (str, os.PathLike)) and path_kind(source) == "ims")


@dataclass(frozen=True)
class _ChunkWriter:
    """Writes each chunk ``chunk(key)`` returns as its own file (None: leaves it absent)."""

    chunk: Callable[[ChunkKey], bytes | None]
    fmt: int

    def __call__(self, keys: list[ChunkKey], root: Path) -> int:
        for ck in keys:
            payload = self.chunk(ck)
            if payload is not None:  # absent chunks read as the fill value the metadata declares
                target = root / chunk_key(ck, self.fmt)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(payload)
        return len(keys)


@dataclass(frozen=True)
class _ShardWriter:
    """Writes whole shards through zarr (its sharding codec lays out the inner chunks and the index);
    a key's z, y, x count shards, not chunks."""

    store: ImsStore
    shards: tuple[tuple[int, int, int], ...]
    """per level: the shard shape in voxels (z, y, x)"""

    def __call__(self, keys: list[ChunkKey], root: Path) -> int:
        import zarr

        from ..store.zarr_store import LevelArray

        arrays: dict[int, Any] = {}
        for key in keys:
            if key.level not in arrays:
                arrays[key.level] = zarr.open_array(str(root / str(key.level)), mode="r+", zarr_format=3)
            region = tuple(
                slice(i * n, (i + 1) * n) for i, n in zip((key.z, key.y, key.x), self.shards[key.level], strict=True)
            )
            values = LevelArray(self.store, key.level)[(key.t, key.c, *region)]
            fill = np.full_like(values, self.store.layout.levels[key.level].fill_value)
            if not np.array_equal(values, fill, equal_nan=values.dtype.kind == "f"):  # else absent: reads as fill
                arrays[key.level][(key.t, key.c, *region)] = values
        return len(keys)


def _write_zarr(out: _Output, metadata: dict[str, bytes], jobs: list[ChunkKey], write: _Writer, client: Any) -> None:
    """Write the metadata documents, then run ``write`` over ``jobs`` (one each, or batches on a cluster)."""
    with atomic_output(out.path, out.overwrite, inputs=out.inputs) as tmp:
        tmp.mkdir()
        for key, doc in metadata.items():
            (tmp / key).parent.mkdir(parents=True, exist_ok=True)
            (tmp / key).write_bytes(doc)
        bar = progress_bar(out.progress, len(jobs), f"writing {out.path.name}")
        try:
            if client is None:
                _on_threads(jobs, write, tmp, out.workers or os.cpu_count() or 1, bar)
            else:
                for count in _on_cluster(client, jobs, write, tmp):
                    if bar is not None:
                        bar.update(count)
        finally:
            if bar is not None:
                bar.close()


class _Guard:
    """Lets jobs write only until `close`, which returns once none writes any more.

    The pool's own shutdown cannot promise that: an interruption that lands while `submit`
    starts a thread leaves that thread unknown to the pool, and it would go on writing into a
    temporary folder being removed."""

    def __init__(self, write: _Writer) -> None:
        self._write = write
        self._lock = threading.Condition()
        self._writing = 0
        self._closed = False

    def __call__(self, keys: list[ChunkKey], root: Path) -> int:
        with self._lock:
            if self._closed:
                return 0
            self._writing += 1
        try:
            return self._write(keys, root)
        finally:
            with self._lock:
                self._writing -= 1
                self._lock.notify_all()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            while self._writing:
                self._lock.wait(0.1)


def _on_threads(jobs: list[ChunkKey], write: _Writer, root: Path, workers: int, bar: Any) -> None:
    """``write`` of each job on ``workers`` threads, a few jobs queued per thread. The first
    failure, or an interruption (Ctrl-C), cancels the jobs not started and waits for those under
    way, which write into ``root``, before it propagates: the cleanup that follows then removes
    everything. The wait for results wakes up often, so that an interruption is noticed at
    once on every platform (Windows does not interrupt a blocked wait)."""
    queued = iter(jobs)
    running: set[Future[int]] = set()
    guard = _Guard(write)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="ims-store-convert")
    try:
        while True:
            while len(running) < 4 * workers and (ck := next(queued, None)) is not None:
                running.add(pool.submit(guard, [ck], root))
            if not running:
                return
            done, running = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            check_stop()
            for future in done:
                count = future.result()  # the first failure raises here
                if bar is not None:
                    bar.update(count)
    finally:
        guard.close()
        pool.shutdown(wait=True, cancel_futures=True)


def _on_cluster(client: Any, jobs: list[ChunkKey], write: _Writer, root: Path) -> Iterator[int]:
    """``write`` on a dask cluster, in batches of one level, time point and channel each (at most
    256 keys), so that every task has a good share of work."""
    batches: list[list[ChunkKey]] = []
    for ck in jobs:
        last = batches[-1] if batches else None
        if last and len(last) < 256 and (last[0].level, last[0].t, last[0].c) == (ck.level, ck.t, ck.c):
            last.append(ck)
        else:
            batches.append([ck])
    shared = client.scatter(write, broadcast=True)  # the store's handle, unpickled once per worker, not per task
    futures = client.map(_run_batch, batches, write=shared, root=root, pure=False)
    try:
        for future in futures:  # in order (distributed's as_completed wants a default client)
            check_stop()
            yield future.result()
    finally:  # a failure or an interruption: what has not run yet never will
        client.cancel(futures)


def _run_batch(keys: list[ChunkKey], write: _Writer, root: Path) -> int:
    return write(keys, root)


def _generic_to_ome_zarr(image: SourceImage, out: _Output) -> Path:
    """One level, as the source holds it, with its geometry, names and colours."""
    if out.chunks_per_shard is not None:
        raise ValueError("sharding applies to .ims sources; write other images unsharded")
    data = image.data
    _require_voxels(data.shape, "the selection", image.label)
    if data.dtype != storage_dtype(data.dtype) and data.dtype.kind not in "uif":
        data = data.astype(storage_dtype(data.dtype))
    size = data.shape[2:]
    chunks = tuple(min(s, c) for s, c in zip(size, (64, 256, 256), strict=True))
    layout = source_layout(replace(image, data=data), chunks)  # type: ignore[arg-type]
    jobs = _grid_keys(layout, [layout.levels[0].chunk_grid])

    encode = _encoder(out.recode, out.codec_level, out.fmt)

    def chunk(ck: ChunkKey) -> bytes:
        region = tuple(slice(i * n, (i + 1) * n) for i, n in zip((ck.z, ck.y, ck.x), chunks, strict=True))
        block = np.zeros(chunks, dtype=data.dtype)
        values = np.asarray(data[(ck.t, ck.c, *region)])
        block[tuple(slice(0, s) for s in values.shape)] = values  # edge chunks are stored whole
        return bytes(memoryview(encode(block.tobytes())))

    return out.write(
        build_metadata(layout, [_target_plan(out.recode, out.codec_level)], out.fmt), jobs, _ChunkWriter(chunk, out.fmt)
    )


def _read_with_bar(arr: Any, progress: bool, description: str) -> np.ndarray:
    """``np.asarray(arr)`` of a dask array, slab by slab of its first axis's chunks when a bar
    shows the chunks read (each slab still read by dask's threads)."""
    bar = progress_bar(progress, int(arr.npartitions), description)
    if bar is None:
        return np.asarray(arr)
    values = np.empty(arr.shape, arr.dtype)
    try:
        start = 0
        per_slab = arr.npartitions // len(arr.chunks[0])
        for depth in arr.chunks[0]:
            values[start : start + depth] = np.asarray(arr[start : start + depth])
            start += depth
            bar.update(per_slab)
    finally:
        bar.close()
    return values


def _require_voxels(shape: Sequence[int], selection: str, label: str) -> None:
    """An empty selection (a crop outside the image, a level or axis of length 0) is refused
    rather than written as an image of no voxels."""
    if any(int(n) == 0 for n in shape):
        raise SelectionError(
            f"{selection} holds no voxels (shape {tuple(int(n) for n in shape)}): is a crop outside the image?", label
        )


def to_nifti(
    source: Any,
    path: str | os.PathLike[str],
    *,
    level: int = 0,
    timepoint: int | None = 0,
    channel: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write one level and channel (one or every time point) of an image as NIfTI.

    ``source`` is an ``.ims`` file or `ImsStore`, an OME-Zarr, an xarray DataArray from the
    ``ims`` backend (a crop keeps its true origin) or anything `write_ims` accepts. The affine
    carries the voxel size and the voxel-centre origin; lengths are written in the image's unit
    where NIfTI has it (micrometres for ``um``), with the unit in the header. ``timepoint=None``
    writes all time points as the fourth axis. ``progress`` shows a bar over the chunks read.
    """
    target = check_output(path, overwrite, named_files(source))  # before reading the voxels
    try:
        import nibabel as nib
    except ImportError as err:  # pragma: no cover - nibabel is a core dependency
        raise MissingDependencyError("NIfTI needs nibabel: pip install nibabel", path) from err
    image = open_source(source, level=level)
    data = image.data
    label = image.label
    t_count, c_count = data.shape[:2]
    if not 0 <= channel < c_count:
        raise SelectionError(f"channel {channel} does not exist; the image has channels 0..{c_count - 1}", label)
    if timepoint is not None and not 0 <= timepoint < t_count:
        raise SelectionError(
            f"time point {timepoint} does not exist; the image has time points 0..{t_count - 1}", label
        )
    arr = data[:, channel] if timepoint is None else data[timepoint, channel]
    times = "every time point" if timepoint is None else f"time point {timepoint}"
    _require_voxels(arr.shape, f"level {level}, {times}, channel {channel}", label)
    values = _read_with_bar(arr, progress, f"reading {Path(path).name}")
    # NIfTI arrays run (x, y, z[, t])
    values = np.transpose(values, (2, 1, 0)) if values.ndim == 3 else np.transpose(values, (3, 2, 1, 0))
    unit_name, factor = _NIFTI_UNITS.get(image.unit or "um", ("unknown", 1.0))
    voxel_zyx = image.voxel_size or (1.0, 1.0, 1.0)
    origin_zyx = image.origin or tuple(v / 2 for v in voxel_zyx)
    affine = np.diag([*(v * factor for v in voxel_zyx[::-1]), 1.0])
    affine[:3, 3] = [o * factor for o in origin_zyx[::-1]]
    nifti = nib.Nifti1Image(values, affine)
    nifti.header.set_xyzt_units(xyz=unit_name, t="sec")
    if values.ndim == 4:  # the fourth zoom is the time step: the mean interval of the stamps, else 1 s
        stamps = image.time_stamps
        step = (stamps[-1] - stamps[0]).total_seconds() / (len(stamps) - 1) if stamps and len(stamps) > 1 else 0.0
        nifti.header.set_zooms((*nifti.header.get_zooms()[:3], step if step > 0 else 1.0))
    nifti.header.set_qform(affine, code=1)
    nifti.header.set_sform(affine, code=1)
    # nibabel picks gzip from the name: the temporary file ends as the destination does
    suffix = ".nii.gz" if target.name.lower().endswith(".gz") else ".nii"
    with atomic_output(target, overwrite, inputs=image.files, suffix=suffix) as tmp:
        nib.save(nifti, tmp)
    return target
