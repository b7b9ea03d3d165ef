"""Shared fixtures: the real Imaris files (tests/data, $IMS_STORE_FIXTURES, ../shared/fixtures) and small
synthetic files.

Ground truth is always h5py's own read of a file (see `h5py_level`), never ims_store code.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from helpers import REAL_FILES
from hypothesis import settings

# the same examples on every run and machine: a red test is reproducible, a green one stays green
settings.register_profile("deterministic", derandomize=True, database=None)
settings.load_profile("deterministic")

# Each real file is looked up per file, in this order (tests/data/README.md: origins, licences, how to
# get the files not shipped): tests/data (the files whose licences let this repository carry them),
# the folder named by $IMS_STORE_FIXTURES, then ../shared/fixtures beside the project checkout.
SHIPPED = Path(__file__).resolve().parent / "data"
SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
FIXTURES_ENV = "IMS_STORE_FIXTURES"
NOT_SHIPPED = {
    "PyramidalCell.ims": "it is GPL-2.0 (aarpon/IceImarisConnector), so this BSD-3-Clause repository does not ship it",
    "PyramidalCell_Imaris95.ims": "it is GPL-2.0-only (pIceImarisConnector 0.4.3), so this BSD-3-Clause repository "
    "does not ship it",
}
NAMED_REAL_FILES = ["PyramidalCell_Imaris95.ims"]
"""Real files tests ask for by name only (``real_files[name]``), not run through every `real_file` test."""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _expected_digests() -> dict[str, str]:
    lines = (SHIPPED / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def _search_path() -> list[Path]:
    folders = [SHIPPED]
    if os.environ.get(FIXTURES_ENV):
        folders.append(Path(os.environ[FIXTURES_ENV]).expanduser())
    return [*folders, SHARED_FIXTURES]


@functools.cache
def find_real_file(name: str) -> Path | None:
    """The first copy of ``name`` on the search path, or None."""
    return next((folder / name for folder in _search_path() if (folder / name).is_file()), None)


def _unavailable(name: str) -> NoReturn:
    """Skips the running test for want of ``name`` or, where CI requires the files, fails it."""
    env = os.environ.get(FIXTURES_ENV)
    looked = f"tests/data, ${FIXTURES_ENV} ({env or 'not set'}), {SHARED_FIXTURES}"
    why = NOT_SHIPPED.get(name, "it ships in tests/data: is the checkout complete?")
    reason = f"real Imaris file {name} not found in {looked}: {why}; see tests/data/README.md to get it"
    if os.environ.get("IMS_STORE_REQUIRE_FIXTURES"):  # CI sets it: there, a missing file is a failure
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


class RealFiles(dict[str, Path]):
    """name -> the session's copy of each real file found; asking for one not found skips the test
    (fails it under IMS_STORE_REQUIRE_FIXTURES), so a test needing only shipped files always runs."""

    def __missing__(self, name: str) -> Path:
        if name in REAL_FILES or name in NAMED_REAL_FILES:
            _unavailable(name)
        raise KeyError(name)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that reaches a real file by name only (a URL into a served folder of copies) says so
    with ``@pytest.mark.real_file(name)``, as does one parametrized by a ``name`` among them:
    without that file, it skips (or fails, where CI requires the files) before its fixtures run."""
    needed = [name for mark in item.iter_markers("real_file") for name in mark.args]
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("name") in REAL_FILES:
        needed.append(callspec.params["name"])
    for name in needed:
        if find_real_file(name) is None:
            _unavailable(name)


@pytest.fixture(scope="session")
def real_files(tmp_path_factory: pytest.TempPathFactory):
    """Copies of the real files found (the originals are read-only and must stay untouched)."""
    found = {name: path for name in REAL_FILES + NAMED_REAL_FILES if (path := find_real_file(name)) is not None}
    before = {name: _digest(path) for name, path in found.items()}
    expected = _expected_digests()
    wrong = [f"{path} (sha256 {before[name]})" for name, path in found.items() if before[name] != expected[name]]
    assert not wrong, f"not the real files tests/data/SHA256SUMS names: {wrong}"
    target = tmp_path_factory.mktemp("real")
    copies = RealFiles()
    for name, path in found.items():
        copies[name] = target / name
        shutil.copyfile(path, copies[name])
    yield copies
    after = {name: _digest(path) for name, path in found.items()}
    assert after == before, "a real fixture file (tests/data, $IMS_STORE_FIXTURES or ../shared) was modified"
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
