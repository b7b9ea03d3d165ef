"""`ims-store serve` under load and odd input: memory per request and in total, open files,
descriptors running out, connections and slow headers; request bodies, ranges, ports, IPv6,
wildcard addresses, files of several images in a folder, a file changed on disk, deep trees."""

from __future__ import annotations

import errno
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from helpers import h5py_level
from test_serve import _request

import ims_store
from ims_store.fronts.serve import ImsHTTPServer, make_server
from ims_store.write.synthetic import make_example_ims

# the ims_store this process imports, for the child processes too
_CODE = str(Path(ims_store.__file__).resolve().parents[1])
# (run from the file system's root: ``python -m`` and ``-c`` put the working folder first)
_CHILD = {"env": {**os.environ, "PYTHONPATH": _CODE}, "cwd": os.path.abspath(os.sep)}
POSIX = pytest.mark.skipif(os.name == "nt", reason="POSIX resource limits")
DATA = "DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"


def _serving(server: ImsHTTPServer) -> ImsHTTPServer:
    server.serve_in_thread(poll_interval=0.05)
    return server


def _stop(server: ImsHTTPServer) -> None:
    server.shutdown()
    server.server_close()


def _small(path: Path, **options) -> Path:
    return make_example_ims(path, shape=(4, 24, 24), channels=1, timepoints=1, levels=1, **options)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ims_store.fronts.cli", *args], capture_output=True, text=True, timeout=120, **_CHILD
    )


# -- memory ---------------------------------------------------------------------------------


def _one_huge_chunk(path: Path) -> Path:
    """A file of 0.5 MB whose level 0 is one chunk of 256 MiB (zeros, deflated), written chunk
    bytes first so that making it takes no 256 MiB here."""
    shape = (64, 2048, 1024)
    make_example_ims(path, shape=(4, 32, 32), channels=1, timepoints=1, levels=1)
    with h5py.File(path, "r+") as f:
        del f[DATA]
        f.create_dataset(DATA, shape=shape, dtype="<u2", chunks=shape, compression="gzip", shuffle=True)
        deflate = zlib.compressobj(9)
        zeros = bytes(1 << 24)
        stream = b"".join(deflate.compress(zeros) for _ in range(2 * int(np.prod(shape)) >> 24)) + deflate.flush()
        f[DATA].id.write_direct_chunk((0, 0, 0), stream)
        info = f["DataSetInfo/Image"].attrs
        for axis, n in zip("ZYX", shape, strict=True):
            info[f"ImageSize{axis}"] = np.frombuffer(str(n).encode(), dtype="S1")
            info[f"ExtMax{2 - 'XYZ'.index(axis)}"] = np.frombuffer(str(float(n)).encode(), dtype="S1")
    assert path.stat().st_size < 1_000_000
    return path


def test_a_chunk_beyond_the_request_limit_is_refused_with_a_message(tmp_path: Path, capfd) -> None:
    """500 with the reason in the body and a line on stderr, before any of it is read."""
    server = _serving(make_server(_one_huge_chunk(tmp_path / "huge.ims"), port=0))
    try:
        response, body = _request(server, "GET", "/0/c/0/0/0/0/0")
        assert response.status == 500 and b"more than this server's limit of 128 MiB per request" in body
        assert "refused 0/c/0/0/0/0/0: its chunk takes 512 MiB" in capfd.readouterr().err
        assert _request(server, "GET", "/0/zarr.json")[0].status == 200
    finally:
        _stop(server)


@POSIX
def test_eight_concurrent_requests_of_a_huge_chunk_keep_the_server_small(tmp_path: Path) -> None:
    """The server in a child process, 8 clients asking at once for a chunk of 256 MiB: its peak
    resident memory stays far below what decoding it 8 times would take (4 GB measured before)."""
    path = _one_huge_chunk(tmp_path / "huge.ims")
    script = textwrap.dedent(
        f"""
        import resource, sys, threading, http.client
        from ims_store.fronts.serve import make_server
        server = make_server({str(path)!r}, port=0)
        server.serve_in_thread(poll_interval=0.05)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        statuses = []
        def fetch():
            conn = http.client.HTTPConnection(*server.server_address[:2], timeout=120)
            conn.request("GET", "/0/c/0/0/0/0/0")
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        threads = [threading.Thread(target=fetch) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        server.shutdown()
        server.server_close()
        print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, *statuses)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, **_CHILD)
    assert done.returncode == 0, done.stderr
    before, peak, *statuses = (int(v) for v in done.stdout.split())
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    assert statuses == [500] * 8
    assert (peak - before) * scale < 100 * 1024 * 1024, (before, peak)


def test_limits_are_checked() -> None:
    from ims_store.fronts.serve import Limits

    for bad in ({"request_bytes": 0}, {"connections": -1}, {"header_seconds": 0}, {"idle_seconds": float("nan")}):
        with pytest.raises(ValueError):
            Limits(**bad)


def test_requests_wait_for_the_memory_budget_else_503(tmp_path: Path) -> None:
    """With a budget of one chunk's worth, a second request waits for the first to give it back,
    and is answered 503 if that takes longer than the header time."""
    from ims_store.fronts.serve import Limits

    path = _small(tmp_path / "a.ims")
    limits = Limits(request_bytes=4 * 24 * 24 * 2 * 2, memory_bytes=4 * 24 * 24 * 2 * 2, header_seconds=0.3)
    server = _serving(make_server(path, port=0, limits=limits))
    try:
        assert _request(server, "GET", "/0/c/0/0/0/0/0")[0].status == 200
        assert server.budget.take(limits.memory_bytes, 1.0)  # as a request under way would
        started = time.perf_counter()
        response, _ = _request(server, "GET", "/0/c/0/0/0/0/0")
        assert response.status == 503 and time.perf_counter() - started >= 0.3
        assert _request(server, "GET", "/0/zarr.json")[0].status == 200  # metadata needs none
        server.budget.give(limits.memory_bytes)
        assert _request(server, "GET", "/0/c/0/0/0/0/0")[0].status == 200
    finally:
        _stop(server)


# -- open files and descriptors -----------------------------------------------------------


def test_a_folder_keeps_at_most_max_open_files_open(tmp_path: Path) -> None:
    from ims_store.fronts.folder import ImageFolder
    from ims_store.fronts.resolver import served_store

    for name in "abcde":
        _small(tmp_path / f"{name}.ims")
    folder = ImageFolder(tmp_path, lambda p: served_store(p, "0.5", False), max_open=2)
    try:
        for name in "abcde":
            with folder.lease(f"{name}.ims") as store:
                assert store is not None and store.get_sync("zarr.json") is not None
                assert len(folder.open_names()) <= 2
        assert folder.open_names() == ["d.ims", "e.ims"]  # the least recently used went first
        with folder.lease("a.ims"), folder.lease("b.ims"), folder.lease("c.ims"):
            assert len(folder.open_names()) == 3  # files being read stay open, beyond the cap
        with pytest.raises(ValueError, match="max_open"):
            ImageFolder(tmp_path, lambda p: served_store(p, "0.5", False), max_open=0)
    finally:
        folder.close()


def test_no_descriptor_left_is_not_the_files_fault_and_is_not_remembered(tmp_path: Path, monkeypatch) -> None:
    """EMFILE on every OS (the open made to fail): 503 naming it, never NotHDF5Error, and the
    file is served as soon as descriptors are back."""
    from ims_store.format import confine

    _small(tmp_path / "a.ims")
    server = _serving(make_server(tmp_path, port=0))
    real_open = os.open
    exhausted = True

    def open_or_emfile(*args, **kwargs):
        if exhausted:
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(*args, **kwargs)

    try:
        monkeypatch.setattr(confine.os, "open", open_or_emfile)
        response, body = _request(server, "GET", "/a.ims/zarr.json")
        assert response.status == 503 and b"NotHDF5" not in body and b"open files" in body
        exhausted = False
        assert _request(server, "GET", "/a.ims/zarr.json")[0].status == 200
    finally:
        monkeypatch.undo()
        _stop(server)


@POSIX
def test_running_out_of_descriptors_for_real(tmp_path: Path) -> None:
    """A child with RLIMIT_NOFILE lowered uses every descriptor up, then asks for a file: a
    ResourceLimitError (not NotHDF5Error), the file not marked broken, and served once
    descriptors are freed."""
    _small(tmp_path / "a.ims")
    script = textwrap.dedent(
        f"""
        import os, resource
        from ims_store import ResourceLimitError
        from ims_store.fronts.folder import ImageFolder
        from ims_store.fronts.resolver import Request, served_store
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        folder = ImageFolder({str(tmp_path)!r}, lambda p: served_store(p, "0.5", False, within=folder.root))
        request = Request("a.ims/zarr.json", "", "http://127.0.0.1:1/")
        hogs = []
        try:
            while True:
                hogs.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        with folder.target(request) as found:
            print(found.status, found.body.decode().strip())
        index = folder.index("http://127.0.0.1:1/")
        for fd in hogs:
            os.close(fd)
        with folder.target(request) as found:
            print("served" if found[0].get_sync(found[1]) is not None else "missing")
        print(folder.index("http://127.0.0.1:1/")["images"][0].get("error", "listed"))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, **_CHILD)
    assert done.returncode == 0, done.stderr
    first, second, third = done.stdout.strip().splitlines()
    assert first.startswith("503 ") and "ResourceLimitError" in first and "NotHDF5" not in first
    assert second == "served" and third == "listed"


# -- connections --------------------------------------------------------------------------


def test_connections_beyond_the_limit_are_answered_503(tmp_path: Path) -> None:
    from ims_store.fronts.serve import Limits

    server = _serving(make_server(_small(tmp_path / "a.ims"), port=0, limits=Limits(connections=2)))
    held = []
    try:
        for _ in range(2):
            held.append(socket.create_connection(server.server_address[:2], timeout=10))
        time.sleep(0.2)  # both taken by their threads
        extra = socket.create_connection(server.server_address[:2], timeout=10)
        assert extra.recv(100).startswith(b"HTTP/1.1 503")
        extra.close()
        for sock in held:
            sock.close()
        time.sleep(0.2)
        assert _request(server, "GET", "/zarr.json")[0].status == 200
    finally:
        _stop(server)


def test_headers_trickled_byte_by_byte_are_cut_off(tmp_path: Path) -> None:
    """A client that keeps a request's headers coming one byte at a time (never silent long
    enough for the idle timeout) is disconnected once the header time is up."""
    from ims_store.fronts.serve import Limits

    limits = Limits(header_seconds=0.5, idle_seconds=30)
    server = _serving(make_server(_small(tmp_path / "a.ims"), port=0, limits=limits))
    try:
        sock = socket.create_connection(server.server_address[:2], timeout=10)
        started = time.perf_counter()
        closed = False
        for byte in b"GET /zarr.json HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            sock.settimeout(0.1)
            try:
                if sock.recv(100) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed and time.perf_counter() - started < 5
        sock.close()
        assert _request(server, "GET", "/zarr.json")[0].status == 200
    finally:
        _stop(server)


@pytest.mark.parametrize("method", ["GET", "OPTIONS"])
def test_a_request_body_is_not_read_as_the_next_request(tmp_path: Path, method: str) -> None:
    """A body on a GET or OPTIONS (which this server reads none of) that looks like a request
    is dropped, not answered: one response per request sent."""
    server = _serving(make_server(_small(tmp_path / "a.ims"), port=0))
    try:
        body = b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        sock = socket.create_connection(server.server_address[:2], timeout=10)
        sock.sendall(
            f"{method} /zarr.json HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
            + b"GET /zarr.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]
        assert statuses == [200 if method == "GET" else 204, 200]
    finally:
        _stop(server)


# -- where the server listens ---------------------------------------------------------------


def test_a_port_out_of_range_is_one_line_error(tmp_path: Path) -> None:
    from ims_store import ServerError

    path = _small(tmp_path / "a.ims")
    with pytest.raises(ServerError, match="0 to 65535"):
        make_server(path, port=99999)
    for port in ("99999", "-1"):
        done = _cli("serve", str(path), "--port", port)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines() == [
            f"ims-store serve: error: --port must be a port number from 0 to 65535, not {port}"
        ]


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback here")
def test_an_ipv6_server(tmp_path: Path) -> None:
    path = _small(tmp_path / "a.ims")
    server = _serving(make_server(path, host="::1", port=0))
    try:
        assert server.url.startswith("http://[::1]:")
        conn = http.client.HTTPConnection("::1", server.server_address[1], timeout=10)
        conn.request("GET", "/0/c/0/0/0/0/0")  # (fsspec's URL parser takes no IPv6 address)
        response = conn.getresponse()
        got = np.frombuffer(response.read(), "<u2").reshape(4, 24, 24)
        conn.close()
        assert response.status == 200
        np.testing.assert_array_equal(got, h5py_level(path, 0, 0, 0))
    finally:
        _stop(server)


def test_a_server_on_every_address_links_to_loopback(tmp_path: Path) -> None:
    """0.0.0.0 is no address a browser can open (recent Chrome blocks it, Windows does not
    route it): the URL and links given are the loopback's, and any address literal is a Host
    this server answers to (a name is not, unless allowed)."""
    server = _serving(make_server(_small(tmp_path / "a.ims"), host="0.0.0.0", port=0))
    try:
        port = server.server_address[1]
        assert server.url == f"http://127.0.0.1:{port}/"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for host, status in ((f"192.168.1.20:{port}", 200), (f"127.0.0.1:{port}", 200), ("evil.example", 421)):
            conn.request("GET", "/zarr.json", headers={"Host": host})
            response = conn.getresponse()
            response.read()
            assert response.status == status, host
            if status == 421:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()
    finally:
        _stop(server)


def test_the_serve_command_prints_loopback_links_for_every_address(tmp_path: Path) -> None:
    path = _small(tmp_path / "a.ims")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ims_store.fronts.cli", "serve", str(path), "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **_CHILD,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "at http://127.0.0.1:" in lines[0] and "0.0.0.0" not in "".join(lines), lines
    assert "127.0.0.1%3A" in lines[1] + lines[2], lines


def test_windows_exclusive_port_option_is_set_where_the_system_has_it(tmp_path: Path, monkeypatch) -> None:
    """Windows lets a second server bind a port in use unless the socket asks for it alone
    (SO_EXCLUSIVEADDRUSE, CPython #85307), and SO_REUSEADDR must then be off. Here the option
    is stood in for by SO_KEEPALIVE (which Linux and macOS accept) to see it set before bind."""
    path = _small(tmp_path / "a.ims")
    monkeypatch.setattr(socket, "SO_EXCLUSIVEADDRUSE", socket.SO_KEEPALIVE, raising=False)
    server = make_server(path, port=0)
    try:
        assert server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        assert server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
    finally:
        server.server_close()
    monkeypatch.delattr(socket, "SO_EXCLUSIVEADDRUSE")
    server = make_server(path, port=0)  # POSIX: reuse of a port in TIME_WAIT, as before
    try:
        assert server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
    finally:
        server.server_close()


# -- what is served -------------------------------------------------------------------------


def test_a_path_that_holds_no_ims_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cells.ome.zarr").mkdir()
    (tmp_path / "cells.ome.zarr" / "zarr.json").write_text("{}")
    done = _cli("serve", str(tmp_path / "cells.ome.zarr"), "--port", "0")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "holding no .ims file" in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["-5", "0", "nan"])
def test_a_bad_idle_timeout_is_refused_for_one_file_too(tmp_path: Path, value: str) -> None:
    done = _cli("serve", str(_small(tmp_path / "a.ims")), "--port", "0", "--idle-timeout", value)
    assert done.returncode == 2 and "--idle-timeout must be a number of seconds > 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_file_of_several_images_in_a_folder(tmp_path: Path) -> None:
    """A file as write_images makes it is listed with each image; the others, the index and its
    requests work; ``--print-state`` starts."""
    from ims_store import write_images

    rng = np.random.default_rng(3)
    images = [rng.integers(0, 1000, (4, 24, 20), dtype=np.uint16), rng.integers(0, 1000, (3, 16, 16), dtype=np.uint16)]
    write_images(images, tmp_path / "multi.ims", axes="zyx", positions=[(0, 0, 0), (0, 30, 0)])
    _small(tmp_path / "one.ims")
    server = _serving(make_server(tmp_path, port=0))
    try:
        for path in ("/", "/index.html", "/index.json"):
            assert _request(server, "GET", path)[0].status == 200, path
        index = {image["name"]: image for image in json.loads(_request(server, "GET", "/index.json")[1])["images"]}
        multi = index["multi.ims"]
        assert [part["image"] for part in multi["images"]] == [0, 1]
        assert [part["shape"] for part in multi["images"]] == [[1, 1, 4, 24, 20], [1, 1, 3, 16, 16]]
        assert multi["images"][1]["url"] == server.url + "multi.ims/1/"
        assert "shape" in index["one.ims"]
        for k in (0, 1):
            got = zarr.open_array(f"{server.url}multi.ims/{k}/0", mode="r")[0, 0]
            np.testing.assert_array_equal(got, images[k])
        assert _request(server, "GET", "/multi.ims/zarr.json")[0].status == 200
        lines = server.folder.banner(server.url, print_state=True)
        assert sum("image 1: neuroglancer" in line for line in lines) == 1
    finally:
        _stop(server)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ims_store.fronts.cli", "serve", str(tmp_path), "--port", "0", "--print-state"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **_CHILD,
    )
    try:
        first = proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert first.startswith("serving 2 .ims file(s)"), (first, proc.stderr.read())


@pytest.mark.skipif(os.name == "nt", reason="Windows refuses to rename over a file held open")
def test_one_file_served_is_read_afresh_when_replaced(tmp_path: Path) -> None:
    path = _small(tmp_path / "a.ims")
    server = _serving(make_server(path, port=0))
    try:
        before = zarr.open_array(server.url + "0", mode="r")
        assert before.shape == (1, 1, 4, 24, 24)
        new = make_example_ims(tmp_path / "new.ims", shape=(6, 40, 30), channels=2, timepoints=1, levels=1)
        os.replace(new, path)
        after = zarr.open_array(server.url + "0", mode="r")
        assert after.shape == (1, 2, 6, 40, 30)
        np.testing.assert_array_equal(after[0, 1], h5py_level(path, 0, 0, 1))
        (tmp_path / "broken.ims").write_bytes(b"half written")
        os.replace(tmp_path / "broken.ims", path)  # not served from the old store: 500
        assert [_request(server, "GET", "/0/zarr.json")[0].status for _ in range(2)] == [500, 500]
        os.replace(_small(tmp_path / "good.ims"), path)
        assert json.loads(_request(server, "GET", "/0/zarr.json")[1])["shape"] == [1, 1, 4, 24, 24]
    finally:
        _stop(server)


def test_a_folder_1200_levels_deep_is_served() -> None:
    """Folders deeper than MAX_DEPTH are not walked, and said so; the rest is served. (The tree
    lies outside pytest's temporary folders: their clean-up, shutil.rmtree, recurses and would
    fail on it.)"""
    from ims_store.fronts.folder import MAX_DEPTH

    root = tempfile.mkdtemp(prefix="ims-store-deep-")
    deep = root
    try:
        _small(Path(root) / "a.ims")
        for _ in range(1200):  # one level at a time (pathlib's mkdir(parents=True) recurses)
            deep = os.path.join(deep, "d")
            os.mkdir(deep)
        server = _serving(make_server(root, port=0))
        try:
            assert server.folder.names() == ["a.ims"]
            assert _request(server, "GET", "/index.json")[0].status == 200
            lines = server.folder.banner(server.url)
            assert any(f"more than {MAX_DEPTH} levels down" in line for line in lines)
        finally:
            _stop(server)
    finally:
        while deep != root:
            os.rmdir(deep)
            deep = os.path.dirname(deep)
        os.remove(os.path.join(root, "a.ims"))
        os.rmdir(root)
