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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .codecs import CodecPlan
from .errors import MissingDependencyError
from .geometry import voxel_centre_origin
from .keys import ChunkKey, build_metadata, chunk_key
from .outputs import atomic_output, progress_bar
from .store import ImsStore

__all__ = ["to_nifti", "to_ome_zarr"]

# Imaris unit symbol -> NIfTI spatial unit code name, with the factor into it
_NIFTI_UNITS = {
    "um": ("micron", 1.0),
    "nm": ("micron", 1e-3),
    "mm": ("mm", 1.0),
    "m": ("meter", 1.0),
    "cm": ("mm", 10.0),
}


def _store(source: str | os.PathLike[str] | ImsStore, zarr_format: Literal[2, 3] = 3) -> ImsStore:
    if isinstance(source, ImsStore):
        if source.zarr_format == zarr_format and source.chunk_mode == "decoded":
            return source
        return ImsStore(source.path, zarr_format=zarr_format)
    return ImsStore(source, zarr_format=zarr_format)


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


def _encoder(codec: str, level: int, zarr_format: int) -> Any:
    if codec == "zstd":
        from numcodecs import Zstd

        return Zstd(level=level).encode
    if codec == "zlib":
        from numcodecs import GZip, Zlib

        return (Zlib(level) if zarr_format == 2 else GZip(level)).encode
    return lambda raw: raw


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
) -> Path:
    """Materialise an Imaris file as an OME-Zarr image: every level, time point and channel.

    NGFF 0.5 writes zarr v3, NGFF 0.4 zarr v2; the metadata is what `ImsStore` presents.
    ``codec="copy"`` copies the stored compressed chunks without decoding them where zarr can
    declare their codecs (deflate, shuffle + deflate; other levels are re-encoded with zstd);
    ``"zstd"``, ``"zlib"`` (gzip framing on zarr v3) and ``"none"`` re-encode every chunk.
    ``"auto"`` copies for NGFF 0.4 (zarr v2's ``zlib`` is read everywhere) and writes zstd for
    NGFF 0.5 (the copied chunks would need numcodecs' codecs, which not every zarr v3 reader
    has). Chunks are read and encoded on ``workers`` threads; unwritten chunks stay absent.
    """
    if ngff_version not in ("0.4", "0.5"):
        raise ValueError(f"ngff_version must be '0.4' or '0.5', not {ngff_version!r}")
    if codec not in ("auto", "copy", "zstd", "zlib", "none"):
        raise ValueError(f"codec must be one of auto, copy, zstd, zlib, none, not {codec!r}")
    fmt: Literal[2, 3] = 3 if ngff_version == "0.5" else 2
    src_path = source.path if isinstance(source, ImsStore) else source
    store = ImsStore(src_path, zarr_format=fmt, chunk_mode="passthrough")
    layout = store.layout
    if codec == "auto":
        codec = "copy" if fmt == 2 else "zstd"
    copy = [codec == "copy" and plan.passthrough for plan in store._plans]
    plans = [
        store._plans[i] if copy[i] else _target_plan("zstd" if codec == "copy" else codec, codec_level)
        for i in range(len(layout.levels))
    ]
    encode = _encoder("zstd" if codec == "copy" else codec, codec_level, fmt)
    jobs = [
        ChunkKey(lvl.index, t, c, z, y, x)
        for lvl in layout.levels
        for t in range(len(layout.timepoints))
        for c in range(len(layout.channels))
        for z, y, x in np.ndindex(*lvl.chunk_grid)
    ]

    def convert_one(ck: ChunkKey, root: Path) -> None:
        if copy[ck.level]:
            data = store.get_sync(chunk_key(ck, fmt))
            payload = None if data is None else data.to_bytes()
        else:
            raw = store._decoded_chunk(ck)
            payload = None if raw is None else bytes(memoryview(encode(raw)))
        if payload is not None:  # unwritten chunks stay absent: zarr reads them as zeros
            target = root / chunk_key(ck, fmt)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload)

    with atomic_output(Path(path), overwrite) as tmp:
        tmp.mkdir()
        for key, doc in build_metadata(layout, plans, fmt).items():
            (tmp / key).parent.mkdir(parents=True, exist_ok=True)
            (tmp / key).write_bytes(doc)
        bar = progress_bar(progress, len(jobs), f"writing {Path(path).name}")
        try:
            with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
                for _ in pool.map(lambda ck: convert_one(ck, tmp), jobs):
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    return Path(path)


def to_nifti(
    source: str | os.PathLike[str] | ImsStore,
    path: str | os.PathLike[str],
    *,
    level: int = 0,
    timepoint: int | None = 0,
    channel: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write one level and channel (one or every time point) of an Imaris file as NIfTI.

    The affine carries the voxel size and the voxel-centre origin; lengths are written in the
    file's unit where NIfTI has it (micrometres for ``um``), with the unit in the header.
    ``timepoint=None`` writes all time points as the fourth axis.
    """
    try:
        import nibabel as nib
    except ImportError as err:  # pragma: no cover - nibabel is a core dependency
        raise MissingDependencyError("NIfTI needs nibabel: pip install nibabel", path) from err
    store = _store(source)
    layout = store.layout
    lvl = layout.level(level)
    layout.channel(channel)
    arr = store.to_dask(level, channel=channel)  # (t, z, y, x)
    if timepoint is not None:
        layout.timepoint(timepoint)
        arr = arr[timepoint]
    data = np.asarray(arr.compute())
    # NIfTI arrays run (x, y, z[, t])
    data = np.transpose(data, (2, 1, 0)) if data.ndim == 3 else np.transpose(data, (3, 2, 1, 0))
    unit_name, factor = _NIFTI_UNITS.get(layout.unit, ("unknown", 1.0))
    voxel = [v * factor for v in lvl.voxel_size[::-1]]
    origin = [o * factor for o in voxel_centre_origin(layout.extent_min, lvl.voxel_size)[::-1]]
    affine = np.diag([*voxel, 1.0])
    affine[:3, 3] = origin
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units(xyz=unit_name, t="sec")
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    target = Path(path)
    with atomic_output(target, overwrite) as tmp:
        # nibabel picks gzip from the name, so the temporary file keeps the destination's suffixes
        named = tmp.with_name(tmp.name + "".join(target.suffixes))
        nib.save(image, named)
        named.rename(tmp)
    return target
