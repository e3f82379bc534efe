"""What a scan found, shown by the converter widget: metadata lines and thumbnails (no Qt)."""

from __future__ import annotations

import re
import shutil
import threading
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from napari_wellzarr.convert.engine import scan_source
from napari_wellzarr.plugin.conversion import (
    THUMBNAIL_SIDE,
    Thumbnail,
    downsample,
    metadata_lines,
    thumbnail_job,
    thumbnail_planes,
    tinted,
)
from tests.plugin.exports import EXPORTS, Truth, truth

if TYPE_CHECKING:
    from pathlib import Path


def shown(text: str) -> dict[str, object]:
    """The values a reader of the widget's text sees (parsed back from the text)."""
    pixel = re.search(r"pixel size: ([\d.e+-]+) x ([\d.e+-]+) \u00b5m", text)
    z = re.search(r"z step: ([\d.e+-]+) \u00b5m", text)
    return {
        "channels": re.findall(r"^  \d+\. (.+) \((?:#[0-9A-F]{6}|no colour)", text, re.M),
        "pixel": None if pixel is None else (float(pixel[1]), float(pixel[2])),
        "z": None if z is None else float(z[1]),
        "fields": int(re.findall(r"fields with positions: (\d+)", text)[0]),
        "left_out": int(re.findall(r"files left out: (\d+)", text)[0]),
    }


def check_shown(text: str, expected: Truth) -> None:
    """``text`` shows ``expected``'s channel names, pixel size, z step, fields, files left out."""
    seen = shown(text)
    names = seen["channels"]
    assert isinstance(names, list)
    assert len(names) == len(expected.channels)
    for name, true in zip(names, expected.channels, strict=True):
        assert name == true or name.startswith(f"{true}-"), (name, true)  # made unique
    assert seen["pixel"] == pytest.approx((expected.pixel_um,) * 2, rel=1e-3)
    if expected.z_step_um is None:
        assert "z step: unknown" in text
    else:
        assert seen["z"] == pytest.approx(expected.z_step_um, abs=0.02)
    assert seen["fields"] == expected.fields
    assert seen["left_out"] == expected.left_out


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_metadata_lines_show_what_the_export_says(name: str) -> None:
    plan = scan_source(EXPORTS[name])
    text = "\n".join(metadata_lines(plan))
    check_shown(text, truth(name))
    assert plan.instrument is not None
    for skipped in plan.instrument.skipped:
        assert f"{skipped.path}: {skipped.reason}" in text


def test_projections_conditions_and_positions_are_listed(tmp_path: Path) -> None:
    text = "\n".join(metadata_lines(scan_source(EXPORTS["ixm_native"])))
    assert "projections: 2 (" in text
    assert "FITC_05-2: Best Focus" in text
    assert re.search(r"E07 field 2: \(0\.02, 349\.9\)", text)  # stage x 80513.3 - 79813.4 / 2
    export = tmp_path / "operetta"
    shutil.copytree(EXPORTS["operetta"], export)
    layout = export / "Assaylayout" / "Unnamed.xml"
    xml = layout.read_text(encoding="utf-8-sig")
    well = "<Row>3</Row>\n      <Col>3</Col>\n      <Value />"
    assert xml.count(well) == 1
    layout.write_text(xml.replace(well, well.replace("<Value />", "<Value>DMSO</Value>")))
    text = "\n".join(metadata_lines(scan_source(export)))
    assert "wells with conditions: 1" in text
    assert "  C03: Compound=DMSO" in text


def test_a_plain_folder_has_no_metadata_lines(tmp_path: Path) -> None:
    tmp_path.joinpath("raw").mkdir()
    tifffile.imwrite(tmp_path / "raw" / "screen_A01_s1_w1.tif", np.ones((8, 8), np.uint16))
    assert metadata_lines(scan_source(tmp_path / "raw", scheme="imagexpress")) == []


def test_thumbnail_planes_one_per_channel_middle_z() -> None:
    plan = scan_source(EXPORTS["cv8000"])
    picks = thumbnail_planes(plan)
    assert [c for c, _ in picks] == [0, 1]
    for c, plane in picks:
        assert plane.key.c == c
        assert plane.key.field == 0
        assert plane.key.z == plan.dims[2] // 2  # 4 planes: the third (z index 2)
        assert f"Z{plane.key.z + 1:02d}C{c + 1:02d}" in plane.path
        assert "_D08_T0001F001" in plane.path  # the first well, its first field


def test_downsample_is_block_means_within_the_side() -> None:
    rng = np.random.default_rng(3)
    plane = rng.integers(0, 4000, (250, 199)).astype(np.uint16)
    small = downsample(plane, 50)
    assert max(small.shape) <= 50
    step = 5  # ceil(250 / 50)
    assert small.shape == (250 // step, 199 // step)
    for y, x in [(0, 0), (17, 33), (49, 38)]:
        block = plane[y * step : (y + 1) * step, x * step : (x + 1) * step]
        assert small[y, x] == pytest.approx(block.mean(), rel=1e-6)
    assert downsample(plane[:40, :30], 50).shape == (40, 30)  # small planes stay


def test_tinted_stretches_into_the_channel_colour() -> None:
    small = np.linspace(0, 1000, 200, dtype=np.float32).reshape(10, 20)
    rgb = tinted(small, "00FF80")
    assert rgb.shape == (10, 20, 3)
    assert rgb.dtype == np.uint8
    assert (rgb[..., 0] == 0).all()
    assert rgb[..., 1].max() == 255
    assert rgb[..., 2].max() == 128
    assert rgb[0, 0, 1] == 0
    assert np.all(np.diff(rgb[..., 1].ravel().astype(int)) >= 0)  # order kept
    assert not tinted(np.zeros((4, 4), np.float32), "FFFFFF").any()  # flat: black


def test_thumbnail_job_reads_each_channel_from_its_file() -> None:
    plan = scan_source(EXPORTS["ixm_exported"])
    items = list(thumbnail_job(plan, threading.Event()))
    assert all(isinstance(t, Thumbnail) for t in items)
    thumbs = [t for t in items if isinstance(t, Thumbnail)]
    assert [t.name for t in thumbs] == ["DAPI", "FITC", "Texas Red"]
    assert [t.color for t in thumbs] == [c.color for c in plan.instrument.channels]  # type: ignore[union-attr]
    for t in thumbs:
        assert f"_w{t.channel + 1}" in t.path
        source = tifffile.imread(t.path).astype(float)
        assert max(t.rgb.shape[:2]) <= THUMBNAIL_SIDE
        step = -(-max(source.shape) // THUMBNAIL_SIDE)
        h, w = t.rgb.shape[:2]
        means = source[: h * step, : w * step].reshape(h, step, w, step).mean(axis=(1, 3))
        bright = t.rgb.max(axis=2).astype(float)
        linear = (bright > 0) & (bright < bright.max())  # not clipped by the stretch
        assert linear.sum() > 100
        assert np.corrcoef(means[linear], bright[linear])[0, 1] > 0.99


def test_thumbnail_job_stops_on_cancel_and_reports_unreadable_files(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for c in (1, 2):
        tifffile.imwrite(raw / f"screen_A01_s1_w{c}.tif", np.full((8, 8), c, np.uint16))
    plan = scan_source(raw, scheme="imagexpress")
    cancel = threading.Event()
    cancel.set()
    assert list(thumbnail_job(plan, cancel)) == []
    (raw / "screen_A01_s1_w2.tif").write_bytes(b"not a tiff any more")
    items = list(thumbnail_job(plan, threading.Event()))
    assert isinstance(items[0], Thumbnail)
    assert isinstance(items[1], str)
    assert "screen_A01_s1_w2.tif" in items[1]
    assert items[1].startswith(f"{plan.channel_names[1]}: no thumbnail")


def test_open_exports_are_the_export_layers_sources_once_each() -> None:
    from pathlib import Path

    from napari_wellzarr.plugin.conversion import open_exports
    from napari_wellzarr.plugin.rawview import open_export_view

    layers = open_export_view(EXPORTS["cv8000"]).layers()
    layers += open_export_view(EXPORTS["ixm_native"]).layers()
    metadata = [kwargs.get("metadata", {}) for _, kwargs, _ in layers]
    plate = {"wellzarr": {"kind_of_source": "plate", "source": "/plates/x.zarr"}}
    found = open_exports([*metadata, plate, {}, {"wellzarr": "not a dict"}])
    assert found == [EXPORTS["cv8000"], EXPORTS["ixm_native"]]
    assert all(isinstance(p, Path) for p in found)
