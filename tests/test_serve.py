"""`ims-store serve`: real clients read the served OME-Zarr; HTTP details and safety."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import h5py_level
from serve_clients import connection_burst, keep_alive_seconds, taken_port

from ims_store import ImsStore
from ims_store.fronts.serve import ImsHTTPServer, make_server, neuroglancer_state, viewer_links


@pytest.fixture(params=["0.5", "0.4"])
def server(request: pytest.FixtureRequest, real_files: dict[str, Path]) -> Iterator[ImsHTTPServer]:
    srv = make_server(real_files["PyramidalCell.ims"], port=0, ngff=request.param)
    srv.serve_in_thread()
    srv.ngff = request.param  # type: ignore[attr-defined]
    yield srv
    srv.shutdown()
    srv.server_close()


def _request(server: ImsHTTPServer, method: str, path: str, headers: dict[str, str] | None = None):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response, body


def test_zarr_python_over_http(server: ImsHTTPServer, real_files: dict[str, Path]) -> None:
    root = zarr.open_group(server.url, mode="r")
    for level in (0, 1):
        np.testing.assert_array_equal(root[str(level)][0, 0], h5py_level(real_files["PyramidalCell.ims"], level, 0, 0))


def test_ome_zarr_py_over_http(server: ImsHTTPServer, real_files: dict[str, Path]) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    nodes = list(Reader(parse_url(server.url))())
    image = nodes[0]
    assert len(image.data) == 2
    np.testing.assert_array_equal(np.asarray(image.data[1][0, 0]), h5py_level(real_files["PyramidalCell.ims"], 1, 0, 0))


def test_tensorstore_over_http(server: ImsHTTPServer, real_files: dict[str, Path]) -> None:
    ts = pytest.importorskip("tensorstore", reason="tensorstore has no wheel for this platform")
    driver = "zarr3" if server.ngff == "0.5" else "zarr"  # type: ignore[attr-defined]
    arr = ts.open({"driver": driver, "kvstore": server.url + "1/"}, read=True).result()
    np.testing.assert_array_equal(arr[0, 0].read().result(), h5py_level(real_files["PyramidalCell.ims"], 1, 0, 0))


def test_ranges_head_and_cors(server: ImsHTTPServer) -> None:
    key = "/0/c/0/0/1/0/0" if server.ngff == "0.5" else "/0/0/0/1/0/0"  # type: ignore[attr-defined]
    response, whole = _request(server, "GET", key, {"Origin": NEUROGLANCER})
    assert response.status == 200 and response.headers["Access-Control-Allow-Origin"] == NEUROGLANCER
    assert response.headers["Vary"] == "Origin"
    response, part = _request(server, "GET", key, {"Range": "bytes=10-19"})
    assert response.status == 206 and part == whole[10:20]
    assert response.headers["Content-Range"] == f"bytes 10-19/{len(whole)}"
    response, part = _request(server, "GET", key, {"Range": "bytes=-7"})
    assert response.status == 206 and part == whole[-7:]
    for unsatisfiable in (f"bytes={len(whole)}-", "bytes=-0", "bytes=" + "9" * 40 + "-"):
        response, _ = _request(server, "GET", key, {"Range": unsatisfiable})
        assert response.status == 416, unsatisfiable
        assert response.headers["Content-Range"] == f"bytes */{len(whole)}"
    response, body = _request(server, "HEAD", key)
    assert response.status == 200 and body == b"" and int(response.headers["Content-Length"]) == len(whole)
    response, _ = _request(
        server,
        "OPTIONS",
        key,
        {"Origin": VIZARR, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "range"},
    )
    assert response.status == 204 and response.headers["Access-Control-Allow-Origin"] == VIZARR
    assert "range" in response.headers["Access-Control-Allow-Headers"].lower()
    assert "GET" in response.headers["Access-Control-Allow-Methods"]


NEUROGLANCER = "https://neuroglancer-demo.appspot.com"
VIZARR = "https://hms-dbmi.github.io"


def test_range_units_are_case_insensitive_and_others_are_ignored(server: ImsHTTPServer) -> None:
    """RFC 9110 14.2: the unit is case-insensitive; a Range the server does not honour (another
    unit, several ranges, a malformed one) is ignored: 200 with the whole chunk, not 416."""
    key = "/0/c/0/0/1/0/0" if server.ngff == "0.5" else "/0/0/0/1/0/0"  # type: ignore[attr-defined]
    _, whole = _request(server, "GET", key)
    for header in ("Bytes=10-19", "BYTES=10-19", "bytes = 10-19"):
        response, part = _request(server, "GET", key, {"Range": header})
        assert response.status == 206 and part == whole[10:20], header
    for ignored in ("items=0-5", "bytes=0-1,4-5", "bytes=abc", "bytes=5-2", "bytes", "=0-1"):
        response, body = _request(server, "GET", key, {"Range": ignored})
        assert response.status == 200 and body == whole and "Content-Range" not in response.headers, ignored


def test_cors_only_for_the_viewers_and_this_machine(server: ImsHTTPServer) -> None:
    """Any web page the user visits must not read their images: only the viewers the server links
    to (and pages of this machine itself) get an Access-Control-Allow-Origin."""
    for origin in ("https://evil.example", "http://neuroglancer-demo.appspot.com", "https://hms-dbmi.github.io.evil"):
        for method in ("GET", "OPTIONS"):
            response, _ = _request(
                server, method, "/zarr.json", {"Origin": origin, "Access-Control-Request-Method": "GET"}
            )
            assert "Access-Control-Allow-Origin" not in response.headers, (origin, method)
    for origin in (NEUROGLANCER, VIZARR, "http://127.0.0.1:9000", "http://localhost:8080", "http://[::1]:1234"):
        response, _ = _request(server, "GET", "/zarr.json", {"Origin": origin})
        assert response.headers["Access-Control-Allow-Origin"] == origin


def test_allow_origin_widens_cors(real_files: dict[str, Path]) -> None:
    for allowed, origin, expected in (
        (["https://lab.example"], "https://lab.example", "https://lab.example"),
        (["*"], "https://anyone.example", "*"),
    ):
        srv = make_server(real_files["Minimal_IMS_File.ims"], port=0, allow_origins=allowed)
        srv.serve_in_thread(poll_interval=0.05)
        try:
            response, _ = _request(srv, "GET", "/zarr.json", {"Origin": origin})
            assert response.headers["Access-Control-Allow-Origin"] == expected
            response, _ = _request(srv, "GET", "/zarr.json", {"Origin": "https://other.example"})
            assert response.headers.get("Access-Control-Allow-Origin") == ("*" if expected == "*" else None)
        finally:
            srv.shutdown()
            srv.server_close()


def test_a_host_that_names_another_server_is_refused(server: ImsHTTPServer) -> None:
    """DNS rebinding: a page at evil.example whose name now points at 127.0.0.1 sends
    ``Host: evil.example``; the server answers 421, not the image."""
    port = server.server_address[1]
    root = "/zarr.json" if server.ngff == "0.5" else "/.zattrs"  # type: ignore[attr-defined]
    for host in (f"evil.example:{port}", "evil.example", "127.0.0.2", f"localhost.evil:{port}", 'a"><b>'):
        response, body = _request(server, "GET", root, {"Host": host})
        assert response.status == 421 and b"multiscales" not in body, host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", "localhost."):
        response, _ = _request(server, "GET", root, {"Host": host})
        assert response.status == 200, host


def test_allow_host_names_the_machine(real_files: dict[str, Path]) -> None:
    srv = make_server(real_files["Minimal_IMS_File.ims"], port=0, allow_hosts=["microscope.lab"])
    srv.serve_in_thread(poll_interval=0.05)
    try:
        assert _request(srv, "GET", "/zarr.json", {"Host": "microscope.lab:8000"})[0].status == 200
        assert _request(srv, "GET", "/zarr.json", {"Host": "other.lab:8000"})[0].status == 421
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/0/../zarr.json",
        "//etc/passwd",
        "/0\\..\\zarr.json",
        "/" + "a" * 5000,
    ],
)
def test_nothing_outside_the_store(server: ImsHTTPServer, path: str) -> None:
    response, _ = _request(server, "GET", path)
    assert response.status == 404


@pytest.mark.parametrize(
    "method", ["POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "PROPFIND", "MKCOL", "FROBNICATE", "get"]
)
def test_every_other_method_is_refused_with_405(server: ImsHTTPServer, method: str) -> None:
    """Not 501 (a method the server does not know) but 405 (one it refuses), with the methods it
    allows; methods are case-sensitive, so ``get`` is not GET."""
    response, body = _request(server, method, "/zarr.json")
    assert response.status == 405, method
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert body == b"405 Method Not Allowed\n"


def test_a_refused_request_body_is_not_read_as_the_next_request(server: ImsHTTPServer) -> None:
    """A refused request's body is never read: the server closes the connection rather than
    parse that body as a request of its own."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    smuggled = b"GET /zarr.json HTTP/1.1\r\nHost: x\r\n\r\n"
    conn.request("FROBNICATE", "/zarr.json", body=smuggled)
    response = conn.getresponse()
    assert response.status == 405 and response.headers["Connection"] == "close"
    response.read()
    assert response.will_close
    conn.close()
    response, _ = _request(server, "GET", "/zarr.json" if server.ngff == "0.5" else "/.zattrs")  # type: ignore[attr-defined]
    assert response.status == 200


def test_keep_alive_responses_are_not_delayed(server: ImsHTTPServer) -> None:
    """Many requests on one connection, as zarr clients make them: with Nagle's algorithm on, each
    response's body waited ~40 ms for the client's delayed ACK of its headers."""
    # a small document: a body larger than a TCP segment is sent at once even with Nagle on
    key = "/zarr.json" if server.ngff == "0.5" else "/.zattrs"  # type: ignore[attr-defined]
    # ~0.1 s here; over 4 s when every response waits
    assert keep_alive_seconds(server.server_address[:2], key) < 2.0


def test_neuroglancer_state_opens_on_the_xy_plane(real_files: dict[str, Path]) -> None:
    from ims_store import read_layout
    from ims_store.fronts.serve import neuroglancer_state

    layout = read_layout(real_files["PtK2Cell.ims"])
    state = neuroglancer_state(layout, "http://127.0.0.1:8000/", "0.4")
    assert state["displayDimensions"] == ["x", "y", "z"] and state["layout"] == "xy"
    assert state["dimensions"]["x"] == [(17.118 + 0.033) / 256 * 1e-6, "m"]
    assert state["position"][1] == pytest.approx(-0.1 / 0.2 + 16 + 0.5)  # the centre of the middle z slice
    names = [layer["name"] for layer in state["layers"]]
    assert names == ["Kinetochores", "Microtubules", "DNA", "Dynactin"]
    assert [layer["localPosition"] for layer in state["layers"]] == [[0], [1], [2], [3]]
    assert state["layers"][1]["shaderControls"] == {"normalized": {"range": [0.0, 247.0]}, "color": "#00ff00"}
    assert all(layer["source"] == "zarr2://http://127.0.0.1:8000/" for layer in state["layers"])


def test_viewer_links() -> None:
    links = viewer_links("http://127.0.0.1:8000/", "0.5")
    assert "zarr3%3A%2F%2Fhttp%3A%2F%2F127.0.0.1%3A8000%2F" in links["neuroglancer"]
    assert links["vizarr"].endswith("source=http%3A%2F%2F127.0.0.1%3A8000%2F")


def _serve_output(path: Path, *options: str) -> list[str]:
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "ims_store.fronts.cli", "serve", str(path), "--port", "0", *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        while not lines or not lines[-1].startswith("press Ctrl-C"):
            lines.append(proc.stdout.readline())  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return lines


def test_serve_command_prints_url_and_short_links(real_files: dict[str, Path]) -> None:
    lines = _serve_output(real_files["PtK2Cell.ims"])
    assert lines[0].startswith("serving ") and "http://127.0.0.1:" in lines[0]
    assert lines[1].strip().startswith("neuroglancer: https://") and lines[2].strip().startswith("vizarr: https://")
    assert "--print-state" in lines[3] and len(lines) == 5
    assert all(len(line) < 300 for line in lines), [len(line) for line in lines]


def test_serve_command_prints_the_state_when_asked(real_files: dict[str, Path]) -> None:
    lines = _serve_output(real_files["PtK2Cell.ims"], "--print-state")
    assert lines[3].strip().startswith("neuroglancer state")
    state = json.loads(lines[3].split(": ", 1)[1])
    assert len(state["layers"]) == 4  # one per channel
    assert lines[4].strip().startswith("neuroglancer, each channel in its colour: https://")


def test_make_server_that_cannot_listen_raises_server_error(real_files: dict[str, Path]) -> None:
    from ims_store import ImsError, ServerError

    path = real_files["PtK2Cell.ims"]
    with taken_port() as port, pytest.raises(ServerError) as err:
        make_server(path, port=port)
    assert isinstance(err.value, ImsError) and isinstance(err.value, OSError)
    assert str(path) in str(err.value) and f"127.0.0.1:{port}" in str(err.value)


def test_neuroglancer_opens_on_the_centre_of_the_middle_voxel(real_files: dict[str, Path]) -> None:
    import h5py

    path = real_files["PtK2Cell.ims"]
    with h5py.File(path, "r") as f:
        image = f["DataSetInfo/Image"]
        text = {k: b"".join(image.attrs[k]).decode() for k in ("ExtMin2", "ExtMax2", "Z")}
    lo, hi, n = float(text["ExtMin2"]), float(text["ExtMax2"]), int(text["Z"])
    voxel = (hi - lo) / n
    state = neuroglancer_state(ImsStore(path).layout, "http://127.0.0.1:1/", "0.5")
    z = state["position"][1]  # in voxels of the z dimension, counted from the physical origin
    assert z - lo / voxel == pytest.approx(n // 2 + 0.5)  # inside slice n // 2, on no border
    assert all(layer["opacity"] == 1.0 for layer in state["layers"])


def test_a_burst_of_connections_is_answered_at_once(real_files: dict[str, Path]) -> None:
    """A viewer opens dozens of connections together: none may be dropped from a short listen
    backlog (a dropped connection retries only after a second)."""
    server = make_server(real_files["PtK2Cell.ims"], port=0)
    server.serve_in_thread(poll_interval=0.05)
    try:
        statuses, waits = connection_burst(server.server_address[:2], ["/zarr.json"])
    finally:
        server.shutdown()
        server.server_close()
    assert statuses == [200] * 100 and len(waits) == 100
    assert max(waits) < 0.9, f"slowest connection took {max(waits):.2f} s"
