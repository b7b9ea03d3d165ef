"""nox sessions: the test suite on each supported Python (and so on both zarr lines).

Python 3.11 resolves zarr 3.1.x; Python 3.12+ resolves zarr 3.2+. On machines with pyenv:

    PYENV_VERSION=3.11.7:3.12.1:3.13.0 nox            # every session
    PYENV_VERSION=3.11.7:3.12.1:3.13.0 nox -s tests-3.12
    nox -s portable      # the suite without os.pread / os.fork, as on Windows (docs/platforms.md)
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python=["3.11", "3.12", "3.13"])
def tests(session: nox.Session) -> None:
    """Run the test suite against the newest dependencies this Python resolves."""
    session.install("-e", ".[test]")
    session.run(
        "python", "-c", "import zarr, numcodecs; print('zarr', zarr.__version__, 'numcodecs', numcodecs.__version__)"
    )
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def portable(session: nox.Session) -> None:
    """The whole suite on Linux made to lack what Windows lacks (tests/portable/sitecustomize.py:
    no os.pread, os.preadv, os.fork, os.register_at_fork; processes started by spawn), in every
    process the suite starts too. Not a run on Windows: see docs/platforms.md."""
    session.install("-e", ".[test]")
    emulation = str(Path(__file__).parent / "tests" / "portable")
    env = {"PYTHONPATH": os.pathsep.join(p for p in (emulation, os.environ.get("PYTHONPATH", "")) if p)}
    # the emulation must be in force, or the session would pass for the wrong reason
    session.run(
        "python", "-c",
        "import os, multiprocessing as m; "
        "assert not hasattr(os, 'pread') and not hasattr(os, 'fork') and m.get_start_method() == 'spawn'; "
        "print('emulating Windows: no os.pread, os.preadv, os.fork; spawn')",
        env=env,
    )  # fmt: skip
    session.run("pytest", *session.posargs, env=env)


@nox.session(python="3.11")
def interop(session: nox.Session) -> None:
    """ZarrNii, ngff-zarr and OpenReadout on .ims files (the interop extra is large: ITK comes with it)."""
    session.install("-e", ".[test,interop]")
    session.run("pytest", "-m", "interop", *session.posargs)


@nox.session(python="3.11")
def napari(session: nox.Session) -> None:
    """The napari reader against napari itself (the napari extra; these checks need no Qt)."""
    session.install("-e", ".[test,napari]")
    # napari must import here: the suite's own check skips where napari is missing
    session.run("python", "-c", "import napari, napari.utils.colormaps; print('napari', napari.__version__)")
    session.run("pytest", "tests/test_napari_reader.py", "tests/test_objects_napari.py", *session.posargs)


@nox.session(python="3.11")
def oldest(session: nox.Session) -> None:
    """The oldest zarr 3 release the package claims to support."""
    session.install("-e", ".[test]", "zarr==3.0.8")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "ims_store", "tests", "benchmarks", "noxfile.py")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation site with its API reference, failing on any warning (a broken link,
    a docstring mkdocstrings cannot render); the pages' examples run in the test suite."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(Path(session.create_tmp()) / "site"))
