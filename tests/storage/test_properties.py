"""Property-based tests of every input the project parses: accepted and consistent, or refused.

For well names, plate formats, file-name patterns (built-in and user regexes), storage
configurations and the OpenHCS backend's side files (symlinks, file-name maps), any input
either works (and round-trips) or raises the project's own error with a message: never
another exception, never a hang, never a file access outside the plate.  The last test
writes random small plates and reads them back bit for bit.

Complements (does not repeat) test_geometry / test_naming / test_config /
test_hostile_metadata / test_store: those check generated *valid* inputs and OME blocks.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_wellzarr.convert.detection import detect_scheme, expected_name, parse_batch
from napari_wellzarr.convert.naming import (
    IMAGEXPRESS,
    OPERA,
    ParsedName,
    RegexScheme,
    parse_filename,
    try_parse_filename,
    user_scheme,
)
from napari_wellzarr.convert.regex_guard import match_spans_bounded
from napari_wellzarr.core import PlateStore, StorageConfig
from napari_wellzarr.errors import (
    ConfigError,
    MetadataError,
    PlaneNotFoundError,
    SymlinkCycleError,
    WellNameError,
    WellZarrError,
)
from napari_wellzarr.openhcs.backend import SYMLINKS_FILE, ZarrStorageBackend
from napari_wellzarr.storage.axes import PlaneKey
from napari_wellzarr.storage.geometry import (
    PlateGeometry,
    Well,
    column_number,
    row_index,
    row_letters,
)
from napari_wellzarr.testing.strategies import (
    any_well_texts,
    file_names,
    hostile_file_names,
    loose_json_values,
    plane_coordinates,
    plate_formats,
    small_plates,
    storage_config_kwargs,
    user_patterns,
)
from tests.audit import OpensOutside

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

QUICK = settings(max_examples=300, deadline=None)
IO = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: Wall-clock bound of one in-process parse (seconds): "never a hang" (a parse takes
#: microseconds; the margin is for a loaded CI machine, not for slow code).
PARSE_BOUND = 2.0


def timed(call: Callable[[], Any], bound: float = PARSE_BOUND) -> Any:
    """``call()``'s result or raised error, asserting it took less than ``bound`` seconds."""
    start = time.perf_counter()
    try:
        result: Any = call()
    except Exception as err:
        result = err
    elapsed = time.perf_counter() - start
    assert elapsed < bound, f"took {elapsed:.2f} s (bound {bound} s)"
    return result


def ours(result: Any, *kinds: type[Exception]) -> bool:
    """True when ``result`` is a refusal of the given kinds with a message; else False."""
    if isinstance(result, Exception):
        assert isinstance(result, kinds), f"{type(result).__name__}: {result}"
        assert str(result).strip(), f"{type(result).__name__} with no message"
        return True
    return False


# -- (1) well names -----------------------------------------------------------------------------


@QUICK
@given(any_well_texts)
def test_a_well_name_parses_and_round_trips_or_is_refused(name: str) -> None:
    well = timed(lambda: Well.parse(name))
    if ours(well, WellNameError):
        assert repr(name)[1:-1][:10] in str(well) or len(name) > 20
        return
    assert well.row >= 0
    assert well.column >= 0
    canonical = f"{row_letters(well.row)}{well.column + 1:02d}"
    assert Well.parse(canonical) == well
    plate = PlateGeometry(max(well.row + 1, 1), max(well.column + 1, 1))
    assert Well.parse(plate.name(well)) == well
    assert plate.well(name) == well
    assert Well.parse(plate.path(well)) == well


@QUICK
@given(st.text(max_size=12))
def test_row_and_column_parts_are_numbers_and_letters_or_refused(text: str) -> None:
    row = timed(lambda: row_index(text))
    if not ours(row, WellNameError):
        assert row_letters(row) == text.strip().upper()
    column = timed(lambda: column_number(text))
    if not ours(column, WellNameError):
        assert column >= 0
        assert int(text.strip()) == column + 1


@pytest.mark.parametrize(
    "name",
    [
        "A" + " " * 100_000 + "x",  # three optional blanks runs: quadratic backtracking
        "A" + " " * 100_000 + "1x",
        "r1" + " " * 100_000 + "c",
        " " * 100_000,
        "A" + "/" * 100_000,
        "1" * 100_000,
    ],
    ids=["blanks", "blanks-digit", "opera-blanks", "only-blanks", "slashes", "digits"],
)
def test_long_well_names_are_refused_at_once(name: str) -> None:
    result = timed(lambda: Well.parse(name), bound=1.0)
    assert ours(result, WellNameError)


# -- (2) plate geometries ----------------------------------------------------------------------


@QUICK
@given(plate_formats)
def test_a_plate_format_is_a_geometry_or_refused(value: Any) -> None:
    plate = timed(lambda: PlateGeometry.parse(value))
    if ours(plate, ConfigError):
        return
    assert isinstance(plate, PlateGeometry)
    assert 1 <= plate.rows <= 26 * 27
    assert 1 <= plate.columns <= 9999
    assert PlateGeometry.parse(f"{plate.rows}x{plate.columns}") == plate
    assert PlateGeometry.parse((plate.rows, plate.columns)) == plate
    if plate.n_wells in (6, 12, 24, 48, 96, 384, 1536) and isinstance(value, int):
        assert PlateGeometry.from_wells(plate.n_wells) == plate
    last = Well(plate.rows - 1, plate.columns - 1)
    assert plate.well(plate.name(last)) == last
    assert len(plate.row_names) == plate.rows
    assert len(plate.column_names) == plate.columns


# -- (3) file names and patterns ---------------------------------------------------------------


@QUICK
@given(file_names)
def test_a_file_name_parses_consistently_or_is_refused(name: str) -> None:
    parsed = timed(lambda: try_parse_filename(name))
    if ours(parsed, WellNameError) or parsed is None:
        strict = timed(lambda: parse_filename(name))
        assert ours(strict, WellNameError)
        return
    assert isinstance(parsed, ParsedName)
    assert min(parsed.well.row, parsed.well.column, *parsed.key) >= 0
    assert parsed.plane_name
    assert parse_filename(name) == parsed
    if "/" not in name:
        # The name a plane at this very key would have is the name itself.
        assert expected_name(parsed, parsed.key, (parsed.channel_label,)) == name


@QUICK
@given(
    st.integers(0, 30),
    st.integers(0, 47),
    st.tuples(st.integers(0, 40), st.integers(0, 8), st.integers(0, 60), st.integers(0, 30)),
    st.tuples(st.integers(0, 40), st.integers(0, 8), st.integers(0, 60), st.integers(0, 30)),
    st.booleans(),
)
def test_expected_names_parse_back_to_their_key(
    row: int, col: int, have: tuple[int, ...], want: tuple[int, ...], opera: bool
) -> None:
    f, c, z, t = have
    if opera:
        name = f"r{row + 1:02d}c{col + 1:02d}f{f + 1:02d}p{z + 1:02d}-ch{c + 1}sk{t + 1}fk1fl1.tiff"
    else:
        name = (
            f"scr_{row_letters(row)}{col + 1:02d}_s{f + 1}_w{c + 1}_z{z + 1:03d}_t{t + 1:03d}.tif"
        )
    template = parse_filename(name)
    key = PlaneKey(*want)
    other = expected_name(template, key)
    assert other is not None
    again = parse_filename(other)
    assert (again.well, again.key) == (template.well, key)


@settings(max_examples=40, deadline=None)
@given(user_patterns, st.lists(file_names, max_size=4))
def test_a_user_pattern_is_a_scheme_or_refused_and_runs_bounded(
    pattern: str, names: list[str]
) -> None:
    scheme = timed(lambda: user_scheme(pattern, timeout=1.0), bound=1.0)
    if ours(scheme, WellNameError):
        assert "(?P<well>" in str(scheme)  # says which groups a pattern may use
        return
    assert isinstance(scheme, RegexScheme)
    results = timed(lambda: parse_batch(scheme, names), bound=6.0)
    if ours(results, WellNameError):
        return
    used, parsed = results
    assert len(parsed) == len(names)
    free = RegexScheme("free", pattern, channel_order=used.channel_order)  # type: ignore[attr-defined]
    for name, got in zip(names, parsed, strict=True):
        assert got is None or isinstance(got, ParsedName | WellNameError)
        if isinstance(got, ParsedName):
            assert got == free.from_match(name, free.match_many([name])[0] or {})


CATASTROPHIC = [
    r"(?P<well>A\d+)_(x+x+)+y\.tif",
    r"(?P<well>A\d+)_(x|x)*y",
    r"(?P<well>A\d+)_(x|xx)+y",
    r"(?P<well>A\d+)_(x*)*y",
    r"(?P<well>A\d+)_(\w+\s?)+y",
    r"(?P<well>A\d+)_(.*x){12}y",
    r"(?P<well>A(\d|\d\d)+)_y",
]


@pytest.mark.slow
@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_user_patterns_are_stopped_in_time(pattern: str) -> None:
    hostile = ["A01_" + "x" * 60, "A" + "1" * 60 + "_", "A01_" + "x" * 30 + "!"]
    names = [*hostile, *(f"A{n:02d}_y" for n in range(1, 40))]
    scheme = user_scheme(pattern, timeout=0.5)
    budget = 0.5 + 0.001 * len(names)
    result = timed(lambda: parse_batch(scheme, names), bound=budget + 3.0)
    assert ours(result, WellNameError)
    assert "backtracks catastrophically" in str(result)
    # Through detection too: the user's scheme is stopped, the built-ins still answer.
    found = timed(lambda: detect_scheme(names, [IMAGEXPRESS, OPERA, scheme]), bound=budget + 3.0)
    assert ours(found, WellNameError)


def test_the_budget_counts_matching_not_the_child_interpreters_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Starting ``python -I`` takes 20 ms on a quiet machine and far more on a loaded
    # one: here it takes 1 s, and a 0.5 s budget still matches a benign pattern.
    from napari_wellzarr.convert import regex_guard

    monkeypatch.setattr(
        regex_guard, "_MATCHER", "import time; time.sleep(1)\n" + regex_guard._MATCHER
    )
    spans = match_spans_bounded(r"(?P<well>[A-P]\d+)_x", 0, ["B03_x", "nope"], 0.5)
    assert spans == [{"well": (0, 3)}, None]


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(CATASTROPHIC), st.integers(20, 2000), st.sampled_from("x1!_ "))
def test_a_match_in_a_child_interpreter_has_a_wall_time_bound(
    pattern: str, length: int, filler: str
) -> None:
    name = "A01_" + filler * length
    result = timed(
        lambda: match_spans_bounded(pattern, re.IGNORECASE, [name], 0.3), bound=0.3 + 3.0
    )
    if not ours(result, WellNameError):
        assert result == [None] or isinstance(result[0], dict)


def test_a_runaway_match_ends_even_when_its_caller_died() -> None:
    # Nobody kills this child at its wall-clock budget (as if its caller had died):
    # its own CPU limit ends it.
    import signal
    import subprocess

    from napari_wellzarr.convert import regex_guard

    request = json.dumps({"pattern": "(x+x+)+y", "flags": 0, "names": ["x" * 64]})
    with subprocess.Popen(
        [sys.executable, "-I", "-c", regex_guard._MATCHER, "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        out, _ = proc.communicate(request, timeout=60)
    assert out == "+"  # it started, and never answered
    assert proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL)


# -- (4) configuration objects ------------------------------------------------------------------


def check_config(made: Any) -> None:
    if ours(made, ConfigError):
        return
    assert isinstance(made, StorageConfig)
    as_json = json.loads(json.dumps(made.to_dict(), allow_nan=False))
    again = StorageConfig.from_dict(as_json)
    assert again == made
    assert again.to_dict() == as_json
    assert StorageConfig(**as_json) == made
    assert made.zarr_format in (2, 3)


@QUICK
@given(storage_config_kwargs)
def test_a_storage_config_from_any_options_round_trips_or_is_refused(kwargs: Any) -> None:
    check_config(timed(lambda: StorageConfig(**kwargs)))


@QUICK
@given(
    st.one_of(
        storage_config_kwargs,
        st.dictionaries(st.text(max_size=12), loose_json_values, max_size=4),
        storage_config_kwargs.flatmap(
            lambda d: st.dictionaries(st.text(max_size=6), loose_json_values, max_size=2).map(
                lambda extra: {**d, **extra}
            )
        ),
    )
)
def test_from_dict_of_any_json_object_round_trips_or_is_refused(data: dict[str, Any]) -> None:
    # What a plate's own metadata can hold ("wellzarr": {"config": {...}}): any JSON object.
    check_config(timed(lambda: StorageConfig.from_dict(json.loads(json.dumps(data)))))


# -- (5) the backend's side files: symlinks and file-name maps -----------------------------------

SIDE_SHAPE = (4, 5)


@pytest.fixture(scope="module")
def side_plate() -> Iterator[tuple[Path, dict[str, np.ndarray]]]:
    """A backend plate of two wells, next to a "secret" array outside it."""
    base = Path(tempfile.mkdtemp(prefix="wellzarr-side-"))
    store = base / "plate" / "images"
    files = {f"A01_s1_w{c + 1}.tif": np.full(SIDE_SHAPE, 10 + c, "u2") for c in range(2)} | {
        f"B02_s1_w{c + 1}.tif": np.full(SIDE_SHAPE, 20 + c, "u2") for c in range(2)
    }
    with ZarrStorageBackend() as backend:
        for well in ("A01", "B02"):
            names = [n for n in files if n.startswith(well)]
            backend.save_batch([files[n] for n in names], [store / n for n in names])
        backend.save(np.full(SIDE_SHAPE, 666, "u2"), base / "secret" / "x.tif")
        backend.save(np.full(SIDE_SHAPE, 667, "u2"), base / "plate" / "x.tif")
    yield store, files
    shutil.rmtree(base)


def _all_reads(
    backend: ZarrStorageBackend, store: Path, probe: list[str], outside: list[str]
) -> dict[str, Any]:
    """Every read of the store; ``outside`` gets each file opened outside what it reads.

    The recursive listing reads the store's parent (it is asked to); everything else
    may open nothing but the store (the plate root), watched on the whole process.
    """
    out: dict[str, Any] = {}
    for what, call, root in [
        ("list", lambda: backend.list_files(store), store),
        ("list recursive", lambda: backend.list_files(store.parent, recursive=True), store.parent),
        ("list_dir", lambda: backend.list_dir(store), store),
    ]:
        with OpensOutside(root) as opened:
            out[what] = timed(call, bound=5.0)
        outside.extend(opened)
    # A name with a "/" is a path the caller chose (maybe outside the store): not probed.
    for name in (n for n in probe if "/" not in n):
        path = os.path.join(store, name)
        for what, read in {
            "load": backend.load,
            "exists": backend.exists,
            "stat": backend.stat,
            "is_symlink": backend.is_symlink,
        }.items():
            with OpensOutside(store) as opened:
                out[f"{what} {name!r}"] = timed(functools.partial(read, path), bound=5.0)
            outside.extend(opened)
    return out


def _check_reads(out: dict[str, Any], store: Path, files: dict[str, np.ndarray]) -> None:
    for what, result in out.items():
        if ours(result, WellZarrError, FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        if isinstance(result, list) and what.startswith("list") and what != "list_dir":
            for path in result:
                # Every listed file is a file of this directory tree, never outside it.
                resolved = os.path.normpath(os.path.abspath(path))
                assert resolved.startswith(str(store.parent) + os.sep), path
                assert Path(path).name not in ("", ".", "..")
        if isinstance(result, np.ndarray):
            assert int(result.max()) not in (666, 667), f"{what} read a file outside the store"
            assert any(np.array_equal(result, f) for f in files.values()), what


@IO
@given(
    st.dictionaries(hostile_file_names, hostile_file_names, max_size=5),
    st.lists(hostile_file_names, max_size=3),
)
def test_hostile_symlink_files_never_reach_outside_the_store(
    side_plate: tuple[Path, dict[str, np.ndarray]], links: dict[str, str], probe: list[str]
) -> None:
    store, files = side_plate
    (store / SYMLINKS_FILE).write_text(json.dumps({"wellzarr_symlinks": links}))
    outside: list[str] = []
    try:
        out = _all_reads(ZarrStorageBackend(), store, [*links, *probe], outside)
    finally:
        (store / SYMLINKS_FILE).unlink()
    assert not outside, outside
    _check_reads(out, store, files)
    for name, result in out.items():
        if name.startswith("load ") and isinstance(result, Exception):
            assert isinstance(
                result, PlaneNotFoundError | SymlinkCycleError | MetadataError | WellZarrError
            ) or isinstance(result, FileNotFoundError | IsADirectoryError), result


@IO
@given(st.integers(1, 12), st.data())
def test_symlink_cycles_are_reported_never_followed_for_ever(
    side_plate: tuple[Path, dict[str, np.ndarray]], n: int, data: st.DataObject
) -> None:
    store, files = side_plate
    names = [f"L{i}.tif" for i in range(n)]
    targets = data.draw(st.lists(st.sampled_from([*names, *files]), min_size=n, max_size=n))
    links = dict(zip(names, targets, strict=True))
    (store / SYMLINKS_FILE).write_text(json.dumps({"wellzarr_symlinks": links}))
    try:
        backend = ZarrStorageBackend()
        for name in names:
            seen, final = {name}, links[name]
            while final in links and final not in seen:
                seen.add(final)
                final = links[final]
            result = timed(functools.partial(backend.load, store / name), bound=2.0)
            if final in links:  # the chain loops
                assert isinstance(result, SymlinkCycleError), result
                assert name in str(result)
            else:
                assert np.array_equal(result, files[final])
    finally:
        (store / SYMLINKS_FILE).unlink()


def _map_file(store: Path) -> Path:
    return store / "B" / "02" / "0" / "0" / "zarr.json"


@IO
@given(
    st.dictionaries(hostile_file_names, plane_coordinates, max_size=4),
    st.lists(hostile_file_names, max_size=2),
)
def test_hostile_file_name_maps_never_reach_outside_the_store(
    side_plate: tuple[Path, dict[str, np.ndarray]], entries: dict[str, Any], probe: list[str]
) -> None:
    store, files = side_plate
    doc_path = _map_file(store)
    original = doc_path.read_text()
    doc = json.loads(original)
    doc["attributes"]["openhcs_filename_map"] = {
        **{n: [0, int(n[-5]) - 1, 0] for n in files if n.startswith("B02")},
        **entries,
    }
    doc_path.write_text(json.dumps(doc))
    outside: list[str] = []
    try:
        out = _all_reads(ZarrStorageBackend(), store, [*entries, *probe, "B02_s1_w2.tif"], outside)
    finally:
        doc_path.write_text(original)
    assert not outside, outside
    _check_reads(out, store, files)
    listed = out["list"]
    if isinstance(listed, list):
        # Accepted: every mapped name is a plain file name of this store.
        assert all(p.parent == store for p in listed)
        assert {"A01_s1_w1.tif", "A01_s1_w2.tif"} <= {p.name for p in listed}


def test_a_directory_symlink_cycle_is_listed_once(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "sub" / "b.txt").write_text("b")
    os.symlink("..", tmp_path / "sub" / "up")
    listed = timed(lambda: ZarrStorageBackend().list_files(tmp_path, recursive=True), bound=5.0)
    assert [str(p.relative_to(tmp_path)) for p in listed] == ["a.txt", "sub/b.txt"]


# -- round trip: random small plates, written and read back bit for bit -------------------------


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_plates())
def test_random_small_plates_read_back_bit_identical(case: dict[str, Any]) -> None:
    config: StorageConfig = case["config"]
    rng = np.random.default_rng(case["seed"])
    dtype = np.dtype(case["dtype"])
    written: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p.zarr"
        with PlateStore.create(root, config) as store:
            for well in case["wells"]:
                if dtype.kind == "f":
                    data = (rng.standard_normal(case["shape"]) * 1e4).astype(dtype)
                    data.flat[:: max(1, data.size // 3)] = np.nan
                else:
                    info = np.iinfo(dtype)
                    data = rng.integers(info.min, info.max, case["shape"], endpoint=True)
                    data = data.astype(dtype)
                name = config.plate.name(well)
                names = None
                if case["names"]:
                    names = {
                        f"{name}_s{f + 1}_w{c + 1}_z{z + 1:03d}.tif": (f, c, z)
                        for f, c, z in np.ndindex(data.shape[:3])
                    }
                store.write_well(name, data, plane_names=names)
                written[name] = data
        back = PlateStore.open(root)
        assert back.wells() == sorted(written, key=lambda n: Well.parse(n))
        assert back.config == config
        for name, data in written.items():
            info = back.well_info(name)
            assert info.shape == data.shape
            assert info.dtype == data.dtype.newbyteorder("=") or info.dtype == data.dtype
            got = back.read_well(name)
            assert got.shape == data.shape
            assert np.array_equal(got.astype(data.dtype), data, equal_nan=dtype.kind == "f")
            assert got.astype(data.dtype).tobytes() == data.tobytes()
            f, c, z = (int(rng.integers(0, s)) for s in data.shape[:3])
            plane = back.read_plane(name, f, c, z)
            assert plane.astype(data.dtype).tobytes() == data[f, c, z].tobytes()
            if case["names"]:
                assert dict(info.plane_names) == {
                    f"{name}_s{f + 1}_w{c + 1}_z{z + 1:03d}.tif": PlaneKey(f, c, z)
                    for f, c, z in np.ndindex(data.shape[:3])
                }
