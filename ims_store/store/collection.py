"""The key space of a file of several images: an OME-NGFF ``bioformats2raw.layout`` collection.

Tiled acquisitions are put together for Imaris as one file of several images (``DataSet``,
``DataSet1``, ...; see `format.layout.parse_images`). NGFF 0.4 and 0.5 have one way to hold
several multiscale images side by side that readers know: the transitional
``bioformats2raw.layout`` (NGFF 0.4 section "bf2raw"; in 0.5 inside the ``ome`` key), which
``ome-zarr-models`` validates and ome-zarr-py / napari-ome-zarr read. The virtual hierarchy::

    zarr.json                 {"ome": {"version": "0.5", "bioformats2raw.layout": 3}, "imaris": {...}}
    OME/zarr.json             {"ome": {"version": "0.5", "series": ["0", "1", ...]}}
    0/zarr.json               image 0: exactly what ImsStore(path, image=0) holds at its root
    0/0/zarr.json, 0/0/c/...  its levels and chunks
    1/...                     image 1, with its own translation (ExtMin): tiles sit where acquired

(zarr v2 / NGFF 0.4: ``.zgroup`` + ``.zattrs`` with ``"bioformats2raw.layout": 3`` at the root,
``"series"`` in ``OME/.zattrs``.) An image that cannot be read (a tile whose linked file is
missing) has no group; ``series`` lists the images there are, under their Imaris numbers, and
the root's ``imaris`` section says what is wrong with the others. No ``METADATA.ome.xml`` is
offered: the layout makes it optional and Imaris records nothing it would add.

>>> import zarr
>>> from ims_store import ImsStore
>>> root = zarr.open_group(ImsStore("tiles.ims"), mode="r")
>>> root["OME"].attrs["ome"]["series"]
['0', '1']
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from ..errors import SelectionError
from ..format.layout import ImageEntry
from .keys import ZarrFormat

__all__ = ["ImageCollection", "ImageStore", "collection_metadata"]


class ImageStore(Protocol):
    """What the collection asks of the store of one of its images (an `ImsStore`)."""

    def keys_under(self, prefix: str) -> Iterator[str]: ...

    def list_dir(self, prefix: str) -> AsyncIterator[str]: ...

    def close(self) -> None: ...


S = TypeVar("S", bound=ImageStore)

#: the one version of the bioformats2raw layout there is
LAYOUT_VERSION = 3


def _image_summary(entry: ImageEntry) -> dict[str, Any]:
    if entry.layout is None:
        return {"image": entry.index, "group": entry.group, "error": str(entry.error)}
    lay = entry.layout
    return {
        "image": entry.index,
        "group": entry.group,
        "name": lay.name,
        "path": str(entry.index),
        "extent_min_zyx": list(lay.extent_min),
        "extent_max_zyx": list(lay.extent_max),
        "unit": lay.unit,
    }


def collection_metadata(entries: tuple[ImageEntry, ...], zarr_format: ZarrFormat) -> dict[str, bytes]:
    """The collection's own metadata documents (root and ``OME`` group), keyed by store key."""
    series = [str(e.index) for e in entries if e.layout is not None]
    imaris = {"images": [_image_summary(e) for e in entries]}
    docs: dict[str, Any]
    if zarr_format == 3:
        docs = {
            "zarr.json": {
                "zarr_format": 3,
                "node_type": "group",
                "attributes": {"ome": {"version": "0.5", "bioformats2raw.layout": LAYOUT_VERSION}, "imaris": imaris},
            },
            "OME/zarr.json": {
                "zarr_format": 3,
                "node_type": "group",
                "attributes": {"ome": {"version": "0.5", "series": series}},
            },
        }
    else:
        docs = {
            ".zgroup": {"zarr_format": 2},
            ".zattrs": {"bioformats2raw.layout": LAYOUT_VERSION, "imaris": imaris},
            "OME/.zgroup": {"zarr_format": 2},
            "OME/.zattrs": {"series": series},
        }
    return {key: json.dumps(doc, indent=2, allow_nan=False).encode() for key, doc in docs.items()}


class ImageCollection(Generic[S]):
    """Routes the keys of a collection: its own documents, and ``<k>/...`` to image k's store
    (an `ImsStore` of that image alone, opened on first use by ``open_image``)."""

    def __init__(
        self, entries: tuple[ImageEntry, ...], zarr_format: ZarrFormat, open_image: Callable[[int], S]
    ) -> None:
        self.entries = entries
        self.metadata = collection_metadata(entries, zarr_format)
        self._open_image = open_image
        self._stores: dict[int, S] = {}
        self.readable = [e.index for e in entries if e.layout is not None]

    def image(self, image: int, path: str) -> S:
        """The store of image ``image`` (any integer): one that cannot be read raises its error,
        one that does not exist a `SelectionError` naming the file at ``path``."""
        entries = self.entries
        if isinstance(image, bool) or not isinstance(image, (int, np.integer)) or not 0 <= image < len(entries):
            raise SelectionError(f"image {image!r} does not exist; the file has images 0..{len(entries) - 1}", path)
        entry = entries[int(image)]
        if entry.error is not None:
            raise entry.error
        return self.store(int(image))

    def store(self, image: int) -> S:
        """The store of one readable image (opened once)."""
        found = self._stores.get(image)
        if found is None:
            found = self._stores[image] = self._open_image(image)
        return found

    def split(self, key: str) -> tuple[S, str] | None:
        """The image store a key belongs to and the key within it; None for keys of no image."""
        head, sep, rest = key.partition("/")
        if not sep or not (head.isdigit() and head.isascii()) or (head != "0" and head.startswith("0")):
            return None
        image = int(head)
        if image not in self.readable:
            return None
        return self.store(image), rest

    def children(self, prefix: str) -> list[str] | None:
        """The names directly under ``prefix`` that the collection itself holds; None where the
        prefix lies inside an image (its store lists it)."""
        if prefix == "":
            return sorted({k.split("/")[0] for k in self.metadata}) + [str(i) for i in self.readable]
        if prefix == "OME":
            return [k.split("/", 1)[1] for k in self.metadata if k.startswith("OME/")]
        return None

    def own_keys(self, prefix: str = "") -> Iterator[str]:
        return (k for k in self.metadata if k.startswith(prefix))

    def keys_under(self, prefix: str) -> Iterator[str]:
        """The keys starting with ``prefix``: the collection's documents, then each readable
        image's keys under ``k/``."""
        yield from self.own_keys(prefix)
        for image in self.readable:
            head = f"{image}/"
            if head.startswith(prefix) or prefix.startswith(head):
                inner = prefix[len(head) :] if prefix.startswith(head) else ""
                yield from (head + key for key in self.store(image).keys_under(inner))

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        """The names directly under ``prefix`` (no trailing slash): the collection's own, or
        those an image's store lists."""
        own = self.children(prefix)
        if own is not None:
            for child in own:
                yield child
            return
        routed = self.split(prefix + "/")
        if routed is not None:
            async for child in routed[0].list_dir(routed[1]):
                yield child

    def close(self) -> None:
        stores, self._stores = self._stores, {}
        for store in stores.values():
            store.close()
