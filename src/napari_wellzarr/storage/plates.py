"""Finding things in a plate: its root metadata, a well by name, a foreign plate's layout."""

from __future__ import annotations

import functools
from collections import Counter
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from napari_wellzarr.errors import PlateNotFoundError
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage._spec import WELLZARR_KEY
from napari_wellzarr.storage.config import FieldArrangement, NgffVersion, StorageConfig
from napari_wellzarr.storage.geometry import PlateGeometry
from napari_wellzarr.storage.metadata import (
    PlateMeta,
    PlateWell,
    find_block,
    ome_attrs,
    parse_plate,
)
from napari_wellzarr.storage.reading import open_well

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from napari_wellzarr.storage.locations import RemoteLocation

__all__ = ["foreign_config", "lookup", "parse_root", "scan_unlisted"]


@functools.lru_cache(maxsize=8192)  # every tile read names its well: 1536 wells, 48 columns
def lookup(names: tuple[str, ...], wanted: str, position: int, named: Any) -> int | None:
    """Index of ``wanted`` among ``names``, blind to case and zero padding.

    When the names are not of the ``named`` kind (letters for rows, digits for columns),
    the well's ``position`` is used instead.
    """
    if names and all(named(n) for n in names):
        key = wanted.upper().lstrip("0")
        for i, name in enumerate(names):
            if name.upper().lstrip("0") == key:
                return i
        return None
    return position if position < len(names) else None


def parse_root(
    root: Path | RemoteLocation, attrs: dict[str, Any], config: StorageConfig | None
) -> tuple[PlateMeta, str | None]:
    """The plate metadata of ``root``; a plate created here with no wells yet has none."""
    if find_block(attrs, "plate")[0] is None:
        marker = attrs.get(WELLZARR_KEY)
        if config is not None and isinstance(marker, dict):
            name = marker.get("name")
            geometry = config.plate
            acquisitions = marker.get("acquisitions")
            empty = PlateMeta(
                geometry.row_names,
                geometry.column_names,
                name=name if isinstance(name, str) else None,
                acquisitions=tuple(a for a in acquisitions if isinstance(a, dict))
                if isinstance(acquisitions, list)
                else (),
            )
            return empty, config.ngff_version.value
        raise PlateNotFoundError(f"{root} is a zarr group but not an HCS plate")
    return parse_plate(attrs, where=str(root))


def foreign_config(
    root: Path | RemoteLocation, plate: PlateMeta, zarr_format: int
) -> tuple[StorageConfig, tuple[str, ...] | None]:
    """How to add wells to a plate written by other software: like its first well.

    Readers such as ome-zarr-py take the first well's field and level paths for every
    well, so new wells copy its arrangement, its number of levels and their names.
    """
    stacked, levels, paths = False, 1, None
    if plate.wells:
        first = plate.wells[0]
        opened = open_well(root, first.path, first.path, zarr_format)
        stacked, levels = opened.info.stacked, opened.info.n_levels
        paths = tuple(d.path for d in opened.images[0].meta.multiscale.datasets)
    config = StorageConfig(
        ngff_version=NgffVersion.V05 if zarr_format == 3 else NgffVersion.V04,
        plate=PlateGeometry(len(plate.rows), len(plate.columns)),
        fields=FieldArrangement.STACKED if stacked else FieldArrangement.PER_FIELD,
        pyramid_levels=min(levels, 12),
    )
    return config, paths


def scan_unlisted(
    root: Path | RemoteLocation, plate: PlateMeta, wells: Sequence[PlateWell]
) -> list[tuple[int, int, str]]:
    """``(row, column, path)`` of each complete well folder of ``plate`` not in ``wells``.

    In plate order.  Complete means holding a zarr group document: a well is renamed
    into place only once every byte of it is written, so a well folder is whole or absent.
    """
    rows = {name: r for r, name in enumerate(plate.rows)}
    columns = {name: c for c, name in enumerate(plate.columns)}
    # (the plate parser checks that a well's path names its row and column)
    positions = set(map(attrgetter("row_index", "column_index"), wells))
    per_row = Counter(map(itemgetter(0), positions))
    listed: set[str] | None = None
    found = []
    for row in fsio.subfolders(root):
        r = rows.get(row)
        if r is None or per_row[r] >= len(columns):
            continue  # not a row, or a row whose every position is listed
        listed = listed if listed is not None else {w.path for w in wells}
        for column in fsio.subfolders(root / row):
            c, path = columns.get(column), f"{row}/{column}"
            if c is None or path in listed:
                continue
            if fsio.has_node_doc(root / path):  # (S3: listed, never from a cache)
                found.append((r, c, path))
    return sorted(found)


def write_plate_doc(
    dest: Path | RemoteLocation,
    plate: PlateMeta,
    version: str,
    zarr_format: int,
    config: StorageConfig | None,
) -> None:
    """Write the plate group document of ``plate`` (ours: with ``config``; else merged).

    ``config=None``: someone else's plate, whose plate block alone is replaced.
    """
    block = ome_attrs(version, {"plate": plate.to_block()})
    if config is None:
        attrs = fsio.read_attrs(dest, zarr_format)
        if "ome" in block:
            attrs["ome"] = {**attrs.get("ome", {}), **block["ome"]}
        else:
            attrs.update(block)
        fsio.write_group(dest, attrs, zarr_format)
        return
    from napari_wellzarr import __version__

    attrs = {WELLZARR_KEY: {"version": __version__, "name": plate.name, "config": config.to_dict()}}
    if plate.acquisitions and not plate.wells:  # no plate block yet to hold them
        attrs[WELLZARR_KEY]["acquisitions"] = [dict(a) for a in plate.acquisitions]
    # The spec wants at least one well: until then the plate is a plain zarr group
    # that only napari-wellzarr knows how to open.
    if plate.wells:
        attrs.update(block)
    fsio.write_group(dest, attrs, zarr_format)
