"""Bad input, damaged plates and interrupted writes.

Every failure must be an error of the project's own type whose message names the culprit
(the well, the option, the file, the array and chunk), and must leave the rest of the
plate readable: a good well written before is still listed and still reads bit-identical.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr

from napari_wellzarr.core import (
    CorruptDataError,
    MetadataError,
    PlaneNotFoundError,
    PlateExistsError,
    PlateNotFoundError,
    PlateStore,
    StorageConfig,
    StoreReadOnlyError,
    WellDataError,
    WellExistsError,
    WellNameError,
    WellNotFoundError,
    WellZarrError,
)
from napari_wellzarr.storage import fsio, writing

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

GOOD = "A01"
SHAPE = (2, 2, 2, 16, 24)


def meta_file(node: Path, version: str) -> Path:
    """The file holding a group's attributes."""
    return node / ("zarr.json" if version == "0.5" else ".zattrs")


def read_attrs(node: Path, version: str) -> dict[str, Any]:
    doc = json.loads(meta_file(node, version).read_text())
    return doc["attributes"] if version == "0.5" else doc


def write_attrs(node: Path, version: str, attrs: dict[str, Any]) -> None:
    if version == "0.5":
        doc = json.loads((node / "zarr.json").read_text())
        doc["attributes"] = attrs
        (node / "zarr.json").write_text(json.dumps(doc))
    else:
        (node / ".zattrs").write_text(json.dumps(attrs))


def plate_block(attrs: dict[str, Any], version: str) -> dict[str, Any]:
    return attrs["ome"]["plate"] if version == "0.5" else attrs["plate"]


def assert_good_well_reads(root: Path, good: np.ndarray) -> None:
    store = PlateStore.open(root)
    assert GOOD in store.wells()
    assert np.array_equal(store.read_well(GOOD), good)
    assert np.array_equal(store.read_plane(GOOD, 1, 1, 1), good[1, 1, 1])


def assert_absent(root: Path, well_path: str = "B/02", name: str = "B02") -> None:
    """The well is neither listed nor on disk, and no staging is left behind."""
    store = PlateStore.open(root)
    assert name not in store.wells()
    assert not (root / well_path).exists()
    staging = root / fsio.STAGING_DIR
    assert not staging.exists() or not any(staging.iterdir())


@pytest.fixture
def plate(
    make_plate: Callable[..., Path], pixels: Callable[..., np.ndarray], ngff_version: str
) -> tuple[Path, np.ndarray]:
    """A 24-well plate holding one good well, A01."""
    good = pixels(SHAPE)
    return make_plate({GOOD: good}, ngff_version=ngff_version, plate=24), good


@pytest.fixture
def two_wells(
    make_plate: Callable[..., Path], pixels: Callable[..., np.ndarray], ngff_version: str
) -> tuple[Path, np.ndarray, np.ndarray]:
    """A plate holding A01 (good) and B02 (to be damaged)."""
    good, victim = pixels(SHAPE), pixels(SHAPE)
    root = make_plate({GOOD: good, "B02": victim}, ngff_version=ngff_version, plate=24)
    return root, good, victim


# -- pixel data that does not fit a well ---------------------------------------------------


@pytest.mark.parametrize(
    ("data", "culprit"),
    [
        (np.zeros((1, 1, 1, 4, 4), dtype=bool), "bool"),
        (np.zeros((1, 1, 1, 4, 4), dtype=np.complex64), "complex64"),
        (np.empty((1, 1, 1, 2, 2), dtype=object), "object"),
        (np.zeros((1, 1, 1, 4, 4), dtype=np.float16), "float16"),
        (np.zeros((1, 1, 1, 4, 4), dtype="U1"), "<U1"),
        (np.zeros((32, 48), "u2"), "(32, 48)"),
        (np.zeros((1, 32, 48), "u2"), "(1, 32, 48)"),
        (np.zeros((1, 1, 32, 48), "u2"), "(1, 1, 32, 48)"),
        (np.zeros((1, 1, 1, 1, 1, 8, 8), "u2"), "(1, 1, 1, 1, 1, 8, 8)"),
        (np.zeros((1, 0, 1, 8, 8), "u2"), "empty axis"),
        (np.zeros((1, 1, 1, 8, 0), "u2"), "empty axis"),
        ("not pixels", "str"),
        (object(), "object"),
    ],
)
def test_wrong_well_data_is_refused(
    plate: tuple[Path, np.ndarray], data: object, culprit: str
) -> None:
    root, good = plate
    with PlateStore.open(root, "r+") as store, pytest.raises(WellDataError) as err:
        store.write_well("B02", data)
    assert "B02" in str(err.value)
    assert culprit in str(err.value)
    assert_absent(root)
    assert_good_well_reads(root, good)


def planes(n: int, shape: tuple[int, int] = (8, 8), dtype: str = "u2") -> list[np.ndarray]:
    return [np.full(shape, i + 1, dtype) for i in range(n)]


def test_duplicate_coordinates_name_both_planes(plate: tuple[Path, np.ndarray]) -> None:
    root, good = plate
    p = planes(3)
    with PlateStore.open(root, "r+") as store:
        with pytest.raises(WellDataError) as err:
            store.write_planes(
                "B02",
                [((0, 0, 0), p[0]), ((0, 1, 0), p[1]), ((0, 0, 0), p[2])],
                names=["a.tif", "b.tif", "c.tif"],
            )
        assert "'a.tif'" in str(err.value)
        assert "'c.tif'" in str(err.value)
        assert "'b.tif'" not in str(err.value)
        with pytest.raises(WellDataError) as err:
            store.write_planes("B02", [((0, 0, 0), p[0]), ((0, 1, 0), p[1]), ((0, 0, 0, 0), p[2])])
        # Without names the planes are named by their position in the list.
        assert "#0" in str(err.value)
        assert "#2" in str(err.value)
    assert_absent(root)
    assert_good_well_reads(root, good)


@pytest.mark.parametrize(
    ("second", "culprit"),
    [
        (np.zeros((8, 9), "u2"), "(8, 9)"),
        (np.zeros((8, 8), "u1"), "uint8"),
        (np.zeros((8, 8), "f4"), "float32"),
    ],
)
def test_planes_of_mixed_shape_or_dtype_name_both(
    plate: tuple[Path, np.ndarray], second: np.ndarray, culprit: str
) -> None:
    root, good = plate
    with PlateStore.open(root, "r+") as store, pytest.raises(WellDataError) as err:
        store.write_planes(
            "B02",
            [((0, 0, 0), planes(1)[0]), ((0, 0, 1), second)],
            names=["first.tif", "second.tif"],
        )
    message = str(err.value)
    assert "first.tif" in message
    assert "second.tif" in message
    assert culprit in message
    assert_absent(root)
    assert_good_well_reads(root, good)


@pytest.mark.parametrize(
    ("entries", "names", "culprit"),
    [
        ([((0, 0), np.zeros((8, 8), "u2"))], None, "(0, 0)"),
        ([((0, -1, 0), np.zeros((8, 8), "u2"))], None, "(0, -1, 0)"),
        ([((0, 0.5, 0), np.zeros((8, 8), "u2"))], None, "0.5"),
        ([("abc", np.zeros((8, 8), "u2"))], None, "abc"),
        ([((0, 0, 0), np.zeros((2, 8, 8), "u2"))], ["cube.tif"], "cube.tif"),
        (
            [((0, 0, 0), np.zeros((8, 8), "u2")), ((0, 0, 1), np.zeros((8, 8), "u2"))],
            ["only-one.tif"],
            "names",
        ),
        ([((0, 0, 0), np.zeros((8, 8), "u2"))], ["one.tif", "two.tif"], "names"),
        ([], None, "no planes"),
    ],
)
def test_bad_planes_are_refused(
    plate: tuple[Path, np.ndarray], entries: list[Any], names: list[str] | None, culprit: str
) -> None:
    root, good = plate
    with PlateStore.open(root, "r+") as store, pytest.raises(WellDataError) as err:
        store.write_planes("B02", entries, names=names)
    assert "B02" in str(err.value)
    assert culprit in str(err.value)
    assert_absent(root)
    assert_good_well_reads(root, good)


def test_strict_mode_refuses_missing_planes(plate: tuple[Path, np.ndarray]) -> None:
    root, good = plate
    p = planes(2)
    with PlateStore.open(root, "r+") as store:
        with pytest.raises(WellDataError) as err:
            store.write_planes("B02", [((0, 0, 0), p[0]), ((1, 1, 0), p[1])], strict=True)
        message = str(err.value)
        assert "B02" in message
        assert "2 plane(s) missing" in message
        assert "(0, 1, 0" in message
        assert "(1, 0, 0" in message
        with pytest.raises(WellDataError, match="too small"):
            store.write_planes("B02", [((3, 0, 0), p[0])], shape=(2, 1, 1))
    assert_absent(root)
    assert_good_well_reads(root, good)


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        ({"channels": ["only one"]}, "channel"),
        ({"channels": ["a", "b", "c"]}, "channel"),
        ({"pixel_size": -1.0}, "pixel_size"),
        ({"pixel_size": 0}, "pixel_size"),
        ({"pixel_size": (1.0, 2.0, 3.0)}, "pixel_size"),
        ({"pixel_size": "big"}, "pixel_size"),
        ({"z_step": 0}, "z_step"),
        ({"z_step": -2.0}, "z_step"),
        ({"plane_names": {"a/b.tif": (0, 0, 0)}}, "a/b.tif"),
        ({"plane_names": {"far.tif": (5, 0, 0)}}, "far.tif"),
        ({"plane_names": {"x.tif": (0, 0, 0), "y.tif": (0, 0, 0)}}, "y.tif"),
        ({"plane_names": {"bad.tif": (0, 0)}}, "bad.tif"),
    ],
)
def test_bad_well_metadata_is_refused(
    plate: tuple[Path, np.ndarray], kwargs: dict[str, Any], culprit: str
) -> None:
    root, good = plate
    with PlateStore.open(root, "r+") as store, pytest.raises(WellDataError) as err:
        store.write_well("B02", np.ones(SHAPE, "u2"), **kwargs)
    assert "B02" in str(err.value)
    assert culprit in str(err.value)
    assert_absent(root)
    assert_good_well_reads(root, good)


# -- well names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "culprit"),
    [("Z99", "4x6"), ("E01", "4x6"), ("A07", "4x6"), ("hello", None), ("A00", None), ("", None)],
)
def test_unknown_well_names(plate: tuple[Path, np.ndarray], name: str, culprit: str | None) -> None:
    root, good = plate
    with PlateStore.open(root, "r+") as store:
        for call in (
            lambda: store.write_well(name, np.ones((1, 1, 1, 4, 4), "u2")),
            lambda: store.read_well(name),
            lambda: store.well_info(name),
            lambda: store.read_plane(name),
        ):
            with pytest.raises(WellNameError) as err:
                call()
            assert repr(name) in str(err.value)
            if culprit is not None:
                assert culprit in str(err.value)
        assert name not in store
    assert_good_well_reads(root, good)


def test_reading_a_well_that_is_not_there(plate: tuple[Path, np.ndarray]) -> None:
    root, _ = plate
    store = PlateStore.open(root)
    with pytest.raises(WellNotFoundError) as err:
        store.read_well("D06")
    assert "D06" in str(err.value)


def test_reading_outside_the_well(plate: tuple[Path, np.ndarray]) -> None:
    root, _ = plate
    store = PlateStore.open(root)
    for key in ((2, 0, 0), (0, 2, 0), (0, 0, 2)):
        with pytest.raises(PlaneNotFoundError) as err:
            store.read_plane(GOOD, *key)
        assert GOOD in str(err.value)
    with pytest.raises(PlaneNotFoundError, match="level"):
        store.read_well(GOOD, level=1)
    with pytest.raises(PlaneNotFoundError, match=re.escape("nope.tif")):
        store.plane_key(GOOD, "nope.tif")


# -- existing wells, read-only stores, existing plates --------------------------------------


def test_existing_well_needs_overwrite(
    plate: tuple[Path, np.ndarray], pixels: Callable[..., np.ndarray]
) -> None:
    root, good = plate
    replacement = pixels((1, 3, 1, 8, 8), "float32")
    with PlateStore.open(root, "r+") as store:
        with pytest.raises(WellExistsError) as err:
            store.write_well(GOOD, replacement)
        assert GOOD in str(err.value)
        assert np.array_equal(store.read_well(GOOD), good)
    assert_good_well_reads(root, good)
    with PlateStore.open(root, "r+") as store:
        store.write_well(GOOD, replacement, overwrite=True)
        assert np.array_equal(store.read_well(GOOD), replacement)
    store = PlateStore.open(root)
    assert store.wells() == [GOOD]
    assert np.array_equal(store.read_well(GOOD), replacement)
    assert store.well_info(GOOD).dtype == np.float32


def test_same_session_rewrite_needs_overwrite(
    tmp_path: Path, pixels: Callable[..., np.ndarray]
) -> None:
    root = tmp_path / "p.zarr"
    first, second = pixels((1, 1, 1, 8, 8)), pixels((1, 1, 1, 8, 8))
    with PlateStore.create(root) as store:
        store.write_well("C03", first)
        with pytest.raises(WellExistsError, match="C03"):
            store.write_planes("C03", [((0, 0, 0), second[0, 0, 0])])
        assert np.array_equal(store.read_well("C03"), first)
        store.write_planes("C03", [((0, 0, 0), second[0, 0, 0])], overwrite=True)
        assert np.array_equal(store.read_well("C03"), second)
    assert np.array_equal(PlateStore.open(root).read_well("C03"), second)


def test_read_only_store_refuses_writes(
    plate: tuple[Path, np.ndarray], snapshot: Callable[[Path], dict[str, str]]
) -> None:
    root, good = plate
    before = snapshot(root)
    store = PlateStore.open(root)
    for call in (
        lambda: store.write_well("B02", np.ones((1, 1, 1, 4, 4), "u2")),
        lambda: store.write_planes("B02", [((0, 0, 0), np.ones((4, 4), "u2"))]),
        lambda: store.write_well(GOOD, np.ones((1, 1, 1, 4, 4), "u2"), overwrite=True),
        store.recover,
    ):
        with pytest.raises(StoreReadOnlyError) as err:
            call()
        assert str(root) in str(err.value)
    store.read_well(GOOD)
    store.well_info(GOOD)
    store.close()
    assert snapshot(root) == before, "a read-only session changed files"
    assert_good_well_reads(root, good)


def test_create_over_an_existing_plate_changes_nothing(
    plate: tuple[Path, np.ndarray], snapshot: Callable[[Path], dict[str, str]], tmp_path: Path
) -> None:
    root, good = plate
    before = snapshot(root)
    with pytest.raises(PlateExistsError) as err:
        PlateStore.create(root, StorageConfig(plate=96))
    assert str(root) in str(err.value)
    assert snapshot(root) == before
    assert_good_well_reads(root, good)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    with pytest.raises(PlateExistsError):
        PlateStore.create(a_file)
    assert a_file.read_text() == "keep me"
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("1,2")
    with pytest.raises(PlateExistsError):
        PlateStore.create(other)
    assert (other / "data.csv").read_text() == "1,2"
    with pytest.raises(PlateExistsError):
        PlateStore.create(other, overwrite=True)  # overwrite replaces plates, not folders
    assert (other / "data.csv").read_text() == "1,2"
    empty = tmp_path / "empty"
    empty.mkdir()
    PlateStore.create(empty).close()
    assert PlateStore.open(empty).wells() == []


def test_opening_what_is_not_a_plate(tmp_path: Path) -> None:
    missing = tmp_path / "missing.zarr"
    with pytest.raises(PlateNotFoundError, match=re.escape("missing.zarr")):
        PlateStore.open(missing)
    assert not missing.exists()
    a_file = tmp_path / "file.zarr"
    a_file.write_bytes(b"\0")
    with pytest.raises(PlateNotFoundError, match=re.escape("file.zarr")):
        PlateStore.open(a_file)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(PlateNotFoundError, match="folder"):
        PlateStore.open(folder)
    image = tmp_path / "image.zarr"
    zarr.open_group(str(image), mode="w").attrs["ome"] = {"version": "0.5", "multiscales": []}
    with pytest.raises(PlateNotFoundError, match=re.escape("image.zarr")):
        PlateStore.open(image)
    with pytest.raises(ValueError, match="mode"):
        PlateStore.open(image, "w")  # type: ignore[arg-type]


# -- damaged metadata ---------------------------------------------------------------------


def test_plate_metadata_not_json(plate: tuple[Path, np.ndarray], ngff_version: str) -> None:
    root, _ = plate
    doc = meta_file(root, ngff_version)
    doc.write_text('{"attributes": {"ome": ')
    with pytest.raises(CorruptDataError) as err:
        PlateStore.open(root)
    assert str(doc) in str(err.value)


def test_plate_metadata_not_an_object(plate: tuple[Path, np.ndarray], ngff_version: str) -> None:
    root, _ = plate
    meta_file(root, ngff_version).write_text("[1, 2]")
    with pytest.raises((MetadataError, CorruptDataError)) as err:
        PlateStore.open(root)
    assert str(root) in str(err.value)


def test_plate_metadata_deleted(plate: tuple[Path, np.ndarray], ngff_version: str) -> None:
    root, _ = plate
    meta_file(root, ngff_version).unlink()
    if ngff_version == "0.4":
        (root / ".zgroup").unlink()
    with pytest.raises(PlateNotFoundError, match=re.escape(str(root))):
        PlateStore.open(root)


@pytest.mark.parametrize(
    ("entry", "culprit"),
    [
        ({"path": "../x", "rowIndex": 0, "columnIndex": 0}, "../x"),
        ({"path": "A/01", "rowIndex": 1, "columnIndex": 0}, "A/01"),
        ({"path": "A/01", "rowIndex": 0, "columnIndex": 4}, "A/01"),
        ({"path": "A/01", "rowIndex": 40, "columnIndex": 0}, "A/01"),
    ],
)
def test_bad_wells_entry(
    plate: tuple[Path, np.ndarray], ngff_version: str, entry: dict[str, Any], culprit: str
) -> None:
    root, _ = plate
    attrs = read_attrs(root, ngff_version)
    plate_block(attrs, ngff_version)["wells"] = [entry]
    write_attrs(root, ngff_version, attrs)
    with pytest.raises(MetadataError) as err:
        PlateStore.open(root)
    assert culprit in str(err.value)


def test_well_metadata_deleted(
    two_wells: tuple[Path, np.ndarray, np.ndarray], ngff_version: str
) -> None:
    root, good, _ = two_wells
    well = root / "B" / "02"
    meta_file(well, ngff_version).unlink()
    if ngff_version == "0.4":
        (well / ".zgroup").unlink()
    store = PlateStore.open(root)
    with pytest.raises(WellZarrError) as err:
        store.read_well("B02")
    assert "B02" in str(err.value)
    assert_good_well_reads(root, good)


def test_well_metadata_not_json(
    two_wells: tuple[Path, np.ndarray, np.ndarray], ngff_version: str
) -> None:
    root, good, _ = two_wells
    doc = meta_file(root / "B" / "02", ngff_version)
    doc.write_text("{oops")
    with pytest.raises(CorruptDataError) as err:
        PlateStore.open(root).well_info("B02")
    assert str(doc) in str(err.value)
    assert_good_well_reads(root, good)


def test_well_images_list_empty(
    two_wells: tuple[Path, np.ndarray, np.ndarray], ngff_version: str
) -> None:
    root, good, _ = two_wells
    well = root / "B" / "02"
    attrs = read_attrs(well, ngff_version)
    (attrs["ome"] if ngff_version == "0.5" else attrs)["well"]["images"] = []
    write_attrs(well, ngff_version, attrs)
    with pytest.raises(MetadataError, match="B02"):
        PlateStore.open(root).read_well("B02")
    assert_good_well_reads(root, good)


def test_image_multiscales_missing(
    two_wells: tuple[Path, np.ndarray, np.ndarray], ngff_version: str
) -> None:
    root, good, _ = two_wells
    image = root / "B" / "02" / "0"
    attrs = read_attrs(image, ngff_version)
    (attrs["ome"] if ngff_version == "0.5" else attrs).pop("multiscales")
    write_attrs(image, ngff_version, attrs)
    with pytest.raises(MetadataError) as err:
        PlateStore.open(root).read_well("B02")
    assert "B02/0" in str(err.value)
    assert "multiscales" in str(err.value)
    assert_good_well_reads(root, good)


def test_array_metadata_missing_or_garbage(
    two_wells: tuple[Path, np.ndarray, np.ndarray], ngff_version: str
) -> None:
    root, good, _ = two_wells
    array_doc = (
        root / "B" / "02" / "0" / "0" / ("zarr.json" if ngff_version == "0.5" else ".zarray")
    )
    array_doc.write_text("not json at all")
    with pytest.raises(CorruptDataError) as err:
        PlateStore.open(root).read_well("B02")
    assert "B/02/0/0" in str(err.value)
    array_doc.unlink()
    with pytest.raises(CorruptDataError) as err:
        PlateStore.open(root).read_well("B02")
    assert "B/02/0/0" in str(err.value)
    assert_good_well_reads(root, good)


def test_listed_well_whose_directory_was_removed(
    two_wells: tuple[Path, np.ndarray, np.ndarray],
) -> None:
    root, good, _ = two_wells
    fsio.remove_tree(root / "B" / "02")
    store = PlateStore.open(root)
    assert "B02" in store.wells()
    with pytest.raises(WellNotFoundError) as err:
        store.read_well("B02")
    assert "B02" in str(err.value)
    assert_good_well_reads(root, good)


# -- damaged chunks ---------------------------------------------------------------------------


def chunk_files(array_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in array_dir.rglob("*")
        if p.is_file() and p.name not in ("zarr.json", ".zarray", ".zattrs")
    )


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(np.random.default_rng(7).bytes(len(data) + 13))


def chunk_file(ngff: str, coords: tuple[int, ...]) -> str:
    """The chunk (or shard) file of a chunk: ``c.1.1.0.0.0`` (0.5), ``1/1/0/0/0`` (0.4)."""
    if ngff == "0.5":
        return "c." + ".".join(map(str, coords))
    return "/".join(map(str, coords))


CHUNK_CASES = [
    ("0.4", "plane", "zstd", "truncate"),
    ("0.4", "plane", "zlib", "garbage"),
    ("0.4", "well", "gzip", "truncate"),
    ("0.4", "plane", "lz4", "truncate"),
    ("0.4", "plane", "none", "truncate"),
    ("0.4", "plane", "blosc-zstd", "garbage"),
    ("0.5", "plane", "zstd", "truncate"),
    ("0.5", "well", "gzip", "garbage"),
    ("0.5", "plane", "none", "truncate"),
    ("0.5", "plane", "blosc-lz4", "garbage"),
    ("0.5", "sharded", "blosc-zstd", "truncate"),
    ("0.5", "sharded", "blosc-zstd", "garbage"),
]


@pytest.mark.parametrize(("ngff", "chunks", "compressor", "how"), CHUNK_CASES)
def test_damaged_chunk_is_corrupt_data_naming_array_and_chunk(
    make_plate: Callable[..., Path],
    pixels: Callable[..., np.ndarray],
    ngff: str,
    chunks: str,
    compressor: str,
    how: str,
) -> None:
    good, victim = pixels(SHAPE), pixels(SHAPE)
    cfg = StorageConfig(ngff_version=ngff, chunks=chunks, compressor=compressor, plate=24)
    root = make_plate({GOOD: good, "B02": victim}, cfg)
    array_dir = root / "B" / "02" / "0" / "0"
    # The plane (field 1, c 1, z 0) lives in its own chunk, or in the well's only chunk/shard.
    target = array_dir / (
        chunk_file(ngff, (1, 1, 0, 0, 0) if chunks == "plane" else (0, 0, 0, 0, 0))
    )
    assert target in chunk_files(array_dir)
    damage(target, how)
    chunk_key = str(target.relative_to(array_dir))

    store = PlateStore.open(root)
    with pytest.raises(CorruptDataError) as err:
        store.read_plane("B02", 1, 1, 0)
    assert "B/02/0/0" in str(err.value)
    assert chunk_key in str(err.value)
    with pytest.raises(CorruptDataError) as err:
        store.read_well("B02")
    assert "B/02/0/0" in str(err.value)
    if chunks != "plane":
        assert chunk_key in str(err.value)
    else:
        # Other planes of the damaged well live in other chunks and still read.
        assert np.array_equal(store.read_plane("B02", 0, 1, 1), victim[0, 1, 1])
    assert_good_well_reads(root, good)


def test_whole_well_read_names_the_damaged_chunk(
    make_plate: Callable[..., Path], pixels: Callable[..., np.ndarray], ngff_version: str
) -> None:
    wells = {"B02": pixels(SHAPE)}
    root = make_plate(wells, ngff_version=ngff_version, chunks="plane", compressor="zstd")
    array_dir = root / "B" / "02" / "0" / "0"
    target = array_dir / chunk_file(ngff_version, (1, 1, 0, 0, 0))
    damage(target, "garbage")
    with pytest.raises(CorruptDataError) as err:
        PlateStore.open(root).read_well("B02")
    assert str(target.relative_to(array_dir)) in str(err.value), (
        f"the message names another chunk: {err.value}"
    )


@pytest.mark.parametrize("compressor", ["blosc-zstd", "blosc-lz4"])
def test_truncated_blosc_chunks_never_read_silently(
    make_plate: Callable[..., Path],
    pixels: Callable[..., np.ndarray],
    ngff_version: str,
    compressor: str,
) -> None:
    # Blosc 1 trusts the compressed size in its header and reads past the end of a short
    # buffer; the damage must still be reported, never returned as pixels.
    data = pixels(SHAPE)
    root = make_plate(
        {"B02": data}, ngff_version=ngff_version, chunks="plane", compressor=compressor
    )
    for path in chunk_files(root / "B" / "02" / "0" / "0"):
        damage(path, "truncate")
    store = PlateStore.open(root)
    silent = []
    for f, c, z in np.ndindex(SHAPE[:3]):
        try:
            plane = store.read_plane("B02", f, c, z)
        except CorruptDataError:
            continue
        silent.append(((f, c, z), int((plane != data[f, c, z]).sum())))
    assert silent == [], f"truncated chunks read without error: (plane, wrong pixels) {silent}"


def test_empty_shard_file_is_corrupt_data(
    make_plate: Callable[..., Path], pixels: Callable[..., np.ndarray]
) -> None:
    root = make_plate({"B02": pixels(SHAPE)}, ngff_version="0.5", chunks="sharded")
    (shard,) = chunk_files(root / "B" / "02" / "0" / "0")
    damage(shard, "empty")
    store = PlateStore.open(root)
    with pytest.raises(CorruptDataError, match="B/02/0/0"):
        store.read_plane("B02", 1, 1, 0)
    with pytest.raises(CorruptDataError, match="B/02/0/0"):
        store.read_well("B02")


# -- interrupted writes ---------------------------------------------------------------------


def fail_on_call(
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    name: str,
    n: int,
    when: Callable[..., bool] = lambda *a, **k: True,
) -> None:
    """Make ``owner.name`` raise on its n-th matching call."""
    real = getattr(owner, name)
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise OSError(f"simulated crash in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


def assert_rewritable(
    root: Path, victim: np.ndarray, validate_plate: Callable[[Path], None] | None = None
) -> None:
    """After a failed or killed write, writing the well again works and reads back."""
    with PlateStore.open(root, "r+") as store:
        store.write_well("B02", victim)
    assert np.array_equal(PlateStore.open(root).read_well("B02"), victim)
    if validate_plate is not None:
        validate_plate(root)


def fail_on_array_write(monkeypatch: pytest.MonkeyPatch, version: str, n: int) -> None:
    """Fail the n-th array written: zarr writes v2 arrays, the core writes v3 shards."""
    if version == "0.5":
        fail_on_call(monkeypatch, writing.EncodedShards, "write", n)
    else:
        fail_on_call(monkeypatch, zarr, "create_array", n)


@pytest.mark.parametrize("fields", ["stacked", "per-field"])
def test_crash_while_writing_arrays(
    tmp_path: Path,
    pixels: Callable[..., np.ndarray],
    validate_plate: Callable[[Path], None],
    monkeypatch: pytest.MonkeyPatch,
    ngff_version: str,
    fields: str,
) -> None:
    root = tmp_path / "plate.zarr"
    good, victim = pixels(SHAPE), pixels(SHAPE)
    cfg = StorageConfig(ngff_version=ngff_version, fields=fields, pyramid_levels=2, plate=24)
    with PlateStore.create(root, cfg) as store:
        store.write_well(GOOD, good)
        fail_on_array_write(monkeypatch, ngff_version, 2)
        with pytest.raises(OSError, match="simulated crash"):
            store.write_well("B02", victim)
        monkeypatch.undo()
        assert "B02" not in store
    assert_absent(root)
    assert_good_well_reads(root, good)
    validate_plate(root)
    assert_rewritable(root, victim, validate_plate)


def test_crash_while_writing_well_metadata(
    plate: tuple[Path, np.ndarray],
    pixels: Callable[..., np.ndarray],
    validate_plate: Callable[[Path], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, good = plate
    victim = pixels(SHAPE)
    # The well's own group is the last document written, in the staging directory.
    fail_on_call(
        monkeypatch,
        fsio,
        "write_group",
        1,
        when=lambda path, *a, **k: (
            fsio.STAGING_DIR in str(path) and path.parent.name == fsio.STAGING_DIR
        ),
    )
    with PlateStore.open(root, "r+") as store, pytest.raises(OSError, match="simulated crash"):
        store.write_well("B02", victim)
    monkeypatch.undo()
    assert_absent(root)
    assert_good_well_reads(root, good)
    validate_plate(root)
    assert_rewritable(root, victim)


def test_failed_overwrite_keeps_the_old_well(
    plate: tuple[Path, np.ndarray],
    pixels: Callable[..., np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    ngff_version: str,
) -> None:
    root, good = plate
    fail_on_array_write(monkeypatch, ngff_version, 1)
    with PlateStore.open(root, "r+") as store, pytest.raises(OSError, match="simulated crash"):
        store.write_well(GOOD, pixels(SHAPE), overwrite=True)
    monkeypatch.undo()
    assert_good_well_reads(root, good)


CRASH = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import zarr
    from napari_wellzarr.core import PlateStore
    from napari_wellzarr.storage import writing

    root, mode = sys.argv[1], sys.argv[2]
    data = np.load(sys.argv[3])
    store = PlateStore.open(root, "r+")
    if mode == "mid-write":
        # the first array written: v3 shards by the core, v2 arrays by zarr
        v3 = store.zarr_format == 3
        owner, name = (writing.EncodedShards, "write") if v3 else (zarr, "create_array")
        def dying(*args, **kwargs):
            os._exit(3)  # killed: no cleanup, no flush
        setattr(owner, name, dying)
    store.write_well("B02", data)
    os._exit(4)  # the well is in place, but the session never flushed its well list
    """
)


def run_crashing_writer(root: Path, mode: str, data: np.ndarray, tmp_path: Path) -> int:
    saved = tmp_path / "victim.npy"
    np.save(saved, data)
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, str(root), mode, str(saved)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode in (3, 4), proc.stderr
    return proc.returncode


def test_killed_mid_write_leaves_no_well(
    plate: tuple[Path, np.ndarray],
    pixels: Callable[..., np.ndarray],
    validate_plate: Callable[[Path], None],
    tmp_path: Path,
) -> None:
    root, good = plate
    victim = pixels(SHAPE)
    assert run_crashing_writer(root, "mid-write", victim, tmp_path) == 3
    leftovers = list((root / fsio.STAGING_DIR).iterdir())
    assert leftovers, "the killed writer should have left its staging directory"
    store = PlateStore.open(root)
    assert store.wells() == [GOOD]
    assert not (root / "B" / "02").exists()
    assert_good_well_reads(root, good)
    validate_plate(root)
    with PlateStore.open(root, "r+"):
        assert not any((root / fsio.STAGING_DIR).iterdir()), "stale staging not cleaned"
    assert_rewritable(root, victim, validate_plate)


def test_killed_before_flush_is_recovered(
    plate: tuple[Path, np.ndarray],
    pixels: Callable[..., np.ndarray],
    validate_plate: Callable[[Path], None],
    tmp_path: Path,
) -> None:
    root, good = plate
    victim = pixels(SHAPE)
    assert run_crashing_writer(root, "after-write", victim, tmp_path) == 4
    store = PlateStore.open(root)
    assert store.wells() == [GOOD]
    with pytest.raises(WellNotFoundError, match="B02"):
        store.read_well("B02")
    validate_plate(root)
    with PlateStore.open(root, "r+") as store:
        assert store.recover() == ["B02"]
    store = PlateStore.open(root)
    assert store.wells() == [GOOD, "B02"]
    assert np.array_equal(store.read_well("B02"), victim)
    assert_good_well_reads(root, good)
    validate_plate(root)


def test_stale_staging_of_a_live_process_is_kept(plate: tuple[Path, np.ndarray]) -> None:
    root, good = plate
    mine = fsio.staging_dir(root, "B_02")  # this (live) process's staging directory
    (mine / "partial").write_bytes(b"x")
    host = socket.gethostname().replace(".", "-")
    dead = root / fsio.STAGING_DIR / f"C_03.{host}.{2**22 + 12345}.deadbeef0000"
    elsewhere = root / fsio.STAGING_DIR / f"C_04.other-host.{2**22 + 12345}.deadbeef0000"
    elsewhere.mkdir()  # another host's writer (shared file system): never judged dead here
    dead.mkdir()
    with PlateStore.open(root, "r+"):
        pass
    assert mine.exists(), "a live writer's staging directory was removed"
    assert elsewhere.exists(), "another host's staging directory was removed"
    assert not dead.exists()
    assert_good_well_reads(root, good)
