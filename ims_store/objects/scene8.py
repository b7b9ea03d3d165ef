"""The new layout, ``/Scene8/Content`` (Imaris >= 7.6): compound tables, one row per record.

Spots (``Points<k>``): ``Spot`` (ID, PositionX/Y/Z, Radius); ``SpotTimeOffset`` (ID = time
index, [IndexBegin, IndexEnd) rows of ``Spot``). Tracks: ``MainTrackTable`` names a track table
(``Track0``: ID, [IndexTrackObjectBegin, End) rows of ``TrackObject0``, [IndexTrackEdgeBegin,
End) rows of ``TrackEdge0``), its spots (``TrackObject0``: ID_Object) and edges
(``TrackEdge0``: ID_ObjectA, ID_ObjectB). Statistics: see ``statistics``. Other kinds of objects
(surfaces as ``MegaSurfaces``, filaments, cells) are listed, their geometry not read.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .groups import ObjectGroup
from .model import NO_ID, Spots, Tracks

__all__ = ["object_ids", "read_spots", "row_times", "spot_summary"]

_SPOT = {"ID": "int", "PositionX": "float", "PositionY": "float", "PositionZ": "float", "Radius": "float"}
_OFFSET = {"ID": "int", "IndexBegin": "int", "IndexEnd": "int"}
_MAIN = {"TrackName": "text", "TrackObjectName": "text", "TrackEdgeName": "text"}
_TRACK = {
    "ID": "int",
    "IndexTrackObjectBegin": "int",
    "IndexTrackObjectEnd": "int",
    "IndexTrackEdgeBegin": "int",
    "IndexTrackEdgeEnd": "int",
}
_TRACK_TABLE = re.compile(r"Track(0|[1-9][0-9]*)")


def row_times(group: ObjectGroup, offsets_name: str, target: str, n: int, timepoints: int) -> np.ndarray:
    """The time index of each of the ``n`` rows of ``target`` (``Spot``, ``SurfaceModel``) from
    its offsets table (``SpotTimeOffset``, ``SurfaceTimeOffset``: ID = time index, its rows
    [IndexBegin, IndexEnd)): every row must belong to exactly one time index, one of the image's."""
    offsets = group.table(offsets_name, _OFFSET, optional=n == 0)
    t = np.full(n, NO_ID, np.int64)
    if offsets is None:
        return t
    ids, begin, end = offsets["ID"], offsets["IndexBegin"], offsets["IndexEnd"]
    group.index_ranges(offsets_name, begin, end, n, target)
    group.time_indices(offsets_name, ids, timepoints)
    covered = np.zeros(n, np.int64)
    for time, b, e in zip(ids.tolist(), begin.tolist(), end.tolist(), strict=True):
        t[b:e] = time
        covered[b:e] += 1
    if (covered != 1).any():
        row = int(np.flatnonzero(covered != 1)[0])
        how = "no" if covered[row] == 0 else "more than one"
        raise group.error(f"{offsets_name} gives {target} row {row} {how} time point")
    return t


def object_ids(group: ObjectGroup, table: str) -> np.ndarray:
    """The ids statistics may name: those of the objects (``table``'s ID, e.g. ``Spot``) and of
    their tracks."""
    objects = group.table(table, {"ID": "int"}, optional=True)
    tracks = [group.table(name, {"ID": "int"}) for name, _, _ in _track_tables(group)]
    ids = [t["ID"] for t in (objects, *tracks) if t is not None]
    return np.unique(np.concatenate(ids)) if ids else np.zeros(0, np.int64)


def spot_summary(group: ObjectGroup, timepoints: int) -> tuple[int, tuple[int, ...], bool]:
    n = group.rows("Spot")
    t = row_times(group, "SpotTimeOffset", "Spot", n, timepoints)
    return n, tuple(int(v) for v in np.unique(t)), _track_count(group) > 0


def read_spots(group: ObjectGroup, timepoints: int) -> tuple[Spots, Tracks]:
    """The spots and their tracks (read together: a spot's track comes from the track tables)."""
    spots = _spot_table(group)
    ids = spots["ID"]
    t = row_times(group, "SpotTimeOffset", "Spot", len(ids), timepoints)
    tracks = _tracks(group, ids, t)
    track_of = np.full(len(ids), NO_ID, np.int64)
    track_of[_rows_of(ids, tracks.spot_ids)] = tracks.track_ids
    found = Spots(
        ids=ids,
        t=t,
        xyz=np.stack([spots["PositionX"], spots["PositionY"], spots["PositionZ"]], axis=1),
        radius=spots["Radius"],
        track_ids=track_of,
    )
    return found, tracks


def _spot_table(group: ObjectGroup) -> dict[str, Any]:
    spots = group.table("Spot", _SPOT)
    assert spots is not None
    ids = spots["ID"]
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise group.error(f"Spot holds ID {int(unique[counts > 1][0])} more than once")
    return spots


def _rows_of(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The rows of ``ids`` holding each of ``wanted`` (all known to be there)."""
    order = np.argsort(ids, kind="stable")
    return order[np.searchsorted(ids, wanted, sorter=order)]


def _track_tables(group: ObjectGroup) -> list[tuple[str, str, str]]:
    """(track, track-object, track-edge) dataset names: ``MainTrackTable``'s rows. Imaris names
    every track table there: a ``Track<k>`` holding tracks that it does not name (an empty
    ``MainTrackTable`` beside a full ``Track0``) would hide them, and is refused."""
    main = group.table("MainTrackTable", _MAIN, optional=True)
    if main is None:
        named = [("Track0", "TrackObject0", "TrackEdge0")] if group.has("Track0") else []
    else:
        named = list(zip(main["TrackName"], main["TrackObjectName"], main["TrackEdgeName"], strict=True))
    listed = {track for track, _, _ in named if group.dataset(track) is not None}
    for name in sorted(n for n in group.group if _TRACK_TABLE.fullmatch(n) and n not in listed):
        if group.rows(name):
            raise group.error(f"{name} holds {group.rows(name)} track(s), but MainTrackTable does not name it")
    return named


def _track_count(group: ObjectGroup) -> int:
    return sum(group.rows(track) for track, _, _ in _track_tables(group))


def _tracks(group: ObjectGroup, spot_ids: np.ndarray, spot_t: np.ndarray) -> Tracks:
    parts: list[tuple[np.ndarray, ...]] = []
    track_ids: list[np.ndarray] = []
    tables = _track_tables(group)
    for track_name, object_name, edge_name in tables:
        tracks = group.table(track_name, _TRACK)
        members = group.table(object_name, {"ID_Object": "int"})
        edges = group.table(edge_name, {"ID_ObjectA": "int", "ID_ObjectB": "int"})
        assert tracks is not None and members is not None and edges is not None
        object_ids, a, b = members["ID_Object"], edges["ID_ObjectA"], edges["ID_ObjectB"]
        ob, oe = tracks["IndexTrackObjectBegin"], tracks["IndexTrackObjectEnd"]
        eb, ee = tracks["IndexTrackEdgeBegin"], tracks["IndexTrackEdgeEnd"]
        group.index_ranges(track_name, ob, oe, len(object_ids), object_name)
        group.index_ranges(track_name, eb, ee, len(a), edge_name)
        for what, values in ((object_name, object_ids), (edge_name, a), (edge_name, b)):
            unknown = ~np.isin(values, spot_ids)
            if unknown.any():
                raise group.error(f"{what} names spot ID {int(values[unknown][0])}, which is not in Spot")
        ids = tracks["ID"]
        track_ids.append(ids)
        member_track = np.repeat(ids, oe - ob)
        member_rows = np.concatenate([np.arange(s, e) for s, e in zip(ob.tolist(), oe.tolist(), strict=True)] or [[]])
        edge_track = np.repeat(ids, ee - eb)
        edge_rows = np.concatenate([np.arange(s, e) for s, e in zip(eb.tolist(), ee.tolist(), strict=True)] or [[]])
        member_rows, edge_rows = member_rows.astype(np.int64), edge_rows.astype(np.int64)
        parts.append((member_track, object_ids[member_rows], edge_track, a[edge_rows], b[edge_rows]))
    if not parts:
        none = np.zeros(0, np.int64)
        return Tracks(none, none, none, none, none)
    columns = (np.concatenate(c).astype(np.int64) for c in zip(*parts, strict=True))
    member_track, member_spot, edge_track, edge_a, edge_b = columns
    tracks_seen, counts = np.unique(np.concatenate(track_ids), return_counts=True)
    if (counts > 1).any():
        raise group.error(f"track ID {int(tracks_seen[counts > 1][0])} names more than one track")
    spots_seen, counts = np.unique(member_spot, return_counts=True)
    if (counts > 1).any():
        raise group.error(f"spot ID {int(spots_seen[counts > 1][0])} belongs to more than one track (or twice to one)")
    # an edge joins two spots of its own track
    track_of = dict(zip(member_spot.tolist(), member_track.tolist(), strict=True))
    for track, x, y in zip(edge_track.tolist(), edge_a.tolist(), edge_b.tolist(), strict=True):
        if track_of.get(x) != track or track_of.get(y) != track:
            raise group.error(f"an edge of track {track} joins spots {x} and {y}, which are not both in that track")
    t_a, t_b = spot_t[_rows_of(spot_ids, edge_a)], spot_t[_rows_of(spot_ids, edge_b)]
    group.track_edges(", ".join(edge for _, _, edge in tables), edge_a, edge_b, t_a, t_b)
    return Tracks(member_track, member_spot, edge_track, edge_a, edge_b)
