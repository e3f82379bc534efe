"""The plate overview is built a row of wells at a time: its memory does not grow with the plate."""

from __future__ import annotations

import tracemalloc
from typing import TYPE_CHECKING

import numpy as np
import pytest

from napari_wellzarr.storage.axes import PlaneKey
from napari_wellzarr.storage.config import StorageConfig
from napari_wellzarr.storage.overview import OverviewPlanes, build_overview, strip_grids
from napari_wellzarr.storage.store import PlateStore

if TYPE_CHECKING:
    from pathlib import Path

SIDE = 256  # a 96-well plate of these is shown at full resolution: its overview copies it
CHANNELS = 2


def _plate(path: Path, n_rows: int) -> dict[str, np.ndarray]:
    """A 96-well plate with its first ``n_rows`` rows written (1 field, 2 channels)."""
    rng = np.random.default_rng(n_rows)
    out = {}
    with PlateStore.create(path, StorageConfig(plate=96)) as store:
        for well in [f"{r}{c:02d}" for r in "ABCDEFGH"[:n_rows] for c in range(1, 13)]:
            out[well] = rng.integers(0, 4000, (1, CHANNELS, 1, SIDE, SIDE), dtype="u2")
            store.write_well(well, out[well])
    return out


@pytest.fixture(scope="module")
def plates(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[int, tuple[Path, dict[str, np.ndarray]]]:
    """One row of wells (12) and the whole plate (96), each with its overview."""
    root = tmp_path_factory.mktemp("streaming")
    return {n: (root / f"p{n}.zarr", _plate(root / f"p{n}.zarr", n)) for n in (1, 8)}


def _peak_of_build(path: Path) -> int:
    with PlateStore.open(path, mode="r+") as store:
        tracemalloc.start()
        try:
            assert build_overview(store) is not None
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def test_building_the_overview_holds_a_row_of_wells_not_the_plate(
    plates: dict[int, tuple[Path, dict[str, np.ndarray]]],
) -> None:
    _peak_of_build(plates[1][0])  # imports, caches
    small, whole = _peak_of_build(plates[1][0]), _peak_of_build(plates[8][0])
    plane = 8 * SIDE * 12 * SIDE * 2  # one whole-plate plane: 12 MiB
    # 8 times the wells, (nearly) the same peak: a row of wells' planes, one strip and
    # its encoded copy; less than one whole-plate plane (a build of whole planes holds
    # one per channel, and the plate is 24 MiB)
    assert whole < 1.25 * small, (small, whole)
    assert whole < plane, (whole, plane)


def test_the_overview_of_a_plate_shown_at_full_resolution_is_its_pixels(
    plates: dict[int, tuple[Path, dict[str, np.ndarray]]],
) -> None:
    import zarr

    path, truth = plates[8]
    store = PlateStore.open(path)
    record = store.overview()
    assert record is not None
    assert (record.level, record.halvings, record.tile) == (0, 0, (SIDE, SIDE))
    grids = strip_grids(record.array)
    assert grids is not None
    assert grids[0].chunk_shape[-2:] == (SIDE, 12 * SIDE)  # a row of wells per chunk
    positions = {
        n: (w.row_index, w.column_index)
        for n, w in zip(store.wells(), store.plate.wells, strict=True)
    }
    planes = OverviewPlanes(path, record, positions)
    ours = planes.read([PlaneKey(0, c, 0, 0) for c in range(CHANNELS)])
    theirs = zarr.open_array(path / record.path, mode="r")  # zarr reads the same array
    for c in range(CHANNELS):
        np.testing.assert_array_equal(ours[c], theirs[0, c, 0])
        for well, (row, column) in positions.items():
            tile = ours[c][row * SIDE : (row + 1) * SIDE, column * SIDE : (column + 1) * SIDE]
            np.testing.assert_array_equal(tile, truth[well][0, c, 0])


def test_an_overview_of_whole_plane_chunks_written_before_still_reads(
    plates: dict[int, tuple[Path, dict[str, np.ndarray]]],
) -> None:
    """Overviews built before strips (one chunk per whole-plate plane) read as they did."""
    import dataclasses

    from napari_wellzarr.storage.shards import ShardGrid
    from napari_wellzarr.storage.writing import sharded_v3_metadata

    path, _ = plates[1]
    store = PlateStore.open(path)
    record = store.overview()
    assert record is not None
    positions = {
        n: (w.row_index, w.column_index)
        for n, w in zip(store.wells(), store.plate.wells, strict=True)
    }
    new = OverviewPlanes(path, record, positions)
    keys = [PlaneKey(0, c, 0, 0) for c in range(CHANNELS)]
    planes = new.read(keys)
    shape = new.layout.shape
    chunks = (1,) * (len(shape) - 2) + shape[-2:]
    doc = sharded_v3_metadata(
        shape, new.layout.dtype, (chunks, shape), StorageConfig(), ["field", "c", "z", "y", "x"]
    ).to_dict()
    layout = ShardGrid.parse(doc)
    assert layout is not None
    assert strip_grids(doc) == (layout, layout)
    layout.write_one_shard(path / ".wellzarr-overview" / "old", iter(planes))
    old = dataclasses.replace(record, path=".wellzarr-overview/old", array=doc, shard=())
    for a, b in zip(OverviewPlanes(path, old, positions).read(keys), planes, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_4x_plate_stores_no_level_and_its_overview_is_built_from_full_resolution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """96 wells of 512 x 512: the overview halves full resolution twice, a few planes at a time."""
    from napari_wellzarr.storage import overview as overview_module
    from napari_wellzarr.storage.axes import shrink

    rng = np.random.default_rng(4)
    path = tmp_path / "p.zarr"
    wells = {f"A{c:02d}": rng.integers(0, 4000, (1, 3, 2, 512, 512), "u2") for c in range(1, 13)}
    wells["C05"] = rng.integers(0, 4000, (1, 3, 2, 512, 512), "u2")
    with PlateStore.create(path, StorageConfig(plate=96)) as store:
        for name, data in wells.items():
            store.write_well(name, data)
    store = PlateStore.open(path)
    assert [s[-2:] for s in store.well_info("A01").level_shapes] == [(512, 512)]
    record = store.overview()
    assert record is not None
    assert (record.level, record.halvings, record.tile) == (0, 2, (128, 128))
    whole = (path / record.path / "c/0/0/0/0/0").read_bytes()
    positions = {
        n: (w.row_index, w.column_index)
        for n, w in zip(store.wells(), store.plate.wells, strict=True)
    }
    keys = [PlaneKey(0, c, z, 0) for c in range(3) for z in range(2)]
    got = OverviewPlanes(path, record, positions).read(keys)
    for key, plane in zip(keys, got, strict=True):
        for name, (row, column) in positions.items():
            tile = plane[row * 128 : (row + 1) * 128, column * 128 : (column + 1) * 128]
            np.testing.assert_array_equal(tile, shrink(wells[name][0, key.c, key.z], 2))
    # read a plane of each well at a time instead of all six: the same shard, less memory
    one_plane = overview_module.LOCAL_WELLS_AT_ONCE * 512 * 512 * 2  # of each well in flight

    def peak(limit: int) -> int:
        monkeypatch.setattr(overview_module, "STRIP_READ_BYTES", limit)
        with PlateStore.open(path, mode="r+") as writer:
            tracemalloc.start()
            try:
                built = build_overview(writer)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert built is not None
        assert (path / built.path / "c/0/0/0/0/0").read_bytes() == whole
        return peak

    peak(one_plane)  # imports, caches
    few, many = peak(one_plane), peak(6 * one_plane)
    assert few < many - 4 * one_plane, (few, many)


def test_wells_with_and_without_the_4x_level_give_the_same_overview(tmp_path: Path) -> None:
    """A plate written before the 4x level was dropped, with wells added after it."""
    from unittest import mock

    from napari_wellzarr.storage import config as config_module

    rng = np.random.default_rng(5)
    wells = {f"B{c:02d}": rng.integers(0, 4000, (2, 2, 1, 512, 512), "u2") for c in range(1, 7)}
    shards = []
    for mixed in (False, True):
        path = tmp_path / f"p{mixed}.zarr"
        with PlateStore.create(path, StorageConfig(plate=96)) as store:
            for i, (name, data) in enumerate(wells.items()):
                limit = 0 if mixed and i % 2 == 0 else 2**40  # even wells: the 4x level stored
                with mock.patch.object(config_module, "OVERVIEW_FROM_FULL_RESOLUTION_BYTES", limit):
                    store.write_well(name, data)
        opened = PlateStore.open(path)
        levels = {name: len(opened.well_info(name).level_shapes) for name in wells}
        assert set(levels.values()) == ({1, 2} if mixed else {1})
        record = opened.overview()
        assert record is not None
        assert record.tile == (128, 128)
        shards.append((path / record.path / "c/0/0/0/0/0").read_bytes())
    assert shards[0] == shards[1]
