"""Spots (with their tracks) written as Imaris 9.5 writes a Points object, in both layouts.

A table of detections (``id``, ``t``, ``x``, ``y``, ``z``, ``radius`` in world coordinates,
``track_id`` nullable: what `read_spots` returns) becomes ``/Scene8/Content/Points<k>`` (the
compound tables of Imaris >= 7.6) and ``/Scene/Content/Points<k>`` (the plain arrays Imaris 9
writes beside them), with the datasets, dtypes and attributes of the ``Points0`` that Imaris
9.5.1 wrote in ``PyramidalCell_Imaris95.ims`` and the track tables of the format notes
(section 10). Spots sharing a ``track_id`` form one track; without an edges table its spots are
joined in time order, an edges table (``track_id``, ``spot_a``, ``spot_b``: `read_track_edges`'
form) gives branching tracks.

The statistics written are those Imaris derives from what is written, nothing measured on the
image: per spot Position X / Y / Z, Diameter X / Y / Z (twice the radius), Area and Volume (of
the sphere), Distance from Origin, Time (seconds since the first time point) and Time Index
(1-based, as Imaris shows it); overall Number of Spots per Time Point and Total Number of Spots.

>>> import numpy as np
>>> from ims_store import read_spots, write_ims
>>> path = write_ims(np.zeros((4, 16, 16), np.uint8), "spots.ims", spots={
...     "Detections": {"id": [0, 1], "t": [0, 0], "x": [1.0, 2.0], "y": [3.0, 4.0], "z": [0.5, 0.5],
...                    "radius": [0.5, 0.5]}})
>>> read_spots(path, "Detections")[["id", "x", "radius"]].values.tolist()
[[0.0, 1.0, 0.5], [1.0, 2.0, 0.5]]
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import ImsFileNotFoundError, SourceError
from ..objects.model import NO_ID, Spots, Tracks

__all__ = [
    "PreparedSpots",
    "SpotsObject",
    "prepare_spots",
    "read_spots_csv",
    "spot_records",
    "spots_object",
    "write_spots",
]

Color = tuple[float, float, float]
DEFAULT_COLOR: Color = (0.8, 0.8, 0.8)
"""The colour Imaris gives a new Spots object (``mDiffusion="0.8 0.8 0.8"``)."""

_TEXT = "S256"
_I8 = "<i8"
# the compound types of the Scene8 tables, field by field as Imaris 9.5.1 writes them
SPOT = np.dtype([("ID", _I8), ("PositionX", "<f4"), ("PositionY", "<f4"), ("PositionZ", "<f4"), ("Radius", "<f4")])
TIME_OFFSET = np.dtype([("ID", _I8), ("IndexBegin", _I8), ("IndexEnd", _I8)])
TIME = np.dtype([("ID", _I8), ("Birth", _I8), ("Death", _I8), ("IDTimeBegin", _I8)])
TIME_BEGIN = np.dtype([("ID", _I8), ("ObjectTimeBegin", _TEXT)])
CATEGORY = np.dtype([("ID", _I8), ("CategoryName", _TEXT), ("Name", _TEXT)])
FACTOR = np.dtype([("ID_List", _I8), ("Name", _TEXT), ("Level", _TEXT)])
FACTOR_LIST = np.dtype([("ID", _I8)])
STATISTICS_TYPE = np.dtype(
    [("ID", _I8), ("ID_Category", _I8), ("ID_FactorList", _I8), ("Name", _TEXT), ("Unit", _TEXT)]
)
STATISTICS_VALUE = np.dtype([("ID_Time", _I8), ("ID_Object", _I8), ("ID_StatisticsType", _I8), ("Value", "<f8")])
TRACK_SEGMENT = np.dtype([("ID", _I8), ("FirstObjectId", _I8), ("Position", "<f8")])
MAIN_TRACK_SEGMENT = np.dtype([("ObjectsName", _TEXT), ("TrackSegmentName", _TEXT)])
MAIN_TRACK = np.dtype(
    [("ObjectsName", _TEXT), ("TrackName", _TEXT), ("TrackObjectName", _TEXT), ("TrackEdgeName", _TEXT)]
)
TRACK = np.dtype(
    [
        ("ID", _I8),
        ("IndexTrackObjectBegin", _I8),
        ("IndexTrackObjectEnd", _I8),
        ("IndexTrackEdgeBegin", _I8),
        ("IndexTrackEdgeEnd", _I8),
    ]
)
TRACK_OBJECT = np.dtype([("ID_Object", _I8)])
TRACK_EDGE = np.dtype([("ID_ObjectA", _I8), ("ID_ObjectB", _I8)])
# the (empty) label tables every Imaris 9.5 Points group holds
LABELS = {
    "LabelGroupNames": np.dtype([("LabelGroupName", _TEXT), ("EndLabelValue", _I8)]),
    "LabelSetLabelIDs": np.dtype([("IDLabel", _I8)]),
    "LabelSetObjectIDs": np.dtype([("IDObject", _I8)]),
    "LabelSets": np.dtype([("EndLabelIDs", _I8), ("EndObjectIDs", _I8)]),
    "LabelValues": np.dtype([("LabelValue", _TEXT)]),
}
FIRST_POINTS_ID = 200001
"""Imaris numbers Points objects' ``Id`` from 200001."""

_SPOT_CATEGORY, _OVERALL_CATEGORY = 0, 1
# factor lists (ID_FactorList): the "Collection" factor that groups Imaris' X / Y / Z statistics
_FACTORS = {1: "Diameter", 2: "Distance from Origin", 3: "Position"}
# (Imaris' statistics type ID, category, factor list, name, unit symbol or "" or "s")
_STAT_TYPES = [
    (100, _SPOT_CATEGORY, 0, "Area", "^2"),
    (223, _SPOT_CATEGORY, 1, "Diameter X", "unit"),
    (224, _SPOT_CATEGORY, 1, "Diameter Y", "unit"),
    (225, _SPOT_CATEGORY, 1, "Diameter Z", "unit"),
    (226, _SPOT_CATEGORY, 2, "Distance from Origin", "unit"),
    (115, _OVERALL_CATEGORY, 0, "Number of Spots per Time Point", ""),
    (228, _SPOT_CATEGORY, 3, "Position X", "unit"),
    (229, _SPOT_CATEGORY, 3, "Position Y", "unit"),
    (230, _SPOT_CATEGORY, 3, "Position Z", "unit"),
    (116, _SPOT_CATEGORY, 0, "Time", "s"),
    (117, _SPOT_CATEGORY, 0, "Time Index", ""),
    (9, _OVERALL_CATEGORY, 0, "Total Number of Spots", ""),
    (118, _SPOT_CATEGORY, 0, "Volume", "^3"),
]


@dataclass(frozen=True)
class SpotsObject:
    """Spots to write: ``table`` (a DataFrame or a mapping of columns ``id``, ``t``, ``x``, ``y``,
    ``z``, ``radius``, optional nullable ``track_id``), an optional ``edges`` table (``track_id``,
    ``spot_a``, ``spot_b``) for branching tracks, and the display ``color`` (r, g, b in 0..1).

    >>> SpotsObject({"id": [0], "t": [0], "x": [1.0], "y": [1.0], "z": [1.0], "radius": [1.0]}).color
    (0.8, 0.8, 0.8)
    """

    table: Any
    edges: Any = None
    color: Color = DEFAULT_COLOR


def spots_object(value: Any) -> SpotsObject:
    """What ``write_ims(spots={name: value})`` takes as a `SpotsObject`: one already, a
    ``(table, edges)`` pair, or a table alone.

    >>> spots_object(({"id": []}, None)).edges is None
    True
    """
    if isinstance(value, SpotsObject):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return SpotsObject(value[0], value[1])
    return SpotsObject(value)


def read_spots_csv(path: str | os.PathLike[str]) -> Any:
    """A spots table from a CSV file with a header naming the columns ``id``, ``t``, ``x``, ``y``,
    ``z``, ``radius`` and optionally ``track_id`` (empty cells: no track), or an edges table
    (``track_id``, ``spot_a``, ``spot_b``), as ``ims-store objects --export --format csv`` writes
    them (needs pandas, the ``objects`` extra).

    >>> from pathlib import Path
    >>> _ = Path("d.csv").write_text("id,t,x,y,z,radius,track_id\\n0,0,1,2,3,0.5,\\n1,0,2,2,3,0.5,7\\n")
    >>> read_spots_csv("d.csv")["track_id"].tolist()
    [<NA>, 7]
    """
    from ..objects.frames import pandas

    pd = pandas()
    if not Path(path).is_file():
        raise ImsFileNotFoundError("no such file", os.fspath(path))
    try:
        table = pd.read_csv(path, dtype={"track_id": "Int64"})
    except (ValueError, TypeError, OSError, pd.errors.ParserError) as err:
        raise SourceError(f"cannot be read as a spots table ({err})", os.fspath(path)) from err
    return table


# --------------------------------------------------------------------------------------------
# tables -> records


def _column(table: Any, name: str, label: str, *, optional: bool = False) -> Any:
    try:
        return table[name]
    except (KeyError, IndexError, TypeError, ValueError):
        if optional:
            return None
        raise SourceError(
            f"has no column {name!r} (it needs id, t, x, y, z, radius, optional track_id)", label
        ) from None


def _integers(values: Any, what: str, label: str, *, nullable: bool = False) -> np.ndarray:
    """Whole numbers >= 0 as int64; with ``nullable``, missing values (pandas <NA>, None, NaN)
    become `NO_ID`."""
    missing = None
    if hasattr(values, "isna"):  # a pandas Series: Int64 with <NA>, or float with NaN
        missing = np.asarray(values.isna(), bool)
        values = values.to_numpy(dtype=object, na_value=None)
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=object)
    if missing is None:
        missing = np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in array], bool)
    if missing.any() and not nullable:
        raise SourceError(f"{what} has missing values", label)
    out = np.full(len(array), NO_ID, np.int64)
    for i, v in enumerate(array):
        if missing[i]:
            continue
        number = float(v) if not isinstance(v, (int, np.integer)) else int(v)
        if isinstance(number, float) and not number.is_integer():
            raise SourceError(f"{what} holds {v!r}, not a whole number", label)
        if not 0 <= int(number) <= np.iinfo(np.int64).max:
            raise SourceError(f"{what} holds {int(number)}; ids and time indices are whole numbers >= 0", label)
        out[i] = int(number)
    return out


def _floats(values: Any, what: str, label: str) -> np.ndarray:
    array = np.asarray(values, np.float64)
    if array.ndim != 1 or not np.isfinite(array).all():
        raise SourceError(f"{what} must be finite numbers", label)
    if np.any(np.abs(array) > np.finfo(np.float32).max):
        raise SourceError(f"{what} holds values beyond float32, the type Imaris stores positions in", label)
    return array.astype(np.float32)


def spot_records(spots: SpotsObject, timepoints: int, label: str) -> tuple[Spots, Tracks]:
    """The records of `objects.model` a `SpotsObject` describes, spots in the order they are
    stored (by time index; in the table's order within one), every value checked: ids unique,
    time indices among the image's ``timepoints``, positions finite, radii > 0, edges joining
    spots of their own track.

    >>> table = {"id": [5, 6, 7], "t": [1, 0, 2], "x": [0.0] * 3, "y": [0.0] * 3, "z": [0.0] * 3,
    ...          "radius": [1.0] * 3, "track_id": [9, 9, 9]}
    >>> found, tracks = spot_records(SpotsObject(table), 3, "spots")
    >>> found.ids.tolist(), tracks.edge_a.tolist(), tracks.edge_b.tolist()
    ([6, 5, 7], [6, 5], [5, 7])
    """
    table = spots.table
    ids = _integers(_column(table, "id", label), "column id", label)
    n = len(ids)
    t = _integers(_column(table, "t", label), "column t", label)
    xyz = np.stack([_floats(_column(table, c, label), f"column {c}", label) for c in "xyz"], axis=1).reshape(n, 3)
    radius = _floats(_column(table, "radius", label), "column radius", label)
    track_column = _column(table, "track_id", label, optional=True)
    track = (
        np.full(n, NO_ID, np.int64)
        if track_column is None
        else _integers(track_column, "column track_id", label, nullable=True)
    )
    if not all(len(column) == n for column in (t, radius, track)) or xyz.shape != (n, 3):
        raise SourceError("its columns differ in length", label)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise SourceError(f"spot id {int(unique[counts > 1][0])} is given more than once", label)
    if (t >= timepoints).any():
        raise SourceError(f"time index {int(t.max())} is not among the image's time points 0..{timepoints - 1}", label)
    if (radius <= 0).any():
        raise SourceError(f"radius must be > 0, found {float(radius.min())}", label)
    order = np.argsort(t, kind="stable")  # Imaris keeps each time point's spots in one run of rows
    ids, t, xyz, radius, track = ids[order], t[order], xyz[order], radius[order], track[order]
    found = Spots(ids=ids, t=t, xyz=xyz, radius=radius, track_ids=track)
    return found, _track_records(found, spots.edges, label)


def _track_records(spots: Spots, edges: Any, label: str) -> Tracks:
    tracked = np.flatnonzero(spots.track_ids != NO_ID)
    track_ids = np.unique(spots.track_ids[tracked])
    members: list[np.ndarray] = []
    for track in track_ids.tolist():
        rows = tracked[spots.track_ids[tracked] == track]  # already in time order (rows are)
        members.append(rows)
    member_track = np.repeat(track_ids, [len(m) for m in members]).astype(np.int64)
    member_rows = np.concatenate(members).astype(np.int64) if members else np.zeros(0, np.int64)
    if edges is None:
        edge_track, edge_a, edge_b = [], [], []
        for track, rows in zip(track_ids.tolist(), members, strict=True):
            same = np.flatnonzero(np.diff(spots.t[rows]) == 0)
            if len(same):
                raise SourceError(
                    f"track {track} holds two spots at time index {int(spots.t[rows][same[0]])} "
                    f"(ids {int(spots.ids[rows][same[0]])} and {int(spots.ids[rows][same[0] + 1])}): "
                    "a branching track needs its edges (an edges table: track_id, spot_a, spot_b)",
                    label,
                )
            edge_track += [track] * (len(rows) - 1)
            edge_a += spots.ids[rows[:-1]].tolist()
            edge_b += spots.ids[rows[1:]].tolist()
        as_int = (np.asarray(v, np.int64) for v in (edge_track, edge_a, edge_b))
        edge_track_a, edge_a_a, edge_b_a = as_int
    else:
        what = f"{label}: edges"
        edge_track_a = _integers(_column(edges, "track_id", what), "column track_id", what)
        edge_a_a = _integers(_column(edges, "spot_a", what), "column spot_a", what)
        edge_b_a = _integers(_column(edges, "spot_b", what), "column spot_b", what)
        if not len(edge_track_a) == len(edge_a_a) == len(edge_b_a):
            raise SourceError("its columns differ in length", what)
        track_of = dict(zip(spots.ids.tolist(), spots.track_ids.tolist(), strict=True))
        time_of = dict(zip(spots.ids.tolist(), spots.t.tolist(), strict=True))
        joined: set[tuple[int, int]] = set()
        for track, a, b in zip(edge_track_a.tolist(), edge_a_a.tolist(), edge_b_a.tolist(), strict=True):
            if track_of.get(a) != track or track_of.get(b) != track:
                raise SourceError(
                    f"an edge of track {track} joins spots {a} and {b}, which are not both spots of that track", what
                )
            # as Imaris writes (and ims_store reads) them: an edge joins two time points, once, so
            # that a track never loops back
            if time_of[a] == time_of[b]:
                raise SourceError(f"an edge of track {track} joins spots {a} and {b} at one time point", what)
            if (min(a, b), max(a, b)) in joined:
                raise SourceError(f"track {track} joins spots {a} and {b} twice", what)
            joined.add((min(a, b), max(a, b)))
        order = np.argsort(edge_track_a, kind="stable")  # Track0 names one run of TrackEdge0 per track
        edge_track_a, edge_a_a, edge_b_a = edge_track_a[order], edge_a_a[order], edge_b_a[order]
    return Tracks(member_track, spots.ids[member_rows], edge_track_a, edge_a_a, edge_b_a)


# --------------------------------------------------------------------------------------------
# records -> the file


def _fixed_text(obj: h5py.Group, name: str, value: str) -> None:
    """A text attribute as Imaris 9 writes objects' attributes: a one-element fixed-length string
    array (``|S7`` for "Spots 1"; ``|S1`` holding nothing for empty text), not a char array."""
    data = value.encode("latin-1")
    obj.attrs.create(name, np.array([data], dtype=f"S{max(1, len(data))}"))


def _material(color: Color) -> str:
    r, g, b = (f"{float(v):g}" for v in color)
    return (
        f'<bpMaterial mDiffusion="{r} {g} {b}" mSpecular="0.2 0.2 0.2" mEmission="0 0 0" mAmbient="0 0 0" '
        'mTransparency="0" mShinyness="0.1"/>\n'
    )


def _creation_parameters(tracked: bool) -> str:
    """The object's creation parameters, in the form Imaris 9.5 writes them: the spots did not
    come from Imaris' detection, so only what is true of them is said (tracks or not)."""
    return (
        '<bpPointsCreationParameters mFormatVersion="9.5" mEnableRegionOfInterest="false" '
        f'mEnableRegionGrowing="false" mEnableTracking="{"true" if tracked else "false"}" '
        'mProcessEntireImage="true" mSourceImageIndex="0" mSourceChannelIndex="0" '
        'mCreateRegionChannel="false" mEnableShortestDistance="false">\n'
        "<bpRegionOfInterestContainer>\n</bpRegionOfInterestContainer>\n"
        "</bpPointsCreationParameters>\n"
    )


def _table(group: h5py.Group, name: str, dtype: np.dtype, rows: Sequence[tuple[Any, ...]] | np.ndarray) -> None:
    """A compound table, contiguous and unfiltered as Imaris writes them."""
    data = rows if isinstance(rows, np.ndarray) else np.array(list(rows), dtype=dtype)
    group.create_dataset(name, data=data.astype(dtype, copy=False))


def _stamp9(value: _dt.datetime) -> bytes:
    """A time stamp as ``TimeBegin`` holds it: 9 decimals."""
    return (value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond:06d}000").encode()


def _stamp3(value: _dt.datetime) -> bytes:
    """A time stamp as the old layout's ``TimeInfos`` holds it: 3 decimals."""
    return (value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}").encode()


def _times(stamps: Sequence[_dt.datetime]) -> tuple[np.ndarray, np.ndarray]:
    """Birth and death (ns since the first time point) of each time point: a time point lasts
    until the next; the last as long as the one before it (a second if it is alone, as Imaris)."""
    birth = np.array([round((s - stamps[0]).total_seconds() * 1e9) for s in stamps], np.int64)
    last = int(birth[-1] - birth[-2]) if len(birth) > 1 and birth[-1] > birth[-2] else 1_000_000_000
    death = np.append(birth[1:], birth[-1] + last)
    return birth, death


def _statistics(spots: Spots, timepoints: int, birth: np.ndarray) -> np.ndarray:
    """The StatisticsValue rows (ID_Time, ID_Object, ID_StatisticsType, Value), the overall
    rows (no time) first, then time point by time point, as Imaris orders them."""
    radius = spots.radius.astype(np.float64)
    xyz = spots.xyz.astype(np.float64)
    per_spot = {
        100: 4 * math.pi * radius**2,
        223: 2 * radius,
        224: 2 * radius,
        225: 2 * radius,
        226: np.sqrt((xyz**2).sum(axis=1)),
        228: xyz[:, 0],
        229: xyz[:, 1],
        230: xyz[:, 2],
        116: birth[spots.t] / 1e9 if len(spots) else np.zeros(0),
        117: spots.t + 1.0,
        118: 4 / 3 * math.pi * radius**3,
    }
    rows: list[tuple[int, int, int, float]] = [(-1, -1, 9, float(len(spots)))]
    for time in range(timepoints):
        at = np.flatnonzero(spots.t == time)
        if not len(at):
            continue
        rows.append((time, -1, 115, float(len(at))))
        for type_id, values in per_spot.items():
            rows += [(time, int(spots.ids[i]), type_id, float(values[i])) for i in at]
    return np.array(rows, dtype=STATISTICS_VALUE)


def _time_offsets(ids: np.ndarray, sorted_times: np.ndarray, timepoints: int) -> np.ndarray:
    """[IndexBegin, IndexEnd) of each time index's run of rows (``sorted_times``: non-decreasing);
    ID -1 (rows tied to no time) is kept where ``ids`` include it."""
    out = []
    for time in ids.tolist():
        begin, end = np.searchsorted(sorted_times, [time, time + 1] if time >= 0 else [-1, 0])
        out.append((time, int(begin), int(end)))
    return np.array(out, dtype=TIME_OFFSET)


def _segments(spots: Spots, tracks: Tracks) -> np.ndarray:
    """``TrackSegment0``: one row per track and per spot in none (ID, FirstObjectId, Position),
    read from the one Imaris-written file at hand, whose four untracked spots are four segments
    of one spot each, numbered in order."""
    firsts: list[int] = []
    seen: set[int] = set()
    tracked = dict(zip(tracks.spot_ids.tolist(), tracks.track_ids.tolist(), strict=True))
    for spot in spots.ids.tolist():
        track = tracked.get(spot)
        if track is None:
            firsts.append(spot)
        elif track not in seen:
            seen.add(track)
            firsts.append(spot)
    return np.array([(i, s, float(i)) for i, s in enumerate(firsts)], dtype=TRACK_SEGMENT)


def _next_points(content: h5py.Group) -> tuple[int, int]:
    """(k, Id) of the next Points group of a ``Content`` group: after those there."""
    numbers = [int(n[6:]) for n in content if n.startswith("Points") and n[6:].isdigit()]
    ids = [int(content[f"Points{k}"].attrs.get("Id", 0)) for k in numbers if "Id" in content[f"Points{k}"].attrs]
    k = max(numbers, default=-1) + 1
    return k, max([FIRST_POINTS_ID - 1, *[i for i in ids if 200000 < i < 300000]]) + 1


def _common_attributes(group: h5py.Group, name: str, color: Color, unit: str, object_id: int) -> None:
    _fixed_text(group, "Description", "")
    _fixed_text(group, "HistoryLog", "")
    group.attrs.create("Id", np.uint64(object_id))
    _fixed_text(group, "Material", _material(color))
    _fixed_text(group, "Name", name)
    _fixed_text(group, "Unit", unit)


def _write_scene8(
    content: h5py.Group, k: int, object_id: int, name: str, spots: Spots, tracks: Tracks, color: Color,
    unit: str, stamps: Sequence[_dt.datetime],
) -> None:  # fmt: skip
    g = content.create_group(f"Points{k}")
    tracked = len(tracks.track_ids) > 0
    _fixed_text(g, "CreationParameters", _creation_parameters(tracked))
    _fixed_text(g, "CreatorName", "Surpass")
    _common_attributes(g, name, color, unit, object_id)
    _fixed_text(g, "ObjectGUID", "")
    g.attrs.create("SpotZStretchFactor", np.float32(1.0))
    g.attrs.create("TrackSegment0_FocusEnabled", np.uint64(1))
    timepoints = len(stamps)
    spot = np.zeros(len(spots), SPOT)
    spot["ID"], spot["Radius"] = spots.ids, spots.radius
    spot["PositionX"], spot["PositionY"], spot["PositionZ"] = spots.xyz.T
    _table(g, "Spot", SPOT, spot)
    _table(g, "SpotTimeOffset", TIME_OFFSET, _time_offsets(np.arange(timepoints), spots.t, timepoints))
    birth, death = _times(stamps)
    _table(g, "Time", TIME, [(i, int(b), int(d), 0) for i, (b, d) in enumerate(zip(birth, death, strict=True))])
    _table(g, "TimeBegin", TIME_BEGIN, [(0, _stamp9(stamps[0]))])
    _table(g, "Category", CATEGORY, [(_SPOT_CATEGORY, b"Spot", b"Spot"), (_OVERALL_CATEGORY, b"Overall", b"Overall")])
    _table(g, "Factor", FACTOR, [(i, b"Collection", level.encode()) for i, level in _FACTORS.items()])
    _table(g, "FactorList", FACTOR_LIST, [(i,) for i in _FACTORS])
    units = {"unit": unit, "^2": f"{unit}^2", "^3": f"{unit}^3", "s": "s", "": ""}
    _table(
        g,
        "StatisticsType",
        STATISTICS_TYPE,
        [(i, cat, fl, n.encode(), units[u].encode("latin-1")) for i, cat, fl, n, u in _STAT_TYPES],
    )
    values = _statistics(spots, timepoints, birth)
    _table(g, "StatisticsValue", STATISTICS_VALUE, values)
    present = np.unique(values["ID_Time"])
    _table(g, "StatisticsValueTimeOffset", TIME_OFFSET, _time_offsets(present, values["ID_Time"], timepoints))
    for label_table, dtype in LABELS.items():
        _table(g, label_table, dtype, [])
    segments = _segments(spots, tracks)
    for suffix in ("", "_Focus"):
        _table(g, f"MainTrackSegmentTable{suffix}", MAIN_TRACK_SEGMENT, [(b"0", f"TrackSegment0{suffix}".encode())])
        _table(g, f"TrackSegment0{suffix}", TRACK_SEGMENT, segments)
    if tracked:
        _write_track_tables(g, tracks)


def _write_track_tables(g: h5py.Group, tracks: Tracks) -> None:
    ids, member_start = np.unique(tracks.track_ids, return_index=True)
    member_end = np.append(member_start[1:], len(tracks.track_ids))
    edge_start = np.searchsorted(tracks.edge_track, ids, side="left")
    edge_end = np.searchsorted(tracks.edge_track, ids, side="right")
    rows = [
        (int(i), int(mb), int(me), int(eb), int(ee))
        for i, mb, me, eb, ee in zip(ids, member_start, member_end, edge_start, edge_end, strict=True)
    ]
    _table(g, "MainTrackTable", MAIN_TRACK, [(b"0", b"Track0", b"TrackObject0", b"TrackEdge0")])
    _table(g, "Track0", TRACK, rows)
    _table(g, "TrackObject0", TRACK_OBJECT, [(int(s),) for s in tracks.spot_ids])
    _table(g, "TrackEdge0", TRACK_EDGE, [(int(a), int(b)) for a, b in zip(tracks.edge_a, tracks.edge_b, strict=True)])


def _write_scene(
    content: h5py.Group, k: int, object_id: int, name: str, spots: Spots, tracks: Tracks, color: Color,
    unit: str, stamps: Sequence[_dt.datetime],
) -> None:  # fmt: skip
    """The old layout beside it, as Imaris 9.5 writes it: gzip level 2, one chunk per dataset."""
    g = content.create_group(f"Points{k}")
    _common_attributes(g, name, color, unit, object_id)
    n = len(spots)
    coords = np.concatenate([spots.xyz, spots.radius[:, None]], axis=1).astype(np.float32).reshape(n, 4)
    chunked: dict[str, Any] = {"compression": "gzip", "compression_opts": 2}
    g.create_dataset("CoordsXYZR", data=coords, chunks=(n, 4) if n else None, **(chunked if n else {}))
    g.create_dataset(
        "Time", data=spots.t.astype(np.int64).reshape(n, 1), chunks=(n, 1) if n else None, **(chunked if n else {})
    )
    g.create_dataset("TimeInfos", data=np.array([_stamp3(s) for s in stamps], dtype="S23"))
    if len(tracks.edge_a):
        order = np.argsort(spots.ids, kind="stable")
        rows = [order[np.searchsorted(spots.ids, side, sorter=order)] for side in (tracks.edge_a, tracks.edge_b)]
        edges = np.stack(rows, axis=1).astype(np.int64)
        g.create_dataset("Edges", data=edges, chunks=edges.shape, **chunked)


@dataclass(frozen=True)
class PreparedSpots:
    """One spots object checked and ready to write: its name, colour and records."""

    name: str
    color: Color
    spots: Spots
    tracks: Tracks


def prepare_spots(objects: Mapping[str, Any], timepoints: int) -> list[PreparedSpots]:
    """Check every spots object (name -> anything `spots_object` takes) against an image of
    ``timepoints`` time points (`spot_records`), before any of the file is written.

    >>> [p.name for p in prepare_spots({"A": {"id": [1], "t": [0], "x": [0.0], "y": [0.0],
    ...                                        "z": [0.0], "radius": [2.0]}}, 1)]
    ['A']
    """
    prepared = []
    for name, value in objects.items():
        item = spots_object(value)
        label = f"spots {name!r}"
        color = tuple(float(v) for v in item.color)
        if len(color) != 3 or not all(0 <= v <= 1 for v in color):
            raise SourceError(f"color must be 3 values in 0..1, not {item.color!r}", label)
        prepared.append(PreparedSpots(str(name), color, *spot_records(item, timepoints, label)))  # type: ignore[arg-type]
    return prepared


def write_spots(
    f: h5py.File,
    prepared: Sequence[PreparedSpots],
    *,
    unit: str,
    time_stamps: Sequence[_dt.datetime],
) -> None:
    """Write ``prepared`` (`prepare_spots`) into the open file ``f`` as Points groups of
    ``Scene8`` and ``Scene``, numbered after the Points groups already there, and set each
    ``Content``'s ``NumberOfPoints``.

    >>> import h5py, numpy as np
    >>> from ims_store import write_ims
    >>> path = write_ims(np.zeros((2, 8, 8), np.uint8), "image.ims")
    >>> one = prepare_spots({"One": {"id": [1], "t": [0], "x": [0.0], "y": [0.0], "z": [0.0],
    ...                              "radius": [2.0]}}, 1)
    >>> with h5py.File(path, "a") as f:
    ...     write_spots(f, one, unit="um", time_stamps=[_dt.datetime(2020, 1, 1)])
    ...     f["Scene8/Content/Points0/Spot"][()].tolist()
    [(1, 0.0, 0.0, 0.0, 2.0)]
    """
    for layout, writer in (("Scene8", _write_scene8), ("Scene", _write_scene)):
        content = f.require_group(f"{layout}/Content")
        for item in prepared:
            k, object_id = _next_points(content)
            writer(content, k, object_id, item.name, item.spots, item.tracks, item.color, unit, time_stamps)
        numbered = [n for n in content if n.startswith("Points") and n[6:].isdigit()]
        content.attrs.create("NumberOfPoints", np.uint64(len(numbered)))
