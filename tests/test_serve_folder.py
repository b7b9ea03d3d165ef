"""`ims-store serve FOLDER`: each .ims under its own path, the index, safety, lazy open and idle
close, files changed on disk, load and concurrency. Pixels are checked against h5py's reads."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from helpers import h5py_counts, h5py_level
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_clients import connection_burst, keep_alive_seconds, taken_port
from test_serve import _request, _serve_output

from ims_store.fronts.serve import ImsHTTPServer, make_server
from ims_store.write.synthetic import make_example_ims

# name in the folder -> the synthetic variant copied there
SYNTHETIC = {
    "sub/levels.ims": "uint16-shuffle-gzip-3-levels",
    "sub/deeper/lz4.ims": "uint32-shuffle-lz4",
    "times.ims": "12-timepoints-3-channels",
    "sub/u8.ims": "uint8-gzip",  # no shuffle: tensorstore's zarr v2 driver takes no filters
}
REAL = ["PtK2Cell.ims", "Minimal_IMS_File.ims"]
SERVED = sorted([*SYNTHETIC, *REAL, "inside-link.ims", "broken.ims", "My Cells <1>&.ims"])


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory, synthetic_files: dict[str, Path], real_files: dict[str, Path]
) -> Path:
    """A folder as a lab shares it: files at the top and in subfolders, a broken one, other files,
    hidden ones, and links inside and out. Beside it, ``outside/`` holds what must stay unreachable."""
    base = tmp_path_factory.mktemp("share")
    root, outside = base / "lab", base / "outside"
    (root / "sub" / "deeper").mkdir(parents=True)
    outside.mkdir()
    for name, variant in SYNTHETIC.items():
        shutil.copyfile(synthetic_files[variant], root / name)
    for name in REAL:
        shutil.copyfile(real_files[name], root / name)
    shutil.copyfile(real_files["PtK2Cell.ims"], root / "My Cells <1>&.ims")  # quoting and escaping
    (root / "broken.ims").write_text("not an Imaris file\n")
    (root / "notes.txt").write_text("a note")
    (root / "sub" / "table.csv").write_text("a,b\n")
    shutil.copyfile(real_files["Minimal_IMS_File.ims"], root / ".hidden.ims")
    (root / ".git").mkdir()
    shutil.copyfile(real_files["Minimal_IMS_File.ims"], root / ".git" / "in-hidden.ims")
    (root / "dir.ims").mkdir()  # a folder named like a file: its path names no file
    shutil.copyfile(real_files["Minimal_IMS_File.ims"], root / "dir.ims" / "x.ims")
    (root / "inside-link.ims").symlink_to(root / "times.ims")
    shutil.copyfile(real_files["Minimal_IMS_File.ims"], outside / "secret.ims")
    (outside / "secret.txt").write_text("secret")
    (root / "outside-link.ims").symlink_to(outside / "secret.ims")
    (root / "outside-dir").symlink_to(outside, target_is_directory=True)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)  # walked once, not forever
    return root


@pytest.fixture(scope="module", params=["0.5", "0.4"])
def server(request: pytest.FixtureRequest, lab: Path) -> Iterator[ImsHTTPServer]:
    srv = make_server(lab, port=0, ngff=request.param)
    srv.serve_in_thread(poll_interval=0.05)
    srv.ngff = request.param  # type: ignore[attr-defined]
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(server: ImsHTTPServer, name: str) -> str:
    return server.url + urllib.parse.quote(name) + "/"


def _open_files() -> set[str]:
    """The files this process holds open (Linux: /proc/self/fd), as real paths."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(os.path.realpath(os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:  # closed meanwhile
            pass
    return found


HAS_PROC = Path("/proc/self/fd").is_dir()


# -- each file over HTTP -------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in SERVED if n != "broken.ims"])
def test_each_file_over_http_equals_h5py(server: ImsHTTPServer, lab: Path, name: str) -> None:
    """Every level, time point and channel (an HTTP store lists nothing: the levels are the
    multiscale's datasets)."""
    group = zarr.open_group(_url(server, name), mode="r")
    attrs = group.attrs.asdict()
    multiscale = (attrs["ome"] if server.ngff == "0.5" else attrs)["multiscales"][0]  # type: ignore[attr-defined]
    levels, times, channels = h5py_counts(lab / name)
    assert [d["path"] for d in multiscale["datasets"]] == [str(level) for level in range(levels)]
    for level in range(levels):
        data = group[str(level)][...]
        assert data.shape[:2] == (times, channels)
        for t in range(times):
            for c in range(channels):
                np.testing.assert_array_equal(data[t, c], h5py_level(lab / name, level, t, c))


def test_ome_zarr_py_reads_each_image(server: ImsHTTPServer, lab: Path) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    for name in ("sub/levels.ims", "PtK2Cell.ims"):
        image = next(iter(Reader(parse_url(_url(server, name)))()))
        levels, _, _ = h5py_counts(lab / name)
        assert len(image.data) == levels
        np.testing.assert_array_equal(np.asarray(image.data[-1][0, 1]), h5py_level(lab / name, levels - 1, 0, 1))


def test_tensorstore_reads_a_file_in_a_subfolder(server: ImsHTTPServer, lab: Path) -> None:
    ts = pytest.importorskip("tensorstore", reason="tensorstore has no wheel for this platform")
    driver = "zarr3" if server.ngff == "0.5" else "zarr"  # type: ignore[attr-defined]
    arr = ts.open({"driver": driver, "kvstore": _url(server, "sub/u8.ims") + "0/"}, read=True).result()
    np.testing.assert_array_equal(arr[0, 1].read().result(), h5py_level(lab / "sub/u8.ims", 0, 0, 1))


# -- the index -----------------------------------------------------------------------------


def _h5py_channel_names(path: Path) -> list[str]:
    with h5py.File(path, "r") as f:
        info = f["DataSetInfo"]
        count = h5py_counts(path)[2]
        return [b"".join(info[f"Channel {c}"].attrs["Name"]).decode() for c in range(count)]


def test_index_json_lists_every_file_with_its_shape_and_links(server: ImsHTTPServer, lab: Path) -> None:
    response, body = _request(server, "GET", "/index.json")
    assert response.status == 200 and response.headers["Content-Type"] == "application/json"
    index = json.loads(body)
    assert index["ngff"] == server.ngff  # type: ignore[attr-defined]
    images = {image["name"]: image for image in index["images"]}
    assert sorted(images) == SERVED  # not hidden, not linked from outside, no other kinds of file
    for name, image in images.items():
        path = lab / name
        assert image["url"] == _url(server, name) and image["bytes"] == path.stat().st_size
        if name == "broken.ims":
            continue
        levels, times, channels = h5py_counts(path)
        shapes = [h5py_level(path, level, 0, 0).shape for level in range(levels)]
        assert image["shape"] == [times, channels, *shapes[0]]
        assert image["levels"] == [[times, channels, *shape] for shape in shapes]
        with h5py.File(path, "r") as f:
            assert image["dtype"] == f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"].dtype.name
        assert len(image["channels"]) == channels
        scheme = "zarr3" if server.ngff == "0.5" else "zarr2"  # type: ignore[attr-defined]
        fragment = urllib.parse.unquote(image["links"]["neuroglancer"].split("#!", 1)[1])
        assert {layer["source"] for layer in json.loads(fragment)["layers"]} == {f"{scheme}://{image['url']}"}
        assert image["links"]["vizarr"].endswith("?source=" + urllib.parse.quote(image["url"], safe=""))
    ptk2 = [ch["name"] for ch in images["PtK2Cell.ims"]["channels"]]
    assert ptk2 == _h5py_channel_names(lab / "PtK2Cell.ims") == ["Kinetochores", "Microtubules", "DNA", "Dynactin"]


def test_a_broken_file_is_listed_with_its_error_and_served_as_500(server: ImsHTTPServer, lab: Path) -> None:
    _, body = _request(server, "GET", "/index.json")
    broken = next(image for image in json.loads(body)["images"] if image["name"] == "broken.ims")
    assert broken["error"].startswith("NotHDF5Error: ") and "shape" not in broken
    assert str(lab) not in broken["error"]  # clients are not told where the folder is
    response, body = _request(server, "GET", "/broken.ims/zarr.json")
    assert response.status == 500 and body.decode().startswith("broken.ims: NotHDF5Error")
    # the server goes on serving the others
    response, _ = _request(server, "GET", "/times.ims/zarr.json" if server.ngff == "0.5" else "/times.ims/.zattrs")  # type: ignore[attr-defined]
    assert response.status == 200


@pytest.mark.parametrize(
    ("path", "accept", "kind"),
    [
        ("/", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "html"),  # a browser
        ("/", "application/json", "json"),
        ("/", "application/json, text/html;q=0.5", "json"),
        ("/", "text/html;q=0.4, application/*;q=0.9", "json"),
        ("/", "*/*", "html"),
        ("/", "", "html"),
        ("/", "application/json;q=nonsense, text/html", "html"),
        ("/index.json", "text/html", "json"),
        ("/index.html", "application/json", "html"),
    ],
)
def test_the_index_is_html_for_a_person_and_json_for_a_program(
    server: ImsHTTPServer, path: str, accept: str, kind: str
) -> None:
    response, body = _request(server, "GET", path, {"Accept": accept} if accept else {})
    assert response.status == 200 and response.headers["Vary"] == "Accept, Origin"
    if kind == "json":
        assert response.headers["Content-Type"] == "application/json"
        assert len(json.loads(body)["images"]) == len(SERVED)
    else:
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert body.startswith(b"<!DOCTYPE html>")


def test_the_html_index_names_every_file_escaped(server: ImsHTTPServer) -> None:
    _, body = _request(server, "GET", "/", {"Accept": "text/html"})
    page = body.decode()
    for name in SERVED:
        if "<" not in name:
            assert f">{name}</a>" in page or f"<td>{name}</td>" in page, name
    assert "My Cells &lt;1&gt;&amp;.ims" in page and "<1>" not in page  # a file name is text, never markup
    assert "NotHDF5Error" in page  # the broken file's row
    assert "https://neuroglancer-demo.appspot.com/#!" in page and "https://hms-dbmi.github.io/vizarr/" in page


def test_links_use_the_address_the_client_used(server: ImsHTTPServer) -> None:
    """Behind a name (or another interface) the index's links point where the client came from;
    a Host header that is no host name is ignored."""
    port = server.server_address[1]
    _, body = _request(server, "GET", "/index.json", {"Host": f"localhost:{port}"})
    assert json.loads(body)["images"][0]["url"].startswith(f"http://localhost:{port}/")
    _, body = _request(server, "GET", "/index.json", {"Host": ""})
    assert json.loads(body)["images"][0]["url"].startswith(server.url)


def test_head_range_and_cors_on_the_index_and_a_file(server: ImsHTTPServer) -> None:
    response, whole = _request(server, "GET", "/index.json")
    response, part = _request(server, "GET", "/index.json", {"Range": "bytes=0-9"})
    assert response.status == 206 and part == whole[:10]
    key = "/sub/levels.ims/0/c/0/0/0/0/0" if server.ngff == "0.5" else "/sub/levels.ims/0/0/0/0/0/0"  # type: ignore[attr-defined]
    response, chunk = _request(server, "GET", key, {"Origin": "https://hms-dbmi.github.io"})
    assert response.status == 200 and response.headers["Access-Control-Allow-Origin"] == "https://hms-dbmi.github.io"
    response, _ = _request(server, "GET", "/index.json", {"Origin": "https://evil.example"})
    assert response.status == 200 and "Access-Control-Allow-Origin" not in response.headers
    response, part = _request(server, "GET", key, {"Range": "bytes=-5"})
    assert response.status == 206 and part == chunk[-5:]
    response, body = _request(server, "HEAD", key)
    assert response.status == 200 and body == b"" and int(response.headers["Content-Length"]) == len(chunk)
    response, _ = _request(server, "GET", key, {"Range": f"bytes={len(chunk)}-"})
    assert response.status == 416
    response, _ = _request(server, "OPTIONS", key, {"Origin": "http://viewer", "Access-Control-Request-Method": "GET"})
    assert response.status == 204


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "FROBNICATE"])
def test_every_other_method_is_refused_with_405(server: ImsHTTPServer, method: str) -> None:
    for path in ("/", "/times.ims/zarr.json"):
        response, _ = _request(server, method, path)
        assert response.status == 405 and response.headers["Allow"] == "GET, HEAD, OPTIONS"


# -- nothing outside the folder ------------------------------------------------------------

OUTSIDE = [
    "/../outside/secret.ims/zarr.json",
    "/%2e%2e/outside/secret.ims/zarr.json",
    "/%2E%2E/%2e%2e/etc/passwd",
    "/sub/%2e%2e/%2e%2e/outside/secret.ims/zarr.json",
    "/sub/../times.ims/zarr.json",
    "/./times.ims/zarr.json",
    "/sub//levels.ims/zarr.json",
    "//etc/passwd",
    "/%2Fetc%2Fpasswd",
    "/outside-link.ims/zarr.json",  # a link to a file outside
    "/outside-dir/secret.ims/zarr.json",  # through a linked folder outside
    "/outside-dir/secret.txt",
    "/.hidden.ims/zarr.json",
    "/.git/in-hidden.ims/zarr.json",
    "/dir.ims/x.ims/zarr.json",
    "/dir.ims/zarr.json",
    "/notes.txt",
    "/sub/table.csv",
    "/nope.ims/zarr.json",
    "/times.ims",
    "/times.ims/",
    "/times.ims/nope",
    "/times.ims/0/c/99/0/0/0/0",
    "/sub",
    "/sub/",
    "/times.ims%00/zarr.json",
    "/sub\\levels.ims/zarr.json",
    "/times.ims\\..\\notes.txt",
    "/.ims/zarr.json",
    "/" + "a" * 5000 + ".ims/zarr.json",
]


@pytest.mark.parametrize("path", OUTSIDE)
def test_nothing_outside_the_folder_nor_anything_but_ims(server: ImsHTTPServer, path: str) -> None:
    response, body = _request(server, "GET", path)
    assert response.status == 404, body
    assert b"secret" not in body


def test_an_absolute_path_names_nothing(server: ImsHTTPServer, lab: Path) -> None:
    secret = lab.parent / "outside" / "secret.ims"
    for path in ("/" + str(secret) + "/zarr.json", urllib.parse.quote("/" + str(secret) + "/zarr.json", safe="")):
        response, _ = _request(server, "GET", path if path.startswith("/") else "/" + path)
        assert response.status == 404, path


SEGMENTS = [
    "..", ".", "", "%2e%2e", "%2E.", "%2f", "%5c", "%00", "sub", "loop", "deeper", "outside-dir", "outside-link.ims",
    "secret.ims", "secret.txt", "times.ims", "levels.ims", "broken.ims", "notes.txt", ".hidden.ims", ".git",
    "dir.ims", "zarr.json", ".zattrs", "0", "c", "index.json", "etc", "passwd",
]  # fmt: skip


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=7))
def test_no_path_reaches_outside_the_folder(server: ImsHTTPServer, lab: Path, segments: list[str]) -> None:
    """Any path made of the pieces traversal attempts are made of: a 200 only for the index or a
    key of a file whose real path lies in the folder, never a 500 but for the broken file."""
    path = "/" + "/".join(segments)
    response, body = _request(server, "GET", path)
    assert response.status in (200, 404, 500), path
    key = urllib.parse.unquote(path).lstrip("/")
    if response.status == 500:
        assert key.startswith("broken.ims/") or "/broken.ims/" in key, path
    if response.status == 200 and key not in ("", "index.json"):
        parts = key.split("/")
        name = "/".join(parts[: next(i for i, p in enumerate(parts) if p.endswith(".ims")) + 1])
        real = (lab / name).resolve()
        assert real.is_file() and lab.resolve() in real.parents, path
    assert b"secret" not in body


def test_a_linked_file_inside_the_folder_is_served(server: ImsHTTPServer, lab: Path) -> None:
    group = zarr.open_group(_url(server, "inside-link.ims"), mode="r")
    np.testing.assert_array_equal(group["0"][7, 2], h5py_level(lab / "times.ims", 0, 7, 2))


def test_outside_files_were_never_opened(lab: Path) -> None:
    """Listing and serving a folder does not open what lies outside it, even to look."""
    from ims_store.fronts.folder import ImageFolder

    opened: list[str] = []

    def opener(path: str):
        opened.append(os.path.realpath(path))
        from ims_store import ImsStore

        return ImsStore(path)

    folder = ImageFolder(lab, opener)
    try:
        folder.index("http://127.0.0.1:1/")
    finally:
        folder.close()
    assert opened and all(p.startswith(str(lab.resolve()) + os.sep) for p in opened)
    assert str((lab.parent / "outside" / "secret.ims").resolve()) not in opened


def test_a_name_that_is_not_utf8_is_left_out(small_lab: Path, real_files: dict[str, Path]) -> None:
    """A file name of bytes that are not UTF-8 has no URL: the index leaves it out, and still
    answers."""
    shutil.copyfile(real_files["Minimal_IMS_File.ims"], os.fsencode(small_lab) + b"/caf\xe9.ims")
    server = make_server(small_lab, port=0)
    server.serve_in_thread(poll_interval=0.05)
    try:
        for path in ("/index.json", "/index.html"):
            response, body = _request(server, "GET", path)
            assert response.status == 200 and b"caf" not in body
        response, _ = _request(server, "GET", "/caf%E9.ims/zarr.json")
        assert response.status == 404
    finally:
        server.shutdown()
        server.server_close()


def test_links_to_other_files_are_followed_only_when_told(tmp_path: Path) -> None:
    """As for one file: a file whose data lies in another is refused (and listed with why)
    unless the server is told ``follow_links``."""
    from corpus import sound_file
    from hdf5_variants import VARIANTS

    root = tmp_path / "linked"
    root.mkdir()
    VARIANTS["external-link-raw"](sound_file(tmp_path / "sound.ims"), root / "linked.ims")
    for follow in (False, True):
        server = make_server(root, port=0, follow_links=follow)
        server.serve_in_thread(poll_interval=0.05)
        try:
            _, body = _request(server, "GET", "/index.json")
            image = next(image for image in json.loads(body)["images"] if image["name"] == "linked.ims")
            response, _ = _request(server, "GET", "/linked.ims/zarr.json")
            if follow:
                assert "error" not in image and response.status == 200
                got = zarr.open_array(server.url + "linked.ims/0", mode="r")[1, 0]
                np.testing.assert_array_equal(got, h5py_level(root / "linked.ims", 0, 1, 0))
            else:
                assert image["error"].startswith("LinkTargetError: ") and "not followed" in image["error"]
                assert response.status == 500
        finally:
            server.shutdown()
            server.server_close()


def test_a_folder_server_that_cannot_listen_raises_server_error(small_lab: Path) -> None:
    from ims_store import ServerError

    with taken_port() as port, pytest.raises(ServerError) as err:
        make_server(small_lab, port=port)
    assert str(small_lab) in str(err.value) and f"127.0.0.1:{port}" in str(err.value)


# -- lazy open, idle close, files changed on disk ------------------------------------------


@pytest.fixture
def small_lab(tmp_path: Path) -> Path:
    root = tmp_path / "small"
    root.mkdir()
    make_example_ims(root / "a.ims", shape=(6, 40, 30), channels=2, timepoints=1, levels=1)
    make_example_ims(root / "b.ims", shape=(4, 24, 24), dtype="uint8", channels=1, timepoints=2, levels=1)
    return root


def _wait_for(condition, seconds: float = 10.0) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, "timed out"
        time.sleep(0.01)
    return time.monotonic() - start


def test_files_open_on_first_request_and_close_when_idle(small_lab: Path) -> None:
    server = make_server(small_lab, port=0, idle_timeout=0.3)
    server.serve_in_thread(poll_interval=0.05)
    folder = server.folder
    assert folder is not None
    a = str((small_lab / "a.ims").resolve())
    try:
        _request(server, "GET", "/")  # the index reads each file and closes it again
        assert folder.open_names() == []
        if HAS_PROC:
            assert a not in _open_files()
        np.testing.assert_array_equal(
            zarr.open_array(server.url + "a.ims/0", mode="r")[0, 1], h5py_level(small_lab / "a.ims", 0, 0, 1)
        )
        assert folder.open_names() == ["a.ims"]  # only what was asked for
        if HAS_PROC:
            assert a in _open_files()
        waited = _wait_for(lambda: folder.open_names() == [])
        assert waited < 3.0
        if HAS_PROC:
            assert a not in _open_files()  # closed: HDF5's handle and the chunk reader's
        # and opened again on the next request
        np.testing.assert_array_equal(
            zarr.open_array(server.url + "a.ims/0", mode="r")[0, 0], h5py_level(small_lab / "a.ims", 0, 0, 0)
        )
        assert folder.open_names() == ["a.ims"]
    finally:
        server.shutdown()
        server.server_close()
    assert folder.open_names() == []
    if HAS_PROC:
        assert a not in _open_files()


def test_a_file_in_use_is_not_closed_when_idle(small_lab: Path) -> None:
    from ims_store.fronts.folder import ImageFolder
    from ims_store.fronts.resolver import served_store

    folder = ImageFolder(small_lab, lambda p: served_store(p, "0.5", False), idle_timeout=0.05)
    try:
        with folder.lease("a.ims") as store:
            assert store is not None
            time.sleep(0.3)  # several idle timeouts
            assert folder.close_idle() == [] and folder.open_names() == ["a.ims"]
            whole = store.get_sync("0/c/0/1/0/0/0")
            assert whole is not None
        _wait_for(lambda: folder.open_names() == [])
    finally:
        folder.close()


def test_idle_timeout_and_ngff_are_checked(small_lab: Path) -> None:
    for bad in (0, -1, float("nan"), "5", True):
        with pytest.raises(ValueError, match="idle_timeout"):
            make_server(small_lab, port=0, idle_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ngff"):
        make_server(small_lab, port=0, ngff="0.6")  # type: ignore[arg-type]


def test_a_file_replaced_on_disk_is_read_afresh(small_lab: Path, tmp_path: Path) -> None:
    server = make_server(small_lab, port=0)
    server.serve_in_thread(poll_interval=0.05)
    path = small_lab / "a.ims"
    try:
        before = zarr.open_array(server.url + "a.ims/0", mode="r")[0, 0]
        np.testing.assert_array_equal(before, h5py_level(path, 0, 0, 0))
        # replaced by renaming another file over it (as write_ims does): a new inode
        other = make_example_ims(tmp_path / "other.ims", shape=(5, 33, 21), channels=3, timepoints=1, levels=1)
        os.replace(other, path)
        after = zarr.open_array(server.url + "a.ims/0", mode="r")
        assert after.shape == (1, 3, 5, 33, 21)
        np.testing.assert_array_equal(after[0, 2], h5py_level(path, 0, 0, 2))
        # rewritten in place (the same inode, another size)
        make_example_ims(tmp_path / "third.ims", shape=(3, 20, 20), channels=1, timepoints=2, levels=1)
        shutil.copyfile(tmp_path / "third.ims", path)
        again = zarr.open_array(server.url + "a.ims/0", mode="r")
        assert again.shape == (2, 1, 3, 20, 20)
        np.testing.assert_array_equal(again[1, 0], h5py_level(path, 0, 1, 0))
        _, body = _request(server, "GET", "/index.json")
        assert json.loads(body)["images"][0]["shape"] == [2, 1, 3, 20, 20]
        # broken, then mended: the error is not remembered past the change
        path.write_text("half-copied")
        response, _ = _request(server, "GET", "/a.ims/zarr.json")
        assert response.status == 500
        shutil.copyfile(tmp_path / "third.ims", path)
        response, _ = _request(server, "GET", "/a.ims/zarr.json")
        assert response.status == 200
        # removed: gone from the index and 404
        path.unlink()
        response, _ = _request(server, "GET", "/a.ims/zarr.json")
        assert response.status == 404
        _, body = _request(server, "GET", "/index.json")
        assert [image["name"] for image in json.loads(body)["images"]] == ["b.ims"]
    finally:
        server.shutdown()
        server.server_close()


# -- load and concurrency ------------------------------------------------------------------


def test_many_threads_read_many_files_while_they_open_and_close(lab: Path) -> None:
    """32 threads read levels of four files at once while an idle timeout of 10 ms closes and
    reopens them under the readers: every read equals h5py's."""
    from concurrent.futures import ThreadPoolExecutor

    server = make_server(lab, port=0, idle_timeout=0.01)
    server.serve_in_thread(poll_interval=0.05)
    cases = [
        ("sub/levels.ims", 0, 1, 1),
        ("sub/levels.ims", 2, 0, 0),
        ("sub/deeper/lz4.ims", 0, 1, 0),
        ("times.ims", 0, 11, 2),
        ("inside-link.ims", 0, 3, 1),
        ("PtK2Cell.ims", 0, 0, 3),
    ]
    expected = {case: h5py_level(lab / case[0], *case[1:]) for case in cases}

    def read(i: int) -> bool:
        name, level, t, c = cases[i % len(cases)]
        got = zarr.open_array(_url(server, name) + str(level), mode="r")[t, c]
        return bool(np.array_equal(got, expected[cases[i % len(cases)]]))

    try:
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(read, range(96)))
        with ThreadPoolExecutor(16) as pool:  # the index at the same time as reads
            index = list(pool.map(lambda _: _request(server, "GET", "/index.json")[0].status, range(16)))
    finally:
        server.shutdown()
        server.server_close()
    assert all(results) and index == [200] * 16


def test_a_burst_of_connections_is_answered_at_once(lab: Path) -> None:
    """As for one file: 100 connections opened together, none dropped from a short listen backlog,
    here spread over three files the server has not opened yet."""
    server = make_server(lab, port=0)
    server.serve_in_thread(poll_interval=0.05)
    keys = [f"/{name}/zarr.json" for name in ("times.ims", "sub/levels.ims", "PtK2Cell.ims")]
    try:
        statuses, waits = connection_burst(server.server_address[:2], keys)
    finally:
        server.shutdown()
        server.server_close()
    assert statuses == [200] * 100
    assert max(waits) < 0.9, f"slowest connection took {max(waits):.2f} s"


def test_keep_alive_responses_are_not_delayed(server: ImsHTTPServer) -> None:
    key = "/sub/levels.ims/zarr.json" if server.ngff == "0.5" else "/sub/levels.ims/.zattrs"  # type: ignore[attr-defined]
    assert keep_alive_seconds(server.server_address[:2], key) < 2.0


# -- the command line ----------------------------------------------------------------------


def test_serve_command_lists_the_index_and_each_file(lab: Path) -> None:
    lines = _serve_output(lab)
    assert lines[0].startswith(f"serving {len(SERVED)} .ims file(s) under {lab.resolve()}")
    url = lines[0].split(" at ")[1].strip()
    assert lines[1].strip() == f"index: {url} (JSON: {url}index.json)"
    assert [line.split(": ")[0].strip() for line in lines[2 : 2 + len(SERVED)]] == SERVED
    assert lines[-1].startswith("press Ctrl-C")


def test_serve_command_prints_each_state_when_asked(lab: Path) -> None:
    lines = _serve_output(lab, "--print-state", "--ngff", "0.4", "--idle-timeout", "5")
    states = [line for line in lines if "neuroglancer, each channel in its colour: https://" in line]
    assert len(states) == len(SERVED) - 1  # all but the broken file, which says why instead
    assert any("cannot be served: NotHDF5Error" in line for line in lines)
    assert any("closed after 5 s unused" in line for line in lines)


def test_serve_command_refuses_a_bad_idle_timeout(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ims_store.fronts.cli import main

    assert main(["serve", str(lab), "--port", "0", "--idle-timeout", "0"]) == 2
    assert "--idle-timeout must be a number of seconds > 0" in capsys.readouterr().err
