"""`ReadOnlyStore`: the half of zarr's `Store` protocol a store that never writes answers alike:
its capabilities, and every write refused with a `ReadOnlyError` naming the file.

>>> from ims_store import ImsStore
>>> ImsStore("cells.ims").supports_writes
False
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from zarr.abc.store import Store
from zarr.core.buffer import Buffer

from ..errors import ReadOnlyError

__all__ = ["READ_ONLY", "ReadOnlyStore"]

#: what a refused write says
READ_ONLY = "store was opened in read-only mode and does not support writing"


class ReadOnlyStore(Store):
    """A zarr store that lists and reads, and refuses every write. Subclasses set ``_path``
    (the file the errors name) and implement the reading half of the protocol."""

    _path: str

    @property
    def supports_writes(self) -> bool:
        return False

    @property
    def supports_deletes(self) -> bool:
        return False

    @property
    def supports_listing(self) -> bool:
        return True

    @property
    def supports_partial_writes(self) -> Literal[False]:
        return False

    async def set(self, key: str, value: Buffer) -> None:
        raise ReadOnlyError(READ_ONLY, self._path)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        raise ReadOnlyError(READ_ONLY, self._path)

    async def delete(self, key: str) -> None:
        raise ReadOnlyError(READ_ONLY, self._path)

    async def set_partial_values(self, key_start_values: Iterable[tuple[str, int, Any]]) -> None:
        raise ReadOnlyError(READ_ONLY, self._path)

    async def delete_dir(self, prefix: str) -> None:
        raise ReadOnlyError(READ_ONLY, self._path)

    async def clear(self) -> None:
        raise ReadOnlyError(READ_ONLY, self._path)
