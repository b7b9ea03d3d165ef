"""Histograms: per (level, time point, channel) counts, accumulated block row by block row.

uint8 / uint16 are counted exactly; uint32 / float32 in fine bins per part, merged at the end
into the 1024 and 256 bins Imaris stores (`HistogramAccumulator.tables`). The counting runs on
the writer's thread pool or on dask.distributed workers (`count_values`), by the same rule.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

PART_BINS = 4096
"""uint32 and float32 parts are counted in this many bins over their own range, 4x finer than
the 1024 bins they are merged into, so that merging moves a value by at most 1/8 of a bin."""


def histogram(counts: np.ndarray | None, lo: float, hi: float, nbins: int) -> tuple[np.ndarray, float, float]:
    """Resample exact integer counts (``counts[v]`` = voxels of value v) to ``nbins`` bins over lo..hi."""
    assert counts is not None
    edges = np.linspace(lo, hi + 1, nbins + 1)
    index = np.clip(np.searchsorted(edges, np.arange(counts.size), side="right") - 1, 0, nbins - 1)
    return np.bincount(index, weights=counts, minlength=nbins).astype(np.uint64), lo, hi


def _exact(dtype: np.dtype) -> bool:
    """uint8 and uint16 histograms count every value exactly."""
    return dtype.kind == "u" and dtype.itemsize <= 2


def _finite(plane: np.ndarray) -> np.ndarray:
    """The values of ``plane`` that are neither NaN nor infinite (the plane itself when all are)."""
    if plane.dtype.kind != "f":
        return plane
    keep = np.isfinite(plane)
    return plane if keep.all() else plane[keep]


def count_values(
    planes: np.ndarray, dtype: np.dtype, value_range: tuple[float, float] | None = None
) -> tuple[np.ndarray, float, float]:
    """Counts of a few planes (runs on the pool: bincount releases the GIL), with their finite
    min and max (inf and -inf when no value is finite).

    uint8 / uint16: exact counts of every value. uint32 / float32: `PART_BINS` bins over
    ``value_range``, or over the planes' own finite range.
    """
    if _exact(dtype):
        counts = np.zeros(256 if dtype.itemsize == 1 else 0, dtype=np.uint64)
        for plane in planes:  # plane by plane: bincount makes an int64 copy of its input
            part = np.bincount(plane.ravel(), minlength=counts.size)
            if part.size > counts.size:
                part[: counts.size] += counts.astype(part.dtype)
                counts = part.astype(np.uint64)
            else:
                counts[: part.size] += part.astype(np.uint64)
        return counts, float(planes.min()), float(planes.max())
    lo, hi = math.inf, -math.inf
    for plane in planes:  # plane by plane: the finite values are a copy
        values = _finite(plane)
        if values.size:
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    counts = np.zeros(PART_BINS, np.uint64)
    bins = value_range or (lo, hi)
    for plane in planes if lo <= hi else ():
        values = _finite(plane)
        if bins[1] > bins[0]:
            counts += np.histogram(values, bins=PART_BINS, range=bins)[0].astype(np.uint64)
        else:  # one value: numpy would widen the range by 0.5, which is nothing next to 1e38
            counts[0] += np.uint64(np.count_nonzero(values == bins[0]))
    return counts, lo, hi


def _rebin(parts: Sequence[tuple[np.ndarray, float, float]], lo: float, hi: float, nbins: int) -> np.ndarray:
    """Merge histograms (counts, their lo, their hi) into ``nbins`` bins over lo..hi: each bin
    goes whole to the bin that holds its centre."""
    out = np.zeros(nbins, np.uint64)
    scale = nbins / (hi - lo) if hi > lo else 0.0
    for counts, part_lo, part_hi in parts:
        centres = part_lo + (np.arange(counts.size) + 0.5) * ((part_hi - part_lo) / counts.size)
        index = np.clip(np.floor((centres - lo) * scale), 0, nbins - 1).astype(np.intp)
        np.add.at(out, index, counts)
    return out


@dataclass
class HistogramAccumulator:
    """Counts of one (level, time point, channel), accumulated part by part on the worker pool.

    uint8 and uint16 are counted exactly. Each uint32 / float32 part is counted in `PART_BINS`
    bins over its own finite range (over ``value_range`` when the data's range is known
    beforehand); `tables` merges the parts into 1024 bins over the finite range of them all, each
    part's bin going whole to the bin that holds its centre. NaN and infinities are not counted.
    """

    dtype: np.dtype
    value_range: tuple[float, float] | None = None
    """The range of the data when known beforehand: every part is counted over it."""
    parts: collections.deque[Future] = field(default_factory=collections.deque)
    counts: np.ndarray | None = None
    """Exact counts so far (uint8 / uint16)."""
    binned: list[tuple[np.ndarray, float, float]] = field(default_factory=list)
    """Parts counted so far (uint32 / float32): counts over (lo, hi)."""
    vmin: float = math.inf
    vmax: float = -math.inf

    def add(self, planes: np.ndarray, pool: ThreadPoolExecutor | None = None) -> None:
        """Count ``planes`` on ``pool`` (or right here without one)."""
        if not planes.size:
            return
        if pool is None:
            self.add_counted(count_values(planes, self.dtype, self.value_range))
        else:
            self.parts.append(pool.submit(count_values, planes, self.dtype, self.value_range))
            self._gather(done_only=True)  # fold what is ready: parts do not pile up over a long stack

    def add_counted(self, part: tuple[np.ndarray, float, float]) -> None:
        """Counts made elsewhere (a dask.distributed worker) by the same rule as `add`."""
        done: Future = Future()
        done.set_result(part)
        self.parts.append(done)

    def _gather(self, done_only: bool = False) -> None:
        # in order, so that uint32 / float32 parts merge the same way however they were computed
        while self.parts and (not done_only or self.parts[0].done()):
            counts, lo, hi = self.parts.popleft().result()
            if lo > hi:
                continue  # no finite value
            self.vmin, self.vmax = min(self.vmin, lo), max(self.vmax, hi)
            if not _exact(self.dtype):
                self.binned.append((counts, *(self.value_range or (lo, hi))))
                continue
            if self.counts is None or counts.size > self.counts.size:
                counts, self.counts = self.counts, counts
            if counts is not None:
                self.counts[: counts.size] += counts

    def display_range(self) -> tuple[float, float]:
        """The finite min and max of everything counted ((0, 1) when nothing was): a default
        ``ColorRange``."""
        self._gather()
        return (self.vmin, self.vmax) if self.vmin <= self.vmax else (0.0, 1.0)

    def tables(self) -> dict[str, tuple[np.ndarray, float, float]]:
        """``{"Histogram": (counts, min, max), "Histogram1024": ...}`` as Imaris stores them."""
        self._gather()
        counts = self.counts if self.counts is not None else np.zeros(1, np.uint64)
        if self.dtype == np.uint8:
            return {"Histogram": (np.pad(counts, (0, 256 - counts.size))[:256].astype(np.uint64), 0.0, 255.0)}
        if self.dtype == np.uint16:
            # values 0..max (at least 256) counted exactly, then resampled as ImarisWriter does
            top = max(int(self.vmax) if math.isfinite(self.vmax) else 0, 256)
            exact = np.pad(counts, (0, top + 1 - counts.size))[: top + 1]
            factor = -(-exact.size // 1024)
            coarse = np.add.reduceat(exact, np.arange(0, exact.size, factor)).astype(np.uint64)
            return {
                "Histogram1024": (coarse, 0.0, float(top)),
                "Histogram": histogram(exact, 0.0, float(top), 256),
            }
        if self.value_range is not None:
            lo, hi = self.value_range
        else:
            lo, hi = (self.vmin, self.vmax) if self.vmin <= self.vmax else (0.0, 0.0)
        fine = _rebin(self.binned, lo, hi, 1024)
        return {
            "Histogram1024": (fine, lo, hi),
            "Histogram": (fine.reshape(256, 4).sum(axis=1).astype(np.uint64), lo, hi),
        }
