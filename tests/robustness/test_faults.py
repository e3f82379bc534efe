"""Fault injection: kill -9 at random moments, dask workers killed, disks that fill up.

Every fault must leave a plate that is consistent (every metadata document whole, every
well folder on disk complete and byte-identical to a clean conversion's, the well list
naming complete wells only, readers and ``wellzarr validate`` happy), and ``convert
--resume`` must then finish it byte for byte like a clean run.

The moments are seeded (``random.Random(SEED + index)``): a failing case names its
index and what was done, and repeats.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.cli import EXIT_FAILED, EXIT_OK, main
from napari_wellzarr.convert.engine import convert, scan_source
from napari_wellzarr.core import PlateStore, StorageConfig
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage.validation import check_plate
from tests.convert.helpers import ix_set, plate_digest, start_cli, wait_for_wells, wellzarr
from tests.robustness._faults_helpers import (
    DiskFull,
    assert_crash_consistent,
    assert_reader_opens,
    listed_wells,
    well_dirs,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

SEED = 20240606
WELLS_12 = tuple(f"{r}{c:02d}" for r in "ABC" for c in range(1, 5))


@dataclass(frozen=True)
class Reference:
    """A source folder and the plate a clean, uninterrupted conversion makes of it."""

    src: Path
    plate: Path
    digest: dict[str, str]


def is_chunk(rel: str) -> bool:
    """Whether a path in the plate is a chunk or shard file (``.../c.0.0.0.0.0``)."""
    return rel.rsplit("/", 1)[-1].startswith("c.")


def _validate(plate: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    """``wellzarr validate PLATE --json`` (in this process: the command's own code path)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["validate", str(plate), "--json", *extra])
    return code, json.loads(out.getvalue())


def _assert_validates(plate: Path, where: str, *extra: str) -> dict[str, Any]:
    code, report = _validate(plate, *extra)
    assert code == EXIT_OK, f"{where}: wellzarr validate: {report}"
    assert report["ok"], f"{where}: {report}"
    return report


# -- 1. kill -9 of the command at 20 moments ----------------------------------------------------


@pytest.fixture(scope="module")
def kill_reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    base = tmp_path_factory.mktemp("kill")
    ix_set(base / "src", np.random.default_rng(SEED), wells=WELLS_12, fields=3, shape=(64, 96))
    plate = base / "clean" / "plate.zarr"
    done = wellzarr("convert", base / "src", plate, "-q")
    assert done.returncode == EXIT_OK, done.stderr
    return Reference(base / "src", plate, plate_digest(plate))


@dataclass(frozen=True)
class KillMoment:
    """When to kill a conversion: at start-up, once the plan is printed, after k wells."""

    index: int
    workers: int
    kind: str  # "startup", "plan", "wells" or "resume" (kill, then kill the resume too)
    wells: int
    pause: float
    resume_wells: int = 0
    resume_pause: float = 0.0

    @classmethod
    def draw(cls, index: int) -> KillMoment:
        chance = random.Random(SEED + index)
        kind = ("startup", "plan", "wells", "wells", "resume")[index % 5]
        workers = 1 + index % 2
        if kind == "startup":
            return cls(index, workers, kind, 0, chance.uniform(0.0, 0.9))
        if kind == "plan":
            return cls(index, workers, kind, 0, chance.uniform(0.0, 0.04))
        if kind == "wells":
            return cls(index, workers, kind, chance.randint(1, 9), chance.uniform(0.0, 0.03))
        return cls(
            index,
            workers,
            kind,
            chance.randint(1, 8),
            chance.uniform(0.0, 0.03),
            chance.randint(0, 2),
            chance.uniform(0.0, 0.03),
        )


def _kill_at(args: list[Any], wells: int, pause: float, startup: bool = False) -> int:
    """Start ``wellzarr convert ARGS``; kill -9 its process group at the moment; its exit code.

    ``wells == 0``: the moment is ``pause`` after the plan is printed (or after the
    start with ``startup``), else ``pause`` after the ``wells``-th well written.
    """
    with start_cli("convert", *args) as proc:
        assert proc.stderr is not None
        if startup:
            time.sleep(pause)
        else:
            if wells:
                wait_for_wells(proc, wells)
            else:
                for line in proc.stderr:
                    if " well(s) x " in line:
                        break
            time.sleep(pause)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # power loss: every process of the run dies
        code = proc.wait(timeout=30)
        proc.stderr.read()
    return code


def _kill_mid_run(
    args: list[Any], dest: Path, wells: int, pause: float, where: str, startup: bool = False
) -> None:
    """:func:`_kill_at`, until the kill lands while the conversion still runs.

    A conversion that finished before its kill tested nothing: its plate is put back
    as it was and the same moment is tried again, earlier.
    """
    before = dest.with_name(f"{dest.name}.before")
    if dest.exists():
        shutil.copytree(dest, before, symlinks=True)  # copy2: sizes and mtimes kept
    for _ in range(4):
        code = _kill_at(args, wells, pause, startup)
        if code == -signal.SIGKILL:
            shutil.rmtree(before, ignore_errors=True)
            return
        assert code == EXIT_OK, f"{where}: exit {code}"
        shutil.rmtree(dest)
        if before.exists():
            shutil.copytree(before, dest, symlinks=True)
        pause /= 4
    raise AssertionError(f"{where}: the conversion finished before every kill")


def _after_a_kill(dest: Path, ref: Reference, where: str) -> list[str]:
    """The checks after a crash; returns the wells complete on disk."""
    if not (dest / "zarr.json").is_file():
        # Killed before the plate existed: nothing but our hidden leftovers may be there.
        assert not well_dirs(dest), f"{where}: wells on disk but no plate metadata"
        if dest.exists():
            assert all(p.name.startswith(".") for p in dest.iterdir()), (
                f"{where}: {sorted(p.name for p in dest.iterdir())}"
            )
        return []
    report = _assert_validates(dest, where)
    on_disk = assert_crash_consistent(dest, ref.digest, where)
    for problem in report["warnings"]:
        allowed = ("not listed", "leftovers of interrupted writes", "lists no wells yet")
        assert any(a in problem for a in allowed), f"{where}: unexpected warning {problem!r}"
    assert_reader_opens(dest, where)
    return on_disk


def _run_with_assassin(
    cluster: Any, client: Any, plan: Any, dest: Path, after: int, pause: float, index: int
) -> _Assassin:
    """Convert ``plan`` on the cluster while an assassin kills a busy worker."""
    assassin = _Assassin(client, _two_workers(cluster, client), pause, SEED + 200 + index)

    def progress(event: Any) -> None:
        if event.done >= after:
            assassin.reached.set()

    if after == 0:
        assassin.reached.set()
    assassin.start()
    try:
        assassin.result = convert(
            plan, dest, StorageConfig(), scheduler=cluster.scheduler_address, progress=progress
        )
    finally:
        assassin.finished.set()
        assassin.reached.set()
        assassin.join()
    return assassin


@pytest.mark.slow
@pytest.mark.parametrize("index", range(20), ids=lambda i: f"moment{i:02d}")
def test_kill_9_of_the_command_then_resume_equals_a_clean_run(
    tmp_path: Path, kill_reference: Reference, index: int
) -> None:
    ref = kill_reference
    moment = KillMoment.draw(index)
    where = f"kill moment {index} ({moment})"
    dest = tmp_path / "plate.zarr"
    workers = ["--workers", moment.workers]
    _kill_mid_run(
        [ref.src, dest, *workers],
        dest,
        moment.wells,
        moment.pause,
        where,
        startup=moment.kind == "startup",
    )
    on_disk = _after_a_kill(dest, ref, where)
    if moment.kind == "wells":
        assert moment.wells <= len(on_disk), f"{where}: {on_disk}"
    if moment.kind == "resume":
        # Kill the resume as well (during its scan, or after some more wells), check again.
        before = on_disk
        args = [ref.src, dest, "--resume", *workers]
        _kill_mid_run(args, dest, moment.resume_wells, moment.resume_pause, f"{where}, resume")
        on_disk = _after_a_kill(dest, ref, f"{where}, resume killed")
        assert set(before) <= set(on_disk), f"{where}: the killed resume lost wells"

    resumed = wellzarr("convert", ref.src, dest, "--resume", *workers, "--json")
    assert resumed.returncode == EXIT_OK, f"{where}: {resumed.stderr}"
    assert "Traceback" not in resumed.stderr
    result = json.loads(resumed.stdout)
    assert sorted(result["skipped"]) == on_disk, where
    assert sorted(result["written"]) == sorted(set(WELLS_12) - set(on_disk)), where
    assert plate_digest(dest) == ref.digest, f"{where}: the resumed plate differs"
    report = _assert_validates(dest, where, "--deep")
    assert report["warnings"] == [], f"{where}: {report['warnings']}"
    assert listed_wells(dest) == sorted(WELLS_12)
    assert_reader_opens(dest, where)


def test_resume_after_a_kill_while_the_plate_document_was_written(
    tmp_path: Path, kill_reference: Reference
) -> None:
    # The one moment kill -9 can hit that leaves a folder with no plate document: the
    # run died between creating the folder and renaming the document into place.
    ref = kill_reference
    dest = tmp_path / "plate.zarr"
    dest.mkdir()
    host = __import__("socket").gethostname().replace(".", "-")
    half = dest / f".zarr.json.{host}.999999999.0123abcd.tmp"
    half.write_text('{"zarr_format": 3, "node_')
    for extra in ([], ["--resume"]):
        done = wellzarr("convert", ref.src, dest, "-q", *extra)
        assert done.returncode == EXIT_OK, (extra, done.stderr)
        assert plate_digest(dest) == ref.digest
        assert not half.exists()
        shutil.rmtree(dest)
        dest.mkdir()
        half.write_text("{")


# -- 2. kill -9 of a dask worker at 20 moments ---------------------------------------------------

DASK_WELLS = tuple(f"{r}{c:02d}" for r in "AB" for c in range(1, 5))


@pytest.fixture(scope="module")
def dask_reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    base = tmp_path_factory.mktemp("dask")
    ix_set(base / "src", np.random.default_rng(SEED + 1), wells=DASK_WELLS, shape=(64, 64))
    plate = base / "clean" / "plate.zarr"
    assert convert(scan_source(base / "src"), plate, StorageConfig()).complete
    return Reference(base / "src", plate, plate_digest(plate))


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[Any]:
    """One local cluster (2 worker processes, each behind a nanny that restarts it).

    Its workers pause 0.1 s before placing each well (``tests/cluster/slow_wells.py``): a
    well converts in a few milliseconds, which a kill aimed at a busy worker could miss.
    """
    distributed = pytest.importorskip("distributed")
    slow = str(Path(__file__).parents[1] / "cluster" / "slow_wells.py")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            preload=[slow],
        ) as cluster,
        distributed.Client(cluster.scheduler_address, set_as_default=False) as client,
    ):
        yield cluster, client


def _two_workers(cluster: Any, client: Any) -> dict[str, int]:
    """Wait until the cluster has its two workers again (a nanny restarts a killed one)."""
    try:
        client.wait_for_workers(2, timeout=60)
    except TimeoutError:  # the nanny gave up (a loaded machine): start a new worker
        cluster.scale(2)
        client.wait_for_workers(2, timeout=60)
    return dict(client.run(os.getpid))


class _Assassin(threading.Thread):
    """Kills a dask worker that holds a well (``kill -9``), ``pause`` after ``reached``."""

    def __init__(self, client: Any, pids: dict[str, int], pause: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.client, self.pids, self.pause = client, pids, pause
        self.chance = random.Random(seed)
        self.reached, self.finished = threading.Event(), threading.Event()
        self.killed: list[tuple[int, bool]] = []  # (pid, whether the conversion still ran)
        self.result: Any = None  # the conversion's result

    def _busy(self) -> list[str]:
        processing = self.client.processing()
        return sorted(
            a
            for a, keys in processing.items()
            if a in self.pids and any("wellzarr-" in str(k) for k in keys)
        )

    def run(self) -> None:
        self.reached.wait(60)
        time.sleep(self.pause)
        while not self.finished.is_set():
            busy = self._busy()
            if busy:
                pid = self.pids[self.chance.choice(busy)]
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append((pid, not self.finished.is_set()))
                return
            time.sleep(0.002)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(20), ids=lambda i: f"moment{i:02d}")
def test_dask_worker_killed_then_the_plate_equals_a_clean_run(
    tmp_path: Path, dask_reference: Reference, dask_cluster: Any, index: int
) -> None:
    cluster, client = dask_cluster
    ref = dask_reference
    chance = random.Random(SEED + 100 + index)
    # after 0 wells: from the start (connecting, submitting, the first wells running);
    # at least three wells are left to convert when the worker dies
    after = chance.randint(0, len(DASK_WELLS) - 3)
    pause = chance.uniform(0.0, 0.02)
    plan = scan_source(ref.src)
    dest = tmp_path / "plate.zarr"
    # A late moment can pass unseen when the last wells finish between two looks at the
    # scheduler (seen in a loaded full run): then the moment moves earlier and the (clean)
    # plate is converted again, at most three times.
    for _attempt in range(3):
        where = f"dask moment {index} (a busy worker, after {after} well(s) + {pause:.3f} s)"
        assassin = _run_with_assassin(cluster, client, plan, dest, after, pause, index)
        result = assassin.result
        if assassin.killed:
            break
        shutil.rmtree(dest)
        after //= 2
    assert assassin.killed, f"{where}: no worker held a well before the conversion ended"
    assert assassin.killed[0][1], f"{where}: the worker died after the conversion ended"
    # The plate as the conversion left it: consistent, readable, its well list true.
    on_disk = _after_a_kill(dest, ref, where)
    assert listed_wells(dest) == on_disk, f"{where}: the end of a run lists every whole well"
    if not result.complete:
        # The scheduler may give up on a well (KilledWorker): then --resume finishes it.
        assert all("Killed" in m or "died" in m for _, m in result.failed), f"{where}: {result}"
        again = convert(plan, dest, StorageConfig(), resume=True)
        assert again.complete, f"{where}: {again}"
        assert sorted(again.skipped) == on_disk, where
    assert plate_digest(dest) == ref.digest, f"{where}: the plate differs from a clean run"
    check = check_plate(dest, deep=True)
    assert check.ok, f"{where}: {check.problems}"
    assert listed_wells(dest) == sorted(DASK_WELLS)
    assert_reader_opens(dest, where)


# -- 3. the disk fills up ------------------------------------------------------------------------

FULL_WELLS = ("A01", "B01")


@pytest.fixture(scope="module")
def full_reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    base = tmp_path_factory.mktemp("full")
    ix_set(base / "src", np.random.default_rng(SEED + 2), wells=FULL_WELLS)
    plate = base / "clean" / "plate.zarr"
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert main(["convert", str(base / "src"), str(plate), "-q"]) == EXIT_OK
    return Reference(base / "src", plate, plate_digest(plate))


def _ops_of_a_conversion(ref: Reference, dest: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many space-consuming operations a conversion of ``ref.src`` makes (recorded)."""
    with monkeypatch.context() as patch:
        fault = DiskFull(dest.absolute()).install(patch)
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            assert main(["convert", str(ref.src), str(dest), "-q"]) == EXIT_OK
    kinds = {kind for _, kind, _ in fault.trace}
    assert {"mkdir", "create", "write"} <= kinds, kinds
    # the writes the store makes: chunk data, well and plate metadata documents
    writes = [rel for _, kind, rel in fault.trace if kind == "write"]
    assert any(rel.startswith(".zarr.json.") for rel in writes), writes  # plate document
    assert any(is_chunk(rel) for rel in writes), writes  # shard / chunk files
    staged_well_docs = [
        r for r in writes if r.startswith(".wellzarr-staging/") and r.count("/") == 2
    ]
    assert any(r.endswith("/zarr.json") for r in staged_well_docs), writes  # well document
    return len(fault.trace)


def _failing_well(rel: str) -> str | None:
    """The well whose write the failed operation was part of (``None``: the plate's own)."""
    parts = rel.split("/")
    if parts[0] == fsio.STAGING_DIR and len(parts) > 1 and not parts[1].startswith("overview."):
        return parts[1].split(".")[0].replace("_", "")
    return None


@pytest.mark.slow
@pytest.mark.parametrize("sticky", [False, True], ids=["one-write-fails", "disk-stays-full"])
def test_enospc_at_every_write_of_a_conversion(
    tmp_path: Path,
    full_reference: Reference,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sticky: bool,
) -> None:
    ref = full_reference
    total = _ops_of_a_conversion(ref, tmp_path / "recorded.zarr", monkeypatch)
    for n in range(1, total + 1):
        dest = tmp_path / f"n{n}" / "plate.zarr"
        capsys.readouterr()
        with monkeypatch.context() as patch:
            fault = DiskFull(dest.absolute(), fail_at=n, sticky=sticky).install(patch)
            code = main(["convert", str(ref.src), str(dest)])
            fault.free()
        err = capsys.readouterr().err
        assert fault.failed, f"write {n}: no operation failed ({fault.trace[-3:]})"
        _, kind, rel = fault.failed[0]
        where = f"ENOSPC at operation {n} ({kind} {rel}, sticky={sticky})"
        well = _failing_well(rel)
        if code == EXIT_OK:
            # Only a one-off failure of a listing made during the run (retried at its end)
            # may go unreported, and only when the plate came out whole.
            assert not sticky, f"{where}: exit 0\n{err}"
            assert well is None, f"{where}: exit 0\n{err}"
            assert plate_digest(dest) == ref.digest, f"{where}: exit 0, plate differs"
            continue
        assert code == EXIT_FAILED, f"{where}: exit {code}\n{err}"
        assert "Traceback" not in err, f"{where}: {err}"
        assert "No space left on device" in err, f"{where}: {err}"
        if well is not None:
            assert f"well {well} failed" in err, f"{where}: the message does not name it:\n{err}"
        written = [w for w in FULL_WELLS if f"well {w} written" in err]
        if (dest / "zarr.json").is_file():
            on_disk = assert_crash_consistent(dest, ref.digest, where)
            assert set(written) <= set(on_disk), f"{where}: a well reported written is gone"
            if well is not None and not sticky:
                # the plate's well list, written after the failure, names every whole well
                assert listed_wells(dest) == on_disk, f"{where}: complete wells not listed"
            _assert_validates(dest, where, "--deep")
            assert_reader_opens(dest, where)
        else:
            assert not written, f"{where}: wells written but no plate document"
        # Space again: --resume finishes the plate exactly like a clean run.
        assert main(["convert", str(ref.src), str(dest), "--resume", "-q"]) == EXIT_OK, (
            f"{where}: resume failed: {capsys.readouterr().err}"
        )
        assert plate_digest(dest) == ref.digest, f"{where}: the resumed plate differs"
        assert listed_wells(dest) == sorted(FULL_WELLS)


def _write_full_wells(store: PlateStore, data: dict[str, np.ndarray], names: list[str]) -> None:
    for well in names:
        store.write_well(well, data[well])


@pytest.mark.parametrize(
    "target",
    [
        "chunk data of the second well",
        "array metadata of the second well",
        "well document of the second well",
        "row group of the second well",
        "plate document at close",
    ],
)
@pytest.mark.parametrize("sticky", [False, True], ids=["one-write-fails", "disk-stays-full"])
def test_enospc_in_write_well_leaves_earlier_wells_whole(
    tmp_path: Path,
    make_plate: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    sticky: bool,
) -> None:
    rng = np.random.default_rng(SEED + 3)
    data = {
        w: rng.integers(0, 65535, (2, 2, 1, 32, 48), dtype=np.uint16, endpoint=True)
        for w in ("A01", "B01")
    }
    root = make_plate(plate=24)
    with PlateStore.open(root, "r+") as store:
        store.write_well("A01", data["A01"])

    def second(rel: str) -> bool:
        return rel.startswith(f"{fsio.STAGING_DIR}/B_01.")

    matches = {
        "chunk data of the second well": lambda k, rel: (
            k == "write" and second(rel) and is_chunk(rel)
        ),
        "array metadata of the second well": lambda k, rel: (
            k == "write" and second(rel) and rel.count("/") == 4 and "zarr" in rel
        ),
        "well document of the second well": lambda k, rel: (
            k == "write" and second(rel) and rel.count("/") == 2 and "zarr.json" in rel
        ),
        "row group of the second well": lambda k, rel: k == "write" and rel.startswith("B/"),
        "plate document at close": lambda k, rel: k == "write" and rel.startswith(".zarr.json."),
    }[target]
    with monkeypatch.context() as patch:
        fault = DiskFull(root.absolute(), fail_when=matches, sticky=sticky).install(patch)
        store = PlateStore.open(root, "r+")
        raised: OSError | None = None
        try:
            store.write_well("B01", data["B01"])
            store.close()
        except OSError as err:
            raised = err
        fault.free()
    assert raised is not None, f"{target}: nothing failed ({fault.trace})"
    assert raised.errno == errno.ENOSPC, raised
    assert "No space left on device" in str(raised)
    staging = root / fsio.STAGING_DIR
    assert not staging.exists() or not any(staging.iterdir()), list(staging.iterdir())
    with PlateStore.create(tmp_path / "clean.zarr", StorageConfig(plate=24)) as clean:
        _write_full_wells(clean, data, ["A01", "B01"])
    on_disk = assert_crash_consistent(root, plate_digest(tmp_path / "clean.zarr"), target)
    assert "A01" in on_disk
    reopened = PlateStore.open(root, "r+")
    np.testing.assert_array_equal(reopened.read_well("A01"), data["A01"])
    assert "A01" in reopened.wells()
    # free space: the well is written again (or the listing finished) and all reads back
    reopened.recover()
    if "B01" not in reopened.wells():
        reopened.write_well("B01", data["B01"])
    reopened.close()
    final = PlateStore.open(root)
    assert final.wells() == ["A01", "B01"]
    for well, pixels in data.items():
        np.testing.assert_array_equal(final.read_well(well), pixels)
    assert check_plate(root, deep=True).ok


@contextlib.contextmanager
def _tmpfs(where: Path, size_kib: int) -> Iterator[Path]:
    """A real, small file system at ``where`` (root only); unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False, capture_output=True)
        if os.path.ismount(where):
            subprocess.run(["umount", "-l", str(where)], check=True)


def _pages(path: Path) -> int:
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in path.rglob("*") if p.is_file())


@pytest.mark.slow
def test_a_real_disk_fills_up_midway_then_resume_finishes(
    tmp_path: Path, kill_reference: Reference
) -> None:
    ref = kill_reference
    one_well = _pages(ref.plate / "A" / "01")
    with _tmpfs(tmp_path / "disk", 4096) as disk:
        # Room for the plate documents and about four and a half wells, no more.
        filler = disk / "filler"
        free = shutil.disk_usage(disk).free - (64 * 1024 + 4 * one_well + one_well // 2)
        filler.write_bytes(b"\0" * free)
        dest = disk / "plate.zarr"
        done = wellzarr("convert", ref.src, dest)
        assert done.returncode == EXIT_FAILED, done.stderr
        assert "Traceback" not in done.stderr
        written = [w for w in WELLS_12 if f"well {w} written" in done.stderr]
        assert 1 <= len(written) < len(WELLS_12), done.stderr
        failed = WELLS_12[len(written)]
        assert f"well {failed} failed" in done.stderr
        assert "No space left on device" in done.stderr
        assert "--resume" in done.stderr
        on_disk = assert_crash_consistent(dest, ref.digest, "disk full")
        assert on_disk == listed_wells(dest) == sorted(written)
        staging = dest / fsio.STAGING_DIR
        assert not staging.exists() or not any(staging.iterdir())
        _assert_validates(dest, "disk full", "--deep")
        assert_reader_opens(dest, "disk full")
        store = PlateStore.open(dest)
        clean = PlateStore.open(ref.plate)
        for well in written:
            np.testing.assert_array_equal(store.read_well(well), clean.read_well(well))

        filler.unlink()  # space again
        resumed = wellzarr("convert", ref.src, dest, "--resume", "--json")
        assert resumed.returncode == EXIT_OK, resumed.stderr
        assert sorted(json.loads(resumed.stdout)["skipped"]) == sorted(written)
        assert plate_digest(dest) == ref.digest
        _assert_validates(dest, "resumed", "--deep")


@pytest.mark.slow
def test_a_real_disk_fills_up_under_write_well(tmp_path: Path) -> None:
    rng = np.random.default_rng(SEED + 4)
    wells = [f"{r}{c:02d}" for r in "AB" for c in range(1, 7)]
    data = {w: rng.integers(0, 65535, (2, 2, 1, 64, 96), dtype=np.uint16) for w in wells}
    with _tmpfs(tmp_path / "disk", 512) as disk:
        root = disk / "plate.zarr"
        written: list[str] = []
        store = PlateStore.create(root, StorageConfig(plate=24))
        error: OSError | None = None
        for well in wells:
            try:
                store.write_well(well, data[well])
            except OSError as err:
                error = err
                break
            written.append(well)
        assert error is not None, "the disk never filled up"
        assert error.errno == errno.ENOSPC
        assert "No space left on device" in str(error)
        store.close()  # lists the wells written (the failed well's staging is gone)
        assert 1 <= len(written) < len(wells)
        staging = root / fsio.STAGING_DIR
        assert not staging.exists() or not any(staging.iterdir())
        reread = PlateStore.open(root)
        assert reread.wells() == written
        for well in written:
            np.testing.assert_array_equal(reread.read_well(well), data[well])
        assert check_plate(root, deep=True).ok
        half = sorted(set(well_dirs(root)) - set(written))
        assert not half, f"wells on disk that were never written whole: {half}"


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="sharded-0.5"),
        pytest.param({"ngff_version": "0.4"}, id="zarr-v2-0.4"),
        pytest.param({"chunks": "plane"}, id="unsharded-0.5"),
    ],
)
def test_a_failed_write_well_leaves_nothing_in_staging(
    make_plate: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, options: dict[str, Any]
) -> None:
    root = make_plate(plate=24, **options)

    def an_array_document(kind: str, rel: str) -> bool:
        # the first file created in an array's folder (.../<image>/<level>/...)
        return kind == "create" and rel.startswith(fsio.STAGING_DIR) and rel.count("/") == 4

    with monkeypatch.context() as patch:
        fault = DiskFull(root.absolute(), fail_when=an_array_document).install(patch)
        real_mkdir = os.mkdir

        def late_mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
            # the writes that run beside the failed one are a little late (as on a busy disk)
            if fault.failed and str(path).startswith(str(root)):
                time.sleep(0.2)
            real_mkdir(path, *args, **kwargs)

        patch.setattr(os, "mkdir", late_mkdir)
        store = PlateStore.open(root, "r+")
        with pytest.raises(OSError, match="No space left on device"):
            store.write_well("A01", np.ones((2, 2, 1, 32, 48), np.uint16))
        time.sleep(0.5)  # whatever still runs of that write has finished
    assert fault.failed
    staging = root / fsio.STAGING_DIR
    left = sorted(str(p.relative_to(root)) for p in staging.rglob("*"))
    assert not left, f"staging files of a failed write remain: {left}"


@pytest.mark.parametrize("target", ["chunk data", "well document"])
def test_write_well_disk_full_error_names_the_well(
    make_plate: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    root = make_plate(plate=24)

    def chosen(kind: str, rel: str) -> bool:
        if kind != "write" or not rel.startswith(fsio.STAGING_DIR):
            return False
        return is_chunk(rel) if target == "chunk data" else rel.count("/") == 2

    with monkeypatch.context() as patch:
        fault = DiskFull(root.absolute(), fail_when=chosen).install(patch)
        store = PlateStore.open(root, "r+")
        with pytest.raises(OSError, match="No space left on device") as info:
            store.write_well("B03", np.ones((2, 2, 1, 32, 48), np.uint16))
    assert fault.failed
    assert info.value.errno == errno.ENOSPC
    assert "B03" in str(info.value), str(info.value)
