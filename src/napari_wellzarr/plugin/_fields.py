"""Dock widget: show the open plates' fields at their stage positions, or on a slider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, Container, Label

from napari_wellzarr.storage._spec import WELLZARR_KEY

if TYPE_CHECKING:
    import napari.viewer

__all__ = ["PlateFieldsWidget"]

_KINDS = ("image", "labels", "plate_map")


class PlateFieldsWidget(Container[Any]):
    """A toggle: each well's fields placed where they were imaged, or on a field slider."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.placed = CheckBox(label="Fields at their positions", value=True)
        self.placed.tooltip = (
            "on: each well's fields where the instrument imaged them (later fields on top "
            "where they overlap); off: one field at a time, on the 'field' slider"
        )
        self.status = Label(value="")
        self.extend([self.placed, self.status])
        self.placed.changed.connect(self.reopen)

    def _plates(self) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        for layer in self.viewer.layers:
            meta = layer.metadata.get(WELLZARR_KEY)
            if isinstance(meta, dict) and meta.get("kind") in _KINDS and meta.get("source"):
                found.setdefault(str(meta["source"]), []).append(layer)
        return found

    def reopen(self, _: object = None) -> None:
        """Open every plate shown again, its fields as the toggle says."""
        from napari.layers import Layer

        from napari_wellzarr.plugin.view import PlateView, open_view

        shown = []
        for path, layers in self._plates().items():
            view = open_view(path, placed=self.placed.value)
            for layer in layers:
                self.viewer.layers.remove(layer)
            for data, kwargs, kind in view.layers():
                self.viewer.add_layer(Layer.create(data, kwargs, kind))
            placed = isinstance(view, PlateView) and view.placed
            shown.append(f"{path}: fields {'placed' if placed else 'on a slider'}")
        self.status.value = "\n".join(shown) or "no plate open"
