"""The npe2 writers called directly, with layer state exactly as napari hands it over."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.core import PlateExistsError, PlateStore, WellDataError
from napari_wellzarr.plugin._reader import read_plate
from napari_wellzarr.plugin._writer import write_image, write_layers
from tests.plugin.helpers import (
    DATA,
    assert_same_plate,
    label_values,
    write_ome_zarr_py,
    write_ours,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

LayerTuple = tuple[Any, dict[str, Any], str]


def as_napari_saves(layer_data: list[LayerTuple]) -> list[LayerTuple]:
    """What napari passes to a writer: each layer built, then its ``_get_state()``."""
    from napari.layers import Layer

    layers = [Layer.create(*t) for t in layer_data]
    return [(layer.data, layer._get_state(), layer._type_string) for layer in layers]


def image(data: Any, **kwargs: Any) -> LayerTuple:
    return (np.asarray(data), kwargs, "image")


# -- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: write_ours(p, labels=True), id="ours-stacked-0.5-labels"),
        pytest.param(
            lambda p: write_ours(p, version="0.4", chunks="well", fields="per-field"),
            id="ours-per-field-0.4",
        ),
        pytest.param(lambda p: write_ome_zarr_py(p, "0.4", "czyx"), id="ome-zarr-py-0.4"),
        pytest.param(lambda p: DATA / "iohub_plate_v05", id="iohub-0.5-time"),
        pytest.param(lambda p: DATA / "openhcs_plate" / "images", id="openhcs"),
    ],
)
def test_round_trip(
    tmp_path: Path, make: Callable[[Path], Path], validate_plate: Callable[[Path], None]
) -> None:
    src = make(tmp_path / "src.zarr")
    dst = tmp_path / "saved.ome.zarr"
    assert write_layers(str(dst), as_napari_saves(read_plate(src))) == [str(dst)]
    validate_plate(dst)
    assert_same_plate(src, dst)
    reopened = {m["name"]: m for _, m, _ in read_plate(dst)}
    original = {m["name"]: m for _, m, _ in read_plate(src)}
    assert reopened.keys() == original.keys()
    for name, meta in original.items():
        for key in ("colormap", "contrast_limits", "scale", "axis_labels"):
            if key in meta:  # without an omero window napari picks, and we save, the limits
                assert reopened[name][key] == meta[key], (name, key)


def test_round_trip_keeps_the_storage_configuration(tmp_path: Path) -> None:
    src = write_ours(tmp_path / "src.zarr", version="0.4", chunks="well", fields="per-field")
    dst = tmp_path / "saved.zarr"
    write_layers(str(dst), as_napari_saves(read_plate(src)))
    assert PlateStore.open(dst).config == PlateStore.open(src).config


def test_edited_contrast_and_colour_are_saved(tmp_path: Path) -> None:
    src = write_ours(tmp_path / "src.zarr")
    layers = as_napari_saves(read_plate(src))
    data, meta, kind = layers[0]
    meta = {**meta, "contrast_limits": [300.0, 900.0], "colormap": "#FF0000"}
    write_layers(str(tmp_path / "dst.zarr"), [(data, meta, kind), *layers[1:]])
    dapi = PlateStore.open(tmp_path / "dst.zarr").well_info("B03").channels[0]
    assert dapi.color == "FF0000"
    assert dapi.window == (0.0, 65535.0, 300.0, 900.0)


# -- layers that did not come from a plate ---------------------------------------------


def test_plain_layers_become_the_channels_of_well_a01(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    planes = [rng.integers(0, 4000, (40, 50), dtype="u2") for _ in range(3)]
    layers = as_napari_saves(
        [
            image(
                planes[0],
                name="DAPI",
                colormap="blue",
                contrast_limits=(10, 3000),
                scale=(0.3, 0.3),
            ),
            image(
                planes[1],
                name="GFP",
                colormap="green",
                contrast_limits=(20, 2000),
                scale=(0.3, 0.3),
            ),
            image(planes[2], name="Cy5", colormap="magenta", scale=(0.3, 0.3), visible=False),
        ]
    )
    write_layers(str(tmp_path / "p.zarr"), layers)
    store = PlateStore.open(tmp_path / "p.zarr")
    assert store.wells() == ["A01"]
    info = store.well_info("A01")
    assert info.shape == (1, 3, 1, 40, 50)
    np.testing.assert_array_equal(store.read_well("A01")[0, :, 0], np.stack(planes))
    assert [(c.label, c.color) for c in info.channels] == [
        ("DAPI", "0000FF"),
        ("GFP", "00FF00"),
        ("Cy5", "FF00FF"),
    ]
    assert info.channels[0].window == (0.0, 65535.0, 10.0, 3000.0)
    assert info.channels[1].window == (0.0, 65535.0, 20.0, 2000.0)
    assert not info.channels[2].active
    assert info.scale[-2:] == (0.3, 0.3)
    assert info.unit == "micrometer"


def test_layer_names_and_metadata_name_wells(tmp_path: Path) -> None:
    planes = {
        n: np.full((8, 8), v, dtype="u2")
        for v, n in enumerate(("B03_DAPI", "B03_GFP", "C04_DAPI", "C04_GFP", "x"), 1)
    }
    layers = [image(p, name=n) for n, p in planes.items() if n != "x"]
    write_layers(str(tmp_path / "p.zarr"), as_napari_saves(layers))
    store = PlateStore.open(tmp_path / "p.zarr")
    assert store.wells() == ["B03", "C04"]
    assert [c.label for c in store.well_info("C04").channels] == ["DAPI", "GFP"]
    assert store.read_plane("C04", 0, 1, 0)[0, 0] == 4
    declared = image(planes["x"], name="nuclear stain", metadata={"well": "D05"})
    write_layers(str(tmp_path / "q.zarr"), as_napari_saves([declared]))
    store = PlateStore.open(tmp_path / "q.zarr")
    assert store.wells() == ["D05"]
    assert store.well_info("D05").channels[0].label == "nuclear stain"


def test_declared_field_axis_labels_and_z_step(tmp_path: Path) -> None:
    stack = np.arange(3 * 2 * 8 * 8, dtype="u2").reshape(3, 2, 8, 8)
    fields = image(
        stack, name="DAPI", axis_labels=("field", "z", "y", "x"), scale=(1, 1.5, 0.2, 0.2)
    )
    nuclei = (np.arange(3 * 2 * 8 * 8).reshape(3, 2, 8, 8) % 5).astype("i4")
    labels = (nuclei, {"name": "nuclei", "axis_labels": ("field", "z", "y", "x")}, "labels")
    write_layers(str(tmp_path / "p.zarr"), as_napari_saves([fields, labels]))
    store = PlateStore.open(tmp_path / "p.zarr")
    info = store.well_info("A01")
    assert info.shape == (3, 1, 2, 8, 8)
    np.testing.assert_array_equal(store.read_well("A01")[:, 0], stack)
    assert info.scale[-3:] == (1.5, 0.2, 0.2)
    assert info.labels == ("nuclei",)
    np.testing.assert_array_equal(store.read_labels("A01", "nuclei"), nuclei)


def test_three_d_layer_is_a_z_stack_and_big_planes_get_overviews(tmp_path: Path) -> None:
    stack = np.ones((2, 1024, 1024), dtype="u1")
    write_image(str(tmp_path / "p.zarr"), stack, {"name": "BF"})
    store = PlateStore.open(tmp_path / "p.zarr")
    info = store.well_info("A01")
    assert info.shape == (1, 1, 2, 1024, 1024)
    assert info.n_levels >= 2
    assert info.level_shapes[1][-1] == 512


# -- refusals ---------------------------------------------------------------------------


def test_unmappable_layers_are_listed_and_nothing_is_written(tmp_path: Path) -> None:
    layers = as_napari_saves(
        [
            image(np.zeros((8, 8), "u2"), name="DAPI"),
            image(np.zeros((9, 8), "u2"), name="GFP"),
            image(np.zeros((8, 8, 3), "u1"), name="photo", rgb=True),
            (np.zeros((2, 2)), {"name": "spots"}, "points"),
        ]
    )
    with pytest.raises(WellDataError) as caught:
        write_layers(str(tmp_path / "p.zarr"), layers)
    message = str(caught.value)
    for culprit in ("'GFP'", "'photo'", "RGB", "'spots'", "points"):
        assert culprit in message
    assert "nothing was written" in message
    assert list(tmp_path.iterdir()) == []


def test_plate_map_alone_is_not_a_plate(tmp_path: Path) -> None:
    src = write_ours(tmp_path / "src.zarr")
    plate_map = [t for t in as_napari_saves(read_plate(src)) if t[2] == "points"]
    with pytest.raises(WellDataError, match="no image layer"):
        write_layers(str(tmp_path / "p.zarr"), plate_map)


def test_never_overwrites(tmp_path: Path, snapshot: Callable[[Path], dict[str, str]]) -> None:
    src = write_ours(tmp_path / "src.zarr")
    before = snapshot(src)
    with pytest.raises(PlateExistsError, match="never overwrites"):
        write_layers(str(src), as_napari_saves(read_plate(src)))
    assert snapshot(src) == before
    (tmp_path / "file.zarr").write_text("keep me")
    with pytest.raises(PlateExistsError):
        write_image(str(tmp_path / "file.zarr"), np.zeros((4, 4), "u2"), {"name": "x"})
    assert (tmp_path / "file.zarr").read_text() == "keep me"


def test_failure_while_writing_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = PlateStore.write_well

    def fail_second(self: PlateStore, *args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        if len(calls) == 2:
            raise OSError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PlateStore, "write_well", fail_second)
    layers = [
        image(np.zeros((4, 4), "u2"), name="A01_x"),
        image(np.zeros((4, 4), "u2"), name="B02_x"),
    ]
    with pytest.raises(OSError, match="disk full"):
        write_layers(str(tmp_path / "p.zarr"), as_napari_saves(layers))
    assert list(tmp_path.iterdir()) == []


def test_written_plate_metadata_is_ours(tmp_path: Path) -> None:
    write_image(str(tmp_path / "p.ome.zarr"), np.zeros((4, 4), "u2"), {"name": "x"})
    attrs = json.loads((tmp_path / "p.ome.zarr" / "zarr.json").read_text())["attributes"]
    assert attrs["ome"]["plate"]["name"] == "p.ome.zarr"
    assert len(attrs["ome"]["plate"]["rows"]) == 8  # the default 96-well plate
    assert label_values(0).dtype == np.uint32


def test_configuration_carried_in_layer_metadata(tmp_path: Path) -> None:
    config = {"ngff_version": "0.4", "chunks": "well", "plate": "16x24", "compressor": "zlib"}
    meta = {"name": "P24_DAPI", "metadata": {"wellzarr": {"config": config}}}
    write_image(str(tmp_path / "p.zarr"), np.ones((6, 6), "u2"), meta)
    store = PlateStore.open(tmp_path / "p.zarr")
    assert store.wells() == ["P24"]
    assert store.config is not None
    assert (store.config.ngff_version.value, store.config.chunks.value) == ("0.4", "well")
    assert (store.config.plate.rows, store.config.compressor.value) == (16, "zlib")
    meta["metadata"]["wellzarr"]["config"] = {"compressor": "nonsense"}
    with pytest.raises(WellDataError, match="nonsense"):
        write_image(str(tmp_path / "q.zarr"), np.ones((6, 6), "u2"), meta)


def test_layers_made_over_a_plate_join_it(tmp_path: Path) -> None:
    src = write_ours(tmp_path / "src.zarr")
    layers = as_napari_saves(read_plate(src))
    dapi, meta, _ = layers[0]
    mosaic = np.zeros(dapi.shape, dtype="u2")
    (h, w), (py, px) = meta["metadata"]["wellzarr"]["tile"], meta["metadata"]["wellzarr"]["pitch"]
    mosaic[1, 0, py : py + 3, 2 * px : 2 * px + 3] = 7  # painted over B03, field 1, z 0
    painted = (mosaic, {"name": "cells"}, "labels")
    wrong = (np.zeros((3, 3), "u2"), {"name": "tiny"}, "labels")
    with pytest.raises(WellDataError, match=r"'tiny'.*not the plate mosaic"):
        write_layers(str(tmp_path / "bad.zarr"), [wrong, *layers])
    write_layers(str(tmp_path / "dst.zarr"), [painted, *layers])
    store = PlateStore.open(tmp_path / "dst.zarr")
    cells = store.read_labels("B03", "cells")
    assert cells.shape == (2, 2, h, w)
    assert int(cells.sum()) == 9 * 7
    assert cells[1, 0, 2, 2] == 7
    assert not store.read_labels("A01", "cells").any()


def test_a_single_well_saves_as_that_well_of_a_96_well_plate(tmp_path: Path) -> None:
    write_ome_zarr_py(tmp_path / "omz", "0.5", "czyx")
    layers = as_napari_saves(read_plate(tmp_path / "omz" / "C" / "4"))
    write_layers(str(tmp_path / "one.zarr"), layers)
    store = PlateStore.open(tmp_path / "one.zarr")
    assert store.wells() == ["C04"]
    assert (len(store.rows), len(store.columns)) == (8, 12)
    np.testing.assert_array_equal(
        store.read_well("C04"), PlateStore.open(tmp_path / "omz").read_well("C4")
    )
