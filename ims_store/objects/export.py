"""Analysis objects written out as files: tables as CSV (Parquet when pyarrow is installed) and
surfaces as PLY meshes, one folder for a file's objects.

Per object ``NAME``, the tables ims_store reads of it (``.csv`` or ``.parquet``; statistics'
``factors`` as JSON text): spots objects ``NAME.spots``, ``NAME.tracks``, ``NAME.track_edges``;
Imaris 9+ surfaces ``NAME.surfaces`` (the per-surface summary); every object with statistics
(spots, surfaces, cells, filaments...) ``NAME.statistics``; and per old-layout surfaces object one
``NAME.t<T>.ply`` mesh per time point, per Imaris 9+ surface one
``NAME.surface<ID>.t<T>.ply``. Objects whose geometry ims_store does not read are named in the
second list `export_objects` returns (their tables are still written).

>>> written, skipped = export_objects("tracks.ims", "objects", fmt="csv")
>>> [p.name for p in written if p.name.startswith("Nuclei")], skipped
(['Nuclei.surfaces.csv', 'Nuclei.statistics.csv'], ['Nuclei'])
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..access.outputs import WriteError, atomic_output, check_output
from ..errors import MissingDependencyError
from .catalog import Entry, catalog, opened
from .frames import spots_frame, statistics_frame, summary_frame, track_edges_frame, tracks_frame
from .ply import write_ply

__all__ = ["export_objects", "table_format"]


def table_format(fmt: str = "auto") -> str:
    """``"parquet"`` or ``"csv"``: ``auto`` is Parquet when pyarrow is installed."""
    if fmt not in ("auto", "csv", "parquet"):
        raise ValueError(f"unknown table format {fmt!r}: auto, csv or parquet")
    if fmt == "csv":
        return fmt
    try:
        import pyarrow  # noqa: F401
    except ImportError as err:
        if fmt == "parquet":
            raise MissingDependencyError("Parquet output needs pyarrow: pip install pyarrow") from err
        return "csv"
    return "parquet"


def _file_name(name: str, taken: set[str]) -> str:
    """A file-name stem for an object: its name with anything unsafe replaced, made unique."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "object"
    unique, k = stem, 1
    while unique in taken:
        k += 1
        unique = f"{stem}-{k}"
    taken.add(unique)
    return unique


def _write_table(frame: Any, path: Path, fmt: str) -> None:
    if "factors" in frame.columns:  # a dict per row: JSON text in both formats
        frame = frame.assign(factors=[json.dumps(f, sort_keys=True) for f in frame["factors"]])
    if fmt == "csv":
        frame.to_csv(path, index=False)
        return
    import pyarrow

    try:
        frame.to_parquet(path, index=False)
    except pyarrow.ArrowException as err:  # (its OSErrors are the output's failures, as any other)
        raise WriteError(f"writing failed: {err}", path) from err


def export_objects(
    path: str | os.PathLike[str],
    directory: str | os.PathLike[str],
    *,
    fmt: str = "auto",
    overwrite: bool = False,
    progress: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> tuple[list[Path], list[str]]:
    """Write what ims_store reads of every object of ``path`` into ``directory`` (made if missing).

    Returns the files written and the names of the objects whose geometry was left out (layouts
    not read; their statistics and summary are written). An existing file is replaced only with
    ``overwrite``; ``progress`` shows a bar (tqdm) per object. The files are written into a
    temporary folder beside ``directory`` and moved into it at the end
    (`outputs.atomic_output`): a failed or interrupted export leaves nothing, and any failure to
    write is a `WriteError`.
    """
    fmt = table_format(fmt)
    folder = check_output(directory, overwrite, [path], replaced=False)
    with atomic_output(folder, overwrite, inputs=[path], merge=True) as tmp:
        tmp.mkdir()
        names, skipped = _export(path, tmp, fmt, progress, storage_options)
    return [folder / name for name in names], skipped


def _export(
    path: str | os.PathLike[str], tmp: Path, fmt: str, progress: bool, storage_options: dict[str, Any] | None
) -> tuple[list[str], list[str]]:
    """The objects of ``path`` written into the folder ``tmp``: the file names, the objects left out."""
    written: list[str] = []
    skipped: list[str] = []
    taken: set[str] = set()
    with opened(path, storage_options) as f:
        entries = catalog(f)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            # shown only once the export has taken a second: small scenes stay quiet
            bar = tqdm(
                total=len(entries), unit="object", desc=f"exporting {Path(f.label).name}", delay=1.0, disable=None
            )
        try:
            for entry in entries:
                info = entry.info
                if not info.readable:
                    skipped.append(info.name)
                stem = _file_name(info.name, taken) if info.contents else ""
                for what, frame in _tables(entry).items():
                    _write_table(frame, tmp / f"{stem}.{what}.{fmt}", fmt)
                    written.append(f"{stem}.{what}.{fmt}")
                meshes = entry.surfaces() if "meshes" in info.contents else []
                # Imaris 9+ surfaces: one mesh per surface, several at a time point
                ids = entry.summary()["id"] if "summary" in info.contents else None
                for k, surface in enumerate(meshes):
                    part = f".surface{int(ids[k])}" if ids is not None else ""
                    name = f"{stem}{part}.t{surface.t}.ply"
                    write_ply(surface, tmp / name, comment=f"{info.name}, time point {surface.t}, unit {info.unit}")
                    written.append(name)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    return written, skipped


def _tables(entry: Entry) -> dict[str, Any]:
    """The tables of an object, by file-name part, in the order they are written."""
    tables: dict[str, Any] = {}
    if "spots" in entry.info.contents:
        spots, tracks = entry.spots()
        tables.update(
            spots=spots_frame(spots), tracks=tracks_frame(tracks, spots), track_edges=track_edges_frame(tracks)
        )
    if "summary" in entry.info.contents:
        tables["surfaces"] = summary_frame(entry.summary())
    if "statistics" in entry.info.contents:
        tables["statistics"] = statistics_frame(entry.statistics())
    return tables
