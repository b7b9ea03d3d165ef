"""Shared fixtures: the real Imaris files in ../shared/fixtures and small synthetic files.

Ground truth is always h5py's own read of a file (see `h5py_level`), never ims_store code.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
REAL_FILES = ["Minimal_IMS_File.ims", "PtK2Cell.ims", "PyramidalCell.ims"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"real Imaris files not available: {SHARED_FIXTURES} is missing (clone shared/ beside the project)")
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def real_files(shared_fixtures: Path, tmp_path_factory: pytest.TempPathFactory):
    """Copies of the real files (the originals are read-only and must stay untouched)."""
    before = {name: _digest(shared_fixtures / name) for name in REAL_FILES}
    target = tmp_path_factory.mktemp("real")
    copies = {}
    for name in REAL_FILES:
        copies[name] = target / name
        shutil.copyfile(shared_fixtures / name, copies[name])
    yield copies
    after = {name: _digest(shared_fixtures / name) for name in REAL_FILES}
    assert after == before, "a shared fixture file was modified"


@pytest.fixture(params=REAL_FILES)
def real_file(request: pytest.FixtureRequest, real_files: dict[str, Path]) -> Path:
    return real_files[request.param]


def h5py_level(path: Path, level: int, t: int, c: int) -> np.ndarray:
    """h5py's read of the true-size region of one (level, time point, channel), found by walking
    the file independently of ims_store (groups sorted by their number)."""

    def numbered(group: h5py.Group, prefix: str) -> list[str]:
        names = [n for n in group if n.startswith(prefix + " ") and n.split(" ")[-1].isdigit()]
        return sorted(names, key=lambda n: int(n.split(" ")[-1]))

    with h5py.File(path, "r") as f:
        root = f["DataSet"]
        lv = root[numbered(root, "ResolutionLevel")[level]]
        tp = lv[numbered(lv, "TimePoint")[t]]
        ch = tp[numbered(tp, "Channel")[c]]
        size = [int(float(b"".join(ch.attrs[f"ImageSize{a}"]).decode())) for a in "ZYX"]
        return ch["Data"][: size[0], : size[1], : size[2]]


def h5py_counts(path: Path) -> tuple[int, int, int]:
    """(levels, time points, channels) counted with h5py."""
    with h5py.File(path, "r") as f:
        root = f["DataSet"]
        levels = [n for n in root if n.startswith("ResolutionLevel ")]
        lv0 = root["ResolutionLevel 0"]
        times = [n for n in lv0 if n.startswith("TimePoint ")]
        chans = [n for n in lv0[times[0]] if n.startswith("Channel ")]
        return len(levels), len(times), len(chans)


@pytest.fixture(scope="session")
def synthetic_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from synthetic_files import VARIANTS

    root = tmp_path_factory.mktemp("synthetic")
    paths = {}
    for name, make in VARIANTS.items():
        paths[name] = root / f"{name}.ims"
        make(paths[name])
    return paths
