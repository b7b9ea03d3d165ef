"""Checked reads of one object group's datasets: every way a dataset can be absent, of the wrong
shape or type, or lack a field becomes a `MalformedObjectsError` naming the file and the group.

>>> import h5py
>>> with h5py.File("tracks.ims", "r") as f:
...     group = ObjectGroup(f["Scene8/Content/Points0"], "tracks.ims")
...     spots = group.table("Spot", {"ID": "int", "PositionX": "float"})
...     try:
...         group.table("Spot", {"ID": "int", "Diameter": "float"})
...     except MalformedObjectsError as err:
...         print(err.group, "-", err.detail.split(";")[0])
/Scene8/Content/Points0 - Spot lacks field(s) ['Diameter']
>>> spots["ID"].dtype, spots["PositionX"].dtype
(dtype('int64'), dtype('float32'))
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

from ..errors import MalformedObjectsError, RemoteReadError
from ..format.attributes import decode_text, read_text
from ..format.layout import parse_color

__all__ = ["ObjectGroup", "material_color"]

# what each declared kind accepts (numpy dtype kinds)
_KINDS = {"int": "iu", "float": "f", "text": "SUO"}
_KIND_NAMES = {"int": "an integer type", "float": "a floating-point type", "text": "a string type"}
# errors h5py raises for objects or types it cannot read
_H5PY_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)
# deflate's largest ratio (a run of one byte): the most a filtered chunk of the stored bytes can
# decode to. Imaris stores object tables raw or gzipped
_DEFLATE_RATIO = 1032


class ObjectGroup:
    """One object group (``Scene8/Content/Points0``...) of the file ``label``."""

    def __init__(
        self, group: h5py.Group, label: str, failed_read: Callable[[str], RemoteReadError | None] | None = None
    ) -> None:
        self.group = group
        self.label = label
        self.where = group.name or ""
        self._failed_read = failed_read

    def error(self, message: str) -> MalformedObjectsError:
        return MalformedObjectsError(message, self.label, self.where)

    def _unreadable(self, what: str, err: BaseException) -> Exception:
        """A remote read that failed is the network's fault, not the file's."""
        failed = self._failed_read(f"{self.where}/{what}") if self._failed_read is not None else None
        return failed if failed is not None else self.error(f"{what} cannot be read ({type(err).__name__}: {err})")

    def text(self, name: str) -> str | None:
        """A char-array attribute of the group as text, or None."""
        return read_text(self.group, name)

    def dataset(self, name: str, *, optional: bool = False) -> h5py.Dataset | None:
        """The dataset ``name`` of the group; a missing one is None if ``optional``, else an error."""
        try:
            link = self.group.get(name, getlink=True)
            obj = self.group.get(name) if link is not None else None
        except _H5PY_ERRORS as err:
            raise self._unreadable(name, err) from err
        if obj is None:
            if link is None and optional:
                return None
            raise self.error(f"no {name} dataset" if link is None else f"{name} is a link that leads nowhere")
        if not isinstance(obj, h5py.Dataset):
            raise self.error(f"{name} is a group, not a dataset")
        self._check_stored(obj, name)
        return obj

    def _check_stored(self, ds: h5py.Dataset, name: str) -> None:
        """Refuse a dataset whose shape claims more than the file stores, before anything is
        sized by it: every chunk its shape needs written, a contiguous dataset's bytes all
        allocated in this file (not external files, not a virtual mapping), filtered chunks no
        larger than deflate can make of their stored bytes. Imaris writes every row it declares,
        so rows never written are damage, and reading them would give fill values as data."""
        claimed = int(math.prod(ds.shape)) * ds.dtype.itemsize if ds.shape is not None else 0
        if claimed == 0:
            return
        rows = f"{ds.shape[0]} rows" if ds.ndim else "a value"
        try:
            plist = ds.id.get_create_plist()
            layout = plist.get_layout()
            stored = int(ds.id.get_storage_size())
            file_size = int(ds.file.id.get_filesize())
            if layout == h5py.h5d.CHUNKED:
                chunks = ds.chunks or ()
                needed = math.prod(-(-int(n) // int(c)) for n, c in zip(ds.shape, chunks, strict=True))
                have = int(ds.id.get_num_chunks())
                filtered = plist.get_nfilters() > 0
            external = plist.get_external_count() if layout == h5py.h5d.CONTIGUOUS else 0
        except _H5PY_ERRORS as err:
            raise self._unreadable(name, err) from err
        if layout == h5py.h5d.VIRTUAL or external:
            how = "a virtual dataset" if layout == h5py.h5d.VIRTUAL else "stored in external files"
            raise self.error(f"{name} is {how}; object tables are read only from the file's own storage")
        if stored > file_size:
            raise self.error(f"{name} claims {stored} stored bytes, more than the file's {file_size}")
        if layout == h5py.h5d.CHUNKED:
            if have < needed:
                raise self.error(
                    f"{name} claims {rows} ({claimed} bytes), but only {have} of the {needed} chunks they need"
                    " are stored (rows never written)"
                )
            if filtered and claimed > _DEFLATE_RATIO * stored:
                raise self.error(
                    f"{name} claims {rows} ({claimed} bytes) from {stored} stored bytes, more than"
                    f" {_DEFLATE_RATIO}:1 compression can hold"
                )
        elif stored < claimed:
            raise self.error(
                f"{name} claims {rows} ({claimed} bytes), but the file stores {stored} bytes of it (rows never written)"
            )

    def has(self, name: str) -> bool:
        try:
            return name in self.group
        except _H5PY_ERRORS:
            return False

    def rows(self, name: str) -> int:
        """The number of rows of dataset ``name`` (its first dimension), without reading it; 0
        for an empty one (no dataspace, as some writers store an empty array)."""
        ds = self.dataset(name)
        assert ds is not None
        if ds.shape is None:
            return 0
        if ds.ndim == 0:
            raise self.error(f"{name} is a scalar, expected a table")
        return int(ds.shape[0])

    def matrix_rows(self, name: str, columns: int) -> int:
        """The rows of the plain ``(n, columns)`` dataset ``name`` (``(n,)`` too when one column),
        without reading it. An empty dataset of any shape -- ``(0, columns)``, ``(0,)`` or no
        dataspace, the ways writers store an empty array -- has 0 rows."""
        ds = self.dataset(name)
        assert ds is not None
        return self._matrix_rows(ds, name, columns)

    def _matrix_rows(self, ds: h5py.Dataset, name: str, columns: int) -> int:
        shape = ds.shape
        if shape is None or (len(shape) in (1, 2) and 0 in shape):
            return 0
        if not (len(shape) == 2 and shape[1] == columns) and not (columns == 1 and len(shape) == 1):
            raise self.error(f"{name} has shape {shape}, expected (n, {columns})")
        return int(shape[0])

    def _read(self, ds: h5py.Dataset, name: str) -> np.ndarray:
        try:
            return np.asarray(ds[()])
        except _H5PY_ERRORS as err:
            raise self._unreadable(name, err) from err

    def array(self, name: str, kind: str, columns: int, *, optional: bool = False) -> np.ndarray | None:
        """A plain 2-D dataset of ``columns`` columns (``(n,)`` too when one column), checked for
        type; integers come as int64."""
        ds = self.dataset(name, optional=optional)
        if ds is None:
            return None
        if ds.dtype.names is not None or ds.dtype.kind not in _KINDS[kind]:
            raise self.error(f"{name} has type {ds.dtype}, expected {_KIND_NAMES[kind]}")
        n = self._matrix_rows(ds, name, columns)
        data = self._read(ds, name).reshape(n, columns) if n else np.zeros((0, columns), ds.dtype)
        return self._integers(data, name) if kind == "int" else data

    def table(self, name: str, fields: dict[str, str], *, optional: bool = False) -> dict[str, Any] | None:
        """A compound dataset as columns: each of ``fields`` (name -> kind) checked present and
        of its kind; integers as int64, text as a list of str. Other fields are ignored."""
        ds = self.dataset(name, optional=optional)
        if ds is None:
            return None
        names = ds.dtype.names
        if names is None:
            raise self.error(f"{name} has type {ds.dtype}, expected a compound type with fields {list(fields)}")
        if ds.shape is not None and ds.ndim != 1:
            raise self.error(f"{name} has shape {ds.shape}, expected one dimension")
        missing = [f for f in fields if f not in names]
        if missing:
            raise self.error(f"{name} lacks field(s) {missing}; it has {list(names)}")
        for field_name, kind in fields.items():
            field_type = ds.dtype.fields[field_name][0]
            if field_type.names is not None or field_type.shape or field_type.kind not in _KINDS[kind]:
                raise self.error(f"{name} field {field_name} has type {field_type}, expected {_KIND_NAMES[kind]}")
        data = self._read(ds, name) if ds.shape is not None else np.zeros(0, ds.dtype)
        out: dict[str, Any] = {}
        for field_name, kind in fields.items():
            column = data[field_name]
            if kind == "int":
                out[field_name] = self._integers(column, f"{name} field {field_name}")
            elif kind == "text":
                out[field_name] = [decode_text(v) for v in column.tolist()]
            else:
                # h5py gives the fields explicit byte orders ("<f4"): native, as the plain datasets come
                out[field_name] = column.astype(column.dtype.newbyteorder("="))
        return out

    def _integers(self, data: np.ndarray, what: str) -> np.ndarray:
        if (
            data.dtype.kind == "u"
            and data.dtype.itemsize == 8
            and data.size
            and int(data.max()) > np.iinfo(np.int64).max
        ):
            raise self.error(f"{what} holds values past the range of int64 (largest {int(data.max())})")
        return data.astype(np.int64, copy=False)

    def time_indices(self, what: str, t: np.ndarray, timepoints: int, *, none_allowed: bool = False) -> None:
        """Every time index in ``t`` must be one of the image's (or -1, "no time", if allowed)."""
        bad = ((t < 0) & ~(none_allowed & (t == -1))) | (t >= timepoints)
        if bad.any():
            raise self.error(
                f"{what} holds time index {int(t[bad][0])}, but the image has time points 0..{timepoints - 1}"
            )

    def index_ranges(self, what: str, begin: np.ndarray, end: np.ndarray, length: int, target: str) -> None:
        """Each [begin, end) must lie within the ``length`` rows of ``target``, and no two may
        overlap: Imaris gives each row of ``target`` to one time point or track, and so the
        rows the ranges select together are at most ``target``'s (overlapping ranges could ask
        for a table's rows many times over)."""
        bad = (begin < 0) | (end < begin) | (end > length)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise self.error(
                f"{what} row {i} points at rows [{int(begin[i])}, {int(end[i])}) of {target}, which has {length} rows"
            )
        rows = np.flatnonzero(end > begin)
        rows = rows[np.argsort(begin[rows], kind="stable")]
        overlap = np.flatnonzero(end[rows[:-1]] > begin[rows[1:]])
        if len(overlap):
            i, j = int(rows[overlap[0]]), int(rows[overlap[0] + 1])
            raise self.error(f"{what} rows {min(i, j)} and {max(i, j)} point at overlapping rows of {target}")

    def track_edges(self, what: str, a: np.ndarray, b: np.ndarray, t_a: np.ndarray, t_b: np.ndarray) -> None:
        """Track edges (spot ``a`` to spot ``b``, at time indices ``t_a``, ``t_b``) as Imaris
        writes them: each joins two spots of different time points (so that, read forward in
        time, no track loops back on itself) and no two spots are joined twice."""
        same = t_a == t_b
        if same.any():
            i = int(np.flatnonzero(same)[0])
            how = "a spot to itself" if a[i] == b[i] else f"spots {int(a[i])} and {int(b[i])}"
            raise self.error(
                f"{what} has an edge joining {how} at one time point ({int(t_a[i])}); track edges join time points"
            )
        pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)
        unique, counts = np.unique(pairs, axis=0, return_counts=True)
        if (counts > 1).any():
            x, y = unique[counts > 1][0].tolist()
            raise self.error(f"{what} has spots {x} and {y} joined by more than one edge")


def material_color(material: str | None) -> tuple[float, float, float] | None:
    """The display colour in an object's ``Material`` XML (``mDiffusion="r g b"``), or None.

    >>> material_color('<bpMaterial mDiffusion="0.8 0.2 0" mSpecular="0.2 0.2 0.2"/>')
    (0.8, 0.2, 0.0)
    """
    match = re.search(r'mDiffusion\s*=\s*"([^"]*)"', material or "")
    # read like a channel's Color attribute: "r g b", clamped to 0..1
    return parse_color(match.group(1)) if match else None
