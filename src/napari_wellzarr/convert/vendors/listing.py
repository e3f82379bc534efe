"""The images an instrument's index lists, checked against the disk into a conversion plan."""

from __future__ import annotations

import dataclasses
import itertools
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from napari_wellzarr.convert.plan import (
    ConversionPlan,
    MissingPlane,
    SourcePlane,
    WellSource,
    common_plane,
)
from napari_wellzarr.convert.srcfs import ObjectPath, SourcePath, walk
from napari_wellzarr.convert.tiffio import read_header
from napari_wellzarr.errors import MetadataError, WellDataError
from napari_wellzarr.storage.axes import PlaneKey

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence

    from napari_wellzarr.convert.instrument import InstrumentMetadata, SkippedFile
    from napari_wellzarr.convert.tiffio import TiffHeader
    from napari_wellzarr.storage.geometry import Well

__all__ = [
    "ListedImage",
    "build_plan",
    "dense_rank",
    "image_files",
    "median_interval",
    "median_step",
]

_THREADS: Final = 8
_SHOW: Final = 5
TIFF_SUFFIXES: Final = (".tif", ".tiff")


@dataclass(frozen=True)
class ListedImage:
    """One image an index lists: its well, plane coordinate and file (relative path)."""

    well: Well
    key: PlaneKey
    path: str  # relative to the plan's source folder, posix


def dense_rank(values: Iterable[int]) -> dict[int, int]:
    """``{value: 0-based rank}`` of the distinct ``values`` (IDs 1, 2, 5 -> 0, 1, 2)."""
    return {v: i for i, v in enumerate(sorted(set(values)))}


def median_step(planes: Iterable[tuple[Hashable, int, float | None]]) -> float | None:
    """The median step between successive z planes of one stack.

    ``planes`` gives ``(stack, z index, position)``; steps are taken between planes ``z``
    and ``z + 1`` of the same stack (a field, channel and timepoint). ``None`` when no
    stack has two successive planes with positions.
    """
    stacks: dict[Hashable, dict[int, float]] = {}
    for stack, z, position in planes:
        if position is not None:
            stacks.setdefault(stack, {})[z] = position
    steps: list[float] = []
    for found in stacks.values():
        order = sorted(found.items())
        steps += [abs(b - a) for (i, a), (j, b) in itertools.pairwise(order) if j == i + 1]
    return statistics.median(steps) if steps else None


def median_interval(times: Iterable[tuple[int, str]]) -> float | None:
    """The median time in seconds between the starts of successive timepoints.

    ``times`` gives ``(t index, ISO 8601 time)`` per image; a timepoint starts at its
    earliest image. Unparsable times are skipped; ``None`` for fewer than two timepoints.
    """
    starts: dict[int, datetime] = {}
    for t, text in times:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            continue
        if t not in starts or when < starts[t]:
            starts[t] = when
    order = sorted(starts)
    gaps = [
        (starts[b] - starts[a]).total_seconds() for a, b in itertools.pairwise(order) if b == a + 1
    ]
    return statistics.median(gaps) if gaps else None


def image_files(root: SourcePath) -> tuple[dict[str, int], int]:
    """TIFF files under ``root`` (a folder or an ``s3://`` prefix), hidden ones skipped.

    Returns ``{relative posix path: size in bytes}`` and the number of other files.
    """
    images: dict[str, int] = {}
    other = 0
    if isinstance(root, ObjectPath):
        for folder, below, dirnames, filenames in walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if name.startswith("."):
                    continue
                if name.lower().endswith(TIFF_SUFFIXES):
                    images[(below / name).as_posix()] = (folder / name).stat().st_size
                else:
                    other += 1
        return images, other
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        with os.scandir(dirpath) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                if entry.name.lower().endswith(TIFF_SUFFIXES):
                    images[(rel / entry.name).as_posix()] = entry.stat().st_size
                else:
                    other += 1
    return images, other


def build_plan(
    root: SourcePath,
    index: SourcePath,
    listed: Sequence[ListedImage],
    channel_names: Sequence[str],
    instrument: InstrumentMetadata,
    skipped: Sequence[SkippedFile],
    *,
    on_disk: Mapping[str, int],
    other_files: int,
    progress: Callable[[int, int], None] | None = None,
    gaps: Mapping[tuple[str, int, int], str] | None = None,
    index_shape: tuple[str, float, float] | None = None,
) -> ConversionPlan:
    """Check the ``listed`` images against the disk and build the plan.

    Listed files that do not exist become missing planes (named by file) and a warning;
    wells with no file at all are left out (and named in the warning). Planes the index
    does not list are missing too, described by ``gaps[(well, field, t)]`` when given
    (an autofocus failure) or as "not acquired". The TIFFs' own plane shape is used;
    an ``index_shape`` ``(file, y, x)`` (what a metadata file says) that differs is a
    warning.

    Raises
    ------
    MetadataError
        Two listed images claim the same plane, one file is listed twice, or none of
        the listed files exists (the message names the index and some of the files).
    WellDataError
        A file cannot be read, is a multi-page stack, or the planes differ in shape or
        dtype (the message names the files).
    """
    _check_unique(index, listed)
    present = [im for im in listed if im.path in on_disk]
    absent = [im for im in listed if im.path not in on_disk]
    if not present:
        names = ", ".join(im.path for im in listed[:_SHOW])
        raise MetadataError(
            f"none of the {len(listed)} image files listed in {str(index)!r} exists in "
            f"{str(root)!r} (e.g. {names}): the export holds metadata only, or its images "
            "were moved"
        )
    headers = _read_headers(root, present, progress)
    plane_shape, dtype = common_plane(
        root, ((h.plane_shape, h.dtype, im.path) for im, h in zip(present, headers, strict=True))
    )
    dims = tuple(max(im.key[i] for im in listed) + 1 for i in range(4))
    by_well: dict[Well, list[SourcePlane]] = {}
    for im, header in zip(present, headers, strict=True):
        plane = SourcePlane(str(root / im.path), Path(im.path).name, im.key, span=header.span)
        by_well.setdefault(im.well, []).append(plane)
    wells = tuple(
        WellSource(w.label, w, tuple(sorted(by_well[w], key=lambda p: p.key)))
        for w in sorted(by_well)
    )
    missing = _missing(wells, absent, dims, channel_names, gaps or {})
    warnings = list(instrument.warnings)
    if index_shape is not None and index_shape[1:] != plane_shape:
        said, y, x = index_shape
        warnings.append(
            f"{said} gives images of {y:g} x {x:g} pixels, "
            f"the TIFFs hold {plane_shape[0]} x {plane_shape[1]}: the TIFFs' size is used"
        )
    if absent:
        lost = sorted({im.well.label for im in absent} - {w.name for w in wells})
        warnings.append(
            f"{len(absent)} of the {len(listed)} image files listed in {index.name} do not "
            f"exist: {', '.join(im.path for im in absent[:_SHOW])}"
            + (" ..." if len(absent) > _SHOW else "")
            + (f"; wells with no file at all are left out: {', '.join(lost)}" if lost else "")
        )
    instrument = dataclasses.replace(instrument, skipped=tuple(skipped), warnings=tuple(warnings))
    f, c, z, t = dims
    return ConversionPlan(
        source=root,
        scheme=instrument.vendor,
        scheme_counts=((instrument.vendor, len(present)),),
        wells=wells,
        dims=(f, c, z, t),
        plane_shape=plane_shape,
        dtype=dtype,
        channel_names=tuple(channel_names),
        other_files=other_files,
        missing=missing,
        source_bytes=sum(on_disk[im.path] for im in present),
        n_files=len(on_disk),
        instrument=instrument,
    )


def _check_unique(index: SourcePath, listed: Sequence[ListedImage]) -> None:
    owner: dict[tuple[Well, PlaneKey], str] = {}
    planes: dict[str, tuple[Well, PlaneKey]] = {}
    for im in listed:
        if planes.setdefault(im.path, (im.well, im.key)) != (im.well, im.key):
            raise MetadataError(f"{str(index)!r} lists {im.path!r} for two planes")
        other = owner.setdefault((im.well, im.key), im.path)
        if other != im.path:
            k = im.key
            raise MetadataError(
                f"{str(index)!r} lists {other!r} and {im.path!r} as the same plane: well "
                f"{im.well.label} field {k.field + 1}, channel {k.c + 1}, z {k.z + 1}, "
                f"t {k.t + 1}"
            )


def _read_headers(
    root: SourcePath, images: Sequence[ListedImage], progress: Callable[[int, int], None] | None
) -> list[TiffHeader]:
    headers: list[TiffHeader] = []
    with ThreadPoolExecutor(_THREADS) as pool:
        for header in pool.map(read_header, [str(root / im.path) for im in images]):
            headers.append(header)
            if progress is not None and (len(headers) % 100 == 0 or len(headers) == len(images)):
                progress(len(headers), len(images))
    for im, header in zip(images, headers, strict=True):
        if header.pages != 1:
            raise WellDataError(
                f"file {str(root / im.path)!r} holds {header.pages} planes; the index lists "
                "one plane per file"
            )
    return headers


def _missing(
    wells: Sequence[WellSource],
    absent: Sequence[ListedImage],
    dims: tuple[int, ...],
    channel_names: Sequence[str],
    gaps: Mapping[tuple[str, int, int], str],
) -> tuple[MissingPlane, ...]:
    named = {(im.well.label, im.key): Path(im.path).name for im in absent}
    f, c, z, t = dims
    out: list[MissingPlane] = []
    for source in wells:
        have = {p.key for p in source.planes}
        for fi in range(f):
            for ti in range(t):
                for ci in range(c):
                    for zi in range(z):
                        key = PlaneKey(fi, ci, zi, ti)
                        if key in have:
                            continue
                        name = named.get((source.name, key)) or (
                            f"well {source.name} field {fi + 1} channel {channel_names[ci]} "
                            f"z {zi + 1} t {ti + 1} "
                            f"({gaps.get((source.name, fi, ti), 'not acquired')})"
                        )
                        out.append(MissingPlane(source.name, key, name))
    return tuple(out)
