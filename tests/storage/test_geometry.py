"""Plate geometry and well names.

Rules stated here, independently of the implementation:
- Rows are lettered A..Z, then AA, AB, ... (a 1536-well plate has 32 rows: A..Z, AA..AF).
- Columns are numbered from 1 and printed with at least two digits (more when the plate has
  100+ columns), so a well name is row letters + zero-padded column number: B03.
- A well's group path is "<row>/<column>": B/03.
- Names are read case-insensitively, with or without zero padding, with an optional
  separator (B/03, B_03, B-03) and in Opera/Operetta form r02c03 (1-based row and column).
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_wellzarr.core import STANDARD_FORMATS, ConfigError, PlateGeometry, Well, WellNameError
from napari_wellzarr.storage.geometry import column_number, row_index, row_letters
from napari_wellzarr.testing.strategies import geometry_and_well

LETTERS = string.ascii_uppercase


def letters_for(index: int) -> str:
    """Row letters from the rule above: A..Z, then AA..ZZ."""
    if index < 26:
        return LETTERS[index]
    first, second = divmod(index - 26, 26)
    return LETTERS[first] + LETTERS[second]


def name_for(row: int, column: int, n_columns: int) -> str:
    width = max(2, len(str(n_columns)))
    return f"{letters_for(row)}{column + 1:0{width}d}"


@pytest.mark.parametrize(
    ("name", "row", "column"),
    [
        ("A01", 0, 0),
        ("A1", 0, 0),
        ("B3", 1, 2),
        ("b03", 1, 2),
        ("B003", 1, 2),
        ("H12", 7, 11),
        ("P24", 15, 23),
        ("Z1", 25, 0),
        ("AA12", 26, 11),
        ("aa12", 26, 11),
        ("AE48", 30, 47),
        ("AF01", 31, 0),
        ("B/03", 1, 2),
        ("B_03", 1, 2),
        ("B-03", 1, 2),
        (" C07 ", 2, 6),
        ("r02c03", 1, 2),
        ("R2C3", 1, 2),
        ("r32c48", 31, 47),
        ("r001c001", 0, 0),
    ],
)
def test_parse_well_names(name: str, row: int, column: int) -> None:
    assert Well.parse(name) == Well(row, column)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A",
        "01",
        "A0",
        "A00",
        "ABC1",
        "1A",
        "A-",
        "hello",
        "A1B",
        "r0c1",
        "r1c0",
        "rc",
        "Ä01",
        "A٣",
        "A 0 1",
    ],
)
def test_invalid_well_names_are_refused_naming_the_name(name: str) -> None:
    with pytest.raises(WellNameError) as err:
        Well.parse(name)
    assert repr(name) in str(err.value), f"message does not name {name!r}: {err.value}"


@pytest.mark.parametrize("bad", [None, 12, ("A", 1), b"A01"])
def test_non_string_well_names_are_refused(bad: object) -> None:
    with pytest.raises(WellNameError):
        Well.parse(bad)  # type: ignore[arg-type]


def test_negative_positions_are_refused() -> None:
    with pytest.raises(WellNameError):
        Well(-1, 0)
    with pytest.raises(WellNameError):
        Well(0, -3)


def test_format_names_and_paths() -> None:
    plate = PlateGeometry(8, 12)
    assert plate.name(Well(1, 2)) == "B03"
    assert plate.path(Well(1, 2)) == "B/03"
    assert plate.name(Well(7, 11)) == "H12"


def test_1536_rows_go_past_z() -> None:
    plate = PlateGeometry.from_wells(1536)
    expected_rows = (*LETTERS, "AA", "AB", "AC", "AD", "AE", "AF")
    assert plate.row_names == expected_rows
    assert plate.column_names == tuple(f"{i:02d}" for i in range(1, 49))
    assert plate.name(Well(30, 47)) == "AE48"
    assert plate.name(Well(31, 0)) == "AF01"
    assert plate.path(Well(31, 47)) == "AF/48"
    assert plate.well("AF48") == Well(31, 47)


def test_wide_plates_pad_columns_to_the_widest_number() -> None:
    plate = PlateGeometry(2, 120)
    assert plate.column_names[0] == "001"
    assert plate.column_names[-1] == "120"
    assert plate.name(Well(1, 8)) == "B009"


SBS = {6: (2, 3), 12: (3, 4), 24: (4, 6), 48: (6, 8), 96: (8, 12), 384: (16, 24), 1536: (32, 48)}


def test_standard_formats_are_the_sbs_ones() -> None:
    assert STANDARD_FORMATS == SBS


@pytest.mark.parametrize("wells", sorted(SBS))
def test_standard_formats(wells: int) -> None:
    plate = PlateGeometry.from_wells(wells)
    assert (plate.rows, plate.columns) == SBS[wells]
    assert plate.n_wells == wells
    assert len(plate.all_wells()) == wells
    assert plate.all_wells() == sorted(plate.all_wells())


def test_well_outside_plate_names_well_and_plate_size() -> None:
    plate = PlateGeometry.from_wells(24)
    for name in ("E01", "A07", "Z99", "r05c01"):
        with pytest.raises(WellNameError) as err:
            plate.well(name)
        assert name in str(err.value)
        assert "4x6" in str(err.value)


def test_geometry_refuses_impossible_sizes() -> None:
    for rows, columns in ((0, 5), (5, 0), (26 * 27 + 1, 1), (1, 10000)):
        with pytest.raises(ConfigError):
            PlateGeometry(rows, columns)


def test_row_letters_and_index_are_inverse_for_every_row() -> None:
    for index in range(26 * 27):
        assert row_letters(index) == letters_for(index)
        assert row_index(row_letters(index)) == index
        assert row_index(row_letters(index).lower()) == index
    with pytest.raises(WellNameError):
        row_letters(26 * 27)
    with pytest.raises(WellNameError):
        row_letters(-1)


@pytest.mark.parametrize("bad", ["", "ABC", "1", "A1", "É"])
def test_row_index_refuses_non_letters(bad: str) -> None:
    with pytest.raises(WellNameError):
        row_index(bad)


@pytest.mark.parametrize(("text", "index"), [("1", 0), ("01", 0), ("48", 47), (" 007 ", 6)])
def test_column_number(text: str, index: int) -> None:
    assert column_number(text) == index


@pytest.mark.parametrize("bad", ["0", "00", "-1", "x", "", "1.5"])
def test_column_number_refuses(bad: str) -> None:
    with pytest.raises(WellNameError):
        column_number(bad)


@settings(max_examples=100, deadline=None)
@given(geometry_and_well())
def test_parse_of_name_is_identity(case: tuple[PlateGeometry, Well]) -> None:
    plate, well = case
    name = plate.name(well)
    assert name == name_for(well.row, well.column, plate.columns)
    assert Well.parse(name) == well
    assert Well.parse(name.lower()) == well
    assert plate.well(name) == well
    assert Well.parse(plate.path(well)) == well
    assert plate.path(well) == f"{plate.row_names[well.row]}/{plate.column_names[well.column]}"
    if well.row < 999:
        assert Well.parse(f"r{well.row + 1:02d}c{well.column + 1:02d}") == well


@settings(max_examples=100, deadline=None)
@given(geometry_and_well())
def test_wells_off_the_plate_are_refused(case: tuple[PlateGeometry, Well]) -> None:
    plate, well = case
    outside = Well(well.row + plate.rows, well.column)
    if outside.row >= 26 * 27:
        outside = Well(well.row, well.column + plate.columns)
    assert not plate.contains(outside)
    with pytest.raises(WellNameError, match=f"{plate.rows}x{plate.columns}"):
        plate.well(outside)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 60), st.integers(1, 150))
def test_names_are_unique_and_row_column_lists_are_physical(rows: int, columns: int) -> None:
    plate = PlateGeometry(rows, columns)
    names = [plate.name(w) for w in plate.all_wells()]
    assert len(set(names)) == rows * columns
    assert plate.row_names == tuple(letters_for(i) for i in range(rows))
    assert [int(c) for c in plate.column_names] == list(range(1, columns + 1))
    assert all(c.isalnum() and r.isalnum() for r in plate.row_names for c in plate.column_names[:3])


@pytest.mark.parametrize(
    ("value", "shape"), [(96, (8, 12)), ("384", (16, 24)), ("3x5", (3, 5)), ((2, 7), (2, 7))]
)
def test_geometry_parse(value: object, shape: tuple[int, int]) -> None:
    plate = PlateGeometry.parse(value)  # type: ignore[arg-type]
    assert (plate.rows, plate.columns) == shape
    assert PlateGeometry.parse(plate) is plate
