"""The threads ims_store runs its work on: one pool for waiting (requests, HDF5 calls), one for
decoding chunks.

They are apart because they want different sizes. Waiting threads cost nothing while they
wait, so that pool is large. Decoding is CPU work that drops the GIL only inside its C calls
(pread, inflate, copies); each thread takes the GIL back several times per chunk, and with
more threads than cores those hand-offs queue behind one another. On 2 cores, reading a level
of 64 KiB chunks through zarr took 0.80-0.88 s on the 6 threads of zarr's default executor
and 0.59-0.75 s on 2 (benchmarks/bench_read.py).

Both pools are made on first use in each process: a pool inherited through ``fork`` has no
threads behind it (its tasks would never run), so a forked child makes its own.

>>> run_decoding(sum, [1, 2, 3]).result()
6
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["DECODE_THREADS", "WAIT_THREADS", "run_blocking", "run_decoding"]

T = TypeVar("T")


def _cores() -> int:
    counted = getattr(os, "process_cpu_count", None)  # Python 3.13: honours affinity and limits
    if counted is not None:
        return counted() or 1
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


#: threads decoding chunks: one per core this process may use
DECODE_THREADS = _cores()
#: threads waiting on requests and HDF5
WAIT_THREADS = 32


class _Pool:
    """A thread pool made on first use in the current process."""

    def __init__(self, workers: int, prefix: str) -> None:
        self.workers = workers
        self.prefix = prefix
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def submit(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=self.prefix)
                    self._pid = pid
        return self._pool.submit(function, *args, **kwargs)  # type: ignore[union-attr]


_waiting = _Pool(WAIT_THREADS, "ims-store")
_decoding = _Pool(DECODE_THREADS, "ims-store-decode")


def run_blocking(function: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    """``function(*args, **kwargs)`` on the shared pool of waiting threads, as a future that any
    thread or event loop can wait on."""
    return _waiting.submit(function, *args, **kwargs)


def run_decoding(function: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    """``function(*args, **kwargs)`` on the shared pool of decoding threads (one per core): for
    CPU work that drops the GIL in C calls, such as decoding chunks."""
    return _decoding.submit(function, *args, **kwargs)
