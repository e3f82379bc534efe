"""npe2 reader: HCS plates and single wells, as lazy per-channel mosaics."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from napari_wellzarr.storage.kinds import classify
from napari_wellzarr.storage.locations import is_url

if TYPE_CHECKING:
    from collections.abc import Callable

    LayerData = list[tuple[Any, dict[str, Any], str]]

__all__ = ["get_reader", "read_export", "read_plate"]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], LayerData] | None:
    """The reader of ``path``: :func:`read_plate` or :func:`read_export`, or ``None``.

    :func:`read_plate` takes an OME-Zarr plate or well folder, :func:`read_export` a
    raw Harmony, CellVoyager or MetaXpress export (exported with an ``.HTD``, or native).
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if isinstance(path, str) and is_url(path):
        return read_plate if classify(path) else None  # unsupported schemes: None at once
    if not isinstance(path, str | os.PathLike) or not os.path.isdir(path):
        return None
    if classify(path):
        return read_plate
    if not _export_names(os.fspath(path)):
        return None  # cheap: names only, nothing imported
    from napari_wellzarr.plugin.rawview import detect_export

    return read_export if detect_export(path) is not None else None


def read_plate(path: str | os.PathLike[str] | list[str]) -> LayerData:
    """Open a plate (or a single well) as napari layer data; reads metadata only.

    Returns one image layer per channel (field, [t,] z, y, x mosaics of every well at
    its plate position), one labels layer per OME label image and a "plate map"
    points layer with the well outlines and names (and each well's condition, from
    the plate's condition tables).  A plate of several acquisitions gets these layers
    per acquisition (``"round1: EdU"``); ROI tables are drawn as (hidden) shapes
    layers, and every table is listed in the plate map's metadata.  A plate whose writer was
    interrupted shows its complete wells, listed or not yet (a plate with none: the
    plate map alone), with an ``UnfinishedPlateWarning``; a damaged well shows blank
    with a ``DamagedWellWarning``.  Wells whose fields have stage positions show them
    placed where they were imaged (the "Plate fields" widget switches to a slider).
    """
    from pathlib import Path

    from napari_wellzarr.plugin.annotations import plate_annotations, roi_layers
    from napari_wellzarr.plugin.view import PlateView, open_view

    target = path[0] if isinstance(path, list) else path
    view = open_view(os.fspath(target))
    if isinstance(view, PlateView):
        from napari_wellzarr.plugin.loading import load_first_screen, running_viewer
        from napari_wellzarr.plugin.wellstatus import attach

        load_first_screen(view)
        viewer = running_viewer()
        if viewer is not None:
            attach(viewer)
    if not isinstance(view, PlateView) or view.store is None or not isinstance(view.path, Path):
        return view.layers()
    tables, conditions = plate_annotations(view.path, view.store.zarr_format)
    rois, image_tables = roi_layers(view, view.store)
    listed = [t.to_json() for t in [*tables, *image_tables]]
    return view.layers(conditions=conditions, extra=rois, tables=listed)


_INDEX_NAMES = frozenset({"index.idx.xml", "index.xml", "measurementdata.mlf"})
_MAX_SUBFOLDERS = 64
#: Entries listed at most by the probe (a native MetaXpress plate: <plate>/<date>/<id>/).
_MAX_ENTRIES = 4096
_NATIVE_DEPTH = 3
#: A native MetaXpress image name: ``<plate>_<well>[_s<site>][_w<wave>]<GUID>.tif``.
_NATIVE = re.compile(
    r".*_[A-Za-z]{1,2}\d{1,3}(?:_s\d{1,4})?(?:_w\d{1,2})?(?:_thumb)?"
    r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\.tiff?",
    re.IGNORECASE,
)


def _export_names(path: str) -> bool:
    """Whether ``path`` holds an export, by names only (bounded: nothing imported or read).

    An index file (Harmony, CellVoyager, MetaXpress ``.HTD``) in ``path`` or a
    sub-folder, or a native MetaXpress image (GUID-named TIFF) up to three folders down.
    """
    try:
        with os.scandir(path) as entries:
            found = [e for e in entries if _is_index(e.name) or e.is_dir()]
    except OSError:
        return False
    if any(_is_index(e.name) for e in found):
        return True
    for entry in found[:_MAX_SUBFOLDERS]:  # a huge folder is not an export's run folder
        try:
            with os.scandir(entry.path) as inner:
                if any(_is_index(e.name) for e in inner):
                    return True
        except OSError:
            continue
    return _native_names(path)


def _native_names(path: str) -> bool:
    """A GUID-named TIFF within :data:`_NATIVE_DEPTH` folders, listing few entries."""
    todo, seen = [(path, 0)], 0
    while todo:
        folder, depth = todo.pop(0)  # breadth first: the plate's own folders first
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    seen += 1
                    if seen > _MAX_ENTRIES:
                        return False
                    if entry.name.startswith("."):
                        continue
                    if _NATIVE.fullmatch(entry.name):
                        return True
                    if depth < _NATIVE_DEPTH and entry.is_dir(follow_symlinks=False):
                        todo.append((entry.path, depth + 1))
        except OSError:
            continue
    return False


def read_export(path: str | os.PathLike[str] | list[str]) -> LayerData:
    """Open a raw instrument export (Harmony, CellVoyager, MetaXpress) lazily, unconverted.

    The layers are those of a converted plate (one mosaic per channel, the plate map);
    planes are read from the export's own TIFFs as they are shown.
    """
    from napari_wellzarr.plugin.rawview import open_export_view

    target = path[0] if isinstance(path, list) else path
    return open_export_view(os.fspath(target)).layers()


def _is_index(name: str) -> bool:
    """Whether a file name is an export's index (Harmony, CellVoyager, MetaXpress ``.HTD``)."""
    lower = name.lower()
    return lower in _INDEX_NAMES or lower.endswith(".htd")
