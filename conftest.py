"""Project-wide pytest setup: docstring examples run in a folder holding a real ``cells.ims``
(and ``tracks.ims`` / ``surfaces.ims`` with analysis objects, built by tests/object_files.py,
``megasurfaces.ims`` with Imaris 9 surfaces, by tests/mega_surface_files.py, and ``tiles.ims``, a
file of two images side by side)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE_FILES = ("cells.ims", "tracks.ims", "surfaces.ims", "megasurfaces.ims", "tiles.ims")


@pytest.fixture(scope="session")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``cells.ims``: 3 channels (DAPI, GFP, mCherry), 2 time points, 2 levels."""
    from ims_store.write.synthetic import make_example_ims

    folder = tmp_path_factory.mktemp("examples")
    make_example_ims(
        folder / "cells.ims",
        shape=(16, 128, 96),
        channels=3,
        timepoints=2,
        threshold_voxels=100_000,
        channel_names=["DAPI", "GFP", "mCherry"],
    )
    sys.path.insert(0, str(Path(__file__).parent / "tests"))
    from object_files import surfaces_file, tracks_file

    tracks_file(folder / "tracks.ims")
    surfaces_file(folder / "surfaces.ims")
    from mega_surface_files import mega_surfaces_file

    mega_surfaces_file(folder / "megasurfaces.ims")
    from ims_store import write_images

    # two 8 x 64 x 64 tiles, the second 90 um further along x (ExtMin x 0 and 90)
    tiles = [np.full((8, 64, 64), 100 * (k + 1), np.uint16) for k in range(2)]
    write_images(
        tiles, folder / "tiles.ims", axes="zyx", voxel_size=(1.0, 0.5, 0.5),
        positions=[(0.5, 0.25, 0.25), (0.5, 0.25, 90.25)],
    )  # fmt: skip
    return folder


@pytest.fixture(autouse=True)
def _doctests_run_beside_cells_ims(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if isinstance(request.node, pytest.DoctestItem):
        folder = request.getfixturevalue("example_dir")
        work = request.getfixturevalue("tmp_path")
        for name in EXAMPLE_FILES:
            (work / name).symlink_to(folder / name)
        monkeypatch.chdir(work)
