"""Links that open a served image in web viewers: a neuroglancer state (x-y plane, channels in
their colours and contrast ranges) and neuroglancer / vizarr URLs.

>>> viewer_links("http://127.0.0.1:8000/", "0.5")["vizarr"]
'https://hms-dbmi.github.io/vizarr/?source=http%3A%2F%2F127.0.0.1%3A8000%2F'
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, Literal

from ..format.geometry import ngff_unit
from ..format.layout import ImsLayout
from ..store.ngff import channel_hex, time_step, type_range

__all__ = ["VIEWER_ORIGINS", "neuroglancer_state", "viewer_links"]

_NEUROGLANCER = "https://neuroglancer-demo.appspot.com"
_VIZARR = "https://hms-dbmi.github.io"

# the web origins of the viewers `viewer_links` opens: the pages a server lets read it (CORS)
VIEWER_ORIGINS = (_NEUROGLANCER, _VIZARR)


def neuroglancer_state(layout: ImsLayout, url: str, ngff: Literal["0.4", "0.5"]) -> dict[str, Any]:
    """A neuroglancer state that opens on the x-y plane of the middle z slice.

    One image layer per channel (neuroglancer makes the channel axis a local dimension, ``c'``),
    each tinted with the channel's colour, blended additively, with its contrast from the
    display range; dimensions in metres as neuroglancer wants them.
    """
    scheme = "zarr3" if ngff == "0.5" else "zarr2"
    level = layout.levels[0]
    metres = _METRES.get(ngff_unit(layout.unit) or "", 1e-6)
    step = time_step(layout) or 1.0
    dimensions = {"t": [step, "s" if time_step(layout) else ""]}
    dimensions.update({axis: [v * metres, "m"] for axis, v in zip("zyx", level.voxel_size, strict=True)})
    # positions count voxels of these dimensions from the physical origin: voxel i spans
    # ExtMin / voxel + i .. + i + 1. x and y sit at the centre of the image; z at the centre of
    # slice n // 2 (the image's centre, n / 2, would be a border between two slices)
    (z0, y0, x0), (nz, ny, nx) = (lo / v for lo, v in zip(layout.extent_min, level.voxel_size, strict=True)), level.size
    position = [0.5, z0 + nz // 2 + 0.5, y0 + ny / 2, x0 + nx / 2]
    layers = []
    for ch in layout.channels:
        lo, hi = ch.color_range or ch.histogram_range or type_range(layout.dtype)
        color = "#" + channel_hex(ch, len(layout.channels)).lower()
        layers.append(
            {
                "type": "image",
                "source": f"{scheme}://{url}",
                "name": ch.label,
                "localDimensions": {"c'": [1, ""]},
                "localPosition": [ch.index],  # channel dimensions take the integer index
                "shader": _SHADER,
                "shaderControls": {"normalized": {"range": [lo, hi]}, "color": color},
                "opacity": 1.0,  # neuroglancer's default of 0.5 would show the top of the range at half brightness
                "blend": "additive",
            }
        )
    extent = max(level.size[1] * level.voxel_size[1], level.size[2] * level.voxel_size[2]) * metres
    return {
        "dimensions": dimensions,
        "displayDimensions": ["x", "y", "z"],
        "position": position,
        "crossSectionScale": extent / 700 / min(level.voxel_size[1:]) / metres,
        "layers": layers,
        "layout": "xy",
    }


_SHADER = """#uicontrol invlerp normalized
#uicontrol vec3 color color
void main() {
  emitRGB(color * normalized());
}
"""

_METRES = {
    "nanometer": 1e-9,
    "micrometer": 1e-6,
    "millimeter": 1e-3,
    "centimeter": 1e-2,
    "meter": 1.0,
    "angstrom": 1e-10,
    "picometer": 1e-12,
}


def viewer_links(url: str, ngff: Literal["0.4", "0.5"], layout: ImsLayout | None = None) -> dict[str, str]:
    """Links that open a served image in neuroglancer (x-y plane, channels coloured) and vizarr."""
    if layout is not None:
        state: dict[str, Any] = neuroglancer_state(layout, url, ngff)
    else:
        scheme = "zarr3" if ngff == "0.5" else "zarr2"
        state = {"layers": [{"type": "image", "source": f"{scheme}://{url}", "name": "image"}], "layout": "xy"}
    fragment = urllib.parse.quote(json.dumps(state, separators=(",", ":")), safe="")
    return {
        "neuroglancer": f"{_NEUROGLANCER}/#!{fragment}",
        "vizarr": f"{_VIZARR}/vizarr/?source={urllib.parse.quote(url, safe='')}",
    }
