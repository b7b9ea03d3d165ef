"""A read-only ``Mapping[str, bytes]`` view of an `ImsStore`, for tools that take a key -> bytes
mapping rather than a zarr store object (ZarrNii, ngff-zarr, fsspec-style code).

>>> from ims_store import ImsStore
>>> m = ImsStore("cells.ims").as_mapping()
>>> "zarr.json" in m, m["zarr.json"][:1]
(True, b'{')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

__all__ = ["KeyStore", "StoreMapping"]


class KeyStore(Protocol):
    """What the mapping asks of its store (an `ImsStore`): bytes by key, membership, listing."""

    def get_sync(self, key: str) -> Any: ...

    def is_key(self, key: str) -> bool: ...

    def keys_under(self, prefix: str) -> Iterator[str]: ...


class StoreMapping(Mapping[str, bytes]):
    """The keys and bytes of an `ImsStore`, as a mapping. Cheap to create (no I/O); picklable.

    Lookups and membership tests touch one chunk index at most; iterating or taking ``len``
    visits every dataset's chunk index, as listing the store does.
    """

    def __init__(self, store: KeyStore) -> None:
        self.store = store

    def __getitem__(self, key: str) -> bytes:
        value = self.store.get_sync(key)
        if value is None:
            raise KeyError(key)
        return value.to_bytes()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.store.is_key(key)

    def __iter__(self) -> Iterator[str]:
        return self.store.keys_under("")

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"StoreMapping({self.store!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreMapping) and other.store == self.store

    def __hash__(self) -> int:
        return hash(self.store)
