"""ims_store: Imaris (.ims) files as first-class citizens of the OME-Zarr world.

>>> import zarr
>>> from ims_store import ImsStore
>>> root = zarr.open_group(ImsStore("cells.ims"), mode="r")
>>> [ch["label"] for ch in root.attrs["ome"]["omero"]["channels"]]
['DAPI', 'GFP', 'mCherry']
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .access.files import read_images, read_layout
from .access.outputs import DestinationExistsError, OutputIsInputError, WriteError
from .errors import (
    ClusterError,
    CorruptChunkError,
    ImsError,
    ImsFileNotFoundError,
    LinkTargetError,
    MalformedImsError,
    MalformedObjectsError,
    MissingDependencyError,
    NotHDF5Error,
    NotImarisError,
    OutsideFolderError,
    ReadOnlyError,
    RemoteReadError,
    ResourceLimitError,
    SelectionError,
    ServerError,
    TruncatedFileError,
)
from .format.layout import Channel, Filter, ImageEntry, ImsLayout, ImsWarning, Level, TimePoint
from .objects import (
    ObjectInfo,
    Surface,
    export_objects,
    list_objects,
    read_spots,
    read_statistics,
    read_surfaces,
    read_track_edges,
    read_tracks,
)
from .store.zarr_store import ChunkMode, ImsStore
from .write.beside import keep_beside_image
from .write.convert import to_nifti, to_ome_zarr
from .write.images import write_images
from .write.sources import SourceError
from .write.writer import write_ims

try:
    __version__ = version("ims-store")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Channel",
    "ClusterError",
    "ChunkMode",
    "CorruptChunkError",
    "DestinationExistsError",
    "Filter",
    "ImageEntry",
    "ImsError",
    "ImsFileNotFoundError",
    "LinkTargetError",
    "ImsLayout",
    "ImsStore",
    "ImsWarning",
    "Level",
    "MalformedImsError",
    "MalformedObjectsError",
    "MissingDependencyError",
    "NotHDF5Error",
    "NotImarisError",
    "ObjectInfo",
    "OutputIsInputError",
    "OutsideFolderError",
    "ReadOnlyError",
    "RemoteReadError",
    "ResourceLimitError",
    "SelectionError",
    "ServerError",
    "SourceError",
    "Surface",
    "TimePoint",
    "TruncatedFileError",
    "__version__",
    "WriteError",
    "export_objects",
    "keep_beside_image",
    "list_objects",
    "read_images",
    "read_layout",
    "read_spots",
    "read_statistics",
    "read_surfaces",
    "read_track_edges",
    "read_tracks",
    "to_nifti",
    "to_ome_zarr",
    "write_images",
    "write_ims",
]
