"""Folder-of-TIFFs -> plate conversion: throughput and peak memory of ``wellzarr convert``.

One command::

    .venv/bin/python bench/bench_convert.py                 # 24 and 96 wells, serial and 2 workers
    .venv/bin/python bench/bench_convert.py --wells 96 --repeats 3 --dask
    .venv/bin/python bench/bench_convert.py --wells 0 --ix-metadata   # the MetaXpress line only
    .venv/bin/python bench/bench_convert.py --cluster --wells 96      # 1/2/4 dask workers,
                          # folder and S3 (bench/bench_cluster.py; its options pass through)

A well is 4 fields x 3 channels x 1 z x 512 x 512 uint16 (12-bit nuclei-like, Poisson noise;
``napari_wellzarr.testing.synthetic``), written as ImageXpress TIFFs ``bench_<well>_s<f>_w<c>.tif``
(a 96-well source is 1152 files, 604 MB).  The source folders are generated once into the
temp directory and kept between runs.

Each conversion runs ``python -m napari_wellzarr.cli convert SRC DEST --json`` in its own
process group with the default storage (blosc-lz4 9, bit-shuffle, sharded).  Reported:

* ``MB/s raw``: raw pixel bytes / wall time of the whole command (interpreter start, scan
  of names and TIFF headers, conversion, metadata) - what a user waits for;
* ``engine MB/s``: the same bytes / the conversion step alone (``result.seconds``);
* ``others CPU``: cores' worth of CPU that *other* processes used during the run (the
  machine is shared; ``--wait-idle`` waits for a quiet machine first);
* ``peak RSS``: the largest sum of resident memory over the command's process tree
  (parent + worker processes + forkserver), sampled every 10 ms with psutil, and the
  largest single process.  With ``--dask`` the cluster runs in a separate process, so
  the figure is the client's alone.

The page cache is dropped before each run when ``/proc/sys/vm/drop_caches`` is writable
(root); otherwise the source files are read warm and the output says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import tifffile

if TYPE_CHECKING:
    import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.gettempdir()) / "wellzarr-bench-convert"
FIELDS, CHANNELS, SHAPE = 4, 3, (512, 512)
POOL = 16  # distinct synthetic wells, cycled over the plate
SEED = 2024


def well_names(n: int) -> list[str]:
    rows, cols = {24: (4, 6), 96: (8, 12), 384: (16, 24)}[n]
    return [f"{'ABCDEFGHIJKLMNOP'[r]}{c + 1:02d}" for r in range(rows) for c in range(cols)]


def make_source(n_wells: int) -> Path:
    from napari_wellzarr.testing.synthetic import derive_seed, synthetic_well

    src = WORK / f"src-{n_wells}"
    marker = src / ".complete"
    if marker.exists():
        return src
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    print(f"generating a {n_wells}-well source in {src} ...", flush=True)
    pool: list[np.ndarray] = []
    for i, well in enumerate(well_names(n_wells)):
        if len(pool) < POOL:
            pool.append(synthetic_well(FIELDS, CHANNELS, 1, SHAPE, seed=derive_seed(SEED, i)))
        data = pool[i % POOL]
        for f in range(FIELDS):
            for c in range(CHANNELS):
                tifffile.imwrite(src / f"bench_{well}_s{f + 1}_w{c + 1}.tif", data[f, c, 0])
    marker.write_text("ok")
    return src


def drop_caches() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


class TreeSampler:
    """Peak RSS of a process and all its descendants, sampled from another thread."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_total = 0
        self.peak_single = 0
        self.processes = 0
        self.cpu: dict[int, float] = {}  # pid -> user + system seconds, last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        seen: set[int] = set()
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                self.cpu[proc.pid] = times.user + times.system
                seen.add(proc.pid)
                total += rss
                self.peak_single = max(self.peak_single, rss)
            self.peak_total = max(self.peak_total, total)
            self.processes = len(seen)
            time.sleep(self.interval)


def run_once(
    src: Path, n_wells: int, mode: str, scheduler: str | None, warm: bool
) -> dict[str, Any]:
    dest = WORK / "out" / "plate.ome.zarr"
    shutil.rmtree(dest.parent, ignore_errors=True)
    args = [sys.executable, "-m", "napari_wellzarr.cli", "convert", str(src), str(dest)]
    args += ["--json", "-q"]
    if mode == "2 workers":
        args += ["--workers", "2"]
    elif mode == "dask 2 workers":
        assert scheduler is not None
        args += ["--scheduler", scheduler]
    os.sync()  # the previous run's writes must not be flushed during this one
    cold = False if warm else drop_caches()
    busy_before = _busy_seconds()
    start = time.perf_counter()
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    with TreeSampler(proc.pid) as sampler:
        out, err = proc.communicate()
    wall = time.perf_counter() - start
    # CPU that other processes used meanwhile: on a shared 2-core machine it moves every figure
    others = (_busy_seconds() - busy_before - sum(sampler.cpu.values())) / wall
    if proc.returncode != 0:
        raise SystemExit(f"{mode}: exit {proc.returncode}\n{err}")
    result = json.loads(out)
    raw = result["raw_bytes"]
    disk = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    return {
        "wells": n_wells,
        "mode": mode,
        "raw_mb": raw / 1e6,
        "wall_s": wall,
        "engine_s": result["seconds"],
        "mb_s": raw / 1e6 / wall,
        "engine_mb_s": raw / 1e6 / result["seconds"],
        "peak_rss_total_mb": sampler.peak_total / 1e6,
        "peak_rss_single_mb": sampler.peak_single / 1e6,
        "processes": sampler.processes,
        "ratio": raw / disk,
        "cold_cache": cold,
        "other_cpu": max(0.0, others),
    }


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0))


def wait_for_quiet(limit_s: float, threshold: float = 0.7) -> float:
    """Wait (up to ``limit_s``) for the 1-minute load average to fall below ``threshold``."""
    started = time.perf_counter()
    while os.getloadavg()[0] >= threshold and time.perf_counter() - started < limit_s:
        time.sleep(5)
    return os.getloadavg()[0]


def start_dask() -> tuple[subprocess.Popen[str], str]:
    """A 2-worker LocalCluster in its own process (its memory is not the converter's)."""
    code = (
        "import sys, time\n"
        "from distributed import LocalCluster\n"
        "c = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=':0')\n"
        "print(c.scheduler_address, flush=True)\n"
        "sys.stdin.read()\n"
        "c.close()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wells", default="24,96", help="plate sizes: 24, 96, 384")
    parser.add_argument("--repeats", type=int, default=2, help="runs per case (best is kept)")
    parser.add_argument("--dask", action="store_true", help="also a 2-worker dask cluster")
    parser.add_argument("--warm", action="store_true", help="keep the page cache (no drop)")
    parser.add_argument(
        "--wait-idle", type=float, default=0, help="wait up to S s for load < 0.7 before each case"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--ix-metadata",
        action="store_true",
        help="also: metadata scan of a generated 1536-well MetaXpress export vs its conversion",
    )
    parser.add_argument(
        "--cluster", action="store_true", help="1, 2, 4 dask workers to a folder and to S3 instead"
    )
    args, rest = parser.parse_known_args()
    if args.cluster:
        import bench_cluster  # (this folder is on sys.path when run as a script)

        sys.argv = [sys.argv[0], "--wells", args.wells.split(",")[0], *rest]
        sys.argv += ["--repeats", str(args.repeats)]
        if args.json:
            sys.argv += ["--json", str(args.json)]
        bench_cluster.main()
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    modes = ["serial", "2 workers"] + (["dask 2 workers"] if args.dask else [])
    dask_proc, address = start_dask() if args.dask else (None, None)
    rows = []
    try:
        for n in (int(x) for x in args.wells.split(",") if x != "0"):
            src = make_source(n)
            for mode in modes:
                if args.wait_idle:
                    wait_for_quiet(args.wait_idle)
                runs = [run_once(src, n, mode, address, args.warm) for _ in range(args.repeats)]
                best = min(runs, key=lambda r: r["wall_s"])
                best["peak_rss_total_mb"] = max(r["peak_rss_total_mb"] for r in runs)
                best["peak_rss_single_mb"] = max(r["peak_rss_single_mb"] for r in runs)
                rows.append(best)
                print_row(best)
    finally:
        if dask_proc is not None:
            assert dask_proc.stdin is not None
            dask_proc.stdin.close()  # the cluster closes itself
            dask_proc.wait(timeout=60)
    print(
        f"\n{platform.node()} - {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{FIELDS}x{CHANNELS} planes of {SHAPE[0]}x{SHAPE[1]} uint16 per well; "
        f"page cache {'dropped' if rows and rows[0]['cold_cache'] else 'warm (not root)'}"
    )
    if args.ix_metadata:
        rows.append(ix_metadata_line())
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def ix_metadata_line() -> dict[str, Any]:
    """The MetaXpress metadata scan (.HTD + MetaSeries tags) against the conversion time."""
    sys.path.insert(0, str(Path(__file__).parent))
    from ix_export import make_ix_export, measure

    WORK.mkdir(parents=True, exist_ok=True)
    r = measure(make_ix_export(WORK), WORK)
    print(
        f"\nMetaXpress 1536 wells, {r['files']} files of {r['plane'][0]}x{r['plane'][1]}: "
        f"scan {r['scan_with_metadata_s']:.2f} s (without the tags "
        f"{r['scan_without_metadata_s']:.2f} s; name scheme, headers only "
        f"{r['scan_names_headers_s']:.2f} s), conversion {r['convert_s']:.2f} s; metadata "
        f"{100 * r['metadata_share']:.1f} % of the conversion (whole scan "
        f"{100 * r['scan_share']:.1f} %), {r['positions']} field positions",
        flush=True,
    )
    return {"mode": "ix-metadata", **r}


HEADER = False


def print_row(r: dict[str, Any]) -> None:
    global HEADER
    if not HEADER:
        print(
            f"{'wells':>5} {'mode':<15} {'raw MB':>7} {'wall s':>7} {'MB/s raw':>9} "
            f"{'engine MB/s':>11} {'peak RSS MB (tree)':>18} {'largest proc MB':>15} "
            f"{'ratio':>6} {'others CPU':>10}"
        )
        HEADER = True
    print(
        f"{r['wells']:>5} {r['mode']:<15} {r['raw_mb']:>7.0f} {r['wall_s']:>7.2f} "
        f"{r['mb_s']:>9.0f} {r['engine_mb_s']:>11.0f} {r['peak_rss_total_mb']:>18.0f} "
        f"{r['peak_rss_single_mb']:>15.0f} {r['ratio']:>6.2f} {r['other_cpu']:>10.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
