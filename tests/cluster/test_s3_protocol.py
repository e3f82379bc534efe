"""The many-writer protocol on S3 and folders: claims, wells visible when whole, resume.

A moto S3 server (no locks, no renames in its API) stands for object storage; each
test compares the result with one clean conversion to a folder, object for object.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import threading
from typing import TYPE_CHECKING, Any

import pytest

from napari_wellzarr.convert.engine import convert, scan_source
from napari_wellzarr.errors import DestinationClaimedError, RemoteStoreError
from napari_wellzarr.storage.claims import CLAIM_NAME
from napari_wellzarr.storage.config import StorageConfig
from napari_wellzarr.storage.store import PlateStore
from napari_wellzarr.storage.validation import check_plate
from tests.cluster.conftest import WELLS
from tests.convert.helpers import plate_digest

if TYPE_CHECKING:
    from pathlib import Path

    from tests.cluster.conftest import Reference
    from tests.cluster.servers import S3


def _forbid(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    """Make every file lock, and every rename or link outside a private stage, fail.

    A well is built in a private local temp folder (``wellzarr-*``) before its upload:
    zarr-python may rename files there (its v2 writes); nothing else is renamed.
    """
    stages = os.path.join(tempfile.gettempdir(), "wellzarr-")

    def refuse(name: str, real: Any, staged_ok: bool) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            paths = [os.fspath(a) for a in args if isinstance(a, str | os.PathLike)]
            if staged_ok and paths and all(str(p).startswith(stages) for p in paths):
                return real(*args, **kwargs)
            calls.append(f"{name}{args}")
            raise AssertionError(f"{name} called on an S3 conversion: {args}")

        return call

    for name in ("rename", "replace", "link", "renames"):
        monkeypatch.setattr(os, name, refuse(f"os.{name}", getattr(os, name), True))
    monkeypatch.setattr(fcntl, "flock", refuse("fcntl.flock", fcntl.flock, False))
    monkeypatch.setattr(fcntl, "lockf", refuse("fcntl.lockf", fcntl.lockf, False))
    monkeypatch.setattr(shutil, "move", refuse("shutil.move", shutil.move, False))


@pytest.mark.parametrize("ngff", ["0.5"])  # (0.4 too, but ~10 s more: run it by hand)
def test_s3_plate_equals_the_folder_plate_with_no_rename_and_no_lock(
    s3_server: S3, reference: Reference, monkeypatch: pytest.MonkeyPatch, ngff: str, tmp_path: Path
) -> None:
    config = StorageConfig(ngff_version=ngff)
    plan = scan_source(reference.src)
    name = f"norename-{ngff}.zarr"
    calls: list[str] = []
    with monkeypatch.context() as patch:
        _forbid(patch, calls)
        url = s3_server.url(name)
        done = convert(plan, url, config)
        assert done.complete, done.failed
        assert done.plate == url
        again = convert(plan, url, config, resume=True)  # lists, skips, writes nothing
        assert sorted(again.skipped) == sorted(WELLS)
    assert calls == []
    assert s3_server.digest(name) == reference.digest(name, ngff, s3=True)
    assert CLAIM_NAME not in s3_server.keys(name)  # released at the end
    check = check_plate(url, deep=ngff == "0.5")  # (v2: one object per chunk, slow)
    assert check.ok, check.errors
    store = PlateStore.open(url)
    assert store.wells() == sorted(WELLS)
    local = PlateStore.open(reference.base / "clean-s3" / ngff / name)
    assert (store.read_well("B04") == local.read_well("B04")).all()


@pytest.mark.parametrize("where", ["s3", "folder"])
def test_two_clients_into_one_destination_one_wins_the_other_is_told(
    s3_server: S3, reference: Reference, tmp_path: Path, where: str
) -> None:
    plan = scan_source(reference.src)
    dest = s3_server.url("two.zarr") if where == "s3" else str(tmp_path / "two.zarr")
    first_well = threading.Event()
    tried = threading.Event()
    box: dict[str, Any] = {}

    def progress(_event: Any) -> None:
        first_well.set()
        assert tried.wait(60)  # hold the first run until the second one has tried

    def first() -> None:
        try:
            box["result"] = convert(plan, dest, StorageConfig(), progress=progress)
        except BaseException as err:  # handed to the test's thread
            box["error"] = err

    runner = threading.Thread(target=first)
    runner.start()
    try:
        assert first_well.wait(60)
        if where == "s3":
            raw = (
                s3_server.client()
                .get_object(Bucket="plates", Key=f"two.zarr/{CLAIM_NAME}")["Body"]
                .read()
            )
        else:
            raw = os.readlink(tmp_path / "two.zarr" / CLAIM_NAME)  # (a symlink: no data block)
        run = json.loads(raw)["run"]
        with pytest.raises(DestinationClaimedError) as told:
            convert(plan, dest, StorageConfig(), resume=False)
        with pytest.raises(DestinationClaimedError):  # resume=True is not asked for here
            convert(plan, dest, StorageConfig(), overwrite=True)
    finally:
        tried.set()
        runner.join(120)
    message = str(told.value)
    assert dest in message
    assert f"run {run}" in message
    assert "--resume" in message
    assert "error" not in box, box.get("error")
    assert box["result"].complete  # the winner is untouched by the loser
    if where == "s3":
        assert s3_server.digest("two.zarr") == reference.digest("two.zarr", s3=True)
    else:
        assert plate_digest(tmp_path / "two.zarr") == reference.digest("two.zarr")
    # The winner is done: its claim is gone, so the next run is told the plate exists.
    with pytest.raises(FileExistsError, match="already exists"):
        convert(plan, dest, StorageConfig())


def test_s3_cut_off_mid_run_is_a_clear_error_then_resume_finishes(
    s3_server: S3, reference: Reference
) -> None:
    name = "partition.zarr"
    url = s3_server.url(name)
    plan = scan_source(reference.src)
    seen: list[str] = []

    def progress(event: Any) -> None:
        seen.append(event.status)
        if len(seen) == 2:
            s3_server.gate.cut()

    try:
        with pytest.raises(OSError, match="well list could not be written") as failed:
            convert(plan, url, StorageConfig(), progress=progress)
    finally:
        s3_server.gate.restore()
    message = str(failed.value)
    assert url in message
    assert "resume" in message
    cause = failed.value.__cause__
    assert isinstance(cause, RemoteStoreError), repr(cause)
    assert "failed" in seen  # the well being uploaded failed, no other was started
    done = convert(plan, url, StorageConfig(), resume=True)
    assert done.complete, done.failed
    assert len(done.skipped) >= 2
    assert s3_server.digest(name) == reference.digest(name, s3=True)
