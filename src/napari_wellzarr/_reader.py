"""npe2 reader: HCS plates and single wells, as lazy per-channel mosaics.

``get_reader`` decides from one small metadata file and imports nothing but the
standard library; the work happens in :mod:`napari_wellzarr._plate` (opening,
layers) and :mod:`napari_wellzarr._mosaic` (lazy tiles).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

    LayerData = list[tuple[Any, dict[str, Any], str]]

__all__ = ["classify", "get_reader", "read_plate"]

_MAX_PROBE_BYTES: Final = 16 * 2**20


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], LayerData] | None:
    """Return :func:`read_plate` for an OME-Zarr plate or well folder, else ``None``."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, str | os.PathLike) or not os.path.isdir(path):
        return None
    return read_plate if classify(path) else None


def read_plate(path: str | os.PathLike[str] | list[str]) -> LayerData:
    """Open a plate (or a single well) as napari layer data; reads metadata only.

    Returns one image layer per channel (field, [t,] z, y, x mosaics of every well at
    its plate position), one labels layer per OME label image and a "plate map"
    points layer with the well outlines and names.
    """
    from ._plate import open_view

    target = path[0] if isinstance(path, list) else path
    return open_view(os.fspath(target)).layers()


def classify(path: str | os.PathLike[str]) -> Literal["plate", "well"] | None:
    """``"plate"``, ``"well"`` or ``None`` (not ours), from the group's metadata file.

    A group whose metadata is not valid JSON but mentions a plate or well is claimed
    too, so that opening it gives one clear error rather than "no reader".
    """
    for name in ("zarr.json", ".zattrs"):
        meta = os.path.join(path, name)
        if not os.path.isfile(meta) or os.path.getsize(meta) > _MAX_PROBE_BYTES:
            continue
        with open(meta, "rb") as fh:
            raw = fh.read()
        try:
            doc = json.loads(raw)
        except ValueError:
            return "plate" if b'"plate"' in raw else "well" if b'"well"' in raw else None
        attrs = doc.get("attributes", {}) if isinstance(doc, dict) and name == "zarr.json" else doc
        if not isinstance(attrs, dict):
            return None
        ome = attrs.get("ome")
        keys = {*attrs, *(ome if isinstance(ome, dict) else ())}
        return "plate" if "plate" in keys else "well" if "well" in keys else None
    return None
