"""HDF5 filter pipelines: which zarr codecs can declare them, and decoders for the rest.

One table (`FILTERS`) says, for every HDF5 filter ims_store knows, how zarr v2 and zarr v3
metadata can declare it (so that stored chunk bytes can be served untouched) and how to
decode it here. A pipeline with any filter missing from the table, or a chunk whose filter
mask says some filters were skipped, is decoded by HDF5 itself (through h5py, with
``hdf5plugin`` providing the plugins).

>>> plan = plan_codecs((Filter(2, "shuffle", 1, (2,)), Filter(1, "deflate", 1, (2,))), np.dtype("<u2"))
>>> plan.v2_compressor, plan.v2_filters
({'id': 'zlib', 'level': 2}, [{'id': 'shuffle', 'elementsize': 2}])
"""

from __future__ import annotations

import struct
import zlib as _stdlib_zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numcodecs import LZ4 as _NumcodecsLZ4

from .layout import Filter

try:  # ISA-L compresses the same zlib streams several times faster than the standard library
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a core dependency; keep working without it
    _zlib = _stdlib_zlib  # type: ignore[assignment]

try:  # libdeflate inflates whole chunks of known size ~20% faster still (benchmarks/bench_read.py)
    import deflate as _libdeflate
except ImportError:  # pragma: no cover - a core dependency; ISA-L takes over without it
    _libdeflate = None

__all__ = [
    "DEFLATE",
    "FILTERS",
    "HDF5_BUILTIN_FILTERS",
    "LZ4",
    "RAW",
    "SHUFFLE",
    "CodecPlan",
    "FilterCodec",
    "UnsupportedFilter",
    "decode_chunk",
    "deflate",
    "encode_chunk",
    "inflate",
    "lz4_hdf5_decode",
    "lz4_hdf5_encode",
    "shuffle",
    "plan_codecs",
    "unshuffle",
]

#: what decoders take and return: anything with the buffer protocol, as one flat run of bytes
Buffer = bytes | bytearray | memoryview | np.ndarray

DEFLATE = 1
SHUFFLE = 2
LZ4 = 32004

#: filters every HDF5 library has (fletcher32, nbit, scale-offset): not decoded here, but HDF5
#: (and so Imaris) reads them; ims_store reads such datasets through HDF5
HDF5_BUILTIN_FILTERS = frozenset({3, 5, 6})


class UnsupportedFilter(Exception):
    """Raised by `decode_chunk` for a pipeline it cannot decode natively (HDF5 must do it)."""


def inflate(data: bytes | memoryview, nbytes: int | None = None) -> bytes:
    """Inflate a zlib stream (HDF5 deflate chunks are zlib-framed, not gzip).

    With the decoded size known, libdeflate decodes in one call (and checks that size and the
    stream's Adler-32); otherwise ISA-L streams it.
    """
    if nbytes and _libdeflate is not None:
        return _libdeflate.zlib_decompress(data, nbytes)
    if nbytes:
        return _zlib.decompress(data, bufsize=nbytes)
    return _zlib.decompress(data)


def deflate(data: Buffer, level: int = 2) -> bytes:
    """Compress to a zlib stream, as HDF5's deflate filter stores it.

    ISA-L offers levels 1-3 (level 1-2 matches zlib's ratio on microscopy data at over 10x the
    speed); level 0 (stored) and levels above 3 use the standard library.
    """
    if 1 <= level <= 3 and _zlib is not _stdlib_zlib:
        return _zlib.compress(data, level)
    return _stdlib_zlib.compress(data, level)


def _byte_planes(data: Buffer, elementsize: int) -> tuple[np.ndarray, int, int, np.ndarray]:
    """(input bytes, elements, bytes in whole elements, output buffer) for (un)shuffling."""
    buf = np.frombuffer(data, dtype=np.uint8)
    count = buf.size // elementsize
    out = np.empty(buf.size, dtype=np.uint8)
    out[count * elementsize :] = buf[count * elementsize :]  # a partial trailing element stays as it is
    return buf, count, count * elementsize, out


def shuffle(data: Buffer, elementsize: int) -> Buffer:
    """HDF5's byte shuffle: all first bytes of each element, then all second bytes, ..."""
    if elementsize <= 1:
        return data
    buf, count, body, out = _byte_planes(data, elementsize)
    word = _WORDS.get(elementsize)
    if word is not None:
        # whole-array shifts run at memory speed, unlike a strided byte transpose
        values = buf[:body].view(word)
        shifted = np.empty_like(values)
        for i in range(elementsize):
            np.right_shift(values, 8 * i, out=shifted)
            np.copyto(out[i * count : (i + 1) * count], shifted, casting="unsafe")  # keeps the low byte
    else:
        out[:body].reshape(elementsize, count)[...] = buf[:body].reshape(count, elementsize).T
    return out


def unshuffle(data: Buffer, elementsize: int) -> Buffer:
    """Undo HDF5's byte shuffle (byte-identical to numcodecs ``Shuffle(elementsize)``).

    A trailing remainder shorter than one element is stored unshuffled, as HDF5 does.
    """
    if elementsize <= 1:
        return data
    buf, count, body, out = _byte_planes(data, elementsize)
    word = _WORDS.get(elementsize)
    if word is not None:
        # rebuild each little-endian word from its byte planes: shifts and ors at memory speed
        values = out[:body].view(word)
        values[...] = buf[(elementsize - 1) * count : body]
        for i in range(elementsize - 2, -1, -1):
            np.left_shift(values, 8, out=values)
            np.bitwise_or(values, buf[i * count : (i + 1) * count], out=values)
    else:
        out[:body].reshape(count, elementsize)[...] = buf[:body].reshape(elementsize, count).T
    return out


_WORDS = {2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}


_lz4 = _NumcodecsLZ4()
_LZ4_HEADER = struct.Struct(">QI")
_LZ4_BLOCK = struct.Struct(">I")


def lz4_hdf5_encode(data: Buffer, block_size: int = 1 << 30) -> bytes:
    """Encode in HDF5's LZ4 framing (see `lz4_hdf5_decode`), as hdf5plugin's filter 32004 does."""
    view = memoryview(data).cast("B")
    total = view.nbytes
    block_size = max(1, min(block_size, total or 1))
    parts = [_LZ4_HEADER.pack(total, block_size)]
    for start in range(0, total, block_size):
        block = view[start : start + block_size]
        packed = _lz4.encode(block)[4:]  # drop numcodecs' own size prefix
        if len(packed) >= len(block):
            packed = bytes(block)  # incompressible: stored raw, length == block size
        parts.append(_LZ4_BLOCK.pack(len(packed)))
        parts.append(packed)
    return b"".join(parts)


def lz4_hdf5_decode(data: bytes | memoryview, nbytes: int | None = None) -> bytearray:
    """Decode HDF5's LZ4 framing (filter 32004).

    Layout: 8-byte big-endian original size, 4-byte big-endian block size, then per block a
    4-byte big-endian compressed length and the LZ4 block (stored raw when that length equals
    the block's original size). numcodecs' ``LZ4`` frames blocks differently (a 4-byte
    little-endian size prefix), so each block is re-prefixed for it.
    """
    view = memoryview(data)
    total, block_size = _LZ4_HEADER.unpack_from(view, 0)
    if block_size <= 0 and total:
        raise ValueError("LZ4 chunk header has a zero block size")
    pos = _LZ4_HEADER.size
    out = bytearray(total)
    done = 0
    while done < total:
        want = min(block_size, total - done)
        (length,) = _LZ4_BLOCK.unpack_from(view, pos)
        pos += _LZ4_BLOCK.size
        block = view[pos : pos + length]
        if len(block) != length:
            raise ValueError("LZ4 chunk is shorter than its block headers say")
        pos += length
        if length == want:
            out[done : done + want] = block
        else:
            decoded = _lz4.decode(struct.pack("<i", want) + bytes(block))
            if len(decoded) != want:
                raise ValueError("LZ4 block decoded to the wrong size")
            out[done : done + want] = decoded
        done += want
    return out


@dataclass(frozen=True)
class FilterCodec:
    """How one HDF5 filter maps to zarr, and how to decode it here."""

    v2: Callable[[Filter, np.dtype], dict | None] | None
    """zarr v2 entry (``None`` result: the filter is a no-op for this dtype)."""
    v3: Callable[[Filter, np.dtype], dict | None] | None
    decode: Callable[[Buffer, Filter, np.dtype, int], Buffer]
    encode: Callable[[Buffer, Filter, np.dtype], Buffer]


def _shuffle_size(f: Filter, dtype: np.dtype) -> int:
    return int(f.values[0]) if f.values else dtype.itemsize


FILTERS: dict[int, FilterCodec] = {
    DEFLATE: FilterCodec(
        v2=lambda f, dt: {"id": "zlib", "level": int(f.values[0]) if f.values else 6},
        v3=lambda f, dt: {"name": "numcodecs.zlib", "configuration": {"level": int(f.values[0]) if f.values else 6}},
        decode=lambda b, f, dt, n: inflate(b, n),
        encode=lambda b, f, dt: deflate(b, int(f.values[0]) if f.values else 6),
    ),
    SHUFFLE: FilterCodec(
        v2=lambda f, dt: {"id": "shuffle", "elementsize": _shuffle_size(f, dt)} if _shuffle_size(f, dt) > 1 else None,
        v3=lambda f, dt: (
            {"name": "numcodecs.shuffle", "configuration": {"elementsize": _shuffle_size(f, dt)}}
            if _shuffle_size(f, dt) > 1
            else None
        ),
        decode=lambda b, f, dt, n: unshuffle(b, _shuffle_size(f, dt)),
        encode=lambda b, f, dt: shuffle(b, _shuffle_size(f, dt)),
    ),
    # HDF5's LZ4 framing is not numcodecs' (nor any zarr codec's): decoded here, served raw
    LZ4: FilterCodec(
        v2=None,
        v3=None,
        decode=lambda b, f, dt, n: lz4_hdf5_decode(b, n),
        encode=lambda b, f, dt: lz4_hdf5_encode(b, int(f.values[0]) if f.values and f.values[0] > 0 else 1 << 30),
    ),
}


@dataclass(frozen=True)
class CodecPlan:
    """What the zarr metadata of one level declares for its stored chunk bytes."""

    passthrough: bool
    """Whether stored chunk bytes can be served as they are under the codecs below."""
    v2_compressor: dict | None
    v2_filters: list[dict] | None
    v3_codecs: list[dict]
    """The bytes-to-bytes codecs after the ``bytes`` codec, in encoding order."""


RAW = CodecPlan(passthrough=False, v2_compressor=None, v2_filters=None, v3_codecs=[])


def plan_codecs(filters: Sequence[Filter], dtype: np.dtype) -> CodecPlan:
    """The zarr codecs that reproduce an HDF5 pipeline, or `RAW` (decode here) if none can.

    zarr v2 allows filters plus one compressor last; HDF5 pipelines are applied in order on
    write, so ``shuffle, deflate`` becomes ``filters=[shuffle], compressor=zlib``.
    """
    if not filters:
        return CodecPlan(passthrough=True, v2_compressor=None, v2_filters=None, v3_codecs=[])
    entries2: list[dict] = []
    entries3: list[dict] = []
    for f in filters:
        codec = FILTERS.get(f.id)
        if codec is None or codec.v2 is None or codec.v3 is None:
            return RAW
        e2, e3 = codec.v2(f, dtype), codec.v3(f, dtype)
        if e2 is not None:
            entries2.append(e2)
        if e3 is not None:
            entries3.append(e3)
    compressor = None
    if entries2 and entries2[-1]["id"] == "zlib":
        compressor = entries2.pop()
    if any(e["id"] == "zlib" for e in entries2):
        return RAW  # a compressor before another filter has no zarr v2 spelling
    return CodecPlan(passthrough=True, v2_compressor=compressor, v2_filters=entries2 or None, v3_codecs=entries3)


def decode_chunk(data: Buffer, filters: Sequence[Filter], mask: int, dtype: np.dtype, nbytes: int) -> Buffer:
    """Undo an HDF5 filter pipeline on one stored chunk, honouring its filter mask.

    Raises `UnsupportedFilter` for a filter this module cannot decode; the caller then asks
    HDF5 to read the chunk.
    """
    out = data
    for i in range(len(filters) - 1, -1, -1):
        if mask & (1 << i):
            continue  # HDF5 skipped this filter when it wrote the chunk
        f = filters[i]
        codec = FILTERS.get(f.id)
        if codec is None:
            raise UnsupportedFilter(f"HDF5 filter {f.id} ({f.name})")
        # only the last stage to undo knows the final size; inner stages may differ (shuffle keeps it)
        out = codec.decode(out, f, dtype, nbytes if f.id != LZ4 else 0)
    if memoryview(out).nbytes != nbytes:
        raise ValueError(f"chunk decoded to {len(out)} bytes, expected {nbytes}")
    return out


def encode_chunk(data: Buffer, filters: Sequence[Filter], dtype: np.dtype) -> Buffer:
    """Apply an HDF5 filter pipeline to one chunk's raw bytes, in pipeline order."""
    out = data
    for f in filters:
        codec = FILTERS.get(f.id)
        if codec is None:
            raise UnsupportedFilter(f"HDF5 filter {f.id} ({f.name})")
        out = codec.encode(out, f, dtype)
    return out
