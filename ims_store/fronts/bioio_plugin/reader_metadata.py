"""What bioio asks a plugin before reading anything: the extensions it reads and its reader."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import MissingDependencyError

try:
    import bioio_base.reader_metadata
except ImportError as err:  # tests hide bioio-base to reach this
    raise MissingDependencyError("the bioio plugin needs bioio: pip install 'ims-store[bioio]'", None) from err

if TYPE_CHECKING:
    from .reader import Reader

__all__ = ["ReaderMetadata"]


class ReaderMetadata(bioio_base.reader_metadata.ReaderMetadata):
    """The plugin's description for bioio: ``.ims`` files, read by `Reader`.

    >>> ReaderMetadata.get_supported_extensions()
    ['.ims']
    """

    @staticmethod
    def get_supported_extensions() -> list[str]:
        return [".ims"]

    @staticmethod
    def get_reader() -> type[Reader]:  # type: ignore[override]
        from .reader import Reader

        return Reader
