"""Project-wide pytest setup: docstring examples run in a folder holding the documentation's
example files (`ims_store.write.examples.make_example_files`: ``cells.ims``, ``tracks.ims`` /
``surfaces.ims`` with analysis objects, ``tiles.ims``, a file of two images side by side) and
``megasurfaces.ims`` with Imaris 9 surfaces, built by tests/mega_surface_files.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ims_store.write.examples import EXAMPLE_FILES as PACKAGE_EXAMPLES

# megasurfaces.ims is built by a test helper (not, so far, by make_example_files)
EXAMPLE_FILES = (*PACKAGE_EXAMPLES, "megasurfaces.ims")


@pytest.fixture(scope="session")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``cells.ims``: 3 channels (DAPI, GFP, mCherry), 2 time points, 2 levels."""
    from ims_store.write.examples import make_example_files

    folder = tmp_path_factory.mktemp("examples")
    make_example_files(folder)
    sys.path.insert(0, str(Path(__file__).parent / "tests"))
    from mega_surface_files import mega_surfaces_file

    mega_surfaces_file(folder / "megasurfaces.ims")
    return folder


@pytest.fixture(autouse=True)
def _doctests_run_beside_cells_ims(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if isinstance(request.node, pytest.DoctestItem):
        folder = request.getfixturevalue("example_dir")
        work = request.getfixturevalue("tmp_path")
        from helpers import link_or_copy  # (tests/ is on the path once example_dir is made)

        for name in EXAMPLE_FILES:
            link_or_copy(folder / name, work / name)
        monkeypatch.chdir(work)
