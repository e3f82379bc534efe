"""A folder of microscope images, scanned into a conversion plan."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Final

from napari_wellzarr.convert.detection import ParseResult, detect_scheme, expected_name, parse_batch
from napari_wellzarr.convert.naming import ParsedName, scheme_by_name, user_scheme
from napari_wellzarr.convert.plan import (
    ConversionPlan,
    MissingPlane,
    SourcePlane,
    UnmatchedFile,
    WellSource,
    common_plane,
)
from napari_wellzarr.convert.srcfs import ObjectPath, SourcePath, as_source, is_zarr, walk
from napari_wellzarr.convert.tiffio import read_header
from napari_wellzarr.convert.vendors import detect_vendor, vendor_by_name
from napari_wellzarr.errors import ConfigError, WellDataError, WellNameError
from napari_wellzarr.storage.axes import PlaneKey

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence

    from napari_wellzarr.convert.naming import NamingScheme
    from napari_wellzarr.convert.tiffio import TiffHeader
    from napari_wellzarr.storage.geometry import Well

__all__ = ["IMAGE_SUFFIXES", "ConversionPlan", "scan_source"]

IMAGE_SUFFIXES: Final = (".tif", ".tiff")
_HEADER_THREADS: Final = 8


def scan_source(
    source: str | os.PathLike[str] | ObjectPath,
    *,
    scheme: str = "auto",
    pattern: str | None = None,
    channel_names: Sequence[str] | None = None,
    pattern_timeout: float = 5.0,
    progress: Callable[[int, int], None] | None = None,
) -> ConversionPlan:
    """Scan a folder of microscope images into a :class:`ConversionPlan`.

    Parameters
    ----------
    source
        The folder, or an ``s3://bucket/prefix`` URL of an export uploaded to object
        storage (credentials as for reading remote plates: the ``AWS_*`` variables,
        the AWS files, or none for a public bucket); searched recursively, hidden
        files and folders skipped.
    scheme
        ``auto`` (an instrument export recognised from its own index files, see
        :mod:`.vendors`, else the registered scheme that recognises the most files),
        ``pattern`` (``pattern`` is required), the name of a vendor (``metaxpress``) or
        of a registered naming scheme (``imagexpress``, ``opera``).
    pattern
        A regular expression with named groups (see :func:`.naming.user_scheme`),
        matched against each whole base name with a time bound of ``pattern_timeout``
        seconds (+1 ms per file).
    channel_names
        One name per channel, in channel order; also orders channel words (``DAPI``).
    progress
        Called as ``progress(done, total)`` while TIFF headers are read (every 100
        files and at the end), in the calling thread.

    Raises
    ------
    ConfigError
        ``source`` is not a folder (or a URL of another scheme than ``s3://``), or the
        options contradict each other.
    RemoteReadError
        An ``s3://`` source cannot be listed or read (the URL is named).
    WellNameError
        No file matches the scheme, or the pattern is bad or too slow.
    WellDataError
        A file cannot be read as TIFF, planes differ in shape or dtype (the message
        names the files), or two files claim the same plane.
    """
    root = as_source(source)  # the plan's file paths (or URLs) hold in any worker process
    if not root.is_dir():
        what = "holds no object" if isinstance(root, ObjectPath) else "is not a folder"
        raise ConfigError(f"source {str(root)!r} {what}")
    if not pattern_timeout > 0:
        raise ConfigError(f"pattern_timeout={pattern_timeout!r} must be a positive number")
    vendor = vendor_by_name(scheme) if pattern is None else None
    if vendor is None and scheme == "auto" and pattern is None:
        vendor = detect_vendor(root)
    if vendor is not None:
        if channel_names is not None:
            raise ConfigError(
                f"{root} is a {vendor.NAME} export whose metadata names its channels; "
                "channel_names applies to plain folders of files"
            )
        return vendor.scan(root, progress=progress)
    images, other, sizes = _list_files(root)
    naming = _choose_scheme(scheme, pattern, pattern_timeout)
    if not images:
        raise WellNameError(f"source {root} holds no TIFF files ({', '.join(IMAGE_SUFFIXES)})")
    if naming is None:
        detection = detect_scheme(images, channel_names=channel_names)
        used, results, counts = detection.scheme, list(detection.results), detection.counts
    else:
        used, results = parse_batch(naming, images, channel_names)
        counts = ((used.name, sum(r is not None for r in results)),)
    parsed, unmatched = _split(images, results, used.name)
    if not parsed:
        example = unmatched[0].reason if unmatched else ""
        raise WellNameError(f"no file in {root} matches the {used.name} scheme: {example}")
    headers = _read_headers(root, [p.source for p in parsed], progress)
    return _build_plan(root, used, counts, parsed, headers, unmatched, other, sizes, channel_names)


def _list_files(root: SourcePath) -> tuple[list[str], int, dict[str, int]]:
    images: list[str] = []
    sizes: dict[str, int] = {}
    other = 0
    for dirpath, rel, dirnames, filenames in walk(root):
        # hidden folders, and zarr stores (a plate written into its own source folder)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not is_zarr(dirpath / d)
        )
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if not name.lower().endswith(IMAGE_SUFFIXES):
                other += 1
                continue
            path = (rel / name).as_posix()
            images.append(path)
            sizes[path] = (dirpath / name).stat().st_size
    return images, other, sizes


def _choose_scheme(scheme: str, pattern: str | None, timeout: float) -> NamingScheme | None:
    if scheme == "pattern" or (pattern is not None and scheme == "auto"):
        if not pattern:
            raise ConfigError("scheme='pattern' needs a pattern (a regular expression)")
        return user_scheme(pattern, timeout=timeout)
    if pattern is not None:
        raise ConfigError(f"a pattern was given with scheme={scheme!r}; use scheme='pattern'")
    return None if scheme == "auto" else scheme_by_name(scheme)


def _split(
    names: Sequence[str], results: Sequence[ParseResult], scheme: str
) -> tuple[list[ParsedName], tuple[UnmatchedFile, ...]]:
    parsed: list[ParsedName] = []
    unmatched: list[UnmatchedFile] = []
    for name, result in zip(names, results, strict=True):
        if isinstance(result, ParsedName):
            parsed.append(result)
        elif result is None:
            unmatched.append(UnmatchedFile(name, f"does not match the {scheme} scheme"))
        else:
            unmatched.append(UnmatchedFile(name, str(result)))
    return parsed, tuple(unmatched)


def _read_headers(
    root: SourcePath, names: Sequence[str], progress: Callable[[int, int], None] | None
) -> list[TiffHeader]:
    paths = [str(root / n) for n in names]
    headers: list[TiffHeader] = []
    with ThreadPoolExecutor(_HEADER_THREADS) as pool:
        for header in pool.map(read_header, paths):
            headers.append(header)
            if progress is not None and (len(headers) % 100 == 0 or len(headers) == len(paths)):
                progress(len(headers), len(paths))
    return headers


def _build_plan(
    root: SourcePath,
    scheme: NamingScheme,
    counts: tuple[tuple[str, int], ...],
    parsed: list[ParsedName],
    headers: list[TiffHeader],
    unmatched: tuple[UnmatchedFile, ...],
    other: int,
    sizes: dict[str, int],
    channel_names: Sequence[str] | None,
) -> ConversionPlan:
    plane_shape, dtype = common_plane(
        root, ((h.plane_shape, h.dtype, n.source) for n, h in zip(parsed, headers, strict=True))
    )
    by_well = _planes_by_well(root, parsed, headers)
    dims = tuple(max(p.key[i] for planes in by_well.values() for p in planes) + 1 for i in range(4))
    f, c, z, t = dims
    wells = tuple(
        WellSource(w.label, w, tuple(sorted(by_well[w], key=lambda p: p.key)))
        for w in sorted(by_well)
    )
    labels = _channel_labels(parsed, c, scheme, channel_names)
    return ConversionPlan(
        source=root,
        scheme=scheme.name,
        scheme_counts=counts,
        wells=wells,
        dims=(f, c, z, t),
        plane_shape=plane_shape,
        dtype=dtype,
        channel_names=labels,
        unmatched=unmatched,
        other_files=other,
        missing=_missing(root, wells, parsed, headers, (f, c, z, t), labels, scheme),
        source_bytes=sum(sizes[p.source] for p in parsed),
        n_files=len(parsed) + len(unmatched),
    )


def _planes_by_well(
    root: SourcePath, parsed: Sequence[ParsedName], headers: Sequence[TiffHeader]
) -> dict[Well, list[SourcePlane]]:
    by_well: dict[Well, list[SourcePlane]] = {}
    owner: dict[tuple[Well, PlaneKey], str] = {}
    names: dict[tuple[Well, str], str] = {}
    for name, header in zip(parsed, headers, strict=True):
        if header.pages > 1 and "z" in name.given:
            raise WellDataError(
                f"file {name.source!r} holds {header.pages} planes but its name gives a z "
                f"({name.z + 1}); a stack's pages are its z planes, so its name must not"
            )
        path = str(root / name.source)
        if (name.well, name.plane_name) in names:
            raise WellDataError(
                f"files {names[name.well, name.plane_name]!r} and {name.source!r} have the same "
                f"name {name.plane_name!r} in well {name.well.label}"
            )
        names[name.well, name.plane_name] = name.source
        for page in range(header.pages):
            key = name.key._replace(z=page) if header.pages > 1 else name.key
            if (name.well, key) in owner:
                raise WellDataError(
                    f"files {owner[name.well, key]!r} and {name.source!r} are both well "
                    f"{name.well.label} field {key.field + 1}, channel {key.c + 1}, "
                    f"z {key.z + 1}, t {key.t + 1}"
                )
            owner[name.well, key] = name.source
            label = name.plane_name if header.pages == 1 else f"{name.plane_name}#{page + 1}"
            plane = SourcePlane(path, label, key, page if header.pages > 1 else None, header.span)
            by_well.setdefault(name.well, []).append(plane)
    return by_well


def _channel_labels(
    parsed: Sequence[ParsedName],
    n_channels: int,
    scheme: NamingScheme,
    channel_names: Sequence[str] | None,
) -> tuple[str, ...]:
    if channel_names is not None:
        if len(channel_names) != n_channels:
            raise ConfigError(
                f"{len(channel_names)} channel name(s) {list(channel_names)} given, but the "
                f"files hold {n_channels} channel(s)"
            )
        return tuple(channel_names)
    labels: dict[int, str] = {}
    for name in parsed:
        if name.channel_label:
            labels.setdefault(name.channel, name.channel_label)
    fmt = getattr(scheme, "channel_label", "ch{}")
    return tuple(labels.get(i, fmt.format(i + 1)) for i in range(n_channels))


def _missing(
    root: SourcePath,
    wells: Sequence[WellSource],
    parsed: Sequence[ParsedName],
    headers: Sequence[TiffHeader],
    dims: tuple[int, int, int, int],
    labels: Sequence[str],
    scheme: NamingScheme,
) -> tuple[MissingPlane, ...]:
    stacked = any(h.pages > 1 for h in headers)
    templates: dict[Well, ParsedName] = {}
    stacks: dict[tuple[Well, int, int, int], str] = {}
    for name, header in zip(parsed, headers, strict=True):
        templates.setdefault(name.well, name)
        if header.pages > 1 or stacked:
            stacks[name.well, name.field, name.channel, name.t] = name.source
    order = getattr(scheme, "channel_order", ())
    f, c, z, t = dims
    out: list[MissingPlane] = []
    for source in wells:
        present = {p.key for p in source.planes}
        for key in (
            PlaneKey(fi, ci, zi, ti)
            for fi in range(f)
            for ti in range(t)
            for ci in range(c)
            for zi in range(z)
        ):
            if key in present:
                continue
            stack = stacks.get((source.well, key.field, key.c, key.t))
            if stack is not None:
                label = f"{stack} page {key.z + 1}"
            else:
                tmpl = templates[source.well]
                wanted = key._replace(z=tmpl.z) if stacked else key
                guess = expected_name(tmpl, wanted, order)
                label = guess or (
                    f"well {source.name} field {key.field + 1} channel {labels[key.c]} "
                    f"z {key.z + 1} t {key.t + 1}"
                )
                if stacked and guess:
                    label = f"{guess} page {key.z + 1}"
            out.append(MissingPlane(source.name, key, label))
    return tuple(out)
