"""The ``wellzarr`` command, run as a subprocess: convert, info, validate, exit codes, resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from napari_wellzarr.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_USAGE
from napari_wellzarr.core import PlaneKey, PlateStore, StorageConfig
from tests.convert.helpers import (
    assert_plate,
    ix_set,
    plate_digest,
    start_cli,
    wait_for_wells,
    wellzarr,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_convert_info_validate(tmp_path: Path, rng: np.random.Generator) -> None:
    truth = ix_set(
        tmp_path / "src",
        rng,
        wells=("A01", "B03", "H12"),
        skip=frozenset({("B03", PlaneKey(1, 1, 0))}),
    )
    tifffile.imwrite(tmp_path / "src" / "screen_A01_s1_w1_thumb.tif", np.zeros((4, 4), "u1"))
    (tmp_path / "src" / "screen.HTD").write_text("layout")
    dest = tmp_path / "screen.ome.zarr"

    done = wellzarr("convert", tmp_path / "src", dest)
    assert done.returncode == EXIT_OK, done.stderr
    assert "scheme imagexpress (imagexpress 11, opera 0), 1 not matched, 1 other" in done.stderr
    assert "missing: screen_B03_s2_w2.tif" in done.stderr
    assert "well H12 written (3/3)" in done.stderr
    assert "3 well(s) written" in done.stdout
    assert_plate(dest, truth, missing=(("B03", PlaneKey(1, 1, 0)),))

    info = wellzarr("info", dest, "--json")
    assert info.returncode == EXIT_OK, info.stderr
    doc = json.loads(info.stdout)
    assert doc["wells"] == ["A01", "B03", "H12"]
    assert (doc["rows"], doc["columns"], doc["ngff_version"]) == (8, 12, "0.5")
    assert doc["well_shapes"] == [[2, 2, 1, 32, 48]]
    assert (doc["chunks"], doc["shards"]) == ([1, 1, 1, 32, 48], [2, 2, 1, 32, 48])
    blosc = doc["compressors"][0]["configuration"]
    assert (blosc["cname"], blosc["clevel"]) == ("lz4", StorageConfig().level)  # the default
    assert doc["mapped_files"] == 11
    text = wellzarr("info", dest)
    assert "in shards (2, 2, 1, 32, 48)" in text.stdout
    assert "blosc" in text.stdout

    valid = wellzarr("validate", dest, "--deep")
    assert valid.returncode == EXIT_OK, valid.stdout
    assert "valid; spec: ome-zarr-models" in valid.stdout


def test_storage_options_reach_the_plate(tmp_path: Path, rng: np.random.Generator) -> None:
    ix_set(tmp_path / "src", rng, wells=("A01", "C05"))
    dest = tmp_path / "p.zarr"
    done = wellzarr(
        "convert", tmp_path / "src", dest, "--json", "--compressor", "zstd", "--level", "5",
        "--chunks", "plane", "--channel-names", "DNA,Actin", "--pyramid-levels", "2",
        "--plate-format", "384", "--fields", "per-field", "--pixel-size", "0.65",
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    result = json.loads(done.stdout)
    assert (result["complete"], result["written"], result["exit_code"]) == (True, ["A01", "C05"], 0)
    store = PlateStore.open(dest)
    config = store.config
    assert config is not None
    assert (
        config.compressor.value,
        config.level,
        config.chunks.value if config.chunks else "",
    ) == (
        "zstd",
        5,
        "plane",
    )
    assert (config.plate.rows, config.fields.value, config.pyramid_levels) == (16, "per-field", 2)
    info = store.well_info("C05")
    assert [c.label for c in info.channels] == ["DNA", "Actin"]
    assert info.n_levels == 2
    assert info.scale[-2:] == (0.65, 0.65)


def test_dry_run_writes_nothing(tmp_path: Path, rng: np.random.Generator) -> None:
    ix_set(tmp_path / "src", rng, wells=("A01",))
    done = wellzarr("convert", tmp_path / "src", tmp_path / "p.zarr", "--dry-run", "--json")
    assert done.returncode == EXIT_OK, done.stderr
    plan = json.loads(done.stdout)
    assert (plan["wells"], plan["fields"], plan["channels"]) == (1, 2, 2)
    assert 0 < plan["estimated_bytes"] <= plan["raw_bytes"] * 1.1
    assert not (tmp_path / "p.zarr").exists()


def test_user_pattern_on_the_command_line(tmp_path: Path, rng: np.random.Generator) -> None:
    (tmp_path / "src").mkdir()
    planes = {}
    for row, col, c in np.ndindex(2, 3, 2):
        planes[row, col, c] = rng.integers(0, 255, (32, 48), dtype="u1")
        tifffile.imwrite(
            tmp_path / "src" / f"R{row + 1}C{col + 1}_ch{c + 1}.tif", planes[row, col, c]
        )
    done = wellzarr(
        "convert", tmp_path / "src", tmp_path / "p.zarr", "--scheme", "pattern",
        "--pattern", r"R(?P<row>\d)C(?P<col>\d)_ch(?P<channel>\d)\.tif",
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    store = PlateStore.open(tmp_path / "p.zarr")
    assert store.wells() == ["A01", "A02", "A03", "B01", "B02", "B03"]
    np.testing.assert_array_equal(store.read_plane("B03", 0, 1), planes[1, 2, 1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["convert"], "the following arguments are required"),
        (["convert", "{src}", "{dest}", "--level", "99"], "level=99 is out of range"),
        (["convert", "{tmp}/nowhere", "{dest}"], "is not a folder"),
        (["convert", "{src}", "{dest}", "--compressor", "zip"], "invalid choice: 'zip'"),
        (["convert", "{src}", "{dest}", "--pattern", "(?P<well>[A-"], "bad pattern"),
        (["convert", "{src}", "{dest}", "--scheme", "opera"], "matches the opera scheme"),
        (["convert", "{src}", "{dest}", "--resume", "--overwrite"], "exclude each other"),
        (["convert", "{src}", "{dest}", "--workers", "0"], "--workers 0"),
        (["convert", "{src}", "{dest}", "--plate-format", "7"], "not a standard plate"),
        (["convert", "{src}", "{dest}", "--plate-format", "6"], "outside the 2x3 plate"),
        (["convert", "{src}", "{dest}", "--strict"], "strict mode: 1 plane(s) have no file"),
        (["convert", "{src}", "{dest}", "--level", "x"], "invalid int value"),
        (["info", "{tmp}/nowhere"], "no plate at"),
        (["validate", "{tmp}/nowhere"], "does not exist"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_user_errors_exit_2_in_one_line(
    tmp_path: Path, rng: np.random.Generator, args: list[str], message: str
) -> None:
    ix_set(
        tmp_path / "src", rng, wells=("A01", "C05"), skip=frozenset({("A01", PlaneKey(0, 0, 0))})
    )
    paths = {"src": tmp_path / "src", "dest": tmp_path / "p.zarr", "tmp": tmp_path}
    done = wellzarr(*(a.format(**paths) for a in args))
    assert done.returncode == EXIT_USAGE, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "p.zarr").exists()


def test_existing_dest_needs_resume_or_overwrite(tmp_path: Path, rng: np.random.Generator) -> None:
    ix_set(tmp_path / "src", rng, wells=("A01",))
    assert wellzarr("convert", tmp_path / "src", tmp_path / "p.zarr", "-q").returncode == EXIT_OK
    again = wellzarr("convert", tmp_path / "src", tmp_path / "p.zarr", "-q")
    assert again.returncode == EXIT_USAGE
    assert "already exists" in again.stderr
    level = StorageConfig().level
    assert level is not None
    other = level - 1  # not the default level the plate was written with
    mismatch = wellzarr(
        "convert", tmp_path / "src", tmp_path / "p.zarr", "--resume", "--level", other
    )
    assert mismatch.returncode == EXIT_USAGE
    assert f"level is {level} there, {other} here" in mismatch.stderr
    same = wellzarr("convert", tmp_path / "src", tmp_path / "p.zarr", "--resume", "--json")
    assert same.returncode == EXIT_OK
    assert json.loads(same.stdout)["skipped"] == ["A01"]
    over = wellzarr("convert", tmp_path / "src", tmp_path / "p.zarr", "--overwrite", "--level", "9")
    assert over.returncode == EXIT_OK, over.stderr


def test_validate_reports_problems_with_exit_3(tmp_path: Path, rng: np.random.Generator) -> None:
    ix_set(tmp_path / "src", rng, wells=("A01", "A02", "B01"))
    dest = tmp_path / "p.zarr"
    assert wellzarr("convert", tmp_path / "src", dest, "-q").returncode == EXIT_OK
    (dest / "A" / "02" / "0" / "0" / "c.0.0.0.0.0").unlink()  # the well's shard
    shallow = wellzarr("validate", dest)
    assert shallow.returncode == EXIT_OK  # metadata alone is fine
    deep = wellzarr("validate", dest, "--deep", "--json")
    assert deep.returncode == EXIT_INVALID
    report = json.loads(deep.stdout)
    assert any("well A02" in p and "missing" in p for p in report["problems"])
    import shutil

    shutil.rmtree(dest / "B" / "01")
    gone = wellzarr("validate", dest)
    assert gone.returncode == EXIT_INVALID
    assert "well B01 is listed but cannot be opened" in gone.stdout


def test_a_failed_well_exits_1_and_resume_finishes(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    truth = ix_set(tmp_path / "src", rng, wells=("A01", "A02", "A03"))
    broken = tmp_path / "src" / "screen_A02_s2_w1.tif"
    good = broken.read_bytes()
    dest = tmp_path / "p.zarr"
    # Damage the pixels once the scan has read the header: a file broken mid-run.
    broken.write_bytes(good[:-600])
    done = wellzarr("convert", tmp_path / "src", dest)
    assert done.returncode == EXIT_FAILED, done.stderr
    assert "well A02 failed" in done.stderr
    assert "screen_A02_s2_w1.tif" in done.stderr
    assert "--resume" in done.stderr
    assert "Traceback" not in done.stderr
    assert PlateStore.open(dest).wells() == ["A01"]
    broken.write_bytes(good)
    again = wellzarr("convert", tmp_path / "src", dest, "--resume")
    assert again.returncode == EXIT_OK, again.stderr
    assert_plate(dest, truth)


# -- interruptions ---------------------------------------------------------------------------


WELLS_12 = tuple(f"{r}{c:02d}" for r in "ABC" for c in range(1, 5))


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_kill_9_at_a_random_point_then_resume_equals_a_clean_run(
    tmp_path: Path, rng: np.random.Generator, request: pytest.FixtureRequest, workers: int
) -> None:
    truth = ix_set(tmp_path / "src", rng, wells=WELLS_12, fields=3, shape=(64, 96))
    dest = tmp_path / "a" / "plate.zarr"
    chance = random.Random(zlib.crc32(request.node.nodeid.encode()))
    after, pause = chance.randint(1, 8), chance.uniform(0, 0.02)
    with start_cli("convert", tmp_path / "src", dest, "--workers", workers) as proc:
        wait_for_wells(proc, after)
        time.sleep(pause)
        os.killpg(proc.pid, signal.SIGKILL)  # power loss: every process of the run dies at once
        assert proc.wait(timeout=30) == -signal.SIGKILL
    on_disk = [w for w in WELLS_12 if (dest / w[0] / w[1:] / "zarr.json").is_file()]
    # (all 12 may be on disk: the kill can land after the last well, before it is listed)
    assert after <= len(on_disk), (after, pause, on_disk)

    resumed = wellzarr(
        "convert", tmp_path / "src", dest, "--resume", "--workers", workers, "--json"
    )
    assert resumed.returncode == EXIT_OK, resumed.stderr
    result = json.loads(resumed.stdout)
    assert sorted(result["skipped"]) == on_disk
    assert len(result["written"]) == len(WELLS_12) - len(on_disk)
    clean = wellzarr("convert", tmp_path / "src", tmp_path / "b" / "plate.zarr", "-q")
    assert clean.returncode == EXIT_OK
    assert plate_digest(dest) == plate_digest(tmp_path / "b" / "plate.zarr")
    # the resumed run rebuilt the plate overview from every well: the clean run's
    overviews = [PlateStore.open(p).overview() for p in (dest, tmp_path / "b" / "plate.zarr")]
    assert overviews[0] is not None
    assert overviews[1] is not None
    assert overviews[0].n_wells == len(WELLS_12)
    shards = [
        p / o.path / "c/0/0/0/0/0"
        for p, o in zip((dest, tmp_path / "b" / "plate.zarr"), overviews, strict=True)
    ]
    assert shards[0].read_bytes() == shards[1].read_bytes()
    assert_plate(dest, truth)
    assert wellzarr("validate", dest).returncode == EXIT_OK


def test_ctrl_c_finishes_the_well_in_flight_and_exits_130(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    ix_set(tmp_path / "src", rng, wells=WELLS_12, fields=3, shape=(64, 96))
    dest = tmp_path / "plate.zarr"
    with start_cli("convert", tmp_path / "src", dest) as proc:
        wait_for_wells(proc, 1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "stopping after the wells in flight" in err
    assert "--resume" in err
    listed = PlateStore.open(dest).wells()
    assert 1 <= len(listed) < len(WELLS_12)  # the wells written are listed, whole
    done = wellzarr("convert", tmp_path / "src", dest, "--resume", "-q")
    assert done.returncode == EXIT_OK, done.stderr
    assert PlateStore.open(dest).wells() == list(WELLS_12)


@pytest.mark.slow
def test_scheduler_option_uses_a_dask_cluster(tmp_path: Path, rng: np.random.Generator) -> None:
    distributed = pytest.importorskip("distributed")
    truth = ix_set(tmp_path / "src", rng, wells=("A01", "A02", "B01", "B02"))
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        done = wellzarr(
            "convert",
            tmp_path / "src",
            tmp_path / "p.zarr",
            "--scheduler",
            cluster.scheduler_address,
        )
    assert done.returncode == EXIT_OK, done.stderr
    assert_plate(tmp_path / "p.zarr", truth)


def test_the_command_and_the_engine_import_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import napari_wellzarr.cli, napari_wellzarr.convert.engine\n"
        "import napari_wellzarr.storage.validation\n"
        "heavy = {'dask', 'distributed', 'napari', 'qtpy', 'PyQt6', 'zarr', 'tifffile'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_an_unreachable_scheduler_is_a_user_error_before_writing(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    ix_set(tmp_path / "src", rng, wells=("A01",))
    done = wellzarr(
        "convert", tmp_path / "src", tmp_path / "p.zarr", "--scheduler", "tcp://127.0.0.1:1"
    )
    assert done.returncode == EXIT_USAGE
    assert "cannot reach the dask scheduler" in done.stderr
    assert not (tmp_path / "p.zarr").exists()
