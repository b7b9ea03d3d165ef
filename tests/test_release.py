"""What a packager and a first-time user meet: the built wheel and sdist, the version, optional
dependencies named when missing, progress bars only on a terminal."""

from __future__ import annotations

import email
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import ims_store
from ims_store.write.synthetic import make_example_ims

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=cwd)


# -- the distributions ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wheel and sdist `python -m build` makes of this checkout (without build isolation: the
    venv's setuptools, so no download)."""
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    result = _run("-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


@pytest.mark.slow
def test_the_wheel_ships_the_licence_and_py_typed_and_lean_requirements(dists: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(dists[0]) as whl:
        names = whl.namelist()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(whl.read(meta_name))
        (licence,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert b"BSD 3-Clause License" in whl.read(licence) and b"ims_store developers" in whl.read(licence)
    assert "ims_store/py.typed" in names
    assert meta["License-Expression"] == "BSD-3-Clause" and meta.get_all("License-File") == ["LICENSE"]
    classifiers = meta.get_all("Classifier")
    for wanted in (
        "Operating System :: Microsoft :: Windows",
        "Operating System :: MacOS",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3.11",
        "Development Status :: 4 - Beta",
        "Typing :: Typed",
    ):
        assert wanted in classifiers
    core = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert not any(r.startswith(("ome-zarr", "aiohttp")) for r in core), core
    assert "remote" in meta.get_all("Provides-Extra")
    assert any(r.startswith("aiohttp") and 'extra == "remote"' in r for r in meta.get_all("Requires-Dist"))


@pytest.mark.slow
def test_the_sdist_tests_collect(dists: tuple[Path, Path], tmp_path: Path) -> None:
    """A packager runs the sdist's tests: its conftests, helpers, real files and docs are there,
    and pytest collects every test without an error."""
    with tarfile.open(dists[1]) as tar:
        tar.extractall(tmp_path, filter="data")
    (top,) = tmp_path.iterdir()
    for name in (
        "LICENSE",
        "CHANGELOG.md",
        "CONTRIBUTING.md",
        "conftest.py",
        "tests/conftest.py",
        "tests/helpers.py",
        "tests/data/PtK2Cell.ims",
        "tests/data/SHA256SUMS",
        "tests/data/LICENSES/MIT-ZarrNii.txt",
        "docs/index.md",
        "noxfile.py",
    ):
        assert (top / name).is_file(), name
    # the sdist's own code, not this checkout's (PYTHONPATH may name the checkout)
    env_free = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=top,
        env={**_environ(), "PYTHONPATH": str(top)},
    )
    assert env_free.returncode == 0, env_free.stdout[-3000:] + env_free.stderr[-2000:]
    summary = env_free.stdout.splitlines()[-1]  # "1938/1953 tests collected (15 deselected) in 9s"
    assert "error" not in summary, summary
    assert int(re.match(r"(\d+)", summary).group(1)) > 1000, summary


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


# -- the version and optional dependencies ----------------------------------------------------


def test_version_option_prints_the_distribution_version() -> None:
    from importlib.metadata import version

    result = _run("-m", "ims_store.fronts.cli", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ims-store {version('ims-store')}"
    assert ims_store.__version__ == version("ims-store")


BLOCK_AIOHTTP = "import sys; sys.modules['aiohttp'] = None\n"


def test_an_https_url_without_aiohttp_names_the_remote_extra() -> None:
    code = BLOCK_AIOHTTP + (
        "from ims_store import ImsStore, MissingDependencyError\n"
        "try:\n"
        "    ImsStore('https://127.0.0.1:9/cells.ims')\n"
        "except MissingDependencyError as err:\n"
        "    print(err)\n"
    )
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "https://127.0.0.1:9/cells.ims: https:// URLs need 'aiohttp', not installed: pip install 'ims-store[remote]'"
    )


def test_the_command_line_without_aiohttp_says_which_extra(tmp_path: Path) -> None:
    code = BLOCK_AIOHTTP + "from ims_store.fronts.cli import main; sys.exit(main(['info', 'http://127.0.0.1:9/c.ims']))"
    result = _run("-c", code)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "pip install 'ims-store[remote]'" in result.stderr


# -- progress bars: on a terminal only ------------------------------------------------------


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_example_ims(tmp_path_factory.mktemp("bars") / "cells.ims", shape=(8, 64, 48), channels=2, timepoints=2)


def _tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)


def test_nifti_conversion_shows_a_bar_on_a_terminal(
    cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import nibabel as nib
    import numpy as np
    from helpers import h5py_level

    from ims_store import to_nifti

    to_nifti(cells, tmp_path / "a.nii", progress=True, timepoint=None, channel=1)
    assert capsys.readouterr().err == ""  # not a terminal
    _tty(monkeypatch)
    to_nifti(cells, tmp_path / "b.nii", progress=True, timepoint=None, channel=1)
    assert "reading b.nii" in capsys.readouterr().err
    for name in ("a.nii", "b.nii"):  # slab by slab, the same voxels
        values = np.asarray(nib.load(tmp_path / name).dataobj)
        expected = np.stack([h5py_level(cells, 0, t, 1) for t in range(2)])  # (t, z, y, x)
        np.testing.assert_array_equal(values, np.transpose(expected, (3, 2, 1, 0)))


def test_deep_validation_shows_a_bar_on_a_terminal(
    cells: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ims_store.store.validate import validate

    assert validate(cells, deep=True, progress=True) == []
    assert capsys.readouterr().err == ""
    _tty(monkeypatch)
    assert validate(cells, deep=True, progress=True) == []
    err = capsys.readouterr().err
    assert "decoding cells.ims" in err and "100%" in err


def test_the_command_line_draws_no_bar_into_a_pipe(cells: Path, tmp_path: Path) -> None:
    """stderr is a pipe here, as in a log: no bar frames at all, so no carriage returns."""
    for argv in (
        ["convert", str(cells), str(tmp_path / "c.ome.zarr")],
        ["convert", str(cells), str(tmp_path / "c.nii")],
        ["convert", str(cells), str(tmp_path / "c.ims")],
        ["validate", str(cells), "--deep"],
    ):
        result = _run("-m", "ims_store.fronts.cli", *argv)
        assert result.returncode == 0, result.stderr
        assert "\r" not in result.stderr and "%|" not in result.stderr, argv
