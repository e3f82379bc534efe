"""npe2 writers: image (+ labels) layers -> a well-chunked OME-Zarr plate."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["write_image", "write_layers"]


def write_layers(path: str, layers: Sequence[tuple[Any, dict[str, Any], str]]) -> list[str]:
    """Write image and labels layers as one plate at ``path``; return ``[path]``.

    An existing ``path`` is refused, except for labels layers saved into the plate
    they came from (edits written back) or of its mosaic's shape (new label images).
    """
    from napari_wellzarr.errors import PlateExistsError
    from napari_wellzarr.plugin import layer_wells
    from napari_wellzarr.storage import fsio
    from napari_wellzarr.storage.locations import refuse_url

    refuse_url(path, "a plate")
    target = Path(path)
    if os.path.lexists(target):
        from napari_wellzarr.plugin import saveback

        if target.is_dir() and saveback.is_labels_only(layers):
            return saveback.save_into_plate(target, layers)
        raise PlateExistsError(
            f"{target} already exists; napari-wellzarr never overwrites (it only saves "
            "labels layers into the plate they came from): choose a new name"
        )
    mapping = layer_wells.map_layers(layers)
    stage = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        for _ in layer_wells.write_plate(mapping, stage, name=target.name):
            pass  # one well written
        if os.path.lexists(target):
            raise PlateExistsError(
                f"{target} appeared while it was being written; kept it, discarded ours"
            )
        stage.rename(target)
    finally:
        if stage.exists():
            fsio.remove_tree(stage)
    return [str(target)]


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one image layer as a plate (its channels: the layer; its well: A01 or named)."""
    return write_layers(path, [(data, meta, "image")])
