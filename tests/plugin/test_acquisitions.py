"""Plates written by ngio with several acquisitions per well: every one shown, exact pixels."""

from __future__ import annotations

import json
import shutil
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.errors import AcquisitionNotFoundError, MetadataError
from napari_wellzarr.plugin._reader import read_plate
from napari_wellzarr.plugin.mosaic import DamagedWellWarning
from napari_wellzarr.plugin.view import META_KEY
from napari_wellzarr.storage.store import PlateStore
from tests.plugin.ngio_plates import (
    WELLS,
    multiplexed_plate,
    nuclei,
    round1,
    round2,
    round2_image,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

NAMES = [f"{r}{c}" for r, c in WELLS]


@pytest.fixture(scope="module", params=["0.4", "0.5"])
def ngio_plate(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp(f"ngio{request.param}") / "plate.zarr"
    return multiplexed_plate(root, request.param)


def layers_by_name(path: Path) -> dict[str, tuple[Any, dict[str, Any], str]]:
    return {meta["name"]: (data, meta, kind) for data, meta, kind in read_plate(path)}


def well_tile(layer: tuple[Any, dict[str, Any], str], well: str) -> np.ndarray:
    """The level-0 pixels of ``well`` in a mosaic layer, cut where its metadata says."""
    data, meta, _ = layer
    level0 = data[0] if meta.get("multiscale") else data
    info = meta["metadata"][META_KEY]
    (h, w), (py, px) = info["tile"], info["pitch"]
    r, c = info["wells"][well]
    return np.asarray(level0[(0,) * (level0.ndim - 2)][r * py : r * py + h, c * px : c * px + w])


def test_every_acquisition_is_shown_with_exact_pixels(ngio_plate: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean plate opens without any warning
        layers = layers_by_name(ngio_plate)
    assert list(layers) == [
        "round1: EdU",
        "round1: DAPI",
        "round1: nuclei",
        "round2: GFP",
        "round1: well_ROI_table",
        "plate map",
    ]
    assert layers["round1: nuclei"][2] == "labels"
    for i, well in enumerate(NAMES):
        np.testing.assert_array_equal(well_tile(layers["round1: EdU"], well), round1(i)[0])
        np.testing.assert_array_equal(well_tile(layers["round1: DAPI"], well), round1(i)[1])
        np.testing.assert_array_equal(well_tile(layers["round1: nuclei"], well), nuclei(i))
        np.testing.assert_array_equal(well_tile(layers["round2: GFP"], well), round2(i)[0])
    assert layers["round1: EdU"][0].dtype == np.uint16
    assert layers["round2: GFP"][0].dtype == np.uint8
    assert layers["round1: nuclei"][0].dtype == np.uint32
    r1, r2 = layers["round1: EdU"][1], layers["round2: GFP"][1]
    assert r1["scale"][-2:] == [0.5, 0.5]
    assert r2["scale"][-2:] == [0.65, 0.65]
    assert r1["metadata"][META_KEY]["acquisition"] == [0, "round1"]
    assert r2["metadata"][META_KEY]["acquisition"] == [1, "round2"]
    # The same wells at the same physical places, to within one pixel of either round.
    for well in NAMES:
        for axis in (0, 1):
            at = [
                m["metadata"][META_KEY]["wells"][well][axis]
                * m["metadata"][META_KEY]["pitch"][axis]
                * m["scale"][-2 + axis]
                for m in (r1, r2)
            ]
            assert abs(at[0] - at[1]) <= 0.65


def test_acquisitions_are_found_in_the_wells_when_the_plate_lists_none(tmp_path: Path) -> None:
    root = multiplexed_plate(tmp_path / "p.zarr")
    attrs = json.loads((root / ".zattrs").read_text())
    del attrs["plate"]["acquisitions"]
    (root / ".zattrs").write_text(json.dumps(attrs))
    layers = layers_by_name(root)
    assert [n for n in layers if n.startswith("acq")] == [
        "acq0: EdU", "acq0: DAPI", "acq0: nuclei", "acq1: GFP", "acq0: well_ROI_table"
    ]  # fmt: skip
    np.testing.assert_array_equal(well_tile(layers["acq1: GFP"], "C03"), round2(2)[0])


def test_store_reads_each_acquisition(ngio_plate: Path) -> None:
    store = PlateStore.open(ngio_plate)
    assert store.acquisitions() == [(0, "round1"), (1, "round2")]
    first, second = store.well_info("B04", 0), store.well_info("B04", 1)
    assert (first.n_channels, first.dtype, first.labels) == (2, np.uint16, ("nuclei",))
    assert (second.n_channels, second.dtype, second.labels) == (1, np.uint8, ())
    assert first.acquisition_ids == (0, 1)
    np.testing.assert_array_equal(store.read_plane("B04", c=1, acquisition=0), round1(1)[1])
    np.testing.assert_array_equal(store.read_plane("B04", acquisition=1), round2(1)[0])
    with pytest.raises(AcquisitionNotFoundError, match="B04 has no image of acquisition 7"):
        store.well_info("B04", 7)


def test_labels_and_acquisitions_on_some_wells_only(tmp_path: Path) -> None:
    root = multiplexed_plate(tmp_path / "p.zarr", labelled=(0, 2), round2_wells=(0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # wells not imaged in a round, or unlabelled: normal
        layers = layers_by_name(root)
        assert not well_tile(layers["round2: GFP"], "C03").any()
    assert "round2: GFP" in layers
    np.testing.assert_array_equal(well_tile(layers["round1: nuclei"], "B03"), nuclei(0))
    assert not well_tile(layers["round1: nuclei"], "B04").any()  # no labels: blank, no warning
    np.testing.assert_array_equal(well_tile(layers["round1: EdU"], "B04"), round1(1)[0])
    np.testing.assert_array_equal(well_tile(layers["round2: GFP"], "B04"), round2(1)[0])
    np.testing.assert_array_equal(well_tile(layers["round1: EdU"], "C03"), round1(2)[0])


def test_missing_label_array_warns_for_that_well_and_label_only(tmp_path: Path) -> None:
    root = multiplexed_plate(tmp_path / "p.zarr")
    shutil.rmtree(root / "B" / "04" / "0" / "labels" / "nuclei")  # still listed
    layers = layers_by_name(root)
    with pytest.warns(DamagedWellWarning, match=r"B04 label nuclei .*no label group"):
        np.asarray(layers["round1: nuclei"][0])
    np.testing.assert_array_equal(well_tile(layers["round1: nuclei"], "C03"), nuclei(2))
    np.testing.assert_array_equal(well_tile(layers["round1: EdU"], "B04"), round1(1)[0])


def test_well_of_another_dtype_is_blank_with_a_warning(tmp_path: Path) -> None:
    root = multiplexed_plate(tmp_path / "p.zarr")
    round2_image(root / "C" / "03" / "1", 2, 300, "uint16")
    layers = layers_by_name(root)
    with pytest.warns(DamagedWellWarning, match=r"C03 .*uint16.*uint8"):
        gfp = well_tile(layers["round2: GFP"], "C03")
    assert not gfp.any()
    np.testing.assert_array_equal(well_tile(layers["round2: GFP"], "B04"), round2(1)[0])
    np.testing.assert_array_equal(well_tile(layers["round1: EdU"], "C03"), round1(2)[0])


def test_well_without_acquisition_ids_warns_naming_it(tmp_path: Path) -> None:
    root = multiplexed_plate(tmp_path / "p.zarr")
    attrs_path = root / "B" / "04" / ".zattrs"
    attrs = json.loads(attrs_path.read_text())
    for image in attrs["well"]["images"]:
        del image["acquisition"]
    attrs_path.write_text(json.dumps(attrs))
    with pytest.warns(DamagedWellWarning, match=r"B04.*name no acquisition"):
        layers = layers_by_name(root)
    for name in ("round1: EdU", "round2: GFP"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert not well_tile(layers[name], "B04").any()
    np.testing.assert_array_equal(well_tile(layers["round2: GFP"], "B03"), round2(0)[0])
    store = PlateStore.open(root)
    with pytest.raises(MetadataError, match="B04"):
        store.well_info("B04", 1)


# -- tables and conditions ------------------------------------------------------------


def test_tables_are_listed_rois_drawn_and_conditions_named(ngio_plate: Path) -> None:
    layers = layers_by_name(ngio_plate)
    rois, _, kind = layers["round1: well_ROI_table"]
    assert kind == "shapes"
    edu = layers["round1: EdU"][1]["metadata"][META_KEY]
    (h, w), (py, px) = edu["tile"], edu["pitch"]
    expected = {}
    for well in NAMES:
        r, c = edu["wells"][well]
        # ngio's image ROI covers the whole (stitched) image: 96 x 64 pixels of 0.5 um.
        expected[well] = [[r * py, c * px], [r * py, c * px + w], [r * py + h, c * px + w],
                          [r * py + h, c * px]]  # fmt: skip
    features = layers["round1: well_ROI_table"][1]["features"]
    assert sorted(features["well"]) == sorted(NAMES)
    for corners, well in zip(rois, features["well"], strict=True):
        np.testing.assert_allclose(corners, expected[well])
    plate_map = layers["plate map"][1]
    by_well = dict(
        zip(plate_map["features"]["well"], plate_map["features"]["condition"], strict=True)
    )
    assert by_well["B03"] == "drug=DMSO, dose_uM=0"
    assert by_well["B04"] == "drug=taxol, dose_uM=1"
    assert by_well["C03"] == "drug=DMSO, dose_uM=0"
    assert by_well["A01"] == ""
    assert plate_map["text"]["string"] == "{well}\n{condition}"
    listed = {(t["name"], t["type"]) for t in plate_map["metadata"][META_KEY]["tables"]}
    assert listed == {("condition_table", "condition_table"), ("well_ROI_table", "roi_table")}


def test_image_tables_are_looked_for_only_in_the_wells_that_have_some(
    ngio_plate: Path, make_plate: Callable[..., Path]
) -> None:
    from napari_wellzarr.storage.tables import wells_with_tables

    holders = wells_with_tables(ngio_plate)
    with PlateStore.open(ngio_plate) as store:
        # every well of the fixture has a well ROI table (drawn by the test above)
        assert holders == {store.well_path(well) for well in NAMES}
    assert wells_with_tables(make_plate()) == frozenset()  # our plates: no table


def _list_table(tables_dir: Path, name: str) -> None:
    attrs_path = tables_dir / ".zattrs"
    attrs = json.loads(attrs_path.read_text())
    attrs["tables"].append(name)
    attrs_path.write_text(json.dumps(attrs))


def test_tables_that_are_not_what_they_claim_warn_and_are_left_out(tmp_path: Path) -> None:
    from napari_wellzarr.plugin.annotations import TableWarning

    root = multiplexed_plate(tmp_path / "p.zarr")
    # A "roi_table" in B04 that is in fact the condition table (no ROI columns).
    fake = root / "B" / "04" / "0" / "tables" / "fake_ROI_table"
    shutil.copytree(root / "tables" / "condition_table", fake)
    attrs = json.loads((fake / ".zattrs").read_text())
    (fake / ".zattrs").write_text(json.dumps({**attrs, "type": "roi_table"}))
    _list_table(fake.parent, "fake_ROI_table")
    # A "condition_table" that names no wells.
    bad = root / "tables" / "bad_conditions"
    shutil.copytree(root / "tables" / "condition_table", bad)
    (bad / ".zmetadata").unlink()  # consolidated metadata would still name the columns
    obs = json.loads((bad / "obs" / ".zattrs").read_text())
    (bad / "obs" / ".zattrs").write_text(json.dumps({**obs, "column-order": ["drug"]}))
    _list_table(root / "tables", "bad_conditions")
    with pytest.warns(TableWarning) as caught:
        layers = layers_by_name(root)
    messages = [str(w.message) for w in caught]
    assert any("bad_conditions" in m and "names no wells" in m for m in messages), messages
    assert any(
        "well B04" in m and "fake_ROI_table" in m and "x_micrometer" in m for m in messages
    ), messages
    assert "fake_ROI_table" not in {n.split(": ")[-1] for n in layers}
    by_well = dict(
        zip(layers["plate map"][1]["features"]["well"],
            layers["plate map"][1]["features"]["condition"], strict=True)
    )  # fmt: skip
    assert by_well["B04"] == "drug=taxol, dose_uM=1"  # the good condition table still counts
    np.testing.assert_array_equal(well_tile(layers["round1: EdU"], "B04"), round1(1)[0])
    assert len(layers["round1: well_ROI_table"][0]) == 3


@pytest.mark.gui
def test_the_status_bar_names_the_condition_of_the_well_under_the_pointer(
    make_napari_viewer: Any, ngio_plate: Path
) -> None:
    viewer = make_napari_viewer()
    viewer.open(str(ngio_plate), plugin="napari-wellzarr")
    plate_map = viewer.layers["plate map"]
    edu = viewer.layers["round1: EdU"]
    info = edu.metadata[META_KEY]
    r, c = info["wells"]["B04"]
    (h, w), (py, px) = info["tile"], info["pitch"]
    world = edu.data_to_world((0, 0, r * py + h // 3, c * px + w // 4))
    viewer.layers.selection.active = plate_map
    status = plate_map.get_status(tuple(world), world=True)
    assert "well: B04" in status["coordinates"]
    assert "condition: drug=taxol, dose_uM=1" in status["coordinates"]


def test_saving_one_acquisition_writes_a_plate_of_that_acquisition(
    ngio_plate: Path, tmp_path: Path
) -> None:
    from napari_wellzarr.plugin._writer import write_layers

    layers = read_plate(ngio_plate)
    round2_only = [t for t in layers if t[1]["name"].startswith("round2: ")]
    write_layers(str(tmp_path / "round2.zarr"), round2_only)
    store = PlateStore.open(tmp_path / "round2.zarr")
    assert sorted(store.wells()) == sorted(NAMES)
    for i, well in enumerate(NAMES):
        np.testing.assert_array_equal(store.read_plane(well), round2(i)[0])
        assert [c.label for c in store.well_info(well).channels] == ["GFP"]


def test_roi_tables_of_every_well_are_drawn_when_the_first_well_has_none(
    ngio_plate: Path, tmp_path: Path
) -> None:
    """More wells than ngio's plate has, a first well without tables: every ROI is drawn."""
    from napari_wellzarr.storage.config import NgffVersion, StorageConfig

    version = PlateStore.open(ngio_plate).ngff_version
    wells = ["A01", "A02", "B05", "C07", "D02", "D09"]
    root = tmp_path / "ours.zarr"
    with PlateStore.create(root, StorageConfig(ngff_version=NgffVersion(version))) as store:
        for i, well in enumerate(wells):
            store.write_well(well, round1(i)[:, None][None], pixel_size=0.5)
    for well in wells[1:]:  # A01 has no tables
        shutil.copytree(
            ngio_plate / "B" / "03" / "0" / "tables", root / well[0] / well[1:] / "0" / "tables"
        )
    layers = layers_by_name(root)
    data, meta, kind = layers["well_ROI_table"]
    assert kind == "shapes"
    assert sorted(meta["features"]["well"]) == sorted(wells[1:])
    info = next(iter(layers.values()))[1]["metadata"][META_KEY]  # the first channel's
    (h, w), (py, px) = info["tile"], info["pitch"]
    for corners, well in zip(data, meta["features"]["well"], strict=True):
        r, c = info["wells"][well]
        y, x = r * py, c * px
        expected = [[y, x], [y, x + w], [y + h, x + w], [y + h, x]]
        np.testing.assert_allclose(corners, expected)
