"""The records of ``model`` as pandas tables (pandas: the ``objects`` extra).

Missing values of integer columns (a spot in no track, an overall statistic) are pandas' <NA>
in nullable ``Int64`` columns, so that ids stay whole numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MissingDependencyError
from .model import NO_ID, Spots, Statistics, Tracks

__all__ = ["pandas", "spots_frame", "statistics_frame", "summary_frame", "track_edges_frame", "tracks_frame"]


def pandas() -> Any:
    """pandas, or a `MissingDependencyError` naming the extra that brings it."""
    try:
        import pandas as pd
    except ImportError as err:
        raise MissingDependencyError(
            "reading analysis objects as tables needs pandas: pip install 'ims-store[objects]'"
        ) from err
    return pd


def _nullable(values: np.ndarray) -> Any:
    values = np.asarray(values, np.int64)
    return pandas().arrays.IntegerArray(values.copy(), values == NO_ID)


def spots_frame(spots: Spots) -> Any:
    pd = pandas()
    return pd.DataFrame(
        {
            "id": np.asarray(spots.ids, np.int64),
            "t": np.asarray(spots.t, np.int64),
            "x": spots.xyz[:, 0],
            "y": spots.xyz[:, 1],
            "z": spots.xyz[:, 2],
            "radius": spots.radius,
            "track_id": _nullable(spots.track_ids),
        }
    )


def tracks_frame(tracks: Tracks, spots: Spots) -> Any:
    pd = pandas()
    order = np.argsort(spots.ids, kind="stable")
    rows = order[np.searchsorted(spots.ids, tracks.spot_ids, sorter=order)] if len(tracks.spot_ids) else []
    return pd.DataFrame(
        {
            "track_id": np.asarray(tracks.track_ids, np.int64),
            "spot_id": np.asarray(tracks.spot_ids, np.int64),
            "t": np.asarray(spots.t[rows], np.int64),
            "x": spots.xyz[rows, 0],
            "y": spots.xyz[rows, 1],
            "z": spots.xyz[rows, 2],
        }
    )


def track_edges_frame(tracks: Tracks) -> Any:
    pd = pandas()
    return pd.DataFrame(
        {
            "track_id": np.asarray(tracks.edge_track, np.int64),
            "spot_a": np.asarray(tracks.edge_a, np.int64),
            "spot_b": np.asarray(tracks.edge_b, np.int64),
        }
    )


def statistics_frame(stats: Statistics) -> Any:
    pd = pandas()
    return pd.DataFrame(
        {
            "name": pd.Series(stats.name, dtype=object),
            "unit": pd.Series(stats.unit, dtype=object),
            "category": pd.Series(stats.category, dtype=object),
            "factors": pd.Series(stats.factors, dtype=object),
            "object_id": _nullable(stats.object_id),
            "t": _nullable(stats.t),
            "value": np.asarray(stats.value, np.float64),
        }
    )


def summary_frame(columns: dict[str, np.ndarray]) -> Any:
    """A per-object summary (``megasurfaces.read_summary``'s columns) as a table, in its order."""
    return pandas().DataFrame(dict(columns))
