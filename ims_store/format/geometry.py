"""Physical geometry: Imaris extents <-> voxel sizes <-> voxel-centre origins.

Imaris records the **outer edges** of the border voxels (``ExtMin``/``ExtMax``); OME-NGFF and
NIfTI place coordinates at **voxel centres**. All tuples here are in (z, y, x) order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "TO_MICROMETRES",
    "UNIT_NAMES",
    "extents_valid",
    "imaris_unit",
    "ngff_unit",
    "voxel_centre_origin",
    "voxel_size",
]

Vec3 = tuple[float, float, float]

# Imaris writes short unit symbols; OME-NGFF wants UDUNITS-2 names.
UNIT_NAMES: dict[str, str] = {
    "pm": "picometer",
    "nm": "nanometer",
    "um": "micrometer",
    "µm": "micrometer",
    "μm": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "micrometer": "micrometer",
    "micrometers": "micrometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "a": "angstrom",
    "å": "angstrom",
    "angstrom": "angstrom",
    "nanometer": "nanometer",
    "millimeter": "millimeter",
    "meter": "meter",
}


# UDUNITS-2 names -> the symbol Imaris writes; each symbol's length in micrometres
_IMARIS_UNIT = {"nanometer": "nm", "micrometer": "um", "millimeter": "mm", "meter": "m", "centimeter": "cm"}
TO_MICROMETRES: dict[str, float] = {"pm": 1e-6, "nm": 1e-3, "um": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}


def imaris_unit(name: str | None) -> tuple[str | None, float]:
    """A unit's name or symbol (OME-NGFF, NIfTI, OME-XML, ImageJ) -> (the Imaris symbol, the factor
    that turns values into it); ``(None, 1.0)`` for a unit Imaris has no symbol for.

    >>> imaris_unit("micrometer"), imaris_unit("µm"), imaris_unit("angstrom"), imaris_unit("pixel")
    (('um', 1.0), ('um', 1.0), ('um', 0.0001), (None, 1.0))
    """
    if not name:
        return None, 1.0
    full = UNIT_NAMES.get(name.strip().lower(), name.strip().lower())
    symbol = _IMARIS_UNIT.get(full)
    if symbol is None:  # angstrom, picometer...: write micrometres, converted
        factor = {"angstrom": 1e-4, "picometer": 1e-6}.get(full)
        if factor is None:
            return None, 1.0
        return "um", factor
    return symbol, 1.0


def ngff_unit(unit: str | None) -> str | None:
    """The OME-NGFF name of an Imaris unit, or ``None`` when it has none (``"um"`` -> ``"micrometer"``)."""
    if not unit:
        return None
    return UNIT_NAMES.get(unit.strip().lower())


def voxel_size(extent_min: Sequence[float], extent_max: Sequence[float], size: Sequence[int]) -> Vec3:
    """Voxel size of a level whose true size is ``size``: ``(ExtMax - ExtMin) / size`` per axis.

    Kept at full precision (a voxel of 0.0004 um is real).

    >>> voxel_size((0.0, -0.033, -0.033), (6.4, 17.118, 17.118), (32, 256, 256))
    (0.2, 0.06699609375, 0.06699609375)
    """
    return tuple((hi - lo) / n for lo, hi, n in zip(extent_min, extent_max, size, strict=True))  # type: ignore[return-value]


def voxel_centre_origin(extent_min: Sequence[float], voxel: Sequence[float]) -> Vec3:
    """Physical position of the centre of the first voxel: ``ExtMin + voxel / 2``."""
    return tuple(lo + v / 2 for lo, v in zip(extent_min, voxel, strict=True))  # type: ignore[return-value]


def extents_valid(extent_min: Sequence[float], extent_max: Sequence[float]) -> bool:
    """Whether the extents describe a real box: finite, with max above min on every axis."""
    return all(
        math.isfinite(lo) and math.isfinite(hi) and hi > lo for lo, hi in zip(extent_min, extent_max, strict=True)
    )
