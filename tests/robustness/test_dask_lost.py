"""Every dask worker dies and none comes back: the conversion fails in bounded time, resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from napari_wellzarr.convert import runners
from napari_wellzarr.convert.engine import convert, scan_source
from napari_wellzarr.storage.config import StorageConfig
from tests.convert.test_convert import assert_plate, ix_set, plate_digest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import numpy as np

NO_WORKERS_S = 3.0
WELLS = tuple(f"{r}{c:02d}" for r in "AB" for c in range(1, 5))


def _spawn(what: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", f"distributed.cli.dask_{what}", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A ``dask scheduler`` process on 127.0.0.1 (a free port), and its scheduler file."""
    pytest.importorskip("distributed")
    info = tmp_path / "scheduler.json"
    proc = _spawn(
        "scheduler",
        *("--host", "127.0.0.1", "--port", "0", "--no-dashboard"),
        *("--scheduler-file", str(info)),
    )
    try:
        deadline = time.monotonic() + 60
        while not info.is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert info.is_file(), "the dask scheduler did not start"
        yield json.loads(info.read_text())["address"], info
    finally:
        _stop(proc)


def _worker(info: Path) -> subprocess.Popen[bytes]:
    """A worker without a nanny: once killed, nothing restarts it."""
    return _spawn(
        "worker",
        *("--scheduler-file", str(info), "--no-nanny", "--nthreads", "1"),
        *("--no-dashboard", "--host", "127.0.0.1"),
    )


def test_all_workers_dead_fails_resumably_then_resume_finishes(
    tmp_path: Path,
    rng: np.random.Generator,
    scheduler: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import distributed

    monkeypatch.setattr(runners, "NO_WORKERS_S", NO_WORKERS_S, raising=False)
    address, info = scheduler
    truth = ix_set(tmp_path / "src", rng, wells=WELLS, fields=2, shape=(64, 64))
    plan = scan_source(tmp_path / "src")
    workers = [_worker(info), _worker(info)]
    try:
        with distributed.Client(address, set_as_default=False, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
        killed_at: list[float] = []

        def progress(event: Any) -> None:
            if not killed_at:  # after the first well: every worker dies at once
                for proc in workers:
                    os.kill(proc.pid, signal.SIGKILL)
                killed_at.append(time.monotonic())

        outcome: list[Any] = []
        dest = tmp_path / "plate.zarr"
        run = threading.Thread(
            target=lambda: outcome.append(
                (
                    convert(plan, dest, StorageConfig(), scheduler=address, progress=progress),
                    time.monotonic(),
                )
            ),
            daemon=True,  # on a conversion that never returns, the test fails, not hangs
        )
        run.start()
        run.join(timeout=120 + NO_WORKERS_S)
        assert outcome, "the conversion still waits for workers that are all dead"
    finally:
        for proc in workers:
            _stop(proc)
    result, returned_at = outcome[0]
    assert killed_at, "no well finished before the workers were killed"
    # dead workers are seen at once (their connections close), then NO_WORKERS_S passes
    assert returned_at - killed_at[0] < NO_WORKERS_S + 30, returned_at - killed_at[0]
    assert not result.complete
    assert result.failed, result
    assert all("ClusterLostError" in why and "--resume" in why for _, why in result.failed)
    assert "resume" in result.resume_hint
    again = convert(plan, dest, StorageConfig(), resume=True)
    assert again.complete, again
    assert_plate(dest, truth)
    clean = tmp_path / "clean" / "plate.zarr"
    assert convert(plan, clean, StorageConfig()).complete
    assert plate_digest(dest) == plate_digest(clean)
