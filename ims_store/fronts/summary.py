"""Plain summaries of an Imaris file and of its virtual OME-Zarr, for people and for JSON.

`layout_summary` turns an `ImsLayout` into plain data (what ``ims-store info --json`` prints);
`format_layout` and `format_tree` render text.
"""

from __future__ import annotations

from typing import Any

from ..format.geometry import ngff_unit, voxel_centre_origin
from ..format.layout import Filter, ImageEntry, ImsLayout
from ..objects.model import ObjectInfo
from ..store.ngff import channel_hex, time_step

__all__ = [
    "describe_filters",
    "format_images",
    "format_layout",
    "format_objects",
    "format_tree",
    "images_summary",
    "layout_summary",
    "objects_summary",
]


def describe_filters(filters: tuple[Filter, ...]) -> str:
    """``"shuffle + gzip level 2"``, ``"LZ4"``, ``"none"``..."""
    if not filters:
        return "none"
    names = []
    for f in filters:
        if f.id == 1:
            names.append(f"gzip level {f.values[0]}" if f.values else "gzip")
        elif f.id == 2:
            names.append("shuffle")
        elif f.id == 32004:
            names.append("LZ4")
        else:
            names.append(f"filter {f.id} ({f.name.split(';')[0]})")
    return " + ".join(names)


def _fmt(values: tuple[float, ...] | list[float]) -> str:
    return " x ".join(f"{v:.6g}" for v in values)


def layout_summary(layout: ImsLayout) -> dict[str, Any]:
    """Everything ``ims-store info`` shows, as JSON-ready data. Spatial lists are (z, y, x)."""
    return {
        "path": layout.path,
        "name": layout.name,
        "description": layout.description,
        "recording_date": layout.recording_date.isoformat() if layout.recording_date else None,
        "imaris_version": layout.imaris_version,
        "dtype": layout.dtype.name,
        "unit": layout.unit,
        "ngff_unit": ngff_unit(layout.unit),
        "extent_min": list(layout.extent_min),
        "extent_max": list(layout.extent_max),
        "shape_tczyx": list(layout.shape(0)),
        "levels": [
            {
                "level": lvl.index,
                "size": list(lvl.size),
                "stored_shape": list(lvl.dataset_shape),
                "chunks": list(lvl.chunks),
                "compression": describe_filters(lvl.filters),
                "voxel_size": list(lvl.voxel_size),
                "origin": list(voxel_centre_origin(layout.extent_min, lvl.voxel_size)),
            }
            for lvl in layout.levels
        ],
        "timepoints": [
            {"index": tp.index, "stamp": tp.stamp.isoformat() if tp.stamp else None} for tp in layout.timepoints
        ],
        "time_step_seconds": time_step(layout),
        "channels": [
            {
                "index": ch.index,
                "name": ch.label,
                "color": "#" + channel_hex(ch, len(layout.channels)),
                "display_range": list(ch.color_range) if ch.color_range else None,
                "description": ch.description,
            }
            for ch in layout.channels
        ],
        "warnings": list(layout.warnings),
    }


def format_layout(layout: ImsLayout) -> str:
    """A human-readable account of what an Imaris file holds."""
    s = layout_summary(layout)
    unit = layout.unit
    lines = [s["path"]]
    if s["name"]:
        lines.append(f"  name         {s['name']}")
    if s["recording_date"]:
        lines.append(f"  recorded     {s['recording_date'].replace('T', ' ')}")
    t, c, z, y, x = s["shape_tczyx"]
    lines += [
        f"  data type    {s['dtype']}",
        f"  size         {x} x {y} x {z} voxels (x, y, z), {t} time point(s), {c} channel(s)",
        f"  voxel size   {_fmt(layout.levels[0].voxel_size[::-1])} {unit} (x, y, z)",
        f"  extent       {_fmt(layout.extent_min[::-1])} .. {_fmt(layout.extent_max[::-1])} {unit}"
        " (x, y, z; ExtMin..ExtMax)",
        f"  first voxel  centre at {_fmt(tuple(s['levels'][0]['origin'][::-1]))} {unit} (x, y, z)",
        f"  unit         {unit}" + (f" ({s['ngff_unit']})" if s["ngff_unit"] else " (no OME-NGFF equivalent)"),
        "  resolution levels:",
    ]
    for lvl in s["levels"]:
        lines.append(
            f"    {lvl['level']}: {_fmt(lvl['size'][::-1])}  stored {_fmt(lvl['stored_shape'][::-1])}"
            f"  chunks {_fmt(lvl['chunks'][::-1])}  voxel {_fmt(lvl['voxel_size'][::-1])} {unit}"
            f"  {lvl['compression']}"
        )
    lines.append("  channels:")
    for ch in s["channels"]:
        window = ch["display_range"]
        shown = f"  display {window[0]:g}..{window[1]:g}" if window else ""
        lines.append(f"    {ch['index']}: {ch['name']}  {ch['color']}{shown}")
    stamps = [tp["stamp"] for tp in s["timepoints"]]
    lines.append(f"  time points: {len(stamps)}")
    if any(stamps):
        shown = stamps if len(stamps) <= 6 else [*stamps[:3], "...", *stamps[-2:]]
        lines.append("    " + ", ".join(str(v).replace("T", " ") for v in shown))
        if s["time_step_seconds"]:
            lines.append(f"    mean interval {s['time_step_seconds']:.6g} s")
    for warning in s["warnings"]:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)


def images_summary(entries: tuple[ImageEntry, ...]) -> dict[str, Any]:
    """``ims-store info --json`` of a file of several images: each image's `layout_summary`, or
    its error."""
    images = []
    for entry in entries:
        if entry.layout is None:
            images.append({"image": entry.index, "group": entry.group, "error": str(entry.error)})
        else:
            images.append({"image": entry.index, "group": entry.group, **layout_summary(entry.layout)})
    path = next((e.layout.path for e in entries if e.layout is not None), None)
    return {"path": path, "image_count": len(entries), "images": images}


def format_images(entries: tuple[ImageEntry, ...]) -> str:
    """A human-readable account of a file of several images, image by image."""
    s = images_summary(entries)
    lines = [f"{s['path']}: {len(entries)} images"]
    for entry in entries:
        lines.append("")
        if entry.layout is None:
            head = f"image {entry.index} ({entry.group})"
            reason = entry.error.reason.removeprefix(f"{head}: ") if entry.error is not None else ""
            lines.append(f"{head}: cannot be read: {reason}")
            continue
        text = format_layout(entry.layout).split("\n")
        lines.append(f"image {entry.index} ({entry.group})")
        lines += text[1:]
    return "\n".join(lines)


#: the tree's branches, drawn with box characters or, for an output that cannot encode them
#: (Windows' cp1252 when redirected to a file), with ASCII ones: last, other, continuing line
TREE_BRANCHES = {True: ("└──", "├──", "│   "), False: ("`--", "|--", "|   ")}


def can_encode(text: str, encoding: str | None) -> bool:
    """Whether ``text`` can be written in ``encoding`` (an unknown one: assume not).

    >>> can_encode("├──", "utf-8"), can_encode("├──", "cp1252")
    (True, False)
    """
    try:
        text.encode(encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def format_tree(attributes: dict[str, Any], arrays: dict[str, Any], *, encoding: str | None = "utf-8") -> str:
    """The virtual OME-Zarr as a tree: root group attributes, then each level array.

    ``attributes`` are the root group's attributes (NGFF 0.4 or 0.5 form); ``arrays`` maps each
    level path to an object with ``shape``, ``chunks`` and ``dtype`` (a zarr array). The branches
    are box characters where ``encoding`` (the output's: ``sys.stdout.encoding``) can encode
    them, else ASCII (see `TREE_BRANCHES`).
    """
    last, other, cont = TREE_BRANCHES[can_encode("".join(TREE_BRANCHES[True]), encoding)]
    ome = attributes.get("ome", attributes)
    version = ome.get("version") or ome["multiscales"][0].get("version")
    ms = ome["multiscales"][0]
    axes = ", ".join(f"{a['name']}" + (f" [{a['unit']}]" if a.get("unit") else "") for a in ms["axes"])
    lines = [f'/  OME-NGFF {version} multiscale image "{ms.get("name", "")}"', f"   axes: {axes}"]
    for i, ds in enumerate(ms["datasets"]):
        arr = arrays[ds["path"]]
        scale = next(t["scale"] for t in ds["coordinateTransformations"] if t["type"] == "scale")
        shift = next((t["translation"] for t in ds["coordinateTransformations"] if t["type"] == "translation"), None)
        branch = last if i == len(ms["datasets"]) - 1 else other
        lines.append(f"{branch} {ds['path']}  shape {tuple(arr.shape)}  {arr.dtype}  chunks {tuple(arr.chunks)}")
        pad = "    " if i == len(ms["datasets"]) - 1 else cont
        lines.append(f"{pad}  scale       {[float(f'{v:.6g}') for v in scale]}")
        if shift is not None:
            lines.append(f"{pad}  translation {[float(f'{v:.6g}') for v in shift]}")
    omero = ome.get("omero")
    if omero:
        lines.append("channels (omero):")
        for i, ch in enumerate(omero["channels"]):
            w = ch["window"]
            lines.append(f"   {i}: {ch['label']}  #{ch['color']}  window {w['start']:g}..{w['end']:g}")
    return "\n".join(lines)


def objects_summary(objects: list[ObjectInfo]) -> list[dict[str, Any]]:
    """The analysis objects as JSON-ready data (``ims-store objects --json``, ``info --json``)."""
    return [
        {
            "name": o.name,
            "kind": o.kind,
            "count": o.count,
            "timepoints": list(o.timepoints),
            "has_tracks": o.has_tracks,
            "statistics": o.statistics,
            "vertices": o.vertices,
            "triangles": o.triangles,
            "readable": o.readable,
            "reason": o.reason,
            "contents": list(o.contents),
            "layout": o.layout,
            "group": o.group,
            "color": f"#{o.color_hex}" if o.color else None,
        }
        for o in objects
    ]


def format_objects(objects: list[ObjectInfo]) -> str:
    """One line per analysis object: kind, name, counts, tracks, statistics (or why not read)."""
    if not objects:
        return "  analysis objects: none"
    lines = [f"  analysis objects: {len(objects)}"]
    for o in objects:
        times = f"{len(o.timepoints)} time point(s)"
        parts = []
        if "spots" in o.contents:
            parts.append(f"{o.count} spots over {times}" + (", tracked" if o.has_tracks else ", no tracks"))
        elif "meshes" in o.contents:
            parts.append(f"{o.count} mesh(es) over {times}, {o.vertices} vertices, {o.triangles} triangles")
        elif "summary" in o.contents:
            parts.append(f"{o.count} surface(s) over {times}, {o.triangles} triangles (Imaris' count)")
        if o.statistics:
            parts.append(f"{o.statistics} statistics values")
        if not o.readable:
            parts.append(f"geometry not read: {o.reason}")
        lines.append(f"    {o.kind:9} {o.name!r}  {', '.join(parts)}  [{o.group}]")
    return "\n".join(lines)
