"""Save Layers of a plate of several acquisitions writes the same acquisitions, exact pixels."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.errors import WellDataError
from napari_wellzarr.plugin._reader import read_plate
from napari_wellzarr.storage.config import FieldArrangement, NgffVersion, StorageConfig
from napari_wellzarr.storage.store import PlateStore
from tests.plugin.ngio_plates import WELLS, multiplexed_plate, nuclei, round1, round2

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.gui
PLUGIN = "napari-wellzarr"
NAMES = [f"{r}{c}" for r, c in WELLS]


@pytest.fixture(scope="module", params=["0.4", "0.5"])
def ngio_plate(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # B04 (well 1) has no labels: the saved plate must not invent any.
    root = tmp_path_factory.mktemp(f"ngio{request.param}") / "plate.zarr"
    return multiplexed_plate(root, request.param, labelled=(0, 2))


def well_documents(root: Path, well: str) -> dict[str, Any]:
    """The OME ``well`` block of ``well`` (0.4 or 0.5)."""
    path = root / well[0] / well[1:]
    if (path / "zarr.json").exists():
        return json.loads((path / "zarr.json").read_text())["attributes"]["ome"]["well"]
    return json.loads((path / ".zattrs").read_text())["well"]


def save_all(make_napari_viewer: Callable[..., Any], source: Path, dest: Path) -> list[str]:
    """Open ``source`` in a real viewer and save every layer to ``dest`` (Save All Layers)."""
    viewer = make_napari_viewer()
    viewer.open(str(source), plugin=PLUGIN)
    names = [layer.name for layer in viewer.layers]
    viewer.layers.save(str(dest), plugin=PLUGIN)
    return names


def test_save_layers_of_a_multiplexed_ngio_plate_gives_the_same_plate(
    make_napari_viewer: Callable[..., Any],
    ngio_plate: Path,
    tmp_path: Path,
    validate_plate: Callable[[Path], None],
) -> None:
    dest = tmp_path / "saved.zarr"
    names = save_all(make_napari_viewer, ngio_plate, dest)
    assert {"round1: EdU", "round1: DAPI", "round1: nuclei", "round2: GFP"} <= set(names)
    validate_plate(dest)
    source, saved = PlateStore.open(ngio_plate), PlateStore.open(dest)
    assert saved.ngff_version == source.ngff_version
    assert saved.plate.acquisitions == source.plate.acquisitions
    assert saved.acquisitions() == [(0, "round1"), (1, "round2")]
    assert sorted(saved.wells()) == sorted(NAMES)
    for i, well in enumerate(NAMES):
        images = well_documents(dest, well)["images"]
        assert sorted(image["acquisition"] for image in images) == [0, 1]
        for ident in (0, 1):
            old, new = source.well_info(well, ident), saved.well_info(well, ident)
            assert new.shape == old.shape
            assert new.dtype == old.dtype
            assert [c.label for c in new.channels] == [c.label for c in old.channels]
            assert new.labels == old.labels
            assert new.scale[-2:] == pytest.approx(old.scale[-2:])
        for c in range(2):
            np.testing.assert_array_equal(saved.read_plane(well, c=c, acquisition=0), round1(i)[c])
        np.testing.assert_array_equal(saved.read_plane(well, acquisition=1), round2(i)[0])
        if i != 1:
            np.testing.assert_array_equal(
                saved.read_labels(well, "nuclei", acquisition=0)[0, 0], nuclei(i)
            )
    assert saved.well_info("B04", 0).labels == ()
    # Reopened, it shows the same layers as the source.
    again = [m["name"] for _, m, t in read_plate(dest) if t in ("image", "labels")]
    assert again == [m["name"] for _, m, t in read_plate(ngio_plate) if t in ("image", "labels")]


def test_a_two_acquisition_plate_of_ours_round_trips_per_field(
    make_napari_viewer: Callable[..., Any], tmp_path: Path, validate_plate: Callable[[Path], None]
) -> None:
    config = StorageConfig(ngff_version=NgffVersion("0.5"), fields=FieldArrangement.PER_FIELD)
    rng = np.random.default_rng(12)
    first = rng.integers(1, 60000, (2, 2, 1, 32, 40), dtype=np.uint16)  # 2 fields, 2 channels
    second = rng.random((2, 1, 1, 24, 30), dtype=np.float32)
    labels = rng.integers(0, 9, (2, 1, 32, 40), dtype=np.uint16)
    acquisitions = [
        {"id": 4, "name": "before", "starttime": 1700000000000},
        {"id": 7, "name": "after", "description": "2 h later"},
    ]
    with PlateStore.create(tmp_path / "ours.zarr", config) as store:
        store.set_acquisitions(acquisitions)
        for well in ("A02", "B01"):
            store.write_acquisitions(
                well,
                {
                    4: {"data": first, "channels": ["DAPI", "GFP"], "labels": {"cells": labels}},
                    7: {"data": second, "channels": ["RFP"], "pixel_size": 0.8},
                },
            )
    validate_plate(tmp_path / "ours.zarr")
    dest = tmp_path / "saved.zarr"
    save_all(make_napari_viewer, tmp_path / "ours.zarr", dest)
    validate_plate(dest)
    saved = PlateStore.open(dest)
    assert list(saved.plate.acquisitions) == acquisitions
    assert saved.config is not None
    assert saved.config.fields is FieldArrangement.PER_FIELD
    for well in ("A02", "B01"):
        ids = [image["acquisition"] for image in well_documents(dest, well)["images"]]
        assert ids == [4, 4, 7, 7]  # one image per field and acquisition
        for f in range(2):
            for c in range(2):
                np.testing.assert_array_equal(
                    saved.read_plane(well, f, c, acquisition=4), first[f, c, 0]
                )
            np.testing.assert_array_equal(saved.read_plane(well, f, acquisition=7), second[f, 0, 0])
            np.testing.assert_array_equal(
                saved.read_labels(well, "cells", acquisition=4)[f, 0], labels[f, 0]
            )
        assert [c.label for c in saved.well_info(well, 7).channels] == ["RFP"]
        assert saved.well_info(well, 7).dtype == np.float32


def test_write_acquisitions_refuses_an_id_the_plate_does_not_list(tmp_path: Path) -> None:
    with PlateStore.create(tmp_path / "p.zarr") as store:
        store.set_acquisitions([{"id": 0, "name": "round1"}])
        data = np.ones((1, 1, 1, 8, 8), np.uint8)
        with pytest.raises(WellDataError, match=r"well B03: acquisition 2 is not in .*\[0\]"):
            store.write_acquisitions("B03", {0: {"data": data}, 2: {"data": data}})
        assert not (tmp_path / "p.zarr" / "B" / "03").exists()
