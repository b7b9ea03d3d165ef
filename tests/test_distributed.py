"""dask.distributed: a LocalCluster of 2 worker processes converts files both ways, equal to the local path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dask
import h5py
import numpy as np
import pytest
import zarr
from helpers import assert_group_matches_h5py, h5py_level

from ims_store import ImsError, to_ome_zarr, write_ims
from ims_store.errors import ClusterError
from ims_store.fronts.cli import main
from ims_store.write.synthetic import make_example_ims, microscopy_volume

distributed = pytest.importorskip("distributed", reason="dask.distributed is in the test extra")


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, worker_dashboard_address=None
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_example_ims(
        tmp_path_factory.mktemp("cluster") / "source.ims",
        shape=(24, 200, 136),
        channels=2,
        timepoints=2,
        threshold_voxels=100_000,
    )


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _datasets(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an .ims (data, histograms, thumbnail), read with h5py."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _assert_same_ims(got: Path, want: Path) -> None:
    a, b = _datasets(got), _datasets(want)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_ims_to_ome_zarr_on_the_cluster_equals_the_local_path(
    client: distributed.Client, source: Path, tmp_path: Path, ngff: str
) -> None:
    local = to_ome_zarr(source, tmp_path / "local.zarr", ngff_version=ngff)  # type: ignore[arg-type]
    remote = to_ome_zarr(source, tmp_path / "cluster.zarr", ngff_version=ngff, client=client)  # type: ignore[arg-type]
    assert _files(remote) == _files(local)
    assert_group_matches_h5py(zarr.open_group(remote, mode="r"), source)
    assert not list(tmp_path.glob(".*.part"))


def test_ome_zarr_to_ims_on_the_cluster_equals_the_local_path(
    client: distributed.Client, source: Path, tmp_path: Path
) -> None:
    zarr_copy = to_ome_zarr(source, tmp_path / "copy.zarr")
    local = write_ims(zarr_copy, tmp_path / "local.ims")
    remote = write_ims(zarr_copy, tmp_path / "cluster.ims", client=client)
    _assert_same_ims(remote, local)
    for t in range(2):
        for c in range(2):
            np.testing.assert_array_equal(h5py_level(remote, 0, t, c), h5py_level(source, 0, t, c))


@pytest.mark.parametrize(
    ("dtype", "chunks"),
    [("uint16", None), ("float32", None), ("uint8", (3, 64, 64))],  # odd z blocks: slabs must stay even
)
def test_arrays_write_on_the_cluster_as_they_do_locally(
    client: distributed.Client, tmp_path: Path, dtype: str, chunks: tuple[int, int, int] | None
) -> None:
    volume = microscopy_volume((37, 300, 211), dtype, seed=5)
    stack = np.stack([volume, volume[::-1]])
    args = {"axes": "czyx", "voxel_size": (2.0, 0.3, 0.3), "chunks": chunks}
    local = write_ims(stack, tmp_path / "local.ims", **args)
    remote = write_ims(stack, tmp_path / "cluster.ims", client=client, **args)
    _assert_same_ims(remote, local)
    with h5py.File(remote, "r") as f:
        assert len(f["DataSet"]) >= 2  # a pyramid was built below the level the workers wrote
    np.testing.assert_array_equal(h5py_level(remote, 0, 0, 1), volume[::-1])


def test_cli_convert_with_a_scheduler_address(client: distributed.Client, source: Path, tmp_path: Path) -> None:
    address = client.scheduler.address
    out = tmp_path / "by-address.ome.zarr"
    assert main(["convert", str(source), str(out), "--scheduler", address, "--quiet"]) == 0
    assert_group_matches_h5py(zarr.open_group(out, mode="r"), source)
    back = tmp_path / "back.ims"
    assert main(["convert", str(out), str(back), "--scheduler", address, "--quiet"]) == 0
    for t in range(2):
        for c in range(2):
            np.testing.assert_array_equal(h5py_level(back, 0, t, c), h5py_level(source, 0, t, c))


def test_an_unreachable_scheduler_is_a_clear_error(source: Path, tmp_path: Path) -> None:
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), pytest.raises(ClusterError) as err:
        write_ims(np.zeros((4, 32, 32), np.uint8), tmp_path / "never.ims", client="tcp://127.0.0.1:1")
    assert isinstance(err.value, ImsError) and "tcp://127.0.0.1:1" in str(err.value)
    assert not list(tmp_path.iterdir())


def test_ome_tiff_to_ims_on_the_cluster_equals_the_local_path(client: distributed.Client, tmp_path: Path) -> None:
    """The workers get the TIFF source pickled and open the file themselves."""
    import tifffile

    data = np.stack([microscopy_volume((24, 120, 96), "uint16", seed=c) for c in range(2)])
    tif = tmp_path / "cells.ome.tif"
    tifffile.imwrite(tif, data, compression="zlib", metadata={"axes": "CZYX", "PhysicalSizeX": 0.5})
    local = write_ims(tif, tmp_path / "local.ims")
    remote = write_ims(tif, tmp_path / "cluster.ims", client=client)
    _assert_same_ims(remote, local)
    np.testing.assert_array_equal(h5py_level(remote, 0, 0, 1), data[1])
