"""What the decode bound costs on zarr-python's road: warm plane reads with and without it.

    .venv/bin/python bench/bench_bounded_decode.py [--reads 300] [--size 1024]

For each codec, a 4-well OME-NGFF 0.4 plate (zarr v2, one chunk per plane, 2 fields x 2
channels of ``size`` x ``size`` uint16 noise-on-nuclei) is read plane by plane, warm (page
cache and open arrays), by ``PlateStore.read_plane`` with the bound (as shipped), by the same
call with the bound switched off (``expect_chunks`` a no-op), and by zarr-python alone on the
same array (the peer).  Times are medians of interleaved rounds; the table prints ratios.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_wellzarr.core import PlateStore, StorageConfig
from napari_wellzarr.storage import reading

CODECS = ["blosc-zstd", "zstd", "lz4", "zlib", "gzip"]
WELLS = ["A01", "A02", "B01", "B02"]


def _plate(root: Path, compressor: str, size: int) -> None:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:size, :size]
    nuclei = 2000 * (np.sin(yy / 9.0) * np.cos(xx / 11.0) > 0.6)
    config = StorageConfig(ngff_version="0.4", compressor=compressor, chunks="plane", plate=96)
    with PlateStore.create(root, config) as store:
        for well in WELLS:
            noise = rng.normal(300, 40, (2, 2, 1, size, size))
            store.write_well(well, np.clip(noise + nuclei, 0, 4095).astype("u2"))


def _time(call: Any, reads: list[tuple[str, int, int]]) -> float:
    start = time.perf_counter()
    for well, f, c in reads:
        call(well, f, c)
    return (time.perf_counter() - start) / len(reads) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import zarr

    rng = np.random.default_rng(2)
    reads = [
        (WELLS[rng.integers(4)], int(rng.integers(2)), int(rng.integers(2)))
        for _ in range(args.reads)
    ]
    shipped = reading.expect_chunks
    base = Path(tempfile.mkdtemp(prefix="wellzarr-bound-"))
    print(f"{args.reads} warm plane reads of {args.size}x{args.size} uint16, ms per plane")
    print("| codec | bounded (ms) | unbounded (ms) | bound cost | zarr-python alone (ms) |")
    print("|---|---|---|---|---|")
    try:
        for codec in CODECS:
            root = base / f"{codec}.zarr"
            _plate(root, codec, args.size)
            bounded = PlateStore.open(root)
            reading.expect_chunks = lambda *a: None  # type: ignore[assignment]
            unbounded = PlateStore.open(root)
            arrays = {w: zarr.open_array(str(root / w[0] / w[1:] / "0" / "0")) for w in WELLS}
            reading.expect_chunks = shipped
            calls: dict[str, Any] = {
                "bounded": bounded.read_plane,
                "unbounded": unbounded.read_plane,
                "zarr": lambda w, f, c, arrays=arrays: arrays[w][f, c, 0],
            }
            for call in calls.values():  # warm: every array open, every file cached
                _time(call, reads[:20])
            times: dict[str, list[float]] = {k: [] for k in calls}
            for _ in range(args.rounds):
                for name, call in calls.items():
                    times[name].append(_time(call, reads))
            med = {k: statistics.median(v) for k, v in times.items()}
            print(
                f"| {codec} | {med['bounded']:.2f} | {med['unbounded']:.2f} | "
                f"{med['bounded'] / med['unbounded']:.2f}x | {med['zarr']:.2f} |"
            )
    finally:
        reading.expect_chunks = shipped
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
