"""ImageXpress / MetaXpress exports (``.HTD`` + ``TimePoint_n/ZStep_n``) and native folders."""

from __future__ import annotations

import hashlib
import os
import re
import statistics
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from napari_wellzarr.convert.instrument import (
    ChannelInfo,
    InstrumentMetadata,
    SkippedFile,
    wavelength_color,
)
from napari_wellzarr.convert.plan import (
    ConversionPlan,
    MissingPlane,
    SourcePlane,
    UnmatchedFile,
    WellSource,
    common_plane,
)
from napari_wellzarr.convert.srcfs import (
    ObjectPath,
    SourcePath,
    as_source,
    is_zarr,
    object_etag,
    open_ranged,
    read_head,
    walk,
)
from napari_wellzarr.convert.tiffio import PixelSpan, pixel_span
from napari_wellzarr.convert.vendors.htd import HtdInfo, parse_metaseries, read_htd
from napari_wellzarr.errors import MetadataError, RemoteReadError, WellDataError, WellNameError
from napari_wellzarr.storage.axes import ALLOWED_DTYPES, PlaneKey
from napari_wellzarr.storage.geometry import Well

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

__all__ = ["NAME", "detect", "scan"]

NAME: Final = "metaxpress"
_SUFFIXES: Final = (".tif", ".tiff")
_THREADS: Final = 8
_DETECT_ENTRIES: Final = 5000  # directory entries looked at by detect()
_GUID: Final = r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}"
_FILE: Final = re.compile(
    r"(?P<plate>.{1,200}?)_(?P<well>[A-Z]{1,2}\d{1,3})(?:_s(?P<site>\d{1,4}))?"
    rf"(?:_w(?P<wave>\d{{1,2}}))?(?P<thumb>_thumb)?(?P<guid>{_GUID})?(?P<ext>\.tiff?)",
    re.IGNORECASE,
)
_FOLDER: Final = re.compile(r"(ZStep|TimePoint)_(\d{1,5})", re.IGNORECASE)
_UNITS: Final = {"um": 1.0, "µm": 1.0, "\u03bcm": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3}
_PROJECTION: Final = "Z Projection Method"


def detect(folder: SourcePath) -> bool:
    """Whether ``folder`` is a MetaXpress export: an ``.HTD`` file, or GUID-named TIFFs."""
    if isinstance(folder, ObjectPath):
        return _detect_listed(folder)
    seen = 0
    todo = [(folder, 0)]
    while todo:
        path, depth = todo.pop()
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    seen += 1
                    if seen > _DETECT_ENTRIES:
                        return False
                    name = entry.name
                    if name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if depth < 5:  # <plate>/<date>/<id>/TimePoint_t/ZStep_z
                            todo.append((Path(entry.path), depth + 1))
                    elif name.lower().endswith(".htd") and depth <= 1 and _is_htd(entry.path):
                        return True
                    elif name.lower().endswith(_SUFFIXES) and _is_native(name):
                        return True
        except OSError:
            continue
    return False


def _detect_listed(folder: ObjectPath) -> bool:
    """:func:`detect` of an ``s3://`` export, from its listing."""
    seen = 0
    for here, rel, dirnames, filenames in walk(folder):
        depth = len(rel.parts)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")] if depth < 5 else []
        for name in filenames:
            seen += 1
            if seen > _DETECT_ENTRIES:
                return False
            if name.startswith("."):
                continue
            if name.lower().endswith(".htd") and depth <= 1 and _is_htd(here / name):
                return True
            if name.lower().endswith(_SUFFIXES) and _is_native(name):
                return True
    return False


def _is_htd(path: SourcePath | str) -> bool:
    try:
        return b'"HTSInfoFile"' in read_head(path, 64)
    except OSError:
        return False


def _is_native(name: str) -> bool:
    match = _FILE.fullmatch(name)
    return match is not None and match.group("guid") is not None


@dataclass
class _File:
    """One image file of the export, with what its name, folders and tags say."""

    rel: str
    path: str
    well: Well
    site: int
    wave: int
    z_folder: int | None
    t_folder: int | None
    plate: str
    guid: bool
    size: int
    source: SourcePath  # the file (``path`` is its str: a path or URL)
    shape: tuple[int, int] = (0, 0)
    dtype: str = ""
    props: dict[str, str] = field(default_factory=dict)
    projection: str | None = None  # the projection method, None for a z plane
    z: int = 0
    span: PixelSpan | None = None  # where its pixels lie (read without tifffile)

    @property
    def plane_name(self) -> str:
        """The name the plane is recorded under: unique in its well."""
        name = Path(self.rel).name
        if self.guid:
            return name
        stem, dot, ext = name.rpartition(".")
        extra = "" if self.z_folder is None else f"_z{self.z_folder:03d}"
        extra += "" if self.t_folder is None else f"_t{self.t_folder:03d}"
        return f"{stem}{extra}{dot}{ext}"


def scan(
    folder: SourcePath, *, progress: Callable[[int, int], None] | None = None
) -> ConversionPlan:
    """Scan a MetaXpress export (exported or native layout) into a complete plan.

    Raises
    ------
    WellNameError
        No ImageXpress image file in ``folder``.
    WellDataError
        A TIFF cannot be read, planes differ in shape or dtype, or two files claim one
        plane (the messages name the files).
    """
    root = as_source(folder)
    warnings: list[str] = []
    htd, htd_rel, other, tiffs = _walk(root)
    info = _read_htd(root, htd, htd_rel, warnings)
    files, unmatched, skipped = _match(root, tiffs)
    if not files:
        example = f": {unmatched[0].path}" if unmatched else ""
        raise WellNameError(f"no ImageXpress image file in {root}{example}")
    _read_tags(files, progress)
    files = [f for f in files if _classify(f)]
    kept, dropped = _deduplicate(files)
    skipped += dropped
    plane_shape, dtype = common_plane(root, ((f.shape, f.dtype, f.rel) for f in kept))
    return _plan(root, kept, info, htd_rel, unmatched, skipped, other, plane_shape, dtype, warnings)


def _walk(root: SourcePath) -> tuple[SourcePath | None, str, int, list[str]]:
    htd: SourcePath | None = None
    htd_rel = ""
    other = 0
    tiffs: list[str] = []
    for dirpath, rel, dirnames, filenames in walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not is_zarr(dirpath / d)
        )
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if name.lower().endswith(_SUFFIXES):
                tiffs.append((rel / name).as_posix())
                continue
            other += 1
            depth = len(rel.parts)
            if name.lower().endswith(".htd") and (htd is None or depth < len(Path(htd_rel).parts)):
                htd, htd_rel = dirpath / name, (rel / name).as_posix()
    return htd, htd_rel, other, tiffs


def _read_htd(
    root: SourcePath, htd: SourcePath | None, rel: str, warnings: list[str]
) -> HtdInfo | None:
    if htd is None:
        return None
    try:
        info = read_htd(htd, rel)
    except (MetadataError, OSError) as err:
        warnings.append(f"{err}; the layout is read from the file names and TIFF tags")
        return None
    warnings.extend(info.warnings)
    return info


def _match(
    root: SourcePath, tiffs: Sequence[str]
) -> tuple[list[_File], list[UnmatchedFile], list[SkippedFile]]:
    files: list[_File] = []
    unmatched: list[UnmatchedFile] = []
    skipped: list[SkippedFile] = []
    for rel in tiffs:
        parts = rel.split("/")
        match = _FILE.fullmatch(parts[-1])
        if match is None:
            unmatched.append(
                UnmatchedFile(rel, "not an ImageXpress name (<plate>_<well>[_s<n>][_w<n>].tif)")
            )
            continue
        if match.group("thumb"):
            skipped.append(SkippedFile(rel, "thumbnail (a small preview MetaXpress writes)"))
            continue
        folders: dict[str, int] = {}
        for part in parts[:-1]:
            found = _FOLDER.fullmatch(part)
            if found:
                folders[found.group(1).lower()] = int(found.group(2))
        try:
            well = Well.parse(match.group("well"))
        except WellNameError as err:
            unmatched.append(UnmatchedFile(rel, str(err)))
            continue
        path = root / rel
        files.append(
            _File(
                rel=rel,
                path=str(path),
                well=well,
                site=int(match.group("site") or 1),
                wave=int(match.group("wave") or 1),
                z_folder=folders.get("zstep"),
                t_folder=folders.get("timepoint"),
                plate=match.group("plate"),
                guid=match.group("guid") is not None,
                size=path.stat().st_size,
                source=path,
            )
        )
    return files, unmatched, skipped


def _read_tags(files: Sequence[_File], progress: Callable[[int, int], None] | None) -> None:
    with ThreadPoolExecutor(_THREADS) as pool:
        for done, _ in enumerate(pool.map(_read_one, files), 1):
            if progress is not None and (done % 100 == 0 or done == len(files)):
                progress(done, len(files))


def _read_one(file: _File) -> None:
    import tifffile

    try:
        if isinstance(file.source, ObjectPath):
            handle: Any = open_ranged(file.path)
            size, mtime_ns, etag = handle.raw.size, 0, object_etag(handle.raw)
        else:
            handle = file.path
            stat = os.stat(file.path)  # before the parse: a later change shows at conversion
            size, mtime_ns, etag = stat.st_size, stat.st_mtime_ns, None
        with tifffile.TiffFile(handle) as tif:
            page = tif.pages.first
            shape, dtype = tuple(page.shape), np.dtype(page.dtype)
            pages = len(tif.pages)
            description = page.description or ""
            file.span = pixel_span(tif, size, mtime_ns, etag) if pages == 1 else None
    except RemoteReadError:
        raise  # the store failed (the URL is named): not the file's fault
    except Exception as err:
        # tifffile raises many kinds of errors for damaged files: all mean "unreadable"
        raise WellDataError(
            f"file {file.path!r} cannot be read as TIFF: {type(err).__name__}: {err}"
        ) from err
    if len(shape) != 2 or pages != 1:
        raise WellDataError(
            f"file {file.path!r} holds {pages} page(s) of shape {shape}; an ImageXpress file "
            "is one grey-level plane"
        )
    native = dtype.newbyteorder("=")
    if native not in ALLOWED_DTYPES:
        raise WellDataError(f"file {file.path!r} has dtype {dtype}, which a well cannot hold")
    file.shape, file.dtype = (int(shape[0]), int(shape[1])), native.name
    file.props = parse_metaseries(description) if "<MetaData>" in description[:200] else {}


def _classify(file: _File) -> bool:
    """Set the file's projection method and z; ``ZStep_0`` holds projections."""
    method = file.props.get(_PROJECTION) or None
    tag_z = _number(file.props.get("Z Step"))
    if method is None and file.z_folder == 0 and tag_z is None:
        method = "Maximum"  # exported ZStep_0: the projection (FIELD_NOTES §6)
    file.projection = method
    if method is not None:
        file.z = 0
    elif file.z_folder:
        file.z = file.z_folder - 1
    elif tag_z is not None and tag_z >= 1:
        file.z = int(tag_z) - 1
    return True


def _number(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _deduplicate(files: Sequence[_File]) -> tuple[list[_File], list[SkippedFile]]:
    """Keep one of each set of byte-identical copies (MetaXpress fills ZStep folders so)."""
    groups: dict[tuple[object, ...], list[_File]] = {}
    for f in files:
        signature = (
            f.well, f.site, f.wave, f.t_folder, f.size, f.projection,
            f.props.get("acquisition-time-local"), f.props.get("z-position"),
        )  # fmt: skip
        groups.setdefault(signature, []).append(f)
    kept: list[_File] = []
    skipped: list[SkippedFile] = []
    for group in groups.values():
        if len(group) == 1:
            kept.append(group[0])
            continue
        digests: dict[str, _File] = {}
        for f in sorted(group, key=_preference):
            digest = hashlib.blake2b(f.source.read_bytes(), digest_size=16).hexdigest()
            first = digests.setdefault(digest, f)
            if first is f:
                kept.append(f)
            else:
                skipped.append(SkippedFile(f.rel, f"byte-identical copy of {first.rel}"))
    return kept, skipped


def _preference(f: _File) -> tuple[int, int]:
    """Which copy is the original: the projection's own folder, the plane's own z step."""
    tag_z = _number(f.props.get("Z Step"))
    if f.projection is not None:
        own = f.z_folder in (None, 0)
    else:
        own = tag_z is not None and f.z_folder == int(tag_z)
    return (0 if own else 1, f.z_folder or 0)


def _plan(
    root: SourcePath,
    files: list[_File],
    htd: HtdInfo | None,
    htd_rel: str,
    unmatched: list[UnmatchedFile],
    skipped: list[SkippedFile],
    other: int,
    plane_shape: tuple[int, int],
    dtype: str,
    warnings: list[str],
) -> ConversionPlan:
    sites = sorted({f.site for f in files})
    waves = sorted({f.wave for f in files})
    times = sorted({f.t_folder or 0 for f in files})
    # A channel whose only image is a projection keeps it as its single plane.
    with_planes = {f.wave for f in files if f.projection is None}
    planes: dict[Well, list[tuple[SourcePlane, _File]]] = {}
    projections: dict[Well, list[SourcePlane]] = {}
    owners: dict[tuple[Well, PlaneKey, bool], _File] = {}
    for f in sorted(files, key=lambda f: f.rel):
        as_projection = f.projection is not None and f.wave in with_planes
        key = PlaneKey(sites.index(f.site), waves.index(f.wave), f.z, times.index(f.t_folder or 0))
        other_file = owners.setdefault((f.well, key, as_projection), f)
        if other_file is not f:
            if as_projection:
                skipped.append(
                    SkippedFile(
                        f.rel,
                        f"a second projection ({f.projection}) of the channel; the plate "
                        f"keeps one per channel: {other_file.rel} ({other_file.projection})",
                    )
                )
                continue
            raise WellDataError(
                f"files {other_file.rel!r} and {f.rel!r} are both well {f.well.label} site "
                f"{f.site}, wave {f.wave}, z {f.z + 1}, t {key.t + 1}"
            )
        plane = SourcePlane(f.path, f.plane_name, key, span=f.span)
        if as_projection:
            projections.setdefault(f.well, []).append(plane)
        else:
            planes.setdefault(f.well, []).append((plane, f))
    n_z = max((p.key.z for ps in planes.values() for p, _ in ps), default=0) + 1
    dims = (len(sites), len(waves), n_z, len(times))
    wells = tuple(
        WellSource(
            w.label,
            w,
            tuple(sorted((p for p, _ in planes.get(w, [])), key=lambda p: p.key)),
            tuple(sorted(projections.get(w, []), key=lambda p: p.key)),
        )
        for w in sorted({*planes, *projections})
    )
    channels = _channels(files, waves, htd, warnings)
    instrument = InstrumentMetadata(
        vendor="MetaXpress",
        plate_name=_plate_name(root, files, htd_rel),
        plate_format=htd.plate_format if htd is not None else None,
        channels=channels,
        pixel_size_um=_pixel_size(files, warnings),
        z_step_um=_z_step(files),
        time_interval_s=_time_interval(files, times),
        field_positions_um=_positions(files, sites),
        projection_methods={
            channels[waves.index(f.wave)].name: f.projection
            for f in files
            if f.projection is not None
        },
        skipped=tuple(skipped),
        warnings=tuple(warnings),
    )
    return ConversionPlan(
        source=root,
        scheme=NAME,
        scheme_counts=((NAME, len(files)),),
        wells=wells,
        dims=dims,
        plane_shape=plane_shape,
        dtype=dtype,
        channel_names=tuple(c.name for c in channels),
        unmatched=tuple(unmatched),
        other_files=other,
        missing=_missing(wells, dims, channels),
        source_bytes=sum(f.size for f in files),
        n_files=len(files) + len(unmatched) + len(skipped),
        instrument=instrument,
    )


def _plate_name(root: SourcePath, files: Sequence[_File], htd_rel: str) -> str:
    if htd_rel:
        parent = Path(htd_rel).parent
        return (root / parent).name if parent.parts else root.name
    return Counter(f.plate for f in files).most_common(1)[0][0]


def _channels(
    files: Sequence[_File], waves: Sequence[int], htd: HtdInfo | None, warnings: list[str]
) -> tuple[ChannelInfo, ...]:
    first: dict[int, dict[str, str]] = {}
    for f in files:
        first.setdefault(f.wave, f.props)
    names: dict[int, str] = {}
    for tag in ("_IllumSetting_", "image-name"):
        found = {w: first[w].get(tag, "").strip() for w in waves}
        values = list(found.values())
        usable = all(values) and len(set(values)) == len(values)
        if usable and not any(v.startswith("Copy of ") for v in values):
            names = found
            break
    htd_names = htd.wave_names if htd is not None else {}
    for n, name in sorted(htd_names.items()):
        if n not in waves:
            warnings.append(f"the .HTD lists wavelength {n} ({name}) but no file has it")
    out = []
    for w in waves:
        name = htd_names.get(w) or names.get(w) or f"w{w}"
        nm = _number(first[w].get("wavelength"))
        out.append(ChannelInfo(name, emission_nm=nm, color=wavelength_color(nm)))
    labels = [c.name for c in out]
    if len(set(labels)) != len(labels):  # names must tell channels apart
        out = [ChannelInfo(f"{c.name} (w{w})", c.excitation_nm, c.emission_nm, c.color)
               for c, w in zip(out, waves, strict=True)]  # fmt: skip
    return tuple(out)


def _pixel_size(files: Sequence[_File], warnings: list[str]) -> tuple[float, float] | None:
    sizes: Counter[tuple[float, float]] = Counter()
    for f in files:
        y, x = (
            _number(f.props.get("spatial-calibration-y")),
            _number(f.props.get("spatial-calibration-x")),
        )
        unit = f.props.get("spatial-calibration-units", "um").strip()
        factor = _UNITS.get(unit)
        if y is None or x is None or factor is None or not (0 < y < 1e4 and 0 < x < 1e4):
            continue
        sizes[round(y * factor, 6), round(x * factor, 6)] += 1
    if not sizes:
        return None
    if len(sizes) > 1:
        warnings.append(
            f"the TIFF tags give several pixel sizes {sorted(sizes)}; the most common is used"
        )
    return sizes.most_common(1)[0][0]


def _z_step(files: Sequence[_File]) -> float | None:
    stacks: dict[tuple[object, ...], list[tuple[int, float]]] = {}
    for f in files:
        z = _number(f.props.get("z-position"))
        if f.projection is None and z is not None:
            stacks.setdefault((f.well, f.site, f.wave, f.t_folder), []).append((f.z, z))
    steps = []
    for stack in stacks.values():
        stack.sort()
        steps += [abs(b[1] - a[1]) / (b[0] - a[0]) for a, b in pairwise(stack) if b[0] > a[0]]
    step = round(statistics.median(steps), 4) if steps else 0.0
    return step if step > 0 else None


def _time_interval(files: Sequence[_File], times: Sequence[int]) -> float | None:
    if len(times) < 2:
        return None
    starts: dict[int, datetime] = {}
    for f in files:
        raw = f.props.get("acquisition-time-local", "")
        try:
            when = datetime.strptime(raw[:21], "%Y%m%d %H:%M:%S.%f")
        except ValueError:
            continue
        t = f.t_folder or 0
        if t not in starts or when < starts[t]:
            starts[t] = when
    ordered = [starts[t] for t in times if t in starts]
    gaps = [(b - a).total_seconds() for a, b in pairwise(ordered)]
    return round(statistics.median(gaps), 3) if gaps else None


def _positions(
    files: Sequence[_File], sites: Sequence[int]
) -> dict[tuple[str, int], tuple[float, float]]:
    stage: dict[tuple[Well, int], tuple[float, float]] = {}
    offset: dict[tuple[Well, int], tuple[float, float]] = {}
    for f in files:
        props = f.props
        sy, sx = _number(props.get("stage-position-y")), _number(props.get("stage-position-x"))
        if sy is not None and sx is not None:
            stage.setdefault((f.well, f.site), (sy, sx))
        oy = _number(props.get("OffsetFromWellCenterUmY"))
        ox = _number(props.get("OffsetFromWellCenterUmX"))
        if oy is not None and ox is not None:
            offset.setdefault((f.well, f.site), (oy, ox))
    out: dict[tuple[str, int], tuple[float, float]] = {}
    for well in sorted({w for w, _ in stage}):
        mine = [s for s in sites if (well, s) in stage]
        if all((well, s) in offset for s in mine):
            for s in mine:
                oy, ox = offset[well, s]
                out[well.label, sites.index(s)] = (round(oy, 3), round(ox, 3))
            continue
        # No offsets from the well centre: centre the fields on their mean position.
        cy = statistics.fmean(stage[well, s][0] for s in mine)
        cx = statistics.fmean(stage[well, s][1] for s in mine)
        for s in mine:
            y, x = stage[well, s]
            out[well.label, sites.index(s)] = (round(y - cy, 3), round(x - cx, 3))
    return out


def _missing(
    wells: Iterable[WellSource], dims: tuple[int, int, int, int], channels: Sequence[ChannelInfo]
) -> tuple[MissingPlane, ...]:
    f, c, z, t = dims
    out = []
    for source in wells:
        present = {p.key for p in source.planes}
        for key in (PlaneKey(*k) for k in np.ndindex(f, c, z, t)):
            if key not in present:
                what = (
                    f"well {source.name} field {key.field + 1} channel {channels[key.c].name} "
                    f"z {key.z + 1} t {key.t + 1} (not acquired)"
                )
                out.append(MissingPlane(source.name, key, what))
    return tuple(out)
