"""Each well's fields placed where they were imaged: one canvas per well, later fields on top."""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from napari_wellzarr.plugin.mosaic import PlaneSource
    from napari_wellzarr.storage.axes import PlaneKey
    from napari_wellzarr.storage.reading import WellInfo

__all__ = ["FieldLayout", "PlacedSource"]

_Plane = np.ndarray[Any, Any]
Positions = dict[int, tuple[float, float]]


@dataclass(frozen=True)
class FieldLayout:
    """The well canvas every well is drawn on, from the reference well's field positions.

    ``origin_um`` is the canvas's top-left corner in the well's coordinates, ``pixel_um``
    the pixel size ``(y, x)`` and ``canvas`` the canvas's size in full-resolution pixels.
    """

    origin_um: tuple[float, float]
    pixel_um: tuple[float, float]
    plane: tuple[int, int]
    canvas: tuple[int, int]

    @classmethod
    def from_reference(cls, info: WellInfo, positions: Positions) -> FieldLayout | None:
        """The layout of ``info``'s well, or ``None`` when its fields cannot be placed."""
        py, px = info.scale[-2], info.scale[-1]
        if info.unit is None or not positions or not (py > 0 and px > 0):
            return None
        h, w = info.shape[-2], info.shape[-1]
        y0 = min(p[0] for p in positions.values())
        x0 = min(p[1] for p in positions.values())
        height = max(round((p[0] - y0) / py) for p in positions.values()) + h
        width = max(round((p[1] - x0) / px) for p in positions.values()) + w
        return cls((y0, x0), (py, px), (h, w), (height, width))

    def offsets(self, positions: Positions, n_fields: int) -> list[tuple[int, int]]:
        """Each field's top-left pixel on the canvas; fields without a position in a row."""
        out = []
        for f in range(n_fields):
            pos = positions.get(f)
            if pos is None:
                out.append((0, f * self.plane[1]))
            else:
                out.append(
                    (
                        round((pos[0] - self.origin_um[0]) / self.pixel_um[0]),
                        round((pos[1] - self.origin_um[1]) / self.pixel_um[1]),
                    )
                )
        return out

    def level_shape(self, stored: tuple[int, int]) -> tuple[int, int]:
        """The canvas at a stored level whose planes are ``stored`` (y, x)."""
        fy, fx = self.plane[0] / stored[0], self.plane[1] / stored[1]
        return math.ceil(self.canvas[0] / fy), math.ceil(self.canvas[1] / fx)


class PlacedSource:
    """A plane source whose wells have one field: the canvas of their fields, placed.

    ``positions(well)`` gives a well's field positions (its own metadata); fields are
    pasted in field order, so where fields overlap the later one is on top.
    """

    def __init__(
        self,
        base: PlaneSource,
        layout: FieldLayout,
        positions: Callable[[str], Mapping[int, tuple[float, float]]],
    ) -> None:
        self.base = base
        self.layout = layout
        self._positions = positions
        self._offsets: dict[str, list[tuple[int, int]]] = {}
        self._lock = threading.Lock()

    def well_info(self, well: str) -> WellInfo:
        """The well as one field on the canvas (shape and levels), else as the base has it."""
        return self.placed_info(self.base.well_info(well))

    def placed_info(self, info: WellInfo) -> WellInfo:
        """``info`` with one field of the canvas's size at each level."""
        levels = tuple(
            (1, *shape[1:-2], *self.layout.level_shape((shape[-2], shape[-1])))
            for shape in info.level_shapes
        )
        return dataclasses.replace(info, shape=levels[0], level_shapes=levels)

    def _well_offsets(self, well: str, n_fields: int) -> list[tuple[int, int]]:
        with self._lock:
            cached = self._offsets.get(well)
        if cached is None:
            cached = self.layout.offsets(dict(self._positions(well)), n_fields)
            with self._lock:
                self._offsets[well] = cached
        return cached

    def _paste(
        self, well: str, level: int, read: Callable[[int], _Plane], out_shape: tuple[int, ...]
    ) -> _Plane:
        info = self.base.well_info(well)
        stored = info.level_shapes[min(level, len(info.level_shapes) - 1)]
        factor = (info.level_shapes[0][-2] / stored[-2], info.level_shapes[0][-1] / stored[-1])
        canvas_shape = self.layout.level_shape((stored[-2], stored[-1]))
        canvas: _Plane | None = None
        for f, (oy, ox) in enumerate(self._well_offsets(well, info.shape[0])):
            plane = read(f)
            if canvas is None:
                canvas = np.zeros((*out_shape, *canvas_shape), dtype=plane.dtype)
            y, x = round(oy / factor[0]), round(ox / factor[1])
            h = max(0, min(plane.shape[-2], canvas_shape[0] - y))
            w = max(0, min(plane.shape[-1], canvas_shape[1] - x))
            ys, xs = max(0, -y), max(0, -x)
            if h > ys and w > xs:
                canvas[..., y + ys : y + h, x + xs : x + w] = plane[..., ys:h, xs:w]
        assert canvas is not None  # a well has at least one field
        return canvas

    def read_plane(self, well: str, key: PlaneKey, level: int) -> _Plane:
        """The canvas of ``key``'s channel, z and t: every field pasted at its place."""
        return self._paste(
            well, level, lambda f: self.base.read_plane(well, key._replace(field=f), level), ()
        )

    def read_planes(self, well: str, keys: Sequence[PlaneKey], level: int) -> list[_Plane]:
        """:meth:`read_plane` for each of ``keys``."""
        return [self.read_plane(well, key, level) for key in keys]

    def read_labels(self, well: str, name: str, level: int) -> _Plane:
        """Label image ``name`` as ``(1, [t,] z, Y, X)``: the fields' labels placed."""
        stack = self.base.read_labels(well, name, level)
        return self._paste(well, level, lambda f: stack[f], (1, *stack.shape[1:-2]))
