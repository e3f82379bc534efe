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

Plates of 1536 wells or of 2048 x 2048 planes are written with a fast path: the first
well by the store, every other well a copy of it whose shard files are hard links (its
documents copied, its name in them replaced), through the store's own staging, so the
plate (well list, layout records, overview at ``close()``) is what the store writes.

Then every case runs in a fresh process with a real Qt window (napari-ome-zarr
``OME_VERSION`` in its own venv, as in ``bench_plates.py``).  Per repeat, in a new viewer
(warm OS cache):

* ``first screen``: ``viewer.open`` until the canvas is drawn (``viewer.screenshot``);
  ``cold`` is the first open in the process (napari's first-use imports: pint, pandas,
  scipy.ndimage...), ``warm`` the median of the others; ``reader`` is the time spent in
  napari-wellzarr's ``read_plate`` (ours), the rest is napari, Qt and the GL;
* ``field step``: move the first slider that has several positions to a field not shown
  yet, until drawn; the median of three steps (napari centres sliders on open);
* ``zoom``: centre the well in the middle of the plate, zoom to 2 screen pixels per
  full-resolution pixel, until drawn (napari picks level 0);
* ``redraw floor``: ``viewer.screenshot`` with nothing changed (a paint and a read-back
  of the canvas under the software GL), part of every figure above.

Cases: each reader with napari's default synchronous slicing; napari-wellzarr with
napari's asynchronous slicing (``settings.experimental.async_``, ``NAPARI_ASYNC=1``), with
and without its own first-screen thread (``until drawn`` then also waits for napari's
slicing thread); and ``numpy``: the same layers (whole-plate level only) from arrays in
memory, napari's own cost for them (its floor).  ``--compare SRC`` adds napari-wellzarr
from another source tree (e.g. a worktree at ``main``), run alternately with this one
for ``--rounds``.

Figures are medians; ratios are against napari-wellzarr on the default layout, in the
same run.  The machine is shared: quote the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
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
NUMPY = "numpy"
#: (reader, layout, napari slicing, napari-wellzarr's first-screen thread)
CASES = [(PLUGIN, "default", "sync", True), (PLUGIN, "default", "async", True)]
CASES += [(PLUGIN, "default", "async", False), (NUMPY, "default", "sync", True)]
CASES += [(PLUGIN, "no-overview", "sync", True), (PLUGIN, "levels=1", "sync", True)]
CASES += [(PLUGIN, "ome-zarr-py", "sync", True)]
CASES += [(OME, "default", "sync", True), (OME, "ome-zarr-py", "sync", True)]
TARGETS = {"first screen": 1.0, "field step": 0.15, "zoom": 0.15}
CHILD_TIMEOUT_S = 900
#: Plates from this many wells, or of planes this wide, are written with the fast path.
FAST_WELLS, FAST_SIDE = 1536, 2048
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
    fast = wells >= FAST_WELLS or side >= FAST_SIDE
    print(f"writing {path.name}{' (fast path)' if fast else ''} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    if layout == "ome-zarr-py":
        _write_ome_zarr_py(path, wells, data, fast)
    else:
        from napari_wellzarr.core import Channel, PlateStore, StorageConfig

        levels = {"pyramid_levels": 1} if layout == "levels=1" else {}
        config = StorageConfig(plate=wells, **levels)
        # A display window, as instruments give: napari computes no contrast limits.
        chans = [Channel(n, "FFFFFF", (0, 65535, 0, 4000)) for n in names]
        with PlateStore.create(path, config, name=f"browse-{plate}") as store:
            first = None
            for well in config.plate.all_wells():
                if first is None or not fast:
                    store.write_well(well, data, channels=chans, pixel_size=0.65)
                    first = first or well
                else:
                    _copy_well(store, first, well)
        if layout != "default":
            from napari_wellzarr.storage.overview import forget_overview

            forget_overview(path, config.zarr_format)
    return path, time.perf_counter() - t0


def _copy_well(store: Any, source: Any, well: Any) -> None:
    """Write ``well`` as a copy of the written ``source`` well (shards hard-linked).

    Through the store's staging (``_write_payload``, as ``write_well``): the well is
    placed, listed and recorded as any written well.  The fast path of this benchmark.
    """
    template = store.root / store.well_path(source)
    name, new = store._target(source).name, store._target(well).name

    def rename(value: Any) -> Any:
        if isinstance(value, str):
            return new + value[len(name) :] if value.startswith(name) else value
        if isinstance(value, list):
            return [rename(v) for v in value]
        if isinstance(value, dict):
            return {k: rename(v) for k, v in value.items()}
        return value

    def link(src: str, dst: str) -> None:
        if os.path.basename(src) in ("zarr.json", ".zattrs"):
            Path(dst).write_text(json.dumps(rename(json.loads(Path(src).read_text()))))
        else:
            os.link(src, dst)

    def build_copy(stage: Path) -> None:
        shutil.copytree(template, stage, copy_function=link, dirs_exist_ok=True)

    store._write_payload(store._target(well), build_copy, False)


def _write_ome_zarr_py(path: Path, wells: int, data: Any, fast: bool) -> None:
    import zarr
    from ome_zarr.writer import write_multiscale, write_plate_metadata, write_well_metadata

    from napari_wellzarr.storage.geometry import row_letters

    rows, columns = ROWS_COLUMNS[wells]
    letters = [row_letters(r) for r in range(rows)]
    root = zarr.open_group(str(path), mode="w")
    pyramids = []
    for f in range(data.shape[0]):
        level = data[f]  # c, z, y, x
        levels = [level]
        for _ in range(4):
            levels.append(levels[-1][..., ::2, ::2].copy())
        pyramids.append(levels)
    names = []
    first: Path | None = None
    for r in range(rows):
        for c in range(columns):
            row, column = letters[r], f"{c + 1:02d}"
            names.append(f"{row}/{column}")
            if first is not None:  # the fast path: every well a hard-linked copy
                shutil.copytree(first, path / row / column, copy_function=os.link)
                continue
            group = root.require_group(row).require_group(column)
            write_well_metadata(group, [str(f) for f in range(data.shape[0])])
            for f, levels in enumerate(pyramids):
                write_multiscale(levels, group.require_group(str(f)), axes="czyx")
            if fast:
                first = path / row / column
    for r in range(rows):
        root.require_group(letters[r])  # the row groups of the copied wells
    write_plate_metadata(
        root, list(letters[:rows]), [f"{c + 1:02d}" for c in range(columns)], names
    )


# -- measuring, in a child process (either venv) ---------------------------------------------


def _drawn(viewer: Any, slicer: Any = None) -> None:
    """Until the canvas shows the current slices (``slicer``: napari's async slicing)."""
    if slicer is not None:
        from qtpy.QtWidgets import QApplication

        for _ in range(3):  # a slice's result can ask for another (a multiscale level)
            slicer.wait_until_idle(CHILD_TIMEOUT_S)
            QApplication.processEvents()
    viewer.screenshot(canvas_only=True, flash=False)


def _camera(viewer: Any) -> Any:
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera


def _in_memory(path: str) -> list[tuple[Any, dict[str, Any], str]]:
    """Our layers of ``path`` with each image's whole-plate level as a numpy array."""
    import numpy as np

    from napari_wellzarr.plugin.view import PlateView, open_view

    view = open_view(path)
    assert isinstance(view, PlateView)
    out = []
    for data, kwargs, kind in view.layers():
        if kind == "image":
            data = np.asarray(data[-1] if isinstance(data, list) else data)
            kwargs = {**kwargs, "multiscale": False}
        out.append((data, kwargs, kind))
    return out


def measure(spec: dict[str, Any], save: Any = None) -> dict[str, Any]:
    """Open ``spec["path"]`` with ``spec["reader"]`` ``spec["repeat"]`` times; the timings.

    ``save(result)`` is called after every phase (a case cut by its timeout keeps those).
    """
    warnings.simplefilter("ignore")  # third-party deprecation noise is not what we measure
    settings = tempfile.TemporaryDirectory()
    os.environ["NAPARI_CONFIG"] = os.path.join(settings.name, "settings.yaml")
    import napari
    from qtpy.QtWidgets import QApplication

    reader = spec["reader"]
    memory = None
    spent: list[float] = []
    if reader == OME:
        import napari_ome_zarr  # noqa: F401
    else:
        import zarr  # noqa: F401  (napari-ome-zarr imports it with napari; so do we here)

        import napari_wellzarr.plugin.view  # noqa: F401
        from napari_wellzarr.plugin import _reader, loading

        if reader == NUMPY:
            memory = _in_memory(spec["path"])
        if not spec.get("loader", True):
            loading.load_first_screen = lambda view: False
        read_plate = _reader.read_plate

        def timed(path: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return read_plate(path)
            finally:
                spent.append(time.perf_counter() - t0)

        _reader.read_plate = timed  # get_reader hands napari this module's read_plate
    if spec.get("slicing") == "async":
        from napari.settings import get_settings

        get_settings().experimental.async_ = True
    save = save or (lambda result: None)
    rows, columns = spec["rows"], spec["columns"]
    result: dict[str, Any] = {"first screen": [], "field step": [], "zoom": [], "floor": []}
    result["reader"] = spent
    for _ in range(spec["repeat"]):
        viewer = napari.Viewer(show=True)
        slicer = viewer._layer_slicer if spec.get("slicing") == "async" else None
        viewer.window._qt_window.resize(1200, 900)
        QApplication.processEvents()
        _drawn(viewer)
        t0 = time.perf_counter()
        if memory is not None:
            from napari.layers import Layer

            for data, kwargs, kind in memory:
                viewer.add_layer(Layer.create(data, kwargs, kind))
        else:
            with contextlib.redirect_stdout(io.StringIO()):  # napari-ome-zarr prints
                viewer.open(spec["path"], plugin=reader)
        QApplication.processEvents()
        _drawn(viewer, slicer)
        result["first screen"].append(time.perf_counter() - t0)
        floors = []
        for _ in range(3):
            t0 = time.perf_counter()
            _drawn(viewer, slicer)
            floors.append(time.perf_counter() - t0)
        result["floor"].append(statistics.median(floors))
        save(result)
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
                _drawn(viewer, slicer)
                steps.append(time.perf_counter() - t0)
            result["slider"] = f"{viewer.dims.axis_labels[axis]} ({n})"
        else:
            result["slider"] = "none"
        result["field step"].append(statistics.median(steps) if steps else None)
        save(result)
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
        _drawn(viewer, slicer)
        result["zoom"].append(time.perf_counter() - t0)
        result["zoom level"] = layer.data_level if layer.multiscale else 0
        save(result)
        viewer.close()
    return result


def child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    target = Path(spec["result"])
    measure(spec, lambda result: target.write_text(json.dumps(result)))


# -- the run (project venv) ------------------------------------------------------------------


def run_case(
    python: str, spec: dict[str, Any], folder: Path, env: dict[str, str], timeout: float
) -> dict[str, Any]:
    spec_path = folder / "spec.json"
    spec["result"] = str(folder / "result.json")
    spec_path.write_text(json.dumps(spec))
    command = [python, str(Path(__file__).resolve()), "--child", str(spec_path)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        done = None
    result: dict[str, Any] = {}
    if Path(spec["result"]).is_file():
        result = json.loads(Path(spec["result"]).read_text())
    if done is None:
        result["timeout"] = timeout
    elif done.returncode != 0:
        result["error"] = done.stderr.strip().splitlines()[-1] if done.stderr else "failed"
    return result


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One case's runs (processes): the first open of each is cold, the others warm."""
    out: dict[str, Any] = {"cold": [], "warm": [], "reader warm": []}
    for r in results:
        firsts, spent = r.get("first screen", []), r.get("reader", [])
        out["cold"] += firsts[:1]
        out["warm"] += firsts[1:]
        out["reader cold"] = out.get("reader cold", []) + spent[:1]
        out["reader warm"] += spent[1:]
        for what in ("field step", "zoom", "floor"):
            out.setdefault(what, []).extend(r.get(what, []))
        for what in ("level", "slider", "timeout", "error"):
            if what in r:
                out[what] = r[what]
    return out


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


COLUMNS = ("cold", "warm", "reader warm", "field step", "zoom", "floor")


def table(plate: str, rows: list[tuple[str, str, str, dict[str, Any]]]) -> str:
    base = rows[0][3] if rows and rows[0][:3] == (PLUGIN, "default", "sync") else {}
    lines = [
        f"### {plate} (wells x fields x channels x side)\n",
        "| reader | plate layout | slicing | first screen, cold s | first screen, warm s "
        "| of it in read_plate s | field step s | zoom into a well s | redraw floor s "
        "| levels (shown/all) | slider |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for reader, layout, slicing, r in rows:
        cells = []
        for what in COLUMNS:
            value = _median(r.get(what, []))
            ours = _median(base.get(what, [])) if what not in ("floor", "reader warm") else None
            if value is None:
                late = "timeout" in r and what not in ("reader warm", "floor")
                cells.append(f">= {r['timeout']:.0f} (timeout)" if late else "n/a")
            elif ours and r is not base:
                cells.append(f"{value:.3f} ({value / ours:.1f}x)")
            else:
                cells.append(f"{value:.3f}")
        if "error" in r:
            cells[-1] += f" failed: {r['error'][:80]}"
        level = r.get("level", ["?", "?"])
        lines.append(
            f"| {reader} | {layout} | {slicing} | {' | '.join(cells)} | {level[0]}/{level[1]} "
            f"| {r.get('slider', '')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plates", nargs="+", default=["384x4x3x512"])
    parser.add_argument("--repeat", type=int, default=3, help="opens per process")
    parser.add_argument("--rounds", type=int, default=1, help="processes per case, alternated")
    parser.add_argument("--out", type=Path, default=HERE / ".cache")
    parser.add_argument("--readers", nargs="+", default=[PLUGIN, OME, NUMPY])
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS))
    parser.add_argument("--slicing", nargs="+", default=["sync", "async"])
    parser.add_argument("--compare", type=Path, help="another napari-wellzarr src folder")
    parser.add_argument("--timeout", type=float, default=CHILD_TIMEOUT_S, help="s per process")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    sys.path.insert(0, str(HERE))
    from _napari_open import OME_VERSION, ome_zarr_python

    notes: list[str] = []
    pythons = {PLUGIN: sys.executable, NUMPY: sys.executable}
    if OME in args.readers:
        ome = ome_zarr_python(notes)
        if ome is not None:
            pythons[OME] = ome
    args.out.mkdir(parents=True, exist_ok=True)
    report = [
        f"napari-ome-zarr {OME_VERSION}; {args.rounds} process(es) x {args.repeat} opens per "
        f"case; load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    ]
    cases = [c for c in CASES if c[0] in args.readers and c[2] in args.slicing]
    if args.compare:
        report.append(f"napari-wellzarr@compare: the source tree {args.compare}")
        cases.insert(1, (f"{PLUGIN}@compare", "default", "sync", True))
        at = (
            cases.index((PLUGIN, "ome-zarr-py", "sync", True))
            if ((PLUGIN, "ome-zarr-py", "sync", True) in cases)
            else len(cases)
        )
        cases.insert(at + 1, (f"{PLUGIN}@compare", "ome-zarr-py", "sync", True))
    for plate in args.plates:
        wells = parse_plate(plate)[0]
        rows_columns = ROWS_COLUMNS[wells]
        paths, writes = {}, []
        for layout in args.layouts:
            paths[layout], seconds = build(plate, layout, args.out)
            writes.append(f"{layout} {seconds:.1f} s" if seconds == seconds else f"{layout} cached")
        report.append(f"written: {', '.join(writes)}")
        runs: dict[tuple[str, str, str, bool], list[dict[str, Any]]] = {}
        for _ in range(args.rounds):
            for case in cases:
                reader, layout, slicing, loader = case
                if layout not in paths:
                    continue
                env = dict(os.environ)
                if reader.endswith("@compare"):
                    env["PYTHONPATH"] = str(args.compare.resolve())
                print(f"{plate}: {case} ...", file=sys.stderr, flush=True)
                spec = {
                    "reader": reader.split("@")[0],
                    "path": str(paths[layout]),
                    "repeat": args.repeat,
                    "rows": rows_columns[0],
                    "columns": rows_columns[1],
                    "slicing": slicing,
                    "loader": loader,
                }
                python = pythons[spec["reader"]]
                with tempfile.TemporaryDirectory() as folder:
                    found = run_case(python, spec, Path(folder), env, args.timeout)
                runs.setdefault(case, []).append(found)
        rows = []
        for (reader, layout, slicing, loader), found in runs.items():
            how = slicing if loader or reader != PLUGIN else f"{slicing}, no first-screen thread"
            rows.append((reader, layout, how, merge(found)))
        report.append(table(plate, rows))
        report.append(json.dumps({f"{r} / {la} / {sl}": v for r, la, sl, v in rows}))
    report += notes
    print("\n\n".join(report))


if __name__ == "__main__":
    main()
