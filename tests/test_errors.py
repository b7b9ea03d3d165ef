"""Bad input raises a specific ims_store error that names the file and the problem."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from ims_store import (
    CorruptChunkError,
    ImsError,
    ImsFileNotFoundError,
    ImsStore,
    MalformedImsError,
    NotHDF5Error,
    NotImarisError,
    TruncatedFileError,
    read_layout,
)


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


@pytest.mark.parametrize("opener", [read_layout, ImsStore])
def test_missing_file(tmp_path: Path, opener) -> None:
    with pytest.raises(ImsFileNotFoundError, match="no such file") as info:
        opener(tmp_path / "nope.ims")
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.path == str(tmp_path / "nope.ims")


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "empty"), (b"hello, this is text\n" * 20, "not an HDF5 file"), (None, "directory")],
)
def test_not_hdf5(tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "thing.ims"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(NotHDF5Error, match=match) as info:
        ImsStore(path)
    assert str(path) in str(info.value)


def test_hdf5_but_not_imaris(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros((4, 4))
    with pytest.raises(NotImarisError, match="not an Imaris file"):
        ImsStore(path)


def test_truncated_file(tmp_path: Path, real_files: dict[str, Path]) -> None:
    data = real_files["PtK2Cell.ims"].read_bytes()
    path = tmp_path / "cut.ims"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(TruncatedFileError, match="truncated") as info:
        ImsStore(path)
    assert str(path) in str(info.value)


def test_missing_level_data(tmp_path: Path, synthetic_files: dict[str, Path]) -> None:
    path = _copy(synthetic_files["uint16-shuffle-gzip-3-levels"], tmp_path / "nodata.ims")
    with h5py.File(path, "r+") as f:
        del f["DataSet/ResolutionLevel 1/TimePoint 0/Channel 0/Data"]
    with pytest.raises(MalformedImsError, match="ResolutionLevel 1/TimePoint 0/Channel 0 has no Data"):
        ImsStore(path)


def test_size_larger_than_data(tmp_path: Path, synthetic_files: dict[str, Path]) -> None:
    from ims_store.format.attributes import write_text

    path = _copy(synthetic_files["uint8-gzip"], tmp_path / "big.ims")
    with h5py.File(path, "r+") as f:
        write_text(f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"], "ImageSizeX", "100000")
    with pytest.raises(MalformedImsError, match="larger than the stored data"):
        ImsStore(path)


def test_missing_dataset_of_another_channel_found_lazily(tmp_path: Path, synthetic_files: dict[str, Path]) -> None:
    path = _copy(synthetic_files["uint8-gzip"], tmp_path / "lazy.ims")
    with h5py.File(path, "r+") as f:
        del f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 1/Data"]
    store = ImsStore(path)  # opening looks at one dataset per level only
    arr = zarr.open_array(store, path="0", mode="r")
    arr[0, 0]
    with pytest.raises(MalformedImsError, match="Channel 1/Data is missing"):
        arr[0, 1]


def test_corrupt_chunk_names_level_time_channel_and_chunk(tmp_path: Path, synthetic_files: dict[str, Path]) -> None:
    path = _copy(synthetic_files["uint16-shuffle-gzip-3-levels"], tmp_path / "corrupt.ims")
    with h5py.File(path, "r") as f:
        info = f["DataSet/ResolutionLevel 0/TimePoint 1/Channel 1/Data"].id.get_chunk_info(1)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 10)
        fh.write(b"\xff" * 64)
    store = ImsStore(path)
    with pytest.raises(CorruptChunkError) as err:
        zarr.open_array(store, path="0", mode="r")[1, 1]
    message = str(err.value)
    for part in ("resolution level 0", "time point 1", "channel 1", "chunk (", str(path)):
        assert part in message
    assert isinstance(err.value, ImsError)


def test_store_is_read_only(real_files: dict[str, Path]) -> None:
    store = ImsStore(real_files["PtK2Cell.ims"])
    with pytest.raises(ValueError, match="read-only"):
        zarr.open_array(store, path="0", mode="r+")[0, 0, 0, 0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        ImsStore(real_files["PtK2Cell.ims"], read_only=False)
    with pytest.raises(ValueError, match="zarr_format"):
        ImsStore(real_files["PtK2Cell.ims"], zarr_format=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_mode"):
        ImsStore(real_files["PtK2Cell.ims"], chunk_mode="fast")  # type: ignore[arg-type]
