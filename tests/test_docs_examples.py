"""Every ```python block in README.md and docs/*.md runs, in order, against a real example file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
    (tmp_path / "cells.ims").symlink_to(example_dir / "cells.ims")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{document.name}[block {i}]", "exec"), namespace)


def test_cli_reference_names_every_command_and_option() -> None:
    import argparse

    from ims_store.cli import _parser

    text = (ROOT / "docs" / "cli.md").read_text()
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        assert f"`ims-store {name}" in text, name
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert option in text, f"{name} {option}"
