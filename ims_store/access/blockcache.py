"""The block cache through which HDF5 reads a remote file's metadata: fsspec's file object with
whole blocks kept, and blocks fetched before the file object existed handed in.

HDF5 reads its metadata in many small pieces, pointer after pointer; whole blocks of a few MiB
make them a handful of requests. The first block (the superblock, and often the root group) is
fetched together with the file's size, in the same round trip, so opening a remote file costs
one round trip less than fsspec's ``blockcache`` would (which asks for the size first). Where
HDF5 walks on from one block into the next (the group listings of a file with many time points
lie one after another), the blocks after it come in the same request, twice as many each time
the walk goes on, up to `MAX_RUN`. It is an fsspec cache type (`fsspec.caching.register_cache`),
so every fsspec file object that takes a ``cache_type`` uses it.

>>> fetched = []
>>> def fetch(start, stop):
...     fetched.append((start, stop))
...     return bytes(range(start, stop))
>>> cache = SeededBlockCache(4, fetch, 10, blocks={0: b"SEED"})
>>> cache._fetch(2, 6)  # what a file object asks of its cache: block 0 was handed in
b'ED\\x04\\x05'
>>> fetched  # block 1, and block 2 with it: the read went on from block 0 into block 1
[(4, 10)]
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from fsspec.caching import BaseCache, register_cache

__all__ = ["CACHE_TYPE", "SeededBlockCache"]

CACHE_TYPE = "ims_store_blocks"

MAX_RUN = 4
"""Blocks fetched in one request at most, when HDF5 reads on into the next block."""


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
        self._run = 1  # blocks the next request fetches when HDF5 reads on into the next block

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
        self._run = min(2 * self._run, MAX_RUN) if number - 1 in self._blocks else 1
        count = 1
        while count < self._run and number + count < self.nblocks and number + count not in self._blocks:
            count += 1
        start = number * self.blocksize
        stop = min(start + count * self.blocksize, self.size)
        self.total_requested_bytes += stop - start
        data = self.fetcher(start, stop)
        for i in range(count):
            self._blocks[number + i] = data[i * self.blocksize : (i + 1) * self.blocksize]
        while len(self._blocks) > self.maxblocks:
            self._blocks.popitem(last=False)
        return self._blocks[number] if number in self._blocks else data[: self.blocksize]


register_cache(SeededBlockCache, clobber=True)
