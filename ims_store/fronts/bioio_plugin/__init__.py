"""bioio's reader plugin for Imaris files: ``BioImage("cells.ims")`` reads through ims_store.

bioio finds the plugin through the ``bioio.readers`` entry point named after this distribution
(``ims-store``); install it with ``pip install 'ims-store[bioio]'``. The reader can also be given
explicitly, which skips bioio's choice by extension:

>>> from bioio import BioImage
>>> from ims_store.fronts.bioio_plugin import Reader
>>> BioImage("cells.ims", reader=Reader).dims.order
'TCZYX'
"""

from __future__ import annotations

from .reader import Reader
from .reader_metadata import ReaderMetadata

__all__ = ["Reader", "ReaderMetadata"]
