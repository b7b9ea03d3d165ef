"""The block cache through which HDF5 reads a remote file's metadata: fsspec's file object with
whole blocks kept, and blocks fetched before the file object existed handed in.

HDF5 reads its metadata in many small pieces, pointer after pointer; whole blocks of a few MiB
make them a handful of requests. The first block (the superblock, and often the root group) is
fetched together with the file's size, in the same round trip, so opening a remote file costs
one round trip less than fsspec's ``blockcache`` would (which asks for the size first). It is
an fsspec cache type (`fsspec.caching.register_cache`), so every fsspec file object that takes a
``cache_type`` uses it.

>>> fetched = []
>>> def fetch(start, stop):
...     fetched.append((start, stop))
...     return bytes(range(start, stop))
>>> cache = SeededBlockCache(4, fetch, 10, blocks={0: b"SEED"})
>>> cache._fetch(2, 6)  # what a file object asks of its cache: block 0 was handed in
b'ED\\x04\\x05'
>>> fetched
[(4, 8)]
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from fsspec.caching import BaseCache, register_cache

__all__ = ["CACHE_TYPE", "SeededBlockCache"]

CACHE_TYPE = "ims_store_blocks"


class SeededBlockCache(BaseCache):
    """Whole blocks of ``blocksize`` bytes, the ``maxblocks`` last used kept; ``blocks`` maps block
    numbers to their bytes when they were fetched already."""

    name = CACHE_TYPE

    def __init__(
        self,
        blocksize: int,
        fetcher: Callable[[int, int], bytes],
        size: int,
        blocks: dict[int, bytes] | None = None,
        maxblocks: int = 32,
    ) -> None:
        super().__init__(blocksize, fetcher, size)
        self.maxblocks = maxblocks
        self._blocks: OrderedDict[int, bytes] = OrderedDict(blocks or {})
        self.nblocks = -(-size // blocksize) if blocksize else 0

    def _fetch(self, start: int | None, stop: int | None) -> bytes:
        start = 0 if start is None else start
        stop = self.size if stop is None else min(stop, self.size)
        if start >= stop:
            return b""
        first, last = start // self.blocksize, (stop - 1) // self.blocksize
        data = b"".join(self._block(i) for i in range(first, last + 1))
        offset = first * self.blocksize
        return data[start - offset : stop - offset]

    def _block(self, number: int) -> bytes:
        data = self._blocks.get(number)
        if data is not None:
            self.hit_count += 1
            self._blocks.move_to_end(number)
            return data
        self.miss_count += 1
        start = number * self.blocksize
        stop = min(start + self.blocksize, self.size)
        self.total_requested_bytes += stop - start
        data = self.fetcher(start, stop)
        self._blocks[number] = data
        while len(self._blocks) > self.maxblocks:
            self._blocks.popitem(last=False)
        return data


register_cache(SeededBlockCache, clobber=True)
