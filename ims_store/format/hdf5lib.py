"""The few HDF5 calls h5py does not wrap, made on the very library h5py loaded.

``H5Pget_chunk_opts`` tells whether a dataset's partial edge chunks were stored unfiltered
(``H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS``, HDF5 >= 1.10): such chunks carry a filter mask of 0
in the chunk index, yet hold raw bytes. Where the library cannot be found (an unusual build),
`chunk_options` answers None and the caller must not assume either way.

>>> import h5py
>>> with h5py.File("cells.ims", "r") as f:
...     chunk_options(f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"])
0
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os

import h5py

__all__ = ["DONT_FILTER_PARTIAL_CHUNKS", "chunk_options", "library"]

#: H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS (H5Dpublic.h)
DONT_FILTER_PARTIAL_CHUNKS = 0x0002


@functools.cache
def library() -> ctypes.CDLL | None:
    """The HDF5 library h5py uses (the same copy, so that identifiers are shared), or None."""
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            lib.H5Pget_chunk_opts  # noqa: B018 - present in HDF5 >= 1.10
        except (OSError, AttributeError):
            continue
        lib.H5Pget_chunk_opts.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_uint)]
        lib.H5Pget_chunk_opts.restype = ctypes.c_int
        lib.H5Pset_chunk_opts.argtypes = [ctypes.c_int64, ctypes.c_uint]
        lib.H5Pset_chunk_opts.restype = ctypes.c_int
        return lib
    return None


def _candidates() -> list[str]:
    """Paths the loaded libhdf5 may have: the mapped one first (Linux), then h5py's own folders."""
    found: list[str] = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = os.path.realpath(line.split(maxsplit=5)[-1].strip())
                name = os.path.basename(path)
                if name.startswith("libhdf5") and not name.startswith("libhdf5_hl") and path not in found:
                    found.append(path)
    except OSError:
        pass
    here = os.path.dirname(h5py.__file__)
    for pattern in ("../h5py.libs/libhdf5*", ".dylibs/libhdf5*", "hdf5.dll", "../h5py.libs/hdf5*.dll"):
        for path in map(os.path.realpath, sorted(glob.glob(os.path.join(here, pattern)))):
            if "hdf5_hl" not in os.path.basename(path) and path not in found:
                found.append(path)
    return found


def chunk_options(dataset: h5py.Dataset) -> int | None:
    """The dataset's chunk options (``H5Pget_chunk_opts``), or None where they cannot be asked."""
    lib = library()
    if lib is None or dataset.chunks is None:
        return None if lib is None else 0
    options = ctypes.c_uint(0)
    plist = dataset.id.get_create_plist()  # held: its identifier is closed with the object
    if lib.H5Pget_chunk_opts(plist.id, ctypes.byref(options)) < 0:
        return None
    return int(options.value)
