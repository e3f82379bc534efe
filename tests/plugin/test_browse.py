"""Browsing a default-config plate in napari reads overview pixels only (chunks counted)."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import numpy as np
import pytest

from napari_wellzarr.core import Channel, PlateStore, StorageConfig
from napari_wellzarr.plugin.view import PlateView
from napari_wellzarr.storage import config as config_module
from napari_wellzarr.storage import shards
from napari_wellzarr.storage._spec import OVERVIEW_DIR
from napari_wellzarr.storage.overview import forget_overview
from tests.plugin.helpers import camera_of, well_centre

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.gui
PLUGIN = "napari-wellzarr"
WELLS = ("A01", "C05", "H12", "P24")
FIELDS, CHANNELS, SIDE = 3, 2, 256


def browse_plate(path: Path, *, stored_level: bool = False, **config: Any) -> Path:
    """A 384-well plate (4 wells written), 3 fields x 2 channels of 256 x 256, field = value.

    Its whole-plate level is 4x: by default not stored (its plate overview is built from
    full resolution); ``stored_level``: stored, as on plates too large to read back.
    """
    channels = [Channel("DAPI", "0000FF", (0, 4000, 0, 3000)), Channel("GFP", "00FF00")]
    data = np.zeros((FIELDS, CHANNELS, 1, SIDE, SIDE), dtype="u2")
    for f in range(FIELDS):
        data[f] = 1000 * (f + 1)
    limit = 0 if stored_level else config_module.OVERVIEW_FROM_FULL_RESOLUTION_BYTES
    with (
        mock.patch.object(config_module, "OVERVIEW_FROM_FULL_RESOLUTION_BYTES", limit),
        PlateStore.create(path, StorageConfig(plate=384, **config)) as store,
    ):
        for well in WELLS:
            store.write_well(well, data, channels=channels, pixel_size=0.5)
    stored = [s[-1] for s in PlateStore.open(path).well_info("A01").level_shapes]
    assert stored == ([SIDE, SIDE // 4] if stored_level and not config else [SIDE])
    return path


class ReadAudit:
    """Every shard read of the storage layer: which array, how many chunks, how many bytes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.chunks: Counter[str] = Counter()
        self.bytes = 0
        original_read, original_pread = shards.ShardReader._read_shard, os.pread
        audit = self

        def read_shard(self: shards.ShardReader, key: str, members: Any, out: Any) -> bool:
            audit.chunks[str(self.directory / key)] += len(members)
            return original_read(self, key, members, out)

        def pread(fd: int, n: int, offset: int) -> bytes:
            blob = original_pread(fd, n, offset)
            audit.bytes += len(blob)
            return blob

        monkeypatch.setattr(shards.ShardReader, "_read_shard", read_shard)
        monkeypatch.setattr(os, "pread", pread)

    def levels(self) -> set[str]:
        """The stored levels read (each shard file is ``<well>/0/<level>/c.0.0.0.0.0``)."""
        return {Path(p).parent.name for p in self.chunks}

    def wells(self) -> set[str]:
        """The wells read, as ``<row>/<column>``."""
        return {"/".join(Path(p).parts[-5:-3]) for p in self.chunks}

    def reset(self) -> None:
        self.chunks.clear()
        self.bytes = 0


def overview_bytes(path: Path) -> int:
    """Size of every well's overview shard file (stored level 1) on disk."""
    sizes = [f.stat().st_size for f in path.glob("*/*/0/1/c.*")]
    assert len(sizes) == len(WELLS)
    return sum(sizes)


def draw(viewer: Any) -> np.ndarray:
    """What the canvas shows now (drawing it slices every layer for the current view)."""
    shot: np.ndarray = viewer.screenshot(canvas_only=True, flash=False)
    return shot


def test_the_whole_plate_and_its_field_steps_read_the_plate_overview_only(
    make_napari_viewer: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = browse_plate(tmp_path / "plate.zarr")  # the default configuration
    record = PlateStore.open(path).overview()
    assert record is not None
    assert (record.level, record.halvings, record.tile) == (0, 2, (64, 64))  # 4x, from level 0
    audit = ReadAudit(monkeypatch)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin=PLUGIN)
    dapi = viewer.layers["DAPI"]
    viewer.reset_view()
    draw(viewer)
    assert dapi.multiscale
    assert dapi.data_level == len(dapi.data) - 1  # the whole plate
    # napari slices a new layer once before fitting the view to it: the full-resolution
    # corner at the origin, where well A01 is; the whole plate came from the overview:
    # one shard, the first field's plane of each channel, and no well's overview level
    wells = {p: n for p, n in audit.chunks.items() if OVERVIEW_DIR not in p}
    assert {(Path(p).parent.name, "/".join(Path(p).parts[-5:-3])) for p in wells} <= {("0", "A/01")}
    shard = str(path / record.path / "c/0/0/0/0/0")
    assert set(audit.chunks) - set(wells) == {shard}
    # the planes napari asked for (the field it starts at, the middle one) and their
    # neighbours (read ahead in the background), every channel of a field at once: one
    # plane (a strip chunk per row of wells) per channel and field, from the one shard
    strips = record.grid[0]
    assert audit.chunks[shard] % (CHANNELS * strips) == 0
    assert CHANNELS <= audit.chunks[shard] // strips <= 2 * FIELDS * CHANNELS
    audit.reset()
    first = viewer.dims.current_step[0]
    for step in range(1, FIELDS + 1):
        field = (first + step) % FIELDS
        viewer.dims.set_current_step(0, field)
        draw(viewer)
        for c in range(CHANNELS):
            np.testing.assert_array_equal(
                np.unique(np.asarray(viewer.layers[c].data[-1][field])), [0, 1000 * (field + 1)]
            )
    # field steps: nothing from any well; at most every plane of the overview once more
    assert set(audit.chunks) <= {shard}
    assert sum(audit.chunks.values()) <= FIELDS * CHANNELS * strips
    plane = record.grid[0] * 64 * record.grid[1] * 64 * 2
    assert audit.bytes <= FIELDS * CHANNELS * plane


def test_a_stale_overview_is_never_shown(tmp_path: Path) -> None:
    """A well replaced on disk behind the plate's back (a worker of a resumed conversion)."""
    from napari_wellzarr.plugin.view import open_view

    path = browse_plate(tmp_path / "plate.zarr")
    assert PlateStore.open(path).overview() is not None
    other = tmp_path / "other.zarr"
    with PlateStore.create(other, StorageConfig(plate=384)) as store:
        store.write_well("C05", np.full((FIELDS, CHANNELS, 1, SIDE, SIDE), 7, dtype="u2"))
    shutil.rmtree(path / "C" / "05")
    shutil.copytree(other / "C" / "05", path / "C" / "05")
    assert PlateStore.open(path).overview() is None
    view = open_view(path)
    assert isinstance(view, PlateView)
    assert view.reader.overview is None
    layer = view.layers()[0][0][-1]  # the whole-plate level of the first channel
    y, x = (
        (view.reader.geometry.pitch[0] * 2) >> layer.level,
        (view.reader.geometry.pitch[1] * 4) >> layer.level,
    )
    np.testing.assert_array_equal(np.asarray(layer[0, 0, y : y + 64, x : x + 64]), 7)
    # rewriting through the store takes the overview out at once, and close() rebuilds it
    with PlateStore.open(path, "r+") as store:
        store.write_well("C05", np.full((FIELDS, CHANNELS, 1, SIDE, SIDE), 9, "u2"), overwrite=True)
        assert (
            "overview" not in json.loads((path / "zarr.json").read_text())["attributes"]["wellzarr"]
        )
    rebuilt = PlateStore.open(path).overview()
    assert rebuilt is not None
    assert sorted(p.name for p in (path / OVERVIEW_DIR).iterdir()) == [
        rebuilt.path.rsplit("/", 1)[1]
    ]


def test_without_an_overview_the_whole_plate_reads_each_wells_overview_level(
    make_napari_viewer: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback (plates written before the overview, OME-NGFF 0.4): per-well reads."""
    path = browse_plate(tmp_path / "plate.zarr", stored_level=True)
    forget_overview(path, 3)
    assert PlateStore.open(path).overview() is None
    assert not (path / OVERVIEW_DIR).exists() or not any((path / OVERVIEW_DIR).iterdir())
    audit = ReadAudit(monkeypatch)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin=PLUGIN)
    dapi = viewer.layers["DAPI"]
    viewer.reset_view()
    draw(viewer)
    assert dapi.multiscale
    assert dapi.data_level == len(dapi.data) - 1  # the whole plate
    # napari slices a new layer once before fitting the view to it: the full-resolution
    # corner at the origin, where well A01 is; everything else came from the overview
    by_level: dict[str, dict[str, int]] = {}
    for p, n in audit.chunks.items():
        by_level.setdefault(Path(p).parent.name, {})["/".join(Path(p).parts[-5:-3])] = n
    assert set(by_level) <= {"0", "1"}
    assert set(by_level.get("0", {})) <= {"A/01"}
    overview = by_level["1"]
    assert set(overview) == {f"{w[0]}/{w[1:]}" for w in WELLS}
    # every well's overview shard read once, whole: its 3 fields x 2 channels
    assert sorted(overview.values()) == [FIELDS * CHANNELS] * len(WELLS)
    audit.reset()
    first = viewer.dims.current_step[0]
    for step in range(1, FIELDS + 1):
        field = (first + step) % FIELDS
        viewer.dims.set_current_step(0, field)
        draw(viewer)
        np.testing.assert_array_equal(
            np.unique(np.asarray(dapi.data[-1][field])), [0, 1000 * (field + 1)]
        )
    assert (dict(audit.chunks), audit.bytes) == ({}, 0)  # every field step: from the cache


def test_zoom_into_one_well_reads_its_full_resolution_only(
    make_napari_viewer: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = browse_plate(tmp_path / "plate.zarr")
    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin=PLUGIN)
    dapi = viewer.layers["DAPI"]
    viewer.layers["plate map"].visible = False
    viewer.reset_view()
    draw(viewer)
    audit = ReadAudit(monkeypatch)
    camera = camera_of(viewer)
    camera.center = well_centre(dapi, "H12")
    camera.zoom = 4 / min(dapi.scale[-2:])  # well beyond one screen pixel per data pixel
    draw(viewer)
    assert dapi.data_level == 0
    assert audit.levels() == {"0"}
    assert audit.wells() == {"H/12"}  # the one well in view
    # the planes on screen, one per channel: 256 x 256 uint16 each, compressed
    assert sum(audit.chunks.values()) == CHANNELS
    assert 0 < audit.bytes <= CHANNELS * SIDE * SIDE * 2 + 4096


def test_without_stored_levels_a_field_step_reads_every_full_resolution_plane(
    make_napari_viewer: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default before stored overview levels (``pyramid_levels=1``, no plate overview)."""
    path = browse_plate(tmp_path / "plate.zarr", pyramid_levels=1)
    forget_overview(path, 3)
    audit = ReadAudit(monkeypatch)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin=PLUGIN)
    viewer.reset_view()
    draw(viewer)
    assert audit.levels() == {"0"}
    audit.reset()
    viewer.dims.set_current_step(0, (viewer.dims.current_step[0] + 1) % FIELDS)
    draw(viewer)
    # every well's plane of the new field, at full resolution, for each channel
    assert sum(audit.chunks.values()) == len(WELLS) * CHANNELS
    assert audit.bytes > overview_bytes(browse_plate(tmp_path / "levels.zarr", stored_level=True))


def test_whole_plate_planes_from_the_overview_equal_the_per_well_tiles(tmp_path: Path) -> None:
    """The whole-plane copy of the overview puts every well where its own tiles go."""
    from napari_wellzarr.plugin.view import open_view

    path = tmp_path / "plate.zarr"
    rng = np.random.default_rng(3)
    with PlateStore.create(path, StorageConfig(plate=384)) as store:
        for well in WELLS:
            data = rng.integers(0, 4000, (FIELDS, CHANNELS, 1, SIDE, SIDE), dtype="u2")
            store.write_well(well, data, pixel_size=0.5)
    fast, slow = open_view(path), open_view(path)
    assert isinstance(fast, PlateView)
    assert isinstance(slow, PlateView)
    slow.reader.overview = None  # every tile from its well's own full-resolution planes
    level = len(fast.reader.plans) - 1
    assert fast.reader.overview_mosaic(_key(1, 1), level) is not None
    for c in range(CHANNELS):
        a, b = fast.layers()[c][0][level], slow.layers()[c][0][level]
        h, w = a.shape[-2:]
        for index in [
            (1, 0),  # the whole plate at one field
            (slice(None), 0, slice(3, h - 5, 3), slice(7, w, 2)),  # every field, strided
            (2, 0, slice(h // 3, h // 2), slice(w // 2, None)),
        ]:
            got, want = np.asarray(a[index]), np.asarray(b[index])
            assert got.shape == want.shape
            np.testing.assert_array_equal(got, want)
        assert np.asarray(a[0, 0]).any()


def _key(field: int, c: int) -> Any:
    from napari_wellzarr.storage.axes import PlaneKey

    return PlaneKey(field, c, 0)


@pytest.mark.parametrize(("n_rows", "n_columns", "shown"), [(8, 12, True), (16, 24, False)])
def test_the_plate_map_is_shown_at_first_up_to_96_wells(
    n_rows: int, n_columns: int, shown: bool
) -> None:
    """Its squares and names cost more than the images on every frame of a software GL."""
    from napari_wellzarr.plugin.mosaic import MosaicGeometry
    from napari_wellzarr.plugin.view import plate_map
    from napari_wellzarr.storage.geometry import row_letters

    rows = [row_letters(r) for r in range(n_rows)]
    columns = [f"{c + 1:02d}" for c in range(n_columns)]
    geometry = MosaicGeometry.for_plate(n_rows, n_columns, (64, 64))
    data, kwargs, kind = plate_map(
        Path("p.zarr"), rows, columns, {"A01"}, geometry, [1.0, 1.0], ["pixel", "pixel"]
    )
    assert kind == "points"
    assert len(data) == n_rows * n_columns
    assert kwargs["visible"] is shown


def test_a_384_well_plate_opens_with_a_channel_active_fitted_and_wells_named(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    """The hidden plate map is not the active layer; the status names the well and field."""
    path = browse_plate(tmp_path / "p.zarr")
    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin=PLUGIN)
    draw(viewer)
    names = [layer.name for layer in viewer.layers]
    assert names[-1] == "plate map"
    assert not viewer.layers["plate map"].visible
    active = viewer.layers.selection.active
    assert active is not None
    assert active.name == "DAPI"
    assert viewer.layers.selection == {active}
    # fitted to the canvas the window has now: every column on screen
    camera = camera_of(viewer)
    fitted = (tuple(camera.center), camera.zoom)
    viewer.reset_view()
    assert tuple(camera.center) == pytest.approx(fitted[0])
    assert camera.zoom == pytest.approx(fitted[1])
    # the pointer over well C05 at field 2 (the slider), then between wells
    viewer.dims.set_current_step(0, 2)
    centre = well_centre(active, "C05")
    world = [*viewer.dims.point[:-2], *centre]
    status = active.get_status(world, world=True)
    assert status["coordinates"].startswith("C05 field 2 ")
    (h, _), (py, _) = active.metadata["wellzarr"]["tile"], active.metadata["wellzarr"]["pitch"]
    assert py > h
    gap_y = (2 * py + h + (py - h) / 2) * active.scale[-2]  # below row C, above row D
    gap = active.get_status([*viewer.dims.point[:-2], gap_y, centre[1]], world=True)
    assert not gap["coordinates"].startswith(("C05", "D05"))
    absent = active.get_status([*viewer.dims.point[:-2], *well_centre(active, "A02")], world=True)
    assert not absent["coordinates"].startswith("A02")
