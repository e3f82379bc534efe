"""npe2 reader: HCS plates and single wells, as lazy per-channel mosaics.

``get_reader`` decides from one small metadata file and imports nothing but the
standard library; the work happens in :mod:`napari_wellzarr._plate` (opening,
layers) and :mod:`napari_wellzarr._mosaic` (lazy tiles).
"""

from __future__ import annotations

import functools
import json
import os
import stat
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

    LayerData = list[tuple[Any, dict[str, Any], str]]

__all__ = ["classify", "get_reader", "read_plate"]

Kind = Literal["plate", "well"] | None

_MAX_PROBE_BYTES: Final = 16 * 2**20
#: The block a plate written by napari-wellzarr has in its root document.
_MARKER: Final = "wellzarr"


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
    points layer with the well outlines and names.  A plate whose writer was
    interrupted shows its complete wells, listed or not yet (a plate with none: the
    plate map alone), with an ``UnfinishedPlateWarning``; a damaged well shows blank
    with a ``DamagedWellWarning``.
    """
    from ._plate import open_view

    target = path[0] if isinstance(path, list) else path
    return open_view(os.fspath(target)).layers()


def classify(path: str | os.PathLike[str]) -> Kind:
    """``"plate"``, ``"well"`` or ``None`` (not ours), from the group's metadata file.

    A plate written here is claimed before its first well is listed too (its document
    has our ``wellzarr`` block with the plate's configuration, but no OME ``plate``
    block yet).  A group whose metadata is not valid JSON but mentions a plate or well
    is claimed too, so that opening it gives one clear error rather than "no reader".
    """
    for name in ("zarr.json", ".zattrs"):
        meta = os.path.join(path, name)
        try:
            info = os.stat(meta)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_PROBE_BYTES:
            continue
        identity = (info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev)
        return _classify_document(meta, name == "zarr.json", identity)
    return None


@functools.lru_cache(maxsize=16)
def _classify_document(meta: str, v3: bool, identity: tuple[int, ...]) -> Kind:
    """:func:`classify` of one metadata document, remembered while the file is unchanged.

    napari asks :func:`get_reader` first, then reads the same path: a plate's root
    document (80 kB for 1536 wells) is parsed once for both.
    """
    with open(meta, "rb") as fh:
        raw = fh.read()
    try:
        doc = json.loads(raw)
    except ValueError:
        if b'"plate"' in raw:
            return "plate"
        return "well" if b'"well"' in raw else "plate" if b'"wellzarr"' in raw else None
    attrs = doc.get("attributes", {}) if isinstance(doc, dict) and v3 else doc
    if not isinstance(attrs, dict):
        return None
    ome = attrs.get("ome")
    keys = {*attrs, *(ome if isinstance(ome, dict) else ())}
    if "plate" in keys:
        return "plate"
    return "well" if "well" in keys else "plate" if _our_plate(attrs) else None


def _our_plate(attrs: dict[str, Any]) -> bool:
    """Whether ``attrs`` are those of a plate written here (with or without wells listed)."""
    marker = attrs.get(_MARKER)
    return isinstance(marker, dict) and isinstance(marker.get("config"), dict)
