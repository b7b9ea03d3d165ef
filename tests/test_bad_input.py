"""Every command on every malformed variant either works or raises a specific ims_store error
that names the file: never a crash, a bare KeyError/IndexError, or silently wrong pixels."""

from __future__ import annotations

import http.client
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from corpus import VARIANTS, sound_file

from ims_store import ImsError, ImsStore, to_ome_zarr, write_ims
from ims_store.cli import main as cli

COMMANDS = ["open", "read-every-chunk", "info", "validate", "serve", "convert"]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpus")
    good = sound_file(root / "sound.ims")
    paths = {}
    for name, make in VARIANTS.items():
        paths[name] = root / f"{name}.ims"
        make(good, paths[name])
    return paths


def _h5py_or_none(path: Path, level: int, t: int, c: int, size: tuple[int, ...]) -> np.ndarray | None:
    """h5py's own read, or None where HDF5 itself cannot read the data."""
    try:
        with h5py.File(path, "r") as f:
            group = f[f"DataSet/ResolutionLevel {level}/TimePoint {t}/Channel {c}"]
            return group["Data"][: size[0], : size[1], : size[2]]
    except Exception:
        return None


def _read_every_chunk(path: Path) -> None:
    store = ImsStore(path)
    layout = store.layout
    for lvl in layout.levels:
        arr = zarr.open_array(store, path=str(lvl.index), mode="r")
        for t in range(len(layout.timepoints)):
            for c in range(len(layout.channels)):
                data = arr[t, c]
                expected = _h5py_or_none(
                    path, lvl.number, layout.timepoints[t].number, layout.channels[c].number, lvl.size
                )
                # what ims_store returns, HDF5 returns too: no silently wrong pixels
                assert expected is not None, f"ims_store read level {lvl.index} t {t} c {c}, HDF5 cannot"
                np.testing.assert_array_equal(data, expected)


def _serve(path: Path) -> None:
    from ims_store.serve import make_server

    server = make_server(path, port=0)
    server.serve_in_thread()
    try:
        keys = list(server.store._metadata)
        keys += [f"{lvl.index}/c/0/0/0/0/0" for lvl in server.store.layout.levels]
        host, port = server.server_address[:2]
        for key in keys:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", "/" + key)
            status = conn.getresponse().status
            conn.close()
            assert status in (200, 404, 500), (key, status)
    finally:
        server.shutdown()
        server.server_close()


def _convert(path: Path, out: Path) -> None:
    for target, run in (
        (out / "out.zarr", lambda target: to_ome_zarr(path, target)),
        (out / "out.ims", lambda target: write_ims(path, target)),
    ):
        try:
            run(target)
        except ImsError:
            assert not target.exists(), "a failed conversion left output behind"
            assert not list(out.glob(".*part")), "a failed conversion left a temporary file behind"
            raise


@pytest.mark.filterwarnings("ignore::ims_store.layout.ImsWarning")  # lenient cases warn
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_works_or_raises_a_named_error(
    corpus: dict[str, Path], variant: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = corpus[variant]
    if command in ("info", "validate"):
        status = cli([command, str(path)])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        if command == "info":
            assert status in (0, 2)
            if status == 2:
                assert captured.err.count("\n") == 1 and str(path) in captured.err
        else:
            assert status in (0, 1)
        return
    run = {
        "open": lambda: ImsStore(path),
        "read-every-chunk": lambda: _read_every_chunk(path),
        "serve": lambda: _serve(path),
        "convert": lambda: _convert(path, tmp_path),
    }[command]
    try:
        run()
    except ImsError as err:
        assert str(path) in str(err), f"the error does not name the file: {err}"
        assert err.reason


def test_corpus_is_large_enough() -> None:
    assert len(VARIANTS) >= 30
