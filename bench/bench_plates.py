"""Plate storage side by side: napari-wellzarr against polystore, ome-zarr-py, TIFF and raw files.

Then opening plates in napari: this project's reader against napari-ome-zarr's.

One command, every contender in its own process, the same synthetic wells for all::

    .venv/bin/python bench/bench_plates.py            # 24, 96 and 384 wells (~6-7 min)
    .venv/bin/python bench/bench_plates.py --quick    # 24 wells only, fewer reads (~2 min)
    .venv/bin/python bench/bench_plates.py --wells 24,96

A well is 4 fields x 3 channels x 1 z x 512 x 512 uint16 (12-bit nuclei-like, Poisson noise;
``napari_wellzarr.testing.synthetic``).  A pool of distinct wells is generated once into a ``.npy``
cache (kept between runs in the temp directory) and memory-mapped by each contender process,
so generation never counts.  Per contender and plate size: write throughput (MB/s of raw
pixels, plate metadata included; also with the final ``sync``), one random plane (median of
50 reads, cold page cache, through the contender's public API from an opened store), whole
well read (MB/s), 100 random planes (total), files, compression ratio, and the writer's peak
RSS.  The page cache is dropped (``/proc/sys/vm/drop_caches``, needs root) before each read
measurement; where that is refused, reads are warm and the output says so.

Last, "Opening in napari" (``_napari_open.py``; skip it with ``--no-napari``): the time from
``get_reader(path)(path)`` to layer data for 96 and 1536 wells, this project's reader against
napari-ome-zarr's (in ``.venv-napari-ome-zarr``, built on first use) on the same plate in the
standard layout, each in its own process, warm OS cache; then the first screen.

See ``bench/README.md`` for the contenders, the machine and the latest full table.
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
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import _contenders as cont  # noqa: E402
import _napari_open as nap  # noqa: E402
from _venvs import contender_python  # noqa: E402

POLYSTORE_VENV = ROOT / ".venv-polystore"
POLYSTORE_VERSION = "0.6.3"
POOL_SEED = 2024


@dataclass(frozen=True)
class Contender:
    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    # Where it runs: "all" plate sizes; "small" = all but those above 96 wells (the slow
    # writers, unless --everything); "middle" = the 96-well plate only (configuration variants).
    sizes: str = "all"
    # Cheap writers write the plate this many times (+2 up to 96 wells) and report the median.
    repeats: int = 1


DEFAULT = "wellzarr default (sharded, blosc-lz4-9-bit)"
PREVIOUS = "wellzarr default without stored levels (pyramid_levels=1, before issue 13)"
POLY = "polystore 0.6.3 default (zlib3, well chunk)"
RAW = "raw open().write(), uncompressed"
TIFF = "TIFF per plane (tifffile)"


def _variant(name: str, options: dict[str, str]) -> Contender:
    return Contender(f"wellzarr {name}", "wellzarr", options, "middle")


CONTENDERS = [
    Contender(DEFAULT, "wellzarr", {}, repeats=3),
    # the default before issue 13: no stored level (what the whole-plate level costs)
    Contender(PREVIOUS, "wellzarr", {"pyramid_levels": 1}, repeats=3),
    Contender(POLY, "polystore", sizes="small"),
    Contender("ome-zarr-py write_image defaults", "ome-zarr", sizes="small"),
    Contender(TIFF, "tiff", repeats=3),
    Contender(RAW, "raw", repeats=3),
    # every chunk strategy with the default codec, the default layout with every codec
    _variant("well chunk, blosc-lz4", {"chunks": "well"}),
    _variant("plane chunks, blosc-lz4", {"chunks": "plane"}),
    _variant("sharded, blosc-zstd3-bit", {"compressor": "blosc-zstd"}),
    _variant("sharded, zstd3", {"compressor": "zstd"}),
    _variant("sharded, gzip6", {"compressor": "gzip"}),
    _variant("sharded, none", {"compressor": "none"}),
    Contender(
        "wellzarr 0.4 plane chunks, zlib6",
        "wellzarr",
        {"chunks": "plane", "compressor": "zlib", "ngff_version": "0.4"},
        "middle",
    ),
    Contender(
        "wellzarr 0.4 plane chunks, lz4",
        "wellzarr",
        {"chunks": "plane", "compressor": "lz4", "ngff_version": "0.4"},
        "middle",
    ),
]


# -- set-up --------------------------------------------------------------------------------


def polystore_python(notes: list[str]) -> str | None:
    """The polystore venv's interpreter, creating the venv if it is missing."""
    return contender_python(
        POLYSTORE_VENV,
        f"polystore=={POLYSTORE_VERSION}",
        "import polystore.zarr, tifffile; print(polystore.__version__)",
        notes,
        extra=("tifffile", "psutil"),
    )


def _make_well(i: int) -> np.ndarray:
    from napari_wellzarr.testing.synthetic import derive_seed, synthetic_well

    return synthetic_well(
        cont.N_FIELDS,
        cont.N_CHANNELS,
        cont.N_Z,
        (cont.SIZE, cont.SIZE),
        seed=derive_seed(POOL_SEED, i),
    )


def well_pool(size: int) -> tuple[Path, int]:
    """Generate (once, cached across runs) ``size`` distinct wells; return (path, data offset)."""
    cache = Path(tempfile.gettempdir()) / "wellzarr-bench-cache"
    cache.mkdir(exist_ok=True)
    path = cache / f"pool-{size}w-seed{POOL_SEED}-np{np.__version__}.npy"
    if not path.exists():
        from concurrent.futures import ProcessPoolExecutor

        t = time.perf_counter()
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=cont.DTYPE, shape=(size, *cont.WELL_SHAPE)
        )
        with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
            for i, well in enumerate(pool.map(_make_well, range(size))):
                out[i] = well
        out.flush()
        del out
        os.replace(tmp, path)
        print(f"generated {size} wells into {path} in {time.perf_counter() - t:.0f} s", flush=True)
    offset = np.load(path, mmap_mode="r").offset
    return path, int(offset)


def machine() -> dict[str, str]:
    model = "?"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    versions = {}
    for dist in ("zarr", "numcodecs", "numpy", "ome-zarr", "tifffile"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "-"
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        core = f"napari-wellzarr at {head}" + (" + uncommitted changes in src/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        core = "napari-wellzarr (git state unknown)"
    return {
        "core": core,
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "ram": f"{mem_kb / 2**20:.1f} GiB",
        "python": platform.python_version(),
        "kernel": platform.release(),
        **versions,
    }


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def wait_for_quiet(limit_s: float, threshold: float = 0.7) -> str:
    """Wait (up to ``limit_s``) for the 1-minute load average to fall below ``threshold``.

    Other processes on a 2-core machine move every figure here; the report prints the load.
    """
    started = time.perf_counter()
    announced = False
    while loadavg() >= threshold and time.perf_counter() - started < limit_s:
        if not announced:
            print(
                f"load average {loadavg():.1f}: waiting up to {limit_s:.0f} s for a quiet "
                "machine (--wait-idle)",
                file=sys.stderr,
                flush=True,
            )
            announced = True
        time.sleep(5)
    return f"{loadavg():.2f}"


# -- running --------------------------------------------------------------------------------


def read_lists(n_wells: int, n_reads: int, n_many: int, n_whole: int) -> dict[str, Any]:
    """The same random reads for every contender at one plate size."""
    rng = np.random.default_rng(1000 + n_wells)

    def planes(n: int) -> list[list[int]]:
        return [
            [
                int(rng.integers(n_wells)),
                int(rng.integers(cont.N_FIELDS)),
                int(rng.integers(cont.N_CHANNELS)),
            ]
            for _ in range(n)
        ]

    return {
        "plane_reads": planes(n_reads),
        "well_reads": [
            int(i) for i in rng.choice(n_wells, size=min(n_whole, n_wells), replace=False)
        ],
        "many_reads": planes(n_many),
    }


def run_one(
    contender: Contender,
    n_wells: int,
    python: str,
    scratch: Path,
    pool: tuple[Path, int, int],
    reads: dict[str, Any],
    budget: float,
    drop: bool,
) -> dict[str, Any]:
    work = scratch / f"{contender.kind}-{n_wells}-{abs(hash(contender.name)) % 10**6}"
    work.mkdir()
    spec = {
        "name": contender.name,
        "kind": contender.kind,
        "options": contender.options,
        "wells": n_wells,
        "pool": str(pool[0]),
        "pool_offset": pool[1],
        "pool_size": pool[2],
        "plate_dir": str(work / "plate"),
        "result": str(work / "result.json"),
        "read_budget_s": budget,
        # Short writes (24, 96 wells: under 3 s) are the noisiest: repeat them more.
        "write_repeats": contender.repeats + (2 if contender.repeats > 1 and n_wells <= 96 else 0),
        "drop_caches": drop,
        **reads,
    }
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    t = time.perf_counter()
    done = subprocess.run(
        [python, str(HERE / "_contenders.py"), str(spec_path)], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - t
    result_path = work / "result.json"
    if result_path.exists():
        result = json.loads(result_path.read_text())
    else:
        result = {
            "name": contender.name,
            "wells": n_wells,
            "error": f"exit {done.returncode}",
            "traceback": done.stderr[-2000:],
        }
    result["elapsed_s"] = elapsed
    shutil.rmtree(work, ignore_errors=True)
    os.sync()  # the deletion's writeback and discards are done before the next contender
    return result


# -- reporting ------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _x(value: float | None, ref: float | None, higher_better: bool) -> str:
    if value is None or ref is None or value <= 0 or ref <= 0:
        return "-"
    r = value / ref if higher_better else ref / value
    return f"{r:.3g}x"


def table(results: list[dict[str, Any]], n_wells: int) -> str:
    rows = [r for r in results if r["wells"] == n_wells and "error" not in r]
    by = {r["name"]: r for r in rows}
    poly, raw = by.get(POLY), by.get(RAW)

    def g(r: dict[str, Any] | None, key: str) -> float | None:
        return None if r is None else r.get(key)

    head = (
        "| contender | write MB/s | vs poly / raw | write+sync MB/s | MB per CPU-s | 1 plane ms "
        "| vs poly / raw | 1 plane warm ms | whole well MB/s | vs poly / raw | 100 planes s "
        "| vs poly / raw | files | ratio | writer peak RSS MB |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        name = f"**{r['name']}**" if r["name"] == DEFAULT else r["name"]
        n_note = "" if r["plane_n"] >= 50 else f" (n={r['plane_n']})"
        w_note = "" if r["well_n"] > 1 else f" (n={r['well_n']})"
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    _f(r["write_mbs"]),
                    f"{_x(r['write_mbs'], g(poly, 'write_mbs'), True)} / "
                    f"{_x(r['write_mbs'], g(raw, 'write_mbs'), True)}",
                    _f(r["write_sync_mbs"]),
                    _f(r["write_cpu_mbs"]),
                    _f(r["plane_ms"], 1) + n_note,
                    f"{_x(r['plane_ms'], g(poly, 'plane_ms'), False)} / "
                    f"{_x(r['plane_ms'], g(raw, 'plane_ms'), False)}",
                    _f(r["plane_warm_ms"], 1),
                    _f(r["well_mbs"]) + w_note,
                    f"{_x(r['well_mbs'], g(poly, 'well_mbs'), True)} / "
                    f"{_x(r['well_mbs'], g(raw, 'well_mbs'), True)}",
                    _f(r["many_s"], 2),
                    f"{_x(r['many_s'], g(poly, 'many_s'), False)} / "
                    f"{_x(r['many_s'], g(raw, 'many_s'), False)}",
                    str(r["files"]),
                    _f(r["ratio"], 2),
                    _f(r["peak_rss_mb"]),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def targets(
    results: list[dict[str, Any]], sizes: list[int], opening: list[dict[str, Any]]
) -> list[str]:
    ok = [r for r in results if "error" not in r]

    def get(name: str, n: int) -> dict[str, Any] | None:
        return next((r for r in ok if r["name"] == name and r["wells"] == n), None)

    out: list[str] = []

    def verdict(label: str, met: bool | None, detail: str) -> None:
        word = "n/a" if met is None else ("MET" if met else "MISSED")
        out.append(f"- **{word}** {label}: {detail}")

    for n in sizes:
        d, p, raw = get(DEFAULT, n), get(POLY, n), get(RAW, n)
        if d and p:
            x = d["write_mbs"] / p["write_mbs"]
            xc = d["write_cpu_mbs"] / p["write_cpu_mbs"]
            verdict(
                f"write >= 10x polystore ({n} wells)",
                x >= 10,
                f"{d['write_mbs']:.0f} vs {p['write_mbs']:.1f} MB/s = {x:.1f}x (per CPU-second, "
                f"less load-sensitive: {d['write_cpu_mbs']:.0f} vs {p['write_cpu_mbs']:.0f} "
                f"= {xc:.1f}x)",
            )
        if d and raw:
            x = d["write_mbs"] / raw["write_mbs"]
            xs = d["write_sync_mbs"] / raw["write_sync_mbs"]
            verdict(
                f"write >= 0.6x plain open().write() ({n} wells)",
                x >= 0.6,
                f"{d['write_mbs']:.0f} vs {raw['write_mbs']:.0f} MB/s = {x:.2f}x "
                f"(with final sync: {d['write_sync_mbs']:.0f} vs {raw['write_sync_mbs']:.0f} "
                f"MB/s = {xs:.2f}x)",
            )
    n96 = 96 if 96 in sizes else sizes[len(sizes) // 2]
    d, p = get(DEFAULT, n96), get(POLY, n96)
    if d and p:
        x = p["plane_ms"] / d["plane_ms"]
        verdict(
            f"one random plane >= 100x faster than polystore ({n96} wells)",
            x >= 100,
            f"{d['plane_ms']:.1f} vs {p['plane_ms']:.0f} ms = {x:.0f}x",
        )
    lo, hi = get(DEFAULT, min(sizes)), get(DEFAULT, max(sizes))
    if lo and hi and min(sizes) != max(sizes):
        x = hi["plane_ms"] / lo["plane_ms"]
        verdict(
            f"one plane flat in plate size ({max(sizes)} within 1.5x of {min(sizes)} wells)",
            x <= 1.5,
            f"{hi['plane_ms']:.1f} vs {lo['plane_ms']:.1f} ms = {x:.2f}x",
        )
    for n in sizes:
        d, t = get(DEFAULT, n), get(TIFF, n)
        if d and t:
            verdict(
                f"one plane no slower than its own TIFF ({n} wells)",
                d["plane_ms"] <= t["plane_ms"],
                f"{d['plane_ms']:.1f} vs {t['plane_ms']:.1f} ms "
                f"(warm: {d['plane_warm_ms']:.1f} vs {t['plane_warm_ms']:.1f} ms)",
            )
    for n in sizes:
        d, p = get(DEFAULT, n), get(POLY, n)
        if d and p:
            x = d["well_mbs"] / p["well_mbs"]
            verdict(
                f"whole-well read >= 3x polystore ({n} wells)",
                x >= 3,
                f"{d['well_mbs']:.0f} vs {p['well_mbs']:.0f} MB/s = {x:.1f}x",
            )
    for n in sizes[:1]:
        d, p = get(DEFAULT, n), get(POLY, n)
        if d and p:
            verdict(
                f"compression ratio >= polystore's ({n} wells)",
                d["ratio"] >= p["ratio"],
                f"{d['ratio']:.2f} vs {p['ratio']:.2f}",
            )
    n_max = max(sizes)
    d = get(DEFAULT, n_max)
    if d:
        limit = 300 + 4 * cont.WELL_BYTES / 2**20
        verdict(
            f"writer peak RSS within 300 MB + 4 wells ({n_max} wells)",
            d["peak_rss_mb"] <= limit,
            f"{d['peak_rss_mb']:.0f} MB (limit {limit:.0f} MB; "
            f"{d['rss_before_mb']:.0f} MB after imports, before the first well)"
            + ("" if n_max == 384 else " - the target is for 384 wells"),
        )
    for label, met, detail in nap.targets(opening):
        verdict(label, met, detail)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wells", default=None, help="plate sizes, e.g. 24,96,384")
    parser.add_argument("--quick", action="store_true", help="24 wells, fewer reads")
    parser.add_argument("--reads", type=int, default=50, help="single-plane reads per plate")
    parser.add_argument("--many", type=int, default=100, help="planes in the many-planes read")
    parser.add_argument("--whole", type=int, default=8, help="wells in the whole-well read")
    parser.add_argument("--budget", type=float, default=None, help="seconds per read metric")
    parser.add_argument("--pool", type=int, default=48, help="distinct wells in the data pool")
    parser.add_argument("--only", default=None, help="comma-separated substrings of names")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory")
    parser.add_argument(
        "--everything",
        action="store_true",
        help="also run polystore and ome-zarr-py above 96 wells (adds ~10 min at 384)",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=60,
        help="seconds to wait for the load average to drop below 0.7 before starting",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="do not drop the page cache (it is system-wide: it disturbs other benchmarks)",
    )
    parser.add_argument(
        "--no-napari",
        action="store_true",
        help="skip opening plates in napari (this reader against napari-ome-zarr: ~45 s)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also save raw results here")
    args = parser.parse_args()

    started = time.perf_counter()
    if args.quick:
        sizes = [int(s) for s in (args.wells or "24").split(",")]
        args.reads, args.many, args.whole = (
            min(args.reads, 20),
            min(args.many, 40),
            min(args.whole, 4),
        )
    else:
        sizes = [int(s) for s in (args.wells or "24,96,384").split(",")]
    bad = [s for s in sizes if s not in cont.GEOMETRY]
    if bad:
        parser.error(f"--wells {bad}: plate sizes are {sorted(cont.GEOMETRY)}")
    sizes.sort()
    budget = args.budget if args.budget is not None else (8.0 if not args.quick else 4.0)
    middle = 96 if 96 in sizes else sizes[len(sizes) // 2]

    notes: list[str] = []
    pythons = {"polystore": polystore_python(notes)}
    pool_path, pool_offset = well_pool(args.pool)
    pool = (pool_path, pool_offset, args.pool)
    chosen = [
        c
        for c in CONTENDERS
        if not args.only or any(s.strip().lower() in c.name.lower() for s in args.only.split(","))
    ]
    info = machine()
    pre_load = wait_for_quiet(args.wait_idle)
    scratch = Path(tempfile.mkdtemp(prefix="wellzarr-bench-plates-", dir=args.dir))
    results: list[dict[str, Any]] = []
    opening: list[dict[str, Any]] = []
    skipped: list[str] = []
    try:
        for n in sizes:
            reads = read_lists(n, args.reads, args.many, args.whole)
            for c in chosen:
                if c.sizes == "middle" and n != middle:
                    continue
                if c.sizes == "small" and n > 96 and not args.everything:
                    skipped.append(f"{c.name} at {n} wells")
                    continue
                python = pythons.get(c.kind, sys.executable)
                if python is None:
                    continue
                r = run_one(c, n, python, scratch, pool, reads, budget, not args.warm)
                results.append(r)
                status = r.get("error") or (
                    f"write {r['write_mbs']:.0f} MB/s, plane {r['plane_ms']:.1f} ms, "
                    f"well {r['well_mbs']:.0f} MB/s"
                )
                print(
                    f"[{time.perf_counter() - started:5.0f} s] {n:4d} wells  {c.name}: {status} "
                    f"({r['elapsed_s']:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                if "error" in r:
                    print(r.get("traceback", ""), file=sys.stderr)
        if not args.no_napari:
            opening = nap.run_all(
                scratch / "napari",
                quick=args.quick,
                notes=notes,
                log=lambda line: print(
                    f"[{time.perf_counter() - started:5.0f} s] {line}", file=sys.stderr, flush=True
                ),
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    load_end = f"{loadavg():.2f}"
    cold = all(r.get("cold") for r in results if "error" not in r)
    raw_mb = cont.WELL_BYTES / 1e6
    print(f"# Plate storage benchmark ({time.strftime('%Y-%m-%d %H:%M')})\n")
    print(
        f"Machine: {info['cpus']} CPUs ({info['cpu']}), {info['ram']} RAM, "
        f"Python {info['python']}, "
        f"Linux {info['kernel']}; zarr {info['zarr']}, numcodecs {info['numcodecs']}, numpy "
        f"{info['numpy']}, ome-zarr {info['ome-zarr']}, tifffile {info['tifffile']}. "
        f"Core: {info['core']}. Load average (1 min) at start {pre_load}, at end {load_end} "
        "(other processes on this machine move every figure; compare within one run).\n"
    )
    print(
        f"Well = {cont.N_FIELDS} fields x {cont.N_CHANNELS} channels x {cont.N_Z} z x "
        f"{cont.SIZE}x{cont.SIZE} uint16 = {raw_mb:.2f} MB raw; {args.pool} distinct synthetic "
        f"wells reused cyclically. Reads: median of {args.reads} single planes, "
        f"{args.whole} whole wells, {args.many} planes in one go; each read metric stops early "
        f"after {budget:.0f} s (n shown). "
        + (
            "Page cache dropped before each read metric (cold reads)."
            if cold
            else "**Page cache NOT dropped: reads are warm-cache.**"
        )
        + " Ratios: value / reference for throughput, reference / value for times (>1 = better)."
        "\n"
    )
    for n in sizes:
        print(f"## {n} wells ({n * raw_mb / 1e3:.2f} GB raw)\n")
        print(table(results, n))
        print()
    if opening:
        print("## Opening in napari\n")
        print(nap.describe(opening) + "\n")
        print(nap.table(opening))
        print()
    print("## Targets (default configuration)\n")
    print("\n".join(targets(results, sizes, opening)))
    errors = [r for r in results if "error" in r]
    if skipped:
        notes.append(
            "not run (too slow for the time budget; --everything runs them): " + "; ".join(skipped)
        )
    if errors or notes:
        print("\n## Notes\n")
        for r in errors:
            print(f"- {r['name']} at {r['wells']} wells failed: {r['error']}")
        for note in notes:
            print(f"- {note}")
    print(f"\nTotal runtime {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "results": results, "opening": opening}, indent=1)
        )


if __name__ == "__main__":
    main()
