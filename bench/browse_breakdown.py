"""Where a napari window's time goes on a plate: the plate map's share, per open and per frame.

    xvfb-run -a .venv/bin/python bench/browse_breakdown.py PLATE [--rounds 4]

In one process (a real Qt window 1200 x 900, napari's synchronous slicing), after one
warm-up open: ``--rounds`` opens of each variant of our layers, alternated (time in
``read_plate``, adding the layers, the first draw), then in one viewer the redraw floor
(``viewer.screenshot`` with nothing changed) and a field step with the plate map shown
with its names, shown without them, and hidden.  Medians; the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from typing import Any

VARIANTS = ("plate map shown", "names hidden", "plate map hidden", "no plate map")


def _drawn(viewer: Any) -> None:
    viewer.screenshot(canvas_only=True, flash=False)


def _variant(kwargs: dict[str, Any], variant: str) -> dict[str, Any] | None:
    if variant == "no plate map":
        return None
    if variant == "names hidden":
        return {**kwargs, "visible": True, "text": {**kwargs["text"], "visible": False}}
    return {**kwargs, "visible": variant == "plate map shown"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("plate")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    settings = tempfile.TemporaryDirectory()
    os.environ["NAPARI_CONFIG"] = os.path.join(settings.name, "settings.yaml")
    import napari
    from napari.layers import Layer
    from qtpy.QtWidgets import QApplication

    from napari_wellzarr.plugin._reader import read_plate

    opens: dict[str, list[tuple[float, float, float, float]]] = {}
    for n, variant in enumerate(["plate map shown", *VARIANTS * args.rounds]):
        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1200, 900)
        QApplication.processEvents()
        _drawn(viewer)
        t0 = time.perf_counter()
        layers = read_plate(args.plate)
        t1 = time.perf_counter()
        for data, kwargs, kind in layers:
            chosen = _variant(kwargs, variant) if kind == "points" else kwargs
            if chosen is not None:
                viewer.add_layer(Layer.create(data, chosen, kind))
        t2 = time.perf_counter()
        QApplication.processEvents()
        _drawn(viewer)
        t3 = time.perf_counter()
        if n:  # the first open pays napari's first-use imports
            opens.setdefault(variant, []).append((t1 - t0, t2 - t1, t3 - t2, t3 - t0))
        if n < len(VARIANTS) * args.rounds:
            viewer.close()
    print("| first screen (warm) | read_plate s | adding layers s | first draw s | total s |")
    print("|---|---:|---:|---:|---:|")
    for variant, rows in opens.items():
        cells = " | ".join(f"{statistics.median(r[k] for r in rows):.3f}" for k in range(4))
        print(f"| {variant} | {cells} |")
    plate_map = viewer.layers["plate map"] if "plate map" in viewer.layers else None
    if plate_map is None:
        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1200, 900)
        for data, kwargs, kind in read_plate(args.plate):
            viewer.add_layer(Layer.create(data, kwargs, kind))
        plate_map = viewer.layers["plate map"]
    frames: dict[str, list[tuple[float, float]]] = {}
    n_fields = viewer.dims.nsteps[0]
    for _ in range(args.rounds):
        for variant in VARIANTS[:3]:
            plate_map.visible = variant != "plate map hidden"
            plate_map.text.visible = variant == "plate map shown"
            _drawn(viewer)
            floor, steps = [], []
            for _ in range(3):
                t0 = time.perf_counter()
                _drawn(viewer)
                floor.append(time.perf_counter() - t0)
            for k in range(n_fields):
                t0 = time.perf_counter()
                viewer.dims.set_current_step(0, k)
                _drawn(viewer)
                steps.append(time.perf_counter() - t0)
            frames.setdefault(variant, []).append(
                (statistics.median(floor), statistics.median(steps))
            )
    print("\n| per frame | redraw floor s | field step s |\n|---|---:|---:|")
    for variant, rows in frames.items():
        floor = statistics.median(r[0] for r in rows)
        step = statistics.median(r[1] for r in rows)
        print(f"| {variant} | {floor:.3f} | {step:.3f} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    viewer.close()


if __name__ == "__main__":
    main()
