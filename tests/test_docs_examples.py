"""Every ```python block in README.md and docs/*.md runs, in order, against a real example file."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from helpers import link_or_copy

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


@pytest.mark.parametrize("document", DOCUMENTS)
def test_examples_run(document: Path, example_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``example_dir`` (see the root conftest) holds the ``cells.ims`` the examples open."""
    blocks = BLOCK.findall(document.read_text())
    for name in ("cells.ims", "tracks.ims", "surfaces.ims"):
        link_or_copy(example_dir / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{document.name}[block {i}]", "exec"), namespace)


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
def test_command_lines_run(document: Path, example_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each runnable ``ims-store`` line exits 0, in order, beside ``cells.ims``; every other line
    at least parses, so that the options the docs name exist."""
    from ims_store.fronts.cli import _parser, main

    for name in ("cells.ims", "tracks.ims", "surfaces.ims"):
        link_or_copy(example_dir / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    ran = 0
    for argv in _cli_lines(document):
        if argv[0] == "serve" or any(PLACEHOLDER.search(word) for word in argv):
            try:
                _parser().parse_args(argv)
            except SystemExit as err:
                pytest.fail(f"{document.name}: `ims-store {shlex.join(argv)}` does not parse (exit {err.code})")
            continue
        assert main(argv) == 0, f"{document.name}: ims-store {shlex.join(argv)}"
        ran += 1
    if document.name == "README.md":
        assert ran >= 6 and (tmp_path / "copy.ims").is_file() and (tmp_path / "gfp.nii.gz").is_file()


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
