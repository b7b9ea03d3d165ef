"""Decoders and the filter table, against HDF5 itself and numcodecs."""

from __future__ import annotations

import zlib
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numcodecs import Shuffle

from ims_store.format.codecs import (
    RAW,
    UnsupportedFilter,
    decode_chunk,
    deflate,
    encode_chunk,
    inflate,
    lz4_hdf5_decode,
    lz4_hdf5_encode,
    plan_codecs,
    shuffle,
    unshuffle,
)
from ims_store.format.layout import Filter


@given(st.binary(max_size=4096), st.sampled_from([1, 2, 4, 8]))
def test_shuffle_matches_numcodecs(data: bytes, size: int) -> None:
    data = data[: len(data) // size * size]  # numcodecs takes whole elements only
    expected = Shuffle(size).encode(data) if size > 1 else data
    assert bytes(memoryview(shuffle(data, size))) == bytes(expected)
    assert bytes(memoryview(unshuffle(bytes(expected), size))) == data


@given(st.binary(max_size=100), st.sampled_from([2, 4, 8]))
def test_shuffle_keeps_a_partial_trailing_element(data: bytes, size: int) -> None:
    assert bytes(memoryview(unshuffle(shuffle(data, size), size))) == data
    tail = len(data) % size
    assert bytes(memoryview(shuffle(data, size)))[len(data) - tail :] == data[len(data) - tail :]


@given(st.binary(max_size=20000), st.integers(0, 9))
def test_deflate_is_a_zlib_stream(data: bytes, level: int) -> None:
    packed = deflate(data, level)
    assert zlib.decompress(packed) == data
    assert inflate(packed, len(data)) == data


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=3000), st.sampled_from([0, 7, 64, 1000]))
def test_lz4_framing_roundtrip(data: bytes, block: int) -> None:
    packed = lz4_hdf5_encode(data, block if block else 1 << 30)
    assert bytes(lz4_hdf5_decode(packed)) == data


@pytest.mark.parametrize("shape", [(4, 33, 17), (1, 64, 64)])
def test_lz4_decoder_reads_what_hdf5plugin_writes_and_vice_versa(tmp_path: Path, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    data = (rng.integers(0, 50, size=shape) * 3).astype(np.uint16)
    path = tmp_path / "lz4.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=data, chunks=shape, **hdf5plugin.LZ4(nbytes=256))
        f.create_dataset("b", shape=shape, dtype=data.dtype, chunks=shape, **hdf5plugin.LZ4())
        f["b"].id.write_direct_chunk((0, 0, 0), lz4_hdf5_encode(data.tobytes(), 512))
    with h5py.File(path, "r") as f:
        _, stored = f["a"].id.read_direct_chunk((0, 0, 0))
        assert bytes(lz4_hdf5_decode(stored)) == data.tobytes()
        np.testing.assert_array_equal(f["b"][...], data)


def test_decode_chunk_honours_filter_mask() -> None:
    filters = (Filter(2, "shuffle", 1, (2,)), Filter(1, "deflate", 1, (2,)))
    raw = np.arange(1000, dtype="<u2").tobytes()
    dtype = np.dtype("<u2")
    assert bytes(decode_chunk(encode_chunk(raw, filters, dtype), filters, 0, dtype, len(raw))) == raw
    shuffled_only = bytes(memoryview(shuffle(raw, 2)))
    assert bytes(decode_chunk(shuffled_only, filters, 0b10, dtype, len(raw))) == raw
    assert bytes(decode_chunk(raw, filters, 0b11, dtype, len(raw))) == raw
    with pytest.raises(UnsupportedFilter):
        decode_chunk(raw, (Filter(3, "fletcher32"),), 0, dtype, len(raw))
    with pytest.raises(ValueError, match="expected"):
        decode_chunk(raw, (), 0, dtype, len(raw) + 2)


def test_plan_table() -> None:
    u2 = np.dtype("<u2")
    assert plan_codecs((), u2).passthrough
    plan = plan_codecs((Filter(1, "deflate", 1, (6,)),), np.dtype("u1"))
    assert plan.v2_compressor == {"id": "zlib", "level": 6} and plan.v2_filters is None
    assert plan.v3_codecs == [{"name": "numcodecs.zlib", "configuration": {"level": 6}}]
    # shuffle of 1-byte data is a no-op and is not declared
    plan = plan_codecs((Filter(2, "shuffle", 1, (1,)), Filter(1, "deflate", 1, (2,))), np.dtype("u1"))
    assert plan.v2_filters is None and len(plan.v3_codecs) == 1
    assert plan_codecs((Filter(32004, "lz4", 1, (0,)),), u2) is RAW
    assert plan_codecs((Filter(3, "fletcher32"),), u2) is RAW
    # deflate before shuffle has no zarr v2 spelling (compressor must come last)
    assert plan_codecs((Filter(1, "deflate", 1, (2,)), Filter(2, "shuffle", 1, (2,))), u2) is RAW
