"""The key space of the virtual OME-Zarr: metadata documents and chunk keys, zarr v2 and v3.

Layout of the virtual hierarchy (one array per resolution level, 5-D ``t, c, z, y, x``)::

    zarr v3 / NGFF 0.5                 zarr v2 / NGFF 0.4
    zarr.json                          .zgroup, .zattrs
    0/zarr.json                        0/.zarray, 0/.zattrs
    0/c/<t>/<c>/<z>/<y>/<x>            0/<t>/<c>/<z>/<y>/<x>   (dimension_separator "/")
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..format.codecs import CodecPlan
from ..format.layout import ImsLayout, Level
from .ngff import AXES, ngff_attributes

__all__ = ["ChunkKey", "build_metadata", "candidate_children", "chunk_key", "fixed_by_prefix", "parse_chunk_key"]

ZarrFormat = Literal[2, 3]


@dataclass(frozen=True)
class ChunkKey:
    """A chunk of the virtual store: level, time point and channel indices, chunk grid position."""

    level: int
    t: int
    c: int
    z: int
    y: int
    x: int


def _dtype_v2(level: Level) -> str:
    return level.dtype.str  # e.g. "<u2"; single-byte types carry "|"


def _endian(level: Level) -> str:
    return "big" if level.dtype.byteorder == ">" else "little"


def fill_json(level: Level) -> int | float | str:
    """A level's fill value as zarr metadata spells it (NaN and infinities as strings, v2 and v3)."""
    value = level.fill_value
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def array_metadata(
    layout: ImsLayout, level: Level, plan: CodecPlan, zarr_format: ZarrFormat, chunks: Sequence[int] | None = None
) -> dict[str, dict]:
    """Metadata documents (key -> JSON object) of one level's array, relative to the level.

    ``plan`` holds the codecs the served chunk bytes are encoded with (`codecs.RAW`: none);
    ``chunks`` the served (z, y, x) chunk shape, if not the level's HDF5 chunks (see `tiling`).
    """
    shape = list(layout.shape(level.index))
    chunks = [1, 1, *(level.chunks if chunks is None else chunks)]
    if zarr_format == 3:
        codecs: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": _endian(level)}}]
        codecs += plan.v3_codecs
        return {
            "zarr.json": {
                "zarr_format": 3,
                "node_type": "array",
                "shape": shape,
                "data_type": level.dtype.newbyteorder("=").name,
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": fill_json(level),
                "codecs": codecs,
                "attributes": {},
                "dimension_names": list(AXES),
                "storage_transformers": [],
            }
        }
    return {
        ".zarray": {
            "zarr_format": 2,
            "shape": shape,
            "chunks": chunks,
            "dtype": _dtype_v2(level),
            "compressor": plan.v2_compressor,
            "filters": plan.v2_filters,
            "fill_value": fill_json(level),
            "order": "C",
            "dimension_separator": "/",
        },
        ".zattrs": {"_ARRAY_DIMENSIONS": list(AXES)},
    }


def build_metadata(
    layout: ImsLayout,
    plans: list[CodecPlan],
    zarr_format: ZarrFormat,
    chunks: Sequence[Sequence[int]] | None = None,
) -> dict[str, bytes]:
    """Every metadata document of the virtual store, encoded, keyed by store key; ``chunks``:
    each level's served (z, y, x) chunk shape, where not its HDF5 chunks."""
    docs: dict[str, Any] = {}
    if zarr_format == 3:
        docs["zarr.json"] = {
            "zarr_format": 3,
            "node_type": "group",
            "attributes": ngff_attributes(layout, "0.5"),
        }
    elif zarr_format == 2:
        docs[".zgroup"] = {"zarr_format": 2}
        docs[".zattrs"] = ngff_attributes(layout, "0.4")
    else:
        raise ValueError(f"zarr_format must be 2 or 3, not {zarr_format!r}")
    served = [None] * len(layout.levels) if chunks is None else chunks
    for level, plan, shape in zip(layout.levels, plans, served, strict=True):
        for name, doc in array_metadata(layout, level, plan, zarr_format, shape).items():
            docs[f"{level.index}/{name}"] = doc
    return {key: json.dumps(doc, indent=2, allow_nan=False).encode() for key, doc in docs.items()}


def chunk_key(key: ChunkKey, zarr_format: ZarrFormat) -> str:
    """The store key of a chunk."""
    middle = "/c/" if zarr_format == 3 else "/"
    return f"{key.level}{middle}{key.t}/{key.c}/{key.z}/{key.y}/{key.x}"


def parse_chunk_key(
    key: str, layout: ImsLayout, zarr_format: ZarrFormat, grids: Sequence[Sequence[int]] | None = None
) -> ChunkKey | None:
    """The chunk a key names, or ``None`` if it names nothing in this store (wrong form, out of
    range); ``grids``: each level's served (z, y, x) chunk grid, where not its HDF5 chunk grid."""
    parts = key.split("/")
    if zarr_format == 3:
        if len(parts) != 7 or parts[1] != "c":
            return None
        del parts[1]
    elif len(parts) != 6:
        return None
    # canonical decimal only: "01" or "+1" would be another key for the same chunk
    if not all(p.isdigit() and p.isascii() and (p == "0" or not p.startswith("0")) for p in parts):
        return None
    level, t, c, z, y, x = (int(p) for p in parts)
    if level >= len(layout.levels) or t >= len(layout.timepoints) or c >= len(layout.channels):
        return None
    gz, gy, gx = layout.levels[level].chunk_grid if grids is None else grids[level]
    if z >= gz or y >= gy or x >= gx:
        return None
    return ChunkKey(level, t, c, z, y, x)


def candidate_children(
    prefix: str,
    documents: Mapping[str, bytes],
    layout: ImsLayout,
    zarr_format: ZarrFormat,
    grids: Sequence[tuple[int, int, int]],
) -> list[str]:
    """The names that may lie directly under ``prefix`` (no trailing slash) in the virtual
    hierarchy of an image with these ``documents`` and served chunk ``grids`` (whether a chunk
    name holds anything, its chunk index says).

    >>> from ims_store import ImsStore
    >>> s = ImsStore("cells.ims")
    >>> candidate_children("1/c/0", s.documents, s.layout, 3, s.engine.grids)
    ['0', '1', '2']
    """
    names = sorted({k.split("/")[0] for k in documents if "/" not in k}) if not prefix else []
    if not prefix:
        return names + [str(lvl.index) for lvl in layout.levels]
    parts = prefix.split("/")
    if not (parts[0].isdigit() and int(parts[0]) < len(layout.levels)):
        return []
    level = layout.levels[int(parts[0])]
    meta = [k.split("/", 1)[1] for k in documents if k.startswith(parts[0] + "/")]
    if zarr_format == 3:
        if len(parts) == 1:
            return [*meta, "c"]
        if parts[1] != "c":
            return []
        depth = len(parts) - 2
    else:
        if len(parts) == 1:
            return meta + [str(t) for t in range(len(layout.timepoints))]
        depth = len(parts) - 1
    extents = (len(layout.timepoints), len(layout.channels), *grids[level.index])
    return [str(i) for i in range(extents[depth])] if depth < len(extents) else []


def fixed_by_prefix(prefix: str, zarr_format: ZarrFormat) -> list[int | None] | None:
    """The (level, time point, channel) a key prefix's whole path components fix (None where
    not fixed), so that listing visits only those datasets; None if no chunk key has the prefix.

    >>> fixed_by_prefix("1/c/0/", 3), fixed_by_prefix("1/c/", 3), fixed_by_prefix("1/x/", 3)
    ([1, 0, None], [1, None, None], None)
    """
    parts = prefix.split("/")[:-1]
    if zarr_format == 3 and len(parts) >= 2:
        if parts[1] != "c":
            return None
        del parts[1]
    fixed: list[int | None] = [None, None, None]
    for i, part in enumerate(parts[:3]):
        if not (part.isdigit() and part.isascii()):
            return None
        fixed[i] = int(part)
    return fixed
