"""The bioio plugin's reads against h5py and against a zarr read through the store.

On `bench_read.py`'s Imaris-shaped volume (128x1024x1024 uint16, shuffle + gzip 2 in
16x256x256 chunks, HDF5's own zlib), each in a fresh process (imports done before the clock
starts, opening the file included, as a notebook's first read pays it):

* a plane: h5py ``dataset[70]``; ``zarr.open_group(ImsStore(p))["0"][0, 0, 70]``;
  ``BioImage(p).get_image_data("YX", Z=70)``;
* a 128x256x256 sub-cube (y, x from 256): the same three;
* the whole volume: h5py ``dataset[:]``; the zarr read of level 0; ``BioImage(p).data``.

Each result is checked equal to h5py's. Printed: best and median of ``--repeats`` fresh
processes, and the ratios (targets: bioio >= 2x h5py on the plane and the sub-cube, and the
whole volume no slower than the zarr read through the store).

Usage::

    python benchmarks/bench_bioio.py [--quick] [--repeats 5]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_read import DATA, volume_file

READS = {  # (explicit bounds: bioio's selection checks refuse slices without them)
    "plane": (lambda shape: (min(70, shape[0] // 2), slice(0, shape[1]), slice(0, shape[2]))),
    "sub-cube": (
        lambda shape: (slice(0, shape[0]), slice(shape[1] // 4, shape[1] // 2), slice(shape[2] // 4, shape[2] // 2))
    ),
    "volume": (lambda shape: (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))),
}
READERS = ("h5py", "zarr via ImsStore", "bioio")


def _read(reader: str, path: Path, read: str, region: tuple) -> np.ndarray:
    if reader == "h5py":
        import h5py

        with h5py.File(path, "r") as f:
            return f[DATA][region]
    if reader == "zarr via ImsStore":
        import zarr

        from ims_store import ImsStore

        return zarr.open_group(ImsStore(path), mode="r")["0"][(0, 0, *region)]
    from bioio import BioImage

    img = BioImage(path)
    if read == "volume":
        return img.data[0, 0]
    if read == "plane":
        return img.get_image_data("YX", Z=region[0])
    z, y, x = region
    return img.get_image_data("ZYX", Z=z, Y=y, X=x)


def child(reader: str, read: str, path: Path, shape: tuple[int, int, int]) -> None:
    """One timed read in this (fresh) process; prints the seconds and a digest of the result."""
    import h5py  # noqa: F401  (imports before the clock: the first read's opening is what counts)
    import zarr  # noqa: F401
    from bioio import BioImage  # noqa: F401

    import ims_store  # noqa: F401
    from ims_store.fronts.bioio_plugin import reader

    region = READS[read](shape)
    start = time.perf_counter()
    data = _read(reader, path, read, region)
    took = time.perf_counter() - start
    print(took, hashlib.sha1(np.ascontiguousarray(data).tobytes()).hexdigest(), data.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 32x512x512 volume, for a smoke run")
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per read")
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).parent / "_data")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.path, tuple(args.shape))
        return
    shape = (32, 512, 512) if args.quick else (128, 1024, 1024)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    path = volume_file(args.data_dir, shape)
    print(f"{path.name}: {shape} uint16, shuffle + gzip 2, chunks (16, 256, 256); {args.repeats} fresh processes each")
    times: dict[tuple[str, str], list[float]] = {}
    for read in READS:
        digests = set()
        for _ in range(args.repeats):
            for reader in READERS:  # the readers take turns: the machine's load drifts
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        reader,
                        read,
                        "--path",
                        str(path),
                        "--shape",
                        *map(str, shape),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split(maxsplit=1)
                times.setdefault((read, reader), []).append(float(out[0]))
                digests.add(out[1])
        assert len(digests) == 1, f"{read}: the readers disagree: {digests}"
    print(f"{'read':10} {'reader':20} {'best ms':>8} {'median':>8} {'vs h5py':>8} {'vs zarr':>8}")
    for read in READS:
        h5, zr = min(times[(read, "h5py")]), min(times[(read, "zarr via ImsStore")])
        for reader in READERS:
            best, median = min(times[(read, reader)]), statistics.median(times[(read, reader)])
            print(f"{read:10} {reader:20} {best * 1e3:8.1f} {median * 1e3:8.1f} {h5 / best:7.2f}x {zr / best:7.2f}x")


if __name__ == "__main__":
    main()
