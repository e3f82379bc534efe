"""What a conversion will do, before it does it: the plan of a source folder."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from napari_wellzarr.errors import ConfigError, WellDataError, WellNameError
from napari_wellzarr.storage.geometry import STANDARD_FORMATS, PlateGeometry, Well

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from napari_wellzarr.convert.instrument import InstrumentMetadata
    from napari_wellzarr.convert.srcfs import SourcePath
    from napari_wellzarr.convert.tiffio import PixelSpan
    from napari_wellzarr.storage.axes import PlaneKey
    from napari_wellzarr.storage.config import StorageConfig

__all__ = [
    "ConversionPlan",
    "MissingPlane",
    "SourcePlane",
    "UnmatchedFile",
    "WellSource",
]

_SHOW: Final = 5  # wells named in an error message


@dataclass(frozen=True)
class SourcePlane:
    """One plane of the source: which file (and page) holds it and where it goes."""

    path: str  # absolute path of the file
    name: str  # the name recorded in the well's file-name map
    key: PlaneKey
    page: int | None = None  # page of a multi-page stack
    #: Where the file's pixels lie when they can be read as they are (else tifffile reads
    #: the file).  Plans pickled before it existed read as ``None``.
    span: PixelSpan | None = None


@dataclass(frozen=True)
class WellSource:
    """The planes of one well, in plane order."""

    name: str
    well: Well
    planes: tuple[SourcePlane, ...]
    #: Projections (MIP, best focus) of channels that also have z planes; ``key.z`` is 0.
    #: They are written as the well's projection image, never into its z-stack.
    projections: tuple[SourcePlane, ...] = ()


@dataclass(frozen=True)
class MissingPlane:
    """A plane no file provides: it is left as fill value (0), or refused in strict mode."""

    well: str
    key: PlaneKey
    name: str  # the file name it would have had, or a description


@dataclass(frozen=True)
class UnmatchedFile:
    """An image file the naming scheme did not take, and why."""

    path: str  # relative to the source folder
    reason: str


@dataclass(frozen=True)
class ConversionPlan:
    """Everything a conversion needs to know, before anything is written.

    Attributes
    ----------
    source
        The source folder.
    scheme
        Name of the naming scheme used; ``scheme_counts`` says how many files each
        scheme tried recognised.
    wells
        The wells in plate order.
    dims
        ``(fields, channels, z, t)`` of every well.
    plane_shape, dtype
        Shape ``(y, x)`` and dtype of every plane.
    channel_names
        One name per channel.
    unmatched
        Image files the scheme did not take (they are not converted).
    other_files
        Files that are not TIFF images (not converted).
    missing
        Planes no file provides.
    source_bytes
        Total size of the matched files.
    instrument
        What the export's own metadata files said (None for a plain folder of files).
    """

    source: SourcePath  # a folder, or an s3:// export
    scheme: str
    scheme_counts: tuple[tuple[str, int], ...]
    wells: tuple[WellSource, ...]
    dims: tuple[int, int, int, int]
    plane_shape: tuple[int, int]
    dtype: str
    channel_names: tuple[str, ...]
    unmatched: tuple[UnmatchedFile, ...] = ()
    other_files: int = 0
    missing: tuple[MissingPlane, ...] = ()
    source_bytes: int = 0
    n_files: int = 0
    instrument: InstrumentMetadata | None = None

    @property
    def has_time(self) -> bool:
        """Whether the wells have a time axis (more than one timepoint)."""
        return self.dims[3] > 1

    @property
    def well_shape(self) -> tuple[int, ...]:
        """The well array shape: ``(field, c, z, y, x)`` or ``(field, t, c, z, y, x)``."""
        f, c, z, t = self.dims
        lead = (f, t, c, z) if self.has_time else (f, c, z)
        return (*lead, *self.plane_shape)

    @property
    def planes_per_well(self) -> int:
        """Planes in one well (present or missing)."""
        return math.prod(self.dims)

    @property
    def raw_bytes(self) -> int:
        """Uncompressed size of every well array (missing planes included)."""
        plane = math.prod(self.plane_shape) * np.dtype(self.dtype).itemsize
        return len(self.wells) * self.planes_per_well * plane

    def well(self, name: str) -> WellSource:
        """The well called ``name`` (``B03``, ``b3``, ``r02c03``)."""
        wanted = Well.parse(name)
        for source in self.wells:
            if source.well == wanted:
                return source
        raise WellNameError(f"well {name!r} has no files in {self.source}")

    def smallest_plate(self) -> PlateGeometry:
        """The export's plate format, else the smallest standard plate (96+) holding every well."""
        rows = max(w.well.row for w in self.wells) + 1
        columns = max(w.well.column for w in self.wells) + 1
        known = self.instrument.plate_format if self.instrument is not None else None
        if known is not None and rows <= known[0] and columns <= known[1]:
            return PlateGeometry(*known)  # the export's own plate: 384 wells stay 384
        for n_wells in sorted(STANDARD_FORMATS):
            r, c = STANDARD_FORMATS[n_wells]
            if n_wells >= 96 and rows <= r and columns <= c:
                return PlateGeometry(r, c)
        return PlateGeometry(rows, columns)

    def check_config(self, config: StorageConfig) -> None:
        """Raise when ``config`` cannot hold this source (plate too small, time + stacked)."""
        outside = [w.name for w in self.wells if not config.plate.contains(w.well)]
        if outside:
            smallest = self.smallest_plate()
            raise WellNameError(
                f"{len(outside)} well(s) lie outside the {config.plate.rows}x"
                f"{config.plate.columns} plate: {', '.join(outside[:_SHOW])}; choose a plate "
                f"format of at least {smallest.rows}x{smallest.columns}"
            )
        if self.has_time and config.fields.value == "stacked":
            raise ConfigError(
                f"the source has {self.dims[3]} timepoints; a stacked well cannot hold a time "
                "axis (OME-NGFF allows 5 axes): use fields='per-field'"
            )

    def estimate_output_bytes(self, config: StorageConfig, samples: int = 2) -> int:
        """Estimate the plate's size on disk by compressing up to ``samples`` planes."""
        picks = [self.wells[i * len(self.wells) // samples] for i in range(samples)]
        sample = [w.planes[len(w.planes) // 2] for w in picks]
        ratio = estimate_ratio(sample, self.plane_shape, self.dtype, config)
        return int(self.raw_bytes / ratio)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (what the CLI prints and a widget shows)."""
        f, c, z, t = self.dims
        return {
            "source": str(self.source),
            "scheme": self.scheme,
            "scheme_counts": dict(self.scheme_counts),
            "files": self.n_files,
            "unmatched_files": len(self.unmatched),
            "other_files": self.other_files,
            "wells": len(self.wells),
            "fields": f,
            "channels": c,
            "z": z,
            "t": t,
            "channel_names": list(self.channel_names),
            "plane_shape": list(self.plane_shape),
            "dtype": self.dtype,
            "raw_bytes": self.raw_bytes,
            "source_bytes": self.source_bytes,
            "missing_planes": len(self.missing),
            "instrument": None if self.instrument is None else self._instrument_summary(),
        }

    def _instrument_summary(self) -> dict[str, Any]:
        meta = self.instrument
        assert meta is not None
        return {
            "vendor": meta.vendor,
            "plate_name": meta.plate_name,
            "plate_format": None if meta.plate_format is None else list(meta.plate_format),
            "channels": [
                {"name": c.name, "emission_nm": c.emission_nm, "color": c.color}
                for c in meta.channels
            ],
            "pixel_size_um": None if meta.pixel_size_um is None else list(meta.pixel_size_um),
            "z_step_um": meta.z_step_um,
            "time_interval_s": meta.time_interval_s,
            "fields_with_positions": len(meta.field_positions_um),
            "projections": sum(len(w.projections) for w in self.wells),
            "projection_methods": dict(meta.projection_methods),
            "wells_with_conditions": len(meta.conditions),
            "skipped": [{"path": f.path, "reason": f.reason} for f in meta.skipped],
            "warnings": list(meta.warnings),
        }


def estimate_ratio(
    planes: Sequence[SourcePlane],
    plane_shape: tuple[int, int],
    dtype: str,
    config: StorageConfig,
) -> float:
    """Compression ratio of ``config``'s codec on a few sample planes (1.0 for none)."""
    from napari_wellzarr.convert.tiffio import read_stack

    codec = config.numcodec()
    if codec is None or not planes:
        return 1.0
    raw = packed = 0
    for plane in planes:
        stack = read_stack(plane.path, plane_shape, dtype)
        data = np.ascontiguousarray(stack[plane.page or 0])
        raw += data.nbytes
        packed += len(codec.encode(data))
    return raw / max(1, packed)


def common_plane(
    root: SourcePath, planes: Iterable[tuple[tuple[int, int], str, str]]
) -> tuple[tuple[int, int], str]:
    """The one ``(plane shape, dtype)`` of ``planes`` (``(shape, dtype, file)`` each).

    Raises :class:`WellDataError` naming each kind and some of its files when they differ.
    """
    kinds: dict[tuple[tuple[int, int], str], list[str]] = {}
    for shape, dtype, file in planes:
        kinds.setdefault((shape, dtype), []).append(file)
    if len(kinds) == 1:
        return next(iter(kinds))
    ranked = sorted(kinds.items(), key=lambda kv: -len(kv[1]))
    parts = [
        f"{'x'.join(map(str, shape))} {dtype} in {len(files)} file(s) ({', '.join(files[:_SHOW])}"
        + (", ..." if len(files) > _SHOW else "")
        + ")"
        for (shape, dtype), files in ranked
    ]
    raise WellDataError(
        f"the planes in {root} differ in shape or dtype; a plate needs one kind: "
        + "; ".join(parts)
    )
