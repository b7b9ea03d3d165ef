"""Small, real Imaris files made from synthetic data: for the demo, tests and benchmarks.

`make_example_ims` writes every structure Imaris expects (char-array attributes, pyramid by
Imaris' rule, histograms, thumbnail) straight through h5py, holding the whole image in memory;
its knobs reproduce what real files vary in (dtype, chunking, padding, filters, soft links,
unallocated chunks, time point numbering). For large data, use the streaming writer instead.

>>> make_example_ims("example.ims", shape=(16, 64, 64), channels=2, timepoints=1).name
'example.ims'
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from ..format.attributes import write_text
from ..format.pyramid import downsample, halved_axes, level_sizes
from ..store.ngff import default_color
from .writer import (
    HistogramAccumulator,
    ThumbnailAccumulator,
    write_dataset_info,
    write_histograms,
    write_root_attributes,
    write_thumbnail,
)

__all__ = ["make_example_ims", "microscopy_volume"]

Compression = Literal["gzip", "lz4", "none"]


def microscopy_volume(
    shape: Sequence[int],
    dtype: np.dtype | str = "uint16",
    *,
    seed: int = 0,
    blobs: int = 24,
    noise: float = 0.04,
    peak: float | None = None,
    background: float = 0.0,
) -> np.ndarray:
    """A volume that looks (and compresses) like fluorescence microscopy: smooth blobs plus noise.

    Intensities run from ``background`` to ``background + peak`` (default peak: 90% of the
    integer range, or 1.0 for floats) with Gaussian noise of ``noise * peak``; a 12-bit camera
    (``peak=4000, background=100, noise=0.005``) compresses 2-3x with shuffle + deflate, like
    real data. Built plane by plane, so large volumes need no more than their own size.
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    z, y, x = (int(s) for s in shape)
    centres = rng.uniform(0, 1, size=(blobs, 3)) * np.array([z, y, x])
    sigmas = rng.uniform(0.04, 0.15, size=(blobs, 3)) * np.maximum(np.array([z, y, x]), 4)
    weights = rng.uniform(0.3, 1.0, size=blobs)
    gy = np.exp(-0.5 * ((np.arange(y)[None, :] - centres[:, 1:2]) / sigmas[:, 1:2]) ** 2).astype(np.float32)
    gx = np.exp(-0.5 * ((np.arange(x)[None, :] - centres[:, 2:3]) / sigmas[:, 2:3]) ** 2).astype(np.float32)
    gz = np.exp(-0.5 * ((np.arange(z)[None, :] - centres[:, 0:1]) / sigmas[:, 0:1]) ** 2).astype(np.float32)
    top = peak if peak is not None else float(np.iinfo(dtype).max) * 0.9 if dtype.kind in "ui" else 1.0
    ceiling = float(np.iinfo(dtype).max) if dtype.kind in "ui" else np.inf
    out = np.empty((z, y, x), dtype=dtype)
    for k in range(z):
        # sum of separable Gaussians for this plane: (blobs, y)^T @ (blobs, x) weighted by z profile
        plane = (gy * (weights * gz[:, k])[:, None]).T @ gx
        plane += rng.standard_normal(size=plane.shape, dtype=np.float32) * np.float32(noise)
        np.clip(plane, 0.0, 1.0, out=plane)
        plane *= np.float32(top)
        plane += np.float32(background)
        np.clip(plane, 0.0, ceiling, out=plane)
        out[k] = plane if dtype.kind == "f" else np.rint(plane)
    return out


def make_example_ims(
    path: str | os.PathLike[str],
    data: np.ndarray | Callable[[int, int], np.ndarray] | None = None,
    *,
    shape: Sequence[int] = (24, 96, 128),
    dtype: np.dtype | str = "uint16",
    channels: int = 3,
    timepoints: int = 2,
    channel_names: Sequence[str] | None = None,
    channel_colors: Sequence[tuple[float, float, float]] | None = None,
    voxel_size: Sequence[float] = (1.0, 0.25, 0.25),
    extent_min: Sequence[float] = (0.0, 0.0, 0.0),
    unit: str = "um",
    time_interval: float = 1.5,
    start_time: _dt.datetime = _dt.datetime(2026, 1, 2, 3, 4, 5),
    levels: int | None = None,
    threshold_voxels: int | None = None,
    chunks: Sequence[int] | Sequence[Sequence[int]] | None = None,
    compression: Compression = "gzip",
    compression_level: int = 2,
    shuffle: bool | None = None,
    pad_to_chunks: bool = True,
    skip_zero_chunks: bool = False,
    soft_link: bool = False,
    timepoint_numbers: Sequence[int] | None = None,
    channel_numbers: Sequence[int] | None = None,
    name: str = "ims_store example",
) -> Path:
    """Write a small, complete Imaris file and return its path.

    ``data`` is a (t, c, z, y, x) array or a function ``(t, c) -> (z, y, x) array``; by default
    each (t, c) gets its own `microscopy_volume`. Spatial tuples are (z, y, x). ``levels``
    limits the pyramid (default: Imaris' rule with ``threshold_voxels``); ``chunks`` is one
    chunk shape or one per level (default: the level's size capped at (16, 128, 128)).
    """
    path = Path(path)
    dtype = np.dtype(dtype)
    if isinstance(data, np.ndarray):
        timepoints, channels = data.shape[:2]
        shape = data.shape[2:]
        dtype = data.dtype
    shape = tuple(int(s) for s in shape)
    t_numbers = list(timepoint_numbers) if timepoint_numbers is not None else list(range(timepoints))
    c_numbers = list(channel_numbers) if channel_numbers is not None else list(range(channels))
    if len(t_numbers) != timepoints or len(c_numbers) != channels:
        raise ValueError("timepoint_numbers / channel_numbers must match the number of time points / channels")

    def volume(t: int, c: int) -> np.ndarray:
        if isinstance(data, np.ndarray):
            return data[t, c]
        if callable(data):
            return np.asarray(data(t, c), dtype=dtype)
        return microscopy_volume(shape, dtype, seed=t * 1000 + c)

    sizes = level_sizes(shape, dtype.itemsize, threshold_voxels)
    if levels is not None:
        sizes = sizes[:levels]
    if chunks is None:
        level_chunks = [tuple(min(s, cap) for s, cap in zip(size, (16, 128, 128), strict=True)) for size in sizes]
    elif isinstance(chunks[0], (int, np.integer)):
        level_chunks = [tuple(int(c) for c in chunks)] * len(sizes)  # type: ignore[union-attr]
    else:
        level_chunks = [tuple(int(c) for c in ch) for ch in chunks]  # type: ignore[union-attr]
    if shuffle is None:
        shuffle = dtype.kind in "ui" and dtype.itemsize in (2, 4)
    filter_args: dict = {}
    if compression == "gzip":
        filter_args = {"compression": "gzip", "compression_opts": compression_level}
    elif compression == "lz4":
        import hdf5plugin

        filter_args = dict(hdf5plugin.LZ4())
    elif compression != "none":
        raise ValueError(f"compression must be 'gzip', 'lz4' or 'none', not {compression!r}")
    if compression != "none" or shuffle:
        filter_args["shuffle"] = bool(shuffle)

    names = list(channel_names) if channel_names else [f"Channel {n}" for n in c_numbers]
    colors = list(channel_colors) if channel_colors else [default_color(i, channels) for i in range(channels)]
    ext_min = [float(v) for v in extent_min]
    ext_max = [lo + v * n for lo, v, n in zip(ext_min, voxel_size, shape, strict=True)]

    with h5py.File(path, "w") as f:
        write_root_attributes(f)
        root = f.create_group("Workflows/InitialImages/DataSet") if soft_link else f.create_group("DataSet")
        ranges: dict[int, tuple[float, float]] = {}
        thumb = ThumbnailAccumulator(level=0)
        for t_index, t_number in enumerate(t_numbers):
            for c_index, c_number in enumerate(c_numbers):
                current = volume(t_index, c_index)
                if current.shape != shape:
                    raise ValueError(
                        f"volume for (t={t_index}, c={c_index}) has shape {current.shape}, expected {shape}"
                    )
                if t_index == 0:
                    ranges[c_index] = (float(current.min()), float(current.max()))
                    thumb.channel = c_index
                    thumb.add(current)
                for level, chunk in enumerate(level_chunks):
                    if level:
                        current = downsample(current, halved_axes(sizes[level - 1]))
                    group = root.require_group(f"ResolutionLevel {level}/TimePoint {t_number}/Channel {c_number}")
                    _write_level(group, current, chunk, filter_args, pad_to_chunks, skip_zero_chunks)
        if soft_link:
            f["DataSet"] = h5py.SoftLink(root.name)
        write_dataset_info(
            f,
            size=shape,
            extent_min=ext_min,
            extent_max=ext_max,
            unit=unit,
            channel_names=names,
            channel_colors=colors,
            channel_ranges=[ranges[c] for c in range(channels)],
            time_stamps=[start_time + _dt.timedelta(seconds=time_interval * t) for t in range(timepoints)],
            recording_date=start_time,
            name=name,
            description="synthetic data made by ims_store",
            channel_numbers=c_numbers,
            timepoint_numbers=t_numbers,
        )
        write_thumbnail(f, thumb.rgba(colors, [ranges[c] for c in range(channels)]))
    return path


def _write_level(
    group: h5py.Group,
    data: np.ndarray,
    chunk: Sequence[int],
    filter_args: dict,
    pad: bool,
    skip_zero_chunks: bool,
) -> None:
    z, y, x = data.shape
    for key, value in (("ImageSizeX", x), ("ImageSizeY", y), ("ImageSizeZ", z)):
        write_text(group, key, str(value))
    chunk = tuple(min(c, s) if not pad else c for c, s in zip(chunk, data.shape, strict=True))
    stored = tuple(-(-s // c) * c for s, c in zip(data.shape, chunk, strict=True)) if pad else data.shape
    dataset = group.create_dataset("Data", shape=stored, dtype=data.dtype, chunks=chunk, fillvalue=0, **filter_args)
    grid = [range(0, s, c) for s, c in zip(stored, chunk, strict=True)]
    for z0 in grid[0]:
        for y0 in grid[1]:
            for x0 in grid[2]:
                block = np.zeros(chunk, dtype=data.dtype)
                part = data[z0 : z0 + chunk[0], y0 : y0 + chunk[1], x0 : x0 + chunk[2]]
                if part.size == 0 or (skip_zero_chunks and not part.any()):
                    continue  # never written: the chunk stays unallocated
                block[: part.shape[0], : part.shape[1], : part.shape[2]] = part
                end = [min(o + c, s) for o, c, s in zip((z0, y0, x0), chunk, stored, strict=True)]
                dataset[z0 : end[0], y0 : end[1], x0 : end[2]] = block[: end[0] - z0, : end[1] - y0, : end[2] - x0]
    histogram = HistogramAccumulator(data.dtype, (float(data.min()), float(data.max())))
    histogram.add(data)
    write_histograms(group, histogram)
