"""Sound Imaris files that use rarer HDF5 features: links to other files, virtual datasets,
reduced-precision types, fill values, odd filter pipelines, a user block, external raw storage
and group names that are not canonical. Unlike `corpus`, most of these are valid files whose
values h5py reads fine; each maker's docstring says what h5py reads (the ground truth).

Each maker takes the sound file (`corpus.sound_file`: 3 levels, 2 time points, 2 channels,
uint16, shuffle + gzip, level 0 stored (24, 96, 96) for an image of (20, 90, 70), chunks
(8, 32, 32)) and the path to write the variant to. Unless its docstring says otherwise, a
maker changes only level 0, time point 0, channel 0 (`corpus.LEVEL0`) and keeps its values,
shape and chunk shape, so h5py reads the same image as from the sound file. Some makers write
companion files beside ``out`` (see `companions`); they are named after ``out`` and referred
to by relative name, so a variant and its companions can be moved together. Every maker is
deterministic: the same input gives byte-identical files.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
from corpus import LEVEL0, data_path

from ims_store.format.hdf5lib import library

__all__ = [
    "VARIANTS",
    "Maker",
    "companions",
    "get_chunk_opts",
    "set_dont_filter_partial_chunks",
]

Maker = Callable[[Path, Path], None]
DATA = data_path(0, 0, 0)  # LEVEL0's Data
CHUNKS = (8, 32, 32)
DEFLATE_LEVEL = 2  # the sound file's
H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS = 0x0002
COMPANION_SUFFIXES = ("-target.ims", "-source.ims", "-raw.bin")


def companions(out: Path) -> list[Path]:
    """The files a maker wrote beside ``out`` (external link targets, VDS sources, raw data)."""
    return [p for p in (out.with_name(out.stem + s) for s in COMPANION_SUFFIXES) if p.exists()]


def _target(out: Path) -> Path:
    return out.with_name(out.stem + "-target.ims")


# ---------------------------------------------------------------------------------------------
# H5Pget_chunk_opts / H5Pset_chunk_opts, which h5py does not wrap (ctypes, on h5py's own libhdf5)


def _library() -> ctypes.CDLL:
    lib = library()
    if lib is None:
        raise RuntimeError("the HDF5 library h5py loaded cannot be found, so its chunk options cannot be set")
    return lib


def get_chunk_opts(dcpl: h5py.h5p.PropDCID) -> int:
    """H5Pget_chunk_opts of a dataset creation property list (keep ``dcpl`` referenced while
    calling: ``get_chunk_opts(ds.id.get_create_plist())`` is fine, but passing the id of a
    temporary plist is not, since h5py closes it as soon as the object is freed)."""
    opts = ctypes.c_uint(0)
    if _library().H5Pget_chunk_opts(dcpl.id, ctypes.byref(opts)) < 0:
        raise RuntimeError("H5Pget_chunk_opts failed (is the property list a chunked dataset creation one?)")
    return opts.value


def set_dont_filter_partial_chunks(dcpl: h5py.h5p.PropDCID) -> None:
    """Set H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS on a chunked dataset creation property list:
    HDF5 then stores the edge chunks (those that stick out of the dataset) unfiltered, while
    the chunk index still gives them a filter mask of 0."""
    if dcpl.get_layout() != h5py.h5d.CHUNKED:
        raise ValueError("set_dont_filter_partial_chunks needs a chunked layout: call dcpl.set_chunk first")
    opts = get_chunk_opts(dcpl) | H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS
    if _library().H5Pset_chunk_opts(dcpl.id, opts) < 0:
        raise RuntimeError("H5Pset_chunk_opts failed")


# ---------------------------------------------------------------------------------------------
# helpers


def _edit(edit: Callable[[h5py.File, Path], None]) -> Maker:
    """Copy ``good`` to ``out`` and edit ``out`` in place; ``edit`` gets the file and ``out``."""

    def make(good: Path, out: Path) -> None:
        shutil.copyfile(good, out)
        with h5py.File(out, "r+") as f:
            edit(f, out)

    make.__doc__ = edit.__doc__
    return make


def _text(obj: h5py.Group | h5py.Dataset, name: str) -> str:
    value = obj.attrs[name]
    if isinstance(value, np.ndarray):
        return b"".join(value.ravel().tolist()).decode("ascii")
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _image_size(group: h5py.Group) -> tuple[int, int, int]:
    return tuple(int(_text(group, f"ImageSize{axis}")) for axis in "ZYX")  # type: ignore[return-value]


def _gzip_dcpl(chunks: tuple[int, ...], *, shuffle: bool = True, deflate: bool = True) -> h5py.h5p.PropDCID:
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(chunks)
    dcpl.set_fill_value(np.zeros((), np.uint16))
    if shuffle:
        dcpl.set_shuffle()
    if deflate:
        dcpl.set_deflate(DEFLATE_LEVEL)
    return dcpl


def _create_low(
    group: h5py.Group, name: str, values: np.ndarray, dcpl: h5py.h5p.PropDCID, tid: h5py.h5t.TypeID | None = None
) -> None:
    """A dataset of file type ``tid`` (default little-endian uint16) written from ``values``
    (native uint16), so that HDF5 converts them to the file type."""
    tid = tid if tid is not None else h5py.h5t.STD_U16LE
    values = np.ascontiguousarray(values, np.uint16)
    dsid = h5py.h5d.create(group.id, name.encode(), tid, h5py.h5s.create_simple(values.shape), dcpl)
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, values)  # memory type NATIVE_UINT16: HDF5 converts


def _levels_and_timepoints(f: h5py.File) -> list[h5py.Group]:
    """Every DataSet/ResolutionLevel */TimePoint * group."""
    return [level[t] for _, level in sorted(f["DataSet"].items()) for t in sorted(level)]


def _rename_channel_1(new: str) -> Maker:
    def edit(f: h5py.File, out: Path) -> None:
        for timepoint in _levels_and_timepoints(f):
            timepoint.move("Channel 1", new)

    edit.__doc__ = (
        f"In every level and time point, ``Channel 1`` renamed to {new!r} (DataSetInfo/Channel 1 "
        f"kept). h5py reads channel 1's values of the sound file at "
        f"``DataSet/ResolutionLevel L/TimePoint T/{new}/Data``; ``Channel 1`` no longer exists."
    )
    return _edit(edit)


# ---------------------------------------------------------------------------------------------
# data in another file


def _external_data(*, compressed: bool, padding_bytes: int = 0, delete_target: bool = False) -> Maker:
    def make(good: Path, out: Path) -> None:
        shutil.copyfile(good, out)
        target = _target(out)
        with h5py.File(out, "r+") as f:
            values = f[DATA][...]
            del f[DATA]
            with h5py.File(target, "w") as t:
                if padding_bytes:  # unrelated data first, so Data's chunks lie far into the file
                    pattern = np.arange(padding_bytes, dtype=np.uint64).astype(np.uint8)
                    t.create_dataset("Padding", data=pattern)
                options = (
                    {"compression": "gzip", "compression_opts": DEFLATE_LEVEL, "shuffle": True} if compressed else {}
                )
                t.create_dataset(DATA, data=values, chunks=CHUNKS, fillvalue=0, **options)
            f[DATA] = h5py.ExternalLink(target.name, "/" + DATA)
        if delete_target:
            target.unlink()

    return make


_external_link_raw = _external_data(compressed=False)
_external_link_raw.__doc__ = """LEVEL0's Data is an external link (relative name) to
``<out stem>-target.ims``, a plain HDF5 file holding the same values uncompressed (chunked
(8, 32, 32)) at the same path. h5py reads the sound file's values (HDF5 looks for the target
beside ``out`` before the current directory); ``ds.file.filename`` is the target's."""

_external_link_gzip = _external_data(compressed=True)
_external_link_gzip.__doc__ = """As external-link-raw, with the target's Data shuffle + gzip.
h5py reads the sound file's values."""

_external_link_moved = _external_data(compressed=False, delete_target=True)
_external_link_moved.__doc__ = """As external-link-raw, then the target deleted: h5py raises
KeyError ("unable to open object (can't open file)") for LEVEL0's Data; everything else reads
as in the sound file."""


def _external_link_large_offsets(good: Path, out: Path) -> None:
    """As external-link-raw, but the target starts with an unrelated dataset bigger than
    ``out`` (at least 3 MB), so every chunk offset of Data lies past the end of ``out``: a
    reader that preads ``out`` at those offsets gets nothing. h5py reads the sound file's
    values."""
    padding = max(3 << 20, good.stat().st_size + (1 << 20))
    _external_data(compressed=False, padding_bytes=padding)(good, out)


def _external_link_group(good: Path, out: Path) -> None:
    """LEVEL0's whole ``Channel 0`` group (attributes, Data, histograms) moved into
    ``<out stem>-target.ims`` at the same path, replaced in ``out`` by an external link to it.
    h5py reads the sound file's values and attributes through the link."""
    shutil.copyfile(good, out)
    target = _target(out)
    with h5py.File(out, "r+") as f, h5py.File(target, "w") as t:
        parent = t.create_group(LEVEL0.rsplit("/", 1)[0])
        f.copy(f[LEVEL0], parent, name=LEVEL0.rsplit("/", 1)[1])
        del f[LEVEL0]
        f[LEVEL0] = h5py.ExternalLink(target.name, "/" + LEVEL0)


def _external_link_cycle(good: Path, out: Path) -> None:
    """LEVEL0's Data is an external link to ``<out stem>-target.ims``, whose Data is an
    external link back to ``out``'s: h5py raises KeyError (HDF5 gives up after its limit of
    16 link traversals, "too many links") for LEVEL0's Data."""
    shutil.copyfile(good, out)
    target = _target(out)
    with h5py.File(target, "w") as t:
        t[DATA] = h5py.ExternalLink(out.name, "/" + DATA)
    with h5py.File(out, "r+") as f:
        del f[DATA]
        f[DATA] = h5py.ExternalLink(target.name, "/" + DATA)


def _external_link_not_hdf5(good: Path, out: Path) -> None:
    """LEVEL0's Data is an external link to ``<out stem>-target.ims``, a text file: h5py raises
    KeyError ("unable to open object (can't open file)") for LEVEL0's Data."""
    shutil.copyfile(good, out)
    _target(out).write_text("this is not an HDF5 file\n" * 100)
    with h5py.File(out, "r+") as f:
        del f[DATA]
        f[DATA] = h5py.ExternalLink(_target(out).name, "/" + DATA)


def _vds(*, delete_source: bool) -> Maker:
    def make(good: Path, out: Path) -> None:
        shutil.copyfile(good, out)
        source = out.with_name(out.stem + "-source.ims")
        with h5py.File(out, "r+") as f:
            values = f[DATA][...]
            with h5py.File(source, "w") as s:
                s.create_dataset(
                    DATA, data=values, chunks=CHUNKS, fillvalue=0, compression="gzip",
                    compression_opts=DEFLATE_LEVEL, shuffle=True,
                )  # fmt: skip
            del f[DATA]
            layout = h5py.VirtualLayout(shape=values.shape, dtype=values.dtype)
            layout[...] = h5py.VirtualSource(source.name, "/" + DATA, shape=values.shape, dtype=values.dtype)
            f[LEVEL0].create_virtual_dataset("Data", layout, fillvalue=0)
        if delete_source:
            source.unlink()

    return make


_vds_ok = _vds(delete_source=False)
_vds_ok.__doc__ = """LEVEL0's Data is a virtual dataset (shape (24, 96, 96), no chunks, no
storage) mapping the whole of a dataset of the same shape in ``<out stem>-source.ims``
(relative name; HDF5 looks beside ``out`` first, then in the current directory). h5py reads the
sound file's values."""

_vds_missing = _vds(delete_source=True)
_vds_missing.__doc__ = """As vds, then the source file deleted: h5py raises nothing and reads
the VDS fill value, 0, everywhere in LEVEL0's Data (silently); the rest reads as in the sound
file."""


def _external_storage(good: Path, out: Path) -> None:
    """LEVEL0's Data is contiguous with its raw bytes (little-endian uint16, C order, from
    offset 0) in the external file ``<out stem>-raw.bin`` (relative name). HDF5 resolves that
    name against the current directory, not ``out``'s folder: h5py reads the sound file's values
    when run from ``out.parent`` or with ``HDF5_EXTFILE_PREFIX='${ORIGIN}'`` in the environment
    (or a dataset access property list with ``set_efile_prefix(b"${ORIGIN}")``); otherwise it
    raises OSError ("unable to open external raw data file"). ``get_offset()`` is None and
    ``chunks`` None."""
    shutil.copyfile(good, out)
    raw = out.with_name(out.stem + "-raw.bin")
    with h5py.File(out, "r+") as f:
        values = np.ascontiguousarray(f[DATA][...], "<u2")
        del f[DATA]
        raw.write_bytes(values.tobytes())  # written here: h5py would write relative to the CWD
        f[LEVEL0].create_dataset("Data", shape=values.shape, dtype="<u2", external=[(raw.name, 0, h5py.h5f.UNLIMITED)])


# ---------------------------------------------------------------------------------------------
# values that HDF5 converts or fills


def _fill_value_7(group: str) -> Callable[[h5py.File, Path], None]:
    def edit(f: h5py.File, out: Path) -> None:
        _refill(f, group)

    edit.__doc__ = f"""{group}'s Data recreated (same shape, chunks, shuffle + gzip) with fill
    value 7 and the chunks whose z index is 1 (z 8..15) never written: h5py reads 7 there and
    the sound file's values elsewhere; ``dataset.fillvalue`` is 7 and ``fill_value_defined()``
    is H5D_FILL_VALUE_USER_DEFINED (2); 18 of 27 chunks are allocated."""
    return edit


def _refill(f: h5py.File, group: str) -> None:
    values = f[group]["Data"][...]
    del f[group]["Data"]
    ds = f[group].create_dataset(
        "Data", shape=values.shape, dtype=values.dtype, chunks=CHUNKS, fillvalue=7,
        compression="gzip", compression_opts=DEFLATE_LEVEL, shuffle=True,
    )  # fmt: skip
    for z in range(0, values.shape[0], CHUNKS[0]):
        if z // CHUNKS[0] != 1:
            ds[z : z + CHUNKS[0]] = values[z : z + CHUNKS[0]]


def _reduced_precision(precision: int, offset: int, pad_one: bool) -> Callable[[h5py.File, Path], None]:
    def edit(f: h5py.File, out: Path) -> None:
        values = f[DATA][...] % (1 << precision)
        del f[DATA]
        tid = h5py.h5t.STD_U16LE.copy()
        tid.set_precision(precision)
        tid.set_offset(offset)
        if pad_one:
            tid.set_pad(h5py.h5t.PAD_ONE, h5py.h5t.PAD_ONE)
        _create_low(f[LEVEL0], "Data", values, _gzip_dcpl(CHUNKS), tid)

    return edit


_precision_12_offset_4 = _reduced_precision(12, 4, pad_one=False)
_precision_12_offset_4.__doc__ = """LEVEL0's Data of a uint16 type with precision 12 and bit
offset 4 (shuffle + gzip, chunks (8, 32, 32)), written from the sound file's values % 4096
through HDF5's conversion: the stored words are ``value << 4``. h5py reads (dtype uint16) the
sound file's values % 4096; ``tid.equal(h5py.h5t.STD_U16LE)`` is False."""

_padding_bits_one = _reduced_precision(12, 0, pad_one=True)
_padding_bits_one.__doc__ = """LEVEL0's Data of a uint16 type with precision 12, offset 0 and
padding bits set to one (shuffle + gzip): the stored words are ``0xF000 | value``. h5py reads
(dtype uint16) the sound file's values % 4096; ``tid.equal(h5py.h5t.STD_U16LE)`` is False."""


# ---------------------------------------------------------------------------------------------
# filter pipelines


def _partial_chunks_unfiltered(deflate: bool) -> Callable[[h5py.File, Path], None]:
    def edit(f: h5py.File, out: Path) -> None:
        # every dataset of level 0, so that they keep one shape (the level's)
        for timepoint in f["DataSet/ResolutionLevel 0"].values():
            for group in timepoint.values():
                size = _image_size(group)
                values = group["Data"][tuple(slice(0, n) for n in size)]
                del group["Data"]
                dcpl = _gzip_dcpl(CHUNKS, shuffle=True, deflate=deflate)
                set_dont_filter_partial_chunks(dcpl)
                _create_low(group, "Data", values, dcpl)

    return edit


_partial_shuffle = _partial_chunks_unfiltered(deflate=False)
_partial_shuffle.__doc__ = """Level 0's Data (every time point and channel) of exactly the image size of its attributes,
(20, 90, 70), chunks (8, 32, 32), filter shuffle only, with H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS:
the 19 edge chunks (sticking out of the dataset) are stored raw (unshuffled, zero padded) while
the chunk index gives them filter mask 0; the 8 inner ones are shuffled. h5py reads the sound
file's values of that region (shape (20, 90, 70) instead of (24, 96, 96))."""

_partial_deflate = _partial_chunks_unfiltered(deflate=True)
_partial_deflate.__doc__ = """As partial-chunks-unfiltered-shuffle with shuffle + deflate:
edge chunks stored raw (filter mask 0), inner ones shuffled and deflated. h5py reads the sound
file's values of the (20, 90, 70) region."""


def _fletcher32_then_deflate(f: h5py.File, out: Path) -> None:
    """LEVEL0's Data with the pipeline fletcher32, deflate (in that order; h5py's
    ``create_dataset(fletcher32=True, compression="gzip")`` would put fletcher32 last): each
    stored chunk inflates to the raw chunk plus a 4-byte checksum. h5py reads the sound file's
    values."""
    values = f[DATA][...]
    del f[DATA]
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(CHUNKS)
    dcpl.set_fill_value(np.zeros((), np.uint16))
    dcpl.set_fletcher32()
    dcpl.set_deflate(DEFLATE_LEVEL)
    _create_low(f[LEVEL0], "Data", values, dcpl)


def _deflate_then_fletcher32(f: h5py.File, out: Path) -> None:
    """LEVEL0's Data as h5py writes ``create_dataset(shuffle=True, compression="gzip",
    fletcher32=True)``: pipeline shuffle, deflate, fletcher32, so each stored chunk is a
    deflate stream followed by a 4-byte checksum of it. h5py reads the sound file's values."""
    values = f[DATA][...]
    del f[DATA]
    f[LEVEL0].create_dataset(
        "Data", data=values, chunks=CHUNKS, fillvalue=0, shuffle=True, compression="gzip",
        compression_opts=DEFLATE_LEVEL, fletcher32=True,
    )  # fmt: skip


LZ4_BLOCK_BYTES = 1


def _lz4_tiny_blocks(f: h5py.File, out: Path) -> None:
    """LEVEL0's Data compressed with hdf5plugin's LZ4 (filter 32004, no shuffle) in blocks of
    1 byte: every block is stored raw behind its own 4-byte length, so a stored chunk is
    12 + 5 x 16384 = 81932 bytes for a raw chunk of 16384 (5x bigger). h5py reads the sound
    file's values."""
    values = f[DATA][...]
    del f[DATA]
    f[LEVEL0].create_dataset("Data", data=values, chunks=CHUNKS, fillvalue=0, **hdf5plugin.LZ4(nbytes=LZ4_BLOCK_BYTES))


# ---------------------------------------------------------------------------------------------
# the whole file


def _copy_attributes(src: h5py.HLObject, dst: h5py.HLObject) -> None:
    """Every attribute of ``src`` onto ``dst`` with its own type and shape (char arrays stay)."""
    for name in src.attrs:
        old = src.attrs.get_id(name)
        tid = old.get_type()
        buf = np.empty(old.shape, dtype=old.dtype)
        old.read(buf, mtype=tid)
        new = h5py.h5a.create(dst.id, name.encode(), tid, old.get_space())
        new.write(buf, mtype=tid)


USERBLOCK_SIZE = 512


def _userblock(good: Path, out: Path) -> None:
    """The whole file rewritten (every group, dataset and attribute copied, filters and chunks
    kept) into a file with a 512-byte user block, which holds a line of text: the HDF5 signature
    is at byte 512 and every address HDF5 reports (``get_offset``, chunk ``byte_offset``) is
    already absolute in the file. h5py reads everything as in the sound file."""
    with h5py.File(good, "r") as src, h5py.File(out, "w", userblock_size=USERBLOCK_SIZE) as dst:
        _copy_attributes(src, dst)
        for name in src:
            link = src.get(name, getlink=True)
            if isinstance(link, h5py.HardLink):
                src.copy(src[name], dst, name=name)
            else:
                dst[name] = link
    text = b"Imaris file with a user block, written by ims_store's tests\n"
    with open(out, "r+b") as fh:
        fh.write((text * (USERBLOCK_SIZE // len(text) + 1))[:USERBLOCK_SIZE])


# ---------------------------------------------------------------------------------------------
# group names that are not canonical


def _noncanonical_both(f: h5py.File, out: Path) -> None:
    """In every level and time point, ``Channel 01`` added beside ``Channel 1``: a copy of it
    (attributes, histograms) whose Data holds channel 1's values + 1000 (same shape, chunks,
    shuffle + gzip). h5py reads channel 1's values at ``Channel 1`` and those + 1000 at
    ``Channel 01``."""
    for timepoint in _levels_and_timepoints(f):
        timepoint.copy("Channel 1", "Channel 01")
        old = timepoint["Channel 1/Data"]
        values = np.minimum(old[...].astype(np.uint32) + 1000, np.iinfo(np.uint16).max).astype(np.uint16)
        del timepoint["Channel 01/Data"]
        timepoint["Channel 01"].create_dataset(
            "Data", data=values, chunks=old.chunks, fillvalue=0, shuffle=True, compression="gzip",
            compression_opts=DEFLATE_LEVEL,
        )  # fmt: skip


def _noncanonical_level(f: h5py.File, out: Path) -> None:
    """``DataSet/ResolutionLevel 1`` renamed to ``ResolutionLevel 01``: h5py reads level 1 of
    the sound file there; ``ResolutionLevel 1`` no longer exists."""
    f["DataSet"].move("ResolutionLevel 1", "ResolutionLevel 01")


VARIANTS: dict[str, Maker] = {
    "external-link-raw": _external_link_raw,
    "external-link-gzip": _external_link_gzip,
    "external-link-group": _external_link_group,
    "external-link-large-offsets": _external_link_large_offsets,
    "external-link-moved": _external_link_moved,
    "external-link-cycle": _external_link_cycle,
    "external-link-not-hdf5": _external_link_not_hdf5,
    "vds": _vds_ok,
    "vds-missing-source": _vds_missing,
    "fill-value-7": _edit(_fill_value_7(LEVEL0)),
    # a fill value that is not the level's first dataset's
    "fill-value-7-other-channel": _edit(_fill_value_7("DataSet/ResolutionLevel 0/TimePoint 1/Channel 1")),
    "precision-12-offset-4": _edit(_precision_12_offset_4),
    "padding-bits-one": _edit(_padding_bits_one),
    "partial-chunks-unfiltered-shuffle": _edit(_partial_shuffle),
    "partial-chunks-unfiltered-deflate": _edit(_partial_deflate),
    "fletcher32-then-deflate": _edit(_fletcher32_then_deflate),
    "deflate-then-fletcher32": _edit(_deflate_then_fletcher32),
    "lz4-tiny-blocks": _edit(_lz4_tiny_blocks),
    "userblock": _userblock,
    "external-storage": _external_storage,
    "noncanonical-channel-01": _rename_channel_1("Channel 01"),
    "noncanonical-both": _edit(_noncanonical_both),
    "noncanonical-level-00": _edit(_noncanonical_level),
    "noncanonical-unicode-digit": _rename_channel_1("Channel \u0661"),
    "noncanonical-trailing-newline": _rename_channel_1("Channel 1\n"),
}
