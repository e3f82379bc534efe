"""What a folder is: an OME-Zarr plate, a well, or neither (standard library only)."""

from __future__ import annotations

import functools
import json
import os
import stat
from typing import Any, Final, Literal

from napari_wellzarr.storage._spec import WELLZARR_KEY
from napari_wellzarr.storage.locations import is_url

__all__ = ["Kind", "classify"]

_MARKER_BYTES: Final = f'"{WELLZARR_KEY}"'.encode()


Kind = Literal["plate", "well"] | None


_MAX_PROBE_BYTES: Final = 16 * 2**20


#: The block a plate written by napari-wellzarr has in its root document.


def classify(path: str | os.PathLike[str]) -> Kind:
    """``"plate"``, ``"well"`` or ``None`` (not ours), from the group's metadata file.

    A plate written here is claimed before its first well is listed too (its document
    has our ``wellzarr`` block with the plate's configuration, but no OME ``plate``
    block yet).  A group whose metadata is not valid JSON but mentions a plate or well
    is claimed too, so that opening it gives one clear error rather than "no reader".
    A URL (``https://``, ``s3://``...) is asked over the network (its document is kept
    for the open that follows); one that cannot be read is not claimed.
    """
    if is_url(path):
        return _classify_remote(os.fspath(path))
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
    return _kind_of(raw, v3)


def _kind_of(raw: bytes, v3: bool) -> Kind:
    """What the group whose metadata document is ``raw`` is."""
    try:
        doc = json.loads(raw)
    except ValueError:
        if b'"plate"' in raw:
            return "plate"
        return "well" if b'"well"' in raw else "plate" if _MARKER_BYTES in raw else None
    attrs = doc.get("attributes", {}) if isinstance(doc, dict) and v3 else doc
    if not isinstance(attrs, dict):
        return None
    ome = attrs.get("ome")
    keys = {*attrs, *(ome if isinstance(ome, dict) else ())}
    if "plate" in keys:
        return "plate"
    return "well" if "well" in keys else "plate" if _our_plate(attrs) else None


def _classify_remote(url: str) -> Kind:
    from napari_wellzarr.errors import WellZarrError
    from napari_wellzarr.storage.locations import READ_SCHEMES, hand_over, open_location

    if url.split(":", 1)[0].lower() not in READ_SCHEMES:
        return None
    try:
        location = open_location(url, fresh=True)
        for name, v3 in (("zarr.json", True), (".zattrs", False)):
            raw = (location / name).read(_MAX_PROBE_BYTES)
            if raw is not None:
                kind = _kind_of(raw, v3)
                if kind is not None:
                    hand_over(location)  # to the open that follows: one fetch for both
                return kind
    except (WellZarrError, OSError):
        return None
    return None


def _our_plate(attrs: dict[str, Any]) -> bool:
    """Whether ``attrs`` are those of a plate written here (with or without wells listed)."""
    marker = attrs.get(WELLZARR_KEY)
    return isinstance(marker, dict) and isinstance(marker.get("config"), dict)
