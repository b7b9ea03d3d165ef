"""The exceptions ims_store raises, rooted in one base class.

Every error names the file it is about and what is wrong with it, so that a message read in a
log from a batch of a thousand files still says which file to look at::

    try:
        store = ImsStore("cells.ims")
    except ImsError as err:
        print(err.path, err)

Each class also derives from the builtin a caller would naturally catch (``FileNotFoundError``
for a missing file, ``ValueError`` for an out-of-range selection, ``ImportError`` for a missing
optional dependency), so code written without ims_store in mind keeps working.
"""

from __future__ import annotations

import os

__all__ = [
    "ClusterError",
    "CorruptChunkError",
    "ImsError",
    "ImsFileNotFoundError",
    "LinkTargetError",
    "MalformedImsError",
    "MalformedObjectsError",
    "MissingDependencyError",
    "NotHDF5Error",
    "NotImarisError",
    "OutsideFolderError",
    "ReadOnlyError",
    "RemoteReadError",
    "ResourceLimitError",
    "SelectionError",
    "ServerError",
    "SourceError",
    "TruncatedFileError",
]


class ImsError(Exception):
    """Base class of every error ims_store raises about a file.

    ``path`` is the file concerned (or ``None`` where no file is involved).
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)

    def __reduce__(self):  # keep the (message, path) signature through pickling (dask, processes)
        return (type(self), (self.reason, self.path))


class ImsFileNotFoundError(ImsError, FileNotFoundError):
    """The path does not exist."""


class NotHDF5Error(ImsError):
    """The path exists but is not an HDF5 file (a text file, a directory, an empty file...)."""


class TruncatedFileError(ImsError):
    """The file is HDF5 but shorter than its own structures say: a copy cut short."""


class NotImarisError(ImsError):
    """The file is HDF5 but holds no Imaris image (no ``DataSet/ResolutionLevel 0``)."""


class MalformedImsError(ImsError):
    """The file is an Imaris file, but something it needs is missing or inconsistent."""


class LinkTargetError(MalformedImsError):
    """A link in the file leads nowhere readable: an external link whose target file is missing,
    moved, not HDF5 or refused, links that loop, or a virtual dataset whose source is missing.
    The message names the linking file, the link and its target."""


class OutsideFolderError(LinkTargetError):
    """A file a server would open lies outside the folder it serves: the served file reached
    through a link that leads out (or was swapped while it was opened), or a link's target, a
    virtual dataset's source or an external raw data file elsewhere."""


class MalformedObjectsError(MalformedImsError):
    """An analysis-object group (``Scene/Content/Points0``, ``Scene8/Content/Surfaces1``...) is
    damaged or not understood: a dataset missing, of the wrong type or shape, fields missing, an
    index past the end of the table it points into. ``group`` is the HDF5 path of the object."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None, group: str | None = None) -> None:
        self.group = group
        self.detail = message
        super().__init__(f"{group}: {message}" if group else message, path)

    def __reduce__(self):
        return (type(self), (self.detail, self.path, self.group))


class CorruptChunkError(MalformedImsError):
    """One chunk of the image cannot be read or decoded; the message names level, time point,
    channel and chunk."""


class SelectionError(ImsError, IndexError, ValueError):
    """A resolution level, time point or channel outside what the file holds.

    The message lists what exists.
    """


class ReadOnlyError(ImsError, ValueError):
    """Something tried to write through a read-only view of an Imaris file."""


class MissingDependencyError(ImsError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class ClusterError(ImsError, ConnectionError):
    """A dask scheduler given by its address cannot be reached."""


class RemoteReadError(ImsError, OSError):
    """A remote file could not be read: its server failed or refused a request, or could not be
    reached (the message gives the server's answer or the connection's error)."""


class ResourceLimitError(ImsError, OSError):
    """The process ran out of something it needs, not the file of something it holds: no file
    descriptors left (``EMFILE``), or a request larger than a server's memory budget. Trying
    again later may succeed."""


class ServerError(ImsError, OSError):
    """The HTTP server cannot listen where asked (a port in use, an address not on this machine)."""


class SourceError(ImsError, ValueError):
    """A source cannot become an Imaris image (unknown kind, bad axes, oblique affine, a file that
    is not what its name says...)."""
