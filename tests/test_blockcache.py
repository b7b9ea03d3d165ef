"""The block cache through which HDF5 reads remote metadata (ims_store.access.blockcache), against a
fake file that records every fetch, and inside an fsspec file object."""

from __future__ import annotations

import fsspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ims_store.access.blockcache import CACHE_TYPE, MAX_RUN, SeededBlockCache

DATA = np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes()


class Fetcher:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start: int, stop: int) -> bytes:
        self.calls.append((start, stop))
        return DATA[start:stop]


def test_blocks_handed_in_are_never_fetched() -> None:
    fetch = Fetcher()
    cache = SeededBlockCache(100, fetch, len(DATA), blocks={0: DATA[:100]})
    assert cache._fetch(10, 90) == DATA[10:90]
    assert fetch.calls == []


def test_scattered_reads_fetch_one_block_each() -> None:
    fetch = Fetcher()
    cache = SeededBlockCache(100, fetch, len(DATA))
    for start in (720, 310, 905, 120):
        assert cache._fetch(start, start + 5) == DATA[start : start + 5]
    assert fetch.calls == [(700, 800), (300, 400), (900, 1000), (100, 200)]


def test_reading_on_into_the_next_block_fetches_more_blocks_a_request() -> None:
    fetch = Fetcher()
    cache = SeededBlockCache(10, fetch, len(DATA), maxblocks=100)
    for start in range(0, 300, 7):  # HDF5 walking through a run of metadata
        assert cache._fetch(start, start + 7) == DATA[start : start + 7]
    sizes = [stop - start for start, stop in fetch.calls]
    assert sizes[:3] == [10, 20, 40] and max(sizes) == 10 * MAX_RUN
    fetched = [block for start, stop in fetch.calls for block in range(start // 10, stop // 10)]
    assert len(fetched) == len(set(fetched))  # no block twice
    assert max(fetched) < 31 + MAX_RUN  # the walk ended in block 30


def test_the_last_block_is_short_and_reads_stop_at_the_end() -> None:
    fetch = Fetcher()
    cache = SeededBlockCache(300, fetch, len(DATA))
    assert cache._fetch(950, 2000) == DATA[950:]
    assert cache._fetch(1000, 1010) == b""
    assert fetch.calls == [(900, 1000)]


@settings(max_examples=200, deadline=None)
@given(
    reads=st.lists(st.tuples(st.integers(0, 1100), st.integers(0, 300)), max_size=40),
    blocksize=st.sampled_from([1, 7, 64, 256, 2000]),
    maxblocks=st.integers(1, 6),
    seeded=st.booleans(),
)
def test_any_reads_return_the_file_s_bytes_and_keep_at_most_maxblocks(
    reads: list[tuple[int, int]], blocksize: int, maxblocks: int, seeded: bool
) -> None:
    fetch = Fetcher()
    blocks = {0: DATA[:blocksize]} if seeded else None
    cache = SeededBlockCache(blocksize, fetch, len(DATA), blocks=blocks, maxblocks=maxblocks)
    for start, length in reads:
        assert cache._fetch(start, start + length) == DATA[start : start + length]
        assert len(cache._blocks) <= max(maxblocks, 1)
    assert all(0 <= start < stop <= len(DATA) for start, stop in fetch.calls)


def test_fsspec_file_objects_take_it_by_name() -> None:
    fs = fsspec.filesystem("http")  # buffered file objects pass cache_type and cache_options on
    handle = fs.open(
        "http://127.0.0.1:9/never-asked",
        block_size=100,
        cache_type=CACHE_TYPE,
        cache_options={"blocks": {0: DATA[:100]}},
        size=len(DATA),
    )
    assert isinstance(handle.cache, SeededBlockCache)
    assert handle.read(50) == DATA[:50]  # served from the block handed in: port 9 is never asked
