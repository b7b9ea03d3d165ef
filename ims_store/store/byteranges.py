"""zarr's byte-range requests (``RangeByteRequest``, ``OffsetByteRequest``, ``SuffixByteRequest``)
applied to bytes of a known length.

>>> from zarr.abc.store import SuffixByteRequest
>>> bytes(cut_range(b"abcdef", SuffixByteRequest(2)))
b'ef'
>>> bounds(6, SuffixByteRequest(10))
(0, 6)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest

if TYPE_CHECKING:
    from zarr.abc.store import ByteRequest

__all__ = ["bounds", "check_byte_range", "cut_range"]


def check_byte_range(byte_range: object) -> None:
    """Refuse what is not one of zarr's byte requests (a `TypeError`, as zarr's own stores do).

    >>> check_byte_range(None)
    """
    if byte_range is not None and not isinstance(byte_range, (RangeByteRequest, OffsetByteRequest, SuffixByteRequest)):
        raise TypeError(f"Unexpected byte_range, got {byte_range!r}")


def bounds(size: int, byte_range: ByteRequest | None) -> tuple[int, int]:
    """The (start, stop) a byte request selects of ``size`` bytes, clipped to them."""
    if byte_range is None:
        return 0, size
    if isinstance(byte_range, RangeByteRequest):
        start, stop = byte_range.start, byte_range.end
    elif isinstance(byte_range, OffsetByteRequest):
        start, stop = byte_range.offset, size
    else:
        start, stop = size - byte_range.suffix, size
    start = min(max(start, 0), size)
    return start, max(start, min(stop, size))


def cut_range(data: Any, byte_range: ByteRequest | None) -> Any:
    """The bytes of ``data`` (any buffer) a byte request selects: ``data`` itself for None, else
    a view."""
    if byte_range is None:
        return data
    start, stop = bounds(memoryview(data).nbytes, byte_range)
    return memoryview(data).cast("B")[start:stop]
