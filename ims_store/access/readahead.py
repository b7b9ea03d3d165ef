"""Fetching a remote file's chunks before they are asked for, when the reads walk the file in order.

zarr asks a store for at most ``async.concurrency`` chunks at once (10 by default). Against an
object store that answers each request after tens of milliseconds, that limit, not bandwidth,
bounds a read: 10 chunks a round trip. Reads of a whole level, a z range or a plane ask for a
dataset's chunks in about the order they lie in the file (zarr), or in the reverse order (dask
runs a level's chunk tasks last first), and concurrent requests arrive a little shuffled. So
once requests follow each other through the file, either way, the chunks beyond them are fetched
ahead, several to a request: up to twice as many as the walk has asked for so far, topped up
once half of them are used (as an operating system reads a file ahead), so that a short walk
wastes little, a long one soon keeps the whole budget in flight, and requests grow with the
walk. Random access fetches only what it asks for.

Chunks fetched ahead are held until they are asked for once, within a byte budget: the walk does
not run further ahead than the budget, and chunks that a walk skipped or that another dataset's
walk left behind are dropped first when room is needed. Room is refilled a few megabytes at a
time, not chunk by chunk, so that requests stay large (object stores bill them one by one).

>>> import numpy as np
>>> from concurrent.futures import ThreadPoolExecutor
>>> from ims_store.format.chunks import ChunkIndex
>>> data, pool = bytes(range(256)) * 4, ThreadPoolExecutor(2)
>>> fetch = lambda offset, size: pool.submit(lambda: data[offset : offset + size])
>>> grid = (8, 1, 1)  # eight chunks of 128 bytes, one after another in the file
>>> index = ChunkIndex((1, 1, 1), np.arange(0, 1024, 128).reshape(grid), np.full(grid, 128),
...                    np.zeros(grid, np.uint32), ())
>>> ahead = ReadAhead(fetch, budget=512)
>>> bytes(ahead.request("Data", index, (0, 0, 0)).result()[:3])
b'\\x00\\x01\\x02'
>>> bytes(ahead.request("Data", index, (1, 0, 0)).result()[:3])  # a walk: chunks 2-5 come ahead
b'\\x80\\x81\\x82'
>>> ahead.held_bytes
512
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from ..format.chunks import ChunkIndex

__all__ = ["DEFAULT_READ_AHEAD", "ReadAhead"]

DEFAULT_READ_AHEAD = 64 * 2**20
"""Bytes of chunks held ahead of a walk, by default."""

REQUEST_SIZE = 8 * 2**20
"""Neighbouring chunks fetched ahead are joined into requests of up to this many bytes."""

MAX_GAP = 64 * 1024
"""Chunks this close in the file are joined into one request (the bytes between come along)."""

REFILL = 4 * 2**20
"""Once a walk runs at the budget, it fetches ahead again when this much room is free."""

FIRST_WINDOW = 4
"""Chunks fetched ahead once a walk is seen; then `GROWTH` times the chunks the walk asked for."""

GROWTH = 2
"""A walk is read ahead by this many times the chunks it has asked for (within the budget)."""

NEAR = 4
"""A request at most this many chunks (in file order) beyond the chunks a walk asked for
continues the walk."""

BEHIND = 64
"""A request among the chunks a walk asked for, at most this many from its leading end, leaves the
walk as it is: concurrent requests arrive a little shuffled (zarr keeps up to
``async.concurrency`` in flight). Further back, it starts a new walk."""

Fetch = Callable[[int, int], "Future[bytes]"]
"""``fetch(offset, size)``: a future of exactly ``size`` bytes of the file at ``offset``."""


@dataclass(frozen=True)
class _FileOrder:
    """A dataset's written chunks in the order they lie in the file."""

    positions: np.ndarray  # flat grid position of the chunk of each rank
    rank: np.ndarray  # rank of each flat grid position; -1 where never written
    offsets: np.ndarray  # by rank
    sizes: np.ndarray  # by rank

    @classmethod
    def of(cls, index: ChunkIndex) -> _FileOrder:
        offsets = index.offsets.ravel()
        written = np.flatnonzero(offsets >= 0)
        positions = written[np.argsort(offsets[written], kind="stable")]
        rank = np.full(offsets.size, -1, dtype=np.int64)
        rank[positions] = np.arange(positions.size)
        return cls(positions, rank, offsets[positions], index.sizes.ravel()[positions])


@dataclass
class _Walk:
    """What is known of the reads of one dataset: lately, ranks ``low..high`` were asked for."""

    order: _FileOrder
    index: ChunkIndex
    low: int = 0
    high: int = -1  # (below low: nothing asked for yet)
    up: int = 0  # requests that extended the walk upwards (forwards through the file)
    down: int = 0  # ... and downwards
    ahead_up: int = -1  # the highest rank fetched ahead, going up
    ahead_down: int = -1  # the lowest, going down

    def start(self, rank: int) -> None:
        self.low = self.high = self.ahead_up = self.ahead_down = rank
        self.up = self.down = 0

    def step(self, rank: int, held: bool) -> None:
        """Take in a request for ``rank`` (``held``: it was fetched ahead)."""
        if self.high < self.low:
            self.start(rank)
        elif self.high < rank <= self.high + NEAR or (held and rank > self.high):
            self.high, self.up = rank, self.up + 1
        elif self.low - NEAR <= rank < self.low or (held and rank < self.low):
            self.low, self.down = rank, self.down + 1
        elif not held and not (self.low <= rank <= self.high and not self.behind(rank, BEHIND)):
            self.start(rank)  # random access, or a new walk's first step

    @property
    def direction(self) -> int:
        """1: the walk goes up through the file; -1: down; 0: no walk (yet)."""
        if self.up == self.down == 0:
            return 0
        return 1 if self.up >= self.down else -1

    def behind(self, rank: int, margin: int) -> bool:
        """Whether ``rank`` lies more than ``margin`` chunks behind the walk's leading end."""
        return rank < self.high - margin if self.direction >= 0 else rank > self.low + margin


class ReadAhead:
    """Chunk bytes of a remote file, fetched ahead of the reads that walk it in file order.

    ``fetch(offset, size)`` returns a `concurrent.futures.Future` of the bytes (thread-safe, so
    that both zarr's event loop and worker threads can wait on it). ``budget``: bytes of chunks
    held ahead at most; 0 fetches each chunk when asked for, and nothing ahead. ``end``: the
    file's size; a chunk that a damaged index places past it is never fetched ahead (it is
    refused when it is asked for).
    """

    def __init__(self, fetch: Fetch, *, budget: int = DEFAULT_READ_AHEAD, end: int | None = None) -> None:
        self._fetch = fetch
        self.budget = int(budget)
        self._end = end  # the file's size: nothing past it is fetched ahead
        self._walks: dict[Hashable, _Walk] = {}
        self._held: OrderedDict[tuple[Hashable, int], tuple[Future[bytes | memoryview], int]] = OrderedDict()
        self._held_bytes = 0
        # reentrant: a request that fails at once drops its chunks from within `request`
        self._lock = threading.RLock()

    def clear(self) -> None:
        """Drop every chunk held ahead."""
        with self._lock:
            self._held.clear()
            self._held_bytes = 0
            self._walks.clear()

    @property
    def held_bytes(self) -> int:
        """Bytes of chunks fetched ahead and not yet asked for."""
        return self._held_bytes

    def request(self, dataset: Hashable, index: ChunkIndex, pos: tuple[int, int, int]) -> Future[bytes | memoryview]:
        """The stored bytes of the chunk at grid position ``pos`` of ``dataset`` (whose chunk index
        is ``index``); the chunk must be written (its offset >= 0)."""
        with self._lock:
            walk = self._walks.get(dataset)
            if walk is None or walk.index is not index:
                walk = self._walks[dataset] = _Walk(_FileOrder.of(index), index)
            rank = int(walk.order.rank[np.ravel_multi_index(pos, index.offsets.shape)])
            if rank < 0:
                raise ValueError(f"chunk {pos} of {dataset} was never written: there are no bytes to fetch")
            held = self._held.pop((dataset, rank), None)
            if held is not None:
                self._held_bytes -= held[1]
            walk.step(rank, held is not None)
            if self.budget > 0 and walk.direction:
                self._fetch_ahead(dataset, walk)
        if held is not None:
            return held[0]
        return self._fetch(int(walk.order.offsets[rank]), int(walk.order.sizes[rank]))

    def _fetch_ahead(self, dataset: Hashable, walk: _Walk) -> None:
        order = walk.order
        window = max(FIRST_WINDOW, GROWTH * max(walk.up, walk.down))
        if walk.direction > 0:
            if walk.ahead_up - walk.high > window // 2:
                return  # still well ahead: waiting until half the window is used keeps requests large
            ranks = range(max(walk.ahead_up, walk.high) + 1, min(walk.high + window, order.positions.size - 1) + 1)
        else:
            if walk.low - walk.ahead_down > window // 2:
                return
            ranks = range(min(walk.ahead_down, walk.low) - 1, max(walk.low - window, 0) - 1, -1)
        chosen: list[int] = []
        nbytes, full = 0, False
        for r in ranks:
            if (dataset, r) in self._held:
                continue
            size = int(order.sizes[r])
            if self._end is not None and int(order.offsets[r]) + size > self._end:
                break  # a damaged index: that chunk is refused when asked for
            if self._held_bytes + nbytes + size > self.budget and not self._make_room(dataset, walk, nbytes + size):
                full = True
                break
            nbytes += size
            chosen.append(r)
        if not chosen or (full and nbytes < min(REFILL, self.budget // 4)):
            return  # at the budget: wait for room enough for a request worth making
        self._held_bytes += nbytes
        if walk.direction > 0:
            walk.ahead_up = chosen[-1]
        else:
            walk.ahead_down = chosen[-1]
        for group in _requests(order, sorted(chosen)):
            self._fetch_group(dataset, order, group)

    def _make_room(self, dataset: Hashable, walk: _Walk, size: int) -> bool:
        """Drop chunks held for reads that will not come (skipped by this walk, or left by another)."""
        for key in list(self._held):
            if self._held_bytes + size <= self.budget:
                break
            if key[0] != dataset or walk.behind(key[1], NEAR):
                _, nbytes = self._held.pop(key)
                self._held_bytes -= nbytes
        return self._held_bytes + size <= self.budget

    def _fetch_group(self, dataset: Hashable, order: _FileOrder, group: list[int]) -> None:
        start = int(order.offsets[group[0]])
        stop = int(order.offsets[group[-1]] + order.sizes[group[-1]])
        whole: Future[bytes] = self._fetch(start, stop - start)
        parts: list[tuple[int, Future[bytes | memoryview], int, int]] = []
        for r in group:
            part: Future[bytes | memoryview] = Future()
            part.set_running_or_notify_cancel()
            offset, size = int(order.offsets[r]) - start, int(order.sizes[r])
            parts.append((r, part, offset, size))
            self._held[(dataset, r)] = (part, size)

        def split(done: Future[bytes]) -> None:
            error = done.exception()
            if error is not None:
                # whoever asked already gets the error; whoever asks later fetches again
                with self._lock:
                    for r, part, _, size in parts:
                        if self._held.get((dataset, r), (None,))[0] is part:
                            del self._held[(dataset, r)]
                            self._held_bytes -= size
                for _, part, _, _ in parts:
                    part.set_exception(error)
                return
            view = memoryview(done.result())
            for _, part, offset, size in parts:
                part.set_result(view[offset : offset + size])

        whole.add_done_callback(split)


def _requests(order: _FileOrder, ranks: list[int]) -> list[list[int]]:
    """``ranks`` (ascending) grouped into requests: neighbours in the file, up to `REQUEST_SIZE`."""
    groups: list[list[int]] = []
    start = end = 0
    for r in ranks:
        offset, size = int(order.offsets[r]), int(order.sizes[r])
        if groups and end <= offset <= end + MAX_GAP and offset + size - start <= REQUEST_SIZE:
            groups[-1].append(r)
        else:
            groups.append([r])
            start = offset
        end = offset + size
    return groups
