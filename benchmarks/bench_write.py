"""Write speed and memory of `write_ims`, against baselines measured in the same run.

Two 128x1024x1024 uint16 volumes: a smooth one (blobs on a 12-bit camera's range, compresses
about 4x) and the same with Gaussian noise (sigma 12, compresses about 2x, like real data).
For each, prints:

* (a) a plain single-threaded h5py write of level 0 only (shuffle + gzip level 2, the same
  chunk shape `write_ims` picks), the baseline a user would script;
* (b) `write_ims` writing the full file: every pyramid level, histograms, thumbnail;
* (z) ZarrNii's ``ZarrNii.from_darr(...).to_imaris(...)`` with its defaults, where the
  ``interop`` extra is installed (in a child process, with its peak memory);
* the limit: shuffle + deflate of every level-0 block on all cores (ISA-L, as `write_ims`),
  nothing else; and the share of it (b) reaches;
* the ratios (a) / (b) (target: >= 3x) and (z) / (b) (target: >= 12x), and the peak resident
  memory of (b) writing the numpy array in a child process (the array itself included);
* the cost of each stage measured alone over the smooth volume (downsampling, histograms,
  shuffle + deflate of every block on one thread);
* the peak resident memory of `write_ims` from a lazy dask source of 2 GiB in chunks of 256
  planes (1 GiB each), in a child process (target: within 1 GiB for a 4 GiB source; the ratio
  to the source size is printed).

Usage::

    python benchmarks/bench_write.py            # the 128x1024x1024 uint16 volumes
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


_WRITE_CHILD = """
import sys, time
import numpy as np
volume = np.load(sys.argv[2])
if sys.argv[1] == "ims_store":
    from ims_store import write_ims
    def write(data, path):
        write_ims(data, path, axes="zyx", overwrite=True)
else:  # ZarrNii's own defaults (gzip 6, its chunks), from a dask array of the same volume
    import dask.array as da
    from zarrnii import ZarrNii
    def write(data, path):
        ZarrNii.from_darr(da.from_array(data[None]), axes_order="ZYX").to_imaris(path)
write(volume[:8, :64, :64].copy(), sys.argv[3] + ".warm.ims")  # imports and first-call costs, untimed
start = time.perf_counter()
write(volume, sys.argv[3])
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(time.perf_counter() - start, peak * 1024)
"""


def child_write(tool: str, volume_path: Path, out: Path) -> tuple[float, int]:
    """(seconds, peak RSS in bytes) of one write of the saved volume by ``tool`` in a fresh process
    (after a small write that pays the imports)."""
    out.unlink(missing_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", _WRITE_CHILD, tool, str(volume_path), str(out)], capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(f"{tool} failed:\n{result.stderr[-2000:]}")
    seconds, peak = result.stdout.split()[-2:]
    return float(seconds), int(peak)


def limit_encode(volume: np.ndarray, chunks: tuple[int, int, int], workers: int) -> float:
    """Shuffle + deflate of every level-0 block on ``workers`` threads, nothing else: the floor."""
    filters = (Filter(2, "shuffle", 1, (volume.itemsize,)), Filter(1, "deflate", 1, (2,)))
    cz, cy, cx = chunks
    blocks = [
        np.ascontiguousarray(volume[z : z + cz, y : y + cy, x : x + cx])
        for z in range(0, volume.shape[0], cz)
        for y in range(0, volume.shape[1], cy)
        for x in range(0, volume.shape[2], cx)
    ]

    def run() -> None:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda block: encode_chunk(block, filters, volume.dtype), blocks))

    return best_of(1, run)


def volumes(shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    # a 12-bit camera's range, smooth blobs; then the same with Gaussian noise (sigma 12): about 2x
    smooth = microscopy_volume(shape, "uint16", seed=1, blobs=12, noise=0.005, peak=4000, background=100)
    noise = np.random.default_rng(2).normal(0.0, 12.0, shape).astype(np.float32)
    noisy = np.clip(smooth + noise, 0, 65535).astype(np.uint16)
    return {"smooth": smooth, "noisy (sigma 12)": noisy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small volume, for a smoke run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-zarrnii", action="store_true")
    args = parser.parse_args()
    shape = (32, 512, 512) if args.quick else (128, 1024, 1024)
    mem_shape = (64, 1024, 1024) if args.quick else (512, 2048, 1024)
    chunks = block_shapes(level_sizes(shape, 2), 2)[0]
    cores = os.cpu_count() or 1
    try:
        import zarrnii  # noqa: F401
    except ImportError:
        zarrnii_here = False
    else:
        zarrnii_here = not args.skip_zarrnii
    print(f"volumes {shape} uint16, chunks {chunks}, {cores} cores")
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        folder = Path(tmp)
        for name, volume in volumes(shape).items():
            mb = volume.nbytes / 1e6
            a = best_of(args.repeats, lambda: plain_h5py(volume, folder / "plain.h5", chunks))  # noqa: B023
            b = best_of(args.repeats, lambda: write_ims(volume, folder / "full.ims", axes="zyx", overwrite=True))  # noqa: B023
            floor = limit_encode(volume, chunks, cores)
            ratio = (folder / "plain.h5").stat().st_size / volume.nbytes
            print(f"\n{name}: {mb:.0f} MB, compresses {1 / ratio:.2f}x")
            print(f"(a) h5py, level 0 only, 1 thread  : {a:7.2f} s  {mb / a:7.0f} MB/s")
            print(f"(b) write_ims, full file          : {b:7.2f} s  {mb / b:7.0f} MB/s")
            print(f"    limit: level 0 encode, {cores} thr : {floor:7.2f} s  ((b) reaches {floor / b:.0%} of it)")
            print(f"    speed-up (a)/(b)              : {a / b:7.2f}x   (target >= 3x)")
            np.save(folder / "volume.npy", volume)
            seconds, peak = child_write("ims_store", folder / "volume.npy", folder / "child.ims")
            print(f"    write_ims in a fresh process  : {seconds:7.2f} s, peak RSS {peak / 2**20:.0f} MiB")
            if zarrnii_here:
                z_seconds, z_peak = child_write("zarrnii", folder / "volume.npy", folder / "zarrnii.ims")
                print(
                    f"(z) ZarrNii to_imaris, defaults   : {z_seconds:7.2f} s, peak RSS {z_peak / 2**20:.0f} MiB; "
                    f"write_ims is {z_seconds / seconds:.1f}x faster (target >= 12x)"
                )
            (folder / "volume.npy").unlink()
        if not zarrnii_here:
            print("(z) ZarrNii not installed here (pip install -e '.[interop]'): not measured")
        smooth = volumes(shape)["smooth"]
        print("stages alone (1 thread), smooth volume:")
        for stage, seconds in stage_times(smooth, chunks).items():
            print(f"    {stage:34s}: {seconds:7.2f} s  {smooth.nbytes / 1e6 / seconds:7.0f} MB/s")
        if not args.skip_memory:
            del smooth  # the child's measurement is its own, but free the machine for it
            seconds, peak = memory_run(mem_shape, folder)
            source = int(np.prod(mem_shape)) * 2
            print(
                f"dask source {mem_shape} uint16 ({source / 2**30:.2f} GiB, 256-plane chunks): "
                f"written in {seconds:.1f} s, "
                f"peak RSS {peak / 2**20:.0f} MiB ({peak / source:.2f}x the source)"
            )


if __name__ == "__main__":
    main()
