"""The arguments of :meth:`.openhcs.ZarrStorageBackend.save_batch`, checked and resolved."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_wellzarr.errors import WellDataError, WellNameError
from napari_wellzarr.openhcs.paths import PathLike, is_passthrough, split_path
from napari_wellzarr.storage.axes import PlaneKey
from napari_wellzarr.storage.geometry import Well

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from napari_wellzarr.convert.naming import ParsedName

__all__ = ["batch_names", "batch_shape", "batch_well"]


def batch_names(paths: Sequence[PathLike]) -> tuple[Path, list[str]]:
    """The one store of ``paths`` and their file names (distinct image names, in order)."""
    root = split_path(paths[0])[0]
    names: list[str] = []
    for path in paths:
        where, name = split_path(path)
        if not name or is_passthrough(name):
            raise WellDataError(f"save_batch: {path} is not an image file path")
        if where != root:
            raise WellDataError(f"save_batch: {path} is not in the store {root} of {paths[0]}")
        if name in names:
            raise WellDataError(f"save_batch: file name {name!r} is given twice")
        names.append(name)
    return root, names


def batch_well(
    names: list[str], parsed: list[ParsedName] | None, row: str | None, col: str | int | None
) -> Well:
    """The well named by ``row=`` and ``col=``, else the one well all parsed names share."""
    if row is not None or col is not None:
        if row is None or col is None:
            raise WellNameError(
                f"save_batch: give both row= and col= (got row={row!r}, col={col!r})"
            )
        return Well.parse(f"{row}{col}")
    assert parsed is not None
    for name, p in zip(names, parsed, strict=True):
        if p.well != parsed[0].well:
            raise WellDataError(
                f"save_batch writes one well, but {name!r} is in well {p.well.label} and "
                f"{names[0]!r} in {parsed[0].well.label}"
            )
    return parsed[0].well


def batch_shape(
    keys: list[PlaneKey], names: list[str], limits: dict[str, int | None]
) -> tuple[int, ...] | None:
    """The well shape fixed by ``n_fields`` / ``n_channels`` / ``n_z``, or None if all unset.

    Checks every plane against the limits that are set; unset dimensions are the
    largest index + 1 (a time axis is added when a plane has ``t`` > 0).
    """
    dims = []
    for i, (option, limit) in enumerate(limits.items()):
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise WellDataError(f"save_batch: {option}={limit!r} must be an integer >= 1")
        for name, key in zip(names, keys, strict=True):
            if limit is not None and key[i] >= limit:
                raise WellDataError(
                    f"{name!r}: {PlaneKey._fields[i]} index {key[i]} (0-based) is beyond "
                    f"{option}={limit}"
                )
        dims.append(limit if limit is not None else max(k[i] for k in keys) + 1)
    if all(v is None for v in limits.values()):
        return None
    return (*dims, max(k.t for k in keys) + 1) if any(k.t for k in keys) else tuple(dims)
