"""Results back into Imaris files: an ``.ims`` source's chunks copied as stored.

The source is an Imaris-shaped file `write_ims` made (the Imaris pyramid, shuffle + gzip 2) of
a noisy uint16 volume, 2 channels. Measured in one run, best of ``--repeats``:

* (a) a plain file copy of it (``shutil.copyfile``): the baseline;
* (b) rewriting it with ``write_ims(src, out)`` (one source, nothing added): its chunks are
  copied without decoding; target: (a) / (b) >= 0.25;
* (c) encoding one new mask channel alone, as the file stores it (uint16: one type for every
  channel), ``write_ims(mask, out)`` with the same geometry;
* (d) adding that channel: ``write_ims([src, mask], out)``; target: (d) little more than (a) + (c).

Each output is checked: the copied chunks byte-identical to the source's.

Usage::

    python benchmarks/bench_stored_copy.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
from bench_convert import best_of

from ims_store import read_layout, write_ims

DATA = Path(__file__).parent / "_data"


def source_file(shape: tuple[int, int, int]) -> Path:
    DATA.mkdir(exist_ok=True)
    path = DATA / f"stored_copy_{'x'.join(map(str, shape))}.ims"
    if not path.exists():
        rng = np.random.default_rng(0)
        z, y, x = shape
        smooth = np.add.outer(np.arange(y), np.arange(x)).astype(np.float32)
        data = np.empty((2, *shape), np.uint16)
        for c in range(2):
            for k in range(z):
                data[c, k] = np.clip(smooth + 300 * c + rng.normal(0, 12, (y, x)), 0, 65535)
        write_ims(data, path, axes="czyx", voxel_size=(1.0, 0.2, 0.2))
    return path


def check_copied(src: Path, out: Path) -> None:
    layout = read_layout(src)
    with h5py.File(src, "r") as a, h5py.File(out, "r") as b:
        for level in layout.levels:
            for c in range(len(layout.channels)):
                path = layout.data_path(level.index, 0, c)
                da, db = a[path], b[path]
                offsets = [da.id.get_chunk_info(i).chunk_offset for i in range(da.id.get_num_chunks())]
                assert all(da.id.read_direct_chunk(o) == db.id.read_direct_chunk(o) for o in offsets), path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small volume, for a smoke run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    shape = (16, 256, 256) if args.quick else (96, 1024, 1024)
    src = source_file(shape)
    layout = read_layout(src)
    mask = np.zeros(shape, np.uint8)
    mask[shape[0] // 4 : shape[0] // 2, 100:400, 200:600] = 1
    geometry = {"voxel_size": layout.levels[0].voxel_size, "origin": layout.origin}
    with tempfile.TemporaryDirectory(dir=DATA) as tmp:
        out = Path(tmp) / "out.ims"

        def clean() -> None:
            out.unlink(missing_ok=True)

        copy = best_of(args.repeats, lambda: shutil.copyfile(src, out), clean)
        rewrite = best_of(args.repeats, lambda: write_ims(src, out), clean)
        check_copied(src, out)
        encode = best_of(args.repeats, lambda: write_ims(mask.astype(np.uint16), out, **geometry), clean)
        added = best_of(args.repeats, lambda: write_ims([src, mask], out), clean)
        check_copied(src, out)
    size = src.stat().st_size / 2**20
    print(f"source: {shape} uint16 x 2 channels, {size:.0f} MiB on disk, {len(layout.levels)} levels")
    print(f"(a) shutil.copyfile                 {copy:.3f} s")
    print(f"(b) write_ims(src): rewrite         {rewrite:.3f} s   speed vs copy (a)/(b) = {copy / rewrite:.2f}x "
          "(target >= 0.25x)")  # fmt: skip
    print(f"(c) the mask encoded alone (uint16) {encode:.3f} s")
    print(f"(d) write_ims([src, mask])          {added:.3f} s   (d) / ((a) + (c)) = {added / (copy + encode):.2f}")


if __name__ == "__main__":
    main()
