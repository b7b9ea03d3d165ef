"""A real browser renders what `serve` exposes: neuroglancer in headless Chromium.

Selected with ``pytest -m browser`` (the ``browser`` extra and Debian's ``chromium``; `.ci/run`
installs both). Screenshots (and the measured correlations) are kept in
``test-artifacts/neuroglancer/`` for a person to look at.

The state under test is the one `serve` prints, unchanged: its z position, its channel colours,
its contrast. Expectations come from h5py's reads of the file (data, ``DataSetInfo`` colours and
colour ranges), never from ims_store code.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import h5py_level

from ims_store.fronts.serve import make_server, neuroglancer_state
from ims_store.write.synthetic import make_example_ims

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "neuroglancer"
CHROMIUM = "/usr/bin/chromium"
SWIFTSHADER = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]

# an odd number of z slices: the middle one is unambiguous (slice 4 of 0..8)
SHAPE = (9, 96, 128)
# neither red nor green, the colours a two-channel file gets when its own are ignored
COLORS = [(0.0, 1.0, 0.0), (1.0, 0.0, 1.0)]


def _chirp(n: int, cycles: float, phase: float) -> np.ndarray:
    """A sine whose frequency grows along the axis: no mirror symmetry, and chirps of different
    rates hardly correlate with each other."""
    u = (np.arange(n) + 0.5) / n
    return np.sin(2 * np.pi * cycles * u**2 + phase)


def _pattern(t: int, c: int) -> np.ndarray:
    """A chirp along x plus a reversed chirp along y, both with a rate that changes with z and
    with the channel: every z slice, every channel, and either flip of a slice is distinguishable."""
    nz, ny, nx = SHAPE
    out = np.empty(SHAPE)
    for z in range(nz):
        along_x = _chirp(nx, 2 + 1.5 * z + 0.5 * c, 0.3 + c)
        along_y = _chirp(ny, 1.5 + 1.2 * z + 0.7 * c, 1.1 + 2 * c)[::-1]
        out[z] = 128 + 50 * along_x[None, :] + 50 * along_y[:, None]
    return out.astype(np.uint8)


@pytest.fixture(scope="module")
def pattern_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_example_ims(
        tmp_path_factory.mktemp("browser") / "pattern.ims",
        data=_pattern,
        shape=SHAPE,
        dtype="uint8",
        channels=2,
        timepoints=1,
        channel_colors=COLORS,
        levels=1,
    )


def _h5py_channel_display(path: Path, channel: int) -> tuple[np.ndarray, tuple[float, float]]:
    """The channel's ``Color`` (r g b in 0..1) and ``ColorRange`` (min max) as h5py reads them."""
    with h5py.File(path, "r") as f:
        attrs = f[f"DataSetInfo/Channel {channel}"].attrs
        color = np.array([float(v) for v in b"".join(attrs["Color"]).decode().split()])
        lo, hi = (float(v) for v in b"".join(attrs["ColorRange"]).decode().split())
    return color, (lo, hi)


def _render(path: Path, ngff: str, name: str, only_channel: int | None = None) -> tuple[np.ndarray, dict]:
    """Screenshot (RGB, float) of neuroglancer showing `serve`'s state for ``path``.

    ``only_channel``: keep that channel's layer alone, tinted white (for a plain intensity).
    """
    import neuroglancer
    from PIL import Image
    from playwright.sync_api import sync_playwright

    server = make_server(path, port=0, ngff=ngff)  # type: ignore[arg-type]
    server.serve_in_thread()
    try:
        neuroglancer.set_server_bind_address("127.0.0.1")
        viewer = neuroglancer.Viewer()
        state = neuroglancer_state(server.store.layout, server.url, ngff)  # type: ignore[arg-type]
        if only_channel is not None:
            layer = state["layers"][only_channel]
            state["layers"] = [dict(layer, shaderControls={**layer["shaderControls"], "color": "#ffffff"})]
        state.update(showAxisLines=False, showScaleBar=False, showDefaultAnnotations=False)
        viewer.set_state(neuroglancer.ViewerState(state))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=SWIFTSHADER)
            page = browser.new_page(viewport={"width": 800, "height": 800})
            page.goto(viewer.get_viewer_url())
            shot = ARTIFACTS / f"{name}-ngff{ngff}.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            previous = None
            for _ in range(30):  # until two screenshots a second apart agree: the data has arrived
                time.sleep(1.0)
                page.screenshot(path=str(shot))
                current = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
                if previous is not None and np.array_equal(current, previous) and current.std() > 5:
                    break
                previous = current
            browser.close()
        return current, state
    finally:
        server.shutdown()
        server.server_close()


def _panel(rgb: np.ndarray) -> np.ndarray:
    """The rendered data: the largest region that is not neuroglancer's grey panel background."""
    body = rgb[60:-10, 10:-10]  # below the top bar and layer tabs
    gray = body.mean(axis=2)
    background = np.median(gray[:, :8])
    rows = np.where((np.abs(gray - background) > 3).mean(axis=1) > 0.3)[0]
    cols = np.where((np.abs(gray - background) > 3).mean(axis=0) > 0.3)[0]
    return body[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _voxels(n: int, pixels: int) -> np.ndarray:
    """The voxel index under the centre of each of ``pixels`` pixels spanning ``n`` voxels."""
    return np.minimum((np.arange(pixels) + 0.5) * n / pixels, n - 1).astype(int)


def _correlations(panel: np.ndarray, plane: np.ndarray) -> dict[str, float]:
    """Correlation of a rendered 2-D panel with an expected (y, x) plane along the pixel row
    through the centre of voxel row ny // 2 and the pixel column through voxel column nx // 2."""
    (h, w), (ny, nx) = panel.shape, plane.shape
    iy, ix = ny // 2, nx // 2
    row = panel[int((iy + 0.5) * h / ny)]
    col = panel[:, int((ix + 0.5) * w / nx)]
    return {
        "row": float(np.corrcoef(row, plane[iy][_voxels(nx, w)])[0, 1]),
        "column": float(np.corrcoef(col, plane[:, ix][_voxels(ny, h)])[0, 1]),
    }


@pytest.fixture(scope="module", params=["0.5", "0.4"])
def rendered_pattern(request: pytest.FixtureRequest, pattern_file: Path) -> tuple[str, np.ndarray, dict]:
    """One render per NGFF version of the pattern file, in `serve`'s state (its own colours)."""
    started = time.perf_counter()
    rgb, state = _render(pattern_file, request.param, "pattern")
    state["render_seconds"] = time.perf_counter() - started
    return request.param, rgb, state


def _channel_intensity(panel: np.ndarray, color: np.ndarray) -> np.ndarray:
    """The rendered intensity of the channel tinted ``color`` (projection on that colour; the
    two colours of the pattern file are orthogonal, so the other channel contributes nothing)."""
    return panel @ color / (color @ color)


def test_neuroglancer_renders_the_middle_slice_unflipped(pattern_file: Path, rendered_pattern) -> None:
    ngff, rgb, state = rendered_pattern
    panel = _panel(rgb)
    assert abs(panel.shape[1] / panel.shape[0] - 128 / 96) < 0.05  # x-y plane, physical aspect
    report: dict[str, object] = {"render_seconds": state["render_seconds"]}
    for c in range(2):
        color, _ = _h5py_channel_display(pattern_file, c)
        rendered = _channel_intensity(panel, color)
        volume = h5py_level(pattern_file, 0, 0, c).astype(np.float64)
        middle = volume[SHAPE[0] // 2]
        right = _correlations(rendered, middle)
        wrong = {z: _correlations(rendered, volume[z]) for z in range(SHAPE[0]) if z != SHAPE[0] // 2}
        y_flipped = _correlations(rendered, middle[::-1])
        x_flipped = _correlations(rendered, middle[:, ::-1])
        report[f"channel {c}"] = {
            "middle slice": right,
            "slice 0": wrong[0],
            "best other slice": max(min(v.values()) for v in wrong.values()),
            "y-flipped middle slice": y_flipped,
            "x-flipped middle slice": x_flipped,
        }
        # the middle slice, along both a row and a column
        assert right["row"] > 0.95 and right["column"] > 0.95, (c, right)
        # every other slice is clearly worse along the row or the column (a wrong z)
        for z, corr in wrong.items():
            assert min(corr.values()) < min(right.values()) - 0.4, (c, z, corr, right)
        # a y-flip shows in the column, an x-flip in the row
        assert y_flipped["column"] < right["column"] - 0.4, (c, y_flipped, right)
        assert x_flipped["row"] < right["row"] - 0.4, (c, x_flipped, right)
    (ARTIFACTS / f"pattern-ngff{ngff}.json").write_text(json.dumps({"correlations": report, "state": state}, indent=1))


def test_neuroglancer_renders_the_channel_colours(pattern_file: Path, rendered_pattern) -> None:
    """Each screen component is what the ``.ims`` colours and colour ranges predict:
    ``sum over channels of Color * clip((value - min) / (max - min))``, times the layer opacity
    (neuroglancer's default 0.5 when the state sets none)."""
    ngff, rgb, state = rendered_pattern
    panel = _panel(rgb)
    h, w = panel.shape[:2]
    ys, xs = _voxels(SHAPE[1], h), _voxels(SHAPE[2], w)
    expected = np.zeros((h, w, 3))
    for c in range(2):
        color, (lo, hi) = _h5py_channel_display(pattern_file, c)
        middle = h5py_level(pattern_file, 0, 0, c)[SHAPE[0] // 2].astype(np.float64)
        normalized = np.clip((middle - lo) / (hi - lo), 0, 1)[np.ix_(ys, xs)]
        opacity = state["layers"][c].get("opacity", 0.5)
        expected += 255 * opacity * normalized[..., None] * color
    assert np.array_equal(np.array([_h5py_channel_display(pattern_file, c)[0] for c in range(2)]), np.array(COLORS))
    for k, name in enumerate("RGB"):
        corr = float(np.corrcoef(panel[..., k].ravel(), expected[..., k].ravel())[0, 1])
        assert corr > 0.95, (ngff, name, corr)
    error = np.abs(panel - expected)
    # a few pixels on voxel borders may take the neighbour's value; the rest agree to rounding
    assert np.median(error) <= 1.0 and np.percentile(error, 95) <= 3.0, (ngff, np.percentile(error, [50, 95, 99]))
    # the dominant screen component follows the brighter channel: green where channel 0 is
    # bright and channel 1 dark, magenta (red and blue) where it is the other way round
    g_only = (expected[..., 1] > 80) & (expected[..., 0] < 20)
    m_only = (expected[..., 0] > 80) & (expected[..., 1] < 20)
    assert g_only.sum() > 100 and m_only.sum() > 100
    assert (panel[g_only].argmax(axis=1) == 1).mean() > 0.95
    assert (panel[m_only][:, [0, 2]].min(axis=1) > panel[m_only][:, 1] + 50).mean() > 0.95


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_neuroglancer_renders_a_real_file(real_files: dict[str, Path], ngff: str) -> None:
    path = real_files["PtK2Cell.ims"]
    rgb, state = _render(path, ngff, "ptk2cell-microtubules", only_channel=1)
    panel = _panel(rgb).mean(axis=2)
    _, (lo, hi) = _h5py_channel_display(path, 1)
    level = np.clip((h5py_level(path, 0, 0, 1).astype(np.float64) - lo) / (hi - lo), 0, 1)
    # 32 slices: neuroglancer shows slice 16 (it places NGFF voxel centres at the translation,
    # so slice i covers ExtMin + [i, i + 1) voxels, and `serve` opens on ExtMin + 16.5 voxels)
    middle = level.shape[0] // 2
    by_slice = [_correlations(panel, plane) for plane in level]
    right = by_slice[middle]
    y_flipped = _correlations(panel, level[middle][::-1])
    x_flipped = _correlations(panel, level[middle][:, ::-1])
    report = {"middle slice": right, "slice 0": by_slice[0], "y-flipped": y_flipped, "x-flipped": x_flipped}
    (ARTIFACTS / f"ptk2cell-ngff{ngff}.json").write_text(json.dumps({"correlations": report, "state": state}, indent=1))
    assert right["row"] > 0.95 and right["column"] > 0.95, right
    # neighbouring slices of a real cell look alike: the right one must still be the best
    assert int(np.argmax([min(c.values()) for c in by_slice])) == middle, by_slice
    assert y_flipped["column"] < right["column"] - 0.4, (y_flipped, right)
    assert x_flipped["row"] < right["row"] - 0.4, (x_flipped, right)
