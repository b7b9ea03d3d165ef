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
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import MissingDependencyError
from .geometry import voxel_centre_origin
from .outputs import atomic_output
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


def to_ome_zarr(
    source: str | os.PathLike[str] | ImsStore,
    path: str | os.PathLike[str],
    *,
    ngff_version: Literal["0.4", "0.5"] = "0.5",
    overwrite: bool = False,
    compressor: Literal["zstd", "zlib", "none"] = "zstd",
) -> Path:
    """Materialise an Imaris file as an OME-Zarr image (all levels, time points, channels).

    NGFF 0.5 writes zarr v3, NGFF 0.4 zarr v2. The metadata is the virtual store's, so scale,
    translation, channel names and colours are those `ImsStore` presents.
    """
    import dask.array as da
    import zarr

    fmt: Literal[2, 3] = 3 if ngff_version == "0.5" else 2
    store = _store(source, fmt)
    src_root = zarr.open_group(store, mode="r")
    codec: Any = None
    if compressor == "zstd":
        from zarr.codecs import ZstdCodec

        codec = ZstdCodec(level=3) if fmt == 3 else {"id": "zstd", "level": 3}
    elif compressor == "zlib":
        codec = {"name": "numcodecs.zlib", "configuration": {"level": 2}} if fmt == 3 else {"id": "zlib", "level": 2}
    with atomic_output(Path(path), overwrite) as tmp:
        root = zarr.open_group(str(tmp), mode="w-", zarr_format=fmt, attributes=dict(src_root.attrs))
        for level in store.layout.levels:
            name = str(level.index)
            src = src_root[name]
            kwargs: dict[str, Any] = {"compressors": codec} if codec is not None else {"compressors": None}
            if fmt == 3:
                kwargs["dimension_names"] = ("t", "c", "z", "y", "x")
            dst = root.create_array(name, shape=src.shape, chunks=src.chunks, dtype=src.dtype, fill_value=0, **kwargs)
            if fmt == 2:
                dst.attrs["_ARRAY_DIMENSIONS"] = ["t", "c", "z", "y", "x"]
            da.store(da.from_zarr(src), dst, lock=False)
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
