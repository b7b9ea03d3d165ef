""".ims -> OME-Zarr: `ims-store convert` against the do-it-yourself script, in the same run.

The file is `bench_read.py`'s 128x1024x1024 uint16 volume (shuffle + gzip 2, 16x256x256 chunks,
with the pyramid `write_ims` adds). Every resolution level is converted by

* (a) the do-it-yourself path: h5py reads each level whole, zarr writes it (``create_array``
  with the same chunks and zarr's default compressor);
* (b) ``ims-store convert`` to NGFF 0.5, re-encoding with zstd (the default);
* (c) ``ims-store convert --ngff 0.4``, which copies the stored chunks without decoding them;
* (d) (b) on a dask.distributed LocalCluster of ``--cluster N`` worker processes (default 2;
  0 skips it) through ``--scheduler``: on one machine this measures the cost of the cluster path,
  not a speed-up (the workers share the same cores).

Each output is checked equal to the source; the ratios (a) / (b) and (a) / (c) are printed
(target >= 2x).

Usage::

    python benchmarks/bench_convert.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import zarr
from bench_read import volume_file

from ims_store import ImsStore, read_layout
from ims_store.fronts.cli import main as cli


def best_of(repeats: int, fn: Callable[[], object], cleanup: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(repeats):
        cleanup()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def diy(src: Path, out: Path) -> None:
    """What a user would script: every level read whole with h5py, written with zarr."""
    layout = read_layout(src)
    root = zarr.open_group(str(out), mode="w")
    with h5py.File(src, "r") as f:
        for level in layout.levels:
            z, y, x = level.size
            data = f[layout.data_path(level.index, 0, 0)][:z, :y, :x]
            root.create_array(str(level.index), data=data[None, None], chunks=(1, 1, *level.chunks))


def check(src: Path, out: Path) -> None:
    layout = read_layout(src)
    root = zarr.open_group(str(out), mode="r")
    reference = zarr.open_group(ImsStore(src), mode="r")
    for level in layout.levels:
        if not np.array_equal(root[str(level.index)][...], reference[str(level.index)][...]):
            raise SystemExit(f"{out}: level {level.index} differs from the source")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cluster", type=int, default=2, help="worker processes for (d); 0 skips it")
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).parent / "_data")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    src = volume_file(args.data_dir, (32, 512, 512) if args.quick else (128, 1024, 1024))
    mb = sum(np.prod(level.size) * 2 for level in read_layout(src).levels) / 1e6
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(dir=args.data_dir))
        out = Path(tmp) / "out.zarr"

        def clean() -> None:
            shutil.rmtree(out, ignore_errors=True)

        runs = {
            "(a) h5py read + zarr write (DIY)": lambda: diy(src, out),
            "(b) ims-store convert (NGFF 0.5, zstd)": lambda: cli(["convert", str(src), str(out), "--quiet"]),
            "(c) ims-store convert --ngff 0.4 (copy)": lambda: cli(
                ["convert", str(src), str(out), "--ngff", "0.4", "--quiet"]
            ),
        }
        if args.cluster:
            from distributed import LocalCluster

            cluster = stack.enter_context(
                LocalCluster(n_workers=args.cluster, threads_per_worker=1, dashboard_address=None)
            )
            runs[f"(d) (b) on a LocalCluster of {args.cluster} processes"] = lambda: cli(
                ["convert", str(src), str(out), "--quiet", "--scheduler", cluster.scheduler_address]
            )
        times = {}
        for name, fn in runs.items():
            times[name] = best_of(args.repeats, fn, clean)
            check(src, out)
    base = times["(a) h5py read + zarr write (DIY)"]
    print(f"{src.name}: all levels, {mb:.0f} MB of voxels")
    for name, seconds in times.items():
        print(f"{name:42s} {seconds:7.2f} s {mb / seconds:7.0f} MB/s {base / seconds:6.2f}x")


if __name__ == "__main__":
    main()
