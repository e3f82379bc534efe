"""How long opening a plate in napari takes: the reader alone, and viewer.open with its layers.

    python bench/bench_open.py [--wells 96 1536] [--layout standard] [--out DIR] [--repeat 5]
    xvfb-run -a python bench/bench_open.py          # adds the Qt viewer rows

``bench_plates.py`` times the readers alone for issue 5's targets (its "Opening in napari"
section); this script adds what napari does with the layer data, in the same plates
(``_napari_open.py``; built once, kept under ``--out``, default ``bench/.cache``):

* ``96``: a full 96-well plate, 2 fields x 3 channels x 512 x 512 uint16 nuclei-like
  pixels per well;
* ``1536``: a full 1536-well plate, 1 field x 1 channel x 256 x 256 per well;

in the ``standard`` layout (one image group per field) or this project's ``default``
stacked layout (``--layout``).  napari-ome-zarr reads both: the stacked fields as a slider,
of the standard layout only each well's first field.

Rows (median of ``--repeat``, warm OS cache, each open in a new viewer):

* ``reader``: ``get_reader(path)(path)``: plate + one well's metadata to layer data;
* ``first screen``: then ``np.asarray`` of the planes napari draws first (``_napari_open``);
* ``open, async slicing``: ``viewer.open`` returns with the layers added; napari reads
  the pixels on its slicing thread afterwards (napari's ``experimental.async_``), so
  this is the metadata-only cost of opening in the viewer;
* ``open, sync slicing``: napari's default: ``viewer.open`` also reads the first view
  (for a multiscale plate: every well at the coarsest level) before it returns;
* ``Qt``: the same in a Qt window (needs a display, e.g. ``xvfb-run``).

napari-ome-zarr runs in its own venv (``.venv-napari-ome-zarr``, built on first use, as
in ``bench_plates.py``): this script runs itself again there for its rows.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import _napari_open as nap

Row = tuple[int, str, str, float, Any]


def time_open(make_viewer: Any, path: Path, plugin: str, repeat: int) -> tuple[float, int]:
    samples, n = [], 0
    for _ in range(repeat):
        viewer = make_viewer()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # napari-ome-zarr prints
            n = len(viewer.open(str(path), plugin=plugin))
        samples.append(time.perf_counter() - t0)
        slicer = getattr(viewer, "_layer_slicer", None)
        if slicer is not None:
            slicer.wait_until_idle(600)  # async slicing finishes off the clock
        viewer.layers.clear()
        if hasattr(viewer, "close"):
            viewer.close()
    return 1000 * statistics.median(samples), n


def viewer_rows(plugin: str, plates: list[nap.Plate], out: Path, repeat: int) -> list[Row]:
    """Every row for ``plugin``, in this interpreter (which must be able to import it)."""
    warnings.simplefilter("ignore")  # third-party deprecation noise is not what we measure
    # napari saves changed settings: switching async slicing here must not change the
    # user's own napari, so this run gets a settings file of its own.
    settings_dir = tempfile.TemporaryDirectory()
    os.environ["NAPARI_CONFIG"] = os.path.join(settings_dir.name, "settings.yaml")

    import napari
    from napari.components import ViewerModel
    from napari.plugins import _initialize_plugins
    from napari.settings import get_settings

    _initialize_plugins()  # napari.Viewer does this; a bare ViewerModel does not
    settings = get_settings().experimental
    rows: list[Row] = []
    for plate in plates:
        path = plate.path(out)
        r = nap.measure(plate.spec(out, plugin, repeat))
        rows.append((plate.wells, plugin, "reader", r["open_ms"], r["layers"]))
        rows.append((plate.wells, plugin, "first screen", r["screen_ms"], r["screen_px"]))
        settings.async_ = True
        ms, n = time_open(ViewerModel, path, plugin, repeat)
        rows.append((plate.wells, plugin, "open, async slicing", ms, n))
        settings.async_ = False
        ms, n = time_open(ViewerModel, path, plugin, repeat)
        rows.append((plate.wells, plugin, "open, sync slicing", ms, n))
        if os.environ.get("DISPLAY"):
            ms, n = time_open(lambda: napari.Viewer(show=True), path, plugin, repeat)
            rows.append((plate.wells, plugin, "Qt open, sync slicing", ms, n))
    return rows


def rows_elsewhere(python: str, args: argparse.Namespace) -> list[Row]:
    """This script's rows for napari-ome-zarr, run again in that plugin's venv."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp, "rows.json")
        command = [python, __file__, "--plugin", nap.OME, "--json", str(result)]
        command += ["--layout", args.layout, "--out", str(args.out), "--repeat", str(args.repeat)]
        subprocess.run([*command, "--wells", *map(str, args.wells)], check=True)
        return [tuple(row) for row in json.loads(result.read_text())]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wells", type=int, nargs="+", default=[96, 1536], choices=nap.WELLS)
    parser.add_argument("--layout", default="standard", choices=nap.LAYOUTS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / ".cache")
    parser.add_argument("--repeat", type=int, default=5)
    # Internal: the run in napari-ome-zarr's venv, which hands its rows back as JSON.
    parser.add_argument("--plugin", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    plates = [nap.Plate(wells, args.layout) for wells in args.wells]
    if args.plugin:
        args.json.write_text(json.dumps(viewer_rows(args.plugin, plates, args.out, args.repeat)))
        return
    for plate in plates:
        nap.build_plate(plate, args.out)
    rows = viewer_rows(nap.PLUGIN, plates, args.out, args.repeat)
    notes: list[str] = []
    python = nap.ome_zarr_python(notes)
    if python:
        try:
            rows += rows_elsewhere(python, args)
        except subprocess.CalledProcessError as err:
            notes.append(f"napari-ome-zarr rows failed ({err})")
    print(f"\n{'wells':>5}  {'plugin':<16} {'what':<22} {'median':>10}  layers / px")
    for wells, plugin, what, ms, n in rows:
        print(f"{wells:>5}  {plugin:<16} {what:<22} {ms:8.1f} ms  {n}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


if __name__ == "__main__":
    main()
