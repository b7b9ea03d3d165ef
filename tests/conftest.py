"""Shared fixtures: the real Imaris files in ../shared/fixtures and small synthetic files.

Ground truth is always h5py's own read of a file (see `h5py_level`), never ims_store code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REAL_FILES
from hypothesis import settings

# the same examples on every run and machine: a red test is reproducible, a green one stays green
settings.register_profile("deterministic", derandomize=True, database=None)
settings.load_profile("deterministic")

SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        reason = f"real Imaris files not available: {SHARED_FIXTURES} is missing (clone shared/ beside the project)"
        if os.environ.get("IMS_STORE_REQUIRE_FIXTURES"):  # CI sets it: there, a missing folder is a failure
            pytest.fail(reason)
        pytest.skip(reason)
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
    # the copies are what every command reads: no command may have written into them either
    changed = [name for name, path in copies.items() if _digest(path) != before[name]]
    assert not changed, f"a command modified its source file: {changed}"


@pytest.fixture(params=REAL_FILES)
def real_file(request: pytest.FixtureRequest, real_files: dict[str, Path]) -> Path:
    return real_files[request.param]


@pytest.fixture(scope="session")
def synthetic_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    from synthetic_files import VARIANTS

    root = tmp_path_factory.mktemp("synthetic")
    paths = {}
    for name, make in VARIANTS.items():
        paths[name] = root / f"{name}.ims"
        make(paths[name])
    before = {name: _digest(path) for name, path in paths.items()}
    yield paths
    changed = [name for name, path in paths.items() if _digest(path) != before[name]]
    assert not changed, f"a command modified its source file: {changed}"
