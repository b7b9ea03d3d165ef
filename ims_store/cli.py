"""The ``ims-store`` command line: argument parsing and output only.

    ims-store info FILE.ims [--json]
    ims-store demo [--output FILE.ims] [--zarr-format 2|3]

Bad input gives a one-line error naming the file and a non-zero exit status; ``--debug``
shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .errors import ImsError

__all__ = ["main"]


def _cmd_info(args: argparse.Namespace) -> int:
    from .layout import read_layout
    from .summary import format_layout, layout_summary

    layout = read_layout(args.file)
    if args.json:
        print(json.dumps(layout_summary(layout), indent=2))
    else:
        print(format_layout(layout))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np
    import zarr

    from .store import ImsStore
    from .summary import format_layout, format_tree
    from .synthetic import microscopy_volume
    from .writer import write_ims

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
            overwrite=bool(args.output),
        )
        print()
        print("2. What the file holds (ims-store info):")
        store = ImsStore(path, zarr_format=args.zarr_format)
        print(format_layout(store.layout))
        print()
        print(f"3. The same file opened with zarr.open_group(ImsStore(path), mode='r') (zarr v{args.zarr_format}):")
        root = zarr.open_group(store, mode="r")
        arrays = {name: arr for name, arr in root.arrays()}
        print(format_tree(dict(root.attrs), arrays))
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ims-store", description="Imaris (.ims) files as virtual OME-Zarr images.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser(
        "info",
        help="show what an .ims file holds",
        description="Show levels, sizes, chunks, "
        "compression, data type, channels, time points, voxel size, origin and unit of an .ims file.",
    )
    info.add_argument("file", help="the .ims file")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_cmd_info)

    demo = sub.add_parser(
        "demo",
        help="make an example .ims and show it as OME-Zarr",
        description="Write a small "
        "multi-channel, multi-level .ims file, open it through ImsStore and print the virtual "
        "OME-Zarr tree.",
    )
    demo.add_argument("--output", help="keep the example file at this path (default: a temporary directory)")
    demo.add_argument(
        "--zarr-format",
        type=int,
        choices=(2, 3),
        default=3,
        help="3: OME-NGFF 0.5 on zarr v3 (default); 2: OME-NGFF 0.4 on zarr v2",
    )
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (``ims-store info cells.ims``)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ImsError as err:
        if args.debug:
            raise
        print(f"ims-store {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ims-store {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
