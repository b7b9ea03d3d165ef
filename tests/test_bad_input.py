"""Every command on every malformed variant does exactly what `EXPECTED` says: it works (a
lenient case, with correct pixels) or raises that `ims_store.errors` class, naming the file.
Never a crash, a bare KeyError/IndexError, an unexpected status, or silently wrong pixels.

The commands and their checks are `contract.RUN`'s, shared with the fuzz tests; ground truth
never comes from ims_store: pixels are h5py's reads, chunk positions, filter masks and stored
bytes come from h5py's chunk index, and image sizes are those the sound file was made with
(`TRUE_SIZES`), not what the code under test parsed.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from contract import (
    ALL,
    COMMANDS,
    NOT_SOUND,
    RUN,
    SOUND,
    WORKS,
    Case,
    Chunk,
    Outcome,
    TrueLevel,
    Where,
    assert_specific,
    chunk_region,
    stored_chunk,
)
from corpus import CORRUPT_CHUNK, LEVEL0, PAST_EOF_CHUNK, VARIANTS, sound_file
from hdf5_variants import VARIANTS as HDF5_VARIANTS

from ims_store import ImsStore
from ims_store.errors import (
    CorruptChunkError,
    ImsError,
    LinkTargetError,
    MalformedImsError,
    NotHDF5Error,
    NotImarisError,
    TruncatedFileError,
)
from ims_store.format.layout import ImsWarning
from ims_store.fronts.cli import main as cli

ALL_VARIANTS = {**VARIANTS, **HDF5_VARIANTS}

# the sound file's true size (z, y, x) per level: made as (20, 90, 70), each level halved (floor)
TRUE_SIZES = ((20, 90, 70), (10, 45, 35), (5, 22, 17))


def refused(error: type[ImsError]) -> dict[str, Outcome]:
    """The file cannot be opened as an Imaris image: every command raises ``error``; validate,
    deep or not, reports it as the one error."""
    return {
        "open": error,
        "info": error,
        "read": error,
        "validate": NOT_SOUND,
        "validate-deep": NOT_SOUND,
        "serve": error,
        "convert-zarr": error,
        "convert-ims": error,
        "bioio": error,
    }


def lenient(validate: str = NOT_SOUND) -> dict[str, Outcome]:
    """Every command works and every pixel is right; ``validate`` still says whether Imaris would
    object. Each use says why the case is lenient."""
    return {
        "open": WORKS,
        "info": WORKS,
        "read": WORKS,
        "validate": validate,
        "validate-deep": validate,
        "serve": WORKS,
        "convert-zarr": WORKS,
        "convert-ims": WORKS,
        "bioio": WORKS,
    }


def broken(error: type[ImsError], validate: str = NOT_SOUND) -> dict[str, Outcome]:
    """The file opens, but the datasets or chunks `BROKEN` lists raise ``error`` when read (every
    other chunk reads right), are served as 500, stop the conversions (which read every chunk of
    level 0, and to OME-Zarr every level) and fail ``validate --deep``."""
    return {
        "open": WORKS,
        "info": WORKS,
        "read": error,
        "validate": validate,
        "validate-deep": NOT_SOUND,
        "serve": error,
        "convert-zarr": error,
        "convert-ims": error,
        "bioio": error,
    }


EXPECTED: dict[str, dict[str, Outcome]] = {
    "sound": lenient(SOUND),  # the control: the file every variant is made from
    # HDF5 refuses to open a file shorter than the end-of-file address its superblock records
    "truncated-10pct": refused(TruncatedFileError),
    "truncated-50pct": refused(TruncatedFileError),
    "truncated-90pct": refused(TruncatedFileError),
    "truncated-99pct": refused(TruncatedFileError),
    "chunk-past-eof": refused(TruncatedFileError),
    # the chunk index points past the end of a file of the right size: HDF5 opens it. Lenient
    # for convert-ims: the broken chunk is in level 1, and write_ims builds its pyramid from level 0
    "chunk-index-past-eof": broken(TruncatedFileError) | {"convert-ims": WORKS},
    "zero-length": refused(NotHDF5Error),
    # serve takes a folder, but not one holding no .ims file (this one is empty)
    "directory": refused(NotHDF5Error) | {"serve": NotImarisError},
    "text-file": refused(NotHDF5Error),
    "hdf5-signature-then-garbage": refused(TruncatedFileError),  # "HDF5 cannot open the file; it is damaged"
    "hdf5-not-imaris": refused(NotImarisError),
    # the structure is intact, so only --deep, which decodes every chunk, finds the damage
    "corrupted-chunk": broken(CorruptChunkError, validate=SOUND),
    "missing-data-level0": refused(MalformedImsError),
    "missing-data-level1": refused(MalformedImsError),
    "missing-data-other-channel": broken(MalformedImsError),  # zeros would be wrong pixels: refused, not filled
    # lenient: level 0's size falls back to DataSetInfo/Image X, Y, Z, which hold the true size
    # (with an ImsWarning); validate reports the unusable ImageSize attribute
    "imagesize-missing": lenient(),
    "imagesize-missing-level1": refused(MalformedImsError),  # no fallback above level 0
    "imagesize-not-a-number": lenient(),  # same fallback
    "imagesize-negative": refused(MalformedImsError),
    "imagesize-zero": refused(MalformedImsError),
    "imagesize-nan": lenient(),  # same fallback
    "imagesize-huge": refused(MalformedImsError),
    "imagesize-larger-than-data": refused(MalformedImsError),
    "imagesize-fractional": lenient(),  # same fallback
    "data-wrong-rank": refused(MalformedImsError),
    "data-wrong-dtype": refused(MalformedImsError),
    "data-string-dtype": refused(MalformedImsError),
    "data-other-type-in-another-channel": broken(MalformedImsError),  # float32 among uint16: refused, not cast
    # lenient: the extents are unusable, so the geometry falls back to voxels of 1 at the origin
    # (with an ImsWarning); the pixels do not depend on them
    "extmax-below-extmin": lenient(),
    "extents-not-numbers": lenient(),
    # lenient: Name and Color are only labels (decoded as latin-1); ImageSizeX falls back as above
    "garbage-bytes-in-text": lenient(),
    # lenient: the levels present (0 and 5, once level 2) are served as levels 0 and 1 (with an
    # ImsWarning); validate reports that level 5 does not follow from level 0
    "level-missing-in-the-middle": lenient(),
    "channels-differ-between-levels": refused(MalformedImsError),
    "timepoints-differ-between-levels": refused(MalformedImsError),
    "unknown-filter": broken(CorruptChunkError),  # validate names the filter
    # lenient: a non-zero filter mask is valid HDF5 (the chunk skipped those filters); Imaris'
    # own HDF5 reads it too
    "filter-mask-raw-chunk": lenient(SOUND),
    "filter-mask-deflate-skipped": lenient(SOUND),
    "softlink-loop": refused(LinkTargetError),
    "external-link": refused(LinkTargetError),  # its target, elsewhere.ims, does not exist
    "dataset-instead-of-group": refused(MalformedImsError),
    "no-timepoints": refused(MalformedImsError),
    # valid HDF5 the positional reads must not misread (hdf5_variants): links are followed, the
    # rest is read through HDF5 or by offset where the store checked it understands the storage
    "external-link-raw": lenient(SOUND),
    "external-link-gzip": lenient(SOUND),
    "external-link-group": lenient(SOUND),
    "external-link-large-offsets": lenient(SOUND),
    "external-link-moved": refused(LinkTargetError),
    "external-link-cycle": refused(LinkTargetError),
    "external-link-not-hdf5": refused(LinkTargetError),
    "vds": lenient(SOUND),
    # HDF5 would read zeros there with no error; the other datasets read right
    "vds-missing-source": broken(LinkTargetError),
    "fill-value-7": lenient(SOUND),
    "fill-value-7-other-channel": lenient(SOUND),
    "precision-12-offset-4": lenient(SOUND),
    "padding-bits-one": lenient(SOUND),
    "partial-chunks-unfiltered-shuffle": lenient(SOUND),
    "partial-chunks-unfiltered-deflate": lenient(SOUND),
    "fletcher32-then-deflate": lenient(SOUND),
    "deflate-then-fletcher32": lenient(SOUND),
    "lz4-tiny-blocks": lenient(SOUND),
    "userblock": lenient(SOUND),
    # HDF5 looks for the raw data file in the working folder: neither it nor ims_store finds it
    "external-storage": broken(LinkTargetError),
    # only canonical names count (as for Imaris); look-alikes are left out with an ImsWarning
    "noncanonical-channel-01": lenient(SOUND),
    "noncanonical-both": lenient(SOUND),
    "noncanonical-level-00": lenient(),
    "noncanonical-unicode-digit": lenient(SOUND),
    "noncanonical-trailing-newline": lenient(SOUND),
}

# what reading a `broken` variant fails on; every other chunk must read right
BROKEN: dict[str, dict[Where, set[Chunk] | None]] = {
    "corrupted-chunk": {CORRUPT_CHUNK[:3]: {CORRUPT_CHUNK[3]}},
    "chunk-index-past-eof": {PAST_EOF_CHUNK[:3]: {PAST_EOF_CHUNK[3]}},
    "unknown-filter": {(0, 0, 0): {(0, 0, 0)}},  # its one written chunk; the others were never written
    "missing-data-other-channel": {(0, 1, 1): ALL},
    "data-other-type-in-another-channel": {(0, 1, 1): ALL},
    "vds-missing-source": {(0, 0, 0): ALL},
    "external-storage": {(0, 0, 0): ALL},
}

# variants that warn (ImsWarning) on every command that opens them, and what the warning says
_SIZE_FALLBACK = "ImageSizeX/Y/Z missing or not whole numbers; using DataSetInfo/Image X, Y, Z"
WARNS = {
    "imagesize-missing": _SIZE_FALLBACK,
    "imagesize-not-a-number": _SIZE_FALLBACK,
    "imagesize-nan": _SIZE_FALLBACK,
    "imagesize-fractional": _SIZE_FALLBACK,
    "garbage-bytes-in-text": _SIZE_FALLBACK,
    "extmax-below-extmin": "extents ExtMin/ExtMax missing or invalid",
    "extents-not-numbers": "extents ExtMin/ExtMax missing or invalid",
    "level-missing-in-the-middle": "resolution levels are numbered 0, 5",
    "noncanonical-channel-01": "'Channel 01' is not a canonical Channel name",
    "noncanonical-both": "'Channel 01' is not a canonical Channel name",
    "noncanonical-level-00": ("'ResolutionLevel 01' is not a canonical", "resolution levels are numbered 0, 2"),
    "noncanonical-unicode-digit": "is not a canonical Channel name",
    "noncanonical-trailing-newline": "is not a canonical Channel name",
}

# what `validate` must say (besides failing) where the audit found it silent
VALIDATE_SAYS = {
    "chunk-index-past-eof": f"chunk {PAST_EOF_CHUNK[3]} (z, y, x) lies past the end of the file",
    "unknown-filter": "HDF5 filter 40000",
    "extmax-below-extmin": "ExtMax0 (-100) is not above ExtMin0 (0)",
}

# which sound-file level each level of a variant holds, where that is not the identity
LEVEL_SOURCE = {"level-missing-in-the-middle": (0, 2), "noncanonical-level-00": (0, 2)}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpus")
    paths = {"sound": sound_file(root / "sound.ims")}
    for name, make in ALL_VARIANTS.items():
        paths[name] = root / f"{name}.ims"
        make(paths["sound"], paths[name])
    return paths


def _warns(variant: str) -> AbstractContextManager[object]:
    """The ImsWarnings a lenient variant must give (any other ImsWarning fails: pyproject makes
    it an error)."""
    expected = WARNS.get(variant, ())
    stack = ExitStack()
    for text in (expected,) if isinstance(expected, str) else expected:
        stack.enter_context(pytest.warns(ImsWarning, match=re.escape(text)))
    return stack


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("variant", list(EXPECTED))
def test_outcome_is_the_expected_one(
    corpus: dict[str, Path], variant: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = corpus[variant]
    case = Case(path, TRUE_SIZES, LEVEL_SOURCE.get(variant), BROKEN.get(variant, {}), VALIDATE_SAYS.get(variant))
    with _warns(variant):
        try:
            observed = RUN[command](case, tmp_path, capsys)
        except ImsError as err:
            assert_specific(err, path)
            observed = type(err)
    assert observed == EXPECTED[variant][command], (
        f"{variant} {command}: {observed} instead of {EXPECTED[variant][command]}"
    )


def test_the_tables_cover_every_variant_and_command() -> None:
    assert set(EXPECTED) == {"sound", *ALL_VARIANTS}
    assert all(tuple(outcomes) == COMMANDS for outcomes in EXPECTED.values())
    broken_ones = {v for v, o in EXPECTED.items() if o["open"] == WORKS and o["read"] != WORKS}
    assert set(BROKEN) == broken_ones
    assert set(WARNS) <= {v for v, o in EXPECTED.items() if o["read"] == WORKS}


def test_corpus_is_large_enough() -> None:
    assert len(ALL_VARIANTS) >= 55


def test_true_sizes_are_the_sound_files(corpus: dict[str, Path]) -> None:
    """`TRUE_SIZES`, the ground truth of every lenient case, is what the sound file records."""
    with h5py.File(corpus["sound"], "r") as f:
        for level, size in enumerate(TRUE_SIZES):
            group = f[f"DataSet/ResolutionLevel {level}/TimePoint 0/Channel 0"]
            assert tuple(int(b"".join(group.attrs[f"ImageSize{a}"])) for a in "ZYX") == size
        assert "ResolutionLevel 3" not in f["DataSet"]


@pytest.mark.parametrize(
    ("variant", "group", "masks"),
    [
        ("filter-mask-raw-chunk", LEVEL0, {(1, 2, 0): 0b1}),
        (
            "filter-mask-deflate-skipped",
            "DataSet/ResolutionLevel 0/TimePoint 1/Channel 1",
            {(2, 1, 2): 2, (0, 2, 1): 3},
        ),
    ],
)
def test_filter_masks_decode_to_the_original_voxels(
    corpus: dict[str, Path], variant: str, group: str, masks: dict[Chunk, int]
) -> None:
    """Chunks stored with filters skipped read as the voxels the sound file holds (the data
    written), in both chunk modes."""
    path = corpus[variant]
    t, c = (int(part.split(" ")[1]) for part in group.split("/")[2:])
    with h5py.File(path, "r") as f, h5py.File(corpus["sound"], "r") as sound:
        dataset = f[group]["Data"]
        for pos, mask in masks.items():  # the variant is what it claims to be
            assert stored_chunk(dataset, dataset.chunks, pos).filter_mask == mask  # type: ignore[union-attr]
        original = sound[f"{group}/Data"][tuple(slice(0, s) for s in TRUE_SIZES[0])]
    for store in (ImsStore(path), ImsStore(path, zarr_format=2, chunk_mode="passthrough")):
        for pos, mask in masks.items():
            region = chunk_region(TrueLevel(0, TRUE_SIZES[0], dataset.chunks), pos)
            got = zarr.open_array(store, path="0", mode="r")[(t, c, *region)]
            np.testing.assert_array_equal(got, original[region], err_msg=f"{store} chunk {pos} mask {mask}")


def test_a_chunk_index_past_the_end_reaches_the_stores_extent_check(corpus: dict[str, Path]) -> None:
    """HDF5 opens the file and only fails reading the chunk; the store refuses the chunk before
    reading (no short read, no allocation of a bogus size), naming it."""
    path = corpus["chunk-index-past-eof"]
    level, t, c, pos = PAST_EOF_CHUNK
    with h5py.File(path, "r") as f:
        dataset = f[f"DataSet/ResolutionLevel {level}/TimePoint {t}/Channel {c}/Data"]
        info = stored_chunk(dataset, dataset.chunks, pos)
        assert info.byte_offset < path.stat().st_size < info.byte_offset + info.size  # type: ignore[union-attr]
        with pytest.raises(OSError):
            dataset[...]
    with pytest.raises(TruncatedFileError, match="lies past the end of the file") as caught:
        ImsStore(path).read_chunk(level, t, c, *pos)
    assert f"chunk {pos} " in caught.value.reason and str(path) in str(caught.value)


def test_validate_deep_on_the_command_line(corpus: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The structural check cannot see a damaged chunk; --deep decodes it and names it."""
    path = str(corpus["corrupted-chunk"])
    assert cli(["validate", path]) == 0
    capsys.readouterr()
    assert cli(["validate", "--deep", path]) == 1
    out = capsys.readouterr().out
    level, t, c, pos = CORRUPT_CHUNK
    assert f"chunk {pos} " in out and f"resolution level {level}, time point {t}, channel {c}" in out, out
