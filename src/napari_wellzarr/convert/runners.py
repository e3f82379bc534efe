"""Where wells are converted: in this process, in local worker processes, or on dask."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import socket
import time
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Final, Protocol

from napari_wellzarr.convert.welljob import WellOutcome, convert_well, load_well, write_loaded
from napari_wellzarr.errors import ClusterLostError, ConfigError, WellZarrError

if TYPE_CHECKING:
    from collections.abc import Generator, Sequence

    from napari_wellzarr.convert.welljob import WellJob

__all__ = [
    "NO_WORKERS_S",
    "WELL_FAILURES",
    "StopFlag",
    "Yielded",
    "connect_dask",
    "convert_on_worker",
    "keep_freed_buffers",
    "run_dask",
    "run_processes",
    "run_serial",
]

#: Exceptions that fail one well (recorded; the conversion stops and can be resumed).
WELL_FAILURES: Final = (WellZarrError, OSError, BrokenProcessPool)

Yielded = tuple["WellJob", WellOutcome | BaseException]

#: How long a dask cluster may have no live worker (all died, the nannies gave up, or
#: the scheduler is gone) before the conversion stops with its wells failed (resumable),
#: instead of waiting.  ``WELLZARR_NO_WORKERS_S`` overrides it.
NO_WORKERS_S: Final = 30.0
#: How often the scheduler is asked for its workers while waiting for a well.
_POLL_S: Final = 1.0
#: glibc's own limits once it has adapted to large buffers (its dynamic maximum, and
#: twice that): a dask worker gets them back for its conversion (:func:`convert_on_worker`).
MMAP_THRESHOLD: Final = 32 * 2**20
TRIM_THRESHOLD: Final = 64 * 2**20
_M_TRIM_THRESHOLD: Final = -1  # mallopt() parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD: Final = -3
_MALLOC_TUNED = False


class StopFlag(Protocol):
    """Anything that says whether to start no further well (a ``threading.Event``)."""

    def is_set(self) -> bool:
        """Whether to stop."""
        ...


def run_serial(jobs: Sequence[WellJob], stop: StopFlag) -> Generator[Yielded, None, None]:
    """Convert the wells one after the other in this process.

    A reader thread reads the next well's files while this one is compressed and
    written (two wells in memory at most).
    """
    with ThreadPoolExecutor(1, thread_name_prefix="wellzarr-read") as reader:
        ahead = reader.submit(load_well, jobs[0]) if jobs else None
        for i, job in enumerate(jobs):
            if stop.is_set() or ahead is None:
                return
            start = time.perf_counter()
            loading, ahead = ahead, None
            try:
                array = loading.result()
                if i + 1 < len(jobs) and not stop.is_set():
                    ahead = reader.submit(load_well, jobs[i + 1])
                outcome = write_loaded(job, array, start)
            except WELL_FAILURES as err:
                yield job, err
            else:
                yield job, outcome
            if ahead is None and i + 1 < len(jobs) and not stop.is_set():
                ahead = reader.submit(load_well, jobs[i + 1])


def _ignore_sigint() -> None:
    # Ctrl-C reaches every process of the terminal's group: the parent alone decides
    # what to do (finish the wells in flight, then stop), so workers ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def run_processes(
    jobs: Sequence[WellJob], stop: StopFlag, workers: int
) -> Generator[Yielded, None, None]:
    """Convert the wells in ``workers`` local processes (forkserver, else spawn).

    At most ``workers`` wells are in flight (each worker holds one well in memory).
    """
    pending = list(reversed(jobs))
    running: dict[Future[WellOutcome], WellJob] = {}
    pool = ProcessPoolExecutor(workers, mp_context=_context(), initializer=_ignore_sigint)
    try:
        while pending or running:
            while pending and len(running) < workers and not stop.is_set():
                job = pending.pop()
                running[pool.submit(convert_well, job)] = job
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                try:
                    outcome = future.result()
                except WELL_FAILURES as err:
                    yield job, err
                else:
                    yield job, outcome
    finally:
        # Wells in flight finish (their data is whole on disk or absent either way).
        pool.shutdown(wait=True, cancel_futures=True)


def connect_dask(address: str) -> Any:
    """A client of the dask.distributed scheduler at ``address``.

    Raises :class:`ConfigError` when the scheduler cannot be reached (within 10 s).
    """
    from distributed import Client

    try:
        _probe_tcp(address)
        return Client(address, set_as_default=False, timeout="10s")  # type: ignore[no-untyped-call]
    except OSError as err:
        raise ConfigError(f"cannot reach the dask scheduler at {address!r}: {err}") from err


def _probe_tcp(address: str) -> None:
    """Fail at once when a ``tcp://host:port`` scheduler refuses connections.

    dask's client retries a refused connection until its timeout (10 s here) before it
    says anything; other transports are left to it.
    """
    scheme, _, rest = address.rpartition("://")
    host, _, port = rest.rpartition(":")
    if scheme not in ("", "tcp") or not host or not port.isdigit():
        return
    with socket.create_connection((host.strip("[]"), int(port)), timeout=10):
        pass


def run_dask(
    jobs: Sequence[WellJob], stop: StopFlag, client: Any
) -> Generator[Yielded, None, None]:
    """Send the wells to the dask.distributed cluster of ``client`` (closed at the end).

    A worker that dies mid-well has its well redone elsewhere by dask; the plate
    metadata is written once, by the caller, at the end.  On ``stop`` the wells not yet
    finished are cancelled; one a worker is already writing may still land on disk
    (whole), where a resumed conversion finds it.  File paths must be valid on the
    workers (the same shared file system).
    """
    from distributed import KilledWorker

    failures = (*WELL_FAILURES, KilledWorker)
    finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
    with client:
        # One message for every well (client.submit would send one per well).
        keys = [f"wellzarr-{job.run_id}-{job.well}" for job in jobs]
        sent = client.map(convert_on_worker, jobs, key=keys, pure=False) if jobs else []
        futures = dict(zip(sent, jobs, strict=True))
        for submitted in futures:
            submitted.add_done_callback(finished.put)
        watch = _Workers(client)
        future: Any = None
        try:
            while futures:
                try:
                    future = finished.get(timeout=_POLL_S)
                    if future not in futures:
                        continue
                    if future.status == "cancelled":  # not by us: the scheduler is gone
                        dropped = _cancelled(client, futures[future].well)
                        yield from ((job, dropped) for job in futures.values())
                        return
                    # A result whose worker died before it was fetched is computed again:
                    # fetching it waits, so the cluster is watched meanwhile too.
                    outcome = _outcome(future, failures)
                except (queue.Empty, TimeoutError):
                    lost = watch.lost()
                    if lost is not None:
                        yield from ((job, lost) for job in futures.values())
                        return
                    if future is not None and future in futures:
                        finished.put(future)  # fetch it again at the next turn
                    future = None
                    continue
                yield futures.pop(future), outcome
                future = None
                if stop.is_set():
                    break
        finally:
            if futures:
                client.cancel(list(futures))


def convert_on_worker(job: WellJob) -> WellOutcome:
    """:func:`convert_well` on a dask worker, its allocator first tuned (once) for it."""
    keep_freed_buffers()
    return convert_well(job)


def keep_freed_buffers() -> bool:
    """Let glibc reuse freed buffers again in this process; whether it was changed.

    dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also stops
    glibc from raising its mmap threshold: every buffer over 128 KiB (a plane, a TIFF,
    a compressed chunk) is then mapped fresh and faulted in page by page, which doubles
    the CPU time of a well (bench/README.md).  When that variable (or
    ``MALLOC_MMAP_THRESHOLD_``) is set, the limits glibc adapts to by itself are set
    instead: buffers up to :data:`MMAP_THRESHOLD` come from the heap and up to
    :data:`TRIM_THRESHOLD` of freed memory is kept.  Once per process; glibc only.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return False
    _MALLOC_TUNED = True
    if not {"MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"} & set(os.environ):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: its own allocator, left alone
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def _cancelled(client: Any, well: str) -> ClusterLostError:
    """The error for the wells left when the cluster cancelled well ``well`` on its own."""
    return ClusterLostError(
        f"the dask cluster at {client.scheduler.address} cancelled well {well} (its "
        "scheduler is unreachable: killed, restarted or cut off); the wells in flight were "
        "not converted: start the cluster again (or none: convert here) and run the same "
        "conversion again with --resume"
    )


def _outcome(future: Any, failures: tuple[type[BaseException], ...]) -> Any:
    """A done future's outcome, or ``TimeoutError`` while its lost result is recomputed."""
    if future.status == "error":  # the well's own error (a TimeoutError among them)
        err = future.exception()
        if isinstance(err, failures):
            return err
        raise err
    return future.result(timeout=_POLL_S)


def _no_workers_s() -> float:
    """:data:`NO_WORKERS_S`, or the ``WELLZARR_NO_WORKERS_S`` variable when set and positive."""
    try:
        value = float(os.environ.get("WELLZARR_NO_WORKERS_S", ""))
    except ValueError:
        return NO_WORKERS_S
    return value if value > 0 else NO_WORKERS_S


class _Workers:
    """Whether a dask cluster still has a live worker; when not, since when."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.since: float | None = None

    def lost(self) -> ClusterLostError | None:
        """The error to fail the remaining wells with, once no worker for ``NO_WORKERS_S``."""
        why = "every worker died and none was restarted"
        try:
            alive = bool(self.client.nthreads())
        except OSError:  # the scheduler is gone too: no worker either
            alive, why = False, "its scheduler is unreachable"
        now = time.monotonic()
        if alive:
            self.since = None
            return None
        self.since = now if self.since is None else self.since
        if now - self.since < _no_workers_s():
            return None
        return ClusterLostError(
            f"the dask cluster at {self.client.scheduler.address} has had no live worker for "
            f"{now - self.since:.0f} s ({why}); the wells in flight were not converted: "
            "start the cluster again (or none: convert here) and run the same conversion "
            "again with --resume"
        )
