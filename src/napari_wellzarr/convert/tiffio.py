"""Reading source TIFF files: headers for the plan, planes for the conversion."""

from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_wellzarr.convert.plaintiff import PixelSpan, read_plain
from napari_wellzarr.convert.srcfs import (
    fetch_many,
    object_etag,
    open_ranged,
    read_object,
    read_range_if,
)
from napari_wellzarr.errors import RemoteReadError, WellDataError
from napari_wellzarr.storage.axes import ALLOWED_DTYPES
from napari_wellzarr.storage.locations import is_url

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = [
    "PixelSpan",
    "TiffHeader",
    "decode_stack",
    "pixel_span",
    "read_header",
    "read_raw_into",
    "read_stack",
    "read_stacks",
    "tifffile_header",
]


@dataclass(frozen=True)
class TiffHeader:
    """What a TIFF file holds: planes of ``plane_shape`` and ``dtype``, ``pages`` of them.

    ``span``: where its pixels lie when they can be read without tifffile (else None).
    """

    plane_shape: tuple[int, int]
    dtype: str
    pages: int
    span: PixelSpan | None = None


def pixel_span(tif: Any, size: int, mtime_ns: int = 0, etag: str | None = None) -> PixelSpan | None:
    """The :class:`PixelSpan` of an open ``tifffile.TiffFile``'s first series, if it has one.

    Only uncompressed data in its final form (no predictor, fill order or bit packing),
    all pages one after the other and wholly inside the file's ``size`` bytes.
    """
    series = tif.series[0]
    offset = series.dataoffset  # None unless contiguous, uncompressed, in final form
    if offset is None or series.dtype is None:
        return None
    nbytes = math.prod(series.shape) * np.dtype(series.dtype).itemsize
    if offset + nbytes > size:
        return None  # truncated: tifffile says what is wrong with it
    return PixelSpan(int(offset), nbytes, tif.byteorder == ">", int(size), int(mtime_ns), etag)


def read_header(path: str) -> TiffHeader:
    """Read a TIFF's shape and dtype without its pixels.

    A plain local file (:func:`.plaintiff.read_plain`) is read by its tags alone, any
    other file by tifffile.

    Raises :class:`WellDataError` naming the file when it is not a readable TIFF, or
    holds RGB data, a hyperstack or a dtype a well cannot hold;
    :class:`RemoteReadError` when an ``s3://`` object cannot be read (its first 64 KiB
    are read, more only when its tags lie beyond).
    """
    if not is_url(path):
        try:
            plain = read_plain(path)
        except (OSError, ValueError, struct.error):
            plain = None  # missing, damaged...: tifffile says what is wrong
        if plain is not None:
            return _header(path, plain.shape, "YX", np.dtype(plain.dtype), 1, plain.span)
    return tifffile_header(path)


def tifffile_header(path: str) -> TiffHeader:
    """:func:`read_header` by tifffile alone (any TIFF it reads)."""
    import tifffile

    try:
        if is_url(path):
            handle: Any = open_ranged(path)
            size, mtime_ns, etag = handle.raw.size, 0, object_etag(handle.raw)
        else:
            handle = path
            stat = os.stat(path)  # before the parse: a later change shows at conversion
            size, mtime_ns, etag = stat.st_size, stat.st_mtime_ns, None
        with tifffile.TiffFile(handle) as tif:
            series = tif.series
            if not series:
                raise WellDataError(f"file {path!r} holds no image")
            shape, axes, dtype = series[0].shape, series[0].axes, np.dtype(series[0].dtype)
            n_series = len(series)
            span = pixel_span(tif, size, mtime_ns, etag) if n_series == 1 else None
    except (WellDataError, RemoteReadError):
        raise
    except Exception as err:
        # tifffile raises many kinds of errors for damaged files; all mean "unreadable"
        # and are reported with the file's name and the cause, never ignored.
        raise WellDataError(
            f"file {path!r} cannot be read as TIFF: {type(err).__name__}: {err}"
        ) from err
    return _header(path, tuple(shape), str(axes), dtype, n_series, span)


def _header(
    path: str,
    shape: tuple[int, ...],
    axes: str,
    dtype: np.dtype[Any],
    n_series: int,
    span: PixelSpan | None,
) -> TiffHeader:
    if n_series != 1:
        raise WellDataError(
            f"file {path!r} holds {n_series} image series of different shapes; "
            "one plane or one stack of equal planes per file is supported"
        )
    if "S" in axes or len(shape) < 2:
        raise WellDataError(
            f"file {path!r} holds {axes} data of shape {shape} (RGB or not an image); "
            "grey-level planes are supported"
        )
    stack_axes = [(a, n) for a, n in zip(axes[:-2], shape[:-2], strict=True) if n > 1]
    if len(stack_axes) > 1:
        raise WellDataError(
            f"file {path!r} is a {axes} hyperstack of shape {shape}; only one stack axis "
            "(its pages are z planes) is supported"
        )
    native = dtype.newbyteorder("=")
    if native not in ALLOWED_DTYPES:
        raise WellDataError(
            f"file {path!r} has dtype {dtype}; supported: 8-64 bit integers, float32, float64"
        )
    pages = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return TiffHeader((int(shape[-2]), int(shape[-1])), native.name, int(pages), span)


def read_stack(path: str, plane_shape: tuple[int, int], dtype: str) -> np.ndarray[Any, Any]:
    """Read every plane of a file as a ``(pages, y, x)`` array of ``dtype``.

    Raises :class:`WellDataError` when the file cannot be read or no longer has the
    shape and dtype the plan recorded; :class:`RemoteReadError` when an ``s3://``
    object cannot be fetched (one GET).
    """
    content = read_object(path) if is_url(path) else None
    return decode_stack(path, content, plane_shape, dtype)


def read_stacks(
    paths: Sequence[str],
    plane_shape: tuple[int, int],
    dtype: str,
    spans: Sequence[PixelSpan | None] = (),
) -> Iterator[tuple[str, np.ndarray[Any, Any]]]:
    """``(path, stack)`` of each file as :func:`read_stack` reads it, in order.

    ``s3://`` objects are downloaded a few at once ahead of the caller (bounded); one
    with a :class:`PixelSpan` (``spans[i]``, same order as ``paths``) by a ranged GET of
    its pixels alone, unless it changed since the scan.
    """
    span_of = dict(zip(paths, spans, strict=False))

    def fetch(url: str) -> bytes | memoryview:
        span = span_of.get(url)
        if span is not None:
            pixels = read_range_if(url, span.offset, span.offset + span.nbytes, span.etag)
            if pixels is not None:
                return pixels
            span_of[url] = None  # changed since the scan: read whole, parsed by tifffile
        return read_object(url)

    urls = [p for p in paths if is_url(p)]
    fetched = fetch_many(urls, fetch) if urls else iter(())
    for path in paths:
        if not is_url(path):
            yield path, decode_stack(path, None, plane_shape, dtype)
            continue
        content = next(fetched)[1]
        span = span_of.get(path)
        if span is None:
            yield path, decode_stack(path, content, plane_shape, dtype)
        else:
            yield path, _raw_stack(content, span, plane_shape, dtype)


def _raw_stack(
    content: bytes | memoryview, span: PixelSpan, plane_shape: tuple[int, int], dtype: str
) -> np.ndarray[Any, Any]:
    native = np.dtype(dtype)
    stored = native.newbyteorder(">" if span.big_endian else "<")
    stack = np.frombuffer(content, dtype=stored).reshape(-1, *plane_shape)
    return stack if stored == native else stack.astype(native)


def read_raw_into(
    path: str, span: PixelSpan, targets: Sequence[tuple[int, np.ndarray[Any, Any]]]
) -> bool:
    """Read pages of a local file straight into ``targets`` (``(page, plane array)``).

    One ``pread`` per plane into the plane's own memory (C-contiguous, the plan's
    dtype), byte-swapped when the file is big-endian.  ``False`` when the file's size or
    modification time differs from the scan's (nothing trusted: read it with tifffile).
    Raises :class:`WellDataError` naming the file when it cannot be opened or ends
    before its planes.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise WellDataError(f"file {path!r} cannot be read: {err.strerror}") from err
    try:
        stat = os.fstat(fd)
        if (stat.st_size, stat.st_mtime_ns) != (span.size, span.mtime_ns):
            return False
        for page, out in targets:
            view = out.data.cast("B")
            start = span.offset + page * out.nbytes
            if start + out.nbytes > span.offset + span.nbytes:
                raise WellDataError(
                    f"file {path!r} holds {span.nbytes // out.nbytes} plane(s), the plan "
                    f"asks for page {page + 1}"
                )
            done = 0
            while done < out.nbytes:
                got = os.preadv(fd, [view[done:]], start + done)
                if got == 0:
                    raise WellDataError(
                        f"file {path!r} ends after {start + done} bytes, the scan found "
                        f"{span.size}: it was truncated since the scan"
                    )
                done += got
            if span.big_endian and out.dtype.itemsize > 1:
                out.byteswap(inplace=True)
    except OSError as err:
        raise WellDataError(f"file {path!r} cannot be read: {err}") from err
    finally:
        os.close(fd)
    return True


def decode_stack(
    path: str, content: bytes | None, plane_shape: tuple[int, int], dtype: str
) -> np.ndarray[Any, Any]:
    """Decode a file's planes from ``content`` (its bytes) or, when ``None``, from ``path``."""
    import tifffile

    try:
        with tifffile.TiffFile(path if content is None else io.BytesIO(content)) as tif:
            data = tif.series[0].asarray()
    except Exception as err:
        # Damaged files raise many kinds of errors; report them all by file name.
        raise WellDataError(
            f"file {path!r} cannot be read as TIFF: {type(err).__name__}: {err}"
        ) from err
    if data.shape[-2:] != plane_shape or data.dtype.newbyteorder("=") != np.dtype(dtype):
        raise WellDataError(
            f"file {path!r} is {data.shape} {data.dtype}, but the scan found planes of "
            f"{plane_shape} {dtype}: the file changed since the scan"
        )
    return np.asarray(data.reshape(-1, *plane_shape), dtype=np.dtype(dtype))
