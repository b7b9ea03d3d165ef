"""Files with results written back, read by a reader that shares no code with ims_store:
OpenReadout (``openreadout`` on PyPI, the interop extra), images and Spots tables.

Run with ``pytest -m interop`` (nox: ``nox -s interop``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import h5py_counts, h5py_level

from ims_store import write_ims

pytestmark = pytest.mark.interop

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
IMARIS95 = FIXTURES / "PyramidalCell_Imaris95.ims"


def _tables(path: Path) -> dict[str, int]:
    import openreadout

    return {t["name"]: t["index"] for t in openreadout.info(str(path))["tables"]}


def test_openreadout_reads_a_file_with_a_channel_and_spots_added(tmp_path: Path) -> None:
    import openreadout

    rng = np.random.default_rng(5)
    data = rng.integers(0, 3000, (2, 1, 12, 180, 140), dtype=np.uint16)
    src = write_ims(data, tmp_path / "raw.ims", axes="tczyx", compression_level=6)
    mask = (data[:, 0] > 2000).astype(np.uint8)
    spots = pd.DataFrame({"id": [3, 1, 2], "t": [1, 0, 0], "x": [1.5, 2.5, 3.5], "y": [4.0, 5.0, 6.0],
                          "z": [0.5, 1.5, 2.5], "radius": [0.75, 1.0, 1.25],
                          "track_id": pd.array([9, 9, None], dtype="Int64")})  # fmt: skip
    out = write_ims([src, mask], tmp_path / "results.ims", axes="tzyx", spots={"Detections": spots})
    with openreadout.File(str(out)) as f:
        image = f.read_image(0)
        assert image.shape == (2, 2, *data.shape[2:])
        np.testing.assert_array_equal(image[:, 0], data[:, 0])
        np.testing.assert_array_equal(image[:, 1], mask)
        for level in range(1, h5py_counts(out)[0]):
            small = f.read_image(0, level=level)
            for t in range(2):
                for c in range(2):
                    np.testing.assert_array_equal(small[t, c], h5py_level(out, level, t, c))
        tables = _tables(out)
        stored = spots.iloc[[1, 2, 0]]  # by time index, stably
        spot = f.read_table(tables["Detections: Spot"])
        np.testing.assert_array_equal(spot[:, 0], stored["id"])
        np.testing.assert_allclose(spot[:, 1:], stored[["x", "y", "z", "radius"]].to_numpy())
        edges = f.read_table(tables["Detections: TrackEdge0"])
        assert edges.tolist() == [[1.0, 3.0]]


def test_openreadout_sees_the_tables_imaris_writes(tmp_path: Path) -> None:
    from ims_store import read_spots

    out = write_ims(IMARIS95, tmp_path / "rewritten.ims", spots={"Mine": read_spots(IMARIS95)})
    theirs = {name.split(": ", 1)[1] for name in _tables(IMARIS95) if name.startswith("Spots 1: ")}
    mine = {name.split(": ", 1)[1] for name in _tables(out) if name.startswith("Mine: ")}
    assert mine == theirs
