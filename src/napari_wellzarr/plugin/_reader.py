"""npe2 reader: HCS plates and single wells, as lazy per-channel mosaics."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from napari_wellzarr.storage.kinds import classify
from napari_wellzarr.storage.locations import is_url

if TYPE_CHECKING:
    from collections.abc import Callable

    LayerData = list[tuple[Any, dict[str, Any], str]]

__all__ = ["get_reader", "read_plate"]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], LayerData] | None:
    """Return :func:`read_plate` for an OME-Zarr plate or well folder, else ``None``."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if isinstance(path, str) and is_url(path):
        return read_plate if classify(path) else None  # unsupported schemes: None at once
    if not isinstance(path, str | os.PathLike) or not os.path.isdir(path):
        return None
    return read_plate if classify(path) else None


def read_plate(path: str | os.PathLike[str] | list[str]) -> LayerData:
    """Open a plate (or a single well) as napari layer data; reads metadata only.

    Returns one image layer per channel (field, [t,] z, y, x mosaics of every well at
    its plate position), one labels layer per OME label image and a "plate map"
    points layer with the well outlines and names.  A plate whose writer was
    interrupted shows its complete wells, listed or not yet (a plate with none: the
    plate map alone), with an ``UnfinishedPlateWarning``; a damaged well shows blank
    with a ``DamagedWellWarning``.
    """
    from napari_wellzarr.plugin.view import open_view

    target = path[0] if isinstance(path, list) else path
    return open_view(os.fspath(target)).layers()
