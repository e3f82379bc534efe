"""Converting a folder of microscope images into a plate: plan, then execute."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from napari_wellzarr.convert.plan import ConversionPlan
from napari_wellzarr.convert.runners import connect_dask, run_dask, run_processes, run_serial
from napari_wellzarr.convert.sources import scan_source
from napari_wellzarr.convert.welljob import WellJob, WellOutcome, adopt_store, forget_store
from napari_wellzarr.errors import ConfigError, PlateExistsError, WellDataError
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage.acquisition import Acquisition
from napari_wellzarr.storage.claims import CLAIM_NAME, claim, release
from napari_wellzarr.storage.locations import (
    RemoteLocation,
    open_location,
    refuse_url,
    writable_url,
)
from napari_wellzarr.storage.metadata import Channel, default_channels
from napari_wellzarr.storage.overview import build_overview, forget_overview
from napari_wellzarr.storage.store import LIST_EVERY_S, PlateStore

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Sequence

    from napari_wellzarr.convert.runners import Yielded
    from napari_wellzarr.storage.config import StorageConfig

__all__ = [
    "ConversionPlan",
    "ConversionResult",
    "WellEvent",
    "convert",
    "scan_source",
]

_SHOW: Final = 5


@dataclass(frozen=True)
class WellEvent:
    """Progress of a conversion, sent to the ``progress`` callback after every well.

    ``status`` is ``written``, ``skipped`` (complete already, when resuming) or
    ``failed`` (``message`` says why).  ``done`` counts the wells finished so far.
    """

    well: str
    status: Literal["written", "skipped", "failed"]
    done: int
    total: int
    raw_bytes: int
    seconds: float
    message: str = ""


@dataclass(frozen=True)
class ConversionResult:
    """What a conversion did, and what is left to do.

    Attributes
    ----------
    plate
        The plate's path (its URL for an ``s3://`` plate).
    written, skipped
        Wells written in this run, and wells left as they were (complete already).
    failed
        ``(well, reason)`` for wells that could not be written.
    remaining
        Wells not converted because the run was cancelled or stopped at a failure.
    cancelled
        The ``cancel`` event was set.
    raw_bytes
        Uncompressed pixel bytes of the wells written.
    seconds
        Wall time of the run.
    """

    plate: Path | str
    written: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    remaining: tuple[str, ...] = ()
    cancelled: bool = False
    raw_bytes: int = 0
    seconds: float = 0.0
    missing_planes: int = field(default=0)

    @property
    def complete(self) -> bool:
        """Every well of the plan is on the plate."""
        return not self.failed and not self.remaining

    @property
    def throughput(self) -> float:
        """Raw pixel bytes written per second."""
        return self.raw_bytes / self.seconds if self.seconds > 0 else 0.0

    @property
    def resume_hint(self) -> str:
        """How to finish an incomplete conversion ("" when complete)."""
        if self.complete:
            return ""
        todo = len(self.failed) + len(self.remaining)
        return (
            f"{todo} well(s) not converted; run the same conversion again with resume=True "
            "(wellzarr convert ... --resume) to convert only those"
        )


def convert(
    plan: ConversionPlan,
    dest: str | os.PathLike[str],
    config: StorageConfig,
    *,
    strict: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    pixel_size: float | tuple[float, float] | None = None,
    z_step: float | None = None,
    progress: Callable[[WellEvent], None] | None = None,
    cancel: threading.Event | None = None,
) -> ConversionResult:
    """Convert the wells of ``plan`` into the plate ``dest``.

    Parameters
    ----------
    plan
        From :func:`scan_source`.
    dest
        The plate to create (or, with ``resume``, to complete): a folder, or an
        ``s3://bucket/prefix`` URL (credentials from the ``AWS_*`` variables).
    config
        How to store it; its plate format must hold every well of the plan.
    strict
        Refuse the conversion when a plane is missing (default: left as 0).
    workers
        Local worker processes (1 = convert in this process).
    scheduler
        Address of a dask.distributed scheduler to send the wells to instead.
    resume
        Complete an interrupted conversion: wells already on ``dest`` with the planned
        files and shape are kept, all others are (re)written.  ``config`` must equal the
        plate's.  A missing ``dest`` is simply created.  Takes over the claim of the
        interrupted run (see :class:`DestinationClaimedError`).
    overwrite
        Replace an existing plate at ``dest``.
    pixel_size, z_step
        Physical pixel size (y, x) and z step in micrometres, written to the metadata.
    progress
        Called in the calling thread after every well with a :class:`WellEvent`.
    cancel
        When set, no further well is started; wells in flight finish.

    Returns
    -------
    ConversionResult
        Written, skipped, failed and remaining wells; ``resume_hint`` says how to finish.

    Raises
    ------
    ConfigError
        Contradictory options, or ``resume`` with a configuration unlike the plate's.
    PlateExistsError
        ``dest`` exists and neither ``resume`` nor ``overwrite`` was given.
    DestinationClaimedError
        Another conversion (run) is converting into ``dest``, or was killed doing so
        (then ``resume`` completes it).
    WellDataError
        ``strict`` and planes are missing (the message names them).
    WellNameError
        A well lies outside the configured plate format.
    """
    refuse_url(dest, "a plate", s3_ok=True)  # Path() would make a folder "s3:" of s3://b/x
    _check_options(plan, config, strict, workers, scheduler, resume, overwrite)
    start = time.perf_counter()
    # Absolute paths: worker processes and dask workers may run elsewhere.
    root: Path | RemoteLocation = (
        open_location(os.fspath(dest), fresh=True) if writable_url(dest) else Path(dest).absolute()
    )
    target = root.url if isinstance(root, RemoteLocation) else str(root)
    client = None if scheduler is None else connect_dask(scheduler)  # before writing
    run_id = uuid.uuid4().hex
    try:
        if isinstance(root, Path) and root.exists() and not root.is_dir():
            raise PlateExistsError(f"{root} already exists and is not a folder; choose another")
        held = claim(root, run_id, take_over=resume)
    except BaseException:
        if client is not None:
            client.close()
        raise
    try:
        name = plan.instrument.plate_name if plan.instrument is not None else None
        store = _open_plate(root, config, resume, overwrite, name)
        if overwrite and isinstance(root, Path):  # the folder was replaced, claim and all
            held = claim(root, run_id, take_over=True)
    except BaseException:
        if client is not None:
            client.close()
        with contextlib.suppress(OSError):  # (S3 out of reach: the next run takes over)
            release(held)
        raise
    try:
        return _execute(
            plan,
            store,
            target,
            run_id,
            resume,
            workers,
            client,
            start,
            pixel_size,
            z_step,
            progress,
            cancel,
        )
    finally:
        with contextlib.suppress(OSError):  # S3 out of reach: the next run takes over
            release(held)


def _execute(
    plan: ConversionPlan,
    store: PlateStore,
    target: str,
    run_id: str,
    resume: bool,
    workers: int,
    client: object,
    start: float,
    pixel_size: float | tuple[float, float] | None,
    z_step: float | None,
    progress: Callable[[WellEvent], None] | None,
    cancel: threading.Event | None,
) -> ConversionResult:
    """Convert the wells into the opened (and claimed) plate ``store``."""
    jobs = _jobs(plan, target, run_id, resume, pixel_size, z_step)
    adopt_store(target, run_id, store)
    stop = _Stop(cancel)
    tally = _Tally(len(jobs), progress)
    lister = _Lister(store)
    try:
        runner = _runner(jobs, stop, workers, client)
        try:
            for job, outcome in runner:
                if tally.add(job, outcome):
                    stop.failed.set()  # a failure: start no further well
                elif isinstance(outcome, WellOutcome) and outcome.uploaded is not None:
                    store.uploaded[outcome.uploaded.path] = outcome.uploaded  # for the overview
                lister.maybe(len(tally.written))
        finally:
            runner.close()
    finally:
        forget_store(target)
        _list_wells(store, tally)  # every well now complete, once, whatever happened
    if len(tally.written) + len(tally.skipped) == len(jobs) and store.overview() is None:
        _finish_overview(store)  # the one writer finishing a whole plate builds its overview
    done = {*tally.written, *tally.skipped, *(w for w, _ in tally.failed)}
    per_well = {w.name: 0 for w in plan.wells}
    for miss in plan.missing:
        per_well[miss.well] += 1
    return ConversionResult(
        plate=target if store.is_remote else store.root,
        written=tuple(tally.written),
        skipped=tuple(tally.skipped),
        failed=tuple(tally.failed),
        remaining=tuple(j.well for j in jobs if j.well not in done),
        cancelled=cancel is not None and cancel.is_set() and not tally.failed,
        raw_bytes=tally.raw_bytes,
        seconds=time.perf_counter() - start,
        missing_planes=sum(per_well[w] for w in tally.written),
    )


def _finish_overview(store: PlateStore) -> None:
    """Build the plate's overview; a full disk is reported with the way to finish."""
    try:
        build_overview(store, report_disk_errors=True)
    except OSError as err:
        raise OSError(
            err.errno,
            f"{store.location}: every well is written but the plate overview is not "
            f"({err.strerror}); run the conversion again with --resume to finish",
        ) from err


class _Lister:
    """Lists the wells converted so far: after the first, then every ``LIST_EVERY_S``."""

    def __init__(self, store: PlateStore) -> None:
        self._store = store
        self._listed = 0
        self._last = -LIST_EVERY_S

    def maybe(self, written: int) -> None:
        now = time.monotonic()
        if written == self._listed or now - self._last < LIST_EVERY_S:
            return
        self._listed, self._last = written, now
        # Not fatal here: the wells stay whole on disk, and the listing at the end
        # retries and reports a failure with what to do.
        with contextlib.suppress(OSError):
            self._store.recover()


def _list_wells(store: PlateStore, tally: _Tally) -> None:
    """List the complete wells in the plate metadata (:meth:`PlateStore.recover`).

    When that write fails (a full disk), the error says what it means: the wells are
    whole on disk but not listed, and a resumed conversion lists them.
    """
    try:
        store.recover()
    except OSError as err:
        failed = "".join(f"; well {well} failed: {why}" for well, why in tally.failed)
        raise OSError(
            err.errno,
            f"{err.strerror or err}: the plate's well list could not be written "
            f"({err.filename or store.location}){failed}; the wells converted are whole "
            "but not listed: once the cause is fixed, run the same conversion again "
            "with resume=True (wellzarr convert ... --resume) to list them and finish",
        ) from err


def _check_options(
    plan: ConversionPlan,
    config: StorageConfig,
    strict: bool,
    workers: int,
    scheduler: str | None,
    resume: bool,
    overwrite: bool,
) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r}: give a whole number of processes, 1 or more")
    if scheduler is not None and workers > 1:
        raise ConfigError("workers and scheduler exclude each other: the cluster has its own")
    if scheduler is not None and importlib.util.find_spec("distributed") is None:
        raise ConfigError(
            f"scheduler={scheduler!r} needs dask.distributed: pip install distributed"
        )
    if resume and overwrite:
        raise ConfigError("resume and overwrite exclude each other")
    plan.check_config(config)
    if strict and plan.missing:
        shown = "; ".join(m.name for m in plan.missing[:_SHOW])
        more = f" and {len(plan.missing) - _SHOW} more" if len(plan.missing) > _SHOW else ""
        raise WellDataError(
            f"strict mode: {len(plan.missing)} plane(s) have no file: {shown}{more}"
        )


def _open_plate(
    dest: Path | RemoteLocation,
    config: StorageConfig,
    resume: bool,
    overwrite: bool,
    name: str | None = None,
) -> PlateStore:
    if isinstance(dest, RemoteLocation):
        return _open_remote(dest, config, resume, overwrite, name)
    if dest.is_dir() and any(dest.iterdir()) and _only_leftovers(dest):
        # Killed before its plate document was written: start again in the same folder.
        fsio.clean_stale_staging(dest)
        return PlateStore.create(dest, config, exist_ok=True, name=name)
    occupied = dest.exists() and (dest.is_file() or any(dest.iterdir()))
    if not occupied or overwrite:
        return PlateStore.create(dest, config, overwrite=overwrite, name=name)
    if not resume:
        raise PlateExistsError(
            f"{dest} already exists; resume to complete an interrupted conversion, or "
            "overwrite to replace it"
        )
    store = PlateStore.open(dest, "r+")  # also removes dead writers' staging leftovers
    if store.config != config:
        raise ConfigError(f"{dest} was written with other options: {_differences(store, config)}")
    # Wells are about to be rewritten, by workers that never touch the plate document:
    # the overview goes now, and the end of the run builds it again.
    forget_overview(dest, store.zarr_format)
    return store


def _open_remote(
    dest: RemoteLocation, config: StorageConfig, resume: bool, overwrite: bool, name: str | None
) -> PlateStore:
    """:func:`_open_plate` of an ``s3://`` plate (its objects listed once)."""
    keys = [k for k in dest.keys() if k != CLAIM_NAME]
    if not keys or overwrite:
        return PlateStore.create(dest.url, config, overwrite=overwrite, name=name)
    if not resume:
        raise PlateExistsError(
            f"{dest} already exists; resume to complete an interrupted conversion, or "
            "overwrite to replace it"
        )
    store = PlateStore.open(dest.url, "r+")
    if store.config != config:
        raise ConfigError(f"{dest} was written with other options: {_differences(store, config)}")
    # As on disk: wells are about to be rewritten, the end of the run builds it again
    # (and the session opened after sees the plate without it).
    forget_overview(dest, store.zarr_format)
    return PlateStore.open(dest.url, "r+")


def _only_leftovers(dest: Path) -> bool:
    """Whether ``dest`` holds no zarr data, only what a killed conversion leaves there.

    That is half-written metadata documents (``.zarr.json.<owner>.tmp``), the lock
    file and the staging folder: hidden names, nothing of the user's.
    """
    if fsio.detect_zarr_format(dest) is not None:
        return False
    return all(
        p.name in (fsio.LOCK_NAME, fsio.STAGING_DIR, CLAIM_NAME)
        or (p.name.startswith(".") and p.name.endswith(".tmp"))
        for p in dest.iterdir()
    )


def _differences(store: PlateStore, config: StorageConfig) -> str:
    saved = store.config.to_dict() if store.config is not None else {}
    wanted = config.to_dict()
    return ", ".join(
        f"{key} is {saved.get(key)!r} there, {wanted[key]!r} here"
        for key in wanted
        if saved.get(key) != wanted[key]
    )


def _jobs(
    plan: ConversionPlan,
    dest: str,
    run_id: str,
    resume: bool,
    pixel_size: float | tuple[float, float] | None,
    z_step: float | None,
) -> list[WellJob]:
    meta = plan.instrument
    if meta is not None:  # what the export says, unless the caller says otherwise
        pixel_size = meta.pixel_size_um if pixel_size is None else pixel_size
        z_step = meta.z_step_um if z_step is None and plan.dims[2] > 1 else z_step
    pair = None if pixel_size is None else _pair(pixel_size)
    channels = _instrument_channels(plan)
    return [
        WellJob(
            dest=dest,
            run_id=run_id,
            well=w.name,
            row=w.well.row,
            column=w.well.column,
            planes=w.planes,
            well_shape=plan.well_shape,
            dtype=plan.dtype,
            channel_names=plan.channel_names,
            pixel_size=pair,
            z_step=z_step,
            skip_complete=resume,
            channels=channels,
            acquisition=_well_acquisition(plan, w.name),
            projections=w.projections,
        )
        for w in plan.wells
    ]


def _instrument_channels(plan: ConversionPlan) -> tuple[Channel, ...] | None:
    """The plan's channels with the instrument's colours (``None``: no instrument)."""
    meta = plan.instrument
    if meta is None or len(meta.channels) != len(plan.channel_names):
        return None
    defaults = default_channels(len(plan.channel_names))
    return tuple(
        Channel(name, info.color or default.color)
        for name, info, default in zip(plan.channel_names, meta.channels, defaults, strict=True)
    )


def _well_acquisition(plan: ConversionPlan, well: str) -> Acquisition | None:
    """What the instrument recorded about one well, as the plate stores it."""
    meta = plan.instrument
    if meta is None:
        return None
    positions = {f: pos for (w, f), pos in meta.field_positions_um.items() if w == well}
    return Acquisition(
        field_positions=positions,
        conditions=dict(meta.conditions.get(well, {})),
        time_interval=meta.time_interval_s if plan.has_time else None,
        channel_projections=dict(meta.projection_methods),
    )


def _pair(value: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(value, int | float):
        return float(value), float(value)
    y, x = value
    return float(y), float(x)


def _runner(
    jobs: Sequence[WellJob], stop: _Stop, workers: int, client: object
) -> Generator[Yielded, None, None]:
    if client is not None:
        return run_dask(jobs, stop, client)
    if workers > 1:
        return run_processes(jobs, stop, workers)
    return run_serial(jobs, stop)


class _Stop:
    """Stop on the caller's cancel request or on a failure (never sets the caller's event)."""

    def __init__(self, cancel: threading.Event | None) -> None:
        self.cancel = cancel
        self.failed = threading.Event()

    def is_set(self) -> bool:
        return self.failed.is_set() or (self.cancel is not None and self.cancel.is_set())


class _Tally:
    """Counts outcomes and reports each one to the progress callback."""

    def __init__(self, total: int, progress: Callable[[WellEvent], None] | None) -> None:
        self.total = total
        self.progress = progress
        self.written: list[str] = []
        self.skipped: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.raw_bytes = 0

    def add(self, job: WellJob, outcome: WellOutcome | BaseException) -> bool:
        """Record one outcome; return whether it is a failure."""
        if isinstance(outcome, BaseException):
            message = f"{type(outcome).__name__}: {outcome}"
            self.failed.append((job.well, message))
            self._report(WellEvent(job.well, "failed", self._done, self.total, 0, 0.0, message))
            return True
        if outcome.status == "written":
            self.written.append(job.well)
            self.raw_bytes += outcome.raw_bytes
        else:
            self.skipped.append(job.well)
        status: Literal["written", "skipped"] = outcome.status
        self._report(
            WellEvent(job.well, status, self._done, self.total, outcome.raw_bytes, outcome.seconds)
        )
        return False

    @property
    def _done(self) -> int:
        return len(self.written) + len(self.skipped) + len(self.failed)

    def _report(self, event: WellEvent) -> None:
        if self.progress is not None:
            self.progress(event)
