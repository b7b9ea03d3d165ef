"""Remote read of a level over loopback HTTP with simulated latency: ImsStore against h5py.

The file is `bench_read.py`'s volume (128 chunks of about 1 MB, HDF5's zlib), served by a loopback
HTTP server (byte ranges) in its own process, which waits ``--latency`` seconds (default 0.02)
before answering each request, like an object store. Level 0 is read fully by

* (a) h5py through an fsspec file object (``h5py.File(fs.open(url))``), fsspec's default cache;
* (b) ``zarr.open_group(ImsStore(url))`` with zarr's defaults: metadata once through a block
  cache, then the chunks as byte ranges, fetched ahead of zarr's requests (the read-ahead);
* (c) the same with ``read_ahead=0``: each chunk fetched when zarr asks for it, with zarr's
  ``async.concurrency`` (10) chunks in flight;
* (d) ``read_ahead=0`` with ``async.concurrency`` 64.

Each is timed ``--repeat`` times (opening included, a new store each time) and the fastest run
counts, as `timeit` does: the machine's noise only ever adds time. Results are checked equal.
Printed: times, request counts, ratios to (a) (target >= 5x for (b)); then the round trips and
time to open `bench_read.py`'s file of 18,000 datasets (1,000 time points) and read a chunk of its
last time point.

Usage::

    python benchmarks/bench_remote.py [--quick] [--latency 0.02] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import fsspec
import h5py
import numpy as np
import zarr
from bench_read import best_of, many_datasets_file, volume_file

from ims_store import ImsStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from http_files import FileServer

DATA = "/DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"


def measured(repeat: int, server: FileServer, read: Callable[[], object]) -> tuple[float, int, object]:
    """(fastest time, requests of one run, result) of ``repeat`` runs of ``read``."""

    def counted() -> tuple[object, int]:
        server.reset()
        return read(), server.count()

    seconds, (result, requests) = best_of(repeat, counted)  # type: ignore[misc]
    return seconds, requests, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).parent / "_data")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    path = volume_file(args.data_dir, (32, 512, 512) if args.quick else (128, 1024, 1024))
    many = many_datasets_file(args.data_dir)
    # the server runs in its own process, as a remote one would: no GIL shared with the readers
    server = FileServer(path.parent, latency=args.latency, process=True)
    url = server.url(path.name)
    size = ImsStore(path).layout.levels[0].size

    def with_h5py() -> np.ndarray:
        fs, remote = fsspec.core.url_to_fs(url)
        with h5py.File(fs.open(remote, "rb"), "r") as f:
            return f[DATA][: size[0], : size[1], : size[2]]

    def with_store(read_ahead: int | None = None, concurrency: int | None = None) -> Callable[[], np.ndarray]:
        options = {} if read_ahead is None else {"read_ahead": read_ahead}
        settings = {} if concurrency is None else {"async.concurrency": concurrency}

        def read() -> np.ndarray:
            with zarr.config.set(settings):
                return zarr.open_group(ImsStore(url, **options), mode="r")["0"][0, 0]

        return read

    try:
        rows = [
            ("(a) h5py through an fsspec file", measured(args.repeat, server, with_h5py)),
            ("(b) ImsStore, defaults (read-ahead)", measured(args.repeat, server, with_store())),
            ("(c) ImsStore, read_ahead=0", measured(args.repeat, server, with_store(0))),
            ("(d) same, async.concurrency 64", measured(args.repeat, server, with_store(0, 64))),
        ]
        _, opened, _ = measured(1, server, lambda: ImsStore(url))
        many_time, many_requests, _ = measured(
            args.repeat, server, lambda: ImsStore(server.url(many.name)).get_sync("5/c/999/2/0/0/0")
        )
    finally:
        server.close()
    expected = rows[0][1][2]
    if not all(np.array_equal(expected, result) for _, (_, _, result) in rows):
        raise SystemExit("ImsStore's remote read differs from h5py's")
    print(f"{path.name} over loopback HTTP, {args.latency * 1000:.0f} ms per request; best of {args.repeat}")
    baseline = rows[0][1][0]
    for label, (seconds, requests, _) in rows:
        print(f"{label:38s}: {seconds:6.2f} s, {requests:4d} requests, {baseline / seconds:5.2f}x")
    print(f"opening the file: {opened} requests; target (a)/(b) >= 5x")
    print(
        f"open {many.name} (18,000 datasets) + a chunk of its last time point: "
        f"{many_time:.2f} s, {many_requests} requests"
    )


if __name__ == "__main__":
    main()
