"""Several images in one Imaris file (tiles, positions): `write_images`.

Each image is written by `write_ims` as a file of one image (its full pyramid, histograms,
thumbnail), then the file of several is put together as Imaris and the tools that assemble
tiled acquisitions for it do (imaris-format.md section 11): the root's ``NumberOfDataSets`` is
the number of images, image k's data is ``DataSet{k}`` and its description ``DataSetInfo{k}``
(no number for image 0), each with the extents of where it was acquired; ``RecordingDate`` is
left out (Imaris would otherwise take the images for time points of one). The data is copied
chunk for chunk (HDF5's object copy: nothing is decoded again), or, with ``link=True``, each
image stays in a file of its own beside the output, ``<stem>_image_<k>.ims``, and the output's
``Channel`` groups are HDF5 external links to it (relative names, so that the folder can move).

>>> import numpy as np
>>> tiles = [np.zeros((8, 64, 64), np.uint16), np.ones((8, 64, 64), np.uint16)]
>>> out = write_images(tiles, "row.ims", axes="zyx", positions=[(0, 0, 0), (0, 0, 60)])
>>> from ims_store import ImsStore
>>> [e.layout.extent_min[2] for e in ImsStore(out).images]
[-0.5, 59.5]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..access.outputs import WriteError, atomic_output, check_output, scratch_folder
from ..errors import ImsError
from .metadata import write_root_attributes
from .sources import named_files
from .writer import write_ims

__all__ = ["write_images"]


def write_images(
    images: Sequence[Any],
    path: str | os.PathLike[str],
    *,
    positions: Sequence[Sequence[float]] | None = None,
    link: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    **options: Any,
) -> Path:
    """Write several images (any sources `write_ims` takes) into one Imaris file at ``path``.

    ``positions``: the (z, y, x) centre of each image's first voxel, in its unit (default: what
    each source carries). ``options`` go to `write_ims` for every image (``axes``,
    ``voxel_size``, ``compression``, ``chunks``...). ``link=True`` keeps each image in a file of
    its own beside ``path`` (``<stem>_image_<k>.ims``), linked from ``path`` by HDF5 external
    links. Returns ``path``.

    >>> import numpy as np
    >>> out = write_images([np.zeros((4, 32, 32), np.uint8)] * 2, "two.ims", axes="zyx",
    ...                    positions=[(0, 0, 0), (0, 40, 0)], link=True)
    >>> sorted(p.name for p in out.parent.glob("two*.ims"))
    ['two.ims', 'two_image_0.ims', 'two_image_1.ims']
    """
    path = Path(path)
    if len(images) < 1:
        raise ValueError("write_images needs one image at least")
    if positions is not None and len(positions) != len(images):
        raise ValueError(f"{len(positions)} positions for {len(images)} images")
    inputs = [name for image in images for name in named_files(image)]
    check_output(path, overwrite, inputs)
    if link:
        tiles = [path.with_name(f"{path.stem}_image_{k}.ims") for k in range(len(images))]
        for tile in tiles:
            check_output(tile, overwrite, inputs)
        _write_each(images, tiles, positions, overwrite, progress, options)
        _compose(path, tiles, overwrite, inputs, link=True)
        return path
    if not path.parent.is_dir():
        raise WriteError(f"folder {path.parent} does not exist", path)
    with scratch_folder(path) as folder:
        tiles = [folder / f"image_{k}.ims" for k in range(len(images))]
        _write_each(images, tiles, positions, True, progress, options)
        _compose(path, tiles, overwrite, inputs, link=False)
    return path


def _write_each(
    images: Sequence[Any],
    tiles: list[Path],
    positions: Sequence[Sequence[float]] | None,
    overwrite: bool,
    progress: bool,
    options: dict[str, Any],
) -> None:
    for k, (source, tile) in enumerate(zip(images, tiles, strict=True)):
        extra = dict(options)
        if positions is not None:
            extra["origin"] = tuple(float(v) for v in positions[k])
        write_ims(source, tile, overwrite=overwrite, progress=progress, **extra)


def _compose(path: Path, tiles: list[Path], overwrite: bool, inputs: list[str], *, link: bool) -> None:
    """The file of several images, from files of one image each (see the module docstring)."""
    with atomic_output(path, overwrite, inputs=inputs) as tmp:
        try:
            with h5py.File(tmp, "w") as f:
                write_root_attributes(f)
                del f.attrs["NumberOfDataSets"]
                f.attrs.create("NumberOfDataSets", np.array([len(tiles)], dtype=np.uint32))
                for k, tile in enumerate(tiles):
                    suffix = str(k) if k else ""
                    with h5py.File(tile, "r") as t:
                        t.copy(t["DataSetInfo"], f, name=f"DataSetInfo{suffix}")
                        described = f[f"DataSetInfo{suffix}/Image"]
                        if "RecordingDate" in described.attrs:
                            del described.attrs["RecordingDate"]
                        if k == 0:
                            t.copy(t["Thumbnail"], f, name="Thumbnail")
                        if not link:
                            t.copy(t["DataSet"], f, name=f"DataSet{suffix}")
                            continue
                        for level, times in t["DataSet"].items():
                            for time, channels in times.items():
                                group = f.require_group(f"DataSet{suffix}/{level}/{time}")
                                for channel in channels:
                                    group[channel] = h5py.ExternalLink(
                                        f"./{tile.name}", f"/DataSet/{level}/{time}/{channel}"
                                    )
        except ImsError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            raise WriteError(f"putting the images together failed: {err}", path) from err
