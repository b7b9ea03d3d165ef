"""Files of several images (``NumberOfDataSets`` > 1), with and without external links to one
file per tile, and colour tables: every image reads as h5py reads it, sits where it was
acquired, and a broken tile leaves the others readable. Files are built with h5py from the
documented structure (`multi_image_files`)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multi_image_files import (
    break_tile,
    h5py_image_level,
    h5py_level_count,
    mosaic,
    set_color_table,
)

from ims_store import ImsStore, LinkTargetError, SelectionError, read_layout
from ims_store.format.layout import ImsWarning, parse_images
from ims_store.write.synthetic import make_example_ims

LINKING = [False, True]


@pytest.fixture(scope="module")
def mosaics(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[Path, list]]:
    out = {}
    for link in LINKING:
        folder = tmp_path_factory.mktemp(f"mosaic-link-{link}")
        out[link] = mosaic(folder, link=link)
    return out


def _attr_floats(group: h5py.Group, name: str) -> float:
    return float(b"".join(group.attrs[name]).decode())


@pytest.mark.parametrize("link", LINKING)
def test_every_image_is_parsed(mosaics: dict, link: bool) -> None:
    path, tiles = mosaics[link]
    with h5py.File(path, "r") as f:
        entries = parse_images(f, str(path))
        assert len(entries) == int(f.attrs["NumberOfDataSets"][0]) == len(tiles)
        for k, (entry, tile) in enumerate(zip(entries, tiles, strict=True)):
            info = f[f"DataSetInfo{k or ''}/Image"]
            assert entry.error is None and entry.index == k and entry.group == f"/DataSet{k or ''}"
            lay = entry.layout
            assert lay.image == k and lay.image_count == len(tiles)
            assert lay.levels[0].size == tile.data.shape[1:]
            assert len(lay.channels) == tile.data.shape[0]
            assert lay.extent_min == tuple(_attr_floats(info, f"ExtMin{i}") for i in (2, 1, 0))
            # the tile's first voxel centre is where it was acquired
            centre = [lo + v / 2 for lo, v in zip(lay.extent_min, lay.levels[0].voxel_size, strict=True)]
            np.testing.assert_allclose(centre, tile.origin, atol=1e-9)


@pytest.mark.parametrize("link", LINKING)
@pytest.mark.parametrize("zarr_format", [3, 2])
def test_every_image_reads_as_h5py_reads_it(mosaics: dict, link: bool, zarr_format: int) -> None:
    path, tiles = mosaics[link]
    root = zarr.open_group(ImsStore(path, zarr_format=zarr_format), mode="r")
    for k, tile in enumerate(tiles):
        image = root[str(k)]
        levels = h5py_level_count(path, k)
        assert sorted(image.array_keys(), key=int) == [str(i) for i in range(levels)]
        np.testing.assert_array_equal(image["0"][0], tile.data)  # what was written
        for level in range(levels):
            data = image[str(level)][...]
            for c in range(tile.data.shape[0]):
                np.testing.assert_array_equal(data[0, c], h5py_image_level(path, k, level, 0, c))


@pytest.mark.parametrize("link", LINKING)
def test_one_image_alone_is_that_image_as_a_file_of_its_own(mosaics: dict, link: bool) -> None:
    """``ImsStore(path, image=k)`` presents image k exactly as its tile file is presented (the
    tile's recording date, which the mosaic drops, aside)."""
    path, tiles = mosaics[link]
    for k in range(len(tiles)):
        tile_path = path.parent / f"{path.stem}_tile_{k}.ims"
        alone, own = ImsStore(path, image=k), ImsStore(tile_path)
        keys = sorted(k for k in own.documents)
        assert sorted(alone.documents) == keys
        for key in keys:
            mine, theirs = json.loads(alone.documents[key]), json.loads(own.documents[key])
            if key == "zarr.json":
                mine["attributes"]["imaris"].pop("recording_date")
                theirs["attributes"]["imaris"].pop("recording_date")
            assert mine == theirs, key
        np.testing.assert_array_equal(alone.to_dask(0).compute(), own.to_dask(0).compute())
        assert alone.layout.image == k


def test_a_file_of_one_image_is_presented_as_before(tmp_path: Path) -> None:
    path = make_example_ims(tmp_path / "one.ims", shape=(4, 32, 24), channels=2, timepoints=1)
    default, first = ImsStore(path), ImsStore(path, image=0)
    assert not default.is_collection and default.documents == first.documents
    assert [e.index for e in default.images] == [0] and default.image_store(0) is default
    with pytest.raises(SelectionError, match="image 1 does not exist"):
        ImsStore(path, image=1)


@pytest.mark.parametrize("link", LINKING)
def test_collection_layout(mosaics: dict, link: bool) -> None:
    path, tiles = mosaics[link]
    store = ImsStore(path)
    root = zarr.open_group(store, mode="r")
    assert root.attrs["ome"] == {"version": "0.5", "bioformats2raw.layout": 3}
    assert root["OME"].attrs["ome"]["series"] == [str(k) for k in range(len(tiles))]
    assert sorted(root.group_keys()) == sorted(["OME", *(str(k) for k in range(len(tiles)))])
    with pytest.raises(SelectionError, match="holds 3 images"):
        _ = store.layout
    # each image is where its tile was acquired
    for k, tile in enumerate(tiles):
        ms = root[str(k)].attrs["ome"]["multiscales"][0]
        translation = ms["datasets"][0]["coordinateTransformations"][1]["translation"]
        np.testing.assert_allclose(translation[2:], tile.origin, atol=1e-9)


def test_collection_validates_with_ome_zarr_models(mosaics: dict) -> None:
    from ome_zarr_models.v04.bioformats2raw import BioFormats2Raw as BioFormats2Raw04
    from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw as BioFormats2Raw05

    path, tiles = mosaics[True]
    model = BioFormats2Raw05.from_zarr(zarr.open_group(ImsStore(path), mode="r"))
    assert model.image_paths == [str(k) for k in range(len(tiles))]
    assert model.attributes.ome.bioformats2raw_layout == 3
    model = BioFormats2Raw04.from_zarr(zarr.open_group(ImsStore(path, zarr_format=2), mode="r", zarr_format=2))
    assert model.image_paths == [str(k) for k in range(len(tiles))]


def test_collection_listing(mosaics: dict) -> None:
    path, tiles = mosaics[False]
    store = ImsStore(path)

    async def collect(iterator):
        return [k async for k in iterator]

    import asyncio

    listed = asyncio.run(collect(store.list()))
    assert "zarr.json" in listed and "OME/zarr.json" in listed
    for k in range(len(tiles)):
        alone = asyncio.run(collect(ImsStore(path, image=k).list()))
        assert sorted(x for x in listed if x.startswith(f"{k}/")) == sorted(f"{k}/{x}" for x in alone)
    assert sorted(asyncio.run(collect(store.list_dir("")))) == sorted(["zarr.json", "OME", "0", "1", "2"])
    assert asyncio.run(collect(store.list_dir("OME"))) == ["zarr.json"]
    assert sorted(asyncio.run(collect(store.list_dir("1")))) == sorted(
        asyncio.run(collect(ImsStore(path, image=1).list_dir("")))
    )
    assert asyncio.run(store.exists("2/0/zarr.json")) and not asyncio.run(store.exists("3/0/zarr.json"))
    assert not asyncio.run(store.exists("01/zarr.json"))


@pytest.mark.parametrize("how", ["moved", "not-hdf5", "not-imaris", "cycle"])
def test_a_broken_tile_leaves_the_others_readable(tmp_path: Path, how: str) -> None:
    path, tiles = mosaic(tmp_path, link=True)
    broken = tmp_path / f"{path.stem}_tile_1.ims"
    break_tile(broken, how)
    store = ImsStore(path)
    entries = store.images
    assert [e.error is None for e in entries] == [True, False, True]
    assert isinstance(entries[1].error, LinkTargetError)
    assert str(path) in str(entries[1].error) and "image 1 (/DataSet1)" in str(entries[1].error)
    root = zarr.open_group(store, mode="r")
    assert root["OME"].attrs["ome"]["series"] == ["0", "2"]
    assert "error" in root.attrs["imaris"]["images"][1]
    assert "1" not in root
    for k in (0, 2):
        np.testing.assert_array_equal(root[f"{k}/0"][0], tiles[k].data)
    with pytest.raises(LinkTargetError, match="image 1"):
        ImsStore(path, image=1)
    with pytest.raises(LinkTargetError):
        store.image_store(1)


def test_every_image_broken_raises_the_first_error(tmp_path: Path) -> None:
    path, tiles = mosaic(tmp_path, link=True)
    for k in range(len(tiles)):
        break_tile(tmp_path / f"{path.stem}_tile_{k}.ims", "moved")
    with pytest.raises(LinkTargetError):
        ImsStore(path)


def test_a_missing_image_group_is_reported(tmp_path: Path) -> None:
    path, _ = mosaic(tmp_path, link=False)
    with h5py.File(path, "r+") as f:
        del f["DataSet2"]
    entries = ImsStore(path).images
    assert entries[2].error is not None and "image 2 (/DataSet2)" in str(entries[2].error)
    assert "no /DataSet2 group" in str(entries[2].error)


@pytest.mark.parametrize("count", [b"7", np.array([0], np.uint32), np.array([2**31], np.uint32), b"x"])
def test_damaged_image_counts(tmp_path: Path, count: object) -> None:
    """A count of 0 or text that is no number is 1 image; a count beyond the file's members is
    cut to them (each image needs a group), the images missing reported."""
    path, _ = mosaic(tmp_path, link=False)
    with h5py.File(path, "r+") as f:
        if isinstance(count, bytes):
            f.attrs["NumberOfDataSets"] = np.frombuffer(count, dtype="S1")
        else:
            f.attrs["NumberOfDataSets"] = count
        members = len(f)
    layout = read_layout(path)
    assert layout.image == 0
    entries = ImsStore(path).images
    if count in (b"x",) or (isinstance(count, np.ndarray) and count[0] == 0):
        assert len(entries) == 1
    else:
        assert 3 < len(entries) <= members
        assert all(e.error is None for e in entries[:3]) and all(e.error is not None for e in entries[3:])


def test_a_leftover_count_on_a_file_of_one_image_is_noted(tmp_path: Path) -> None:
    path = make_example_ims(tmp_path / "one.ims", shape=(4, 32, 24), channels=1, timepoints=1)
    with h5py.File(path, "r+") as f:
        del f.attrs["NumberOfDataSets"]
        f.attrs.create("NumberOfDataSets", np.array([3], np.uint32))
    with pytest.warns(ImsWarning, match="NumberOfDataSets is 3 but the file holds no DataSet1"):
        store = ImsStore(path)
    assert not store.is_collection
    assert store.layout.levels[0].size == (4, 32, 24)


@pytest.mark.parametrize("as_dataset", [False, True])
def test_color_table(tmp_path: Path, as_dataset: bool) -> None:
    path, _ = mosaic(tmp_path, link=False)
    ramp = np.linspace(0, 1, 256)
    table = np.stack([ramp, ramp**2, 1 - ramp], axis=1)
    text = set_color_table(path, 1, 0, table, as_dataset=as_dataset)
    expected = np.array([float(v) for v in text.split()]).reshape(-1, 3)
    layout = ImsStore(path, image=1).layout
    channel = layout.channels[0]
    assert channel.color_mode == "TableColor"
    np.testing.assert_array_equal(np.array(channel.color_table), expected)
    assert layout.channels[1].color_table is None
    attrs = zarr.open_group(ImsStore(path), mode="r")["1"].attrs
    last = "".join(f"{round(v * 255):02X}" for v in expected[-1])
    assert attrs["ome"]["omero"]["channels"][0]["color"] == last
    assert attrs["imaris"]["channels"][0]["color_table"] == expected.tolist()
    assert attrs["imaris"]["channels"][0]["color_mode"] == "TableColor"
    assert "color_table" not in attrs["imaris"]["channels"][1]


def test_color_table_length_disagreeing_is_noted(tmp_path: Path) -> None:
    path, _ = mosaic(tmp_path, link=False)
    set_color_table(path, 0, 1, np.array([[0, 0, 0], [0.5, 0.25, 1.0]]), as_dataset=False)
    with h5py.File(path, "r+") as f:
        f["DataSetInfo/Channel 1"].attrs["ColorTableLength"] = np.frombuffer(b"5", dtype="S1")
    with pytest.warns(ImsWarning, match="ColorTableLength is 5 but ColorTable holds 2"):
        layout = ImsStore(path, image=0).layout
    assert layout.channels[1].color_table == ((0.0, 0.0, 0.0), (0.5, 0.25, 1.0))


def test_collection_pickles_and_copies(mosaics: dict) -> None:
    import pickle

    path, tiles = mosaics[True]
    store = ImsStore(path)
    again = pickle.loads(pickle.dumps(store))
    assert again == store and again.is_collection
    one = pickle.loads(pickle.dumps(ImsStore(path, image=2)))
    assert one.image == 2 and one != store
    np.testing.assert_array_equal(zarr.open_group(again, mode="r")["2/0"][0], tiles[2].data)


def test_linked_mosaic_moved_with_its_tiles_still_reads(mosaics: dict, tmp_path: Path) -> None:
    """Links are relative: the folder moved as a whole reads the same."""
    path, tiles = mosaics[True]
    moved = tmp_path / "moved"
    shutil.copytree(path.parent, moved)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        root = zarr.open_group(ImsStore(moved / path.name), mode="r")
    for k, tile in enumerate(tiles):
        np.testing.assert_array_equal(root[f"{k}/0"][0], tile.data)


# -- the commands ---------------------------------------------------------------------------


def test_cli_on_a_file_of_several_images(mosaics: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from ims_store.fronts.cli import main

    path, tiles = mosaics[True]
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"{path}: 3 images" in text
    assert all(f"image {k} (/DataSet{k or ''})" in text for k in range(3))
    assert main(["info", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [i["shape_tczyx"][2:] for i in summary["images"]] == [list(t.data.shape[1:]) for t in tiles]
    assert main(["info", str(path), "--image", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shape_tczyx"][2:] == list(tiles[2].data.shape[1:])
    assert main(["validate", str(path)]) == 0
    assert "sound (0 error(s)" in capsys.readouterr().out

    out = tmp_path / "all.ome.zarr"
    assert main(["convert", str(path), str(out), "--quiet"]) == 0
    group = zarr.open_group(out, mode="r")
    assert group["OME"].attrs["ome"]["series"] == ["0", "1", "2"]
    for k, tile in enumerate(tiles):
        np.testing.assert_array_equal(group[f"{k}/0"][0], tile.data)
        for level in range(h5py_level_count(path, k)):
            for c in range(tile.data.shape[0]):
                np.testing.assert_array_equal(group[f"{k}/{level}"][0, c], h5py_image_level(path, k, level, 0, c))
    one = tmp_path / "one.ome.zarr"
    assert main(["convert", str(path), str(one), "--quiet", "--image", "1", "--ngff", "0.4"]) == 0
    np.testing.assert_array_equal(zarr.open_group(one, mode="r")["0"][0], tiles[1].data)
    again = tmp_path / "one.ims"
    assert main(["convert", str(path), str(again), "--quiet", "--image", "2"]) == 0
    np.testing.assert_array_equal(ImsStore(again).to_dask(0)[0].compute(), tiles[2].data)
    assert main(["convert", str(path), str(tmp_path / "x.nii")]) == 2  # which image? refused, named
    assert "holds 3 images" in capsys.readouterr().err


def test_cli_reports_a_broken_tile(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from ims_store.fronts.cli import main

    path, _ = mosaic(tmp_path, link=True)
    break_tile(tmp_path / f"{path.stem}_tile_1.ims", "moved")
    assert main(["info", str(path)]) == 1
    out = capsys.readouterr().out
    assert "image 1 (/DataSet1): cannot be read: /DataSet1/ResolutionLevel 0" in out and "image 2 (/DataSet2)\n" in out
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "error: /DataSet1: image 1 (/DataSet1): " in out and "can't open file" in out
    assert main(["info", str(path), "--image", "1"]) != 0
    assert "LinkTarget" not in (err := capsys.readouterr().err) and "mosaic_tile_1.ims" in err
    assert main(["convert", str(path), str(tmp_path / "all.zarr"), "--quiet"]) != 0
    assert "image 1 (/DataSet1)" in capsys.readouterr().err and not (tmp_path / "all.zarr").exists()
    assert main(["convert", str(path), str(tmp_path / "two.zarr"), "--quiet", "--image", "2"]) == 0


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_served_collection_read_by_zarr_and_ome_zarr_py(mosaics: dict, ngff: str) -> None:
    """Over ``serve``: zarr finds the collection's series, ome-zarr-py reads every image (it has
    no reader of the layout itself: each image is opened at its own address, as the series say)."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from ims_store.fronts.serve import make_server

    path, tiles = mosaics[False]
    server = make_server(path, port=0, ngff=ngff)  # type: ignore[arg-type]
    server.serve_in_thread()
    try:
        root = zarr.open_group(server.url, mode="r")
        attrs = root.attrs.asdict()
        assert (attrs["ome"] if ngff == "0.5" else attrs)["bioformats2raw.layout"] == 3
        ome = root["OME"].attrs.asdict()
        series = (ome["ome"] if ngff == "0.5" else ome)["series"]
        assert series == ["0", "1", "2"]
        for k in series:
            nodes = list(Reader(parse_url(f"{server.url.rstrip('/')}/{k}"))())
            image = nodes[0]
            levels = h5py_level_count(path, int(k))
            assert len(image.data) == levels
            np.testing.assert_array_equal(np.asarray(image.data[0][0]), tiles[int(k)].data)
            _, translation = image.metadata["coordinateTransformations"][0]
            np.testing.assert_allclose(translation["translation"][2:], tiles[int(k)].origin, atol=1e-9)
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_does_not_follow_tile_links_unless_told(mosaics: dict) -> None:
    from ims_store.fronts.serve import make_server

    path, tiles = mosaics[True]
    with pytest.raises(LinkTargetError, match="not followed here"):
        make_server(path, port=0)  # every image lies in other files
    server = make_server(path, port=0, follow_links=True)
    server.serve_in_thread()
    try:
        root = zarr.open_group(server.url, mode="r")
        np.testing.assert_array_equal(root["1/0"][0], tiles[1].data)
    finally:
        server.shutdown()
        server.server_close()


def test_xarray_image_and_datatree(mosaics: dict) -> None:
    import xarray as xr

    path, tiles = mosaics[True]
    for k, tile in enumerate(tiles):
        da = xr.open_dataarray(path, engine="ims", image=k)
        np.testing.assert_array_equal(da.isel(t=0).values, tile.data)
        assert (float(da.z[0]), float(da.y[0]), float(da.x[0])) == pytest.approx(tile.origin)
    tree = xr.open_datatree(path, engine="ims")
    assert sorted(tree.children) == ["0", "1", "2"]
    for k, tile in enumerate(tiles):
        assert sorted(tree[str(k)].children) == [str(i) for i in range(h5py_level_count(path, k))]
        np.testing.assert_array_equal(tree[f"{k}/0"]["image"].isel(t=0).values, tile.data)
    with pytest.raises(SelectionError, match="holds 3 images"):
        xr.open_dataarray(path, engine="ims")


def test_xarray_datatree_names_unreadable_images(tmp_path: Path) -> None:
    import xarray as xr

    path, _ = mosaic(tmp_path, link=True)
    break_tile(tmp_path / f"{path.stem}_tile_0.ims", "not-hdf5")
    tree = xr.open_datatree(path, engine="ims")
    assert sorted(tree.children) == ["1", "2"]
    assert "image 0 (/DataSet): " in tree.attrs["unreadable_images"][0]
    assert "mosaic_tile_0.ims" in tree.attrs["unreadable_images"][0]


def test_napari_layers_per_image_positioned_with_table_colormap(tmp_path: Path) -> None:
    from ims_store.fronts.napari_reader import reader_function

    path, tiles = mosaic(tmp_path, link=True)
    table = np.array([[0.0, 0.0, 0.0], [0.2, 0.4, 0.6], [1.0, 0.5, 0.0]])
    set_color_table(path, 2, 1, table, as_dataset=True)
    layers = reader_function(str(path))
    assert [meta["name"] for _, meta, _ in layers] == [f"image {k}: Channel {c}" for k in range(3) for c in range(2)]
    for i, (data, meta, kind) in enumerate(layers):
        k, c = divmod(i, 2)
        assert kind == "image" and not meta["multiscale"]  # small enough for level 0 alone (napari_reader)
        np.testing.assert_array_equal(np.asarray(data[0]), tiles[k].data[c])
        np.testing.assert_allclose(meta["translate"][1:], tiles[k].origin, atol=1e-9)
    colormap = layers[5][1]["colormap"]
    np.testing.assert_allclose(np.array(colormap["colors"])[:, :3], table)
    assert layers[4][1]["colormap"]["colors"][-1] != colormap["colors"][-1]
    break_tile(tmp_path / f"{path.stem}_tile_1.ims", "moved")
    with pytest.warns(ImsWarning, match="image 1"):
        layers = reader_function(str(path))
    assert [meta["name"][:7] for _, meta, _ in layers] == ["image 0"] * 2 + ["image 2"] * 2


# -- writing files of several images ------------------------------------------------------------


@pytest.mark.parametrize("link", LINKING)
def test_write_images(tmp_path: Path, link: bool) -> None:
    from ims_store import write_images
    from ims_store.store.validate import validate

    rng = np.random.default_rng(3)
    data = [rng.integers(0, 255, (5, 30, 20), dtype=np.uint8), rng.integers(0, 255, (7, 24, 41), dtype=np.uint8)]
    positions = [(0.0, 0.0, 0.0), (1.5, -4.0, 19.0)]
    out = write_images(
        data, tmp_path / "two.ims", axes="zyx", voxel_size=(1.5, 0.25, 0.25), positions=positions, link=link
    )
    with h5py.File(out, "r") as f:
        assert int(f.attrs["NumberOfDataSets"][0]) == 2
        assert "RecordingDate" not in f["DataSetInfo1/Image"].attrs
        link_kind = f["DataSet1/ResolutionLevel 0/TimePoint 0"].get("Channel 0", getlink=True)
        assert isinstance(link_kind, h5py.ExternalLink) == link
        for k, (values, origin) in enumerate(zip(data, positions, strict=True)):
            group = f[f"DataSetInfo{k or ''}/Image"]
            ext_min = [_attr_floats(group, f"ExtMin{i}") for i in (2, 1, 0)]
            np.testing.assert_allclose(ext_min, np.array(origin) - np.array([1.5, 0.25, 0.25]) / 2)
            np.testing.assert_array_equal(h5py_image_level(out, k, 0, 0, 0), values)
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        ["two.ims", "two_image_0.ims", "two_image_1.ims"] if link else ["two.ims"]
    )
    assert [p for p in validate(out) if p.severity == "error"] == []
    root = zarr.open_group(ImsStore(out), mode="r")
    for k, values in enumerate(data):
        np.testing.assert_array_equal(root[f"{k}/0"][0, 0], values)
    with pytest.raises(FileExistsError):
        write_images(data, out, axes="zyx")
    with pytest.raises(ValueError, match="2 positions for 1 images"):
        write_images(data[:1], tmp_path / "x.ims", axes="zyx", positions=positions)


def test_convert_an_ims_of_several_images_to_ims(mosaics: dict, tmp_path: Path) -> None:
    from ims_store.fronts.cli import main

    path, tiles = mosaics[True]
    out = tmp_path / "copy.ims"
    assert main(["convert", str(path), str(out), "--quiet"]) == 0
    entries = ImsStore(out).images
    assert len(entries) == 3
    for k, tile in enumerate(tiles):
        np.testing.assert_array_equal(h5py_image_level(out, k, 0, 0, 1), tile.data[1])
        assert entries[k].layout.extent_min == ImsStore(path, image=k).layout.extent_min


# -- the hardening contract, for files of several images ----------------------------------------


def _assert_names_file(err: BaseException, path: Path) -> None:
    from contract import assert_specific

    assert_specific(err, path)


@pytest.mark.parametrize("how", ["moved", "not-hdf5", "not-imaris", "cycle"])
def test_every_command_on_a_mosaic_with_a_broken_tile(tmp_path: Path, how: str, capsys: pytest.CaptureFixture) -> None:
    """Open, info, read, validate (deep or not), serve and convert: the readable images work with
    h5py's pixels; the broken one gives its specific error, naming the file, wherever it is asked
    for; nothing is written for a conversion of the whole file."""
    import http.client

    from ims_store.fronts.cli import main
    from ims_store.fronts.serve import make_server

    path, tiles = mosaic(tmp_path, link=True)
    break_tile(tmp_path / f"{path.stem}_tile_1.ims", how)

    entries = ImsStore(path).images  # open
    _assert_names_file(entries[1].error, path)
    assert isinstance(entries[1].error, LinkTargetError)
    with pytest.raises(LinkTargetError) as caught:  # read
        ImsStore(path, image=1)
    _assert_names_file(caught.value, path)
    for k in (0, 2):
        for level in range(h5py_level_count(path, k)):
            data = ImsStore(path, image=k).to_dask(level)[0].compute()
            for c in range(2):
                np.testing.assert_array_equal(data[c], h5py_image_level(path, k, level, 0, c))
    capsys.readouterr()
    assert main(["info", str(path)]) == 1  # info
    assert "image 1 (/DataSet1): cannot be read" in capsys.readouterr().out
    for deep in ([], ["--deep"]):  # validate
        assert main(["validate", str(path), *deep]) == 1
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error")]
        assert len(lines) == 1 and lines[0].startswith("error: /DataSet1: image 1 (/DataSet1): ")
    for out in ("all.ome.zarr", "all.ims"):  # convert
        assert main(["convert", str(path), str(tmp_path / out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and "image 1 (/DataSet1)" in err and not (tmp_path / out).exists()
        assert main(["convert", str(path), str(tmp_path / f"two-{out}"), "--quiet", "--image", "2"]) == 0
    server = make_server(path, port=0, follow_links=True)  # serve
    server.serve_in_thread()
    try:
        host, port = server.server_address[:2]
        for key, status in (("OME/zarr.json", 200), ("0/0/zarr.json", 200), ("1/zarr.json", 404), ("2/zarr.json", 200)):
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", "/" + key)
            assert conn.getresponse().status == status, key
            conn.close()
        root = zarr.open_group(server.url, mode="r")
        assert root["OME"].attrs["ome"]["series"] == ["0", "2"]
        np.testing.assert_array_equal(root["2/0"][0], tiles[2].data)
    finally:
        server.shutdown()
        server.server_close()


def test_a_broken_link_of_one_channel_fails_only_that_channel(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The layout opens one channel's ``Data`` per level: another channel's ``Data`` linked to a
    missing file is found when that channel's data is asked for, and named then; validate finds
    it at once. (A broken link to a whole channel group is found on opening: the image is then
    unreadable, as the tests above show.)"""
    from ims_store.fronts.cli import main

    path, tiles = mosaic(tmp_path, link=False)
    where = "DataSet1/ResolutionLevel 0/TimePoint 0/Channel 1/Data"
    with h5py.File(path, "r+") as f:
        del f[where]
        f[where] = h5py.ExternalLink("./gone.ims", "/Data")
    store = ImsStore(path, image=1)
    np.testing.assert_array_equal(store.to_dask(0)[0, 0].compute(), tiles[1].data[0])
    with pytest.raises(LinkTargetError) as caught:
        store.to_dask(0)[0, 1].compute()
    _assert_names_file(caught.value, path)
    assert "gone.ims" in str(caught.value)
    with pytest.raises(LinkTargetError):
        zarr.open_group(ImsStore(path), mode="r")["1/0"][0, 1]
    capsys.readouterr()
    assert main(["validate", str(path)]) == 1
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error")]
    assert errors and all(f"/{where}" in line for line in errors)
    assert main(["convert", str(path), str(tmp_path / "all.ome.zarr"), "--quiet"]) == 2
    assert "gone.ims" in capsys.readouterr().err and not (tmp_path / "all.ome.zarr").exists()


def test_remote_mosaic_follows_tile_links_against_the_url(tmp_path: Path) -> None:
    """Over HTTP, each tile's links are resolved against the mosaic's URL and its chunks fetched
    from the tile's own URL; a missing tile is reported as locally."""
    from http_files import FileServer

    path, tiles = mosaic(tmp_path, link=True)
    server = FileServer(tmp_path)
    try:
        url = server.url(path.name)
        root = zarr.open_group(ImsStore(url), mode="r")
        for k, tile in enumerate(tiles):
            np.testing.assert_array_equal(root[f"{k}/0"][0], tile.data)
        assert any(p.endswith(f"{path.stem}_tile_2.ims") for _, p, _ in server.requests)
        break_tile(tmp_path / f"{path.stem}_tile_1.ims", "moved")
        entries = ImsStore(url).images
        assert isinstance(entries[1].error, LinkTargetError) and url in str(entries[1].error)
        assert entries[0].error is None and entries[2].error is None
    finally:
        server.close()


def test_whole_image_groups_as_external_links(tmp_path: Path) -> None:
    """``DataSet1`` itself an external link to a tile's ``/DataSet``: read through it; the tile
    gone, that image is reported, not mistaken for a file of one image."""
    path, tiles = mosaic(tmp_path, link=False)
    tile = tmp_path / f"{path.stem}_tile_1.ims"
    with h5py.File(path, "r+") as f:
        del f["DataSet1"]
        f["DataSet1"] = h5py.ExternalLink(f"./{tile.name}", "/DataSet")
    np.testing.assert_array_equal(zarr.open_group(ImsStore(path), mode="r")["1/0"][0], tiles[1].data)
    tile.unlink()
    entries = ImsStore(path).images
    assert len(entries) == 3 and isinstance(entries[1].error, LinkTargetError)


def test_dask_arrays_of_two_images_of_one_shape_stay_apart(mosaics: dict) -> None:
    """Tiles 0 and 1 have the same shape: their dask arrays must not share a name (dask would
    take one for the other)."""
    import dask.array as da

    path, tiles = mosaics[True]
    a, b = ImsStore(path, image=0).to_dask(0), ImsStore(path, image=1).to_dask(0)
    assert a.shape == b.shape and a.name != b.name
    both = da.stack([a, b]).compute()
    np.testing.assert_array_equal(both[0, 0], tiles[0].data)
    np.testing.assert_array_equal(both[1, 0], tiles[1].data)


def test_serve_command_lists_each_image(tmp_path: Path) -> None:
    """``ims-store serve`` on a file of several images: the collection's address, then each
    image's, a broken tile named with its error; the addresses answer with the images."""
    import re
    import subprocess
    import sys

    path, tiles = mosaic(tmp_path, link=True)
    break_tile(tmp_path / f"{path.stem}_tile_0.ims", "moved")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ims_store.fronts.cli", "serve", str(path), "--port", "0", "--follow-links"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        while not lines or not lines[-1].startswith("press Ctrl-C"):
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "serve ended early"
            lines.append(line)
        assert "3 images (bioformats2raw.layout collection)" in lines[0]
        assert lines[1].startswith("  image 0: not served: image 0 (/DataSet): ")
        urls = {int(m.group(1)): m.group(2) for line in lines if (m := re.match(r"  image (\d+): (http\S+)", line))}
        assert sorted(urls) == [1, 2]
        for k, url in urls.items():
            np.testing.assert_array_equal(zarr.open_group(url, mode="r")["0"][0], tiles[k].data)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("link", LINKING)
def test_references_of_a_collection(mosaics: dict, link: bool, tmp_path: Path) -> None:
    """kerchunk references of the whole collection (or one image): zarr reads every image through
    fsspec's reference file system with h5py's pixels (linked tiles referenced in their files)."""
    import fsspec
    from zarr.storage import FsspecStore

    from ims_store.store.refs import make_references

    path, tiles = mosaics[link]
    refs = make_references(path)
    fs = fsspec.filesystem("reference", fo=refs, remote_protocol="file", asynchronous=True)
    root = zarr.open_group(FsspecStore(fs, read_only=True, path=""), mode="r", zarr_format=2)
    assert root["OME"].attrs["series"] == ["0", "1", "2"]
    for k, tile in enumerate(tiles):
        for c in range(2):
            np.testing.assert_array_equal(root[f"{k}/0"][0, c], h5py_image_level(path, k, 0, 0, c))
        np.testing.assert_array_equal(root[f"{k}/0"][0], tile.data)
    one = make_references(path, image=2)["refs"]
    assert {key: value for key, value in refs["refs"].items() if key.startswith("2/")} == {
        f"2/{key}": value for key, value in one.items()
    }


@pytest.fixture(scope="module")
def one_image_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    return make_example_ims(folder / "one.ims", shape=(2, 16, 16), channels=1, timepoints=1, levels=1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    table=st.lists(st.tuples(*[st.floats(-0.5, 1.5, allow_nan=False)] * 3), min_size=1, max_size=40),
    as_dataset=st.booleans(),
    stated=st.integers(0, 45) | st.none(),
)
def test_color_tables_of_any_length(
    one_image_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
    table: list,
    as_dataset: bool,
    stated: int | None,
) -> None:
    """Whatever the table and its stated length, the channel's table is the text's whole (r, g, b)
    entries clipped to 0..1, and the omero colour its last entry; a disagreeing length is noted."""
    path = tmp_path_factory.mktemp("table") / "one.ims"
    shutil.copyfile(one_image_template, path)
    text = set_color_table(path, 0, 0, np.array(table), as_dataset=as_dataset)
    if stated is not None:
        with h5py.File(path, "r+") as f:
            f["DataSetInfo/Channel 0"].attrs["ColorTableLength"] = np.frombuffer(str(stated).encode(), "S1")
    expected = np.clip(np.array([float(v) for v in text.split()]).reshape(-1, 3), 0, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = ImsStore(path)
    np.testing.assert_array_equal(np.array(store.layout.channels[0].color_table), expected)
    noted = any("ColorTableLength" in str(w.message) for w in caught)
    assert noted == (stated is not None and stated != len(table))
    color = zarr.open_group(store, mode="r").attrs["ome"]["omero"]["channels"][0]["color"]
    assert color == "".join(f"{round(v * 255):02X}" for v in expected[-1])


def test_image_store_from_any_store(mosaics: dict, tmp_path: Path) -> None:
    path, tiles = mosaics[False]
    two = ImsStore(path, image=2)
    assert two.image_store(2) is two and [e.index for e in two.images] == [2]
    np.testing.assert_array_equal(two.image_store(1).to_dask(0)[0].compute(), tiles[1].data)
    with pytest.raises(SelectionError, match="image 5 does not exist"):
        two.image_store(5)
    with pytest.raises(SelectionError, match=r"image 7 does not exist; the file has images 0\.\.2"):
        ImsStore(path).image_store(7)
    single = make_example_ims(tmp_path / "one.ims", shape=(2, 16, 16), channels=1, timepoints=1, levels=1)
    with pytest.raises(SelectionError, match="image 1 does not exist; the file has image 0 only"):
        ImsStore(single).image_store(1)
    for bad in (True, "1", -1, 1.0):
        with pytest.raises(SelectionError):
            ImsStore(path, image=bad)  # type: ignore[arg-type]


def test_collection_as_a_mapping(mosaics: dict) -> None:
    path, tiles = mosaics[False]
    store = ImsStore(path)
    mapping = store.as_mapping()
    keys = set(mapping)
    for k in range(len(tiles)):
        alone = set(ImsStore(path, image=k).as_mapping())
        assert {key for key in keys if key.startswith(f"{k}/")} == {f"{k}/{key}" for key in alone}
    assert {"zarr.json", "OME/zarr.json"} <= keys and len(mapping) == len(keys)
    assert "2/0/zarr.json" in mapping and "3/0/zarr.json" not in mapping and "OME/x" not in mapping
    assert mapping["1/0/zarr.json"] == ImsStore(path, image=1).as_mapping()["0/zarr.json"]
