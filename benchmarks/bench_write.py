"""Write speed and memory of `write_ims`, against a plain h5py write measured in the same run.

Prints:

* (a) a plain single-threaded h5py write of level 0 only (shuffle + gzip level 2, the same
  chunk shape `write_ims` picks), the baseline a user would script;
* (b) `write_ims` writing the full file: every pyramid level, histograms, thumbnail;
* the ratio (a) / (b) (target: >= 2x);
* the cost of each stage measured alone over the same volume (downsampling, histograms,
  shuffle + deflate of every block on one thread);
* the peak resident memory of `write_ims` from a lazy dask source of 2 GiB in chunks of 256
  planes (1 GiB each), in a child process (target: within 1 GiB for a 4 GiB source; the ratio
  to the source size is printed).

Usage::

    python benchmarks/bench_write.py            # the 128x1024x1024 uint16 volume
    python benchmarks/bench_write.py --quick    # 32x512x512, a smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from ims_store import write_ims
from ims_store.format.codecs import encode_chunk
from ims_store.format.layout import Filter
from ims_store.format.pyramid import block_shapes, downsample, halved_axes, level_sizes
from ims_store.write.synthetic import microscopy_volume
from ims_store.write.writer import HistogramAccumulator


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def plain_h5py(volume: np.ndarray, path: Path, chunks: tuple[int, int, int]) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("Data", data=volume, chunks=chunks, compression="gzip", compression_opts=2, shuffle=True)


def stage_times(volume: np.ndarray, chunks: tuple[int, int, int]) -> dict[str, float]:
    sizes = level_sizes(volume.shape, volume.itemsize)
    out: dict[str, float] = {}

    def pyramid() -> None:
        level = volume
        for i in range(1, len(sizes)):
            level = downsample(level, halved_axes(sizes[i - 1]))

    def histograms() -> None:
        with ThreadPoolExecutor(1) as pool:
            hist = HistogramAccumulator(volume.dtype)
            for z in range(0, volume.shape[0], chunks[0]):
                hist.add(volume[z : z + chunks[0]], pool)
            hist.tables()

    filters = (Filter(2, "shuffle", 1, (volume.itemsize,)), Filter(1, "deflate", 1, (2,)))
    blocks = [
        np.ascontiguousarray(volume[z : z + chunks[0], y : y + chunks[1], x : x + chunks[2]])
        for z in range(0, volume.shape[0], chunks[0])
        for y in range(0, volume.shape[1], chunks[1])
        for x in range(0, volume.shape[2], chunks[2])
    ]

    def encode() -> None:
        for block in blocks:
            encode_chunk(block, filters, volume.dtype)

    out["downsample all levels"] = best_of(1, pyramid)
    out["histograms, level 0"] = best_of(1, histograms)
    out["shuffle+deflate level 0, 1 thread"] = best_of(1, encode)
    return out


_CHILD = """
import sys, time
import dask.array as da, numpy as np
from ims_store import write_ims
from ims_store.write.synthetic import microscopy_volume
shape = tuple(int(v) for v in sys.argv[1].split("x"))
LOOK = dict(blobs=12, noise=0.005, peak=4000, background=100)
GROUP = 32

class Planes:
    # a lazy (1, 1, z, y, x) volume: any range of planes is made on request (from 32-plane groups,
    # each the same whatever the request), as a chunked file reads part of one of its chunks
    def __init__(self, shape):
        self.shape, self.dtype, self.ndim = (1, 1) + shape, np.dtype("uint16"), 5
    def __getitem__(self, key):
        z = range(*key[2].indices(self.shape[2]))
        if not len(z):
            return np.zeros((0,) * 5, self.dtype)
        g0, g1 = z.start // GROUP, (z.stop - 1) // GROUP + 1
        groups = [microscopy_volume((GROUP,) + self.shape[3:], "uint16", seed=g, **LOOK) for g in range(g0, g1)]
        planes = np.concatenate(groups)[z.start - GROUP * g0 : z.stop - GROUP * g0]
        return planes[None, None][key[:2] + (slice(None), key[3], key[4])]

# 256-plane source chunks (1 GiB each at 2048 x 1024): far larger than a slab, so a bounded
# writer must read them in parts
src = da.from_array(Planes(shape), chunks=(1, 1, 256, -1, -1))
start = time.perf_counter()
write_ims(src, sys.argv[2], axes="tczyx")
# VmHWM: this process's own peak resident memory (ru_maxrss would include what fork inherited)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(time.perf_counter() - start, peak * 1024)
"""


def memory_run(shape: tuple[int, int, int], folder: Path) -> tuple[float, int]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, "x".join(map(str, shape)), str(folder / "big.ims")],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, peak = result.stdout.split()
    return float(seconds), int(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small volume, for a smoke run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    shape = (32, 512, 512) if args.quick else (128, 1024, 1024)
    mem_shape = (64, 1024, 1024) if args.quick else (512, 2048, 1024)

    # a 12-bit camera's range: compresses about 2x with shuffle + deflate, like real data
    volume = microscopy_volume(shape, "uint16", seed=1, blobs=12, noise=0.005, peak=4000, background=100)
    chunks = block_shapes(level_sizes(shape, 2), 2)[0]
    mb = volume.nbytes / 1e6
    print(f"volume {shape} uint16 ({mb:.0f} MB), chunks {chunks}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        folder = Path(tmp)
        a = best_of(args.repeats, lambda: plain_h5py(volume, folder / "plain.h5", chunks))
        b = best_of(args.repeats, lambda: write_ims(volume, folder / "full.ims", axes="zyx", overwrite=True))
        ratio = (folder / "full.ims").stat().st_size / (folder / "plain.h5").stat().st_size
        print(f"(a) h5py, level 0 only, 1 thread : {a:7.2f} s  {mb / a:7.0f} MB/s")
        print(f"(b) write_ims, full file         : {b:7.2f} s  {mb / b:7.0f} MB/s  (file {ratio:.2f}x the size of (a))")
        print(f"    speed-up (a)/(b)             : {a / b:7.2f}x   (target >= 2x)")
        print("stages alone (1 thread):")
        for name, seconds in stage_times(volume, chunks).items():
            print(f"    {name:34s}: {seconds:7.2f} s  {mb / seconds:7.0f} MB/s")
        if not args.skip_memory:
            del volume  # the child's measurement is its own, but free the machine for it
            seconds, peak = memory_run(mem_shape, folder)
            source = int(np.prod(mem_shape)) * 2
            print(
                f"dask source {mem_shape} uint16 ({source / 2**30:.2f} GiB, 256-plane chunks): "
                f"written in {seconds:.1f} s, "
                f"peak RSS {peak / 2**20:.0f} MiB ({peak / source:.2f}x the source)"
            )


if __name__ == "__main__":
    main()
