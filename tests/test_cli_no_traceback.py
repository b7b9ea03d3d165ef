"""The command line never shows a traceback: every failure is one line on stderr and exit status
2 (``--debug`` keeps the traceback); its messages name the options a user typed; its help
documents every argument and gives examples."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from ims_store.fronts import cli
from ims_store.write.synthetic import make_example_ims


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_example_ims(
        tmp_path_factory.mktemp("cli-tb") / "cells.ims", shape=(8, 40, 40), channels=2, timepoints=1
    )


def _ims_store(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ims_store.fronts.cli", *argv], capture_output=True, text=True, cwd=cwd
    )


def _one_line(result: subprocess.CompletedProcess[str], command: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"ims-store {command}: error: ")
    return result.stderr


def test_objects_export_into_an_existing_file(cells: Path, tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    err = _one_line(_ims_store("objects", str(cells), "--export", str(target)), "objects")
    assert str(target) in err
    assert target.read_text() == "mine"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux): a folder nobody may write into")
def test_refs_into_a_folder_that_cannot_be_written(cells: Path) -> None:
    err = _one_line(_ims_store("refs", str(cells), "-o", "/proc/x.json"), "refs")
    assert "/proc/" in err


def test_debug_keeps_the_traceback(cells: Path, tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    result = _ims_store("--debug", "objects", str(cells), "--export", str(target))
    assert result.returncode != 0 and "Traceback (most recent call last)" in result.stderr


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (OverflowError("Python int too large to convert to C int"), "OverflowError: Python int too large"),
        (MemoryError(), "out of memory"),
        (PermissionError(13, "Permission denied", "/data/out.ims"), "/data/out.ims: Permission denied"),
        (RuntimeError("a library\nfailed over two lines"), "RuntimeError: a library failed over two lines"),
        (KeyError("x"), "KeyError: 'x'"),
    ],
)
def test_any_other_failure_is_one_line(
    cells: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: Exception, shown: str
) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(cli, "_cmd_info", fail)
    assert cli.main(["info", str(cells)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("ims-store info: error: ") and shown in err and "--debug" in err
    with pytest.raises(type(error)):
        cli.main(["--debug", "info", str(cells)])


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--ngff", "0.4", "--chunks-per-shard", "2,2,2"], ["--chunks-per-shard", "--ngff 0.5"]),
        (["--codec", "copy", "--chunks-per-shard", "2,2,2"], ["--chunks-per-shard", "--codec"]),
    ],
)
def test_messages_name_the_options_not_the_library_keywords(
    cells: Path, tmp_path: Path, options: list[str], named: list[str]
) -> None:
    err = _one_line(_ims_store("convert", str(cells), str(tmp_path / "out.ome.zarr"), *options), "convert")
    assert all(name in err for name in named) and "ngff_version" not in err and "codec '" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("level", ["12", "-1", "x"])
def test_a_gzip_level_outside_0_to_9_names_the_option(cells: Path, tmp_path: Path, level: str) -> None:
    result = _ims_store("convert", str(cells), str(tmp_path / "out.ims"), "--compression-level", level)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--compression-level" in result.stderr and "compression_level" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **sub.choices}


@pytest.mark.parametrize("name", list(_subparsers()))
def test_help_documents_every_argument_with_one_metavar_style(name: str) -> None:
    parser = _subparsers()[name]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue  # (a hidden alias kept for old command lines)
        assert action.help, f"{name}: {action.dest} has no help text"
        takes_value = action.nargs != 0
        if takes_value and action.choices is None:
            metavar = action.metavar
            assert metavar is not None and metavar == metavar.upper(), f"{name}: {action.dest} metavar {metavar!r}"
    assert (parser.epilog or "").startswith("examples:\n  ims-store"), name
    text = parser.format_help()
    assert "examples:\n  ims-store" in text


def test_examples_of_the_help_parse() -> None:
    import shlex

    parser = cli._parser()
    for sub in _subparsers().values():
        for line in (sub.epilog or "").splitlines()[1:]:
            argv = shlex.split(line)[1:]
            if argv[-1] == "--help" or argv == ["COMMAND", "--help"]:
                continue
            parser.parse_args(argv)  # exits (failing the test) if an example does not parse


def test_demo_examples_makes_the_documentation_files(tmp_path: Path) -> None:
    result = _ims_store("demo", "--examples", str(tmp_path / "ex"))
    assert result.returncode == 0, result.stderr
    made = sorted(p.name for p in (tmp_path / "ex").iterdir())
    assert made == ["cells.ims", "surfaces.ims", "tiles.ims", "tracks.ims"]
    with h5py.File(tmp_path / "ex" / "cells.ims", "r") as f:
        names = [f[f"DataSetInfo/Channel {c}"].attrs["Name"].tobytes().decode() for c in range(3)]
    assert names == ["DAPI", "GFP", "mCherry"]
    with h5py.File(tmp_path / "ex" / "tracks.ims", "r") as f:
        assert "Scene8/Content/Points0" in f
    before = (tmp_path / "ex" / "cells.ims").stat().st_mtime_ns
    err = _one_line(_ims_store("demo", "--examples", str(tmp_path / "ex")), "demo")
    assert "cells.ims" in err and "exists already" in err
    assert (tmp_path / "ex" / "cells.ims").stat().st_mtime_ns == before
