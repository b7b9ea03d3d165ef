"""The read-ahead of remote chunks (ims_store.access.readahead), against a fake file that records every
fetch: what is fetched, when, in how many requests, and that every answer is the chunk's bytes."""

from __future__ import annotations

from concurrent.futures import Future

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ims_store.access.readahead import REQUEST_SIZE, ReadAhead
from ims_store.format.chunks import ChunkIndex


class FakeFile:
    """Bytes whose every fetch is recorded; futures resolve at once, or when `release` is called."""

    def __init__(self, size: int, deferred: bool = False) -> None:
        self.data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
        self.calls: list[tuple[int, int]] = []
        self.deferred = deferred
        self.pending: list[tuple[Future[bytes], int, int]] = []

    def fetch(self, offset: int, size: int) -> Future[bytes]:
        self.calls.append((offset, size))
        future: Future[bytes] = Future()
        if self.deferred:
            self.pending.append((future, offset, size))
        else:
            future.set_result(self.data[offset : offset + size])
        return future

    def release(self, error: Exception | None = None) -> None:
        for future, offset, size in self.pending:
            if error is None:
                future.set_result(self.data[offset : offset + size])
            else:
                future.set_exception(error)
        self.pending.clear()

    def fetched_bytes(self) -> int:
        return sum(size for _, size in self.calls)


def make_index(sizes: list[int], file_order: list[int] | None = None, gap: int = 0) -> ChunkIndex:
    """A chunk index of ``len(sizes)`` chunks on a (n, 1, 1) grid; ``file_order`` lists grid
    positions in the order their chunks lie in the file (default: grid order), ``gap`` bytes apart."""
    n = len(sizes)
    offsets = np.zeros(n, dtype=np.int64)
    position = 100  # as after a superblock
    for i in file_order if file_order is not None else range(n):
        offsets[i] = position
        position += sizes[i] + gap
    grid = (n, 1, 1)
    return ChunkIndex(
        (1, 1, 1), offsets.reshape(grid), np.asarray(sizes, np.int64).reshape(grid), np.zeros(grid, np.uint32), ()
    )


def expected(file: FakeFile, index: ChunkIndex, i: int) -> bytes:
    offset, size = int(index.offsets.ravel()[i]), int(index.sizes.ravel()[i])
    return file.data[offset : offset + size]


def read(ahead: ReadAhead, file: FakeFile, index: ChunkIndex, i: int, dataset: str = "d") -> None:
    assert bytes(ahead.request(dataset, index, (i, 0, 0)).result()) == expected(file, index, i)


def test_random_access_fetches_only_the_chunks_asked_for() -> None:
    index = make_index([1000] * 64)
    file = FakeFile(70_000)
    ahead = ReadAhead(file.fetch, budget=1 << 20)
    for i in (0, 10, 20, 5, 30, 63, 40):
        read(ahead, file, index, i)
    assert file.calls == [(int(index.offsets.ravel()[i]), 1000) for i in (0, 10, 20, 5, 30, 63, 40)]
    assert ahead.held_bytes == 0


def test_a_walk_is_fetched_ahead_in_few_large_requests_and_nothing_twice() -> None:
    sizes = [int(s) for s in np.random.default_rng(1).integers(20_000, 60_000, 200)]
    index = make_index(sizes)
    file = FakeFile(sum(sizes) + 200)
    ahead = ReadAhead(file.fetch, budget=4 << 20)
    for i in range(200):
        read(ahead, file, index, i)
    assert len(file.calls) <= 200 // 8
    assert all(size <= REQUEST_SIZE for _, size in file.calls)
    assert file.fetched_bytes() == sum(sizes)  # every byte once: no chunk fetched twice, none wasted
    assert ahead.held_bytes == 0


def test_concurrent_requests_arriving_shuffled_still_make_a_walk() -> None:
    index = make_index([1000] * 100)
    file = FakeFile(200_000)
    ahead = ReadAhead(file.fetch, budget=1 << 20)
    order = [0, 3, 1, 2, 5, 4, 7, 6, 9, 8, *range(10, 100)]  # zarr's first ten, out of order
    for i in order:
        read(ahead, file, index, i)
    assert len(file.calls) < 25
    assert file.fetched_bytes() == 100 * 1000


def test_the_walk_follows_the_file_not_the_grid() -> None:
    n = 60
    file_order = list(np.random.default_rng(2).permutation(n))
    index = make_index([1000] * n, file_order)
    file = FakeFile(100_000)
    ahead = ReadAhead(file.fetch, budget=1 << 20)
    for i in file_order:  # in file order: a walk
        read(ahead, file, index, int(i))
    assert len(file.calls) < n // 4


def test_a_walk_down_through_the_file_is_read_ahead_downwards() -> None:
    # dask runs a level's chunk tasks last first: the store sees the file walked backwards
    sizes = [int(s) for s in np.random.default_rng(3).integers(1000, 5000, 120)]
    index = make_index(sizes)
    file = FakeFile(sum(sizes) + 200)
    ahead = ReadAhead(file.fetch, budget=1 << 20)
    for i in reversed(range(120)):
        read(ahead, file, index, i)
    assert len(file.calls) < 120 // 8
    assert file.fetched_bytes() == sum(sizes)  # every byte once
    assert ahead.held_bytes == 0


def test_a_walk_that_turns_round_is_read_ahead_the_new_way() -> None:
    index = make_index([1000] * 200)
    file = FakeFile(210_000)
    ahead = ReadAhead(file.fetch, budget=1 << 20)
    for i in range(100, 140):
        read(ahead, file, index, i)
    calls = len(file.calls)
    for i in reversed(range(20, 90)):  # a new walk, downwards
        read(ahead, file, index, i)
    assert len(file.calls) - calls < 70 // 4


def test_held_bytes_stay_within_the_budget_and_an_abandoned_walk_wastes_at_most_the_budget() -> None:
    index = make_index([10_000] * 500)
    file = FakeFile(5_100_000)
    budget = 200_000
    ahead = ReadAhead(file.fetch, budget=budget)
    for i in range(100):
        read(ahead, file, index, i)
        assert 0 <= ahead.held_bytes <= budget
    wasted = file.fetched_bytes() - 100 * 10_000
    assert 0 < wasted <= budget


def test_at_the_budget_room_is_refilled_a_request_at_a_time_not_a_chunk_at_a_time() -> None:
    index = make_index([10_000] * 400)
    file = FakeFile(4_100_000)
    budget = 400_000  # room is refilled once a quarter of it is free
    ahead = ReadAhead(file.fetch, budget=budget)
    for i in range(400):
        read(ahead, file, index, i)
    refills = file.calls[10:-1]  # past the ramp; the last may be the walk's short remainder
    assert refills and all(size >= budget // 4 for _, size in refills), file.calls


def test_a_short_walk_wastes_little() -> None:
    index = make_index([10_000] * 1000)
    file = FakeFile(10_100_000)
    ahead = ReadAhead(file.fetch, budget=64 << 20)
    for i in range(500, 516):  # one plane of a viewer: 16 chunks
        read(ahead, file, index, i)
    assert file.fetched_bytes() - 16 * 10_000 <= 2 * 16 * 10_000


def test_chunks_past_the_end_of_the_file_are_never_fetched_ahead() -> None:
    index = make_index([1000] * 50)
    end = int(index.offsets.ravel()[30])  # a truncated copy: chunks 30.. lie past its end
    file = FakeFile(60_000)
    ahead = ReadAhead(file.fetch, budget=1 << 20, end=end)
    for i in range(30):
        read(ahead, file, index, i)
    assert all(offset + size <= end for offset, size in file.calls)


def test_bytes_between_neighbouring_chunks_come_along_within_one_request() -> None:
    index = make_index([1000] * 40, gap=100)
    file = FakeFile(50_000)
    ahead = ReadAhead(file.fetch, budget=1 << 20)
    for i in range(40):
        read(ahead, file, index, i)
    assert len(file.calls) < 10


def test_a_failed_request_fails_what_was_asked_and_later_requests_fetch_again() -> None:
    index = make_index([1000] * 40)
    file = FakeFile(50_000, deferred=True)
    ahead = ReadAhead(file.fetch, budget=1 << 20)
    futures = [ahead.request("d", index, (i, 0, 0)) for i in range(3)]  # 0 and 1 asked, 2.. ahead
    assert ahead.held_bytes > 0
    file.release(OSError("connection reset"))
    for future in futures:
        with pytest.raises(OSError, match="connection reset"):
            future.result()
    assert ahead.held_bytes == 0  # nothing failed is kept for later
    calls = len(file.calls)
    later = [ahead.request("d", index, (i, 0, 0)) for i in (3, 0)]  # 3 was fetched ahead with them
    assert len(file.calls) > calls
    file.release()
    for future, i in zip(later, (3, 0), strict=True):
        assert bytes(future.result()) == expected(file, index, i)


def test_a_request_that_fails_at_once_does_not_block() -> None:
    index = make_index([1000] * 40)

    def failing(offset: int, size: int) -> Future[bytes]:
        future: Future[bytes] = Future()
        future.set_exception(OSError("refused"))
        return future

    ahead = ReadAhead(failing, budget=1 << 20)
    for i in range(10):
        with pytest.raises(OSError, match="refused"):
            ahead.request("d", index, (i, 0, 0)).result()
    assert ahead.held_bytes == 0


def test_another_walk_takes_the_room_an_abandoned_one_holds() -> None:
    index_a, index_b = make_index([10_000] * 100), make_index([10_000] * 100)
    file = FakeFile(1_100_000)
    budget = 100_000
    ahead = ReadAhead(file.fetch, budget=budget)
    for i in range(20):
        read(ahead, file, index_a, i, "a")
    assert ahead.held_bytes > 0
    calls = len(file.calls)
    for i in range(20):
        read(ahead, file, index_b, i, "b")
    assert ahead.held_bytes <= budget
    assert len(file.calls) - calls < 20  # b is read ahead too


def test_a_budget_of_zero_fetches_each_chunk_when_asked() -> None:
    index = make_index([1000] * 30)
    file = FakeFile(40_000)
    ahead = ReadAhead(file.fetch, budget=0)
    for i in range(30):
        read(ahead, file, index, i)
    assert len(file.calls) == 30 and ahead.held_bytes == 0


def test_an_unwritten_chunk_is_refused() -> None:
    index = make_index([1000] * 4)
    index.offsets[2, 0, 0] = -1
    ahead = ReadAhead(FakeFile(5000).fetch, budget=1 << 20)
    with pytest.raises(ValueError, match="never written"):
        ahead.request("d", index, (2, 0, 0))


def test_clear_drops_what_is_held() -> None:
    index = make_index([1000] * 30)
    file = FakeFile(40_000)
    ahead = ReadAhead(file.fetch, budget=1 << 20)
    for i in range(5):
        read(ahead, file, index, i)
    assert ahead.held_bytes > 0
    ahead.clear()
    assert ahead.held_bytes == 0
    read(ahead, file, index, 5)  # still right after
    assert ahead.held_bytes == 0  # a new walk: its first chunk is not read ahead


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=60),
    steps=st.lists(st.tuples(st.sampled_from("ab"), st.integers(-3, 6), st.booleans()), max_size=120),
    budget=st.sampled_from([0, 3000, 20_000, 1 << 20]),
    shuffled=st.booleans(),
)
def test_any_sequence_of_requests_gets_the_right_bytes_within_the_budget(
    sizes: list[int], steps: list[tuple[str, int, bool]], budget: int, shuffled: bool
) -> None:
    n = len(sizes)
    file_order = list(np.random.default_rng(n).permutation(n)) if shuffled else None
    indexes = {"a": make_index(sizes, file_order), "b": make_index(sizes[::-1])}
    file = FakeFile(sum(sizes) + 200)
    ahead = ReadAhead(file.fetch, budget=budget, end=sum(sizes) + 100)
    position = {"a": 0, "b": 0}
    for dataset, step, jump in steps:  # mostly walks forward, sometimes back, sometimes anywhere
        position[dataset] = (position[dataset] * 7 + 3 if jump else position[dataset] + step) % n
        read(ahead, file, indexes[dataset], position[dataset], dataset)
        assert 0 <= ahead.held_bytes <= budget
