"""Analysis objects under hostile files: every reader on every object variant of the hardening
corpus (`corpus.OBJECT_VARIANTS`) does what `EXPECTED` says -- works, or raises
`MalformedObjectsError` naming the file and the group -- and tables whose shape claims rows the
file never stored are refused before anything is sized by them: a child process reading them
all stays under `PEAK_LIMIT` of resident memory (the unbounded readers asked for 5-30 GiB).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import NEVER_WRITTEN, OBJECT_VARIANTS, sound_file, with_objects
from object_readers import READERS, outcomes

PEAK_LIMIT = 300 * 2**20
W, M, S = "works", "MalformedObjectsError", "SelectionError"

# what each reader gives on the sound objects of each layout (Imaris 9+ meshes are not read;
# the old layout has no MegaSurfaces or Filaments groups)
SOUND8 = {name: W for name in READERS} | {"meshes": S}
SOUND_OLD = {name: W for name in READERS} | {
    "statistics-surfaces": S,
    "statistics-filaments": S,
    "summary": S,
}
ALL = frozenset(READERS)
# the readers of a spots object's tracks (napari and the export read them too)
TRACKS = frozenset({"spots", "tracks", "track_edges", "export", "napari"})
OLD = frozenset(name for name in OBJECT_VARIANTS if name.startswith("objects-old-"))

# which readers refuse each variant (listing reads every group's counts and the surfaces'
# summary, so damage there is refused by every reader)
FAILS: dict[str, frozenset[str]] = {
    **{name: ALL for name in NEVER_WRITTEN},
    # StatisticsType is read only with the values, TrackEdge0 only with the tracks
    "objects-statistics-type-rows-never-written": frozenset({"statistics-surfaces", "export"}),
    "objects-track-edge-rows-never-written": TRACKS,
    "objects-track-edge-self-loop": TRACKS,
    "objects-track-edges-cycle": TRACKS,
    "objects-old-edge-self-loop": TRACKS,
    "objects-main-track-table-empty": ALL,
    "objects-track-ranges-overlap": TRACKS,
    "objects-statistics-of-a-missing-spot": frozenset({"statistics-points", "export", "napari"}),
    "objects-statistics-of-a-missing-surface": frozenset({"statistics-surfaces", "export"}),
    "objects-surface-time-offset-disagrees": ALL,
    "objects-surface-info-row-missing": ALL,
    "objects-surface-id-twice": ALL,
    "objects-surface-triangles-negative": ALL,
}


def expected(variant: str) -> dict[str, str]:
    base = SOUND_OLD if variant in OLD else SOUND8
    return {name: M if name in FAILS[variant] else outcome for name, outcome in base.items()}


@pytest.fixture(scope="module")
def object_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("object-corpus")
    good = sound_file(root / "sound.ims")
    paths = {}
    for name, make in {
        **OBJECT_VARIANTS,
        "objects-sound-scene8": with_objects("Scene8"),
        "objects-sound-scene": with_objects("Scene"),
    }.items():
        paths[name] = root / f"{name}.ims"
        make(good, paths[name])
    return paths


def test_the_table_covers_every_object_variant() -> None:
    assert set(FAILS) == set(OBJECT_VARIANTS)
    assert all(name in OBJECT_VARIANTS for name in NEVER_WRITTEN)


def test_the_sound_objects_read(object_corpus: dict[str, Path]) -> None:
    assert outcomes(object_corpus["objects-sound-scene8"]) == SOUND8
    assert outcomes(object_corpus["objects-sound-scene"]) == SOUND_OLD


@pytest.mark.parametrize("variant", [v for v in OBJECT_VARIANTS if v not in NEVER_WRITTEN])
def test_damaged_objects_give_the_expected_outcome(object_corpus: dict[str, Path], variant: str) -> None:
    assert outcomes(object_corpus[variant]) == expected(variant)


def test_tables_claiming_rows_never_written_stay_bounded(object_corpus: dict[str, Path]) -> None:
    """One child process runs every reader on every such variant (each claims 1e8 to 2e9 rows
    in a file of 1.5 MB); its peak resident memory covers them all."""
    names = [*NEVER_WRITTEN, "objects-sound-scene8"]
    script = Path(__file__).with_name("object_readers.py")
    proc = subprocess.run(
        [sys.executable, str(script), *(str(object_corpus[n]) for n in names)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=script.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    *results, peak = proc.stdout.splitlines()
    for name, line in zip(names, results, strict=True):
        want = SOUND8 if name == "objects-sound-scene8" else expected(name)
        assert json.loads(line) == want, name
    assert int(peak) < PEAK_LIMIT, f"peak RSS {int(peak) / 2**20:.0f} MiB"
