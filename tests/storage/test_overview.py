"""The plate overview: valid plates around it, rebuilt with the wells, never stale."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.storage._spec import OVERVIEW_DIR
from napari_wellzarr.storage.axes import PlaneKey, shrink
from napari_wellzarr.storage.config import StorageConfig
from napari_wellzarr.storage.overview import OverviewPlanes
from napari_wellzarr.storage.store import PlateStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

WELLS = ("A01", "B03", "D06")


def _plate(path: Path, ngff_version: str = "0.5", **config: Any) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    out = {}
    cfg = StorageConfig(plate=24, ngff_version=ngff_version, **config)
    with PlateStore.create(path, cfg) as store:
        for well in WELLS:
            out[well] = rng.integers(0, 4000, (2, 2, 1, 48, 40), dtype="u2")
            store.write_well(well, out[well])
    return out


def test_a_plate_with_its_overview_is_valid_and_other_readers_open_it(
    tmp_path: Path,
    yaozarrs_validate: Callable[[Path], Any],
    ome_zarr_models_validate: Callable[[Path], Any],
) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Plate, Reader

    root = tmp_path / "p.zarr"
    written = _plate(root)
    store = PlateStore.open(root)
    record = store.overview()
    assert record is not None
    assert (root / record.path / "zarr.json").is_file()
    yaozarrs_validate(root)
    ome_zarr_models_validate(root)
    location = parse_url(str(root))
    assert location is not None
    plates = [n for n in Reader(location)() if any(isinstance(s, Plate) for s in n.specs)]
    assert len(plates) == 1
    # the overview holds each well's whole-plate tile, where the plate's grid puts it
    positions = {
        n: (w.row_index, w.column_index)
        for n, w in zip(store.wells(), store.plate.wells, strict=True)
    }
    planes = OverviewPlanes(root, record, positions)
    for key in (PlaneKey(0, 0, 0), PlaneKey(1, 1, 0)):
        plane = planes.read([key])[0]
        for well, data in written.items():
            origin = planes.origin(well)
            assert origin is not None
            y, x = origin
            th, tw = record.tile
            expected = shrink(data[key.field, key.c, key.z], record.halvings)
            np.testing.assert_array_equal(plane[y : y + th, x : x + tw], expected)


def test_ngff_04_plates_get_no_overview(tmp_path: Path) -> None:
    root = tmp_path / "p.zarr"
    _plate(root, "0.4")
    assert PlateStore.open(root).overview() is None
    assert not (root / OVERVIEW_DIR).exists()


@pytest.mark.parametrize("how", ["record", "version", "shard"])
def test_a_damaged_or_missing_record_means_no_overview(tmp_path: Path, how: str) -> None:
    root = tmp_path / "p.zarr"
    _plate(root)
    if how == "record":
        doc = json.loads((root / "zarr.json").read_text())
        doc["attributes"]["wellzarr"]["overview"]["tile"] = "big"
        (root / "zarr.json").write_text(json.dumps(doc))
    elif how == "version":
        records = json.loads((root / ".wellzarr-layouts.json").read_text())
        records["overview"]["key"] = "0" * 16
        (root / ".wellzarr-layouts.json").write_text(json.dumps(records))
    if how == "shard":
        record = PlateStore.open(root).overview()
        assert record is not None
        shard = root / record.path / "c/0/0/0/0/0"
        shard.write_bytes(shard.read_bytes()[:-1] + b"\0")  # another mtime and content
        positions = {"A01": (0, 0)}
        from napari_wellzarr.errors import WellZarrError

        with pytest.raises(WellZarrError):
            OverviewPlanes(root, record, positions).read([PlaneKey(0, 0, 0)])
    else:
        assert PlateStore.open(root).overview() is None
