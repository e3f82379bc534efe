"""Multiscale label mosaics (plates over 4096 px): level-0 edits shown at every level, saved."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any
from unittest import mock

import numpy as np
import pytest

from napari_wellzarr.storage import config as config_module
from napari_wellzarr.storage.config import NgffVersion, StorageConfig
from napari_wellzarr.storage.store import PlateStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.gui
PLUGIN = "napari-wellzarr"
TILE = (384, 416)  # 12 columns of 416 px: a mosaic over 4096 px, so several display levels
WELLS = ("B03", "C05")


def cells(well: int) -> np.ndarray:
    """A ``(field, z, y, x)`` label image of 16 x 16 blocks numbered per well."""
    y, x = np.indices(TILE)
    return ((y // 16) * 32 + x // 16 + 1 + 1000 * well).astype(np.uint16)[None, None]


@pytest.fixture
def plate(tmp_path: Path) -> Path:
    root = tmp_path / "big.zarr"
    # a 4x whole-plate level: stored on plates too large for an overview from full resolution
    with (
        mock.patch.object(config_module, "OVERVIEW_FROM_FULL_RESOLUTION_BYTES", 0),
        PlateStore.create(root, StorageConfig(ngff_version=NgffVersion("0.5"))) as store,
    ):
        for i, well in enumerate(WELLS):
            pixels = np.full((1, 1, 1, *TILE), 100 + i, np.uint16)
            store.write_well(well, pixels, channels=["DAPI"], labels={"cells": cells(i)})
    return root


def files_of(root: Path, well: str) -> dict[str, str]:
    folder = root / well[0] / well[1:]
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_multiscale_labels_layer_is_edited_at_level_0_shown_at_every_level_and_saved(
    make_napari_viewer: Callable[..., Any], plate: Path
) -> None:
    untouched = files_of(plate, "C05")
    viewer = make_napari_viewer()
    viewer.open(str(plate), plugin=PLUGIN)
    layer = viewer.layers["cells"]
    assert layer.multiscale
    levels = len(layer.data)
    assert levels >= 2
    info = layer.metadata["wellzarr"]
    r, c = info["wells"]["B03"]
    y0, x0 = r * info["pitch"][0], c * info["pitch"][1]
    level0 = layer.data[0]
    level0[0, 0, y0 + 32 : y0 + 96, x0 + 64 : x0 + 160] = 7  # a filled rectangle
    level0[
        (np.zeros(2, int), np.zeros(2, int), y0 + np.array([200, 201]), x0 + np.array([8, 9]))
    ] = 9
    expected = cells(0)[0, 0].copy()
    expected[32:96, 64:160] = 7
    expected[200, 8] = expected[201, 9] = 9
    layer.refresh()
    for k in range(levels):
        f = 2**k
        h, w = -(-TILE[0] // f), -(-TILE[1] // f)
        shown = np.asarray(layer.data[k][0, 0, y0 // f : y0 // f + h, x0 // f : x0 // f + w])
        np.testing.assert_array_equal(shown, expected[::f, ::f], err_msg=f"level {k}")
    assert level0.edited_wells() == ["B03"]

    viewer.layers.selection = {layer}
    assert viewer.layers.save(str(plate), selected=True, plugin=PLUGIN) == [str(plate)]
    store = PlateStore.open(plate)
    stored = len(store.well_info("B03").level_shapes)
    assert stored >= 2
    for k in range(stored):
        on_disk = store.read_labels("B03", "cells", level=k)[0, 0]
        f = TILE[0] // store.well_info("B03").level_shapes[k][-2]
        np.testing.assert_array_equal(on_disk, expected[::f, ::f], err_msg=f"stored level {k}")
    assert files_of(plate, "C05") == untouched  # only the edited well was written
    np.testing.assert_array_equal(store.read_plane("B03"), np.full(TILE, 100, np.uint16))
