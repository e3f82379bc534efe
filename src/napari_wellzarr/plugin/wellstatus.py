"""A plate in a napari viewer: the well under the pointer in the status bar, a channel active."""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING, Any

from napari_wellzarr.plugin.view import META_KEY

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["attach", "well_at"]

#: Viewers whose layer list is watched already (by id: napari viewers are not hashable;
#: weakly held, so that a new viewer given a closed one's id is watched too).
_WATCHED: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def well_at(meta: dict[str, Any], position: Sequence[float]) -> str | None:
    """``"B03 field 2"``: the well (and slider field) at data ``position`` of a plate layer.

    ``meta`` is the layer's napari-wellzarr metadata (rows, columns, wells, tile, pitch,
    axes); ``position`` is in level-0 data coordinates, lead axes first.  None between
    wells, outside the plate or at an absent well.
    """
    try:
        (th, tw), (py, px) = meta["tile"], meta["pitch"]
        y, x = float(position[-2]), float(position[-1])
        row, column = math.floor(y / py), math.floor(x / px)
        if not (0 <= y - row * py < th and 0 <= x - column * px < tw):
            return None
        inside = row >= 0 and column >= 0
        name = f"{meta['rows'][row]}{meta['columns'][column]}" if inside else None
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError):
        return None
    if name is None or list(meta.get("wells", {}).get(name, [])) != [row, column]:
        return None
    axes = list(meta.get("axes", []))
    if meta.get("fields") == "slider" and axes[:1] == ["field"] and len(position) == len(axes):
        return f"{name} field {round(float(position[0]))}"
    return name


def attach(viewer: Any) -> None:
    """Watch ``viewer``'s layer list for this plugin's plate layers (once per viewer).

    Image and labels layers name the well under the pointer in their status (no need
    for the plate map to be selected); a hidden plate map added last does not stay the
    active layer (a channel is); and the first change of the canvas size after the
    plate is fitted (the layer controls widening) fits it again, until the user moves
    the camera.
    """
    if _WATCHED.get(id(viewer)) is viewer:
        return
    _WATCHED[id(viewer)] = viewer

    sources: set[str] = set()

    def inserted(event: Any) -> None:
        layer = event.value
        meta = getattr(layer, "metadata", {}).get(META_KEY)
        if not isinstance(meta, dict):
            return
        if meta.get("kind") in ("image", "labels"):
            _name_wells(layer, meta)
            if str(meta.get("source")) not in sources:  # the first layer: napari fitted it
                sources.add(str(meta.get("source")))
                _refit_on_resize(viewer)
        elif meta.get("kind") == "plate_map":
            _select_channel(viewer, layer)

    viewer.layers.events.inserted.connect(inserted)


def _name_wells(layer: Any, meta: dict[str, Any]) -> None:
    """Prefix the layer's status coordinates with the well (and field) under the pointer."""
    original = layer.get_status

    def get_status(position: Any = None, **kwargs: Any) -> Any:
        status = original(position, **kwargs)
        if position is None or not isinstance(status, dict):
            return status
        data = layer.world_to_data(position) if kwargs.get("world") else position
        well = well_at(meta, list(data))
        if well is not None:
            status["coordinates"] = f"{well}  {status.get('coordinates', '')}"
        return status

    layer.get_status = get_status


def _select_channel(viewer: Any, plate_map: Any) -> None:
    """Make the plate's first channel the active layer instead of a hidden plate map."""
    channels = [
        layer
        for layer in viewer.layers
        if getattr(layer, "metadata", {}).get(META_KEY, {}).get("kind") == "image"
    ]
    if plate_map.visible or not channels:
        return
    selection = viewer.layers.selection

    def active(event: Any) -> None:
        if event.value is plate_map:  # napari activates each layer as it is added
            selection.events.active.disconnect(active)
            selection.active = channels[0]

    selection.events.active.connect(active)


def _refit_on_resize(viewer: Any) -> None:
    """Fit the plate again when the canvas changes size, until the camera is moved.

    napari fits a plate to the canvas as its first layer is added; the layer controls
    then widen and the canvas narrows, which cut off the last columns.
    """
    camera = viewer.scene.camera
    fitted = [(tuple(camera.center), camera.zoom)]

    def resized(event: Any) -> None:
        if (tuple(camera.center), camera.zoom) != fitted[0]:
            viewer.canvas.events.size.disconnect(resized)  # the user moved the camera
            return
        viewer.reset_view()
        fitted[0] = (tuple(camera.center), camera.zoom)

    viewer.canvas.events.size.connect(resized)
