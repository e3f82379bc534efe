"""The converter widget without Qt: its options, and the scans and conversions it runs."""

from __future__ import annotations

import dataclasses
import inspect
import queue
import re
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, NamedTuple

import numpy as np

from napari_wellzarr.convert.engine import (
    ConversionPlan,
    ConversionResult,
    WellEvent,
    convert,
    scan_source,
)
from napari_wellzarr.convert.instrument import ChannelInfo
from napari_wellzarr.convert.naming import registered_schemes
from napari_wellzarr.convert.vendors import vendor_names
from napari_wellzarr.errors import ConfigError, WellZarrError
from napari_wellzarr.storage._spec import WELLZARR_KEY
from napari_wellzarr.storage.config import (
    ChunkStrategy,
    Compressor,
    FieldArrangement,
    NgffVersion,
    Shuffle,
    StorageConfig,
)
from napari_wellzarr.storage.geometry import STANDARD_FORMATS, PlateGeometry
from napari_wellzarr.storage.locations import is_url, refuse_url

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from napari_wellzarr.convert.plan import SourcePlane
    from napari_wellzarr.plugin.layer_wells import LayerTuple

__all__ = [
    "ConversionOptions",
    "ConverterSession",
    "ScanTicket",
    "Source",
    "Thumbnail",
    "convert_folder",
    "convert_layers",
    "downsample",
    "metadata_lines",
    "open_exports",
    "scan_job",
    "thumbnail_job",
    "thumbnail_planes",
    "tinted",
]

AUTO: Final = "auto"
PATTERN: Final = "pattern"
POLL: Final = 0.05  # seconds between a scan worker's checks for quit/cancel

ScanProgress = tuple[int, int]  # TIFF headers read, of
Job = Generator[WellEvent, None, ConversionResult]


class Source(StrEnum):
    """What the widget converts."""

    FOLDER = "folder"
    LAYERS = "current layers"


def _labelled(members: Sequence[StrEnum]) -> list[tuple[str, Any]]:
    return [(m.value, m) for m in members]


_DEFAULT: Final = ("default", None)
_COMPRESSORS: Final = _labelled(list(Compressor))
_SHUFFLES: Final = [_DEFAULT, *_labelled(list(Shuffle))]
_CHUNKS: Final = [_DEFAULT, *_labelled(list(ChunkStrategy))]
_VERSIONS: Final = _labelled(sorted(NgffVersion, reverse=True))  # the newest first
_PLATES: Final = [(AUTO, None), *((str(n), n) for n in sorted(STANDARD_FORMATS))]
_FIELDS: Final = _labelled(list(FieldArrangement))


def naming_choices(_widget: object = None) -> list[str]:
    """``auto``, every instrument export, every naming scheme, and ``pattern`` (a regex)."""
    schemes = (scheme.name for scheme in registered_schemes())
    return [AUTO, *vendor_names(), *schemes, PATTERN]


class ScanKey(NamedTuple):
    """What a scan is for: a plan is used only while these options stay the same."""

    source_kind: Source
    folder: Path | str  # a folder, or an s3:// URL
    naming: str
    pattern: str


@dataclass(frozen=True)
class ConversionOptions:
    """The widget's options form (magicgui builds one widget per parameter).

    Parameters
    ----------
    source_kind
        Convert a folder of microscope images, or the viewer's image and labels layers.
    source
        The folder of images, or an ``s3://bucket/prefix`` URL of one uploaded to object
        storage (typed into the field; credentials as for reading remote plates).
    naming
        How file names name wells, fields and channels (``auto``: detect).
    pattern
        With naming ``pattern``: a regex with named groups (``well``, ``channel``...).
    output
        The plate to write (``.zarr``): a folder, or (images from a folder) an
        ``s3://bucket/plate.zarr`` URL.
    compressor
        Compression codec of the pixel chunks.
    level
        The codec's level (empty: the codec's default level).
    shuffle
        Blosc's shuffle filter.
    chunks
        How each image is cut into chunks.
    ngff_version
        0.5 (zarr v3) or 0.4 (zarr v2).
    plate
        Plate format (``auto``: the smallest standard plate holding every well).
    fields
        Fields of view in one array per well, or one image group per field.
    pyramid_levels
        Resolution levels (1 = full resolution only; 0 = automatic: the level napari
        draws the whole plate with, the storage default).
    strict
        Refuse a source with missing planes.
    resume
        Complete an interrupted conversion into ``output``.
    overwrite
        Delete an existing plate at ``output`` first.
    """

    source_kind: Annotated[Source, {"label": "Source", "choices": _labelled(list(Source))}] = (
        Source.FOLDER
    )
    source: Annotated[Path, {"label": "Folder", "mode": "d"}] = Path()
    naming: Annotated[str, {"label": "Naming", "choices": naming_choices}] = AUTO
    pattern: Annotated[str, {"label": "Pattern"}] = ""
    output: Annotated[Path, {"label": "Output", "mode": "w", "filter": "*.zarr"}] = Path()
    compressor: Annotated[Compressor, {"label": "Compressor", "choices": _COMPRESSORS}] = (
        StorageConfig.compressor
    )
    # A text field: the valid range depends on the codec, and empty (None) is a choice.
    level: Annotated[str, {"label": "Level"}] = ""
    shuffle: Annotated[
        Shuffle | None, {"label": "Shuffle", "choices": _SHUFFLES, "nullable": False}
    ] = None
    chunks: Annotated[
        ChunkStrategy | None, {"label": "Chunks", "choices": _CHUNKS, "nullable": False}
    ] = None
    ngff_version: Annotated[NgffVersion, {"label": "OME-NGFF", "choices": _VERSIONS}] = (
        StorageConfig.ngff_version
    )
    plate: Annotated[int | None, {"label": "Plate", "choices": _PLATES, "nullable": False}] = None
    fields: Annotated[FieldArrangement, {"label": "Fields", "choices": _FIELDS}] = (
        StorageConfig.fields
    )
    pyramid_levels: Annotated[int, {"label": "Pyramid levels", "min": 0, "max": 12}] = 0
    strict: Annotated[bool, {"text": "strict (refuse missing planes)", "label": ""}] = False
    resume: Annotated[bool, {"text": "resume an interrupted conversion", "label": ""}] = False
    overwrite: Annotated[bool, {"text": "overwrite an existing plate", "label": ""}] = False

    @property
    def scan_key(self) -> ScanKey:
        """The options a scan depends on."""
        return ScanKey(self.source_kind, self.source_location, self.naming, self.pattern)

    @property
    def source_location(self) -> Path | str:
        """The source folder, or its URL as text (the Path field reads s3://b/x as s3:/b/x)."""
        return _url_text(self.source)

    @property
    def dest(self) -> Path | str | None:
        """The output plate (a URL as text), or None when none is chosen."""
        where = _url_text(self.output)
        return None if str(where) in ("", ".") else where

    def storage_config(self, plan: ConversionPlan | None = None) -> StorageConfig:
        """The StorageConfig of these options; raises ConfigError explaining why not.

        An ``auto`` plate is the smallest standard plate holding ``plan``'s wells
        (96 wells without a plan), and ``plan`` must fit the configuration.
        """
        text = self.level.strip()
        try:
            level = int(text) if text else None
        except ValueError:
            raise ConfigError(f"level={text!r} must be a whole number (or empty)") from None
        if self.plate is not None:
            plate = PlateGeometry.parse(self.plate)
        else:
            plate = plan.smallest_plate() if plan is not None else PlateGeometry.parse(96)
        config = StorageConfig(
            compressor=self.compressor,
            level=level,
            shuffle=self.shuffle,
            chunks=self.chunks,
            ngff_version=self.ngff_version,
            plate=plate,
            fields=self.fields,
            pyramid_levels=int(self.pyramid_levels) or None,
        )
        if self.resume and self.overwrite:
            raise ConfigError("resume and overwrite exclude each other")
        if self.dest is not None:  # s3:// for images from a folder: else RemoteWriteError
            refuse_url(self.dest, "a plate", s3_ok=self.source_kind is Source.FOLDER)
        if plan is not None:
            plan.check_config(config)
        return config


# magicgui reads parameter annotations unevaluated; give it the evaluated signature.
ConversionOptions.__signature__ = inspect.signature(  # type: ignore[attr-defined]
    ConversionOptions, eval_str=True
)


class _ScanCancelled(Exception):
    """Raised from the scan's progress callback to stop an abandoned scan."""


def _url_text(path: Path) -> Path | str:
    """A Path field's value; a URL as text (the Path field reads s3://b/x as s3:/b/x)."""
    text = str(path)
    if is_url(text):
        return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*):/+", r"\1://", text)
    return path


def scan_job(
    source: Path | str, naming: str, pattern: str | None, cancel: threading.Event
) -> Generator[ScanProgress | None, None, ConversionPlan | str]:
    """Scan ``source`` in a daemon thread; yield while waiting (a worker's generator).

    Yields the latest ``(headers read, total)`` (or ``None``) every ``POLL`` seconds,
    so that a worker sees a quit promptly even while the scan is stuck in a pattern
    match.  Returns the plan, or the error message (``"cancelled"`` once ``cancel`` is
    set): a scan never raises, so a failure is shown in the widget, not as a traceback.
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
            box["out"] = scan_source(source, scheme=naming, pattern=pattern, progress=progress)
        except _ScanCancelled:
            box["out"] = "cancelled"
        except (WellZarrError, OSError) as err:
            box["out"] = str(err)
        except Exception as err:  # a bug: still reported in the widget
            box["out"] = f"{type(err).__name__}: {err}"
        finally:
            done.set()

    threading.Thread(target=target, name="wellzarr-scan", daemon=True).start()
    while not done.wait(POLL):
        latest = None
        while not reports.empty():
            latest = reports.get()
        yield latest
    return box["out"]


def convert_folder(
    plan: ConversionPlan,
    dest: Path | str,
    config: StorageConfig,
    *,
    strict: bool,
    resume: bool,
    overwrite: bool,
    cancel: threading.Event,
) -> Job:
    """:func:`convert` in a thread, its progress events yielded; returns its result."""
    events: queue.Queue[WellEvent | None] = queue.Queue()
    box: dict[str, Any] = {}

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
                cancel=cancel,
            )
        except BaseException as err:  # handed to the generator's thread, raised there
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


def convert_layers(
    layers: Sequence[LayerTuple],
    dest: Path,
    config: StorageConfig,
    *,
    auto_plate: bool,
    overwrite: bool,
    cancel: threading.Event,
) -> Job:
    """Write image (+ labels) layers with the writer's layer-to-well mapping.

    With ``auto_plate`` the plate format is the mapping's (the wells' smallest plate).
    """
    from napari_wellzarr.plugin import layer_wells

    start = time.perf_counter()
    mapping = layer_wells.map_layers(layers)
    if auto_plate:
        config = dataclasses.replace(config, plate=mapping.config.plate)
    written = yield from layer_wells.write_plate(
        mapping, dest, config, overwrite=overwrite, cancel=cancel
    )
    return ConversionResult(
        plate=dest,
        written=written,
        remaining=tuple(w.name for w in mapping.wells[len(written) :]),
        cancelled=cancel.is_set(),
        seconds=time.perf_counter() - start,
    )


@dataclass
class ScanTicket:
    """One scan: what it is for, and its cancel event."""

    key: ScanKey
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.perf_counter)

    def job(self) -> Generator[ScanProgress | None, None, ConversionPlan | str]:
        """The scan's worker generator (:func:`scan_job`; a generator function for workers)."""
        return (
            yield from scan_job(
                self.key.folder, self.key.naming, self.key.pattern or None, self.cancel
            )
        )


class ConverterSession:
    """What the widget knows between clicks: options, plan, the running scan and run.

    A plan is kept only for the options it was scanned with; a scan result that
    arrives after the source, naming or pattern changed (or after a cancel) is dropped.
    """

    def __init__(self, options: ConversionOptions | None = None) -> None:
        self.options = options or ConversionOptions()
        self.plan: ConversionPlan | None = None
        self.scan: ScanTicket | None = None  # the running scan
        self.run_cancel: threading.Event | None = None  # set while a conversion runs

    @property
    def busy(self) -> bool:
        """A scan or a conversion is running."""
        return self.scan is not None or self.run_cancel is not None

    @property
    def scanned(self) -> bool:
        """The source is ready to convert (a folder's plan, or layers: nothing to scan)."""
        return self.plan is not None or self.options.source_kind is Source.LAYERS

    def update(self, options: ConversionOptions) -> bool:
        """Take new options; True when they change what to scan (the plan is forgotten)."""
        changed = options.scan_key != self.options.scan_key
        self.options = options
        if changed:
            self.plan = None
        return changed

    def config(self) -> StorageConfig:
        """The StorageConfig of the options and plan; raises ConfigError explaining why not."""
        return self.options.storage_config(self.plan)

    def config_problem(self) -> str:
        """Why the options cannot be converted, or ``""``."""
        try:
            self.config()
        except WellZarrError as err:
            return str(err)
        return ""

    def may_run(self) -> bool:
        """Run may start: valid options, a scan of the current options, nothing running."""
        return not self.busy and self.scanned and not self.config_problem()

    # -- scan -----------------------------------------------------------------------

    def start_scan(self) -> ScanTicket:
        """Forget the plan and begin a scan of the folder; ConfigError if there is none."""
        self.plan = None
        key = self.options.scan_key
        if str(key.folder) in ("", "."):  # never walk the working directory
            raise ConfigError("choose a folder first")
        self.scan = ScanTicket(key)
        return self.scan

    def finish_scan(self, ticket: ScanTicket, out: ConversionPlan | str) -> bool:
        """Apply a scan's outcome; False (and nothing changes) for a stale one."""
        if ticket is not self.scan or ticket.key != self.options.scan_key:
            return False
        self.scan = None
        if not isinstance(out, str):
            self.plan = out
        return True

    def abandon_scan(self) -> bool:
        """Stop waiting for the running scan (its result will be dropped); False if none."""
        if self.scan is None:
            return False
        self.scan.cancel.set()
        self.scan = None
        return True

    # -- run ------------------------------------------------------------------------

    def start_run(self, layers: Sequence[LayerTuple] = ()) -> Job | str:
        """The conversion's generator, or why it cannot start (``""``: see the options)."""
        if self.busy or self.config_problem():
            return ""
        dest = self.options.dest
        if dest is None:
            return "Choose an output path first."
        if not self.scanned:
            return "Scan the folder first."
        config, options = self.config(), self.options
        cancel = self.run_cancel = threading.Event()
        if options.source_kind is Source.FOLDER:
            assert self.plan is not None  # (scanned)
            return convert_folder(
                self.plan,
                dest,
                config,
                strict=options.strict,
                resume=options.resume,
                overwrite=options.overwrite,
                cancel=cancel,
            )
        if isinstance(dest, str):  # (storage_config refused it: config_problem says so)
            return f"cannot write layers to {dest}: choose a folder"
        return convert_layers(
            layers,
            dest,
            config,
            auto_plate=options.plate is None,
            overwrite=options.overwrite,
            cancel=cancel,
        )

    def cancel_run(self) -> None:
        """Start no further well of the running conversion."""
        if self.run_cancel is not None:
            self.run_cancel.set()

    def finish_run(self) -> None:
        """The conversion ended (returned, raised or was quit)."""
        self.run_cancel = None


# -- what a scan found: the instrument's metadata and one thumbnail per channel -----------

_LIST: Final = 8  # skipped files, positions and conditions listed before "... and N more"
THUMBNAIL_SIDE: Final = 96  # pixels of a thumbnail's longer side (at most)


def _um(value: float) -> str:
    return f"{value:.4g}"


def _more(items: Sequence[str], total: int) -> list[str]:
    extra = total - len(items)
    return [*items, f"  ... and {extra} more"] if extra > 0 else list(items)


def metadata_lines(plan: ConversionPlan) -> list[str]:
    """What the export's own metadata said, as lines of text (empty for plain folders).

    Channels (name, colour, emission), pixel size, z step, time interval, the fields'
    stage positions (those of the first wells), projections, per-well conditions, the
    files left out with their reasons, and the reader's warnings.
    """
    meta = plan.instrument
    if meta is None:
        return []
    fmt = "" if meta.plate_format is None else f" ({meta.plate_format[0]}x{meta.plate_format[1]})"
    lines = [f"instrument: {meta.vendor}  plate: {meta.plate_name or '?'}{fmt}"]
    names = meta.channels or tuple(ChannelInfo(name) for name in plan.channel_names)
    lines.append("channels:")
    for c, info in enumerate(names):
        extra = [f"#{info.color}" if info.color else "no colour"]
        if info.emission_nm:
            extra.append(f"emission {info.emission_nm:g} nm")
        lines.append(f"  {c + 1}. {info.name} ({', '.join(extra)})")
    pixel = meta.pixel_size_um
    lines.append(
        "pixel size: "
        + ("unknown" if pixel is None else f"{_um(pixel[0])} x {_um(pixel[1])} \u00b5m")
        + "  z step: "
        + ("unknown" if meta.z_step_um is None else f"{_um(meta.z_step_um)} \u00b5m")
        + (
            ""
            if meta.time_interval_s is None
            else f"  time interval: {_um(meta.time_interval_s)} s"
        )
    )
    positions = sorted(meta.field_positions_um.items())
    lines.append(f"fields with positions: {len(positions)} (y, x \u00b5m from the well's origin)")
    shown = [
        f"  {well} field {f + 1}: ({_um(y)}, {_um(x)})" for (well, f), (y, x) in positions[:_LIST]
    ]
    lines += _more(shown, len(positions))
    projections = sum(len(w.projections) for w in plan.wells)
    methods = ", ".join(f"{c}: {m}" for c, m in sorted(meta.projection_methods.items()))
    lines.append(f"projections: {projections}" + (f" ({methods})" if methods else ""))
    conditions = sorted(meta.conditions.items())
    lines.append(f"wells with conditions: {len(conditions)}")
    shown = [
        f"  {well}: " + "; ".join(f"{k}={v}" for k, v in values.items())
        for well, values in conditions[:_LIST]
    ]
    lines += _more(shown, len(conditions))
    lines.append(f"files left out: {len(meta.skipped)}")
    lines += _more([f"  {s.path}: {s.reason}" for s in meta.skipped[:_LIST]], len(meta.skipped))
    lines += [f"warning: {w}" for w in meta.warnings]
    return lines


@dataclass(frozen=True)
class Thumbnail:
    """A small preview of one field of one channel (``rgb``: ``(h, w, 3)`` uint8)."""

    channel: int
    name: str
    color: str  # RRGGBB
    path: str  # the source file
    rgb: np.ndarray[Any, Any]


def thumbnail_planes(plan: ConversionPlan) -> list[tuple[int, SourcePlane]]:
    """One plane per channel: in the first well having it, its first field and t, middle z."""
    out: list[tuple[int, SourcePlane]] = []
    for c in range(plan.dims[1]):
        for well in plan.wells:
            planes = [p for p in well.planes if p.key.c == c]
            if planes:
                first = min(planes, key=lambda p: (p.key.field, p.key.t, p.key.z))
                stack = sorted(
                    (p for p in planes if p.key[:2] == first.key[:2] and p.key.t == first.key.t),
                    key=lambda p: p.key.z,
                )
                out.append((c, stack[len(stack) // 2]))
                break
    return out


def downsample(plane: np.ndarray[Any, Any], side: int = THUMBNAIL_SIDE) -> np.ndarray[Any, Any]:
    """Block means of ``plane`` (float32) so that its longer side is at most ``side``."""
    step = max(1, -(-max(plane.shape) // side))
    h, w = (plane.shape[0] // step) * step, (plane.shape[1] // step) * step
    if h == 0 or w == 0:
        return np.asarray(plane, dtype=np.float32)
    blocks = np.asarray(plane[:h, :w], dtype=np.float32)
    means = blocks.reshape(h // step, step, w // step, step).mean(axis=(1, 3), dtype=np.float32)
    return np.asarray(means)


def tinted(small: np.ndarray[Any, Any], color: str) -> np.ndarray[Any, Any]:
    """``small`` stretched between its 1st and 99.5th percentiles, in ``color`` (RGB uint8)."""
    low, high = np.percentile(small, [1.0, 99.5]) if small.size else (0.0, 0.0)
    scaled = np.clip((small - low) / (high - low), 0, 1) if high > low else np.zeros_like(small)
    rgb = np.array([int(color[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float32)
    return np.asarray(np.round(scaled[..., None] * rgb), dtype=np.uint8)


def thumbnail_job(
    plan: ConversionPlan, cancel: threading.Event, side: int = THUMBNAIL_SIDE
) -> Generator[Thumbnail | str, None, None]:
    """One thumbnail per channel, read from its source TIFF (a worker's generator).

    Yields a :class:`Thumbnail`, or the reason a channel has none (an unreadable
    file); stops early once ``cancel`` is set.
    """
    from napari_wellzarr.convert.tiffio import read_stack
    from napari_wellzarr.storage.metadata import default_channels

    defaults = default_channels(plan.dims[1], plan.channel_names)
    infos = plan.instrument.channels if plan.instrument is not None else ()
    for c, plane in thumbnail_planes(plan):
        if cancel.is_set():
            return
        color = infos[c].color if c < len(infos) and infos[c].color else defaults[c].color
        try:
            stack = read_stack(plane.path, plan.plane_shape, plan.dtype)
        except WellZarrError as err:
            yield f"{plan.channel_names[c]}: no thumbnail ({err})"
            continue
        small = downsample(stack[plane.page or 0], side)
        color = color or "FFFFFF"
        yield Thumbnail(c, plan.channel_names[c], color, plane.path, tinted(small, color))


def open_exports(metadata: Iterable[Mapping[str, Any]]) -> list[Path]:
    """The raw export folders shown by layers with these ``metadata`` (once each, in order).

    Layers opened from an export (:mod:`~napari_wellzarr.plugin.rawview`) carry
    ``metadata["wellzarr"]["kind_of_source"] == "export"`` and the folder as ``source``.
    """
    found: dict[Path, None] = {}
    for meta in metadata:
        block = meta.get(WELLZARR_KEY) if isinstance(meta, dict) else None
        if isinstance(block, dict) and block.get("kind_of_source") == "export":
            source = block.get("source")
            if isinstance(source, str) and source:
                found.setdefault(Path(source), None)
    return list(found)
