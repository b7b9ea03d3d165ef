"""Imaris attribute text: decoding what real files hold, encoding what Imaris accepts.

Imaris stores every attribute (except the root's ``NumberOfDataSets``) as a 1-D array of single
characters (``H5T_C_S1``, size 1, ``H5T_STR_NULLTERM``), with numbers written as text in any
float syntax. Real files also contain non-UTF-8 bytes, so text is decoded as latin-1.
"""

from __future__ import annotations

import math
import re

import h5py
import numpy as np

__all__ = ["decode_text", "parse_float", "parse_floats", "parse_int", "read_text", "write_text"]

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)", re.IGNORECASE)


def decode_text(value: object) -> str:
    """Turn whatever h5py returns for an attribute into text.

    >>> decode_text(np.array([b"u", b"m"], dtype="S1"))
    'um'

    Text ends at the first NUL, as it does for Imaris (C strings); numpy reads a NUL
    character of an ``S1`` array as an empty element:

    >>> decode_text(np.array([b"1", b"", b"5"], dtype="S1"))
    '1'
    """
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        return value.rstrip("\x00")
    elif isinstance(value, np.ndarray):
        if value.dtype.kind == "S":
            items = value.ravel().tolist()
            if value.dtype.itemsize == 1 and b"" in items:
                items = items[: items.index(b"")]
            raw = b"".join(items)
        elif value.dtype.kind == "U":
            return "".join(value.ravel().tolist()).rstrip("\x00")
        elif value.dtype.kind == "O":
            return "".join(decode_text(v) for v in value.ravel().tolist())
        else:
            return " ".join(str(v) for v in value.ravel().tolist())
    elif isinstance(value, np.generic):
        return decode_text(value.item())
    else:
        return str(value)
    # NULLTERM arrays carry no terminator, but an empty string is stored as one NUL
    return raw.split(b"\x00", 1)[0].decode("latin-1")


def read_text(obj: h5py.Group | h5py.Dataset, name: str) -> str | None:
    """The attribute ``name`` of ``obj`` as text, or ``None`` when absent or unreadable."""
    try:
        value = obj.attrs[name]
    except (KeyError, OSError, TypeError, ValueError):
        # OSError/TypeError: h5py cannot convert an odd stored type; treat it as absent
        return None
    return decode_text(value)


def parse_floats(text: str | None) -> list[float]:
    """All numbers in ``text``, at full precision (``"1.000 0.5 0"`` -> ``[1.0, 0.5, 0.0]``)."""
    if not text:
        return []
    return [float(m) for m in _NUMBER.findall(text)]


def parse_float(text: str | None) -> float | None:
    """The first number in ``text``, or ``None`` (``"57.8398"`` -> ``57.8398``; ``"3.00000000"`` -> 3.0)."""
    values = parse_floats(text)
    return values[0] if values else None


def parse_int(text: str | None) -> int | None:
    """An integer count such as ``ImageSizeX``; ``None`` unless it is a finite whole number."""
    value = parse_float(text)
    if value is None or not math.isfinite(value) or value != int(value):
        return None
    return int(value)


def _char_type() -> h5py.h5t.TypeID:
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(1)
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    return tid


def write_text(obj: h5py.Group | h5py.Dataset, name: str, value: str) -> None:
    """Write ``value`` the way Imaris does: a char array, one byte per character, NULLTERM.

    h5py's high-level API would write a variable-length string (or NULLPAD for ``S1``), which
    Imaris does not accept, hence the low-level calls.

    >>> with h5py.File("example.h5", "w") as f:
    ...     write_text(f, "ImarisVersion", "5.5.0")
    >>> with h5py.File("example.h5", "r") as f:
    ...     read_text(f, "ImarisVersion"), f.attrs["ImarisVersion"].dtype
    ('5.5.0', dtype('S1'))
    """
    data = value.encode("latin-1") or b"\x00"
    if name in obj.attrs:
        del obj.attrs[name]
    space = h5py.h5s.create_simple((len(data),))
    attr = h5py.h5a.create(obj.id, name.encode("latin-1"), _char_type(), space)
    attr.write(np.frombuffer(data, dtype="S1"), mtype=attr.get_type())
