"""The virtual zarr store: `ImsStore`, its key space and NGFF metadata, the mapping view,
references, validation. Imports `access` and `format`.
"""

from .zarr_store import ChunkMode, ImsStore, LevelArray

__all__ = ["ChunkMode", "ImsStore", "LevelArray"]
