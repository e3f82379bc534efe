"""End to end in a real napari viewer (Qt under Xvfb): open, look, save, reopen."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.core import Channel, PlateStore, StorageConfig
from napari_wellzarr.plugin.view import UnfinishedPlateWarning
from tests.helpers import write_plate
from tests.plugin.helpers import assert_same_plate, camera_of, well_centre

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.gui
PLUGIN = "napari-wellzarr"


def bright_plate(
    path: Path,
    wells: tuple[str, ...],
    *,
    plate: int = 96,
    shape=(64, 64),
    labels: bool = False,
    **config: Any,
) -> Path:
    """Wells whose every pixel is far above the display window: they show bright."""
    channels = [
        Channel("DAPI", "0000FF", (0, 65535, 0, 1000)),
        Channel("GFP", "00FF00", (0, 65535, 0, 1000)),
    ]
    data = np.full((2, 2, 1, *shape), 50000, dtype="u2")
    data[1] = 0  # field 1 is dark: the field slider must switch what is shown
    cells = np.zeros((2, 1, *shape), dtype="u2")
    cells[:, :, 8:20, 8:20] = 5
    write = {
        "channels": channels,
        "pixel_size": 0.5,
        "labels": {"cells": cells} if labels else None,
    }
    return write_plate(path, dict.fromkeys(wells, data), plate=plate, write=write, **config)


def screen_position(
    viewer: Any, world_yx: tuple[float, float], screen: np.ndarray
) -> tuple[int, int]:
    """Canvas pixel of a world (y, x) point, from the 2D camera."""
    camera = camera_of(viewer)
    cy, cx = camera.center[-2:]
    zoom = camera.zoom
    return round((world_yx[0] - cy) * zoom + screen.shape[0] / 2), round(
        (world_yx[1] - cx) * zoom + screen.shape[1] / 2
    )


def lit(screen: np.ndarray, yx: tuple[int, int]) -> bool:
    """Whether a 5 x 5 patch around a canvas pixel differs from the canvas background."""
    y, x = yx
    background = screen[0, 0, :3].astype(int)
    patch = screen[y - 2 : y + 3, x - 2 : x + 3, :3].astype(int)
    return bool(np.abs(patch - background).max() > 30)


def assert_wells_shown(
    viewer: Any, layer: Any, lit_wells: tuple[str, ...], dark_wells: tuple[str, ...] = ()
) -> None:
    """The viewer's canvas is lit at the centres of ``lit_wells``, dark at ``dark_wells``."""
    screen = viewer.screenshot(canvas_only=True, flash=False)
    for well in lit_wells:
        assert lit(screen, screen_position(viewer, well_centre(layer, well), screen)), well
    for well in dark_wells:
        assert not lit(screen, screen_position(viewer, well_centre(layer, well), screen)), well


def test_open_shows_wells_where_they_are(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    present, empty = ("B02", "C05", "G11"), ("A01", "D07", "H12", "B03")
    path = bright_plate(tmp_path / "plate.zarr", present)
    viewer = make_napari_viewer(show=True)
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert [layer.name for layer in layers] == ["DAPI", "GFP", "plate map"]
    viewer.layers["plate map"].visible = False
    viewer.reset_view()
    dapi = viewer.layers["DAPI"]
    assert_wells_shown(viewer, dapi, present, empty)
    viewer.dims.set_point(0, 1)  # field 1 is dark everywhere
    screen = viewer.screenshot(canvas_only=True, flash=False)
    assert not lit(screen, screen_position(viewer, well_centre(dapi, "C05"), screen))
    viewer.layers["plate map"].visible = True
    screen = viewer.screenshot(canvas_only=True, flash=False)
    # The plate map draws outlines even around empty wells.
    y, x = screen_position(viewer, well_centre(dapi, "D07"), screen)
    half = round(dapi.metadata["wellzarr"]["tile"][0] / 2 * dapi.scale[-1] * camera_of(viewer).zoom)
    assert any(lit(screen, (y, x + dx)) for dx in range(half - 3, half + 4))


def test_save_layers_writes_a_plate_that_round_trips(
    make_napari_viewer: Callable[..., Any], tmp_path: Path, validate_plate: Callable[[Path], None]
) -> None:
    path = bright_plate(tmp_path / "plate.zarr", ("A01", "H12"), chunks="plane", labels=True)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin=PLUGIN)
    assert [layer.name for layer in viewer.layers] == ["DAPI", "GFP", "cells", "plate map"]
    cells = viewer.layers["cells"]
    assert cells._type_string == "labels"
    assert cells.scale.tolist() == viewer.layers["DAPI"].scale.tolist()
    for name in ("DAPI", "GFP", "plate map"):
        viewer.layers[name].visible = False
    viewer.reset_view()
    screen = viewer.screenshot(canvas_only=True, flash=False)
    layout = cells.metadata["wellzarr"]
    py, px = layout["pitch"]
    sy, sx = cells.scale[-2:]
    inside = screen_position(viewer, ((7 * py + 14) * sy, (11 * px + 14) * sx), screen)  # H12
    outside = screen_position(viewer, ((7 * py + 40) * sy, (11 * px + 40) * sx), screen)
    assert lit(screen, inside)
    assert not lit(screen, outside)
    saved = tmp_path / "saved.ome.zarr"
    written = viewer.layers.save(str(saved), plugin=PLUGIN)  # all layers, plate map included
    assert written == [str(saved)]
    validate_plate(saved)
    assert_same_plate(path, saved)
    assert PlateStore.open(saved).config == PlateStore.open(path).config


def test_big_plate_opens_multiscale_and_renders(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    path = bright_plate(tmp_path / "big.zarr", ("A01", "H12", "P24"), plate=384, shape=(700, 700))
    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin=PLUGIN)
    dapi = viewer.layers["DAPI"]
    assert dapi.multiscale
    assert dapi.level_shapes[0][-1] > 16384
    viewer.layers["plate map"].visible = False
    viewer.reset_view()
    assert_wells_shown(viewer, dapi, ("A01", "H12", "P24"), ("A02", "H13", "P23"))
    assert dapi.data_level > 0  # the whole plate is shown from an overview level
    saved = tmp_path / "saved.zarr"
    assert viewer.layers.save(str(saved), plugin=PLUGIN) == [str(saved)]
    assert_same_plate(path, saved)


def test_sample_plate_opens_in_the_viewer(make_napari_viewer: Callable[..., Any]) -> None:
    viewer = make_napari_viewer(show=True)
    viewer.open_sample(PLUGIN, "synthetic_96")
    names = [layer.name for layer in viewer.layers]
    assert names == ["DAPI", "Phalloidin", "EdU", "nuclei", "plate map"]
    screen = viewer.screenshot(canvas_only=True, flash=False)
    assert screen[..., :3].max() > 0


def test_demo_saves_a_screenshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from napari_wellzarr import demo

    shot = tmp_path / "shot.png"
    assert (
        demo.main(["--output", str(tmp_path / "demo"), "--screenshot", str(shot), "--no-gui-loop"])
        == 0
    )
    assert f"screenshot {shot.resolve()}" in capsys.readouterr().out
    import imageio.v3 as iio

    pixels = iio.imread(shot)
    assert pixels.shape[0] > 500
    assert pixels.shape[1] > 700
    assert (pixels[..., :3].max(axis=-1) > 200).mean() > 0.001  # text, outlines, nuclei


#: A writer that adds a bright well to a plate and is killed before listing it.
KILLED_WRITER = """
import os, signal, sys
import numpy as np
from napari_wellzarr.core import PlateStore
store = PlateStore.open(sys.argv[1], "r+")
store.write_well(sys.argv[2], np.full((2, 2, 1, 64, 64), 50000, dtype="u2"))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_interrupted_plate_shows_its_unlisted_well(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    path = bright_plate(tmp_path / "plate.zarr", ("A01",))
    writer = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path), "C05"], check=False)
    assert writer.returncode == -9
    viewer = make_napari_viewer(show=True)
    with pytest.warns(UnfinishedPlateWarning, match=r"1 well \(C05\) is complete"):
        layers = viewer.open(str(path), plugin=PLUGIN)
    assert [layer.name for layer in layers] == ["DAPI", "GFP", "plate map"]
    viewer.layers["plate map"].visible = False
    viewer.reset_view()
    assert_wells_shown(viewer, viewer.layers["DAPI"], ("A01", "C05"), ("B02", "C04", "H12"))


def test_plate_without_wells_opens_as_its_plate_map(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "plate.zarr"
    PlateStore.create(path, StorageConfig(plate=96))  # a writer that stopped there
    viewer = make_napari_viewer(show=True)
    with pytest.warns(UnfinishedPlateWarning, match="no wells yet"):
        layers = viewer.open(str(path), plugin=PLUGIN)
    assert [(layer.name, layer._type_string) for layer in layers] == [("plate map", "points")]
    assert len(layers[0].data) == 96
    viewer.reset_view()
    screen = viewer.screenshot(canvas_only=True, flash=False)
    assert (np.abs(screen[..., :3].astype(int) - screen[0, 0, :3]).max(axis=-1) > 30).any()
