"""File-name schemes (core.naming, core.detection): ImageXpress, Opera, user patterns."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from napari_wellzarr.convert.detection import detect_scheme, expected_name, parse_batch
from napari_wellzarr.convert.naming import (
    IMAGEXPRESS,
    OPERA,
    ParsedName,
    RegexScheme,
    parse_filename,
    registered_schemes,
    try_parse_filename,
    user_scheme,
)
from napari_wellzarr.core import PlaneKey, Well, WellNameError
from napari_wellzarr.storage.geometry import row_letters
from napari_wellzarr.testing.strategies import (
    channel_indices,
    columns_1536,
    field_indices,
    rows_1536,
)

GUID = "EB868A72-19FC-46BB-BDFA-66B8966A817C"


@pytest.mark.parametrize(
    ("name", "well", "key", "label"),
    [
        ("A01_s1_w2_z001.tif", (0, 0), (0, 1, 0, 0), "w2"),
        ("My Plate_B10_s3_w1.TIF", (1, 9), (2, 0, 0, 0), "w1"),
        ("x_AA12_s2_w4_z010_t003.tif", (26, 11), (1, 3, 9, 2), "w4"),
        ("HT29_C05_s2_w3.tif", (2, 4), (1, 2, 0, 0), "w3"),  # prefix that looks like a well
        ("plate_D07_w2.tif", (3, 6), (0, 1, 0, 0), "w2"),  # one site: no _s part
        (f"Week1_150607_B02_s4_w1{GUID}.tif", (1, 1), (3, 0, 0, 0), "w1"),  # BBBC021 GUID
        ("r02c10f03p04-ch2sk5fk1fl1.tiff", (1, 9), (2, 1, 3, 4), "ch2"),
    ],
)
def test_builtin_schemes(
    name: str, well: tuple[int, int], key: tuple[int, ...], label: str
) -> None:
    parsed = parse_filename(name)
    assert (parsed.well.row, parsed.well.column) == well
    assert tuple(parsed.key) == key
    assert parsed.channel_label == label
    assert parsed.plane_name == name


@pytest.mark.parametrize(
    "name",
    [
        "plate_A01_s1_w1_thumb6A3B.tif",  # MetaXpress thumbnail
        "notes_A1.tif",
        "A01_s1.tif",  # no wavelength
        "r01c01f01-ch1sk1fk1fl1.tiff",  # Opera without plane
    ],
)
def test_names_of_no_scheme(name: str) -> None:
    assert try_parse_filename(name) is None


@pytest.mark.parametrize(
    ("path", "key", "plane_name"),
    [
        ("ZStep_3/p_A01_s2_w1.tif", (1, 0, 2, 0), "p_A01_s2_w1_z003.tif"),
        ("TimePoint_2/p_A01_s1_w2.tif", (0, 1, 0, 1), "p_A01_s1_w2_t002.tif"),
        ("TimePoint_2/ZStep_4/p_A01_s1_w1.tif", (0, 0, 3, 1), "p_A01_s1_w1_z004_t002.tif"),
        ("TimePoint_5/p_A01_s1_w1_z002.tif", (0, 0, 1, 4), "p_A01_s1_w1_z002_t005.tif"),
        ("ZStep_2/p_A01_s1_w1_t003.tif", (0, 0, 1, 2), "p_A01_s1_w1_z002_t003.tif"),
        ("run1/p_A01_s1_w1.tif", (0, 0, 0, 0), "p_A01_s1_w1.tif"),  # other folders: ignored
    ],
)
def test_imagexpress_subfolders(path: str, key: tuple[int, ...], plane_name: str) -> None:
    parsed = IMAGEXPRESS.parse(path)
    assert parsed is not None
    assert tuple(parsed.key) == key
    assert parsed.plane_name == plane_name
    # the synthesized name, parsed on its own, says the same thing as the folders did
    assert parse_filename(plane_name).key == parsed.key


def test_imagexpress_folder_contradicting_the_name_is_refused() -> None:
    with pytest.raises(WellNameError, match=r"name says z=2, its folder says z=3"):
        IMAGEXPRESS.parse("ZStep_3/p_A01_s1_w1_z002.tif")


@given(
    row=rows_1536,
    col=columns_1536,
    field=field_indices,
    channel=channel_indices,
    z=st.integers(0, 200),
    t=st.integers(0, 50),
    prefix=st.sampled_from(["", "plate_", "HT29_B2_", "My Screen 3_"]),
)
def test_imagexpress_round_trip(
    row: int, col: int, field: int, channel: int, z: int, t: int, prefix: str
) -> None:
    well = f"{row_letters(row)}{col + 1:02d}"
    name = f"{prefix}{well}_s{field + 1}_w{channel + 1}_z{z + 1:03d}_t{t + 1:03d}.tif"
    parsed = parse_filename(name)
    assert parsed.well == Well(row, col)
    assert parsed.key == PlaneKey(field, channel, z, t)


@given(
    row=rows_1536,
    col=columns_1536,
    field=field_indices,
    z=st.integers(0, 99),
    channel=channel_indices,
    t=st.integers(0, 99),
)
def test_opera_round_trip(row: int, col: int, field: int, z: int, channel: int, t: int) -> None:
    name = f"r{row + 1:02d}c{col + 1:02d}f{field + 1:02d}p{z + 1:02d}"
    name += f"-ch{channel + 1}sk{t + 1}fk1fl1.tiff"
    parsed = OPERA.parse(name)
    assert parsed is not None
    assert (parsed.well, parsed.key) == (Well(row, col), PlaneKey(field, channel, z, t))


def test_registry_keeps_the_builtins_first() -> None:
    assert [s.name for s in registered_schemes()[:2]] == ["imagexpress", "opera"]


# -- user patterns ------------------------------------------------------------------------


def test_user_pattern_with_row_and_column_numbers() -> None:
    scheme = user_scheme(
        r"img_(?P<row>\d+)-(?P<col>\d+)_f(?P<field>\d+)_c(?P<channel>\d+)_z(?P<z>\d+)\.tif"
    )
    used, results = parse_batch(scheme, ["img_2-3_f4_c1_z5.tif", "other.tif"])
    assert results[0] == ParsedName(Well(1, 2), 3, 0, 4)
    assert results[1] is None
    assert used.name == "pattern"


def test_user_pattern_with_row_letters() -> None:
    scheme = user_scheme(r"(?P<row>[A-P])(?P<col>\d+)--(?P<t>\d+)\.tiff")
    assert scheme.parse("C7--2.tiff") == ParsedName(Well(2, 6), t=1)


def test_user_pattern_channel_words_follow_the_given_names() -> None:
    scheme = user_scheme(r"(?P<well>[A-P]\d\d)_(?P<channel>[a-z0-9]+)\.tif")
    names = ["A01_dapi.tif", "A01_gfp.tif", "B02_cy5.tif"]
    used, results = parse_batch(scheme, names, ["GFP", "Cy5", "DAPI"])
    assert [r.channel for r in results if isinstance(r, ParsedName)] == [2, 0, 1]
    assert [r.channel_label for r in results if isinstance(r, ParsedName)] == ["DAPI", "GFP", "Cy5"]
    assert isinstance(used, RegexScheme)
    assert used.channel_order == ("GFP", "Cy5", "DAPI")
    # without names: alphabetical, never the order the files came in
    _, alphabetical = parse_batch(scheme, list(reversed(names)))
    assert [r.channel for r in alphabetical if isinstance(r, ParsedName)] == [0, 2, 1]


def test_user_pattern_bad_values_are_reported_per_file() -> None:
    scheme = user_scheme(r"(?P<well>[A-Z]\d+)_(?P<field>\w+)\.tif")
    _, results = parse_batch(scheme, ["A01_2.tif", "A01_x.tif", "A01_0.tif"])
    assert isinstance(results[0], ParsedName)
    assert isinstance(results[1], WellNameError)
    assert "field 'x' is not a number" in str(results[1])
    assert "must count from 1" in str(results[2])


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(?P<field>\d+)\.tif", "needs a"),
        (r"(?P<well>[A-P]\d+", "bad pattern"),
        (r"(?P<row>[A-P])_(?P<field>\d+)", "needs a"),
    ],
)
def test_bad_user_patterns_say_which_groups_to_use(pattern: str, message: str) -> None:
    with pytest.raises(WellNameError, match=message) as info:
        user_scheme(pattern)
    assert "(?P<channel>" in str(info.value)


def test_catastrophic_pattern_is_stopped_not_hung() -> None:
    scheme = user_scheme(r"(?P<well>A\d+)_(x+x+)+y\.tif", timeout=0.5)
    start = time.monotonic()
    with pytest.raises(WellNameError, match="backtracks catastrophically"):
        parse_batch(scheme, ["A01_" + "x" * 40 + ".tif"])
    assert time.monotonic() - start < 5  # the match alone would take longer than a day


def test_bounded_pattern_gives_the_same_answers_as_in_process() -> None:
    pattern = r"(?P<well>[A-P]\d\d)_s(?P<field>\d+)_w(?P<channel>\d+)\.tif"
    names = ["A01_s1_w1.tif", "p/B12_s03_w2.tif", "nope.tif", "C03_s2_w9.tif"]
    bounded = parse_batch(user_scheme(pattern), names)[1]
    free = parse_batch(RegexScheme("free", pattern), names)[1]
    assert bounded == free
    assert bounded[1] == ParsedName(Well(1, 11), 2, 1)


def test_bounded_pattern_works_in_a_process_with_over_1024_open_files() -> None:
    # select() refuses descriptors past 1023; napari with many files open gets there.
    pattern = r"(?P<well>[A-P]\d\d)_s(?P<field>\d+)_w(?P<channel>\d+)\.tif"
    held = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        parsed = parse_batch(user_scheme(pattern), ["B12_s03_w2.tif"])[1]
    finally:
        for fd in held:
            os.close(fd)
    assert parsed == [ParsedName(Well(1, 11), 2, 1)]


# -- detection ----------------------------------------------------------------------------


def test_detection_picks_the_scheme_of_most_files_and_counts_the_rest() -> None:
    names = [
        "r01c01f01p01-ch1sk1fk1fl1.tiff",
        "r01c02f01p01-ch1sk1fk1fl1.tiff",
        "x_A01_s1_w1.tif",  # ImageXpress, but the folder is Opera
        "r01c03f00p01-ch1sk1fk1fl1.tiff",  # Opera shape, impossible field 0
    ]
    found = detect_scheme(names)
    assert found.scheme.name == "opera"
    assert dict(found.counts) == {"imagexpress": 1, "opera": 3}
    assert (found.matched, found.unmatched) == (2, 2)
    assert found.results[2] is None
    assert isinstance(found.results[3], WellNameError)


def test_detection_with_no_match_names_files_and_suggests_a_pattern() -> None:
    with pytest.raises(WellNameError, match=r"'scan_0001\.tif'.*named groups"):
        detect_scheme(["scan_0001.tif", "scan_0002.tif"])


# -- expected names of missing planes -------------------------------------------------------


def test_expected_name_keeps_padding_and_renumbers_folders() -> None:
    flat = parse_filename("pl_A01_s01_w1_z001.tif")
    assert expected_name(flat, PlaneKey(10, 1, 1)) == "pl_A01_s11_w2_z002.tif"
    nested = IMAGEXPRESS.parse("TimePoint_2/ZStep_3/pl_A01_s1_w2.tif")
    assert nested is not None
    assert expected_name(nested, PlaneKey(3, 0, 5, 0)) == "TimePoint_1/ZStep_6/pl_A01_s4_w1.tif"
    opera = parse_filename("r02c10f03p04-ch2sk5fk1fl1.tiff")
    assert expected_name(opera, PlaneKey(10, 0, 1, 0)) == "r02c10f11p02-ch1sk1fk1fl1.tiff"


def test_expected_name_is_none_when_the_name_cannot_say_it() -> None:
    parsed = parse_filename("pl_A01_s1_w1.tif")  # no z part
    assert expected_name(parsed, PlaneKey(0, 0, 2)) is None


def test_expected_name_of_a_channel_word() -> None:
    scheme = user_scheme(r"(?P<well>[A-P]\d\d)_(?P<channel>[a-z]+)\.tif")
    used, results = parse_batch(scheme, ["A01_dapi.tif", "A01_gfp.tif"])
    first = results[0]
    assert isinstance(first, ParsedName)
    assert isinstance(used, RegexScheme)
    assert expected_name(first, PlaneKey(0, 1, 0), used.channel_order) == "A01_gfp.tif"
