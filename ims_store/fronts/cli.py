"""The ``ims-store`` command line: argument parsing and output only.

    ims-store info FILE.ims [--json]
    ims-store objects FILE.ims [--json] [--export DIR [--format auto|csv|parquet] [--overwrite] [--quiet]]
    ims-store convert IN OUT [--ngff 0.5|0.4] [--codec ...] [--chunks-per-shard Z,Y,X]
                             [--level N --timepoint T --channel C]
                             [--compression gzip|lz4|none] [--compression-level N] [--overwrite]
                             [--voxel-size Z,Y,X] [--series N --axes AXES]
                             [--scheduler ADDRESS]
    ims-store serve FILE.ims|FOLDER [--host 127.0.0.1] [--port 8000] [--ngff 0.5|0.4]
                    [--allow-origin ORIGIN] [--allow-host NAME] [--follow-links]
                    [--idle-timeout SECONDS] [--max-open N] [--max-request-mib MIB]
    ims-store validate FILE.ims [--strict] [--deep]
    ims-store refs FILE.ims -o REFS.json [--ngff 0.4|0.5] [--url URL]
    ims-store demo [--output FILE.ims [--overwrite]] [--zarr-format 2|3]

Bad input gives a one-line error naming the file and a non-zero exit status; ``--debug``
shows the traceback. Ctrl-C and SIGTERM stop any command at once (status 130 / 143), leaving
nothing of an output behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..access.files import location
from ..access.outputs import DestinationExistsError
from ..errors import ImsError

if TYPE_CHECKING:
    from ..store.zarr_store import ImsStore
    from .serve import ImsHTTPServer

__all__ = ["main"]


def _cmd_info(args: argparse.Namespace) -> int:
    from ..access.files import read_images, read_layout
    from .summary import format_images, format_layout, images_summary, layout_summary

    if args.image is not None:
        layout = read_layout(args.file, image=args.image)
    else:
        entries = read_images(args.file)
        if len(entries) > 1:  # a file of several images: each, or the error that keeps it unread
            print(json.dumps(images_summary(entries), indent=2) if args.json else format_images(entries))
            return 1 if any(e.error is not None for e in entries) else 0
        layout = entries[0].layout  # type: ignore[assignment]
    objects, trouble = _objects_for_info(args.file)
    if args.json:
        print(json.dumps({**layout_summary(layout), **objects}, indent=2))
    else:
        print(format_layout(layout) + "\n" + trouble)
    return 0


def _objects_for_info(path: str) -> tuple[dict[str, object], str]:
    """``info``'s account of the analysis objects: JSON fields and text. Damaged object groups
    do not keep ``info`` from describing the image: they are reported in place of the list."""
    from ..errors import MalformedObjectsError
    from ..objects import list_objects
    from .summary import format_objects, objects_summary

    try:
        objects = list_objects(path)
    except MalformedObjectsError as err:
        return {"objects": None, "objects_error": str(err)}, f"  analysis objects: unreadable: {err}"
    return {"objects": objects_summary(objects)}, format_objects(objects)


def _cmd_objects(args: argparse.Namespace) -> int:
    from ..objects import export_objects, list_objects
    from .summary import format_objects, objects_summary

    if args.export is None:
        objects = list_objects(args.file)
        print(
            json.dumps(objects_summary(objects), indent=2) if args.json else f"{args.file}\n{format_objects(objects)}"
        )
        return 0
    written, skipped = export_objects(
        args.file, args.export, fmt=args.format, overwrite=args.overwrite, progress=not args.quiet
    )
    for name in skipped:
        print(f"left out the geometry of {name!r}: its layout is not read by ims_store (its tables are written)")
    print(f"wrote {len(written)} file(s) to {args.export}")
    return 0


class _UsageError(Exception):
    """A command line that asks for something no command does."""


# The options of `convert` that only some directions use, by output kind. Their argparse default
# is None so that an option given for a direction that has no use for it is refused rather than
# silently dropped; `_DEFAULTS` fills in what was not given.
_DIRECTION_OPTIONS = (
    "ngff",
    "codec",
    "chunks_per_shard",
    "level",
    "timepoint",
    "channel",
    "compression",
    "compression_level",
    "voxel_size",
    "series",
    "axes",
    "spots",
    "spot_edges",
    "join",
)
_OPTIONS_BY_OUTPUT = {
    "zarr": ("ngff", "codec", "chunks_per_shard"),
    "nifti": ("level", "timepoint", "channel"),
    "ims": ("level", "compression", "compression_level", "voxel_size", "series", "axes", "spots", "spot_edges", "join"),
}
_OUTPUT_NAMES = {"zarr": "OME-Zarr", "nifti": "NIfTI", "ims": ".ims"}
_DEFAULTS = {"ngff": "0.5", "codec": "auto", "level": 0, "timepoint": 0, "channel": 0}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _timepoint_arg(text: str) -> int | str:
    """``--timepoint``: an index or ``all``; argparse names the option in the error."""
    if text.strip().lower() == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a time point index or 'all', got {text!r}") from None


def _shard_arg(text: str) -> tuple[int, int, int]:
    """``--chunks-per-shard Z,Y,X``: three positive whole numbers."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if len(counts) != 3 or any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"expected three positive numbers Z,Y,X, got {text!r}")
    return counts  # type: ignore[return-value]


def _gzip_level_arg(text: str) -> int:
    """``--compression-level N``: a gzip level, 0 to 9."""
    try:
        level = int(text)
    except ValueError:
        level = -1
    if not 0 <= level <= 9:
        raise argparse.ArgumentTypeError(f"expected a gzip level 0-9, got {text!r}")
    return level


def _voxel_arg(text: str) -> tuple[float, float, float]:
    """``--voxel-size Z,Y,X``: three positive numbers."""
    try:
        sizes = tuple(float(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or not all(0 < s < float("inf") for s in sizes):
        raise argparse.ArgumentTypeError(f"expected three positive numbers Z,Y,X, got {text!r}")
    return sizes  # type: ignore[return-value]


def _spots_arg(text: str) -> tuple[str, str]:
    """``--spots table.csv[:NAME]``: (path, object name). The name follows the last colon after
    ``.csv`` (a Windows drive letter's colon is part of the path)."""
    path, colon, name = text.rpartition(":")
    if not colon or not path.lower().endswith(".csv") or not name:
        path, name = text, ""
    if not path.lower().endswith(".csv"):
        raise argparse.ArgumentTypeError(f"expected a .csv file, optionally :NAME after it, got {text!r}")
    return path, name or Path(path).stem


def _direction(args: argparse.Namespace) -> str:
    """The output kind of a conversion; refuses options its direction does not use and fills in
    the defaults of those it does."""
    from ..write.sources import path_kind

    *more, args.output = args.output  # INPUT [INPUT ...] OUTPUT: argparse gives all but the first here
    args.inputs = [args.input, *more]
    if more:
        if path_kind(args.output, output=True) != "ims":
            raise _UsageError(f"several inputs are written into one .ims only, not {args.output}")
        if args.image is not None:
            raise _UsageError("--image applies to one .ims input, not to several inputs")
        for extra in more:
            if path_kind(extra) is None:
                raise _UsageError(f"cannot read {extra}: give .ims, .zarr, .nii, .nii.gz, .tif or .tiff inputs")
    if args.join is not None and not more:
        raise _UsageError("--join applies to several inputs")
    src, dst = path_kind(args.input), path_kind(args.output, output=True)
    if not (dst == "ims" and src is not None) and not (src == "ims" and dst in ("zarr", "nifti")):
        raise _UsageError(
            f"cannot convert {args.input} to {args.output}: convert .ims to .zarr / .ome.zarr or .nii / .nii.gz, "
            "or .ims, .zarr, .nii, .nii.gz, .tif, .tiff to .ims"
        )
    allowed = _OPTIONS_BY_OUTPUT[dst]
    for dest in _DIRECTION_OPTIONS:
        if getattr(args, dest) is not None and dest not in allowed:
            raise _UsageError(f"{_flag(dest)} does not apply to {_OUTPUT_NAMES[dst]} output ({args.output})")
    for dest in ("series", "axes"):
        if src != "tiff" and getattr(args, dest) is not None:
            raise _UsageError(f"{_flag(dest)} applies to TIFF input only ({args.input})")
    if args.image is not None and src != "ims":
        raise _UsageError(f"--image applies to an .ims input only, not {args.input}")
    if src == "nifti" and args.level is not None:
        raise _UsageError(f"--level does not apply to a NIfTI input ({args.input}): it has one level")
    if dst == "zarr" and args.chunks_per_shard is not None:  # the library's message names its keywords
        if args.ngff == "0.4":
            raise _UsageError("--chunks-per-shard needs --ngff 0.5: zarr v2 (NGFF 0.4) has no shards")
        if args.codec == "copy":
            raise _UsageError("--chunks-per-shard re-encodes every chunk: use --codec zstd, zlib or none")
    if dst == "ims" and args.compression_level is not None and args.compression not in (None, "gzip"):
        raise _UsageError(f"--compression-level applies to gzip only, not --compression {args.compression}")
    for dest, value in _DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)
    return dst


def _cmd_convert(args: argparse.Namespace) -> int:
    from ..write.cluster import dask_client

    # options are checked before connecting to a cluster: a typo should not cost a connection
    dst = _direction(args)
    with dask_client(args.scheduler) as client:
        _convert(args, dst, client)
    if not args.quiet:
        print(f"wrote {args.output}")
    return 0


def _convert(args: argparse.Namespace, dst: str, client: object) -> None:
    from ..store.zarr_store import ImsStore
    from ..write.convert import to_nifti, to_ome_zarr
    from ..write.sources import open_source, path_kind
    from ..write.spots import read_spots_csv
    from ..write.writer import write_ims

    if args.image is not None:  # one image of a file of several (checked by _direction: an .ims input)
        args.input = ImsStore(args.input, image=args.image)
        args.inputs = [args.input]  # (_direction refused --image with several inputs)
    elif dst == "ims" and path_kind(args.input) == "ims" and (store := ImsStore(args.input)).is_collection:
        if args.spots:
            raise _UsageError(f"--spots applies to one image; {args.input} holds several (pick one with --image)")
        _ims_of_images(store, args, client)
        return
    if dst == "ims":
        names = [name for _, name in args.spots or []]
        if len(set(names)) != len(names):
            raise _UsageError(f"--spots names an object twice: {names} (give each its own :NAME)")
        edges = {name: path for path, name in args.spot_edges or []}
        unknown = sorted(set(edges) - set(names))
        if unknown:
            raise _UsageError(f"--spot-edges names {unknown}, which no --spots names (its names: {names})")
        spots = {
            name: (read_spots_csv(path), read_spots_csv(edges[name]) if name in edges else None)
            for path, name in args.spots or []
        }
        sources = [open_source(i, level=args.level, series=args.series, axes=args.axes) for i in args.inputs]
        write_ims(
            sources if len(sources) > 1 else sources[0],
            args.output,
            join=args.join or "channels",
            spots=spots or None,
            voxel_size=args.voxel_size,
            compression=args.compression,
            compression_level=args.compression_level,
            overwrite=args.overwrite,
            progress=not args.quiet,
            client=client,
        )
    elif dst == "zarr":
        to_ome_zarr(
            args.input,
            args.output,
            ngff_version=args.ngff,
            codec=args.codec,
            chunks_per_shard=args.chunks_per_shard,
            overwrite=args.overwrite,
            progress=not args.quiet,
            client=client,
        )
    else:
        to_nifti(
            args.input,
            args.output,
            level=args.level,
            timepoint=None if args.timepoint == "all" else args.timepoint,
            channel=args.channel,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )


def _ims_of_images(store: ImsStore, args: argparse.Namespace, client: object) -> None:
    """Every image of an .ims of several into a new one (each at its own position)."""
    from ..write.images import write_images
    from ..write.sources import open_source

    sources = [open_source(store.image_store(entry.index), level=args.level) for entry in store.images]
    write_images(
        sources,
        args.output,
        compression=args.compression,
        compression_level=args.compression_level,
        overwrite=args.overwrite,
        progress=not args.quiet,
        client=client,
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serve import Limits, make_server, neuroglancer_state, viewer_links

    if not 0 <= args.port <= 65535:
        raise _UsageError(f"--port must be a port number from 0 to 65535, not {args.port}")
    if not args.idle_timeout > 0:  # (NaN too)
        raise _UsageError(f"--idle-timeout must be a number of seconds > 0, not {args.idle_timeout:g}")
    for flag, value in (("--max-open", args.max_open), ("--max-request-mib", args.max_request_mib)):
        if value < 1:
            raise _UsageError(f"{flag} must be at least 1, not {value}")
    request_bytes = args.max_request_mib * 1024 * 1024
    server = make_server(
        args.file,
        host=args.host,
        port=args.port,
        ngff=args.ngff,
        allow_origins=[origin for origin in args.allow_origin if origin],
        allow_hosts=args.allow_host,
        follow_links=args.follow_links,
        idle_timeout=args.idle_timeout,
        image=args.image,
        max_open=args.max_open,
        limits=Limits(request_bytes=request_bytes, memory_bytes=max(4 * request_bytes, 512 * 1024 * 1024)),
    )
    try:
        if server.folder is not None:
            for line in server.folder.banner(server.url, print_state=args.print_state):
                print(line, flush=True)
            print("press Ctrl-C to stop", flush=True)
            server.serve_forever()
            return 0
        if server.store.is_collection:
            _print_collection(server, args)
            server.serve_forever()
            return 0
        layout = server.store.layout
        print(f"serving {args.file} as OME-NGFF {args.ngff} at {server.url}", flush=True)
        # short links (the state in full is kilobytes of JSON, percent-encoded into the link)
        for name, link in viewer_links(server.url, args.ngff).items():
            print(f"  {name}: {link}", flush=True)
        if args.print_state:
            state = neuroglancer_state(layout, server.url, args.ngff)
            print(f"  neuroglancer state (for neuroglancer.Viewer().set_state): {json.dumps(state)}", flush=True)
            link = viewer_links(server.url, args.ngff, layout)["neuroglancer"]
            print(f"  neuroglancer, each channel in its colour: {link}", flush=True)
        else:
            print("  (--print-state: the full neuroglancer state, each channel in its colour)", flush=True)
        print("press Ctrl-C to stop", flush=True)
        server.serve_forever()
    finally:
        server.server_close()  # and the file
    return 0


def _print_collection(server: ImsHTTPServer, args: argparse.Namespace) -> None:
    """What `serve` says about a file of several images: the collection, then each image's address."""
    from .serve import viewer_links

    entries = server.store.images
    print(
        f"serving {args.file} as OME-NGFF {args.ngff} at {server.url}: {len(entries)} images "
        "(bioformats2raw.layout collection)",
        flush=True,
    )
    for entry in entries:
        if entry.error is not None:
            print(f"  image {entry.index}: not served: {entry.error.reason}", flush=True)
            continue
        url = f"{server.url.rstrip('/')}/{entry.index}"
        print(f"  image {entry.index}: {url}", flush=True)
        layout = entry.layout if args.print_state else None
        for name, link in viewer_links(url, args.ngff, layout).items():
            print(f"    {name}: {link}", flush=True)
    print("press Ctrl-C to stop", flush=True)


def _cmd_refs(args: argparse.Namespace) -> int:
    from ..store.refs import write_references

    out = write_references(
        args.file,
        args.output,
        zarr_format=3 if args.ngff == "0.5" else 2,
        url=args.url,
        overwrite=args.overwrite,
        image=args.image,
    )
    print(f"wrote {out}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from ..store.validate import validate

    problems = validate(args.file, deep=args.deep, progress=args.deep and not args.quiet)
    for problem in problems:
        print(problem)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    sound = errors == 0 and (warnings == 0 or not args.strict)
    print(f"{args.file}: {'sound' if sound else 'not sound'} ({errors} error(s), {warnings} warning(s))")
    return 0 if sound else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.examples is not None:
        if args.output is not None:
            raise _UsageError("--examples writes the example files; --output applies to the demo alone")
        from ..write.examples import make_example_files

        # demo's --overwrite, where given, replaces them
        for made in make_example_files(args.examples, overwrite=getattr(args, "overwrite", False)):
            print(f"wrote {made}")
        return 0
    import numpy as np
    import zarr

    from ..store.zarr_store import ImsStore
    from ..write.synthetic import microscopy_volume
    from ..write.writer import write_ims
    from .summary import format_layout, format_tree

    with tempfile.TemporaryDirectory(prefix="ims-store-demo-") as tmp:
        path = Path(args.output) if args.output else Path(tmp) / "example.ims"
        print(f"1. Writing a small Imaris file with 3 channels, 2 time points and a resolution pyramid: {path}")
        # (t, c, z, y, x): each channel and time point its own cells, as a 12-bit camera sees them
        data = np.stack(
            [
                np.stack(
                    [
                        microscopy_volume(
                            (32, 256, 256), "uint16", seed=10 * t + c, blobs=12, noise=0.01, peak=4000, background=100
                        )
                        for c in range(3)
                    ]
                )
                for t in range(2)
            ]
        )
        write_ims(
            data,
            path,
            axes="tczyx",
            voxel_size=(0.5, 0.1625, 0.1625),
            origin=(-1.75, 10.08125, 20.08125),
            channel_names=["DAPI", "GFP", "mCherry"],
            channel_colors=[(0.0, 0.4, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.3)],
            time_stamps=[0.0, 1.5],
            overwrite=args.overwrite,
        )
        print()
        print("2. What the file holds (ims-store info):")
        store = ImsStore(path, zarr_format=args.zarr_format)
        print(format_layout(store.layout))
        print()
        print(f"3. The same file opened with zarr.open_group(ImsStore(path), mode='r') (zarr v{args.zarr_format}):")
        root = zarr.open_group(store, mode="r")
        arrays = {name: arr for name, arr in root.arrays()}
        print(format_tree(dict(root.attrs), arrays, encoding=sys.stdout.encoding))
        print()
        level = len(store.layout.levels) - 1
        lazy = store.to_dask(level, timepoint=1, channel=2)
        print(f"4. Lazily through dask: level {level}, time point 1, channel 2 -> {lazy.shape} {lazy.dtype}")
        import h5py

        with h5py.File(path, "r") as f:
            size = store.layout.level(level).size
            expected = f[store.layout.data_path(level, 1, 2)][: size[0], : size[1], : size[2]]
        same = bool(np.array_equal(lazy.compute(), expected))
        print(f"   equal to h5py's read of the same voxels: {same}; mean intensity {float(lazy.mean()):.1f}")
        store.close()
        return 0 if same else 1


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help, with the "examples" epilog kept one command to a line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _examples(*lines: str) -> str:
    """A command's "examples" epilog."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _version() -> str:
    """This distribution's version (the package's ``__version__``, which fronts may not import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ims-store")
    except PackageNotFoundError:  # pragma: no cover - a source tree never installed
        return "0+unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ims-store",
        description="Imaris (.ims) files as virtual OME-Zarr images.",
        epilog=_examples("ims-store demo", "ims-store info cells.ims", "ims-store COMMAND --help"),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"ims-store {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser(
        "info",
        help="show what an .ims file holds",
        description="Show levels, sizes, chunks, "
        "compression, data type, channels, time points, voxel size, origin and unit of an .ims file.",
        epilog=_examples(
            "ims-store info cells.ims", "ims-store info cells.ims --json", "ims-store info tiles.ims --image 1"
        ),
        formatter_class=_HelpFormatter,
    )
    info.add_argument("file", metavar="FILE", type=_path_argument, help="the .ims file (or a URL)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--image", type=int, metavar="K", help="only image K of a file of several (default: every image)")
    info.set_defaults(func=_cmd_info)

    objects = sub.add_parser(
        "objects",
        help="list or export an .ims file's analysis objects (spots, tracks, surfaces, statistics)",
        description="List the analysis objects Imaris stored in an .ims file (Spots, Surfaces and their Tracks and "
        "Statistics), or export them: tables as CSV (Parquet when pyarrow is installed), surfaces as PLY meshes.",
        epilog=_examples(
            "ims-store objects tracks.ims",
            "ims-store objects tracks.ims --json",
            "ims-store objects tracks.ims --export tables",
        ),
        formatter_class=_HelpFormatter,
    )
    objects.add_argument("file", metavar="FILE", type=_path_argument, help="the .ims file (or a URL)")
    objects.add_argument("--json", action="store_true", help="print the list as JSON")
    objects.add_argument(
        "--export", metavar="DIR", type=_path_argument, help="write every object into this folder (made if missing)"
    )
    objects.add_argument(
        "--format", choices=("auto", "csv", "parquet"), default="auto", help="tables' format (default: auto)"
    )
    objects.add_argument("--overwrite", action="store_true", help="replace files the export would write")
    objects.add_argument("--quiet", action="store_true", help="no progress bar")
    objects.set_defaults(func=_cmd_objects)

    convert = sub.add_parser(
        "convert",
        help="convert between .ims, OME-Zarr and NIfTI, or TIFF to .ims (direction from the names)",
        description="Convert .ims to OME-Zarr (.zarr, .ome.zarr) or NIfTI (.nii, .nii.gz), or OME-Zarr, NIfTI, "
        "TIFF / OME-TIFF (.tif, .tiff) and .ims to .ims. The direction comes from the file names.",
        epilog=_examples(
            "ims-store convert cells.ims cells.ome.zarr",
            "ims-store convert cells.ims cells.ome.zarr --ngff 0.4 --codec copy",
            "ims-store convert cells.ims gfp.nii.gz --channel 1 --level 1",
            "ims-store convert stack.ome.tif stack.ims --voxel-size 2,0.5,0.5",
        ),
        formatter_class=_HelpFormatter,
    )
    convert.add_argument(
        "input",
        metavar="INPUT",
        type=_path_argument,
        help="the file to convert (.ims, .zarr, .nii, .nii.gz, .tif, .tiff)",
    )
    convert.add_argument(
        "output",
        nargs="+",
        type=_path_argument,
        metavar="[INPUT ...] OUTPUT",
        help="more inputs (to .ims: their channels one after another), then the file to write "
        "(.ims, .zarr, .ome.zarr, .nii, .nii.gz)",
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing output")
    convert.add_argument("--quiet", action="store_true", help="no progress bar")
    convert.add_argument(
        "--image",
        type=int,
        metavar="K",
        help="convert image K of an .ims of several images (default: every image; to OME-Zarr a "
        "bioformats2raw.layout collection)",
    )
    convert.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on a dask.distributed cluster (e.g. tcp://10.0.0.5:8786): workers read and compress; "
        "they must see the output's file system (needs the 'distributed' extra)",
    )
    # direction options default to None (see _DIRECTION_OPTIONS): given for another direction, they are refused
    group = convert.add_argument_group("to OME-Zarr")
    group.add_argument(
        "--ngff", choices=("0.5", "0.4"), help="OME-NGFF version: 0.5 on zarr v3 (default), 0.4 on zarr v2"
    )
    group.add_argument(
        "--codec",
        choices=("auto", "copy", "zstd", "zlib", "none"),
        help="copy: the stored chunks as they are, where zarr can declare them; auto (default): copy for 0.4, "
        "zstd for 0.5",
    )
    group.add_argument(
        "--chunks-per-shard",
        type=_shard_arg,
        metavar="Z,Y,X",
        help="NGFF 0.5 only: group this many chunks of each level into one shard file (zarr v3 sharding)",
    )
    group = convert.add_argument_group("to NIfTI (--level also picks the source level for .ims output)")
    group.add_argument("--level", type=int, metavar="N", help="resolution level (default 0)")
    group.add_argument("--timepoint", type=_timepoint_arg, metavar="T", help="time point index, or 'all' (default 0)")
    group.add_argument("--channel", type=int, metavar="C", help="channel index (default 0)")
    group = convert.add_argument_group("to .ims")
    group.add_argument("--compression", choices=("gzip", "lz4", "none"), help="chunk compression (default gzip)")
    group.add_argument(
        "--compression-level", type=_gzip_level_arg, metavar="N", help="gzip level 0-9 (default 2, as Imaris)"
    )
    group.add_argument("--voxel-size", type=_voxel_arg, metavar="Z,Y,X", help="voxel size, replacing the source's")
    group.add_argument("--series", type=int, metavar="N", help="TIFF: the image of a multi-series file (default 0)")
    group.add_argument(
        "--axes", metavar="AXES", help="TIFF: what its axes are, where the file does not say (e.g. tzyx)"
    )
    group.add_argument(
        "--join",
        choices=("channels", "time"),
        help="several inputs: their channels one after another (default), or their time points",
    )
    group.add_argument(
        "--spots",
        action="append",
        type=_spots_arg,
        metavar="CSV[:NAME]",
        help="add a Spots object from a CSV table (id, t, x, y, z, radius[, track_id]); NAME defaults to the "
        "file's stem; repeatable",
    )
    group.add_argument(
        "--spot-edges",
        action="append",
        type=_spots_arg,
        metavar="CSV[:NAME]",
        help="the track edges (track_id, spot_a, spot_b) of the --spots object NAME, for tracks that branch",
    )
    convert.set_defaults(func=_cmd_convert)

    serve = sub.add_parser(
        "serve",
        help="serve an .ims (or a folder of them) over HTTP as OME-Zarr",
        description="Serve an .ims file as a virtual OME-Zarr over HTTP for web viewers and remote zarr clients; "
        "or a folder: each .ims under it at its own path (/sub/cells.ims/), with an index at / (HTML, or JSON).",
        epilog=_examples(
            "ims-store serve cells.ims", "ims-store serve cells.ims --port 8080 --ngff 0.4", "ims-store serve /data/lab"
        ),
        formatter_class=_HelpFormatter,
    )
    serve.add_argument("file", metavar="PATH", type=_path_argument, help="an .ims file, or a folder of them")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address to listen on: 127.0.0.1 (default, this machine only), ::1, 0.0.0.0 or :: (every address)",
    )
    serve.add_argument(
        "--port", type=int, default=8000, metavar="N", help="port to listen on (default 8000; 0: any free one)"
    )
    serve.add_argument(
        "--ngff", choices=("0.5", "0.4"), default="0.5", help="0.5: OME-NGFF on zarr v3 (default); 0.4: on zarr v2"
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also let web pages from ORIGIN (https://host[:port]) read the server; '*': any page. Repeatable. "
        "By default only neuroglancer's and vizarr's pages and pages of this machine (localhost) may",
    )
    # the option --allow-origin replaced (its '' meant "no CORS header", now the default for other pages)
    serve.add_argument("--cors", dest="allow_origin", action="append", help=argparse.SUPPRESS)
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests addressed to NAME (this machine's name on the network; '*': any). Repeatable. "
        "By default only the address listened on and localhost are (421 otherwise)",
    )
    serve.add_argument(
        "--print-state",
        action="store_true",
        help="also print the full neuroglancer state (channel colours and ranges) and its link",
    )
    serve.add_argument(
        "--image", type=int, metavar="K", help="serve image K of a file of several alone (default: every image)"
    )
    serve.add_argument(
        "--follow-links",
        action="store_true",
        help="also serve data kept in other files that HDF5 external links and virtual datasets name, when "
        "those files lie inside the folder served (for one file: its own folder); nothing outside is ever "
        "opened, and external raw data files are never read (by default all of these are refused)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a folder's files are opened on first request and closed after this long unused, "
        "so that another program may replace them (default 30)",
    )
    serve.add_argument(
        "--max-open",
        type=int,
        default=32,
        metavar="N",
        help="a folder's files open at once at most; the least recently used is closed first (default 32)",
    )
    serve.add_argument(
        "--max-request-mib",
        type=int,
        default=128,
        metavar="MIB",
        help="memory one request may take (twice its chunk's decoded size); larger chunks are refused with "
        "500 (default 128)",
    )
    serve.set_defaults(func=_cmd_serve)

    refs = sub.add_parser(
        "refs",
        help="write kerchunk-style references to every chunk of an .ims",
        description="Write zero-copy references (kerchunk format, version 1) mapping every chunk to its byte range "
        "in the .ims, so that zarr reads the file through fsspec's reference filesystem without ims_store.",
        epilog=_examples(
            "ims-store refs cells.ims -o cells.json",
            "ims-store refs cells.ims -o cells.json --url https://example.org/data/cells.ims",
        ),
        formatter_class=_HelpFormatter,
    )
    refs.add_argument("file", metavar="FILE", type=_path_argument, help="the .ims file (or a URL)")
    refs.add_argument(
        "-o", "--output", required=True, metavar="FILE", type=_path_argument, help="the JSON file to write"
    )
    refs.add_argument("--ngff", choices=("0.4", "0.5"), default="0.4", help="0.4: zarr v2 (default); 0.5: zarr v3")
    refs.add_argument(
        "--url", metavar="URL", help="the address the references give the file (default: its absolute path)"
    )
    refs.add_argument("--overwrite", action="store_true", help="replace an existing output")
    refs.add_argument(
        "--image", type=int, metavar="K", help="image K of a file of several alone (default: the whole collection)"
    )
    refs.set_defaults(func=_cmd_refs)

    validate = sub.add_parser(
        "validate",
        help="check an .ims against what Imaris needs",
        description="List every problem of an .ims file: required groups and attributes, attribute encoding, "
        "pyramid, data sets, histograms, thumbnail. Exit status 0 when the file is sound, 1 when not.",
        epilog=_examples("ims-store validate copy.ims", "ims-store validate copy.ims --deep --strict"),
        formatter_class=_HelpFormatter,
    )
    validate.add_argument("file", metavar="FILE", type=_path_argument, help="the .ims file (or a URL)")
    validate.add_argument("--strict", action="store_true", help="count warnings as errors")
    validate.add_argument(
        "--deep", action="store_true", help="also decode every chunk (reads the whole file) and name each that fails"
    )
    validate.add_argument("--quiet", action="store_true", help="no progress bar (--deep shows one on a terminal)")
    validate.set_defaults(func=_cmd_validate)

    demo = sub.add_parser(
        "demo",
        help="make an example .ims and show it as OME-Zarr",
        description="Write a small "
        "multi-channel, multi-level .ims file, open it through ImsStore and print the virtual "
        "OME-Zarr tree; or, with --examples, make the example files the documentation opens.",
        epilog=_examples("ims-store demo", "ims-store demo --output example.ims", "ims-store demo --examples ."),
        formatter_class=_HelpFormatter,
    )
    demo.add_argument(
        "--output",
        metavar="FILE",
        type=_path_argument,
        help="keep the example file at this path (default: a temporary directory)",
    )
    demo.add_argument(
        "--examples",
        metavar="DIR",
        type=_path_argument,
        help="instead, write the documentation's example files (cells.ims, tracks.ims, surfaces.ims, tiles.ims) "
        "into DIR (made if missing; existing ones are refused unless --overwrite)",
    )
    demo.add_argument(
        "--overwrite", action="store_true", help="replace an existing --output file (or --examples files)"
    )
    demo.add_argument(
        "--zarr-format",
        type=int,
        choices=(2, 3),
        default=3,
        help="3: OME-NGFF 0.5 on zarr v3 (default); 2: OME-NGFF 0.4 on zarr v2",
    )
    demo.set_defaults(func=_cmd_demo)
    return parser


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe(err: Exception) -> str:
    """An unexpected error as one line: an OS error as ``PATH: what the system said``, a full
    memory as such, anything else by its type and message."""
    if isinstance(err, OSError) and err.strerror:
        where = ", ".join(os.fspath(p) for p in (err.filename, err.filename2) if p is not None)
        return f"{where}: {err.strerror}" if where else err.strerror
    if isinstance(err, MemoryError):
        return "out of memory" + (f" ({err})" if str(err) else "")
    return _one_line(f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so that it unwinds the same way."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """While a command runs, Ctrl-C (SIGINT) and SIGTERM (``kill``, a job scheduler's stop)
    stop it and remove the output under way: the handlers raise, as Python's own SIGINT handler
    does, and also `request_stop`, because an exception raised inside a ``__del__`` or a weakref
    callback is lost. Only the main thread can install handlers (a `main` called from another
    thread keeps the process's); Windows has both signals, SIGTERM only from within the
    process."""
    from ..access.outputs import request_stop

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        request_stop()
        raise _Terminated() if signum != signal.SIGINT else KeyboardInterrupt()

    previous = {}
    for name in ("SIGINT", "SIGTERM"):
        number = getattr(signal, name, None)
        if number is None or signal.getsignal(number) is signal.SIG_IGN:  # (started with it ignored: keep so)
            continue
        with contextlib.suppress(OSError, ValueError):  # (an embedding that owns the signals)
            previous[number] = signal.signal(number, stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        request_stop(False)


def _path_argument(text: str) -> str:
    """A path argument as ims_store opens it: as typed (``C:\\data\\cells.ims``), a ``file:``
    URL as the path it names, any other URL unchanged (see `access.files.location`)."""
    try:
        return location(text)
    except ImsError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _replace_unencodable() -> None:
    """Output a character the console or file cannot encode (a path in another script, on
    Windows' cp1252) as ``?`` rather than failing with a ``UnicodeEncodeError``."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)  # a TextIOWrapper; not a test's capture
        if reconfigure is not None and getattr(stream, "errors", "strict") == "strict":
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (``ims-store info cells.ims``)."""
    args = _parser().parse_args(argv)
    _replace_unencodable()
    try:
        with _stop_on_signals():
            status = int(args.func(args))
        # flush here, inside the try: a reader that went away (``| head``) shows up now
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # the Python docs' recipe (library/signal, "Note on SIGPIPE"): point stdout at devnull so
        # that the flush at exit does not raise again, and exit 1 without a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        with contextlib.suppress(OSError, ValueError):  # a stdout without a descriptor has nothing to flush
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except DestinationExistsError as err:
        if args.debug:
            raise
        # the library's message names its keyword; here the user typed options
        print(
            f"ims-store {args.command}: error: {err.path}: exists already; pass --overwrite to replace it",
            file=sys.stderr,
        )
        return 2
    except (ImsError, _UsageError, ValueError) as err:
        if args.debug:
            raise
        print(f"ims-store {args.command}: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except Exception as err:  # anything else (the OS, memory, a library) is one line too, never a traceback
        if args.debug:
            raise
        print(f"ims-store {args.command}: error: {_describe(err)} (--debug shows the traceback)", file=sys.stderr)
        return 2
    except _Terminated:
        print(f"ims-store {args.command}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"ims-store {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
