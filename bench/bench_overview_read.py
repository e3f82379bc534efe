"""Reader-level whole-plate reads, no window: each channel's whole-plate plane, field by field.

    python bench/bench_overview_read.py PLATE [PLATE ...]

For each plate (e.g. the ``default`` and ``no-overview`` plates ``bench_browse.py`` writes),
opens it as napari's reader does (``open_view``, metadata only) and times reading the
coarsest level of every channel layer at field 0, 1, 2, ... in turn (the first one is the
first screen's reads; the others, field steps).  Whether the plate overview served it is
printed with each plate.  Then, after 0.5 s (the read-ahead of neighbouring fields), the
median of 5 rounds of steps over every field ("step, warm": what napari's slicing of a field
step costs in the reader once the planes are in memory).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plates", nargs="+")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from napari_wellzarr.plugin.view import PlateView, open_view

    print(
        "| plate | overview | "
        + " | ".join(f"field {f} s" for f in range(4))
        + " | step, warm ms |"
    )
    print("|---|---|" + "---:|" * 5)
    for path in args.plates:
        view = open_view(path)
        assert isinstance(view, PlateView)
        images = [data for data, _, kind in view.layers() if kind == "image"]
        times = []
        for field in range(min(4, view.lead_shape[0])):
            t0 = time.perf_counter()
            for data in images:
                coarsest = data[-1] if isinstance(data, list) else data
                np.asarray(coarsest[(field,) + (0,) * (coarsest.ndim - 3)])
            times.append(time.perf_counter() - t0)
        time.sleep(0.5)
        steps = []
        for _ in range(5):
            for field in range(view.lead_shape[0]):
                t0 = time.perf_counter()
                for data in images:
                    coarsest = data[-1] if isinstance(data, list) else data
                    np.asarray(coarsest[(field,) + (0,) * (coarsest.ndim - 3)])
                steps.append(time.perf_counter() - t0)
        used = view.reader.overview is not None
        cells = " | ".join(f"{t:.3f}" for t in times)
        print(f"| {path} | {used} | {cells} | {statistics.median(steps) * 1000:.1f} |")


if __name__ == "__main__":
    main()
