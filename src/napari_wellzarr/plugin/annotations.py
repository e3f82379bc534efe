"""A plate's tables on the mosaic: ROI tables as shapes, condition tables in the plate map."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_wellzarr.errors import MetadataError, WellZarrError
from napari_wellzarr.storage.tables import (
    ROI_COLUMNS,
    TableInfo,
    list_tables,
    read_table,
    well_conditions,
    wells_with_tables,
)

if TYPE_CHECKING:
    from pathlib import Path

    from napari_wellzarr.plugin.view import PlateView
    from napari_wellzarr.storage.store import PlateStore

__all__ = ["ROI_KINDS", "TableWarning", "plate_annotations", "roi_layers"]

LayerTuple = tuple[Any, dict[str, Any], str]
#: Table types drawn as rectangles on the mosaic.
ROI_KINDS = ("roi_table", "masking_roi_table")
_ERRORS = (WellZarrError, OSError, ValueError)


class TableWarning(UserWarning):
    """A table that cannot be used (not what its type says): it is left out."""


def _warn(message: str) -> None:
    warnings.warn(message, TableWarning, stacklevel=5)


def plate_annotations(root: Path, zarr_format: int) -> tuple[list[TableInfo], dict[str, str]]:
    """The plate's own tables, and each well's condition from its condition tables."""
    try:
        tables = list_tables(root, zarr_format)
    except MetadataError as err:
        _warn(f"{root}: its tables cannot be listed: {err}")
        return [], {}
    conditions: dict[str, str] = {}
    for table in tables:
        if table.kind != "condition_table":
            continue
        try:
            found = well_conditions(table, zarr_format)
        except (MetadataError, OSError) as err:
            _warn(f"{root}: condition table {table.name!r} is left out: {err}")
            continue
        for well, text in found.items():
            conditions[well] = f"{conditions[well]}; {text}" if well in conditions else text
    return tables, conditions


def roi_layers(view: PlateView, store: PlateStore) -> tuple[list[LayerTuple], list[TableInfo]]:
    """One shapes layer per ROI table name and acquisition; every image table listed.

    ROI tables are in micrometres from the image's origin: each rectangle is drawn at
    its well's place in that acquisition's mosaic.
    """
    layers: list[LayerTuple] = []
    listed: list[TableInfo] = []
    holders = wells_with_tables(store.root)  # one listing: most plates have no table
    if not holders:
        return layers, listed
    for part in (view, *view.others):
        acquisition = part.acquisition[0] if part.acquisition else None
        sy, sx = part.info.scale[-2], part.info.scale[-1]
        boxes: dict[str, list[tuple[np.ndarray[Any, Any], str, str]]] = {}
        for well, (r, c) in part.wells.items():
            try:
                if store.well_path(well) not in holders:
                    continue
                info = store.well_info(well, acquisition)
            except _ERRORS:
                continue  # the well is reported (or blank) in the mosaic already
            y0, x0 = part.reader.geometry.origin(r, c)
            for image in info.image_paths[:1] if not info.stacked else info.image_paths:
                try:
                    tables = list_tables(store.root / info.path / image, store.zarr_format)
                except MetadataError as err:
                    _warn(f"well {well}: tables of image {image} cannot be listed: {err}")
                    continue
                listed += tables
                for table in tables:
                    if table.kind in ROI_KINDS:
                        rois = _rectangles(table, store.zarr_format, well, (y0, x0), (sy, sx))
                        boxes.setdefault(table.name, []).extend(rois)
        for name, rois in boxes.items():
            if rois:
                layers.append(_shapes(view, part, name, rois))
    return layers, listed


def _rectangles(
    table: TableInfo,
    zarr_format: int,
    well: str,
    origin: tuple[int, int],
    scale: tuple[float, float],
) -> list[tuple[np.ndarray[Any, Any], str, str]]:
    try:
        columns = read_table(table, zarr_format)
    except (MetadataError, OSError) as err:
        _warn(f"well {well}: table {table.name!r} is left out: {err}")
        return []
    missing = [c for c in ROI_COLUMNS if c not in columns]
    if missing:
        _warn(
            f"well {well}: table {table.name!r} claims to be a {table.kind} but has no "
            f"{missing} columns; it is left out"
        )
        return []
    (y0, x0), (sy, sx) = origin, scale
    out = []
    for i, roi in enumerate(columns["index"]):
        top = y0 + float(columns["y_micrometer"][i]) / sy
        left = x0 + float(columns["x_micrometer"][i]) / sx
        bottom = top + float(columns["len_y_micrometer"][i]) / sy
        right = left + float(columns["len_x_micrometer"][i]) / sx
        corners = np.array([[top, left], [top, right], [bottom, right], [bottom, left]])
        if np.isfinite(corners).all():
            out.append((corners, well, str(roi)))
    return out


def _shapes(
    view: PlateView, part: PlateView, name: str, rois: list[tuple[np.ndarray[Any, Any], str, str]]
) -> LayerTuple:
    common = part.common_kwargs()
    kwargs = {
        "name": f"{part.prefix}{name}",
        "shape_type": "rectangle",
        "edge_color": "yellow",
        "face_color": "transparent",
        "edge_width": max(1.0, 0.01 * max(part.reader.geometry.tile)),
        "features": {"well": [w for _, w, _ in rois], "roi": [r for _, _, r in rois]},
        "scale": common["scale"][-2:],
        "units": common["units"][-2:],
        "visible": False,
        "metadata": {"wellzarr": {"kind": "roi_table", "table": name, "source": str(view.path)}},
    }
    return ([corners for corners, _, _ in rois], kwargs, "shapes")
