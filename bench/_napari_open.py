"""Opening plates in napari: ``get_reader(path)(path)`` to layer data, one reader per process.

    python bench/_napari_open.py SPEC.json     # one reader on one plate (run by the benchmarks)

Used by ``bench_plates.py`` (its "Opening in napari" table and two targets) and by
``bench_open.py`` (the viewer-level rows).  The readers:

* **napari-wellzarr**: ``napari_wellzarr.plugin._reader.get_reader``, in the project venv;
* **napari-ome-zarr** (``OME_VERSION``): ``napari_ome_zarr.napari_get_reader``, in
  ``.venv-napari-ome-zarr``, built on first use.  Never in the project venv: there it
  would become a second napari reader for plates in the project's tests.

The measuring half of this file runs in both interpreters, so it imports only the
standard library and numpy at module level; building plates needs the project venv.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from _contenders import GEOMETRY
from _venvs import contender_python

if TYPE_CHECKING:
    from collections.abc import Callable

    LayerTuple = tuple[Any, dict[str, Any], str]
    GetReader = Callable[[str], Callable[[str], list[LayerTuple]] | None]

HERE = Path(__file__).resolve().parent
PLUGIN = "napari-wellzarr"
OME = "napari-ome-zarr"
# The newest release that installs on Python 3.11 (0.11 needs 3.12).  Its requirements
# (napari >= 0.6, zarr >= 3.1.5, requests, aiohttp) are met by the project venv's.
OME_VERSION = "0.10.0"
OME_VENV = HERE.parent / ".venv-napari-ome-zarr"
# Per well: fields, channels, plane edge (uint16, 1 z).  1536 wells: small planes, since
# that target is about the metadata of many wells (the plate builds in ~5 s).
WELLS = {96: (2, 3, 512), 1536: (1, 1, 256)}
LAYOUTS = {"default": "stacked", "standard": "per-field"}
CHILD_TIMEOUT_S = 300


# -- one reader on one plate (both interpreters) ---------------------------------------------


def import_reader(reader: str) -> GetReader:
    """The reader's ``get_reader`` hook, with everything its first call would import imported."""
    if reader == PLUGIN:
        # read_plate imports the plate view and the core on its first call, and the core
        # imports zarr when it opens the first well: what napari-ome-zarr pays at import.
        import zarr  # noqa: F401

        from napari_wellzarr.plugin import annotations, view  # noqa: F401
        from napari_wellzarr.plugin._reader import get_reader

        return get_reader
    from napari_ome_zarr import napari_get_reader

    return napari_get_reader


def open_layers(get_reader: GetReader, path: str) -> list[LayerTuple]:
    """``get_reader(path)(path)``: what napari does when a plate is dropped on it."""
    with contextlib.redirect_stdout(io.StringIO()):  # napari-ome-zarr prints the metadata
        read = get_reader(path)
        if read is None:
            raise RuntimeError(f"the reader declined {path}")
        return list(read(path))


def _levels(data: Any) -> list[Any]:
    return list(data) if isinstance(data, list | tuple) else [data]


def first_screen(layers: list[LayerTuple]) -> list[np.ndarray]:
    """The planes napari draws first, read into memory.

    One per image layer, or per channel where ``channel_axis`` splits a tuple into
    several layers; at the coarsest level (napari starts a multiscale layer there);
    index 0 on every axis but y and x (field, z, t).
    """
    planes = []
    for data, meta, kind in layers:
        if kind != "image":
            continue
        coarsest = _levels(data)[-1]
        axis = meta.get("channel_axis")
        for c in range(1 if axis is None else coarsest.shape[axis]):
            index = [0] * (coarsest.ndim - 2)
            if axis is not None:
                index[axis] = c
            planes.append(np.asarray(coarsest[tuple(index)]))
    return planes


def napari_layers(layers: list[LayerTuple]) -> str:
    """The layers napari makes of the tuples (``channel_axis`` splits one per channel)."""
    counts: dict[str, int] = {}
    for data, meta, kind in layers:
        axis = meta.get("channel_axis")
        counts[kind] = counts.get(kind, 0) + (1 if axis is None else _levels(data)[0].shape[axis])
    return " + ".join(f"{n} {kind}" for kind, n in counts.items())


def coverage(
    layers: list[LayerTuple], planes: list[np.ndarray], spec: dict[str, Any]
) -> str | None:
    """Why the layer data does not show the whole plate, or ``None`` when it does.

    Every image layer must span all rows and columns of planes at full resolution, and
    every well's cell of every first-screen plane must hold pixels (the synthetic wells
    have a noisy, non-zero background), so no reader wins by returning less.
    """
    rows, columns = spec["rows"], spec["columns"]
    height, width = rows * spec["plane"][0], columns * spec["plane"][1]
    if not planes:
        return "no image layer"
    for data, _, kind in layers:
        shape = _levels(data)[0].shape
        if kind == "image" and (shape[-2] < height or shape[-1] < width):
            return f"an image layer is {shape[-2]}x{shape[-1]} px, the plate {height}x{width}"
    for plane in planes:
        bands = np.array_split(plane, rows, axis=0)
        blank = sum(not cell.any() for band in bands for cell in np.array_split(band, columns, 1))
        if blank:
            return f"{blank} of {rows * columns} wells blank in the first screen"
    return None


def _more(done: int, started: float, spec: dict[str, Any]) -> bool:
    """Once more: up to ``repeats`` times, at least ``min_repeats``, then within ``budget_s``."""
    if done >= spec["repeats"]:
        return False
    return done < spec["min_repeats"] or time.perf_counter() - started < spec["budget_s"]


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Median of the repeated opens, then of the first screens of (some of) their layers.

    Opens run back to back and the first screens after them: reading a screenful of pixels
    between two opens doubles this project's next open (1.2 -> 2.3 ms at 96 wells; the
    caches the pixels went through), which is not the cost of opening a plate.
    """
    get_reader = import_reader(spec["reader"])
    opened: list[list[LayerTuple]] = []
    opens: list[float] = []
    started = time.perf_counter()
    while _more(len(opens), started, spec):
        t0 = time.perf_counter()
        opened.append(open_layers(get_reader, spec["plate"]))
        opens.append(time.perf_counter() - t0)
    screens: list[float] = []
    started = time.perf_counter()
    while len(screens) < len(opened) and _more(len(screens), started, spec):
        t0 = time.perf_counter()
        planes = first_screen(opened[len(screens)])
        screens.append(time.perf_counter() - t0)
    layers = opened[len(screens) - 1]  # the last screen's
    return {
        "open_ms": 1000 * statistics.median(opens),
        "first_open_ms": 1000 * opens[0],
        "screen_ms": 1000 * statistics.median(screens),
        "n": len(opens),
        "n_screens": len(screens),
        "layers": napari_layers(layers),
        "screen_px": " / ".join(sorted({f"{p.shape[0]}x{p.shape[1]}" for p in planes})),
        "coverage": coverage(layers, planes, spec),
        "version": metadata.version(spec["reader"]),
    }


def child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    warnings.simplefilter("ignore")  # third-party deprecation noise is not what we measure
    result = {**spec, **measure(spec)}
    Path(spec["result"]).write_text(json.dumps(result))


# -- plates and runs (project venv) --------------------------------------------------------


@dataclass(frozen=True)
class Plate:
    wells: int
    layout: str  # a key of LAYOUTS

    @property
    def label(self) -> str:
        return f"{self.wells} wells, {self.layout} layout"

    def path(self, folder: Path) -> Path:
        fields, channels, size = WELLS[self.wells]
        return folder / f"plate-{self.wells}-{self.layout}-{fields}f{channels}c{size}.ome.zarr"

    def spec(self, folder: Path, reader: str, repeats: int) -> dict[str, Any]:
        """What the measuring process needs to know (``measure``)."""
        rows, columns = GEOMETRY[self.wells]
        return {
            "reader": reader,
            "plate": str(self.path(folder)),
            "label": self.label,
            "wells": self.wells,
            "layout": self.layout,
            "rows": rows,
            "columns": columns,
            "plane": [WELLS[self.wells][2]] * 2,
            "repeats": repeats,
            "min_repeats": min(3, repeats),
            "budget_s": 6.0,  # per phase: opens, then first screens
        }


def build_plate(plate: Plate, folder: Path) -> Path:
    """Write ``plate`` into ``folder``, unless a previous run left it there."""
    from napari_wellzarr.core import PlateStore, StorageConfig
    from napari_wellzarr.testing.synthetic import synthetic_well

    path = plate.path(folder)
    if (path / "zarr.json").is_file():
        return path
    fields, channels, size = WELLS[plate.wells]
    config = StorageConfig(plate=plate.wells, fields=LAYOUTS[plate.layout])
    # The same well everywhere: opening reads metadata only, and a first-screen plane
    # costs the same whichever noisy nuclei it holds.
    data = synthetic_well(fields, channels, 1, (size, size), seed=7)
    names = ["DAPI", "GFP", "Cy5"][:channels]
    with PlateStore.create(path, config, name=f"bench-{plate.wells}") as store:
        for well in config.plate.all_wells():
            store.write_well(well, data, channels=names, pixel_size=0.65)
    return path


def ome_zarr_python(notes: list[str]) -> str | None:
    """The napari-ome-zarr venv's interpreter, built on first use (``None`` if it cannot be)."""
    return contender_python(
        OME_VENV,
        f"{OME}=={OME_VERSION}",
        "import napari_ome_zarr; print(napari_ome_zarr.__version__)",
        notes,
        borrow=True,
    )


def runs(quick: bool) -> list[tuple[str, Plate]]:
    """(reader, plate) pairs: both readers on both layouts at 96 wells, and 1536 wells.

    napari-ome-zarr needs ~5 s per open and first screen at 1536 wells (~17 s in all):
    --quick leaves that out, and napari-ome-zarr on the stacked layout (not a target).
    """
    pairs = [
        (PLUGIN, Plate(96, "default")),
        (PLUGIN, Plate(96, "standard")),
        (OME, Plate(96, "standard")),
    ]
    if not quick:
        pairs.append((OME, Plate(96, "default")))
    pairs.append((PLUGIN, Plate(1536, "default")))
    if not quick:
        pairs += [(PLUGIN, Plate(1536, "standard")), (OME, Plate(1536, "standard"))]
    return pairs


def run_child(python: str, spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    spec_path = folder / f"{spec['reader']}-{Path(spec['plate']).name}.json"
    result_path = spec_path.with_suffix(".result.json")
    spec = {**spec, "result": str(result_path)}
    spec_path.write_text(json.dumps(spec))
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [python, str(HERE / "_napari_open.py"), str(spec_path)],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
        failure = f"exit {done.returncode}: {done.stderr.strip()[-600:]}"
    except subprocess.TimeoutExpired:
        failure = f"no result after {CHILD_TIMEOUT_S} s"
    if result_path.exists():
        result = json.loads(result_path.read_text())
    else:
        result = {**spec, "error": failure}
    result["elapsed_s"] = time.perf_counter() - started
    return result


def run_all(
    folder: Path, *, quick: bool, notes: list[str], log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Build the plates into ``folder`` and open each with each reader, in its own process."""
    folder.mkdir(parents=True, exist_ok=True)
    pythons = {PLUGIN: sys.executable, OME: ome_zarr_python(notes)}
    repeats = 3 if quick else 5
    results = []
    for reader, plate in runs(quick):
        python = pythons[reader]
        if python is None:
            continue
        build_plate(plate, folder)
        r = run_child(python, plate.spec(folder, reader, repeats), folder)
        results.append(r)
        status = (
            r.get("error")
            or r["coverage"]
            or (f"{r['open_ms']:.1f} ms to layer data, first screen {r['screen_ms']:.0f} ms")
        )
        log(f"napari  {reader} on {plate.label}: {status} ({r['elapsed_s']:.0f} s)")
    return results


# -- reporting -----------------------------------------------------------------------------


def _ok(r: dict[str, Any]) -> bool:
    return "error" not in r and r["coverage"] is None


def _find(results: list[dict[str, Any]], reader: str, wells: int, layout: str) -> Any:
    key = (reader, wells, layout)
    found = (r for r in results if (r["reader"], r["wells"], r["layout"]) == key and _ok(r))
    return next(found, None)


def describe(results: list[dict[str, Any]]) -> str:
    ome = next((r["version"] for r in results if r["reader"] == OME and "version" in r), None)
    versions = ", ".join(f"{d} {metadata.version(d)}" for d in ("napari", "zarr", "dask"))
    n = max((r["n"] for r in results if "n" in r), default=0)
    return (
        f"Each reader in its own process, its imports done before the clock starts (for "
        f"napari-wellzarr also `napari_wellzarr.plugin.view`, `.annotations` and zarr, which "
        f"its first open would import; napari-ome-zarr imports napari, zarr and dask "
        f"itself); warm OS cache; plates built by this run. {PLUGIN} from this checkout; "
        + (f"{OME} {ome} in `.venv-napari-ome-zarr`" if ome else f"{OME} not run")
        + f"; {versions}. Plates: 96 wells = 2 fields x 3 channels x 512x512 uint16 per well, "
        "1536 wells = 1 field x 1 channel x 256x256; *default* = this project's default stacked "
        "layout (`StorageConfig(plate=N)`), *standard* = one image group per field "
        '(`fields="per-field"`).\n\n'
        f"- *get_reader -> layer data*: median of {n} calls of `get_reader(path)(path)` in the "
        "process (napari-ome-zarr: `napari_get_reader`; its printing to stdout redirected); "
        "*first call*: the first of them.\n"
        "- *vs napari-ome-zarr*: napari-ome-zarr's median on the standard-layout plate of the "
        "same size / this row's median (> 1 = faster).\n"
        "- *first screen* (context, not a target): after that, `np.asarray` of the 2D plane "
        "napari draws first, for every image layer and channel: coarsest level (napari starts "
        "a multiscale layer there), field, z and t 0; *px* its size.\n"
        "- Every row is checked to cover the plate: each image layer spans all rows and "
        "columns at full resolution and each well's cell of each first-screen plane holds "
        "pixels."
    )


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| reader | plate | get_reader -> layer data ms | first call ms | vs napari-ome-zarr "
        "| first screen ms | first screen px | napari layers |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        name = f"**{PLUGIN}**" if r["reader"] == PLUGIN else f"{OME} {r.get('version', '')}"
        if not _ok(r):
            why = r.get("error") or f"does not cover the plate: {r['coverage']}"
            lines.append(f"| {name} | {r['label']} | {why.splitlines()[-1]} | | | | | |")
            continue
        ref = _find(results, OME, r["wells"], "standard")
        ratio = f"{ref['open_ms'] / r['open_ms']:.3g}x" if ref else "-"
        lines.append(
            f"| {name} | {r['label']} | {r['open_ms']:,.1f} | {r['first_open_ms']:,.1f} | "
            f"{ratio} | {r['screen_ms']:,.0f} | {r['screen_px']} | {r['layers']} |"
        )
    return "\n".join(lines)


def targets(results: list[dict[str, Any]]) -> list[tuple[str, bool, str]]:
    """(label, met, figures) of the two opening targets of issue 5, where measured."""
    out = []
    big = _find(results, PLUGIN, 1536, "default")
    if big:
        out.append(
            (
                "opening 1536 wells within 1 s (get_reader -> layer data, default layout)",
                big["open_ms"] <= 1000,
                f"{big['open_ms']:.1f} ms (first call in the process {big['first_open_ms']:.1f} "
                f"ms; the first screen takes {big['screen_ms']:.0f} ms more)",
            )
        )
    ours, ref = _find(results, PLUGIN, 96, "standard"), _find(results, OME, 96, "standard")
    if ours and ref:
        x = ref["open_ms"] / ours["open_ms"]
        out.append(
            (
                f"opening >= 2x faster than napari-ome-zarr {ref['version']} "
                "(96 wells, standard layout)",
                x >= 2,
                f"{ours['open_ms']:.1f} vs {ref['open_ms']:.0f} ms = {x:.0f}x (first call in the "
                f"process: {ours['first_open_ms']:.1f} vs {ref['first_open_ms']:.0f} ms)",
            )
        )
    return out


if __name__ == "__main__":
    try:
        child(sys.argv[1])
    except Exception:
        traceback.print_exc()
        sys.exit(1)
