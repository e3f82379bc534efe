"""Dock widget: convert a folder of microscope images (or the open layers) into a plate."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
    TextEdit,
)

from napari_wellzarr.convert.engine import (
    ConversionPlan,
    ConversionResult,
    WellEvent,
    convert,
    scan_source,
)
from napari_wellzarr.errors import ConfigError, WellZarrError
from napari_wellzarr.storage.config import Compressor, StorageConfig
from napari_wellzarr.storage.geometry import STANDARD_FORMATS, PlateGeometry, row_letters

if TYPE_CHECKING:
    from collections.abc import Generator

    import napari.viewer

__all__ = ["ConvertWidget"]

FOLDER: Final = "folder"
LAYERS: Final = "current layers"
DEFAULT: Final = "default"
AUTO: Final = "auto"
_MAP_LIMIT: Final = 48  # columns of the text plate map
_POLL: Final = 0.05  # seconds between a scan worker's checks for quit/cancel

#: What a scan is for: source kind, folder, naming scheme, pattern.
ScanKey = tuple[str, str, str, str]
ScanProgress = tuple[int, int]  # TIFF headers read, of


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


class _ScanCancelled(Exception):
    """Raised from the scan's progress callback to stop an abandoned scan."""


def _scan_job(
    source: Path, scheme: str, pattern: str | None, cancel: threading.Event
) -> Generator[ScanProgress | None, None, ConversionPlan | str]:
    """A napari worker's generator: scan in a daemon thread, yield while waiting.

    Yields the latest ``(headers read, total)`` (or ``None``) every ``_POLL`` seconds,
    so the worker sees ``quit()`` promptly even while the scan is stuck in a pattern
    match.  Returns the plan, or the error message: a scan never raises into the worker,
    so a failure is shown in the widget, not as a traceback notification.
    """
    reports: queue.SimpleQueue[ScanProgress] = queue.SimpleQueue()
    done = threading.Event()
    box: dict[str, ConversionPlan | str] = {}

    def progress(read: int, total: int) -> None:
        if cancel.is_set():
            raise _ScanCancelled
        reports.put((read, total))

    def target() -> None:
        try:
            box["out"] = scan_source(source, scheme=scheme, pattern=pattern, progress=progress)
        except _ScanCancelled:
            box["out"] = "cancelled"
        except (WellZarrError, OSError) as err:
            box["out"] = str(err)
        except Exception as err:  # a bug: still reported in the widget
            box["out"] = f"{type(err).__name__}: {err}"
        finally:
            done.set()

    threading.Thread(target=target, name="wellzarr-scan", daemon=True).start()
    while not done.wait(_POLL):
        latest = None
        while not reports.empty():
            latest = reports.get()
        yield latest
    return box["out"]


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


class ConvertWidget(Container[Any]):
    """Convert a folder of TIFFs (or the viewer's image layers) to a well-chunked plate."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.plan: ConversionPlan | None = None
        self.result: ConversionResult | None = None
        self.error: str = ""
        self.worker: Any = None  # the running conversion
        self.scan_worker: Any = None  # the running scan (None once it ended or was abandoned)
        self._cancel = threading.Event()
        self._scan_cancel = threading.Event()
        self._scan_started = 0.0

        self.source_kind = ComboBox(label="Source", choices=[FOLDER, LAYERS], value=FOLDER)
        self.source = FileEdit(label="Folder", mode=FileDialogMode.EXISTING_DIRECTORY)
        self.scheme = ComboBox(
            label="Naming", choices=[AUTO, "imagexpress", "opera", "pattern"], value=AUTO
        )
        self.pattern = LineEdit(label="Pattern")
        self.output = FileEdit(label="Output", mode=FileDialogMode.OPTIONAL_FILE, filter="*.zarr")
        self.compressor = ComboBox(
            label="Compressor",
            choices=[c.value for c in Compressor],
            value=StorageConfig().compressor.value,
        )
        self.level = LineEdit(label="Level", value="")
        self.level.tooltip = "empty: the codec's default level"
        self.shuffle = ComboBox(label="Shuffle", choices=[DEFAULT, "none", "byte", "bit"])
        self.chunks = ComboBox(label="Chunks", choices=[DEFAULT, "sharded", "plane", "well"])
        self.ngff_version = ComboBox(label="OME-NGFF", choices=["0.5", "0.4"], value="0.5")
        self.plate = ComboBox(
            label="Plate", choices=[AUTO, *(str(n) for n in sorted(STANDARD_FORMATS))]
        )
        self.fields = ComboBox(label="Fields", choices=["stacked", "per-field"])
        self.pyramid_levels = SpinBox(label="Pyramid levels", min=1, max=12, value=1)
        self.strict = CheckBox(text="strict (refuse missing planes)")
        self.resume = CheckBox(text="resume an interrupted conversion")
        self.overwrite = CheckBox(text="overwrite an existing plate")
        self.config_message = Label(value="")
        self.scan_button = PushButton(text="Scan")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.summary = TextEdit(label="Found", value="")
        self.summary.read_only = True
        self.progress = ProgressBar(label="Wells", min=0, max=1, value=0)
        self.status = Label(value="")

        self.extend(
            [
                self.source_kind,
                self.source,
                self.scheme,
                self.pattern,
                self.output,
                self.compressor,
                self.level,
                self.shuffle,
                self.chunks,
                self.ngff_version,
                self.plate,
                self.fields,
                self.pyramid_levels,
                self.strict,
                self.resume,
                self.overwrite,
                self.config_message,
                self.scan_button,
                self.summary,
                self.run_button,
                self.cancel_button,
                self.progress,
                self.status,
            ]
        )
        options = (
            self.compressor,
            self.level,
            self.shuffle,
            self.chunks,
            self.ngff_version,
            self.plate,
            self.fields,
            self.pyramid_levels,
            self.resume,
            self.overwrite,
            self.output,
        )
        for widget in options:
            widget.changed.connect(self._check)
        for widget in (self.source_kind, self.source, self.scheme, self.pattern):
            widget.changed.connect(self._forget_plan)
        self.scan_button.changed.connect(self.scan)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self._check()

    # -- options ------------------------------------------------------------------

    def build_config(self) -> StorageConfig:
        """The StorageConfig of the current options; raises ConfigError explaining why not."""
        text = self.level.value.strip()
        try:
            level = int(text) if text else None
        except ValueError:
            raise ConfigError(f"level={text!r} must be a whole number (or empty)") from None
        compressor = Compressor(self.compressor.value)
        shuffle = None if self.shuffle.value == DEFAULT else self.shuffle.value
        plate: str | PlateGeometry = (
            self.plan.smallest_plate()
            if self.plate.value == AUTO and self.plan is not None
            else ("96" if self.plate.value == AUTO else self.plate.value)
        )
        config = StorageConfig(
            compressor=compressor,
            level=level,
            shuffle=shuffle,  # coerced and checked by StorageConfig
            chunks=None if self.chunks.value == DEFAULT else self.chunks.value,
            ngff_version=self.ngff_version.value,
            plate=plate,  # type: ignore[arg-type]
            fields=self.fields.value,
            pyramid_levels=int(self.pyramid_levels.value),
        )
        if self.resume.value and self.overwrite.value:
            raise ConfigError("resume and overwrite exclude each other")
        if self.plan is not None:
            self.plan.check_config(config)
        return config

    def _check(self, *_: object) -> bool:
        """Explain an impossible combination; enable *Run* when it may start (config ok?)."""
        try:
            self.build_config()
        except WellZarrError as err:
            self.config_message.value = f"\u26a0 {err}"
            self.run_button.enabled = False
            return False
        self.config_message.value = ""
        scanned = self.plan is not None or self.source_kind.value == LAYERS
        self.run_button.enabled = scanned and self.worker is None and self.scan_worker is None
        self.run_button.tooltip = "" if scanned else "Scan the folder first"
        return True

    def _forget_plan(self, *_: object) -> None:
        if self.scan_worker is not None:
            self._abandon_scan("Scan stopped: the source, naming or pattern changed.")
        self.plan = None
        self.summary.value = ""
        self.source.enabled = self.source_kind.value == FOLDER
        self._check()

    def _dest(self) -> Path | None:
        value = self.output.value
        text = "" if value is None else str(value)
        return None if text in ("", ".") else Path(text)

    # -- scan -----------------------------------------------------------------------

    def _scan_key(self) -> ScanKey:
        return (
            str(self.source_kind.value),
            str(self.source.value),
            str(self.scheme.value),
            str(self.pattern.value),
        )

    def scan(self, *_: object) -> Any:
        """Start scanning the source folder in a worker; return it (None: nothing started).

        The current layers are summarised at once (they are in memory).  A folder's plan
        is applied by :meth:`_on_scan_returned` on the main thread, only if the scan was
        neither cancelled nor overtaken by a change of the source, scheme or pattern.
        """
        from napari.qt.threading import create_worker

        if self.scan_worker is not None or self.worker is not None:
            return None
        self.plan = None
        if self.source_kind.value == LAYERS:
            self.summary.value = self._layers_summary()
            self._check()
            return None
        key = self._scan_key()
        if key[1] in ("", "."):  # an empty folder field: never walk the working directory
            self.summary.value = "Scan failed: choose a folder first."
            self._check()
            return None
        self._scan_cancel = threading.Event()
        worker = create_worker(
            _scan_job,
            Path(key[1]),
            key[2],
            key[3] or None,
            self._scan_cancel,
            _start_thread=False,
        )
        worker.yielded.connect(lambda read: self._on_scan_progress(worker, read))
        worker.returned.connect(lambda out: self._on_scan_returned(worker, key, out))
        worker.finished.connect(lambda: self._on_scan_finished(worker))
        self.scan_worker = worker
        self._scan_started = time.perf_counter()
        self.summary.value = ""
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
        self._scan_cancel.set()
        self._end_scan()
        if worker is not None:
            worker.quit()
        self.status.value = message
        self._check()

    def _on_scan_progress(self, worker: Any, read: ScanProgress | None) -> None:
        if read is not None and worker is self.scan_worker:
            self.status.value = f"Scanning... {read[0]}/{read[1]} TIFF headers read"

    def _on_scan_returned(self, worker: Any, key: ScanKey, out: ConversionPlan | str) -> None:
        if worker is not self.scan_worker or key != self._scan_key():
            return  # cancelled, or the source, scheme or pattern changed: a stale result
        self._end_scan()
        seconds = time.perf_counter() - self._scan_started
        if isinstance(out, str):
            self.summary.value = f"Scan failed: {out}"
            self.status.value = f"Scan failed after {seconds:.1f} s."
            self._check()
            return
        self.plan = out
        ok = self._check()
        self.summary.value = self._plan_text(out, ok)
        self.status.value = f"Scanned in {seconds:.1f} s."

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
                estimate = plan.estimate_output_bytes(self.build_config())
                lines.append(f"estimated output: {_size(estimate)}")
            except (WellZarrError, OSError, ValueError) as err:
                lines.append(f"estimated output: unknown ({err})")
        lines.append(
            f"unmatched files: {s['unmatched_files']}  missing planes: {s['missing_planes']}"
        )
        lines += ["", plate_map([(w.well.row, w.well.column) for w in plan.wells])]
        return "\n".join(lines)

    def _layer_tuples(self) -> list[tuple[Any, dict[str, Any], str]]:
        return [
            layer.as_layer_data_tuple()
            for layer in self.viewer.layers
            if layer._type_string in ("image", "labels")
        ]

    def _layers_summary(self) -> str:
        from napari_wellzarr.plugin import layer_wells

        try:
            plan = layer_wells.map_layers(self._layer_tuples())
        except WellZarrError as err:
            return str(err)
        first = plan.wells[0]
        lines = [
            f"wells: {len(plan.wells)} ({', '.join(w.name for w in plan.wells)})",
            f"channels: {len(first.channels)} ({', '.join(c.label for c in first.channels)})",
            f"well shape: {first.data.shape} {first.data.dtype}",
        ]
        return "\n".join(lines)

    # -- run ------------------------------------------------------------------------

    def run(self, *_: object) -> Any:
        """Start the conversion in a worker thread; return the worker (None if refused)."""
        from napari.qt.threading import create_worker

        if self.worker is not None or self.scan_worker is not None or not self._check():
            return None
        dest = self._dest()
        if dest is None:
            self.status.value = "Choose an output path first."
            return None
        config = self.build_config()
        if self.source_kind.value == FOLDER:
            if self.plan is None:  # (Run is disabled then)
                self.status.value = "Scan the folder first."
                return None
            config = self.build_config()  # the plate format may follow the plan
            job = self._convert_folder(self.plan, dest, config)
        else:
            job = self._convert_layers(dest, config)
        self._cancel = threading.Event()
        self.result, self.error = None, ""
        self.progress.value = 0
        self.status.value = "Converting..."
        worker = create_worker(self._drain, job, _start_thread=False)
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

    @staticmethod
    def _drain(
        job: Generator[WellEvent, None, ConversionResult],
    ) -> Generator[WellEvent, None, ConversionResult]:
        return (yield from job)

    def _convert_folder(
        self, plan: ConversionPlan, dest: Path, config: StorageConfig
    ) -> Generator[WellEvent, None, ConversionResult]:
        events: queue.Queue[WellEvent | None] = queue.Queue()
        box: dict[str, Any] = {}
        strict, resume, overwrite = self.strict.value, self.resume.value, self.overwrite.value

        def target() -> None:
            try:
                box["result"] = convert(
                    plan,
                    dest,
                    config,
                    strict=strict,
                    resume=resume,
                    overwrite=overwrite,
                    progress=events.put,
                    cancel=self._cancel,
                )
            except BaseException as err:  # handed to the worker thread, raised there
                box["error"] = err
            finally:
                events.put(None)

        thread = threading.Thread(target=target, name="wellzarr-convert", daemon=True)
        thread.start()
        while (event := events.get()) is not None:
            yield event
        thread.join()
        if "error" in box:
            raise box["error"]
        result: ConversionResult = box["result"]
        return result

    def _convert_layers(
        self, dest: Path, config: StorageConfig
    ) -> Generator[WellEvent, None, ConversionResult]:
        """Write the open image (+ labels) layers with the writer's layer-to-well mapping."""
        from napari_wellzarr.plugin import layer_wells
        from napari_wellzarr.storage.store import PlateStore

        layers = self._layer_tuples()
        overwrite, auto_plate = self.overwrite.value, self.plate.value == AUTO
        cancel = self._cancel

        def job() -> Generator[WellEvent, None, ConversionResult]:
            start = time.perf_counter()
            plan = layer_wells.map_layers(layers)
            chosen = dataclasses.replace(config, plate=plan.config.plate) if auto_plate else config
            written: list[str] = []
            names = [w.name for w in plan.wells]
            with PlateStore.create(dest, chosen, overwrite=overwrite) as store:
                for i, well in enumerate(plan.wells):
                    if cancel.is_set():
                        break
                    t0 = time.perf_counter()
                    plan.write(store, well)
                    written.append(well.name)
                    yield WellEvent(
                        well.name,
                        "written",
                        i + 1,
                        len(names),
                        well.data.nbytes,
                        time.perf_counter() - t0,
                    )
            return ConversionResult(
                plate=dest,
                written=tuple(written),
                remaining=tuple(names[len(written) :]),
                cancelled=cancel.is_set(),
                seconds=time.perf_counter() - start,
            )

        return job()

    def cancel(self, *_: object) -> None:
        """Abandon the scan, or ask the conversion to start no further well."""
        if self.scan_worker is not None:
            self._abandon_scan("Scan cancelled.")
            return
        self._cancel.set()
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
        self.cancel_button.enabled = False
        self.scan_button.enabled = self.scan_worker is None
        self._check()
