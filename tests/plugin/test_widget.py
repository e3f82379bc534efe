"""The "Convert to well-chunked plate" dock widget in a real napari viewer (Qt, Xvfb)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from napari_wellzarr.core import PlateStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from napari_wellzarr.convert.engine import ConversionPlan
    from napari_wellzarr.plugin._widget import ConvertWidget

pytestmark = pytest.mark.gui
SHAPE = (32, 48)
WELLS = ("A01", "B03", "C02")
Truth = dict[tuple[str, int, int], np.ndarray]
#: Nested quantifiers: exponential backtracking on a run of x's not followed by y.
CATASTROPHIC = r"(?P<well>A\d+)_(x+x+)+y"
SCAN_WAIT_MS = 60_000  # generous: CI is a loaded 2-core machine


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
    from napari_wellzarr.plugin._widget import ConvertWidget

    viewer = make_napari_viewer()
    widget = ConvertWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Convert to well-chunked plate")
    return viewer, widget


def catastrophic_set(root: Path) -> None:
    """A few real TIFFs whose names make CATASTROPHIC backtrack for far longer than 5 s."""
    root.mkdir(parents=True)
    for well in ("A01", "A02", "A03"):
        tifffile.imwrite(root / f"{well}_{'x' * 40}.tif", np.zeros(SHAPE, np.uint16))


def scan_and_wait(qtbot: Any, widget: ConvertWidget) -> ConversionPlan | None:
    worker = widget.scan()
    assert worker is not None, widget.summary.value
    qtbot.waitUntil(lambda: widget.scan_worker is None, timeout=SCAN_WAIT_MS)
    return widget.plan


def scan_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wellzarr-scan"]


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
    widget.form.source.value = tmp_path / "raw"
    widget.form.naming.value = "imagexpress"
    widget.form.output.value = dest
    widget.form.compressor.value = "zstd"
    widget.form.level.value = "5"
    widget.form.chunks.value = "plane"
    assert not widget.run_button.enabled  # not scanned yet
    assert widget.run() is None
    assert "Scan the folder first" in widget.status.value
    plan = scan_and_wait(qtbot, widget)
    assert plan is not None, widget.summary.value
    assert "Scanned in" in widget.status.value
    assert widget.scan_button.enabled
    assert not widget.cancel_button.enabled
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
    make_napari_viewer: Callable[..., Any], qtbot: Any, tmp_path: Path
) -> None:
    imagexpress_set(tmp_path / "raw", np.random.default_rng(4), fields=1)
    _, widget = make_widget(make_napari_viewer)
    widget.form.source.value = tmp_path / "raw"
    assert not widget.run_button.enabled  # a folder must be scanned first
    assert widget.config_message.value == ""
    assert scan_and_wait(qtbot, widget) is not None, widget.summary.value
    assert widget.run_button.enabled
    widget.form.chunks.value = "sharded"
    widget.form.ngff_version.value = "0.4"
    assert not widget.run_button.enabled
    assert "sharded" in widget.config_message.value
    assert "zarr v3" in widget.config_message.value
    assert widget.run() is None
    widget.form.ngff_version.value = "0.5"
    assert widget.run_button.enabled
    assert widget.config_message.value == ""
    widget.form.compressor.value = "none"
    widget.form.level.value = "3"
    assert not widget.run_button.enabled
    assert "no level" in widget.config_message.value


def test_cancel_leaves_a_valid_partial_plate_and_resume_completes_it(
    make_napari_viewer: Callable[..., Any],
    qtbot: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from napari_wellzarr.plugin import conversion

    truth = imagexpress_set(tmp_path / "raw", np.random.default_rng(2), fields=1)
    dest = tmp_path / "screen.ome.zarr"
    real = conversion.convert
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

    monkeypatch.setattr(conversion, "convert", cancel_after_first_well)
    viewer, widget = make_widget(make_napari_viewer)
    widget.form.source.value = tmp_path / "raw"
    widget.form.output.value = dest
    assert scan_and_wait(qtbot, widget) is not None, widget.summary.value
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

    widget.form.resume.value = True
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
    viewer.add_points([[5, 5]], name="B03_marks")  # not an image: not a channel
    dest = tmp_path / "layers.ome.zarr"
    widget.form.source_kind.value = "current layers"
    widget.form.output.value = dest
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


def catastrophic_widget(make_napari_viewer: Callable[..., Any], tmp_path: Path) -> Any:
    """A widget set to scan a folder with a catastrophically backtracking pattern."""
    catastrophic_set(tmp_path / "raw")
    _, widget = make_widget(make_napari_viewer)
    widget.form.source.value = tmp_path / "raw"
    widget.form.naming.value = "pattern"
    widget.form.pattern.value = CATASTROPHIC
    return widget


def test_a_catastrophic_pattern_is_refused_in_a_worker_while_the_viewer_responds(
    make_napari_viewer: Callable[..., Any], qtbot: Any, tmp_path: Path
) -> None:
    from qtpy.QtCore import QTimer

    widget = catastrophic_widget(make_napari_viewer, tmp_path)
    widget.form.output.value = tmp_path / "out.ome.zarr"
    ticks: list[tuple[bool, str]] = []

    start = time.perf_counter()
    widget.scan_button.native.click()
    clicked = time.perf_counter() - start
    # a scan on the GUI thread would hold the click for the whole 5 s time budget
    assert clicked < 2.5, f"Scan held the GUI thread for {clicked:.1f} s"
    assert widget.scan_worker is not None
    assert "Scanning" in widget.status.value
    assert not widget.scan_button.enabled
    assert widget.cancel_button.enabled
    assert not widget.run_button.enabled
    # the event loop runs timers while the pattern is still being matched
    QTimer.singleShot(
        100, lambda: ticks.append((widget.scan_worker is not None, widget.status.value))
    )
    qtbot.waitUntil(lambda: bool(ticks), timeout=4000)
    assert ticks[0] == (True, "Scanning..."), ticks

    qtbot.waitUntil(lambda: widget.scan_worker is None, timeout=SCAN_WAIT_MS)
    elapsed = time.perf_counter() - start
    assert elapsed > 4.0  # the core's 5 s budget ran out (not a premature verdict)
    text = widget.summary.value
    assert text.startswith("Scan failed: pattern"), text
    assert "took longer than" in text
    assert "backtracks catastrophically" in text
    assert "Scan failed after" in widget.status.value
    assert widget.plan is None
    assert not widget.run_button.enabled
    assert widget.run() is None
    assert widget.scan_button.enabled
    assert not widget.cancel_button.enabled


def test_cancel_abandons_a_running_scan_and_its_result_is_never_applied(
    make_napari_viewer: Callable[..., Any], qtbot: Any, tmp_path: Path
) -> None:
    widget = catastrophic_widget(make_napari_viewer, tmp_path)
    worker = widget.scan()
    assert worker is not None
    qtbot.waitUntil(lambda: bool(scan_threads()), timeout=10_000)
    widget.cancel_button.native.click()
    assert widget.scan_worker is None
    assert widget.status.value == "Scan cancelled."
    assert widget.scan_button.enabled
    assert not widget.cancel_button.enabled
    assert not widget.run_button.enabled
    # the napari worker (a thread-pool slot) ends long before the pattern's 5 s budget
    qtbot.waitUntil(lambda: not worker.is_running, timeout=4000)
    # the abandoned scan thread ends when the budget runs out; nothing is applied then
    for thread in scan_threads():
        thread.join(timeout=SCAN_WAIT_MS / 1000)
        assert not thread.is_alive()
    qtbot.wait(300)  # deliver anything still queued
    assert widget.plan is None
    assert widget.summary.value == ""
    assert widget.status.value == "Scan cancelled."
    assert not widget.run_button.enabled


def test_a_scan_result_arriving_after_the_options_changed_is_not_applied(
    make_napari_viewer: Callable[..., Any],
    qtbot: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from napari_wellzarr.plugin import conversion

    imagexpress_set(tmp_path / "raw", np.random.default_rng(5), fields=1)
    other = tmp_path / "other"
    other.mkdir()
    tifffile.imwrite(other / "screen_D04_s1_w1.tif", np.zeros(SHAPE, np.uint16))
    real = conversion.scan_source
    scanned = threading.Event()

    def signalling_scan(*args: Any, **kwargs: Any) -> Any:
        try:
            return real(*args, **kwargs)
        finally:
            scanned.set()

    monkeypatch.setattr(conversion, "scan_source", signalling_scan)
    _, widget = make_widget(make_napari_viewer)
    widget.form.source.value = tmp_path / "raw"
    worker = widget.scan()
    assert worker is not None
    # keep the GUI thread busy until the worker has emitted its result: the plan of
    # "raw" now waits in the event queue
    assert scanned.wait(SCAN_WAIT_MS / 1000)
    deadline = time.monotonic() + SCAN_WAIT_MS / 1000
    while worker.is_running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not worker.is_running
    widget.form.source.value = other  # the user picks another folder before it is delivered
    assert widget.status.value.startswith("Scan stopped")
    assert widget.scan_button.enabled
    qtbot.wait(300)  # deliver the queued result
    assert widget.plan is None, "the plan of the previous folder was applied"
    assert widget.summary.value == ""
    assert not widget.run_button.enabled

    plan = scan_and_wait(qtbot, widget)  # a scan of the new folder is applied
    assert plan is not None, widget.summary.value
    assert plan.source == other
    assert "wells: 1" in widget.summary.value
    assert widget.run_button.enabled


def test_scan_without_a_folder_never_walks_the_working_directory(
    make_napari_viewer: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_wellzarr.plugin import conversion

    calls: list[Any] = []
    monkeypatch.setattr(conversion, "scan_source", lambda *a, **k: calls.append(a))
    _, widget = make_widget(make_napari_viewer)
    assert str(widget.form.source.value) == "."  # FileEdit's empty value
    assert widget.scan() is None
    assert widget.summary.value == "Scan failed: choose a folder first."
    assert widget.scan_worker is None
    assert widget.scan_button.enabled
    assert not widget.run_button.enabled
    assert calls == []


def test_the_options_form_is_magicgui_made_from_the_core_enums(
    make_napari_viewer: Callable[..., Any],
) -> None:
    from magicgui.widgets import FunctionGui

    from napari_wellzarr.storage.config import ChunkStrategy, Compressor, NgffVersion

    _, widget = make_widget(make_napari_viewer)
    assert isinstance(widget.form, FunctionGui)
    assert set(widget.form.compressor.choices) == set(Compressor)
    assert set(widget.form.chunks.choices) == {None, *ChunkStrategy}
    assert widget.form.ngff_version.value is NgffVersion.V05
    widget.form.compressor.value = "zstd"
    assert widget.form.compressor.value is Compressor.ZSTD
    assert widget.form.compressor.native.currentText() == "zstd"  # shown as the core names it
    assert widget.session.options.compressor is Compressor.ZSTD  # auto_call: options follow
    widget.form.chunks.value = None
    assert widget.form.chunks.native.currentText() == "default"
    # the tooltips are the numpy docstring of the options
    assert "empty: the codec's default level" in (widget.form.level.tooltip or "")
