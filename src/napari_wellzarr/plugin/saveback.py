"""Saving labels layers into the plate they came from (edited or new, per well)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_wellzarr.errors import PlateExistsError, WellDataError
from napari_wellzarr.plugin.layer_wells import label_name
from napari_wellzarr.plugin.mosaic import LazyMosaic
from napari_wellzarr.plugin.view import META_KEY, PlateView, open_view
from napari_wellzarr.storage import fsio, labelsave

if TYPE_CHECKING:
    from collections.abc import Sequence

    from napari_wellzarr.storage.store import PlateStore

__all__ = ["LabelSave", "is_labels_only", "save_into_plate"]

LayerTuple = tuple[Any, dict[str, Any], str]


@dataclass(frozen=True)
class LabelSave:
    """One label image to write into one well."""

    well: str
    name: str
    stack: np.ndarray[Any, Any]
    acquisition: int | None


def _wz(meta: dict[str, Any]) -> dict[str, Any]:
    block = (meta.get("metadata") or {}).get(META_KEY)
    return block if isinstance(block, dict) else {}


def is_labels_only(layers: Sequence[LayerTuple]) -> bool:
    """Whether ``layers`` are labels layers (and the reader's plate map) only."""
    kinds = [t for _, m, t in layers if _wz(m).get("kind") not in ("plate_map", "roi_table")]
    return bool(kinds) and all(t == "labels" for t in kinds)


def save_into_plate(path: str | Path, layers: Sequence[LayerTuple]) -> list[str]:
    """Write labels layers into the existing plate at ``path``; return ``[path]``.

    A labels layer read from this plate writes the wells whose tiles were edited, and
    only those; a labels layer of the mosaic's shape made in napari becomes an OME label
    image (named after the layer) of every well.  Everything is checked before the
    first well is written.

    Raises
    ------
    PlateExistsError
        When ``path`` is not a plate this reader opens, or a layer is not a labels
        layer of it (the writer never writes other layers into an existing plate).
    """
    from napari_wellzarr.storage.store import PlateStore

    root = Path(path)
    view = open_view(root)
    if not isinstance(view, PlateView) or view.kind != "plate":
        raise PlateExistsError(f"{root} exists and is not a plate labels can be saved into")
    saves: list[LabelSave] = []
    store = PlateStore.open(root, mode="r+")
    try:
        for data, meta, layer_type in layers:
            if _wz(meta).get("kind") in ("plate_map", "roi_table"):
                continue
            if layer_type != "labels":
                raise PlateExistsError(
                    f"{root} already exists: only labels layers can be saved into it, "
                    f"not the {layer_type} layer {meta.get('name')!r}"
                )
            saves += _plan(root, view, store, data[0] if meta.get("multiscale") else data, meta)
        if store.read_only or not isinstance(store.root, Path):
            raise PlateExistsError(f"{root} cannot be written (read-only or remote)")
        with fsio.plate_lock(store.root):  # an earlier save killed midway: finish it first
            labelsave.recover_saves(store.root, [save.name for save in saves])
        for save in saves:
            path = store.well_info(save.well, save.acquisition).path
            with fsio.plate_lock(store.root):
                labelsave.save_labels(
                    store.root, path, save.well, store.zarr_format, save.name, save.stack,
                    acquisition=save.acquisition,
                )  # fmt: skip
    finally:
        store.close()
    return [str(root)]


def _same(a: object, b: Path) -> bool:
    try:
        return isinstance(a, str) and Path(a).resolve() == b.resolve()
    except OSError:
        return False


def _plan(
    root: Path, view: PlateView, store: PlateStore, data: Any, meta: dict[str, Any]
) -> list[LabelSave]:
    wz, name = _wz(meta), str(meta.get("name"))
    if wz.get("source") is not None and not _same(wz.get("source"), root):
        raise PlateExistsError(
            f"{root} already exists: labels layer {name!r} comes from {wz['source']}"
        )
    if wz.get("kind") == "labels" and isinstance(data, LazyMosaic):
        acquired = wz.get("acquisition")
        acquisition = int(acquired[0]) if acquired else None
        return [
            LabelSave(well, str(wz["label"]), _edited(store, data, well, wz, acquisition),
                      acquisition)
            for well in data.edited_wells()
        ]  # fmt: skip
    part = _matching(view, tuple(data.shape))
    if part is None:
        shapes = [_shape(v) for v in (view, *view.others)]
        raise WellDataError(
            f"labels layer {name!r} has shape {tuple(data.shape)}; saved into {root} it must "
            f"have the plate mosaic's shape ({' or '.join(map(str, shapes))})"
        )
    acquisition = part.acquisition[0] if part.acquisition else None
    h, w = part.reader.geometry.tile
    out = []
    for well, (r, c) in part.wells.items():
        y0, x0 = part.reader.geometry.origin(r, c)
        block = np.asarray(data[..., y0 : y0 + h, x0 : x0 + w])
        out.append(LabelSave(well, label_name(name), block, acquisition))
    return out


def _shape(view: PlateView) -> tuple[int, ...]:
    return (*view.lead_shape, *view.reader.geometry.shape(0))


def _matching(view: PlateView, shape: tuple[int, ...]) -> PlateView | None:
    return next((v for v in (view, *view.others) if _shape(v) == shape), None)


def _edited(
    store: PlateStore, data: LazyMosaic, well: str, wz: dict[str, Any], acquisition: int | None
) -> np.ndarray[Any, Any]:
    """The well's labels at level 0 with its edited tiles put in."""
    name = str(wz["label"])
    info = store.well_info(well, acquisition)
    shape = tuple(s for a, s in zip(info.axes, info.shape, strict=True) if a != "c")
    if name in info.labels:
        stack = np.array(store.read_labels(well, name, acquisition=acquisition), data.dtype)
    else:
        stack = np.zeros(shape, data.dtype)
    for key, tile in data.edited_tiles(well).items():
        index = (key.field, key.t, key.z) if data.has_time else (key.field, key.z)
        if stack[index].shape != tile.shape:
            raise WellDataError(
                f"well {well}: label {name!r} planes are {stack[index].shape}, the edited "
                f"tile is {tile.shape}"
            )
        stack[index] = tile
    return stack
