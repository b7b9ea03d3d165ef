"""Imaris analysis objects (Spots, Tracks, Surfaces, Statistics): the ``Scene`` / ``Scene8``
groups of an ``.ims`` file read into plain records, pandas tables and numpy meshes.

Its own layer beside ``store`` (both read files through ``access``): it knows the two object
layouts (``scene``, ``scene8``, ``megasurfaces``, ``statistics``), checks every read (``groups``), lists the
objects (``catalog``), builds tables (``frames``) and writes them out (``export``, ``ply``).
"""

from __future__ import annotations

from .export import export_objects
from .model import ObjectInfo, Surface
from .ply import write_ply
from .read import (
    list_objects,
    read_spots,
    read_statistics,
    read_surface_summary,
    read_surfaces,
    read_track_edges,
    read_tracks,
)

__all__ = [
    "ObjectInfo",
    "Surface",
    "export_objects",
    "list_objects",
    "read_spots",
    "read_statistics",
    "read_surface_summary",
    "read_surfaces",
    "read_track_edges",
    "read_tracks",
    "write_ply",
]
