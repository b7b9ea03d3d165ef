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

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .cluster import dask_client
from .codecs import CodecPlan
from .errors import MissingDependencyError, SelectionError
from .keys import ChunkKey, build_metadata, chunk_key
from .outputs import WriteError, atomic_output, progress_bar
from .sources import SourceImage, open_source, path_kind, source_layout
from .store import ImsStore
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
        raw = self.store._decoded_chunk(ck)
        return None if raw is None else bytes(memoryview(self.encode(raw)))


def to_ome_zarr(
    source: str | os.PathLike[str] | ImsStore,
    path: str | os.PathLike[str],
    *,
    ngff_version: Literal["0.4", "0.5"] = "0.5",
    codec: Codec = "auto",
    codec_level: int = 3,
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
    ``client`` (a ``dask.distributed.Client`` or a scheduler address) reads, encodes and writes
    the chunks on the cluster's workers instead, which must see the destination's file system.
    """
    if ngff_version not in ("0.4", "0.5"):
        raise ValueError(f"ngff_version must be '0.4' or '0.5', not {ngff_version!r}")
    if codec not in ("auto", "copy", "zstd", "zlib", "none"):
        raise ValueError(f"codec must be one of auto, copy, zstd, zlib, none, not {codec!r}")
    fmt: Literal[2, 3] = 3 if ngff_version == "0.5" else 2
    if codec == "auto":
        codec = "copy" if fmt == 2 else "zstd"
    encode = _encoder("zstd" if codec == "copy" else codec, codec_level, fmt)
    with dask_client(client) as cluster:
        if not _is_ims(source):
            return _generic_to_ome_zarr(
                open_source(source),
                Path(path),
                fmt,
                _target_plan("zstd" if codec == "copy" else codec, codec_level),
                encode,
                overwrite,
                progress,
                workers,
            )
        return _ims_to_ome_zarr(
            source, Path(path), fmt, codec, codec_level, encode, overwrite, progress, workers, cluster
        )


def _ims_to_ome_zarr(
    source: str | os.PathLike[str] | ImsStore,
    path: Path,
    fmt: Literal[2, 3],
    codec: str,
    codec_level: int,
    encode: Callable[[Any], Any],
    overwrite: bool,
    progress: bool,
    workers: int | None,
    client: Any,
) -> Path:
    store = ImsStore(source.path if isinstance(source, ImsStore) else source, zarr_format=fmt, chunk_mode="passthrough")
    layout = store.layout
    copy = [codec == "copy" and plan.passthrough for plan in store._plans]
    plans = [
        store._plans[i] if copy[i] else _target_plan("zstd" if codec == "copy" else codec, codec_level)
        for i in range(len(layout.levels))
    ]
    jobs = [
        ChunkKey(lvl.index, t, c, z, y, x)
        for lvl in layout.levels
        for t in range(len(layout.timepoints))
        for c in range(len(layout.channels))
        for z, y, x in np.ndindex(*lvl.chunk_grid)
    ]

    chunks = _ImsChunks(store, tuple(copy), encode, fmt)
    _write_zarr(path, build_metadata(layout, plans, fmt), jobs, chunks, fmt, overwrite, progress, workers, client)
    return path


def _is_ims(source: Any) -> bool:
    return isinstance(source, ImsStore) or (isinstance(source, (str, os.PathLike)) and path_kind(source) == "ims")


def _write_zarr(
    path: Path,
    metadata: dict[str, bytes],
    jobs: list[ChunkKey],
    chunk: Callable[[ChunkKey], bytes | None],
    fmt: Literal[2, 3],
    overwrite: bool,
    progress: bool,
    workers: int | None,
    client: Any = None,
) -> None:
    """Write metadata documents and the chunks ``chunk(key)`` returns (None: leave it absent)."""
    with atomic_output(path, overwrite) as tmp, _as_write_error(path):
        tmp.mkdir()
        for key, doc in metadata.items():
            (tmp / key).parent.mkdir(parents=True, exist_ok=True)
            (tmp / key).write_bytes(doc)
        bar = progress_bar(progress, len(jobs), f"writing {path.name}")
        try:
            if client is None:
                with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
                    done: Iterable[int] = pool.map(lambda ck: _write_chunks([ck], chunk, tmp, fmt), jobs)
            else:
                done = _on_cluster(client, jobs, chunk, tmp, fmt)
            for count in done:
                if bar is not None:
                    bar.update(count)
        finally:
            if bar is not None:
                bar.close()


def _write_chunks(keys: list[ChunkKey], chunk: Callable[[ChunkKey], bytes | None], root: Path, fmt: int) -> int:
    """Write the chunks of ``keys`` under ``root``; how many keys were done."""
    for ck in keys:
        payload = chunk(ck)
        if payload is not None:  # absent chunks read as the fill value, 0
            target = root / chunk_key(ck, fmt)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload)
    return len(keys)


def _on_cluster(
    client: Any, jobs: list[ChunkKey], chunk: Callable[[ChunkKey], bytes | None], root: Path, fmt: int
) -> Iterator[int]:
    """`_write_chunks` on a dask cluster, in batches of one level, time point and channel each
    (at most 256 chunks), so that every task reopens the file once for a good share of work."""
    batches: list[list[ChunkKey]] = []
    for ck in jobs:
        last = batches[-1] if batches else None
        if last and len(last) < 256 and (last[0].level, last[0].t, last[0].c) == (ck.level, ck.t, ck.c):
            last.append(ck)
        else:
            batches.append([ck])
    shared = client.scatter(chunk, broadcast=True)  # the store's handle, pickled once, not per task
    futures = client.map(_write_chunks, batches, chunk=shared, root=root, fmt=fmt, pure=False)
    for future in futures:  # in order (distributed's as_completed wants a default client)
        yield future.result()


@contextlib.contextmanager
def _as_write_error(path: Path) -> Iterator[None]:
    """Operating-system failures (a full disk, a lost mount) as a `WriteError` naming the output."""
    try:
        yield
    except OSError as err:
        raise WriteError(f"writing failed: {err.strerror or err}", path) from err


def _generic_to_ome_zarr(
    image: SourceImage,
    path: Path,
    fmt: Literal[2, 3],
    plan: CodecPlan,
    encode: Callable[[Any], Any],
    overwrite: bool,
    progress: bool,
    workers: int | None,
) -> Path:
    """One level, as the source holds it, with its geometry, names and colours."""
    data = image.data
    if data.dtype != storage_dtype(data.dtype) and data.dtype.kind not in "uif":
        data = data.astype(storage_dtype(data.dtype))
    size = data.shape[2:]
    chunks = tuple(min(s, c) for s, c in zip(size, (64, 256, 256), strict=True))
    layout = source_layout(replace(image, data=data), chunks)  # type: ignore[arg-type]
    grid = layout.levels[0].chunk_grid
    jobs = [
        ChunkKey(0, t, c, z, y, x)
        for t in range(data.shape[0])
        for c in range(data.shape[1])
        for z, y, x in np.ndindex(*grid)
    ]

    def chunk(ck: ChunkKey) -> bytes:
        region = tuple(slice(i * n, (i + 1) * n) for i, n in zip((ck.z, ck.y, ck.x), chunks, strict=True))
        block = np.zeros(chunks, dtype=data.dtype)
        values = np.asarray(data[(ck.t, ck.c, *region)])
        block[tuple(slice(0, s) for s in values.shape)] = values  # edge chunks are stored whole
        return bytes(memoryview(encode(block.tobytes())))

    _write_zarr(path, build_metadata(layout, [plan], fmt), jobs, chunk, fmt, overwrite, progress, workers)
    return path


def to_nifti(
    source: Any,
    path: str | os.PathLike[str],
    *,
    level: int = 0,
    timepoint: int | None = 0,
    channel: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write one level and channel (one or every time point) of an image as NIfTI.

    ``source`` is an ``.ims`` file or `ImsStore`, an OME-Zarr, an xarray DataArray from the
    ``ims`` backend (a crop keeps its true origin) or anything `write_ims` accepts. The affine
    carries the voxel size and the voxel-centre origin; lengths are written in the image's unit
    where NIfTI has it (micrometres for ``um``), with the unit in the header. ``timepoint=None``
    writes all time points as the fourth axis.
    """
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
    values = np.asarray(arr)
    # NIfTI arrays run (x, y, z[, t])
    values = np.transpose(values, (2, 1, 0)) if values.ndim == 3 else np.transpose(values, (3, 2, 1, 0))
    unit_name, factor = _NIFTI_UNITS.get(image.unit or "um", ("unknown", 1.0))
    voxel_zyx = image.voxel_size or (1.0, 1.0, 1.0)
    origin_zyx = image.origin or tuple(v / 2 for v in voxel_zyx)
    affine = np.diag([*(v * factor for v in voxel_zyx[::-1]), 1.0])
    affine[:3, 3] = [o * factor for o in origin_zyx[::-1]]
    nifti = nib.Nifti1Image(values, affine)
    nifti.header.set_xyzt_units(xyz=unit_name, t="sec")
    nifti.header.set_qform(affine, code=1)
    nifti.header.set_sform(affine, code=1)
    target = Path(path)
    with atomic_output(target, overwrite) as tmp, _as_write_error(target):
        # nibabel picks gzip from the name, so the temporary file keeps the destination's suffixes
        named = tmp.with_name(tmp.name + "".join(target.suffixes))
        nib.save(nifti, named)
        named.rename(tmp)
    return target
