"""Project-wide pytest setup: docstring examples run in a folder holding a real ``cells.ims``
(and ``tracks.ims`` / ``surfaces.ims`` with analysis objects, and
``tiles.ims``, a file of two images side by side)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ims_store.write.examples import EXAMPLE_FILES


@pytest.fixture(scope="session")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``cells.ims``: 3 channels (DAPI, GFP, mCherry), 2 time points, 2 levels."""
    from ims_store.write.examples import make_example_files

    folder = tmp_path_factory.mktemp("examples")
    make_example_files(folder)
    return folder


@pytest.fixture(autouse=True)
def _doctests_run_beside_cells_ims(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if isinstance(request.node, pytest.DoctestItem):
        folder = request.getfixturevalue("example_dir")
        work = request.getfixturevalue("tmp_path")
        for name in EXAMPLE_FILES:
            (work / name).symlink_to(folder / name)
        monkeypatch.chdir(work)
