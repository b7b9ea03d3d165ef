"""Files of several images, built with plain h5py from the documented structure (imaris-format.md
section 11), so that what ims_store reads is checked against how the file was made, not against
ims_store's own writer of several images.

Each tile is a one-image file written by `write_ims` (the single-image writer, tested on its
own); `compose` then puts them together as Imaris does: root ``NumberOfDataSets`` = N, images
``DataSet``, ``DataSet1``, ... with ``DataSetInfo``, ``DataSetInfo1``, ... beside them, each
image's data copied in or, with ``link=True``, its ``Channel`` groups HDF5 external links
(relative names) into the tile files. ``RecordingDate`` is left out, as the tool that makes
such files does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ims_store import write_ims


@dataclass(frozen=True)
class Tile:
    """One image of a mosaic: its voxels (c, z, y, x) and where its first voxel's centre is."""

    data: np.ndarray
    origin: tuple[float, float, float]
    voxel_size: tuple[float, float, float] = (2.0, 0.5, 0.5)


def tiles_of_two_sizes() -> list[Tile]:
    """Three tiles of different sizes, types agreeing, at different world positions."""
    rng = np.random.default_rng(17)
    return [
        Tile(rng.integers(0, 4000, (2, 6, 40, 30), dtype=np.uint16), (0.0, 0.0, 0.0)),
        Tile(rng.integers(0, 4000, (2, 6, 40, 30), dtype=np.uint16), (0.0, 0.0, 14.0)),
        Tile(rng.integers(0, 4000, (2, 9, 52, 33), dtype=np.uint16), (3.0, 18.0, 0.5)),
    ]


def write_tiles(folder: Path, tiles: list[Tile], stem: str = "tile") -> list[Path]:
    """Each tile as a one-image file ``<stem>_<k>.ims`` in ``folder``."""
    paths = []
    for k, tile in enumerate(tiles):
        path = folder / f"{stem}_{k}.ims"
        write_ims(tile.data, path, axes="czyx", voxel_size=tile.voxel_size, origin=tile.origin, chunks=(4, 16, 16))
        paths.append(path)
    return paths


def _copy_attrs(src: h5py.HLObject, dst: h5py.HLObject) -> None:
    """Every attribute, with its stored type (h5py's high-level copy would turn Imaris' NULLTERM
    char arrays into NULLPAD ones)."""
    for name in src.attrs:
        attr = h5py.h5a.open(src.id, name.encode("latin-1"))
        values = np.empty(attr.shape, dtype=attr.dtype)
        attr.read(values, mtype=attr.get_type())
        copy = h5py.h5a.create(dst.id, name.encode("latin-1"), attr.get_type(), attr.get_space())
        copy.write(values, mtype=attr.get_type())


def _write_chars(obj: h5py.HLObject, name: str, text: str) -> None:
    """Text as Imaris stores it: one character per element, C_S1 of size 1, NULLTERM."""
    if name in obj.attrs:
        del obj.attrs[name]
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(1)
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    data = np.frombuffer(text.encode("latin-1"), dtype="S1")
    attr = h5py.h5a.create(obj.id, name.encode("latin-1"), tid, h5py.h5s.create_simple(data.shape))
    attr.write(data, mtype=tid)


def compose(out: Path, tiles: list[Path], *, link: bool = False) -> Path:
    """One file holding every tile as an image of its own (see the module docstring)."""
    with h5py.File(out, "w") as f:
        with h5py.File(tiles[0], "r") as first:
            _copy_attrs(first, f)
            first.copy(first["Thumbnail"], f, name="Thumbnail")
        del f.attrs["NumberOfDataSets"]
        f.attrs.create("NumberOfDataSets", np.array([len(tiles)], dtype=np.uint32))
        for k, tile in enumerate(tiles):
            suffix = str(k) if k else ""
            with h5py.File(tile, "r") as t:
                t.copy(t["DataSetInfo"], f, name=f"DataSetInfo{suffix}")
                if "RecordingDate" in f[f"DataSetInfo{suffix}/Image"].attrs:
                    del f[f"DataSetInfo{suffix}/Image"].attrs["RecordingDate"]
                if not link:
                    t.copy(t["DataSet"], f, name=f"DataSet{suffix}")
                    continue
                for level in t["DataSet"]:
                    for time in t[f"DataSet/{level}"]:
                        group = f.require_group(f"DataSet{suffix}/{level}/{time}")
                        for channel in t[f"DataSet/{level}/{time}"]:
                            target = f"/DataSet/{level}/{time}/{channel}"
                            group[channel] = h5py.ExternalLink(f"./{tile.name}", target)
    return out


def mosaic(folder: Path, *, link: bool = False, stem: str = "mosaic") -> tuple[Path, list[Tile]]:
    """`tiles_of_two_sizes` written and composed into ``<stem>.ims``; returns it and the tiles."""
    tiles = tiles_of_two_sizes()
    paths = write_tiles(folder, tiles, stem=f"{stem}_tile")
    return compose(folder / f"{stem}.ims", paths, link=link), tiles


def set_color_table(path: Path, image: int, channel: int, table: np.ndarray, *, as_dataset: bool) -> str:
    """Make a channel a ``TableColor`` one with ``table`` ((n, 3) in 0..1), the table kept as an
    attribute or as a dataset of single characters (as ImarisWriter does with long values).
    Returns the text written."""
    text = " ".join(f"{v:.3f}" for v in np.asarray(table, dtype=float).ravel())
    with h5py.File(path, "r+") as f:
        group = f[f"DataSetInfo{image or ''}/Channel {channel}"]
        _write_chars(group, "ColorMode", "TableColor")
        _write_chars(group, "ColorTableLength", str(len(table)))
        if as_dataset:
            group.create_dataset("ColorTable", data=np.frombuffer(text.encode("latin-1"), dtype="S1"))
        else:
            _write_chars(group, "ColorTable", text)
    return text


def break_tile(tile: Path, how: str) -> None:
    """Make one linked tile unreadable: ``moved`` (renamed away), ``not-hdf5`` (a text file in
    its place), ``not-imaris`` (an HDF5 file without the linked groups), ``cycle`` (its level 0
    channel 0 group an external link back into itself, through a companion file)."""
    if how == "moved":
        tile.rename(tile.with_name(tile.stem + "-moved.ims"))
    elif how == "not-hdf5":
        tile.write_text("this is not an HDF5 file\n" * 100)
    elif how == "not-imaris":
        tile.unlink()
        with h5py.File(tile, "w") as other:
            other.create_dataset("Something/Else", data=np.arange(10))
    elif how == "cycle":
        companion = tile.with_name(tile.stem + "-companion.ims")
        where = "/DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"
        with h5py.File(companion, "w") as c:
            c[where] = h5py.ExternalLink(tile.name, where)
        with h5py.File(tile, "r+") as t:
            del t[where]
            t[where] = h5py.ExternalLink(companion.name, where)
    else:
        raise ValueError(how)


def h5py_image_level(path: Path, image: int, level: int, t: int, c: int) -> np.ndarray:
    """h5py's read (links followed by HDF5) of the true-size region of one (level, time point,
    channel) of image ``image``, by number (the composed files number everything from 0)."""
    with h5py.File(path, "r") as f:
        group = f[f"DataSet{image or ''}/ResolutionLevel {level}/TimePoint {t}/Channel {c}"]
        size = [int(float(b"".join(group.attrs[f"ImageSize{a}"]).decode())) for a in "ZYX"]
        return group["Data"][: size[0], : size[1], : size[2]]


def h5py_level_count(path: Path, image: int) -> int:
    with h5py.File(path, "r") as f:
        return sum(1 for name in f[f"DataSet{image or ''}"] if name.startswith("ResolutionLevel "))
