"""A loopback HTTP file server with byte ranges, counting the requests it answers (for tests)."""

from __future__ import annotations

import multiprocessing
import re
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = socket.SOMAXCONN  # socketserver's 5 drops the connections of a concurrent client

    def __init__(self, root: Path, latency: float, counter: Any) -> None:
        self.root, self.latency, self.counter = root, latency, counter
        self.failure: int | None = None  # an HTTP status requests get instead (thread mode)...
        self.fail_after = 0  # ... once this many more have been served
        self.requests: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)


def _run(root: Path, latency: float, counter: Any, port: Any) -> None:
    server = _Server(root, latency, counter)
    port.value = server.server_address[1]
    server.serve_forever()


class FileServer:
    """Serves the files of ``root``; in a thread, or (``process=True``) in a child process."""

    def __init__(self, root: Path, latency: float = 0.0, process: bool = False) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._counter = ctx.Value("i", 0)
        if process:
            port = ctx.Value("i", 0)
            self._process = ctx.Process(target=_run, args=(root, latency, self._counter, port), daemon=True)
            self._process.start()
            while port.value == 0:
                time.sleep(0.01)
            self.port, self._server = port.value, None
        else:
            self._process = None
            self._server = _Server(root, latency, self._counter)
            self.port = self._server.server_address[1]
            threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def requests(self) -> list[tuple[str, str, str | None]]:
        """Method, path and Range of every request (thread mode)."""
        assert self._server is not None
        return self._server.requests

    def fail_with(self, status: int | None, after: int = 0) -> None:
        """Answer every request with ``status`` (an error, as a failing server would) once
        ``after`` more have been served, or, with None, serve again (thread mode)."""
        assert self._server is not None
        self._server.failure, self._server.fail_after = status, after

    def count(self) -> int:
        return int(self._counter.value)

    def reset(self) -> None:
        with self._counter.get_lock():
            self._counter.value = 0
        if self._server is not None:
            self._server.requests.clear()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._process is not None:
            self._process.terminate()
            self._process.join(5)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # headers and body go out as separate writes: with Nagle's algorithm the body would wait for
    # the client's delayed ACK (~40 ms a response on a kept-open connection)
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        with self.server.lock:
            self.server.requests.append((self.command, self.path, self.headers.get("Range")))
        with self.server.counter.get_lock():
            self.server.counter.value += 1
        if self.server.latency:
            time.sleep(self.server.latency)
        with self.server.lock:
            failing = self.server.failure is not None and self.server.fail_after <= 0
            self.server.fail_after -= 1
        if failing:
            self.send_response(self.server.failure)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = self.server.root / self.path.lstrip("/")
        if ".." in self.path or not path.is_file():
            self.send_response(HTTPStatus.NOT_FOUND)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        total = path.stat().st_size
        status, start, stop = HTTPStatus.OK, 0, total
        match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            stop = min(int(match.group(2)) + 1, total) if match.group(2) else total
            status = HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(stop - start))
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{total}")
        self.end_headers()
        if body:
            with open(path, "rb") as fh:  # zero-copy, as a real file server does: the client is measured, not us
                self.connection.sendfile(fh, offset=start, count=stop - start)
