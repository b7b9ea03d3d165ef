"""Zero-copy references: zarr reads every level through fsspec's reference filesystem."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest
import zarr
from helpers import REAL_FILES, assert_group_matches_h5py
from synthetic_files import VARIANTS
from zarr.storage import FsspecStore

from ims_store.fronts.cli import main as cli
from ims_store.store.refs import ReferencesNotPossibleError, make_references

NOT_REFERENCEABLE = {
    "uint32-shuffle-lz4",
    "uint16-lz4-noshuffle",
    "fletcher32-unknown-filter",
    "masked-chunk-shuffle",
    "masked-chunk",
}


def _open(refs: dict, zarr_format: int) -> zarr.Group:
    fs = fsspec.filesystem("reference", fo=refs, remote_protocol="file", asynchronous=True)
    return zarr.open_group(FsspecStore(fs, read_only=True, path=""), mode="r", zarr_format=zarr_format)


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_files_through_references(real_files: dict[str, Path], name: str, zarr_format: int) -> None:
    assert_group_matches_h5py(
        _open(make_references(real_files[name], zarr_format=zarr_format), zarr_format), real_files[name]
    )


@pytest.mark.parametrize("name", [n for n in VARIANTS if n not in NOT_REFERENCEABLE])
def test_synthetic_files_through_references(synthetic_files: dict[str, Path], name: str) -> None:
    assert_group_matches_h5py(_open(make_references(synthetic_files[name]), 2), synthetic_files[name])


@pytest.mark.parametrize("name", sorted(NOT_REFERENCEABLE))
def test_unreferenceable_files_say_so(synthetic_files: dict[str, Path], name: str) -> None:
    with pytest.raises(ReferencesNotPossibleError) as err:
        make_references(synthetic_files[name])
    assert str(synthetic_files[name]) in str(err.value)


def test_refs_command(tmp_path: Path, real_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "refs.json"
    url = "https://example.org/data/PtK2Cell.ims"
    assert cli(["refs", str(real_files["PtK2Cell.ims"]), "-o", str(out), "--url", url]) == 0
    refs = json.loads(out.read_text())
    assert refs["version"] == 1 and refs["refs"]["0/0/1/0/0/0"][0] == url
    assert cli(["refs", str(real_files["PtK2Cell.ims"]), "-o", str(out)]) == 2  # exists: --overwrite
    assert "overwrite" in capsys.readouterr().err
