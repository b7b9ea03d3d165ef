"""Read speed of `ImsStore` against h5py and against the limit, measured in the same run.

The volume: 128x1024x1024 uint16 microscopy-like data (a 12-bit camera's range, smooth blobs
plus noise; compresses about 2x), in two files: shuffle + gzip level 2 in 16x256x256 chunks, as
Imaris writes; plain gzip 6 in 8x64x64 chunks (64 KiB), as ZarrNii's ``to_imaris`` writes.
Level 0 of each is read fully by

* (a) h5py ``dataset[:]``;
* (b) ``zarr.open_group(ImsStore(path))["0"][...]`` in the default ``decoded`` mode;
* (b2) the same in ``passthrough`` mode (zarr decodes with numcodecs' zlib);
* (b3) ``ImsStore.to_dask`` computed with dask's threaded scheduler (chunks decoded by the
  store, no zarr round trip);
* (b4) ``dask.array.from_zarr`` on the store's level array, threaded scheduler;
* (p), (p3) as (b) and (b3) with the portable read path forced (``IMS_STORE_PORTABLE_READS=1``:
  per-thread file handles, ``seek`` + ``readinto``, as on Windows, which has no ``os.pread``);
  target >= 2x h5py on the Imaris-shaped file, as the pread path;
* (c) the limit: every chunk read with ``os.pread``, inflated with ISA-L (and unshuffled) on
  one thread per core straight into one array, each thread taking an equal share of the chunks;
  (c2) the same inflating with libdeflate, which the store uses when the decoded size is known.

Each job runs in a fresh process, twice, the jobs taking turns for ``--repeats`` rounds (the
machine's load drifts); each result is checked equal to h5py's. Every job runs both in a plain
fresh process ("cold") and in one that first touched 1 GiB of memory ("warm"): these virtual
machines hand freed memory back to their host, and a process's first touch of it costs a host
page fault per page, which each job pays per byte it allocates (see `touch_memory`). Printed: the
best and median time, MB/s of voxels, the ratio of the best to h5py's best (targets: ImsStore
>= 2.5x on the Imaris-shaped file, >= 2x on the small-chunk one) and the share of the limit (the
faster of (c) and (c2)) each reaches. Then every level of the real Imaris files (those in
tests/data and ../shared/fixtures), opening included, against h5py, and the time to open a file
of 1,000 time points x 3 channels x 6 levels (18,000 datasets).

Usage::

    python benchmarks/bench_read.py            # full size; data cached in benchmarks/_data
    python benchmarks/bench_read.py --quick    # 32x512x512, a smoke run
    python benchmarks/bench_read.py --kind zarrnii   # only the small-chunk file
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import dask
import dask.array
import deflate
import h5py
import numpy as np
import zarr
from isal import isal_zlib

from ims_store import ImsStore, write_ims
from ims_store.access.files import PORTABLE_READS_VARIABLE, read_range
from ims_store.access.workers import DECODE_THREADS
from ims_store.format.attributes import write_text
from ims_store.format.codecs import unshuffle
from ims_store.write.synthetic import microscopy_volume
from ims_store.write.writer import write_dataset_info, write_root_attributes

DATA = "/DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


#: the files read: Imaris-shaped chunks (shuffle + gzip 2), and as ZarrNii's ``to_imaris`` writes
#: them (8x64x64 chunks of 64 KiB, plain gzip 6)
KINDS = {
    "imaris": {"chunks": (16, 256, 256), "shuffle": True, "level": 2},
    "zarrnii": {"chunks": (8, 64, 64), "shuffle": False, "level": 6},
}


def volume_file(folder: Path, shape: tuple[int, int, int], kind: str = "imaris") -> Path:
    """The benchmark volume as an Imaris file whose chunks HDF5's own deflate (zlib) compressed,
    as in files Imaris writes: `write_ims` compresses with ISA-L, whose streams inflate faster,
    which would flatter every reader that uses ISA-L or libdeflate against h5py."""
    spec = KINDS[kind]
    suffix = "" if kind == "imaris" else f"_{kind}"
    path = folder / f"read_{'x'.join(map(str, shape))}_zlib{suffix}.ims"
    if not path.exists():
        data = microscopy_volume(shape, "uint16", seed=1, blobs=12, noise=0.005, peak=4000, background=100)
        staging = path.with_suffix(".staging.ims")
        write_ims(data, staging, axes="zyx", chunks=spec["chunks"], compression="none", overwrite=True)
        with h5py.File(staging, "r+") as f:
            datasets: list[str] = []
            f["DataSet"].visititems(lambda name, obj: datasets.append(name) if name.endswith("/Data") else None)
            for name in datasets:
                old = f["DataSet"][name]
                values, chunks = old[()], old.chunks
                del f["DataSet"][name]
                f["DataSet"].create_dataset(
                    name,
                    data=values,
                    chunks=chunks,
                    compression="gzip",
                    compression_opts=spec["level"],
                    shuffle=spec["shuffle"],
                )
        h5py.File(staging, "r").close()
        os.replace(staging, path)
    return path


def limit_read(path: Path, inflater: str = "isal", workers: int = 2) -> np.ndarray:
    """Every chunk: pread, inflate (ISA-L or libdeflate), unshuffle, copy into place; each of
    ``workers`` threads takes an equal share of the chunks (no task per chunk)."""
    inflate = (lambda data, n: isal_zlib.decompress(data, bufsize=n)) if inflater == "isal" else deflate.zlib_decompress
    store = ImsStore(path)
    level = store.layout.levels[0]
    index = store.engine.index(0, 0, 0)  # the chunk index the store builds, reused for the limit
    out = np.empty(level.dataset_shape, dtype=level.dtype)
    cz, cy, cx = level.chunks
    fd = os.open(path, os.O_RDONLY)
    nbytes = cz * cy * cx * level.dtype.itemsize
    shuffled = any(f.id == h5py.h5z.FILTER_SHUFFLE for f in level.filters)
    every = list(np.ndindex(*index.offsets.shape))

    def share(positions: list[tuple[int, int, int]]) -> None:
        for pos in positions:
            offset, size, _ = index.locate(*pos)
            raw = inflate(read_range(fd, offset, size), nbytes)
            if shuffled:
                raw = unshuffle(raw, level.dtype.itemsize)
            z, y, x = pos
            out[z * cz : (z + 1) * cz, y * cy : (y + 1) * cy, x * cx : (x + 1) * cx] = np.frombuffer(
                raw, dtype=level.dtype
            ).reshape(level.chunks)

    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(share, [every[i::workers] for i in range(workers)]))
    finally:
        os.close(fd)
    z, y, x = level.size
    return out[:z, :y, :x]


def many_datasets_file(folder: Path, timepoints: int = 1000, channels: int = 3, levels: int = 6) -> Path:
    """An Imaris file with ``timepoints x channels x levels`` tiny datasets (structure only)."""
    path = folder / f"many_{timepoints}x{channels}x{levels}.ims"
    if path.exists():
        return path
    import datetime as dt

    tmp = path.with_suffix(".part")
    sizes = [(1, 64 >> i, 64 >> i) for i in range(levels)]
    with h5py.File(tmp, "w") as f:
        write_root_attributes(f)
        for level, size in enumerate(sizes):
            for t in range(timepoints):
                for c in range(channels):
                    group = f.create_group(f"DataSet/ResolutionLevel {level}/TimePoint {t}/Channel {c}")
                    for axis, value in zip("ZYX", size, strict=True):
                        write_text(group, f"ImageSize{axis}", str(value))
                    group.create_dataset("Data", shape=size, dtype=np.uint8, chunks=size)
        start = dt.datetime(2026, 1, 1)
        write_dataset_info(
            f,
            size=sizes[0],
            extent_min=(0.0, 0.0, 0.0),
            extent_max=(1.0, 64.0, 64.0),
            unit="um",
            channel_names=[f"ch{c}" for c in range(channels)],
            channel_colors=[(1.0, 1.0, 1.0)] * channels,
            channel_ranges=[(0.0, 255.0)] * channels,
            time_stamps=[start + dt.timedelta(seconds=t) for t in range(timepoints)],
            recording_date=start,
        )
    tmp.rename(path)
    return path


def jobs(path: Path, shape: tuple[int, int, int]) -> dict[str, Callable[[], np.ndarray]]:
    """Every way level 0 is read, by name (each returns the volume)."""

    def h5() -> np.ndarray:
        with h5py.File(path, "r") as f:
            return f[DATA][: shape[0], : shape[1], : shape[2]]

    def opened(mode: str = "decoded", portable: bool = False) -> ImsStore:
        """The store; ``portable``: reading through per-thread handles, as where there is no
        os.pread (Windows), whatever this OS has"""
        with mock.patch.dict(os.environ, {PORTABLE_READS_VARIABLE: "1" if portable else "0"}):
            store = ImsStore(path, chunk_mode=mode)
        assert store._source.portable is portable
        return store

    def store(mode: str, portable: bool = False) -> Callable[[], np.ndarray]:
        return lambda: zarr.open_group(opened(mode, portable), mode="r")["0"][0, 0]

    def with_dask(portable: bool = False) -> Callable[[], np.ndarray]:
        def compute() -> np.ndarray:
            with dask.config.set(scheduler="threads"):
                return opened(portable=portable).to_dask(0, timepoint=0, channel=0).compute()

        return compute

    def from_zarr() -> np.ndarray:
        with dask.config.set(scheduler="threads"):
            return dask.array.from_zarr(ImsStore(path).open_array(0))[0, 0].compute()

    workers = DECODE_THREADS
    return {
        "(a) h5py dataset[:]": h5,
        "(b) ImsStore decoded (default)": store("decoded"),
        "(b2) ImsStore passthrough": store("passthrough"),
        "(b3) ImsStore.to_dask, threads": with_dask(),
        "(b4) dask.array.from_zarr, threads": from_zarr,
        "(p) as (b), portable reads (no pread)": store("decoded", portable=True),
        "(p3) as (b3), portable reads (no pread)": with_dask(portable=True),
        f"(c) limit: pread+ISA-L inflate, {workers} thr": lambda: limit_read(path, workers=workers),
        f"(c2) same with libdeflate, {workers} thr": lambda: limit_read(path, "libdeflate", workers),
    }


def touch_memory(mib: int) -> float:
    """Fill ``mib`` MiB of fresh memory and free it; return the seconds it took.

    On a virtual machine whose guest hands freed memory back to its host (virtio-balloon free
    page reporting, as here), the first touch of memory the process has not used costs the host's
    page faults: measured here 0.15-0.5 s per 256 MiB, against 0.04 s for memory just freed. A job
    run right after this call finds memory the process has just freed, for all it allocates."""
    start = time.perf_counter()
    block = np.ones(mib << 20, dtype=np.uint8)
    del block
    return time.perf_counter() - start


def child(path: Path, shape: tuple[int, int, int], job: str, runs: int, warm_mib: int) -> None:
    """Run one job ``runs`` times in this (fresh) process, after touching ``warm_mib`` MiB of
    memory; print its times, that touch's time and a digest of what it read."""
    fn = jobs(path, shape)[job]
    touched = touch_memory(warm_mib) if warm_mib else None
    times, digest = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        digest = hashlib.blake2b(np.ascontiguousarray(result).data, digest_size=16).hexdigest()
        del result
    print(json.dumps({"times": times, "digest": digest, "touched": touched}))


#: memory each "warm" child touches before its runs: more than any job here allocates (a dask
#: compute holds its blocks and the concatenated result, twice the volume)
WARM_MIB = 1024


def bench_volume(path: Path, kind: str, shape: tuple[int, int, int], repeats: int) -> None:
    """Level 0 of one file read every way, each job in a fresh process, the jobs taking turns
    (``repeats`` rounds: the machine's load drifts); every result checked equal to h5py's.

    Each job runs both in a plain fresh process ("cold": its memory is new to it, as the issue
    measured) and in one that first touched `WARM_MIB` of memory ("warm", every job alike): on this
    virtual machine a fresh megabyte costs a host page fault per page, which a job pays per byte it
    allocates, whatever its own work (h5py's output; zarr's output; dask's blocks and result)."""
    spec = KINDS[kind]
    with h5py.File(path, "r") as f:
        ds = f[DATA]
        stored = sum(ds.id.get_chunk_info(i).size for i in range(ds.id.get_num_chunks()))
        raw = ds.size * ds.dtype.itemsize
    mb = np.prod(shape) * 2 / 1e6
    filters = ("shuffle + " if spec["shuffle"] else "") + f"gzip {spec['level']}"
    print(
        f"\n{path.name}: {shape} uint16, {filters}, chunks {spec['chunks']}, ratio {raw / stored:.2f}x, "
        f"{DECODE_THREADS} cores, best of {repeats} fresh processes x 2 runs, cold and warm"
    )
    names = list(jobs(path, shape))
    regimes = {"cold": 0, "warm": WARM_MIB}
    times: dict[str, dict[str, list[float]]] = {r: {name: [] for name in names} for r in regimes}
    touched: list[float] = []
    reference = None
    for _ in range(repeats):
        for name in names:
            for regime, warm_mib in regimes.items():
                command = [sys.executable, __file__, "--child", name, "--path", str(path), "--warm-mib", str(warm_mib)]
                found = subprocess.run(
                    [*command, "--shape", *map(str, shape)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                report = json.loads(found.stdout.strip().splitlines()[-1])
                if reference is None:
                    reference = report["digest"]
                elif report["digest"] != reference:
                    raise SystemExit(f"{name}: result differs from h5py's")
                times[regime][name] += report["times"]
                if report["touched"] is not None:
                    touched.append(report["touched"])
    best = {r: {name: min(t) for name, t in by_name.items()} for r, by_name in times.items()}
    print(f"{'':42s} {'cold':-^44s}  {'warm':-^26s}")
    print(
        f"{'method':42s} {'best s':>8s} {'median':>8s} {'MB/s':>8s} {'vs h5py':>8s} {'of limit':>9s}"
        f"  {'best s':>8s} {'vs h5py':>8s} {'of limit':>8s}"
    )
    for name in names:
        row = f"{name:42s}"
        for regime in regimes:
            seconds = best[regime][name]
            base = best[regime][names[0]]
            limit = min(best[regime][names[-2]], best[regime][names[-1]])
            if regime == "cold":
                median = statistics.median(times[regime][name])
                row += f" {seconds:8.3f} {median:8.3f} {mb / seconds:8.0f}"
                row += f" {base / seconds:7.2f}x {limit / seconds:8.0%}"
            else:
                row += f"  {seconds:8.3f} {base / seconds:7.2f}x {limit / seconds:8.0%}"
        print(row)
    print(
        f"first touch of {WARM_MIB} MiB in a fresh process (the warm runs' price): best {min(touched):.2f} s, "
        f"median {statistics.median(touched):.2f} s"
    )


def real_files() -> list[Path]:
    """Files Imaris itself wrote: those shipped in tests/data, then those in $IMS_STORE_FIXTURES
    and ../shared/fixtures beside the checkout (the first found of each name)."""
    root = Path(__file__).resolve().parent.parent
    folders = [root / "tests" / "data", root.parent / "shared" / "fixtures"]
    if os.environ.get("IMS_STORE_FIXTURES"):
        folders.insert(1, Path(os.environ["IMS_STORE_FIXTURES"]))
    found: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.ims")) if folder.is_dir() else []:
            found.setdefault(path.name, path)
    return list(found.values())


def bench_real(repeats: int) -> None:
    """Every level, time point and channel of each real Imaris file read whole, opening included,
    by h5py, through zarr and through `ImsStore.to_dask` (best of ``repeats`` in this process; the
    files are small, so this measures what a file costs before its voxels do)."""
    print(f"\nreal Imaris files: every level, time point and channel read whole, opening included, best of {repeats}")
    print(f"{'file':22s} {'MB':>6s} {'h5py ms':>8s} {'zarr ms':>8s} {'vs h5py':>8s} {'dask ms':>8s} {'vs h5py':>8s}")
    for path in real_files():
        layout = ImsStore(path).layout
        levels = [level.index for level in layout.levels]
        parts = [
            (layout.data_path(level.index, t.index, c.index), level.size)
            for level in layout.levels
            for t in layout.timepoints
            for c in layout.channels
        ]

        def h5(path: Path = path, parts: list = parts) -> list[np.ndarray]:
            with h5py.File(path, "r") as f:
                return [f[name][:z, :y, :x] for name, (z, y, x) in parts]

        def via_zarr(path: Path = path, levels: list[int] = levels) -> list[np.ndarray]:
            group = zarr.open_group(ImsStore(path), mode="r")
            return [group[str(level)][...] for level in levels]

        def via_dask(path: Path = path, levels: list[int] = levels) -> list[np.ndarray]:
            store = ImsStore(path)
            return list(dask.compute(*(store.to_dask(level) for level in levels), scheduler="threads"))

        h5_time, expected = best_of(repeats, h5)
        timed = {name: best_of(repeats, fn) for name, fn in {"zarr": via_zarr, "dask": via_dask}.items()}
        for name, (_, read) in timed.items():  # every (t, c) of every level equals h5py's read
            got = [volume for level in read for per_t in level for volume in per_t]
            if len(got) != len(expected) or not all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True)):
                raise SystemExit(f"{path.name}: {name} read differs from h5py's")
        mb = sum(a.nbytes for a in expected) / 1e6
        row = f"{path.name:22s} {mb:6.1f} {h5_time * 1000:8.1f}"
        for seconds, _ in timed.values():
            row += f" {seconds * 1000:8.1f} {h5_time / seconds:7.2f}x"
        print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 32x512x512 volume, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kind", choices=[*KINDS, "all"], default="all", help="which file(s) to read")
    parser.add_argument("--real-repeats", type=int, default=20, help="rounds for the real Imaris files")
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).parent / "_data")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one job, in a fresh process
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--warm-mib", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.path, tuple(args.shape), args.child, runs=2, warm_mib=args.warm_mib)
        return
    args.data_dir.mkdir(parents=True, exist_ok=True)
    shape = (32, 512, 512) if args.quick else (128, 1024, 1024)
    for kind in KINDS if args.kind == "all" else [args.kind]:
        bench_volume(volume_file(args.data_dir, shape, kind), kind, shape, args.repeats)

    bench_real(args.real_repeats)
    many = many_datasets_file(args.data_dir)
    open_time, _ = best_of(args.repeats, lambda: ImsStore(many))
    s = ImsStore(many)
    group_time, _ = best_of(args.repeats, lambda: zarr.open_group(s, mode="r"))
    first, _ = best_of(1, lambda: ImsStore(many).get_sync("5/c/999/2/0/0/0"))
    print(
        f"open {many.name} (18,000 datasets): ImsStore() {open_time * 1000:.0f} ms, "
        f"zarr.open_group {group_time * 1000:.0f} ms, open + first chunk of the last time point "
        f"{first * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
