"""OME-NGFF 0.5 / 0.4 metadata: validated by ome-zarr-models, values from the extents."""

from __future__ import annotations

from pathlib import Path

import pytest
import zarr
from ome_zarr_models.v04 import Image as Image04
from ome_zarr_models.v05 import Image as Image05

from ims_store import ImsStore


def _open(path: Path, zarr_format: int) -> zarr.Group:
    return zarr.open_group(ImsStore(path, zarr_format=zarr_format), mode="r")


@pytest.mark.parametrize("chunk_mode", ["decoded", "passthrough"])
def test_validates_as_ngff_05_and_04(real_file: Path, chunk_mode: str) -> None:
    Image05.from_zarr(zarr.open_group(ImsStore(real_file, chunk_mode=chunk_mode), mode="r"))
    Image04.from_zarr(zarr.open_group(ImsStore(real_file, zarr_format=2, chunk_mode=chunk_mode), mode="r"))


def test_synthetic_variants_validate(synthetic_files: dict[str, Path]) -> None:
    for path in synthetic_files.values():
        Image05.from_zarr(_open(path, 3))
        Image04.from_zarr(_open(path, 2))


def _transforms(ms: dict, level: int) -> tuple[list[float], list[float]]:
    cts = ms["datasets"][level]["coordinateTransformations"]
    return cts[0]["scale"], cts[1]["translation"]


def test_ptk2cell_geometry_from_extents(real_files: dict[str, Path]) -> None:
    # extents as stored in the file (text), voxel-centre convention, computed here by hand
    ext_min = {"x": -0.033, "y": -0.033, "z": -0.1}
    ext_max = {"x": 17.118, "y": 17.118, "z": 6.3}
    size = {"x": 256, "y": 256, "z": 32}
    root = _open(real_files["PtK2Cell.ims"], 3)
    ome = root.attrs["ome"]
    assert ome["version"] == "0.5"
    ms = ome["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "c", "z", "y", "x"]
    assert [a["type"] for a in ms["axes"]] == ["time", "channel", "space", "space", "space"]
    assert [a.get("unit") for a in ms["axes"][2:]] == ["micrometer"] * 3
    scale, translation = _transforms(ms, 0)
    for i, axis in enumerate("zyx"):
        voxel = (ext_max[axis] - ext_min[axis]) / size[axis]
        assert scale[2 + i] == voxel
        assert translation[2 + i] == ext_min[axis] + voxel / 2
    # ExtMin survives exactly in the Imaris section
    assert root.attrs["imaris"]["extent_min_zyx"] == [-0.1, -0.033, -0.033]
    omero = ome["omero"]
    assert [c["label"] for c in omero["channels"]] == ["Kinetochores", "Microtubules", "DNA", "Dynactin"]
    assert [c["color"] for c in omero["channels"]] == ["FF0000", "00FF00", "0000FF", "FFFFFF"]
    assert omero["channels"][0]["window"] == {"min": 0.0, "max": 255.0, "start": 0.0, "end": 247.0}


def test_level_scale_from_each_level_size(real_files: dict[str, Path]) -> None:
    root = _open(real_files["PyramidalCell.ims"], 2)
    ms = root.attrs["multiscales"][0]
    assert ms["version"] == "0.4"
    scale, translation = _transforms(ms, 1)
    voxel_x = (57.841 - -0.114) / 127  # level 1 has 127 voxels in x: not 255 / 2
    assert scale[4] == voxel_x
    assert translation[4] == -0.114 + voxel_x / 2
    assert [d["path"] for d in ms["datasets"]] == ["0", "1"]


def test_time_axis_in_seconds_from_stamps(synthetic_files: dict[str, Path]) -> None:
    ms = _open(synthetic_files["12-timepoints-3-channels"], 3).attrs["ome"]["multiscales"][0]
    assert ms["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    assert _transforms(ms, 0)[0][0] == pytest.approx(1.5)


def test_arrays_declare_dimension_names_chunks_and_fill(real_files: dict[str, Path]) -> None:
    root = _open(real_files["PyramidalCell.ims"], 3)
    arr = root["1"]
    assert arr.metadata.dimension_names == ("t", "c", "z", "y", "x")
    assert arr.shape == (1, 1, 34, 127, 127)
    assert arr.chunks == (1, 1, 64, 128, 128)
    assert arr.fill_value == 0
    v2 = _open(real_files["PyramidalCell.ims"], 2)["1"]
    assert v2.attrs["_ARRAY_DIMENSIONS"] == ["t", "c", "z", "y", "x"]


def test_codecs_declared_per_mode(real_files: dict[str, Path], synthetic_files: dict[str, Path]) -> None:
    def codecs(path: Path, fmt: int, mode: str) -> object:
        store = ImsStore(path, zarr_format=fmt, chunk_mode=mode)
        import json

        doc = json.loads(store.get_sync("0/zarr.json" if fmt == 3 else "0/.zarray").to_bytes())
        return doc["codecs"] if fmt == 3 else (doc["compressor"], doc["filters"])

    shuffled = synthetic_files["uint16-shuffle-gzip-3-levels"]
    assert codecs(shuffled, 3, "decoded") == [{"name": "bytes", "configuration": {"endian": "little"}}]
    assert codecs(shuffled, 3, "passthrough") == [
        {"name": "bytes", "configuration": {"endian": "little"}},
        {"name": "numcodecs.shuffle", "configuration": {"elementsize": 2}},
        {"name": "numcodecs.zlib", "configuration": {"level": 2}},
    ]
    assert codecs(shuffled, 2, "passthrough") == ({"id": "zlib", "level": 2}, [{"id": "shuffle", "elementsize": 2}])
    assert codecs(shuffled, 2, "decoded") == (None, None)
    # HDF5-LZ4 has no zarr codec: served decoded even in passthrough mode
    assert codecs(synthetic_files["uint32-shuffle-lz4"], 2, "passthrough") == (None, None)
    assert codecs(real_files["PtK2Cell.ims"], 2, "passthrough") == ({"id": "zlib", "level": 2}, None)


def test_passthrough_serves_stored_bytes(real_files: dict[str, Path]) -> None:
    import h5py

    path = real_files["PyramidalCell.ims"]
    store = ImsStore(path, zarr_format=2, chunk_mode="passthrough")
    with h5py.File(path, "r") as f:
        ds = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"]
        _, stored = ds.id.read_direct_chunk((16, 0, 0))
    assert store.get_sync("0/0/0/1/0/0").to_bytes() == stored
    assert stored[:1] == b"\x78"  # a zlib stream, not gzip


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_passthrough_serves_shuffled_deflate_chunks_untouched(
    synthetic_files: dict[str, Path], zarr_format: int
) -> None:
    import h5py

    path = synthetic_files["uint16-shuffle-gzip-3-levels"]
    store = ImsStore(path, zarr_format=zarr_format, chunk_mode="passthrough")
    with h5py.File(path, "r") as f:
        ds = f["DataSet/ResolutionLevel 1/TimePoint 1/Channel 1/Data"]
        plist = ds.id.get_create_plist()
        assert [plist.get_filter(i)[0] for i in range(plist.get_nfilters())] == [2, 1]  # shuffle, then deflate
        for i in range(ds.id.get_num_chunks()):
            info = ds.id.get_chunk_info(i)
            z, y, x = (o // c for o, c in zip(info.chunk_offset, ds.chunks, strict=True))
            key = f"1/c/1/1/{z}/{y}/{x}" if zarr_format == 3 else f"1/1/1/{z}/{y}/{x}"
            assert store.get_sync(key).to_bytes() == ds.id.read_direct_chunk(info.chunk_offset)[1], key
