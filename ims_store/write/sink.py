"""The HDF5 chunk sink: blocks compressed on a thread pool, written in order by one thread.

`_encode_block` checks and compresses one block; `_ChunkSink` owns the encoder pool (which also
counts histograms) and writes the compressed blocks with ``write_direct_chunk``, in the order
they were submitted, a bounded number in flight. HDF5 is only ever called from the thread that
owns the sink.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import h5py
import numpy as np

from ..access.outputs import WriteError, check_stop
from ..format.codecs import encode_chunk
from ..format.layout import Filter


def _encode_block(block: np.ndarray, shape: Sequence[int], filters: Sequence[Filter], dtype: np.dtype) -> Any:
    """Compress one block (a view of its row is copied out here, on the encoder's thread) after
    checking it holds exactly a block of ``dtype``: whatever went wrong upstream fails here as a
    `WriteError` rather than landing in the file as wrong data."""
    expected = math.prod(shape) * dtype.itemsize
    if block.dtype != dtype or block.nbytes != expected:
        raise WriteError(f"a block of {block.nbytes} bytes of {block.dtype} where {expected} bytes of {dtype} belong")
    return encode_chunk(np.ascontiguousarray(block), filters, dtype)


class _ChunkSink:
    """Compresses blocks in a pool and writes them in order with ``write_direct_chunk``."""

    def __init__(self, workers: int, progress: Any) -> None:
        self.workers = max(1, workers)
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ims-store-encode")
        self._pending: collections.deque[tuple[h5py.Dataset, tuple[int, int, int], Future]] = collections.deque()
        self._limit = 4 * max(1, workers)  # bounds the compressed bytes in flight
        self._progress = progress

    def submit(
        self,
        dataset: h5py.Dataset,
        offset: tuple[int, int, int],
        block: np.ndarray,
        shape: tuple[int, int, int],
        filters: tuple[Filter, ...],
        dtype: np.dtype,
    ) -> None:
        future = self.pool.submit(_encode_block, block, shape, filters, dtype)
        self._pending.append((dataset, offset, future))
        while len(self._pending) > self._limit:
            self._write_one()

    def put(self, dataset: h5py.Dataset, offset: tuple[int, int, int], payload: bytes) -> None:
        """A block compressed elsewhere (a dask.distributed worker), written in turn."""
        done: Future = Future()
        done.set_result(payload)
        self._pending.append((dataset, offset, done))
        while len(self._pending) > self._limit:
            self._write_one()

    def _write_one(self) -> None:
        check_stop()
        dataset, offset, future = self._pending.popleft()
        dataset.id.write_direct_chunk(offset, bytes(memoryview(future.result())))
        if self._progress is not None:
            self._progress.update(1)

    def flush(self) -> None:
        while self._pending:
            self._write_one()

    def close(self) -> None:
        for _, _, future in self._pending:
            future.cancel()
        self._pending.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)
