"""The contract every command keeps on any file, sound or not: it works, with h5py's pixels, or it
raises a specific `ims_store.errors` class naming the file (and the chunk, where one chunk is at
fault). Never another exception, an unexpected status, or silently wrong pixels.

A `Case` is a file and what is true of it; ``RUN[command](case, tmp, capsys)`` runs one command
on it and returns what it observed. Ground truth never comes from ims_store: pixels are h5py's
reads, chunk positions, filter masks and stored bytes come from h5py's chunk index, and image
sizes are those the `Case` states (how the file was made), not what the code under test parsed.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numcodecs
import numpy as np
import pytest
import zarr
from hdf5_variants import get_chunk_opts

from ims_store import ImsStore, to_ome_zarr, write_ims
from ims_store.errors import ImsError
from ims_store.fronts.cli import main as cli
from ims_store.fronts.serve import ImsHTTPServer, make_server
from ims_store.store.validate import validate

WORKS = "works"
SOUND = "sound"  # validate: exit status 0, no errors
NOT_SOUND = "not sound"  # validate: exit status 1, at least one error
Outcome = type[ImsError] | str
COMMANDS = ("open", "info", "read", "validate", "validate-deep", "serve", "convert-zarr", "convert-ims", "bioio")

Where = tuple[int, int, int]  # (level, time point, channel), as indexes
Chunk = tuple[int, int, int]  # (z, y, x) on the chunk grid
Size = tuple[int, int, int]  # (z, y, x) in voxels
ALL = None  # every chunk of the dataset

# HDF5 pipelines zarr v2 can declare (none, zlib, shuffle, shuffle + zlib): served as stored
PASSTHROUGH_PIPELINES = {(), (1,), (2,), (2, 1)}


def assert_specific(err: BaseException, path: Path) -> None:
    """``err`` is one of ims_store's specific error classes (a subclass of `ImsError`, never the
    base class itself) and names the file and the problem."""
    assert isinstance(err, ImsError) and type(err) is not ImsError, repr(err)
    assert str(path) in str(err) and err.reason, f"the error does not name the file: {err}"


# --------------------------------------------------------------------------------------------
# ground truth, from h5py alone and what the case states


@dataclass(frozen=True)
class Case:
    """A file under test and what is true of it, independently of ims_store."""

    path: Path
    sizes: tuple[Size, ...] | None
    """The true size of each level of the file it was made from; None where the file states no
    usable size, so that every command must refuse it."""
    level_source: tuple[int, ...] | None = None
    """Which of `sizes` each level holds, where that is not the identity."""
    broken: Mapping[Where, set[Chunk] | None] = field(default_factory=dict)
    """The chunks (`ALL`: the whole dataset) that must fail to read; every other chunk reads right."""
    validate_says: str | None = None
    """What ``validate`` must report."""

    def truth(self, f: h5py.File) -> Truth:
        """The levels, time points and channels of the file ``f`` (this case's, opened)."""
        assert self.sizes is not None, f"ims_store accepted {self.path}, which states no usable image size"
        root = f["DataSet"]
        numbers = _numbered(root, "ResolutionLevel")
        source = self.level_source or tuple(range(len(numbers)))
        level0 = root[f"ResolutionLevel {numbers[0]}"]
        times = _numbered(level0, "TimePoint")
        channels = _numbered(level0[f"TimePoint {times[0]}"], "Channel")
        levels = tuple(
            TrueLevel(
                n,
                self.sizes[source[i]],
                _grid_chunks(root[f"ResolutionLevel {n}/TimePoint {times[0]}/Channel {channels[0]}/Data"]),
            )
            for i, n in enumerate(numbers)
        )
        return Truth(levels, times, channels)


def _grid_chunks(dataset: h5py.Dataset) -> tuple[int, int, int]:
    """The chunks a level is served in: its first dataset's, or its planes where that has none."""
    return dataset.chunks or (1, *dataset.shape[1:])


@dataclass(frozen=True)
class TrueLevel:
    number: int
    size: tuple[int, int, int]
    chunks: tuple[int, int, int]


@dataclass(frozen=True)
class Truth:
    """What a file that opens holds: its levels, time point and channel numbers."""

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
    """The numbers of the canonical ``<prefix> N`` names (what Imaris opens: never ``Channel 01``)."""
    return tuple(sorted(int(n.split(" ")[1]) for n in group if re.fullmatch(prefix + " (0|[1-9][0-9]*)", n)))


def _whole_chunks(lvl: TrueLevel, served: Chunk) -> Chunk:
    """A served chunk shape, where it spans a whole axis (dask clips its chunks to the array),
    as whole HDF5 chunks."""
    return tuple(  # type: ignore[return-value]
        -(-s // n) * n if c >= s else c for c, s, n in zip(served, lvl.size, lvl.chunks, strict=True)
    )


def served_groups(lvl: TrueLevel, served: Chunk) -> dict[Chunk, list[Chunk]]:
    """The HDF5 chunks inside each chunk a decoded store serves, by served chunk position: a
    served chunk (its shape as the metadata declares it) must group whole HDF5 chunks."""
    served = _whole_chunks(lvl, served)
    assert all(s % n == 0 for s, n in zip(served, lvl.chunks, strict=True)), (served, lvl.chunks)
    factors = [s // n for s, n in zip(served, lvl.chunks, strict=True)]
    groups: dict[Chunk, list[Chunk]] = {}
    for pos in itertools.product(*(range(-(-s // n)) for s, n in zip(lvl.size, lvl.chunks, strict=True))):
        groups.setdefault(tuple(p // f for p, f in zip(pos, factors, strict=True)), []).append(pos)  # type: ignore[arg-type]
    return groups


def chunk_region(lvl: TrueLevel, pos: Chunk) -> tuple[slice, ...]:
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


def stored_chunk(dataset: h5py.Dataset | None, chunks: tuple[int, ...], pos: Chunk) -> h5py.h5d.StoreInfo | None:
    """h5py's chunk index entry of a chunk (byte_offset None: never written); None where the
    dataset has no chunk index (not chunked)."""
    if dataset is None or dataset.chunks is None:
        return None
    return dataset.id.get_chunk_info_by_coord(tuple(i * n for i, n in zip(pos, chunks, strict=True)))


def _never_written(dataset: h5py.Dataset | None, info: h5py.h5d.StoreInfo | None) -> bool:
    """Whether HDF5 never wrote this chunk (it reads as the fill value)."""
    if dataset is None or dataset.is_virtual:
        return dataset is None
    if dataset.chunks is None:
        return dataset.id.get_offset() is None and dataset.id.get_storage_size() == 0
    return info is None or info.byte_offset is None


def _fill(dataset: h5py.Dataset) -> bytes:
    """The fill value h5py reads in a chunk never written, as bytes (0 where it is undefined)."""
    plist = dataset.id.get_create_plist()
    undefined = plist.fill_value_defined() == h5py.h5d.FILL_VALUE_UNDEFINED
    value = 0 if undefined or plist.get_fill_time() == h5py.h5d.FILL_TIME_NEVER else dataset.fillvalue
    return np.array(value, dataset.dtype).tobytes()


def _pipeline(dataset: h5py.Dataset) -> tuple[tuple, ...]:
    plist = dataset.id.get_create_plist()
    return tuple(plist.get_filter(i) for i in range(plist.get_nfilters()))


def _passes_through(dataset: h5py.Dataset | None, first: h5py.Dataset, info: h5py.h5d.StoreInfo | None) -> bool:
    """Whether NGFF 0.4 serves this chunk's stored bytes untouched: it is written, with no filter
    skipped, inside the file, in a dataset like the level's first one (which sets the codecs
    declared) whose pipeline zarr v2 can declare."""
    if dataset is None or info is None or info.byte_offset is None or info.filter_mask:
        return False
    if info.byte_offset + info.size > os.path.getsize(dataset.file.filename):  # (a link's target, maybe)
        return False
    if not dataset.id.get_type().equal(h5py.h5t.py_create(dataset.dtype)):  # HDF5 converts such types
        return False
    if _unfiltered_edge(dataset, info):
        return False
    same = (dataset.dtype, dataset.shape, dataset.chunks, _pipeline(dataset)) == (
        first.dtype,
        first.shape,
        first.chunks,
        _pipeline(first),
    )
    return same and tuple(p[0] for p in _pipeline(dataset)) in PASSTHROUGH_PIPELINES


def _unfiltered_edge(dataset: h5py.Dataset, info: h5py.h5d.StoreInfo) -> bool:
    """A chunk sticking out of a dataset made with H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS: stored
    raw, though its filter mask says 0."""
    if not any(o + n > s for o, n, s in zip(info.chunk_offset, dataset.chunks, dataset.shape, strict=True)):
        return False
    return bool(get_chunk_opts(dataset.id.get_create_plist()) & 0x0002)


def _assert_names(err: BaseException, case: Case, truth: Truth, where: Where, positions: list[Chunk]) -> None:
    """``err`` names the file and a broken chunk among ``positions`` (the HDF5 chunks read), or,
    where the whole dataset is at fault, its group."""
    assert_specific(err, case.path)
    level, t, c = where
    if case.broken[where] is ALL:
        group = f"ResolutionLevel {truth.levels[level].number}/TimePoint {truth.times[t]}/Channel {truth.channels[c]}"
        assert group in err.reason, err.reason
    else:
        broken = [pos for pos in positions if pos in case.broken[where]]  # type: ignore[operator]
        assert any(f"chunk {pos} " in err.reason for pos in broken), (broken, err.reason)
        assert f"resolution level {level}, time point {t}, channel {c}" in err.reason, err.reason


# --------------------------------------------------------------------------------------------
# the commands: each returns what it observed, WORKS or the class of the error it met (having
# checked that the error names the file, and the chunk where one chunk is at fault)


def _expected_failures(
    case: Case, truth: Truth, groups: Mapping[int, dict[Chunk, list[Chunk]]] | None = None
) -> set[tuple[int, int, int, Chunk]]:
    """Every chunk the case says fails, as (level, time point, channel, chunk); with ``groups``
    (per level, see `served_groups`), every served chunk that holds one."""
    out = set()
    for (level, t, c), chunks in case.broken.items():
        grid = [range(-(-s // n)) for s, n in zip(truth.levels[level].size, truth.levels[level].chunks, strict=True)]
        for pos in itertools.product(*grid) if chunks is ALL else chunks:
            if groups is None:
                out.add((level, t, c, tuple(pos)))
            else:
                out |= {(level, t, c, g) for g, parts in groups[level].items() if tuple(pos) in parts}
    return out


def _one_class(errors: list[BaseException]) -> Outcome:
    classes = {type(e) for e in errors}
    assert len(classes) <= 1, f"different errors for the same fault: {errors}"
    return classes.pop() if classes else WORKS


def _open(case: Case, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    path = case.path
    store = ImsStore(path)
    with h5py.File(path, "r") as f:
        truth = case.truth(f)
    assert [lvl.size for lvl in store.layout.levels] == [lvl.size for lvl in truth.levels]
    assert store.layout.shape(0)[:2] == (len(truth.times), len(truth.channels))
    return WORKS


def _info(case: Case, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    path = case.path
    status = cli(["info", str(path)])
    captured = capsys.readouterr()
    if status == 0:
        assert captured.err == "" and captured.out
        return WORKS
    # one line naming the file and the problem; --debug raises the error itself
    assert status == 2 and captured.err.count("\n") == 1 and str(path) in captured.err, captured.err
    cli(["--debug", "info", str(path)])
    raise AssertionError("ims-store --debug info did not raise")


ReadRegion = Callable[[int, int, tuple[slice, ...]], np.ndarray]
"""Reads a (time point, channel, region) of one level."""


def _read(case: Case, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    """Every chunk through zarr (as the store serves them: HDF5 chunks, or groups of small ones):
    h5py's pixels, or an error naming a broken HDF5 chunk, for exactly the chunks that hold one."""
    store = ImsStore(case.path)

    def level(li: int) -> tuple[tuple[int, ...], Chunk, ReadRegion]:
        arr = zarr.open_array(store, path=str(li), mode="r")
        return arr.shape, arr.chunks[2:], lambda t, c, region: arr[(t, c, *region)]

    return _every_chunk(case, level)


def _bioio(case: Case, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    """Every chunk through bioio's ``BioImage`` (the plugin picked by extension), as ``read``.

    A file that is not an Imaris image is no plugin's for bioio (its own error); the plugin's
    reader, asked directly, then says why with ims_store's error."""
    from bioio import BioImage
    from bioio_base.exceptions import UnsupportedFileFormatError

    from ims_store.errors import NotHDF5Error, NotImarisError
    from ims_store.fronts.bioio_plugin import Reader

    try:
        image = BioImage(case.path)
    except UnsupportedFileFormatError:
        try:
            Reader(case.path)
        except (NotHDF5Error, NotImarisError):
            raise
        raise AssertionError(f"bioio found no reader for {case.path}, which the plugin's reader opens") from None

    def read(t: int, c: int, region: tuple[slice, ...]) -> np.ndarray:
        return image.get_image_data("ZYX", T=t, C=c, **dict(zip("ZYX", region, strict=True)))

    def level(li: int) -> tuple[tuple[int, ...], Chunk, ReadRegion]:
        image.set_resolution_level(li)
        return image.shape, image.dask_data.chunksize[2:], read

    return _every_chunk(case, level)


def _every_chunk(case: Case, open_level: Callable[[int], tuple[tuple[int, ...], Chunk, ReadRegion]]) -> Outcome:
    """Each level from ``open_level`` (its shape, the chunk shape it is read in and a reader of a
    time point, channel and region), chunk by chunk: h5py's pixels, or an error naming a broken
    HDF5 chunk, for exactly the chunks that hold one."""
    path = case.path
    failures: dict[tuple[int, int, int, Chunk], BaseException] = {}
    groups: dict[int, dict[Chunk, list[Chunk]]] = {}
    with h5py.File(path, "r") as f:
        truth = case.truth(f)
        for li, lvl in enumerate(truth.levels):
            shape, chunks, read = open_level(li)
            assert shape == (len(truth.times), len(truth.channels), *lvl.size)
            groups[li] = served_groups(lvl, chunks)
            served = TrueLevel(lvl.number, lvl.size, _whole_chunks(lvl, chunks))
            for (t, c), pos in itertools.product(
                itertools.product(range(len(truth.times)), range(len(truth.channels))), groups[li]
            ):
                try:
                    got = read(t, c, chunk_region(served, pos))
                except ImsError as err:
                    failures[(li, t, c, pos)] = err
                    continue
                expected = _h5py_read(truth.dataset(f, li, t, c), chunk_region(served, pos))
                assert expected is not None, f"ims_store reads level {li} t {t} c {c} chunk {pos}; HDF5 cannot"
                np.testing.assert_array_equal(got, expected, err_msg=f"level {li} t {t} c {c} chunk {pos}")
    assert set(failures) == _expected_failures(case, truth, groups)
    for (li, t, c, pos), err in failures.items():
        _assert_names(err, case, truth, (li, t, c), groups[li][pos])
    return _one_class(list(failures.values()))


def _validate(case: Case, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    """``ims-store validate``: SOUND (exit status 0) or NOT_SOUND (1)."""
    path = case.path
    status = cli(["validate", str(path)])
    out = capsys.readouterr().out
    assert status in (0, 1) and out.splitlines()[-1].startswith(f"{path}: {'sound' if status == 0 else 'not sound'}")
    if case.validate_says:
        assert case.validate_says in out, out
    return SOUND if status == 0 else NOT_SOUND


def _validate_deep(case: Case, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    """``validate(path, deep=True)``: every broken chunk named with its level, time point, channel."""
    path = case.path
    errors = [str(p) for p in validate(path, deep=True) if p.severity == "error"]
    for (level, t, c), chunks in case.broken.items():
        if chunks is ALL:  # (in the cases with broken datasets, group numbers are the indexes)
            assert any(f"TimePoint {t}/Channel {c}" in e for e in errors), errors
            continue
        at = f"resolution level {level}, time point {t}, channel {c}"
        for pos in chunks:
            assert any(f"chunk {pos} " in e and at in e for e in errors), (pos, errors)
    return NOT_SOUND if errors else SOUND


def _serve(case: Case, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    """Both NGFF versions, every chunk key; the class of the errors behind the 500s, if any."""
    path = case.path
    if path.is_dir():  # served as a folder (tests/test_serve_folder.py): this one holds no .ims
        return _serve_folder(path)
    errors: list[BaseException] = []
    for ngff in ("0.5", "0.4"):
        server = make_server(path, port=0, ngff=ngff, follow_links=True)  # (the default refuses links: tested apart)
        server.serve_in_thread(poll_interval=0.02)  # 40 servers: shut each down fast
        try:
            errors += _check_served(server, case, ngff)
        finally:
            server.shutdown()
            server.server_close()
    return _one_class(errors)


def _serve_folder(path: Path) -> Outcome:
    server = make_server(path, port=0)
    server.serve_in_thread(poll_interval=0.02)
    try:
        host, port = server.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/index.json")
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["images"] == []
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
    return WORKS


def _check_served(server: ImsHTTPServer, case: Case, ngff: str) -> list[BaseException]:
    """Metadata documents, then every chunk key: 200 with the true bytes (the stored ones where
    NGFF 0.4 passes them through), 404 for chunks never written, 500 for exactly the chunks that
    hold a broken one; returns the errors the store raises for the keys answered 500.

    NGFF 0.5 serves decoded chunks, small HDF5 chunks grouped (the chunk shape its metadata
    declares, whole HDF5 chunks); NGFF 0.4 serves each HDF5 chunk as one zarr chunk."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)  # one keep-alive connection
    v3 = ngff == "0.5"
    path = case.path
    failed: dict[tuple[int, int, int, Chunk], str] = {}
    passed_through = set()
    groups: dict[int, dict[Chunk, list[Chunk]]] = {}

    def get(key: str) -> tuple[int, bytes]:
        conn.request("GET", "/" + key)
        response = conn.getresponse()
        return response.status, response.read()

    with h5py.File(path, "r") as f:
        truth = case.truth(f)
        try:
            for key in ["zarr.json"] if v3 else [".zgroup", ".zattrs"]:
                status, body = get(key)
                assert status == 200 and json.loads(body), key
            for li, lvl in enumerate(truth.levels):
                status, body = get(f"{li}/zarr.json" if v3 else f"{li}/.zarray")
                assert status == 200, li
                meta = json.loads(body)
                assert meta["shape"] == [len(truth.times), len(truth.channels), *lvl.size], (li, meta["shape"])
                first = truth.dataset(f, li, 0, 0)
                if v3:
                    served = TrueLevel(
                        lvl.number, lvl.size, tuple(meta["chunk_grid"]["configuration"]["chunk_shape"][2:])
                    )
                    groups[li] = served_groups(lvl, served.chunks)
                    for t, c in itertools.product(range(len(truth.times)), range(len(truth.channels))):
                        dataset = truth.dataset(f, li, t, c)
                        for pos, parts in groups[li].items():
                            key = f"{li}/c/{t}/{c}/" + "/".join(map(str, pos))
                            status, body = get(key)
                            label = f"NGFF 0.5 {key}: {status}"
                            unwritten = [_never_written(dataset, stored_chunk(dataset, lvl.chunks, p)) for p in parts]
                            if status == 500:
                                failed[(li, t, c, pos)] = key
                            elif all(unwritten) and (dataset is None or _fill(dataset) == _fill(first)):
                                assert status == 404, label  # never written: zarr fills with the declared fill value
                            else:
                                region = chunk_region(served, pos)
                                expected = _h5py_read(dataset, region)
                                assert status == 200 and expected is not None, label
                                got = np.frombuffer(body, dtype=expected.dtype.newbyteorder("<")).reshape(served.chunks)
                                np.testing.assert_array_equal(
                                    got[tuple(slice(0, r.stop - r.start) for r in region)], expected, err_msg=label
                                )
                    continue
                for t, c, pos in truth.chunks(li):
                    key = f"{li}/{t}/{c}/" + "/".join(map(str, pos))
                    status, body = get(key)
                    dataset = truth.dataset(f, li, t, c)
                    info = stored_chunk(dataset, lvl.chunks, pos)
                    expected = None if dataset is None else _h5py_chunk(dataset, lvl.chunks, pos)
                    label = f"NGFF {ngff} {key}: {status}"
                    if status == 500:
                        failed[(li, t, c, pos)] = key
                    elif _passes_through(dataset, first, info):
                        mask, stored = dataset.id.read_direct_chunk(info.chunk_offset)  # type: ignore[union-attr]
                        assert status == 200 and mask == 0 and body == stored, label
                        passed_through.add((li, t, c, pos))
                        if expected is None:  # HDF5 cannot decode it; nor can the client: no wrong pixels
                            with pytest.raises(Exception):  # noqa: B017 - whichever error the codec raises
                                _decode_v2(body, meta)
                        else:
                            assert _decode_v2(body, meta) == expected, label
                    elif _never_written(dataset, info) and _fill(dataset) == _fill(first):
                        assert status == 404, label  # never written: zarr fills with the declared fill value
                    else:
                        assert status == 200 and expected is not None, label
                        assert _decode_v2(body, meta) == expected, label
        finally:
            conn.close()
    if v3:
        assert set(failed) == _expected_failures(case, truth, groups), ngff
    else:  # stored bytes go out as they are in NGFF 0.4, damaged or not: the client's zlib finds damage
        assert set(failed) == _expected_failures(case, truth) - passed_through, ngff
    errors = []
    for (li, t, c, pos), key in failed.items():
        with pytest.raises(ImsError) as caught:
            server.store.get_sync(key)  # the 500 stands for this error
        _assert_names(caught.value, case, truth, (li, t, c), groups[li][pos] if v3 else [pos])
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


def _convert(case: Case, tmp: Path, run: Callable[[Path, Path], object], name: str) -> Outcome:
    """A conversion: h5py's pixels in the output, or the error with nothing left behind."""
    target = tmp / name
    path = case.path
    try:
        run(path, target)
    except ImsError:
        assert list(tmp.iterdir()) == [], "a failed conversion left output or a temporary file behind"
        raise
    with h5py.File(path, "r") as f:
        _check_converted(target, f, case.truth(f))
    return WORKS


def _convert_zarr(case: Case, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    return _convert(case, tmp, to_ome_zarr, "out.zarr")


def _convert_ims(case: Case, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    return _convert(case, tmp, write_ims, "out.ims")


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


RUN: dict[str, Callable[[Case, Path, pytest.CaptureFixture[str]], Outcome]] = {
    "open": _open,
    "info": _info,
    "read": _read,
    "validate": _validate,
    "validate-deep": _validate_deep,
    "serve": _serve,
    "convert-zarr": _convert_zarr,
    "convert-ims": _convert_ims,
    "bioio": _bioio,
}


# --------------------------------------------------------------------------------------------
# the commands that write: none may destroy its input, whatever name the output is given


@dataclass(frozen=True)
class Writer:
    """A command that writes, as its command line for an input and an output."""

    argv: Callable[[Path, Path], list[str]]
    input_kind: str
    """``ims`` (an Imaris file) or ``zarr`` (an OME-Zarr folder): what the input is."""
    output_suffix: str
    """What the output's name ends with."""
    replaces: bool = True
    """Whether an existing output is replaced as a whole (an export only adds files to its folder)."""


WRITERS: dict[str, Writer] = {
    "convert-zarr": Writer(lambda i, o: ["convert", str(i), str(o), "--overwrite", "--quiet"], "ims", ".ome.zarr"),
    "convert-ims": Writer(lambda i, o: ["convert", str(i), str(o), "--overwrite", "--quiet"], "ims", ".ims"),
    "convert-nifti": Writer(lambda i, o: ["convert", str(i), str(o), "--overwrite", "--quiet"], "ims", ".nii.gz"),
    "convert-zarr-to-ims": Writer(lambda i, o: ["convert", str(i), str(o), "--overwrite", "--quiet"], "zarr", ".ims"),
    "refs": Writer(lambda i, o: ["refs", str(i), "-o", str(o), "--overwrite"], "ims", ".json"),
    "objects-export": Writer(
        lambda i, o: ["objects", str(i), "--export", str(o), "--overwrite", "--quiet"], "ims", "", replaces=False
    ),
}


def _same_file(source: Path, folder: Path, suffix: str, how: str) -> Path:
    """A name in ``folder`` for the file or folder ``source`` itself: the path, a symlink or a hard link."""
    if how == "path":
        return source
    target = folder / f"alias{suffix}"
    if how == "symlink":
        target.symlink_to(source.resolve(), target_is_directory=source.is_dir())
    else:
        os.link(source, target)
    return target


OUTPUT_VARIANTS = ("output == input", "output == input (symlink)", "output == input (hard link)", "output holds input")
INPUT_VARIANTS = ("input holds output",)
"""Where the input is a folder (an OME-Zarr): an output inside it."""


def output_for(variant: str, source: Path, folder: Path, writer: Writer) -> Path:
    """The output path a variant names for ``source`` (made in ``folder``)."""
    if variant == "output == input":
        return _same_file(source, folder, writer.output_suffix, "path")
    if variant == "output == input (symlink)":
        return _same_file(source, folder, writer.output_suffix, "symlink")
    if variant == "output == input (hard link)":
        if source.is_dir():
            pytest.skip("folders have no hard links")
        return _same_file(source, folder, writer.output_suffix, "hard link")
    if variant == "output holds input":
        return source.parent  # a zarr folder (as an earlier conversion made it) that holds the input
    if variant == "input holds output":
        return source / f"inner{writer.output_suffix}"
    raise AssertionError(variant)


def tree_digest(path: Path) -> dict[str, str]:
    """sha256 of a file, or of every file under a folder, by relative name."""
    import hashlib

    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }
