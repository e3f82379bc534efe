"""Pick the default codec, level and chunk layout: a survey through the core itself.

Every candidate is a :class:`StorageConfig`; each writes the same wells with
``PlateStore.write_well`` (synthetic 512 x 512 uint16 12-bit nuclei-like planes,
``napari_wellzarr.testing.synthetic``, 4 fields x 3 channels x 1 z per well) and reads them back
with ``PlateStore``:

* blosc-lz4 (clevel 1/5/9, bit/byte shuffle), blosc-zstd (clevel 1/3/5, bit shuffle),
  zstd (1/3), gzip (6), none, all sharded (zarr v3);
* the default codec with one chunk per well and one chunk per plane;
* OME-NGFF 0.4 (zarr v2): zlib 3 in one chunk per well (what OpenHCS writes) and lz4.

For each: write throughput (MB/s of raw pixels, plate creation and listing included),
CPU milliseconds per well (all threads), compression ratio (raw bytes / bytes on disk),
one random plane (median of ``--reads``, page cache warm: decode and overhead, not the
disk), whole-well read MB/s and files on disk.  The candidates run in rotating order,
``--repeats`` times, and the median is reported, so that drift on a shared machine hits
all alike.

Usage::

    .venv/bin/python bench/choose_defaults.py [--wells 12] [--reads 50] [--repeats 3]

Prints a markdown table; about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

try:
    from napari_wellzarr.core import PlateStore, StorageConfig
    from napari_wellzarr.testing.synthetic import derive_seed, synthetic_well
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from napari_wellzarr.core import PlateStore, StorageConfig
    from napari_wellzarr.testing.synthetic import derive_seed, synthetic_well

SHAPE = (4, 3, 1, 512, 512)

CANDIDATES: dict[str, dict[str, Any]] = {
    "blosc-lz4 9 bit, sharded": {"compressor": "blosc-lz4", "level": 9},
    "blosc-lz4 5 bit, sharded": {"compressor": "blosc-lz4", "level": 5},
    "blosc-lz4 1 bit, sharded": {"compressor": "blosc-lz4", "level": 1},
    "blosc-lz4 9 byte, sharded": {"compressor": "blosc-lz4", "level": 9, "shuffle": "byte"},
    "blosc-zstd 1 bit, sharded": {"compressor": "blosc-zstd", "level": 1},
    "blosc-zstd 3 bit, sharded": {"compressor": "blosc-zstd", "level": 3},
    "blosc-zstd 5 bit, sharded": {"compressor": "blosc-zstd", "level": 5},
    "zstd 1, sharded": {"compressor": "zstd", "level": 1},
    "zstd 3, sharded": {"compressor": "zstd", "level": 3},
    "gzip 6, sharded": {"compressor": "gzip", "level": 6},
    "none, sharded": {"compressor": "none"},
    "blosc-lz4 9 bit, one chunk per well": {"compressor": "blosc-lz4", "chunks": "well"},
    "blosc-lz4 9 bit, one chunk per plane": {"compressor": "blosc-lz4", "chunks": "plane"},
    "0.4 zlib 3, one chunk per well (OpenHCS's layout)": {
        "compressor": "zlib",
        "level": 3,
        "chunks": "well",
        "ngff_version": "0.4",
    },
    "0.4 lz4, one chunk per plane": {"compressor": "lz4", "ngff_version": "0.4"},
}


def well_name(i: int) -> str:
    return f"{'ABCDEFGH'[i // 12]}{i % 12 + 1:02d}"


def disk(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file() and ".wellzarr" not in str(p)]
    return sum(p.stat().st_size for p in files), len(files)


def run(
    root: Path, options: dict[str, Any], wells: list[np.ndarray], reads: int
) -> dict[str, float]:
    shutil.rmtree(root, ignore_errors=True)
    os.sync()
    start, cpu = time.perf_counter(), time.process_time()
    with PlateStore.create(root, StorageConfig(plate=96, **options)) as plate:
        for i, data in enumerate(wells):
            plate.write_well(well_name(i), data)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    raw = sum(w.nbytes for w in wells)
    size, files = disk(root)
    store = PlateStore.open(root)
    picks = random.Random(1)
    keys = [
        (picks.randrange(len(wells)), picks.randrange(SHAPE[0]), picks.randrange(SHAPE[1]))
        for _ in range(reads)
    ]
    for i, f, c in keys:  # warm: the page cache and the store's metadata
        store.read_plane(well_name(i), f, c)
    plane = []
    for i, f, c in keys:
        t = time.perf_counter()
        got = store.read_plane(well_name(i), f, c)
        plane.append(time.perf_counter() - t)
        assert np.array_equal(got, wells[i][f, c, 0])
    t = time.perf_counter()
    for i, data in enumerate(wells):
        assert np.array_equal(store.read_well(well_name(i)), data)
    whole = time.perf_counter() - t
    return {
        "write": raw / seconds / 1e6,
        "cpu": cpu / len(wells) * 1e3,
        "ratio": raw / size,
        "plane": statistics.median(plane) * 1e3,
        "well": raw / whole / 1e6,
        "files": files,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wells", type=int, default=12)
    parser.add_argument("--reads", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    wells = [
        synthetic_well(*SHAPE[:3], SHAPE[3:], seed=derive_seed(7, i)) for i in range(args.wells)
    ]
    names = list(CANDIDATES)
    results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for repeat in range(args.repeats):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in order:
                results[name].append(run(Path(tmp) / "p.zarr", CANDIDATES[name], wells, args.reads))
    print(
        f"{args.wells} wells of {' x '.join(map(str, SHAPE))} uint16, median of "
        f"{args.repeats} rounds; one plane = median of {args.reads} warm reads\n"
    )
    columns = ["write MB/s", "CPU ms/well", "ratio", "one plane ms", "whole well MB/s", "files"]
    print("| configuration | " + " | ".join(columns) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    default = StorageConfig()
    for name in names:
        med = {k: statistics.median(r[k] for r in results[name]) for k in results[name][0]}
        config = StorageConfig(**CANDIDATES[name])
        is_default = config == default
        label = f"**{name} (default)**" if is_default else name
        print(
            f"| {label} | {med['write']:.0f} | {med['cpu']:.1f} | {med['ratio']:.2f} | "
            f"{med['plane']:.2f} | {med['well']:.0f} | {med['files']:.0f} |"
        )


if __name__ == "__main__":
    main()
