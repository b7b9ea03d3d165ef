"""Zero-copy references: every chunk of an ``.ims`` as a byte range, in kerchunk's format.

Tools without ims_store open the file through fsspec's reference filesystem and zarr, reading
the stored chunk bytes straight from the ``.ims`` (local or remote). The metadata is the virtual
store's in ``passthrough`` mode, so the codecs declared are the ones that decode the stored
bytes: zarr v2 ``zlib`` (+ ``shuffle``) for NGFF 0.4, or ``numcodecs.zlib`` (+
``numcodecs.shuffle``) on zarr v3 for NGFF 0.5.

>>> refs = make_references("cells.ims")
>>> refs["version"], refs["refs"][".zgroup"]
(1, '{\\n  "zarr_format": 2\\n}')
>>> url, offset, size = refs["refs"]["0/0/0/0/0/0"]
>>> url.endswith("cells.ims") and size > 0
True
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from ..access.outputs import atomic_output, check_output
from ..errors import ImsError
from .keys import ChunkKey, chunk_key
from .zarr_store import ImsStore

__all__ = ["ReferencesNotPossibleError", "make_references", "write_references"]


class ReferencesNotPossibleError(ImsError, ValueError):
    """Some chunks cannot be referenced as stored (their filters have no zarr codec)."""


def make_references(
    path: str | os.PathLike[str],
    *,
    zarr_format: Literal[2, 3] = 2,
    url: str | None = None,
    image: int | None = None,
) -> dict[str, Any]:
    """kerchunk-style references (version 1) to every chunk of ``path``.

    ``url`` is what the references name as the file (default: its absolute path), e.g. the
    ``https://`` or ``s3://`` address the same file has elsewhere. Raises
    `ReferencesNotPossibleError` for files with levels compressed with filters zarr cannot
    declare (HDF5-LZ4 from Imaris 9.6+: numcodecs' LZ4 reads a different framing), or with
    chunks whose filter mask skipped a filter.

    ``image``: one image of a file of several; without it such a file is referenced as the
    collection `ImsStore` presents (every image, refused if one cannot be read).
    """
    store = ImsStore(path, zarr_format=zarr_format, chunk_mode="passthrough", image=image)
    if store.is_collection:
        refs = {key: doc.decode() for key, doc in store._metadata.items()}
        for entry in store.images:
            if entry.error is not None:
                store.close()
                raise entry.error
            one = make_references(path, zarr_format=zarr_format, url=url, image=entry.index)["refs"]
            refs.update({f"{entry.index}/{key}": value for key, value in one.items()})
        store.close()
        return {"version": 1, "refs": refs}
    layout = store.layout
    target = url or str(Path(path).resolve())
    for level, plan in zip(layout.levels, store._plans, strict=True):
        if not plan.passthrough:
            names = ", ".join(f.name.split(";")[0] for f in level.filters)
            raise ReferencesNotPossibleError(
                f"resolution level {level.index} is stored with HDF5 filters ({names}) that no zarr codec "
                "decodes, so its chunks cannot be referenced as they are; convert the file instead "
                "(ims-store convert FILE.ims OUT.zarr)",
                path,
            )
    refs: dict[str, Any] = {key: doc.decode() for key, doc in store._metadata.items()}
    for level in layout.levels:
        for t in range(len(layout.timepoints)):
            for c in range(len(layout.channels)):
                index = store._index(level.index, t, c)
                grid = level.chunk_grid
                for z in range(grid[0]):
                    for y in range(grid[1]):
                        for x in range(grid[2]):
                            ck = ChunkKey(level.index, t, c, z, y, x)
                            offset, size, _ = index.locate(z, y, x)
                            if offset < 0 and index.listed and index.fill_matches(level):
                                continue  # never written: absent, zarr fills the declared fill value
                            if not store._passes_through(ck, index, index.masks[z, y, x]):
                                raise ReferencesNotPossibleError(
                                    f"chunk ({z}, {y}, {x}) of level {level.index}, time point {t}, channel {c} "
                                    "is not stored as its level declares (filter mask, storage, type or fill value "
                                    f"differs{': ' + index.why if index.why else ''})",
                                    path,
                                )
                            if index.file is not None and url is not None:
                                raise ReferencesNotPossibleError(
                                    f"level {level.index}, time point {t}, channel {c} lies in {index.file}, which an "
                                    "external link leads to; its address cannot be derived from --url",
                                    path,
                                )
                            refs[chunk_key(ck, zarr_format)] = [index.file or target, offset, size]
    store.close()
    return {"version": 1, "refs": refs}


def write_references(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    zarr_format: Literal[2, 3] = 2,
    url: str | None = None,
    overwrite: bool = False,
    image: int | None = None,
) -> Path:
    """`make_references` written as JSON (atomically) to ``output``; an output that is the
    file itself is refused before anything is read, a failed write is a `WriteError`."""
    target = check_output(output, overwrite, [path])
    refs = make_references(path, zarr_format=zarr_format, url=url, image=image)
    with atomic_output(target, overwrite, inputs=[path]) as tmp:
        tmp.write_text(json.dumps(refs))
    return target
