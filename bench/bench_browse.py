"""Browsing plates in a napari Qt window: first screen, a field step, a zoom into one well.

    xvfb-run -a .venv/bin/python bench/bench_browse.py                 # 384 wells x 4 x 3 x 512^2
    xvfb-run -a .venv/bin/python bench/bench_browse.py --plates 96x4x3x2048 --repeat 2

Each plate (``WELLSxFIELDSxCHANNELSxSIDE``, uint16, the same synthetic well everywhere) is
written once under ``--out`` (default ``bench/.cache``) in three layouts:

* ``default``: ``StorageConfig(plate=WELLS)``, this project's default (stacked fields,
  sharded, the automatic whole-plate pyramid);
* ``no-overview``: the same without the plate overview (the default before it: the
  whole plate is drawn from every well's stored overview level, one read per well);
* ``levels=1``: ``pyramid_levels=1`` and no plate overview, the default before issue 13
  (no stored level: every overview is averaged from full-resolution planes);
* ``ome-zarr-py``: the standard layout (one image per field, five 2x levels) written by
  ome-zarr-py's ``write_multiscale`` (the levels computed once, by nearest neighbour, and
  reused for every well: its ``write_image`` resizes with skimage, ~20 MB/s).

Then every (reader, layout) pair runs in a fresh process with a real Qt window, napari's
default synchronous slicing (napari-ome-zarr ``OME_VERSION`` in its own venv, as in
``bench_plates.py``).  Per repeat, in a new viewer (warm OS cache):

* ``first screen``: ``viewer.open`` until the canvas is drawn (``viewer.screenshot``);
* ``field step``: move the first slider that has several positions to a field not shown
  yet, until drawn; the median of three steps (napari centres sliders on open);
* ``zoom``: centre the well in the middle of the plate, zoom to 2 screen pixels per
  full-resolution pixel, until drawn (napari picks level 0).

Figures are medians over ``--repeat``; ratios are against napari-wellzarr on the
default layout, in the same run.  The machine is shared: quote the ratios.
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

HERE = Path(__file__).resolve().parent
PLUGIN = "napari-wellzarr"
OME = "napari-ome-zarr"
LAYOUTS = ("default", "no-overview", "levels=1", "ome-zarr-py")
CASES = [(PLUGIN, "default"), (PLUGIN, "no-overview"), (PLUGIN, "levels=1")]
CASES += [(PLUGIN, "ome-zarr-py")]
CASES += [(OME, "default"), (OME, "ome-zarr-py")]
TARGETS = {"first screen": 1.0, "field step": 0.15, "zoom": 0.15}
CHILD_TIMEOUT_S = 900
ROWS_COLUMNS = {24: (4, 6), 96: (8, 12), 384: (16, 24), 1536: (32, 48)}


def parse_plate(text: str) -> tuple[int, int, int, int]:
    wells, fields, channels, side = (int(v) for v in text.split("x"))
    return wells, fields, channels, side


# -- writing the plates (project venv) ------------------------------------------------------


def build(plate: str, layout: str, out: Path) -> tuple[Path, float]:
    """Write ``plate`` in ``layout`` under ``out`` unless a previous run did; (path, seconds)."""
    path = out / f"browse-{plate}-{layout.replace('=', '')}.zarr"
    if (path / "zarr.json").is_file() or (path / ".zattrs").is_file():
        return path, float("nan")
    wells, fields, channels, side = parse_plate(plate)
    from napari_wellzarr.testing.synthetic import synthetic_well

    data = synthetic_well(fields, channels, 1, (side, side), seed=7)
    names = ["DAPI", "GFP", "Cy5", "RFP"][:channels]
    print(f"writing {path.name} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    if layout == "ome-zarr-py":
        _write_ome_zarr_py(path, wells, data)
    else:
        from napari_wellzarr.core import Channel, PlateStore, StorageConfig

        levels = {"pyramid_levels": 1} if layout == "levels=1" else {}
        config = StorageConfig(plate=wells, **levels)
        # A display window, as instruments give: napari computes no contrast limits.
        chans = [Channel(n, "FFFFFF", (0, 65535, 0, 4000)) for n in names]
        with PlateStore.create(path, config, name=f"browse-{plate}") as store:
            for well in config.plate.all_wells():
                store.write_well(well, data, channels=chans, pixel_size=0.65)
        if layout != "default":
            from napari_wellzarr.storage.overview import forget_overview

            forget_overview(path, config.zarr_format)
    return path, time.perf_counter() - t0


def _write_ome_zarr_py(path: Path, wells: int, data: Any) -> None:
    import zarr
    from ome_zarr.writer import write_multiscale, write_plate_metadata, write_well_metadata

    rows, columns = ROWS_COLUMNS[wells]
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    root = zarr.open_group(str(path), mode="w")
    pyramids = []
    for f in range(data.shape[0]):
        level = data[f]  # c, z, y, x
        levels = [level]
        for _ in range(4):
            levels.append(levels[-1][..., ::2, ::2].copy())
        pyramids.append(levels)
    names = []
    for r in range(rows):
        for c in range(columns):
            row, column = letters[r], f"{c + 1:02d}"
            names.append(f"{row}/{column}")
            group = root.require_group(row).require_group(column)
            write_well_metadata(group, [str(f) for f in range(data.shape[0])])
            for f, levels in enumerate(pyramids):
                write_multiscale(levels, group.require_group(str(f)), axes="czyx")
    write_plate_metadata(
        root, list(letters[:rows]), [f"{c + 1:02d}" for c in range(columns)], names
    )


# -- measuring, in a child process (either venv) ---------------------------------------------


def _drawn(viewer: Any) -> None:
    viewer.screenshot(canvas_only=True, flash=False)


def _camera(viewer: Any) -> Any:
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Open ``spec["path"]`` with ``spec["reader"]`` ``spec["repeat"]`` times; the timings."""
    warnings.simplefilter("ignore")  # third-party deprecation noise is not what we measure
    settings = tempfile.TemporaryDirectory()
    os.environ["NAPARI_CONFIG"] = os.path.join(settings.name, "settings.yaml")
    import napari
    from qtpy.QtWidgets import QApplication

    if spec["reader"] == PLUGIN:
        import zarr  # noqa: F401  (napari-ome-zarr imports it with napari; so do we here)

        import napari_wellzarr.plugin.view  # noqa: F401
    else:
        import napari_ome_zarr  # noqa: F401

    rows, columns = spec["rows"], spec["columns"]
    result: dict[str, Any] = {"first screen": [], "field step": [], "zoom": []}
    for _ in range(spec["repeat"]):
        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1200, 900)
        QApplication.processEvents()
        _drawn(viewer)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # napari-ome-zarr prints
            viewer.open(spec["path"], plugin=spec["reader"])
        QApplication.processEvents()
        _drawn(viewer)
        result["first screen"].append(time.perf_counter() - t0)
        images = [layer for layer in viewer.layers if layer._type_string == "image"]
        result["layers"] = len(viewer.layers)
        result["level"] = [images[0].data_level, len(images[0].data) if images[0].multiscale else 1]
        sliders = [a for a in viewer.dims.not_displayed if viewer.dims.nsteps[a] > 1]
        steps = []
        if sliders:
            axis = sliders[0]
            n = viewer.dims.nsteps[axis]
            first = viewer.dims.current_step[axis]
            for k in range(1, min(n, 4)):
                t0 = time.perf_counter()
                viewer.dims.set_current_step(axis, (first + k) % n)
                _drawn(viewer)
                steps.append(time.perf_counter() - t0)
            result["slider"] = f"{viewer.dims.axis_labels[axis]} ({n})"
        else:
            result["slider"] = "none"
        result["field step"].append(statistics.median(steps) if steps else None)
        layer = images[0]
        world = layer.extent.world
        y0, x0 = world[0][-2:]
        y1, x1 = world[1][-2:]
        camera = _camera(viewer)
        t0 = time.perf_counter()
        camera.center = (
            y0 + (rows // 2 + 0.5) * (y1 - y0) / rows,
            x0 + (columns // 2 + 0.5) * (x1 - x0) / columns,
        )
        camera.zoom = 2 / min(layer.scale[-2:])
        _drawn(viewer)
        result["zoom"].append(time.perf_counter() - t0)
        result["zoom level"] = layer.data_level if layer.multiscale else 0
        viewer.close()
    return result


def child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    out = measure(spec)
    Path(spec["result"]).write_text(json.dumps(out))


# -- the run (project venv) ------------------------------------------------------------------


def run_case(python: str, spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    spec_path = folder / "spec.json"
    spec["result"] = str(folder / "result.json")
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run(
        [python, str(Path(__file__).resolve()), "--child", str(spec_path)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    result: dict[str, Any] = json.loads(Path(spec["result"]).read_text())
    return result


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def table(plate: str, rows: list[tuple[str, str, dict[str, Any]]]) -> str:
    base = next((r for reader, layout, r in rows if (reader, layout) == (PLUGIN, "default")), {})
    lines = [
        f"### {plate} (wells x fields x channels x side)\n",
        "| reader | plate layout | first screen s | field step s | zoom into a well s "
        "| levels (shown/all) | slider |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for reader, layout, r in rows:
        if "error" in r:
            lines.append(f"| {reader} | {layout} | failed: {r['error'][:80]} | | | | |")
            continue
        cells = []
        for what in ("first screen", "field step", "zoom"):
            value = _median(r[what])
            ours = _median(base.get(what, [])) if base and "error" not in base else None
            if value is None:
                cells.append("n/a")
            elif ours and (reader, layout) != (PLUGIN, "default"):
                cells.append(f"{value:.3f} ({value / ours:.1f}x)")
            else:
                cells.append(f"{value:.3f}")
        level = r.get("level", ["?", "?"])
        lines.append(
            f"| {reader} | {layout} | {' | '.join(cells)} | {level[0]}/{level[1]} "
            f"| {r.get('slider', '')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plates", nargs="+", default=["384x4x3x512"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / ".cache")
    parser.add_argument("--readers", nargs="+", default=[PLUGIN, OME])
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    sys.path.insert(0, str(HERE))
    from _napari_open import OME_VERSION, ome_zarr_python

    notes: list[str] = []
    pythons = {PLUGIN: sys.executable}
    if OME in args.readers:
        ome = ome_zarr_python(notes)
        if ome is not None:
            pythons[OME] = ome
    args.out.mkdir(parents=True, exist_ok=True)
    report = [
        f"napari-ome-zarr {OME_VERSION}; repeat {args.repeat}; "
        f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    ]
    for plate in args.plates:
        wells = parse_plate(plate)[0]
        rows_columns = ROWS_COLUMNS[wells]
        paths, writes = {}, []
        for layout in args.layouts:
            paths[layout], seconds = build(plate, layout, args.out)
            writes.append(f"{layout} {seconds:.1f} s" if seconds == seconds else f"{layout} cached")
        report.append(f"written: {', '.join(writes)}")
        rows = []
        for reader, layout in CASES:
            if reader not in pythons or layout not in paths:
                continue
            print(f"{plate}: {reader} on {layout} ...", file=sys.stderr, flush=True)
            spec = {
                "reader": reader,
                "path": str(paths[layout]),
                "repeat": args.repeat,
                "rows": rows_columns[0],
                "columns": rows_columns[1],
            }
            with tempfile.TemporaryDirectory() as folder:
                rows.append((reader, layout, run_case(pythons[reader], spec, Path(folder))))
        report.append(table(plate, rows))
        report.append(json.dumps({f"{r} / {la}": v for r, la, v in rows}))
    report += notes
    print("\n\n".join(report))


if __name__ == "__main__":
    main()
