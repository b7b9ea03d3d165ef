"""What convert, refs and serve hand out equals what HDF5 itself reads, chunk by chunk, for the
real Imaris files and the synthetic corpus: the regression test of the engine's refactor.

The ground truth is h5py alone, never ims_store: HDF5's own chunk queries (``get_chunk_info``:
where each chunk is stored; ``read_direct_chunk``: its stored bytes and filter mask) and
h5py's decoded reads of each chunk's region. So a change that moved, dropped or altered a
chunk anywhere on the way (the chunk index, the tiling, the fast path, the decoding) fails
here, whatever ims_store computes on both sides.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (HDF5-LZ4 reads for h5py)
import numpy as np
import pytest
import zarr
from helpers import REAL_FILES

from ims_store import to_ome_zarr
from ims_store.fronts.serve import make_server
from ims_store.store.refs import ReferencesNotPossibleError, make_references

DEFLATE, SHUFFLE = 1, 2
CORPUS = [
    "uint8-gzip",
    "uint16-shuffle-gzip-3-levels",
    "uint32-shuffle-lz4",
    "float32-padded-levels",
    "12-timepoints-3-channels",
    "unallocated-chunks-softlink",
    "uncompressed-unpadded",
]


@pytest.fixture(params=[*REAL_FILES, *CORPUS])
def ims_file(request: pytest.FixtureRequest, real_files: dict[str, Path], synthetic_files: dict[str, Path]) -> Path:
    return real_files[request.param] if request.param in REAL_FILES else synthetic_files[request.param]


def _datasets(path: Path) -> Iterator[tuple[int, int, int, h5py.Dataset]]:
    """Every (level, time point, channel) Data dataset, by h5py alone (links followed)."""
    with h5py.File(path, "r") as f:
        root = f["DataSet"]
        levels = sorted((k for k in root if k.startswith("ResolutionLevel ")), key=lambda k: int(k.split()[-1]))
        for li, lk in enumerate(levels):
            times = sorted((k for k in root[lk] if k.startswith("TimePoint ")), key=lambda k: int(k.split()[-1]))
            for ti, tk in enumerate(times):
                chans = sorted((k for k in root[lk][tk] if k.startswith("Channel ")), key=lambda k: int(k.split()[-1]))
                for ci, ck in enumerate(chans):
                    data = root[lk][tk][ck].get("Data")
                    if isinstance(data, h5py.Dataset):
                        yield li, ti, ci, data


def _stored_chunks(data: h5py.Dataset) -> Iterator[tuple[tuple[int, int, int], int, int, int, bytes]]:
    """Each stored chunk: grid position, filter mask, byte offset, size, stored bytes (HDF5's)."""
    if data.chunks is None:
        return
    for i in range(data.id.get_num_chunks()):
        info = data.id.get_chunk_info(i)
        mask, stored = data.id.read_direct_chunk(info.chunk_offset)
        pos = tuple(o // n for o, n in zip(info.chunk_offset, data.chunks, strict=True))
        yield pos, mask, info.byte_offset, info.size, stored  # type: ignore[misc]


def _zarr_codable(data: h5py.Dataset) -> bool:
    """Whether zarr can declare the dataset's filters (none, deflate, shuffle + deflate)."""
    plist = data.id.get_create_plist()
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    return filters in ([], [DEFLATE], [SHUFFLE, DEFLATE])


def test_refs_name_the_bytes_hdf5_stores(ims_file: Path) -> None:
    try:
        refs = make_references(ims_file)["refs"]
    except ReferencesNotPossibleError:
        # only where a level's filters have no zarr codec, or a chunk skipped a filter
        assert any(
            not _zarr_codable(data) or any(mask for _, mask, *_ in _stored_chunks(data))
            for *_, data in _datasets(ims_file)
        )
        return
    raw = ims_file.read_bytes()
    referenced = 0
    for level, t, c, data in _datasets(ims_file):
        for pos, mask, offset, size, stored in _stored_chunks(data):
            _, ref_offset, ref_size = refs["/".join(map(str, (level, t, c, *pos)))]
            assert mask == 0 and (ref_offset, ref_size) == (offset, size), (level, t, c, pos)
            assert raw[ref_offset : ref_offset + ref_size] == stored
            referenced += 1
    # nothing referenced that HDF5 does not store
    assert referenced == sum(1 for key in refs if not key.split("/")[-1].startswith("."))


def _get(port: int, key: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/" + key)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def test_served_chunks_are_hdf5s(ims_file: Path) -> None:
    """NGFF 0.4 serves passthrough zarr v2, one HDF5 chunk per key: the stored bytes where zarr
    declares the filters, else the chunk's voxels (zarr crops what lies past the edge)."""
    server = make_server(ims_file, port=0, ngff="0.4")
    server.serve_in_thread()
    port = server.server_address[1]
    try:
        for level, t, c, data in _datasets(ims_file):
            if data.chunks is None:
                continue
            meta = json.loads(_get(port, f"{level}/.zarray")[1])
            assert meta["chunks"][2:] == list(data.chunks)
            for pos, mask, _, _, stored in _stored_chunks(data):
                status, body = _get(port, "/".join(map(str, (level, t, c, *pos))))
                assert status == 200
                if _zarr_codable(data) and mask == 0:
                    assert body == stored, (level, t, c, pos)
                    continue
                region = tuple(slice(p * n, (p + 1) * n) for p, n in zip(pos, data.chunks, strict=True))
                truth = data[region]
                if meta["compressor"] is None and not meta.get("filters"):
                    voxels = np.frombuffer(body, data.dtype).reshape(data.chunks)
                else:
                    voxels = zarr.open_array(f"http://127.0.0.1:{port}/{level}", mode="r")[(t, c, *region)]
                np.testing.assert_array_equal(voxels[tuple(slice(0, s) for s in truth.shape)], truth)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("ngff", "codec"), [("0.4", "copy"), ("0.5", "zstd")])
def test_converted_ome_zarr_equals_hdf5(ims_file: Path, tmp_path: Path, ngff: str, codec: str) -> None:
    out = to_ome_zarr(ims_file, tmp_path / "out.zarr", ngff_version=ngff, codec=codec)  # type: ignore[arg-type]
    root = zarr.open_group(out, mode="r")
    for level, t, c, data in _datasets(ims_file):
        got = root[str(level)][t, c]
        # the image's true size (Imaris' ImageSize attributes): the dataset less its padding
        assert all(n - k < g <= n for g, n, k in zip(got.shape, data.shape, data.chunks or data.shape, strict=True))
        np.testing.assert_array_equal(got, data[tuple(slice(0, g) for g in got.shape)])
        if ngff == "0.4" and _zarr_codable(data):
            # copied: each chunk file holds HDF5's stored bytes, untouched
            for pos, mask, _, _, stored in _stored_chunks(data):
                if mask == 0:
                    chunk = out / str(level) / "/".join(map(str, (t, c, *pos)))
                    assert chunk.read_bytes() == stored, (level, t, c, pos)
