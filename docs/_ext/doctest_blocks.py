"""A griffe extension for the API reference: the docstrings' doctest examples (``>>>`` lines and
their output, up to the next blank line) become fenced ``pycon`` code blocks, as Python shows
them, instead of Markdown paragraphs (where an output such as ``[[0, 1]]`` reads as a link)."""

from __future__ import annotations

import re
from typing import Any

import griffe

# a run of lines, the first a prompt, up to a blank line or the end
_EXAMPLE = re.compile(r"(?m)^(?P<indent>[ ]*)>>> .*(?:\n(?P=indent)(?! *$).*)*")


def fence(text: str) -> str:
    """``text`` with each doctest example in a ```pycon fence (doctest flags dropped)."""

    def wrap(match: re.Match[str]) -> str:
        indent = match["indent"]
        body = re.sub(r"\s*# doctest: .*$", "", match[0], flags=re.M)
        return f"{indent}```pycon\n{body}\n{indent}```"

    return _EXAMPLE.sub(wrap, text)


class DoctestBlocks(griffe.Extension):
    """Fence the doctest examples of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence(obj.docstring.value)
