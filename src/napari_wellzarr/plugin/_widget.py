"""Dock widget: convert a folder of microscope images (or the open layers) into a plate."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Final

from magicgui import magicgui
from magicgui.widgets import (
    ComboBox,
    Container,
    Image,
    Label,
    ProgressBar,
    PushButton,
    TextEdit,
)

from napari_wellzarr.errors import ConfigError, WellZarrError
from napari_wellzarr.plugin.conversion import (
    ConversionOptions,
    ConverterSession,
    ScanProgress,
    ScanTicket,
    Source,
    Thumbnail,
    metadata_lines,
    open_exports,
    thumbnail_job,
)
from napari_wellzarr.storage.geometry import row_letters

if TYPE_CHECKING:
    from collections.abc import Generator
    from pathlib import Path

    import napari.viewer

    from napari_wellzarr.convert.engine import ConversionPlan, ConversionResult, WellEvent

__all__ = ["ConvertWidget"]

_MAP_LIMIT: Final = 48  # columns of the text plate map


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def plate_map(wells: list[tuple[int, int]]) -> str:
    """A text map of the rows and columns up to the last used well (``#`` = has data)."""
    if not wells:
        return ""
    rows = max(r for r, _ in wells) + 1
    columns = min(max(c for _, c in wells) + 1, _MAP_LIMIT)
    used = set(wells)
    head = "    " + "".join(f"{c + 1:>3}" for c in range(columns))
    lines = [head]
    for r in range(rows):
        cells = "".join("  #" if (r, c) in used else "  ." for c in range(columns))
        lines.append(f"{row_letters(r):>3} {cells}")
    return "\n".join(lines)


def _drain(job: Generator[WellEvent, None, ConversionResult]) -> Generator[Any, None, Any]:
    # create_worker needs a generator *function* to make a worker that yields
    return (yield from job)


class ConvertWidget(Container[Any]):
    """Convert a folder of TIFFs (or the viewer's image layers) to a well-chunked plate.

    The options form is :class:`ConversionOptions` made into widgets by magicgui;
    the state of scans and runs is a Qt-free :class:`ConverterSession`.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.form = magicgui(ConversionOptions, auto_call=True)
        self.form.label = ""  # the form needs no name of its own in the dock
        self.form.margins = (0, 0, 0, 0)  # its fields line up with the widget's own
        self.session = ConverterSession(self.form())
        self.result: ConversionResult | None = None
        self.error: str = ""
        self.worker: Any = None  # the running conversion
        self.scan_worker: Any = None  # the running scan (None once it ended or was abandoned)
        self.thumbnail_worker: Any = None  # reading the scanned plan's thumbnails
        self._thumbnail_cancel: threading.Event | None = None

        #: Raw exports open in the viewer (dropped folders shown lazily), offered as the source.
        # (a callable: napari resets a dock's choices whenever layers change)
        self.open_export = ComboBox(label="Open export", choices=self._export_choices)
        self.use_export = PushButton(text="Convert the open export")
        self.config_message = Label(value="")
        self.scan_button = PushButton(text="Scan")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.summary = TextEdit(label="Found", value="")
        self.summary.read_only = True
        self.summary.min_height = 200  # the metadata found is a page of text
        #: One small image of a field per channel, read after the scan (off the GUI thread).
        self.thumbnails: Container[Any] = Container(
            layout="horizontal", labels=False, label="Channels"
        )
        self.thumbnails.margins = (0, 0, 0, 0)
        self.progress = ProgressBar(label="Wells", min=0, max=1, value=0)
        self.status = Label(value="")
        self.extend(
            [
                self.open_export,
                self.use_export,
                self.form,
                self.config_message,
                self.scan_button,
                self.summary,
                self.thumbnails,
                self.run_button,
                self.cancel_button,
                self.progress,
                self.status,
            ]
        )
        self._destroyed = False
        self.native.destroyed.connect(self._on_destroyed)
        self.form.called.connect(self._on_options)
        self.use_export.changed.connect(self.use_open_export)
        viewer.layers.events.inserted.connect(self._refresh_exports)
        viewer.layers.events.removed.connect(self._refresh_exports)
        self._refresh_exports()
        self.scan_button.changed.connect(self.scan)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self._check()

    @property
    def plan(self) -> ConversionPlan | None:
        """The folder's plan, scanned with the current source, naming and pattern."""
        return self.session.plan

    # -- exports open in the viewer ----------------------------------------------------

    def _refresh_exports(self, *_: object) -> None:
        """Offer the raw exports open in the viewer; the first fills an empty source."""
        if self._destroyed:
            return
        found = open_exports(layer.metadata for layer in self.viewer.layers)
        self.open_export.reset_choices()
        self.open_export.visible = self.use_export.visible = bool(found)
        if found and str(self.form.source.value) in ("", ".") and self.session.scan is None:
            self.use_open_export()

    def _export_choices(self, *_: object) -> list[tuple[str, Path]]:
        return [(p.name, p) for p in open_exports(layer.metadata for layer in self.viewer.layers)]

    def use_open_export(self, *_: object) -> None:
        """Make the chosen open export the folder to convert (naming: auto-detected)."""
        export = self.open_export.value
        if export is None:
            return
        self.form.source_kind.value = Source.FOLDER
        self.form.naming.value = "auto"
        self.form.source.value = export

    # -- options ------------------------------------------------------------------

    def _on_options(self, options: ConversionOptions) -> None:
        if not self.session.update(options):
            self._check()
            return
        if self.scan_worker is not None:
            self._abandon_scan("Scan stopped: the source, naming or pattern changed.")
        self.summary.value = ""
        self._clear_thumbnails()
        self.form.source.enabled = options.source_kind is Source.FOLDER
        self._check()

    def _check(self) -> bool:
        """Explain an impossible combination; enable *Run* when it may start (config ok?)."""
        problem = self.session.config_problem()
        self.config_message.value = f"\u26a0 {problem}" if problem else ""
        self.run_button.enabled = self.session.may_run()
        self.run_button.tooltip = "" if self.session.scanned else "Scan the folder first"
        return not problem

    # -- scan -----------------------------------------------------------------------

    def scan(self, *_: object) -> Any:
        """Start scanning the source folder in a worker; return it (None: nothing started).

        The current layers are summarised at once (they are in memory).  A folder's plan
        is applied by :meth:`_on_scan_returned` on the main thread, only if the scan was
        neither cancelled nor overtaken by a change of the source, naming or pattern.
        """
        from napari.qt.threading import create_worker

        if self.session.busy:
            return None
        if self.session.options.source_kind is Source.LAYERS:
            self.summary.value = self._layers_summary()
            self._check()
            return None
        try:
            ticket = self.session.start_scan()
        except ConfigError as err:
            self.summary.value = f"Scan failed: {err}."
            self._check()
            return None
        worker = create_worker(ticket.job, _start_thread=False)
        worker.yielded.connect(lambda read: self._on_scan_progress(worker, read))
        worker.returned.connect(lambda out: self._on_scan_returned(worker, ticket, out))
        worker.finished.connect(lambda: self._on_scan_finished(worker))
        self.scan_worker = worker
        self.summary.value = ""
        self._clear_thumbnails()
        self.status.value = "Scanning..."
        self.scan_button.enabled = False
        self.cancel_button.enabled = True
        self._check()
        worker.start()
        return worker

    def _end_scan(self) -> None:
        self.scan_worker = None
        self.scan_button.enabled = self.worker is None
        self.cancel_button.enabled = self.worker is not None

    def _abandon_scan(self, message: str) -> None:
        """Forget the running scan: its worker ends, its result is never applied."""
        worker = self.scan_worker
        self.session.abandon_scan()
        self._end_scan()
        if worker is not None:
            worker.quit()
        self.status.value = message
        self._check()

    def _on_scan_progress(self, worker: Any, read: ScanProgress | None) -> None:
        if read is not None and worker is self.scan_worker:
            self.status.value = f"Scanning... {read[0]}/{read[1]} TIFF headers read"

    def _on_scan_returned(self, worker: Any, ticket: ScanTicket, out: ConversionPlan | str) -> None:
        if worker is not self.scan_worker or not self.session.finish_scan(ticket, out):
            return  # cancelled, or the source, naming or pattern changed: a stale result
        self._end_scan()
        seconds = time.perf_counter() - ticket.started
        if isinstance(out, str):
            self.summary.value = f"Scan failed: {out}"
            self.status.value = f"Scan failed after {seconds:.1f} s."
            self._check()
            return
        ok = self._check()
        self.summary.value = self._plan_text(out, ok)
        self.status.value = f"Scanned in {seconds:.1f} s."
        self._start_thumbnails(out)

    # -- thumbnails -------------------------------------------------------------------

    def _clear_thumbnails(self) -> None:
        """Stop reading thumbnails and remove the ones shown."""
        if self._thumbnail_cancel is not None:
            self._thumbnail_cancel.set()
        if self.thumbnail_worker is not None:
            self.thumbnail_worker.quit()
        self.thumbnail_worker = self._thumbnail_cancel = None
        self.thumbnails.clear()

    def _start_thumbnails(self, plan: ConversionPlan) -> Any:
        """Read one field per channel in a worker; each is shown as it arrives."""
        from napari.qt.threading import create_worker

        self._clear_thumbnails()
        cancel = self._thumbnail_cancel = threading.Event()
        worker = create_worker(thumbnail_job, plan, cancel, _start_thread=False)
        worker.yielded.connect(lambda item: self._on_thumbnail(worker, item))
        worker.finished.connect(lambda: self._on_thumbnails_finished(worker))
        self.thumbnail_worker = worker
        worker.start()
        return worker

    def _on_destroyed(self, *_: object) -> None:
        """The dock was deleted (napari closed): read no more thumbnails, show none."""
        self._destroyed = True
        self.viewer.layers.events.inserted.disconnect(self._refresh_exports)
        self.viewer.layers.events.removed.disconnect(self._refresh_exports)
        if self._thumbnail_cancel is not None:
            self._thumbnail_cancel.set()

    def _on_thumbnail(self, worker: Any, item: Thumbnail | str) -> None:
        if worker is not self.thumbnail_worker or self._destroyed:
            return  # a stale plan's thumbnail, or no widget to show it in
        if isinstance(item, str):
            self.thumbnails.append(Label(value=item))
            return
        image = Image()
        image.set_data(item.rgb, width="auto", height="auto")  # 1:1, at most 96 px
        image.min_height, image.min_width = item.rgb.shape[:2]
        image.max_height, image.max_width = item.rgb.shape[:2]
        image.tooltip = item.path
        caption = Label(value=item.name)
        self.thumbnails.append(Container(widgets=[image, caption], labels=False))

    def _on_thumbnails_finished(self, worker: Any) -> None:
        if worker is self.thumbnail_worker:
            self.thumbnail_worker = None

    def _on_scan_finished(self, worker: Any) -> None:
        if worker is self.scan_worker:  # ended without a result (quit from napari's activity)
            self._abandon_scan("Scan stopped.")

    def _plan_text(self, plan: ConversionPlan, config_ok: bool) -> str:
        s = plan.summary()
        lines = [
            f"scheme: {s['scheme']}  files: {s['files']}",
            f"wells: {s['wells']}  fields: {s['fields']}  channels: {s['channels']} "
            f"({', '.join(s['channel_names'])})  z: {s['z']}  t: {s['t']}",
            f"plane: {s['plane_shape'][0]} x {s['plane_shape'][1]} {s['dtype']}",
            f"total size: {_size(s['raw_bytes'])} (files {_size(s['source_bytes'])})",
        ]
        if config_ok:
            try:
                estimate = plan.estimate_output_bytes(self.session.config())
                lines.append(f"estimated output: {_size(estimate)}")
            except (WellZarrError, OSError, ValueError) as err:
                lines.append(f"estimated output: unknown ({err})")
        lines.append(
            f"unmatched files: {s['unmatched_files']}  missing planes: {s['missing_planes']}"
        )
        lines += metadata_lines(plan)
        lines += ["", plate_map([(w.well.row, w.well.column) for w in plan.wells])]
        return "\n".join(lines)

    def _layer_tuples(self) -> list[tuple[Any, dict[str, Any], str]]:
        from napari.layers import Image, Labels

        return [
            layer.as_layer_data_tuple()
            for layer in self.viewer.layers
            if isinstance(layer, (Image, Labels))
        ]

    def _layers_summary(self) -> str:
        from napari_wellzarr.plugin import layer_wells

        try:
            mapping = layer_wells.map_layers(self._layer_tuples())
        except WellZarrError as err:
            return str(err)
        first = mapping.wells[0]
        lines = [
            f"wells: {len(mapping.wells)} ({', '.join(w.name for w in mapping.wells)})",
            f"channels: {len(first.channels)} ({', '.join(c.label for c in first.channels)})",
            f"well shape: {first.data.shape} {first.data.dtype}",
        ]
        return "\n".join(lines)

    # -- run ------------------------------------------------------------------------

    def run(self, *_: object) -> Any:
        """Start the conversion in a worker thread; return the worker (None if refused)."""
        from napari.qt.threading import create_worker

        self._check()
        layers = self._layer_tuples() if self.session.options.source_kind is Source.LAYERS else []
        job = self.session.start_run(layers)
        if isinstance(job, str):
            if job:
                self.status.value = job
            return None
        self.result, self.error = None, ""
        self.progress.value = 0
        self.status.value = "Converting..."
        worker = create_worker(_drain, job, _start_thread=False)
        worker.yielded.connect(self._on_event)
        worker.returned.connect(self._on_result)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.scan_button.enabled = False
        worker.start()
        return worker

    def cancel(self, *_: object) -> None:
        """Abandon the scan, or ask the conversion to start no further well."""
        if self.scan_worker is not None:
            self._abandon_scan("Scan cancelled.")
            return
        self.session.cancel_run()
        self.status.value = "Cancelling after the wells in flight..."

    def _on_event(self, event: WellEvent) -> None:
        self.progress.max = max(event.total, 1)
        self.progress.value = event.done
        note = f" ({event.message})" if event.message else ""
        self.status.value = f"{event.done}/{event.total}: {event.well} {event.status}{note}"

    def _on_result(self, result: ConversionResult) -> None:
        self.result = result
        if result.complete:
            self.status.value = (
                f"Done: {len(result.written)} written, {len(result.skipped)} kept "
                f"in {result.seconds:.1f} s"
            )
            self.viewer.open(str(result.plate), plugin="napari-wellzarr")
            return
        why = "Cancelled" if result.cancelled else "Incomplete"
        failed = "; ".join(f"{w}: {m}" for w, m in result.failed[:3])
        self.status.value = (
            f"{why}: {len(result.written)} well(s) written and valid. "
            f"{failed + '. ' if failed else ''}{result.resume_hint} (tick 'resume' and Run)"
        )

    def _on_error(self, err: BaseException) -> None:
        self.error = f"{type(err).__name__}: {err}"
        self.status.value = f"Failed: {self.error}"

    def _on_finished(self) -> None:
        self.worker = None
        self.session.finish_run()
        self.cancel_button.enabled = False
        self.scan_button.enabled = self.scan_worker is None
        self._check()
