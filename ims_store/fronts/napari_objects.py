"""napari layers for an Imaris file's analysis objects, in the image layers' world coordinates.

Per spots object a Points layer (diameter from the radius, colour from the object's
``Material``, each spot's statistics as features) and, where it has tracks, a Tracks layer
(branches split into segments joined by napari's track graph); per surfaces object a Surface
layer. Imaris stores positions in world units (``ExtMin..ExtMax``), which is where the image
layers put voxel centres (scale = voxel size, translate = first voxel's centre), so positions
pass through unchanged; only time is scaled like the images' (the time step). Axes are napari's
(t, z, y, x), t only for images with several time points (Tracks always have t).

An object with no layer (its geometry is in a layout not read, such as Imaris 9+ MegaSurfaces)
is not dropped silently: an `ImsWarning` names it and says why (napari shows warnings raised
while a file opens as notifications).

>>> import warnings
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     layers = object_layers("tracks.ims")
>>> [(kind, meta["name"]) for _, meta, kind in layers]
[('points', 'Cells'), ('tracks', 'Cells tracks'), ('points', 'Untracked')]
>>> print(str(caught[0].message).split(": ", 1)[1][:45])
surfaces object 'Nuclei' is not shown: the me
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from ..access.files import read_layout
from ..format.geometry import ngff_unit
from ..format.layout import ImsLayout, ImsWarning
from ..objects.catalog import Entry, catalog, opened
from ..objects.frames import pandas
from ..objects.model import NO_ID, Spots, Tracks
from ..store.ngff import time_step

__all__ = ["layer_axes", "object_layers", "track_segments"]

LayerData = tuple[Any, dict[str, Any], str]
_DEFAULT_COLOR, _DEFAULT_HEX = (1.0, 1.0, 0.0), "FFFF00"  # objects without a Material colour
# spots: a translucent face (alpha) inside an opaque border (a fraction of the diameter)
SPOT_FACE_ALPHA = 0.15
SPOT_BORDER_WIDTH = 0.15
TRACK_COLORMAP = "hsv"


def object_layers(path: str | os.PathLike[str], layout: ImsLayout | None = None) -> list[LayerData]:
    """Layer data tuples for the readable analysis objects of ``path`` (none without objects)."""
    layout = layout or read_layout(path)
    step = time_step(layout) or 1.0
    timed = len(layout.timepoints) > 1
    layers: list[LayerData] = []
    with opened(path) as f:
        for entry in catalog(f):
            if not entry.info.readable:
                read = f" (ims_store reads its {' and '.join(entry.info.contents)})" if entry.info.contents else ""
                warnings.warn(
                    f"{f.label}: {entry.info.kind} object {entry.info.name!r} is not shown: {entry.info.reason}{read}",
                    ImsWarning,
                    stacklevel=2,
                )
                continue
            if entry.info.kind == "spots":
                layers.extend(_spot_layers(entry, layout, step, timed))
            else:
                layers.append(_surface_layer(entry, layout, step, timed))
    return layers


def _meta(entry: Entry, layout: ImsLayout, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "metadata": {"source": layout.path, "group": entry.info.group, "kind": entry.info.kind, "unit": layout.unit},
    }


def _spot_layers(entry: Entry, layout: ImsLayout, step: float, timed: bool) -> list[LayerData]:
    spots, tracks = entry.spots()
    zyx = spots.xyz[:, ::-1].astype(np.float64)
    data = np.column_stack([spots.t, zyx]) if timed else zyx
    rgb = entry.info.color or _DEFAULT_COLOR
    meta = _meta(entry, layout, entry.info.name)
    meta.update(
        scale=(step, 1.0, 1.0, 1.0) if timed else (1.0, 1.0, 1.0),
        size=2.0 * np.asarray(spots.radius, np.float64),
        # a ring in the object's colour around a faint disc: the voxels a spot marks stay visible
        face_color=[*rgb, SPOT_FACE_ALPHA],
        border_color=[*rgb, 1.0],
        border_width=SPOT_BORDER_WIDTH,
        border_width_is_relative=True,
        features=_spot_features(entry, spots),
        **layer_axes(layout, timed),
    )
    layers: list[LayerData] = [(data, meta, "points")]
    if len(tracks.spot_ids):
        rows, graph, segment_track = track_segments(tracks, spots)
        segments = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
        order = np.concatenate(rows)
        track_data = np.column_stack([segments, spots.t[order], zyx[order]])
        track_meta = _meta(entry, layout, f"{entry.info.name} tracks")
        track_meta.update(
            scale=(step, 1.0, 1.0, 1.0),
            graph=graph,
            features={"track_id": np.repeat(segment_track, [len(r) for r in rows]), "spot_id": spots.ids[order]},
            color_by="track_id",
            # every hue at full brightness: no track takes a dark end (turbo's, napari's default)
            colormap=TRACK_COLORMAP,
            **layer_axes(layout),
        )
        layers.append((track_data, track_meta, "tracks"))
    return layers


def _spot_features(entry: Entry, spots: Spots) -> Any:
    """One row per spot: its id, its track, and its per-spot statistics (a column each,
    factors in the name: ``Intensity Mean (Channel=1)``)."""
    pd = pandas()
    track_ids = pd.arrays.IntegerArray(spots.track_ids.copy(), spots.track_ids == NO_ID)
    features = pd.DataFrame({"id": spots.ids, "track_id": track_ids})
    stats = entry.statistics()
    spot_values = [i for i, c in enumerate(stats.category) if c == "Spot"]
    if not spot_values:
        return features
    labels = [
        name + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(factors.items())) + ")" if factors else "")
        for name, factors in ((stats.name[i], stats.factors[i]) for i in spot_values)
    ]
    values = pd.DataFrame({"id": stats.object_id[spot_values], "label": labels, "value": stats.value[spot_values]})
    # a column per statistic, a row per spot (spots without a value: NaN)
    table = values.pivot_table(index="id", columns="label", values="value", aggfunc="first", sort=False)
    table = table.reindex(spots.ids).reset_index(drop=True)
    table.columns.name = None
    return pd.concat([features, table], axis=1)


def track_segments(tracks: Tracks, spots: Spots) -> tuple[list[np.ndarray], dict[int, list[int]], np.ndarray]:
    """Tracks split where they branch or merge, for napari (whose tracks are unbranched lines):
    the spot rows of each segment in time order, the graph ``{segment: [parent segments]}``,
    and each segment's Imaris track id.

    >>> from ims_store.objects.model import Spots, Tracks
    >>> ids = np.arange(4)
    >>> spots = Spots(ids, np.array([0, 1, 2, 2]), np.zeros((4, 3)), np.ones(4), np.zeros(4, int))
    >>> tracks = Tracks(np.zeros(4, int), ids, np.zeros(3, int), np.array([0, 1, 1]), np.array([1, 2, 3]))
    >>> rows, graph, track = track_segments(tracks, spots)
    >>> [r.tolist() for r in rows], graph
    ([[0, 1], [2], [3]], {1: [0], 2: [0]})
    """
    order = np.argsort(spots.ids, kind="stable")

    def rows_of(spot_ids: np.ndarray) -> np.ndarray:
        return order[np.searchsorted(spots.ids, spot_ids, sorter=order)].astype(np.int64)

    member_rows, edge_a, edge_b = rows_of(tracks.spot_ids), rows_of(tracks.edge_a), rows_of(tracks.edge_b)
    # an edge points forward in time
    backwards = spots.t[edge_b] < spots.t[edge_a]
    edge_a, edge_b = np.where(backwards, edge_b, edge_a), np.where(backwards, edge_a, edge_b)
    children: dict[int, list[int]] = {}
    parents: dict[int, list[int]] = {}
    for a, b in zip(edge_a.tolist(), edge_b.tolist(), strict=True):
        children.setdefault(a, []).append(b)
        parents.setdefault(b, []).append(a)

    rows: list[np.ndarray] = []
    graph: dict[int, list[int]] = {}
    segment_track: list[int] = []
    segment_of: dict[int, int] = {}
    # each track's rows, tracks in their order of appearance (one sort, not a scan per track)
    track_ids, first, inverse = np.unique(tracks.track_ids, return_index=True, return_inverse=True)
    by_track = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(track_ids)))
    groups = np.split(member_rows[by_track], bounds[:-1])
    for k in np.argsort(first, kind="stable").tolist():
        members = sorted(groups[k].tolist(), key=lambda m: (spots.t[m], m))
        starts = [m for m in members if len(parents.get(m, ())) != 1 or len(children[parents[m][0]]) != 1]
        for start in starts:
            chain, node = [start], start
            while len(children.get(node, ())) == 1 and len(parents[children[node][0]]) == 1:
                node = children[node][0]
                chain.append(node)
            for m in chain:
                segment_of[m] = len(rows)
            rows.append(np.array(chain, np.int64))
            segment_track.append(int(track_ids[k]))
        for start in starts:
            if start in parents:
                graph[segment_of[start]] = sorted({segment_of[p] for p in parents[start]})
    return rows, graph, np.array(segment_track, np.int64)


def _surface_layer(entry: Entry, layout: ImsLayout, step: float, timed: bool) -> LayerData:
    surfaces = entry.surfaces()
    vertices, faces, base = [], [], 0
    for surface in surfaces:
        zyx = surface.vertices[:, ::-1].astype(np.float64)
        vertices.append(np.column_stack([np.full(len(zyx), float(surface.t)), zyx]) if timed else zyx)
        faces.append(surface.triangles + base)
        base += len(zyx)
    width = 4 if timed else 3
    verts = np.concatenate(vertices) if vertices else np.zeros((0, width))
    tris = np.concatenate(faces) if faces else np.zeros((0, 3), np.int64)
    rgb = entry.info.color or _DEFAULT_COLOR
    meta = _meta(entry, layout, entry.info.name)
    meta.update(
        scale=(step, 1.0, 1.0, 1.0) if timed else (1.0, 1.0, 1.0),
        # napari registers colormaps by name: the colour in it keeps same-named objects apart
        colormap={
            "name": f"{entry.info.name} #{entry.info.color_hex or _DEFAULT_HEX}",
            "colors": [[0.0, 0.0, 0.0, 1.0], [*rgb, 1.0]],
        },
        contrast_limits=[0.0, 1.0],
        opacity=0.7,
        **layer_axes(layout, timed),
    )
    return ((verts, tris, np.ones(len(verts))), meta, "surface")


def layer_axes(layout: Any, timed: bool = True) -> dict[str, Any]:
    """``units`` and ``axis_labels`` of a layer in the file's space, ``(t,) z, y, x``: the scale
    bar then reads micrometres (not napari's default "pixel") and sliders say t and z. Time is
    in seconds where the file has time stamps, else counted in time points (napari's "pixel")."""
    space = ngff_unit(layout.unit) or "pixel"
    units = (space, space, space)
    if not timed:
        return {"units": units, "axis_labels": ("z", "y", "x")}
    return {"units": ("second" if time_step(layout) else "pixel", *units), "axis_labels": ("t", "z", "y", "x")}
