"""A raw instrument export dropped on napari: shown lazily like a plate, not converted."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from napari_wellzarr.plugin._reader import get_reader, read_export, read_plate
from tests.plugin.test_viewer import PLUGIN, camera_of, lit, screen_position, well_centre

if TYPE_CHECKING:
    from collections.abc import Callable

DATA = Path(__file__).resolve().parents[1] / "data"
OPERETTA = DATA / "operetta-compose-cls" / "operetta_plate"
CV8000 = (
    DATA
    / "faim-cv8000-minimal"
    / "CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack_20230918_135839"
    / "CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack"
)


def _tile(layer: Any, well: str, field: int) -> np.ndarray:
    """The level-0 pixels of ``well``'s tile at ``field`` (z 0) in a mosaic layer."""
    meta = layer.metadata["wellzarr"]
    (h, w), (py, px) = meta["tile"], meta["pitch"]
    r, c = meta["wells"][well]
    data = layer.data[0] if layer.multiscale else layer.data
    return np.asarray(data[field, 0, r * py : r * py + h, c * px : c * px + w])


def test_reader_takes_exports_after_plates(tmp_path: Path) -> None:
    assert get_reader(str(OPERETTA)) is read_export
    assert get_reader(str(CV8000)) is read_export
    assert get_reader(str(DATA / "iohub_plate_v05")) is read_plate
    assert get_reader(str(tmp_path)) is None


def test_operetta_export_opens_lazily_with_real_pixels(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    export = tmp_path / "operetta_plate"
    shutil.copytree(OPERETTA, export)
    viewer = make_napari_viewer(show=True)
    layers = viewer.open(str(export), plugin=PLUGIN)
    assert [layer.name for layer in layers] == ["Fluorescein (FITC)", "plate map"]
    layer = viewer.layers["Fluorescein (FITC)"]
    assert layer.metadata["wellzarr"]["kind_of_source"] == "export"
    assert layer.metadata["wellzarr"]["rows"][-1] == "P"  # the export's 384-well plate
    assert tuple(layer.scale[-2:]) == (1.1959521619135234, 1.1959521619135234)
    for field in (0, 1):
        source = tifffile.imread(export / "Images" / f"r03c03f0{field + 1}p01-ch1sk1fk1fl1.tiff")
        np.testing.assert_array_equal(_tile(layer, "C03", field), source)
    assert not list(tmp_path.glob("**/*.zarr"))  # nothing converted
    viewer.layers["plate map"].visible = False
    viewer.reset_view()
    centre = well_centre(layer, "C03")
    camera_of(viewer).center = centre
    camera_of(viewer).zoom = 400 / (layer.metadata["wellzarr"]["tile"][0] * layer.scale[-1])
    screen = viewer.screenshot(canvas_only=True, flash=False)
    half = round(
        layer.metadata["wellzarr"]["tile"][0] * layer.scale[-1] * camera_of(viewer).zoom / 2
    )
    y, x = screen_position(viewer, centre, screen)
    inside = [
        lit(screen, (y + dy, x + dx))
        for dy in range(-half + 5, half - 5, 7)
        for dx in range(-half + 5, half - 5, 7)
    ]
    assert sum(inside) > len(inside) // 4  # the cells of the real image
    left = screen_position(viewer, well_centre(layer, "C02"), screen)[1]
    assert not any(lit(screen, (y + dy, left)) for dy in range(-half + 5, half - 5, 7))


def test_cellvoyager_export_opens_with_its_channels(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    export = tmp_path / "cv"
    export.mkdir()
    for f in CV8000.iterdir():
        if not f.name.endswith(".tif"):
            shutil.copy(f, export / f.name)
    text = (export / "MeasurementData.mlf").read_text(encoding="utf-8")
    rng = np.random.default_rng(7)
    truth = {}
    for name in re.findall(r'bts:Type="IMG"[^>]*>([^<]+)<', text):
        truth[name] = rng.integers(1, 60000, (16, 24), dtype=np.uint16)
        tifffile.imwrite(export / name, truth[name])
    viewer = make_napari_viewer()
    viewer.open(str(export), plugin=PLUGIN)
    assert [layer.name for layer in viewer.layers] == ["405 BP445/45", "488 BP525/50", "plate map"]
    colors = [layer.colormap.colors[-1][:3] for layer in viewer.layers[:2]]
    np.testing.assert_allclose(colors, [[0, 0x2F / 255, 1], [0, 1, 0xA1 / 255]], atol=1e-3)
    assert viewer.layers[0].metadata["wellzarr"]["rows"] == list("ABCDEFGH")
    name = "CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack_E03_T0001F003L01A02Z01C02.tif"
    np.testing.assert_array_equal(_tile(viewer.layers[1], "E03", 2), truth[name])


IXM_NATIVE = DATA / "ixm_native" / "Projection-Mix"


def test_reader_probe_finds_a_native_metaxpress_plate_by_names(tmp_path: Path) -> None:
    assert get_reader(str(IXM_NATIVE)) is read_export  # <plate>/<date>/<id>/GUID names
    assert get_reader(str(DATA / "ixm_exported" / "9987_Plate_3434")) is read_export  # .HTD
    layers = read_export(str(IXM_NATIVE))
    names = [kwargs["name"] for _, kwargs, _ in layers]
    assert names == ["FITC_05", "FITC_05-2", "FITC_05-3", "FITC_05-4", "plate map"]
    assert layers[0][1]["metadata"]["wellzarr"]["kind_of_source"] == "export"
    # the same names four folders down, or after many other entries: not looked at
    deep = tmp_path / "deep" / "a" / "b" / "c"
    shutil.copytree(IXM_NATIVE / "2023-02-21" / "1334", deep / "1334")
    assert get_reader(str(tmp_path / "deep")) is None
    crowded = tmp_path / "crowded"
    crowded.mkdir()
    for i in range(4100):
        (crowded / f"a{i:04d}.txt").touch()
    guid = next(p for p in (IXM_NATIVE / "2023-02-21" / "1334").iterdir() if p.suffix == ".tif")
    (crowded / "z").mkdir()
    shutil.copy(guid, crowded / "z" / guid.name)
    assert get_reader(str(crowded)) is None  # the probe stops listing (bounded)
    few = tmp_path / "few"
    few.mkdir()
    shutil.copy(guid, few / guid.name)
    assert get_reader(str(few)) is read_export
    (few / guid.name).rename(few / "Projection-Mix_E07_s1_w1.tif")  # no GUID: a name scheme
    assert get_reader(str(few)) is None
