"""Every ```python block of README.md and docs/*.md runs as a script, and every ``ims-store`` line of their
shell blocks runs, beside the example files the docs name."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import link_or_copy

from ims_store.write.examples import EXAMPLE_FILES

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
DOCUMENTS = [
    # pages using ZarrNii or ngff-zarr run with the interop extra (pytest -m interop)
    pytest.param(doc, marks=pytest.mark.interop, id=doc.name)
    if "from zarrnii" in doc.read_text() or "import ngff_zarr" in doc.read_text()
    else pytest.param(doc, id=doc.name)
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if BLOCK.search(doc.read_text())
]


# runs each block given as a script, as `python block.py` would (run as __main__ with its own
# file, so a process pool's fresh interpreters import that file, not this runner), in one
# interpreter per page: a fresh namespace per block, the imports paid once
RUNNER = """
import runpy, sys, traceback
for script in sys.argv[1:]:
    try:
        runpy.run_path(script, run_name="__main__")
    except BaseException:
        print(f"{script} failed:", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


@pytest.mark.slow
@pytest.mark.parametrize("document", DOCUMENTS)
def test_python_examples_run_as_scripts(document: Path, example_dir: Path, tmp_path: Path) -> None:
    """Each block saved alone as a script and run as a script (not ``exec`` in one namespace: a
    block must import what it uses, and the process scheduler and dask.distributed start fresh
    interpreters that import the script again), in a folder holding the example files ``ims-store
    demo --examples`` makes (``example_dir``, the root conftest): what a reader who copies one
    example gets."""
    for example in example_dir.iterdir():
        link_or_copy(example, tmp_path / example.name)
    scripts = []
    for i, code in enumerate(BLOCK.findall(document.read_text())):
        scripts.append(f"{document.stem}_block{i}.py")
        (tmp_path / scripts[-1]).write_text(code)
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, *scripts], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"{document.name}:\n{result.stderr[-4000:]}"


def test_cli_reference_names_every_command_and_option() -> None:
    import argparse

    from ims_store.fronts.cli import _parser

    text = (ROOT / "docs" / "cli.md").read_text()
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        assert f"`ims-store {name}" in text, name
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert option in text, f"{name} {option}"


# -- the command lines of the docs ----------------------------------------------------------

SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.S | re.M)
# lines that cannot run here: a server that runs until stopped, or addresses standing for the
# reader's own (a cluster, a bucket, a web server)
PLACEHOLDER = re.compile(r"://|\bHOST\b|\bPORT\b|\bBUCKET\b")


def _cli_lines(document: Path) -> list[list[str]]:
    """The ``ims-store ...`` commands of the shell blocks of ``document``, as argument lists:
    comments dropped, ``a && b`` split, optional ``[--flag]`` given as the flag."""
    commands = []
    for block in SHELL_BLOCK.findall(document.read_text()):
        for line in block.splitlines():
            words = [w.removeprefix("[").removesuffix("]") for w in shlex.split(line, comments=True)]
            while words:
                end = words.index("&&") if "&&" in words else len(words)
                if words[0] == "ims-store":
                    commands.append(words[1:end])
                words = words[end + 1 :]
    return commands


CLI_DOCUMENTS = [
    pytest.param(doc, id=doc.name)
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if _cli_lines(doc)
]


@pytest.mark.parametrize("document", CLI_DOCUMENTS)
def test_command_lines_run(document: Path, example_dir: Path, tmp_path: Path) -> None:
    """The runnable ``ims-store`` lines of a page, in order, as one bash script (``set -e``) in a
    folder holding the example files (or none, on a page that makes them with ``demo
    --examples``); every other line at least parses, so that the options the docs name exist.
    Installation lines (``pip install``, ``python3 -m venv``) are what ``.ci/run`` runs."""
    from ims_store.fronts.cli import _parser

    lines = _cli_lines(document)
    if not any(argv[:2] == ["demo", "--examples"] for argv in lines):
        for example in example_dir.iterdir():
            link_or_copy(example, tmp_path / example.name)
    runnable = []
    for argv in lines:
        if argv[0] == "serve" or any(PLACEHOLDER.search(word) for word in argv):
            try:
                _parser().parse_args(argv)
            except SystemExit as err:
                pytest.fail(f"{document.name}: `ims-store {shlex.join(argv)}` does not parse (exit {err.code})")
            continue
        runnable.append(argv)
    # `ims-store` is this interpreter's (and so this checkout's) command line
    script = [f'ims-store() {{ {shlex.quote(sys.executable)} -m ims_store.fronts.cli "$@"; }}', "set -e"]
    script += [f"ims-store {shlex.join(argv)}" for argv in runnable]
    (tmp_path / "example.sh").write_text("\n".join(script) + "\n")
    result = subprocess.run(["bash", "example.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{document.name}:\n{result.stderr[-4000:]}"
    assert "Traceback" not in result.stderr
    if document.name == "README.md":
        assert len(runnable) >= 6 and (tmp_path / "copy.ims").is_file() and (tmp_path / "gfp.nii.gz").is_file()
    if document.name == "index.md":
        assert sorted(p.name for p in tmp_path.glob("*.ims")) == sorted(EXAMPLE_FILES)


def test_cli_reference_names_only_options_that_exist() -> None:
    """The reverse of the test above: every ``--option`` in docs/cli.md belongs to the command
    whose section names it (or to ``ims-store`` itself)."""
    import argparse

    from ims_store.fronts.cli import _parser

    def options(parser: argparse.ArgumentParser) -> set[str]:
        return {o for action in parser._actions for o in action.option_strings}

    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    top = options(parser)
    everywhere = top.union(*(options(p) for p in sub.choices.values()))
    # "## `ims-store NAME ..." opens the section of command NAME; the text before is general
    parts = re.split(r"^## `ims-store (\w+)", (ROOT / "docs" / "cli.md").read_text(), flags=re.M)
    sections = [(None, parts[0]), *zip(parts[1::2], parts[2::2], strict=True)]
    named = 0
    for command, text in sections:
        known = everywhere if command is None else top | options(sub.choices[command])
        for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text):
            assert option in known, f"docs/cli.md names {option} under {command or 'the introduction'}"
            named += 1
    assert named >= 20
