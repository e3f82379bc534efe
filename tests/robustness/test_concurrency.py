"""Several processes writing one plate at the same time.

Real processes (``python -c``), started once and released together round after round
through files in a control directory, each opening the plate with ``PlateStore.open(path,
'r+')``, writing its wells and closing.  Afterwards every well must be listed, read back
exactly (one writer's pixels, never a mix), and the plate must still validate.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.core import PlateStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

SHAPE = (2, 2, 2, 32, 48)
TIMEOUT = 60.0

WRITER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    import numpy as np
    from napari_wellzarr.core import PlateStore, WellExistsError

    root, control, me = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    plan = json.loads(sys.argv[4])
    shape = tuple(json.loads(sys.argv[5]))

    def wait_for(path):
        deadline = time.monotonic() + 60
        while not path.exists():
            if time.monotonic() > deadline:
                sys.exit(f"writer {me}: gave up waiting for {path.name}")
            time.sleep(0.002)

    for number, jobs in enumerate(plan):
        (control / f"ready-{number}-{me}").touch()
        wait_for(control / f"go-{number}")
        results = {}
        with PlateStore.open(root, "r+") as store:
            for well, seed, overwrite in jobs:
                rng = np.random.default_rng(seed)
                data = rng.integers(0, 65535, shape, dtype=np.uint16, endpoint=True)
                try:
                    store.write_well(well, data, overwrite=overwrite)
                    results[well] = "ok"
                except WellExistsError:
                    results[well] = "exists"
        tmp = control / f".done-{number}-{me}.tmp"
        tmp.write_text(json.dumps(results))
        os.replace(tmp, control / f"done-{number}-{me}.json")
    """
)


def pixels_for(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65535, SHAPE, dtype=np.uint16, endpoint=True)


def wait_for(paths: list[Path], procs: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not all(p.exists() for p in paths):
        for proc in procs:
            if proc.poll() not in (None, 0):
                _, err = proc.communicate()
                pytest.fail(f"a writer died (exit {proc.returncode}):\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {[p.name for p in paths if not p.exists()]}")
        time.sleep(0.005)


def run_rounds(
    root: Path,
    control: Path,
    plans: list[list[list[list[Any]]]],
    check: Callable[[int, list[dict[str, str]]], None],
) -> None:
    """Start one process per plan; release round n in all of them together; check after each."""
    control.mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(root),
                str(control),
                str(i),
                json.dumps(plan),
                json.dumps(SHAPE),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, plan in enumerate(plans)
    ]
    try:
        for number in range(len(plans[0])):
            wait_for([control / f"ready-{number}-{i}" for i in range(len(plans))], procs)
            (control / f"go-{number}").touch()
            done = [control / f"done-{number}-{i}.json" for i in range(len(plans))]
            wait_for(done, procs)
            check(number, [json.loads(p.read_text()) for p in done])
        for proc in procs:
            _, err = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.mark.slow
def test_four_processes_write_different_wells(
    tmp_path: Path,
    make_plate: Callable[..., Path],
    validate_plate: Callable[[Path], None],
    ngff_version: str,
) -> None:
    root = make_plate(ngff_version=ngff_version, plate=96)
    n_writers, n_rounds, per_round = 4, 20, 1
    rows = "ABCDEFGH"

    def well(i: int, r: int, j: int) -> str:
        # Writer i, round r, job j -> a well of its own; the writers of a round share a
        # row (its group is created by whichever comes first), a new row every 3 rounds.
        n = (r * per_round + j) * n_writers + i
        return f"{rows[n // 12]}{n % 12 + 1:02d}"

    plans = [
        [
            [[well(i, r, j), 1000 * r + 10 * i + j, False] for j in range(per_round)]
            for r in range(n_rounds)
        ]
        for i in range(n_writers)
    ]
    expected: dict[str, int] = {}

    def check(number: int, results: list[dict[str, str]]) -> None:
        for i, plan in enumerate(plans):
            assert results[i] == {well: "ok" for well, _, _ in plan[number]}
            expected.update({well: seed for well, seed, _ in plan[number]})
        store = PlateStore.open(root)
        assert sorted(store.wells()) == sorted(expected), (
            "a writer's wells are missing from the plate"
        )
        for well, seed in expected.items():
            assert np.array_equal(store.read_well(well), pixels_for(seed)), well

    run_rounds(root, tmp_path / "control", plans, check)
    assert len(expected) == n_writers * n_rounds * per_round
    validate_plate(root)


@pytest.mark.slow
def test_two_processes_write_the_same_well(
    tmp_path: Path, make_plate: Callable[..., Path], validate_plate: Callable[[Path], None]
) -> None:
    root = make_plate(plate=24)
    # Rounds: two fresh wells without overwrite, then the same wells again and again with it.
    rounds = [("B02", False), ("B03", False)] + [("B02", True), ("B03", True)] * 9
    plans = [
        [[[well, 100 * n + writer, overwrite]] for n, (well, overwrite) in enumerate(rounds)]
        for writer in range(2)
    ]

    def check(number: int, results: list[dict[str, str]]) -> None:
        well, overwrite = rounds[number]
        outcomes = [r[well] for r in results]
        candidates = [pixels_for(100 * number + writer) for writer in range(2)]
        store = PlateStore.open(root)
        assert store.wells().count(well) == 1
        data = store.read_well(well)
        matches = [i for i, c in enumerate(candidates) if np.array_equal(data, c)]
        assert len(matches) == 1, f"{well}: the pixels are neither writer's ({outcomes})"
        if not overwrite:
            # One writer wins, the other is told the well exists; the pixels are the winner's.
            assert sorted(outcomes) == ["exists", "ok"], outcomes
            assert outcomes[matches[0]] == "ok"
        else:
            assert "ok" in outcomes
            assert outcomes[matches[0]] == "ok"

    run_rounds(root, tmp_path / "control", plans, check)
    validate_plate(root)


def test_overwrite_when_another_writer_removed_the_well_first(
    make_plate: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race above, made deterministic: between our "the well exists" check and our
    # removal of it, another overwriting process moves the old well away.
    import os

    from napari_wellzarr.storage import fsio

    old, new = pixels_for(1), pixels_for(2)
    root = make_plate({"B02": old}, plate=24)
    real_replace = os.replace
    raced = []

    def other_writer_first(src: Any, dst: Any) -> None:
        if ".deleting." in str(dst) and not raced:
            raced.append(src)
            real_replace(src, f"{dst}-by-the-other-writer")
        real_replace(src, dst)

    monkeypatch.setattr(fsio.os, "replace", other_writer_first)
    with PlateStore.open(root, "r+") as store:
        store.write_well("B02", new, overwrite=True)
    monkeypatch.undo()
    assert raced, "the simulated race did not happen"
    assert np.array_equal(PlateStore.open(root).read_well("B02"), new)


def test_write_returns_even_if_another_writer_replaces_the_well_at_once(
    make_plate: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other half of the overwrite race: our well is in place, and before write_well
    # returns, another overwriting process has moved it away to put its own in.  Our write
    # did succeed; it must not be reported as a damaged well.
    from napari_wellzarr.storage import fsio

    mine = pixels_for(3)
    root = make_plate(plate=24)
    from napari_wellzarr.storage import placing

    real_place = placing.place_well

    def then_the_other_writer(dest: Path, stage: Path, where: tuple[str, str], *args: Any) -> Any:
        put = real_place(dest, stage, where, *args)
        fsio.remove_tree(dest / where[0])  # the other writer's overwrite, half done
        return put

    monkeypatch.setattr(placing, "place_well", then_the_other_writer)
    with PlateStore.open(root, "r+") as store:
        info = store.write_well("B02", mine, overwrite=True)
    assert info.shape == mine.shape
    assert info.dtype == mine.dtype
