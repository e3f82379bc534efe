"""Pick the default codec and chunk layout for well-chunked plates.

Runs against zarr-python 3 directly (not our core), on synthetic 512 x 512 uint16 12-bit
nuclei-like planes (``napari_wellzarr.synthetic``), 4 fields x 3 channels x 1 z per well:

* codecs: zarr v3 blosc-zstd (clevel 1/3/5, bit/byte shuffle), blosc-lz4 (clevel 5, byte/bit),
  zstd (1/3), gzip (1/6), none; zarr v2 numcodecs Zlib(3), LZ4(acceleration=1) and
  Blosc(zstd, 3, bitshuffle);
* layouts: ``well`` (one chunk per well), ``plane`` (one chunk per plane), ``shard`` (one shard
  per well holding plane chunks; zarr v3 only).

For each pair: write throughput (MB/s of raw pixels, whole wells, array creation included),
compression ratio (raw bytes / bytes on disk), single random plane read (median of 30, fresh
``zarr.open_array`` each time, and with the array kept open), whole-well read MB/s (fresh open)
and files on disk.  Reads hit the page cache (nothing here drops it), so they measure decode and
zarr overhead, not the disk.  Then a short ``async.concurrency`` sweep for a few pairs.

Usage::

    .venv/bin/python bench/choose_defaults.py [--wells 6] [--reads 30] [--quick] [--dir DIR]

Prints markdown tables; takes about 1-2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
import zarr.codecs as zc
from zarr.storage import LocalStore

try:
    from napari_wellzarr.synthetic import derive_seed, synthetic_well
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from napari_wellzarr.synthetic import derive_seed, synthetic_well

N_FIELDS, N_CHANNELS, N_Z, SIZE = 4, 3, 1, 512
WELL_SHAPE = (N_FIELDS, N_CHANNELS, N_Z, SIZE, SIZE)
PLANE_CHUNK = (1, 1, 1, SIZE, SIZE)
LAYOUTS = ("well", "plane", "shard")


@dataclass(frozen=True)
class Codec:
    name: str
    zarr_format: int
    compressors: Any  # zarr v3 codec list, numcodecs codec (v2) or None


def candidates() -> list[Codec]:
    out: list[Codec] = []
    for level in (1, 3, 5):
        for shuffle, short in (("bitshuffle", "bit"), ("shuffle", "byte")):
            out.append(
                Codec(
                    f"blosc-zstd{level}-{short}",
                    3,
                    [zc.BloscCodec(cname="zstd", clevel=level, shuffle=shuffle)],
                )
            )
    for shuffle, short in (("shuffle", "byte"), ("bitshuffle", "bit")):
        out.append(
            Codec(
                f"blosc-lz4-5-{short}", 3, [zc.BloscCodec(cname="lz4", clevel=5, shuffle=shuffle)]
            )
        )
    out += [
        Codec("zstd1", 3, [zc.ZstdCodec(level=1)]),
        Codec("zstd3", 3, [zc.ZstdCodec(level=3)]),
        Codec("gzip1", 3, [zc.GzipCodec(level=1)]),
        Codec("gzip6", 3, [zc.GzipCodec(level=6)]),
        Codec("none", 3, None),
        Codec("v2-zlib3", 2, numcodecs.Zlib(level=3)),
        Codec("v2-lz4-acc1", 2, numcodecs.LZ4(acceleration=1)),
        # Not in the original brief: the recommended codec on the zarr v2 / OME 0.4 path.
        Codec(
            "v2-blosc-zstd3-bit",
            2,
            numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE),
        ),
    ]
    return out


@dataclass
class Result:
    codec: str
    layout: str
    write_mbs: float
    ratio: float
    plane_fresh_ms: float
    plane_open_ms: float
    well_read_mbs: float
    files: int


def dir_stats(path: Path) -> tuple[int, int]:
    size = files = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            size += os.stat(os.path.join(root, name)).st_size
            files += 1
    return size, files


def well_path(i: int) -> str:
    return f"{'ABCDEFGH'[i // 12]}/{i % 12 + 1:02d}/0/0"


def create(store: LocalStore, path: str, codec: Codec, layout: str) -> zarr.Array[Any]:
    kwargs: dict[str, Any] = {}
    if layout == "well":
        kwargs["chunks"] = WELL_SHAPE
    elif layout == "plane":
        kwargs["chunks"] = PLANE_CHUNK
    else:
        kwargs["chunks"] = PLANE_CHUNK
        kwargs["shards"] = WELL_SHAPE
    if codec.zarr_format == 2:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    else:
        kwargs["dimension_names"] = ("field", "c", "z", "y", "x")
    return zarr.create_array(
        store,
        name=path,
        shape=WELL_SHAPE,
        dtype="uint16",
        compressors=codec.compressors,
        zarr_format=codec.zarr_format,  # type: ignore[arg-type]
        fill_value=0,
        **kwargs,
    )


def run_one(
    root: Path,
    codec: Codec,
    layout: str,
    wells: list[np.ndarray],
    reads: list[tuple[int, int, int]],
) -> Result:
    store_dir = root / f"{codec.name}-{layout}"
    store = LocalStore(store_dir)
    raw = sum(w.nbytes for w in wells)

    t0 = time.perf_counter()
    for i, data in enumerate(wells):
        arr = create(store, well_path(i), codec, layout)
        arr[...] = data
    write_s = time.perf_counter() - t0
    disk, files = dir_stats(store_dir)

    # Correctness spot check (also warms nothing we measure below: each read reopens).
    check = zarr.open_array(store, path=well_path(0), mode="r")
    np.testing.assert_array_equal(check[1, 2, 0], wells[0][1, 2, 0])

    fresh: list[float] = []
    for w, f, c in reads:
        t = time.perf_counter()
        arr = zarr.open_array(store, path=well_path(w), mode="r")
        plane = arr[f, c, 0]
        fresh.append(time.perf_counter() - t)
        assert plane.shape == (SIZE, SIZE)

    opened = [zarr.open_array(store, path=well_path(i), mode="r") for i in range(len(wells))]
    kept: list[float] = []
    for w, f, c in reads:
        t = time.perf_counter()
        opened[w][f, c, 0]
        kept.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    for i in range(len(wells)):
        zarr.open_array(store, path=well_path(i), mode="r")[...]
    well_read_s = time.perf_counter() - t0

    shutil.rmtree(store_dir)
    return Result(
        codec.name,
        layout,
        raw / write_s / 1e6,
        raw / disk,
        statistics.median(fresh) * 1e3,
        statistics.median(kept) * 1e3,
        raw / well_read_s / 1e6,
        files,
    )


def table(results: list[Result]) -> str:
    lines = [
        "| codec | layout | write MB/s | ratio | 1 plane, fresh open (ms) "
        "| 1 plane, open array (ms) | whole-well read MB/s | files |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.codec} | {r.layout} | {r.write_mbs:.0f} | {r.ratio:.2f} | "
            f"{r.plane_fresh_ms:.1f} | {r.plane_open_ms:.1f} | {r.well_read_mbs:.0f} | {r.files} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wells", type=int, default=6, help="wells per configuration")
    parser.add_argument("--reads", type=int, default=30, help="random single-plane reads")
    parser.add_argument("--quick", action="store_true", help="a few configurations only")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory")
    args = parser.parse_args()

    started = time.perf_counter()
    wells = [
        synthetic_well(N_FIELDS, N_CHANNELS, N_Z, (SIZE, SIZE), seed=derive_seed(2024, i))
        for i in range(args.wells)
    ]
    rng = np.random.default_rng(0)
    reads = [
        (int(rng.integers(args.wells)), int(rng.integers(N_FIELDS)), int(rng.integers(N_CHANNELS)))
        for _ in range(args.reads)
    ]
    codecs = candidates()
    if args.quick:
        codecs = [c for c in codecs if c.name in {"blosc-zstd3-bit", "v2-zlib3", "none"}]

    root = Path(tempfile.mkdtemp(prefix="wellzarr-bench-", dir=args.dir))
    caught: list[warnings.WarningMessage] = []
    results: list[Result] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run_one(root, codecs[0], "plane", wells, reads)  # warm-up: imports, thread pools
            for codec in codecs:
                for layout in LAYOUTS:
                    if layout == "shard" and codec.zarr_format == 2:
                        continue  # zarr v2 has no sharding
                    results.append(run_one(root, codec, layout, wells, reads))
            main_results = list(results)

            sweep: list[tuple[int, Result]] = []
            sweep_codecs = [c for c in codecs if c.name in {"blosc-zstd3-bit", "v2-zlib3"}]
            for concurrency in (1, 2, 10):
                with zarr.config.set({"async.concurrency": concurrency}):
                    for codec in sweep_codecs:
                        for layout in ("well", "shard") if codec.zarr_format == 3 else ("well",):
                            sweep.append((concurrency, run_one(root, codec, layout, wells, reads)))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    raw_mb = sum(w.nbytes for w in wells) / 1e6
    print(
        f"## Codec x layout ({args.wells} wells of {N_FIELDS}x{N_CHANNELS}x{N_Z}x{SIZE}x{SIZE} "
        f"uint16 = {raw_mb:.0f} MB raw; zarr {zarr.__version__}, numcodecs "
        f"{numcodecs.__version__}, async.concurrency {zarr.config.get('async.concurrency')}, "
        f"{os.cpu_count()} CPUs)\n"
    )
    print(table(main_results))
    print("\n## async.concurrency sweep\n")
    print(
        "| concurrency | codec | layout | write MB/s | 1 plane, fresh open (ms) | well read MB/s |"
    )
    print("|---:|---|---|---:|---:|---:|")
    for concurrency, r in sweep:
        print(
            f"| {concurrency} | {r.codec} | {r.layout} | {r.write_mbs:.0f} | "
            f"{r.plane_fresh_ms:.1f} | {r.well_read_mbs:.0f} |"
        )
    unique = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    print("\n## Warnings emitted\n")
    print("\n".join(f"- {u}" for u in unique) if unique else "- none")
    print(f"\nTotal runtime {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
