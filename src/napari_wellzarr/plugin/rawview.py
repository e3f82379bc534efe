"""Raw instrument exports shown lazily from their own TIFFs, before any conversion."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from napari_wellzarr.errors import MetadataError, PlaneNotFoundError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from napari_wellzarr.convert.plan import ConversionPlan, SourcePlane
    from napari_wellzarr.convert.vendors import Vendor
    from napari_wellzarr.plugin.view import PlateView
    from napari_wellzarr.storage.axes import PlaneKey
    from napari_wellzarr.storage.reading import WellInfo

__all__ = ["PlanSource", "detect_export", "open_export_view", "plan_info"]

#: The plan's "well array" seen by the viewer: no pyramid, one stored level.
_UNIT: Final = "micrometer"


def detect_export(folder: str | Path) -> Vendor | None:
    """The vendor module whose metadata files are in ``folder`` (cheap), or ``None``."""
    from napari_wellzarr.convert.vendors import detect_vendor

    return detect_vendor(Path(folder))


class PlanSource:
    """A :class:`~napari_wellzarr.plugin.mosaic.PlaneSource` reading the plan's TIFFs.

    A plane no file provides reads as zeros (as a conversion would write it).
    """

    def __init__(self, plan: ConversionPlan) -> None:
        self.plan = plan
        self.info = plan_info(plan)
        self._planes: dict[tuple[str, PlaneKey], SourcePlane] = {
            (w.name, p.key): p for w in plan.wells for p in w.planes
        }

    def well_info(self, well: str) -> WellInfo:
        """Every well of a plan has the same shape."""
        return self.info

    def read_plane(self, well: str, key: PlaneKey, level: int) -> np.ndarray[Any, Any]:
        """One plane from its source file (level 0 only: exports have no pyramid)."""
        from napari_wellzarr.convert.tiffio import read_stack

        if level != 0:
            raise PlaneNotFoundError(f"{self.plan.source}: an export has one level, not {level}")
        plane = self._planes.get((well, key))
        if plane is None:
            return np.zeros(self.plan.plane_shape, dtype=self.plan.dtype)
        stack = read_stack(plane.path, self.plan.plane_shape, self.plan.dtype)
        return np.asarray(stack[plane.page or 0])

    def read_planes(
        self, well: str, keys: Sequence[PlaneKey], level: int
    ) -> list[np.ndarray[Any, Any]]:
        """:meth:`read_plane` for each of ``keys``."""
        return [self.read_plane(well, key, level) for key in keys]

    def read_labels(self, well: str, name: str, level: int) -> np.ndarray[Any, Any]:
        """Exports have no label images."""
        raise PlaneNotFoundError(f"{self.plan.source}: an export has no label image {name!r}")


def plan_info(plan: ConversionPlan) -> WellInfo:
    """The :class:`WellInfo` a converted well of ``plan`` would have (one level)."""
    from napari_wellzarr.storage.metadata import Channel, default_channels
    from napari_wellzarr.storage.reading import WellInfo

    meta = plan.instrument
    defaults = default_channels(len(plan.channel_names), plan.channel_names)
    channels = defaults
    if meta is not None and len(meta.channels) == len(defaults):
        channels = tuple(
            Channel(d.label, info.color or d.color)
            for d, info in zip(defaults, meta.channels, strict=True)
        )
    axes = ("field", "t", "c", "z", "y", "x") if plan.has_time else ("field", "c", "z", "y", "x")
    pixel = meta.pixel_size_um if meta is not None else None
    z = meta.z_step_um if meta is not None and meta.z_step_um else 1.0
    yx = pixel if pixel is not None else (1.0, 1.0)
    lead = {"field": 1.0, "t": 1.0, "c": 1.0, "z": z}
    scale = tuple(lead[a] for a in axes[:-2]) + yx
    shape = plan.well_shape
    return WellInfo(
        name=plan.wells[0].name,
        path=str(plan.source),
        axes=axes,
        shape=shape,
        dtype=np.dtype(plan.dtype),
        stacked=False,
        image_paths=(),
        channels=channels,
        scale=scale,
        unit=_UNIT if pixel is not None else None,
        level_shapes=(shape,),
    )


def open_export_view(folder: str | Path) -> PlateView:
    """Scan a raw export and open it for display like a plate (reads metadata only).

    Raises
    ------
    MetadataError
        ``folder`` is not a recognised export, or its metadata cannot be read.
    """
    from napari_wellzarr.plugin.view import export_view, well_positions
    from napari_wellzarr.storage.geometry import row_letters

    vendor = detect_export(folder)
    if vendor is None:
        raise MetadataError(f"{folder} is not a Harmony, CellVoyager or MetaXpress export")
    plan: ConversionPlan = vendor.scan(Path(folder))
    fmt = plan.instrument.plate_format if plan.instrument is not None else None
    geometry = plan.smallest_plate()
    n_rows, n_cols = fmt if fmt is not None else (geometry.rows, geometry.columns)
    rows = tuple(row_letters(i) for i in range(n_rows))
    columns = tuple(f"{j + 1:02d}" for j in range(n_cols))
    layout = well_positions(rows, columns, [w.name for w in plan.wells])
    source = PlanSource(plan)
    if not isinstance(plan.source, Path):  # (never: scanned from a local folder above)
        raise MetadataError(f"{plan.source}: raw exports are viewed from local folders only")
    return export_view(plan.source, layout, source.info, source)
