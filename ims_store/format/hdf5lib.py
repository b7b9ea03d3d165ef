"""The few HDF5 calls h5py does not wrap, made on the very library h5py loaded.

``H5Pget_chunk_opts`` tells whether a dataset's partial edge chunks were stored unfiltered
(``H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS``, HDF5 >= 1.10): such chunks carry a filter mask of 0
in the chunk index, yet hold raw bytes. The library is looked for where this process loaded it
and where h5py's wheels put it on Linux, macOS and Windows (see `candidates`), and taken only once
checked to be h5py's own copy. Where it cannot be found (an unusual build), `chunk_options`
answers None and the caller must not assume either way (`chunks.index_dataset` then leaves the
dataset's reads to HDF5: correct, at h5py's speed; see docs/platforms.md).

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
import re
import sys

import h5py

__all__ = ["DONT_FILTER_PARTIAL_CHUNKS", "WHEEL_PATTERNS", "candidates", "chunk_options", "is_h5py_library", "library"]

#: H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS (H5Dpublic.h)
DONT_FILTER_PARTIAL_CHUNKS = 0x0002


@functools.cache
def library() -> ctypes.CDLL | None:
    """The HDF5 library h5py uses (the same copy, so that identifiers are shared), or None.

    Each candidate (see `candidates`) is loaded and checked to be h5py's copy: a property list
    h5py made must read back through it with the chunk shape h5py set (an identifier means
    nothing in another copy of the library, so another copy fails the check rather than answering
    for some other object).
    """
    for path in candidates():
        try:
            lib = ctypes.CDLL(path)
            lib.H5Pget_chunk_opts  # noqa: B018 - present in HDF5 >= 1.10
        except (OSError, AttributeError):
            continue
        lib.H5Pget_chunk_opts.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_uint)]
        lib.H5Pget_chunk_opts.restype = ctypes.c_int
        lib.H5Pset_chunk_opts.argtypes = [ctypes.c_int64, ctypes.c_uint]
        lib.H5Pset_chunk_opts.restype = ctypes.c_int
        if is_h5py_library(lib):
            return lib
    return None


def is_h5py_library(lib: ctypes.CDLL) -> bool:
    """Whether ``lib`` is the copy of HDF5 h5py calls: a dataset creation property list made
    through h5py, with an unusual chunk shape, reads back with that shape through ``lib``.

    >>> is_h5py_library(library())
    True
    """
    shape = (7, 13, 29)
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_chunk(shape)
    try:
        get_chunk = lib.H5Pget_chunk
        # quiet, as h5py keeps its own copy: another copy would print the failed check on stderr
        lib.H5Eset_auto2(ctypes.c_int64(0), None, None)  # H5E_DEFAULT
    except AttributeError:
        return False
    get_chunk.argtypes = [ctypes.c_int64, ctypes.c_int, ctypes.POINTER(ctypes.c_uint64)]
    get_chunk.restype = ctypes.c_int
    dims = (ctypes.c_uint64 * 3)()
    return get_chunk(plist.id, 3, dims) == 3 and tuple(dims) == shape


#: where h5py's wheels put their HDF5 library, beside the package folder ``h5py``: Linux
#: (auditwheel: ``h5py.libs/libhdf5-<hash>.so.*``), macOS (delocate: ``h5py/.dylibs/libhdf5.*.dylib``),
#: Windows (h5py's own bundling: ``h5py/hdf5.dll``; delvewheel: ``h5py.libs/hdf5-<hash>.dll``)
WHEEL_PATTERNS = (
    "h5py.libs/libhdf5*",
    "h5py/.dylibs/libhdf5*",
    "h5py/hdf5*.dll",
    "h5py.libs/hdf5*.dll",
)


def candidates(package_dir: str | None = None, loaded: list[str] | None = None) -> list[str]:
    """Paths h5py's libhdf5 may have, most likely first: the libraries this process has loaded
    whose name is HDF5's (``loaded``; default: as this OS lists them), then the files of
    `WHEEL_PATTERNS` around ``package_dir`` (default: h5py's folder). The high-level library
    (``hdf5_hl``) is never one.

    >>> candidates(package_dir="/nowhere/h5py", loaded=["/lib/libhdf5_hl.so.310", "/lib/libhdf5.so.310"])
    ['/lib/libhdf5.so.310']
    """
    found: list[str] = []

    def add(path: str) -> None:
        name = re.split(r"[\\/]", path)[-1].lower()  # (a Windows path is split on "\\" everywhere)
        if name.startswith(("libhdf5", "hdf5")) and "hdf5_hl" not in name and path not in found:
            found.append(path)

    for path in _loaded_libraries() if loaded is None else loaded:
        add(path)
    here = os.path.dirname(h5py.__file__) if package_dir is None else package_dir
    parent = os.path.dirname(os.path.abspath(here))
    for pattern in WHEEL_PATTERNS:
        for path in sorted(glob.glob(os.path.join(parent, pattern))):
            add(os.path.realpath(path))
    return found


def _loaded_libraries() -> list[str]:
    """The shared libraries this process has loaded, where the OS tells: Linux's
    ``/proc/self/maps``, macOS's dyld image list, the HDF5 module on Windows."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps") as maps:
                return [os.path.realpath(line.split(maxsplit=5)[-1].strip()) for line in maps if "/" in line]
        except OSError:
            return []
    if sys.platform == "darwin":
        try:
            dyld = ctypes.CDLL("/usr/lib/libSystem.B.dylib")
            dyld._dyld_get_image_name.restype = ctypes.c_char_p
            dyld._dyld_get_image_name.argtypes = [ctypes.c_uint32]
            names = (dyld._dyld_get_image_name(i) for i in range(dyld._dyld_image_count()))
            return [os.path.realpath(os.fsdecode(name)) for name in names if name]
        except (OSError, AttributeError):
            return []
    if sys.platform == "win32":
        return _windows_module("hdf5.dll")
    return []


def _windows_module(name: str) -> list[str]:
    """The path of the loaded module ``name`` (``GetModuleHandleW`` + ``GetModuleFileNameW``), or nothing."""
    try:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        kernel32.GetModuleHandleW.restype = ctypes.c_void_p
        kernel32.GetModuleHandleW.argtypes = [ctypes.c_wchar_p]
        handle = kernel32.GetModuleHandleW(name)
        if not handle:
            return []
        kernel32.GetModuleFileNameW.argtypes = [ctypes.c_void_p, ctypes.c_wchar_p, ctypes.c_uint32]
        buffer = ctypes.create_unicode_buffer(32768)
        size = kernel32.GetModuleFileNameW(handle, buffer, len(buffer))
        return [buffer.value] if size else []
    except (OSError, AttributeError):
        return []


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
