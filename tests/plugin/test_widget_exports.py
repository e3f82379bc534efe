"""The converter widget on real instrument exports: the metadata and thumbnails its Scan shows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from tests.plugin.exports import EXPORTS, truth
from tests.plugin.test_scan_info import check_shown

if TYPE_CHECKING:
    from collections.abc import Callable

    from napari_wellzarr.plugin._widget import ConvertWidget

pytestmark = pytest.mark.gui
WAIT_MS = 60_000  # generous: a loaded 2-core machine


def make_widget(make_napari_viewer: Callable[..., Any]) -> tuple[Any, ConvertWidget]:
    from napari_wellzarr.plugin._widget import ConvertWidget

    viewer = make_napari_viewer()
    widget = ConvertWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Convert to well-chunked plate")
    return viewer, widget


def scan_with_thumbnails(qtbot: Any, widget: ConvertWidget) -> None:
    assert widget.scan() is not None, widget.summary.value
    qtbot.waitUntil(lambda: widget.scan_worker is None, timeout=WAIT_MS)
    assert widget.plan is not None, widget.summary.value
    qtbot.waitUntil(lambda: widget.thumbnail_worker is None, timeout=WAIT_MS)


def offered_exports(widget: ConvertWidget) -> list[Path]:
    return [c for c in widget.open_export.choices if c is not None]


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_scan_shows_the_exports_metadata_and_a_thumbnail_per_channel(
    make_napari_viewer: Callable[..., Any], qtbot: Any, name: str
) -> None:
    expected = truth(name)
    _, widget = make_widget(make_napari_viewer)
    widget.form.source.value = EXPORTS[name]
    scan_with_thumbnails(qtbot, widget)
    check_shown(widget.summary.value, expected)
    files = [p for p in EXPORTS[name].rglob("*") if p.suffix.lower() in (".tif", ".tiff")]
    present = [c for c, token in enumerate(expected.tokens) if any(token in p.name for p in files)]
    shown = list(widget.thumbnails)
    assert len(shown) == len(present)
    names = [str(box[1].value) for box in shown]
    plan_names = widget.plan.channel_names  # type: ignore[union-attr]
    assert names == [plan_names[c] for c in present]
    for c, box in zip(present, shown, strict=True):
        image, path = box[0], box[0].tooltip
        assert expected.tokens[c] in path.rsplit("/", 1)[-1]
        rgb = np.asarray(image.value)
        assert rgb.shape[2] == 3
        assert 0 < max(rgb.shape[:2]) <= 96
        assert image.native.width() == rgb.shape[1]  # drawn 1:1, not squeezed to nothing
        assert image.native.height() == rgb.shape[0]
        source = tifffile.imread(path)
        if not source.any():  # the CellVoyager test files are zeros: a black thumbnail
            assert not rgb.any()
            continue
        step = -(-max(source.shape) // 96)
        h, w = rgb.shape[:2]
        means = source[: h * step, : w * step].reshape(h, step, w, step).mean(axis=(1, 3))
        bright = rgb.max(axis=2).astype(float)
        linear = (bright > 0) & (bright < bright.max())  # not clipped by the stretch
        assert linear.sum() > 100
        assert np.corrcoef(means[linear], bright[linear])[0, 1] > 0.99


def test_a_new_source_clears_the_thumbnails(
    make_napari_viewer: Callable[..., Any], qtbot: Any
) -> None:
    _, widget = make_widget(make_napari_viewer)
    widget.form.source.value = EXPORTS["ixm_exported"]
    scan_with_thumbnails(qtbot, widget)
    assert len(widget.thumbnails) == 3
    widget.form.source.value = EXPORTS["operetta"]
    assert len(widget.thumbnails) == 0
    assert widget.summary.value == ""
    scan_with_thumbnails(qtbot, widget)
    assert [str(box[1].value) for box in widget.thumbnails] == ["Fluorescein (FITC)"]


def test_an_export_open_in_napari_is_offered_and_converted(
    make_napari_viewer: Callable[..., Any], qtbot: Any, tmp_path: Path
) -> None:
    from napari_wellzarr.core import PlateStore
    from napari_wellzarr.plugin._widget import ConvertWidget

    viewer = make_napari_viewer()
    widget = ConvertWidget(viewer)
    assert widget.open_export.native.isHidden()  # nothing open: nothing offered
    viewer.open(str(EXPORTS["operetta"]), plugin="napari-wellzarr")
    shown_from = Path(viewer.layers[0].metadata["wellzarr"]["source"])
    assert shown_from.parent == EXPORTS["operetta"]  # the index's folder, Images/
    assert not widget.open_export.native.isHidden()
    assert widget.open_export.value == shown_from
    assert widget.form.source.value == shown_from  # an empty source is filled in
    scan_with_thumbnails(qtbot, widget)
    assert "Fluorescein (FITC)" in widget.summary.value
    dest = tmp_path / "operetta.zarr"
    widget.form.output.value = dest
    assert widget.run() is not None, widget.status.value + widget.config_message.value
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    assert widget.result is not None
    assert widget.result.complete, widget.status.value
    store = PlateStore.open(dest)
    assert store.wells() == ["C03"]
    well = store.read_well("C03")
    for field in (0, 1):
        source = tifffile.imread(shown_from / f"r03c03f0{field + 1}p01-ch1sk1fk1fl1.tiff")
        np.testing.assert_array_equal(well[field, 0, 0], source)


def test_a_chosen_source_is_kept_until_the_open_export_is_asked_for(
    make_napari_viewer: Callable[..., Any], qtbot: Any
) -> None:
    viewer, widget = make_widget(make_napari_viewer)
    widget.form.source.value = EXPORTS["ixm_exported"]
    viewer.open(str(EXPORTS["cv8000"]), plugin="napari-wellzarr")
    viewer.open(str(EXPORTS["operetta"]), plugin="napari-wellzarr")
    assert widget.form.source.value == EXPORTS["ixm_exported"]  # not replaced
    offered = offered_exports(widget)
    assert offered == [EXPORTS["cv8000"], EXPORTS["operetta"] / "Images"]
    widget.form.source_kind.value = "current layers"
    widget.form.naming.value = "imagexpress"
    widget.open_export.value = EXPORTS["cv8000"]
    widget.use_export.changed.emit(True)  # the button's click
    assert widget.form.source.value == EXPORTS["cv8000"]
    assert widget.form.source_kind.value == "folder"
    assert widget.form.naming.value == "auto"
    scan_with_thumbnails(qtbot, widget)
    assert widget.plan is not None
    assert widget.plan.scheme == "cellvoyager"
    cv8000 = str(EXPORTS["cv8000"])  # (not a substring test: tmp folder names are random)
    for layer in list(viewer.layers):
        if not layer.metadata.get("wellzarr", {}).get("source", "").startswith(cv8000):
            viewer.layers.remove(layer)
    assert offered_exports(widget) == [EXPORTS["cv8000"]]
    viewer.layers.clear()
    assert widget.open_export.native.isHidden()
    assert widget.use_export.native.isHidden()
