"""OME-NGFF metadata (0.4 and 0.5) built from an `ImsLayout`.

One builder per NGFF version returns the group attributes; both share the axis, transform and
``omero`` logic. Spatial transforms follow the voxel-centre convention of OME-NGFF: a level's
``translation`` is ``ExtMin + voxel / 2`` of that level, its ``scale`` the level's voxel size.

>>> from ims_store import read_layout
>>> attrs = ngff_attributes(read_layout("cells.ims"), "0.5")
>>> scale, translation = attrs["ome"]["multiscales"][0]["datasets"][1]["coordinateTransformations"]
>>> scale["scale"], translation["translation"]
([1.5, 1.0, 2.0, 0.5, 0.5], [0.0, 0.0, 1.0, 0.25, 0.25])
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..format.geometry import ngff_unit, voxel_centre_origin
from ..format.layout import Channel, ImsLayout

__all__ = [
    "AXES",
    "NGFF_VERSIONS",
    "channel_hex",
    "channel_rgb",
    "default_color",
    "ngff_attributes",
    "time_step",
    "transforms",
    "type_range",
]

AXES = ("t", "c", "z", "y", "x")
NGFF_VERSIONS = ("0.4", "0.5")

# colours for channels that do not record one (red, green, blue, magenta, cyan, yellow)
_PALETTE = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0))


def time_step(layout: ImsLayout) -> float | None:
    """Mean interval between time points in seconds, when every time point has a stamp."""
    offsets = layout.time_offsets()
    if offsets is None or len(offsets) < 2 or offsets[-1] <= 0:
        return None
    return offsets[-1] / (len(offsets) - 1)


def _axes(layout: ImsLayout) -> list[dict[str, str]]:
    t = {"name": "t", "type": "time"}
    if time_step(layout) is not None:
        t["unit"] = "second"
    axes = [t, {"name": "c", "type": "channel"}]
    unit = ngff_unit(layout.unit)
    for name in "zyx":
        axis = {"name": name, "type": "space"}
        if unit:
            axis["unit"] = unit
        axes.append(axis)
    return axes


def transforms(layout: ImsLayout, level: int) -> list[dict[str, Any]]:
    """The ``coordinateTransformations`` of one level: scale, then translation (t, c, z, y, x)."""
    lvl = layout.level(level)
    step = time_step(layout) or 1.0
    origin = voxel_centre_origin(layout.extent_min, lvl.voxel_size)
    return [
        {"type": "scale", "scale": [step, 1.0, *lvl.voxel_size]},
        {"type": "translation", "translation": [0.0, 0.0, *origin]},
    ]


def default_color(index: int, count: int) -> tuple[float, float, float]:
    """The colour of channel ``index`` of ``count`` when none is recorded: white for a lone
    channel, else red, green, blue, magenta, cyan, yellow in turn."""
    return (1.0, 1.0, 1.0) if count == 1 else _PALETTE[index % len(_PALETTE)]


def channel_rgb(channel: Channel, count: int) -> tuple[float, float, float]:
    """The one colour that stands for a channel: for a ``TableColor`` channel the last entry of
    its colour table (the colour of its brightest values, what a single-colour viewer shows at
    the top of the window), else its ``Color``, else `default_color`."""
    if channel.color_mode == "TableColor" and channel.color_table:
        return channel.color_table[-1]
    return channel.color or default_color(channel.index, count)


def channel_hex(channel: Channel, count: int) -> str:
    """The channel's colour as ``RRGGBB`` (see `channel_rgb`)."""
    return "".join(f"{round(v * 255):02X}" for v in channel_rgb(channel, count))


def type_range(dtype: np.dtype) -> tuple[float, float]:
    """The values an integer type can hold; (0, 1) for floats, whose range the data decides."""
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def _window(layout: ImsLayout, channel: Channel) -> dict[str, float]:
    dtype = layout.dtype
    if dtype.kind in "ui":
        lo, hi = type_range(dtype)
    else:
        lo, hi = channel.histogram_range or channel.color_range or (0.0, 1.0)
    start, end = channel.color_range or channel.histogram_range or (lo, hi)
    # a window must contain its display range
    return {"min": min(lo, start), "max": max(hi, end), "start": start, "end": end}


def _omero(layout: ImsLayout) -> dict[str, Any]:
    count = len(layout.channels)
    return {
        "name": layout.name or "",
        "channels": [
            {
                "label": ch.label,
                "color": channel_hex(ch, count),
                "window": _window(layout, ch),
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
            }
            for ch in layout.channels
        ],
        "rdefs": {"defaultT": 0, "defaultZ": layout.levels[0].size[0] // 2, "model": "color"},
    }


def _multiscale(layout: ImsLayout) -> dict[str, Any]:
    return {
        "name": layout.name or "",
        "axes": _axes(layout),
        "datasets": [
            {"path": str(lvl.index), "coordinateTransformations": transforms(layout, lvl.index)}
            for lvl in layout.levels
        ],
        "type": "mean",
        "metadata": {"description": "Imaris resolution pyramid (truncated mean of 2x2x2 blocks)"},
    }


def _imaris(layout: ImsLayout) -> dict[str, Any]:
    """What Imaris records beyond NGFF, kept under an ``imaris`` key for tools that want it."""
    stamps = [tp.stamp.isoformat() if tp.stamp else None for tp in layout.timepoints]
    return {
        "name": layout.name,
        "description": layout.description,
        "recording_date": layout.recording_date.isoformat() if layout.recording_date else None,
        "unit": layout.unit,
        "extent_min_zyx": list(layout.extent_min),
        "extent_max_zyx": list(layout.extent_max),
        "time_stamps": stamps,
        "channels": [_imaris_channel(ch) for ch in layout.channels],
    }


def _imaris_channel(ch: Channel) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": ch.name,
        "description": ch.description,
        "color": list(ch.color) if ch.color else None,
        "color_range": list(ch.color_range) if ch.color_range else None,
        "opacity": ch.opacity,
        "gamma": ch.gamma,
    }
    if ch.color_table:  # only where there is one: other files' metadata stays as it was
        out["color_mode"] = ch.color_mode
        out["color_table"] = [list(entry) for entry in ch.color_table]
    return out


def ngff_attributes(layout: ImsLayout, version: Literal["0.4", "0.5"] = "0.5") -> dict[str, Any]:
    """The attributes of the image's root group for an NGFF version (0.5: zarr v3, 0.4: zarr v2)."""
    if version == "0.5":
        return {
            "ome": {"version": "0.5", "multiscales": [_multiscale(layout)], "omero": _omero(layout)},
            "imaris": _imaris(layout),
        }
    if version == "0.4":
        multiscale = {"version": "0.4", **_multiscale(layout)}
        return {
            "multiscales": [multiscale],
            "omero": {"version": "0.4", **_omero(layout)},
            "imaris": _imaris(layout),
        }
    raise ValueError(f"unsupported OME-NGFF version {version!r}; choose one of {NGFF_VERSIONS}")
