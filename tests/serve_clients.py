"""How viewers load a server, as test clients (many requests on one connection, a burst of
connections opened together), and a port another program holds. Shared by the tests of one file
served and of a folder served."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator


def keep_alive_seconds(address: tuple[str, int], key: str, requests: int = 100) -> float:
    """Seconds for ``requests`` GETs of ``key`` one after another on one kept-alive connection,
    each answered 200 with a body."""
    conn = http.client.HTTPConnection(*address, timeout=10)
    start = time.perf_counter()
    try:
        for _ in range(requests):
            conn.request("GET", key)
            response = conn.getresponse()
            assert response.status == 200 and response.read()
    finally:
        conn.close()
    return time.perf_counter() - start


def connection_burst(address: tuple[str, int], keys: list[str], count: int = 100) -> tuple[list[int], list[float]]:
    """``count`` connections opened at the same moment, connection i asking for
    ``keys[i % len(keys)]``: the statuses answered and each connection's seconds (a connection
    that fails adds to neither)."""
    go = threading.Barrier(count)
    waits: list[float] = []
    statuses: list[int] = []

    def fetch(i: int) -> None:
        go.wait()
        start = time.perf_counter()
        conn = http.client.HTTPConnection(*address, timeout=10)
        conn.request("GET", keys[i % len(keys)])
        statuses.append(conn.getresponse().status)
        conn.close()
        waits.append(time.perf_counter() - start)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses, waits


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port another socket listens on, for as long as the block runs."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]
