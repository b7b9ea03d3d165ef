"""Synthetic Imaris files covering what real files vary in, written once per test session.

Each variant names the feature it exercises. Files are written by `make_example_ims` (h5py
underneath) or edited with plain h5py for the cases no sane writer produces.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from ims_store.write.synthetic import make_example_ims


def _levels_of(path: Path) -> list[str]:
    with h5py.File(path, "r") as f:
        return sorted(f["DataSet"])


def rewrite_datasets(path: Path, level: int, **create: object) -> None:
    """Recreate every ``Data`` dataset of ``level`` with other storage options (same values)."""
    with h5py.File(path, "r+") as f:
        lv = f[f"DataSet/ResolutionLevel {level}"]
        for t in lv:
            for c in lv[t]:
                group = lv[t][c]
                values = group["Data"][...]
                del group["Data"]
                group.create_dataset("Data", data=values, **create)


def mask_first_chunk(path: Path) -> None:
    """Store chunk (0, 0, 0) of level 0 with its last filter (deflate) skipped, as HDF5 allows."""
    with h5py.File(path, "r+") as f:
        ds = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"]
        block = np.ascontiguousarray(ds[tuple(slice(0, c) for c in ds.chunks)])
        nfilters = ds.id.get_create_plist().get_nfilters()
        raw = block.tobytes()
        if nfilters == 2:  # shuffle is still applied; only deflate (the second filter) is skipped
            raw = block.view(np.uint8).reshape(-1, block.itemsize).T.tobytes()
        ds.id.write_direct_chunk((0, 0, 0), raw, filter_mask=1 << (nfilters - 1))


def _ramp(t: int, c: int, shape=(5, 40, 30), dtype=np.uint16) -> np.ndarray:
    base = np.arange(np.prod(shape), dtype=np.uint64).reshape(shape)
    return ((base * (c + 1) + 977 * t) % np.iinfo(dtype).max).astype(dtype)


def _variant_contiguous(p: Path) -> None:
    make_example_ims(p, shape=(6, 50, 70), dtype="uint16", channels=2, timepoints=1, levels=1, compression="none")
    rewrite_datasets(p, 0, chunks=None)


def _variant_fletcher(p: Path) -> None:
    make_example_ims(p, shape=(10, 64, 48), channels=1, timepoints=1, levels=1, chunks=(4, 32, 32))
    rewrite_datasets(p, 0, chunks=(4, 32, 32), compression="gzip", fletcher32=True)


def _variant_masked(p: Path) -> None:
    make_example_ims(p, shape=(8, 64, 64), channels=1, timepoints=1, levels=1, chunks=(4, 32, 32))
    mask_first_chunk(p)


def _variant_masked_noshuffle(p: Path) -> None:
    make_example_ims(p, shape=(8, 64, 64), dtype="uint8", channels=1, timepoints=1, levels=1, chunks=(4, 32, 32))
    mask_first_chunk(p)


def _variant_uint8_shuffle_only(p: Path) -> None:
    # shuffle undone on 1-byte values gives back its input: what was read must not be served
    # from a buffer the next read reuses (every chunk differs, so a reused one shows)
    make_example_ims(
        p, shape=(16, 96, 96), dtype="uint8", channels=2, timepoints=1, compression="none", chunks=(4, 32, 32)
    )
    for level in range(len(_levels_of(p))):
        with h5py.File(p, "r") as f:
            chunks = f[f"DataSet/ResolutionLevel {level}/TimePoint 0/Channel 0/Data"].chunks
        rewrite_datasets(p, level, chunks=chunks, shuffle=True)


VARIANTS: dict[str, Callable[[Path], object]] = {
    "uint8-gzip": lambda p: make_example_ims(p, shape=(20, 70, 90), dtype="uint8", channels=2, timepoints=1),
    "uint16-shuffle-gzip-3-levels": lambda p: make_example_ims(
        p, shape=(24, 160, 144), dtype="uint16", channels=2, timepoints=2, threshold_voxels=20_000, chunks=(8, 64, 64)
    ),
    "uint32-shuffle-lz4": lambda p: make_example_ims(
        p, shape=(9, 66, 40), dtype="uint32", channels=2, timepoints=2, compression="lz4", chunks=(4, 32, 32)
    ),
    "uint16-lz4-noshuffle": lambda p: make_example_ims(
        p, shape=(6, 30, 40), dtype="uint16", channels=1, timepoints=1, compression="lz4", shuffle=False
    ),
    "float32-padded-levels": lambda p: make_example_ims(
        p, shape=(33, 129, 257), dtype="float32", channels=1, timepoints=1, chunks=(32, 64, 64), threshold_voxels=30_000
    ),
    "non-isotropic-halving": lambda p: make_example_ims(
        p, shape=(5, 300, 200), dtype="uint16", channels=1, timepoints=1, threshold_voxels=10_000, chunks=(5, 64, 64)
    ),
    "12-timepoints-3-channels": lambda p: make_example_ims(
        p, data=np.stack([np.stack([_ramp(t, c) for c in range(3)]) for t in range(12)]), chunks=(2, 16, 16)
    ),
    "numbering-gaps": lambda p: make_example_ims(
        p, shape=(4, 24, 24), channels=2, timepoints=3, timepoint_numbers=[0, 2, 11], channel_numbers=[1, 10]
    ),
    "unallocated-chunks-softlink": lambda p: make_example_ims(
        p,
        data=lambda t, c: np.pad(np.full((4, 20, 20), 7 + t + c, np.uint8), ((0, 12), (0, 108), (0, 44))),
        shape=(16, 128, 64),
        dtype="uint8",
        channels=2,
        timepoints=2,
        chunks=(8, 32, 32),
        skip_zero_chunks=True,
        soft_link=True,
        levels=1,
    ),
    "uncompressed-unpadded": lambda p: make_example_ims(
        p,
        shape=(7, 45, 51),
        dtype="uint16",
        channels=1,
        timepoints=1,
        compression="none",
        shuffle=False,
        pad_to_chunks=False,
        chunks=(4, 32, 32),
        levels=1,
    ),
    "contiguous": _variant_contiguous,
    "fletcher32-unknown-filter": _variant_fletcher,
    "masked-chunk-shuffle": _variant_masked,
    "masked-chunk": _variant_masked_noshuffle,
    "uint8-shuffle-only": _variant_uint8_shuffle_only,
}
