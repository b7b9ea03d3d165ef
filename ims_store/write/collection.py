"""Files of several images out: an OME-Zarr ``bioformats2raw.layout`` collection of them.

`collection_to_ome_zarr` writes what `ImsStore` presents for such a file (see
`store.collection`): the collection's root and ``OME`` groups, and each image converted as a
file of one image would be, at ``<k>/``. A file with an image that cannot be read is refused
with that image's error before anything is written: a collection missing a tile would look
complete to whoever opens it.

>>> from ims_store import to_ome_zarr
>>> out = to_ome_zarr("tiles.ims", "tiles.ome.zarr")
>>> sorted(p.name for p in out.iterdir())
['0', '1', 'OME', 'zarr.json']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..access.outputs import atomic_output
from ..store.collection import collection_metadata
from ..store.zarr_store import ImsStore

__all__ = ["collection_to_ome_zarr"]


def collection_to_ome_zarr(
    store: ImsStore,
    path: Path,
    convert_one: Callable[[int, Path], Path],
    overwrite: bool,
    inputs: Sequence[str] = (),
) -> Path:
    """Write the collection ``store`` presents at ``path``; ``convert_one(k, folder)`` writes
    image k as an OME-Zarr image at ``folder``. ``inputs``: the files read (see
    `outputs.check_output`)."""
    for entry in store.images:
        if entry.error is not None:
            raise entry.error
    with atomic_output(path, overwrite, inputs=(*inputs, store.path)) as tmp:
        tmp.mkdir()
        for key, doc in collection_metadata(store.images, store.zarr_format).items():
            (tmp / key).parent.mkdir(parents=True, exist_ok=True)
            (tmp / key).write_bytes(doc)
        for entry in store.images:
            convert_one(entry.index, tmp / str(entry.index))
    return path
