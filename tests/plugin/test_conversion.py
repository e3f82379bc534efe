"""The converter widget's Qt-free logic: options, scans, runs and their state (no viewer)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
import pytest
import tifffile

from napari_wellzarr.convert.engine import ConversionPlan, ConversionResult, WellEvent
from napari_wellzarr.errors import ConfigError, PlateExistsError
from napari_wellzarr.plugin import conversion, layer_wells
from napari_wellzarr.plugin.conversion import ConversionOptions, ConverterSession, Source
from napari_wellzarr.storage.config import (
    ChunkStrategy,
    Compressor,
    FieldArrangement,
    NgffVersion,
    Shuffle,
)
from napari_wellzarr.storage.geometry import PlateGeometry
from napari_wellzarr.storage.store import PlateStore

if TYPE_CHECKING:
    from collections.abc import Generator
    from pathlib import Path

SHAPE = (16, 24)
WELLS = ("A01", "B03", "C02")
Truth = dict[tuple[str, int], np.ndarray]
#: Nested quantifiers: exponential backtracking on a run of x's not followed by y.
CATASTROPHIC = r"(?P<well>A\d+)_(x+x+)+y"


def imagexpress_set(root: Path, seed: int, wells: tuple[str, ...] = WELLS) -> Truth:
    """ImageXpress names ``screen_B03_s1_w2.tif``: one site, 2 channels per well."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    truth: Truth = {}
    for well in wells:
        for c in range(2):
            data = rng.integers(0, 65535, size=SHAPE, dtype=np.uint16, endpoint=True)
            tifffile.imwrite(root / f"screen_{well}_s1_w{c + 1}.tif", data)
            truth[well, c] = data
    return truth


def drain(job: Generator[Any, None, Any], on_item: Any = None) -> tuple[list[Any], Any]:
    """Run a worker generator to its end in this thread: (items yielded, return value)."""
    items: list[Any] = []
    while True:
        try:
            item = next(job)
        except StopIteration as stop:
            return items, stop.value
        items.append(item)
        if on_item is not None:
            on_item(item)


def scanned_session(folder: Path, **options: Any) -> ConverterSession:
    session = ConverterSession(ConversionOptions(source=folder, **options))
    ticket = session.start_scan()
    _, out = drain(ticket.job())
    assert session.finish_scan(ticket, out)
    assert isinstance(session.plan, ConversionPlan), out
    return session


def assert_plate_equals(dest: Path, truth: Truth, wells: tuple[str, ...]) -> None:
    store = PlateStore.open(dest)
    assert sorted(store.wells()) == sorted(wells)
    for well in wells:
        data = store.read_well(well)  # (field, c, z, y, x)
        for c in range(2):
            np.testing.assert_array_equal(data[0, c, 0], truth[well, c], err_msg=f"{well} c{c}")


# -- the module and its options ---------------------------------------------------------


def test_the_module_imports_neither_qt_nor_napari_nor_magicgui() -> None:
    code = (
        "import sys, napari_wellzarr.plugin.conversion\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'superqt'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"conversion imported {out.stdout.strip()}"


@pytest.mark.parametrize(
    ("name", "enum", "default_choice"),
    [
        ("compressor", Compressor, False),
        ("shuffle", Shuffle, True),
        ("chunks", ChunkStrategy, True),
        ("ngff_version", NgffVersion, False),
        ("fields", FieldArrangement, False),
        ("source_kind", Source, False),
    ],
)
def test_every_choice_of_the_form_is_a_member_of_the_core_enum(
    name: str, enum: type[Any], default_choice: bool
) -> None:
    annotation = inspect.signature(ConversionOptions).parameters[name].annotation
    assert not isinstance(annotation, str), "magicgui would see an unevaluated annotation"
    kind, options = get_args(annotation)
    assert enum in (kind, *get_args(kind))
    values = [value for _, value in options["choices"]]
    assert set(values) - {None} == set(enum)  # every member, nothing re-typed
    assert (None in values) is default_choice
    assert all(label == value.value for label, value in options["choices"] if value is not None)


def test_naming_choices_follow_the_scheme_registry() -> None:
    from napari_wellzarr.convert.naming import RegexScheme, register_scheme, unregister_scheme

    before = conversion.naming_choices()
    assert before[0] == "auto"
    assert before[-1] == "pattern"
    assert "imagexpress" in before
    scheme = RegexScheme("testscheme", r"(?P<well>[A-P]\d{2})_c(?P<channel>\d)\.tif")
    register_scheme(scheme)
    try:
        assert conversion.naming_choices() == [*before[:-1], "testscheme", "pattern"]
    finally:
        unregister_scheme("testscheme")
    assert conversion.naming_choices() == before


def test_options_build_the_storage_config_with_the_core_enums() -> None:
    options = ConversionOptions(
        compressor=Compressor.ZSTD,
        level=" 5 ",
        chunks=ChunkStrategy.PLANE,
        ngff_version=NgffVersion.V04,
        plate=384,
        fields=FieldArrangement.PER_FIELD,
        pyramid_levels=3,
    )
    config = options.storage_config()
    assert config.compressor is Compressor.ZSTD
    assert config.level == 5
    assert config.chunks is ChunkStrategy.PLANE
    assert config.ngff_version is NgffVersion.V04
    assert config.plate == PlateGeometry(16, 24)
    assert config.fields is FieldArrangement.PER_FIELD
    assert config.pyramid_levels == 3
    default = ConversionOptions().storage_config()
    assert default.plate == PlateGeometry(8, 12)  # auto without a plan: 96 wells
    assert default.level is not None  # empty level: the codec's default


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"level": "five"}, "level='five' must be a whole number"),
        ({"compressor": Compressor.NONE, "level": "3"}, "no level"),
        ({"chunks": ChunkStrategy.SHARDED, "ngff_version": NgffVersion.V04}, "zarr v3"),
        ({"resume": True, "overwrite": True}, "resume and overwrite exclude each other"),
    ],
)
def test_impossible_options_are_explained(options: dict[str, Any], message: str) -> None:
    session = ConverterSession(ConversionOptions(**options))
    with pytest.raises(ConfigError, match=message):
        session.config()
    assert message.split("=")[0] in session.config_problem()
    assert not session.may_run()


# -- scans ------------------------------------------------------------------------------


def test_a_scan_yields_its_progress_and_its_plan_sets_the_auto_plate(tmp_path: Path) -> None:
    imagexpress_set(tmp_path / "raw", seed=1, wells=("A01", "J14"))  # J14: not on 96 wells
    session = ConverterSession(ConversionOptions(source=tmp_path / "raw"))
    assert session.config().plate == PlateGeometry(8, 12)
    ticket = session.start_scan()
    assert session.busy
    items, out = drain(ticket.job())
    assert all(i is None or (len(i) == 2 and 0 <= i[0] <= i[1]) for i in items)
    assert session.finish_scan(ticket, out)
    assert not session.busy
    assert session.plan is out
    assert session.config().plate == PlateGeometry(16, 24)  # the smallest plate holding J14
    session.update(ConversionOptions(source=tmp_path / "raw", plate=96))
    assert session.plan is out  # the plate is not a scan option
    assert "J14" in session.config_problem()


def test_a_scan_result_for_changed_options_is_dropped(tmp_path: Path) -> None:
    imagexpress_set(tmp_path / "raw", seed=2)
    imagexpress_set(tmp_path / "other", seed=3, wells=("D04",))
    session = ConverterSession(ConversionOptions(source=tmp_path / "raw"))
    ticket = session.start_scan()
    _, out = drain(ticket.job())
    assert isinstance(out, ConversionPlan)
    assert session.update(ConversionOptions(source=tmp_path / "other"))  # before delivery
    assert not session.finish_scan(ticket, out)
    assert session.plan is None
    assert session.scan is ticket  # the widget abandons it; the session never applies it
    session.abandon_scan()
    assert ticket.cancel.is_set()
    assert not session.busy

    ticket = session.start_scan()
    _, out = drain(ticket.job())
    assert session.finish_scan(ticket, out)
    assert session.plan is not None
    assert session.plan.source == tmp_path / "other"
    assert not session.finish_scan(ticket, out)  # a second delivery changes nothing


def test_an_abandoned_scan_is_never_applied_and_cancel_stops_it(tmp_path: Path) -> None:
    imagexpress_set(tmp_path / "raw", seed=4)
    session = ConverterSession(ConversionOptions(source=tmp_path / "raw"))
    ticket = session.start_scan()
    assert session.abandon_scan()
    assert not session.abandon_scan()  # nothing left to abandon
    _, out = drain(ticket.job())
    assert out == "cancelled"  # the progress callback saw the cancel
    assert not session.finish_scan(ticket, out)
    assert session.plan is None


def test_scan_without_a_folder_never_walks_the_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(conversion, "scan_source", lambda *a, **k: calls.append(a))
    session = ConverterSession()
    with pytest.raises(ConfigError, match="choose a folder first"):
        session.start_scan()
    assert session.scan is None
    assert calls == []


def test_a_failed_scan_returns_its_message_and_leaves_no_plan(tmp_path: Path) -> None:
    session = ConverterSession(ConversionOptions(source=tmp_path / "missing"))
    ticket = session.start_scan()
    _, out = drain(ticket.job())
    assert isinstance(out, str)
    assert "missing" in out
    assert session.finish_scan(ticket, out)
    assert session.plan is None
    assert not session.busy
    assert session.start_run() == "Choose an output path first."


def test_a_catastrophic_pattern_keeps_yielding_then_reports_the_budget(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    for well in ("A01", "A02", "A03"):
        tifffile.imwrite(tmp_path / "raw" / f"{well}_{'x' * 40}.tif", np.zeros(SHAPE, np.uint16))
    ticket = ConverterSession(
        ConversionOptions(source=tmp_path / "raw", naming="pattern", pattern=CATASTROPHIC)
    ).start_scan()
    job = ticket.job()
    start = time.perf_counter()
    gaps: list[float] = []
    items, out = drain(job, lambda _: gaps.append(time.perf_counter()))
    elapsed = time.perf_counter() - start
    assert elapsed > 4.0  # the core's 5 s budget ran out
    # the generator handed control back all along (a worker can quit between yields)
    assert max(np.diff([start, *gaps])) < 1.0
    assert len(items) > 20
    assert isinstance(out, str)
    assert out.startswith("pattern")
    assert "backtracks catastrophically" in out


# -- runs -------------------------------------------------------------------------------


def test_run_needs_a_scan_of_the_current_options_and_an_output(tmp_path: Path) -> None:
    imagexpress_set(tmp_path / "raw", seed=5)
    dest = tmp_path / "out.ome.zarr"
    session = ConverterSession(ConversionOptions(source=tmp_path / "raw"))
    assert session.start_run() == "Choose an output path first."
    session.update(ConversionOptions(source=tmp_path / "raw", output=dest))
    assert not session.may_run()
    assert session.start_run() == "Scan the folder first."
    session = scanned_session(tmp_path / "raw", output=dest)
    assert session.may_run()
    session.update(ConversionOptions(source=tmp_path / "raw", output=dest, naming="opera"))
    assert session.plan is None  # scanned with other naming: scan again
    assert session.start_run() == "Scan the folder first."
    session.update(ConversionOptions(source_kind=Source.LAYERS, output=dest))
    assert session.may_run()  # layers are in memory: nothing to scan


def test_a_folder_run_yields_every_well_and_writes_the_plate(tmp_path: Path) -> None:
    truth = imagexpress_set(tmp_path / "raw", seed=6)
    dest = tmp_path / "screen.ome.zarr"
    session = scanned_session(tmp_path / "raw", output=dest, compressor=Compressor.ZSTD, level="5")
    job = session.start_run()
    assert not isinstance(job, str), job
    assert session.busy
    assert not session.may_run()
    assert session.start_run() == ""  # one run at a time
    events, result = drain(job)
    session.finish_run()
    assert not session.busy
    assert isinstance(result, ConversionResult)
    assert result.complete
    assert [(e.done, e.total) for e in events] == [(1, 3), (2, 3), (3, 3)]
    assert sorted(e.well for e in events) == sorted(WELLS)
    assert_plate_equals(dest, truth, WELLS)
    config = PlateStore.open(dest).config
    assert config is not None
    assert config.compressor is Compressor.ZSTD
    assert config.level == 5


def test_cancel_leaves_a_valid_partial_plate_and_resume_completes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = imagexpress_set(tmp_path / "raw", seed=7)
    dest = tmp_path / "screen.ome.zarr"
    real = conversion.convert
    session = scanned_session(tmp_path / "raw", output=dest)

    def cancel_in_the_first_event(*args: Any, **kwargs: Any) -> Any:
        progress = kwargs["progress"]

        def on_well(event: WellEvent) -> None:
            session.cancel_run()  # as the Cancel button does, from the first event on
            progress(event)

        return real(*args, **{**kwargs, "progress": on_well})

    monkeypatch.setattr(conversion, "convert", cancel_in_the_first_event)
    job = session.start_run()
    assert not isinstance(job, str), job
    _, result = drain(job)
    session.finish_run()
    assert result.cancelled
    assert not result.complete
    assert len(result.written) == 1
    assert len(result.remaining) == 2
    assert "2 well(s) not converted" in result.resume_hint
    assert_plate_equals(dest, truth, result.written)

    monkeypatch.setattr(conversion, "convert", real)
    session.update(ConversionOptions(source=tmp_path / "raw", output=dest, resume=True))
    job = session.start_run()
    assert not isinstance(job, str), job
    _, again = drain(job)
    assert again.complete
    assert set(again.skipped) == set(result.written)
    assert_plate_equals(dest, truth, WELLS)


def test_a_failing_run_raises_from_the_generator(tmp_path: Path) -> None:
    imagexpress_set(tmp_path / "raw", seed=8)
    dest = tmp_path / "screen.ome.zarr"
    dest.mkdir()
    (dest / "keep.txt").write_text("not a plate")
    session = scanned_session(tmp_path / "raw", output=dest)
    job = session.start_run()
    assert not isinstance(job, str), job
    with pytest.raises(PlateExistsError, match=r"screen\.ome\.zarr"):
        drain(job)
    assert (dest / "keep.txt").read_text() == "not a plate"
    assert [t for t in threading.enumerate() if t.name == "wellzarr-convert"] == []


def layer_tuples(rng: np.random.Generator) -> tuple[list[Any], dict[str, np.ndarray]]:
    planes = {
        name: rng.integers(0, 4000, size=SHAPE, dtype=np.uint16)
        for name in ("B03_DAPI", "B03_GFP", "C05_DAPI", "C05_GFP")
    }
    return [(data, {"name": name}, "image") for name, data in planes.items()], planes


@pytest.mark.parametrize(("plate", "geometry"), [(None, (8, 12)), (384, (16, 24))])
def test_layers_are_written_with_the_writer_mapping(
    tmp_path: Path, plate: int | None, geometry: tuple[int, int]
) -> None:
    layers, planes = layer_tuples(np.random.default_rng(9))
    dest = tmp_path / "layers.ome.zarr"
    session = ConverterSession(
        ConversionOptions(source_kind=Source.LAYERS, output=dest, plate=plate)
    )
    job = session.start_run(layers)
    assert not isinstance(job, str), job
    events, result = drain(job)
    assert result.complete
    assert [(e.well, e.done, e.total) for e in events] == [("B03", 1, 2), ("C05", 2, 2)]
    store = PlateStore.open(dest)
    assert store.config is not None
    assert store.config.plate == PlateGeometry(*geometry)
    for well in ("B03", "C05"):
        data = store.read_well(well)
        np.testing.assert_array_equal(data[0, 0, 0], planes[f"{well}_DAPI"])
        np.testing.assert_array_equal(data[0, 1, 0], planes[f"{well}_GFP"])


def test_cancel_stops_a_layers_run_after_the_well_in_flight(tmp_path: Path) -> None:
    layers, _ = layer_tuples(np.random.default_rng(10))
    dest = tmp_path / "layers.ome.zarr"
    session = ConverterSession(ConversionOptions(source_kind=Source.LAYERS, output=dest))
    job = session.start_run(layers)
    assert not isinstance(job, str), job
    events, result = drain(job, lambda _: session.cancel_run())
    assert len(events) == 1
    assert result.cancelled
    assert result.written == ("B03",)
    assert result.remaining == ("C05",)
    assert sorted(PlateStore.open(dest).wells()) == ["B03"]


def test_write_plate_writes_every_mapped_well_and_returns_their_names(tmp_path: Path) -> None:
    layers, planes = layer_tuples(np.random.default_rng(11))
    mapping = layer_wells.map_layers(layers)
    events, written = drain(layer_wells.write_plate(mapping, tmp_path / "p.zarr", name="mine"))
    assert written == ("B03", "C05")
    assert [e.raw_bytes for e in events] == [2 * planes["B03_DAPI"].nbytes] * 2
    assert all(e.status == "written" for e in events)
    store = PlateStore.open(tmp_path / "p.zarr")
    assert store.config == mapping.config
    np.testing.assert_array_equal(store.read_well("C05")[0, 1, 0], planes["C05_GFP"])
