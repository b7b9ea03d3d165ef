"""Scale-out on dask.distributed: a cluster named by a ``Client`` or by its scheduler's address.

`write_ims` and `to_ome_zarr` take ``client=``; ``ims-store convert --scheduler ADDRESS`` passes
an address. Inside `dask_client`, dask computations run on the cluster.

>>> with dask_client(None) as client:
...     print(client)
None
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..errors import ClusterError, MissingDependencyError

__all__ = ["dask_client", "worker_threads"]


@contextlib.contextmanager
def dask_client(client: Any) -> Iterator[Any]:
    """Yield a ``distributed.Client`` for ``client`` (a Client, a scheduler address such as
    ``"tcp://10.0.0.5:8786"``, or None, which yields None), set as dask's scheduler while inside.
    A client made here from an address is closed on the way out."""
    if client is None:
        yield None
        return
    try:
        import dask
        import distributed
    except ImportError as err:
        raise MissingDependencyError(
            "a dask cluster needs dask.distributed: pip install 'ims-store[distributed]'"
        ) from err
    own = isinstance(client, str)
    if own:
        address = client
        try:
            # dask's own connect timeout (``distributed.comm.timeouts.connect``) bounds the wait
            client = distributed.Client(address, set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise ClusterError(f"cannot reach the dask scheduler at {address}: {err}") from err
    try:
        with dask.config.set(scheduler=client):
            yield client
    finally:
        if own:
            client.close()


def worker_threads(client: Any) -> int:
    """How many tasks the cluster runs at once (at least 1)."""
    return max(1, sum(client.nthreads().values()))
