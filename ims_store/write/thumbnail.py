"""The thumbnail: maximum projections along z, per channel, blended into Imaris' RGBA image.

`ThumbnailAccumulator` gathers the projections while the pyramid streams; `rgba` makes the
``Thumbnail/Data`` image (longest side `THUMBNAIL_SIZE`) from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

THUMBNAIL_SIZE = 256


def max_projection(planes: np.ndarray) -> np.ndarray:
    """Maximum projection along z; NaN only where a pixel has no other value."""
    return np.fmax.reduce(planes, axis=0) if planes.dtype.kind == "f" else planes.max(axis=0)


@dataclass
class ThumbnailAccumulator:
    """Maximum projection along z of one level, per channel, for ``Thumbnail/Data``."""

    level: int
    mips: dict[int, np.ndarray] = field(default_factory=dict)
    channel: int = 0

    def add(self, planes: np.ndarray) -> None:
        self.add_mip(max_projection(planes))

    def add_mip(self, mip: np.ndarray) -> None:
        """A maximum projection of some planes of the current channel."""
        current = self.mips.get(self.channel)
        self.mips[self.channel] = mip if current is None else np.fmax(current, mip)

    def rgba(self, colors: Sequence[tuple[float, float, float]], ranges: Sequence[tuple[float, float]]) -> np.ndarray:
        """Channels blended by maximum, each scaled by its display range (no wrapping), longest side 256.

        Sampled as ImarisWriter samples it (pixel i shows source pixel ``i * size // thumbnail
        size``), so a small image is enlarged by nearest neighbour; NaN shows as black, +inf as
        full intensity.
        """
        first = next(iter(self.mips.values()))
        h, w = first.shape
        scale = THUMBNAIL_SIZE / max(h, w)
        th, tw = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
        rows, cols = np.arange(th) * h // th, np.arange(tw) * w // tw
        rgb = np.zeros((th, tw, 3), np.float64)
        for c, mip in self.mips.items():
            lo, hi = ranges[c]
            small = mip[np.ix_(rows, cols)].astype(np.float64)
            level = np.nan_to_num((small - lo) / (hi - lo if hi > lo else 1.0), nan=0.0, posinf=1.0, neginf=0.0)
            rgb = np.maximum(rgb, np.clip(level, 0.0, 1.0)[..., None] * np.asarray(colors[c], np.float64))
        out = np.empty((th, tw, 4), np.uint8)
        out[..., :3] = np.rint(rgb * 255)
        out[..., 3] = 255
        return out.reshape(th, tw * 4)
