"""Ground truth for the tests: h5py's own reads, found without ims_store code."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import numpy as np

REAL_FILES = ["Minimal_IMS_File.ims", "PtK2Cell.ims", "PyramidalCell.ims"]
# real files only the analysis-object tests read (the image tests parametrized by REAL_FILES do not)
OBJECT_FILES = ["PyramidalCell_Imaris95.ims"]


def h5py_level(path: Path, level: int, t: int, c: int) -> np.ndarray:
    """h5py's read of the true-size region of one (level, time point, channel), found by walking
    the file independently of ims_store (groups sorted by their number)."""
    with h5py.File(path, "r") as f:
        ch = _channel_group(f, level, t, c)
        size = [int(float(b"".join(ch.attrs[f"ImageSize{a}"]).decode())) for a in "ZYX"]
        return ch["Data"][: size[0], : size[1], : size[2]]


def h5py_region(path: Path, level: int, t: int, c: int, region: tuple[slice, ...]) -> np.ndarray:
    """h5py's read of ``region`` of one (level, time point, channel), by index (groups sorted by
    their number, canonical names only)."""
    with h5py.File(path, "r") as f:
        return _channel_group(f, level, t, c)["Data"][region]


def _channel_group(f: h5py.File, level: int, t: int, c: int) -> h5py.Group:
    def numbered(group: h5py.Group, prefix: str) -> list[str]:
        return sorted(_canonical(group, prefix), key=lambda n: int(n.split(" ")[-1]))

    root = f["DataSet"]
    lv = root[numbered(root, "ResolutionLevel")[level]]
    tp = lv[numbered(lv, "TimePoint")[t]]
    return tp[numbered(tp, "Channel")[c]]


def h5py_counts(path: Path) -> tuple[int, int, int]:
    """(levels, time points, channels) counted with h5py."""
    with h5py.File(path, "r") as f:
        root = f["DataSet"]
        levels = _canonical(root, "ResolutionLevel")
        lv0 = root["ResolutionLevel 0"]
        times = _canonical(lv0, "TimePoint")
        chans = _canonical(lv0[times[0]], "Channel")
        return len(levels), len(times), len(chans)


def _canonical(group: h5py.Group, prefix: str) -> list[str]:
    """The members named ``<prefix> N`` exactly (what Imaris opens: not ``Channel 01``)."""
    return [n for n in group if re.fullmatch(prefix + " (0|[1-9][0-9]*)", n)]


def assert_group_matches_h5py(group: object, path: Path) -> None:
    """Every level, time point and channel of a zarr group equals h5py's read of ``path``."""
    levels, times, chans = h5py_counts(path)
    assert sorted(group.array_keys(), key=int) == [str(i) for i in range(levels)]  # type: ignore[attr-defined]
    for level in range(levels):
        arr = group[str(level)]  # type: ignore[index]
        assert arr.shape[:2] == (times, chans)
        data = arr[...]
        for t in range(times):
            for c in range(chans):
                expected = h5py_level(path, level, t, c)
                assert data.shape[2:] == expected.shape
                assert data.dtype == expected.dtype.newbyteorder("<"), (data.dtype, expected.dtype)
                np.testing.assert_array_equal(data[t, c], expected, err_msg=f"level {level} t {t} c {c}")


def assert_same_ims_content(a: Path, b: Path) -> None:
    """Two HDF5 files hold the same things: the same groups, attributes, datasets and, for
    chunked datasets, the same chunks with the same stored (compressed) bytes and filter masks;
    where HDF5 put each in the file may differ."""

    def walk(fa: h5py.Group, fb: h5py.Group, path: str) -> None:
        assert sorted(fa.attrs) == sorted(fb.attrs), path
        for key in fa.attrs:
            assert np.array_equal(np.asarray(fa.attrs[key]), np.asarray(fb.attrs[key])), f"{path}@{key}"
        if isinstance(fa, h5py.Dataset):
            assert isinstance(fb, h5py.Dataset) and (fa.shape, fa.dtype, fa.chunks) == (fb.shape, fb.dtype, fb.chunks)
            if fa.chunks is None:
                assert np.array_equal(fa[()], fb[()]), path
                return
            chunks_a = {fa.id.get_chunk_info(i).chunk_offset for i in range(fa.id.get_num_chunks())}
            chunks_b = {fb.id.get_chunk_info(i).chunk_offset for i in range(fb.id.get_num_chunks())}
            assert chunks_a == chunks_b, path
            for offset in sorted(chunks_a):
                assert fa.id.read_direct_chunk(offset) == fb.id.read_direct_chunk(offset), (path, offset)
            return
        assert sorted(fa) == sorted(fb), path
        for name in fa:
            walk(fa[name], fb[name], f"{path}/{name}")

    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        walk(fa, fb, "")


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a symbolic link to ``source`` where this OS lets the user make one, else a
    copy (Windows allows symbolic links to administrators and in developer mode only)."""
    try:
        target.symlink_to(source)
    except OSError:
        shutil.copyfile(source, target)
