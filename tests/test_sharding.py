"""NGFF 0.5 with sharding: fewer files, the same voxels, readable by zarr-python and tensorstore."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import assert_group_matches_h5py, h5py_counts, h5py_level
from ome_zarr_models.v05 import Image as Image05

from ims_store import to_ome_zarr
from ims_store.fronts.cli import main


@pytest.mark.parametrize("name", ["uint16-shuffle-gzip-3-levels", "12-timepoints-3-channels", "float32-padded-levels"])
def test_sharded_output_equals_h5py(synthetic_files: dict[str, Path], tmp_path: Path, name: str) -> None:
    source = synthetic_files[name]
    out = to_ome_zarr(source, tmp_path / "sharded.ome.zarr", chunks_per_shard=(2, 2, 2))
    root = zarr.open_group(out, mode="r")
    assert_group_matches_h5py(root, source)
    Image05.from_zarr(root)
    levels, _, _ = h5py_counts(source)
    for level in range(levels):
        doc = json.loads((out / str(level) / "zarr.json").read_text())
        (codec,) = doc["codecs"]
        assert codec["name"] == "sharding_indexed"
        inner = codec["configuration"]["chunk_shape"]
        shard = doc["chunk_grid"]["configuration"]["chunk_shape"]
        assert shard[:2] == [1, 1] and all(s % i == 0 for s, i in zip(shard, inner, strict=True))


def test_shards_are_fewer_files_than_chunks(synthetic_files: dict[str, Path], tmp_path: Path) -> None:
    source = synthetic_files["uint16-shuffle-gzip-3-levels"]
    plain = to_ome_zarr(source, tmp_path / "plain.ome.zarr")
    sharded = to_ome_zarr(source, tmp_path / "sharded.ome.zarr", chunks_per_shard=(4, 4, 4))

    def count(root: Path) -> int:
        return sum(1 for p in (root / "0").rglob("*") if p.is_file())

    assert count(sharded) * 4 <= count(plain)


def test_tensorstore_reads_the_shards(real_files: dict[str, Path], tmp_path: Path) -> None:
    ts = pytest.importorskip("tensorstore", reason="tensorstore has no wheel for this platform")
    source = real_files["PtK2Cell.ims"]
    out = to_ome_zarr(source, tmp_path / "ptk2.ome.zarr", chunks_per_shard=(2, 1, 1))
    arr = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(out / "0")}}).result()
    data = arr.read().result()
    for c in range(4):
        np.testing.assert_array_equal(data[0, c], h5py_level(source, 0, 0, c))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ngff_version": "0.4"}, "zarr v3"),
        ({"codec": "copy"}, "re-encoded"),
        ({"chunks_per_shard": (2, 0, 2)}, "positive"),
        ({"chunks_per_shard": (2, 2)}, "positive"),
    ],
)
def test_sharding_refuses_what_it_cannot_do(
    synthetic_files: dict[str, Path], tmp_path: Path, options: dict, message: str
) -> None:
    options = {"chunks_per_shard": (2, 2, 2), **options}
    with pytest.raises(ValueError, match=message):
        to_ome_zarr(synthetic_files["uint8-gzip"], tmp_path / "x.ome.zarr", **options)
    assert not list(tmp_path.iterdir())


def test_cli_shards(synthetic_files: dict[str, Path], tmp_path: Path) -> None:
    source = synthetic_files["uint16-shuffle-gzip-3-levels"]
    out = tmp_path / "cli.ome.zarr"
    assert main(["convert", str(source), str(out), "--chunks-per-shard", "2,2,2", "--quiet"]) == 0
    assert json.loads((out / "0" / "zarr.json").read_text())["codecs"][0]["name"] == "sharding_indexed"
    assert_group_matches_h5py(zarr.open_group(out, mode="r"), source)


@pytest.mark.parametrize("value", ["2,2", "2,0,2", "a,b,c"])
def test_cli_refuses_bad_shard_counts(
    synthetic_files: dict[str, Path], tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as err:
        main(["convert", str(synthetic_files["uint8-gzip"]), str(tmp_path / "x.ome.zarr"), "--chunks-per-shard", value])
    assert err.value.code == 2
    assert "--chunks-per-shard" in capsys.readouterr().err


def test_cli_refuses_shards_for_nifti(synthetic_files: dict[str, Path], tmp_path: Path) -> None:
    argv = ["convert", str(synthetic_files["uint8-gzip"]), str(tmp_path / "x.nii.gz"), "--chunks-per-shard", "2,2,2"]
    assert main(argv) == 2
    assert not list(tmp_path.iterdir())
