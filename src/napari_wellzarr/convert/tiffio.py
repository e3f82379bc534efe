"""Reading source TIFF files: headers for the plan, planes for the conversion."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_wellzarr.convert.srcfs import fetch_many, open_ranged, read_object
from napari_wellzarr.errors import RemoteReadError, WellDataError
from napari_wellzarr.storage.axes import ALLOWED_DTYPES
from napari_wellzarr.storage.locations import is_url

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["TiffHeader", "decode_stack", "read_header", "read_stack", "read_stacks"]


@dataclass(frozen=True)
class TiffHeader:
    """What a TIFF file holds: planes of ``plane_shape`` and ``dtype``, ``pages`` of them."""

    plane_shape: tuple[int, int]
    dtype: str
    pages: int


def read_header(path: str) -> TiffHeader:
    """Read a TIFF's shape and dtype without its pixels.

    Raises :class:`WellDataError` naming the file when it is not a readable TIFF, or
    holds RGB data, a hyperstack or a dtype a well cannot hold;
    :class:`RemoteReadError` when an ``s3://`` object cannot be read (its first 64 KiB
    are read, more only when its tags lie beyond).
    """
    import tifffile

    try:
        with tifffile.TiffFile(open_ranged(path) if is_url(path) else path) as tif:
            series = tif.series
            if not series:
                raise WellDataError(f"file {path!r} holds no image")
            shape, axes, dtype = series[0].shape, series[0].axes, np.dtype(series[0].dtype)
            n_series = len(series)
    except (WellDataError, RemoteReadError):
        raise
    except Exception as err:
        # tifffile raises many kinds of errors for damaged files; all mean "unreadable"
        # and are reported with the file's name and the cause, never ignored.
        raise WellDataError(
            f"file {path!r} cannot be read as TIFF: {type(err).__name__}: {err}"
        ) from err
    return _header(path, tuple(shape), str(axes), dtype, n_series)


def _header(
    path: str, shape: tuple[int, ...], axes: str, dtype: np.dtype[Any], n_series: int
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
    return TiffHeader((int(shape[-2]), int(shape[-1])), native.name, int(pages))


def read_stack(path: str, plane_shape: tuple[int, int], dtype: str) -> np.ndarray[Any, Any]:
    """Read every plane of a file as a ``(pages, y, x)`` array of ``dtype``.

    Raises :class:`WellDataError` when the file cannot be read or no longer has the
    shape and dtype the plan recorded; :class:`RemoteReadError` when an ``s3://``
    object cannot be fetched (one GET).
    """
    content = read_object(path) if is_url(path) else None
    return decode_stack(path, content, plane_shape, dtype)


def read_stacks(
    paths: Sequence[str], plane_shape: tuple[int, int], dtype: str
) -> Iterator[tuple[str, np.ndarray[Any, Any]]]:
    """``(path, stack)`` of each file as :func:`read_stack` reads it, in order.

    ``s3://`` objects are downloaded a few at once ahead of the caller (bounded).
    """
    urls = [p for p in paths if is_url(p)]
    fetched = fetch_many(urls) if urls else iter(())
    for path in paths:
        content = next(fetched)[1] if is_url(path) else None
        yield path, decode_stack(path, content, plane_shape, dtype)


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
