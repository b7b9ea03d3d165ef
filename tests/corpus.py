"""Malformed Imaris files, generated from a sound one: what arrives truncated, half copied or
written by odd tools. Each maker takes the sound file and the path to write the variant to.

`OBJECT_VARIANTS` (part of `VARIANTS`) keep the sound image and add analysis objects
(`ims_store.write.examples`: Scene8 spots with tracks and statistics, Imaris 9+ surfaces, filaments with
statistics; or old-layout spots and surfaces) with one table damaged: tables whose shape claims
1e8 to 2e9 rows the file never stored (`NEVER_WRITTEN`), and contradictions between tables."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from ims_store.format.attributes import write_text
from ims_store.write.examples import (
    OtherSpec,
    cells_spots,
    nuclei_megasurfaces,
    nuclei_surfaces,
    write_scene,
    write_scene8,
)
from ims_store.write.synthetic import make_example_ims

Maker = Callable[[Path, Path], None]
LEVEL0 = "DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"
# the damaged chunks, as (level, time point, channel, (z, y, x) on the chunk grid); away from 0
# on purpose, so that an error naming the wrong level, time point or chunk shows
CORRUPT_CHUNK = (0, 1, 0, (1, 2, 1))
PAST_EOF_CHUNK = (1, 1, 0, (1, 0, 1))


def data_path(level: int, t: int, c: int) -> str:
    """The Data dataset of a (level, time point, channel) of the sound file (numbers are indexes)."""
    return f"DataSet/ResolutionLevel {level}/TimePoint {t}/Channel {c}/Data"


def _chunk_info(f: h5py.File, where: tuple[int, int, int, tuple[int, int, int]]) -> h5py.h5d.StoreInfo:
    level, t, c, chunk = where
    dataset = f[data_path(level, t, c)]
    return dataset.id.get_chunk_info_by_coord(tuple(i * n for i, n in zip(chunk, dataset.chunks, strict=True)))


def sound_file(path: Path) -> Path:
    """3 levels, 2 time points, 2 channels, uint16, shuffle + gzip, padded."""
    return make_example_ims(
        path, shape=(20, 90, 70), channels=2, timepoints=2, threshold_voxels=3000, chunks=(8, 32, 32)
    )


def _copy(edit: Callable[[h5py.File], None]) -> Maker:
    def make(good: Path, out: Path) -> None:
        shutil.copyfile(good, out)
        with h5py.File(out, "r+") as f:
            edit(f)

    return make


def _truncate(fraction: float) -> Maker:
    def make(good: Path, out: Path) -> None:
        data = good.read_bytes()
        out.write_bytes(data[: int(len(data) * fraction)])

    return make


def _set(group: str, name: str, value: str) -> Maker:
    return _copy(lambda f: write_text(f[group], name, value))


def _delete(path: str) -> Maker:
    def edit(f: h5py.File) -> None:
        del f[path]

    return _copy(edit)


def _replace_data(level: int, make_data: Callable[[h5py.Dataset], np.ndarray], **create: object) -> Maker:
    def edit(f: h5py.File) -> None:
        group = f[f"DataSet/ResolutionLevel {level}/TimePoint 0/Channel 0"]
        values = make_data(group["Data"])
        del group["Data"]
        group.create_dataset("Data", data=values, **create)

    return _copy(edit)


def _corrupt_chunk(good: Path, out: Path) -> None:
    shutil.copyfile(good, out)
    with h5py.File(out, "r") as f:
        info = _chunk_info(f, CORRUPT_CHUNK)
    with open(out, "r+b") as fh:
        fh.seek(info.byte_offset + 4)
        fh.write(bytes(range(256))[: max(8, info.size - 8)])


def _chunk_past_eof(good: Path, out: Path) -> None:
    """A copy cut short inside the chunk data: the HDF5 structures are intact."""
    with h5py.File(good, "r") as f:
        ds = f[f"{LEVEL0}/Data"]
        infos = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
    last = max(infos, key=lambda i: i.byte_offset)
    shutil.copyfile(good, out)
    with open(out, "r+b") as fh:
        fh.truncate(last.byte_offset + last.size // 2)


def _chunk_index_past_eof(good: Path, out: Path) -> None:
    """One chunk's address in the chunk index (a version 1 B-tree, which has no checksum) moved
    so that its bytes run past the end of the file. HDF5 opens the file, since it reads chunk
    indexes only when the data is read; the file size is untouched."""
    shutil.copyfile(good, out)
    with h5py.File(out, "r") as f:
        info = _chunk_info(f, PAST_EOF_CHUNK)
    # a B-tree key: chunk size, filter mask, the chunk's offset in elements (plus a 0 for the
    # element itself); the child pointer after it is the chunk's file address
    key = struct.pack("<II4Q", info.size, info.filter_mask, *info.chunk_offset, 0)
    data = bytearray(out.read_bytes())
    record = key + struct.pack("<Q", info.byte_offset)
    at = data.find(record)
    if at < 0 or data.find(record, at + 1) >= 0:
        raise RuntimeError(f"the chunk index record of {PAST_EOF_CHUNK} is not unique in {out}")
    data[at + len(key) : at + len(record)] = struct.pack("<Q", len(data) - info.size // 2)
    out.write_bytes(data)


def _filter_masks(group: str, masks: dict[tuple[int, int, int], int], **create: object) -> Maker:
    """``group``'s Data rewritten with the filters ``create`` names, then the chunks in ``masks``
    stored again with those filter masks: bit i set means filter i was skipped for the chunk,
    so the chunk holds the output of the other filters only (the pipeline is shuffle, deflate or
    deflate alone here, so a skipped deflate leaves shuffled or raw bytes)."""

    def edit(f: h5py.File) -> None:
        values = f[group]["Data"][...]
        chunks = f[group]["Data"].chunks
        del f[group]["Data"]
        dataset = f[group].create_dataset("Data", data=values, chunks=chunks, **create)
        shuffled = bool(create.get("shuffle"))
        for chunk, mask in masks.items():
            origin = tuple(i * n for i, n in zip(chunk, chunks, strict=True))
            block = values[tuple(slice(o, o + n) for o, n in zip(origin, chunks, strict=True))]
            raw = np.ascontiguousarray(block, "<u2").tobytes()
            if shuffled and not mask & 1:  # HDF5 shuffle: all low bytes, then all high bytes
                raw = np.frombuffer(raw, np.uint8).reshape(-1, 2).T.tobytes()
            dataset.id.write_direct_chunk(origin, raw, filter_mask=mask)

    return _copy(edit)


def _unknown_filter(good: Path, out: Path) -> None:
    shutil.copyfile(good, out)
    with h5py.File(out, "r+") as f:
        group = f[LEVEL0]
        shape, chunks = group["Data"].shape, group["Data"].chunks
        del group["Data"]
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk(chunks)
        dcpl.set_filter(40000, h5py.h5z.FLAG_OPTIONAL, (1, 2))  # registered nowhere
        dsid = h5py.h5d.create(group.id, b"Data", h5py.h5t.NATIVE_UINT16, h5py.h5s.create_simple(shape), dcpl)
        dsid.write_direct_chunk((0, 0, 0), bytes(2 * int(np.prod(chunks))))


def _garbage_text(f: h5py.File) -> None:
    attr_type = h5py.h5t.C_S1.copy()
    attr_type.set_size(1)
    for group, name in (("DataSetInfo/Image", "Name"), ("DataSetInfo/Channel 0", "Color"), (LEVEL0, "ImageSizeX")):
        del f[group].attrs[name]
        raw = np.frombuffer(bytes([0xFF, 0x00, 0x81, 0x0A, 0x7F, 0xE9]), dtype="S1")
        attr = h5py.h5a.create(f[group].id, name.encode(), attr_type, h5py.h5s.create_simple((raw.size,)))
        attr.write(raw, mtype=attr.get_type())


def _levels_disagree_on_channels(f: h5py.File) -> None:
    del f["DataSet/ResolutionLevel 1/TimePoint 0/Channel 1"]


def _levels_disagree_on_time(f: h5py.File) -> None:
    del f["DataSet/ResolutionLevel 2/TimePoint 1"]


def _level_gap(f: h5py.File) -> None:
    f.move("DataSet/ResolutionLevel 2", "DataSet/ResolutionLevel 5")
    del f["DataSet/ResolutionLevel 1"]


def _softlink_loop(f: h5py.File) -> None:
    f.move("DataSet", "Stored")
    f["DataSet"] = h5py.SoftLink("/Loop")
    f["Loop"] = h5py.SoftLink("/DataSet")


def _external_link(f: h5py.File) -> None:
    f.move("DataSet", "Stored")
    f["DataSet"] = h5py.ExternalLink("elsewhere.ims", "/DataSet")


def _dataset_instead_of_group(f: h5py.File) -> None:
    del f["DataSet"]
    f["DataSet"] = np.zeros(4)


def _no_timepoints(f: h5py.File) -> None:
    for name in list(f["DataSet/ResolutionLevel 0"]):
        del f[f"DataSet/ResolutionLevel 0/{name}"]


def _not_imaris(good: Path, out: Path) -> None:
    with h5py.File(out, "w") as f:
        f["images/0"] = np.zeros((4, 4), np.uint8)


def _signature_then_garbage(good: Path, out: Path) -> None:
    out.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 40)


P8, S8, F8 = "Scene8/Content/Points0", "Scene8/Content/MegaSurfaces0", "Scene8/Content/Filaments0"
P, S = "Scene/Content/Points0", "Scene/Content/Surfaces0"


def dendrites() -> OtherSpec:
    """A filaments object with statistics only (its geometry is not read)."""
    return OtherSpec(
        "Filaments0",
        "Dendrites",
        stats=[
            ("Total Number of Filaments", "", "Overall", {}, -1, -1, 1.0),
            ("Dendrite Length", "um", "Dendrite", {}, 5, 0, 12.5),
        ],
    )


def with_objects(layout: str) -> Maker:
    """The sound file with objects in ``layout``: Scene8 spots with tracks and statistics,
    Imaris 9+ surfaces and filaments; or old-layout (Scene) spots and surfaces."""

    def make(good: Path, out: Path) -> None:
        shutil.copyfile(good, out)
        if layout == "Scene8":
            write_scene8(out, [cells_spots(), nuclei_megasurfaces(), dendrites()])
        else:
            write_scene(out, [cells_spots(), nuclei_surfaces()])

    return make


def _objects_edit(layout: str, edit: Callable[[h5py.File], None]) -> Maker:
    base = with_objects(layout)

    def make(good: Path, out: Path) -> None:
        base(good, out)
        with h5py.File(out, "r+") as f:
            edit(f)

    return make


def _never_written(table: str, rows: int, layout: str = "Scene8", **create: object) -> Maker:
    """``table`` replaced by a dataset of its type claiming ``rows`` rows (its other dimensions
    kept), none of them stored: chunked with no chunk written unless ``create`` says otherwise."""

    def edit(f: h5py.File) -> None:
        old = f[table]
        shape, dtype = (rows, *old.shape[1:]), old.dtype
        del f[table]
        options = {"chunks": (1024, *shape[1:]), "maxshape": (None, *shape[1:])} | create
        f.create_dataset(table, shape=shape, dtype=dtype, **options)

    return _objects_edit(layout, edit)


def _deflate_claim(table: str, rows: int) -> Maker:
    """``table`` as one gzip chunk of ``rows`` rows whose stored bytes are a few hundred: more
    than deflate can expand them to."""

    def edit(f: h5py.File) -> None:
        dtype = f[table].dtype
        del f[table]
        ds = f.create_dataset(table, shape=(rows,), dtype=dtype, chunks=(rows,), compression="gzip")
        ds.id.write_direct_chunk((0,), bytes(300))

    return _objects_edit("Scene8", edit)


def _edit_table(table: str, field: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        data = f[table][()]
        data[field] = change(data[field].copy())
        del f[table]
        f[table] = data

    return edit


def _empty_main_track_table(f: h5py.File) -> None:
    data = f[f"{P8}/MainTrackTable"][()]
    del f[f"{P8}/MainTrackTable"]
    f[f"{P8}/MainTrackTable"] = data[:0]


def _old_self_loop(f: h5py.File) -> None:
    edges = f[f"{P}/Edges"][()]
    edges[1] = [1, 1]
    f[f"{P}/Edges"][...] = edges


def _surface_info_row_missing(f: h5py.File) -> None:
    data = f[f"{S8}/SurfaceModelInfo"][()]
    del f[f"{S8}/SurfaceModelInfo"]
    f[f"{S8}/SurfaceModelInfo"] = data[:1]


# the tables of the objects whose shape claims rows never stored (the file stays < 1 MB)
NEVER_WRITTEN: dict[str, Maker] = {
    "objects-spot-rows-never-written": _never_written(f"{P8}/Spot", 2 * 10**9),
    "objects-spot-time-offset-rows-never-written": _never_written(f"{P8}/SpotTimeOffset", 10**9),
    "objects-statistics-rows-never-written": _never_written(f"{P8}/StatisticsValue", 10**9),
    "objects-statistics-type-rows-never-written": _never_written(f"{S8}/StatisticsType", 10**8),
    "objects-track-edge-rows-never-written": _never_written(f"{P8}/TrackEdge0", 10**9),
    "objects-surface-model-rows-never-written": _never_written(f"{S8}/SurfaceModel", 10**8),
    "objects-surface-info-rows-never-written": _never_written(f"{S8}/SurfaceModelInfo", 10**8),
    "objects-filament-statistics-rows-never-written": _never_written(f"{F8}/StatisticsValue", 10**9),
    "objects-contiguous-spot-rows-never-written": _never_written(f"{P8}/Spot", 10**8, chunks=None, maxshape=None),
    "objects-deflate-cannot-hold-the-rows": _deflate_claim(f"{P8}/Spot", 10**8),
    "objects-old-edges-rows-never-written": _never_written(f"{P}/Edges", 2 * 10**9, "Scene"),
    "objects-old-coords-rows-never-written": _never_written(f"{P}/CoordsXYZR", 10**9, "Scene"),
    "objects-old-vertices-rows-never-written": _never_written(f"{S}/Vertices", 10**9, "Scene"),
    "objects-old-triangles-rows-never-written": _never_written(f"{S}/Triangles", 10**9, "Scene"),
}

OBJECT_VARIANTS: dict[str, Maker] = {
    **NEVER_WRITTEN,
    # spot 1 (time point 0) joined to itself; spots 3 and 4 (both time point 1) joined both ways
    "objects-track-edge-self-loop": _objects_edit(
        "Scene8", _edit_table(f"{P8}/TrackEdge0", "ID_ObjectB", lambda v: np.array([2, 1, 4]))
    ),
    "objects-track-edges-cycle": _objects_edit(
        "Scene8",
        lambda f: (
            _edit_table(f"{P8}/TrackEdge0", "ID_ObjectA", lambda v: np.array([0, 3, 4]))(f),
            _edit_table(f"{P8}/TrackEdge0", "ID_ObjectB", lambda v: np.array([2, 4, 3]))(f),
        ),
    ),
    "objects-old-edge-self-loop": _objects_edit("Scene", _old_self_loop),
    "objects-main-track-table-empty": _objects_edit("Scene8", _empty_main_track_table),
    # both tracks claim all spots of TrackObject0 (ranges that overlap select rows many times over)
    "objects-track-ranges-overlap": _objects_edit(
        "Scene8",
        lambda f: (
            _edit_table(f"{P8}/Track0", "IndexTrackObjectBegin", lambda v: np.zeros_like(v))(f),
            _edit_table(f"{P8}/Track0", "IndexTrackObjectEnd", lambda v: np.full_like(v, 5))(f),
        ),
    ),
    "objects-statistics-of-a-missing-spot": _objects_edit(
        "Scene8", _edit_table(f"{P8}/StatisticsValue", "ID_Object", lambda v: np.where(v == 4, 99, v))
    ),
    "objects-statistics-of-a-missing-surface": _objects_edit(
        "Scene8", _edit_table(f"{S8}/StatisticsValue", "ID_Object", lambda v: np.where(v == 8, 9, v))
    ),
    "objects-surface-time-offset-disagrees": _objects_edit(
        "Scene8", _edit_table(f"{S8}/SurfaceModel", "ID_Time", lambda v: v[::-1].copy())
    ),
    "objects-surface-info-row-missing": _objects_edit("Scene8", _surface_info_row_missing),
    "objects-surface-id-twice": _objects_edit(
        "Scene8", _edit_table(f"{S8}/SurfaceModel", "ID", lambda v: np.full_like(v, 7))
    ),
    "objects-surface-triangles-negative": _objects_edit(
        "Scene8", _edit_table(f"{S8}/SurfaceModelInfo", "NumberOfTriangles", lambda v: -v)
    ),
}

IMAGE_CONTRACT_OBJECT_VARIANTS = (
    "objects-spot-rows-never-written",
    "objects-surface-model-rows-never-written",
    "objects-filament-statistics-rows-never-written",
    "objects-old-edges-rows-never-written",
)

VARIANTS: dict[str, Maker] = {
    "truncated-10pct": _truncate(0.10),
    "truncated-50pct": _truncate(0.50),
    "truncated-90pct": _truncate(0.90),
    "truncated-99pct": _truncate(0.99),
    "chunk-past-eof": _chunk_past_eof,
    "chunk-index-past-eof": _chunk_index_past_eof,
    "zero-length": lambda good, out: out.write_bytes(b""),
    "directory": lambda good, out: out.mkdir(),
    "text-file": lambda good, out: out.write_text("this is not an Imaris file\n" * 50),
    "hdf5-signature-then-garbage": _signature_then_garbage,
    "hdf5-not-imaris": _not_imaris,
    "corrupted-chunk": _corrupt_chunk,
    "missing-data-level0": _delete(f"{LEVEL0}/Data"),
    "missing-data-level1": _delete("DataSet/ResolutionLevel 1/TimePoint 0/Channel 0/Data"),
    "missing-data-other-channel": _delete("DataSet/ResolutionLevel 0/TimePoint 1/Channel 1/Data"),
    "imagesize-missing": _copy(lambda f: f[LEVEL0].attrs.__delitem__("ImageSizeX")),
    "imagesize-missing-level1": _copy(
        lambda f: f["DataSet/ResolutionLevel 1/TimePoint 0/Channel 0"].attrs.__delitem__("ImageSizeY")
    ),
    "imagesize-not-a-number": _set(LEVEL0, "ImageSizeX", "seventy"),
    "imagesize-negative": _set(LEVEL0, "ImageSizeZ", "-5"),
    "imagesize-zero": _set(LEVEL0, "ImageSizeY", "0"),
    "imagesize-nan": _set(LEVEL0, "ImageSizeX", "nan"),
    "imagesize-huge": _set(LEVEL0, "ImageSizeX", "1e12"),
    "imagesize-larger-than-data": _set(LEVEL0, "ImageSizeY", "97"),
    "imagesize-fractional": _set(LEVEL0, "ImageSizeX", "69.5"),
    "data-wrong-rank": _replace_data(0, lambda ds: ds[0]),
    "data-wrong-dtype": _replace_data(0, lambda ds: ds[...].astype(np.complex64)),
    "data-string-dtype": _replace_data(0, lambda ds: np.array([b"abc"] * 4)),
    "data-other-type-in-another-channel": _copy(
        lambda f: (
            f["DataSet/ResolutionLevel 0/TimePoint 1/Channel 1"].__delitem__("Data"),
            f["DataSet/ResolutionLevel 0/TimePoint 1/Channel 1"].create_dataset(
                "Data", data=np.zeros((24, 96, 96), np.float32), chunks=(8, 32, 32)
            ),
        )
    ),
    "extmax-below-extmin": _set("DataSetInfo/Image", "ExtMax0", "-100"),
    "extents-not-numbers": _set("DataSetInfo/Image", "ExtMin1", "left"),
    "garbage-bytes-in-text": _copy(_garbage_text),
    "level-missing-in-the-middle": _copy(_level_gap),
    "channels-differ-between-levels": _copy(_levels_disagree_on_channels),
    "timepoints-differ-between-levels": _copy(_levels_disagree_on_time),
    "unknown-filter": _unknown_filter,
    # level 0's pipeline becomes deflate alone (its first dataset sets it); one chunk stored raw
    "filter-mask-raw-chunk": _filter_masks(LEVEL0, {(1, 2, 0): 0b1}, compression="gzip", compression_opts=2),
    # same pipeline as the level (shuffle, deflate): one chunk only shuffled, one stored raw
    "filter-mask-deflate-skipped": _filter_masks(
        "DataSet/ResolutionLevel 0/TimePoint 1/Channel 1",
        {(2, 1, 2): 0b10, (0, 2, 1): 0b11},
        compression="gzip",
        compression_opts=2,
        shuffle=True,
    ),
    "softlink-loop": _copy(_softlink_loop),
    "external-link": _copy(_external_link),
    "dataset-instead-of-group": _copy(_dataset_instead_of_group),
    "no-timepoints": _copy(_no_timepoints),
    # the image commands never read the objects: one variant per object group shows that they
    # stay untouched by damage there (test_objects_hardening runs every object variant)
    **{name: OBJECT_VARIANTS[name] for name in IMAGE_CONTRACT_OBJECT_VARIANTS},
}
