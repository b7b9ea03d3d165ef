"""A real browser renders what `serve` exposes: neuroglancer in headless Chromium.

Selected with ``pytest -m browser`` (the ``browser`` extra and Debian's ``chromium``; `.ci/run`
installs both). Screenshots are kept in ``test-artifacts/neuroglancer/`` for a person to look at.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import h5py_level

from ims_store.serve import make_server, neuroglancer_state
from ims_store.synthetic import make_example_ims

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "neuroglancer"
CHROMIUM = "/usr/bin/chromium"
SWIFTSHADER = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]


def _pattern(t: int, c: int) -> np.ndarray:
    """Stripes along x (period 32 voxels) fading along y, the same in every z plane."""
    y, x = np.mgrid[0:96, 0:128]
    plane = (30 + 200 * (0.5 + 0.5 * np.sin(2 * np.pi * x / 32)) * (y + 20) / 116).astype(np.uint8)
    return np.broadcast_to(plane, (8, 96, 128)).copy()


@pytest.fixture(scope="module")
def pattern_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_example_ims(
        tmp_path_factory.mktemp("browser") / "pattern.ims",
        data=_pattern,
        shape=(8, 96, 128),
        dtype="uint8",
        channels=1,
        timepoints=1,
        channel_colors=[(1.0, 1.0, 1.0)],
        levels=1,
    )


def _render(path: Path, ngff: str, channel: int, name: str) -> tuple[np.ndarray, dict]:
    import neuroglancer
    from PIL import Image
    from playwright.sync_api import sync_playwright

    server = make_server(path, port=0, ngff=ngff)  # type: ignore[arg-type]
    server.serve_in_thread()
    try:
        neuroglancer.set_server_bind_address("127.0.0.1")
        viewer = neuroglancer.Viewer()
        state = neuroglancer_state(server.store.layout, server.url, ngff)  # type: ignore[arg-type]
        # the one channel under test, white, over a plain panel
        state["layers"] = [
            dict(
                state["layers"][channel],
                shaderControls={**state["layers"][channel]["shaderControls"], "color": "#ffffff"},
            )
        ]
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
                current = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
                if previous is not None and np.array_equal(current, previous) and current.std() > 5:
                    break
                previous = current
            browser.close()
        return current, state
    finally:
        server.shutdown()
        server.server_close()


def _panel(gray: np.ndarray) -> np.ndarray:
    """The rendered data: the largest region that is not neuroglancer's grey panel background."""
    body = gray[60:-10, 10:-10]  # below the top bar and layer tabs
    background = np.median(body[:, :8])
    rows = np.where((np.abs(body - background) > 3).mean(axis=1) > 0.3)[0]
    cols = np.where((np.abs(body - background) > 3).mean(axis=0) > 0.3)[0]
    return body[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _profile_correlation(panel: np.ndarray, plane: np.ndarray) -> float:
    """Correlation of the rendered and the expected intensity along the middle row."""
    row = panel[panel.shape[0] // 2]
    xs = np.minimum((np.arange(row.size) + 0.5) * plane.shape[1] / row.size, plane.shape[1] - 1).astype(int)
    expected = plane[plane.shape[0] // 2][xs].astype(np.float64)
    return float(np.corrcoef(row, expected)[0, 1])


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_neuroglancer_renders_the_synthetic_pattern(pattern_file: Path, ngff: str) -> None:
    gray, state = _render(pattern_file, ngff, 0, "pattern")
    panel = _panel(gray)
    plane = h5py_level(pattern_file, 0, 0, 0)[4]  # the middle z slice the state opens on
    assert abs(panel.shape[1] / panel.shape[0] - 128 / 96) < 0.05  # x-y plane, physical aspect
    corr = _profile_correlation(panel, plane)
    (ARTIFACTS / f"pattern-ngff{ngff}.json").write_text(json.dumps({"correlation": corr, "state": state}, indent=1))
    assert corr > 0.9, corr


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_neuroglancer_renders_a_real_file(real_files: dict[str, Path], ngff: str) -> None:
    path = real_files["PtK2Cell.ims"]
    gray, state = _render(path, ngff, 1, "ptk2cell-microtubules")
    panel = _panel(gray)
    level = h5py_level(path, 0, 0, 1).astype(np.float64)
    plane = level[level.shape[0] // 2 - 1]  # neuroglancer's middle: voxel 15 of 32
    corr = _profile_correlation(panel, np.clip(plane / 247.0, 0, 1))
    (ARTIFACTS / f"ptk2cell-ngff{ngff}.json").write_text(json.dumps({"correlation": corr, "state": state}, indent=1))
    assert corr > 0.9, corr
