"""Valid HDF5 that positional reads could misread (`hdf5_variants`): every path that reads bytes
by offset (zarr v2 and v3, decoded and passthrough, `to_dask`, references, remote files) gives
h5py's voxels or a specific error; a server never follows a link unless told to.

The commands of the hardening contract run on the same files in `test_bad_input`."""

from __future__ import annotations

import warnings
from pathlib import Path

import fsspec
import numpy as np
import pytest
import zarr
from corpus import VARIANTS as DAMAGED
from corpus import sound_file
from hdf5_variants import VARIANTS
from helpers import assert_group_matches_h5py, h5py_counts, h5py_level, h5py_region
from http_files import FileServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from zarr.storage import FsspecStore

from ims_store import ImsError, ImsStore, LinkTargetError, to_ome_zarr
from ims_store.format.layout import ImsWarning
from ims_store.fronts.cli import main as cli
from ims_store.fronts.serve import make_server
from ims_store.store.refs import ReferencesNotPossibleError, make_references

# read right, every level (the others are refused or broken: test_bad_input pins them)
READABLE = [
    "external-link-raw",
    "external-link-gzip",
    "external-link-group",
    "external-link-large-offsets",
    "vds",
    "fill-value-7",
    "fill-value-7-other-channel",
    "precision-12-offset-4",
    "padding-bits-one",
    "partial-chunks-unfiltered-shuffle",
    "partial-chunks-unfiltered-deflate",
    "fletcher32-then-deflate",
    "deflate-then-fletcher32",
    "lz4-tiny-blocks",
    "userblock",
    "noncanonical-both",
]
LINKED = ["external-link-raw", "external-link-gzip", "external-link-group", "external-link-large-offsets"]
BROKEN_LINKS = ["external-link-moved", "external-link-cycle", "external-link-not-hdf5"]
MODES = [(3, "decoded"), (3, "passthrough"), (2, "decoded"), (2, "passthrough")]


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hdf5-variants")
    sound = sound_file(root / "sound.ims")
    paths = {}
    for name, make in {**DAMAGED, **VARIANTS}.items():
        paths[name] = root / f"{name}.ims"
        make(sound, paths[name])
    return paths


def _quiet(path: Path, **options: object) -> ImsStore:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImsWarning)  # the non-canonical names' note
        return ImsStore(path, **options)  # type: ignore[arg-type]


def test_the_variants_are_what_they_claim(variants: dict[str, Path]) -> None:
    """The store is not handed easy files: the stored bytes really differ from the voxels."""
    import h5py

    with h5py.File(variants["precision-12-offset-4"], "r") as f:
        dataset = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"]
        assert dataset.id.get_type().get_precision() == 12 and dataset.id.get_type().get_offset() == 4
    with h5py.File(variants["external-link-large-offsets"], "r") as f:
        dataset = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"]
        first = dataset.id.get_chunk_info(0).byte_offset
        assert first > variants["external-link-large-offsets"].stat().st_size  # past the linking file's end
    with h5py.File(variants["fill-value-7"], "r") as f:
        assert f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"].fillvalue == 7


@pytest.mark.parametrize(("zarr_format", "chunk_mode"), MODES)
@pytest.mark.parametrize("name", READABLE)
def test_every_mode_reads_what_h5py_reads(
    variants: dict[str, Path], name: str, zarr_format: int, chunk_mode: str
) -> None:
    store = _quiet(variants[name], zarr_format=zarr_format, chunk_mode=chunk_mode)
    assert_group_matches_h5py(zarr.open_group(store, mode="r", zarr_format=zarr_format), variants[name])


@pytest.mark.parametrize("name", READABLE)
def test_to_dask_reads_what_h5py_reads(variants: dict[str, Path], name: str) -> None:
    store = _quiet(variants[name])
    levels, times, channels = h5py_counts(variants[name])
    for level in range(levels):
        data = store.to_dask(level).compute(scheduler="threads")
        for t in range(times):
            for c in range(channels):
                np.testing.assert_array_equal(data[t, c], h5py_level(variants[name], level, t, c))


def test_the_fill_value_is_declared_and_served(variants: dict[str, Path]) -> None:
    """Declared where it is the level's; served as chunks where another dataset's differs."""
    for zarr_format in (2, 3):
        group = zarr.open_group(ImsStore(variants["fill-value-7"], zarr_format=zarr_format), mode="r")
        assert group["0"].fill_value == 7 and group["1"].fill_value == 0
        assert np.all(group["0"][0, 0, 8:16] == 7)
    other = ImsStore(variants["fill-value-7-other-channel"])
    assert zarr.open_array(other, path="0", mode="r").fill_value == 0
    assert np.all(zarr.open_array(other, path="0", mode="r")[1, 1, 8:16] == 7)


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("name", READABLE)
def test_references_read_right_or_are_refused(variants: dict[str, Path], name: str, zarr_format: int) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImsWarning)
            refs = make_references(variants[name], zarr_format=zarr_format)  # type: ignore[arg-type]
    except ReferencesNotPossibleError as err:
        assert str(variants[name]) in str(err)
        # (a level whose datasets differ in filters, type or fill value has no one codec to declare)
        assert name not in ("external-link-gzip", "external-link-group", "userblock", "noncanonical-both"), err
        return
    fs = fsspec.filesystem("reference", fo=refs, remote_protocol="file", asynchronous=True)
    group = zarr.open_group(FsspecStore(fs, read_only=True, path=""), mode="r", zarr_format=zarr_format)
    assert_group_matches_h5py(group, variants[name])


def test_references_into_a_linked_file_name_that_file(variants: dict[str, Path]) -> None:
    path = variants["external-link-gzip"]
    refs = make_references(path, zarr_format=3)["refs"]
    assert refs["0/c/0/0/0/0/0"][0] == str(path.with_name("external-link-gzip-target.ims"))
    assert refs["0/c/0/1/0/0/0"][0] == str(path)
    with pytest.raises(ReferencesNotPossibleError, match="external link"):
        make_references(path, url="https://example.org/x.ims")


@pytest.mark.parametrize("name", BROKEN_LINKS)
def test_broken_links_name_the_file_the_link_and_the_target(variants: dict[str, Path], name: str) -> None:
    with pytest.raises(LinkTargetError) as caught:
        ImsStore(variants[name])
    message = str(caught.value)
    assert str(variants[name]) in message and "Channel 0/Data is an external link to" in message
    assert f"{name}-target.ims" in message


def test_a_link_is_resolved_against_the_linking_files_folder(
    variants: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoy of the target's name in the working folder is not what is read (nor by h5py)."""
    decoy = tmp_path / "external-link-raw-target.ims"
    decoy.write_bytes(variants["userblock"].read_bytes())  # an Imaris file of the same shape
    monkeypatch.chdir(tmp_path)
    store = ImsStore(variants["external-link-raw"])
    assert_group_matches_h5py(zarr.open_group(store, mode="r"), variants["external-link-raw"])


def test_serve_follows_no_link_unless_told(variants: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = variants["external-link-raw"]
    with pytest.raises(LinkTargetError, match="not followed"):
        make_server(path, port=0)
    server = make_server(path, port=0, follow_links=True)
    server.server_close()
    with pytest.raises(LinkTargetError, match="not followed"):
        make_server(variants["vds"], port=0).store.get_sync("0/c/0/0/0/0/0")
    assert cli(["serve", str(path), "--port", "0"]) == 2
    assert "not followed" in capsys.readouterr().err


@pytest.fixture(scope="module")
def http(variants: dict[str, Path]):
    server = FileServer(next(iter(variants.values())).parent)
    yield server
    server.close()


@pytest.mark.parametrize("name", LINKED)
def test_remote_links_are_followed_against_the_url(variants: dict[str, Path], http: FileServer, name: str) -> None:
    for zarr_format, chunk_mode in MODES[:2]:
        store = ImsStore(http.url(variants[name].name), zarr_format=zarr_format, chunk_mode=chunk_mode)  # type: ignore[arg-type]
        assert_group_matches_h5py(zarr.open_group(store, mode="r"), variants[name])
        np.testing.assert_array_equal(store.to_dask(0)[0, 0].compute(), h5py_level(variants[name], 0, 0, 0))
    assert any(path.endswith(f"{name}-target.ims") for _, path, _ in http.requests)


@pytest.mark.parametrize("name", BROKEN_LINKS)
def test_remote_broken_links_are_link_errors(variants: dict[str, Path], http: FileServer, name: str) -> None:
    with pytest.raises(LinkTargetError) as caught:
        ImsStore(http.url(variants[name].name))
    assert http.url(variants[name].name) in str(caught.value)


def test_remote_virtual_datasets_are_refused(variants: dict[str, Path], http: FileServer) -> None:
    """HDF5 would look for the sources on this machine: never read, refused naming the dataset."""
    store = ImsStore(http.url(variants["vds"].name))
    with pytest.raises(LinkTargetError, match="virtual dataset in a remote file"):
        zarr.open_array(store, path="0", mode="r")[0, 0]
    assert np.array_equal(zarr.open_array(store, path="0", mode="r")[1, 1], h5py_level(variants["vds"], 0, 1, 1))


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
@pytest.mark.parametrize("name", READABLE)
def test_converting_with_the_stored_chunks_copied(
    variants: dict[str, Path], name: str, ngff: str, tmp_path: Path
) -> None:
    """``codec="copy"`` copies stored chunk bytes where the level's codecs declare them: never
    bytes those codecs would misread (unfiltered edge chunks, converted types, other files)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImsWarning)
        out = to_ome_zarr(variants[name], tmp_path / "out.zarr", ngff_version=ngff, codec="copy")  # type: ignore[arg-type]
    assert_group_matches_h5py(zarr.open_group(out, mode="r"), variants[name])


_ALL_FILES = [*DAMAGED, *VARIANTS]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_whatever_is_returned_is_what_h5py_reads(variants: dict[str, Path], data: st.DataObject) -> None:
    """Any file of both corpora (damaged files and rarer valid HDF5), any mode and region: h5py's
    voxels, or a specific ims_store error; never a third outcome (a foreign exception, or
    different voxels)."""
    name = data.draw(st.sampled_from(_ALL_FILES), label="variant")
    zarr_format, chunk_mode = data.draw(st.sampled_from(MODES), label="mode")
    path = variants[name]
    try:
        store = _quiet(path, zarr_format=zarr_format, chunk_mode=chunk_mode)
        level = data.draw(st.integers(0, len(store.layout.levels) - 1), label="level")
        shape = store.layout.shape(level)
        t, c = (data.draw(st.integers(0, n - 1)) for n in shape[:2])
        region = tuple(
            slice(a, a + data.draw(st.integers(1, n - a)))
            for a, n in ((data.draw(st.integers(0, n - 1)), n) for n in shape[2:])
        )
        got = zarr.open_array(store, path=str(level), mode="r", zarr_format=zarr_format)[(t, c, *region)]
    except ImsError as err:
        assert type(err) is not ImsError and str(path) in str(err), err
        event(type(err).__name__)
        return
    np.testing.assert_array_equal(got, h5py_region(path, level, t, c, region))
    event("read")
