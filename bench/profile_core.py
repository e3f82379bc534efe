"""Where the core's time goes: profiles of write and plane read.

    .venv/bin/python bench/profile_core.py profile [--wells 96]    # cProfile, top functions
    .venv/bin/python bench/profile_core.py pyspy   [--wells 96]    # py-spy, all threads + C
    .venv/bin/python bench/profile_core.py phases  [--wells 96]    # ms per step of write_well
    .venv/bin/python bench/profile_core.py coldread [--wells 96]   # cold plane vs bare preads

``profile`` runs the default configuration (``StorageConfig()``) under cProfile: a
96-well plate written with ``PlateStore.write_well`` in a ``with PlateStore.create``
block, then 200 random warm ``read_plane`` calls from an opened store, then 50 cold ones
(page cache dropped, new store).  cProfile sees only the calling thread; the core encodes
chunks on a thread pool (and zarr, for the layouts it writes, does its I/O on an
event-loop thread), so ``pyspy`` samples every thread, native frames included (needs
``py-spy`` on ``PATH`` or ``PY_SPY=/path/to/py-spy``).

Uses the well pool that ``bench_plates.py`` caches (generated here if missing).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _contenders as cont  # noqa: E402

# -- the workload -------------------------------------------------------------------------


def pool() -> cont.Pool:
    from bench_plates import well_pool

    path, offset = well_pool(48)
    return cont.Pool(str(path), offset, 48)


def write_plate(plate_dir: Path, n_wells: int, wells: cont.Pool, **config: Any) -> float:
    from napari_wellzarr.core import PlateStore, StorageConfig

    t = time.perf_counter()
    with PlateStore.create(plate_dir, StorageConfig(plate=n_wells, **config)) as plate:
        for i, (name, _r, _c) in enumerate(cont.plate_wells(n_wells)):
            names = {
                cont.plane_file_name(name, f, c): (f, c, 0)
                for f in range(cont.N_FIELDS)
                for c in range(cont.N_CHANNELS)
            }
            data = wells.well(i)
            plate.write_well(name, data, plane_names=names)
            del data
    return time.perf_counter() - t


def plane_keys(n_wells: int, n: int, seed: int) -> list[tuple[str, int, int]]:
    rng = np.random.default_rng(seed)
    names = [w for w, _r, _c in cont.plate_wells(n_wells)]
    return [
        (names[rng.integers(n_wells)], int(rng.integers(cont.N_FIELDS)), int(rng.integers(3)))
        for _ in range(n)
    ]


def read_planes(plate_dir: Path, keys: list[tuple[str, int, int]]) -> list[float]:
    from napari_wellzarr.core import PlateStore

    store = PlateStore.open(plate_dir)
    times = []
    for w, f, c in keys:
        t = time.perf_counter()
        store.read_plane(w, f, c, 0)
        times.append(time.perf_counter() - t)
    return times


def _top(profile: cProfile.Profile, sort: str, n: int = 15) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(n)
    text = out.getvalue()
    return text[text.index("   ncalls") :] if "   ncalls" in text else text


# -- profile ---------------------------------------------------------------------------------


def cmd_profile(args: argparse.Namespace) -> None:
    import napari_wellzarr.storage.store  # noqa: F401  (imports are not the workload)

    wells = pool()
    wells.warm()
    scratch = Path(tempfile.mkdtemp(prefix="wellzarr-profile-"))
    plate_dir = scratch / "plate.ome.zarr"
    try:
        prof = cProfile.Profile()
        prof.enable()
        t = write_plate(plate_dir, args.wells, wells)
        prof.disable()
        mb = args.wells * cont.WELL_BYTES / 1e6
        print(f"## write, {args.wells} wells: {t:.2f} s = {mb / t:.0f} MB/s (under cProfile)\n")
        print("### by own time (tottime)\n\n```")
        print(_top(prof, "tottime"))
        print("```\n\n### by cumulative time\n\n```")
        print(_top(prof, "cumulative", 25))
        print("```\n")

        keys = plane_keys(args.wells, 200, 7)
        read_planes(plate_dir, keys[:5])  # imports, event loop
        prof = cProfile.Profile()
        prof.enable()
        times = read_planes(plate_dir, keys)
        prof.disable()
        print(
            f"## read_plane, 200 random planes, warm page cache, opened store: median "
            f"{statistics.median(times) * 1e3:.2f} ms, first read of a well "
            f"{statistics.median(times[:20]) * 1e3:.2f} ms\n"
        )
        print("### by own time\n\n```")
        print(_top(prof, "tottime"))
        print("```\n\n### by cumulative time\n\n```")
        print(_top(prof, "cumulative", 25))
        print("```\n")
        cold = cont.drop_caches()
        prof = cProfile.Profile()
        prof.enable()
        times = read_planes(plate_dir, keys[:50])
        prof.disable()
        print(
            f"## read_plane, 50 planes, {'cold' if cold else 'WARM (no drop_caches)'}: "
            f"median {statistics.median(times) * 1e3:.2f} ms\n\n```"
        )
        print(_top(prof, "cumulative", 20))
        print("```")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# -- py-spy ------------------------------------------------------------------------------------


# Frames that mean "this thread is waiting", not working.  py-spy's --native mode counts
# threads blocked in a futex as active, so waiting stacks are filtered out here.
_WAITING = (
    "PyThread_acquire_lock_timed",
    "_queue_SimpleQueue_get",
    "select_epoll_poll",
    "epoll_wait",
    "Event.wait",
    "Condition.wait",
)


def _collapsed_report(path: Path, n: int = 15) -> str:
    """Own and inclusive shares of the *busy* samples in py-spy's collapsed ('raw') output."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    busy_by_thread: Counter[str] = Counter()
    total = busy = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        if any(w in f for f in frames for w in _WAITING):
            continue
        busy += count
        busy_by_thread[frames[0].split(": ")[-1]] += count
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames[1:]}:
            incl[frame] += count
    threads = ", ".join(f"{t} {c}" for t, c in busy_by_thread.most_common())
    lines = [f"{busy} busy of {total} samples (waiting stacks dropped); busy by thread: {threads}"]
    lines.append("\nown (leaf frame), share of busy samples:")
    lines += [f"  {c / busy:6.1%}  {f}" for f, c in own.most_common(n)]
    lines.append("\ninclusive, share of busy samples:")
    lines += [f"  {c / busy:6.1%}  {f}" for f, c in incl.most_common(n + 15)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit("/", 1)[-1].split(":")[0]
    return f"{name} ({where})" if where else name


def cmd_pyspy(args: argparse.Namespace) -> None:
    spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if not spy:
        sys.exit("py-spy not found: pip install py-spy (any venv) and set PY_SPY=/path/to/py-spy")
    scratch = Path(tempfile.mkdtemp(prefix="wellzarr-pyspy-"))
    try:
        for phase in ("write", "read"):
            out = scratch / f"{phase}.txt"
            cmd = [
                spy, "record", "--native", "--threads", "--rate", "250",
                "--format", "raw", "-o", str(out), "--",
                sys.executable, __file__, "_phase", phase, "--wells", str(args.wells),
                "--dir", str(scratch),
            ]  # fmt: skip
            subprocess.run(cmd, check=True, capture_output=True)
            print(
                f"## py-spy, {phase} ({args.wells} wells; active samples only, all threads)\n\n```"
            )
            print(_collapsed_report(out))
            print("```\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def cmd_phase(args: argparse.Namespace) -> None:
    """One phase for py-spy to sample (the write phase leaves the plate for the read one)."""

    import napari_wellzarr.storage.store  # noqa: F401

    plate_dir = Path(args.dir) / "plate.ome.zarr"
    if args.phase == "write":
        wells = pool()
        wells.warm()
        write_plate(plate_dir, args.wells, wells)
    else:
        keys = plane_keys(args.wells, 400, 7)
        read_planes(plate_dir, keys)


# -- phases: wall time per step of write_well -----------------------------------------------


def _timed(owner: Any, name: str, label: str, acc: dict[str, float]) -> None:
    real = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            acc[label] = acc.get(label, 0.0) + time.perf_counter() - t

    setattr(owner, name, timed)


def cmd_phases(args: argparse.Namespace) -> None:
    """Wall milliseconds per well of each step of ``write_well`` (nested steps overlap)."""
    from napari_wellzarr.storage import reading, shards, store, writing

    acc: dict[str, float] = {}
    steps = [
        (store, "prepare_well", "prepare_well (checks, channel windows)"),
        (store, "build_well", "build_well (everything on disk, in staging)"),
        (shards.ShardGrid, "encode", "  ShardGrid.encode (chunks handed to the codec threads)"),
        (writing.fsio, "write_group", "  write_group (group documents, while chunks encode)"),
        (writing.fsio, "write_staged_file", "  write_staged_file (documents, while chunks encode)"),
        (
            shards.EncodedShards,
            "write",
            "  EncodedShards.write (wait for the chunks, write the shard)",
        ),
        (store, "open_well", "open_well (describe the staged well)"),
        (reading.OpenWell, "shard_files", "shard_files (identities for the layout record)"),
        (store.PlateStore, "_move_into_place", "_move_into_place (locked rename)"),
        (store.fsio, "remove_tree", "remove_tree (staging)"),
    ]
    for owner, name, label in steps:
        _timed(owner, name, label, acc)
    wells = pool()
    wells.warm()
    scratch = Path(tempfile.mkdtemp(prefix="wellzarr-phases-", dir=args.dir))
    try:
        total = 0.0
        for _ in range(2):  # the second round is reported (imports, caches warm)
            shutil.rmtree(scratch / "p.zarr", ignore_errors=True)
            acc.clear()
            total = write_plate(scratch / "p.zarr", args.wells, wells)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    per = 1e3 / args.wells
    print(f"write_well, {args.wells} wells: {total * per:.2f} ms per well in all\n")
    print("| step | ms per well |\n|---|---:|")
    for _, _, label in steps:
        print(f"| {label} | {acc.get(label, 0.0) * per:.2f} |")


# -- coldread: a cold plane against the file system's own cost -------------------------------


def _drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("3\n")


def cmd_coldread(args: argparse.Namespace) -> None:
    """Cold ``read_plane`` against bare preads of the same shard files (needs root)."""
    import statistics

    from napari_wellzarr.core import PlateStore

    wells = pool()
    scratch = Path(tempfile.mkdtemp(prefix="wellzarr-cold-", dir=args.dir))
    plate_dir = scratch / "p.zarr"
    try:
        write_plate(plate_dir, args.wells, wells)
        keys = plane_keys(args.wells, 50, seed=3)

        def shard(well: str) -> Path:
            return plate_dir / well[0] / well[1:] / "0" / "0" / "c.0.0.0.0.0"

        def bare(w: str, with_index: bool, with_stats: bool) -> None:
            if with_stats:
                for doc in ("zarr.json", "0/zarr.json", "0/0/zarr.json"):
                    os.stat(plate_dir / w[0] / w[1:] / doc)
            fd = os.open(shard(w), os.O_RDONLY)
            size = os.fstat(fd).st_size
            if with_index:
                os.pread(fd, 12 * 16 + 4, size - 12 * 16 - 4)
            os.pread(fd, 300_000, 0)
            os.close(fd)

        rows: dict[str, list[float]] = {}
        for label, run in [
            ("open + 1 pread (the chunk)", lambda w: bare(w, False, False)),
            ("open + 2 preads (index, chunk)", lambda w: bare(w, True, False)),
            ("3 document stats + open + 1 pread", lambda w: bare(w, False, True)),
        ]:
            _drop_caches()
            rows[label] = []
            for w, _f, _c in keys:
                t = time.perf_counter()
                run(w)
                rows[label].append(time.perf_counter() - t)
        _drop_caches()
        store = PlateStore.open(plate_dir)
        rows["PlateStore.read_plane"] = []
        for w, f, c in keys:
            t = time.perf_counter()
            store.read_plane(w, f, c, 0)
            rows["PlateStore.read_plane"].append(time.perf_counter() - t)
        rows["PlateStore.read_plane, warm"] = read_planes(plate_dir, keys * 2)[len(keys) :]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"50 random planes of a {args.wells}-well plate, page cache dropped before each row\n")
    print("| what | median ms |\n|---|---:|")
    for label, times in rows.items():
        print(f"| {label} | {statistics.median(times) * 1e3:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["profile", "pyspy", "phases", "coldread", "_phase"])
    parser.add_argument("arg", nargs="?", default=None, help="phase (internal)")
    parser.add_argument("--wells", type=int, default=96)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    args.phase = args.arg
    commands = {
        "profile": cmd_profile,
        "pyspy": cmd_pyspy,
        "phases": cmd_phases,
        "coldread": cmd_coldread,
        "_phase": cmd_phase,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
