"""Every command on every malformed variant does exactly what `EXPECTED` says: it works (a
lenient case, with correct pixels) or raises that `ims_store.errors` class, naming the file.
Never a crash, a bare KeyError/IndexError, an unexpected status, or silently wrong pixels.

Ground truth never comes from ims_store: pixels are h5py's reads, chunk positions, filter masks
and stored bytes come from h5py's chunk index, and image sizes are those the sound file was made
with (`TRUE_SIZES`), not what the code under test parsed.
"""

from __future__ import annotations

import http.client
import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import h5py
import numcodecs
import numpy as np
import pytest
import zarr
from corpus import CORRUPT_CHUNK, LEVEL0, PAST_EOF_CHUNK, VARIANTS, sound_file

from ims_store import ImsStore, to_ome_zarr, write_ims
from ims_store.cli import main as cli
from ims_store.errors import (
    CorruptChunkError,
    ImsError,
    MalformedImsError,
    NotHDF5Error,
    NotImarisError,
    TruncatedFileError,
)
from ims_store.layout import ImsWarning
from ims_store.serve import ImsHTTPServer, make_server
from ims_store.validate import validate

WORKS = "works"
SOUND = "sound"  # validate: exit status 0, no errors
NOT_SOUND = "not sound"  # validate: exit status 1, at least one error
Outcome = type[ImsError] | str
COMMANDS = ("open", "info", "read", "validate", "validate-deep", "serve", "convert-zarr", "convert-ims")

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
    "directory": refused(NotHDF5Error),
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
    "softlink-loop": refused(MalformedImsError),
    "external-link": refused(MalformedImsError),  # another file is never read
    "dataset-instead-of-group": refused(MalformedImsError),
    "no-timepoints": refused(MalformedImsError),
}

Where = tuple[int, int, int]  # (level, time point, channel), as indexes
Chunk = tuple[int, int, int]  # (z, y, x) on the chunk grid
ALL = None  # every chunk of the dataset

# what reading a `broken` variant fails on; every other chunk must read right
BROKEN: dict[str, dict[Where, set[Chunk] | None]] = {
    "corrupted-chunk": {CORRUPT_CHUNK[:3]: {CORRUPT_CHUNK[3]}},
    "chunk-index-past-eof": {PAST_EOF_CHUNK[:3]: {PAST_EOF_CHUNK[3]}},
    "unknown-filter": {(0, 0, 0): {(0, 0, 0)}},  # its one written chunk; the others were never written
    "missing-data-other-channel": {(0, 1, 1): ALL},
    "data-other-type-in-another-channel": {(0, 1, 1): ALL},
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
}

# what `validate` must say (besides failing) where the audit found it silent
VALIDATE_SAYS = {
    "chunk-index-past-eof": f"chunk {PAST_EOF_CHUNK[3]} (z, y, x) lies past the end of the file",
    "unknown-filter": "HDF5 filter 40000",
    "extmax-below-extmin": "ExtMax0 (-100) is not above ExtMin0 (0)",
}

# which sound-file level each level of a variant holds, where that is not the identity
LEVEL_SOURCE = {"level-missing-in-the-middle": (0, 2)}

# HDF5 pipelines zarr v2 can declare (none, zlib, shuffle, shuffle + zlib): served as stored
PASSTHROUGH_PIPELINES = {(), (1,), (2,), (2, 1)}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpus")
    paths = {"sound": sound_file(root / "sound.ims")}
    for name, make in VARIANTS.items():
        paths[name] = root / f"{name}.ims"
        make(paths["sound"], paths[name])
    return paths


# --------------------------------------------------------------------------------------------
# ground truth, from h5py alone


@dataclass(frozen=True)
class TrueLevel:
    number: int
    size: tuple[int, int, int]
    chunks: tuple[int, int, int]


@dataclass(frozen=True)
class Truth:
    """What a variant that opens holds: its levels, time point and channel numbers."""

    levels: tuple[TrueLevel, ...]
    times: tuple[int, ...]
    channels: tuple[int, ...]

    def chunks(self, level: int) -> Iterator[tuple[int, int, Chunk]]:
        """(time point, channel, chunk) of every chunk over the true size of a level."""
        lvl = self.levels[level]
        grid = [range(-(-s // n)) for s, n in zip(lvl.size, lvl.chunks, strict=True)]
        for t, c in itertools.product(range(len(self.times)), range(len(self.channels))):
            for pos in itertools.product(*grid):
                yield t, c, pos  # type: ignore[misc]

    def dataset(self, f: h5py.File, level: int, t: int, c: int) -> h5py.Dataset | None:
        lvl = self.levels[level]
        obj = f.get(f"DataSet/ResolutionLevel {lvl.number}/TimePoint {self.times[t]}/Channel {self.channels[c]}/Data")
        return obj if isinstance(obj, h5py.Dataset) else None


def _numbered(group: h5py.Group, prefix: str) -> tuple[int, ...]:
    return tuple(sorted(int(n.split(" ")[1]) for n in group if n.startswith(prefix + " ")))


def _truth(f: h5py.File, variant: str) -> Truth:
    root = f["DataSet"]
    numbers = _numbered(root, "ResolutionLevel")
    source = LEVEL_SOURCE.get(variant, tuple(range(len(numbers))))
    level0 = root[f"ResolutionLevel {numbers[0]}"]
    times = _numbered(level0, "TimePoint")
    channels = _numbered(level0[f"TimePoint {times[0]}"], "Channel")
    levels = tuple(
        TrueLevel(
            n,
            TRUE_SIZES[source[i]],
            root[f"ResolutionLevel {n}/TimePoint {times[0]}/Channel {channels[0]}/Data"].chunks,
        )
        for i, n in enumerate(numbers)
    )
    return Truth(levels, times, channels)


def _region(lvl: TrueLevel, pos: Chunk) -> tuple[slice, ...]:
    """A chunk's voxels within the true size."""
    return tuple(slice(i * n, min((i + 1) * n, s)) for i, n, s in zip(pos, lvl.chunks, lvl.size, strict=True))


def _h5py_read(dataset: h5py.Dataset | None, region: tuple[slice, ...]) -> np.ndarray | None:
    """h5py's read, or None where HDF5 itself cannot read the data."""
    try:
        return None if dataset is None else dataset[region]
    except Exception:
        return None


def _h5py_chunk(dataset: h5py.Dataset, chunks: tuple[int, ...], pos: Chunk) -> bytes | None:
    """A whole HDF5 chunk (padding included) as little-endian bytes, as a decoded chunk is served."""
    region = tuple(slice(i * n, (i + 1) * n) for i, n in zip(pos, chunks, strict=True))
    block = _h5py_read(dataset, region)
    if block is None:
        return None
    out = np.zeros(chunks, dtype=dataset.dtype.newbyteorder("<"))
    out[tuple(slice(0, s) for s in block.shape)] = block
    return out.tobytes()


def _stored(dataset: h5py.Dataset | None, chunks: tuple[int, ...], pos: Chunk) -> h5py.h5d.StoreInfo | None:
    """h5py's chunk index entry of a chunk (byte_offset None: never written)."""
    if dataset is None:
        return None
    return dataset.id.get_chunk_info_by_coord(tuple(i * n for i, n in zip(pos, chunks, strict=True)))


def _pipeline(dataset: h5py.Dataset) -> tuple[tuple, ...]:
    plist = dataset.id.get_create_plist()
    return tuple(plist.get_filter(i) for i in range(plist.get_nfilters()))


def _passes_through(
    dataset: h5py.Dataset | None, first: h5py.Dataset, info: h5py.h5d.StoreInfo | None, file_size: int
) -> bool:
    """Whether NGFF 0.4 serves this chunk's stored bytes untouched: it is written, with no filter
    skipped, inside the file, in a dataset like the level's first one (which sets the codecs
    declared) whose pipeline zarr v2 can declare."""
    if dataset is None or info is None or info.byte_offset is None or info.filter_mask:
        return False
    if info.byte_offset + info.size > file_size:
        return False
    same = (dataset.dtype, dataset.shape, dataset.chunks, _pipeline(dataset)) == (
        first.dtype,
        first.shape,
        first.chunks,
        _pipeline(first),
    )
    return same and tuple(p[0] for p in _pipeline(dataset)) in PASSTHROUGH_PIPELINES


def _assert_names(err: BaseException, path: Path, variant: str, truth: Truth, where: Where, pos: Chunk) -> None:
    """``err`` names the file and the chunk (or, where the whole dataset is at fault, its group)."""
    assert isinstance(err, ImsError) and str(path) in str(err) and err.reason, repr(err)
    level, t, c = where
    if BROKEN[variant][where] is ALL:
        group = f"ResolutionLevel {truth.levels[level].number}/TimePoint {truth.times[t]}/Channel {truth.channels[c]}"
        assert group in err.reason, err.reason
    else:
        assert f"chunk {pos} " in err.reason, err.reason
        assert f"resolution level {level}, time point {t}, channel {c}" in err.reason, err.reason


# --------------------------------------------------------------------------------------------
# the commands: each returns what it observed, WORKS or the class of the error it met (having
# checked that the error names the file, and the chunk where one chunk is at fault)


def _expected_failures(variant: str, truth: Truth) -> set[tuple[int, int, int, Chunk]]:
    """Every chunk `BROKEN` says fails, as (level, time point, channel, chunk)."""
    out = set()
    for (level, t, c), chunks in BROKEN.get(variant, {}).items():
        grid = [range(-(-s // n)) for s, n in zip(truth.levels[level].size, truth.levels[level].chunks, strict=True)]
        for pos in itertools.product(*grid) if chunks is ALL else chunks:
            out.add((level, t, c, tuple(pos)))
    return out


def _one_class(errors: list[BaseException]) -> Outcome:
    classes = {type(e) for e in errors}
    assert len(classes) <= 1, f"different errors for the same fault: {errors}"
    return classes.pop() if classes else WORKS


def _open(path: Path, variant: str, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    store = ImsStore(path)
    with h5py.File(path, "r") as f:
        truth = _truth(f, variant)
    assert [lvl.size for lvl in store.layout.levels] == [lvl.size for lvl in truth.levels]
    assert store.layout.shape(0)[:2] == (len(truth.times), len(truth.channels))
    return WORKS


def _info(path: Path, variant: str, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    status = cli(["info", str(path)])
    captured = capsys.readouterr()
    if status == 0:
        assert captured.err == "" and captured.out
        return WORKS
    # one line naming the file and the problem; --debug raises the error itself
    assert status == 2 and captured.err.count("\n") == 1 and str(path) in captured.err, captured.err
    cli(["--debug", "info", str(path)])
    raise AssertionError("ims-store --debug info did not raise")


def _read(path: Path, variant: str, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    """Every chunk through zarr: h5py's pixels, or an error naming the chunk, for exactly the
    chunks `BROKEN` lists."""
    store = ImsStore(path)
    failures: dict[tuple[int, int, int, Chunk], BaseException] = {}
    with h5py.File(path, "r") as f:
        truth = _truth(f, variant)
        for li, lvl in enumerate(truth.levels):
            arr = zarr.open_array(store, path=str(li), mode="r")
            assert arr.shape == (len(truth.times), len(truth.channels), *lvl.size)
            for t, c, pos in truth.chunks(li):
                try:
                    got = arr[(t, c, *_region(lvl, pos))]
                except ImsError as err:
                    failures[(li, t, c, pos)] = err
                    continue
                expected = _h5py_read(truth.dataset(f, li, t, c), _region(lvl, pos))
                assert expected is not None, f"ims_store reads level {li} t {t} c {c} chunk {pos}; HDF5 cannot"
                np.testing.assert_array_equal(got, expected, err_msg=f"level {li} t {t} c {c} chunk {pos}")
    assert set(failures) == _expected_failures(variant, truth)
    for (li, t, c, pos), err in failures.items():
        _assert_names(err, path, variant, truth, (li, t, c), pos)
    return _one_class(list(failures.values()))


def _validate(path: Path, variant: str, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    """``ims-store validate``: SOUND (exit status 0) or NOT_SOUND (1)."""
    status = cli(["validate", str(path)])
    out = capsys.readouterr().out
    assert status in (0, 1) and out.splitlines()[-1].startswith(f"{path}: {'sound' if status == 0 else 'not sound'}")
    if variant in VALIDATE_SAYS:
        assert VALIDATE_SAYS[variant] in out, out
    return SOUND if status == 0 else NOT_SOUND


def _validate_deep(path: Path, variant: str, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    """``validate(path, deep=True)``: every broken chunk named with its level, time point, channel."""
    errors = [str(p) for p in validate(path, deep=True) if p.severity == "error"]
    for (level, t, c), chunks in BROKEN.get(variant, {}).items():
        if chunks is ALL:  # (in the variants `BROKEN` lists, group numbers are the indexes)
            assert any(f"TimePoint {t}/Channel {c}" in e for e in errors), errors
            continue
        at = f"resolution level {level}, time point {t}, channel {c}"
        for pos in chunks:
            assert any(f"chunk {pos} " in e and at in e for e in errors), (pos, errors)
    return NOT_SOUND if errors else SOUND


def _serve(path: Path, variant: str, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    """Both NGFF versions, every chunk key; the class of the errors behind the 500s, if any."""
    errors: list[BaseException] = []
    for ngff in ("0.5", "0.4"):
        server = make_server(path, port=0, ngff=ngff)
        server.serve_in_thread(poll_interval=0.02)  # 40 servers: shut each down fast
        try:
            errors += _check_served(server, path, variant, ngff)
        finally:
            server.shutdown()
            server.server_close()
    return _one_class(errors)


def _check_served(server: ImsHTTPServer, path: Path, variant: str, ngff: str) -> list[BaseException]:
    """Metadata documents, then every chunk key: 200 with the true bytes (the stored ones where
    NGFF 0.4 passes them through), 404 for chunks never written, 500 for exactly the broken
    chunks; returns the errors the store raises for the keys answered 500."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)  # one keep-alive connection
    v3 = ngff == "0.5"
    file_size = path.stat().st_size
    failed: dict[tuple[int, int, int, Chunk], str] = {}
    passed_through = set()

    def get(key: str) -> tuple[int, bytes]:
        conn.request("GET", "/" + key)
        response = conn.getresponse()
        return response.status, response.read()

    with h5py.File(path, "r") as f:
        truth = _truth(f, variant)
        try:
            for key in ["zarr.json"] if v3 else [".zgroup", ".zattrs"]:
                status, body = get(key)
                assert status == 200 and json.loads(body), key
            for li, lvl in enumerate(truth.levels):
                status, body = get(f"{li}/zarr.json" if v3 else f"{li}/.zarray")
                assert status == 200, li
                meta = json.loads(body)
                first = truth.dataset(f, li, 0, 0)
                for t, c, pos in truth.chunks(li):
                    key = (f"{li}/c/{t}/{c}/" if v3 else f"{li}/{t}/{c}/") + "/".join(map(str, pos))
                    status, body = get(key)
                    dataset = truth.dataset(f, li, t, c)
                    info = _stored(dataset, lvl.chunks, pos)
                    expected = None if dataset is None else _h5py_chunk(dataset, lvl.chunks, pos)
                    label = f"NGFF {ngff} {key}: {status}"
                    if status == 500:
                        failed[(li, t, c, pos)] = key
                    elif not v3 and _passes_through(dataset, first, info, file_size):
                        mask, stored = dataset.id.read_direct_chunk(info.chunk_offset)  # type: ignore[union-attr]
                        assert status == 200 and mask == 0 and body == stored, label
                        passed_through.add((li, t, c, pos))
                        if expected is None:  # HDF5 cannot decode it; nor can the client: no wrong pixels
                            with pytest.raises(Exception):  # noqa: B017 - whichever error the codec raises
                                _decode_v2(body, meta)
                        else:
                            assert _decode_v2(body, meta) == expected, label
                    elif info is None or info.byte_offset is None:
                        assert status == 404, label  # never written: zarr fills with zeros, as HDF5 does
                    else:
                        assert status == 200 and expected is not None, label
                        assert (body if v3 else _decode_v2(body, meta)) == expected, label
        finally:
            conn.close()
    # stored bytes go out as they are in NGFF 0.4, damaged or not: the client's zlib finds damage
    assert set(failed) == _expected_failures(variant, truth) - passed_through, ngff
    errors = []
    for (li, t, c, pos), key in failed.items():
        with pytest.raises(ImsError) as caught:
            server.store.get_sync(key)  # the 500 stands for this error
        _assert_names(caught.value, path, variant, truth, (li, t, c), pos)
        errors.append(caught.value)
    return errors


def _decode_v2(body: bytes, zarray: dict) -> bytes:
    """What a zarr v2 client makes of a chunk: the declared compressor, then the filters, undone."""
    data: object = body
    if zarray.get("compressor"):
        data = numcodecs.get_codec(zarray["compressor"]).decode(data)
    for spec in reversed(zarray.get("filters") or []):
        data = numcodecs.get_codec(spec).decode(data)
    return bytes(memoryview(data))  # type: ignore[arg-type]


def _convert(path: Path, variant: str, tmp: Path, run: Callable[[Path, Path], object], name: str) -> Outcome:
    """A conversion: h5py's pixels in the output, or the error with nothing left behind."""
    target = tmp / name
    try:
        run(path, target)
    except ImsError:
        assert list(tmp.iterdir()) == [], "a failed conversion left output or a temporary file behind"
        raise
    with h5py.File(path, "r") as f:
        _check_converted(target, f, _truth(f, variant))
    return WORKS


def _convert_zarr(path: Path, variant: str, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    return _convert(path, variant, tmp, to_ome_zarr, "out.zarr")


def _convert_ims(path: Path, variant: str, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    return _convert(path, variant, tmp, write_ims, "out.ims")


def _check_converted(target: Path, f: h5py.File, truth: Truth) -> None:
    pairs = list(itertools.product(range(len(truth.times)), range(len(truth.channels))))
    if target.suffix == ".zarr":
        group = zarr.open_group(target, mode="r")
        assert sorted(group.array_keys(), key=int) == [str(i) for i in range(len(truth.levels))]
        for li, lvl in enumerate(truth.levels):
            arr = group[str(li)]
            assert arr.shape == (len(truth.times), len(truth.channels), *lvl.size)
            for t, c in pairs:
                expected = _h5py_read(truth.dataset(f, li, t, c), _whole(lvl))
                np.testing.assert_array_equal(arr[t, c], expected, err_msg=f"{target} level {li} t {t} c {c}")
        return
    level = truth.levels[0]
    with h5py.File(target, "r") as out:  # the pyramid is rebuilt; level 0 is the source's
        for t, c in pairs:
            written = out[f"DataSet/ResolutionLevel 0/TimePoint {t}/Channel {c}/Data"][_whole(level)]
            expected = _h5py_read(truth.dataset(f, 0, t, c), _whole(level))
            np.testing.assert_array_equal(written, expected, err_msg=f"{target} t {t} c {c}")


def _whole(lvl: TrueLevel) -> tuple[slice, ...]:
    return tuple(slice(0, s) for s in lvl.size)


RUN = {
    "open": _open,
    "info": _info,
    "read": _read,
    "validate": _validate,
    "validate-deep": _validate_deep,
    "serve": _serve,
    "convert-zarr": _convert_zarr,
    "convert-ims": _convert_ims,
}


def _warns(variant: str) -> AbstractContextManager[object]:
    """The ImsWarning a lenient variant must give (any other ImsWarning fails: pyproject makes
    it an error)."""
    return pytest.warns(ImsWarning, match=WARNS[variant]) if variant in WARNS else nullcontext()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("variant", list(EXPECTED))
def test_outcome_is_the_expected_one(
    corpus: dict[str, Path], variant: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = corpus[variant]
    with _warns(variant):
        try:
            observed = RUN[command](path, variant, tmp_path, capsys)
        except ImsError as err:
            assert str(path) in str(err) and err.reason, f"the error does not name the file: {err}"
            observed = type(err)
    assert observed == EXPECTED[variant][command], (
        f"{variant} {command}: {observed} instead of {EXPECTED[variant][command]}"
    )


def test_the_tables_cover_every_variant_and_command() -> None:
    assert set(EXPECTED) == {"sound", *VARIANTS}
    assert all(tuple(outcomes) == COMMANDS for outcomes in EXPECTED.values())
    broken_ones = {v for v, o in EXPECTED.items() if o["open"] == WORKS and o["read"] != WORKS}
    assert set(BROKEN) == broken_ones
    assert set(WARNS) <= {v for v, o in EXPECTED.items() if o["read"] == WORKS}


def test_corpus_is_large_enough() -> None:
    assert len(VARIANTS) >= 30


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
            assert _stored(dataset, dataset.chunks, pos).filter_mask == mask  # type: ignore[union-attr]
        original = sound[f"{group}/Data"][tuple(slice(0, s) for s in TRUE_SIZES[0])]
    for store in (ImsStore(path), ImsStore(path, zarr_format=2, chunk_mode="passthrough")):
        for pos, mask in masks.items():
            region = _region(TrueLevel(0, TRUE_SIZES[0], dataset.chunks), pos)
            got = zarr.open_array(store, path="0", mode="r")[(t, c, *region)]
            np.testing.assert_array_equal(got, original[region], err_msg=f"{store} chunk {pos} mask {mask}")


def test_a_chunk_index_past_the_end_reaches_the_stores_extent_check(corpus: dict[str, Path]) -> None:
    """HDF5 opens the file and only fails reading the chunk; the store refuses the chunk before
    reading (no short read, no allocation of a bogus size), naming it."""
    path = corpus["chunk-index-past-eof"]
    level, t, c, pos = PAST_EOF_CHUNK
    with h5py.File(path, "r") as f:
        dataset = f[f"DataSet/ResolutionLevel {level}/TimePoint {t}/Channel {c}/Data"]
        info = _stored(dataset, dataset.chunks, pos)
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
