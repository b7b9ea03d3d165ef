"""Whether adding a channel to an ``.ims`` in place could be made safe: a kill at 20 points.

Not a benchmark: the probe behind the decision not to ship in-place writing (docs/results.md).
A child process opens a copy of an Imaris file for writing (h5py, mode "a") and adds one
channel the way an in-place ``add_channels`` would: the new ``Channel <C>`` groups and datasets
of every level (chunks copied from a file `write_ims` made), then ``DataSetInfo/Channel <C>``.
The parent kills it (``Popen.kill``: SIGKILL on POSIX) at 20 points spread over the time the
write takes, then checks, with h5py alone, that the file still opens and that its original
channels read back voxel-exact. Prints one line per point and the count of damaged files.

Usage::

    python benchmarks/probe_in_place.py [--points 20] [--libver earliest|latest]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from ims_store import write_ims

CHILD = r"""
import sys, time, h5py
target, extra, libver = sys.argv[1:4]
with h5py.File(extra, "r") as src, h5py.File(target, "a", libver=libver) as f:
    print("open", flush=True)
    start = time.perf_counter()
    info = f["DataSetInfo"]
    channels = len([k for k in f["DataSet/ResolutionLevel 0/TimePoint 0"] if k.startswith("Channel ")])
    for level in src["DataSet"]:
        for tp in src[f"DataSet/{level}"]:
            src.copy(src[f"DataSet/{level}/{tp}/Channel 0"], f[f"DataSet/{level}/{tp}"], name=f"Channel {channels}")
            f.flush()
    src.copy(src["DataSetInfo/Channel 0"], info, name=f"Channel {channels}")
    took = time.perf_counter() - start
print("done", took, flush=True)
"""


def originals(path: Path, channels: int) -> list[np.ndarray] | str:
    """Every original (level, channel) dataset as h5py reads it, or why the file cannot be read."""
    try:
        with h5py.File(path, "r") as f:
            out = []
            for level in sorted(f["DataSet"]):
                for tp in sorted(f[f"DataSet/{level}"]):
                    for c in range(channels):
                        out.append(f[f"DataSet/{level}/{tp}/Channel {c}/Data"][()])
            return out
    except Exception as err:  # what fails is the finding
        return f"{type(err).__name__}: {str(err)[:100]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--libver", choices=("earliest", "latest"), default="earliest")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        shape = (4, 2, 32, 512, 512)  # t c z y x: 4 time points, so that the write has many steps
        base = write_ims(rng.integers(0, 4000, shape, np.uint16), Path(tmp) / "base.ims", axes="tczyx")
        extra = write_ims(rng.integers(0, 4000, (4, 32, 512, 512), np.uint16), Path(tmp) / "extra.ims", axes="tzyx")
        truth = originals(base, 2)
        assert not isinstance(truth, str)
        target = Path(tmp) / "target.ims"
        shutil.copyfile(base, target)
        run = subprocess.run([sys.executable, "-c", CHILD, str(target), str(extra), args.libver], check=True,
                             capture_output=True, text=True)  # fmt: skip
        duration = float(run.stdout.split()[-1])  # from the file's opening to its closing
        print(f"one in-place add: {duration:.3f} s from opening to closing; killing at {args.points} points in it")
        damaged = 0
        for k in range(args.points):
            shutil.copyfile(base, target)
            delay = duration * (k + 0.5) / args.points
            child = subprocess.Popen([sys.executable, "-c", CHILD, str(target), str(extra), args.libver],
                                     stdout=subprocess.PIPE)  # fmt: skip
            assert child.stdout is not None and child.stdout.readline().strip() == b"open"
            time.sleep(delay)
            child.kill()
            finished = b"done" in child.communicate()[0]
            found = originals(target, 2)
            ok = not isinstance(found, str) and all(np.array_equal(a, b) for a, b in zip(found, truth, strict=True))
            damaged += not ok
            what = "intact" if ok else (found if isinstance(found, str) else "original voxels changed")
            print(f"  kill at {delay:5.2f} s ({'after' if finished else 'during'} the write): {what}")
        print(f"damaged: {damaged} of {args.points}")


if __name__ == "__main__":
    main()
