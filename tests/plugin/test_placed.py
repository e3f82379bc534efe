"""Fields shown where they were imaged: one canvas per well, and the slider view on a toggle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.convert.engine import convert, scan_source
from napari_wellzarr.core import PlateStore, StorageConfig
from napari_wellzarr.plugin.view import PlateView, open_view
from napari_wellzarr.storage.acquisition import Acquisition

if TYPE_CHECKING:
    from collections.abc import Callable

NATIVE = Path(__file__).resolve().parents[1] / "data" / "ixm_native"
PIXEL = 0.5  # micrometres


def _plate(path: Path, rng: np.random.Generator, fields: str = "stacked") -> np.ndarray:
    """Well B02: 2 fields of 32x48, field 1 imaged 4 um lower and 10 um right (overlap)."""
    data = rng.integers(1, 60000, size=(2, 1, 1, 32, 48), dtype="u2")
    acquisition = Acquisition(field_positions={0: (-2.0, -5.0), 1: (2.0, 5.0)})
    with PlateStore.create(path, StorageConfig(plate=96, fields=fields)) as store:
        store.write_well("B02", data, pixel_size=PIXEL, acquisition=acquisition)
    return data


def _well_canvas(view: PlateView, layer_data: Any, well: tuple[int, int]) -> np.ndarray:
    base = layer_data[0] if isinstance(layer_data, list) else layer_data
    y0, x0 = view.reader.geometry.origin(*well)
    h, w = view.reader.geometry.tile
    return np.asarray(base[(0,) * (base.ndim - 2)][y0 : y0 + h, x0 : x0 + w])


@pytest.mark.parametrize("fields", ["stacked", "per-field"])
def test_fields_are_placed_later_on_top(
    tmp_path: Path, rng: np.random.Generator, fields: str
) -> None:
    data = _plate(tmp_path / "p.zarr", rng, fields)
    store = PlateStore.open(tmp_path / "p.zarr")
    assert store.field_positions("B02") == {0: (-2.0, -5.0), 1: (2.0, 5.0)}
    view = open_view(tmp_path / "p.zarr")
    assert isinstance(view, PlateView)
    assert view.placed
    # (4 um, 10 um) / 0.5 um = (8, 20) px apart: the canvas is 40 x 68
    assert view.info.shape == (1, 1, 1, 40, 68)
    canvas = _well_canvas(view, view.layers()[0][0], (1, 1))
    assert np.array_equal(canvas[8:40, 20:68], data[1, 0, 0])  # the later field on top
    assert np.array_equal(canvas[0:8, 0:48], data[0, 0, 0, 0:8])
    assert np.array_equal(canvas[8:32, 0:20], data[0, 0, 0, 8:32, 0:20])
    assert not canvas[32:, :20].any()  # no field was imaged there
    slider = open_view(tmp_path / "p.zarr", placed=False)
    assert isinstance(slider, PlateView)
    assert not slider.placed
    assert slider.info.shape == (2, 1, 1, 32, 48)


def test_plate_without_positions_keeps_the_slider(tmp_path: Path, rng: np.random.Generator) -> None:
    with PlateStore.create(tmp_path / "p.zarr", StorageConfig(plate=96)) as store:
        store.write_well("A01", rng.integers(0, 9, (3, 1, 1, 16, 16), dtype="u2"), pixel_size=1.0)
    view = open_view(tmp_path / "p.zarr")
    assert isinstance(view, PlateView)
    assert not view.placed
    assert view.lead_shape == (3, 1)


@pytest.mark.gui
def test_real_export_opens_placed_and_toggles_to_the_slider(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    from napari_wellzarr.plugin._fields import PlateFieldsWidget

    plan = scan_source(NATIVE)
    dest = tmp_path / "native.zarr"
    convert(plan, dest, StorageConfig(plate=plan.smallest_plate()))
    store = PlateStore.open(dest)
    positions = store.field_positions("E07")
    step = round((positions[1][1] - positions[0][1]) / 1.3668)
    viewer = make_napari_viewer(show=True)
    layers = viewer.open(str(dest), plugin="napari-wellzarr")
    assert [layer.name for layer in layers][-1] == "plate map"
    first = viewer.layers[plan.channel_names[2]]  # FITC_05-3: both fields have it
    assert first.metadata["wellzarr"]["fields"] == "placed"
    base = first.data[0] if first.multiscale else first.data
    assert base.shape[0] == 1  # the field axis: one canvas
    # the well tile holds both fields side by side, field 1 at its stage position
    view = open_view(dest)
    assert isinstance(view, PlateView)
    canvas = _well_canvas(view, base, (4, 6))
    assert canvas.shape[-1] == step + 512
    assert np.array_equal(canvas[:, step : step + 512], store.read_plane("E07", 1, 2, 0))
    widget = PlateFieldsWidget(viewer)
    widget.placed.value = False  # the toggle reopens the plate with a field slider
    again = viewer.layers[plan.channel_names[2]]
    assert again.metadata["wellzarr"]["fields"] == "slider"
    base = again.data[0] if again.multiscale else again.data
    assert base.shape[0] == 2
    assert "on a slider" in widget.status.value
    widget.placed.value = True
    assert viewer.layers[plan.channel_names[2]].metadata["wellzarr"]["fields"] == "placed"
    assert len(viewer.layers) == len(layers)


def test_conditions_show_on_the_plate_map(tmp_path: Path, rng: np.random.Generator) -> None:
    doses = {"B02": {"compound": "DMSO", "dose": "0"}, "C03": {"compound": "taxol", "dose": "5"}}
    with PlateStore.create(tmp_path / "p.zarr", StorageConfig(plate=96)) as store:
        for well, values in doses.items():
            data = rng.integers(0, 9, (1, 1, 1, 16, 16), dtype="u2")
            store.write_well(well, data, acquisition=Acquisition(conditions=values))
    store = PlateStore.open(tmp_path / "p.zarr")
    assert store.instrument_metadata("C03").conditions == doses["C03"]
    with pytest.warns(DeprecationWarning, match="now PlateStore.instrument_metadata"):
        assert store.acquisition("C03").conditions == doses["C03"]  # the old name
    view = open_view(tmp_path / "p.zarr")
    assert isinstance(view, PlateView)
    layers = view.layers()
    points = layers[-1]
    features = points[1]["features"]
    at = dict(zip(features["well"], features["condition"], strict=True))
    assert at["B02"] == "compound: DMSO; dose: 0"
    assert at["C03"] == "compound: taxol; dose: 5"
    assert at["A01"] == ""
    assert "{condition}" in points[1]["text"]["string"]
    assert layers[0][1]["metadata"]["wellzarr"]["conditions"]["C03"] == at["C03"]


def test_placed_layers_are_not_saved_as_wells(tmp_path: Path, rng: np.random.Generator) -> None:
    from napari_wellzarr.core import WellDataError
    from napari_wellzarr.plugin.layer_wells import map_layers

    _plate(tmp_path / "p.zarr", rng)
    view = open_view(tmp_path / "p.zarr")
    with pytest.raises(WellDataError, match="field slider"):
        map_layers(view.layers())
    slider = open_view(tmp_path / "p.zarr", placed=False)
    mapping = map_layers(slider.layers())  # the slider view saves as before
    assert mapping is not None
