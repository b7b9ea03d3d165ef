"""What the process does at exit for the stores still open: the chunk requests under way.

zarr does not cancel the other chunk requests of a read that failed. Two things keep them from
troubling the interpreter's exit: an error that leaves HDF5 work drops the h5py objects its
frames held (see `hdf5file.drop_locals`), and the `atexit` hook here waits up to `WAIT_AT_EXIT`
seconds for chunk requests still under way (`InFlight`), then closes every store still open, on
the main thread, before h5py's own exit handler runs.

>>> import asyncio
>>> async def one_request() -> int:
...     with IN_FLIGHT.request():
...         return IN_FLIGHT.count
>>> asyncio.run(one_request()), IN_FLIGHT.count
(1, 0)
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Protocol

# imported before the hook below is registered: atexit runs the last registered first, so h5py's
# own exit handler runs after this module's
import h5py  # noqa: F401

__all__ = ["IN_FLIGHT", "WAIT_AT_EXIT", "InFlight", "track_open"]


class InFlight:
    """The chunk requests under way in this process.

    zarr does not cancel the other chunk requests of a read that failed: a program that catches
    the error and ends leaves them running on zarr's event loop thread, and Python then destroys
    their tasks mid-way ("Task was destroyed but it is pending!") while h5py's exit handler runs.
    At exit, the process waits for them, and then for the other tasks of the loops they ran on
    (zarr's tasks that awaited them finish a few loop turns later), `WAIT_AT_EXIT` seconds at
    most. Only where that can be needed: on every loop a request ran on if some were still under
    way, else only where one failed. A loop that keeps running with long-lived tasks of its own
    (an application's server) must not hold up every exit."""

    def __init__(self) -> None:
        self._count = 0
        self._settled = threading.Condition()
        self._loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._failed: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

    @property
    def count(self) -> int:
        """How many requests are under way now."""
        return self._count

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Count one chunk request, made on the running event loop, while it is under way."""
        loop = asyncio.get_running_loop()
        with self._settled:
            self._count += 1
            self._loops.add(loop)
        try:
            yield
        except BaseException:
            with self._settled:
                self._failed.add(loop)
            raise
        finally:
            with self._settled:
                self._count -= 1
                self._settled.notify_all()

    def settle(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the requests under way, then for the other tasks
        of the loops that need it (see the class)."""
        deadline = time.monotonic() + timeout
        with self._settled:
            busy = self._count > 0
            self._settled.wait_for(lambda: not self._count, timeout)
            loops = list(self._loops if busy else self._failed)
        for loop in loops:
            left = deadline - time.monotonic()
            if left <= 0 or loop.is_closed() or not loop.is_running():
                continue
            with contextlib.suppress(Exception):  # a loop stopped meanwhile: nothing left to wait for
                asyncio.run_coroutine_threadsafe(_others_done(left), loop).result(left + 1)


async def _others_done(timeout: float) -> None:
    """Return once no other task of the running loop is pending, or after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    deadline = loop.time() + timeout
    while loop.time() < deadline and any(task is not me and not task.done() for task in asyncio.all_tasks()):
        await asyncio.sleep(0.005)


class _Closable(Protocol):
    def close(self) -> None: ...


#: seconds the process waits at exit for chunk requests still under way (see `InFlight`)
WAIT_AT_EXIT = 2.0
#: the chunk requests of every store of this process
IN_FLIGHT = InFlight()
# the stores alive: closed at exit, on the main thread, before h5py's own exit handler runs (a
# store kept alive only by a failed read's abandoned tasks would else close its HDF5 file on
# zarr's thread while that handler is inside HDF5)
_OPEN: weakref.WeakSet[_Closable] = weakref.WeakSet()


def track_open(store: _Closable) -> None:
    """Have ``store`` closed at exit, after the requests under way settled (held weakly)."""
    _OPEN.add(store)


@atexit.register
def _settle_at_exit() -> None:
    IN_FLIGHT.settle(WAIT_AT_EXIT)
    for store in list(_OPEN):
        with contextlib.suppress(Exception):
            store.close()
