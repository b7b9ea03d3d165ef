"""What the HTTP server serves: a resolver maps a request's path to a store and one of its keys,
or to a document of its own (a folder's index), or to nothing (404).

One file is the trivial case (`SingleStore`: every path is a key of its one store); a folder
(`ims_store.fronts.folder.ImageFolder`) finds the file a path names, opens it on first use and
closes it when idle. The server has one handler for both.

>>> resolver = SingleStore(served_store("cells.ims", "0.5", follow_links=False))
>>> with resolver.target(Request("zarr.json", accept="", base_url="http://127.0.0.1:8000/")) as found:
...     store, key = found
>>> key
'zarr.json'
>>> resolver.close()
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..store.zarr_store import ImsStore

__all__ = ["Document", "Request", "Resolver", "SingleStore", "Target", "served_store"]


@dataclass(frozen=True)
class Request:
    """What a resolver may look at: the key (the URL path without its leading ``/``, already
    checked to hold no ``.``, ``..`` or empty segment), the ``Accept`` header, and the URL the
    client reached the server at (for links in documents)."""

    key: str
    accept: str
    base_url: str


@dataclass(frozen=True)
class Document:
    """A response the resolver makes itself (an index, or why a file cannot be served)."""

    body: bytes
    content_type: str
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


# (store, key): the key of that store; None: nothing there (404)
Target = tuple[ImsStore, str] | Document | None


class Resolver(Protocol):
    """Maps requests to targets; ``target`` holds what it yields in use until the block ends (a
    folder does not close a store a request is reading)."""

    def target(self, request: Request) -> contextlib.AbstractContextManager[Target]: ...

    def close(self) -> None: ...


class SingleStore:
    """One store: every path is one of its keys (``ims-store serve cells.ims``)."""

    def __init__(self, store: ImsStore) -> None:
        self.store = store

    @contextlib.contextmanager
    def target(self, request: Request) -> Iterator[Target]:
        yield (self.store, request.key) if request.key else None

    def close(self) -> None:
        self.store.close()


def served_store(
    path: str | os.PathLike[str], ngff: Literal["0.4", "0.5"], follow_links: bool, image: int | None = None
) -> ImsStore:
    """The store a server presents ``path`` through (``image``: one image of a file of several).

    NGFF 0.4 is zarr v2 with the stored chunks passed through (zarr v2's ``zlib`` codec is read
    by zarr-python, tensorstore, neuroglancer and vizarr alike); NGFF 0.5 is zarr v3 with chunks
    decoded by the store, since zarr v3 has no core codec for HDF5's zlib streams.
    """
    if ngff not in ("0.4", "0.5"):
        raise ValueError(f"ngff must be '0.4' or '0.5', not {ngff!r}")
    if ngff == "0.4":
        return ImsStore(path, zarr_format=2, chunk_mode="passthrough", follow_links=follow_links, image=image)
    return ImsStore(path, zarr_format=3, follow_links=follow_links, image=image)
