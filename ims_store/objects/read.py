"""The public readers: an Imaris file's analysis objects as records, tables and meshes.

Every function takes a local path or any URL `ImsStore` takes (with ``storage_options``), opens
the file, reads and closes it. ``name=None`` means the first object of that kind; a name the
file lacks raises `SelectionError` listing the names it has. Positions are the image's world
coordinates (the space of ``ExtMin..ExtMax``), in the image's unit.

>>> [(o.kind, o.name, o.count, o.contents) for o in list_objects("tracks.ims")]  # doctest: +NORMALIZE_WHITESPACE
[('spots', 'Cells', 5, ('spots', 'tracks', 'statistics')),
 ('spots', 'Untracked', 3, ('spots', 'tracks', 'statistics')),
 ('surfaces', 'Nuclei', 2, ('summary', 'statistics'))]
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .catalog import catalog, opened, select
from .frames import spots_frame, statistics_frame, summary_frame, track_edges_frame, tracks_frame
from .model import ObjectInfo, Surface

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "list_objects",
    "read_spots",
    "read_statistics",
    "read_surface_summary",
    "read_surfaces",
    "read_track_edges",
    "read_tracks",
]

Path = str | os.PathLike[str]
Options = dict[str, Any] | None


def list_objects(path: Path, *, storage_options: Options = None) -> list[ObjectInfo]:
    """Every analysis object of the file (an empty list for a file without any).

    >>> spots = list_objects("tracks.ims")[0]
    >>> spots.kind, spots.timepoints, spots.has_tracks, spots.statistics
    ('spots', (0, 1), True, 12)
    """
    with opened(path, storage_options) as f:
        return [entry.info for entry in catalog(f)]


def read_spots(path: Path, name: str | None = None, *, storage_options: Options = None) -> pd.DataFrame:
    """A spots object as a DataFrame, one row per spot: ``id``, ``t`` (time-point index), ``x``,
    ``y``, ``z``, ``radius`` (world coordinates) and ``track_id`` (<NA> for untracked spots).

    >>> read_spots("tracks.ims").head(2)
       id  t    x    y    z  radius  track_id
    0   0  0  5.0  3.0  1.0     0.5      1000
    1   1  0  9.0  3.0  1.0     0.5      1001
    """
    with opened(path, storage_options) as f:
        return spots_frame(select(f, "spots", name, "spots").spots()[0])


def read_tracks(path: Path, name: str | None = None, *, storage_options: Options = None) -> pd.DataFrame:
    """The tracks of a spots object, one row per (track, spot) in track order: ``track_id``,
    ``spot_id``, ``t``, ``x``, ``y``, ``z`` (empty without tracks).

    >>> read_tracks("tracks.ims").groupby("track_id").size().to_dict()
    {1000: 2, 1001: 3}
    """
    with opened(path, storage_options) as f:
        spots, tracks = select(f, "spots", name, "tracks").spots()
        return tracks_frame(tracks, spots)


def read_track_edges(path: Path, name: str | None = None, *, storage_options: Options = None) -> pd.DataFrame:
    """The edges of a spots object's tracks: ``track_id``, ``spot_a``, ``spot_b`` (spot ids).

    >>> read_track_edges("tracks.ims").values.tolist()
    [[1000, 0, 2], [1001, 1, 3], [1001, 1, 4]]
    """
    with opened(path, storage_options) as f:
        return track_edges_frame(select(f, "spots", name, "tracks").spots()[1])


def read_statistics(path: Path, name: str | None = None, *, storage_options: Options = None) -> pd.DataFrame:
    """The statistics of any object (spots, Imaris 9+ surfaces, cells, filaments...; ``None``:
    the first object with statistics), one row per value: ``name``, ``unit``, ``category``
    (Overall, Track, Spot, Surface...), ``factors`` (a dict such as ``{"Channel": "1"}``),
    ``object_id`` (a spot, surface or track id; <NA> for overall values), ``t`` (<NA> when not
    per time point), ``value``. Old-layout (``Scene``) spots hold none: the table is then empty.
    A name objects of several kinds share is refused: give the group's (``"MegaSurfaces0"``).

    >>> stats = read_statistics("tracks.ims")
    >>> stats[stats["name"] == "Track Speed Mean"][["object_id", "value", "unit"]].values.tolist()
    [[1000, 4.0, 'um/s'], [1001, 2.0, 'um/s']]
    >>> read_statistics("tracks.ims", "Nuclei").groupby("category").size().to_dict()
    {'Overall': 1, 'Surface': 4}
    """
    with opened(path, storage_options) as f:
        return statistics_frame(select(f, None, name, "statistics").statistics())


def read_surface_summary(path: Path, name: str | None = None, *, storage_options: Options = None) -> pd.DataFrame:
    """An Imaris 9+ surfaces object's summary (``MegaSurfaces``: ``SurfaceModel`` and
    ``SurfaceModelInfo``), one row per surface: ``id`` (the id its statistics name), ``t``,
    ``volume``, ``area``, ``sphericity``, ``x``, ``y``, ``z`` (Imaris' position),
    ``center_of_mass_x/y/z``, ``min_x`` ... ``max_z`` (its bounding box), ``triangles`` and
    ``parts`` (split surface parts), in world coordinates and units, as Imaris computed them.

    >>> summary = read_surface_summary("tracks.ims", "Nuclei")
    >>> summary[["id", "t", "triangles"]].values.tolist(), summary["volume"].tolist()
    ([[7, 0, 120], [8, 1, 64]], [2.5, 1.25])
    """
    with opened(path, storage_options) as f:
        return summary_frame(select(f, "surfaces", name, "summary").summary())


def read_surfaces(path: Path, name: str | None = None, *, storage_options: Options = None) -> list[Surface]:
    """A surfaces object's meshes, one per time point (`Surface`: ``t``, ``vertices`` and
    ``normals`` (n, 3) x, y, z, ``triangles`` (m, 3) rows of ``vertices``). Needs no pandas.

    >>> [(s.t, s.vertices.shape, s.triangles.shape) for s in read_surfaces("surfaces.ims")]
    [(0, (4, 3), (4, 3)), (1, (8, 3), (8, 3))]
    """
    with opened(path, storage_options) as f:
        return select(f, "surfaces", name, "meshes").surfaces()
