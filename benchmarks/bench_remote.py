"""Remote read of a level over loopback HTTP with simulated latency: ImsStore against h5py.

The file is `bench_read.py`'s volume, served by a loopback HTTP server (byte ranges) that waits
``--latency`` seconds (default 0.02) before answering each request, like an object store. Level 0
is read fully by

* (a) h5py through an fsspec file object (``h5py.File(fs.open(url))``), fsspec's default cache;
* (b) ``zarr.open_group(ImsStore(url))`` — metadata once through a block cache, then every chunk
  as a byte range, concurrently, with zarr's default ``async.concurrency`` (10 chunks at once);
* (b2) the same with ``async.concurrency`` 64, as docs/store.md advises for remote files.

Both results are checked equal; printed: times, request counts, ratio (target >= 5x).

Usage::

    python benchmarks/bench_remote.py [--quick] [--latency 0.02]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import fsspec
import h5py
import numpy as np
import zarr
from bench_read import volume_file

from ims_store import ImsStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from http_files import FileServer

DATA = "/DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).parent / "_data")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    path = volume_file(args.data_dir, (32, 512, 512) if args.quick else (128, 1024, 1024))
    # the server runs in its own process, as a remote one would: no GIL shared with the readers
    server = FileServer(path.parent, latency=args.latency, process=True)
    url = server.url(path.name)
    try:
        size = ImsStore(path).layout.levels[0].size
        server.reset()
        start = time.perf_counter()
        fs, remote = fsspec.core.url_to_fs(url)
        with h5py.File(fs.open(remote, "rb"), "r") as f:
            a = f[DATA][: size[0], : size[1], : size[2]]
        h5_time, h5_requests = time.perf_counter() - start, server.count()

        server.reset()
        start = time.perf_counter()
        store = ImsStore(url)
        opened = server.count()
        b = zarr.open_group(store, mode="r")["0"][0, 0]
        store_time, store_requests = time.perf_counter() - start, server.count()

        server.reset()
        start = time.perf_counter()
        with zarr.config.set({"async.concurrency": 64}):
            c = zarr.open_group(ImsStore(url), mode="r")["0"][0, 0]
        tuned_time, tuned_requests = time.perf_counter() - start, server.count()
    finally:
        server.close()
    if not (np.array_equal(a, b) and np.array_equal(a, c)):
        raise SystemExit("ImsStore's remote read differs from h5py's")
    print(f"{path.name} over loopback HTTP, {args.latency * 1000:.0f} ms per request")
    print(f"(a) h5py through an fsspec file : {h5_time:7.2f} s, {h5_requests} requests")
    print(f"(b) ImsStore (ranges, concurrent): {store_time:7.2f} s, {store_requests} requests ({opened} to open)")
    print(f"(b2) same, async.concurrency 64 : {tuned_time:7.2f} s, {tuned_requests} requests")
    print(f"    ratio (a)/(b)               : {h5_time / store_time:7.2f}x   (target >= 5x)")
    print(f"    ratio (a)/(b2)              : {h5_time / tuned_time:7.2f}x")


if __name__ == "__main__":
    main()
