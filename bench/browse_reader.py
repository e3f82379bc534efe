"""The reader's share of a first screen, without a window: open a plate, read its first screen.

    python bench/browse_reader.py PLATE [PLATE ...] [--compare OLD/src] [--rounds 2]

Each measurement in a fresh process (this checkout's ``src``, and ``--compare``'s, alternated):
one warm-up ``open_view`` (imports, the OS cache), then ``open_view`` (metadata) and
``read_first_screen`` (the tiles napari draws first: every well, every channel, at the first
and middle field, z and t, at the whole-plate level), which ``read_plate`` runs on a thread in
a window.  Medians; ratios are the compared tree's time over this one's, in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = """
import sys, time
from napari_wellzarr.plugin.loading import first_screen_requests, read_first_screen
from napari_wellzarr.plugin.view import open_view
open_view(sys.argv[1])
t0 = time.perf_counter()
view = open_view(sys.argv[1])
t1 = time.perf_counter()
read_first_screen(view, first_screen_requests(view))
print(t1 - t0, time.perf_counter() - t1)
"""


def run(src: Path, plate: str) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, plate], env=env, capture_output=True, text=True, timeout=900
    )
    if out.returncode:
        raise RuntimeError(f"{src} on {plate}: {out.stderr[-400:]}")
    metadata, tiles = (float(v) for v in out.stdout.split())
    return metadata, tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("plates", nargs="+")
    parser.add_argument("--compare", type=Path, help="another napari-wellzarr src folder")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    trees = {"this": HERE.parent / "src"}
    if args.compare:
        trees["compare"] = args.compare.resolve()
    print(f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| plate | tree | open_view s | first screen tiles s | vs this |")
    print("|---|---|---:|---:|---:|")
    for plate in args.plates:
        found: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, src in trees.items():
                found[name].append(run(src, plate))
        ours = statistics.median(t for _, t in found["this"])
        for name, rows in found.items():
            meta = statistics.median(m for m, _ in rows)
            tiles = statistics.median(t for _, t in rows)
            print(
                f"| {Path(plate).name} | {name} | {meta:.3f} | {tiles:.3f} | {tiles / ours:.1f}x |"
            )
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
