"""Where the core's time goes: profiles and prototype optimisations of write and plane read.

    .venv/bin/python bench/profile_core.py profile [--wells 96]    # cProfile, top functions
    .venv/bin/python bench/profile_core.py pyspy   [--wells 96]    # py-spy, all threads + C
    .venv/bin/python bench/profile_core.py prototypes [--wells 96] [--repeats 3]

``profile`` runs the default configuration (``StorageConfig()``: sharded, blosc-zstd 3
bit-shuffle) under cProfile: a 96-well plate written with ``PlateStore.write_well`` in a
``with PlateStore.create`` block, then 200 random warm ``read_plane`` calls from an opened
store, then 50 cold ones (page cache dropped, new store).  cProfile sees only the calling
thread; zarr 3 does its I/O on an event-loop thread and encodes on a thread pool, so
``pyspy`` samples every thread, native frames included (needs ``py-spy`` on ``PATH`` or
``PY_SPY=/path/to/py-spy``).

``prototypes`` measures changes to the core without editing ``src/``: each variant
monkeypatches the core (or zarr's configuration) in a fresh process, writes the plate
``--repeats`` times and reads 200 planes; it prints the median against the baseline, in
alternating order so that disk drift hits every variant alike.

Uses the well pool that ``bench_plates.py`` caches (generated here if missing).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
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
    import napari_wellzarr.core.store  # noqa: F401  (imports are not the workload)

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

    import napari_wellzarr.core.store  # noqa: F401

    plate_dir = Path(args.dir) / "plate.ome.zarr"
    if args.phase == "write":
        wells = pool()
        wells.warm()
        write_plate(plate_dir, args.wells, wells)
    else:
        keys = plane_keys(args.wells, 400, 7)
        read_planes(plate_dir, keys)


# -- prototypes ----------------------------------------------------------------------------------

# Each variant is applied in a fresh process before the plate is written; the source of each
# patch is printed in the report.  They model changes to src/ without editing it.


def _patch_no_minmax() -> None:
    """writing._channels: no full-well min/max pass (window from the dtype range only)."""
    import numpy as np

    from napari_wellzarr.core import writing

    original = writing._channels

    def channels(name: str, array: Any, axes: Any, channels: Any) -> Any:
        small = array[(slice(0, 1),) * (array.ndim - 2) + (slice(0, 2), slice(0, 2))]
        return original(name, np.broadcast_to(small, (*small.shape[:-2], 2, 2)), axes, channels)

    writing._channels = channels


def _patch_minmax_one_pass() -> None:
    """writing._channels: min and max per channel from one strided view (no temporaries)."""
    import numpy as np

    from napari_wellzarr.core import writing
    from napari_wellzarr.core.metadata import Channel, default_channels

    def channels(name: str, array: Any, axes: Any, channels: Any) -> Any:
        c_axis = axes.names.index("c")
        n_c = array.shape[c_axis]
        defaults = default_channels(n_c)
        base = (
            defaults
            if channels is None
            else tuple(
                c if isinstance(c, Channel) else Channel(str(c), defaults[i].color)
                for i, c in enumerate(channels)
            )
        )
        moved = np.moveaxis(array, c_axis, 0)
        low = [int(moved[i].min()) for i in range(n_c)]
        high = [int(moved[i].max()) for i in range(n_c)]
        info = np.iinfo(array.dtype) if array.dtype.kind in "iu" else None
        out = []
        for i, ch in enumerate(base):
            if ch.window is None:
                lo, hi = (info.min, info.max) if info else (low[i], high[i])
                ch = Channel(ch.label, ch.color, (float(lo), float(hi), low[i], high[i]), ch.active)
            out.append(ch)
        return tuple(out)

    writing._channels = channels


def _patch_no_fsync() -> None:
    """fsio.atomic_write_bytes: temp file + rename without fsync (rename is still atomic)."""
    import contextlib
    import uuid

    from napari_wellzarr.core import fsio

    def atomic_write_bytes(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    fsio.atomic_write_bytes = atomic_write_bytes


def _patch_blosc_single_thread() -> None:
    """numcodecs blosc without its own threads (zarr's thread pool already runs chunks)."""
    import numcodecs.blosc

    numcodecs.blosc.use_threads = False


def _patch_concurrency_2() -> None:
    """zarr async.concurrency 2 (default 10) on this 2-core machine."""
    import zarr

    zarr.config.set({"async.concurrency": 2})


def _patch_max_workers_2() -> None:
    """zarr threading.max_workers 2 (default: Python's executor default, min(32, cpus+4))."""
    import zarr

    zarr.config.set({"threading.max_workers": 2})


def _patch_no_checksum() -> None:
    """StorageConfig(checksum=False): no crc32c codec after blosc (if the core has it)."""


def _patch_combined() -> None:
    """no fsync + one-pass min/max (the two small core changes together)."""
    _patch_no_fsync()
    _patch_minmax_one_pass()


def _patch_direct_write() -> None:
    """_fastpath: zarr writes metadata only; chunks encoded on a 2-thread pool, one shard write."""
    import _fastpath

    _fastpath.install_direct_shard_writer()


def _patch_direct_read() -> None:
    """_fastpath: shard index read once per well, plane chunk pread + decoded in the caller."""
    import _fastpath

    _fastpath.install_direct_plane_reader()


def _patch_direct_read_shared() -> None:
    """direct read + wells reuse the first well's layout (models plate-level well metadata)."""
    import _fastpath

    _fastpath.install_direct_plane_reader()
    _fastpath.install_shared_well_layout()


def _patch_everything() -> None:
    """combined + direct write + direct read with shared layout."""
    _patch_combined()
    _patch_direct_write()
    _patch_direct_read_shared()


VARIANTS: dict[str, Any] = {
    "baseline": None,
    "minmax-one-pass": _patch_minmax_one_pass,
    "no-minmax": _patch_no_minmax,
    "no-fsync": _patch_no_fsync,
    "blosc-1-thread": _patch_blosc_single_thread,
    "concurrency-2": _patch_concurrency_2,
    "max-workers-2": _patch_max_workers_2,
    "no-checksum": _patch_no_checksum,
    "combined": _patch_combined,
    "direct-write": _patch_direct_write,
    "direct-read": _patch_direct_read,
    "direct-read+shared-layout": _patch_direct_read_shared,
    "everything": _patch_everything,
    # The same with a faster codec setting (StorageConfig options, see CONFIGS).
    "baseline+blosc-lz4": None,
    "everything+blosc-lz4": _patch_everything,
    "everything+blosc-zstd1": _patch_everything,
}
CONFIGS: dict[str, dict[str, Any]] = {
    "baseline+blosc-lz4": {"compressor": "blosc-lz4"},
    "everything+blosc-lz4": {"compressor": "blosc-lz4"},
    "everything+blosc-zstd1": {"level": 1},
}


def cmd_variant(args: argparse.Namespace) -> None:
    """Run one variant once (in this fresh process) and print a JSON line."""

    import napari_wellzarr.core.store  # noqa: F401
    from napari_wellzarr.core import StorageConfig

    patch = VARIANTS[args.variant]
    if patch is not None:
        patch()
    config: dict[str, Any] = dict(CONFIGS.get(args.variant, {}))
    if args.variant == "no-checksum" and "checksum" in StorageConfig.__dataclass_fields__:
        config["checksum"] = False
    wells = pool()
    wells.warm()
    plate_dir = Path(args.dir) / f"plate-{args.variant}"
    os.sync()
    cpu = time.process_time()
    write_s = write_plate(plate_dir, args.wells, wells, **config)
    cpu = time.process_time() - cpu
    keys = plane_keys(args.wells, 200, 11)
    read_planes(plate_dir, keys[:3])
    warm = read_planes(plate_dir, keys)
    cont.drop_caches()
    cold = read_planes(plate_dir, plane_keys(args.wells, 50, 12))
    shutil.rmtree(plate_dir)
    os.sync()
    print(
        json.dumps(
            {
                "write_mbs": args.wells * cont.WELL_BYTES / write_s / 1e6,
                "cpu_ms_per_well": cpu / args.wells * 1e3,
                "plane_warm_ms": statistics.median(warm) * 1e3,
                "plane_cold_ms": statistics.median(cold) * 1e3,
            }
        )
    )


def cmd_prototypes(args: argparse.Namespace) -> None:
    import inspect

    pool()  # build the cache before timing anything
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    names = [v for v in VARIANTS if not args.variants or v in args.variants.split(",")]
    if "baseline" not in names:
        names.insert(0, "baseline")
    scratch = Path(tempfile.mkdtemp(prefix="wellzarr-proto-", dir=args.dir))
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    try:
        for rep in range(args.repeats):
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                done = subprocess.run(
                    [sys.executable, __file__, "_variant", name, "--wells", str(args.wells),
                     "--dir", str(scratch)],
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                if done.returncode:
                    print(f"{name} failed:\n{done.stderr[-1500:]}", file=sys.stderr)
                    continue
                runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"rep {rep} {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    base = {k: statistics.median(r[k] for r in runs["baseline"]) for k in runs["baseline"][0]}
    where = "tmpfs" if str(scratch).startswith("/dev/shm") else "disk"
    print(
        f"## Prototype optimisations, default config, {args.wells} wells on {where} "
        f"(median of {args.repeats} runs each; load average before: {load_before})\n"
    )
    print(
        "| variant | write MB/s | vs baseline | all runs MB/s | CPU ms per well | vs baseline "
        "| plane warm ms | plane cold ms | what |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---|")
    for name in names:
        if not runs[name]:
            continue
        med = {k: statistics.median(r[k] for r in runs[name]) for k in runs[name][0]}
        doc = inspect.getdoc(VARIANTS[name]) if VARIANTS[name] else "the core as it is"
        if name in CONFIGS:
            doc = f"{doc} With StorageConfig({CONFIGS[name]})."
        all_runs = ", ".join(f"{r['write_mbs']:.0f}" for r in runs[name])
        print(
            f"| {name} | {med['write_mbs']:.0f} | {med['write_mbs'] / base['write_mbs']:.2f}x | "
            f"{all_runs} | {med['cpu_ms_per_well']:.1f} | "
            f"{base['cpu_ms_per_well'] / med['cpu_ms_per_well']:.2f}x | "
            f"{med['plane_warm_ms']:.2f} | {med['plane_cold_ms']:.2f} | {doc} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["profile", "pyspy", "prototypes", "_phase", "_variant"])
    parser.add_argument("arg", nargs="?", default=None, help="phase or variant (internal)")
    parser.add_argument("--wells", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=None, help="comma-separated variant names")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    args.phase = args.variant = args.arg
    {
        "profile": cmd_profile,
        "pyspy": cmd_pyspy,
        "prototypes": cmd_prototypes,
        "_phase": cmd_phase,
        "_variant": cmd_variant,
    }[args.command](args)


if __name__ == "__main__":
    main()
