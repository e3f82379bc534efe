"""Indexing a plate mosaic: integers, slices and napari's integer index arrays."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np

__all__ = ["fancy", "normalise", "overlap", "span"]


def span(index: Any, size: int) -> tuple[range, bool]:
    """The positions an index selects along an axis, and whether the axis is kept."""
    if isinstance(index, Integral):
        i = int(index)
        if not -size <= i < size:
            raise IndexError(f"index {i} is out of bounds for an axis of size {size}")
        return range(i % size, i % size + 1), False
    if isinstance(index, slice):
        return range(*index.indices(size)), True
    raise IndexError(f"only integers and slices index a plate mosaic, not {index!r}")


def fancy(key: Any, ndim: int) -> tuple[np.ndarray[Any, Any], ...] | None:
    """One integer array per axis, broadcast together (napari's paint indices), else None."""
    if not isinstance(key, tuple) or len(key) != ndim:
        return None
    if not any(isinstance(k, np.ndarray | list) for k in key):
        return None
    if not all(isinstance(k, np.ndarray | list | Integral) for k in key):
        raise IndexError("a plate mosaic takes integer arrays on every axis, or none")
    arrays = np.broadcast_arrays(*(np.asarray(k) for k in key))
    if any(a.dtype.kind not in "iu" for a in arrays):
        raise IndexError("a plate mosaic takes integer index arrays only")
    return tuple(a.astype(np.int64) for a in arrays)


def normalise(key: Any, ndim: int) -> tuple[Any, ...]:
    """``key`` as one index per axis: the ellipsis expanded, missing axes whole."""
    items = key if isinstance(key, tuple) else (key,)
    if any(i is Ellipsis for i in items):
        at = next(n for n, i in enumerate(items) if i is Ellipsis)
        fill = (slice(None),) * (ndim - len(items) + 1)
        items = (*items[:at], *fill, *items[at + 1 :])
    if len(items) > ndim:
        raise IndexError(f"too many indices ({len(items)}) for a {ndim}-d plate mosaic")
    return (*items, *(slice(None),) * (ndim - len(items)))


def overlap(positions: range, start: int, stop: int) -> tuple[slice, slice] | None:
    """Output slice and tile slice for the ``positions`` that fall in ``[start, stop)``."""
    step = positions.step
    if step < 1:
        raise IndexError("a plate mosaic cannot be indexed with a negative step")
    first = max(0, -(-(start - positions.start) // step))
    last = min(len(positions), -(-(stop - positions.start) // step))
    if first >= last:
        return None
    tile_start = positions.start + first * step - start
    return slice(first, last), slice(tile_start, tile_start + (last - first - 1) * step + 1, step)
