"""The "Convert to well-chunked plate" dock widget in a real napari viewer (Qt, Xvfb)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from napari_wellzarr.core import PlateStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from napari_wellzarr._widget import ConvertWidget

pytestmark = pytest.mark.gui
SHAPE = (32, 48)
WELLS = ("A01", "B03", "C02")
Truth = dict[tuple[str, int, int], np.ndarray]


def imagexpress_set(root: Path, rng: np.random.Generator, fields: int = 2) -> Truth:
    """ImageXpress names ``screen_B03_s1_w2.tif``: 3 wells, ``fields`` sites, 2 channels."""
    root.mkdir(parents=True)
    truth: Truth = {}
    for well in WELLS:
        for f in range(fields):
            for c in range(2):
                data = rng.integers(0, 65535, size=SHAPE, dtype=np.uint16, endpoint=True)
                tifffile.imwrite(root / f"screen_{well}_s{f + 1}_w{c + 1}.tif", data)
                truth[well, f, c] = data
    return truth


def make_widget(make_napari_viewer: Callable[..., Any]) -> tuple[Any, ConvertWidget]:
    from napari_wellzarr._widget import ConvertWidget

    viewer = make_napari_viewer()
    widget = ConvertWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Convert to well-chunked plate")
    return viewer, widget


def run_and_wait(qtbot: Any, widget: ConvertWidget) -> None:
    worker = widget.run()
    assert worker is not None, widget.status.value + widget.config_message.value
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20000)
    assert not widget.error, widget.error


def assert_plate_equals(dest: Path, truth: Truth, wells: tuple[str, ...]) -> None:
    store = PlateStore.open(dest)
    assert sorted(store.wells()) == sorted(wells)
    for well in wells:
        data = store.read_well(well)  # (field, c, z, y, x)
        for (w, f, c), plane in truth.items():
            if w == well:
                np.testing.assert_array_equal(data[f, c, 0], plane, err_msg=f"{well} f{f} c{c}")


def test_scan_run_and_open_a_folder(
    make_napari_viewer: Callable[..., Any], qtbot: Any, tmp_path: Path
) -> None:
    truth = imagexpress_set(tmp_path / "raw", np.random.default_rng(1))
    dest = tmp_path / "screen.ome.zarr"
    viewer, widget = make_widget(make_napari_viewer)
    widget.source.value = tmp_path / "raw"
    widget.scheme.value = "imagexpress"
    widget.output.value = dest
    widget.compressor.value = "zstd"
    widget.level.value = "5"
    widget.chunks.value = "plane"
    plan = widget.scan()
    assert plan is not None
    text = widget.summary.value
    assert "wells: 3" in text
    assert "fields: 2" in text
    assert "channels: 2" in text
    assert "32 x 48 uint16" in text
    assert "estimated output" in text
    assert text.count("#") == 3  # the plate map marks A01, B03, C02
    assert widget.run_button.enabled
    run_and_wait(qtbot, widget)
    assert widget.result is not None
    assert widget.result.complete
    assert widget.progress.value == 3
    assert_plate_equals(dest, truth, WELLS)
    config = PlateStore.open(dest).config
    assert config is not None
    assert config.compressor.value == "zstd"
    assert config.level == 5
    assert any(layer.name == "plate map" for layer in viewer.layers)
    assert len(viewer.layers) >= 3  # two channels and the plate map


def test_invalid_combination_disables_run(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    _, widget = make_widget(make_napari_viewer)
    assert widget.run_button.enabled
    widget.chunks.value = "sharded"
    widget.ngff_version.value = "0.4"
    assert not widget.run_button.enabled
    assert "sharded" in widget.config_message.value
    assert "zarr v3" in widget.config_message.value
    assert widget.run() is None
    widget.ngff_version.value = "0.5"
    assert widget.run_button.enabled
    assert widget.config_message.value == ""
    widget.compressor.value = "none"
    widget.level.value = "3"
    assert not widget.run_button.enabled
    assert "no level" in widget.config_message.value


def test_cancel_leaves_a_valid_partial_plate_and_resume_completes_it(
    make_napari_viewer: Callable[..., Any],
    qtbot: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from napari_wellzarr import _widget

    truth = imagexpress_set(tmp_path / "raw", np.random.default_rng(2), fields=1)
    dest = tmp_path / "screen.ome.zarr"
    real = _widget.convert
    calls: list[int] = []

    def cancel_after_first_well(*args: Any, **kwargs: Any) -> Any:
        progress, cancel = kwargs["progress"], kwargs["cancel"]
        first = not calls
        calls.append(1)

        def on_well(event: Any) -> None:
            if first:
                cancel.set()  # from the first progress callback
            progress(event)

        return real(*args, **{**kwargs, "progress": on_well})

    monkeypatch.setattr(_widget, "convert", cancel_after_first_well)
    viewer, widget = make_widget(make_napari_viewer)
    widget.source.value = tmp_path / "raw"
    widget.output.value = dest
    assert widget.scan() is not None
    run_and_wait(qtbot, widget)
    result = widget.result
    assert result is not None
    assert result.cancelled
    assert not result.complete
    assert len(result.written) == 1
    assert len(result.remaining) == 2
    assert "resume" in widget.status.value
    assert "2 well(s) not converted" in widget.status.value
    assert_plate_equals(dest, truth, result.written)  # only complete wells are listed
    assert len(viewer.layers) == 0  # nothing opened on cancel

    widget.resume.value = True
    run_and_wait(qtbot, widget)
    assert widget.result is not None
    assert widget.result.complete
    assert set(widget.result.skipped) == set(result.written)
    assert_plate_equals(dest, truth, WELLS)


def test_current_layers_are_written_with_the_writer_mapping(
    make_napari_viewer: Callable[..., Any], qtbot: Any, tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    viewer, widget = make_widget(make_napari_viewer)
    planes = {
        name: rng.integers(0, 4000, size=SHAPE, dtype=np.uint16)
        for name in ("B03_DAPI", "B03_GFP", "C05_DAPI", "C05_GFP")
    }
    for name, data in planes.items():
        viewer.add_image(data, name=name)
    dest = tmp_path / "layers.ome.zarr"
    widget.source_kind.value = "current layers"
    widget.output.value = dest
    widget.scan()
    assert "wells: 2 (B03, C05)" in widget.summary.value
    assert "channels: 2 (DAPI, GFP)" in widget.summary.value
    run_and_wait(qtbot, widget)
    assert widget.result is not None
    assert widget.result.complete
    store = PlateStore.open(dest)
    assert sorted(store.wells()) == ["B03", "C05"]
    for well in ("B03", "C05"):
        data = store.read_well(well)
        np.testing.assert_array_equal(data[0, 0, 0], planes[f"{well}_DAPI"])
        np.testing.assert_array_equal(data[0, 1, 0], planes[f"{well}_GFP"])
