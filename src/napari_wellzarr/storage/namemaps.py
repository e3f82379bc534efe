"""Original file names of a well's planes: OpenHCS's and polystore's file-name maps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from napari_wellzarr.errors import CorruptDataError, MetadataError
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage._spec import (
    OPENHCS_FILENAME_MAP,
    POLYSTORE_DIMENSIONS,
    POLYSTORE_FILENAME_MAP,
)
from napari_wellzarr.storage.axes import PlaneKey

if TYPE_CHECKING:
    from pathlib import Path

    from napari_wellzarr.storage.axes import ImageAxes
    from napari_wellzarr.storage.locations import RemoteLocation


PLANE_MAP: Final = OPENHCS_FILENAME_MAP


# polystore (OpenHCS's maintained backend) keeps a map per image's level-0 array.
POLY_MAP: Final = POLYSTORE_FILENAME_MAP


POLY_DIMS: Final = POLYSTORE_DIMENSIONS


POLY_AXES: Final = {
    "field": "field",
    "site": "field",
    "c": "c",
    "channel": "c",
    "z": "z",
    "t": "t",
}


def read_plane_names(
    well_dir: Path | RemoteLocation,
    images: list[ImageAxes],
    well_attrs: dict[str, Any],
    first_attrs: dict[str, Any],
    zarr_format: int,
    well: str,
) -> dict[str, PlaneKey]:
    """The well's original file names: OpenHCS's map, else polystore's per-image maps.

    OpenHCS's map is on the well group (per-field) or the array (stacked).  polystore's
    maps are looked for only when there is none, and only if the first image's level-0
    array (already open) has one, so other plates read no extra metadata.
    """
    stacked = images[0].stacked
    attrs = first_attrs if stacked else well_attrs
    if attrs.get(PLANE_MAP) is not None:
        return plane_names(attrs[PLANE_MAP], well)
    if POLY_MAP not in first_attrs:
        return {}
    if stacked:
        return polystore_map(first_attrs, None, well)
    return polystore_names(well_dir, images, first_attrs, zarr_format, well)


def polystore_names(
    well_dir: Path | RemoteLocation,
    images: list[ImageAxes],
    first_attrs: dict[str, Any],
    zarr_format: int,
    well: str,
) -> dict[str, PlaneKey]:
    """The maps polystore keeps in a per-field well: one per image, whose index is the field."""
    out: dict[str, PlaneKey] = {}
    for field_index, image in enumerate(images):
        if field_index == 0:
            image_attrs = first_attrs
        else:
            level0 = f"{image.path}/{image.meta.multiscale.datasets[0].path}"
            try:
                image_attrs = fsio.read_attrs(well_dir / level0, zarr_format)
            except FileNotFoundError as err:
                raise CorruptDataError(f"well {well}: array {level0} is missing") from err
        if POLY_MAP not in image_attrs:
            continue
        for file_name, key in polystore_map(image_attrs, field_index, well).items():
            if out.setdefault(file_name, key) != key:
                raise MetadataError(
                    f"well {well}: {POLY_MAP} maps {file_name!r} to {tuple(out[file_name])} "
                    f"and to {tuple(key)}"
                )
    return out


def plane_names(raw: object, well: str) -> dict[str, PlaneKey]:
    """OpenHCS's ``{file: [field, c, z(, t)]}`` map, checked."""
    if not isinstance(raw, dict):
        raise MetadataError(f"well {well}: {PLANE_MAP} is not an object")
    out = {}
    for file_name, coord in raw.items():
        if not is_coord(coord) or len(coord) not in (3, 4):
            raise MetadataError(
                f"well {well}: {PLANE_MAP}[{file_name!r}] = {coord!r} is not [field, c, z]"
            )
        out[file_name] = PlaneKey(*coord)
    return out


def polystore_map(attrs: dict[str, Any], field: int | None, well: str) -> dict[str, PlaneKey]:
    """One image's polystore map ``{file: [coord...]}``, axes per ``polystore_dimensions``.

    ``field`` is the image's field (per-field wells); ``None`` for a stacked well.
    """
    dims, raw = attrs.get(POLY_DIMS), attrs[POLY_MAP]
    if not isinstance(dims, dict) or not isinstance(raw, dict):
        raise MetadataError(f"well {well}: {POLY_MAP} / {POLY_DIMS} are not JSON objects")
    axes = [POLY_AXES.get(str(n).lower()) for n, d in dims.items() if not is_image_axis(d)]
    image = [POLY_AXES.get(str(n).lower()) for n, d in dims.items() if is_image_axis(d)]
    if None in axes or image != ([] if field is None else ["field"]):
        raise MetadataError(f"well {well}: polystore dimensions {list(dims)} are not supported")
    out = {}
    for file_name, coord in raw.items():
        if not is_coord(coord) or len(coord) != len(axes):
            raise MetadataError(
                f"well {well}: {POLY_MAP}[{file_name!r}] = {coord!r} does not match {axes}"
            )
        values: dict[str | None, int | None] = {
            "field": field,
            **dict(zip(axes, coord, strict=True)),
        }
        out[file_name] = PlaneKey(*(values.get(a) or 0 for a in ("field", "c", "z", "t")))
    return out


def is_coord(coord: object) -> bool:
    """Whether ``coord`` is a JSON list of non-negative integers."""
    return isinstance(coord, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in coord
    )


def is_image_axis(spec: object) -> bool:
    """Whether a polystore dimension is the per-image (field) one."""
    return isinstance(spec, dict) and spec.get("role") == "hcs_image"
