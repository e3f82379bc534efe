"""Folder-of-TIFFs -> plate conversion (core.sources, core.convert): every plane lands by name."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import threading
import time
import tracemalloc
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from napari_wellzarr.convert.engine import ConversionPlan, WellEvent, convert, scan_source
from napari_wellzarr.core import (
    ConfigError,
    PlaneKey,
    PlateExistsError,
    PlateStore,
    StorageConfig,
    WellDataError,
    WellNameError,
)
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage.validation import check_plate
from tests.convert.helpers import SHAPE, Truth, assert_plate, ix_set, pixels, plate_digest

if TYPE_CHECKING:
    from pathlib import Path


def opera_set(root: Path, rng: np.random.Generator, zs: int = 2, ts: int = 2) -> Truth:
    root.mkdir(parents=True, exist_ok=True)
    truth: Truth = {}
    for row, col in ((1, 1), (2, 5)):
        well = f"{'ABCDEFGH'[row - 1]}{col:02d}"
        for f, c, z, t in np.ndindex(2, 2, zs, ts):
            name = f"r{row:02d}c{col:02d}f{f + 1:02d}p{z + 1:02d}-ch{c + 1}sk{t + 1}fk1fl1.tiff"
            data = pixels(rng, "u2")
            tifffile.imwrite(root / name, data)
            truth[well, PlaneKey(f, c, z, t)] = (name, data)
    return truth


@pytest.fixture
def gen(rng: np.random.Generator) -> np.random.Generator:
    return rng


# -- every naming scheme, every plane equals its file ----------------------------------------


@pytest.mark.parametrize("dtype", ["u1", "u2", "f4"])
def test_imagexpress_with_z_converts_plane_by_plane(
    tmp_path: Path, gen: np.random.Generator, dtype: str
) -> None:
    truth = ix_set(tmp_path / "src", gen, zs=3, dtype=dtype)
    plan = scan_source(tmp_path / "src")
    assert (plan.scheme, plan.dims, plan.dtype) == (
        "imagexpress",
        (2, 2, 3, 1),
        np.dtype(dtype).name,
    )
    assert plan.channel_names == ("w1", "w2")
    result = convert(plan, tmp_path / "p.zarr", StorageConfig())
    assert result.complete
    assert sorted(result.written) == ["A01", "B03"]
    store = assert_plate(tmp_path / "p.zarr", truth)
    assert [c.label for c in store.well_info("A01").channels] == ["w1", "w2"]


def test_imagexpress_time_series_needs_and_gets_per_field(
    tmp_path: Path, gen: np.random.Generator
) -> None:
    truth = ix_set(tmp_path / "src", gen, fields=1, zs=2, ts=3)
    plan = scan_source(tmp_path / "src")
    assert plan.has_time
    assert plan.well_shape == (1, 3, 2, 2, *SHAPE)
    with pytest.raises(ConfigError, match="per-field"):
        convert(plan, tmp_path / "stacked.zarr", StorageConfig())
    assert not (tmp_path / "stacked.zarr").exists()
    convert(plan, tmp_path / "p.zarr", StorageConfig(fields="per-field"))
    assert_plate(tmp_path / "p.zarr", truth)


def test_imagexpress_timepoint_and_zstep_folders(tmp_path: Path, gen: np.random.Generator) -> None:
    truth = ix_set(tmp_path / "src", gen, fields=1, zs=2, ts=2, folders=True)
    plan = scan_source(tmp_path / "src")
    assert plan.dims == (1, 2, 2, 2)
    convert(plan, tmp_path / "p.zarr", StorageConfig(fields="per-field", ngff_version="0.4"))
    store = assert_plate(tmp_path / "p.zarr", truth)
    assert "screen_A01_s1_w2_z002_t001.tif" in store.well_info("A01").plane_names


def test_opera_with_planes_and_timepoints(tmp_path: Path, gen: np.random.Generator) -> None:
    truth = opera_set(tmp_path / "src", gen)
    plan = scan_source(tmp_path / "src")
    assert (plan.scheme, plan.dims, plan.channel_names) == ("opera", (2, 2, 2, 2), ("ch1", "ch2"))
    convert(plan, tmp_path / "p.zarr", StorageConfig(fields="per-field"))
    assert_plate(tmp_path / "p.zarr", truth)


def test_user_pattern_with_channel_words(tmp_path: Path, gen: np.random.Generator) -> None:
    src = tmp_path / "src"
    src.mkdir()
    truth: Truth = {}
    for well, row, col in (("B02", "2", "02"), ("C11", "3", "11")):
        for f, (c, word) in ((f, cw) for f in range(2) for cw in enumerate(["gfp", "dapi"])):
            data = pixels(gen, "u2")
            name = f"exp-R{row}-C{col}-{word}-site{f + 1}.tif"
            tifffile.imwrite(src / name, data)
            truth[well, PlaneKey(f, c, 0)] = (name, data)
    pattern = r"exp-R(?P<row>\d+)-C(?P<col>\d+)-(?P<channel>[a-z]+)-site(?P<field>\d+)\.tif"
    plan = scan_source(src, pattern=pattern, channel_names=["GFP", "DAPI"])
    assert (plan.scheme, plan.channel_names) == ("pattern", ("GFP", "DAPI"))
    convert(plan, tmp_path / "p.zarr", StorageConfig())
    store = assert_plate(tmp_path / "p.zarr", truth)
    assert [c.label for c in store.well_info("C11").channels] == ["GFP", "DAPI"]


def test_multipage_stacks_are_z(tmp_path: Path, gen: np.random.Generator) -> None:
    src = tmp_path / "src"
    src.mkdir()
    truth: Truth = {}
    for well in ("A01", "D04"):
        for c in range(2):
            stack = np.stack([pixels(gen, "u2") for _ in range(4)])
            name = f"run_{well}_s1_w{c + 1}.tif"
            tifffile.imwrite(src / name, stack, photometric="minisblack")
            for z in range(4):
                truth[well, PlaneKey(0, c, z)] = (f"{name}#{z + 1}", stack[z])
    plan = scan_source(src)
    assert plan.dims == (1, 2, 4, 1)
    convert(plan, tmp_path / "p.zarr", StorageConfig(chunks="well"))
    assert_plate(tmp_path / "p.zarr", truth)


def test_big_endian_and_signed_planes(tmp_path: Path, gen: np.random.Generator) -> None:
    (tmp_path / "src").mkdir()
    truth: Truth = {}
    for c in range(2):
        data = pixels(gen, "i2")
        name = f"be_A01_s1_w{c + 1}.tif"
        tifffile.imwrite(tmp_path / "src" / name, data, byteorder=">")
        truth["A01", PlaneKey(0, c, 0)] = (name, data)
    plan = scan_source(tmp_path / "src")
    assert plan.dtype == "int16"
    convert(plan, tmp_path / "p.zarr", StorageConfig())
    assert_plate(tmp_path / "p.zarr", truth)


def test_rgb_and_hyperstack_files_are_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "rgb").mkdir()
    tifffile.imwrite(tmp_path / "rgb" / "x_A01_s1_w1.tif", np.zeros((*SHAPE, 3), "u1"))
    with pytest.raises(WellDataError, match=r"x_A01_s1_w1\.tif' holds YXS data"):
        scan_source(tmp_path / "rgb")
    (tmp_path / "hyper").mkdir()
    tifffile.imwrite(
        tmp_path / "hyper" / "x_A01_s1_w1.tif", np.zeros((3, 2, *SHAPE), "u1"), imagej=True
    )
    with pytest.raises(WellDataError, match="ZCYX hyperstack"):
        scan_source(tmp_path / "hyper")


def test_a_stack_whose_name_has_a_z_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    tifffile.imwrite(
        tmp_path / "src" / "p_A01_s1_w1_z001.tif",
        np.zeros((3, *SHAPE), "u2"),
        photometric="minisblack",
    )
    with pytest.raises(WellDataError, match=r"p_A01_s1_w1_z001\.tif' holds 3 planes"):
        scan_source(tmp_path / "src")


# -- sparse sets, strict mode, mixed planes ----------------------------------------------------


def test_sparse_set_reports_missing_planes_by_file_name(
    tmp_path: Path, gen: np.random.Generator
) -> None:
    gone = frozenset(
        {("B03", PlaneKey(1, 0, 0)), ("B03", PlaneKey(1, 1, 0)), ("A01", PlaneKey(0, 1, 0))}
    )
    truth = ix_set(tmp_path / "src", gen, skip=gone)
    plan = scan_source(tmp_path / "src")
    assert sorted(m.name for m in plan.missing) == [
        "screen_A01_s1_w2.tif",
        "screen_B03_s2_w1.tif",
        "screen_B03_s2_w2.tif",
    ]
    with pytest.raises(WellDataError, match=r"strict mode: 3 plane\(s\) have no file: screen_A01"):
        convert(plan, tmp_path / "strict.zarr", StorageConfig(), strict=True)
    assert not (tmp_path / "strict.zarr").exists()
    result = convert(plan, tmp_path / "p.zarr", StorageConfig())
    assert result.missing_planes == 3
    assert_plate(tmp_path / "p.zarr", truth, missing=tuple(gone))


def test_missing_pages_of_a_stack_are_named_by_page(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    tifffile.imwrite(
        tmp_path / "src" / "p_A01_s1_w1.tif", np.ones((3, *SHAPE), "u2"), photometric="minisblack"
    )
    tifffile.imwrite(
        tmp_path / "src" / "p_A01_s1_w2.tif", np.ones((2, *SHAPE), "u2"), photometric="minisblack"
    )
    plan = scan_source(tmp_path / "src")
    assert [m.name for m in plan.missing] == ["p_A01_s1_w2.tif page 3"]


@pytest.mark.parametrize(
    ("odd_shape", "odd_dtype", "message"),
    [
        ((32, 40), "u2", r"32x40 uint16 in 1 file\(s\) \(screen_B03_s1_w1\.tif\)"),
        (SHAPE, "u1", r"32x48 uint8 in 1 file\(s\) \(screen_B03_s1_w1\.tif\)"),
    ],
)
def test_mixed_planes_are_refused_naming_the_files(
    tmp_path: Path,
    gen: np.random.Generator,
    odd_shape: tuple[int, int],
    odd_dtype: str,
    message: str,
) -> None:
    ix_set(tmp_path / "src", gen)
    tifffile.imwrite(tmp_path / "src" / "screen_B03_s1_w1.tif", pixels(gen, odd_dtype, odd_shape))
    with pytest.raises(WellDataError, match=message) as info:
        scan_source(tmp_path / "src")
    assert "32x48 uint16 in 7 file(s)" in str(info.value)


def test_two_files_for_one_plane_are_refused(tmp_path: Path) -> None:
    for sub in ("run1", "run2"):
        (tmp_path / "src" / sub).mkdir(parents=True)
        tifffile.imwrite(tmp_path / "src" / sub / f"{sub}_A01_s1_w1.tif", np.zeros(SHAPE, "u2"))
    with pytest.raises(WellDataError, match=r"run1/run1_A01_s1_w1\.tif' and 'run2/run2_A01"):
        scan_source(tmp_path / "src")


def test_unmatched_and_other_files_are_counted(tmp_path: Path, gen: np.random.Generator) -> None:
    ix_set(tmp_path / "src", gen, wells=("A01",))
    tifffile.imwrite(tmp_path / "src" / "screen_A01_s1_w1_thumb0A1B.tif", np.zeros((4, 4), "u1"))
    (tmp_path / "src" / "screen.HTD").write_text("plate layout")
    (tmp_path / "src" / ".DS_Store").write_text("")
    calls: list[tuple[int, int]] = []
    plan = scan_source(tmp_path / "src", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 4)]
    assert [u.path for u in plan.unmatched] == ["screen_A01_s1_w1_thumb0A1B.tif"]
    assert (plan.other_files, plan.n_files) == (1, 5)
    assert plan.summary()["scheme_counts"] == {"imagexpress": 4, "opera": 0}


def test_source_and_scheme_errors(tmp_path: Path, gen: np.random.Generator) -> None:
    with pytest.raises(ConfigError, match="is not a folder"):
        scan_source(tmp_path / "nowhere")
    ix_set(tmp_path / "src", gen, wells=("A01",))
    with pytest.raises(WellNameError, match=r"no file in .* matches the opera scheme"):
        scan_source(tmp_path / "src", scheme="opera")
    with pytest.raises(ConfigError, match="needs a pattern"):
        scan_source(tmp_path / "src", scheme="pattern")
    with pytest.raises(ConfigError, match="3 channel name"):
        scan_source(tmp_path / "src", channel_names=["a", "b", "c"])


def test_unreadable_tiff_is_named(tmp_path: Path, gen: np.random.Generator) -> None:
    ix_set(tmp_path / "src", gen, wells=("A01",))
    (tmp_path / "src" / "screen_A01_s3_w1.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(WellDataError, match=r"screen_A01_s3_w1\.tif' cannot be read as TIFF"):
        scan_source(tmp_path / "src")


# -- plate format, estimate, options -----------------------------------------------------------


def test_plate_format_fits_the_wells(tmp_path: Path, gen: np.random.Generator) -> None:
    ix_set(tmp_path / "src", gen, wells=("A01", "P24"), fields=1, channels=1)
    plan = scan_source(tmp_path / "src")
    assert (plan.smallest_plate().rows, plan.smallest_plate().columns) == (16, 24)
    with pytest.raises(WellNameError, match=r"outside the 8x12 plate: P24"):
        convert(plan, tmp_path / "p.zarr", StorageConfig(plate=96))
    convert(plan, tmp_path / "p.zarr", StorageConfig(plate=plan.smallest_plate()))
    assert PlateStore.open(tmp_path / "p.zarr").wells() == ["A01", "P24"]


def test_estimated_size_follows_the_codec(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    for well in ("A01", "A02"):
        tifffile.imwrite(tmp_path / "src" / f"p_{well}_s1_w1.tif", np.full(SHAPE, 7, "u2"))
    plan = scan_source(tmp_path / "src")
    assert plan.estimate_output_bytes(StorageConfig(compressor="none")) == plan.raw_bytes
    assert plan.estimate_output_bytes(StorageConfig()) < plan.raw_bytes / 20  # constant planes


def test_option_conflicts_are_refused(tmp_path: Path, gen: np.random.Generator) -> None:
    ix_set(tmp_path / "src", gen, wells=("A01",))
    plan = scan_source(tmp_path / "src")
    for kwargs in (
        {"workers": 0},
        {"workers": 2, "scheduler": "tcp://x:1"},
        {"resume": True, "overwrite": True},
    ):
        with pytest.raises(ConfigError):
            convert(plan, tmp_path / "p.zarr", StorageConfig(), **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "p.zarr").exists()


# -- progress, cancel, resume, overwrite --------------------------------------------------------


def test_cancel_then_resume_equals_a_clean_conversion(
    tmp_path: Path, gen: np.random.Generator
) -> None:
    wells = ("A01", "A02", "B05", "C07", "H12")
    ix_set(tmp_path / "src", gen, wells=wells)
    plan = scan_source(tmp_path / "src")
    cancel = threading.Event()
    events: list[WellEvent] = []

    def progress(event: WellEvent) -> None:
        events.append(event)
        if event.done == 2:
            cancel.set()

    first = convert(
        plan, tmp_path / "a" / "p.zarr", StorageConfig(), progress=progress, cancel=cancel
    )
    assert first.cancelled
    assert not first.complete
    assert (first.written, first.remaining) == (("A01", "A02"), ("B05", "C07", "H12"))
    assert "resume" in first.resume_hint
    assert [(e.well, e.status, e.done, e.total) for e in events] == [
        ("A01", "written", 1, 5),
        ("A02", "written", 2, 5),
    ]
    assert PlateStore.open(tmp_path / "a" / "p.zarr").wells() == ["A01", "A02"]

    second = convert(plan, tmp_path / "a" / "p.zarr", StorageConfig(), resume=True)
    assert second.complete
    assert (second.skipped, second.written) == (("A01", "A02"), ("B05", "C07", "H12"))
    convert(plan, tmp_path / "b" / "p.zarr", StorageConfig())
    assert plate_digest(tmp_path / "a" / "p.zarr") == plate_digest(tmp_path / "b" / "p.zarr")


def test_resume_after_a_crash_adopts_finished_wells_and_redoes_the_rest(
    tmp_path: Path, gen: np.random.Generator
) -> None:
    wells = ("A01", "A02", "B01")
    ix_set(tmp_path / "src", gen, wells=wells)
    plan = scan_source(tmp_path / "src")
    dest = tmp_path / "a" / "p.zarr"
    convert(plan, dest, StorageConfig())
    # the crash: A02 never got listed, B01 never got written, a dead writer's staging stays
    doc = json.loads((dest / "zarr.json").read_text())
    doc["attributes"]["ome"]["plate"]["wells"] = [
        w for w in doc["attributes"]["ome"]["plate"]["wells"] if w["path"] == "A/01"
    ]
    (dest / "zarr.json").write_text(json.dumps(doc, indent=2))
    shutil.rmtree(dest / "B" / "01")
    assert PlateStore.open(dest).wells() == ["A01"]
    host = socket.gethostname().replace(".", "-")
    dead = dest / ".wellzarr-staging" / f"B_01.{host}.999999999.0123456789ab"
    dead.mkdir(parents=True)
    (dead / "junk").write_bytes(b"half a well")
    (dest / f".zarr.json.{host}.999999999.0123abcd.tmp").write_text("{")
    result = convert(plan, dest, StorageConfig(), resume=True)
    assert (result.skipped, result.written) == (("A01", "A02"), ("B01",))
    assert not dead.exists()
    assert not (dest / f".zarr.json.{host}.999999999.0123abcd.tmp").exists()
    convert(plan, tmp_path / "b" / "p.zarr", StorageConfig())
    assert plate_digest(dest) == plate_digest(tmp_path / "b" / "p.zarr")


def test_resume_rewrites_a_well_whose_files_changed(
    tmp_path: Path, gen: np.random.Generator
) -> None:
    ix_set(
        tmp_path / "src", gen, wells=("A01", "A02"), skip=frozenset({("A02", PlaneKey(1, 1, 0))})
    )
    convert(scan_source(tmp_path / "src"), tmp_path / "p.zarr", StorageConfig())
    late = pixels(gen, "u2")
    tifffile.imwrite(tmp_path / "src" / "screen_A02_s2_w2.tif", late)
    result = convert(
        scan_source(tmp_path / "src"), tmp_path / "p.zarr", StorageConfig(), resume=True
    )
    assert (result.skipped, result.written) == (("A01",), ("A02",))
    np.testing.assert_array_equal(
        PlateStore.open(tmp_path / "p.zarr").read_plane("A02", 1, 1), late
    )


def test_existing_plate_needs_resume_or_overwrite(tmp_path: Path, gen: np.random.Generator) -> None:
    ix_set(tmp_path / "src", gen, wells=("A01",))
    plan = scan_source(tmp_path / "src")
    convert(plan, tmp_path / "p.zarr", StorageConfig())
    with pytest.raises(PlateExistsError, match=r"resume .* or overwrite"):
        convert(plan, tmp_path / "p.zarr", StorageConfig())
    default = StorageConfig().level
    assert default is not None
    assert default != 7
    with pytest.raises(ConfigError, match=f"level is {default} there, 7 here"):
        convert(plan, tmp_path / "p.zarr", StorageConfig(level=7), resume=True)
    result = convert(plan, tmp_path / "p.zarr", StorageConfig(level=7), overwrite=True)
    assert result.written == ("A01",)
    assert PlateStore.open(tmp_path / "p.zarr").config == StorageConfig(level=7)


def test_a_file_that_breaks_after_the_scan_fails_its_well_only(
    tmp_path: Path, gen: np.random.Generator
) -> None:
    ix_set(tmp_path / "src", gen, wells=("A01", "A02", "A03"))
    plan = scan_source(tmp_path / "src")
    broken = tmp_path / "src" / "screen_A02_s1_w2.tif"
    broken.write_bytes(broken.read_bytes()[:-500])  # truncated pixel data
    cancel = threading.Event()
    result = convert(plan, tmp_path / "p.zarr", StorageConfig(), cancel=cancel)
    assert not cancel.is_set()  # the caller's event is the caller's
    assert not result.cancelled
    assert result.written == ("A01",)
    assert [w for w, _ in result.failed] == ["A02"]
    assert "screen_A02_s1_w2.tif" in result.failed[0][1]
    assert result.remaining == ("A03",)  # stopped at the first failure
    assert PlateStore.open(tmp_path / "p.zarr").wells() == ["A01"]
    assert check_plate(tmp_path / "p.zarr").ok


def test_streaming_holds_about_one_well_not_the_plate(
    tmp_path: Path, gen: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fsio reads a metadata file with read(64 MiB + 1), which allocates (never touches)
    # 64 MiB for a moment: invisible in RSS, but tracemalloc counts it.  Bound it lower.
    monkeypatch.setattr(fsio, "MAX_METADATA_BYTES", 1 << 16)
    wells = tuple(f"{r}{c:02d}" for r in "ABCD" for c in range(1, 5))  # 16 wells
    ix_set(tmp_path / "src", gen, wells=wells, fields=4, channels=2, shape=(256, 256))
    plan = scan_source(tmp_path / "src")
    small = dataclasses.replace(plan, wells=plan.wells[:4])
    convert(small, tmp_path / "warm.zarr", StorageConfig())  # imports, caches

    def peak_of(part: ConversionPlan, dest: Path) -> int:
        tracemalloc.start()
        try:
            convert(part, dest, StorageConfig())
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak_small, peak_all = peak_of(small, tmp_path / "s.zarr"), peak_of(plan, tmp_path / "p.zarr")
    # 4 times the wells, (nearly) the same peak: about one well (1 MiB) and its buffers
    assert peak_all < 1.5 * peak_small, (peak_small, peak_all)
    assert peak_all < plan.raw_bytes / 2, (peak_all, plan.raw_bytes)


# -- parallel: local processes and dask ----------------------------------------------------------


@pytest.mark.slow
def test_two_worker_processes_write_the_same_plate(
    tmp_path: Path, gen: np.random.Generator
) -> None:
    truth = ix_set(tmp_path / "src", gen, wells=("A01", "A02", "B01", "B02", "C03"))
    plan = scan_source(tmp_path / "src")
    result = convert(plan, tmp_path / "a" / "p.zarr", StorageConfig(), workers=2)
    assert result.complete
    assert len(result.written) == 5
    assert_plate(tmp_path / "a" / "p.zarr", truth)
    convert(plan, tmp_path / "b" / "p.zarr", StorageConfig())
    assert plate_digest(tmp_path / "a" / "p.zarr") == plate_digest(tmp_path / "b" / "p.zarr")


@pytest.mark.slow
def test_dask_cluster_with_a_worker_killed_mid_run(
    tmp_path: Path, gen: np.random.Generator
) -> None:
    distributed = pytest.importorskip("distributed")
    wells = tuple(f"{r}{c:02d}" for r in "AB" for c in range(1, 7))
    truth = ix_set(tmp_path / "src", gen, wells=wells, fields=4, shape=(128, 128))
    plan = scan_source(tmp_path / "src")
    killed: list[int] = []
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster.scheduler_address, set_as_default=False) as client,
    ):
        pids = client.run(os.getpid)

        def assassin() -> None:
            # kill the first worker seen holding a well: it dies in the middle of it
            deadline = time.monotonic() + 30
            while not killed and time.monotonic() < deadline:
                for address, keys in client.processing().items():
                    if keys and address in pids:
                        os.kill(pids[address], signal.SIGKILL)
                        killed.append(pids[address])
                        return
                time.sleep(0.002)

        thread = threading.Thread(target=assassin)
        thread.start()
        result = convert(
            plan, tmp_path / "p.zarr", StorageConfig(), scheduler=cluster.scheduler_address
        )
        thread.join()
    assert killed, "no worker was seen working"
    assert result.complete
    assert sorted(result.written) == sorted(wells)
    assert_plate(tmp_path / "p.zarr", truth)
    assert check_plate(tmp_path / "p.zarr", deep=True).ok
