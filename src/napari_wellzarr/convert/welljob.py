"""One well's conversion: the unit of work a process, a thread or a dask worker runs."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from napari_wellzarr.convert.tiffio import read_raw_into, read_stacks
from napari_wellzarr.errors import CorruptDataError, MetadataError, WellDataError
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage.axes import WellAxes
from napari_wellzarr.storage.geometry import Well
from napari_wellzarr.storage.locations import is_url
from napari_wellzarr.storage.reading import open_well
from napari_wellzarr.storage.store import PlateStore

if TYPE_CHECKING:
    from napari_wellzarr.convert.plan import SourcePlane
    from napari_wellzarr.storage.acquisition import Acquisition
    from napari_wellzarr.storage.metadata import Channel
    from napari_wellzarr.storage.records import UploadedWell

__all__ = [
    "WellJob",
    "WellOutcome",
    "adopt_store",
    "convert_well",
    "forget_store",
    "load_well",
    "write_loaded",
]

Status = Literal["written", "skipped"]
#: A well's pixels and its projections (``None``: it has none).
Loaded = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]

# One open plate per process and run: reopened when a new run (run_id) starts.
_STORES: dict[str, tuple[str, PlateStore]] = {}
_STORES_LOCK = threading.Lock()


@dataclass(frozen=True)
class WellJob:
    """Everything needed to convert one well; small and picklable.

    ``skip_complete``: leave a well that is already complete on disk with the same
    files, shape and channels (resuming); otherwise the well is (re)written.
    """

    dest: str
    run_id: str
    well: str
    row: int
    column: int
    planes: tuple[SourcePlane, ...]
    well_shape: tuple[int, ...]
    dtype: str
    channel_names: tuple[str, ...]
    pixel_size: tuple[float, float] | None = None
    z_step: float | None = None
    skip_complete: bool = False
    #: Channels with their colours (else named ``channel_names`` with default colours).
    channels: tuple[Channel, ...] | None = None
    acquisition: Acquisition | None = None
    projections: tuple[SourcePlane, ...] = ()

    @property
    def raw_bytes(self) -> int:
        """Uncompressed size of the well array."""
        return int(np.prod(self.well_shape)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class WellOutcome:
    """What became of a well: written or skipped (complete already), and how long it took."""

    well: str
    status: Status
    raw_bytes: int
    seconds: float
    #: What a write into an object store put (for the client's overview build).
    uploaded: UploadedWell | None = None


def _store(dest: str, run_id: str) -> PlateStore:
    with _STORES_LOCK:
        cached = _STORES.get(dest)
        if cached is not None and cached[0] == run_id:
            return cached[1]
        store = PlateStore.open(dest, "r+")
        _STORES[dest] = (run_id, store)
        return store


def adopt_store(dest: str, run_id: str, store: PlateStore) -> None:
    """Let jobs of ``run_id`` in this process write through ``store`` (the parent's)."""
    with _STORES_LOCK:
        _STORES[dest] = (run_id, store)


def forget_store(dest: str) -> None:
    """Drop this process's cached plate for ``dest`` (at the end of a run)."""
    with _STORES_LOCK:
        _STORES.pop(dest, None)


def convert_well(job: WellJob) -> WellOutcome:
    """Convert one well; runs in the caller's process, a worker process or a dask worker.

    Raises :class:`WellDataError` naming the file when a source file cannot be read or
    no longer matches the plan; the well is then absent (never half-written).
    """
    start = time.perf_counter()
    return write_loaded(job, load_well(job), start)


def load_well(job: WellJob) -> Loaded | None:
    """Read a well's pixels; ``None`` when it is to be skipped (complete, resuming)."""
    if job.skip_complete and _is_complete(_store(job.dest, job.run_id), job):
        return None
    projections = None
    if job.projections:
        z = len(job.well_shape) - 3
        shape = (*job.well_shape[:z], 1, *job.well_shape[z + 1 :])
        projections = assemble(dataclasses.replace(job, planes=job.projections, well_shape=shape))
    return assemble(job), projections


def write_loaded(job: WellJob, loaded: Loaded | None, start: float) -> WellOutcome:
    """Write the pixels :func:`load_well` returned (``None``: the well is skipped)."""
    if loaded is None:
        return WellOutcome(job.well, "skipped", job.raw_bytes, time.perf_counter() - start)
    array, projections = loaded
    store = _store(job.dest, job.run_id)
    info = store.write_well(
        Well(job.row, job.column),
        array,
        channels=list(job.channels or job.channel_names),
        pixel_size=job.pixel_size,
        z_step=job.z_step,
        plane_names={p.name: p.key for p in job.planes},
        overwrite=True,
        acquisition=job.acquisition,
        projections=projections,
        projection_names={p.name: p.key for p in job.projections}
        if projections is not None
        else None,
    )
    uploaded = store.uploaded.pop(info.path, None)  # the client's overview build needs it
    return WellOutcome(job.well, "written", job.raw_bytes, time.perf_counter() - start, uploaded)


def assemble(job: WellJob) -> np.ndarray[Any, Any]:
    """Read a well's files into its well array; each file is read once.

    A local file whose pixels the scan located (``SourcePlane.span``) is read straight
    into the array's planes; others (and files changed since the scan) by tifffile.
    """
    axes = WellAxes(len(job.well_shape) == 6)
    array = np.zeros(job.well_shape, dtype=np.dtype(job.dtype))
    by_file: dict[str, list[SourcePlane]] = {}
    for plane in job.planes:
        by_file.setdefault(plane.path, []).append(plane)
    plane_shape = (job.well_shape[-2], job.well_shape[-1])
    parsed: list[str] = []
    for path, planes in by_file.items():
        span = planes[0].span
        if span is None or is_url(path):
            parsed.append(path)
        elif not read_raw_into(
            path, span, [(p.page or 0, array[axes.plane_index(p.key)]) for p in planes]
        ):
            parsed.append(path)  # changed since the scan: tifffile reads what it is now
    spans = [by_file[p][0].span for p in parsed]
    for path, stack in read_stacks(parsed, plane_shape, job.dtype, spans):
        planes = by_file[path]
        for plane in planes:
            page = plane.page or 0
            if page >= len(stack):
                raise WellDataError(
                    f"file {path!r} holds {len(stack)} plane(s), the scan found page {page + 1}: "
                    "the file changed since the scan"
                )
            array[axes.plane_index(plane.key)] = stack[page]
        del stack
    return array


def _is_complete(store: PlateStore, job: WellJob) -> bool:
    """Whether the well is on disk, whole, with this job's files, shape and channels."""
    path = store.plate.well_path(job.row, job.column)
    if not fsio.has_node_doc(store.location / path):  # (S3: listed, never cached)
        return False
    try:
        info = open_well(store.location, path, job.well, store.zarr_format).info
    except (MetadataError, CorruptDataError, FileNotFoundError):
        return False  # damaged: convert it again
    return (
        info.shape == job.well_shape
        and info.dtype == np.dtype(job.dtype)
        and dict(info.plane_names) == {p.name: p.key for p in job.planes}
        and tuple(c.label for c in info.channels) == job.channel_names
    )
