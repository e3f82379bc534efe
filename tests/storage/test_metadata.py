"""OME-NGFF metadata: the data classes, their parsers, and the JSON our plates carry on disk.

On-disk checks read the raw JSON documents (not our parser), against the spec's rules:
- 0.5 (zarr v3): everything under attributes.ome with ome.version "0.5", plate.version "0.5";
  arrays carry dimension_names equal to the axis names.
- 0.4 (zarr v2): .zgroup/.zattrs/.zarray; plate, well and each multiscale carry version "0.4".
- plate.rows / plate.columns list EVERY physical row and column in plate order; each well's
  path is "<rows[rowIndex]>/<columns[columnIndex]>".
"""

from __future__ import annotations

import json
import string
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_wellzarr.core import Channel, MetadataError, PlateStore
from napari_wellzarr.storage.metadata import (
    Axis,
    Dataset,
    ImageMeta,
    Multiscale,
    PlateMeta,
    PlateWell,
    WellMeta,
    find_block,
    ome_attrs,
    parse_image,
    parse_plate,
    parse_well,
)
from napari_wellzarr.testing.strategies import ngff_versions, plate_metas

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import numpy as np

ROWS_1536 = [*string.ascii_uppercase, "AA", "AB", "AC", "AD", "AE", "AF"]


# -- plate block ----------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(plate_metas(), ngff_versions)
def test_plate_block_round_trips(meta: PlateMeta, version: str) -> None:
    attrs = json.loads(json.dumps(ome_attrs(version, {"plate": meta.to_block()})))
    parsed, found_version = parse_plate(attrs)
    assert parsed == meta
    assert found_version == version
    if version == "0.5":
        assert attrs["ome"]["version"] == "0.5"
        assert attrs["ome"]["plate"]["version"] == "0.5"
    else:
        assert attrs["plate"]["version"] == "0.4"


@settings(max_examples=50, deadline=None)
@given(plate_metas(), st.lists(st.tuples(st.integers(0, 39), st.integers(0, 59)), max_size=10))
def test_with_wells_dedupes_and_orders(meta: PlateMeta, extra: list[tuple[int, int]]) -> None:
    extra_wells = [
        PlateWell(meta.well_path(r, c), r, c)
        for r, c in extra
        if r < len(meta.rows) and c < len(meta.columns)
    ]
    merged = meta.with_wells([*extra_wells, *meta.wells, *extra_wells])
    paths = [w.path for w in merged.wells]
    assert len(paths) == len(set(paths))
    assert set(paths) == {w.path for w in (*meta.wells, *extra_wells)}
    keys = [(w.row_index, w.column_index) for w in merged.wells]
    assert keys == sorted(keys)


def _plate_attrs(
    wells: list[dict[str, Any]],
    rows: tuple[str, ...] = ("A", "B"),
    cols: tuple[str, ...] = ("01", "02"),
) -> dict[str, Any]:
    return {
        "plate": {
            "version": "0.4",
            "rows": [{"name": r} for r in rows],
            "columns": [{"name": c} for c in cols],
            "wells": wells,
        }
    }


@pytest.mark.parametrize(
    ("wells", "culprit"),
    [
        ([{"path": "../x", "rowIndex": 0, "columnIndex": 0}], "../x"),
        ([{"path": "A/..", "rowIndex": 0, "columnIndex": 0}], "A/.."),
        ([{"path": "/A/01", "rowIndex": 0, "columnIndex": 0}], "/A/01"),
        ([{"path": "A/01/0", "rowIndex": 0, "columnIndex": 0}], "A/01/0"),
        ([{"path": "B/01", "rowIndex": 0, "columnIndex": 0}], "B/01"),
        ([{"path": "A/02", "rowIndex": 0, "columnIndex": 0}], "A/02"),
        ([{"path": "A/01", "rowIndex": 5, "columnIndex": 0}], "A/01"),
        ([{"path": "A/01", "rowIndex": -1, "columnIndex": 0}], "A/01"),
        ([{"path": "A/01", "rowIndex": True, "columnIndex": 0}], "A/01"),
        ([{"path": "C/01"}], "C/01"),
        ([{"path": 7, "rowIndex": 0, "columnIndex": 0}], "7"),
    ],
)
def test_bad_plate_wells_are_refused_naming_them(wells: list[dict[str, Any]], culprit: str) -> None:
    with pytest.raises(MetadataError) as err:
        parse_plate(_plate_attrs(wells), where="plate.zarr")
    assert culprit in str(err.value)
    assert "plate.zarr" in str(err.value)


def test_missing_indices_are_derived_from_names() -> None:
    meta, _ = parse_plate(_plate_attrs([{"path": "B/02"}]))
    assert meta.wells == (PlateWell("B/02", 1, 1),)


@pytest.mark.parametrize(
    "attrs",
    [
        {"plate": {"rows": [{"name": "A-1"}], "columns": [{"name": "01"}], "wells": []}},
        {"plate": {"rows": "AB", "columns": [{"name": "01"}], "wells": []}},
        {"plate": {"rows": [{"name": "A"}], "columns": [{"name": "01"}], "wells": {}}},
        {"plate": {"rows": [{"name": "A"}], "columns": [{}], "wells": []}},
        {"plate": []},
    ],
)
def test_malformed_plate_blocks_are_refused(attrs: dict[str, Any]) -> None:
    with pytest.raises(MetadataError):
        parse_plate(attrs)


def test_no_plate_block() -> None:
    with pytest.raises(MetadataError, match="plate"):
        parse_plate({"ome": {"version": "0.5", "well": {}}})


def test_find_block_prefers_ome_namespace() -> None:
    attrs = {"ome": {"version": "0.5", "well": {"images": [{"path": "0"}]}}, "well": {"images": []}}
    block, version = find_block(attrs, "well")
    assert block == {"images": [{"path": "0"}]}
    assert version == "0.5"
    assert find_block({}, "plate") == (None, None)


# -- well block -----------------------------------------------------------------------


def test_well_block_round_trips(ngff_version: str) -> None:
    meta = WellMeta(("0", "1", "f2"))
    parsed, found = parse_well(ome_attrs(ngff_version, {"well": meta.to_block()}), "B03")
    assert parsed.images == meta.images
    assert found == ngff_version


@pytest.mark.parametrize(
    "images", [[], [{"path": "../0"}], [{"path": "0/1"}], [{}], "0", [{"path": ""}]]
)
def test_bad_well_blocks_are_refused_naming_the_well(images: object) -> None:
    with pytest.raises(MetadataError) as err:
        parse_well({"well": {"images": images, "version": "0.4"}}, "C07")
    assert "C07" in str(err.value)


# -- image block ----------------------------------------------------------------------


def _image(version: str, n_levels: int = 2) -> ImageMeta:
    axes = (
        Axis("c", "channel"),
        Axis("z", "space", "micrometer"),
        Axis("y", "space", "micrometer"),
        Axis("x", "space", "micrometer"),
    )
    datasets = tuple(Dataset(str(i), (1.0, 2.5, 0.5 * 2**i, 0.25 * 2**i)) for i in range(n_levels))
    channels = (Channel("DAPI", "0000ff", (0.0, 65535.0, 100.0, 2000.0)), Channel("GFP", "#00FF00"))
    return ImageMeta(Multiscale(axes, datasets, f"img {version}"), channels)


def test_image_block_round_trips(ngff_version: str) -> None:
    meta = _image(ngff_version)
    attrs = json.loads(json.dumps(ome_attrs(ngff_version, meta.blocks())))
    parsed, found = parse_image(attrs, "B03/0")
    assert found == ngff_version
    assert parsed == meta
    assert parsed.channels[0].color == "0000FF"
    assert parsed.channels[1].color == "00FF00"
    if ngff_version == "0.4":
        assert attrs["multiscales"][0]["version"] == "0.4"


@pytest.mark.parametrize(
    ("mutate", "culprit"),
    [
        (lambda ms: ms.pop("datasets"), "datasets"),
        (lambda ms: ms.update(datasets=[]), "datasets"),
        (lambda ms: ms.update(axes=[{"name": "x", "type": "space"}]), "axes"),
        (lambda ms: ms["datasets"][0].update(path="../0"), "../0"),
        (lambda ms: ms["datasets"][1]["coordinateTransformations"][0].update(scale=[1, 2]), "'1'"),
        (
            lambda ms: ms["datasets"][0]["coordinateTransformations"][0].update(
                scale=[1, 1, 1, "a"]
            ),
            "'0'",
        ),
        (lambda ms: ms["axes"][0].update(name=""), "axis"),
    ],
)
def test_bad_image_blocks_are_refused_naming_the_culprit(
    mutate: Callable[[dict[str, Any]], object], culprit: str
) -> None:
    attrs = json.loads(json.dumps(ome_attrs("0.5", _image("0.5").blocks())))
    mutate(attrs["ome"]["multiscales"][0])
    with pytest.raises(MetadataError) as err:
        parse_image(attrs, "B03/0")
    assert "B03/0" in str(err.value)
    assert culprit in str(err.value)


def test_image_without_multiscales() -> None:
    with pytest.raises(MetadataError, match="multiscales"):
        parse_image({"ome": {"version": "0.5", "omero": {}}}, "B03/0")


@pytest.mark.parametrize("color", ["red", "FF00F", "GG0000", 255, "#12345678"])
def test_channel_colour_must_be_six_hex_digits(color: object) -> None:
    with pytest.raises(MetadataError) as err:
        Channel("DAPI", color)  # type: ignore[arg-type]
    assert "DAPI" in str(err.value)


def test_omero_parsing_is_lenient_about_bad_entries() -> None:
    attrs = ome_attrs("0.5", _image("0.5").blocks())
    attrs["ome"]["omero"]["channels"][1]["color"] = "not a colour"
    attrs["ome"]["omero"]["channels"][0]["window"] = {"min": 0, "max": "x"}
    parsed, _ = parse_image(attrs, "B03/0")
    assert len(parsed.channels) == 2
    assert parsed.channels[0].label == "DAPI"
    assert parsed.channels[0].window is None
    assert len(parsed.channels[1].color) == 6


# -- what our plates carry on disk -----------------------------------------------------


def _doc(node: Path, version: str) -> dict[str, Any]:
    """The raw attributes of a group or array, read as plain JSON."""
    if version == "0.5":
        return json.loads((node / "zarr.json").read_text())["attributes"]
    return json.loads((node / ".zattrs").read_text()) if (node / ".zattrs").exists() else {}


def _plate_block(root: Path, version: str) -> dict[str, Any]:
    attrs = _doc(root, version)
    return attrs["ome"]["plate"] if version == "0.5" else attrs["plate"]


def check_plate_layout(
    root: Path, version: str, rows: list[str], columns: list[str], wells: list[str]
) -> None:
    block = _plate_block(root, version)
    assert [r["name"] for r in block["rows"]] == rows
    assert [c["name"] for c in block["columns"]] == columns
    listed = []
    for entry in block["wells"]:
        row, col = entry["path"].split("/")
        assert rows[entry["rowIndex"]] == row
        assert columns[entry["columnIndex"]] == col
        listed.append((entry["rowIndex"], entry["columnIndex"]))
    assert listed == sorted(listed), "wells not in plate order"
    assert [b["path"] for b in block["wells"]] == wells


def test_sparse_96_plate_lists_every_row_and_column(
    make_plate: Callable[..., Path], ngff_version: str, pixels: Callable[..., np.ndarray]
) -> None:
    wells = {name: pixels((1, 1, 1, 8, 8)) for name in ("H12", "B10", "B02")}
    root = make_plate(wells, ngff_version=ngff_version, plate=96)
    check_plate_layout(
        root,
        ngff_version,
        list("ABCDEFGH"),
        [f"{i:02d}" for i in range(1, 13)],
        ["B/02", "B/10", "H/12"],
    )


def test_1536_plate_lists_rows_past_z(
    make_plate: Callable[..., Path], ngff_version: str, pixels: Callable[..., np.ndarray]
) -> None:
    wells = {name: pixels((1, 1, 1, 4, 4)) for name in ("AF48", "A01", "AA01", "Z48")}
    root = make_plate(wells, ngff_version=ngff_version, plate=1536)
    check_plate_layout(
        root,
        ngff_version,
        ROWS_1536,
        [f"{i:02d}" for i in range(1, 49)],
        ["A/01", "Z/48", "AA/01", "AF/48"],
    )
    assert (root / "AF" / "48").is_dir()


def test_empty_plate_has_no_plate_block_until_its_first_well(
    make_plate: Callable[..., Path], ngff_version: str, pixels: Callable[..., np.ndarray]
) -> None:
    # The plate schema wants "wells" to hold at least one entry, so a plate with no
    # wells yet must not carry an OME plate block at all (an empty one is invalid).
    root = make_plate(ngff_version=ngff_version, plate=24)
    attrs = _doc(root, ngff_version)
    assert "plate" not in attrs
    assert "plate" not in attrs.get("ome", {})
    store = PlateStore.open(root)
    assert store.rows == tuple("ABCD")
    assert store.columns == tuple(f"{i:02d}" for i in range(1, 7))
    assert store.wells() == []
    with PlateStore.open(root, "r+") as writer:
        writer.write_well("D06", pixels((1, 1, 1, 4, 4)))
    check_plate_layout(
        root, ngff_version, list("ABCD"), [f"{i:02d}" for i in range(1, 7)], ["D/06"]
    )


@pytest.mark.parametrize("fields", ["stacked", "per-field"])
def test_v05_documents(
    make_plate: Callable[..., Path], fields: str, pixels: Callable[..., np.ndarray]
) -> None:
    wells = {"C04": pixels((2, 1, 1, 16, 16))}
    root = make_plate(wells, ngff_version="0.5", fields=fields, pyramid_levels=2)
    assert not list(root.rglob(".zgroup"))
    assert not list(root.rglob(".zarray"))
    for doc_path in root.rglob("zarr.json"):
        doc = json.loads(doc_path.read_text())
        assert doc["zarr_format"] == 3
        ome = doc.get("attributes", {}).get("ome")
        if ome is not None:
            assert ome["version"] == "0.5", doc_path
    assert _doc(root, "0.5")["ome"]["plate"]["version"] == "0.5"
    well = root / "C" / "04"
    images = [i["path"] for i in _doc(well, "0.5")["ome"]["well"]["images"]]
    assert images == (["0"] if fields == "stacked" else ["0", "1"])
    for image in images:
        ms = _doc(well / image, "0.5")["ome"]["multiscales"][0]
        names = [a["name"] for a in ms["axes"]]
        assert all("type" in a for a in ms["axes"]), "every axis needs a type"
        assert names[-3:] == ["z", "y", "x"]
        assert ("field" in names) == (fields == "stacked")
        for ds in ms["datasets"]:
            array = json.loads((well / image / ds["path"] / "zarr.json").read_text())
            assert array["node_type"] == "array"
            assert array["dimension_names"] == names
            assert len(ds["coordinateTransformations"][0]["scale"]) == len(names)


@pytest.mark.parametrize("fields", ["stacked", "per-field"])
def test_v04_documents(
    make_plate: Callable[..., Path], fields: str, pixels: Callable[..., np.ndarray]
) -> None:
    wells = {"C04": pixels((2, 1, 1, 16, 16))}
    root = make_plate(wells, ngff_version="0.4", fields=fields, pyramid_levels=2)
    assert not list(root.rglob("zarr.json"))
    assert (root / ".zgroup").is_file()
    assert _plate_block(root, "0.4")["version"] == "0.4"
    well = root / "C" / "04"
    well_block = _doc(well, "0.4")["well"]
    assert well_block["version"] == "0.4"
    for image in (i["path"] for i in well_block["images"]):
        ms = _doc(well / image, "0.4")["multiscales"][0]
        assert ms["version"] == "0.4"
        for ds in ms["datasets"]:
            zarray = json.loads((well / image / ds["path"] / ".zarray").read_text())
            assert zarray["zarr_format"] == 2
            assert len(zarray["shape"]) == len(ms["axes"])
